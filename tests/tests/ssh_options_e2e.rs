//! End-to-end: the SSH communicator options with real Packer (Debian's 1.6.6), the `qemu-rs`
//! builder and the test guest's cloud image under TCG. One build covers:
//!
//! - `ssh_agent_auth`: the guest authorizes only a key held by a real `ssh-agent` (no
//!   `ssh_private_key_file`, the temporary key is never installed), so logging in proves the agent
//!   was used; the agent is also forwarded into the guest's sessions (dropbear's `SSH_AUTH_SOCK`);
//! - `ssh_bastion_*`: every connection runs through a throwaway OpenSSH sshd on loopback as jump
//!   host (its own key, `ssh_bastion_private_key_file`), which reaches the guest on QEMU's
//!   forwarded port on 127.0.0.1;
//! - `ssh_local_tunnels`: a `shell-local` provisioner reads the guest's SSH banner through a port
//!   on the host forwarded to the guest's 127.0.0.1:22;
//! - `pause_before_connecting`: connected, paused, connected again.

#[path = "../../sdk/tests/common/sshd.rs"]
mod sshd;

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qemu_rs_tests::{free_port, guest_dir, guest_slot, hcl_str, run_with_deadline, PackerEnv};
use sshd::Sshd;

/// Hang guard for one `packer build` (a healthy one takes well under a minute under TCG).
const PACKER_DEADLINE: Duration = Duration::from_secs(600);

/// A real `ssh-agent` on a socket in `dir`, killed by its pid on drop.
struct Agent {
    child: Child,
    socket: std::path::PathBuf,
}

impl Agent {
    fn start(dir: &Path) -> Agent {
        let socket = dir.join("agent.sock");
        let mut child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ssh-agent");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "ssh-agent did not create its socket");
            if let Ok(Some(s)) = child.try_wait() {
                panic!("ssh-agent exited: {s}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Agent { child, socket }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn agent_auth_through_a_bastion_with_a_local_tunnel_and_a_pause() {
    let guest = guest_dir();
    let _slot = guest_slot();
    let env = PackerEnv::new();
    let tmpdir = env.path().join("tmp");
    fs::create_dir_all(&tmpdir).unwrap();

    // the key only the agent holds; the guest authorizes it through the cidata CD
    let key = env.path().join("agent_key");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "qemu-rs-e2e-agent", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let pubkey = fs::read_to_string(key.with_extension("pub")).unwrap().trim().to_string();
    let agent = Agent::start(env.path());
    let added = Command::new("ssh-add").arg(&key).env("SSH_AUTH_SOCK", &agent.socket).output().unwrap();
    assert!(added.status.success(), "ssh-add: {}", String::from_utf8_lossy(&added.stderr));
    // nothing but the agent knows the key: remove the file
    fs::remove_file(&key).unwrap();

    let bastion = Sshd::start();
    let tunnel_port = free_port();
    let banner_file = env.path().join("banner.txt");
    let out = env.path().join("output");
    let template = format!(
        r##"
source "qemu-rs" "cloud" {{
  iso_url          = {image}
  iso_checksum     = "none"
  disk_image       = true
  output_directory = {out}
  vm_name          = "agent.qcow2"
  disk_size        = "128M"
  accelerator      = "tcg"
  memory           = 512
  cd_label         = "cidata"
  cd_content = {{
    "meta-data" = "local-hostname: e2e-agent\n"
    "user-data" = "#cloud-config\nssh_authorized_keys:\n  - {pubkey}\n"
  }}
  ssh_username                 = "root"
  ssh_agent_auth               = true
  temporary_key_pair_type      = "ed25519"
  ssh_bastion_host             = "127.0.0.1"
  ssh_bastion_port             = {bastion_port}
  ssh_bastion_username         = "{bastion_user}"
  ssh_bastion_private_key_file = {bastion_key}
  ssh_local_tunnels            = ["{tunnel_port}:127.0.0.1:22"]
  pause_before_connecting      = "2s"
  ssh_timeout                  = "5m"
  shutdown_command             = "poweroff"
}}

build {{
  sources = ["source.qemu-rs.cloud"]
  provisioner "qemu-rs-shell" {{
    inline = [
      "echo \"host: $(hostname)\"",
      "echo \"agent socket: $${{SSH_AUTH_SOCK:-none}}\"",
    ]
  }}
  provisioner "shell-local" {{
    inline_shebang = "/bin/bash -e"
    inline = ["exec 3<>/dev/tcp/127.0.0.1/{tunnel_port}; head -c 16 <&3 > {banner}"]
  }}
}}
"##,
        image = hcl_str(&guest.join("testguest.qcow2")),
        out = hcl_str(&out),
        bastion_port = bastion.port(),
        bastion_user = bastion.user(),
        bastion_key = hcl_str(&bastion.dir().join("client_key")),
        banner = banner_file.display(),
    );
    let path = env.write("build.pkr.hcl", &template);
    let log = env.path().join("packer.log");
    let mut cmd = env.packer(&["build", "-color=false"]);
    cmd.arg(&path)
        .env("TMPDIR", &tmpdir)
        .env("SSH_AUTH_SOCK", &agent.socket)
        .env("PACKER_LOG", "1")
        .env("PACKER_LOG_PATH", &log);
    let started = Instant::now();
    let o = run_with_deadline(&mut cmd, PACKER_DEADLINE);
    let mut t = String::from_utf8_lossy(&o.stdout).into_owned();
    t.push_str(&String::from_utf8_lossy(&o.stderr));
    let diagnostics = || {
        let l = fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = l.lines().rev().take(60).collect();
        format!(
            "{t}\nPACKER_LOG tail:\n{}\nbastion sshd log:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            bastion.log()
        )
    };
    assert!(o.status.success(), "packer build failed:\n{}", diagnostics());
    assert!(t.contains("host: e2e-agent"), "{}", diagnostics());
    // through the bastion, twice (pause_before_connecting)
    assert!(t.contains(&format!("through the bastion host 127.0.0.1:{}", bastion.port())), "{t}");
    assert!(t.contains("Pausing 2s before connecting..."), "{t}");
    assert_eq!(t.matches("Connected to SSH after").count(), 2, "{t}");
    // one bastion login served every attempt and the reconnection after the pause
    let logins = bastion.log().matches(&format!("Accepted publickey for {}", bastion.user())).count();
    assert_eq!(logins, 1, "the bastion saw {logins} logins:\n{}", bastion.log());
    // the guest's session got the forwarded agent
    assert!(t.contains("agent socket: /"), "agent forwarding did not reach the guest:\n{t}");
    // the local tunnel reached the guest's dropbear from the host
    let banner = fs::read_to_string(&banner_file).unwrap_or_default();
    assert!(banner.starts_with("SSH-2.0-dropbear"), "banner through the tunnel: {banner:?}\n{t}");
    // the tunnel closed with the connection
    assert!(std::net::TcpStream::connect(("127.0.0.1", tunnel_port)).is_err(), "the local tunnel outlived the build");
    assert!(out.join("agent.qcow2").is_file());
    eprintln!("build took {:?}", started.elapsed());
}
