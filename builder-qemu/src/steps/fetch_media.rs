//! Step: fetch the installer ISO or base disk image (checksummed, cached).

use async_trait::async_trait;
use packer_sdk::download::{self, Checksum, DownloadRequest};
use packer_sdk::step::{Step, StepContext, StepError};

use crate::config::Config;
use crate::state::BuildState;

/// Downloads or locates `iso_url`/`iso_urls` and verifies `iso_checksum`; sets `source_path`.
pub struct FetchMedia<'a> {
    config: &'a Config,
}

impl<'a> FetchMedia<'a> {
    /// The step for `config`.
    pub fn new(config: &'a Config) -> Self {
        FetchMedia { config }
    }
}

#[async_trait]
impl Step<BuildState> for FetchMedia<'_> {
    fn name(&self) -> &'static str {
        "fetch media"
    }

    async fn run(&self, ctx: &StepContext, state: &mut BuildState) -> Result<(), StepError> {
        let c = self.config;
        let checksum = Checksum::parse(&c.iso_checksum).map_err(|e| StepError::failed(format!("iso_checksum: {e}")))?;
        let extension = c.iso_target_extension.clone().filter(|e| !e.is_empty()).unwrap_or_else(|| {
            if c.disk_image {
                "img".into()
            } else {
                "iso".into()
            }
        });
        let req =
            DownloadRequest { urls: c.iso_urls.clone(), checksum, cache_dir: download::default_cache_dir(), extension };
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
