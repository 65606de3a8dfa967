//! The builder's SSH wait (`builder_qemu::steps::wait_ssh`) against the test guest under TCG,
//! with a guest whose sshd has accepted a connection but is slow to answer it — what a real
//! distribution's sshd does while cloud-init keeps an emulated CPU busy. QEMU's user network
//! accepts every connection at once, so only QEMU's own side of the forward (`info usernet`) tells
//! such a connection from one whose SYN waits for a guest network that is still down.
//!
//! The guest's dropbear is stopped (`SIGSTOP`) for a few seconds: the guest's kernel still accepts
//! connections for it, and none gets a banner until it runs again. With the forward watched, the
//! wait keeps the accepted attempt and starts no other; without, it starts a fresh attempt every
//! 250 ms and drops the oldest, each one an sshd connection the guest has to serve later.
//! Attempts are counted by a TCP relay between the wait and QEMU's forward.
//!
//! The test guest comes from `make testguest` (`TESTGUEST_DIR` overrides `images/testguest/out`);
//! guests boot one at a time (the lock shared with the other test-guest tests).

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use builder_qemu::config::Config;
use builder_qemu::driver::qemu::QemuProcess;
use builder_qemu::state::SshKey;
use builder_qemu::steps::wait_ssh::{ssh_config, ForwardWatch, WaitForSsh, MAX_PENDING};
use packer_sdk::communicator::ssh::SshCommunicator;
use packer_sdk::communicator::{Communicator, RemoteCommand};
use packer_sdk::config::RawConfig;
use packer_sdk::step::StepContext;
use qemu_rs_tests::{free_port, guest_dir, guest_slot};

/// Hang guard for the guest to boot (a healthy boot takes 10–40 s under TCG).
const BOOT_DEADLINE: Duration = Duration::from_secs(300);
/// How long the guest's sshd stays stopped.
const STOPPED: Duration = Duration::from_secs(4);

/// Relays every connection to 127.0.0.1:`to` and counts them; returns its port and the count.
async fn counting_relay(to: u16) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the relay");
    let port = listener.local_addr().expect("relay address").port();
    let count = Arc::new(AtomicUsize::new(0));
    let n = count.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            n.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (port, count)
}

fn config() -> Config {
    let raw = serde_json::json!({
        "iso_url": "/unused.iso", "iso_checksum": "none", "ssh_username": "root", "ssh_timeout": "2m",
        "packer_build_name": "ssh-wait",
    });
    let map = raw.as_object().expect("an object").clone();
    Config::prepare(&[RawConfig::Map(map)]).unwrap_or_else(|e| panic!("{}", e.errors)).config
}

/// Runs `command` over `comm`; its exit status.
async fn run(comm: &SshCommunicator, command: &str) -> i32 {
    let handle = comm.start(RemoteCommand::new(command)).await.expect("start a command");
    handle.wait().await.expect("the command's exit status")
}

/// Stops the guest's dropbear for [`STOPPED`] (it resumes on its own), over a session of its own.
async fn stop_sshd_for_a_while(c: &Config, port: u16, key: &SshKey) {
    let cfg = ssh_config(c, port, Some(key), None).expect("ssh settings");
    let started = Instant::now();
    let comm = loop {
        match SshCommunicator::connect(&cfg).await {
            Ok(comm) => break comm,
            Err(e) if started.elapsed() < Duration::from_secs(60) => {
                eprintln!("SSH not ready yet: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("cannot log in to the test guest: {e}"),
        }
    };
    let secs = STOPPED.as_secs();
    let script = format!(
        "p=$(cat /var/run/dropbear.pid) && {{ (sleep {secs}; kill -CONT $p) </dev/null >/dev/null 2>&1 & }} && \
         kill -STOP $p"
    );
    assert_eq!(run(&comm, &script).await, 0, "stopping dropbear failed");
    comm.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_attempt_is_kept_while_the_guests_sshd_is_slow() {
    let dir = guest_dir();
    let _slot = guest_slot();
    let tmp = tempfile::Builder::new().prefix("qemu-rs-ssh-wait-").tempdir().expect("temp dir");
    let disk = tmp.path().join("disk.qcow2");
    let created = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(dir.join("testguest.qcow2"))
        .arg(&disk)
        .status()
        .expect("run qemu-img");
    assert!(created.success(), "qemu-img create failed");
    let (serial, qmp) = (tmp.path().join("serial.log"), tmp.path().join("qmp.sock"));
    let forward = free_port();
    let argv: Vec<String> = vec![
        "-accel".into(),
        "tcg".into(),
        "-machine".into(),
        "pc".into(),
        "-m".into(),
        "512".into(),
        "-display".into(),
        "none".into(),
        "-global".into(),
        "x86_64-cpu.rdrand=on".into(),
        "-netdev".into(),
        format!("user,id=n0,hostfwd=tcp:127.0.0.1:{forward}-:22"),
        "-device".into(),
        "virtio-net-pci,netdev=n0".into(),
        "-drive".into(),
        format!("file={},if=virtio,format=qcow2", disk.display()),
        "-drive".into(),
        format!("file={},media=cdrom,readonly=on,format=raw", dir.join("cidata.iso").display()),
        "-serial".into(),
        format!("file:{}", serial.display()),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", qmp.display()),
    ];
    let qemu = QemuProcess::launch("qemu-system-x86_64", &argv, &qmp, &serial).await.expect("start QEMU");
    wait_ready(&qemu, &serial).await;

    let c = config();
    let key = SshKey {
        private_key: fs::read_to_string(dir.join("id_ed25519")).expect("read the test guest's key"),
        public_key_line: String::new(),
        temporary: false,
    };
    let ctx = StepContext { ui: Arc::new(packer_sdk::rpc::ui::RecordingUi::default()), cancel: Default::default() };
    let step = WaitForSsh::new(&c);

    // watched: the attempt the guest accepted is kept until dropbear answers it
    stop_sshd_for_a_while(&c, forward, &key).await;
    let (relay, count) = counting_relay(forward).await;
    let cfg = ssh_config(&c, relay, Some(&key), None).expect("ssh settings");
    let started = Instant::now();
    let comm = step.wait(&ctx, &qemu, &cfg, Some(ForwardWatch::new(forward, 22))).await.expect("SSH connects");
    let waited = started.elapsed();
    let watched = count.load(Ordering::SeqCst);
    assert_eq!(run(&comm, "test -s /var/run/dropbear.pid").await, 0, "a command over the connection");
    comm.close().await;
    assert!(waited >= STOPPED / 2, "connected after {waited:?}, while dropbear was stopped for {STOPPED:?}");
    assert!(watched <= 2, "{watched} attempts while the guest held one (QEMU's forward watched)");

    // not watched (as through another network): a fresh attempt every 250 ms, the oldest dropped
    stop_sshd_for_a_while(&c, forward, &key).await;
    let (relay, count) = counting_relay(forward).await;
    let cfg = ssh_config(&c, relay, Some(&key), None).expect("ssh settings");
    let comm = step.wait(&ctx, &qemu, &cfg, None).await.expect("SSH connects");
    comm.close().await;
    let blind = count.load(Ordering::SeqCst);
    assert!(blind > MAX_PENDING, "only {blind} attempts without the watch: the test shows nothing");
    eprintln!("attempts while dropbear was stopped: {watched} watched, {blind} not watched");
}

/// Waits for the test guest's `testguest: READY` line.
async fn wait_ready(qemu: &QemuProcess, serial: &Path) {
    let started = Instant::now();
    loop {
        let text = String::from_utf8_lossy(&fs::read(serial).unwrap_or_default()).into_owned();
        if text.contains("testguest: READY") {
            return;
        }
        assert!(
            qemu.exit_status().is_none() && started.elapsed() < BOOT_DEADLINE,
            "the test guest did not boot: QEMU {:?}\n{}",
            qemu.exit_status(),
            qemu.serial_tail(30).join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
