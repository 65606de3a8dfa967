//! The connections of QEMU's user network (slirp) that came in through a host port forward, and
//! the state of each towards the guest: HMP `info usernet` through QMP `human-monitor-command`
//! (QMP itself has no command that lists them).
//!
//! Why it matters: a host port forward accepts a TCP connection at once, before the guest is even
//! asked, so the host side of a connection cannot tell "the guest's network is down and QEMU keeps
//! resending the SYN" from "the guest accepted the connection and its server is slow to answer".
//! QEMU's side of the connection knows: `SYN_SENT` in the first case, `ESTABLISHED` in the second.
//!
//! The lines look like this (libslirp's `slirp_connection_info`; for an incoming connection the
//! source is the local address of the accepted socket, i.e. the forward's host address and port,
//! so connections to the same forward cannot be told apart, only counted):
//!
//! ```text
//! Hub -1 (user.0):
//!   Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ
//!   TCP[HOST_FORWARD]  13       127.0.0.1  2342       10.0.2.15    22     0     0
//!   TCP[ESTABLISHED]   28       127.0.0.1  2342       10.0.2.15    22     0     0
//!   TCP[SYN_SENT]      27       127.0.0.1  2342       10.0.2.15    22     0     0
//! ```

use super::qmp::{Qmp, QmpError};

/// The connections through one host port forward, by their state towards the guest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardedConnections {
    /// Accepted by the guest (`ESTABLISHED`): a server in the guest holds them.
    pub established: usize,
    /// Still waiting for the guest's answer to the SYN (`SYN_SENT`).
    pub connecting: usize,
}

/// Counts the connections of `info usernet`'s `text` that came in through the forward of host
/// port `host_port` to guest port `guest_port`.
pub fn parse(text: &str, host_port: u16, guest_port: u16) -> ForwardedConnections {
    let mut n = ForwardedConnections::default();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(state) = fields.next().and_then(|p| p.strip_prefix("TCP[")).and_then(|p| p.strip_suffix(']')) else {
            continue;
        };
        // FD, source address, source port, destination address, destination port
        let rest: Vec<&str> = fields.take(5).collect();
        let [_, _, src_port, _, dst_port] = rest[..] else { continue };
        if src_port.parse() != Ok(host_port) || dst_port.parse() != Ok(guest_port) {
            continue;
        }
        match state {
            "ESTABLISHED" => n.established += 1,
            "SYN_SENT" => n.connecting += 1,
            _ => {}
        }
    }
    n
}

/// Asks QEMU for the connections through the forward of host port `host_port` to guest port
/// `guest_port`.
pub async fn forwarded(qmp: &Qmp, host_port: u16, guest_port: u16) -> Result<ForwardedConnections, QmpError> {
    Ok(parse(&qmp.human_monitor("info usernet").await?, host_port, guest_port))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `info usernet` of QEMU 7.2 (libslirp 4.7) with a forward of 127.0.0.1:2299 to the guest's
    /// port 22 (the HOST_FORWARD, ESTABLISHED and SYN_SENT lines as captured here while the test
    /// guest booted; the others in the same format): one connection accepted by the guest's sshd,
    /// two waiting for the guest's network, one the guest has closed, and connections of the
    /// guest's own.
    const CAPTURED: &str = "Hub -1 (n):\r
  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ\r
  TCP[ESTABLISHED]   28       127.0.0.1  2299       10.0.2.15    22     0     0\r
  TCP[SYN_SENT]      54       127.0.0.1  2299       10.0.2.15    22     0     0\r
  TCP[SYN_SENT]      53       127.0.0.1  2299       10.0.2.15    22     0     0\r
  TCP[CLOSE_WAIT]    52       127.0.0.1  2299       10.0.2.15    22     0     0\r
  TCP[ESTABLISHED]   31       10.0.2.15 41522        10.0.2.2  8080     0     0\r
  TCP[HOST_FORWARD]  13       127.0.0.1  2299       10.0.2.15    22     0     0\r
  UDP[236 sec]       30       10.0.2.15   123       10.0.2.2   123     0     0\r
";

    #[test]
    fn counts_the_connections_of_one_forward_by_state() {
        assert_eq!(parse(CAPTURED, 2299, 22), ForwardedConnections { established: 1, connecting: 2 });
        // another forward, or the same host port to another guest port: none of them
        assert_eq!(parse(CAPTURED, 2300, 22), ForwardedConnections::default());
        assert_eq!(parse(CAPTURED, 2299, 2222), ForwardedConnections::default());
        assert_eq!(parse("", 2299, 22), ForwardedConnections::default());
        assert_eq!(parse("garbage TCP[ESTABLISHED] x", 2299, 22), ForwardedConnections::default());
    }
}
