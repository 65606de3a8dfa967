//! Helpers shared by the integration tests: locating the plugin binary and running the real
//! `packer` (Debian's 1.6.6) with the plugin installed in a throwaway plugin directory.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

pub mod e2e;

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

/// Whether `packer` is on the PATH. Tests that need it fail (not skip) without it, with this hint.
pub fn require_packer() {
    let ok = Command::new("packer").arg("version").output().map(|o| o.status.success()).unwrap_or(false);
    assert!(ok, "the `packer` command is missing: install it with `apt-get install -y packer` (make deps does)");
}

/// A throwaway Packer environment: its own HOME, config dir, cache and plugin directory holding
/// the plugin under its Packer 1.6.6 names.
pub struct PackerEnv {
    dir: tempfile::TempDir,
}

impl PackerEnv {
    /// Creates the environment and installs the plugin (legacy names) in it.
    pub fn new() -> Self {
        Self::with_plugin(&plugin_binary())
    }

    /// Creates the environment with the plugin binary `bin` installed in it (legacy names).
    pub fn with_plugin(bin: &Path) -> Self {
        require_packer();
        let dir = tempfile::Builder::new().prefix("qemu-rs-packer-").tempdir().expect("temp dir");
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins).expect("plugin dir");
        std::fs::create_dir_all(dir.path().join("home")).expect("home dir");
        for name in
            ["packer-builder-qemu-rs", "packer-provisioner-qemu-rs-shell", "packer-post-processor-qemu-rs-convert"]
        {
            std::fs::copy(bin, plugins.join(name)).expect("copy plugin");
        }
        PackerEnv { dir }
    }

    /// The environment's root directory (a good place for templates and outputs).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `content` to `name` inside the environment and returns its path.
    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, content).expect("write file");
        p
    }

    /// A `packer` command with this environment (working directory = the environment root).
    pub fn packer(&self, args: &[&str]) -> Command {
        let mut c = Command::new("packer");
        c.args(args)
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path().join("home"))
            .env("PACKER_CONFIG_DIR", self.dir.path().join("home"))
            .env("PACKER_PLUGIN_PATH", self.dir.path().join("plugins"))
            .env("PACKER_CACHE_DIR", self.dir.path().join("packer_cache"))
            .env("CHECKPOINT_DISABLE", "1")
            .env("PACKER_NO_COLOR", "1")
            .env_remove("PACKER_LOG");
        c
    }

    /// Runs `packer ARGS` and returns its output.
    pub fn run(&self, args: &[&str]) -> PackerOutput {
        let out = self.packer(args).output().expect("run packer");
        PackerOutput::from(out)
    }
}

impl Default for PackerEnv {
    fn default() -> Self {
        Self::new()
    }
}

/// What a `packer` run printed, and whether it succeeded.
#[derive(Debug)]
pub struct PackerOutput {
    /// Exit success.
    pub success: bool,
    /// stdout and stderr, concatenated.
    pub text: String,
}

impl From<Output> for PackerOutput {
    fn from(o: Output) -> Self {
        let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&o.stderr));
        PackerOutput { success: o.status.success(), text }
    }
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

/// `p` as an HCL2 string literal (quoted and escaped).
pub fn hcl_str(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// Runs `cmd` with stdin closed, collecting stdout and stderr (drained while it runs, so a chatty
/// child cannot block on a full pipe), and kills it (by pid) when it outlives `deadline`.
pub fn run_with_deadline(cmd: &mut Command, deadline: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for the child") {
            break s;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            break child.wait().expect("reap the child");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Output { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() }
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
