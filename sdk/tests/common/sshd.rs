//! A throwaway OpenSSH server for integration tests (std only, no crate dependencies).
//!
//! [`Sshd::start`] runs Debian's `/usr/sbin/sshd` in the foreground as the current user, on a free
//! loopback port, with host and client keys made by `ssh-keygen` in a fresh temporary directory
//! and its own `sshd_config` (`AuthorizedKeysFile` in that directory, `StrictModes no`,
//! `UsePAM no`, sftp via `/usr/lib/openssh/sftp-server`). Dropping the value kills sshd by its pid
//! and deletes the directory.
//!
//! As root, sshd needs the privilege separation directory `/run/sshd`; when it is missing, and for
//! password authentication (which reads the password hash from `/etc/shadow`), sshd runs in a
//! private mount namespace (`unshare --mount`) that mounts a tmpfs on `/run` and bind-mounts a
//! temporary shadow file holding only the test user's hash. Nothing on the host is changed.
//!
//! Use it from another crate's tests with
//! `#[path = "../../sdk/tests/common/sshd.rs"] mod sshd;` (adjust the relative path).
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Options for [`Sshd::start_with`].
#[derive(Debug, Clone, Default)]
pub struct SshdOptions {
    /// Enable password (and keyboard-interactive) authentication with this password for the
    /// current user. Needs root and `unshare` (see the module docs).
    pub password: Option<String>,
    /// With `password`: offer it only through keyboard-interactive (PAM asks for it), not as the
    /// `password` method.
    pub keyboard_interactive: bool,
    /// Extra `sshd_config` lines, appended last (sshd takes the first value of a keyword, so
    /// these cannot change the ones written before them).
    pub extra_config: Vec<String>,
}

/// A running sshd.
pub struct Sshd {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    user: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn is_root() -> bool {
    run(Command::new("id").arg("-u")).trim() == "0"
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

impl Sshd {
    /// Starts sshd with key authentication only.
    pub fn start() -> Sshd {
        Sshd::start_with(SshdOptions::default())
    }

    /// Starts sshd with `opts`. Panics (with sshd's log) if it does not come up.
    pub fn start_with(opts: SshdOptions) -> Sshd {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "qemu-rs-sshd-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir(&dir).expect("create the sshd temp dir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod the sshd temp dir");
        let mut sshd = Sshd { child: None, dir, port: 0, user: run(Command::new("id").arg("-un")).trim().to_string() };
        for name in ["host_ed25519_key", "client_key"] {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
                .arg(sshd.dir.join(name)));
        }
        fs::copy(sshd.dir.join("client_key.pub"), sshd.dir.join("authorized_keys")).expect("write authorized_keys");
        let root = is_root();
        let needs_privsep_dir = root && !Path::new("/run/sshd").is_dir();
        if let Some(password) = &opts.password {
            assert!(root, "password authentication in the test sshd needs root (it fakes /etc/shadow)");
            let mut child = Command::new("openssl")
                .args(["passwd", "-6", "-stdin"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("run openssl passwd");
            child.stdin.take().expect("stdin").write_all(format!("{password}\n").as_bytes()).expect("write password");
            let out = child.wait_with_output().expect("openssl passwd");
            let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
            assert!(hash.starts_with("$6$"), "openssl passwd gave {hash:?}");
            fs::write(sshd.dir.join("shadow"), format!("{}:{hash}:19000:0:99999:7:::\n", sshd.user))
                .expect("write shadow");
        }
        let use_namespace = needs_privsep_dir || opts.password.is_some();

        for _attempt in 0..5 {
            sshd.port = free_port();
            sshd.write_config(&opts);
            let log = fs::File::create(sshd.dir.join("sshd.log")).expect("create sshd.log");
            let mut cmd = if use_namespace {
                let mut script = String::from("set -e\n");
                if needs_privsep_dir {
                    script.push_str("mount -t tmpfs -o mode=0755 tmpfs /run\nmkdir -m 0755 /run/sshd\n");
                }
                if opts.password.is_some() {
                    script.push_str("mount --bind \"$SSHD_DIR/shadow\" /etc/shadow\n");
                }
                script.push_str("exec /usr/sbin/sshd -D -e -f \"$SSHD_DIR/sshd_config\"\n");
                let mut c = Command::new("unshare");
                c.args(["--mount", "--propagation", "private", "/bin/sh", "-c", &script]);
                c
            } else {
                let mut c = Command::new("/usr/sbin/sshd");
                c.arg("-D").arg("-e").arg("-f").arg(sshd.dir.join("sshd_config"));
                c
            };
            cmd.env("SSHD_DIR", &sshd.dir).stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
            sshd.child = Some(cmd.spawn().expect("spawn sshd"));
            match sshd.wait_ready() {
                Ok(()) => return sshd,
                Err(retry) => {
                    sshd.kill();
                    if !retry {
                        panic!("the test sshd did not start; its log:\n{}", sshd.log());
                    }
                }
            }
        }
        panic!("the test sshd could not bind a free port; its log:\n{}", sshd.log());
    }

    fn write_config(&self, opts: &SshdOptions) {
        let d = self.dir.display();
        let kbd = opts.password.is_some() && opts.keyboard_interactive;
        let password = if opts.password.is_some() && !kbd { "yes" } else { "no" };
        let (pam, kbd) = if kbd { ("yes", "yes") } else { ("no", "no") };
        let mut cfg = format!(
            "ListenAddress 127.0.0.1:{port}\n\
             HostKey {d}/host_ed25519_key\n\
             PidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\n\
             StrictModes no\n\
             UsePAM {pam}\n\
             PermitRootLogin yes\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication {password}\n\
             KbdInteractiveAuthentication {kbd}\n\
             PermitEmptyPasswords no\n\
             Subsystem sftp /usr/lib/openssh/sftp-server\n\
             MaxSessions 64\n\
             MaxStartups 64\n\
             MaxAuthTries 20\n\
             UseDNS no\n\
             PrintMotd no\n\
             PrintLastLog no\n\
             X11Forwarding no\n\
             LogLevel VERBOSE\n",
            port = self.port
        );
        for line in &opts.extra_config {
            cfg.push_str(line);
            cfg.push('\n');
        }
        fs::write(self.dir.join("sshd_config"), cfg).expect("write sshd_config");
    }

    /// Waits until sshd sends its banner. `Err(true)`: it lost the port race, try another port.
    fn wait_ready(&mut self) -> Result<(), bool> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    let log = self.log();
                    return Err(log.contains("Address already in use") || log.contains("Cannot bind"));
                }
            }
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut line = String::new();
                if BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("SSH-2.0-OpenSSH") {
                    return Ok(());
                }
                if !line.is_empty() {
                    // Someone else owns the port.
                    return Err(true);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(false)
    }

    /// The TCP port sshd listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user to log in as (the current user).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The authorized client private key, OpenSSH format.
    pub fn client_private_key(&self) -> String {
        fs::read_to_string(self.dir.join("client_key")).expect("read client_key")
    }

    /// The authorized client public key line.
    pub fn client_public_key(&self) -> String {
        fs::read_to_string(self.dir.join("client_key.pub")).expect("read client_key.pub").trim().to_string()
    }

    /// Authorizes one more public key (an `authorized_keys` line).
    pub fn authorize_key(&self, line: &str) {
        let mut f =
            fs::OpenOptions::new().append(true).open(self.dir.join("authorized_keys")).expect("open authorized_keys");
        writeln!(f, "{}", line.trim()).expect("append to authorized_keys");
    }

    /// The temporary directory (deleted on drop); tests may put their own files in it.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// sshd's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    /// The pid of the listening sshd (or of `unshare`/`sh` that exec'd it: the same process).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the listening sshd (sessions already open keep running until their client leaves).
    pub fn stop(&mut self) {
        self.kill();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
