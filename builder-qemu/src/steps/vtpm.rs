//! Step: start the software TPM (`vtpm`) that QEMU's emulated TPM talks to.

use async_trait::async_trait;
use packer_sdk::step::{Step, StepContext, StepError};

use crate::config::Config;
use crate::driver::swtpm::{Swtpm, TpmVersion};
use crate::state::BuildState;

/// Starts `swtpm` with its state in a temp directory; the cleanup stops it and removes the state.
pub struct StartVtpm<'a> {
    config: &'a Config,
}

impl<'a> StartVtpm<'a> {
    /// The step for `config`.
    pub fn new(config: &'a Config) -> Self {
        StartVtpm { config }
    }
}

#[async_trait]
impl Step<BuildState> for StartVtpm<'_> {
    fn name(&self) -> &'static str {
        "vtpm"
    }

    async fn run(&self, ctx: &StepContext, state: &mut BuildState) -> Result<(), StepError> {
        let c = self.config;
        if c.vtpm != Some(true) {
            return Ok(());
        }
        let version = if c.use_tpm1 == Some(true) { TpmVersion::V1_2 } else { TpmVersion::V2 };
        ctx.ui
            .say(&format!(
                "Starting the software TPM ({}) for vtpm...",
                if version == TpmVersion::V2 { "2.0" } else { "1.2" }
            ))
            .await;
        let temp_dir = std::env::temp_dir();
        let started = tokio::select! {
            r = Swtpm::start("swtpm", &temp_dir, version) => r,
            _ = ctx.cancel.cancelled() => return Err(StepError::Cancelled),
        };
        state.vtpm = Some(started.map_err(|e| StepError::failed(e.to_string()))?);
        Ok(())
    }

    async fn cleanup(&self, _ctx: &StepContext, state: &mut BuildState, _outcome: &Result<(), StepError>) {
        if let Some(t) = state.vtpm.take() {
            t.stop().await;
        }
    }
}
