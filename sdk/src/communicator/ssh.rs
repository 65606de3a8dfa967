//! The SSH communicator a builder connects to its guest with (Packer's `communicator = "ssh"`).
//!
//! - [`SshCommunicator::connect`] makes one attempt (TCP — directly, through a SOCKS5 proxy or
//!   through a bastion host —, SSH handshake, authentication) and says precisely what failed
//!   ([`SshError`]); [`SshCommunicator::wait_for`] is Packer's wait loop around it (retry until a
//!   deadline, count authentication failures against `ssh_handshake_attempts`).
//! - Authentication tries every configured method in order ([`SshConfig::auth`]): keys from an
//!   SSH agent, private keys (with an OpenSSH certificate), password and keyboard-interactive.
//! - [`SshCommunicator::start_forwarding`] opens the configured port forwards
//!   (`ssh_local_tunnels`, `ssh_remote_tunnels`) once a connection is chosen; agent forwarding
//!   is requested on every command's session unless disabled.
//! - Commands run on their own exec channels, so several can run at once over one connection;
//!   output is streamed to the writers as it arrives.
//! - Files travel by scp (`scp -t`/`scp -f` on the machine, Packer's default) or sftp.
//! - Keep-alives (`keepalive@openssh.com`) go out every `keepalive_interval` of silence; after 3
//!   unanswered ones the connection is dropped and running commands end with
//!   [`CommError::Disconnected`].
//! - The host key is not checked (build VMs have fresh keys) but its fingerprint is logged.
//! - Secrets (passwords, private keys) and command lines (they may carry sensitive environment
//!   values) are never logged.

pub mod algorithms;
pub mod keys;
pub mod reconnect;
pub mod tunnel;

mod auth;
mod channel;
mod scp;
mod sftp;
mod terminal;
mod transport;
mod walk;

use std::borrow::Cow;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{DisconnectReason, Handle, Msg, Session};
use russh::keys::{HashAlg, PublicKeyOrCertificate};
use russh::{Channel, ChannelMsg, Sig};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

pub use keys::{KeyError, KeyType, TemporaryKeyPair};
pub use reconnect::ReconnectingSsh;
pub use tunnel::{Tunnel, TunnelDirection};

use self::channel::{send_error, ChannelIo, Exit};
use self::tunnel::{Forwards, RemoteTargets};
use self::walk::shell_quote;
use crate::communicator::{CommError, CommandHandle, Communicator, FileInfo, Reader, RemoteCommand, Writer};

/// How often [`SshCommunicator::wait_for`] retries after a failed attempt.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(2);
/// Unanswered keep-alives after which the connection counts as dead.
const KEEPALIVE_MAX: usize = 3;

/// One way to authenticate. [`SshConfig::auth`] lists them in the order they are tried.
#[derive(Clone, PartialEq, Eq)]
pub enum SshAuth {
    /// Password (tried as `password`, then as `keyboard-interactive`, like Packer).
    Password(String),
    /// An unencrypted private key: OpenSSH format or PEM (PKCS#1/PKCS#8), RSA, Ed25519 or ECDSA.
    PrivateKey(String),
    /// An OpenSSH user certificate (`ssh_certificate_file`) and its unencrypted private key.
    Certificate {
        /// The private key, as in [`SshAuth::PrivateKey`].
        private_key: String,
        /// The certificate line (`ssh-ed25519-cert-v01@openssh.com AAAA…`).
        certificate: String,
    },
    /// Every key (and certificate) held by the SSH agent listening on this Unix socket
    /// (`ssh_agent_auth`; the socket is `SSH_AUTH_SOCK`).
    Agent(PathBuf),
    /// Keyboard-interactive, the prompts answered by the person at the controlling terminal
    /// (`ssh_bastion_interactive`).
    Interactive,
}

impl std::fmt::Debug for SshAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SshAuth::Password(_) => f.write_str("Password(<redacted>)"),
            SshAuth::PrivateKey(_) => f.write_str("PrivateKey(<redacted>)"),
            SshAuth::Certificate { .. } => f.write_str("Certificate(<redacted>)"),
            SshAuth::Agent(socket) => f.debug_tuple("Agent").field(socket).finish(),
            SshAuth::Interactive => f.write_str("Interactive"),
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

/// A jump host the connection to the machine is tunnelled through (`ssh_bastion_*`): the
/// communicator logs in to the bastion, opens a `direct-tcpip` channel from it to the machine's
/// address and runs the machine's SSH session inside that channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bastion {
    /// Host name or address of the bastion.
    pub host: String,
    /// Its SSH port.
    pub port: u16,
    /// User to log in to the bastion as.
    pub username: String,
    /// Credentials for the bastion, tried in order.
    pub auth: Vec<SshAuth>,
}

/// A SOCKS5 proxy the TCP connection to the machine goes through (`ssh_proxy_*`).
#[derive(Clone, PartialEq, Eq)]
pub struct Socks5Proxy {
    /// Host name or address of the proxy.
    pub host: String,
    /// Its port (Packer's default is 1080).
    pub port: u16,
    /// User name and password for the proxy's username/password authentication, if it needs one.
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for Socks5Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socks5Proxy")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.credentials.as_ref().map(|(u, _)| u))
            .finish()
    }
}

/// How the TCP connection to the machine is made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Route {
    /// Straight to `host:port` (the default).
    #[default]
    Direct,
    /// Through a SOCKS5 proxy.
    Socks5(Socks5Proxy),
    /// Through an SSH bastion host.
    Bastion(Box<Bastion>),
}

/// Connection settings (the `ssh_*` template keys a QEMU build uses).
#[derive(Debug, Clone)]
pub struct SshConfig {
    /// Host name or IP address to connect to (as seen from the bastion or proxy, if any).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// User to log in as (`ssh_username`).
    pub username: String,
    /// Credentials, tried in order until the server accepts one (Packer's order: agent, private
    /// keys, password).
    pub auth: Vec<SshAuth>,
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
    /// Bound on each phase of one connection attempt: the TCP connect, the wait for the server's
    /// first byte (direct connections), then the SSH handshake plus authentication.
    pub connect_timeout: Duration,
    /// Ciphers to offer, most preferred first (`ssh_ciphers`, names as in
    /// [`algorithms::SUPPORTED_CIPHERS`]); empty: the library's defaults.
    pub ciphers: Vec<String>,
    /// Key exchange algorithms to offer (`ssh_key_exchange_algorithms`, names as in
    /// [`algorithms::SUPPORTED_KEX`]); empty: the library's defaults.
    pub kex_algorithms: Vec<String>,
    /// Forward this SSH agent socket to the machine: every command's session asks for agent
    /// forwarding, and the machine's agent requests reach this socket. `None`: no forwarding
    /// (`ssh_disable_agent_forwarding`, or no agent running).
    pub agent_forwarding: Option<PathBuf>,
    /// Port forwards opened by [`SshCommunicator::start_forwarding`].
    pub tunnels: Vec<Tunnel>,
    /// How the TCP connection is made.
    pub route: Route,
    /// The bastion login shared by the clones of this configuration, so that repeated attempts
    /// (a machine still booting) log in to the bastion once — and ask an interactive bastion's
    /// questions once.
    bastion_login: BastionLogin,
}

/// A bastion login: the settings it was made with and the connection.
type BastionHandle = (Bastion, Arc<Handle<ClientHandler>>);

/// The logged-in bastion connection, if any, shared by the clones of one [`SshConfig`].
#[derive(Clone, Default)]
pub(crate) struct BastionLogin(Arc<tokio::sync::Mutex<Option<BastionHandle>>>);

impl std::fmt::Debug for BastionLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BastionLogin")
    }
}

impl SshConfig {
    /// Settings with Packer's defaults: no PTY, 10 handshake attempts, keep-alive every 5 s, no
    /// read/write timeout, scp, 30 s connect timeout, the library's algorithms, no agent
    /// forwarding, no tunnels, a direct connection.
    pub fn new(host: impl Into<String>, port: u16, username: impl Into<String>, auth: SshAuth) -> Self {
        SshConfig {
            host: host.into(),
            port,
            username: username.into(),
            auth: vec![auth],
            pty: false,
            handshake_attempts: 10,
            keepalive_interval: Duration::from_secs(5),
            read_write_timeout: None,
            file_transfer: FileTransfer::Scp,
            connect_timeout: Duration::from_secs(30),
            ciphers: Vec::new(),
            kex_algorithms: Vec::new(),
            agent_forwarding: None,
            tunnels: Vec::new(),
            route: Route::Direct,
            bastion_login: BastionLogin::default(),
        }
    }

    fn addr(&self) -> String {
        join_host_port(&self.host, self.port)
    }
}

/// `host:port`, with IPv6 addresses in brackets.
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
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
    /// TCP connected but no byte came within the wait ([`SshCommunicator::reach`]): the machine's
    /// sshd is not running yet, the machine's network is not up yet (a port forward accepted the
    /// connection), or a running sshd is too slow to answer.
    #[error("SSH handshake with {addr} failed: the server sent no SSH banner within {waited:?} (sshd on the machine not running yet?)")]
    NoBanner {
        /// `host:port`.
        addr: String,
        /// How long the attempt waited.
        waited: Duration,
    },
    /// The server rejected every credential.
    #[error(
        "the SSH server at {addr} rejected the login of user {user:?} (tried: {method}); check ssh_username and \
         the credentials (the server offers: {offered})"
    )]
    AuthRejected {
        /// `host:port`.
        addr: String,
        /// The user name tried.
        user: String,
        /// The methods tried (`private key`, `password`, `ssh-agent (2 keys)`…).
        method: String,
        /// Authentication methods the server still offers.
        offered: String,
    },
    /// A private key or certificate could not be used.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The SSH agent could not be used (no socket, not answering).
    #[error("{reason}")]
    Agent {
        /// What went wrong, and what to do.
        reason: String,
    },
    /// Keyboard-interactive answers could not be asked for.
    #[error("{reason}")]
    Interactive {
        /// What went wrong, and what to do.
        reason: String,
    },
    /// The settings cannot work (an unknown algorithm name).
    #[error("{0}")]
    Config(String),
    /// The SOCKS5 proxy refused or failed.
    #[error("SOCKS5 proxy {proxy}: {reason}")]
    Proxy {
        /// The proxy's `host:port`.
        proxy: String,
        /// What went wrong.
        reason: String,
        /// Whether trying again may help (the proxy could not reach the machine yet).
        retryable: bool,
    },
    /// Connecting to, logging in to, or tunnelling through the bastion host failed.
    #[error("through the bastion host {bastion}: {source}")]
    Bastion {
        /// The bastion's `host:port`.
        bastion: String,
        /// What failed.
        #[source]
        source: Box<SshError>,
    },
    /// Opening a port forward failed (`ssh_local_tunnels`, `ssh_remote_tunnels`).
    #[error("{0}")]
    Tunnel(String),
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
        match self {
            SshError::Connect { .. }
            | SshError::Handshake { .. }
            | SshError::NoBanner { .. }
            | SshError::AuthRejected { .. } => true,
            SshError::Proxy { retryable, .. } => *retryable,
            SshError::Bastion { source, .. } => source.is_retryable(),
            _ => false,
        }
    }

    /// Whether the server rejected the credentials (counts against `ssh_handshake_attempts`).
    pub fn is_auth_failure(&self) -> bool {
        match self {
            SshError::AuthRejected { .. } => true,
            SshError::Bastion { source, .. } => source.is_auth_failure(),
            _ => false,
        }
    }
}

/// State shared between the connection's event loop (handler) and the communicator.
#[derive(Default)]
struct Shared {
    /// Why the connection ended, once it has.
    disconnect_reason: Mutex<Option<String>>,
    /// SHA-256 fingerprint of the server's host key.
    host_key: Mutex<Option<String>>,
    /// Where the remote forwards' connections go (`forwarded-tcpip` channels).
    remote_targets: RemoteTargets,
    /// The local agent socket the machine's agent requests go to, when forwarding.
    agent_socket: Option<PathBuf>,
    /// The connection's forwards (listeners and copies), stopped when the communicator is dropped.
    forwards: Forwards,
}

pub(crate) struct ClientHandler {
    shared: Arc<Shared>,
    addr: String,
}

impl ClientHandler {
    fn new(shared: Arc<Shared>, addr: String) -> Self {
        ClientHandler { shared, addr }
    }
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

    /// A connection to one of the remote forwards: connect to its target from this machine.
    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: Channel<Msg>,
        connected_address: &str,
        connected_port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: russh::client::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let target = lock(&self.shared.remote_targets).get(&connected_port).cloned();
        let Some((host, port)) = target else {
            tracing::warn!("the SSH server forwarded a connection to {connected_address}:{connected_port}, which no ssh_remote_tunnels entry asked for; refused");
            reply.reject(russh::ChannelOpenFailure::AdministrativelyProhibited).await;
            return Ok(());
        };
        let what = format!(
            "remote tunnel {connected_port} -> {} (from {originator_address}:{originator_port})",
            join_host_port(&host, port)
        );
        // connect off the event loop; the server waits for the answer before sending data
        let forwards = self.shared.clone();
        let task = tokio::spawn(async move {
            match tokio::net::TcpStream::connect((host.as_str(), port)).await {
                Ok(tcp) => {
                    reply.accept().await;
                    tracing::debug!("{what}: connected");
                    tunnel::pipe(tcp, channel.into_stream(), &what).await
                }
                Err(e) => {
                    tracing::warn!("{what}: cannot connect: {e}");
                    reply.reject(russh::ChannelOpenFailure::ConnectFailed).await;
                }
            }
        });
        forwards.forwards.push(task);
        Ok(())
    }

    /// The machine's agent requests (`ssh-add -l`, `git clone` over SSH…) reach the local agent.
    async fn server_channel_open_agent_forward(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::client::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(socket) = self.shared.agent_socket.clone() else {
            reply.reject(russh::ChannelOpenFailure::AdministrativelyProhibited).await;
            return Ok(());
        };
        let task = tokio::spawn(async move {
            match tokio::net::UnixStream::connect(&socket).await {
                Ok(agent) => {
                    reply.accept().await;
                    tunnel::pipe(agent, channel.into_stream(), "agent forwarding").await
                }
                Err(e) => {
                    tracing::warn!("agent forwarding: cannot reach the SSH agent at {}: {e}", socket.display());
                    reply.reject(russh::ChannelOpenFailure::ConnectFailed).await;
                }
            }
        });
        self.shared.forwards.push(task);
        Ok(())
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
        russh::Error::NoCommonAlgo { kind, ours, theirs } => format!(
            "no common {kind:?} algorithm: this side offers {}, the server {} (see ssh_ciphers / \
             ssh_key_exchange_algorithms)",
            ours.join(","),
            theirs.join(",")
        ),
        other => other.to_string(),
    }
}

struct Inner {
    handle: Handle<ClientHandler>,
    /// The SFTP session, once opened (see [`SshCommunicator::sftp`]).
    sftp: tokio::sync::Mutex<Option<Arc<russh_sftp::client::SftpSession>>>,
    shared: Arc<Shared>,
    config: SshConfig,
    /// The bastion connection the session runs through, if any (kept open with it).
    _bastion: Option<Arc<Handle<ClientHandler>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.forwards.abort_all();
    }
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

/// A connection attempt whose server has answered ([`SshCommunicator::reach`]); [`Reached::login`]
/// completes it. Dropping it closes the connection.
pub struct Reached {
    config: SshConfig,
    credentials: Vec<auth::Credential>,
    russh_config: Arc<russh::client::Config>,
    opened: transport::Opened,
}

impl std::fmt::Debug for Reached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reached").field("addr", &self.config.addr()).finish_non_exhaustive()
    }
}

impl Reached {
    /// The second half of [`SshCommunicator::connect`]: SSH handshake and authentication, bounded
    /// together by [`SshConfig::connect_timeout`].
    pub async fn login(self) -> Result<SshCommunicator, SshError> {
        let timeout = self.config.connect_timeout;
        self.login_within(timeout).await
    }

    /// [`login`](Self::login) bounded by `timeout` instead: once the server has sent its banner an
    /// sshd is there, and on a slow machine (an emulated guest on a busy host) its key exchange can
    /// take longer than waiting for the banner should.
    pub async fn login_within(self, timeout: Duration) -> Result<SshCommunicator, SshError> {
        let Reached { config, credentials, russh_config, opened } = self;
        let addr = config.addr();
        let started = std::time::Instant::now();
        let ms = |t: std::time::Instant| t.elapsed().as_millis() as u64;
        let shared = Arc::new(Shared { agent_socket: config.agent_forwarding.clone(), ..Shared::default() });
        let handler = ClientHandler::new(shared.clone(), addr.clone());
        let session = async {
            let mut handle = russh::client::connect_stream(russh_config, opened.stream, handler)
                .await
                .map_err(|e| handshake_error(&addr, &e))?;
            tracing::debug!(addr = %addr, ms = ms(started), "SSH attempt: key exchange done");
            auth::authenticate(&mut handle, &config.username, &credentials, &addr).await?;
            tracing::debug!(addr = %addr, ms = ms(started), "SSH attempt: authenticated");
            Ok::<_, SshError>(handle)
        };
        let handle = match tokio::time::timeout(timeout, session).await {
            Err(_) => {
                return Err(SshError::Handshake {
                    addr,
                    reason: format!(
                        "no complete SSH handshake within {timeout:?} (sshd on the machine not running yet?)"
                    ),
                })
            }
            Ok(r) => r?,
        };
        tracing::info!(addr = %addr, user = %config.username, route = route_name(&config.route), "connected to SSH");
        Ok(SshCommunicator {
            inner: Arc::new(Inner {
                handle,
                sftp: tokio::sync::Mutex::new(None),
                shared,
                config,
                _bastion: opened.bastion,
            }),
        })
    }
}

impl SshCommunicator {
    /// Makes one connection attempt: TCP connect (directly, through the SOCKS5 proxy or through
    /// the bastion), SSH handshake, authentication. Port forwards are not opened yet (see
    /// [`start_forwarding`](Self::start_forwarding)), so attempts may overlap. The same as
    /// [`reach`](Self::reach) followed by [`Reached::login`].
    pub async fn connect(config: &SshConfig) -> Result<SshCommunicator, SshError> {
        Self::reach(config).await?.login().await
    }

    /// The first half of [`connect`](Self::connect): opens the byte stream along the route and,
    /// for a direct connection, waits until the server has sent its first bytes (its SSH banner).
    /// A port forward in front of the machine (QEMU's user network) accepts the TCP connection at
    /// once, before it even tries the machine; only the banner proves that an sshd is there. A
    /// connection closed before any byte is a quick [`SshError::Handshake`]; each wait is bounded
    /// by [`SshConfig::connect_timeout`]. Keys are parsed here, so a bad key fails at once.
    ///
    /// A wait loop can keep several of these pending (a guest still booting answers none of them)
    /// and go on with the first that is answered, dropping the others.
    pub async fn reach(config: &SshConfig) -> Result<Reached, SshError> {
        let credentials = auth::Credential::prepare(&config.auth)?;
        let bastion_credentials = match &config.route {
            Route::Bastion(b) => auth::Credential::prepare(&b.auth)?,
            _ => Vec::new(),
        };
        let russh_config = Arc::new(russh_config(config)?);
        let started = std::time::Instant::now();
        let opened = transport::open(config, &bastion_credentials).await?;
        tracing::debug!(addr = %config.addr(), ms = started.elapsed().as_millis() as u64, "SSH attempt: server reached");
        Ok(Reached { config: config.clone(), credentials, russh_config, opened })
    }

    /// Opens the port forwards of `config.tunnels`: local ones listen on 127.0.0.1 here, remote
    /// ones are requested from the server (`tcpip-forward` on its 127.0.0.1). They stay open until
    /// the communicator (every clone) is dropped. Call it once, on the connection that is kept.
    pub async fn start_forwarding(&self) -> Result<(), SshError> {
        for t in &self.inner.config.tunnels {
            match t.direction {
                TunnelDirection::Local => self.start_local_tunnel(t).await?,
                TunnelDirection::Remote => self.start_remote_tunnel(t).await?,
            }
        }
        Ok(())
    }

    async fn start_local_tunnel(&self, t: &Tunnel) -> Result<(), SshError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", t.listen_port)).await.map_err(|e| {
            SshError::Tunnel(format!(
                "ssh_local_tunnels {t}: cannot listen on 127.0.0.1:{}: {e}; pick a free port",
                t.listen_port
            ))
        })?;
        tracing::info!(
            "local tunnel: 127.0.0.1:{} -> {} on the machine",
            t.listen_port,
            join_host_port(&t.forward_host, t.forward_port)
        );
        let weak = Arc::downgrade(&self.inner);
        let (host, port) = (t.forward_host.clone(), t.forward_port);
        let task = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("local tunnel {port}: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Some(inner) = weak.upgrade() else { return };
                let what = format!("local tunnel {} -> {}", peer, join_host_port(&host, port));
                let (host, inner2) = (host.clone(), inner.clone());
                let copy = tokio::spawn(async move {
                    let opened = inner2
                        .handle
                        .channel_open_direct_tcpip(host, u32::from(port), peer.ip().to_string(), u32::from(peer.port()))
                        .await;
                    match opened {
                        Ok(channel) => tunnel::pipe(tcp, channel.into_stream(), &what).await,
                        Err(e) => tracing::warn!(
                            "{what}: the SSH server did not open the connection: {}",
                            describe_russh_error(&e)
                        ),
                    }
                });
                inner.shared.forwards.push(copy);
            }
        });
        self.inner.shared.forwards.push(task);
        Ok(())
    }

    async fn start_remote_tunnel(&self, t: &Tunnel) -> Result<(), SshError> {
        lock(&self.inner.shared.remote_targets)
            .insert(u32::from(t.listen_port), (t.forward_host.clone(), t.forward_port));
        match self.inner.handle.tcpip_forward("127.0.0.1", u32::from(t.listen_port)).await {
            Ok(_) => {
                tracing::info!(
                    "remote tunnel: 127.0.0.1:{} on the machine -> {} here",
                    t.listen_port,
                    join_host_port(&t.forward_host, t.forward_port)
                );
                Ok(())
            }
            Err(e) => {
                lock(&self.inner.shared.remote_targets).remove(&u32::from(t.listen_port));
                Err(SshError::Tunnel(format!(
                    "ssh_remote_tunnels {t}: the SSH server refused to listen on its 127.0.0.1:{} ({}); the port \
                     may be taken there, or its sshd forbids forwarding (AllowTcpForwarding)",
                    t.listen_port,
                    describe_russh_error(&e)
                )))
            }
        }
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
                Ok(comm) => {
                    comm.start_forwarding().await?;
                    return Ok(comm);
                }
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

/// The library's client settings qemu-rs starts from (no compression: uploads are mostly
/// compressed images or scripts; compression only costs CPU).
fn russh_defaults() -> russh::client::Config {
    let preferred = russh::Preferred { compression: Cow::Borrowed(&[russh::compression::NONE]), ..Default::default() };
    russh::client::Config { keepalive_max: KEEPALIVE_MAX, nodelay: true, preferred, ..Default::default() }
}

fn russh_config(config: &SshConfig) -> Result<russh::client::Config, SshError> {
    let mut c = russh_defaults();
    let messages = |errs: Vec<algorithms::UnknownAlgorithm>, option: &str| {
        SshError::Config(errs.iter().map(|e| format!("{option}: {e}")).collect::<Vec<_>>().join("; "))
    };
    if !config.ciphers.is_empty() {
        c.preferred.cipher = Cow::Owned(algorithms::ciphers(&config.ciphers).map_err(|e| messages(e, "ssh_ciphers"))?);
    }
    if !config.kex_algorithms.is_empty() {
        c.preferred.kex = Cow::Owned(
            algorithms::kex_algorithms(&config.kex_algorithms)
                .map_err(|e| messages(e, "ssh_key_exchange_algorithms"))?,
        );
    }
    c.keepalive_interval = (!config.keepalive_interval.is_zero()).then_some(config.keepalive_interval);
    c.inactivity_timeout = config.read_write_timeout.filter(|d| !d.is_zero());
    Ok(c)
}

fn route_name(route: &Route) -> &'static str {
    match route {
        Route::Direct => "direct",
        Route::Socks5(_) => "socks5 proxy",
        Route::Bastion(_) => "bastion",
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
        if self.inner.config.agent_forwarding.is_some() {
            // Per session, like OpenSSH's `ssh -A` (dropbear forwards per session; OpenSSH's sshd
            // answers a repeated request with a failure but keeps SSH_AUTH_SOCK for every session).
            tx.agent_forward(false).await.map_err(|e| send_error(&e))?;
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
