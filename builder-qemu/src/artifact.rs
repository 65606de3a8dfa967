//! The build's result: the files in the output directory, served back to Packer core.
//!
//! Files are every **regular** file under `output_directory` (recursively, sorted by path; sockets
//! such as the QMP socket and symlinks are never files of the artifact), except:
//! - `efivars.fd` (the build's copy of the UEFI variable store) with `efi_drop_efivars`;
//! - the serial console log (`serial_log`, by default `<output_directory>/serial.log`) when it
//!   lies inside the output directory: it is a build log, not part of the machine image, so it is
//!   kept on disk for debugging but left out of `Files()` and of the checksum manifest (and thus
//!   out of what post-processors package or upload). `Destroy()` removes it with the directory.
//!
//! State keys are the reference builder's: `generated_data`, `diskName`, `diskPaths`, `diskType`,
//! `diskSize` (`"<MiB>M"`, what the Vagrant post-processor parses), `domainType` (accelerator).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use packer_sdk::artifact::Artifact;
use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::state::BuildState;
use crate::BUILDER_ID;

/// The file name of the UEFI variable store in the output directory.
pub const EFIVARS_FILE: &str = "efivars.fd";

/// Errors assembling the artifact.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The output directory could not be listed.
    #[error("cannot list the output directory {dir}: {source}; check that it exists and is readable")]
    List {
        /// The directory.
        dir: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Which files of the output directory make up the artifact (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSelection {
    /// The output directory.
    pub dir: PathBuf,
    /// Leave `efivars.fd` out (`efi_drop_efivars`).
    pub drop_efivars: bool,
    /// The serial console log, left out when it lies in the output directory.
    pub serial_log: Option<PathBuf>,
}

impl FileSelection {
    /// The selection for `config` (`output_directory`, `efi_drop_efivars`, `serial_log`).
    pub fn new(config: &Config) -> Self {
        FileSelection {
            dir: PathBuf::from(&config.output_directory),
            drop_efivars: config.efi_drop_efivars,
            serial_log: (!config.serial_log.is_empty()).then(|| PathBuf::from(&config.serial_log)),
        }
    }

    /// The files left out, as given (before resolving them).
    fn excluded(&self, state: &BuildState) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if self.drop_efivars {
            out.push(self.dir.join(EFIVARS_FILE));
            if let Some(efi) = &state.efi {
                out.push(efi.vars.clone());
            }
        }
        out.extend(self.serial_log.iter().cloned());
        out
    }

    /// The artifact's files now present in the output directory, sorted, each as
    /// `<output_directory>/<relative path>`.
    pub fn collect(&self, state: &BuildState) -> Result<Vec<PathBuf>, ArtifactError> {
        let excluded: HashSet<PathBuf> =
            self.excluded(state).iter().filter_map(|p| std::fs::canonicalize(p).ok()).collect();
        let mut files = Vec::new();
        walk(&self.dir, &mut files)
            .map_err(|source| ArtifactError::List { dir: self.dir.display().to_string(), source })?;
        files.retain(|f| std::fs::canonicalize(f).map(|c| !excluded.contains(&c)).unwrap_or(true));
        files.sort();
        Ok(files)
    }
}

/// Appends every regular file under `dir` (not following symlinks) to `out`.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&path, out)?;
        } else if kind.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// A disk size as the reference builder reports it: whole MiB (rounded up) and `M`.
pub fn disk_size_string(bytes: u64) -> String {
    format!("{}M", bytes.div_ceil(1 << 20))
}

/// The artifact of a qemu-rs build.
#[derive(Debug, Clone)]
pub struct QemuArtifact {
    dir: PathBuf,
    vm_name: String,
    files: Vec<PathBuf>,
    state: Map<String, Value>,
}

impl QemuArtifact {
    /// An artifact of `files` in `dir`, named `vm_name`, answering `State(key)` from `state`.
    pub fn new(dir: PathBuf, vm_name: String, files: Vec<PathBuf>, state: Map<String, Value>) -> Self {
        QemuArtifact { dir, vm_name, files, state }
    }

    /// The artifact of a finished build: the files recorded in `state.artifact_files` (by the
    /// manifest step), or — when no step recorded them — the output directory's files now.
    pub fn from_state(config: &Config, state: &BuildState) -> Result<Self, ArtifactError> {
        let files = if state.artifact_files.is_empty() {
            FileSelection::new(config).collect(state)?
        } else {
            state.artifact_files.clone()
        };
        let domain = match state.accel {
            Some(a) => a.qemu_name().to_string(),
            None => config.accelerator.as_str().to_string(),
        };
        let mut map = Map::new();
        map.insert("generated_data".into(), Value::Object(state.generated_data.clone()));
        map.insert("diskName".into(), json!(config.vm_name));
        map.insert(
            "diskPaths".into(),
            Value::Array(state.disk_paths.iter().map(|p| Value::String(p.display().to_string())).collect()),
        );
        map.insert("diskType".into(), json!(config.format.as_str()));
        map.insert("diskSize".into(), json!(disk_size_string(config.disk_size.bytes())));
        map.insert("domainType".into(), json!(domain));
        Ok(QemuArtifact::new(PathBuf::from(&config.output_directory), config.vm_name.clone(), files, map))
    }

    /// The output directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[async_trait]
impl Artifact for QemuArtifact {
    fn builder_id(&self) -> String {
        BUILDER_ID.to_string()
    }

    fn files(&self) -> Vec<String> {
        self.files.iter().map(|f| f.to_string_lossy().into_owned()).collect()
    }

    fn id(&self) -> String {
        self.vm_name.clone()
    }

    fn string(&self) -> String {
        format!("VM files in directory: {}", self.dir.display())
    }

    fn state(&self, key: &str) -> Option<Value> {
        self.state.get(key).cloned()
    }

    async fn destroy(&self) -> Result<(), String> {
        match tokio::fs::remove_dir_all(&self.dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => {
                Err(format!("cannot delete the artifact directory {}: {e}; remove it by hand", self.dir.display()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DiskFormat;
    use crate::driver::argv::EfiFiles;
    use packer_sdk::config::Size;
    use std::os::unix::net::UnixListener;

    fn config(dir: &Path) -> Config {
        Config {
            output_directory: dir.display().to_string(),
            vm_name: "vm".into(),
            format: DiskFormat::Qcow2,
            disk_size: Size::from_bytes((40960 << 20) - 1),
            serial_log: dir.join("serial.log").display().to_string(),
            ..Config::default()
        }
    }

    /// An output directory as a build leaves it: disks, efivars, serial log, the QMP socket,
    /// a symlink, a nested file.
    fn populate(dir: &Path) -> UnixListener {
        for f in ["vm", "vm-1", EFIVARS_FILE, "serial.log"] {
            std::fs::write(dir.join(f), f).unwrap();
        }
        std::fs::create_dir(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/extra"), "x").unwrap();
        std::os::unix::fs::symlink(dir.join("vm"), dir.join("link")).unwrap();
        UnixListener::bind(dir.join("vm.monitor")).unwrap()
    }

    #[test]
    fn files_are_the_regular_files_minus_the_serial_log() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let _sock = populate(&out);
        let c = config(&out);
        let files = FileSelection::new(&c).collect(&BuildState::default()).unwrap();
        let names: Vec<_> = files.iter().map(|f| f.strip_prefix(&out).unwrap().to_str().unwrap()).collect();
        assert_eq!(names, [EFIVARS_FILE, "sub/extra", "vm", "vm-1"]);
        assert!(files.iter().all(|f| f.starts_with(&out)));
    }

    #[test]
    fn efivars_dropped_and_serial_log_elsewhere_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let _sock = populate(&out);
        let mut c = config(&out);
        c.efi_drop_efivars = true;
        c.serial_log = tmp.path().join("elsewhere.log").display().to_string();
        // the serial log setting points elsewhere, so out/serial.log is an ordinary file here;
        // the output dir is named through a `..` detour to exercise path resolution
        c.output_directory = out.join("sub/..").display().to_string();
        let state = BuildState {
            efi: Some(EfiFiles { code: "/usr/share/OVMF/OVMF_CODE.fd".into(), vars: out.join(EFIVARS_FILE) }),
            ..BuildState::default()
        };
        let files = FileSelection::new(&c).collect(&state).unwrap();
        let names: Vec<_> = files.iter().map(|f| f.file_name().unwrap().to_str().unwrap()).collect();
        assert_eq!(names, ["serial.log", "extra", "vm", "vm-1"]);
    }

    #[test]
    fn missing_directory_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let c = config(&tmp.path().join("nope"));
        let e = FileSelection::new(&c).collect(&BuildState::default()).unwrap_err();
        assert!(e.to_string().contains("cannot list the output directory"), "{e}");
    }

    #[tokio::test]
    async fn artifact_interface_and_destroy() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let _sock = populate(&out);
        let c = config(&out);
        let mut gd = Map::new();
        gd.insert("PackerHTTPPort".into(), json!("8080"));
        let state = BuildState {
            disk_paths: vec![out.join("vm"), out.join("vm-1")],
            generated_data: gd,
            accel: Some(crate::driver::accel::Accelerator::Tcg),
            ..BuildState::default()
        };
        let a = QemuArtifact::from_state(&c, &state).unwrap();
        assert_eq!(a.builder_id(), "qemu-rs.builder");
        assert_eq!(a.id(), "vm");
        assert_eq!(a.string(), format!("VM files in directory: {}", out.display()));
        assert_eq!(a.files().len(), 4);
        assert!(a.files().contains(&out.join("vm-1").display().to_string()));
        assert_eq!(a.state("diskName"), Some(json!("vm")));
        assert_eq!(a.state("diskType"), Some(json!("qcow2")));
        assert_eq!(a.state("diskSize"), Some(json!("40960M")));
        assert_eq!(a.state("domainType"), Some(json!("tcg")));
        assert_eq!(
            a.state("diskPaths"),
            Some(json!([out.join("vm").display().to_string(), out.join("vm-1").display().to_string()]))
        );
        assert_eq!(a.state("generated_data"), Some(json!({"PackerHTTPPort": "8080"})));
        assert_eq!(a.state("par.artifact.metadata"), None);
        // recorded files win over a fresh listing
        let recorded = BuildState { artifact_files: vec![out.join("vm")], ..BuildState::default() };
        let b = QemuArtifact::from_state(&c, &recorded).unwrap();
        assert_eq!(b.files(), [out.join("vm").display().to_string()]);
        assert_eq!(b.state("domainType"), Some(json!("auto")));
        a.destroy().await.unwrap();
        assert!(!out.exists());
        a.destroy().await.unwrap(); // already gone: fine
    }

    #[test]
    fn disk_size_rounds_up_to_mib() {
        assert_eq!(disk_size_string(40960 << 20), "40960M");
        assert_eq!(disk_size_string((1 << 20) + 1), "2M");
        assert_eq!(disk_size_string(0), "0M");
    }
}
