//! Step: fetch the installer ISO or base disk image (checksummed, cached) — or, with
//! `iso_skip_cache`, pick a URL QEMU reads in place.
//!
//! Downloads go to `iso_target_path` (a file, or a directory) or the Packer cache, named with
//! `iso_target_extension` (default `iso`, `img` with `disk_image`). With `iso_skip_cache` nothing
//! is downloaded: the first URL whose server answers `HEAD` with `Accept-Ranges: bytes` is used,
//! after `qemu-img info` has read it through QEMU's curl block driver (which proves both the
//! driver and the server work before QEMU starts).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use packer_sdk::download::{self, Checksum, DownloadRequest};
use packer_sdk::step::{Step, StepContext, StepError};

use crate::config::Config;
use crate::driver::qemu_img::{QemuImg, QemuImgError};
use crate::state::BuildState;

/// Downloads or locates `iso_url`/`iso_urls` and verifies `iso_checksum`; sets `source_path`
/// (a URL with `iso_skip_cache`).
pub struct FetchMedia<'a> {
    config: &'a Config,
}

impl<'a> FetchMedia<'a> {
    /// The step for `config`.
    pub fn new(config: &'a Config) -> Self {
        FetchMedia { config }
    }
}

/// The URL when the build's source is read remotely by QEMU (`iso_skip_cache`), else `None`.
pub fn remote_source(source: &Path) -> Option<&str> {
    let s = source.to_str()?;
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://")).then_some(s)
}

/// The error for a URL `qemu-img` could not open: a missing curl driver gets the package to
/// install, anything else what qemu-img said.
pub fn curl_driver_error(url: &str, e: &QemuImgError) -> String {
    let missing_driver = matches!(e, QemuImgError::Failed { stderr, .. }
        if stderr.contains("Unknown protocol") || stderr.contains("Unknown driver"));
    if missing_driver {
        format!(
            "iso_skip_cache: QEMU cannot read {url}: its curl block driver is missing ({e}); install it with \
             `apt-get install qemu-block-extra` (Debian/Ubuntu; other systems: the QEMU package with the curl \
             block module), or remove iso_skip_cache to download the media instead"
        )
    } else {
        format!(
            "iso_skip_cache: QEMU's curl driver cannot read {url}: {e}; check the URL, or remove iso_skip_cache to \
             download the media instead"
        )
    }
}

impl FetchMedia<'_> {
    async fn remote(&self, ctx: &StepContext, state: &mut BuildState) -> Result<(), StepError> {
        let c = self.config;
        ctx.ui.say("Checking that the ISO/image can be read in place (iso_skip_cache)").await;
        let url =
            download::probe_range_support(&c.iso_urls, ctx.ui.as_ref(), &ctx.cancel).await.map_err(|e| match e {
                download::DownloadError::Cancelled => StepError::Cancelled,
                e => StepError::failed(format!(
                    "iso_skip_cache: no URL can be read in place ({e}); QEMU needs a server that supports byte \
                     ranges — use another mirror or remove iso_skip_cache"
                )),
            })?;
        let img = QemuImg::default();
        let info = tokio::select! {
            r = img.info_of(&url) => r.map_err(|e| StepError::failed(curl_driver_error(&url, &e)))?,
            _ = ctx.cancel.cancelled() => return Err(StepError::Cancelled),
        };
        ctx.ui
            .say(&format!("Using {url} in place ({}, {} bytes); nothing is downloaded", info.format, info.virtual_size))
            .await;
        state.source_path = Some(PathBuf::from(url));
        Ok(())
    }
}

#[async_trait]
impl Step<BuildState> for FetchMedia<'_> {
    fn name(&self) -> &'static str {
        "fetch media"
    }

    async fn run(&self, ctx: &StepContext, state: &mut BuildState) -> Result<(), StepError> {
        let c = self.config;
        if c.iso_skip_cache == Some(true) {
            return self.remote(ctx, state).await;
        }
        let checksum = Checksum::parse(&c.iso_checksum).map_err(|e| StepError::failed(format!("iso_checksum: {e}")))?;
        let extension = c.iso_target_extension.clone().filter(|e| !e.is_empty()).unwrap_or_else(|| {
            if c.disk_image {
                "img".into()
            } else {
                "iso".into()
            }
        });
        let req = DownloadRequest {
            urls: c.iso_urls.clone(),
            checksum,
            cache_dir: download::default_cache_dir(),
            extension,
            target_path: c.iso_target_path.as_deref().filter(|t| !t.trim().is_empty()).map(PathBuf::from),
        };
        ctx.ui.say("Retrieving ISO").await;
        let path = download::fetch(&req, ctx.ui.as_ref(), &ctx.cancel).await.map_err(|e| match e {
            download::DownloadError::Cancelled => StepError::Cancelled,
            e => StepError::failed(format!("iso_url: {e}")),
        })?;
        tracing::info!("source media: {}", path.display());
        state.source_path = Some(path);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_sources_are_urls() {
        assert_eq!(remote_source(Path::new("http://h/x.iso")), Some("http://h/x.iso"));
        assert_eq!(remote_source(Path::new("HTTPS://h/x.iso")), Some("HTTPS://h/x.iso"));
        assert_eq!(remote_source(Path::new("/cache/x.iso")), None);
        assert_eq!(remote_source(Path::new("http")), None);
    }

    #[test]
    fn a_missing_curl_driver_names_the_package() {
        let e = QemuImgError::Failed {
            command: "qemu-img info --output=json http://h/x.iso".into(),
            stderr: "qemu-img: Could not open 'http://h/x.iso': Unknown protocol 'http'".into(),
        };
        let m = curl_driver_error("http://h/x.iso", &e);
        assert!(m.contains("apt-get install qemu-block-extra") && m.starts_with("iso_skip_cache"), "{m}");
        let other = QemuImgError::Failed { command: "x".into(), stderr: "HTTP 403".into() };
        assert!(!curl_driver_error("http://h/x.iso", &other).contains("qemu-block-extra"));
    }

    /// The real curl driver reads a URL qemu-img is given (the driver of this host works).
    #[tokio::test]
    async fn qemu_img_reads_urls_through_curl() {
        let e = QemuImg::default().info_of("http://127.0.0.1:9/nothing.iso").await.unwrap_err();
        // the driver is there: the failure is the connection, not an unknown protocol
        assert!(!curl_driver_error("http://127.0.0.1:9/nothing.iso", &e).contains("qemu-block-extra"), "{e}");
    }
}
