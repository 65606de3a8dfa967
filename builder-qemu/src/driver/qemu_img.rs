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

/// Extra flags the user adds to every `qemu-img` call of a kind (`qemu_img_args`), inserted where
/// Packer's qemu builder inserts them:
///
/// - `create -f FORMAT [-b BACKING -F FORMAT] <create...> PATH SIZE`
/// - `convert [-c] [-m N] [-W] <convert...> -O FORMAT SRC DST` (qemu-rs' own `-m`/`-W` come first,
///   so a user's `-m` wins)
/// - `resize -f FORMAT <resize...> PATH SIZE`
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtraArgs {
    /// Added to `qemu-img create`.
    pub create: Vec<String>,
    /// Added to `qemu-img convert`.
    pub convert: Vec<String>,
    /// Added to `qemu-img resize`.
    pub resize: Vec<String>,
}

/// A `qemu-img` binary, with the user's extra flags.
#[derive(Debug, Clone)]
pub struct QemuImg {
    binary: PathBuf,
    extra: ExtraArgs,
}

impl Default for QemuImg {
    fn default() -> Self {
        QemuImg { binary: PathBuf::from("qemu-img"), extra: ExtraArgs::default() }
    }
}

/// Parses a size the way `qemu-img create`/`resize` read it (QEMU's `qemu_strtosz`): a number,
/// optionally with a fraction, and an optional unit `b`, `k`, `M`, `G`, `T`, `P`, `E` (any case,
/// powers of 1024). A bare number means **bytes**, as for qemu-img (unlike `disk_size`, where it
/// means MiB). Returns the size in bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        "e" => 60,
        _ => {
            return Err(format!(
                "{s:?} is not a size: write a number with an optional unit K, M, G or T (e.g. \"10G\"); a bare \
                 number is bytes"
            ))
        }
    };
    let bad = || format!("{s:?} is not a size: write a number with an optional unit K, M, G or T (e.g. \"10G\")");
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') || num.matches('.').count() > 1 {
        return Err(bad());
    }
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if !frac.is_empty() && shift == 0 {
        return Err(format!("{s:?}: a fraction needs a unit (e.g. \"1.5G\"); bytes are whole numbers"));
    }
    let int: u128 = int.parse().map_err(|_| bad())?;
    let mut bytes = int << shift;
    if !frac.is_empty() {
        let digits = frac.len().min(18) as u32;
        let f: u128 = frac[..digits as usize].parse().map_err(|_| bad())?;
        bytes += (f << shift) / 10u128.pow(digits);
    }
    u64::try_from(bytes).ok().filter(|b| *b < (1u64 << 63)).ok_or_else(|| format!("{s:?} is too large"))
}

impl QemuImg {
    /// Uses `binary` (e.g. `/usr/bin/qemu-img`).
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        QemuImg { binary: binary.into(), extra: ExtraArgs::default() }
    }

    /// Adds `extra` to every create, convert and resize call.
    pub fn with_extra_args(mut self, extra: ExtraArgs) -> Self {
        self.extra = extra;
        self
    }

    /// The extra flags in use.
    pub fn extra_args(&self) -> &ExtraArgs {
        &self.extra
    }

    /// The arguments of `qemu-img create` (without the binary).
    pub fn create_args(
        &self,
        path: &Path,
        format: &str,
        backing: Option<(&str, &str)>,
        size: Option<u64>,
    ) -> Vec<String> {
        let mut args: Vec<String> = vec!["create".into(), "-f".into(), format.into()];
        if let Some((file, fmt)) = backing {
            args.extend(["-b".into(), file.into(), "-F".into(), fmt.into()]);
        }
        args.extend(self.extra.create.iter().cloned());
        args.push(path.display().to_string());
        if let Some(s) = size {
            args.push(s.to_string());
        }
        args
    }

    /// The arguments of `qemu-img resize` (without the binary).
    pub fn resize_args(&self, path: &Path, format: &str, size: u64) -> Vec<String> {
        let mut args: Vec<String> = vec!["resize".into(), "-f".into(), format.into()];
        args.extend(self.extra.resize.iter().cloned());
        args.extend([path.display().to_string(), size.to_string()]);
        args
    }

    /// The arguments of `qemu-img convert` (without the binary). `src` may be a URL.
    pub fn convert_args(&self, src: &str, dst: &Path, opts: &ConvertOptions) -> Vec<String> {
        let mut args: Vec<String> = vec!["convert".into()];
        if opts.compress {
            args.push("-c".into());
        }
        if opts.coroutines > 0 {
            args.extend(["-m".into(), opts.coroutines.to_string()]);
        }
        if opts.out_of_order {
            args.push("-W".into());
        }
        args.extend(self.extra.convert.iter().cloned());
        args.extend(["-O".into(), opts.format.clone(), src.to_string(), dst.display().to_string()]);
        args
    }

    async fn run(&self, args: &[String]) -> Result<String, QemuImgError> {
        let command = format!("{} {}", self.binary.display(), args.join(" "));
        tracing::info!("running {command}");
        let out =
            process::command(&self.binary).args(args).stdin(std::process::Stdio::null()).output().await.map_err(
                |e| QemuImgError::Spawn { binary: self.binary.display().to_string(), reason: e.to_string() },
            )?;
        if !out.status.success() {
            // `check` reports what it found on stdout.
            let said = if out.stderr.iter().all(u8::is_ascii_whitespace) { &out.stdout } else { &out.stderr };
            return Err(QemuImgError::Failed { command, stderr: String::from_utf8_lossy(said).trim().to_string() });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `qemu-img create -f FORMAT <create args> PATH SIZE` (size in bytes).
    pub async fn create(&self, path: &Path, format: &str, size: u64) -> Result<(), QemuImgError> {
        self.run(&self.create_args(path, format, None, Some(size))).await?;
        Ok(())
    }

    /// `qemu-img create -f qcow2 -b BACKING -F BACKING_FORMAT <create args> PATH [SIZE]`: an overlay on `backing`
    /// (stored as given: pass a path relative to `path`'s directory for relocatable artifacts).
    pub async fn create_overlay(
        &self,
        path: &Path,
        backing: &str,
        backing_format: &str,
        size: Option<u64>,
    ) -> Result<(), QemuImgError> {
        self.run(&self.create_args(path, "qcow2", Some((backing, backing_format)), size)).await?;
        Ok(())
    }

    /// `qemu-img resize -f FORMAT <resize args> PATH SIZE` (grow only, as Packer does).
    pub async fn resize(&self, path: &Path, format: &str, size: u64) -> Result<(), QemuImgError> {
        self.run(&self.resize_args(path, format, size)).await?;
        Ok(())
    }

    /// `qemu-img info --output=json PATH`.
    pub async fn info(&self, path: &Path) -> Result<ImageInfo, QemuImgError> {
        self.info_of(&path.display().to_string()).await
    }

    /// `qemu-img info --output=json SOURCE`, where `SOURCE` may also be a URL (curl driver).
    pub async fn info_of(&self, source: &str) -> Result<ImageInfo, QemuImgError> {
        let out = self.run(&["info".into(), "--output=json".into(), source.to_string()]).await?;
        let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| QemuImgError::Parse(e.to_string()))?;
        Ok(ImageInfo {
            format: v["format"].as_str().ok_or_else(|| QemuImgError::Parse("no format".into()))?.to_string(),
            virtual_size: v["virtual-size"].as_u64().ok_or_else(|| QemuImgError::Parse("no virtual-size".into()))?,
            backing_file: v["backing-filename"].as_str().map(str::to_string),
        })
    }

    /// How many clusters of the qcow2 image at `path` are compressed (`qemu-img check
    /// --output=json`, which reads only the image's metadata).
    pub async fn compressed_clusters(&self, path: &Path) -> Result<u64, QemuImgError> {
        let args = ["check".into(), "--output=json".into(), "-f".into(), "qcow2".into(), path.display().to_string()];
        let out = self.run(&args).await?;
        let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| QemuImgError::Parse(e.to_string()))?;
        // absent when no cluster is compressed
        Ok(v["compressed-clusters"].as_u64().unwrap_or(0))
    }

    /// `qemu-img check -f qcow2 PATH`: fails unless the image's metadata is consistent (no
    /// corruption, no leaked cluster).
    pub async fn check(&self, path: &Path) -> Result<(), QemuImgError> {
        self.run(&["check".into(), "-f".into(), "qcow2".into(), path.display().to_string()]).await?;
        Ok(())
    }

    /// `qemu-img convert [-c] [-m N] [-W] <convert args> -O FORMAT SRC DST`: copies only allocated
    /// data, which compacts the image.
    pub async fn convert(&self, src: &Path, dst: &Path, opts: &ConvertOptions) -> Result<(), QemuImgError> {
        self.run(&self.convert_args(&src.display().to_string(), dst, opts)).await?;
        Ok(())
    }

    /// Like [`QemuImg::convert`], reading from a URL (QEMU's curl block driver).
    pub async fn convert_from_url(&self, src: &str, dst: &Path, opts: &ConvertOptions) -> Result<(), QemuImgError> {
        self.run(&self.convert_args(src, dst, opts)).await?;
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

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn sizes_read_like_qemu_img() {
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size(" 2T "), Ok(2 << 40));
        for bad in ["", "G", "10GB", "ten", "1.5", "1..5G", ".5G", "-1G", "10 G"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_size("1.5").unwrap_err().contains("needs a unit"));
        assert!(parse_size("99999E").unwrap_err().contains("too large"));
    }

    #[test]
    fn extra_args_go_where_packer_puts_them() {
        let img = QemuImg::default().with_extra_args(ExtraArgs {
            create: strings(&["-o", "cluster_size=8192"]),
            convert: strings(&["-o", "compression_type=zlib"]),
            resize: strings(&["--preallocation=falloc"]),
        });
        let p = Path::new("/o/vm");
        assert_eq!(
            img.create_args(p, "qcow2", None, Some(1024)),
            strings(&["create", "-f", "qcow2", "-o", "cluster_size=8192", "/o/vm", "1024"])
        );
        assert_eq!(
            img.create_args(p, "qcow2", Some(("../c/base", "qcow2")), None),
            strings(&["create", "-f", "qcow2", "-b", "../c/base", "-F", "qcow2", "-o", "cluster_size=8192", "/o/vm"])
        );
        assert_eq!(
            img.resize_args(p, "raw", 2048),
            strings(&["resize", "-f", "raw", "--preallocation=falloc", "/o/vm", "2048"])
        );
        let opts = ConvertOptions { format: "qcow2".into(), compress: true, coroutines: 16, out_of_order: true };
        assert_eq!(
            img.convert_args("/o/vm", Path::new("/o/vm.convert"), &opts),
            strings(&[
                "convert",
                "-c",
                "-m",
                "16",
                "-W",
                "-o",
                "compression_type=zlib",
                "-O",
                "qcow2",
                "/o/vm",
                "/o/vm.convert"
            ])
        );
        let plain = ConvertOptions { format: "raw".into(), ..ConvertOptions::default() };
        assert_eq!(
            QemuImg::default().convert_args("http://h/x.img", Path::new("/o/d"), &plain),
            strings(&["convert", "-O", "raw", "http://h/x.img", "/o/d"])
        );
    }

    /// `qemu-img info` JSON of `path`.
    async fn raw_info(path: &Path) -> serde_json::Value {
        let out = tokio::process::Command::new("qemu-img").args(["info", "--output=json"]).arg(path).output().await;
        serde_json::from_slice(&out.unwrap().stdout).unwrap()
    }

    /// The extra flags reach qemu-img: the images show their effect.
    #[tokio::test]
    async fn extra_args_take_effect() {
        let dir = tempfile::tempdir().unwrap();
        let img = QemuImg::default().with_extra_args(ExtraArgs {
            create: strings(&["-o", "cluster_size=8192"]),
            convert: strings(&["-o", "cluster_size=16384"]),
            resize: strings(&["--preallocation=full"]),
        });
        let a = dir.path().join("a");
        img.create(&a, "qcow2", 8 << 20).await.unwrap();
        assert_eq!(raw_info(&a).await["cluster-size"], 8192);
        let b = dir.path().join("b");
        let opts = ConvertOptions { format: "qcow2".into(), ..ConvertOptions::default() };
        img.convert(&a, &b, &opts).await.unwrap();
        assert_eq!(raw_info(&b).await["cluster-size"], 16384);
        let r = dir.path().join("r");
        QemuImg::default().create(&r, "raw", 1 << 20).await.unwrap();
        img.resize(&r, "raw", 4 << 20).await.unwrap();
        use std::os::unix::fs::MetadataExt;
        // full preallocation writes the new 3 MiB: the sparse file is no longer sparse
        assert!(std::fs::metadata(&r).unwrap().blocks() * 512 >= 3 << 20);
        // a wrong flag fails naming the command the user can retry
        let bad =
            QemuImg::default().with_extra_args(ExtraArgs { create: strings(&["--nonsense"]), ..Default::default() });
        let e = bad.create(&dir.path().join("c"), "qcow2", 1 << 20).await.unwrap_err();
        assert!(e.to_string().contains("--nonsense"), "{e}");
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
