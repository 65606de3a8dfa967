//! Step: create the main disk — blank (`disk_size`), a copy of the base image (`disk_image`), or
//! an overlay on it (`use_backing_file`) — grow it to `disk_size`, and create the blank
//! `disk_additional_size` disks `<vm_name>-1`, `<vm_name>-2`…
//!
//! Every `qemu-img` call carries the user's `qemu_img_args` at Packer's positions. The base image
//! is byte-copied when its format already is `format` and no `qemu_img_args.convert` is given;
//! otherwise it is converted (also when it is a URL, with `iso_skip_cache`).
//!
//! **A qcow2 base with compressed clusters** (cloud images are shipped so) becomes instead a qcow2
//! overlay on it, opened by QEMU with `copy-on-read=on`, when the final conversion will flatten it
//! into a standalone image anyway (not with `skip_compaction` and no `disk_compression`, nor with
//! `use_backing_file` or `warm_start`). QEMU decompresses a whole 64 KiB cluster for every read of a
//! compressed one, again for each small read of the same cluster, and a boot loader reads the kernel
//! through the BIOS a few KiB at a time; with copy-on-read the first read of a cluster puts it
//! decompressed into the overlay, and the next reads come from there. Packer's builder converts the
//! whole base up front instead (seconds for a real cloud image, paid on every build). Measured on the
//! test guest (QEMU 7.2, TCG, 3 alternating triples): sshd up 15.3–16.1 s after the disk step
//! started with a byte copy, 14.6–15.2 s with the overlay, 13.5–15.0 s with a full conversion
//! (which costs 3.4 s up front on the Debian 12 cloud image). The artifact is the same image.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use packer_sdk::step::{Step, StepContext, StepError};

use crate::config::Config;
use crate::driver::qemu_img::{self, ConvertOptions, ExtraArgs, ImageInfo, QemuImg};
use crate::driver::warm_cache;
use crate::state::BuildState;
use crate::steps::convert::ConvertDisk;
use crate::steps::fetch_media::remote_source;

/// Creates `<output_directory>/<vm_name>` and the additional disks; sets `disk_paths`.
pub struct CreateDisk<'a> {
    config: &'a Config,
}

impl<'a> CreateDisk<'a> {
    /// The step for `config`.
    pub fn new(config: &'a Config) -> Self {
        CreateDisk { config }
    }
}

/// The `qemu-img` of the build: the one on `PATH`, with the user's `qemu_img_args`.
pub fn qemu_img_for(config: &Config) -> QemuImg {
    let a = config.qemu_img_args.clone().unwrap_or_default();
    QemuImg::default().with_extra_args(ExtraArgs { create: a.create, convert: a.convert, resize: a.resize })
}

/// `<output_directory>/<vm_name>-<n>` for the n-th (1-based) `disk_additional_size` entry.
pub fn additional_disk_path(config: &Config, n: usize) -> PathBuf {
    Path::new(&config.output_directory).join(format!("{}-{n}", config.vm_name))
}

/// `target` relative to `base_dir` when both are absolute (`../cache/x.img`), else `target` itself.
fn relative_to(target: &Path, base_dir: &Path) -> PathBuf {
    let (Ok(t), Ok(b)) = (target.canonicalize(), base_dir.canonicalize()) else { return target.to_path_buf() };
    let tc: Vec<_> = t.components().collect();
    let bc: Vec<_> = b.components().collect();
    let common = tc.iter().zip(&bc).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..bc.len() {
        out.push("..");
    }
    for c in &tc[common..] {
        out.push(c);
    }
    out
}

fn failed(e: qemu_img::QemuImgError) -> StepError {
    StepError::failed(e.to_string())
}

impl CreateDisk<'_> {
    /// Whether the main disk, which would be a byte copy of `source`, is made a copy-on-read overlay
    /// on it instead (see the module documentation): a qcow2 base without a backing file, with
    /// compressed clusters, a build that converts the disk at the end, no warm start.
    async fn copy_on_read_overlay(&self, img: &QemuImg, source: &Path, info: &ImageInfo) -> bool {
        let c = self.config;
        let eligible = c.format.as_str() == "qcow2"
            && !c.use_backing_file
            && !c.warm_start
            && info.backing_file.is_none()
            && !ConvertDisk::new(c).skipped();
        if !eligible {
            return false;
        }
        match img.compressed_clusters(source).await {
            Ok(n) => n > 0,
            Err(e) => {
                tracing::debug!("checking {} for compressed clusters: {e}; copying it", source.display());
                false
            }
        }
    }

    /// The main disk from the base image (`disk_image`): overlay, copy or conversion, then resize.
    /// `true` when it is a copy-on-read overlay.
    async fn disk_from_image(
        &self,
        ctx: &StepContext,
        img: &QemuImg,
        source: &Path,
        disk: &Path,
    ) -> Result<bool, StepError> {
        let c = self.config;
        let fmt = c.format.as_str();
        let remote = remote_source(source);
        let src = source.display().to_string();
        let info = img.info_of(&src).await.map_err(failed)?;
        if c.use_backing_file {
            let backing = if remote.is_some() {
                PathBuf::from(&src)
            } else {
                relative_to(source, Path::new(&c.output_directory))
            };
            ctx.ui.say(&format!("Creating a qcow2 overlay on {}...", backing.display())).await;
            let size = (!c.skip_resize_disk && c.disk_size.bytes() > info.virtual_size).then(|| c.disk_size.bytes());
            img.create_overlay(disk, &backing.to_string_lossy(), &info.format, size).await.map_err(failed)?;
            return Ok(false);
        }
        let grown = grown_size(c, info.virtual_size)?;
        let byte_copy = info.format == fmt && img.extra_args().convert.is_empty() && remote.is_none();
        if byte_copy && self.copy_on_read_overlay(img, source, &info).await {
            // absolute: the overlay lives only until the final conversion flattens it
            let base = source.canonicalize().unwrap_or_else(|_| source.to_path_buf());
            ctx.ui
                .say(&format!(
                    "Creating a copy-on-read overlay on {src} (compressed qcow2: each cluster is decompressed once)..."
                ))
                .await;
            img.create_overlay(disk, &base.to_string_lossy(), &info.format, grown).await.map_err(failed)?;
            return Ok(true);
        }
        ctx.ui.say(&format!("Copying {src} ({}) to {}...", info.format, disk.display())).await;
        if byte_copy {
            tokio::fs::copy(source, disk)
                .await
                .map_err(|e| StepError::failed(format!("cannot copy {src} to {}: {e}", disk.display())))?;
        } else {
            // From a URL: one coroutine, in order. QEMU 7.2's curl driver stalls for good with
            // parallel requests (measured here: 1 in 3 conversions of the test image hung with
            // qemu-img's default 8 coroutines, 2 in 6 with 16; 0 in 10 with `-m 1`).
            let opts = match remote {
                Some(_) => {
                    ConvertOptions { format: fmt.to_string(), compress: false, coroutines: 1, out_of_order: false }
                }
                None => ConvertOptions { format: fmt.to_string(), compress: false, coroutines: 16, out_of_order: true },
            };
            img.convert_from_url(&src, disk, &opts).await.map_err(failed)?;
        }
        if let Some(size) = grown {
            ctx.ui.say(&format!("Resizing the disk to {}...", c.disk_size)).await;
            img.resize(disk, fmt, size).await.map_err(failed)?;
        }
        Ok(false)
    }
}

/// The size a copy of a base image of `virtual_size` bytes is grown to: `disk_size` when larger,
/// `None` when equal or with `skip_resize_disk`; an error when `disk_size` is smaller (checked
/// before anything is copied).
fn grown_size(c: &Config, virtual_size: u64) -> Result<Option<u64>, StepError> {
    if c.skip_resize_disk {
        return Ok(None);
    }
    if c.disk_size.bytes() < virtual_size {
        return Err(StepError::failed(format!(
            "disk_size {} is smaller than the image's virtual size of {virtual_size} bytes; raise disk_size or set skip_resize_disk = true",
            c.disk_size
        )));
    }
    Ok((c.disk_size.bytes() > virtual_size).then(|| c.disk_size.bytes()))
}

#[async_trait]
impl Step<BuildState> for CreateDisk<'_> {
    fn name(&self) -> &'static str {
        "disk"
    }

    async fn run(&self, ctx: &StepContext, state: &mut BuildState) -> Result<(), StepError> {
        let c = self.config;
        let img = qemu_img_for(c);
        let disk = c.disk_path();
        let fmt = c.format.as_str();
        if let Some(r) = state.warm_restore() {
            // warm start: the disks as they were when the machine was saved
            let mut paths = vec![disk];
            paths.extend((1..r.meta.disks).map(|n| additional_disk_path(c, n)));
            ctx.ui.say(&format!("Copying the {} saved disk(s) of the warm-start entry...", paths.len())).await;
            for (n, path) in paths.iter().enumerate() {
                warm_cache::copy_sparse(&r.dir.join(warm_cache::disk_file(n)), path)
                    .await
                    .map_err(|e| StepError::failed(format!("warm start: {e}")))?;
            }
            state.disk_paths = paths;
            return Ok(());
        }
        if c.disk_image {
            let source = state.source_path.clone().ok_or_else(|| StepError::failed("no source image was fetched"))?;
            state.main_disk_copy_on_read = self.disk_from_image(ctx, &img, &source, &disk).await?;
        } else {
            ctx.ui.say(&format!("Creating {} disk of {}...", fmt, c.disk_size)).await;
            img.create(&disk, fmt, c.disk_size.bytes()).await.map_err(failed)?;
        }
        state.disk_paths = vec![disk];
        for (i, size) in c.disk_additional_size.iter().flatten().enumerate() {
            let bytes =
                qemu_img::parse_size(size).map_err(|e| StepError::failed(format!("disk_additional_size[{i}]: {e}")))?;
            let path = additional_disk_path(c, i + 1);
            ctx.ui.say(&format!("Creating additional {fmt} disk {} of {size}...", path.display())).await;
            img.create(&path, fmt, bytes).await.map_err(failed)?;
            state.disk_paths.push(path);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::shutdown::test_ui::Recorder;
    use packer_sdk::config::RawConfig;
    use packer_sdk::CancellationToken;
    use std::sync::Arc;

    /// A 64 MiB qcow2 base with 4 MiB of data, compressed clusters or not.
    async fn base(dir: &Path, compressed: bool) -> PathBuf {
        let raw = dir.join("base.raw");
        let mut data = vec![0u8; 64 << 20];
        for (i, b) in data[(8 << 20)..(12 << 20)].iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        std::fs::write(&raw, data).unwrap();
        let base = dir.join(if compressed { "base-z.qcow2" } else { "base.qcow2" });
        let opts = ConvertOptions { format: "qcow2".into(), compress: compressed, ..ConvertOptions::default() };
        QemuImg::default().convert(&raw, &base, &opts).await.unwrap();
        std::fs::remove_file(&raw).unwrap();
        base
    }

    /// The prepared config of a `disk_image` build from `source` (128 MiB unless `config` says
    /// otherwise) into a fresh, existing output directory under `dir`, and its starting state.
    fn disk_image_build(dir: &Path, source: &Path, config: serde_json::Value) -> (Config, BuildState) {
        let out = dir.join(format!("out-{}", rand_suffix()));
        let mut v = serde_json::json!({
            "disk_image": true, "iso_url": source.display().to_string(), "iso_checksum": "none",
            "output_directory": out.display().to_string(), "vm_name": "vm", "disk_size": "128M",
            "ssh_username": "root", "accelerator": "tcg",
        });
        v.as_object_mut().unwrap().extend(config.as_object().unwrap().clone());
        let raw = RawConfig::Map(v.as_object().unwrap().clone());
        let common = RawConfig::Map(serde_json::json!({"packer_build_name": "b"}).as_object().unwrap().clone());
        let c = Config::prepare(&[raw, common]).map_err(|e| e.errors.to_string()).expect("valid config").config;
        std::fs::create_dir_all(&out).unwrap();
        (c, BuildState { source_path: Some(source.to_path_buf()), ..BuildState::default() })
    }

    fn ctx() -> StepContext {
        StepContext { ui: Arc::new(Recorder::default()), cancel: CancellationToken::new() }
    }

    /// Runs the step for `config` (a `disk_image` build from `source`); the state and the main
    /// disk's backing file.
    async fn make_disk(dir: &Path, source: &Path, config: serde_json::Value) -> (BuildState, Option<String>) {
        let (c, mut state) = disk_image_build(dir, source, config);
        CreateDisk::new(&c).run(&ctx(), &mut state).await.unwrap();
        let info = QemuImg::default().info(&c.disk_path()).await.unwrap();
        assert_eq!(info.virtual_size, 128 << 20, "grown to disk_size");
        (state, info.backing_file)
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }

    #[tokio::test]
    async fn a_compressed_base_becomes_a_copy_on_read_overlay_only_when_the_disk_is_converted_at_the_end() {
        let d = tempfile::tempdir().unwrap();
        let (z, plain) = (base(d.path(), true).await, base(d.path(), false).await);
        assert!(QemuImg::default().compressed_clusters(&z).await.unwrap() > 0);
        assert_eq!(QemuImg::default().compressed_clusters(&plain).await.unwrap(), 0);

        let (state, backing) = make_disk(d.path(), &z, serde_json::json!({})).await;
        assert!(state.main_disk_copy_on_read);
        assert_eq!(backing.as_deref(), Some(z.canonicalize().unwrap().to_str().unwrap()));
        let (state, _) = make_disk(d.path(), &z, serde_json::json!({"disk_compression": true})).await;
        assert!(state.main_disk_copy_on_read);

        // a copy, as before: the disk is the artifact as QEMU leaves it, an overlay artifact is
        // asked for, warm start keeps the disk, qemu-img convert arguments of the user, raw output,
        // no compressed cluster to spare
        for (source, config) in [
            (&z, serde_json::json!({"skip_compaction": true})),
            (&z, serde_json::json!({"use_backing_file": true})),
            (&z, serde_json::json!({"warm_start": true})),
            (&z, serde_json::json!({"qemu_img_args": {"convert": ["-o", "compression_type=zlib"]}})),
            (&z, serde_json::json!({"format": "raw"})),
            (&plain, serde_json::json!({})),
        ] {
            let (state, backing) = make_disk(d.path(), source, config.clone()).await;
            assert!(!state.main_disk_copy_on_read, "{config}");
            if config.get("use_backing_file").is_none() {
                assert_eq!(backing, None, "{config}");
            }
        }
    }

    #[tokio::test]
    async fn a_disk_size_below_the_image_is_refused_before_anything_is_copied() {
        let d = tempfile::tempdir().unwrap();
        let plain = base(d.path(), false).await;
        let (c, mut state) = disk_image_build(d.path(), &plain, serde_json::json!({"disk_size": "32M"}));
        let e = CreateDisk::new(&c).run(&ctx(), &mut state).await.unwrap_err().to_string();
        assert!(e.contains("disk_size 32M is smaller than the image's virtual size of 67108864 bytes"), "{e}");
        assert!(!c.disk_path().exists(), "the image was copied before the size was checked");
    }

    #[test]
    fn relative_paths() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("cache")).unwrap();
        std::fs::create_dir_all(d.path().join("out")).unwrap();
        std::fs::write(d.path().join("cache/base.img"), "x").unwrap();
        assert_eq!(
            relative_to(&d.path().join("cache/base.img"), &d.path().join("out")),
            Path::new("../cache/base.img")
        );
    }
}
