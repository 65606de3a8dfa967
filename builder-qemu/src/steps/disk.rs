//! Step: create the main disk — blank (`disk_size`), a copy of the base image (`disk_image`), or
//! an overlay on it (`use_backing_file`) — and grow it to `disk_size`.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use packer_sdk::step::{Step, StepContext, StepError};

use crate::config::Config;
use crate::driver::qemu_img::{ConvertOptions, QemuImg};
use crate::state::BuildState;

/// Creates `<output_directory>/<vm_name>`; sets `disk_paths`.
pub struct CreateDisk<'a> {
    config: &'a Config,
}

impl<'a> CreateDisk<'a> {
    /// The step for `config`.
    pub fn new(config: &'a Config) -> Self {
        CreateDisk { config }
    }
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

#[async_trait]
impl Step<BuildState> for CreateDisk<'_> {
    fn name(&self) -> &'static str {
        "disk"
    }

    async fn run(&self, ctx: &StepContext, state: &mut BuildState) -> Result<(), StepError> {
        let c = self.config;
        let img = QemuImg::default();
        let disk = c.disk_path();
        let fmt = c.format.as_str();
        let fail = |e: crate::driver::qemu_img::QemuImgError| StepError::failed(e.to_string());
        if !c.disk_image {
            ctx.ui.say(&format!("Creating {} disk of {}...", fmt, c.disk_size)).await;
            img.create(&disk, fmt, c.disk_size.bytes()).await.map_err(fail)?;
            state.disk_paths = vec![disk];
            return Ok(());
        }
        let source = state.source_path.clone().ok_or_else(|| StepError::failed("no source image was fetched"))?;
        let info = img.info(&source).await.map_err(fail)?;
        if c.use_backing_file {
            let backing = relative_to(&source, Path::new(&c.output_directory));
            ctx.ui.say(&format!("Creating a qcow2 overlay on {}...", backing.display())).await;
            let size = (!c.skip_resize_disk && c.disk_size.bytes() > info.virtual_size).then(|| c.disk_size.bytes());
            img.create_overlay(&disk, &backing.to_string_lossy(), &info.format, size).await.map_err(fail)?;
        } else {
            ctx.ui.say(&format!("Copying {} ({}) to {}...", source.display(), info.format, disk.display())).await;
            if info.format == fmt {
                tokio::fs::copy(&source, &disk).await.map_err(|e| {
                    StepError::failed(format!("cannot copy {} to {}: {e}", source.display(), disk.display()))
                })?;
            } else {
                let opts =
                    ConvertOptions { format: fmt.to_string(), compress: false, coroutines: 16, out_of_order: true };
                img.convert(&source, &disk, &opts).await.map_err(fail)?;
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
                    img.resize(&disk, fmt, c.disk_size.bytes()).await.map_err(fail)?;
                }
            }
        }
        state.disk_paths = vec![disk];
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
