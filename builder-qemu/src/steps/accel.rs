//! Step: start choosing the accelerator while the other steps work.
//!
//! With `accelerator = "auto"` (the default) or `"kvm"`, qemu-rs proves that KVM really runs a
//! guest before using it ([`crate::driver::accel`]). On a host whose KVM hangs that proof takes
//! seconds, so it runs in the background from the first step on, beside the download, the disk and
//! the seeds, and [`super::launch::LaunchQemu`] waits for its verdict only when it needs it. The
//! verdict is also remembered per host boot, so most builds do not probe at all.

use std::path::PathBuf;

use async_trait::async_trait;
use packer_sdk::step::{Step, StepContext, StepError};

use crate::config::Config;
use crate::driver::accel;
use crate::state::{AccelProbe, BuildState};

/// Starts the accelerator choice in the background; sets `accel_probe`.
pub struct StartAcceleratorProbe<'a> {
    config: &'a Config,
}

impl<'a> StartAcceleratorProbe<'a> {
    /// The step for `config`.
    pub fn new(config: &'a Config) -> Self {
        StartAcceleratorProbe { config }
    }
}

#[async_trait]
impl Step<BuildState> for StartAcceleratorProbe<'_> {
    fn name(&self) -> &'static str {
        "probe accelerator"
    }

    async fn run(&self, _ctx: &StepContext, state: &mut BuildState) -> Result<(), StepError> {
        let requested = self.config.accelerator.as_str().to_string();
        let qemu = PathBuf::from(&self.config.qemu_binary);
        let handle = tokio::spawn(async move { accel::choose(&requested, &qemu).await });
        state.accel_probe = Some(AccelProbe(handle));
        Ok(())
    }

    async fn cleanup(&self, _ctx: &StepContext, state: &mut BuildState, _outcome: &Result<(), StepError>) {
        // a build that failed or was cancelled before QEMU started: stop the probe (dropping its
        // future kills the probe's QEMU, which is spawned with kill_on_drop)
        if let Some(AccelProbe(handle)) = state.accel_probe.take() {
            handle.abort();
            let _ = handle.await;
        }
    }
}

/// The accelerator for the build: a choice an earlier step took (`accel_choice`), else the
/// background probe's verdict when [`StartAcceleratorProbe`] ran, else a choice made now.
/// Cancellable.
pub async fn take_verdict(
    config: &Config,
    ctx: &StepContext,
    state: &mut BuildState,
) -> Result<(accel::Accelerator, Option<String>), StepError> {
    if let Some(choice) = state.accel_choice.take() {
        return Ok(choice);
    }
    let chosen = match state.accel_probe.take() {
        Some(AccelProbe(mut handle)) => tokio::select! {
            r = &mut handle => r.map_err(|e| StepError::failed(format!("the accelerator probe failed: {e}")))?,
            _ = ctx.cancel.cancelled() => {
                handle.abort();
                return Err(StepError::Cancelled);
            }
        },
        None => tokio::select! {
            r = accel::choose(config.accelerator.as_str(), std::path::Path::new(&config.qemu_binary)) => r,
            _ = ctx.cancel.cancelled() => return Err(StepError::Cancelled),
        },
    };
    chosen.map_err(|e| StepError::failed(e.to_string()))
}
