//! Step: find the guest's address on the bridge (`net_bridge`), as Packer does: the MAC of the NIC
//! on `user.0` (read over QMP) looked up in the host's ARP table (`/proc/net/arp`) on the bridge,
//! complete entries only. Checked every second (Packer: every 10 s) until `ssh_timeout`; QEMU
//! exiting ends the wait at once. Skipped when `ssh_host` is set or there is no SSH communicator.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use packer_sdk::step::{Step, StepContext, StepError};

use crate::config::{CommunicatorType, Config};
use crate::state::BuildState;
use crate::steps::wait_ssh::with_serial_tail;

/// Time between two looks at the ARP table.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// ARP flag of a complete entry (`ATF_COM`).
const ATF_COM: u32 = 0x2;

/// Waits for the guest's address; sets `guest_address`.
pub struct WaitGuestAddress<'a> {
    config: &'a Config,
}

impl<'a> WaitGuestAddress<'a> {
    /// The step for `config`.
    pub fn new(config: &'a Config) -> Self {
        WaitGuestAddress { config }
    }
}

/// The IPv4 address of `mac` on `device` in an ARP table in `/proc/net/arp` format.
pub fn arp_lookup(table: &str, device: &str, mac: &str) -> Option<Ipv4Addr> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[5] != device || !f[3].eq_ignore_ascii_case(mac) {
            return None;
        }
        let flags = u32::from_str_radix(f[2].trim_start_matches("0x"), 16).ok()?;
        (flags & ATF_COM != 0).then(|| f[0].parse().ok()).flatten()
    })
}

#[async_trait]
impl Step<BuildState> for WaitGuestAddress<'_> {
    fn name(&self) -> &'static str {
        "guest address"
    }

    async fn run(&self, ctx: &StepContext, state: &mut BuildState) -> Result<(), StepError> {
        let c = self.config;
        let Some(bridge) = state.bridge.clone() else { return Ok(()) };
        if c.communicator != CommunicatorType::Ssh || !c.ssh_host.is_empty() {
            return Ok(());
        }
        let qemu = state.qemu.as_ref().ok_or_else(|| StepError::failed("QEMU is not running"))?;
        ctx.ui
            .say(&format!(
                "Waiting for the guest address to become available in the {} network bridge...",
                bridge.bridge
            ))
            .await;
        let deadline = tokio::time::Instant::now() + c.ssh_timeout.to_std();
        let mut mac: Option<String> = None;
        let mut last = String::new();
        loop {
            if let Some(status) = qemu.exit_status() {
                return Err(StepError::failed(with_serial_tail(
                    &format!("QEMU exited ({status}) before the guest got an address on {}", bridge.bridge),
                    qemu,
                )));
            }
            if mac.is_none() {
                match qemu.qmp.nic_mac("user.0").await {
                    Ok(Some(m)) => {
                        tracing::info!("guest NIC on user.0 has MAC {m}");
                        mac = Some(m)
                    }
                    Ok(None) => last = "QEMU has no NIC on the network backend user.0 (check qemuargs)".into(),
                    Err(e) => last = format!("cannot read the NIC's MAC over QMP: {e}"),
                }
            }
            if let Some(m) = &mac {
                match tokio::fs::read_to_string(Path::new("/proc/net/arp")).await {
                    Ok(table) => {
                        if let Some(ip) = arp_lookup(&table, &bridge.bridge, m) {
                            ctx.ui.say(&format!("Guest address: {ip}")).await;
                            state.guest_address = Some(IpAddr::V4(ip));
                            return Ok(());
                        }
                        last = format!("MAC {m} is not in the ARP table of {} yet", bridge.bridge);
                    }
                    Err(e) => last = format!("cannot read /proc/net/arp: {e}"),
                }
            }
            tokio::select! {
                _ = ctx.cancel.cancelled() => return Err(StepError::Cancelled),
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(StepError::failed(with_serial_tail(
                        &format!(
                            "the guest got no address on the bridge {} within {} (ssh_timeout): {last}. The guest \
                             must get an IPv4 address on the bridge (e.g. from a DHCP server there) and talk to the \
                             host; or set ssh_host",
                            bridge.bridge, c.ssh_timeout
                        ),
                        qemu,
                    )));
                }
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "IP address       HW type     Flags       HW address            Mask     Device
192.0.2.15       0x1         0x0         52:54:00:12:34:56     *        br0
192.0.2.16       0x1         0x2         52:54:00:12:34:56     *        br1
192.0.2.17       0x1         0x2         52:54:00:12:34:56     *        br0
192.0.2.18       0x1         0x6         52:54:00:ab:cd:ef     *        br0
";

    #[test]
    fn complete_entries_on_the_bridge_only() {
        // the incomplete entry (flags 0x0) and the other bridge are skipped
        assert_eq!(arp_lookup(TABLE, "br0", "52:54:00:12:34:56"), Some(Ipv4Addr::new(192, 0, 2, 17)));
        assert_eq!(arp_lookup(TABLE, "br0", "52:54:00:AB:CD:EF"), Some(Ipv4Addr::new(192, 0, 2, 18)));
        assert_eq!(arp_lookup(TABLE, "br2", "52:54:00:12:34:56"), None);
        assert_eq!(arp_lookup("IP address HW type Flags HW address Mask Device\n", "br0", "x"), None);
    }
}
