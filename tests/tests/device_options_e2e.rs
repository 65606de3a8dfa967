//! End-to-end builds with real Packer (Debian's 1.6.6), the `qemu-rs` builder and the test guest
//! (`make testguest`), for the device and network options:
//!
//! - one ISO build with a floppy (`floppy_files` glob, `floppy_dirs`, `floppy_content`,
//!   `floppy_label`), a vTPM and a password-protected VNC server typed into over VNC: the guest's
//!   GRUB reads the floppy (the test guest's Debian cloud kernel has no floppy driver —
//!   `CONFIG_BLK_DEV_FD` is not set — so Linux cannot, and a module from another kernel flavour
//!   would not load; GRUB reads it through the BIOS), Linux sees the TPM 2.0 in `/sys/class/tpm`,
//!   and while the build runs this test checks that the VNC server refuses a client without the
//!   password (or with a wrong one) and accepts the password the build printed;
//! - a build on a bridge (`net_bridge`) inside a network namespace made by the test (a bridge with
//!   a documentation-range address, dnsmasq as DHCP server, `qemu-bridge-helper` allowed by a
//!   `bridge.conf` seen only by this build through an overlay on `/etc` in a private mount
//!   namespace): the guest fetches its seed from the HTTP server on the bridge's address, its
//!   address is discovered through QMP + ARP and SSH reaches it there. Never on the host's network.
//!
//! Guests boot one at a time (the lock shared with the other test-guest tests).

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use packer_sdk::bootcommand::vnc::VncClient;
use qemu_rs_tests::{guest_dir, guest_slot, hcl_str, PackerEnv};

/// Hang guard for one `packer build`.
const PACKER_DEADLINE: Duration = Duration::from_secs(600);

/// A running `packer build` whose output is read line by line while it runs.
struct RunningBuild {
    child: Child,
    lines: mpsc::Receiver<String>,
    text: String,
}

impl RunningBuild {
    fn spawn(mut cmd: Command) -> RunningBuild {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let (tx, rx) = mpsc::channel();
        for out in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        RunningBuild { child, lines: rx, text: String::new() }
    }

    /// Waits (at most `timeout`) for a line containing `needle` and returns it.
    fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(l) => {
                    self.text.push_str(&l);
                    self.text.push('\n');
                    if l.contains(needle) {
                        return Some(l);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
        None
    }

    /// Waits for Packer to exit (killing it by pid after the deadline); returns success and all output.
    fn finish(mut self) -> (bool, String) {
        let start = Instant::now();
        let status = loop {
            while let Ok(l) = self.lines.try_recv() {
                self.text.push_str(&l);
                self.text.push('\n');
            }
            if let Some(s) = self.child.try_wait().expect("wait for packer") {
                break s;
            }
            if start.elapsed() > PACKER_DEADLINE {
                let _ = self.child.kill();
                break self.child.wait().expect("reap packer");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        // the readers end with the pipes
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.text.push_str(&l);
            self.text.push('\n');
        }
        (status.success(), self.text)
    }
}

/// The ISO source of the test guest: seeded over HTTP with the test key (no key typed).
fn iso_source(guest: &Path, out: &Path, serial: &Path, boot_command: &str, extra: &str) -> String {
    let pubkey = fs::read_to_string(guest.join("id_ed25519.pub")).expect("test key").trim().to_string();
    format!(
        r##"
source "qemu-rs" "dev" {{
  iso_url          = {iso}
  iso_checksum     = "none"
  output_directory = {out}
  serial_log       = {serial}
  vm_name          = "dev.img"
  disk_size        = "64M"
  accelerator      = "tcg"
  memory           = 512
  http_content = {{
    "/authorized_keys" = "{pubkey}\n"
  }}
  boot_wait            = "3s"
  boot_command         = [{boot_command}]
  ssh_username         = "root"
  ssh_private_key_file = {key}
  ssh_timeout          = "5m"
  shutdown_command     = "poweroff"
{extra}
}}
"##,
        iso = hcl_str(&guest.join("testguest.iso")),
        out = hcl_str(out),
        serial = hcl_str(serial),
        key = hcl_str(&guest.join("id_ed25519")),
    )
}

fn leftovers(tmpdir: &Path) -> Vec<String> {
    fs::read_dir(tmpdir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with("packer-shell"))
                .collect()
        })
        .unwrap_or_default()
}

fn vnc_checks(addr: &str, password: &str) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let e = VncClient::connect_tcp(addr, None).await.err().ok_or("a client without password was let in")?;
        if !e.to_string().contains("requires a password") {
            return Err(format!("unexpected error without password: {e}"));
        }
        let wrong = if password == "wrong1" { "wrong2" } else { "wrong1" };
        let e = VncClient::connect_tcp(addr, Some(wrong)).await.err().ok_or("a wrong password was accepted")?;
        if !e.to_string().contains("authentication failed") {
            return Err(format!("unexpected error with a wrong password: {e}"));
        }
        let ok = VncClient::connect_tcp(addr, Some(password)).await.map_err(|e| format!("right password: {e}"))?;
        ok.close().await;
        Ok(())
    })
}

#[test]
fn floppy_vtpm_and_vnc_password_in_one_build() {
    let guest = guest_dir();
    let _slot = guest_slot();
    let env = PackerEnv::new();
    let tmpdir = env.path().join("tmp");
    fs::create_dir_all(&tmpdir).unwrap();
    let out = env.path().join("output");
    let serial = env.path().join("serial.log");
    // floppy sources, relative to where packer runs (the environment root)
    env.write("answers/ks.cfg", "kickstart-from-floppy-files\n");
    env.write("answers/other.cfg", "other\n");
    env.write("drivers/net/e1000.inf", "driver-from-floppy-dirs\n");
    let boot = r#""c<wait>ls (fd0)<enter>cat (fd0)/ks.cfg<enter>cat (fd0)/drivers/net/e1000.inf<enter>",
    "cat (fd0)/sub/hello.txt<enter><wait><esc><wait>",
    "e<down><down><end> seed=http://{{ .HTTPIP }}:{{ .HTTPPort }}/<f10>""#;
    let extra = r#"
  boot_command_transport = "vnc"
  vnc_use_password       = true
  vtpm                   = true
  floppy_files           = ["answers/*.cfg"]
  floppy_dirs            = ["drivers"]
  floppy_content         = { "sub/hello.txt" = "hello-from-floppy-content" }
  floppy_label           = "qrsfloppy"
"#;
    let template = format!(
        r#"{source}
build {{
  sources = ["source.qemu-rs.dev"]
  provisioner "qemu-rs-shell" {{
    inline = [
      "echo \"tpm devices: $(ls /sys/class/tpm)\"",
      "echo \"tpm version: $(cat /sys/class/tpm/tpm0/tpm_version_major)\"",
    ]
  }}
}}
"#,
        source = iso_source(&guest, &out, &serial, boot, extra)
    );
    let path = env.write("build.pkr.hcl", &template);
    let mut cmd = env.packer(&["build", "-color=false"]);
    cmd.arg(&path).env("TMPDIR", &tmpdir).env("PACKER_LOG", "1").env("PACKER_LOG_PATH", env.path().join("packer.log"));
    let mut build = RunningBuild::spawn(cmd);

    // the build shows the VNC address and password, as Packer does
    let line = build.wait_for_line("with the generated password: ", Duration::from_secs(120));
    let vnc = line.as_deref().and_then(|l| {
        let url = l.split("vnc://").nth(1)?.split_whitespace().next()?.to_string();
        let pw = l.split("with the generated password: ").nth(1)?.trim().to_string();
        Some((url, pw))
    });
    let checked = vnc.as_ref().map(|(addr, pw)| vnc_checks(addr, pw));
    let (success, text) = build.finish();
    let log = fs::read_to_string(env.path().join("packer.log")).unwrap_or_default();
    let (addr, password) = vnc.unwrap_or_else(|| panic!("no VNC password line in the output:\n{text}"));
    assert_eq!(password.len(), 8, "{password:?}");
    if let Some(Err(e)) = checked {
        panic!("VNC password protection ({addr}): {e}\n{text}");
    }
    let serial_text = fs::read_to_string(&serial).unwrap_or_default();
    assert!(success, "packer build failed:\n{text}\nserial:\n{serial_text}");

    // typed over VNC with the password; the guest's GRUB read the floppy
    assert!(text.contains("Typing the boot command over VNC"), "{text}");
    for needle in
        ["Label `qrsfloppy'", "kickstart-from-floppy-files", "driver-from-floppy-dirs", "hello-from-floppy-content"]
    {
        assert!(serial_text.contains(needle), "{needle:?} not on the serial console:\n{serial_text}");
    }
    // the guest's Linux saw a TPM 2.0
    assert!(text.contains("tpm devices: tpm0"), "{text}");
    assert!(text.contains("tpm version: 2"), "{text}");
    // the argv and the secrecy of the password under PACKER_LOG: only the UI line shows it
    assert!(log.contains("-fda ") && log.contains("-tpmdev emulator,id=tpm0,chardev=vtpm"), "argv not in the log");
    assert!(log.contains("password=on"), "no password=on in the logged argv");
    let shown = log.lines().filter(|l| l.contains(&password)).collect::<Vec<_>>();
    assert!(
        shown.iter().all(|l| l.contains("with the generated password:")),
        "the password leaked into the log: {shown:?}"
    );
    // floppy image, swtpm state: nothing left behind
    assert!(leftovers(&tmpdir).is_empty(), "temp files left: {:?}", leftovers(&tmpdir));
}

// ---------------------------------------------------------------------------------------------
// net_bridge, in a network namespace the test makes
// ---------------------------------------------------------------------------------------------

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?} failed: {text}");
    text
}

/// A network namespace with a bridge and a DHCP server; removed (DHCP server ended by pid) on drop.
struct BridgeLab {
    ns: String,
    bridge: String,
    dnsmasq: Option<Child>,
}

impl BridgeLab {
    fn new(dir: &Path) -> BridgeLab {
        let uid = fs::read_to_string("/proc/self/status").unwrap_or_default();
        let root = uid.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
        assert!(root, "the net_bridge test needs root (network namespaces, a bridge)");
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
        let tag = format!("{:06x}", (std::process::id() ^ nanos) & 0xff_ffff);
        let ns = format!("qrs-br-{tag}");
        let bridge = format!("qrsbr{}", &tag[tag.len().saturating_sub(6)..]);
        sh(&["ip", "netns", "add", &ns]);
        let mut lab = BridgeLab { ns, bridge, dnsmasq: None };
        let exec = |cmd: &[&str]| {
            let mut a = vec!["ip", "netns", "exec", lab.ns.as_str()];
            a.extend_from_slice(cmd);
            sh(&a);
        };
        exec(&["ip", "link", "set", "lo", "up"]);
        exec(&["ip", "link", "add", &lab.bridge, "type", "bridge"]);
        exec(&["ip", "addr", "add", "192.0.2.1/24", "dev", &lab.bridge]);
        exec(&["ip", "link", "set", &lab.bridge, "up"]);
        let dnsmasq = Command::new("ip")
            .args(["netns", "exec", &lab.ns, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0"])
            .arg(format!("--interface={}", lab.bridge))
            .args(["--bind-interfaces", "--dhcp-range=192.0.2.50,192.0.2.99,255.255.255.0,10m"])
            .arg(format!("--dhcp-leasefile={}", dir.join("leases").display()))
            .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run dnsmasq (apt-get install dnsmasq-base)");
        lab.dnsmasq = Some(dnsmasq);
        lab
    }
}

impl Drop for BridgeLab {
    fn drop(&mut self) {
        if let Some(mut d) = self.dnsmasq.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

#[test]
fn net_bridge_build_in_a_network_namespace() {
    let guest = guest_dir();
    let _slot = guest_slot();
    let env = PackerEnv::new();
    let tmpdir = env.path().join("tmp");
    fs::create_dir_all(&tmpdir).unwrap();
    let lab = BridgeLab::new(env.path());
    let out = env.path().join("output");
    let serial = env.path().join("serial.log");
    let boot = r#""e<down><down><end> seed=http://{{ .HTTPIP }}:{{ .HTTPPort }}/<f10>""#;
    let extra = format!("  net_bridge = \"{}\"\n", lab.bridge);
    let template = format!(
        r#"{source}
build {{
  sources = ["source.qemu-rs.dev"]
  provisioner "qemu-rs-shell" {{
    inline = ["echo \"guest source: $(cat /run/testguest/source)\"", "ip -4 addr show dev eth0"]
  }}
}}
"#,
        source = iso_source(&guest, &out, &serial, boot, &extra)
    );
    let path = env.write("build.pkr.hcl", &template);
    // bridge.conf for this build only: an overlay on /etc in a private mount namespace
    let etc = env.path().join("etc-overlay");
    let inner = env.write(
        "in-namespace.sh",
        &format!(
            "set -e\nmount -t tmpfs none {etc}\nmkdir -p {etc}/upper/qemu {etc}/work\n\
             echo 'allow {br}' > {etc}/upper/qemu/bridge.conf\n\
             mount -t overlay overlay -o lowerdir=/etc,upperdir={etc}/upper,workdir={etc}/work /etc\n\
             exec ip netns exec {ns} \"$@\"\n",
            etc = etc.display(),
            br = lab.bridge,
            ns = lab.ns
        ),
    );
    fs::create_dir_all(&etc).unwrap();
    let packer = env.packer(&["build", "-color=false"]);
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh"]).arg(&inner).arg("packer").args(packer.get_args());
    cmd.arg(&path);
    if let Some(d) = packer.get_current_dir() {
        cmd.current_dir(d);
    }
    for (k, v) in packer.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.env("TMPDIR", &tmpdir).env("PACKER_LOG", "1").env("PACKER_LOG_PATH", env.path().join("packer.log"));
    let (success, text) = RunningBuild::spawn(cmd).finish();
    let log = fs::read_to_string(env.path().join("packer.log")).unwrap_or_default();
    let serial_text = fs::read_to_string(&serial).unwrap_or_default();
    assert!(success, "packer build failed:\n{text}\nserial:\n{serial_text}");
    assert!(log.contains(&format!("-netdev bridge,id=user.0,br={}", lab.bridge)), "no bridge netdev in the argv");
    assert!(!log.contains("hostfwd"), "a port forward on a bridge");
    // the guest fetched its seed from the HTTP server on the bridge's address
    assert!(text.contains("guest source: seed:http://192.0.2.1:"), "{text}");
    // its address was discovered (QMP MAC + ARP) and SSH went there
    let found = text.lines().find_map(|l| l.split("Guest address: ").nth(1)).map(str::trim).map(str::to_string);
    let found = found.unwrap_or_else(|| panic!("no guest address in the output:\n{text}"));
    assert!(found.starts_with("192.0.2."), "{found}");
    assert!(text.contains(&format!("inet {found}/24")), "SSH did not reach the discovered address:\n{text}");
    assert!(leftovers(&tmpdir).is_empty(), "temp files left: {:?}", leftovers(&tmpdir));
    drop(lab);
    // the host's /etc was not touched
    let host_conf = fs::read_to_string("/etc/qemu/bridge.conf").unwrap_or_default();
    assert!(!host_conf.contains("qrsbr"), "the host's bridge.conf was changed");
}
