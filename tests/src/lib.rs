//! Helpers shared by the integration tests: locating the plugin binary and running the real
//! `packer` (Debian's 1.6.6) with the plugin installed in a throwaway plugin directory — through
//! the acceptance-test framework `packer-acctest` (`acctest/`), with qemu-rs as the plugin under
//! test — and what is particular to qemu-rs: the test guest, the guest slot, disk images.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use nix::fcntl::{Flock, FlockArg};

pub mod e2e;

pub use packer_acctest::{hcl_str, require_packer, run_with_deadline, PackerOutput, Plugin};

/// The plugin under test: the debug build of `packer-plugin-qemu-rs` under Packer 1.6's names
/// (builder, `qemu-rs-shell` provisioner, `qemu-rs-convert` post-processor), logging to the file
/// `QEMU_RS_LOG_PATH` names.
pub fn plugin() -> Plugin {
    plugin_from(&plugin_binary())
}

/// [`plugin`] with another binary (a released one, for instance).
pub fn plugin_from(bin: &Path) -> Plugin {
    Plugin::new(
        bin,
        &["packer-builder-qemu-rs", "packer-provisioner-qemu-rs-shell", "packer-post-processor-qemu-rs-convert"],
    )
    .with_log_env("QEMU_RS_LOG_PATH")
}

/// A [`packer_acctest::PackerEnv`] with qemu-rs installed (derefs to it).
pub struct PackerEnv(packer_acctest::PackerEnv);

impl PackerEnv {
    /// A fresh environment with the debug plugin.
    pub fn new() -> Self {
        PackerEnv(packer_acctest::PackerEnv::new(&plugin()))
    }

    /// A fresh environment with the plugin binary `bin`.
    pub fn with_plugin(bin: &Path) -> Self {
        PackerEnv(packer_acctest::PackerEnv::new(&plugin_from(bin)))
    }

    /// The framework's environment.
    pub fn into_inner(self) -> packer_acctest::PackerEnv {
        self.0
    }
}

impl Default for PackerEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl std::ops::Deref for PackerEnv {
    type Target = packer_acctest::PackerEnv;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// The workspace root (the directory holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// The cargo target directory (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                workspace_root().join(d)
            }
        }
        None => workspace_root().join("target"),
    }
}

/// The debug build of the plugin binary. Panics with a clear message when it was not built.
pub fn plugin_binary() -> PathBuf {
    let p = target_dir().join("debug").join("packer-plugin-qemu-rs");
    assert!(
        p.is_file(),
        "{} is missing: build it first with `cargo build -p packer-plugin-qemu-rs` (make test does)",
        p.display()
    );
    p
}

/// A free TCP port on 127.0.0.1 (bound, then released right before the caller uses it; a caller
/// handing it to QEMU retries with another when it was taken in between).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind 127.0.0.1:0").port()
}

static ONE_GUEST_IN_THIS_PROCESS: Mutex<()> = Mutex::new(());

/// Holds the right to boot a guest: under TCG one guest keeps a host core busy, so tests boot
/// one at a time — a mutex inside one test binary plus an exclusive `flock` across binaries.
pub struct GuestSlot {
    _flock: Flock<File>,
    _guard: std::sync::MutexGuard<'static, ()>,
}

/// Waits for, and takes, the guest slot (released when dropped).
pub fn guest_slot() -> GuestSlot {
    let guard = ONE_GUEST_IN_THIS_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    let path = std::env::temp_dir().join("qemu-rs-testguest.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open the lock file {}: {e}", path.display()));
    let flock = Flock::lock(file, FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("cannot lock {}: {e}", path.display()));
    GuestSlot { _flock: flock, _guard: guard }
}

/// The directory with the built test guest (`TESTGUEST_DIR`, else `images/testguest/out`); fails
/// the test with instructions when the images are missing.
pub fn guest_dir() -> PathBuf {
    let dir = std::env::var_os("TESTGUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("images/testguest/out"));
    for f in [
        "testguest.iso",
        "testguest.qcow2",
        "id_ed25519",
        "id_ed25519.pub",
        "seed/authorized_keys",
        "cidata/user-data",
        "cidata/meta-data",
    ] {
        let p = dir.join(f);
        assert!(
            p.is_file(),
            "{} is missing: build the test guest first with `make testguest` \
             (or set TESTGUEST_DIR to a directory that holds its output)",
            p.display()
        );
    }
    std::fs::canonicalize(&dir).expect("canonicalize TESTGUEST_DIR")
}

/// The directory of images a `make` target builds: `$var` when set, else `default` (relative to
/// the workspace root); fails the test, naming `make_target`, when one of `files` is missing.
pub fn built_images(var: &str, default: &str, files: &[&str], make_target: &str) -> PathBuf {
    let dir = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| workspace_root().join(default));
    for f in files {
        assert!(
            dir.join(f).is_file(),
            "{} is missing: build it first with `make {make_target}` (or set {var} to a directory that holds it)",
            dir.join(f).display()
        );
    }
    std::fs::canonicalize(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

/// Converts the qcow2 artifact `image` to a sparse raw file `<dir>/artifact.raw` and returns its
/// path; fails the test when `qemu-img` fails (also when `image` is not qcow2).
pub fn qcow2_to_raw(dir: &Path, image: &Path) -> PathBuf {
    let raw = dir.join("artifact.raw");
    let out = Command::new("qemu-img")
        .args(["convert", "-f", "qcow2", "-O", "raw"])
        .arg(image)
        .arg(&raw)
        .output()
        .expect("run qemu-img convert");
    assert!(out.status.success(), "qemu-img convert failed: {}", String::from_utf8_lossy(&out.stderr));
    raw
}
