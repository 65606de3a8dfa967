//! Records the artifact's files and, with `output_checksum`, writes a checksum manifest.
//!
//! The manifest is `<output_directory>/SHA256SUMS` (or `SHA512SUMS`) in GNU coreutils format —
//! one `<hex>  <path relative to the output directory>` line per artifact file, sorted — so
//! `cd <output_directory> && sha256sum -c SHA256SUMS` verifies the build. Names holding a
//! backslash or a newline are escaped as coreutils does (the line then starts with `\`).
//! The manifest itself is added to the artifact's files (last); it does not list itself.
//!
//! Which files belong to the artifact is [`FileSelection`]'s rule (the serial log and, with
//! `efi_drop_efivars`, `efivars.fd` are left out). The step stores them in
//! `BuildState::artifact_files`, which [`QemuArtifact::from_state`](crate::artifact::QemuArtifact::from_state)
//! uses. Run it last, after the disk conversion.

use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use packer_sdk::step::{Step, StepContext, StepError};
use packer_sdk::CancellationToken;
use sha2::Digest;

use crate::artifact::FileSelection;
use crate::config::{Config, OutputChecksum};
use crate::state::BuildState;

/// Read size while hashing.
const CHUNK: usize = 1 << 20;

/// The manifest file name for `algorithm` (`None` for [`OutputChecksum::None`]).
pub fn manifest_name(algorithm: OutputChecksum) -> Option<&'static str> {
    match algorithm {
        OutputChecksum::None => None,
        OutputChecksum::Sha256 => Some("SHA256SUMS"),
        OutputChecksum::Sha512 => Some("SHA512SUMS"),
    }
}

/// The manifest step.
#[derive(Debug, Clone)]
pub struct WriteManifest {
    algorithm: OutputChecksum,
    selection: FileSelection,
}

impl WriteManifest {
    /// The step for `config` (`output_checksum`, `output_directory`, `efi_drop_efivars`,
    /// `serial_log`).
    pub fn new(config: &Config) -> Self {
        WriteManifest { algorithm: config.output_checksum, selection: FileSelection::new(config) }
    }

    fn manifest_path(&self) -> Option<PathBuf> {
        manifest_name(self.algorithm).map(|n| self.selection.dir.join(n))
    }
}

/// Hashes `path` with `D`, checking `cancel` between chunks. `Ok(None)` when cancelled.
pub fn hash_file<D: Digest>(path: &Path, cancel: &CancellationToken) -> std::io::Result<Option<String>> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = D::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        if cancel.is_cancelled() {
            return Ok(None);
        }
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(Some(hex::encode(hasher.finalize())))
}

/// One manifest line in GNU coreutils format for `digest` of `name` (bytes of the relative path).
pub fn manifest_line(digest: &str, name: &[u8]) -> Vec<u8> {
    let escape = name.iter().any(|&b| b == b'\\' || b == b'\n');
    let mut line = Vec::with_capacity(digest.len() + name.len() + 4);
    if escape {
        line.push(b'\\');
    }
    line.extend_from_slice(digest.as_bytes());
    line.extend_from_slice(b"  ");
    for &b in name {
        match b {
            b'\\' if escape => line.extend_from_slice(b"\\\\"),
            b'\n' if escape => line.extend_from_slice(b"\\n"),
            _ => line.push(b),
        }
    }
    line.push(b'\n');
    line
}

/// Hashes `files` (under `dir`) and returns the manifest's content; `Ok(None)` when cancelled.
fn build_manifest(
    algorithm: OutputChecksum,
    dir: &Path,
    files: &[PathBuf],
    cancel: &CancellationToken,
) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    for file in files {
        let digest = match algorithm {
            OutputChecksum::Sha512 => hash_file::<sha2::Sha512>(file, cancel),
            _ => hash_file::<sha2::Sha256>(file, cancel),
        };
        let digest = match digest {
            Ok(Some(d)) => d,
            Ok(None) => return Ok(None),
            Err(e) => return Err(format!("cannot read {} to checksum it: {e}", file.display())),
        };
        let rel = file.strip_prefix(dir).unwrap_or(file);
        out.extend(manifest_line(&digest, rel.as_os_str().as_bytes()));
    }
    Ok(Some(out))
}

fn tmp_path(manifest: &Path) -> PathBuf {
    let mut s = manifest.as_os_str().to_os_string();
    s.push(".tmp");
    PathBuf::from(s)
}

#[async_trait]
impl Step<BuildState> for WriteManifest {
    fn name(&self) -> &'static str {
        "write manifest"
    }

    async fn run(&self, ctx: &StepContext, state: &mut BuildState) -> Result<(), StepError> {
        let mut files = self.selection.collect(state).map_err(|e| StepError::failed(e.to_string()))?;
        let Some(manifest) = self.manifest_path() else {
            state.artifact_files = files;
            return Ok(());
        };
        let tmp = tmp_path(&manifest);
        files.retain(|f| f.file_name() != manifest.file_name() && f.file_name() != tmp.file_name());
        let name = manifest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        ctx.ui.say(&format!("Writing {name} ({} files)...", files.len())).await;
        let (algorithm, dir, list, cancel) =
            (self.algorithm, self.selection.dir.clone(), files.clone(), ctx.cancel.clone());
        let content = tokio::task::spawn_blocking(move || build_manifest(algorithm, &dir, &list, &cancel))
            .await
            .map_err(|e| StepError::failed(format!("checksumming the artifact failed: {e}")))?
            .map_err(|e| StepError::failed(format!("{e}; the output directory changed during the build?")))?;
        let Some(content) = content else { return Err(StepError::Cancelled) };
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&content)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &manifest)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            StepError::failed(format!(
                "cannot write {}: {e}; check free space and permissions of the output directory",
                manifest.display()
            ))
        })?;
        files.push(manifest);
        state.artifact_files = files;
        Ok(())
    }

    async fn cleanup(&self, _ctx: &StepContext, _state: &mut BuildState, _outcome: &Result<(), StepError>) {
        if let Some(manifest) = self.manifest_path() {
            let _ = std::fs::remove_file(tmp_path(&manifest));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::shutdown::test_ui::Recorder;
    use std::process::Command;
    use std::sync::Arc;

    fn ctx() -> StepContext {
        StepContext { ui: Arc::new(Recorder::default()), cancel: CancellationToken::new() }
    }

    fn config(dir: &Path, algorithm: OutputChecksum) -> Config {
        Config {
            output_directory: dir.display().to_string(),
            vm_name: "vm".into(),
            output_checksum: algorithm,
            serial_log: dir.join("serial.log").display().to_string(),
            ..Config::default()
        }
    }

    /// An output directory with a 3 MiB disk (more than one hashing chunk), a second disk, a
    /// nested file, awkward names, and the serial log.
    fn populate(dir: &Path) {
        let disk: Vec<u8> = (0..(3u32 << 20) + 17).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        std::fs::write(dir.join("vm"), disk).unwrap();
        std::fs::write(dir.join("vm-1"), b"").unwrap();
        std::fs::create_dir(dir.join("sub dir")).unwrap();
        std::fs::write(dir.join("sub dir/a file"), b"nested").unwrap();
        std::fs::write(dir.join("back\\slash"), b"b").unwrap();
        std::fs::write(dir.join("new\nline"), b"n").unwrap();
        std::fs::write(dir.join("serial.log"), b"console").unwrap();
    }

    fn check(tool: &str, dir: &Path, manifest: &str) -> std::process::Output {
        Command::new(tool).args(["-c", "--strict", manifest]).current_dir(dir).output().unwrap()
    }

    #[tokio::test]
    async fn sha256sums_verifies_with_coreutils() {
        let tmp = tempfile::tempdir().unwrap();
        populate(tmp.path());
        let mut state = BuildState::default();
        let step = WriteManifest::new(&config(tmp.path(), OutputChecksum::Sha256));
        step.run(&ctx(), &mut state).await.unwrap();
        step.cleanup(&ctx(), &mut state, &Ok(())).await;
        let out = check("sha256sum", tmp.path(), "SHA256SUMS");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(stdout.matches(": OK").count(), 5, "{stdout}");
        let text = std::fs::read_to_string(tmp.path().join("SHA256SUMS")).unwrap();
        assert!(!text.contains("serial.log") && !text.contains("SHA256SUMS"), "{text}");
        // The manifest is the artifact's last file; the serial log is not an artifact file.
        let names: Vec<_> =
            state.artifact_files.iter().map(|f| f.strip_prefix(tmp.path()).unwrap().to_owned()).collect();
        assert_eq!(names.last().unwrap(), Path::new("SHA256SUMS"));
        assert_eq!(names.len(), 6);
        assert!(!names.contains(&PathBuf::from("serial.log")));
        assert!(!tmp.path().join("SHA256SUMS.tmp").exists());

        // A corrupted disk is caught by the real tool.
        let mut disk = std::fs::read(tmp.path().join("vm")).unwrap();
        disk[1 << 20] ^= 1;
        std::fs::write(tmp.path().join("vm"), disk).unwrap();
        let out = check("sha256sum", tmp.path(), "SHA256SUMS");
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("vm: FAILED"));
    }

    #[tokio::test]
    async fn sha512sums_verifies_with_coreutils() {
        let tmp = tempfile::tempdir().unwrap();
        populate(tmp.path());
        let mut state = BuildState::default();
        WriteManifest::new(&config(tmp.path(), OutputChecksum::Sha512)).run(&ctx(), &mut state).await.unwrap();
        let out = check("sha512sum", tmp.path(), "SHA512SUMS");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!tmp.path().join("SHA256SUMS").exists());
    }

    #[tokio::test]
    async fn no_checksum_only_records_the_files() {
        let tmp = tempfile::tempdir().unwrap();
        populate(tmp.path());
        let mut state = BuildState::default();
        WriteManifest::new(&config(tmp.path(), OutputChecksum::None)).run(&ctx(), &mut state).await.unwrap();
        assert_eq!(state.artifact_files.len(), 5);
        assert!(!tmp.path().join("SHA256SUMS").exists() && !tmp.path().join("SHA512SUMS").exists());
    }

    #[tokio::test]
    async fn cancelled_before_hashing() {
        let tmp = tempfile::tempdir().unwrap();
        populate(tmp.path());
        let c = ctx();
        c.cancel.cancel();
        let step = WriteManifest::new(&config(tmp.path(), OutputChecksum::Sha256));
        let err = step.run(&c, &mut BuildState::default()).await.unwrap_err();
        assert_eq!(err, StepError::Cancelled);
        assert!(!tmp.path().join("SHA256SUMS").exists());
    }

    #[test]
    fn line_format() {
        let d = "ab".repeat(32);
        assert_eq!(manifest_line(&d, b"vm"), format!("{d}  vm\n").into_bytes());
        assert_eq!(manifest_line(&d, b"a\\b\nc"), format!("\\{d}  a\\\\b\\nc\n").into_bytes());
        assert_eq!(manifest_name(OutputChecksum::None), None);
    }
}
