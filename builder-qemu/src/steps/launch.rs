//! Step: choose the accelerator and start QEMU (QMP, VNC, serial console, SSH port forward).
//!
//! Ports without races: QEMU binds them itself. VNC takes the first free display of
//! `vnc_port_min..=vnc_port_max` (`-vnc …,to=`), read back over QMP. The SSH forward takes a
//! random port of `host_port_min..=host_port_max`; if another build holds it, QEMU fails to
//! start and is started again with another port. Nothing is released between the check and use.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use packer_sdk::config::Secret;
use packer_sdk::step::{Step, StepContext, StepError};
use rand::Rng;

use crate::config::{CommunicatorType, Config};
use crate::driver::argv::{self, LaunchInputs, PortForward, VtpmWiring};
use crate::driver::process;
use crate::driver::qemu::{LaunchError, QemuProcess};
use crate::state::BuildState;

/// How many ports are tried for the SSH forward before giving up.
const PORT_ATTEMPTS: usize = 12;

/// Starts QEMU; sets `accel`, `qemu`, `vnc_port`, `ssh_host_port`.
pub struct LaunchQemu<'a> {
    config: &'a Config,
}

impl<'a> LaunchQemu<'a> {
    /// The step for `config`.
    pub fn new(config: &'a Config) -> Self {
        LaunchQemu { config }
    }
}

/// A unix socket path must fit in 108 bytes: use the configured path when it does, else a
/// short one in the temp directory.
fn qmp_socket_path(configured: &str) -> PathBuf {
    if configured.len() < 100 {
        return PathBuf::from(configured);
    }
    std::env::temp_dir().join(format!("qemu-rs-{}-{}.qmp", std::process::id(), rand::thread_rng().gen::<u32>()))
}

/// A fresh path for QEMU's `-D` log file, in the temporary directory.
fn trace_log_path() -> PathBuf {
    std::env::temp_dir().join(format!("qemu-rs-{}-{}.trace", std::process::id(), rand::thread_rng().gen::<u32>()))
}

/// A random port of `lo..=hi`.
fn random_port(lo: u16, hi: u16) -> u16 {
    rand::thread_rng().gen_range(lo..=hi.max(lo))
}

/// How SSH reaches the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardPlan {
    /// No port forward: no SSH communicator, or `net_bridge`.
    None,
    /// `skip_nat_mapping`: host port `ssh_port` to the guest's `ssh_port`, as Packer does.
    Fixed(u16),
    /// A random free port of `host_port_min..=host_port_max`.
    Random,
}

/// The port forward plan of `c` (`bridged`: the NIC is on `net_bridge`).
pub fn forward_plan(c: &Config, bridged: bool) -> ForwardPlan {
    if c.communicator != CommunicatorType::Ssh || bridged {
        ForwardPlan::None
    } else if c.skip_nat_mapping == Some(true) {
        ForwardPlan::Fixed(c.ssh_port)
    } else {
        ForwardPlan::Random
    }
}

/// The forward of host port `host_port` to the guest's `ssh_port`, on loopback unless `ssh_host`
/// names another address.
pub fn port_forward(c: &Config, host_port: u16) -> PortForward {
    let bind = if c.ssh_host.is_empty() || c.ssh_host == "127.0.0.1" { "127.0.0.1" } else { "" };
    PortForward { bind: bind.to_string(), host_port, guest_port: c.ssh_port }
}

fn bridge_helper_failed(e: &LaunchError) -> bool {
    matches!(e, LaunchError::Exited { stderr, .. } if stderr.contains("bridge helper") || stderr.contains("bridge.conf") || stderr.contains("acl"))
}

/// The characters of a random VNC password: Packer's alphabet (without `7`).
pub const VNC_PASSWORD_ALPHABET: &[u8] = b"012345689abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// The VNC password of the build: `vnc_password`, else 8 random characters, when
/// `vnc_use_password` is set.
pub fn vnc_password(c: &Config) -> Option<Secret> {
    if c.vnc_use_password != Some(true) {
        return None;
    }
    if let Some(p) = c.vnc_password.as_ref().filter(|p| !p.is_empty()) {
        return Some(p.clone());
    }
    let mut rng = rand::thread_rng();
    let pw: String =
        (0..8).map(|_| VNC_PASSWORD_ALPHABET[rng.gen_range(0..VNC_PASSWORD_ALPHABET.len())] as char).collect();
    Some(Secret::new(pw))
}

fn port_forward_failed(e: &LaunchError) -> bool {
    matches!(e, LaunchError::Exited { stderr, .. } if stderr.contains("host forwarding") || stderr.contains("hostfwd"))
}

#[async_trait]
impl Step<BuildState> for LaunchQemu<'_> {
    fn name(&self) -> &'static str {
        "launch qemu"
    }

    async fn run(&self, ctx: &StepContext, state: &mut BuildState) -> Result<(), StepError> {
        let c = self.config;
        let (acc, warning) = super::accel::take_verdict(c, ctx, state).await?;
        if let Some(w) = warning {
            ctx.ui.error(&format!("Warning: {w}")).await;
        }
        state.accel = Some(acc);
        let qmp_socket = qmp_socket_path(&c.qmp_socket_path);
        state.qmp_socket = Some(packer_sdk::janitor::guard(&qmp_socket));
        let serial_log = PathBuf::from(&c.serial_log);
        // QEMU's log file for the trace events of typing with feedback: only when there is
        // something to type with the builder's own pacing (a user interval types blind)
        if !c.boot_steps().is_empty() && state.trace_log.is_none() {
            state.trace_log = Some(packer_sdk::janitor::guard(&trace_log_path()));
        }
        if let Some(dir) = serial_log.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = tokio::fs::create_dir_all(dir).await;
        }
        let vnc_lo = c.vnc_port_min.saturating_sub(5900);
        let vnc_hi = c.vnc_port_max.saturating_sub(5900).max(vnc_lo);
        let vnc_enabled = c.disable_vnc != Some(true);
        let vnc_password = vnc_password(c);
        let plan = forward_plan(c, state.bridge.is_some());
        let ssh = plan != ForwardPlan::None;
        let fixed_port = matches!(plan, ForwardPlan::Fixed(_));
        let mut last_error = None;
        for attempt in 0..PORT_ATTEMPTS {
            let host_port = match plan {
                ForwardPlan::None => 0,
                ForwardPlan::Fixed(p) => p,
                ForwardPlan::Random => random_port(c.host_port_min, c.host_port_max),
            };
            let mut template_vars: BTreeMap<String, String> = BTreeMap::new();
            template_vars.insert("HTTPIP".into(), state.http_ip.clone());
            template_vars.insert("HTTPPort".into(), state.http_port.to_string());
            template_vars.insert("HTTPDir".into(), c.http_directory.clone());
            template_vars.insert("OutputDir".into(), c.output_directory.clone());
            template_vars.insert("Name".into(), c.vm_name.clone());
            template_vars.insert("SSHHostPort".into(), host_port.to_string());
            let inputs = LaunchInputs {
                accel: acc,
                disks: state.disk_paths.clone(),
                copy_on_read: state.main_disk_copy_on_read,
                install_iso: if c.disk_image { None } else { state.source_path.clone() },
                cd_iso: state.cd_path.as_ref().map(|p| p.to_path_buf()),
                qmp_socket: qmp_socket.clone(),
                vnc: vnc_enabled.then(|| (c.vnc_bind_address.clone(), vnc_lo, vnc_hi)),
                ssh_forward: ssh.then(|| port_forward(c, host_port)),
                bridge: state.bridge.clone(),
                vnc_password: vnc_enabled && vnc_password.is_some(),
                floppy: state.floppy_path.as_ref().map(|p| p.to_path_buf()),
                vtpm: state.vtpm.as_ref().map(|t| VtpmWiring {
                    socket: t.socket().to_path_buf(),
                    device: c.tpm_device_type.clone().unwrap_or_else(|| "tpm-tis".into()),
                }),
                serial_log: serial_log.clone(),
                trace_log: state.trace_log.as_ref().map(|g| g.path().to_path_buf()),
                efi: state.efi.clone(),
                incoming: state.warm_restore().is_some(),
                template_vars,
            };
            let argv = argv::build(c, &inputs).map_err(|e| StepError::failed(e.to_string()))?;
            tracing::info!("Executing {}", argv::display(&c.qemu_binary, &argv));
            if attempt == 0 {
                ctx.ui.say(&format!("Starting QEMU ({})...", acc.qemu_name().to_uppercase())).await;
            }
            let launched = tokio::select! {
                r = QemuProcess::launch(&c.qemu_binary, &argv, &qmp_socket, &serial_log) => r,
                _ = ctx.cancel.cancelled() => return Err(StepError::Cancelled),
            };
            match launched {
                Ok(q) => {
                    let vnc_port = q.qmp.vnc_port().await.ok().flatten();
                    if let (Some(p), Some(pw)) = (vnc_port, vnc_password.as_ref().filter(|_| vnc_enabled)) {
                        // right after QMP connects, before anything is typed; the value is never logged
                        if let Err(e) = q.qmp.change_vnc_password(pw.expose()).await {
                            state.qemu = Some(q);
                            return Err(StepError::failed(format!("cannot set the VNC password over QMP: {e}")));
                        }
                        // Packer shows the password; qemu-rs only a generated one (the user's own
                        // vnc_password is a secret the user knows, kept out of UI and logs)
                        let given = c.vnc_password.as_ref().is_some_and(|p| !p.is_empty());
                        let with = if given {
                            "with your vnc_password".to_string()
                        } else {
                            format!("with the generated password: {}", pw.expose())
                        };
                        ctx.ui.message(&format!("VNC for debugging: vnc://{}:{p} {with}", c.vnc_bind_address)).await;
                        state.vnc_password = Some(pw.clone());
                    } else if let Some(p) = vnc_port {
                        ctx.ui.message(&format!("VNC for debugging: vnc://{}:{p}", c.vnc_bind_address)).await;
                    }
                    state.vnc_port = vnc_port;
                    if ssh {
                        state.ssh_host_port = Some(host_port);
                        tracing::info!("SSH forward 127.0.0.1:{host_port} -> guest port {}", c.ssh_port);
                    }
                    ctx.ui.message(&format!("Serial console: {}", serial_log.display())).await;
                    state.qemu = Some(q);
                    return Ok(());
                }
                Err(e) if ssh && fixed_port && port_forward_failed(&e) => {
                    return Err(StepError::failed(format!(
                        "skip_nat_mapping: QEMU cannot forward host port {host_port} (ssh_port) to the guest, probably \
                         because it is in use: {e}; choose another ssh_port, or replace -netdev in qemuargs"
                    )));
                }
                Err(e) if state.bridge.is_some() && bridge_helper_failed(&e) => {
                    return Err(StepError::failed(format!(
                        "net_bridge: QEMU could not attach to the bridge {}: {e}\nqemu-bridge-helper must be allowed to \
                         use it: add `allow {}` to /etc/qemu/bridge.conf, and the helper must run as root (setuid, or \
                         Packer run as root)",
                        c.net_bridge.as_deref().unwrap_or_default(),
                        c.net_bridge.as_deref().unwrap_or_default()
                    )));
                }
                Err(e) if ssh && port_forward_failed(&e) => {
                    tracing::info!("SSH forward port {host_port} is taken, trying another: {e}");
                    last_error = Some(e);
                }
                Err(e) => return Err(StepError::failed(e.to_string())),
            }
        }
        Err(StepError::failed(format!(
            "no free port for the SSH forward in host_port_min..host_port_max ({}..{}) after {PORT_ATTEMPTS} tries: {}",
            c.host_port_min,
            c.host_port_max,
            last_error.map(|e| e.to_string()).unwrap_or_default()
        )))
    }

    async fn cleanup(&self, _ctx: &StepContext, state: &mut BuildState, _outcome: &Result<(), StepError>) {
        if let Some(q) = state.qemu.take() {
            q.kill().await;
        }
        if let Some(sock) = state.qmp_socket.take() {
            let _ = tokio::fs::remove_file(sock.path()).await;
        }
        if let Some(log) = state.trace_log.take() {
            let _ = tokio::fs::remove_file(log.path()).await;
        }
    }
}

/// Checks that `binary` can run at all (`-version`), for a clear error before any other work.
pub async fn check_binary(binary: &str) -> Result<String, String> {
    let out =
        process::command(binary).arg("-version").output().await.map_err(|e| {
            format!("cannot run qemu_binary {binary:?}: {e}; install qemu-system-x86 or set qemu_binary")
        })?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_nat_mapping_forwards_ssh_port_and_a_bridge_forwards_nothing() {
        let mut c = Config { ssh_port: 2200, ssh_host: "127.0.0.1".into(), ..Default::default() };
        assert_eq!(forward_plan(&c, false), ForwardPlan::Random);
        assert_eq!(forward_plan(&c, true), ForwardPlan::None);
        c.skip_nat_mapping = Some(true);
        assert_eq!(forward_plan(&c, false), ForwardPlan::Fixed(2200));
        assert_eq!(forward_plan(&c, true), ForwardPlan::None);
        assert_eq!(port_forward(&c, 2200), PortForward { bind: "127.0.0.1".into(), host_port: 2200, guest_port: 2200 });
        c.communicator = CommunicatorType::None;
        assert_eq!(forward_plan(&c, false), ForwardPlan::None);
    }

    #[test]
    fn vnc_password_only_with_vnc_use_password() {
        let mut c = Config { vnc_password: Some(Secret::new("fixed")), ..Default::default() };
        assert!(vnc_password(&c).is_none(), "vnc_password alone is ignored, as in Packer");
        c.vnc_use_password = Some(true);
        assert_eq!(vnc_password(&c).unwrap().expose(), "fixed");
        c.vnc_password = None;
        let a = vnc_password(&c).unwrap();
        let b = vnc_password(&c).unwrap();
        assert_eq!(a.expose().len(), 8);
        assert!(a.expose().bytes().all(|ch| VNC_PASSWORD_ALPHABET.contains(&ch)), "{}", a.expose());
        assert!(!VNC_PASSWORD_ALPHABET.contains(&b'7'));
        assert_ne!(a.expose(), b.expose(), "random per build");
        assert!(!format!("{a:?}").contains(a.expose()), "the password never shows in Debug output");
    }
}
