//! Step: choose the accelerator and start QEMU (QMP, VNC, serial console, SSH port forward).
//!
//! Ports without races: QEMU binds them itself. VNC takes the first free display of
//! `vnc_port_min..=vnc_port_max` (`-vnc …,to=`), read back over QMP. The SSH forward takes a
//! random port of `host_port_min..=host_port_max`; if another build holds it, QEMU fails to
//! start and is started again with another port. Nothing is released between the check and use.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use packer_sdk::step::{Step, StepContext, StepError};
use rand::Rng;

use crate::config::{CommunicatorType, Config};
use crate::driver::argv::{self, LaunchInputs, PortForward};
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

/// A random port of `lo..=hi`.
fn random_port(lo: u16, hi: u16) -> u16 {
    rand::thread_rng().gen_range(lo..=hi.max(lo))
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
        let serial_log = PathBuf::from(&c.serial_log);
        if let Some(dir) = serial_log.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = tokio::fs::create_dir_all(dir).await;
        }
        let vnc_lo = c.vnc_port_min.saturating_sub(5900);
        let vnc_hi = c.vnc_port_max.saturating_sub(5900).max(vnc_lo);
        let ssh = c.communicator == CommunicatorType::Ssh;
        let mut last_error = None;
        for attempt in 0..PORT_ATTEMPTS {
            let host_port = if ssh { random_port(c.host_port_min, c.host_port_max) } else { 0 };
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
                install_iso: if c.disk_image { None } else { state.source_path.clone() },
                cd_iso: state.cd_path.as_ref().map(|p| p.to_path_buf()),
                qmp_socket: qmp_socket.clone(),
                vnc: Some((c.vnc_bind_address.clone(), vnc_lo, vnc_hi)),
                ssh_forward: ssh.then(|| PortForward {
                    bind: if c.ssh_host.is_empty() || c.ssh_host == "127.0.0.1" {
                        "127.0.0.1".into()
                    } else {
                        String::new()
                    },
                    host_port,
                    guest_port: c.ssh_port,
                }),
                serial_log: serial_log.clone(),
                efi: state.efi.clone(),
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
                    state.vnc_port = q.qmp.vnc_port().await.ok().flatten();
                    if let Some(p) = state.vnc_port {
                        ctx.ui.message(&format!("VNC for debugging: vnc://{}:{p}", c.vnc_bind_address)).await;
                    }
                    if ssh {
                        state.ssh_host_port = Some(host_port);
                        tracing::info!("SSH forward 127.0.0.1:{host_port} -> guest port {}", c.ssh_port);
                    }
                    ctx.ui.message(&format!("Serial console: {}", serial_log.display())).await;
                    state.qemu = Some(q);
                    return Ok(());
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
        let sock = qmp_socket_path(&self.config.qmp_socket_path);
        let _ = tokio::fs::remove_file(&sock).await;
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
