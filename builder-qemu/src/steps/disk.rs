//! Step: create the main disk — blank (`disk_size`), a copy of the base image (`disk_image`), or
//! an overlay on it (`use_backing_file`) — grow it to `disk_size`, and create the blank
//! `disk_additional_size` disks `<vm_name>-1`, `<vm_name>-2`…
//!
//! Every `qemu-img` call carries the user's `qemu_img_args` at Packer's positions. The base image
//! is byte-copied when its format already is `format` and no `qemu_img_args.convert` is given;
//! otherwise it is converted (also when it is a URL, with `iso_skip_cache`).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use packer_sdk::step::{Step, StepContext, StepError};

use crate::config::Config;
use crate::driver::qemu_img::{self, ConvertOptions, ExtraArgs, QemuImg};
use crate::driver::warm_cache;
use crate::state::BuildState;
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
    /// The main disk from the base image (`disk_image`): overlay, copy or conversion, then resize.
    async fn disk_from_image(
        &self,
        ctx: &StepContext,
        img: &QemuImg,
        source: &Path,
        disk: &Path,
    ) -> Result<(), StepError> {
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
            return Ok(());
        }
        ctx.ui.say(&format!("Copying {src} ({}) to {}...", info.format, disk.display())).await;
        if info.format == fmt && img.extra_args().convert.is_empty() && remote.is_none() {
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
        if !c.skip_resize_disk {
            if c.disk_size.bytes() < info.virtual_size {
                return Err(StepError::failed(format!(
                    "disk_size {} is smaller than the image's virtual size of {} bytes; raise disk_size or set skip_resize_disk = true",
                    c.disk_size, info.virtual_size
                )));
            }
            if c.disk_size.bytes() > info.virtual_size {
                ctx.ui.say(&format!("Resizing the disk to {}...", c.disk_size)).await;
                img.resize(disk, fmt, c.disk_size.bytes()).await.map_err(failed)?;
            }
        }
        Ok(())
    }
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
            self.disk_from_image(ctx, &img, &source, &disk).await?;
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
