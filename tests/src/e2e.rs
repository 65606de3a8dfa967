//! Helpers for end-to-end builds of the test guest with real Packer: a throwaway build
//! environment ([`Build`]), the ISO and cloud-image sources, and process inspection through /proc.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::{hcl_str, run_with_deadline, PackerEnv};

/// Hang guard for one `packer build` (a healthy one takes 20–40 s under TCG).
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
    /// A fresh environment.
    pub fn new() -> Build {
        Build::with_env(PackerEnv::new())
    }

    /// A fresh environment with the plugin binary `bin` installed (instead of the debug build).
    pub fn with_plugin(bin: &Path) -> Build {
        Build::with_env(PackerEnv::with_plugin(bin))
    }

    fn with_env(env: PackerEnv) -> Build {
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
            .env("PACKER_LOG_PATH", self.log_path())
            .env("QEMU_RS_LOG_PATH", self.plugin_log_path());
        cmd
    }

    /// Packer's log (`PACKER_LOG=1`).
    pub fn log_path(&self) -> PathBuf {
        self.env.path().join("packer.log")
    }

    /// The plugin's own log (`QEMU_RS_LOG_PATH`).
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

impl Default for Build {
    fn default() -> Self {
        Self::new()
    }
}

/// Ctrl-C in the terminal running `packer` (whose process group [`Build::spawn_interactive`] made).
pub fn ctrl_c(packer: &Child) {
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(packer.id() as i32), nix::sys::signal::Signal::SIGINT)
        .expect("SIGINT packer's process group");
}

/// Pids of running QEMU processes whose command line mentions `needle`.
pub fn qemu_pids_mentioning(needle: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmdline) = fs::read(e.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("qemu-system") && cmdline.contains(needle) {
            pids.push(pid);
        }
    }
    pids
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

/// The ISO source `iso` with a seed served by `http_content`: the guest's `authorized_keys` holds
/// no key the builder has, so SSH works only through the temporary key typed with `sshkey=`.
/// `extra` is spliced into the source block.
pub fn iso_source(guest: &Path, out: &Path, marker: &str, extra: &str) -> String {
    let iso = hcl_str(&guest.join("testguest.iso"));
    let out = hcl_str(out);
    format!(
        r##"
source "qemu-rs" "iso" {{
  iso_url          = {iso}
  iso_checksum     = "none"
  output_directory = {out}
  vm_name          = "e2e.img"
  disk_size        = "256M"
  disk_interface   = "virtio"
  net_device       = "virtio-net"
  accelerator      = "tcg"
  memory           = 512
  http_content = {{
    "/authorized_keys" = "# no key: the builder's temporary key comes through sshkey=\n"
    "/marker"          = "{marker}"
  }}
  boot_wait    = "3s"
  boot_command = ["e<down><down><end> seed=http://{{{{ .HTTPIP }}}}:{{{{ .HTTPPort }}}}/ sshkey={{{{ .SSHPublicKey | urlquery }}}}<f10>"]
  # the key is typed into GRUB: ed25519 keeps the line short (an RSA-4096 key is ~750 characters,
  # minutes of typing; RSA keys are covered by sdk/tests/ssh_communicator.rs)
  temporary_key_pair_type = "ed25519"
  ssh_username     = "root"
  ssh_timeout      = "5m"
  shutdown_command = "poweroff"
{extra}
}}
"##
    )
}

/// The cloud-image source `cloud`: `disk_image` from `image`, configured by a cidata CD built from
/// `cd_content` (root's key `pubkey`, password `packer`); no `shutdown_command` (ACPI power
/// button) and the default accelerator. `extra` is spliced into the source block.
pub fn cloud_source(image: &Path, out: &Path, pubkey: &str, key: &Path, extra: &str) -> String {
    format!(
        r##"
source "qemu-rs" "cloud" {{
  iso_url          = {image}
  iso_checksum     = "none"
  disk_image       = true
  output_directory = {out}
  vm_name          = "cloud.qcow2"
  format           = "qcow2"
  disk_size        = "128M"
  disk_compression = true
  disk_interface   = "virtio"
  net_device       = "virtio-net"
  memory           = 512
  cd_label         = "cidata"
  cd_content = {{
    "meta-data" = "local-hostname: e2e-cloud\n"
    "user-data" = "#cloud-config\npassword: packer\nssh_authorized_keys:\n  - {pubkey}\n"
  }}
  ssh_username         = "root"
  ssh_private_key_file = {key}
  ssh_timeout          = "5m"
{extra}
}}
"##,
        image = hcl_str(image),
        out = hcl_str(out),
        key = hcl_str(key),
    )
}

/// The test guest's SSH key pair: the `authorized_keys` line of `id_ed25519.pub` and the path of
/// the private key `id_ed25519` in `guest` (the guest directory).
pub fn guest_key(guest: &Path) -> (String, PathBuf) {
    let pubkey = std::fs::read_to_string(guest.join("id_ed25519.pub")).expect("the test guest's public key");
    (pubkey.trim().to_string(), guest.join("id_ed25519"))
}
