//! Acceptance tests for Packer plugins: run templates through the real `packer` binary from
//! `cargo test`, with the plugin under test installed in a scratch plugin directory, and inspect
//! what happened — Packer's output and log, the plugin's own log, the artifact files, leftovers.
//!
//! Each [`PackerEnv`] is a throwaway directory with its own `HOME`, Packer config dir, plugin dir
//! and cache; each [`Build`] adds a `TMPDIR` of its own and logs (`PACKER_LOG=1` into
//! `packer.log`). Everything lives in a [`tempfile::TempDir`]: it is removed when the value is
//! dropped, also when the test fails; builds that outlive their deadline are killed by pid.
//!
//! ```no_run
//! use packer_acctest::{Build, Plugin};
//!
//! // the binary `cargo build` made for this workspace, installed under Packer 1.6's names
//! let plugin = Plugin::new(
//!     "target/debug/packer-plugin-example",
//!     &["packer-builder-example", "packer-provisioner-example-shell"],
//! );
//! let b = Build::new(&plugin);
//! let outcome = b.run_ok(r#"
//! source "example" "x" { output_directory = "out" }
//! build { sources = ["source.example.x"] }
//! "#);
//! assert!(outcome.text.contains("Builds finished"));
//! assert!(b.env.path().join("out").is_dir());
//! assert!(b.leftover_temp_files().is_empty(), "the plugin left temp files");
//! ```
//!
//! The plugin is installed under the file names Packer 1.6 loads (`packer-builder-NAME`,
//! `packer-provisioner-NAME`, `packer-post-processor-NAME`): modern Packer (1.7–1.10) also loads
//! them; for Packer ≥ 1.11 install the `packer plugins install --path` layout yourself in
//! [`PackerEnv::plugin_dir`].

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The plugin under test: a binary and the file names it is installed under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plugin {
    /// The plugin binary.
    pub binary: PathBuf,
    /// File names in the plugin directory (each a copy of the binary).
    pub names: Vec<String>,
    /// The environment variable naming a file the plugin appends its own log to, if it has one
    /// ([`Build`] sets it to [`Build::plugin_log_path`]): Packer's log ends when Packer core does.
    pub log_env: Option<String>,
}

impl Plugin {
    /// `binary`, installed as each of `names`.
    pub fn new(binary: impl Into<PathBuf>, names: &[&str]) -> Plugin {
        Plugin { binary: binary.into(), names: names.iter().map(|n| n.to_string()).collect(), log_env: None }
    }

    /// The plugin writes its own log to the file the environment variable `var` names.
    pub fn with_log_env(mut self, var: &str) -> Plugin {
        self.log_env = Some(var.to_string());
        self
    }
}

/// Whether `packer` is on the PATH. Tests that need it fail (not skip) without it, with this hint.
pub fn require_packer() {
    let ok = Command::new("packer").arg("version").output().map(|o| o.status.success()).unwrap_or(false);
    assert!(ok, "the `packer` command is missing: install it with `apt-get install -y packer` (make deps does)");
}

/// A throwaway Packer environment: its own HOME, config dir, cache and plugin directory holding
/// the plugin under test.
pub struct PackerEnv {
    dir: tempfile::TempDir,
    log_env: Option<String>,
}

impl PackerEnv {
    /// Creates the environment and installs `plugin` in it.
    pub fn new(plugin: &Plugin) -> Self {
        require_packer();
        let dir = tempfile::Builder::new().prefix("packer-acctest-").tempdir().expect("temp dir");
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins).expect("plugin dir");
        std::fs::create_dir_all(dir.path().join("home")).expect("home dir");
        assert!(plugin.binary.is_file(), "the plugin binary {} is missing: build it first", plugin.binary.display());
        for name in &plugin.names {
            std::fs::copy(&plugin.binary, plugins.join(name)).expect("copy plugin");
        }
        PackerEnv { dir, log_env: plugin.log_env.clone() }
    }

    /// The plugin directory (`PACKER_PLUGIN_PATH`).
    pub fn plugin_dir(&self) -> PathBuf {
        self.dir.path().join("plugins")
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

/// Runs `cmd` (a tool a test checks results with: `qemu-img`, `sha256sum`, `gpg`…) and fails the
/// test with its output when it fails; its output otherwise.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
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

/// Hang guard for one `packer build` run by [`Build::run`] or [`Build::wait`].
pub const PACKER_DEADLINE: Duration = Duration::from_secs(600);

/// One Packer build in a throwaway environment (own HOME, plugin dir, cache and TMPDIR), with
/// `PACKER_LOG=1` into `packer.log` and the plugin's own log in `plugin.log`.
pub struct Build {
    /// The Packer environment (its root holds the template, logs and outputs).
    pub env: PackerEnv,
    /// The build's `TMPDIR`.
    pub tmpdir: PathBuf,
}

/// What a build printed.
pub struct Outcome {
    /// Exit success.
    pub success: bool,
    /// stdout and stderr, concatenated.
    pub text: String,
    /// Wall time of the build.
    pub elapsed: Duration,
}

impl Build {
    /// A fresh environment with `plugin` installed.
    pub fn new(plugin: &Plugin) -> Build {
        Build::with_env(PackerEnv::new(plugin))
    }

    /// A build in `env`.
    pub fn with_env(env: PackerEnv) -> Build {
        let tmpdir = env.path().join("tmp");
        fs::create_dir_all(&tmpdir).expect("create TMPDIR");
        Build { env, tmpdir }
    }

    /// The default output directory of the sources below (`<env>/output`).
    pub fn out_dir(&self) -> PathBuf {
        self.env.path().join("output")
    }

    /// `packer build -color=false` of `template` (written to `build.pkr.hcl`), not started.
    pub fn command(&self, template: &str) -> Command {
        self.command_with(template, &[])
    }

    /// [`Build::command`] with more arguments (`-var=…`) before the template.
    pub fn command_with(&self, template: &str, args: &[String]) -> Command {
        let path = self.env.write("build.pkr.hcl", template);
        let mut cmd = self.env.packer(&["build", "-color=false"]);
        cmd.args(args)
            .arg(&path)
            .env("TMPDIR", &self.tmpdir)
            .env("PACKER_LOG", "1")
            .env("PACKER_LOG_PATH", self.log_path());
        if let Some(var) = &self.env.log_env {
            cmd.env(var, self.plugin_log_path());
        }
        cmd
    }

    /// Packer's log (`PACKER_LOG=1`).
    pub fn log_path(&self) -> PathBuf {
        self.env.path().join("packer.log")
    }

    /// The plugin's own log (see [`Plugin::log_env`]).
    pub fn plugin_log_path(&self) -> PathBuf {
        self.env.path().join("plugin.log")
    }

    /// Runs `template` to its end (killed after [`PACKER_DEADLINE`]).
    pub fn run(&self, template: &str) -> Outcome {
        let start = Instant::now();
        let out = run_with_deadline(&mut self.command(template), PACKER_DEADLINE);
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        Outcome { success: out.status.success(), text, elapsed: start.elapsed() }
    }

    /// Runs `template` and fails the test with Packer's output and log when the build fails.
    pub fn run_ok(&self, template: &str) -> Outcome {
        let o = self.run(template);
        if !o.success {
            panic!("packer build failed:\n{}\n{}", o.text, self.diagnostics());
        }
        o
    }

    /// Starts `template` in the background, its output going to `packer.out`; end it with
    /// [`Build::wait`].
    pub fn spawn(&self, template: &str) -> Child {
        self.spawn_with(template, &[])
    }

    /// [`Build::spawn`] with more arguments (`-var=…`) before the template.
    pub fn spawn_with(&self, template: &str, args: &[String]) -> Child {
        let out = fs::File::create(self.env.path().join("packer.out")).expect("create packer.out");
        let err = out.try_clone().expect("dup packer.out");
        self.command_with(template, args).stdin(Stdio::null()).stdout(out).stderr(err).spawn().expect("start packer")
    }

    /// Starts `packer build` of `template` (with `args` before it) in the background like a shell's
    /// job: in a process group of its own (Ctrl-C sends SIGINT to the whole group; Packer's panicwrap
    /// parent ignores a SIGINT sent to it alone), with SIGINT at its default disposition (a test run
    /// started in the background inherits an ignored SIGINT, and Go keeps it ignored). Its output
    /// goes to `packer.out`; interrupt it with [`ctrl_c`].
    pub fn spawn_interactive(&self, template: &str, args: &[String]) -> Child {
        use std::os::unix::process::CommandExt;
        let out = fs::File::create(self.env.path().join("packer.out")).expect("create packer.out");
        let err = out.try_clone().expect("dup packer.out");
        let mut cmd = self.command_with(template, args);
        cmd.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
        // SAFETY: only async-signal-safe calls (signal(2)) between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::signal::signal(nix::sys::signal::Signal::SIGINT, nix::sys::signal::SigHandler::SigDfl)
                    .map(|_| ())
                    .map_err(std::io::Error::from)
            });
        }
        cmd.spawn().expect("start packer")
    }

    /// Waits for a build [`Build::spawn`] started (killing it after [`PACKER_DEADLINE`]).
    pub fn wait(&self, child: Child, started: Instant) -> Outcome {
        self.wait_at_most(child, started, PACKER_DEADLINE)
    }

    /// Waits for a build [`Build::spawn`] started, killing it (by pid) after `deadline`.
    pub fn wait_at_most(&self, mut child: Child, started: Instant, deadline: Duration) -> Outcome {
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait for packer") {
                break s;
            }
            if started.elapsed() > deadline {
                let _ = child.kill();
                break child.wait().expect("reap packer");
            }
            sleep(Duration::from_millis(200));
        };
        let text = fs::read_to_string(self.env.path().join("packer.out")).unwrap_or_default();
        Outcome { success: status.success(), text, elapsed: started.elapsed() }
    }

    /// The last 80 lines of Packer's log, for a failure message.
    pub fn diagnostics(&self) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(80).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("PACKER_LOG (tail):\n{}", tail.join("\n"))
    }

    /// Files left in TMPDIR after the build (the scripts Packer's own shell provisioners leave,
    /// `packer-shell*`, excluded).
    pub fn leftover_temp_files(&self) -> Vec<String> {
        fs::read_dir(&self.tmpdir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with("packer-shell"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Ctrl-C in the terminal running `packer` (whose process group [`Build::spawn_interactive`] made).
pub fn ctrl_c(packer: &Child) {
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(packer.id() as i32), nix::sys::signal::Signal::SIGINT)
        .expect("SIGINT packer's process group");
}

/// `(pid, parent pid)` of every process under `root` (at any depth) whose name is `name`
/// (compared on the 15 characters the kernel keeps).
pub fn descendants_named(root: u32, name: &str) -> Vec<(u32, u32)> {
    let mut procs = Vec::new();
    for e in fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else { continue };
        // pid (comm) state ppid ...
        let Some(close) = stat.rfind(')') else { continue };
        let comm = stat[stat.find('(').map(|i| i + 1).unwrap_or(0)..close].to_string();
        let ppid: u32 = stat[close + 2..].split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        procs.push((pid, ppid, comm));
    }
    let under_root = |mut pid: u32| {
        for _ in 0..64 {
            let Some(&(_, ppid, _)) = procs.iter().find(|p| p.0 == pid) else { return false };
            if ppid == root {
                return true;
            }
            pid = ppid;
        }
        false
    };
    procs
        .iter()
        .filter(|(pid, _, comm)| comm.as_str() == &name[..name.len().min(15)] && under_root(*pid))
        .map(|&(pid, ppid, _)| (pid, ppid))
        .collect()
}

/// Polls `f` every 200 ms until it holds or `deadline` passes; its last answer.
pub fn wait_until(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if f() {
            return true;
        }
        sleep(Duration::from_millis(200));
    }
    f()
}
