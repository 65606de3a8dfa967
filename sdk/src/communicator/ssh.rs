//! The SSH communicator a builder connects to its guest with (Packer's `communicator = "ssh"`).
//!
//! - [`SshCommunicator::connect`] makes one attempt (TCP, SSH handshake, authentication) and says
//!   precisely what failed ([`SshError`]); [`SshCommunicator::wait_for`] is Packer's wait loop
//!   around it (retry until a deadline, count authentication failures against
//!   `ssh_handshake_attempts`).
//! - Commands run on their own exec channels, so several can run at once over one connection;
//!   output is streamed to the writers as it arrives.
//! - Files travel by scp (`scp -t`/`scp -f` on the machine, Packer's default) or sftp.
//! - Keep-alives (`keepalive@openssh.com`) go out every `keepalive_interval` of silence; after 3
//!   unanswered ones the connection is dropped and running commands end with
//!   [`CommError::Disconnected`].
//! - The host key is not checked (build VMs have fresh keys) but its fingerprint is logged.
//! - Secrets (passwords, private keys) and command lines (they may carry sensitive environment
//!   values) are never logged.

pub mod keys;

mod channel;
mod scp;
mod sftp;
mod walk;

use std::borrow::Cow;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{DisconnectReason, Handle, Msg};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{Channel, ChannelMsg, Sig};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

pub use keys::{KeyError, KeyType, TemporaryKeyPair};

use self::channel::{send_error, ChannelIo, Exit};
use self::walk::shell_quote;
use crate::communicator::{CommError, CommandHandle, Communicator, FileInfo, Reader, RemoteCommand, Writer};

/// How often [`SshCommunicator::wait_for`] retries after a failed attempt.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(2);
/// Unanswered keep-alives after which the connection counts as dead.
const KEEPALIVE_MAX: usize = 3;

/// How the communicator authenticates.
#[derive(Clone, PartialEq, Eq)]
pub enum SshAuth {
    /// Password (tried as `password`, then as `keyboard-interactive`, like Packer).
    Password(String),
    /// An unencrypted private key: OpenSSH format or PEM (PKCS#1/PKCS#8), RSA, Ed25519 or ECDSA.
    PrivateKey(String),
}

impl std::fmt::Debug for SshAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SshAuth::Password(_) => f.write_str("Password(<redacted>)"),
            SshAuth::PrivateKey(_) => f.write_str("PrivateKey(<redacted>)"),
        }
    }
}

/// How files are transferred (`ssh_file_transfer_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileTransfer {
    /// The scp protocol; the machine needs an `scp` binary (Packer's default).
    #[default]
    Scp,
    /// The SFTP subsystem; the machine's sshd needs an sftp server.
    Sftp,
}

/// Connection settings (the `ssh_*` template keys a QEMU build uses).
#[derive(Debug, Clone)]
pub struct SshConfig {
    /// Host name or IP address to connect to.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// User to log in as (`ssh_username`).
    pub username: String,
    /// Credentials.
    pub auth: SshAuth,
    /// Request a PTY (`xterm`, 80x40) for every command (`ssh_pty`); stdout and stderr then merge.
    pub pty: bool,
    /// Authentication failures [`SshCommunicator::wait_for`] tolerates (`ssh_handshake_attempts`);
    /// 0 means unlimited. Refused connections and failed handshakes do not count.
    pub handshake_attempts: u32,
    /// Send a keep-alive after this much silence (`ssh_keep_alive_interval`); zero disables them.
    pub keepalive_interval: Duration,
    /// Drop the connection after this long without any traffic (`ssh_read_write_timeout`; with
    /// keep-alives on, this only fires when the machine stops answering). `None`: no limit.
    pub read_write_timeout: Option<Duration>,
    /// scp or sftp.
    pub file_transfer: FileTransfer,
    /// Bound on each phase of one connection attempt: the TCP connect, then the SSH handshake plus
    /// authentication.
    pub connect_timeout: Duration,
}

impl SshConfig {
    /// Settings with Packer's defaults: no PTY, 10 handshake attempts, keep-alive every 5 s, no
    /// read/write timeout, scp, 30 s connect timeout.
    pub fn new(host: impl Into<String>, port: u16, username: impl Into<String>, auth: SshAuth) -> Self {
        SshConfig {
            host: host.into(),
            port,
            username: username.into(),
            auth,
            pty: false,
            handshake_attempts: 10,
            keepalive_interval: Duration::from_secs(5),
            read_write_timeout: None,
            file_transfer: FileTransfer::Scp,
            connect_timeout: Duration::from_secs(30),
        }
    }

    fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Why a connection attempt failed. [`SshError::is_retryable`] tells a wait loop whether to try
/// again; [`SshError::is_auth_failure`] whether the attempt counts against `ssh_handshake_attempts`.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The TCP connection could not be made (refused, reset, unreachable, timed out).
    #[error("could not connect to {addr}: {source} (is the machine up and its SSH port forwarded?)")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// TCP connected but the SSH handshake did not complete (no banner — e.g. QEMU's user network
    /// accepts before the guest's sshd runs —, a dropped connection, no common algorithm).
    #[error("SSH handshake with {addr} failed: {reason}")]
    Handshake {
        /// `host:port`.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// The server rejected the credentials.
    #[error(
        "the SSH server at {addr} rejected {method} authentication for user {user:?}; check ssh_username and \
         the {method} (the server offers: {offered})"
    )]
    AuthRejected {
        /// `host:port`.
        addr: String,
        /// The user name tried.
        user: String,
        /// `password` or `private key`.
        method: &'static str,
        /// Authentication methods the server still offers.
        offered: String,
    },
    /// The private key could not be used.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// [`SshCommunicator::wait_for`] saw too many authentication failures.
    #[error(
        "gave up after {attempts} SSH authentication failures (ssh_handshake_attempts); last: {last}. \
         Check the credentials, or raise ssh_handshake_attempts if the machine installs them late"
    )]
    TooManyAuthFailures {
        /// How many failures were seen.
        attempts: u32,
        /// The last failure.
        last: Box<SshError>,
    },
    /// [`SshCommunicator::wait_for`] ran out of time.
    #[error(
        "timed out after {after:?} waiting for SSH ({last}); raise ssh_timeout if the machine needs longer to boot"
    )]
    TimedOut {
        /// The wait's duration.
        after: Duration,
        /// The last failure, if any attempt completed.
        last: String,
    },
    /// [`SshCommunicator::wait_for`] was cancelled.
    #[error("waiting for SSH was cancelled")]
    Cancelled,
}

impl SshError {
    /// Whether another attempt may succeed without changing anything (machine still booting).
    pub fn is_retryable(&self) -> bool {
        matches!(self, SshError::Connect { .. } | SshError::Handshake { .. } | SshError::AuthRejected { .. })
    }

    /// Whether the server rejected the credentials (counts against `ssh_handshake_attempts`).
    pub fn is_auth_failure(&self) -> bool {
        matches!(self, SshError::AuthRejected { .. })
    }
}

/// State shared between the connection's event loop (handler) and the communicator.
#[derive(Default)]
struct Shared {
    /// Why the connection ended, once it has.
    disconnect_reason: Mutex<Option<String>>,
    /// SHA-256 fingerprint of the server's host key.
    host_key: Mutex<Option<String>>,
}

struct ClientHandler {
    shared: Arc<Shared>,
    addr: String,
}

impl russh::client::Handler for ClientHandler {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let fp = key.public_key().fingerprint(HashAlg::Sha256).to_string();
        tracing::info!(addr = %self.addr, "SSH host key {} {fp} accepted without verification", key.public_key().algorithm());
        *lock(&self.shared.host_key) = Some(fp);
        Ok(true)
    }

    async fn disconnected(&mut self, reason: DisconnectReason<Self::Error>) -> Result<(), Self::Error> {
        let (text, result) = match reason {
            DisconnectReason::ReceivedDisconnect(info) => {
                (format!("the server closed the connection ({:?}: {})", info.reason_code, info.message), Ok(()))
            }
            DisconnectReason::Error(e) => (describe_russh_error(&e), Err(e)),
        };
        tracing::debug!(addr = %self.addr, "SSH connection ended: {text}");
        lock(&self.shared.disconnect_reason).get_or_insert(text);
        result
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Words for the transport errors a user may see.
fn describe_russh_error(e: &russh::Error) -> String {
    match e {
        russh::Error::KeepaliveTimeout => "the machine stopped answering SSH keep-alives".to_string(),
        russh::Error::InactivityTimeout => "no traffic within ssh_read_write_timeout".to_string(),
        russh::Error::Disconnect | russh::Error::HUP => "the connection was closed by the remote side".to_string(),
        russh::Error::IO(io) => format!("I/O error: {io}"),
        other => other.to_string(),
    }
}

struct Inner {
    handle: Handle<ClientHandler>,
    /// The SFTP session, once opened (see [`SshCommunicator::sftp`]).
    sftp: tokio::sync::Mutex<Option<Arc<russh_sftp::client::SftpSession>>>,
    shared: Arc<Shared>,
    config: SshConfig,
}

impl Inner {
    /// The error for an operation that found the connection gone (or failed for another reason).
    async fn failure(&self, what: &str, detail: impl std::fmt::Display) -> CommError {
        if self.handle.is_closed() || lock(&self.shared.disconnect_reason).is_some() {
            self.lost().await
        } else {
            CommError::Other(format!("{what}: {detail}"))
        }
    }

    /// [`CommError::Disconnected`] with the reason the connection ended. The event loop records
    /// the reason just after it stops, so wait a moment for it.
    async fn lost(&self) -> CommError {
        let mut reason = None;
        for _ in 0..50 {
            reason = lock(&self.shared.disconnect_reason).clone();
            if reason.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let reason = reason.unwrap_or_else(|| "connection closed".into());
        CommError::Disconnected(format!("SSH connection to {} lost: {reason}", self.config.addr()))
    }
}

/// A connected, authenticated SSH session. Dropping it (and every command it started) closes the
/// connection.
#[derive(Clone)]
pub struct SshCommunicator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SshCommunicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshCommunicator")
            .field("addr", &self.inner.config.addr())
            .field("user", &self.inner.config.username)
            .finish_non_exhaustive()
    }
}

impl SshCommunicator {
    /// Makes one connection attempt: TCP connect, SSH handshake, authentication.
    pub async fn connect(config: &SshConfig) -> Result<SshCommunicator, SshError> {
        let addr = config.addr();
        let key = match &config.auth {
            SshAuth::PrivateKey(text) => Some(Arc::new(keys::parse_private_key(text)?)),
            SshAuth::Password(_) => None,
        };
        let tcp = match tokio::time::timeout(
            config.connect_timeout,
            tokio::net::TcpStream::connect((config.host.as_str(), config.port)),
        )
        .await
        {
            Err(_) => {
                let source = std::io::Error::new(std::io::ErrorKind::TimedOut, "TCP connect timed out");
                return Err(SshError::Connect { addr, source });
            }
            Ok(Err(source)) => return Err(SshError::Connect { addr, source }),
            Ok(Ok(s)) => s,
        };
        let _ = tcp.set_nodelay(true);
        let shared = Arc::new(Shared::default());
        let handler = ClientHandler { shared: shared.clone(), addr: addr.clone() };
        let session = async {
            let mut handle = russh::client::connect_stream(Arc::new(russh_config(config)), tcp, handler)
                .await
                .map_err(|e| handshake_error(&addr, &e))?;
            authenticate(&mut handle, config, key, &addr).await?;
            Ok::<_, SshError>(handle)
        };
        let handle = match tokio::time::timeout(config.connect_timeout, session).await {
            Err(_) => {
                return Err(SshError::Handshake {
                    addr,
                    reason: format!(
                        "no complete SSH handshake within {:?} (sshd on the machine not running yet?)",
                        config.connect_timeout
                    ),
                })
            }
            Ok(r) => r?,
        };
        tracing::info!(addr = %addr, user = %config.username, "connected to SSH");
        Ok(SshCommunicator {
            inner: Arc::new(Inner { handle, sftp: tokio::sync::Mutex::new(None), shared, config: config.clone() }),
        })
    }

    /// Packer's SSH wait loop: attempts [`connect`](Self::connect) until one succeeds, retrying
    /// refused connections and failed handshakes every [`RETRY_INTERVAL`]; authentication failures
    /// are retried too but count against `config.handshake_attempts` (0: unlimited). Other errors
    /// (an unusable key) end the wait at once, as do `timeout` and `cancel`.
    pub async fn wait_for(
        config: &SshConfig,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<SshCommunicator, SshError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut auth_failures = 0u32;
        let mut last = String::from("no attempt finished");
        loop {
            let attempt = tokio::select! {
                r = Self::connect(config) => r,
                _ = cancel.cancelled() => return Err(SshError::Cancelled),
                _ = tokio::time::sleep_until(deadline) => return Err(SshError::TimedOut { after: timeout, last }),
            };
            match attempt {
                Ok(comm) => return Ok(comm),
                Err(e) if e.is_auth_failure() => {
                    auth_failures += 1;
                    tracing::warn!("SSH authentication failed ({auth_failures}): {e}");
                    if config.handshake_attempts != 0 && auth_failures >= config.handshake_attempts {
                        return Err(SshError::TooManyAuthFailures { attempts: auth_failures, last: Box::new(e) });
                    }
                    last = e.to_string();
                }
                Err(e) if e.is_retryable() => {
                    tracing::debug!("SSH not ready yet: {e}");
                    last = e.to_string();
                }
                Err(e) => return Err(e),
            }
            tokio::select! {
                _ = tokio::time::sleep(RETRY_INTERVAL) => {}
                _ = cancel.cancelled() => return Err(SshError::Cancelled),
                _ = tokio::time::sleep_until(deadline) => return Err(SshError::TimedOut { after: timeout, last }),
            }
        }
    }

    /// The SHA-256 fingerprint (`SHA256:…`) of the server's host key.
    pub fn host_key_fingerprint(&self) -> Option<String> {
        lock(&self.inner.shared.host_key).clone()
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.inner.handle.is_closed()
    }

    /// Politely closes the connection (running commands end with [`CommError::Disconnected`]).
    pub async fn close(&self) {
        let _ = self.inner.handle.disconnect(russh::Disconnect::ByApplication, "bye", "en").await;
    }

    async fn open_session(&self) -> Result<Channel<Msg>, CommError> {
        match self.inner.handle.channel_open_session().await {
            Ok(c) => Ok(c),
            Err(e) => Err(self.inner.failure("could not open an SSH session channel", e).await),
        }
    }

    /// Starts `command` on a new channel without waiting for the server's reply (the caller
    /// notices a refusal as an early end of the program).
    async fn exec_io(&self, command: &str) -> Result<ChannelIo, CommError> {
        let channel = self.open_session().await?;
        channel.exec(false, command).await.map_err(|e| send_error(&e))?;
        let (rx, tx) = channel.split();
        Ok(ChannelIo::new(rx, tx))
    }

    /// Runs a short helper command (`mkdir -p`), failing with its stderr if it fails.
    async fn run_helper(&self, command: &str) -> Result<(), CommError> {
        let mut io = self.exec_io(command).await?;
        io.eof().await;
        match io.finish().await {
            Some(Exit::Status(0)) => Ok(()),
            Some(exit) => {
                Err(CommError::Transfer(format!("`{command}` failed on the machine ({exit:?}): {}", io.stderr_text())))
            }
            None => Err(if self.is_closed() {
                self.inner.lost().await
            } else {
                CommError::Transfer(format!("`{command}` ended without an exit status"))
            }),
        }
    }

    /// The connection's SFTP session, opened on first use and kept: one long-lived sftp channel
    /// instead of one per transfer (dropbear 2022.83, the test guest's sshd, sometimes closes a new
    /// channel when the previous sftp channel was closed by the client just before).
    async fn sftp(&self) -> Result<Arc<russh_sftp::client::SftpSession>, CommError> {
        let mut cached = self.inner.sftp.lock().await;
        if let Some(session) = cached.as_ref() {
            return Ok(session.clone());
        }
        let session = Arc::new(self.open_sftp().await?);
        *cached = Some(session.clone());
        Ok(session)
    }

    /// Forgets the cached SFTP session after a failed transfer (the next one opens a fresh session).
    async fn sftp_failed(&self) {
        if let Some(old) = self.inner.sftp.lock().await.take() {
            let _ = old.close().await;
        }
    }

    /// Opens an SFTP session on a new channel.
    async fn open_sftp(&self) -> Result<russh_sftp::client::SftpSession, CommError> {
        let mut channel = self.open_session().await?;
        channel.request_subsystem(true, "sftp").await.map_err(|e| send_error(&e))?;
        loop {
            match channel.wait().await {
                Some(ChannelMsg::Success) => break,
                Some(ChannelMsg::Failure) => {
                    return Err(CommError::Transfer(
                        "the SSH server has no sftp subsystem; enable one in the machine's sshd or set \
                         ssh_file_transfer_method = \"scp\""
                            .into(),
                    ))
                }
                Some(_) => {}
                None => {
                    return Err(if self.is_closed() {
                        self.inner.lost().await
                    } else {
                        CommError::Transfer("the SSH server closed the sftp channel right after opening it".into())
                    })
                }
            }
        }
        let session = match russh_sftp::client::SftpSession::new(channel.into_stream()).await {
            Ok(s) => s,
            Err(e) => return Err(self.inner.failure("could not start SFTP", e).await),
        };
        session.set_timeout(60);
        Ok(session)
    }
}

fn russh_config(config: &SshConfig) -> russh::client::Config {
    let preferred = russh::Preferred {
        // Uploads are mostly compressed images or scripts; compression only costs CPU.
        compression: Cow::Borrowed(&[russh::compression::NONE]),
        ..Default::default()
    };
    russh::client::Config {
        keepalive_interval: (!config.keepalive_interval.is_zero()).then_some(config.keepalive_interval),
        keepalive_max: KEEPALIVE_MAX,
        inactivity_timeout: config.read_write_timeout.filter(|d| !d.is_zero()),
        nodelay: true,
        preferred,
        ..Default::default()
    }
}

fn handshake_error(addr: &str, e: &russh::Error) -> SshError {
    let reason = match e {
        russh::Error::Disconnect | russh::Error::HUP => {
            "the connection closed before the SSH banner arrived (sshd on the machine not running yet?)".to_string()
        }
        russh::Error::IO(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the connection closed before the SSH banner arrived (sshd on the machine not running yet?)".to_string()
        }
        russh::Error::Version => "the server did not send an SSH banner (is this port an SSH server?)".to_string(),
        other => describe_russh_error(other),
    };
    SshError::Handshake { addr: addr.to_string(), reason }
}

async fn authenticate(
    handle: &mut Handle<ClientHandler>,
    config: &SshConfig,
    key: Option<Arc<PrivateKey>>,
    addr: &str,
) -> Result<(), SshError> {
    let transport = |e: russh::Error| SshError::Handshake {
        addr: addr.to_string(),
        reason: format!("the connection failed during authentication: {}", describe_russh_error(&e)),
    };
    let rejected = |method: &'static str, offered: String| SshError::AuthRejected {
        addr: addr.to_string(),
        user: config.username.clone(),
        method,
        offered,
    };
    let user = config.username.clone();
    match (&config.auth, key) {
        (SshAuth::PrivateKey(_), Some(key)) => {
            let hash = if key.algorithm().is_rsa() {
                // Servers without the server-sig-algs extension (older dropbear) still take SHA-256.
                handle.best_supported_rsa_hash().await.map_err(transport)?.unwrap_or(Some(HashAlg::Sha256))
            } else {
                None
            };
            let res =
                handle.authenticate_publickey(user, PrivateKeyWithHashAlg::new(key, hash)).await.map_err(transport)?;
            match res {
                russh::client::AuthResult::Success => Ok(()),
                russh::client::AuthResult::Failure { remaining_methods, .. } => {
                    Err(rejected("private key", methods_text(&remaining_methods)))
                }
            }
        }
        (SshAuth::Password(password), _) => {
            let res = handle.authenticate_password(user.clone(), password.clone()).await.map_err(transport)?;
            let offered = match res {
                russh::client::AuthResult::Success => return Ok(()),
                russh::client::AuthResult::Failure { remaining_methods, .. } => remaining_methods,
            };
            if !methods_text(&offered).contains("keyboard-interactive") {
                return Err(rejected("password", methods_text(&offered)));
            }
            // Keyboard-interactive: answer every prompt with the password (what Packer does).
            use russh::client::KeyboardInteractiveAuthResponse as Kbd;
            let mut resp = handle.authenticate_keyboard_interactive_start(user, None).await.map_err(transport)?;
            for _ in 0..8 {
                match resp {
                    Kbd::Success => return Ok(()),
                    Kbd::Failure { remaining_methods, .. } => {
                        return Err(rejected("password", methods_text(&remaining_methods)))
                    }
                    Kbd::InfoRequest { prompts, .. } => {
                        let answers = prompts.iter().map(|_| password.clone()).collect();
                        resp = handle.authenticate_keyboard_interactive_respond(answers).await.map_err(transport)?;
                    }
                }
            }
            Err(rejected("password", methods_text(&offered)))
        }
        (SshAuth::PrivateKey(_), None) => unreachable_key(),
    }
}

/// The key was parsed before connecting; a missing one is an internal inconsistency reported as a
/// key error rather than a panic.
fn unreachable_key() -> Result<(), SshError> {
    Err(SshError::Key(KeyError::Parse("internal error: the private key was not loaded".into())))
}

fn methods_text(set: &russh::MethodSet) -> String {
    let names: Vec<&str> = set.iter().map(<&str>::from).collect();
    if names.is_empty() {
        "nothing".to_string()
    } else {
        names.join(", ")
    }
}

/// Signal name without `SIG`, as sent in `exit-signal`.
pub(crate) fn signal_name(sig: &Sig) -> String {
    match sig {
        Sig::ABRT => "ABRT".into(),
        Sig::ALRM => "ALRM".into(),
        Sig::FPE => "FPE".into(),
        Sig::HUP => "HUP".into(),
        Sig::ILL => "ILL".into(),
        Sig::INT => "INT".into(),
        Sig::KILL => "KILL".into(),
        Sig::PIPE => "PIPE".into(),
        Sig::QUIT => "QUIT".into(),
        Sig::SEGV => "SEGV".into(),
        Sig::TERM => "TERM".into(),
        Sig::USR1 => "USR1".into(),
        Sig::Custom(s) => s.clone(),
    }
}

/// The exit status reported for a command killed by `sig`: 128 + the Linux signal number, as Go's
/// `ssh.ExitError` (and so Packer) reports it; 128 for signals Go does not know.
pub fn signal_exit_status(sig: &str) -> i32 {
    128 + match sig {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "ABRT" => 6,
        "FPE" => 8,
        "KILL" => 9,
        "SEGV" => 11,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        _ => 0,
    }
}

/// Waits for the reply to a channel request, keeping other messages in `pending`.
async fn await_reply(
    inner: &Inner,
    rx: &mut russh::ChannelReadHalf,
    pending: &mut VecDeque<ChannelMsg>,
    refused: &str,
) -> Result<(), CommError> {
    loop {
        match rx.wait().await {
            Some(ChannelMsg::Success) => return Ok(()),
            Some(ChannelMsg::Failure) => return Err(CommError::Other(refused.to_string())),
            Some(m) => pending.push_back(m),
            None => return Err(inner.lost().await),
        }
    }
}

/// Writes one chunk of command output; after a failure the writer is dropped (output discarded).
async fn forward(out: &mut Option<Writer>, data: &[u8], which: &str) {
    if let Some(w) = out.as_mut() {
        let r = async {
            w.write_all(data).await?;
            w.flush().await
        }
        .await;
        if let Err(e) = r {
            tracing::warn!("discarding the rest of the command's {which}: writing it failed: {e}");
            *out = None;
        }
    }
}

async fn close_writer(out: Option<Writer>) {
    if let Some(mut w) = out {
        let _ = w.flush().await;
        let _ = w.shutdown().await;
    }
}

#[async_trait::async_trait]
impl Communicator for SshCommunicator {
    /// Runs `cmd` on a new exec channel. The handle's status is the exit status; a command killed
    /// by a signal reports 128 + the signal number (like Packer; a warning names the signal); a
    /// session that ends without any exit status, or a lost connection, is
    /// [`CommError::Disconnected`].
    async fn start(&self, cmd: RemoteCommand) -> Result<CommandHandle, CommError> {
        let RemoteCommand { command, stdin, stdout, stderr } = cmd;
        let channel = self.open_session().await?;
        let id = channel.id();
        let (mut rx, tx) = channel.split();
        let mut pending = VecDeque::new();
        // Wait for each request's reply before the next, so a refused PTY does not run the command.
        if self.inner.config.pty {
            tx.request_pty(true, "xterm", 80, 40, 0, 0, &[]).await.map_err(|e| send_error(&e))?;
            await_reply(
                &self.inner,
                &mut rx,
                &mut pending,
                "the SSH server refused to allocate a PTY; set ssh_pty = false",
            )
            .await?;
        }
        tx.exec(true, command.as_bytes()).await.map_err(|e| send_error(&e))?;
        await_reply(&self.inner, &mut rx, &mut pending, "the SSH server refused to run the command").await?;
        tracing::debug!(channel = %id, len = command.len(), "started a remote command");

        let tx = Arc::new(tx);
        let stdin_tx = tx.clone();
        let stdin_task = tokio::spawn(async move {
            if let Some(mut r) = stdin {
                if let Err(e) = stdin_tx.data(&mut r).await {
                    tracing::debug!("stdin of the remote command not fully sent: {e}");
                }
            }
            let _ = stdin_tx.eof().await;
        });
        let (handle, done) = CommandHandle::new();
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let (mut stdout, mut stderr) = (stdout, stderr);
            let mut exit: Option<i32> = None;
            loop {
                let msg = match pending.pop_front() {
                    Some(m) => Some(m),
                    None => rx.wait().await,
                };
                match msg {
                    Some(ChannelMsg::Data { data }) => forward(&mut stdout, &data, "stdout").await,
                    Some(ChannelMsg::ExtendedData { data, ext: 1 }) => forward(&mut stderr, &data, "stderr").await,
                    Some(ChannelMsg::ExitStatus { exit_status }) => exit = Some(exit_status as i32),
                    Some(ChannelMsg::ExitSignal { signal_name: sig, core_dumped, error_message, .. }) => {
                        let name = signal_name(&sig);
                        let status = signal_exit_status(&name);
                        tracing::warn!(
                            channel = %id,
                            "remote command killed by signal SIG{name}{} {error_message}; reporting exit status {status}",
                            if core_dumped { " (core dumped)" } else { "" }
                        );
                        exit = Some(status);
                    }
                    Some(ChannelMsg::Close) | None => break,
                    Some(_) => {}
                }
            }
            stdin_task.abort();
            drop(tx);
            close_writer(stdout).await;
            close_writer(stderr).await;
            let result = match exit {
                Some(status) => Ok(status),
                None if inner.handle.is_closed() || lock(&inner.shared.disconnect_reason).is_some() => {
                    Err(inner.lost().await)
                }
                None => Err(CommError::Disconnected(
                    "the remote command's session ended without an exit status (the machine rebooting?)".into(),
                )),
            };
            tracing::debug!(channel = %id, "remote command ended: {result:?}");
            let _ = done.send(result);
        });
        Ok(handle)
    }

    /// Uploads `data` to the file `path`, with the permission bits of `info.mode` (0644 if absent
    /// or zero). scp needs the size first: `info.size` when given and positive, otherwise the data
    /// is spooled to an anonymous temporary file.
    async fn upload(&self, path: &str, mut data: Reader, info: Option<FileInfo>) -> Result<(), CommError> {
        let mode = info.as_ref().map(|i| i.mode & 0o7777).filter(|m| *m != 0).unwrap_or(0o644);
        tracing::debug!(path, mode = format!("{mode:04o}"), "uploading a file");
        match self.inner.config.file_transfer {
            FileTransfer::Sftp => {
                let sftp = self.sftp().await?;
                let r = sftp::upload(&sftp, path, &mut data, mode).await;
                if r.is_err() {
                    self.sftp_failed().await;
                }
                r.map(drop)
            }
            FileTransfer::Scp => {
                let (dir, name) = walk::split_remote(path)?;
                let size = info.as_ref().map(|i| i.size).filter(|s| *s > 0);
                // `-d`: fail if the directory is missing instead of writing a file named like it.
                let command = format!("scp -d -t {}", shell_quote(&dir));
                match size {
                    Some(size) => {
                        let mut io = self.exec_io(&command).await?;
                        scp::upload(&mut io, &name, mode, size as u64, &mut data).await?;
                        // The announced size must be the whole data.
                        let mut probe = [0u8; 1];
                        if data.read(&mut probe).await.map_err(|e| read_err(&e))? != 0 {
                            return Err(CommError::Transfer(format!(
                                "the data for {path} is longer than the {size} bytes FileInfo announced; only \
                                 {size} bytes were uploaded"
                            )));
                        }
                        Ok(())
                    }
                    None => {
                        let spool = tempfile::tempfile()
                            .map_err(|e| CommError::Transfer(format!("cannot create a temporary file: {e}")))?;
                        let mut spool = tokio::fs::File::from_std(spool);
                        let size = channel::copy_all(&mut data, &mut spool).await.map_err(|e| read_err(&e))?;
                        spool.seek(std::io::SeekFrom::Start(0)).await.map_err(|e| read_err(&e))?;
                        let mut io = self.exec_io(&command).await?;
                        scp::upload(&mut io, &name, mode, size, &mut spool).await
                    }
                }
            }
        }
    }

    /// Uploads a local directory: `src` ending in `/` copies its contents into `dst`, otherwise
    /// the directory itself becomes `dst/<name>`; `dst` is created if missing (rsync semantics).
    /// `exclude` holds glob patterns relative to `src` (`*`, `**`, `?`, `[…]`; a pattern without
    /// `/` matches a name at any depth).
    async fn upload_dir(&self, dst: &str, src: &Path, exclude: &[String]) -> Result<(), CommError> {
        let src_owned = src.to_path_buf();
        let exclude_owned = exclude.to_vec();
        let ops = tokio::task::spawn_blocking(move || walk::plan_upload(&src_owned, &exclude_owned))
            .await
            .map_err(|e| CommError::Other(format!("planning the upload failed: {e}")))??;
        tracing::debug!(src = %src.display(), dst, entries = ops.len(), "uploading a directory");
        match self.inner.config.file_transfer {
            FileTransfer::Sftp => {
                let sftp = self.sftp().await?;
                let r = async {
                    sftp::mkdir_all(&sftp, dst).await?;
                    sftp::upload_dir(&sftp, dst, &ops).await
                }
                .await;
                if r.is_err() {
                    self.sftp_failed().await;
                }
                r
            }
            FileTransfer::Scp => {
                self.run_helper(&format!("mkdir -p {}", shell_quote(dst))).await?;
                let mut io = self.exec_io(&format!("scp -d -r -t {}", shell_quote(dst))).await?;
                scp::upload_dir(&mut io, &ops).await
            }
        }
    }

    /// Downloads the remote file `path` into `out` (flushed and shut down at the end).
    async fn download(&self, path: &str, mut out: Writer) -> Result<(), CommError> {
        tracing::debug!(path, "downloading a file");
        match self.inner.config.file_transfer {
            FileTransfer::Sftp => {
                let sftp = self.sftp().await?;
                let r = sftp::download(&sftp, path, &mut out).await;
                if r.is_err() {
                    self.sftp_failed().await;
                }
                r?;
            }
            FileTransfer::Scp => {
                let mut io = self.exec_io(&format!("scp -f {}", shell_quote(path))).await?;
                scp::download(&mut io, &mut out).await?;
            }
        }
        out.flush().await.map_err(|e| CommError::Transfer(format!("writing the download failed: {e}")))?;
        out.shutdown().await.map_err(|e| CommError::Transfer(format!("closing the download failed: {e}")))
    }

    /// Downloads the remote directory `src` into the local directory `dst` (created if missing):
    /// `src` ending in `/` copies its contents into `dst`, otherwise into `dst/<name>`. `exclude`
    /// works as in [`upload_dir`](Communicator::upload_dir).
    async fn download_dir(&self, src: &str, dst: &Path, exclude: &[String]) -> Result<(), CommError> {
        let contents_only = walk::copies_contents(src);
        let trimmed = match src.trim_end_matches('/') {
            "" => "/",
            t => t,
        };
        tracing::debug!(src, dst = %dst.display(), "downloading a directory");
        match self.inner.config.file_transfer {
            FileTransfer::Sftp => {
                let sftp = self.sftp().await?;
                let r = sftp::download_dir(&sftp, trimmed, dst, contents_only, exclude).await;
                if r.is_err() {
                    self.sftp_failed().await;
                }
                r
            }
            FileTransfer::Scp => {
                let mut io = self.exec_io(&format!("scp -rf {}", shell_quote(trimmed))).await?;
                scp::download_dir(&mut io, dst, contents_only, exclude).await
            }
        }
    }
}

fn read_err(e: &std::io::Error) -> CommError {
    CommError::Transfer(format!("reading the data to upload failed: {e}"))
}
