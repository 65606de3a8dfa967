//! Step: prepare bridge networking (`net_bridge`): the bridge's IPv4 address becomes
//! `{{ .HTTPIP }}` (and the HTTP server's address unless `http_bind_address` is set), and the NIC
//! gets a random MAC for this build.

use std::net::Ipv4Addr;
use std::path::Path;

use async_trait::async_trait;
use packer_sdk::step::{Step, StepContext, StepError};
use rand::Rng;

use crate::config::Config;
use crate::driver::argv::BridgeNet;
use crate::state::BuildState;

/// Checks the bridge and records it (`bridge`, `http_ip`).
pub struct PrepareBridge<'a> {
    config: &'a Config,
}

impl<'a> PrepareBridge<'a> {
    /// The step for `config`.
    pub fn new(config: &'a Config) -> Self {
        PrepareBridge { config }
    }
}

/// The first IPv4 address of interface `name`, as Packer picks it.
pub fn interface_ipv4(name: &str) -> Result<Ipv4Addr, String> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| format!("cannot list the network interfaces: {e}"))?;
    let mut seen = false;
    for a in addrs.filter(|a| a.interface_name == name) {
        seen = true;
        if let Some(sin) = a.address.as_ref().and_then(|s| s.as_sockaddr_in()) {
            return Ok(sin.ip());
        }
    }
    if seen {
        Err(format!(
            "the bridge {name} has no IPv4 address: give it one (e.g. ip addr add 192.168.100.1/24 dev {name}); the \
             guest reaches the HTTP server there"
        ))
    } else {
        Err(format!("there is no network interface {name}: create the bridge or fix net_bridge"))
    }
}

/// A random locally administered MAC in QEMU's 52:54:00 range.
pub fn random_mac() -> String {
    let b: [u8; 3] = rand::thread_rng().gen();
    format!("52:54:00:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

#[async_trait]
impl Step<BuildState> for PrepareBridge<'_> {
    fn name(&self) -> &'static str {
        "bridge network"
    }

    async fn run(&self, ctx: &StepContext, state: &mut BuildState) -> Result<(), StepError> {
        let Some(bridge) = self.config.net_bridge.as_deref().filter(|b| !b.is_empty()) else { return Ok(()) };
        let ip = interface_ipv4(bridge).map_err(|e| StepError::failed(format!("net_bridge: {e}")))?;
        if !Path::new("/sys/class/net").join(bridge).join("bridge").is_dir() {
            return Err(StepError::failed(format!(
                "net_bridge: {bridge} is not a bridge (no /sys/class/net/{bridge}/bridge); create one with \
                 `ip link add {bridge} type bridge` or name an existing bridge"
            )));
        }
        let mac = random_mac();
        ctx.ui.say(&format!("Using bridge {bridge} (host address {ip}, guest NIC {mac})")).await;
        state.http_ip = ip.to_string();
        state.bridge = Some(BridgeNet { bridge: bridge.to_string(), mac });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_missing_interfaces() {
        assert_eq!(interface_ipv4("lo").unwrap(), Ipv4Addr::LOCALHOST);
        let e = interface_ipv4("qrs-nonexist0").unwrap_err();
        assert!(e.contains("there is no network interface qrs-nonexist0"), "{e}");
    }

    #[test]
    fn macs_are_random_and_local() {
        let (a, b) = (random_mac(), random_mac());
        assert!(a.starts_with("52:54:00:") && a.len() == 17, "{a}");
        assert_ne!(a, b);
    }
}
