//! Boots the test guest images of `images/testguest` with plain QEMU (no Packer) under TCG and checks the
//! guest's contract: the `testguest: READY` line on the serial console, SSH with the throwaway key (scp and
//! SFTP), configuration from a NoCloud cidata CD and from `sshkey=` typed into GRUB's entry editor, a
//! writable `/dev/vda`, and a clean shutdown through `poweroff` and through the ACPI power button.
//!
//! The images come from `make testguest`; set `TESTGUEST_DIR` to use another directory than
//! `images/testguest/out`. When they are missing the tests fail and say so.
//!
//! At most one guest boots at a time (a lock file shared with the other test binaries that boot the test
//! guest), because under TCG a guest keeps one host core busy.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Upper bound for a guest to boot (hang guard only; a healthy boot takes 10–40 s under TCG).
const BOOT_DEADLINE: Duration = Duration::from_secs(300);
/// Upper bound for one `ssh` invocation.
const SSH_DEADLINE: Duration = Duration::from_secs(60);
/// Upper bound for QEMU to exit after the guest was asked to power off.
const POWEROFF_DEADLINE: Duration = Duration::from_secs(120);

use qemu_rs_tests::{free_port, guest_dir, guest_slot, run_with_deadline};

/// Copies the throwaway private key into `tmp` with mode 0600 (ssh refuses keys others can read).
fn private_key(dir: &Path, tmp: &Path) -> PathBuf {
    let key = tmp.join("id_ed25519");
    fs::copy(dir.join("id_ed25519"), &key).expect("copy the private key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).expect("chmod the private key");
    key
}

fn public_key(dir: &Path) -> String {
    fs::read_to_string(dir.join("id_ed25519.pub")).expect("read id_ed25519.pub").trim().to_string()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}:\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A running QEMU. Dropping it kills QEMU (by pid) and reaps it, on every path.
struct Guest {
    child: Child,
    port: u16,
    serial: PathBuf,
    qemu_log: PathBuf,
    monitor: UnixStream,
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Guest {
    /// Starts `qemu-system-x86_64 -accel tcg` with user networking (guest port 22 forwarded to a free port on
    /// 127.0.0.1), the serial console in a file and an HMP monitor on a unix socket, plus `extra` arguments.
    /// Retries with another port when the forwarding port was taken in between.
    fn start(tmp: &Path, extra: &[&str]) -> Guest {
        let serial = tmp.join("serial.log");
        let qemu_log = tmp.join("qemu.log");
        let monitor_path = tmp.join("monitor.sock");
        for _attempt in 0..5 {
            let _ = fs::remove_file(&monitor_path);
            let port = free_port();
            let log = File::create(&qemu_log).expect("create qemu.log");
            let mut cmd = Command::new("qemu-system-x86_64");
            cmd.args(["-accel", "tcg", "-machine", "pc", "-m", "512", "-display", "none"])
                .arg("-netdev")
                .arg(format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22"))
                .args(["-device", "virtio-net-pci,netdev=n0"])
                .arg("-serial")
                .arg(format!("file:{}", serial.display()))
                .arg("-monitor")
                .arg(format!("unix:{},server=on,wait=off", monitor_path.display()))
                .args(extra)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup qemu.log"))
                .stderr(log);
            let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start qemu-system-x86_64: {e}"));
            let started = Instant::now();
            let monitor = loop {
                if let Some(status) = child.try_wait().expect("wait for qemu") {
                    break Err(status);
                }
                if let Ok(s) = UnixStream::connect(&monitor_path) {
                    break Ok(s);
                }
                assert!(started.elapsed() < Duration::from_secs(60), "QEMU did not open its monitor socket");
                sleep(Duration::from_millis(50));
            };
            match monitor {
                Ok(monitor) => {
                    let mut guest = Guest { child, port, serial, qemu_log, monitor };
                    guest.monitor.set_read_timeout(Some(Duration::from_secs(30))).expect("monitor timeout");
                    guest.read_prompt();
                    return guest;
                }
                Err(status) => {
                    let log = fs::read_to_string(&qemu_log).unwrap_or_default();
                    if log.contains("host forwarding") {
                        continue; // the port was taken between free_port() and QEMU: try another one
                    }
                    panic!("QEMU exited at once with {status}:\n{log}");
                }
            }
        }
        panic!("could not find a free port for QEMU's SSH forwarding after 5 attempts");
    }

    fn serial_text(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.serial).unwrap_or_default()).into_owned()
    }

    fn diagnostics(&mut self) -> String {
        let serial = self.serial_text();
        let tail: String = serial.chars().rev().take(4000).collect::<Vec<_>>().into_iter().rev().collect();
        format!(
            "QEMU: {:?}\nqemu.log:\n{}\nserial console (tail):\n{}",
            self.child.try_wait(),
            fs::read_to_string(&self.qemu_log).unwrap_or_default(),
            tail
        )
    }

    /// Waits until the serial console shows `needle`; returns the line that holds it.
    fn wait_serial(&mut self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let text = self.serial_text();
            if let Some(line) = text.lines().find(|l| l.contains(needle)) {
                return line.trim().to_string();
            }
            if self.child.try_wait().expect("wait for qemu").is_some() || start.elapsed() > BOOT_DEADLINE {
                panic!("the serial console never showed {needle:?}\n{}", self.diagnostics());
            }
            sleep(Duration::from_millis(200));
        }
    }

    /// Reads monitor output up to the next `(qemu) ` prompt.
    fn read_prompt(&mut self) -> String {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.ends_with(b"(qemu) ") {
            let n = self.monitor.read(&mut chunk).expect("read from the QEMU monitor");
            assert!(n > 0, "the QEMU monitor closed the connection");
            buf.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Runs one HMP command and returns its output.
    fn hmp(&mut self, command: &str) -> String {
        self.monitor.write_all(format!("{command}\n").as_bytes()).expect("write to the QEMU monitor");
        self.read_prompt()
    }

    /// Types keys (QEMU qcodes, e.g. `e`, `shift-a`, `f10`) with a pause after each, like a VNC boot command
    /// at 100 ms per key.
    fn type_keys<S: AsRef<str>>(&mut self, keys: &[S]) {
        for k in keys {
            let out = self.hmp(&format!("sendkey {} 50", k.as_ref()));
            assert!(!out.contains("invalid") && !out.contains("unknown"), "sendkey {}: {out}", k.as_ref());
            sleep(Duration::from_millis(100));
        }
    }

    /// Runs `command` as `user` over SSH with only the given key (BatchMode: no password fallback).
    fn ssh(&self, key: &Path, user: &str, command: &str) -> Output {
        let mut cmd = Command::new("ssh");
        cmd.arg("-i").arg(key).args(ssh_options()).arg("-p").arg(self.port.to_string());
        cmd.arg(format!("{user}@127.0.0.1")).arg(command);
        run_with_deadline(&mut cmd, SSH_DEADLINE)
    }

    /// Like [`Guest::ssh`], retried until it succeeds (slirp sometimes stalls the first connections).
    fn ssh_ok(&mut self, key: &Path, user: &str, command: &str) -> String {
        let start = Instant::now();
        loop {
            let out = self.ssh(key, user, command);
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            if start.elapsed() > BOOT_DEADLINE || self.child.try_wait().expect("wait for qemu").is_some() {
                panic!(
                    "ssh {user}@guest {command:?} kept failing; last attempt: {}\n{}\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr),
                    self.diagnostics()
                );
            }
            sleep(Duration::from_secs(1));
        }
    }

    /// Waits for QEMU to exit on its own (after the guest powered off).
    fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for qemu") {
                return status;
            }
            if start.elapsed() > POWEROFF_DEADLINE {
                panic!("QEMU did not exit after the guest was powered off\n{}", self.diagnostics());
            }
            sleep(Duration::from_millis(200));
        }
    }
}

fn ssh_options() -> Vec<&'static str> {
    vec![
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "LogLevel=ERROR",
    ]
}

/// `url.QueryEscape` as in Go templates' `urlquery`: unreserved bytes stay, space becomes `+`, the rest `%XX`.
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The QEMU qcode (US layout) that types `c`.
fn qcode(c: char) -> String {
    match c {
        'a'..='z' | '0'..='9' => c.to_string(),
        'A'..='Z' => format!("shift-{}", c.to_ascii_lowercase()),
        ' ' => "spc".into(),
        '-' => "minus".into(),
        '_' => "shift-minus".into(),
        '.' => "dot".into(),
        '/' => "slash".into(),
        '=' => "equal".into(),
        '+' => "shift-equal".into(),
        '%' => "shift-5".into(),
        '~' => "shift-grave_accent".into(),
        ':' => "shift-semicolon".into(),
        _ => panic!("no qcode for {c:?}"),
    }
}

/// Makes a NoCloud seed CD (volume id `cidata`) from `user-data` and `meta-data`.
fn cidata_iso(tmp: &Path, user_data: &str, meta_data: &str) -> PathBuf {
    let dir = tmp.join("cidata");
    fs::create_dir_all(&dir).expect("mkdir cidata");
    fs::write(dir.join("user-data"), user_data).expect("write user-data");
    fs::write(dir.join("meta-data"), meta_data).expect("write meta-data");
    let iso = tmp.join("cidata.iso");
    run(Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-volid", "cidata", "-joliet", "-rock", "-o"])
        .arg(&iso)
        .arg(&dir));
    iso
}

/// Reads `len` bytes at `offset` of a qcow2 image (converted to a sparse raw file, no mounts).
fn qcow2_bytes(tmp: &Path, image: &Path, offset: u64, len: usize) -> Vec<u8> {
    let raw = tmp.join("peek.raw");
    run(Command::new("qemu-img").args(["convert", "-f", "qcow2", "-O", "raw"]).arg(image).arg(&raw));
    let mut f = File::open(&raw).expect("open peek.raw");
    let mut buf = vec![0u8; len];
    f.seek(SeekFrom::Start(offset)).expect("seek in peek.raw");
    f.read_exact(&mut buf).expect("read peek.raw");
    let _ = fs::remove_file(&raw);
    buf
}

/// Reads `info usernet` until the connections through the SSH forward satisfy `ok` (the builder's
/// parser of it, `builder_qemu::driver::usernet`); fails after 60 s with the last output.
fn forwarded_until(
    guest: &mut Guest,
    ok: impl Fn(&builder_qemu::driver::usernet::ForwardedConnections) -> bool,
) -> builder_qemu::driver::usernet::ForwardedConnections {
    let started = Instant::now();
    loop {
        let text = guest.hmp("info usernet");
        let n = builder_qemu::driver::usernet::parse(&text, guest.port, 22);
        if ok(&n) {
            return n;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "info usernet never showed it ({n:?}):\n{text}");
        sleep(Duration::from_millis(100));
    }
}

fn tmpdir() -> TempDir {
    tempfile::Builder::new().prefix("testguest-boot-").tempdir().expect("create a temp dir")
}

#[test]
fn disk_image_configures_itself_from_cidata_and_stops_on_the_power_button() {
    let dir = guest_dir();
    let _slot = guest_slot();
    let tmp = tmpdir();
    let key = private_key(&dir, tmp.path());

    // a throwaway overlay, so the built image stays untouched
    let disk = tmp.path().join("disk.qcow2");
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(dir.join("testguest.qcow2"))
        .arg(&disk));
    let password = "Cidata-pw-42";
    let user_data =
        format!("#cloud-config\npassword: \"{password}\"\nssh_authorized_keys:\n  - {}\n", public_key(&dir));
    let seed = cidata_iso(tmp.path(), &user_data, "instance-id: t1\nlocal-hostname: tg-disk-test\n");

    let mut guest = Guest::start(
        tmp.path(),
        &[
            "-boot",
            "c",
            "-drive",
            &format!("file={},if=virtio,format=qcow2", disk.display()),
            "-drive",
            &format!("file={},media=cdrom,readonly=on,format=raw", seed.display()),
        ],
    );
    // QEMU's side of the forward (what the builder's SSH wait reads): a connection made while the
    // guest's network is down waits for the guest's answer to its SYN...
    let early = std::net::TcpStream::connect(("127.0.0.1", guest.port)).expect("connect to the forward");
    let conns = forwarded_until(&mut guest, |n| n.connecting >= 1);
    assert_eq!(conns.established, 0, "{conns:?}");
    drop(early);
    let ready = guest.wait_serial("testguest: READY");
    // ...and one the guest's sshd has accepted is ESTABLISHED, before anything was read from it
    let held = std::net::TcpStream::connect(("127.0.0.1", guest.port)).expect("connect to the forward");
    forwarded_until(&mut guest, |n| n.established >= 1);
    drop(held);
    assert!(ready.contains("source=cidata:/dev/sr0"), "unexpected READY line: {ready}");
    assert!(ready.contains("sshd=dropbear:22"), "unexpected READY line: {ready}");

    let out = guest.ssh_ok(&key, "root", "cat /run/testguest/source; hostname; id -u");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["cidata:/dev/sr0", "tg-disk-test", "0"], "{out}");
    let out = guest.ssh_ok(&key, "packer", "id -un; id -u");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["packer", "1000"], "{out}");

    // the password from user-data is the one in /etc/shadow (same salt, same hash)
    let check = format!(
        "h=$(awk -F: '$1==\"root\"{{print $2}}' /etc/shadow); s=$(echo \"$h\" | cut -d'$' -f3); \
         [ \"$(mkpasswd -m sha512 -S \"$s\" '{password}')\" = \"$h\" ] && echo password-ok"
    );
    assert_eq!(guest.ssh_ok(&key, "root", &check).trim(), "password-ok");

    // the tgdata partition is writable
    let out = guest.ssh_ok(
        &key,
        "root",
        "d=$(findfs LABEL=tgdata) && mkdir -p /mnt/t && mount \"$d\" /mnt/t && echo written > /mnt/t/f && \
         umount /mnt/t && mount \"$d\" /mnt/t && cat /mnt/t/f && umount /mnt/t && echo \"$d\"",
    );
    assert_eq!(out.lines().collect::<Vec<_>>(), ["written", "/dev/vda4"], "{out}");

    // file transfer: scp protocol (what Packer 1.6.6 uses) and SFTP
    let payload = tmp.path().join("payload.txt");
    fs::write(&payload, "payload over scp and sftp\n").expect("write payload");
    for (mode, remote) in [("-O", "/tmp/via-scp"), ("-s", "/tmp/via-sftp")] {
        let mut scp = Command::new("scp");
        scp.arg(mode).arg("-i").arg(&key).args(ssh_options()).arg("-P").arg(guest.port.to_string());
        scp.arg(&payload).arg(format!("root@127.0.0.1:{remote}"));
        let out = run_with_deadline(&mut scp, SSH_DEADLINE);
        assert!(out.status.success(), "scp {mode} failed: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(guest.ssh_ok(&key, "root", &format!("cat {remote}")), "payload over scp and sftp\n");
    }

    // ACPI power button (QEMU system_powerdown) -> acpid -> poweroff -> QEMU exits
    guest.hmp("system_powerdown");
    let status = guest.wait_exit();
    assert!(status.success(), "QEMU exited with {status} after system_powerdown");
    assert!(guest.serial_text().contains("testguest: power button pressed"), "{}", guest.diagnostics());
}

#[test]
fn iso_boots_with_sshkey_typed_into_the_grub_editor_and_powers_off() {
    let dir = guest_dir();
    let _slot = guest_slot();
    let tmp = tmpdir();
    let key = private_key(&dir, tmp.path());
    let disk = tmp.path().join("blank.qcow2");
    run(Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&disk).arg("64M"));

    let iso = dir.join("testguest.iso");
    let mut guest = Guest::start(
        tmp.path(),
        &[
            "-boot",
            "d",
            "-drive",
            &format!("file={},if=virtio,format=qcow2", disk.display()),
            "-drive",
            &format!("file={},media=cdrom,readonly=on,format=raw", iso.display()),
        ],
    );
    // GRUB's menu (it counts down 10 s), then the boot command contract: e<down><down><end> PARAMS<f10>
    guest.wait_serial("executed automatically");
    let params = format!(" sshkey={}", query_escape(&public_key(&dir)));
    let mut keys: Vec<String> = ["e", "down", "down", "end"].iter().map(|k| k.to_string()).collect();
    keys.extend(params.chars().map(qcode));
    keys.push("f10".into());
    guest.type_keys(&keys);

    let ready = guest.wait_serial("testguest: READY");
    assert!(ready.contains("source=none"), "unexpected READY line: {ready}");
    let cmdline = guest.ssh_ok(&key, "root", "cat /proc/cmdline");
    assert!(cmdline.contains(&params), "the typed parameters are not on the kernel command line: {cmdline}");
    assert!(guest.serial_text().contains("Linux version"), "the kernel log is not on the serial console");

    // /dev/vda is writable; the data must survive the shutdown
    guest.ssh_ok(
        &key,
        "root",
        "printf 'TESTGUEST-BOOT-TEST' | dd of=/dev/vda bs=512 seek=2048 conv=notrunc 2>/dev/null && sync",
    );
    // poweroff closes the connection while the command runs: its exit status does not matter
    let _ = guest.ssh(&key, "root", "poweroff");
    let status = guest.wait_exit();
    assert!(status.success(), "QEMU exited with {status} after poweroff");
    assert_eq!(qcow2_bytes(tmp.path(), &disk, 2048 * 512, 19), b"TESTGUEST-BOOT-TEST");
}

/// Copies `/boot/vmlinuz` and `/boot/initrd.img` out of the ISO (no mounts), for tests of the kernel
/// parameters that boot with `-kernel`/`-append` instead of typing into GRUB.
fn kernel_and_initrd(dir: &Path, tmp: &Path) -> (PathBuf, PathBuf) {
    let (kernel, initrd) = (tmp.join("vmlinuz"), tmp.join("initrd.img"));
    run(Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(dir.join("testguest.iso"))
        .arg("-extract")
        .arg("/boot/vmlinuz")
        .arg(&kernel)
        .arg("-extract")
        .arg("/boot/initrd.img")
        .arg(&initrd));
    (kernel, initrd)
}

/// A minimal HTTP/1.0 file server on 127.0.0.1 (the guest reaches it as 10.0.2.2:PORT through slirp).
/// Counts the requests it answered; stops when dropped.
struct SeedServer {
    port: u16,
    stop: Arc<AtomicBool>,
    served: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SeedServer {
    fn start(files: Vec<(&'static str, String)>) -> SeedServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the seed server");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let port = listener.local_addr().expect("seed server address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(Mutex::new(Vec::new()));
        let (stop2, served2) = (stop.clone(), served.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let (mut conn, _) = match listener.accept() {
                    Ok(c) => c,
                    Err(_) => {
                        sleep(Duration::from_millis(20));
                        continue;
                    }
                };
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let req = String::from_utf8_lossy(&req);
                let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
                let reply = match files.iter().find(|(name, _)| path == format!("/{name}")) {
                    Some((_, body)) => {
                        served2.lock().unwrap_or_else(|e| e.into_inner()).push(path);
                        format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                    }
                    None => "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string(),
                };
                let _ = conn.write_all(reply.as_bytes());
            }
        });
        SeedServer { port, stop, served, thread: Some(thread) }
    }

    fn served(&self) -> Vec<String> {
        self.served.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for SeedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn seed_url_provides_keys_password_and_marker() {
    let dir = guest_dir();
    let _slot = guest_slot();
    let tmp = tmpdir();
    let key = private_key(&dir, tmp.path());
    let (kernel, initrd) = kernel_and_initrd(&dir, tmp.path());
    let password = "Seed-pw-7";
    let server = SeedServer::start(vec![
        ("authorized_keys", format!("{}\n", public_key(&dir))),
        ("password", format!("{password}\n")),
        ("marker", "marker-from-the-test\n".to_string()),
    ]);
    let seed = format!("http://10.0.2.2:{}/", server.port);
    let append = format!("console=ttyS0,115200 seed={seed}");
    let mut guest = Guest::start(
        tmp.path(),
        &["-kernel", kernel.to_str().unwrap(), "-initrd", initrd.to_str().unwrap(), "-append", &append],
    );
    let ready = guest.wait_serial("testguest: READY");
    let expected_source = format!("seed:{}", seed.trim_end_matches('/'));
    assert!(ready.contains(&format!("source={expected_source} ")), "unexpected READY line: {ready}");
    let out = guest.ssh_ok(&key, "packer", "cat /run/testguest/source /run/testguest/marker");
    assert_eq!(out.lines().collect::<Vec<_>>(), [expected_source.as_str(), "marker-from-the-test"]);
    let check = format!(
        "h=$(awk -F: '$1==\"packer\"{{print $2}}' /etc/shadow); s=$(echo \"$h\" | cut -d'$' -f3); \
         [ \"$(mkpasswd -m sha512 -S \"$s\" '{password}')\" = \"$h\" ] && echo password-ok"
    );
    assert_eq!(guest.ssh_ok(&key, "root", &check).trim(), "password-ok");
    // each file was fetched (a retried fetch may show up twice)
    let mut served = server.served();
    served.dedup();
    assert_eq!(served, ["/authorized_keys", "/password", "/marker"]);
}

#[test]
fn nossh_keeps_sshd_off_and_panic_crashes_the_kernel() {
    let dir = guest_dir();
    let _slot = guest_slot();
    let tmp = tmpdir();
    let key = private_key(&dir, tmp.path());
    let (kernel, initrd) = kernel_and_initrd(&dir, tmp.path());
    let (k, i) = (kernel.to_str().unwrap(), initrd.to_str().unwrap());

    let mut guest = Guest::start(tmp.path(), &["-kernel", k, "-initrd", i, "-append", "console=ttyS0,115200 nossh"]);
    let ready = guest.wait_serial("testguest: READY");
    assert!(ready.contains("sshd=disabled"), "unexpected READY line: {ready}");
    let out = guest.ssh(&key, "root", "true");
    assert!(!out.status.success(), "ssh worked although the guest booted with nossh");
    drop(guest);

    // panic, with panic=1 and -no-reboot: the kernel crashes, reboots after 1 s, and QEMU exits
    let _ = fs::remove_file(tmp.path().join("serial.log"));
    let mut guest = Guest::start(
        tmp.path(),
        &["-kernel", k, "-initrd", i, "-append", "console=ttyS0,115200 panic panic=1", "-no-reboot"],
    );
    guest.wait_exit();
    let serial = guest.serial_text();
    assert!(serial.contains("Kernel panic - not syncing"), "no kernel panic on the console:\n{serial}");
    assert!(!serial.contains("testguest: READY"), "the guest got READY despite panic:\n{serial}");
}

#[test]
fn query_escape_matches_go_urlquery() {
    assert_eq!(query_escape("ssh-rsa AB+c/d= me@x"), "ssh-rsa+AB%2Bc%2Fd%3D+me%40x");
    assert_eq!(qcode('Q'), "shift-q");
}
