//! The byte stream an SSH session to the machine runs over: a TCP connection made directly,
//! through a SOCKS5 proxy (`ssh_proxy_*`), or a `direct-tcpip` channel of an SSH connection to a
//! bastion host (`ssh_bastion_*`).

use std::sync::Arc;

use russh::client::Handle;
use tokio::io::{AsyncRead, AsyncWrite};

use super::auth::{self, Credential};
use super::{
    handshake_error, join_host_port, russh_defaults, Bastion, ClientHandler, Route, Shared, Socks5Proxy, SshConfig,
    SshError,
};

/// A byte stream an SSH session can run over.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The opened stream, and the bastion connection it runs inside (kept alive with it).
pub(crate) struct Opened {
    pub(crate) stream: Box<dyn Stream>,
    pub(crate) bastion: Option<Arc<Handle<ClientHandler>>>,
}

/// Opens the stream to `config.host:config.port` along `config.route`. Credentials of a
/// bastion are in `bastion_credentials` (parsed before).
pub(crate) async fn open(config: &SshConfig, bastion_credentials: &[Credential]) -> Result<Opened, SshError> {
    match &config.route {
        Route::Direct => {
            let tcp = tcp_connect(&config.host, config.port, config.connect_timeout).await?;
            first_byte(&tcp, &config.addr(), config.connect_timeout).await?;
            Ok(Opened { stream: Box::new(tcp), bastion: None })
        }
        Route::Socks5(proxy) => {
            let stream = socks5(proxy, config).await?;
            Ok(Opened { stream: Box::new(stream), bastion: None })
        }
        Route::Bastion(b) => {
            let bastion_addr = join_host_port(&b.host, b.port);
            let wrap = |source: SshError| SshError::Bastion { bastion: bastion_addr.clone(), source: Box::new(source) };
            let handle = {
                // one login for all attempts with these settings (held while logging in, so
                // attempts wait for it instead of logging in alongside)
                let mut cached = config.bastion_login.0.lock().await;
                match cached.as_ref().filter(|(settings, h)| settings == b.as_ref() && !h.is_closed()) {
                    Some((_, h)) => h.clone(),
                    None => {
                        let h = Arc::new(bastion_login(b, bastion_credentials, config).await.map_err(wrap)?);
                        *cached = Some(((**b).clone(), h.clone()));
                        h
                    }
                }
            };
            let target = config.addr();
            let channel = match tokio::time::timeout(
                config.connect_timeout,
                handle.channel_open_direct_tcpip(config.host.clone(), u32::from(config.port), "127.0.0.1", 0),
            )
            .await
            {
                Err(_) => {
                    *config.bastion_login.0.lock().await = None;
                    let source = std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the bastion did not open a connection to it in time",
                    );
                    return Err(wrap(SshError::Connect { addr: target, source }));
                }
                Ok(Err(russh::Error::ChannelOpenFailure(reason))) => {
                    let (kind, why) = match reason {
                        russh::ChannelOpenFailure::AdministrativelyProhibited => (
                            std::io::ErrorKind::PermissionDenied,
                            "the bastion does not allow TCP forwarding (AllowTcpForwarding in its sshd_config)",
                        ),
                        _ => (std::io::ErrorKind::ConnectionRefused, "the bastion could not connect to it"),
                    };
                    let source = std::io::Error::new(kind, format!("{why} ({reason:?})"));
                    let err = SshError::Connect { addr: target, source };
                    // a forwarding ban does not go away by retrying
                    if kind == std::io::ErrorKind::PermissionDenied {
                        return Err(wrap(SshError::Tunnel(err.to_string())));
                    }
                    return Err(wrap(err));
                }
                Ok(Err(e)) => {
                    *config.bastion_login.0.lock().await = None;
                    return Err(wrap(handshake_error(&bastion_addr, &e)));
                }
                Ok(Ok(c)) => c,
            };
            tracing::debug!(bastion = %bastion_addr, target = %target, "tunnel through the bastion open");
            Ok(Opened { stream: Box::new(channel.into_stream()), bastion: Some(handle) })
        }
    }
}

/// A TCP connection bounded by `timeout`.
pub(crate) async fn tcp_connect(
    host: &str,
    port: u16,
    timeout: std::time::Duration,
) -> Result<tokio::net::TcpStream, SshError> {
    let addr = join_host_port(host, port);
    let tcp = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await {
        Err(_) => {
            let source = std::io::Error::new(std::io::ErrorKind::TimedOut, "TCP connect timed out");
            return Err(SshError::Connect { addr, source });
        }
        Ok(Err(source)) => return Err(SshError::Connect { addr, source }),
        Ok(Ok(s)) => s,
    };
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// Waits until the server has sent something (its SSH banner) without consuming it: a port
/// forward (QEMU's user network) accepts TCP connections before its target listens, so only the
/// first byte shows that a server answered. Bounded by `timeout`.
pub(crate) async fn first_byte(
    tcp: &tokio::net::TcpStream,
    addr: &str,
    timeout: std::time::Duration,
) -> Result<(), SshError> {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(timeout, tcp.peek(&mut byte)).await {
        Err(_) => Err(SshError::NoBanner { addr: addr.to_string(), waited: timeout }),
        Ok(Ok(0)) => Err(SshError::Handshake {
            addr: addr.to_string(),
            reason: "the connection closed before the SSH banner arrived (sshd on the machine not running yet?)".into(),
        }),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(source)) => Err(SshError::Connect { addr: addr.to_string(), source }),
    }
}

/// Logs in to the bastion (its own connection, Packer's default algorithms).
async fn bastion_login(
    b: &Bastion,
    credentials: &[Credential],
    target: &SshConfig,
) -> Result<Handle<ClientHandler>, SshError> {
    let addr = join_host_port(&b.host, b.port);
    let tcp = tcp_connect(&b.host, b.port, target.connect_timeout).await?;
    let handler = ClientHandler::new(Arc::new(Shared::default()), addr.clone());
    let mut config = russh_defaults();
    config.keepalive_interval = (!target.keepalive_interval.is_zero()).then_some(target.keepalive_interval);
    let login = async {
        let mut handle = russh::client::connect_stream(Arc::new(config), tcp, handler)
            .await
            .map_err(|e| handshake_error(&addr, &e))?;
        auth::authenticate(&mut handle, &b.username, credentials, &addr).await?;
        Ok::<_, SshError>(handle)
    };
    match tokio::time::timeout(target.connect_timeout, login).await {
        Err(_) => Err(SshError::Handshake {
            addr,
            reason: format!("no complete SSH login within {:?}", target.connect_timeout),
        }),
        Ok(r) => r,
    }
}

/// A TCP connection to the machine through a SOCKS5 proxy.
async fn socks5(
    proxy: &Socks5Proxy,
    config: &SshConfig,
) -> Result<tokio_socks::tcp::Socks5Stream<tokio::net::TcpStream>, SshError> {
    use tokio_socks::Error as E;
    let proxy_addr = join_host_port(&proxy.host, proxy.port);
    let tcp = tcp_connect(&proxy.host, proxy.port, config.connect_timeout).await.map_err(|e| match e {
        SshError::Connect { source, .. } => SshError::Proxy {
            proxy: proxy_addr.clone(),
            reason: format!(
                "cannot connect to the proxy: {source} (is it running? check ssh_proxy_host/ssh_proxy_port)"
            ),
            retryable: true,
        },
        other => other,
    })?;
    let target = (config.host.as_str(), config.port);
    let handshake = async {
        match &proxy.credentials {
            Some((user, password)) => {
                tokio_socks::tcp::Socks5Stream::connect_with_password_and_socket(tcp, target, user, password).await
            }
            None => tokio_socks::tcp::Socks5Stream::connect_with_socket(tcp, target).await,
        }
    };
    let err = |reason: String, retryable: bool| SshError::Proxy { proxy: proxy_addr.clone(), reason, retryable };
    match tokio::time::timeout(config.connect_timeout, handshake).await {
        Err(_) => Err(err("the proxy did not complete the SOCKS5 handshake in time".into(), true)),
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(match e {
            E::NoAcceptableAuthMethods => err(
                "the proxy accepts none of the offered authentication methods (set or remove \
                 ssh_proxy_username/ssh_proxy_password)"
                    .into(),
                false,
            ),
            E::PasswordAuthFailure(_) => err("the proxy rejected ssh_proxy_username/ssh_proxy_password".into(), false),
            E::ConnectionNotAllowedByRuleset => {
                err(format!("the proxy's rules do not allow a connection to {}", config.addr()), false)
            }
            E::ConnectionRefused
            | E::HostUnreachable
            | E::NetworkUnreachable
            | E::TtlExpired
            | E::GeneralSocksServerFailure => {
                err(format!("the proxy could not connect to {}: {e}", config.addr()), true)
            }
            E::Io(io) => err(format!("the connection to the proxy failed: {io}"), true),
            other => err(format!("SOCKS5 error: {other}"), false),
        }),
    }
}
