//! The SSH communicator against a real OpenSSH sshd on a loopback port (see `common/sshd.rs`).
//! The server runs on this machine, so remote results are checked on the local file system too.

#[path = "common/shared_buf.rs"]
mod shared_buf;
#[path = "common/sshd.rs"]
mod sshd;

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use packer_sdk::communicator::ssh::{
    FileTransfer, KeyType, ReconnectingSsh, SshAuth, SshCommunicator, SshConfig, SshError, TemporaryKeyPair,
};
use packer_sdk::communicator::{CommError, Communicator, FileInfo, RemoteCommand};
use packer_sdk::CancellationToken;
use sha2::{Digest, Sha256};
use shared_buf::SharedBuf;
use sshd::{Sshd, SshdOptions};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Upper bound for anything that could hang if the communicator were broken.
const GUARD: Duration = Duration::from_secs(120);

fn key_config(sshd: &Sshd, ft: FileTransfer) -> SshConfig {
    let mut c = SshConfig::new("127.0.0.1", sshd.port(), sshd.user(), SshAuth::PrivateKey(sshd.client_private_key()));
    c.file_transfer = ft;
    c
}

async fn connect(sshd: &Sshd, ft: FileTransfer) -> SshCommunicator {
    match SshCommunicator::connect(&key_config(sshd, ft)).await {
        Ok(c) => c,
        Err(e) => panic!("connect failed: {e}\nsshd log:\n{}", sshd.log()),
    }
}

/// Runs `command` with optional stdin; returns (status, stdout, stderr).
async fn run(comm: &dyn Communicator, command: &str, stdin: Option<Vec<u8>>) -> (i32, String, String) {
    let (out, err) = (SharedBuf::default(), SharedBuf::default());
    let mut cmd = RemoteCommand::new(command);
    cmd.stdout = Some(Box::new(out.clone()));
    cmd.stderr = Some(Box::new(err.clone()));
    cmd.stdin = stdin.map(|d| Box::new(std::io::Cursor::new(d)) as packer_sdk::communicator::Reader);
    let handle = comm.start(cmd).await.expect("start");
    let status = tokio::time::timeout(GUARD, handle.wait()).await.expect("command hung").expect("wait");
    (status, out.text(), err.text())
}

fn sha256_file(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

fn random_file(path: &Path, len: usize) -> String {
    use rand::RngCore;
    let mut data = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut data);
    std::fs::write(path, &data).unwrap();
    hex::encode(Sha256::digest(&data))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_reports_stdout_stderr_and_exit_codes() {
    let sshd = Sshd::start();
    let comm = connect(&sshd, FileTransfer::Scp).await;
    let (status, out, err) = run(&comm, "echo hello; echo oops >&2; exit 3", None).await;
    assert_eq!((status, out.as_str(), err.as_str()), (3, "hello\n", "oops\n"));
    let (status, out, _) = run(&comm, "printf '%s' \"$((6 * 7))\"", None).await;
    assert_eq!((status, out.as_str()), (0, "42"));
    // No writers at all: output is discarded, the status still arrives.
    let handle = comm.start(RemoteCommand::new("echo ignored; exit 0")).await.unwrap();
    assert_eq!(handle.wait().await.unwrap(), 0);
    assert!(comm.host_key_fingerprint().unwrap().starts_with("SHA256:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_killed_by_a_signal_reports_128_plus_the_signal() {
    let sshd = Sshd::start();
    let comm = connect(&sshd, FileTransfer::Scp).await;
    let (status, _, _) = run(&comm, "kill -TERM $$", None).await;
    assert_eq!(status, 128 + 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_is_piped_then_closed() {
    let sshd = Sshd::start();
    let comm = connect(&sshd, FileTransfer::Scp).await;
    let mut data = vec![0u8; 3 * 1024 * 1024 + 17];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut data);
    let want = hex::encode(Sha256::digest(&data));
    // `sha256sum` only finishes once stdin reaches EOF.
    let (status, out, _) = run(&comm, "sha256sum", Some(data)).await;
    assert_eq!(status, 0);
    assert_eq!(out.split_whitespace().next(), Some(want.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_streamed_while_the_command_runs() {
    let sshd = Sshd::start();
    let comm = connect(&sshd, FileTransfer::Scp).await;
    // The command prints, then waits for a line on stdin that we only send after seeing the print:
    // if output were delivered at the end only, this would never finish.
    let (stdout_w, stdout_r) = tokio::io::duplex(1024);
    let (mut stdin_w, stdin_r) = tokio::io::duplex(1024);
    let mut cmd = RemoteCommand::new("echo first; read line; echo \"got $line\"");
    cmd.stdout = Some(Box::new(stdout_w));
    cmd.stdin = Some(Box::new(stdin_r));
    let handle = comm.start(cmd).await.unwrap();
    let mut lines = BufReader::new(stdout_r).lines();
    let first = tokio::time::timeout(GUARD, lines.next_line()).await.expect("no streamed output").unwrap();
    assert_eq!(first.as_deref(), Some("first"));
    stdin_w.write_all(b"go\n").await.unwrap();
    drop(stdin_w);
    let second = tokio::time::timeout(GUARD, lines.next_line()).await.unwrap().unwrap();
    assert_eq!(second.as_deref(), Some("got go"));
    assert_eq!(tokio::time::timeout(GUARD, handle.wait()).await.unwrap().unwrap(), 0);
    // The writer was closed when the command ended.
    assert_eq!(lines.next_line().await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_run_concurrently_over_one_connection() {
    let sshd = Sshd::start();
    let comm = connect(&sshd, FileTransfer::Scp).await;
    let flag = sshd.dir().join("flag");
    let flag = flag.display();
    // A waits for a file that only B creates: they can only both finish if they overlap.
    let wait_cmd = format!("while [ ! -e {flag} ]; do sleep 0.05; done; echo A");
    let a = run(&comm, &wait_cmd, None);
    let b = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        run(&comm, &format!("touch {flag}; echo B"), None).await
    };
    let many = futures::future::join_all((0..8).map(|i| {
        let comm = &comm;
        async move { run(comm, &format!("echo {i}"), None).await }
    }));
    let (a, b, many) = tokio::time::timeout(GUARD, async { tokio::join!(a, b, many) }).await.expect("deadlock");
    assert_eq!(a.1, "A\n");
    assert_eq!(b.1, "B\n");
    for (i, r) in many.into_iter().enumerate() {
        assert_eq!((r.0, r.1), (0, format!("{i}\n")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pty_request_gives_the_command_a_terminal() {
    let sshd = Sshd::start();
    let mut config = key_config(&sshd, FileTransfer::Scp);
    let plain = SshCommunicator::connect(&config).await.unwrap();
    let (status, _, _) = run(&plain, "tty -s", None).await;
    assert_eq!(status, 1, "without a PTY, tty -s fails");
    config.pty = true;
    let with_pty = SshCommunicator::connect(&config).await.unwrap();
    let (status, out, _) = run(&with_pty, "tty; echo $TERM; echo to-stderr >&2", None).await;
    assert_eq!(status, 0);
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert!(out.contains("xterm"), "{out:?}");
    // With a PTY, stderr arrives on stdout.
    assert!(out.contains("to-stderr"), "{out:?}");
}

async fn upload_download_16mib(ft: FileTransfer) {
    let sshd = Sshd::start();
    let comm = connect(&sshd, ft).await;
    let local = sshd.dir().join("big.bin");
    let sum = random_file(&local, 16 * 1024 * 1024);
    let remote = sshd.dir().join("remote dir");
    std::fs::create_dir(&remote).unwrap();
    let remote_file = remote.join("big copy.bin");
    let remote_path = remote_file.to_str().unwrap();

    let f = tokio::fs::File::open(&local).await.unwrap();
    let info = FileInfo { name: "big.bin".into(), size: 16 * 1024 * 1024, mode: 0o600 };
    tokio::time::timeout(GUARD, comm.upload(remote_path, Box::new(f), Some(info))).await.unwrap().unwrap();
    assert_eq!(sha256_file(&remote_file), sum);
    assert_eq!(std::fs::metadata(&remote_file).unwrap().permissions().mode() & 0o777, 0o600);
    // The remote side agrees (the file went through the server, not around it).
    let (_, out, _) = run(&comm, &format!("sha256sum '{remote_path}'"), None).await;
    assert!(out.starts_with(&sum), "{out}");

    let back = sshd.dir().join("back.bin");
    let out = tokio::fs::File::create(&back).await.unwrap();
    tokio::time::timeout(GUARD, comm.download(remote_path, Box::new(out))).await.unwrap().unwrap();
    assert_eq!(sha256_file(&back), sum);

    // Without FileInfo (scp spools to learn the size), default mode 0644.
    let small = remote.join("small.txt");
    let data: packer_sdk::communicator::Reader = Box::new(&b"just some text\n"[..]);
    comm.upload(small.to_str().unwrap(), data, None).await.unwrap();
    assert_eq!(std::fs::read(&small).unwrap(), b"just some text\n");
    assert_eq!(std::fs::metadata(&small).unwrap().permissions().mode() & 0o777, 0o644);

    // An empty file.
    let empty = remote.join("empty");
    comm.upload(empty.to_str().unwrap(), Box::new(&b""[..]), Some(FileInfo::default())).await.unwrap();
    assert_eq!(std::fs::read(&empty).unwrap(), b"");

    // Errors name the problem.
    let missing = sshd.dir().join("missing");
    let err = comm.upload(missing.join("x").to_str().unwrap(), Box::new(&b"x"[..]), None).await.unwrap_err();
    assert!(matches!(err, CommError::Transfer(_)), "{err:?}");
    assert!(err.to_string().contains("missing"), "the error names the directory: {err}");
    assert!(!missing.exists(), "the upload must not create a file named after the missing directory");
    let sink = SharedBuf::default();
    let err = comm.download(sshd.dir().join("nonexistent-file").to_str().unwrap(), Box::new(sink)).await.unwrap_err();
    assert!(err.to_string().contains("No such file"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scp_upload_and_download_16_mib() {
    upload_download_16mib(FileTransfer::Scp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_upload_and_download_16_mib() {
    upload_download_16mib(FileTransfer::Sftp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scp_upload_rejects_data_longer_than_announced() {
    let sshd = Sshd::start();
    let comm = connect(&sshd, FileTransfer::Scp).await;
    let target = sshd.dir().join("short");
    let info = FileInfo { name: "short".into(), size: 3, mode: 0o644 };
    let err = comm.upload(target.to_str().unwrap(), Box::new(&b"abcdef"[..]), Some(info)).await.unwrap_err();
    assert!(err.to_string().contains("longer than"), "{err}");
}

/// src/{a.txt, run.sh (0755), sub/b.txt, sub/skip.log, sub/deeper/c.txt, .git/config}
fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::write(root.join("a.txt"), "a\n").unwrap();
    std::fs::write(root.join("run.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(root.join("sub/b.txt"), "b\n").unwrap();
    std::fs::write(root.join("sub/skip.log"), "log\n").unwrap();
    std::fs::write(root.join("sub/deeper/c.txt"), "c\n").unwrap();
    std::fs::write(root.join(".git/config"), "[core]\n").unwrap();
}

/// Relative paths of all files and directories below `root`, sorted.
fn listing(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if p.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    if root.exists() {
        walk(root, root, &mut out);
    }
    out.sort();
    out
}

async fn directories(ft: FileTransfer) {
    let sshd = Sshd::start();
    let comm = connect(&sshd, ft).await;
    let base = sshd.dir();
    let src = base.join("src");
    make_tree(&src);
    let all = listing(&src);
    let excludes = vec!["*.log".to_string(), ".git".to_string()];
    let filtered: Vec<String> =
        all.iter().filter(|p| !p.ends_with(".log") && !p.starts_with(".git")).cloned().collect();

    // No trailing slash: the directory itself lands in dst (created if missing).
    let up1 = base.join("up1");
    comm.upload_dir(up1.to_str().unwrap(), &src, &[]).await.unwrap();
    assert_eq!(listing(&up1.join("src")), all);
    assert_eq!(
        listing(&up1),
        std::iter::once("src".to_string()).chain(all.iter().map(|p| format!("src/{p}"))).collect::<Vec<_>>()
    );
    assert_eq!(std::fs::read_to_string(up1.join("src/sub/deeper/c.txt")).unwrap(), "c\n");
    assert_eq!(std::fs::metadata(up1.join("src/run.sh")).unwrap().permissions().mode() & 0o777, 0o755);
    assert_eq!(std::fs::metadata(up1.join("src/a.txt")).unwrap().permissions().mode() & 0o777, 0o644);

    // Trailing slash: only the contents, with excludes.
    let up2 = base.join("up2");
    let src_slash = format!("{}/", src.display());
    comm.upload_dir(up2.to_str().unwrap(), Path::new(&src_slash), &excludes).await.unwrap();
    assert_eq!(listing(&up2), filtered);

    // Downloads, same semantics.
    let down1 = base.join("down1");
    comm.download_dir(src.to_str().unwrap(), &down1, &[]).await.unwrap();
    assert_eq!(listing(&down1.join("src")), all);
    assert_eq!(std::fs::read_to_string(down1.join("src/sub/b.txt")).unwrap(), "b\n");
    assert_eq!(std::fs::metadata(down1.join("src/run.sh")).unwrap().permissions().mode() & 0o777, 0o755);

    let down2 = base.join("down2");
    comm.download_dir(&src_slash, &down2, &excludes).await.unwrap();
    assert_eq!(listing(&down2), filtered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scp_upload_dir_and_download_dir() {
    directories(FileTransfer::Scp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_upload_dir_and_download_dir() {
    directories(FileTransfer::Sftp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_authentication() {
    let sshd = Sshd::start_with(SshdOptions { password: Some("s3cret pass".into()), ..Default::default() });
    let mut config = SshConfig::new("127.0.0.1", sshd.port(), sshd.user(), SshAuth::Password("s3cret pass".into()));
    let comm = match SshCommunicator::connect(&config).await {
        Ok(c) => c,
        Err(e) => panic!("{e}\n{}", sshd.log()),
    };
    let (status, out, _) = run(&comm, "echo in", None).await;
    assert_eq!((status, out.as_str()), (0, "in\n"));
    config.auth = vec![SshAuth::Password("wrong".into())];
    let err = SshCommunicator::connect(&config).await.unwrap_err();
    assert!(err.is_auth_failure() && err.is_retryable(), "{err:?}");
    // The password never shows up in errors or debug output.
    assert!(!format!("{err} {err:?} {config:?}").contains("s3cret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_keys_authenticate_and_unknown_keys_are_rejected() {
    let sshd = Sshd::start();
    let ed = TemporaryKeyPair::generate(KeyType::Ed25519).unwrap();
    let rsa =
        tokio::task::spawn_blocking(|| TemporaryKeyPair::generate(KeyType::Rsa { bits: 2048 })).await.unwrap().unwrap();
    assert!(rsa.public_key_line.starts_with("ssh-rsa AAAA"));
    let ec256 = TemporaryKeyPair::generate(KeyType::Ecdsa { bits: 256 }).unwrap();
    let ec521 = TemporaryKeyPair::generate(KeyType::Ecdsa { bits: 521 }).unwrap();
    let mut config = key_config(&sshd, FileTransfer::Scp);

    for pair in [&ed, &rsa, &ec256, &ec521] {
        config.auth = vec![SshAuth::PrivateKey(pair.private_key_pem.clone())];
        let err = SshCommunicator::connect(&config).await.unwrap_err();
        assert!(matches!(err, SshError::AuthRejected { .. }), "{err:?}");
        assert!(err.to_string().contains("rejected"), "{err}");
    }
    for pair in [&ed, &rsa, &ec256, &ec521] {
        sshd.authorize_key(&pair.public_key_line);
    }
    for pair in [&ed, &rsa, &ec256, &ec521] {
        config.auth = vec![SshAuth::PrivateKey(pair.private_key_pem.clone())];
        let comm = match SshCommunicator::connect(&config).await {
            Ok(c) => c,
            Err(e) => panic!("{e}\n{}", sshd.log()),
        };
        assert_eq!(run(&comm, "true", None).await.0, 0);
    }
    // The server logged the fingerprints of the keys we generated.
    for pair in [&ed, &ec256, &ec521] {
        assert!(sshd.log().contains(&pair.fingerprint), "{}", sshd.log());
    }

    config.auth = vec![SshAuth::PrivateKey("garbage".into())];
    let err = SshCommunicator::connect(&config).await.unwrap_err();
    assert!(matches!(err, SshError::Key(_)) && !err.is_retryable(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_is_a_connect_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = SshConfig::new("127.0.0.1", port, "root", SshAuth::Password("x".into()));
    let err = SshCommunicator::connect(&config).await.unwrap_err();
    match &err {
        SshError::Connect { source, .. } => assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused),
        other => panic!("{other:?}"),
    }
    assert!(err.is_retryable() && !err.is_auth_failure());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_that_drops_connections_is_a_handshake_error() {
    // Like QEMU's slirp before the guest's sshd runs: accept, then close.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            drop(s);
        }
    });
    let mut config = SshConfig::new("127.0.0.1", port, "root", SshAuth::Password("x".into()));
    let err = SshCommunicator::connect(&config).await.unwrap_err();
    assert!(matches!(err, SshError::Handshake { .. }), "{err:?}");
    assert!(err.is_retryable() && !err.is_auth_failure());

    // And the wait loop keeps retrying those until its deadline.
    config.connect_timeout = Duration::from_secs(2);
    let err = SshCommunicator::wait_for(&config, Duration::from_secs(3), &CancellationToken::new()).await.unwrap_err();
    assert!(matches!(err, SshError::TimedOut { .. }), "{err:?}");
    server.abort();

    // A silent server (accepts, never sends a banner) runs into connect_timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    config.port = silent.local_addr().unwrap().port();
    config.connect_timeout = Duration::from_millis(500);
    let err = SshCommunicator::connect(&config).await.unwrap_err();
    assert!(matches!(err, SshError::NoBanner { .. }), "{err:?}");
    assert!(err.is_retryable() && err.to_string().contains("no SSH banner within 500ms"), "{err}");
    drop(silent);
}

/// `reach` returns only once the server has sent something (QEMU's port forward accepts before
/// the guest listens), and `login` then completes the session against a real sshd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reach_waits_for_the_banner_then_login_completes() {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (speak, spoken) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let _ = spoken.await;
        s.write_all(b"SSH-2.0-test\r\n").await.unwrap();
        s
    });
    let config = SshConfig::new("127.0.0.1", port, "root", SshAuth::Password("x".into()));
    let mut reach = Box::pin(SshCommunicator::reach(&config));
    // accepted but silent: not reached (however long we wait)
    assert!(tokio::time::timeout(Duration::from_millis(300), &mut reach).await.is_err());
    speak.send(()).unwrap();
    reach.await.expect("reached once the banner arrived");
    drop(server.await.unwrap());

    let sshd = Sshd::start();
    let config = key_config(&sshd, FileTransfer::Scp);
    let reached = SshCommunicator::reach(&config).await.unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    let comm = reached.login().await.unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));
    assert_eq!(run(&comm, "echo hi", None).await, (0, "hi\n".to_string(), String::new()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_loop_counts_authentication_failures() {
    let sshd = Sshd::start();
    let mut config = key_config(&sshd, FileTransfer::Scp);
    config.auth = vec![SshAuth::PrivateKey(TemporaryKeyPair::generate(KeyType::Ed25519).unwrap().private_key_pem)];
    config.handshake_attempts = 2;
    let err = SshCommunicator::wait_for(&config, GUARD, &CancellationToken::new()).await.unwrap_err();
    match &err {
        SshError::TooManyAuthFailures { attempts, last } => {
            assert_eq!(*attempts, 2);
            assert!(last.is_auth_failure());
        }
        other => panic!("{other:?}"),
    }
    // Good credentials: the first attempt succeeds.
    let ok = key_config(&sshd, FileTransfer::Scp);
    let comm = SshCommunicator::wait_for(&ok, GUARD, &CancellationToken::new()).await.unwrap();
    assert_eq!(run(&comm, "exit 7", None).await.0, 7);
    // Cancellation ends the wait.
    let cancel = CancellationToken::new();
    cancel.cancel();
    let err = SshCommunicator::wait_for(&config, GUARD, &cancel).await.unwrap_err();
    assert!(matches!(err, SshError::Cancelled), "{err:?}");
}

/// A long-running command that dies of SIGPIPE once its session is gone (no stray processes).
const TICKER: &str = "while :; do echo tick; sleep 0.2; done";

/// A TCP relay to `target` whose traffic can be frozen (packets silently dropped, sockets kept
/// open: a hung machine) or cut (both sockets closed: a dead one).
struct Relay {
    port: u16,
    frozen: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(target: u16) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(AtomicBool::new(false));
        let f = frozen.clone();
        let task = tokio::spawn(async move {
            let (client, _) = listener.accept().await.unwrap();
            let server = tokio::net::TcpStream::connect(("127.0.0.1", target)).await.unwrap();
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            let pump = |mut r: tokio::net::tcp::OwnedReadHalf,
                        mut w: tokio::net::tcp::OwnedWriteHalf,
                        f: Arc<AtomicBool>| async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match r.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if f.load(Ordering::SeqCst) {
                        continue; // swallow
                    }
                    if w.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = w.shutdown().await;
                // Keep both halves alive while frozen.
                if f.load(Ordering::SeqCst) {
                    std::future::pending::<()>().await;
                }
            };
            tokio::join!(pump(cr, sw, f.clone()), pump(sr, cw, f));
        });
        Relay { port, frozen, task }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_connection_is_detected_by_keepalives() {
    let sshd = Sshd::start();
    let relay = Relay::start(sshd.port()).await;
    let mut config = key_config(&sshd, FileTransfer::Scp);
    config.port = relay.port;
    config.keepalive_interval = Duration::from_millis(200);
    let comm = SshCommunicator::connect(&config).await.unwrap();
    assert_eq!(run(&comm, "true", None).await.0, 0);
    let handle = comm.start(RemoteCommand::new(TICKER)).await.unwrap();
    relay.frozen.store(true, Ordering::SeqCst);
    let err = tokio::time::timeout(GUARD, handle.wait()).await.expect("hang not detected").unwrap_err();
    assert!(matches!(err, CommError::Disconnected(_)), "{err:?}");
    assert!(err.to_string().contains("keep-alive"), "{err}");
    let err = comm.start(RemoteCommand::new("true")).await.unwrap_err();
    assert!(matches!(err, CommError::Disconnected(_)), "{err:?}");
    assert!(comm.is_closed());
    relay.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_ends_running_commands_with_disconnected() {
    let sshd = Sshd::start();
    let relay = Relay::start(sshd.port()).await;
    let mut config = key_config(&sshd, FileTransfer::Scp);
    config.port = relay.port;
    let comm = SshCommunicator::connect(&config).await.unwrap();
    let handle = comm.start(RemoteCommand::new(TICKER)).await.unwrap();
    relay.task.abort(); // closes both sockets
    let err = tokio::time::timeout(GUARD, handle.wait()).await.expect("drop not detected").unwrap_err();
    assert!(matches!(err, CommError::Disconnected(_)), "{err:?}");
    let sink = SharedBuf::default();
    let err = comm.download("/etc/hostname", Box::new(sink.clone())).await.unwrap_err();
    assert!(matches!(err, CommError::Disconnected(_)), "{err:?}");
    assert!(sink.bytes().is_empty());
    let _ = std::io::stderr().flush();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_write_timeout_ends_a_silent_command() {
    let sshd = Sshd::start();
    let mut config = key_config(&sshd, FileTransfer::Scp);
    config.keepalive_interval = Duration::ZERO;
    config.read_write_timeout = Some(Duration::from_millis(500));
    let comm = SshCommunicator::connect(&config).await.unwrap();
    let handle = comm.start(RemoteCommand::new("sleep 3")).await.unwrap();
    let err = tokio::time::timeout(GUARD, handle.wait()).await.expect("timeout not applied").unwrap_err();
    assert!(matches!(err, CommError::Disconnected(_)), "{err:?}");
    assert!(err.to_string().contains("ssh_read_write_timeout"), "{err}");
}

/// `ReconnectingSsh`: once its connection is cut (the sshd process serving it killed, as a guest
/// reboot does), the next operation connects again; after `close` nothing reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_is_made_again_by_the_next_operation() {
    let sshd = Sshd::start();
    let comm = ReconnectingSsh::new(connect(&sshd, FileTransfer::Scp).await);
    let (_, first, _) = run(&comm, "echo $PPID", None).await;
    let first = first.trim().to_string();
    assert!(first.parse::<u32>().is_ok(), "{first:?}");
    // the command dies with the connection: its status is lost or a signal's
    let handle = comm.start(RemoteCommand::new(format!("kill -9 {first}; sleep 30"))).await.expect("start");
    let _ = tokio::time::timeout(GUARD, handle.wait()).await.expect("the cut command hung");
    // as a provisioner does: retry until the communicator has noticed and connected again
    let mut second = None;
    for _ in 0..50 {
        let mut cmd = RemoteCommand::new("echo $PPID");
        let out = SharedBuf::default();
        cmd.stdout = Some(Box::new(out.clone()));
        if let Ok(h) = comm.start(cmd).await {
            if let Ok(Ok(0)) = tokio::time::timeout(GUARD, h.wait()).await {
                second = Some(out.text().trim().to_string());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = second.unwrap_or_else(|| panic!("no new connection\nsshd log:\n{}", sshd.log()));
    assert_ne!(second, first, "the command ran on the old connection");
    // files travel on the new connection too
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("after-reconnect.txt");
    let data: packer_sdk::communicator::Reader = Box::new(std::io::Cursor::new(b"again\n".to_vec()));
    comm.upload(remote.to_str().unwrap(), data, None).await.expect("upload after reconnecting");
    assert_eq!(std::fs::read_to_string(&remote).unwrap(), "again\n");
    comm.close().await;
    assert!(comm.is_closed().await);
    assert!(comm.start(RemoteCommand::new("true")).await.is_err(), "a closed communicator connected again");
}
