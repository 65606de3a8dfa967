//! A blind VNC (RFB 3.3 / 3.7 / 3.8) client that only sends key events, as Packer's VNC boot
//! command driver does: handshake (security None or VNC Authentication), ClientInit with the
//! shared flag, ServerInit, then `KeyEvent` messages. A background task reads and discards
//! everything the server sends so the server never blocks on a full socket.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::driver::{DriverError, KeyDriver};
use super::keys::KeyEvent;

/// How long the whole handshake may take before we give up.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest reason / desktop-name string accepted from a server.
const MAX_STRING: u32 = 64 * 1024;

/// What the server said about itself in ServerInit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInit {
    /// Framebuffer width in pixels.
    pub width: u16,
    /// Framebuffer height in pixels.
    pub height: u16,
    /// The raw 16-byte PIXEL_FORMAT.
    pub pixel_format: [u8; 16],
    /// Desktop name (lossy UTF-8).
    pub name: String,
}

/// The RFB protocol version both sides agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RfbVersion {
    /// RFB 3.3: the server picks the security type.
    V3_3,
    /// RFB 3.7: the client picks; no SecurityResult after None.
    V3_7,
    /// RFB 3.8: the client picks; SecurityResult always, with a reason on failure.
    V3_8,
}

type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// A connected VNC client (see the module docs). Implements [`KeyDriver`].
pub struct VncClient {
    writer: Writer,
    reader: JoinHandle<()>,
    /// Why the connection ended, once the background reader saw it end.
    closed: Arc<Mutex<Option<String>>>,
    version: RfbVersion,
    server: ServerInit,
}

impl std::fmt::Debug for VncClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VncClient").field("version", &self.version).field("server", &self.server).finish()
    }
}

fn io_err(context: &str) -> impl FnOnce(std::io::Error) -> DriverError + '_ {
    move |e| DriverError::io(context, e)
}

async fn read_u8<R: AsyncRead + Unpin>(r: &mut R, what: &str) -> Result<u8, DriverError> {
    r.read_u8().await.map_err(io_err(what))
}

async fn read_u32<R: AsyncRead + Unpin>(r: &mut R, what: &str) -> Result<u32, DriverError> {
    r.read_u32().await.map_err(io_err(what))
}

async fn read_string<R: AsyncRead + Unpin>(r: &mut R, what: &str) -> Result<String, DriverError> {
    let len = read_u32(r, what).await?;
    if len > MAX_STRING {
        return Err(DriverError::Protocol(format!(
            "the VNC server sent a {len}-byte string while {what}; is this really a VNC server?"
        )));
    }
    let mut buf = vec![0; len as usize];
    r.read_exact(&mut buf).await.map_err(io_err(what))?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The VNC Authentication response: the 16-byte challenge DES-encrypted (ECB) with the password
/// (first 8 bytes, zero-padded) as key, each key byte bit-reversed (the VNC quirk).
pub fn vnc_auth_response(password: &str, challenge: &[u8; 16]) -> [u8; 16] {
    use des::cipher::{BlockCipherEncrypt, KeyInit};
    let mut key = [0u8; 8];
    for (k, b) in key.iter_mut().zip(password.as_bytes()) {
        *k = b.reverse_bits();
    }
    let cipher = des::Des::new(&key.into());
    let mut out = *challenge;
    for chunk in out.chunks_exact_mut(8) {
        let mut block = des::cipher::Block::<des::Des>::try_from(&*chunk).unwrap_or_default();
        cipher.encrypt_block(&mut block);
        chunk.copy_from_slice(&block);
    }
    out
}

fn parse_version(buf: &[u8; 12]) -> Result<RfbVersion, DriverError> {
    let bad = || {
        DriverError::Protocol(format!(
            "the VNC server greeted us with {:?}, not an RFB version; check that the port is a VNC server",
            String::from_utf8_lossy(buf)
        ))
    };
    if &buf[..4] != b"RFB " || buf[7] != b'.' || buf[11] != b'\n' {
        return Err(bad());
    }
    let num = |s: &[u8]| std::str::from_utf8(s).ok().and_then(|s| s.parse::<u32>().ok());
    let (major, minor) = (num(&buf[4..7]).ok_or_else(bad)?, num(&buf[8..11]).ok_or_else(bad)?);
    match (major, minor) {
        (3, m) if m >= 8 => Ok(RfbVersion::V3_8),
        (3, 7) => Ok(RfbVersion::V3_7),
        (3, 3..=6) => Ok(RfbVersion::V3_3),
        (m, _) if m > 3 => Ok(RfbVersion::V3_8),
        _ => Err(DriverError::Protocol(format!("unsupported RFB version {major}.{minor} (need 3.3 or later)"))),
    }
}

impl VncClient {
    /// Connects over TCP (`host:port`) and performs the handshake.
    pub async fn connect_tcp(addr: &str, password: Option<&str>) -> Result<Self, DriverError> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| DriverError::io(format!("connecting to the VNC server at {addr}"), e))?;
        stream.set_nodelay(true).map_err(io_err("setting TCP_NODELAY"))?;
        Self::handshake(stream, password).await
    }

    /// Connects to a VNC server listening on a Unix socket (QEMU `-vnc unix:PATH`).
    pub async fn connect_unix(path: &Path, password: Option<&str>) -> Result<Self, DriverError> {
        let stream = tokio::net::UnixStream::connect(path)
            .await
            .map_err(|e| DriverError::io(format!("connecting to the VNC socket {}", path.display()), e))?;
        Self::handshake(stream, password).await
    }

    /// Performs the RFB handshake on an established stream (within [`HANDSHAKE_TIMEOUT`]) and
    /// starts the background reader. With `password`, VNC Authentication is used when offered;
    /// without, security type None is required.
    pub async fn handshake<S>(stream: S, password: Option<&str>) -> Result<Self, DriverError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, Self::handshake_inner(stream, password)).await {
            Ok(r) => r,
            Err(_) => Err(DriverError::Protocol(format!(
                "the VNC handshake did not finish within {HANDSHAKE_TIMEOUT:?}; is the port a VNC server?"
            ))),
        }
    }

    async fn handshake_inner<S>(stream: S, password: Option<&str>) -> Result<Self, DriverError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (mut r, mut w) = tokio::io::split(stream);
        let mut greeting = [0u8; 12];
        r.read_exact(&mut greeting).await.map_err(io_err("reading the VNC server's protocol version"))?;
        let version = parse_version(&greeting)?;
        let reply: &[u8; 12] = match version {
            RfbVersion::V3_3 => b"RFB 003.003\n",
            RfbVersion::V3_7 => b"RFB 003.007\n",
            RfbVersion::V3_8 => b"RFB 003.008\n",
        };
        w.write_all(reply).await.map_err(io_err("sending our protocol version"))?;

        // Security type: chosen by the server in 3.3, by us from the offered list otherwise.
        let security = if version == RfbVersion::V3_3 {
            match read_u32(&mut r, "reading the security type").await? {
                0 => {
                    let reason = read_string(&mut r, "reading the connection failure reason").await?;
                    return Err(DriverError::Protocol(format!("the VNC server refused the connection: {reason}")));
                }
                t => u8::try_from(t).unwrap_or(u8::MAX),
            }
        } else {
            let count = read_u8(&mut r, "reading the security types").await?;
            if count == 0 {
                let reason = read_string(&mut r, "reading the connection failure reason").await?;
                return Err(DriverError::Protocol(format!("the VNC server refused the connection: {reason}")));
            }
            let mut types = vec![0u8; count as usize];
            r.read_exact(&mut types).await.map_err(io_err("reading the security types"))?;
            let chosen = match password {
                Some(_) if types.contains(&2) => 2,
                _ if types.contains(&1) => 1,
                None if types.contains(&2) => {
                    return Err(DriverError::Protocol(
                        "the VNC server requires a password (VNC Authentication) but none was given; set the \
                         VNC password or start the server without one"
                            .into(),
                    ))
                }
                _ => {
                    return Err(DriverError::Protocol(format!(
                        "the VNC server offers only security types {types:?}; supported are 1 (None) and 2 (VNC \
                         Authentication): disable TLS/SASL on the VNC server"
                    )))
                }
            };
            w.write_all(&[chosen]).await.map_err(io_err("sending the chosen security type"))?;
            chosen
        };
        match security {
            1 => {}
            2 => {
                let Some(password) = password else {
                    return Err(DriverError::Protocol(
                        "the VNC server requires a password (VNC Authentication) but none was given".into(),
                    ));
                };
                let mut challenge = [0u8; 16];
                r.read_exact(&mut challenge).await.map_err(io_err("reading the VNC authentication challenge"))?;
                let response = vnc_auth_response(password, &challenge);
                w.write_all(&response).await.map_err(io_err("sending the VNC authentication response"))?;
            }
            t => {
                return Err(DriverError::Protocol(format!(
                    "the VNC server demands security type {t}; supported are 1 (None) and 2 (VNC Authentication)"
                )))
            }
        }
        if version == RfbVersion::V3_8 || security == 2 {
            match read_u32(&mut r, "reading the security result").await? {
                0 => {}
                _ => {
                    let reason = if version == RfbVersion::V3_8 {
                        read_string(&mut r, "reading the security failure reason").await?
                    } else {
                        "no reason given".into()
                    };
                    let hint = if security == 2 { "; check the VNC password" } else { "" };
                    return Err(DriverError::Protocol(format!("VNC authentication failed: {reason}{hint}")));
                }
            }
        }
        // ClientInit, shared: other viewers may stay connected.
        w.write_all(&[1]).await.map_err(io_err("sending ClientInit"))?;
        w.flush().await.map_err(io_err("sending ClientInit"))?;
        let width = r.read_u16().await.map_err(io_err("reading ServerInit"))?;
        let height = r.read_u16().await.map_err(io_err("reading ServerInit"))?;
        let mut pixel_format = [0u8; 16];
        r.read_exact(&mut pixel_format).await.map_err(io_err("reading ServerInit"))?;
        let name = read_string(&mut r, "reading the desktop name").await?;
        let server = ServerInit { width, height, pixel_format, name };
        tracing::debug!(?version, ?server, "VNC handshake done");

        let closed = Arc::new(Mutex::new(None));
        let closed2 = Arc::clone(&closed);
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let reason = loop {
                match r.read(&mut buf).await {
                    Ok(0) => break "the VNC server closed the connection".to_string(),
                    Ok(_) => {}
                    Err(e) => break format!("reading from the VNC server failed: {e}"),
                }
            };
            if let Ok(mut c) = closed2.lock() {
                *c = Some(reason);
            }
        });
        Ok(VncClient { writer: Box::new(w), reader, closed, version, server })
    }

    /// The protocol version in use.
    pub fn version(&self) -> RfbVersion {
        self.version
    }

    /// What the server sent in ServerInit.
    pub fn server_init(&self) -> &ServerInit {
        &self.server
    }

    /// Why the connection ended, if the server closed it.
    pub fn closed_reason(&self) -> Option<String> {
        self.closed.lock().ok().and_then(|c| c.clone())
    }

    /// Sends one RFB KeyEvent message (type 4) for an X11 keysym.
    pub async fn key_event(&mut self, keysym: u32, down: bool) -> Result<(), DriverError> {
        if let Some(reason) = self.closed_reason() {
            return Err(DriverError::Closed(reason));
        }
        let k = keysym.to_be_bytes();
        let msg = [4, u8::from(down), 0, 0, k[0], k[1], k[2], k[3]];
        self.writer.write_all(&msg).await.map_err(io_err("sending a key event to the VNC server"))?;
        self.writer.flush().await.map_err(io_err("sending a key event to the VNC server"))
    }

    /// Closes the connection.
    pub async fn close(mut self) {
        let _ = self.writer.shutdown().await;
        self.reader.abort();
    }
}

impl Drop for VncClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

#[async_trait]
impl KeyDriver for VncClient {
    async fn send(&mut self, ev: KeyEvent) -> Result<(), DriverError> {
        match ev {
            KeyEvent::Down(k) => self.key_event(k.keysym(), true).await,
            KeyEvent::Up(k) => self.key_event(k.keysym(), false).await,
            KeyEvent::Wait(d) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
        }
    }

    async fn flush(&mut self) -> Result<(), DriverError> {
        self.writer.flush().await.map_err(io_err("flushing the VNC connection"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version(b"RFB 003.008\n").unwrap(), RfbVersion::V3_8);
        assert_eq!(parse_version(b"RFB 003.889\n").unwrap(), RfbVersion::V3_8);
        assert_eq!(parse_version(b"RFB 003.007\n").unwrap(), RfbVersion::V3_7);
        assert_eq!(parse_version(b"RFB 003.003\n").unwrap(), RfbVersion::V3_3);
        assert_eq!(parse_version(b"RFB 004.001\n").unwrap(), RfbVersion::V3_8);
        assert!(parse_version(b"RFB 002.000\n").is_err());
        assert!(parse_version(b"SSH-2.0-Open").is_err());
    }

    #[test]
    fn vnc_auth_response_is_des_with_bit_reversed_key() {
        // Known answer: DES key 0x0123456789ABCDEF, plaintext "Now is t" → 3FA40E8A984D4815
        // (FIPS 81 example). DES ignores each byte's lowest (parity) bit, so the key below is the
        // same key; the password is its bytes bit-reversed.
        let key = [0x00u8, 0x22, 0x44, 0x66, 0x88, 0xAA, 0xCC, 0xEE];
        let password: String = key.iter().map(|b| b.reverse_bits() as char).collect();
        // Only valid if all reversed bytes are ASCII (one UTF-8 byte each).
        assert!(password.is_ascii());
        let mut challenge = [0u8; 16];
        challenge[..8].copy_from_slice(b"Now is t");
        challenge[8..].copy_from_slice(b"Now is t");
        let r = vnc_auth_response(&password, &challenge);
        assert_eq!(hex::encode(&r[..8]), "3fa40e8a984d4815");
        assert_eq!(r[..8], r[8..]);
    }
}
