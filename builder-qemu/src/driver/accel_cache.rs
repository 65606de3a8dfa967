//! Remembering the KVM probe's verdict for this host boot.
//!
//! The probe ([`super::accel::probe_kvm`]) costs up to [`super::accel::PROBE_TIMEOUT`] on a host
//! whose KVM hangs, on every build. Its verdict cannot change while the host runs the same kernel
//! with the same QEMU binary and the same `/dev/kvm` node, so it is kept in a small JSON file per
//! QEMU binary under `$XDG_CACHE_HOME/qemu-rs/accel` (else `~/.cache/qemu-rs/accel`; the directory
//! can be set with `QEMU_RS_ACCEL_CACHE_DIR`). The entry is keyed by the host's boot id, the kernel
//! release, the QEMU binary (path, size, modification time), the `/dev/kvm` node (device number,
//! inode, change time) and the probe image itself: when any of them changes the host probes again.
//! Parallel builds take an exclusive lock on the entry, so one probes and the others read its result.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};

use super::accel::{KvmUnusable, PROBE_IMAGE};

/// Everything the KVM verdict depends on, as one comparable string per part.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProbeKey {
    /// `/proc/sys/kernel/random/boot_id`: a new one after every host reboot.
    pub boot_id: String,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: String,
    /// The QEMU binary: resolved path, size and modification time.
    pub qemu: String,
    /// `/dev/kvm`: device number, inode and change time (empty when it does not exist).
    pub kvm_node: String,
    /// SHA-256 of the probe image (a new probe invalidates old verdicts).
    pub probe: String,
}

impl ProbeKey {
    /// The key for `qemu` (a path or a name looked up on `PATH`) on this host, now.
    pub fn current(qemu: &Path) -> ProbeKey {
        let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string()).unwrap_or_default();
        let qemu = qemu_identity(qemu);
        let kvm_node = match std::fs::metadata("/dev/kvm") {
            Ok(m) => format!("rdev={} ino={} ctime={}.{}", m.rdev(), m.ino(), m.ctime(), m.ctime_nsec()),
            Err(_) => String::new(),
        };
        ProbeKey {
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            kernel: read("/proc/sys/kernel/osrelease"),
            qemu,
            kvm_node,
            probe: hex::encode(Sha256::digest(PROBE_IMAGE)),
        }
    }
}

/// A file without reading it: its path, size and modification time (or that it is missing).
pub fn file_identity(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(m) => format!("{} size={} mtime={}.{}", path.display(), m.len(), m.mtime(), m.mtime_nsec()),
        Err(_) => format!("{} missing", path.display()),
    }
}

/// The QEMU binary `qemu` (a path or a name looked up on `PATH`) as [`file_identity`] of its
/// resolved path: a new QEMU package changes it.
pub fn qemu_identity(qemu: &Path) -> String {
    file_identity(&resolve(qemu))
}

/// `qemu` as an absolute path: itself when it names a path, else the first match on `PATH`.
fn resolve(qemu: &Path) -> PathBuf {
    if qemu.components().count() > 1 {
        return std::fs::canonicalize(qemu).unwrap_or_else(|_| qemu.to_path_buf());
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(qemu))
        .find(|p| p.is_file())
        .and_then(|p| std::fs::canonicalize(p).ok())
        .unwrap_or_else(|| qemu.to_path_buf())
}

/// A remembered verdict.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Entry {
    key: ProbeKey,
    /// `None`: KVM works; `Some(reason)`: it does not.
    unusable: Option<String>,
}

/// Where a verdict came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The probe ran during this call.
    Probed,
    /// An earlier probe on this host boot decided.
    Cached,
}

/// The cache directory: `QEMU_RS_ACCEL_CACHE_DIR`, else `$XDG_CACHE_HOME/qemu-rs/accel`, else
/// `$HOME/.cache/qemu-rs/accel`, else the temp directory.
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("QEMU_RS_ACCEL_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|d| !d.is_empty()).map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("qemu-rs").join("accel")
}

/// The entry file for a QEMU binary (one per binary; its key decides whether it is still valid).
fn entry_path(dir: &Path, key: &ProbeKey) -> PathBuf {
    let path_part = key.qemu.split(' ').next().unwrap_or_default();
    let h = hex::encode(&Sha256::digest(path_part.as_bytes())[..8]);
    dir.join(format!("kvm-{h}.json"))
}

/// Returns the remembered verdict for `key` in `dir`, or runs `probe`, remembers its verdict and
/// returns it. Any problem with the cache (unwritable directory, corrupt file) only costs a probe:
/// it is logged and the probe's verdict is used.
pub async fn verdict_with<F, Fut>(dir: &Path, key: &ProbeKey, probe: F) -> (Result<(), KvmUnusable>, Verdict)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), KvmUnusable>>,
{
    let path = entry_path(dir, key);
    let locked = {
        let (dir, file) = (dir.to_path_buf(), path.clone());
        tokio::task::spawn_blocking(move || open_locked(&dir, &file)).await.ok().and_then(|r| {
            r.map_err(|e| tracing::info!("accelerator probe cache {} not usable: {e}", path.display())).ok()
        })
    };
    let Some(mut file) = locked else {
        return (probe().await, Verdict::Probed);
    };
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    if let Ok(entry) = serde_json::from_str::<Entry>(&text) {
        if &entry.key == key {
            let verdict = match entry.unusable {
                None => Ok(()),
                Some(reason) => Err(KvmUnusable(reason)),
            };
            return (verdict, Verdict::Cached);
        }
        tracing::info!("accelerator probe cache {}: the host changed, probing again", path.display());
    }
    // the lock is held while probing: parallel builds wait for this verdict instead of probing too
    let verdict = probe().await;
    let entry = Entry { key: key.clone(), unusable: verdict.as_ref().err().map(|e| e.0.clone()) };
    let write = serde_json::to_vec_pretty(&entry).map_err(std::io::Error::other).and_then(|bytes| {
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&bytes)
    });
    if let Err(e) = write {
        tracing::info!("cannot remember the accelerator probe's verdict in {}: {e}", path.display());
    }
    (verdict, Verdict::Probed)
}

fn open_locked(dir: &Path, path: &Path) -> std::io::Result<Flock<File>> {
    std::fs::create_dir_all(dir)?;
    let file = File::options().read(true).write(true).create(true).truncate(false).open(path)?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| std::io::Error::from(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn key() -> ProbeKey {
        ProbeKey::current(Path::new("qemu-system-x86_64"))
    }

    #[test]
    fn key_describes_this_host() {
        let k = key();
        assert!(!k.boot_id.is_empty() && !k.kernel.is_empty());
        assert!(k.qemu.starts_with('/'), "{}", k.qemu);
        assert_eq!(k, key(), "the key is stable");
    }

    #[tokio::test]
    async fn second_call_uses_the_verdict_and_a_new_key_probes_again() {
        let dir = tempfile::tempdir().unwrap();
        let probes = AtomicUsize::new(0);
        let probe = || async {
            probes.fetch_add(1, Ordering::SeqCst);
            Err(KvmUnusable("hangs".into()))
        };
        let k = key();
        let (v, how) = verdict_with(dir.path(), &k, probe).await;
        assert_eq!((v, how), (Err(KvmUnusable("hangs".into())), Verdict::Probed));
        let (v, how) = verdict_with(dir.path(), &k, probe).await;
        assert_eq!((v, how), (Err(KvmUnusable("hangs".into())), Verdict::Cached));
        assert_eq!(probes.load(Ordering::SeqCst), 1);

        for changed in [
            ProbeKey { boot_id: "another-boot".into(), ..k.clone() },
            ProbeKey { kernel: "6.99".into(), ..k.clone() },
            ProbeKey { kvm_node: "rdev=1 ino=2 ctime=3.4".into(), ..k.clone() },
            ProbeKey { probe: "0".into(), ..k.clone() },
        ] {
            let before = probes.load(Ordering::SeqCst);
            let (_, how) = verdict_with(dir.path(), &changed, probe).await;
            assert_eq!(how, Verdict::Probed, "{changed:?}");
            assert_eq!(probes.load(Ordering::SeqCst), before + 1);
        }
    }

    #[tokio::test]
    async fn a_new_qemu_binary_is_probed_and_a_corrupt_entry_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let bin_dir = tempfile::tempdir().unwrap();
        let qemu = bin_dir.path().join("qemu-system-x86_64");
        std::fs::write(&qemu, b"v1").unwrap();
        let k1 = ProbeKey::current(&qemu);
        let ok = || async { Ok(()) };
        assert_eq!(verdict_with(dir.path(), &k1, ok).await.1, Verdict::Probed);
        assert_eq!(verdict_with(dir.path(), &k1, ok).await.1, Verdict::Cached);
        // an upgraded QEMU (other size and mtime) must be probed again
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&qemu, b"version 2").unwrap();
        let k2 = ProbeKey::current(&qemu);
        assert_ne!(k1, k2);
        assert_eq!(verdict_with(dir.path(), &k2, ok).await, (Ok(()), Verdict::Probed));
        std::fs::write(entry_path(dir.path(), &k2), b"{not json").unwrap();
        assert_eq!(verdict_with(dir.path(), &k2, ok).await, (Ok(()), Verdict::Probed));
        assert_eq!(verdict_with(dir.path(), &k2, ok).await, (Ok(()), Verdict::Cached));
    }

    #[tokio::test]
    async fn an_unusable_cache_directory_still_probes() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let (v, how) = verdict_with(&file.path().join("sub"), &key(), || async { Ok(()) }).await;
        assert_eq!((v, how), (Ok(()), Verdict::Probed));
    }
}
