//! Faults, end to end, with real Packer (Debian's 1.6.6), the `qemu-rs` builder and the test guest
//! under TCG:
//!
//! - QEMU killed during provisioning: the build fails saying so, with the serial console's tail,
//!   and leaves no QEMU, no output directory and no temporary file;
//! - the output file system full during the final conversion (a small tmpfs): a clear error about
//!   the space, no artifact claimed, the output directory removed;
//! - a download cut in the middle of the body, then a wrong checksum, then the right one: the
//!   failures leave nothing in the cache a later build would trust, and the last build resumes the
//!   cut download and succeeds;
//! - secrets (`ssh_password`, `vnc_password`, a sensitive variable in a provisioner's environment
//!   and the boot command, the private key) appear in no log with `PACKER_LOG=1`;
//! - a guest rebooted by `qemu-rs-shell` and by Packer's `shell` (`expect_disconnect`): the next
//!   provisioner runs on the new boot.
//!
//! Only the secrets test types a boot command (its secret is in it); the others use the cloud
//! image, whose boot needs no typing (typing into GRUB drops keys on a heavily loaded host).
//!
//! Guests boot one at a time (the lock shared with the other test-guest tests).

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use qemu_rs_tests::e2e::{cloud_source, descendants_named, guest_key, qemu_pids_mentioning, wait_until, Build};
use qemu_rs_tests::{guest_dir, guest_slot, hcl_str};

/// `n` random bytes as hex (from /dev/urandom).
fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).expect("read /dev/urandom");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Packer printed an artifact (its "Builds finished. The artifacts of successful builds are:").
fn claims_an_artifact(text: &str) -> bool {
    text.contains("artifacts of successful builds")
}

#[test]
fn qemu_killed_during_provisioning_fails_with_the_serial_tail_and_cleans_up() {
    let guest = guest_dir();
    let _slot = guest_slot();
    let (pubkey, key) = guest_key(&guest);
    let b = Build::new();
    let out = b.out_dir();
    let template = format!(
        r#"{source}
build {{
  sources = ["source.qemu-rs.cloud"]
  provisioner "qemu-rs-shell" {{
    inline = ["echo provisioning-has-started", "sleep 600"]
  }}
}}
"#,
        source = cloud_source(&guest.join("testguest.qcow2"), &out, &pubkey, &key, "")
    );
    let started = Instant::now();
    let mut packer = b.spawn(&template);
    let provisioning = wait_until(Duration::from_secs(300), || {
        fs::read_to_string(b.log_path()).is_ok_and(|l| l.contains("provisioning-has-started"))
    });
    if !provisioning {
        let _ = packer.kill();
        let _ = packer.wait();
        panic!("the provisioner never started\n{}", b.diagnostics());
    }
    let qemus = descendants_named(packer.id(), "qemu-system-x86_64");
    assert_eq!(qemus.len(), 1, "cannot find QEMU under packer ({}): {qemus:?}", packer.id());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(qemus[0].0 as i32), nix::sys::signal::Signal::SIGKILL)
        .expect("SIGKILL QEMU");
    let o = b.wait(packer, started);
    let t = &o.text;
    assert!(!o.success, "the build succeeded without its QEMU:\n{t}");
    assert!(t.contains("QEMU exited") && t.contains("during provisioning"), "the error does not say QEMU died:\n{t}");
    assert!(t.contains("serial console"), "no serial tail:\n{t}");
    assert!(t.contains("testguest: READY"), "the serial tail lacks the guest's last lines:\n{t}");
    assert!(!claims_an_artifact(t), "{t}");
    assert!(!out.exists(), "the output directory was left behind");
    assert!(qemu_pids_mentioning(&out.display().to_string()).is_empty(), "a QEMU outlived the build");
    assert!(b.leftover_temp_files().is_empty(), "temp files left: {:?}", b.leftover_temp_files());
}

/// A tmpfs mounted for the test; unmounted (lazily, so a failing test cannot leave it behind
/// busy) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).expect("create the mount point");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount -t tmpfs failed (the test needs root)");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_output_file_system_during_conversion_fails_clearly_and_claims_no_artifact() {
    let guest = guest_dir();
    let _slot = guest_slot();
    let (pubkey, key) = guest_key(&guest);
    let b = Build::new();
    // The working disk is an overlay on the cloud image (use_backing_file), so it holds only what the
    // guest writes: 24 MiB of random data fit in 40 MiB; the standalone compressed image the
    // conversion writes beside it (the image's ~18 MB plus the 24 MiB) does not.
    let small = Tmpfs::mount(&b.env.path().join("small"), "40m");
    let out = small.0.join("output");
    let template = format!(
        r#"{source}
build {{
  sources = ["source.qemu-rs.cloud"]
  provisioner "qemu-rs-shell" {{
    inline = ["dd if=/dev/urandom of=$(findfs LABEL=tgdata) bs=1M count=24 2>/dev/null && sync && echo wrote-24-MiB"]
  }}
}}
"#,
        source = cloud_source(&guest.join("testguest.qcow2"), &out, &pubkey, &key, "  use_backing_file = true")
    );
    let o = b.run(&template);
    let t = &o.text;
    assert!(t.contains("wrote-24-MiB"), "the provisioner did not fill the disk:\n{t}\n{}", b.diagnostics());
    assert!(!o.success, "the build succeeded on a full file system:\n{t}");
    assert!(t.contains("No space left on device"), "the error hides the cause:\n{t}");
    assert!(t.contains("is full") && t.contains("output_directory"), "the error says nothing to do:\n{t}");
    assert!(!claims_an_artifact(t), "an artifact was claimed:\n{t}");
    assert!(!out.exists(), "the output directory was left behind");
    let left: Vec<_> = fs::read_dir(&small.0).expect("read the tmpfs").flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "files left on the tmpfs: {left:?}");
    assert!(b.leftover_temp_files().is_empty(), "temp files left: {:?}", b.leftover_temp_files());
}

/// An HTTP server of one file on 127.0.0.1 that cuts its first answer after half the body and
/// answers later ones in full, honouring `Range`. Records each request's `Range` header.
struct FlakyServer {
    port: u16,
    requests: Arc<Mutex<Vec<Option<String>>>>,
}

impl FlakyServer {
    fn start(file: &Path) -> FlakyServer {
        let data = Arc::new(fs::read(file).expect("read the served file"));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        // the thread ends with the test process
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let range = head.lines().find_map(|l| l.strip_prefix("range: bytes=")).map(|r| r.trim().to_string());
                let first = {
                    let mut r = log.lock().unwrap();
                    r.push(range.clone());
                    r.len() == 1
                };
                let start: usize =
                    range.as_deref().and_then(|r| r.trim_end_matches('-').parse().ok()).unwrap_or(0).min(data.len());
                let body = &data[start..];
                let status = match range {
                    Some(_) => {
                        format!("206 Partial Content\r\nContent-Range: bytes {start}-{}/{}", data.len() - 1, data.len())
                    }
                    None => "200 OK".to_string(),
                };
                let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(if first { &body[..body.len() / 2] } else { body });
            }
        });
        FlakyServer { port, requests }
    }
}

/// Files in the build's `PACKER_CACHE_DIR`.
fn cache_files(b: &Build) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(b.env.path().join("packer_cache"))
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn sha256_of(p: &Path) -> String {
    let out = Command::new("sha256sum").arg(p).output().expect("run sha256sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().expect("a digest").to_string()
}

#[test]
fn a_cut_download_resumes_and_a_wrong_checksum_never_poisons_the_cache() {
    let guest = guest_dir();
    let image = guest.join("testguest.qcow2");
    let sum = sha256_of(&image);
    let server = FlakyServer::start(&image);
    let url = PathBuf::from(format!("http://127.0.0.1:{}/testguest.qcow2", server.port));
    let (pubkey, key) = guest_key(&guest);
    let b = Build::new();
    let out = b.out_dir();
    let template = |checksum: &str| {
        let source = cloud_source(&url, &out, &pubkey, &key, "")
            .replace(r#"iso_checksum     = "none""#, &format!("iso_checksum     = \"{checksum}\""));
        assert!(source.contains(checksum), "the source has no iso_checksum line to replace");
        format!(
            r#"{source}
build {{
  sources = ["source.qemu-rs.cloud"]
  provisioner "qemu-rs-shell" {{ inline = ["echo booted-from-the-download"] }}
}}
"#
        )
    };
    let right = format!("sha256:{sum}");

    // 1. the connection is cut after half the body: the build fails, the cache holds a .part only
    let o = b.run(&template(&right));
    assert!(!o.success, "a cut download succeeded:\n{}", o.text);
    assert!(o.text.contains("interrupted"), "the error does not say the download broke off:\n{}", o.text);
    let files = cache_files(&b);
    assert!(files.len() == 1 && files[0].ends_with(".part"), "the cache after a cut download: {files:?}");
    assert!(!out.exists());

    // 2. a wrong checksum: the whole file arrives, fails verification, nothing of it is kept
    let wrong = format!("sha256:{}", "0".repeat(64));
    let o = b.run(&template(&wrong));
    assert!(!o.success, "a wrong checksum was accepted:\n{}", o.text);
    assert!(o.text.contains("checksum mismatch") && o.text.contains(&sum), "{}", o.text);
    assert_eq!(cache_files(&b), files, "the wrong download left something in the cache");
    assert!(!out.exists());

    // 3. the right checksum again: the cut download is resumed, verified and booted
    let _slot = guest_slot();
    let o = b.run_ok(&template(&right));
    assert!(o.text.contains("booted-from-the-download"), "{}", o.text);
    assert!(o.text.contains("resuming at"), "the download was not resumed:\n{}", o.text);
    let requests = server.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert_eq!(requests[..2], [None, None], "{requests:?}");
    let half = fs::metadata(&image).unwrap().len() / 2;
    assert_eq!(requests[2].as_deref(), Some(format!("{half}-").as_str()), "{requests:?}");
    let files = cache_files(&b);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(!files[0].ends_with(".part"), "{files:?}");
    assert_eq!(sha256_of(&b.env.path().join("packer_cache").join(&files[0])), sum);
}

#[test]
fn secrets_never_reach_the_logs() {
    let guest = guest_dir();
    let _slot = guest_slot();
    let b = Build::new();
    let out = b.out_dir();
    let ssh_password = format!("ssh-pw-{}", random_hex(12));
    let vnc_password = random_hex(4); // 8 characters, VNC's limit
    let sensitive = format!("sensitive-{}", random_hex(12));
    let key = guest.join("id_ed25519");
    let pubkey = fs::read_to_string(guest.join("id_ed25519.pub")).expect("test key").trim().to_string();
    let private = fs::read_to_string(&key).expect("the test key");
    let key_body: Vec<String> = private.lines().filter(|l| !l.starts_with("-----")).map(str::to_string).collect();
    let template = format!(
        r#"
variable "secret" {{
  type      = string
  default   = "{sensitive}"
  sensitive = true
}}

source "qemu-rs" "iso" {{
  iso_url          = {iso}
  iso_checksum     = "none"
  output_directory = {out}
  disk_size        = "64M"
  accelerator      = "tcg"
  memory           = 512
  http_content     = {{ "/authorized_keys" = "{pubkey}\n" }}
  boot_wait        = "3s"
  boot_command     = ["e<down><down><end> seed=http://{{{{ .HTTPIP }}}}:{{{{ .HTTPPort }}}}/ tgnote=${{var.secret}}<f10>"]
  vnc_use_password = true
  vnc_password     = "{vnc_password}"
  ssh_username     = "root"
  ssh_password     = "{ssh_password}"
  ssh_private_key_file = {key}
  ssh_timeout      = "3m"
  shutdown_command = "poweroff"
}}

build {{
  sources = ["source.qemu-rs.iso"]
  provisioner "qemu-rs-shell" {{
    environment_vars = ["SECRET=${{var.secret}}"]
    inline = ["echo \"qemu-rs-shell got a secret of $${{#SECRET}} characters\"", "echo \"typed: $(grep -c tgnote= /proc/cmdline)\""]
  }}
  provisioner "shell" {{
    environment_vars = ["SECRET=${{var.secret}}"]
    inline = ["echo \"packer shell got a secret of $${{#SECRET}} characters\""]
  }}
}}
"#,
        iso = hcl_str(&guest.join("testguest.iso")),
        out = hcl_str(&out),
        key = hcl_str(&key),
    );
    let o = b.run_ok(&template);
    let t = &o.text;
    // the secrets were used: typed, handed to both provisioners
    let n = sensitive.len();
    assert!(t.contains(&format!("qemu-rs-shell got a secret of {n} characters")), "{t}");
    assert!(t.contains(&format!("packer shell got a secret of {n} characters")), "{t}");
    assert!(t.contains("typed: 1"), "{t}");
    let logs = [
        ("packer output", t.clone()),
        ("PACKER_LOG", fs::read_to_string(b.log_path()).expect("packer.log")),
        ("plugin log", fs::read_to_string(b.plugin_log_path()).expect("plugin.log")),
    ];
    assert!(logs[1].1.contains("qemu-rs") && logs[2].1.contains("Executing"), "the logs are not complete");
    let mut secrets = vec![
        ("ssh_password", ssh_password.clone()),
        ("vnc_password", vnc_password.clone()),
        ("sensitive variable", sensitive.clone()),
        ("private key (whole body)", key_body.concat()),
    ];
    for (i, line) in key_body.iter().enumerate().filter(|(_, l)| l.len() >= 16) {
        secrets.push(("private key line", format!("{line} (line {i})")));
    }
    let mut leaks = Vec::new();
    for (log, text) in &logs {
        for (what, secret) in &secrets {
            let needle = secret.split(" (line ").next().unwrap_or(secret);
            if let Some(at) = text.find(needle) {
                let line = text[..at].rsplit('\n').next().unwrap_or("").to_string() + needle;
                leaks.push(format!("{what} in the {log}: …{}", &line[line.len().saturating_sub(160)..]));
            }
        }
    }
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
}

/// The boot ids a build's provisioners printed as `boot-id-N: <id>`, in order.
fn boot_ids(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let at = l.find("boot-id-")?;
            let (label, id) = l[at..].split_once(": ")?;
            Some((label.to_string(), id.trim().to_string()))
        })
        .filter(|(_, id)| id.len() == 36)
        .collect()
}

#[test]
fn a_guest_rebooted_by_a_provisioner_is_reconnected_for_the_next_one() {
    let guest = guest_dir();
    let _slot = guest_slot();
    let (pubkey, key) = guest_key(&guest);
    let b = Build::new();
    let out = b.out_dir();
    // `reboot` returns at once: the sleep keeps the script running until the reboot ends it, so
    // the next provisioner cannot start on the old boot
    let template = format!(
        r#"{source}
build {{
  sources = ["source.qemu-rs.cloud"]
  provisioner "qemu-rs-shell" {{
    expect_disconnect = true
    inline = ["echo \"boot-id-1: $(cat /proc/sys/kernel/random/boot_id)\"", "reboot", "sleep 300"]
  }}
  provisioner "qemu-rs-shell" {{
    inline = ["echo \"boot-id-2: $(cat /proc/sys/kernel/random/boot_id)\""]
  }}
  provisioner "shell" {{
    expect_disconnect = true
    inline = ["reboot", "sleep 300"]
  }}
  provisioner "shell" {{
    inline = ["echo \"boot-id-3: $(cat /proc/sys/kernel/random/boot_id)\""]
  }}
}}
"#,
        source = cloud_source(&guest.join("testguest.qcow2"), &out, &pubkey, &key, "")
    );
    let o = b.run_ok(&template);
    let ids = boot_ids(&o.text);
    let labels: Vec<&str> = ids.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, ["boot-id-1", "boot-id-2", "boot-id-3"], "{}", o.text);
    assert_ne!(ids[0].1, ids[1].1, "qemu-rs-shell's reboot did not happen:\n{}", o.text);
    assert_ne!(ids[1].1, ids[2].1, "Packer shell's reboot did not happen:\n{}", o.text);
    let serial = fs::read_to_string(out.join("serial.log")).expect("serial.log in the output directory");
    assert_eq!(serial.matches("testguest: READY").count(), 3, "three boots expected:\n{serial}");
    assert!(out.join("cloud.qcow2").is_file());
}
