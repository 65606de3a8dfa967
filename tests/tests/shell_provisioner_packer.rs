//! Acceptance test of `provisioner "qemu-rs-shell"` with Debian's real Packer 1.6.6: Packer's
//! built-in `null` builder connects its own SSH communicator to a real OpenSSH `sshd` started
//! here on a free loopback port (throwaway host and user keys), and our provisioner runs
//! through that communicator — a communicator we did not write.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use qemu_rs_tests::PackerEnv;

/// A real OpenSSH server on 127.0.0.1, accepting one throwaway key for the current user.
/// Stopped (by pid) when dropped.
struct Sshd {
    child: Child,
    port: u16,
    user: String,
    client_key: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn keygen(path: &Path) {
    run_ok(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "qemu-rs-test", "-f"]).arg(path));
}

impl Sshd {
    fn start() -> Sshd {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(sshd.is_file(), "OpenSSH's sshd is missing: apt-get install -y openssh-server (make deps does)");
        let dir = tempfile::Builder::new().prefix("qemu-rs-sshd-").tempdir().expect("temp dir");
        let host_key = dir.path().join("host_key");
        let client_key = dir.path().join("client_key");
        keygen(&host_key);
        keygen(&client_key);
        let authorized = dir.path().join("authorized_keys");
        std::fs::copy(client_key.with_extension("pub"), &authorized).expect("authorized_keys");
        let user = String::from_utf8(Command::new("id").arg("-un").output().expect("id -un").stdout)
            .expect("utf-8 user name")
            .trim()
            .to_string();
        if nix_is_root() {
            // sshd's privilege separation directory (created by systemd's unit on a normal system).
            std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        }
        let log = dir.path().join("sshd.log");
        // The port is found by binding port 0; another process could take it before sshd binds
        // it, so a failed start is retried with a new port.
        for _attempt in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
            let config = dir.path().join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nAuthorizedKeysFile {auth}\n\
                     PidFile none\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                     Subsystem sftp /usr/lib/openssh/sftp-server\nLogLevel VERBOSE\n",
                    host = host_key.display(),
                    auth = authorized.display(),
                ),
            )
            .expect("sshd_config");
            let log_file = std::fs::File::create(&log).expect("sshd log");
            let mut child = Command::new(sshd)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file)
                .spawn()
                .expect("start sshd");
            if wait_for_banner(&mut child, port) {
                return Sshd { child, port, user, client_key, log, _dir: dir };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("sshd did not start; its log:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
    }
}

fn nix_is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// Waits until sshd answers with its `SSH-2.0` banner; false if it exited.
fn wait_for_banner(child: &mut Child, port: u16) -> bool {
    for _ in 0..200 {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let mut buf = [0u8; 7];
            if s.read_exact(&mut buf).is_ok() && &buf == b"SSH-2.0" {
                let _ = s.write_all(b"SSH-2.0-probe\r\n");
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Child::kill signals exactly this process id.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes an executable script.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, body).expect("write script");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    p
}

fn hcl_source(sshd: &Sshd) -> String {
    format!(
        r#"source "null" "ssh" {{
  communicator         = "ssh"
  ssh_host             = "127.0.0.1"
  ssh_port             = {port}
  ssh_username         = "{user}"
  ssh_private_key_file = "{key}"
  ssh_timeout          = "2m"
}}
"#,
        port = sshd.port,
        user = sshd.user,
        key = sshd.client_key.display()
    )
}

#[test]
fn hcl2_template_runs_inline_scripts_env_and_fails_on_disallowed_status() {
    let sshd = Sshd::start();
    let env = PackerEnv::new();
    let work = env.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    let w = work.display().to_string();
    let first = script(&work, "first.sh", "#!/bin/sh\r\necho first-script\r\nprintf 1 > \"$OUT/first.txt\"\r\n");
    let second = script(&work, "second.sh", "#!/bin/sh\necho second-script\nexit 3\n");
    let template = format!(
        r#"{source}
build {{
  sources = ["source.null.ssh"]

  provisioner "qemu-rs-shell" {{
    remote_folder    = "{w}"
    environment_vars = ["GREETING=hello  world", "QUOTED=it's \"quoted\"", "DOLLARS=$HOME $${{PATH}} `id` \\n", "DUP=from-list"]
    env              = {{ FROM_MAP = "from map", DUP = "from-map" }}
    inline = [
      "echo inline-hello",
      "echo inline-stderr >&2",
      "printf '%s\\n' \"$GREETING\" \"$QUOTED\" \"$DOLLARS\" \"$DUP\" \"$FROM_MAP\" \"$PACKER_BUILD_NAME\" \"$PACKER_BUILDER_TYPE\" > {w}/env.txt",
    ]
  }}

  provisioner "qemu-rs-shell" {{
    environment_vars = ["OUT={w}"]
    scripts          = ["{first}", "{second}"]
    valid_exit_codes = [0, 3]
  }}

  provisioner "qemu-rs-shell" {{
    inline_shebang = "/bin/bash -e"
    inline         = ["echo \"bash=$BASH_VERSION\" > {w}/shebang.txt"]
  }}

  provisioner "qemu-rs-shell" {{
    inline = ["echo before-failure", "sh -c 'exit 5'", "echo after-failure", "touch {w}/after-failure.txt"]
  }}

  provisioner "qemu-rs-shell" {{
    inline = ["touch {w}/never.txt"]
  }}
}}
"#,
        source = hcl_source(&sshd),
        first = first.display(),
        second = second.display(),
    );
    let path = env.write("shell.pkr.hcl", &template);
    let out = env.run(&["build", path.to_str().expect("utf-8 path")]);
    let log = std::fs::read_to_string(&sshd.log).unwrap_or_default();
    let context = format!("packer printed:\n{}\nsshd log:\n{log}", out.text);

    assert!(!out.success, "the build should fail on exit status 5; {context}");
    for expected in [
        "inline-hello",
        "inline-stderr",
        "first-script",
        "second-script",
        "before-failure",
        "Script exited with non-zero exit status: 5. Allowed exit codes are: [0]",
    ] {
        assert!(out.text.contains(expected), "missing {expected:?}; {context}");
    }
    assert!(!out.text.contains("after-failure"), "the failing script went on after its failing line; {context}");
    let (pos_first, pos_second) = (out.text.find("first-script").unwrap(), out.text.find("second-script").unwrap());
    assert!(pos_first < pos_second, "scripts ran out of order; {context}");

    let env_txt = std::fs::read_to_string(work.join("env.txt")).unwrap_or_else(|e| panic!("env.txt: {e}; {context}"));
    assert_eq!(env_txt, "hello  world\nit's \"quoted\"\n$HOME ${PATH} `id` \\n\nfrom-map\nfrom map\nssh\nnull\n");
    assert_eq!(std::fs::read_to_string(work.join("first.txt")).ok().as_deref(), Some("1"), "{context}");
    let shebang = std::fs::read_to_string(work.join("shebang.txt")).unwrap_or_default();
    assert!(shebang.starts_with("bash=") && shebang.trim().len() > "bash=".len(), "not run by bash: {shebang:?}");
    assert!(!work.join("after-failure.txt").exists());
    assert!(!work.join("never.txt").exists(), "a provisioner ran after the failed one; {context}");
    let leftovers: Vec<_> = std::fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("script_"))
        .collect();
    assert!(leftovers.is_empty(), "uploaded scripts were not cleaned up: {leftovers:?}");
}

#[test]
fn json_template_runs_with_user_variables_and_build_data() {
    let sshd = Sshd::start();
    let env = PackerEnv::new();
    let work = env.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    let w = work.display().to_string();
    let template = serde_json::json!({
        "variables": {"who": "json user"},
        "builders": [{
            "type": "null",
            "communicator": "ssh",
            "ssh_host": "127.0.0.1",
            "ssh_port": sshd.port,
            "ssh_username": sshd.user,
            "ssh_private_key_file": sshd.client_key.display().to_string(),
            "ssh_timeout": "2m",
        }],
        "provisioners": [{
            "type": "qemu-rs-shell",
            "environment_vars": ["WHO={{user `who`}}", "SINGLE='x'"],
            "inline": [
                "echo \"who=$WHO single=$SINGLE\"",
                "echo \"port={{ build `Port` }} host={{ .Host }}\" > ".to_string() + &w + "/build.txt",
            ],
            "execute_command": "chmod +x {{ .Path }}; env {{ .Vars }} {{ .Path }}",
            "skip_clean": true,
            "remote_path": format!("{w}/kept.sh"),
        }]
    });
    let path = env.write("shell.json", &serde_json::to_string_pretty(&template).unwrap());
    let out = env.run(&["build", path.to_str().expect("utf-8 path")]);
    let log = std::fs::read_to_string(&sshd.log).unwrap_or_default();
    let context = format!("packer printed:\n{}\nsshd log:\n{log}", out.text);
    assert!(out.success, "the build should succeed; {context}");
    assert!(out.text.contains("who=json user single='x'"), "{context}");
    assert_eq!(
        std::fs::read_to_string(work.join("build.txt")).ok(),
        Some(format!("port={} host=127.0.0.1\n", sshd.port)),
        "{context}"
    );
    assert!(work.join("kept.sh").exists(), "skip_clean should keep the script; {context}");
}
