//! `post-processor "qemu-rs-convert"`: turns the disk images of a build's artifact into the formats
//! other platforms import, with `qemu-img convert` (and liblzma / zstd for compressed raw images),
//! and writes their SHA-256 sums.
//!
//! | format | what is written | for |
//! |---|---|---|
//! | `vmdk` | `NAME.vmdk`, VMDK subformat `streamOptimized` | VMware, vSphere, OVA |
//! | `vhdx` | `NAME.vhdx` (dynamic) | Hyper-V |
//! | `vhd` | `NAME.vhd`, VHD `fixed` with the size kept exactly (`force_size`) | Azure |
//! | `vdi` | `NAME.vdi` | VirtualBox |
//! | `raw` | `NAME.raw` | dd, most clouds' importers |
//! | `raw.xz` | `NAME.raw.xz` (xz, multi-threaded) | compressed raw |
//! | `raw.zst` | `NAME.raw.zst` (zstd, multi-threaded) | compressed raw |
//! | `qcow2` | `NAME.qcow2` compressed with `qcow2_compression` (`zlib`, `zstd`, `none`) | QEMU, OpenStack |
//!
//! NAME is the input disk's file name without its extension. The input artifact is handed back to
//! Packer core, which deletes it unless the template's `keep_input_artifact = true` (Packer's own
//! semantics; this post-processor never forces it).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use builder_qemu::driver::qemu_img::{ConvertOptions, ExtraArgs, QemuImg};
use packer_sdk::artifact::Artifact;
use packer_sdk::component::{PostProcessed, PostProcessor, RunError};
use packer_sdk::config::{self as sdkconfig, ConfigErrors, RawConfig};
use packer_sdk::hcl::ObjectSpec;
use packer_sdk::ui::Ui;
use packer_sdk::CancellationToken;

mod compress;

/// The artifact's builder id.
pub const BUILDER_ID: &str = "qemu-rs.post-processor.convert";
/// The formats `formats` takes.
pub const FORMATS: [&str; 8] = ["vmdk", "vhdx", "vhd", "vdi", "raw", "raw.xz", "raw.zst", "qcow2"];
/// The name of the sums file written next to the outputs.
pub const SUMS_FILE: &str = "SHA256SUMS";

packer_sdk::packer_config! {
    /// The options as written in the template; see [`Config`] for their meaning.
    #[derive(Debug, Clone, Default, PartialEq)]
    pub struct ConvertOptionsRaw {
        /// **Required.** One or more of: `vmdk` (VMDK subformat `streamOptimized`, what VMware vSphere and
        /// OVA packages import), `vhdx` (dynamic, Hyper-V), `vhd` (VHD *fixed* with the size kept exactly —
        /// `force_size` — as Azure requires; note that `qemu-img info` without `-f vpc` sees a fixed VHD as
        /// raw), `vdi` (VirtualBox), `raw`, `raw.xz` (xz, CRC64, multi-threaded), `raw.zst` (zstd with
        /// checksum, multi-threaded), `qcow2` (compressed as `qcow2_compression` says). Each at most once. An
        /// unknown or repeated format is a `validate` error naming it.
        pub formats: Vec<String> => "formats",
        /// Where the outputs and the sums go; created when missing. An existing path that is not a directory
        /// is a `validate` error. A conversion that would overwrite its own input (`qcow2` into the disk's
        /// own directory) fails and asks for an `output_directory`.
        ///
        /// Default: the directory of each input disk
        pub output_directory: Option<String> => "output_directory",
        /// For the `qcow2` format: `zlib` (readable by every QEMU), `zstd` (much faster, needs QEMU ≥ 5.1 to
        /// read) or `none`.
        ///
        /// Default: `zlib`
        pub qcow2_compression: Option<String> => "qcow2_compression",
        /// xz preset for `raw.xz`, 0 (fastest) to 9 (smallest).
        ///
        /// Default: `6`
        pub xz_level: Option<i64> => "xz_level",
        /// zstd level for `raw.zst`, 1 to 19.
        ///
        /// Default: `3`
        pub zstd_level: Option<i64> => "zstd_level",
        /// Write `SHA256SUMS` (the `sha256sum` format) next to the outputs, listing every output; it is one
        /// of the artifact's files.
        ///
        /// Default: `true`
        pub checksum: Option<bool> => "checksum",
        /// Packer's option: keep the build's disk after the conversion. Packer core reads it; the
        /// post-processor accepts it so that JSON templates, which pass it along, decode.
        ///
        /// Default: `false`
        pub keep_input_artifact: Option<bool> => "keep_input_artifact",
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `formats` (required): outputs to make, each one of [`FORMATS`], no repeats.
    pub formats: Vec<String>,
    /// `output_directory`: where the outputs go (default: next to each input disk).
    pub output_directory: Option<PathBuf>,
    /// `qcow2_compression` (default `zlib`): `zlib` (readable by any QEMU), `zstd` (QEMU ≥ 5.1), `none`.
    pub qcow2_compression: String,
    /// `xz_level` (0–9, default 6).
    pub xz_level: u32,
    /// `zstd_level` (1–19, default 3).
    pub zstd_level: i32,
    /// `checksum` (default true): write [`SUMS_FILE`] with the SHA-256 of every output.
    pub checksum: bool,
}

impl Config {
    /// Decodes and validates the raw configs; every problem at once.
    pub fn from_raws(raws: &[RawConfig]) -> Result<Config, ConfigErrors> {
        let (decoded, mut errs) =
            sdkconfig::decode_raw_configs_with::<ConvertOptionsRaw>(raws, &sdkconfig::DecodeOptions::default());
        let o = decoded.config;
        if o.formats.is_empty() {
            errs.push("formats", format!("is required: one or more of {}", FORMATS.join(", ")));
        }
        let mut seen = Vec::new();
        for f in &o.formats {
            if !FORMATS.contains(&f.as_str()) {
                errs.push("formats", format!("unknown format {f:?}: use one of {}", FORMATS.join(", ")));
            } else if seen.contains(f) {
                errs.push("formats", format!("{f:?} is listed twice"));
            }
            seen.push(f.clone());
        }
        let qcow2_compression = o.qcow2_compression.unwrap_or_else(|| "zlib".into());
        if !["zlib", "zstd", "none"].contains(&qcow2_compression.as_str()) {
            errs.push("qcow2_compression", format!("{qcow2_compression:?} is not zlib, zstd or none"));
        }
        let xz_level = o.xz_level.unwrap_or(6);
        if !(0..=9).contains(&xz_level) {
            errs.push("xz_level", format!("{xz_level} is not between 0 and 9"));
        }
        let zstd_level = o.zstd_level.unwrap_or(3);
        if !(1..=19).contains(&zstd_level) {
            errs.push("zstd_level", format!("{zstd_level} is not between 1 and 19"));
        }
        let output_directory = o.output_directory.filter(|d| !d.is_empty()).map(PathBuf::from);
        if let Some(d) = &output_directory {
            if d.exists() && !d.is_dir() {
                errs.push("output_directory", format!("{} exists and is not a directory", d.display()));
            }
        }
        errs.into_result(Config {
            formats: o.formats,
            output_directory,
            qcow2_compression,
            xz_level: xz_level.clamp(0, 9) as u32,
            zstd_level: zstd_level.clamp(1, 19) as i32,
            checksum: o.checksum.unwrap_or(true),
        })
    }
}

/// The HCL2 schema (the options above and the common `packer_*` keys).
pub fn config_spec() -> ObjectSpec {
    sdkconfig::spec_with_common(ConvertOptionsRaw::config_spec())
}

/// The post-processor.
#[derive(Debug, Default)]
pub struct ConvertPostProcessor {
    config: Option<Config>,
}

/// What the post-processor made.
#[derive(Debug, Clone)]
pub struct Converted {
    files: Vec<String>,
}

#[async_trait]
impl Artifact for Converted {
    fn builder_id(&self) -> String {
        BUILDER_ID.into()
    }
    fn files(&self) -> Vec<String> {
        self.files.clone()
    }
    fn id(&self) -> String {
        self.files
            .iter()
            .filter_map(|f| Path::new(f).file_name())
            .map(|n| n.to_string_lossy())
            .collect::<Vec<_>>()
            .join(",")
    }
    fn string(&self) -> String {
        format!("converted disk images: {}", self.files.join(", "))
    }
    fn state(&self, _key: &str) -> Option<serde_json::Value> {
        None
    }
    async fn destroy(&self) -> Result<(), String> {
        for f in &self.files {
            match std::fs::remove_file(f) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("removing {f}: {e}")),
            }
        }
        Ok(())
    }
}

/// The disk images of `input`: its `diskPaths` state (qemu and qemu-rs builders), else every file
/// `qemu-img` can read as a disk image other than firmware variables and sums.
async fn input_disks(input: &dyn Artifact) -> Vec<PathBuf> {
    if let Some(serde_json::Value::Array(paths)) = input.state("diskPaths") {
        let disks: Vec<PathBuf> = paths.iter().filter_map(|p| p.as_str()).map(PathBuf::from).collect();
        if !disks.is_empty() {
            return disks;
        }
    }
    let mut disks = Vec::new();
    for f in input.files() {
        let p = PathBuf::from(&f);
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.ends_with(".fd") || name.contains("SUMS") || name.ends_with(".log") {
            continue;
        }
        if QemuImg::default().info(&p).await.is_ok() {
            disks.push(p);
        }
    }
    disks
}

/// `NAME` of an input disk: its file name without the last extension.
fn stem(disk: &Path) -> String {
    let name = disk.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "disk".into());
    match name.rsplit_once('.') {
        Some((s, _)) if !s.is_empty() => s.to_string(),
        _ => name,
    }
}

impl ConvertPostProcessor {
    async fn convert_one(
        &self,
        c: &Config,
        ui: &dyn Ui,
        disk: &Path,
        format: &str,
        dir: &Path,
        cancel: &CancellationToken,
    ) -> Result<PathBuf, RunError> {
        let name = stem(disk);
        let out = dir.join(format!("{name}.{format}"));
        if out == disk {
            return Err(RunError::new(format!(
                "converting {} to {format} would overwrite it: set output_directory",
                disk.display()
            )));
        }
        ui.message(&format!("Converting {} to {format}: {}", disk.display(), out.display())).await;
        let (qemu_format, options, compress): (&str, Vec<&str>, bool) = match format {
            "vmdk" => ("vmdk", vec!["subformat=streamOptimized"], false),
            "vhdx" => ("vhdx", vec![], false),
            "vhd" => ("vpc", vec!["subformat=fixed,force_size=on"], false),
            "vdi" => ("vdi", vec![], false),
            "qcow2" => match c.qcow2_compression.as_str() {
                "zstd" => ("qcow2", vec!["compression_type=zstd"], true),
                "none" => ("qcow2", vec![], false),
                _ => ("qcow2", vec![], true),
            },
            // raw, raw.xz, raw.zst: a raw file first
            _ => ("raw", vec![], false),
        };
        let raw_target = match format {
            "raw.xz" | "raw.zst" => dir.join(format!(".{name}.raw.partial")),
            _ => out.clone(),
        };
        let mut extra = Vec::new();
        for o in options {
            extra.push("-o".to_string());
            extra.push(o.to_string());
        }
        let img = QemuImg::default().with_extra_args(ExtraArgs { convert: extra, ..ExtraArgs::default() });
        let opts = ConvertOptions {
            format: qemu_format.into(),
            compress,
            coroutines: 16,
            out_of_order: qemu_format != "vmdk",
        };
        let converted = tokio::select! {
            r = img.convert(disk, &raw_target, &opts) => r.map_err(|e| RunError::new(format!("converting to {format}: {e}"))),
            _ = cancel.cancelled() => Err(RunError::new("cancelled")),
        };
        if let Err(e) = converted {
            let _ = std::fs::remove_file(&raw_target);
            return Err(e);
        }
        if raw_target != out {
            let (src, dst) = (raw_target.clone(), out.clone());
            let (xz, zst) = (c.xz_level, c.zstd_level);
            let kind = format.to_string();
            let cancel2 = cancel.clone();
            let r = tokio::task::spawn_blocking(move || match kind.as_str() {
                "raw.xz" => compress::xz(&src, &dst, xz, &cancel2),
                _ => compress::zstd(&src, &dst, zst, &cancel2),
            })
            .await
            .map_err(|e| RunError::new(format!("compressing to {format}: {e}")))
            .and_then(|r| {
                r.map_err(|e| RunError::new(format!("compressing {} to {format}: {e}", raw_target.display())))
            });
            let _ = std::fs::remove_file(&raw_target);
            if let Err(e) = r {
                let _ = std::fs::remove_file(&out);
                return Err(e);
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl PostProcessor for ConvertPostProcessor {
    fn config_spec(&self) -> ObjectSpec {
        config_spec()
    }

    async fn configure(&mut self, raws: Vec<RawConfig>) -> Result<(), ConfigErrors> {
        self.config = Some(Config::from_raws(&raws)?);
        Ok(())
    }

    async fn post_process(
        &self,
        ui: Arc<dyn Ui>,
        input: Arc<dyn Artifact>,
        cancel: CancellationToken,
    ) -> Result<PostProcessed, RunError> {
        let c = self.config.as_ref().ok_or_else(|| RunError::new("qemu-rs-convert: not configured"))?;
        let disks = input_disks(input.as_ref()).await;
        if disks.is_empty() {
            return Err(RunError::new(format!(
                "qemu-rs-convert: the artifact of {} has no disk image (files: {})",
                input.builder_id(),
                input.files().join(", ")
            )));
        }
        let mut made: Vec<PathBuf> = Vec::new();
        let mut result = Ok(());
        'outer: for disk in &disks {
            let dir = match &c.output_directory {
                Some(d) => d.clone(),
                None => disk.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(".")),
            };
            if let Err(e) = std::fs::create_dir_all(&dir) {
                result = Err(RunError::new(format!("output_directory {}: {e}", dir.display())));
                break;
            }
            for f in &c.formats {
                match self.convert_one(c, ui.as_ref(), disk, f, &dir, &cancel).await {
                    Ok(p) => made.push(p),
                    Err(e) => {
                        result = Err(e);
                        break 'outer;
                    }
                }
            }
        }
        if result.is_ok() && c.checksum {
            result = write_sums(&made, &cancel).await.map(|sums| made.extend(sums));
        }
        if let Err(e) = result {
            // nothing half-made is left behind
            for p in &made {
                let _ = std::fs::remove_file(p);
            }
            return Err(e);
        }
        let files: Vec<String> = made.iter().map(|p| p.display().to_string()).collect();
        ui.say(&format!("qemu-rs-convert: {}", files.join(", "))).await;
        Ok(PostProcessed { artifact: Some(Arc::new(Converted { files })), keep_input: false, force_override: false })
    }
}

/// Writes one [`SUMS_FILE`] per output directory (GNU coreutils format, the builder's manifest
/// lines); returns their paths.
async fn write_sums(files: &[PathBuf], cancel: &CancellationToken) -> Result<Vec<PathBuf>, RunError> {
    use builder_qemu::steps::manifest::{hash_file, manifest_line};
    use std::os::unix::ffi::OsStrExt;
    let (files, cancel) = (files.to_vec(), cancel.clone());
    tokio::task::spawn_blocking(move || {
        let mut by_dir: std::collections::BTreeMap<PathBuf, Vec<u8>> = Default::default();
        for f in &files {
            let digest = hash_file::<sha2::Sha256>(f, &cancel)
                .map_err(|e| RunError::new(format!("{}: {e}", f.display())))?
                .ok_or_else(|| RunError::new("cancelled"))?;
            let dir = f.parent().map(Path::to_path_buf).unwrap_or_default();
            let name = f.file_name().unwrap_or_default();
            by_dir.entry(dir).or_default().extend(manifest_line(&digest, name.as_bytes()));
        }
        let mut out = Vec::new();
        for (dir, text) in by_dir {
            let p = dir.join(SUMS_FILE);
            std::fs::write(&p, text).map_err(|e| RunError::new(format!("{}: {e}", p.display())))?;
            out.push(p);
        }
        Ok(out)
    })
    .await
    .map_err(|e| RunError::new(format!("checksums: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raws(v: serde_json::Value) -> Vec<RawConfig> {
        vec![RawConfig::Map(v.as_object().unwrap().clone())]
    }

    #[test]
    fn every_problem_at_once() {
        let e = Config::from_raws(&raws(serde_json::json!({
            "formats": ["vmdk", "ova", "vmdk"], "qcow2_compression": "lz4", "xz_level": 12, "zstd_level": 0
        })))
        .unwrap_err()
        .to_string();
        for needle in ["\"ova\"", "listed twice", "qcow2_compression", "xz_level", "zstd_level"] {
            assert!(e.contains(needle), "{needle}: {e}");
        }
        let e = Config::from_raws(&raws(serde_json::json!({}))).unwrap_err().to_string();
        assert!(e.contains("formats") && e.contains("required"), "{e}");
    }

    #[test]
    fn defaults() {
        let c =
            Config::from_raws(&raws(serde_json::json!({"formats": ["raw.xz"], "keep_input_artifact": true}))).unwrap();
        assert_eq!((c.qcow2_compression.as_str(), c.xz_level, c.zstd_level, c.checksum), ("zlib", 6, 3, true));
        assert_eq!(stem(Path::new("/o/debian-12.qcow2")), "debian-12");
        assert_eq!(stem(Path::new("/o/disk")), "disk");
    }

    #[tokio::test]
    async fn converts_a_qcow2_to_every_format() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("in.qcow2");
        let img = QemuImg::default();
        img.create(&src, "qcow2", 8 << 20).await.unwrap();
        let c = Config::from_raws(&raws(serde_json::json!({
            "formats": FORMATS, "output_directory": dir.path().join("out").display().to_string()
        })))
        .unwrap();
        struct Input(PathBuf);
        #[async_trait]
        impl Artifact for Input {
            fn builder_id(&self) -> String {
                "test".into()
            }
            fn files(&self) -> Vec<String> {
                vec![self.0.display().to_string()]
            }
            fn id(&self) -> String {
                "in".into()
            }
            fn string(&self) -> String {
                "in".into()
            }
            fn state(&self, _: &str) -> Option<serde_json::Value> {
                None
            }
            async fn destroy(&self) -> Result<(), String> {
                Ok(())
            }
        }
        let pp = ConvertPostProcessor { config: Some(c) };
        let ui: Arc<dyn Ui> = Arc::new(packer_sdk::rpc::ui::RecordingUi::default());
        let out = pp.post_process(ui, Arc::new(Input(src)), CancellationToken::new()).await.unwrap();
        let a = out.artifact.unwrap();
        let names: Vec<String> =
            a.files().iter().map(|f| Path::new(f).file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(
            names,
            ["in.vmdk", "in.vhdx", "in.vhd", "in.vdi", "in.raw", "in.raw.xz", "in.raw.zst", "in.qcow2", SUMS_FILE]
        );
        for (f, fmt) in [("in.vmdk", "vmdk"), ("in.vhdx", "vhdx"), ("in.vdi", "vdi"), ("in.qcow2", "qcow2")] {
            let info = img.info(&dir.path().join("out").join(f)).await.unwrap();
            assert_eq!((info.format.as_str(), info.virtual_size), (fmt, 8 << 20), "{f}");
        }
        // a fixed VHD has its footer only at the end: qemu-img probes it as raw, so name the format
        let vhd = std::process::Command::new("qemu-img")
            .args(["info", "-f", "vpc", "--output=json"])
            .arg(dir.path().join("out/in.vhd"))
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&vhd.stdout).unwrap();
        assert_eq!(v["virtual-size"], 8 << 20, "{v}");
        // the vhd is fixed: the raw data plus a 512-byte footer
        assert_eq!(std::fs::metadata(dir.path().join("out/in.vhd")).unwrap().len(), (8 << 20) + 512);
        assert!(!out.keep_input && !out.force_override);
        // no partial files
        assert!(!std::fs::read_dir(dir.path().join("out")).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with('.')));
    }
}
