//! Port forwards over the SSH connection (`ssh_local_tunnels`, `ssh_remote_tunnels`), written
//! `PORT:HOST:HOSTPORT` like OpenSSH's `-L`/`-R` without a bind address.
//!
//! - Local (`-L`): this machine listens on `127.0.0.1:PORT`; each connection becomes a
//!   `direct-tcpip` channel to `HOST:HOSTPORT` as seen from the SSH server (the build VM).
//! - Remote (`-R`): the SSH server listens on its `127.0.0.1:PORT` (`tcpip-forward`); each
//!   connection arrives as a `forwarded-tcpip` channel and is connected to `HOST:HOSTPORT` as seen
//!   from this machine.
//!
//! Packer binds local tunnels on `localhost`; qemu-rs binds `127.0.0.1` (never all interfaces).
//! The forwards live as long as the connection: [`Forwards`] stops the listeners when dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;

/// Which side listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelDirection {
    /// This machine listens, the SSH server connects (`ssh_local_tunnels`).
    Local,
    /// The SSH server listens, this machine connects (`ssh_remote_tunnels`).
    Remote,
}

/// One forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    /// Which side listens.
    pub direction: TunnelDirection,
    /// Port the listening side binds on its 127.0.0.1.
    pub listen_port: u16,
    /// Host the other side connects to (a name or an address; IPv6 without brackets).
    pub forward_host: String,
    /// Port the other side connects to.
    pub forward_port: u16,
}

impl Tunnel {
    /// Parses `PORT:HOST:HOSTPORT` (HOST may be a bracketed IPv6 address, e.g. `8080:[::1]:80`).
    pub fn parse(spec: &str, direction: TunnelDirection) -> Result<Tunnel, String> {
        let format = "write it as PORT:HOST:HOSTPORT, e.g. \"8080:localhost:80\"";
        let Some((listen, forward)) = spec.trim().split_once(':') else {
            return Err(format!("{spec:?} has no ':'; {format}"));
        };
        let listen_port = port(listen).map_err(|e| format!("{spec:?}: the listening port {e}; {format}"))?;
        let (host, hostport) = if let Some(rest) = forward.strip_prefix('[') {
            let Some((host, after)) = rest.split_once(']') else {
                return Err(format!("{spec:?}: the IPv6 address lacks its closing ']'; {format}"));
            };
            let Some(p) = after.strip_prefix(':') else {
                return Err(format!("{spec:?}: no port after the address; {format}"));
            };
            (host, p)
        } else {
            match forward.rsplit_once(':') {
                Some((h, _)) if h.contains(':') => {
                    return Err(format!("{spec:?}: put an IPv6 address in brackets, e.g. 8080:[::1]:80"))
                }
                Some((h, p)) => (h, p),
                None => return Err(format!("{spec:?}: no HOST:HOSTPORT after the listening port; {format}")),
            }
        };
        if host.is_empty() {
            return Err(format!("{spec:?}: the host is empty; {format}"));
        }
        let forward_port = port(hostport).map_err(|e| format!("{spec:?}: the forwarded port {e}; {format}"))?;
        Ok(Tunnel { direction, listen_port, forward_host: host.to_string(), forward_port })
    }
}

impl std::fmt::Display for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = if self.forward_host.contains(':') {
            format!("[{}]", self.forward_host)
        } else {
            self.forward_host.clone()
        };
        write!(f, "{}:{host}:{}", self.listen_port, self.forward_port)
    }
}

fn port(s: &str) -> Result<u16, String> {
    match s.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        Ok(p) => Err(format!("{p} is not between 1 and 65535")),
        Err(_) => Err(format!("{s:?} is not a number")),
    }
}

/// Where the connections of the remote forwards go, by the port the server listens on; read by
/// the connection's handler when the server opens a `forwarded-tcpip` channel.
pub(crate) type RemoteTargets = Arc<Mutex<HashMap<u32, (String, u16)>>>;

/// The running forwards of one connection; dropping it stops their listeners and copies.
#[derive(Default)]
pub(crate) struct Forwards {
    pub(crate) tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Forwards {
    pub(crate) fn push(&self, task: JoinHandle<()>) {
        let mut tasks = super::lock(&self.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// Stops every listener and copy.
    pub(crate) fn abort_all(&self) {
        for t in super::lock(&self.tasks).drain(..) {
            t.abort();
        }
    }
}

impl Drop for Forwards {
    fn drop(&mut self) {
        self.abort_all();
    }
}

/// Copies bytes both ways until both sides are done, then closes both.
pub(crate) async fn pipe<A, B>(mut a: A, mut b: B, what: &str)
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match tokio::io::copy_bidirectional(&mut a, &mut b).await {
        Ok((up, down)) => tracing::debug!("{what}: closed after {up} bytes out, {down} bytes back"),
        Err(e) => tracing::debug!("{what}: ended: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_openssh_form() {
        let t = Tunnel::parse("8080:localhost:80", TunnelDirection::Local).unwrap();
        assert_eq!(
            t,
            Tunnel {
                direction: TunnelDirection::Local,
                listen_port: 8080,
                forward_host: "localhost".into(),
                forward_port: 80
            }
        );
        let t = Tunnel::parse("2222:[::1]:22", TunnelDirection::Remote).unwrap();
        assert_eq!((t.forward_host.as_str(), t.forward_port), ("::1", 22));
        assert_eq!(t.to_string(), "2222:[::1]:22");
        let t = Tunnel::parse("5432:10.0.2.2:5432", TunnelDirection::Local).unwrap();
        assert_eq!(t.forward_host, "10.0.2.2");
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (spec, want) in [
            ("8080", "has no ':'"),
            ("8080:localhost", "no HOST:HOSTPORT"),
            ("x:localhost:80", "listening port \"x\" is not a number"),
            ("0:localhost:80", "0 is not between 1 and 65535"),
            ("8080:localhost:70000", "70000 is not between 1 and 65535"),
            ("8080::80", "the host is empty"),
            ("8080:::1:80", "brackets"),
            ("8080:[::1:80", "closing ']'"),
            ("127.0.0.1:8080:localhost:80", "listening port \"127.0.0.1\" is not a number"),
        ] {
            let err = Tunnel::parse(spec, TunnelDirection::Local).unwrap_err();
            assert!(err.contains(want), "{spec}: {err}");
            assert!(err.contains("PORT:HOST:HOSTPORT") || err.contains("brackets"), "{spec}: {err}");
        }
    }
}
