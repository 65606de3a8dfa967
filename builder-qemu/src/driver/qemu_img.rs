//! `qemu-img`: create, resize, inspect and convert disk images.

use std::path::{Path, PathBuf};

use super::process;

/// Errors running `qemu-img`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QemuImgError {
    /// The binary could not be started.
    #[error("cannot run {binary}: {reason} (install qemu-utils)")]
    Spawn {
        /// The binary.
        binary: String,
        /// Why.
        reason: String,
    },
    /// `qemu-img` failed.
    #[error("`{command}` failed: {stderr}")]
    Failed {
        /// The command line, for the user to retry by hand.
        command: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// `qemu-img info` printed something unexpected.
    #[error("cannot read `qemu-img info` output: {0}")]
    Parse(String),
}

/// What `qemu-img info` tells about an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Format (`qcow2`, `raw`, …).
    pub format: String,
    /// Virtual size in bytes.
    pub virtual_size: u64,
    /// The backing file, if any.
    pub backing_file: Option<String>,
}

/// Options of [`QemuImg::convert`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConvertOptions {
    /// Output format (`qcow2` or `raw`).
    pub format: String,
    /// Compress the output (qcow2 only), `-c`.
    pub compress: bool,
    /// Parallel coroutines (`-m`); 0 = qemu-img's default.
    pub coroutines: u8,
    /// Allow out-of-order writes (`-W`), faster for a fresh target.
    pub out_of_order: bool,
}

/// A `qemu-img` binary.
#[derive(Debug, Clone)]
pub struct QemuImg {
    binary: PathBuf,
}

impl Default for QemuImg {
    fn default() -> Self {
        QemuImg { binary: PathBuf::from("qemu-img") }
    }
}

impl QemuImg {
    /// Uses `binary` (e.g. `/usr/bin/qemu-img`).
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        QemuImg { binary: binary.into() }
    }

    async fn run(&self, args: &[String]) -> Result<String, QemuImgError> {
        let command = format!("{} {}", self.binary.display(), args.join(" "));
        tracing::info!("running {command}");
        let out =
            process::command(&self.binary).args(args).stdin(std::process::Stdio::null()).output().await.map_err(
                |e| QemuImgError::Spawn { binary: self.binary.display().to_string(), reason: e.to_string() },
            )?;
        if !out.status.success() {
            return Err(QemuImgError::Failed {
                command,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `qemu-img create -f FORMAT PATH SIZE` (size in bytes).
    pub async fn create(&self, path: &Path, format: &str, size: u64) -> Result<(), QemuImgError> {
        self.run(&["create".into(), "-f".into(), format.into(), path.display().to_string(), size.to_string()]).await?;
        Ok(())
    }

    /// `qemu-img create -f qcow2 -b BACKING -F BACKING_FORMAT PATH [SIZE]`: an overlay on `backing`
    /// (stored as given: pass a path relative to `path`'s directory for relocatable artifacts).
    pub async fn create_overlay(
        &self,
        path: &Path,
        backing: &str,
        backing_format: &str,
        size: Option<u64>,
    ) -> Result<(), QemuImgError> {
        let mut args: Vec<String> = vec!["create".into(), "-f".into(), "qcow2".into(), "-b".into(), backing.into()];
        args.extend(["-F".into(), backing_format.into(), path.display().to_string()]);
        if let Some(s) = size {
            args.push(s.to_string());
        }
        self.run(&args).await?;
        Ok(())
    }

    /// `qemu-img resize -f FORMAT PATH SIZE` (grow only, as Packer does).
    pub async fn resize(&self, path: &Path, format: &str, size: u64) -> Result<(), QemuImgError> {
        self.run(&["resize".into(), "-f".into(), format.into(), path.display().to_string(), size.to_string()]).await?;
        Ok(())
    }

    /// `qemu-img info --output=json PATH`.
    pub async fn info(&self, path: &Path) -> Result<ImageInfo, QemuImgError> {
        let out = self.run(&["info".into(), "--output=json".into(), path.display().to_string()]).await?;
        let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| QemuImgError::Parse(e.to_string()))?;
        Ok(ImageInfo {
            format: v["format"].as_str().ok_or_else(|| QemuImgError::Parse("no format".into()))?.to_string(),
            virtual_size: v["virtual-size"].as_u64().ok_or_else(|| QemuImgError::Parse("no virtual-size".into()))?,
            backing_file: v["backing-filename"].as_str().map(str::to_string),
        })
    }

    /// `qemu-img convert -O FORMAT [-c] [-m N] [-W] SRC DST`: copies only allocated data, which
    /// compacts the image.
    pub async fn convert(&self, src: &Path, dst: &Path, opts: &ConvertOptions) -> Result<(), QemuImgError> {
        let mut args: Vec<String> = vec!["convert".into(), "-O".into(), opts.format.clone()];
        if opts.compress {
            args.push("-c".into());
        }
        if opts.coroutines > 0 {
            args.extend(["-m".into(), opts.coroutines.to_string()]);
        }
        if opts.out_of_order {
            args.push("-W".into());
        }
        args.extend([src.display().to_string(), dst.display().to_string()]);
        self.run(&args).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_resize_info_convert() {
        let dir = tempfile::tempdir().unwrap();
        let img = QemuImg::default();
        let a = dir.path().join("a.qcow2");
        img.create(&a, "qcow2", 64 << 20).await.unwrap();
        let i = img.info(&a).await.unwrap();
        assert_eq!((i.format.as_str(), i.virtual_size, i.backing_file), ("qcow2", 64 << 20, None));
        img.resize(&a, "qcow2", 128 << 20).await.unwrap();
        assert_eq!(img.info(&a).await.unwrap().virtual_size, 128 << 20);
        let o = dir.path().join("o.qcow2");
        img.create_overlay(&o, "a.qcow2", "qcow2", Some(256 << 20)).await.unwrap();
        let i = img.info(&o).await.unwrap();
        assert_eq!((i.virtual_size, i.backing_file.as_deref()), (256 << 20, Some("a.qcow2")));
        let r = dir.path().join("r.raw");
        let opts = ConvertOptions { format: "raw".into(), compress: false, coroutines: 8, out_of_order: true };
        img.convert(&o, &r, &opts).await.unwrap();
        assert_eq!(img.info(&r).await.unwrap().format, "raw");
        assert_eq!(std::fs::metadata(&r).unwrap().len(), 256 << 20);
    }

    #[tokio::test]
    async fn failures_name_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let e = QemuImg::default().info(&dir.path().join("missing.qcow2")).await.unwrap_err();
        assert!(matches!(&e, QemuImgError::Failed { command, .. } if command.contains("info")), "{e}");
        let e = QemuImg::new("/nonexistent/qemu-img").info(dir.path()).await.unwrap_err();
        assert!(e.to_string().contains("install qemu-utils"), "{e}");
    }
}
