//! The VNC key driver against a real QEMU (`qemu-system-x86_64 -S -nodefaults`, no guest needed).
//!
//! QEMU's `vnc_key_event_map` trace event logs every key event it receives with the keysym and
//! the key its US keymap maps it to, so these tests check what QEMU actually got: the keysyms,
//! the down/up order, and that our QMP qcode names agree with QEMU's own keymap.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use packer_sdk::bootcommand::vnc::{RfbVersion, VncClient};
use packer_sdk::bootcommand::{events, parse, type_boot_command, DriverError, Key, KeyDriver, KeyEvent, SpecialKey};
use packer_sdk::CancellationToken;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// A QEMU process killed (by pid) and reaped on drop, with its files in a temp dir.
struct Qemu {
    child: Child,
    dir: tempfile::TempDir,
}

impl Qemu {
    /// Starts QEMU with `vnc` as the `-vnc` argument (`{dir}` is replaced by the temp dir) and a QMP socket.
    fn start(vnc: &str) -> Qemu {
        let dir = tempfile::tempdir().expect("temp dir");
        let vnc = vnc.replace("{dir}", &dir.path().display().to_string());
        let stderr = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
        let child = Command::new("qemu-system-x86_64")
            .args(["-accel", "tcg", "-display", "none", "-nodefaults", "-S", "-vnc", &vnc])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", dir.path().join("qmp.sock").display()))
            .args(["-trace", "vnc_key_event_map"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("qemu-system-x86_64 must be installed");
        let q = Qemu { child, dir };
        q.wait_for(&q.qmp_path());
        q
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn qmp_path(&self) -> PathBuf {
        self.path("qmp.sock")
    }

    fn wait_for(&self, p: &Path) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !p.exists() {
            assert!(Instant::now() < deadline, "QEMU did not create {}: {}", p.display(), self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.path("stderr")).unwrap_or_default()
    }

    /// The key events QEMU logged: (down, keysym, key name from QEMU's keymap).
    fn logged_keys(&self) -> Vec<(bool, u32, String)> {
        self.stderr()
            .lines()
            .filter_map(|l| {
                // vnc_key_event_map down 1, sym 0x21 -> keycode 0x2 [1]
                let rest = l.split("vnc_key_event_map down ").nth(1)?;
                let down = rest.starts_with('1');
                let sym = rest.split("sym 0x").nth(1)?.split_whitespace().next()?;
                let name = rest.rsplit('[').next()?.trim_end_matches(']');
                Some((down, u32::from_str_radix(sym, 16).ok()?, name.to_string()))
            })
            .collect()
    }

    /// Polls the log until at least `n` key events are there (QEMU handles them asynchronously).
    async fn wait_for_keys(&self, n: usize) -> Vec<(bool, u32, String)> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let keys = self.logged_keys();
            if keys.len() >= n || Instant::now() > deadline {
                return keys;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal QMP client: greeting, capabilities, then one command at a time.
struct Qmp {
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl Qmp {
    async fn connect(path: &Path) -> Qmp {
        let deadline = Instant::now() + Duration::from_secs(30);
        let stream = loop {
            match UnixStream::connect(path).await {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(e) => panic!("connect QMP: {e}"),
            }
        };
        let (r, w) = stream.into_split();
        let mut q = Qmp { reader: BufReader::new(r), writer: w };
        let greeting = q.read().await;
        assert!(greeting.get("QMP").is_some(), "{greeting}");
        q.execute("qmp_capabilities", json!({})).await;
        q
    }

    async fn read(&mut self) -> Value {
        let mut line = String::new();
        self.reader.read_line(&mut line).await.expect("read QMP");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad QMP line {line:?}: {e}"))
    }

    async fn execute(&mut self, cmd: &str, args: Value) -> Value {
        let msg = json!({"execute": cmd, "arguments": args}).to_string() + "\n";
        self.writer.write_all(msg.as_bytes()).await.expect("write QMP");
        loop {
            let v = self.read().await;
            if v.get("event").is_some() {
                continue;
            }
            return v.get("return").cloned().unwrap_or_else(|| panic!("QMP {cmd} failed: {v}"));
        }
    }
}

/// Connects to QEMU's VNC Unix socket, retrying while QEMU has bound it but is not listening yet.
async fn connect_vnc(path: &Path, password: Option<&str>) -> Result<VncClient, DriverError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match VncClient::connect_unix(path, password).await {
            Err(DriverError::Io { source, .. })
                if matches!(source.kind(), ErrorKind::ConnectionRefused | ErrorKind::NotFound)
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            r => return r,
        }
    }
}

/// What QEMU must log for `events`: (down, keysym, qcode), skipping keys without a qcode.
fn expected(evs: &[KeyEvent]) -> Vec<(bool, u32, String)> {
    evs.iter()
        .filter_map(|e| match e {
            KeyEvent::Down(k) => Some((true, *k)),
            KeyEvent::Up(k) => Some((false, *k)),
            KeyEvent::Wait(_) => None,
        })
        .filter_map(|(down, k): (bool, Key)| k.qcode().map(|q| (down, k.keysym(), q.to_string())))
        .collect()
}

#[tokio::test]
async fn vnc_handshake_and_every_key_reach_qemu_with_our_qcodes() {
    let qemu = Qemu::start("unix:{dir}/vnc.sock");
    let mut vnc = connect_vnc(&qemu.path("vnc.sock"), None).await.expect("VNC handshake");
    assert_eq!(vnc.version(), RfbVersion::V3_8);
    assert_eq!(vnc.server_init().name, "QEMU");
    assert!(vnc.server_init().width > 0 && vnc.server_init().height > 0);

    // Every special key, every printable ASCII character, toggles and a wait.
    let mut cmd = String::new();
    for (name, _) in SpecialKey::GRAMMAR_ORDER {
        cmd.push_str(&format!("<{name}>"));
    }
    for b in 0x20u8..=0x7e {
        cmd.push(b as char);
    }
    cmd.push_str("<leftCtrlOn>c<leftCtrlOff><AOn><AOff><wait10ms>end");
    let actions = parse(&cmd).expect("parse");
    type_boot_command(&mut vnc, &actions, Duration::ZERO, CancellationToken::new()).await.expect("typing");

    let want = expected(&events(&actions));
    // 41 special keys and 95 characters, pressed and released, plus Shift around 47 of them.
    assert!(want.len() >= 2 * (41 + 95) + 2 * 47, "{}", want.len());
    let got = qemu.wait_for_keys(want.len()).await;
    assert_eq!(got.len(), want.len(), "QEMU log:\n{}", qemu.stderr());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "key event #{i}");
    }
    assert!(vnc.closed_reason().is_none());

    // QEMU is alive and well after all that.
    let mut qmp = Qmp::connect(&qemu.qmp_path()).await;
    let status = qmp.execute("query-status", json!({})).await;
    assert_eq!(status["status"], "prelaunch", "{status}");
    vnc.close().await;
}

#[tokio::test]
async fn vnc_over_tcp_on_a_port_qemu_picked() {
    // Display 0 upwards to 99: QEMU takes the first free port, QMP tells us which.
    let qemu = Qemu::start("127.0.0.1:0,to=99");
    let mut qmp = Qmp::connect(&qemu.qmp_path()).await;
    let info = qmp.execute("query-vnc", json!({})).await;
    assert_eq!(info["enabled"], true, "{info}");
    let port = info["service"].as_str().expect("service").to_string();
    let mut vnc = VncClient::connect_tcp(&format!("127.0.0.1:{port}"), None).await.expect("VNC handshake");
    vnc.send(KeyEvent::Down(Key::Char('q'))).await.expect("down");
    vnc.send(KeyEvent::Up(Key::Char('q'))).await.expect("up");
    vnc.flush().await.expect("flush");
    let got = qemu.wait_for_keys(2).await;
    assert_eq!(got, vec![(true, 0x71, "q".to_string()), (false, 0x71, "q".to_string())], "{}", qemu.stderr());
    // Our connection is listed as a client of QEMU's VNC server.
    let info = qmp.execute("query-vnc", json!({})).await;
    assert_eq!(info["clients"].as_array().map(Vec::len), Some(1), "{info}");
}

#[tokio::test]
async fn vnc_password_authentication() {
    let qemu = Qemu::start("unix:{dir}/vnc.sock,password=on");
    let mut qmp = Qmp::connect(&qemu.qmp_path()).await;
    qmp.execute("change-vnc-password", json!({"password": "s3cr3t"})).await;
    let sock = qemu.path("vnc.sock");

    let err = connect_vnc(&sock, None).await.unwrap_err().to_string();
    assert!(err.contains("requires a password"), "{err}");
    let err = connect_vnc(&sock, Some("wrong")).await.unwrap_err().to_string();
    assert!(err.contains("authentication failed"), "{err}");

    let mut vnc = connect_vnc(&sock, Some("s3cr3t")).await.expect("right password");
    let actions = parse("<enter>").unwrap();
    type_boot_command(&mut vnc, &actions, Duration::ZERO, CancellationToken::new()).await.expect("typing");
    let got = qemu.wait_for_keys(2).await;
    assert_eq!(got, vec![(true, 0xFF0D, "ret".to_string()), (false, 0xFF0D, "ret".to_string())]);
}

#[tokio::test]
async fn sending_after_qemu_exits_is_an_error() {
    let mut qemu = Qemu::start("unix:{dir}/vnc.sock");
    let mut vnc = connect_vnc(&qemu.path("vnc.sock"), None).await.expect("VNC handshake");
    qemu.child.kill().expect("kill qemu");
    qemu.child.wait().expect("reap qemu");
    // The first writes may still land in the socket buffer; the failure must come soon after.
    let mut failed = None;
    for _ in 0..200 {
        if let Err(e) = vnc.send(KeyEvent::Down(Key::Char('x'))).await {
            failed = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let err = failed.expect("sending to a dead server must fail").to_string();
    assert!(err.contains("VNC server"), "{err}");
}

#[tokio::test]
async fn handshake_with_something_that_is_not_vnc_fails_clearly() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let err = VncClient::connect_tcp(&addr.to_string(), None).await.unwrap_err().to_string();
    assert!(err.contains("not an RFB version"), "{err}");
}
