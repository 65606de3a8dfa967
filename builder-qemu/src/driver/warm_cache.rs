//! The warm-start cache: machines saved the moment SSH first answered, restored by later builds
//! whose inputs up to that moment are the same (`warm_start`).
//!
//! An entry is a directory `<root>/<key>/` (mode 0700) holding the machine's state as QEMU's
//! migration stream wrote it (`state.mig`: RAM and device state), a copy of every disk
//! (`disk-0`, `disk-1`…) and of the UEFI variable store (`efivars.fd`) taken while the machine was
//! paused, the build's SSH private key (`ssh_key`: the guest trusts only that key), and
//! `meta.json` with the size and SHA-256 of each file. Every file is 0600: the entry holds guest RAM
//! and a private key. `key` is the SHA-256 of everything that shapes the machine up to that moment
//! ([`KeyMaterial`]).
//!
//! Entries are written into a temp directory and renamed into place, so a reader never sees half
//! an entry. `<root>/<key>.lock` is `flock`ed: shared while a build restores from the entry,
//! exclusive while an entry is published or removed, so eviction never deletes an entry a build is
//! reading. Eviction keeps the total size under a limit, least recently used first (a use touches
//! `meta.json`).
//!
//! QEMU's own `savevm` (internal qcow2 snapshots) would put the RAM into the disk image, which
//! then is the artifact; a migration stream in a file keeps the artifact free of it.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};

/// Version of the entry layout; entries of another version are ignored (and evicted in time).
pub const LAYOUT_VERSION: u32 = 1;
/// The migration stream's file name in an entry.
pub const STATE_FILE: &str = "state.mig";
/// The private key's file name in an entry.
pub const KEY_FILE: &str = "ssh_key";
/// The UEFI variable store's file name in an entry.
pub const EFIVARS_FILE: &str = "efivars.fd";
const META_FILE: &str = "meta.json";

/// The file name of the n-th disk (0 = main disk) in an entry.
pub fn disk_file(n: usize) -> String {
    format!("disk-{n}")
}

/// Problems with the cache.
#[derive(Debug, thiserror::Error)]
pub enum WarmError {
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was done.
        what: &'static str,
        /// On which path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// An entry does not match its `meta.json`.
    #[error("{0}")]
    Corrupt(String),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> WarmError + 'a {
    move |source| WarmError::Io { what, path: path.display().to_string(), source }
}

/// What a cache key is made of: named parts, each a line of text. Adding the same name twice
/// keeps both. The key is the SHA-256 of the lines; the lines themselves are kept in the entry
/// (`meta.json`) so a miss can be explained.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyMaterial {
    lines: Vec<String>,
}

impl KeyMaterial {
    /// Adds a part.
    pub fn add(&mut self, name: &str, value: impl std::fmt::Display) {
        self.lines.push(format!("{name} {value}"));
    }

    /// Adds the content of a file (its SHA-256), or that it is missing.
    pub fn add_file(&mut self, name: &str, path: &Path) {
        let digest = match sha256_file(path) {
            Ok((digest, size)) => format!("{} size={size} sha256={digest}", path.display()),
            Err(_) => format!("{} unreadable", path.display()),
        };
        self.add(name, digest);
    }

    /// Adds every file below `path` (a file or a directory tree), by relative path and content.
    pub fn add_tree(&mut self, name: &str, path: &Path) {
        let mut files = Vec::new();
        walk(path, Path::new(""), &mut files);
        if files.is_empty() {
            self.add(name, format!("{} empty-or-missing", path.display()));
        }
        for (rel, full) in files {
            let digest = sha256_file(&full).map(|(d, _)| d).unwrap_or_else(|_| "unreadable".into());
            self.add(name, format!("{}/{} sha256={digest}", path.display(), rel.display()));
        }
    }

    /// The lines, in order.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The key: SHA-256 of the lines, hex.
    pub fn key(&self) -> String {
        let mut h = Sha256::new();
        for l in &self.lines {
            h.update(l.as_bytes());
            h.update(b"\n");
        }
        hex::encode(h.finalize())
    }
}

fn walk(path: &Path, rel: &Path, out: &mut Vec<(PathBuf, PathBuf)>) {
    let Ok(meta) = std::fs::metadata(path) else { return };
    if meta.is_file() {
        out.push((rel.to_path_buf(), path.to_path_buf()));
        return;
    }
    let Ok(dir) = std::fs::read_dir(path) else { return };
    let mut names: Vec<_> = dir.flatten().map(|e| e.file_name()).collect();
    names.sort();
    for n in names {
        walk(&path.join(&n), &rel.join(&n), out);
    }
}

/// SHA-256 (hex) and size of a file.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let never = packer_sdk::CancellationToken::new();
    let digest = crate::steps::manifest::hash_file::<Sha256>(path, &never)?.unwrap_or_default();
    Ok((digest, std::fs::metadata(path)?.len()))
}

/// The first 12 hex digits of a key, for messages and names.
pub fn short_key(key: &str) -> &str {
    &key[..key.len().min(12)]
}

/// Now, in seconds since the epoch (the unit of [`EntryMeta::saved_at`]).
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// One file of an entry, as `meta.json` records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileMeta {
    /// File name in the entry.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// An entry's `meta.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EntryMeta {
    /// [`LAYOUT_VERSION`].
    pub version: u32,
    /// The key (the entry's directory name).
    pub key: String,
    /// What the key was made of.
    pub key_material: Vec<String>,
    /// When the machine was saved (seconds since the epoch).
    pub saved_at: u64,
    /// Number of disks (`disk-0`… ).
    pub disks: usize,
    /// Whether `efivars.fd` is there.
    pub efivars: bool,
    /// The SSH public key line the guest trusts.
    pub public_key_line: String,
    /// Whether the entry keeps the private key (`ssh_key`): the build's temporary key; a key of
    /// the user's (`ssh_private_key_file`) is not copied into the cache.
    pub stored_key: bool,
    /// Every file with its size and digest.
    pub files: Vec<FileMeta>,
}

/// The cache directory.
#[derive(Debug, Clone)]
pub struct WarmCache {
    root: PathBuf,
}

/// A lock on one key: shared (restoring) or exclusive (publishing, removing). Released on drop or
/// when the process dies.
#[derive(Debug)]
pub struct KeyLock {
    _lock: Flock<File>,
}

impl WarmCache {
    /// The cache at `root` (created when first written).
    pub fn new(root: impl Into<PathBuf>) -> WarmCache {
        WarmCache { root: root.into() }
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of the entry `key`.
    pub fn entry_dir(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn ensure_root(&self) -> Result<(), WarmError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(io("cannot create", &self.root))
    }

    /// Takes the lock of `key`, waiting for it (`exclusive`: for writing). Blocking: call it from
    /// a blocking task.
    pub fn lock(&self, key: &str, exclusive: bool) -> Result<KeyLock, WarmError> {
        self.ensure_root()?;
        let path = self.root.join(format!("{key}.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io("cannot open", &path))?;
        let arg = if exclusive { FlockArg::LockExclusive } else { FlockArg::LockShared };
        let lock = Flock::lock(file, arg).map_err(|(_, e)| WarmError::Io {
            what: "cannot lock",
            path: path.display().to_string(),
            source: e.into(),
        })?;
        Ok(KeyLock { _lock: lock })
    }

    fn try_lock_exclusive(&self, key: &str) -> Option<KeyLock> {
        let path = self.root.join(format!("{key}.lock"));
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(path).ok()?;
        Flock::lock(file, FlockArg::LockExclusiveNonblock).ok().map(|l| KeyLock { _lock: l })
    }

    /// The entry `key`, checked against its `meta.json` (every file's size and SHA-256): `Ok(None)`
    /// when there is none, `Err(Corrupt)` when it does not match. Call it holding the key's lock.
    /// Blocking.
    pub fn open(&self, key: &str) -> Result<Option<EntryMeta>, WarmError> {
        let dir = self.entry_dir(key);
        let meta_path = dir.join(META_FILE);
        let text = match std::fs::read_to_string(&meta_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !dir.exists() => return Ok(None),
            Err(e) => return Err(WarmError::Corrupt(format!("{}: {e}", meta_path.display()))),
        };
        let meta: EntryMeta = serde_json::from_str(&text)
            .map_err(|e| WarmError::Corrupt(format!("{}: not a warm-start entry: {e}", meta_path.display())))?;
        if meta.version != LAYOUT_VERSION || meta.key != key {
            return Err(WarmError::Corrupt(format!(
                "{}: layout version {} for key {} (expected {LAYOUT_VERSION}, {key})",
                meta_path.display(),
                meta.version,
                meta.key
            )));
        }
        let mut needed = vec![STATE_FILE.to_string()];
        if meta.stored_key {
            needed.push(KEY_FILE.to_string());
        }
        needed.extend((0..meta.disks).map(disk_file));
        if meta.efivars {
            needed.push(EFIVARS_FILE.to_string());
        }
        for name in needed {
            let f = meta
                .files
                .iter()
                .find(|f| f.name == name)
                .ok_or_else(|| WarmError::Corrupt(format!("{}: no record of {name}", meta_path.display())))?;
            let path = dir.join(&f.name);
            let (digest, size) =
                sha256_file(&path).map_err(|e| WarmError::Corrupt(format!("{}: {e}", path.display())))?;
            if size != f.size || digest != f.sha256 {
                return Err(WarmError::Corrupt(format!(
                    "{}: {size} bytes with SHA-256 {digest}, the entry recorded {} bytes with {}",
                    path.display(),
                    f.size,
                    f.sha256
                )));
            }
        }
        // a use: least recently used entries are evicted first
        let _ = File::options().write(true).open(&meta_path).and_then(|f| f.set_modified(SystemTime::now()));
        Ok(Some(meta))
    }

    /// Removes the entry `key` (call it holding the exclusive lock). Blocking.
    pub fn remove(&self, key: &str) -> Result<(), WarmError> {
        let dir = self.entry_dir(key);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("cannot remove", &dir)(e)),
        }
    }

    /// Removes the entry `key` once no build restores from it (takes the exclusive lock).
    /// Blocking.
    pub fn discard(&self, key: &str) -> Result<(), WarmError> {
        let _lock = self.lock(key, true)?;
        self.remove(key)
    }

    /// A fresh private directory (0700) for a new entry, inside the cache (so publishing is a
    /// rename); removed when dropped unless published.
    pub fn staging_dir(&self, key: &str) -> Result<tempfile::TempDir, WarmError> {
        self.ensure_root()?;
        let dir = tempfile::Builder::new()
            .prefix(&format!(".staging-{}-", short_key(key)))
            .tempdir_in(&self.root)
            .map_err(io("cannot create a directory in", &self.root))?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(io("cannot chmod", dir.path()))?;
        Ok(dir)
    }

    /// Publishes `staging` (filled by the caller: the state, disks, key) as the entry `meta.key`:
    /// records every file's size and digest in `meta.json` and renames the directory into place,
    /// replacing an older entry of that key. Blocking (hashes the files).
    pub fn publish(&self, staging: &Path, mut meta: EntryMeta) -> Result<u64, WarmError> {
        let mut total = 0;
        let mut names: Vec<String> = std::fs::read_dir(staging)
            .map_err(io("cannot read", staging))?
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        meta.files.clear();
        for name in names {
            let path = staging.join(&name);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(io("cannot chmod", &path))?;
            let (sha256, size) = sha256_file(&path).map_err(io("cannot read", &path))?;
            total += size;
            meta.files.push(FileMeta { name, size, sha256 });
        }
        let meta_path = staging.join(META_FILE);
        let text = serde_json::to_string_pretty(&meta).expect("meta serializes");
        std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&meta_path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
            .map_err(io("cannot write", &meta_path))?;
        let _lock = self.lock(&meta.key, true)?;
        self.remove(&meta.key)?;
        let dir = self.entry_dir(&meta.key);
        std::fs::rename(staging, &dir).map_err(io("cannot rename into", &dir))?;
        Ok(total)
    }

    /// The entries, least recently used first: key, size in bytes, last use.
    pub fn entries(&self) -> Vec<(String, u64, SystemTime)> {
        let Ok(dir) = std::fs::read_dir(&self.root) else { return Vec::new() };
        let mut out = Vec::new();
        for e in dir.flatten() {
            let Ok(name) = e.file_name().into_string() else { continue };
            if name.starts_with('.') || name.ends_with(".lock") || !e.path().is_dir() {
                continue;
            }
            let mut files = Vec::new();
            walk(&e.path(), Path::new(""), &mut files);
            // allocated size: disks are sparse
            let size = files
                .iter()
                .filter_map(|(_, p)| std::fs::metadata(p).ok())
                .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512)
                .sum();
            let used = std::fs::metadata(e.path().join(META_FILE))
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            out.push((name, size, used));
        }
        out.sort_by_key(|(_, _, used)| *used);
        out
    }

    /// Removes least recently used entries until the cache holds at most `limit` bytes, never
    /// `keep` and never an entry another build holds a lock on; also removes staging directories
    /// left by killed builds (older than a day). Returns the removed keys. Blocking.
    pub fn evict(&self, limit: u64, keep: &str) -> Vec<String> {
        if let Ok(dir) = std::fs::read_dir(&self.root) {
            let day_ago = SystemTime::now() - Duration::from_secs(86_400);
            for e in dir.flatten() {
                let old = e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < day_ago);
                if e.file_name().to_string_lossy().starts_with(".staging-") && old {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let entries = self.entries();
        let mut total: u64 = entries.iter().map(|(_, s, _)| s).sum();
        let mut removed = Vec::new();
        for (key, size, _) in entries {
            if total <= limit {
                break;
            }
            if key == keep {
                continue;
            }
            let Some(_lock) = self.try_lock_exclusive(&key) else { continue };
            if self.remove(&key).is_ok() {
                let _ = std::fs::remove_file(self.root.join(format!("{key}.lock")));
                total = total.saturating_sub(size);
                removed.push(key);
            }
        }
        removed
    }
}

/// Copies `from` to `to` keeping holes (`cp --sparse=always --reflink=auto`): disks are mostly
/// holes, and a plain copy would write every zero. The standard library's copy writes them all.
pub async fn copy_sparse(from: &Path, to: &Path) -> Result<(), WarmError> {
    let out = tokio::process::Command::new("cp")
        .args(["--sparse=always", "--reflink=auto", "--"])
        .arg(from)
        .arg(to)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(io("cannot run cp for", from))?;
    if !out.status.success() {
        return Err(WarmError::Io {
            what: "cannot copy",
            path: format!("{} to {}", from.display(), to.display()),
            source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        });
    }
    Ok(())
}

/// A path quoted for `/bin/sh` (QEMU runs `exec:` migration URIs through it).
pub fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(cache: &WarmCache, key: &str, disk: &[u8]) -> EntryMeta {
        let tmp = cache.staging_dir(key).unwrap();
        let staging = tmp.path();
        std::fs::write(staging.join(STATE_FILE), b"state").unwrap();
        std::fs::write(staging.join(KEY_FILE), b"private").unwrap();
        std::fs::write(staging.join(disk_file(0)), disk).unwrap();
        let meta = EntryMeta {
            version: LAYOUT_VERSION,
            key: key.to_string(),
            key_material: vec!["a b".into()],
            saved_at: 1,
            disks: 1,
            efivars: false,
            public_key_line: "ssh-ed25519 AAAA".into(),
            stored_key: true,
            files: Vec::new(),
        };
        cache.publish(staging, meta.clone()).unwrap();
        assert!(!staging.exists());
        meta
    }

    #[test]
    fn key_follows_every_part() {
        let mut a = KeyMaterial::default();
        a.add("boot_command", "<enter>");
        let mut b = a.clone();
        assert_eq!(a.key(), b.key());
        b.add("iso", "sha256:00");
        assert_ne!(a.key(), b.key());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), "1").unwrap();
        let mut c = KeyMaterial::default();
        c.add_tree("http", dir.path());
        std::fs::write(dir.path().join("x"), "2").unwrap();
        let mut d = KeyMaterial::default();
        d.add_tree("http", dir.path());
        assert_ne!(c.key(), d.key(), "a changed file changes the key");
    }

    #[test]
    fn published_entries_are_private_verified_and_evicted_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = WarmCache::new(dir.path().join("warm"));
        assert!(cache.open("k1").unwrap().is_none());
        entry(&cache, "k1", &[1u8; 8192]);
        let meta = cache.open("k1").unwrap().expect("entry");
        assert_eq!(meta.files.len(), 3);
        let mode = std::fs::metadata(cache.entry_dir("k1").join(KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = std::fs::metadata(cache.entry_dir("k1")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);

        // a flipped byte is found
        let state = cache.entry_dir("k1").join(STATE_FILE);
        std::fs::write(&state, b"stale").unwrap();
        assert!(matches!(cache.open("k1"), Err(WarmError::Corrupt(_))));
        cache.remove("k1").unwrap();
        assert!(cache.open("k1").unwrap().is_none());

        // least recently used goes first; a locked entry stays
        entry(&cache, "old", &[1u8; 8192]);
        std::thread::sleep(Duration::from_millis(20));
        entry(&cache, "mid", &[2u8; 8192]);
        std::thread::sleep(Duration::from_millis(20));
        entry(&cache, "new", &[3u8; 8192]);
        let held = cache.lock("old", false).unwrap();
        let removed = cache.evict(1, "new");
        assert_eq!(removed, ["mid"]);
        drop(held);
        let removed = cache.evict(1, "new");
        assert_eq!(removed, ["old"]);
        assert!(cache.open("new").unwrap().is_some());
    }

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(shell_quote(Path::new("/a b/it's")), r"'/a b/it'\''s'");
    }
}
