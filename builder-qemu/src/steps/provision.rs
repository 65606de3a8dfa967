//! Step: run every provisioner of the build through Packer's hook, with our communicator.

use std::sync::Arc;

use async_trait::async_trait;
use packer_sdk::communicator::Communicator;
use packer_sdk::component::Hook;
use packer_sdk::step::{Step, StepContext, StepError};
use serde_json::{json, Map, Value};

use crate::config::{CommunicatorType, Config};
use crate::driver::qemu::QemuProcess;
use crate::state::BuildState;
use crate::steps::wait_ssh::with_serial_tail;

/// Calls `Hook.Run("packer_provision")`; sets `generated_data`.
pub struct Provision<'a> {
    config: &'a Config,
    hook: Arc<dyn Hook>,
}

impl<'a> Provision<'a> {
    /// The step for `config`, running provisioners through `hook`.
    pub fn new(config: &'a Config, hook: Arc<dyn Hook>) -> Self {
        Provision { config, hook }
    }
}

/// The generated data Packer's SDK publishes (`build.*` in HCL2, `{{ build `X` }}` in JSON).
pub fn generated_data(c: &Config, state: &BuildState) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("ID".into(), json!(c.vm_name));
    m.insert("PackerRunUUID".into(), json!(std::env::var("PACKER_RUN_UUID").unwrap_or_default()));
    m.insert("PackerHTTPIP".into(), json!(state.http_ip));
    m.insert("PackerHTTPPort".into(), json!(state.http_port.to_string()));
    m.insert("PackerHTTPAddr".into(), json!(format!("{}:{}", state.http_ip, state.http_port)));
    if c.communicator == CommunicatorType::Ssh {
        let host = if c.ssh_host.is_empty() { "127.0.0.1".to_string() } else { c.ssh_host.clone() };
        m.insert("Host".into(), json!(host));
        m.insert("Port".into(), json!(state.ssh_host_port.unwrap_or(c.ssh_port)));
        m.insert("User".into(), json!(c.ssh_username));
        m.insert("Password".into(), json!(c.ssh_password.expose()));
        m.insert("ConnType".into(), json!("ssh"));
        let key = state.ssh_key.as_ref();
        m.insert("SSHPublicKey".into(), json!(state.ssh_public_key_line()));
        m.insert("SSHPrivateKey".into(), json!(key.map(|k| k.private_key.clone()).unwrap_or_default()));
        m.insert("SSHPrivateKeyFile".into(), json!(c.ssh_private_key_file));
        m.insert("SSHAgentAuth".into(), json!(false));
        m.insert("WinRMPassword".into(), json!(""));
    }
    m
}

#[async_trait]
impl Step<BuildState> for Provision<'_> {
    fn name(&self) -> &'static str {
        "provision"
    }

    async fn run(&self, ctx: &StepContext, state: &mut BuildState) -> Result<(), StepError> {
        let data = generated_data(self.config, state);
        state.generated_data = data.clone();
        let comm: Option<Arc<dyn Communicator>> = state.comm.clone().map(|c| c as Arc<dyn Communicator>);
        ctx.ui.say("Provisioning with the build's provisioners...").await;
        let result =
            self.hook.run("packer_provision", ctx.ui.clone(), comm, Value::Object(data), ctx.cancel.clone()).await;
        match result {
            Ok(()) => Ok(()),
            Err(_) if ctx.cancel.is_cancelled() => Err(StepError::Cancelled),
            Err(e) => Err(StepError::failed(match &state.qemu {
                Some(qemu) => explain_failure(&e.to_string(), qemu).await,
                None => e.to_string(),
            })),
        }
    }
}

/// How long a failed provisioner waits for QEMU's exit to be noticed: a killed QEMU closes the SSH
/// connection as it dies, so the provisioner may fail a moment before the exit is reaped.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// A provisioner's failure, explained by QEMU's exit (with the serial console's tail) when QEMU
/// died under it.
async fn explain_failure(error: &str, qemu: &QemuProcess) -> String {
    if !qemu.wait_timeout(EXIT_GRACE).await {
        return error.to_string();
    }
    let status = qemu.exit_status().unwrap_or_default();
    with_serial_tail(&format!("QEMU exited ({status}) during provisioning: {error}"), qemu)
}
