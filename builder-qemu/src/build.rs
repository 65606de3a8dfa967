//! A build, top to bottom: the list of steps, run in order, their cleanups in reverse.

use std::sync::Arc;

use packer_sdk::artifact::Artifact;
use packer_sdk::component::{Hook, RunError};
use packer_sdk::step::{Step, StepError, StepRunner};
use packer_sdk::ui::Ui;
use packer_sdk::CancellationToken;

use crate::artifact::QemuArtifact;
use crate::config::PreparedConfig;
use crate::state::BuildState;
use crate::steps::{
    accel::StartAcceleratorProbe, boot_command::TypeBootCommand, cd::CreateCd, convert::ConvertDisk, disk::CreateDisk,
    efi::PrepareEfi, fetch_media::FetchMedia, floppy::CreateFloppy, guest_address::WaitGuestAddress, http::ServeHttp,
    launch::LaunchQemu, manifest::WriteManifest, net_bridge::PrepareBridge, output_dir::PrepareOutputDir,
    provision::Provision, shutdown::Shutdown, ssh_key::PrepareSshKey, vtpm::StartVtpm, wait_ssh::WaitForSsh,
    warm_lookup::LookUpWarmStart, warm_restore::RestoreWarmStart, warm_save::SaveWarmStart,
};

/// Runs a whole build of `prepared` and returns its artifact.
pub async fn run(
    prepared: &PreparedConfig,
    ui: Arc<dyn Ui>,
    hook: Arc<dyn Hook>,
    cancel: CancellationToken,
) -> Result<Option<Arc<dyn Artifact>>, RunError> {
    let c = &prepared.config;
    let steps: Vec<Box<dyn Step<BuildState> + '_>> = vec![
        Box::new(StartAcceleratorProbe::new(c)),
        Box::new(FetchMedia::new(c)),
        Box::new(PrepareOutputDir::new(c, &prepared.common)),
        // warm start: before what a restore replaces (the key, the disks, the UEFI variables)
        Box::new(LookUpWarmStart::new(c, prepared.common.force)),
        // before the CD and the HTTP server: cd_content/http_content may carry {{ .SSHPublicKey }}
        Box::new(PrepareSshKey::new(c)),
        Box::new(StartVtpm::new(c)),
        Box::new(CreateFloppy::new(c)),
        Box::new(CreateCd::new(c)),
        Box::new(CreateDisk::new(c)),
        Box::new(PrepareBridge::new(c)),
        Box::new(ServeHttp::new(c)),
        Box::new(PrepareEfi::new(c)),
        Box::new(LaunchQemu::new(c)),
        Box::new(RestoreWarmStart::new()),
        Box::new(TypeBootCommand::new(c)),
        Box::new(WaitGuestAddress::new(c)),
        Box::new(WaitForSsh::new(c)),
        Box::new(SaveWarmStart::new(c)),
        Box::new(Provision::new(c, hook)),
        Box::new(Shutdown::new(c)),
        Box::new(ConvertDisk::new(c)),
        Box::new(WriteManifest::new(c)),
    ];
    let mut state = BuildState::default();
    let started = std::time::Instant::now();
    let runner = StepRunner::new(ui.clone(), cancel);
    match runner.run(&steps, &mut state).await {
        Ok(()) => {}
        Err(StepError::Cancelled) => return Err(RunError::new("Build was cancelled.")),
        Err(StepError::Failed(m)) => return Err(RunError::new(m)),
    }
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "build finished");
    let artifact = QemuArtifact::from_state(c, &state).map_err(|e| RunError::new(e.to_string()))?;
    Ok(Some(Arc::new(artifact)))
}
