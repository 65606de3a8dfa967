//! The SSH communicator's options against real OpenSSH on loopback: keys from a real `ssh-agent`
//! (and agent forwarding), OpenSSH user certificates (a CA made with `ssh-keygen`, sshd's
//! `TrustedUserCAKeys`), cipher and key exchange lists (an sshd restricted to one of each), local
//! and remote port forwards carrying bytes, a second sshd as bastion host, and `ssh -D` as a
//! SOCKS5 proxy.

#[path = "common/shared_buf.rs"]
mod shared_buf;
#[path = "common/sshd.rs"]
mod sshd;

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use packer_sdk::communicator::ssh::{
    Bastion, KeyType, Route, Socks5Proxy, SshAuth, SshCommunicator, SshConfig, SshError, TemporaryKeyPair, Tunnel,
    TunnelDirection,
};
use packer_sdk::communicator::{Communicator, RemoteCommand};
use shared_buf::SharedBuf;
use sshd::{Sshd, SshdOptions};

/// Upper bound for anything that could hang if the communicator were broken.
const GUARD: Duration = Duration::from_secs(60);

/// Runs `command`; returns (status, stdout + stderr).
async fn run(comm: &SshCommunicator, command: &str) -> (i32, String) {
    let out = SharedBuf::default();
    let mut cmd = RemoteCommand::new(command);
    cmd.stdout = Some(Box::new(out.clone()));
    cmd.stderr = Some(Box::new(out.clone()));
    let handle = comm.start(cmd).await.expect("start");
    let status = tokio::time::timeout(GUARD, handle.wait()).await.expect("command hung").expect("wait");
    (status, out.text())
}

async fn connect_ok(config: &SshConfig, sshd: &Sshd) -> SshCommunicator {
    match tokio::time::timeout(GUARD, SshCommunicator::connect(config)).await.expect("connect hung") {
        Ok(c) => c,
        Err(e) => panic!("connect failed: {e}\nsshd log:\n{}", sshd.log()),
    }
}

async fn connect_err(config: &SshConfig) -> SshError {
    match tokio::time::timeout(GUARD, SshCommunicator::connect(config)).await.expect("connect hung") {
        Ok(_) => panic!("the connection should have failed"),
        Err(e) => e,
    }
}

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Makes an unencrypted key pair with `ssh-keygen` at `path` (and `path.pub`).
fn keygen(path: &Path, kind: &str) {
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", kind, "-N", "", "-C", "test", "-f"]).arg(path);
    if kind == "rsa" {
        cmd.args(["-b", "2048"]);
    }
    sh(&mut cmd);
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on port {port}");
}

/// A real `ssh-agent` on its own socket, killed (by pid) and removed on drop.
struct Agent {
    child: Child,
    dir: tempfile::TempDir,
}

impl Agent {
    fn start() -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        let mut child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ssh-agent");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            assert!(Instant::now() < deadline, "ssh-agent did not create its socket");
            if let Ok(Some(s)) = child.try_wait() {
                panic!("ssh-agent exited: {s}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Agent { child, dir }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("agent.sock")
    }

    /// `ssh-add KEY` into this agent.
    fn add(&self, key: &Path) {
        sh(Command::new("ssh-add").arg(key).env("SSH_AUTH_SOCK", self.socket()).stderr(Stdio::piped()));
    }

    /// `ssh-add -l` of this agent: the fingerprints it holds.
    fn list(&self) -> String {
        let out = Command::new("ssh-add").arg("-l").env("SSH_AUTH_SOCK", self.socket()).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(sshd: &Sshd, auth: SshAuth) -> SshConfig {
    let mut c = SshConfig::new("127.0.0.1", sshd.port(), sshd.user(), auth);
    c.connect_timeout = Duration::from_secs(20);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_keys_authenticate_and_the_agent_is_forwarded_unless_disabled() {
    let sshd = Sshd::start();
    let agent = Agent::start();
    let key = sshd.dir().join("agent_key");
    keygen(&key, "ed25519");
    sshd.authorize_key(&fs::read_to_string(key.with_extension("pub")).unwrap());

    // an empty agent: the error says so
    let c = config(&sshd, SshAuth::Agent(agent.socket()));
    let err = connect_err(&c).await;
    assert!(matches!(err, SshError::AuthRejected { .. }), "{err:?}");
    assert!(err.to_string().contains("holds no keys"), "{err}");

    // an unrelated key first, then the authorized one: the agent's keys are tried in turn
    let other = sshd.dir().join("other_key");
    keygen(&other, "rsa");
    agent.add(&other);
    agent.add(&key);
    let comm = connect_ok(&c, &sshd).await;
    let (status, out) = run(&comm, "echo agent-login-ok; echo \"sock=${SSH_AUTH_SOCK:-none}\"").await;
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("agent-login-ok") && out.contains("sock=none"), "forwarded although disabled: {out}");
    let fp = sh(Command::new("ssh-keygen").arg("-lf").arg(key.with_extension("pub")));
    let fp = fp.split_whitespace().nth(1).unwrap().to_string();
    assert!(sshd.log().contains(&fp), "sshd did not log the agent key {fp}:\n{}", sshd.log());
    drop(comm);

    // agent forwarding: the machine's ssh-add reaches our agent, in every command's session
    let mut c = c.clone();
    c.agent_forwarding = Some(agent.socket());
    let comm = connect_ok(&c, &sshd).await;
    for _ in 0..2 {
        let (status, out) = run(&comm, "ssh-add -l").await;
        assert_eq!(status, 0, "{out}\n{}", sshd.log());
        assert!(out.contains(&fp), "the forwarded agent does not list {fp}: {out}");
        assert_eq!(out.lines().count(), agent.list().lines().count(), "{out}");
    }

    // no agent at that socket: a clear, non-retryable error
    let mut c = config(&sshd, SshAuth::Agent(sshd.dir().join("no-such-agent.sock")));
    c.auth.push(SshAuth::Password("never tried".into()));
    let err = connect_err(&c).await;
    assert!(matches!(err, SshError::Agent { .. }) && !err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains("SSH_AUTH_SOCK"), "{err}");
}

/// Makes a CA, a key and its user certificate for `principal` signed by the CA; returns (key, cert).
fn certificate(dir: &Path, ca: &Path, kind: &str, principal: &str) -> (String, String) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let key = dir.join(format!("user_{kind}_{n}"));
    keygen(&key, kind);
    sh(Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(ca)
        .args(["-I", "qemu-rs-test", "-n", principal, "-V", "-5m:+1h"])
        .arg(key.with_extension("pub"))
        .stderr(Stdio::piped()));
    let cert = dir.join(format!("user_{kind}_{n}-cert.pub"));
    (fs::read_to_string(&key).unwrap(), fs::read_to_string(cert).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_signed_by_a_trusted_ca_authenticate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    keygen(&ca, "ed25519");
    let user = std::str::from_utf8(&Command::new("id").arg("-un").output().unwrap().stdout).unwrap().trim().to_string();
    let sshd = Sshd::start_with(SshdOptions {
        extra_config: vec![format!("TrustedUserCAKeys {}", ca.with_extension("pub").display())],
        ..Default::default()
    });
    for kind in ["ed25519", "rsa", "ecdsa"] {
        let (key, cert) = certificate(dir.path(), &ca, kind, &user);
        // the key alone is not authorized: only its certificate gets in
        let err = connect_err(&config(&sshd, SshAuth::PrivateKey(key.clone()))).await;
        assert!(matches!(err, SshError::AuthRejected { .. }), "{kind}: {err:?}");
        let c = config(&sshd, SshAuth::Certificate { private_key: key, certificate: cert });
        let comm = connect_ok(&c, &sshd).await;
        assert_eq!(run(&comm, "echo cert-ok").await, (0, "cert-ok\n".to_string()), "{kind}");
    }
    assert!(sshd.log().contains("qemu-rs-test"), "sshd did not see the certificate:\n{}", sshd.log());

    // a certificate for another principal is refused by the server
    let (key, cert) = certificate(dir.path(), &ca, "ed25519", "somebody-else");
    let err = connect_err(&config(&sshd, SshAuth::Certificate { private_key: key, certificate: cert })).await;
    assert!(matches!(err, SshError::AuthRejected { .. }), "{err:?}");
    assert!(err.to_string().contains("certificate"), "{err}");

    // a certificate of another key fails before connecting
    let (_, cert) = certificate(dir.path(), &ca, "ed25519", &user);
    let stranger = TemporaryKeyPair::generate(KeyType::Ed25519).unwrap().private_key_pem;
    let err = connect_err(&config(&sshd, SshAuth::Certificate { private_key: stranger, certificate: cert })).await;
    assert!(matches!(err, SshError::Key(_)) && !err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains("certifies the key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cipher_and_key_exchange_lists_must_meet_the_server() {
    let sshd = Sshd::start_with(SshdOptions {
        extra_config: vec!["Ciphers 3des-cbc,aes128-cbc".into(), "KexAlgorithms diffie-hellman-group14-sha1".into()],
        ..Default::default()
    });
    // the defaults of the SSH library do not include the only kex this sshd accepts
    let base = config(&sshd, SshAuth::PrivateKey(sshd.client_private_key()));
    let err = connect_err(&base).await;
    assert!(matches!(err, SshError::Handshake { .. }), "{err:?}");

    let mut c = base.clone();
    c.kex_algorithms = vec!["curve25519-sha256".into(), "diffie-hellman-group14-sha1".into()];
    for cipher in ["aes128-cbc", "3des-cbc"] {
        c.ciphers = vec!["chacha20-poly1305@openssh.com".into(), cipher.into()];
        let comm = connect_ok(&c, &sshd).await;
        assert_eq!(run(&comm, "echo algo-ok").await, (0, "algo-ok\n".to_string()));
        assert!(sshd.log().contains("Accepted publickey"), "{}", sshd.log());
    }

    // no common cipher: the handshake error names both lists
    c.ciphers = vec!["aes128-ctr".into()];
    let err = connect_err(&c).await;
    let text = err.to_string();
    assert!(matches!(err, SshError::Handshake { .. }), "{err:?}");
    assert!(text.contains("no common") && text.contains("aes128-ctr") && text.contains("3des-cbc"), "{text}");
    assert!(text.contains("ssh_ciphers"), "{text}");

    // an unknown name is a configuration error, not a retry
    c.ciphers = vec!["aes512-ctr".into()];
    let err = connect_err(&c).await;
    assert!(matches!(err, SshError::Config(_)) && !err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains("ssh_ciphers") && err.to_string().contains("aes256-gcm@openssh.com"), "{err}");
}

/// A TCP server on 127.0.0.1 that greets each connection with `prefix`, then echoes.
fn echo_server(prefix: &'static str) -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                if s.write_all(prefix.as_bytes()).is_err() {
                    return;
                }
                let mut buf = [0u8; 65536];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (port, t)
}

/// Sends `msg` to 127.0.0.1:`port` and reads the echo.
fn talk(port: u16, msg: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connect to {port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(msg.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < msg.len() || !got.ends_with(msg.as_bytes()) {
        let n = s.read(&mut buf).unwrap_or_else(|e| panic!("read from {port}: {e}"));
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_and_remote_tunnels_carry_bytes_while_the_connection_lives() {
    let sshd = Sshd::start();
    let (echo_port, _t) = echo_server("echo:");
    let (local, remote) = (free_port(), free_port());
    let mut c = config(&sshd, SshAuth::PrivateKey(sshd.client_private_key()));
    c.tunnels = vec![
        Tunnel::parse(&format!("{local}:127.0.0.1:{echo_port}"), TunnelDirection::Local).unwrap(),
        Tunnel::parse(&format!("{remote}:localhost:{echo_port}"), TunnelDirection::Remote).unwrap(),
    ];
    let comm = connect_ok(&c, &sshd).await;
    // not before start_forwarding: connection attempts may overlap
    assert!(TcpStream::connect(("127.0.0.1", local)).is_err());
    comm.start_forwarding().await.unwrap_or_else(|e| panic!("{e}\n{}", sshd.log()));

    let big = "x".repeat(200_000);
    for (port, what) in [(local, "local"), (remote, "remote")] {
        let reply =
            tokio::task::spawn_blocking(move || talk(port, &format!("hello over the {what} tunnel\n"))).await.unwrap();
        assert_eq!(reply, format!("echo:hello over the {what} tunnel\n"));
        let big = big.clone();
        let reply = tokio::task::spawn_blocking(move || talk(port, &big)).await.unwrap();
        assert_eq!(reply.len(), "echo:".len() + 200_000, "{what}");
    }

    // a taken local port is a clear error
    let mut c2 = c.clone();
    c2.tunnels = vec![Tunnel::parse(&format!("{local}:127.0.0.1:{echo_port}"), TunnelDirection::Local).unwrap()];
    let comm2 = connect_ok(&c2, &sshd).await;
    let err = comm2.start_forwarding().await.unwrap_err();
    assert!(matches!(err, SshError::Tunnel(_)) && err.to_string().contains("ssh_local_tunnels"), "{err}");

    // dropping the communicator closes the local listener
    drop(comm);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", local)).is_ok() {
        assert!(Instant::now() < deadline, "the local tunnel outlived its connection");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bastion_host_carries_the_connection() {
    let target = Sshd::start();
    let bastion = Sshd::start();
    let key = target.client_private_key();
    let mut c = config(&target, SshAuth::PrivateKey(key.clone()));
    let hop = Bastion {
        host: "127.0.0.1".into(),
        port: bastion.port(),
        username: bastion.user().to_string(),
        auth: vec![SshAuth::Password("wrong".into()), SshAuth::PrivateKey(bastion.client_private_key())],
    };
    c.route = Route::Bastion(Box::new(hop.clone()));
    let comm = connect_ok(&c, &bastion).await;
    assert_eq!(run(&comm, "echo via-bastion").await, (0, "via-bastion\n".to_string()));
    // both logins happened, each with its own key
    let fingerprint = |text: &str| {
        let out = std::process::Command::new("ssh-keygen")
            .args(["-l", "-f", "/dev/stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut ch| {
                ch.stdin.take().unwrap().write_all(text.as_bytes())?;
                ch.wait_with_output()
            })
            .unwrap();
        String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).unwrap_or("?").to_string()
    };
    let bastion_fp = fingerprint(&bastion.client_public_key());
    let target_fp = fingerprint(&target.client_public_key());
    assert!(
        bastion.log().contains(&format!("Accepted publickey for {} from 127.0.0.1", bastion.user())),
        "{}",
        bastion.log()
    );
    assert!(bastion.log().contains(&bastion_fp), "{}", bastion.log());
    assert!(target.log().contains(&target_fp), "{}", target.log());
    // attempts with the same settings share one bastion login
    let again = connect_ok(&c, &bastion).await;
    assert_eq!(run(&again, "echo again").await.0, 0);
    assert_eq!(bastion.log().matches("Accepted publickey").count(), 1, "{}", bastion.log());
    drop((comm, again));

    // the bastion rejects the credentials: an authentication failure, counted like the machine's
    let mut bad = c.clone();
    bad.route = Route::Bastion(Box::new(Bastion { auth: vec![SshAuth::PrivateKey(key.clone())], ..hop.clone() }));
    let err = connect_err(&bad).await;
    assert!(err.is_auth_failure() && err.to_string().contains("bastion"), "{err:?}");

    // the machine is not up yet: retryable
    let mut down = c.clone();
    down.port = free_port();
    let err = connect_err(&down).await;
    assert!(err.is_retryable() && !err.is_auth_failure(), "{err:?}");
    assert!(err.to_string().contains("bastion could not connect"), "{err}");

    // a bastion that forbids forwarding: not retryable, says why
    let strict =
        Sshd::start_with(SshdOptions { extra_config: vec!["AllowTcpForwarding no".into()], ..Default::default() });
    let mut c3 = c.clone();
    c3.route = Route::Bastion(Box::new(Bastion {
        port: strict.port(),
        auth: vec![SshAuth::PrivateKey(strict.client_private_key())],
        ..hop
    }));
    let err = connect_err(&c3).await;
    assert!(!err.is_retryable() && err.to_string().contains("AllowTcpForwarding"), "{err:?}");
}

/// `ssh -D` (OpenSSH's dynamic forwarding: a SOCKS4/5 server) on a free port, logged in to `sshd`.
struct SocksProxy {
    child: Child,
    port: u16,
}

impl SocksProxy {
    fn start(sshd: &Sshd) -> SocksProxy {
        let key = sshd.dir().join("client_key");
        let port = free_port();
        let mut child = Command::new("ssh")
            .args(["-N", "-D", &format!("127.0.0.1:{port}"), "-i"])
            .arg(&key)
            .args([
                "-p",
                &sshd.port().to_string(),
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "ExitOnForwardFailure=yes",
                &format!("{}@127.0.0.1", sshd.user()),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ssh -D");
        wait_for_port(port, &mut child, "ssh -D");
        SocksProxy { child, port }
    }
}

impl Drop for SocksProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socks5_proxy_carries_the_connection() {
    let target = Sshd::start();
    let proxy_sshd = Sshd::start();
    let proxy = SocksProxy::start(&proxy_sshd);
    let mut c = config(&target, SshAuth::PrivateKey(target.client_private_key()));
    let via = Socks5Proxy { host: "127.0.0.1".into(), port: proxy.port, credentials: None };
    c.route = Route::Socks5(via.clone());
    let comm = connect_ok(&c, &target).await;
    assert_eq!(run(&comm, "echo via-socks").await, (0, "via-socks\n".to_string()));
    drop(comm);

    // the machine is not up yet: retryable
    let mut down = c.clone();
    down.port = free_port();
    let err = connect_err(&down).await;
    assert!(matches!(err, SshError::Proxy { retryable: true, .. }), "{err:?}");

    // with ssh_proxy_username/password the client offers both "no authentication" and
    // username/password (as Go's SOCKS5 client does); ssh -D picks the first
    let mut auth = c.clone();
    auth.route = Route::Socks5(Socks5Proxy { credentials: Some(("user".into(), "secret-pw".into())), ..via.clone() });
    let comm = connect_ok(&auth, &target).await;
    assert_eq!(run(&comm, "echo via-socks-auth").await, (0, "via-socks-auth\n".to_string()));
    assert!(!format!("{auth:?}").contains("secret-pw"));
    drop(comm);

    // no proxy listening
    let mut gone = c.clone();
    gone.route = Route::Socks5(Socks5Proxy { port: free_port(), ..via });
    let err = connect_err(&gone).await;
    assert!(
        matches!(err, SshError::Proxy { retryable: true, .. }) && err.to_string().contains("ssh_proxy_host"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_also_answers_keyboard_interactive() {
    let sshd = Sshd::start_with(SshdOptions {
        password: Some("kbd pass".into()),
        keyboard_interactive: true,
        ..Default::default()
    });
    let c = config(&sshd, SshAuth::Password("kbd pass".into()));
    let comm = connect_ok(&c, &sshd).await;
    assert_eq!(run(&comm, "echo kbd-ok").await, (0, "kbd-ok\n".to_string()));
    assert!(sshd.log().contains("Accepted keyboard-interactive/pam"), "{}", sshd.log());
    let err = connect_err(&config(&sshd, SshAuth::Password("wrong".into()))).await;
    assert!(err.is_auth_failure(), "{err:?}");
}

/// Run by [`keyboard_interactive_prompts_are_answered_on_the_terminal`] under `script`, with a
/// pseudo-terminal as controlling terminal (not on its own: it needs the sshd the parent made).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by keyboard_interactive_prompts_are_answered_on_the_terminal"]
async fn interactive_child() {
    let port: u16 = std::env::var("QEMU_RS_TEST_SSHD_PORT").expect("run by the parent test").parse().unwrap();
    let user = std::env::var("QEMU_RS_TEST_SSHD_USER").unwrap();
    let mut c = SshConfig::new("127.0.0.1", port, user, SshAuth::Interactive);
    c.connect_timeout = Duration::from_secs(30);
    let comm = SshCommunicator::connect(&c).await.unwrap_or_else(|e| panic!("connect: {e}"));
    let (status, out) = run(&comm, "echo interactive-login-ok").await;
    assert_eq!(status, 0);
    println!("child says: {out}");
}

#[test]
fn keyboard_interactive_prompts_are_answered_on_the_terminal() {
    let sshd = Sshd::start_with(SshdOptions {
        password: Some("typed at the tty".into()),
        keyboard_interactive: true,
        ..Default::default()
    });
    let exe = std::env::current_exe().unwrap();
    let inner = format!("{} --ignored --exact interactive_child --nocapture --test-threads=1", exe.display());
    // `script` runs the child on a new pseudo-terminal (its /dev/tty) and types our stdin into it
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &inner, "/dev/null"])
        .env("QEMU_RS_TEST_SSHD_PORT", sshd.port().to_string())
        .env("QEMU_RS_TEST_SSHD_USER", sshd.user())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run script(1)");
    let mut stdin = child.stdin.take().unwrap();
    // typed ahead: the terminal keeps the line until the prompt reads it
    stdin.write_all(b"typed at the tty\n").unwrap();
    let pid = child.id();
    let deadline = Instant::now() + GUARD;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the interactive login (pid {pid}) hung");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}\n{}", sshd.log());
    assert!(text.contains("Password:"), "the prompt was not shown on the terminal: {text}");
    assert!(text.contains("child says: interactive-login-ok"), "{text}");
    assert!(sshd.log().contains("Accepted keyboard-interactive/pam"), "{}", sshd.log());
}
