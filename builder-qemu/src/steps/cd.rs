//! Step: build the `cd_files`/`cd_content` ISO (e.g. a NoCloud `cidata` seed).

use std::path::PathBuf;

use async_trait::async_trait;
use packer_sdk::cd_image::{self, CdSpec};
use packer_sdk::step::{Step, StepContext, StepError};

use crate::config::Config;
use crate::state::BuildState;

/// Builds the extra CD in a temp file (removed at the end of the build).
pub struct CreateCd<'a> {
    config: &'a Config,
}

impl<'a> CreateCd<'a> {
    /// The step for `config`.
    pub fn new(config: &'a Config) -> Self {
        CreateCd { config }
    }
}

#[async_trait]
impl Step<BuildState> for CreateCd<'_> {
    fn name(&self) -> &'static str {
        "cd image"
    }

    async fn run(&self, ctx: &StepContext, state: &mut BuildState) -> Result<(), StepError> {
        let c = self.config;
        if c.cd_files.is_empty() && c.cd_content.is_empty() {
            return Ok(());
        }
        ctx.ui.say("Creating CD disk...").await;
        let tmp = super::temp_image("qemu-rs-cd-", ".iso", "CD")?;
        let content = super::render_content("cd_content", &c.cd_content, state, &c.vm_name)?;
        let spec = CdSpec { files: c.cd_files.clone(), content, label: c.cd_label.clone() };
        let base = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        cd_image::build(&spec, &base, &tmp).await.map_err(|e| StepError::failed(e.to_string()))?;
        state.cd_path = Some(tmp);
        Ok(())
    }

    async fn cleanup(&self, _ctx: &StepContext, state: &mut BuildState, _outcome: &Result<(), StepError>) {
        // dropping the TempImage deletes the file
        state.cd_path = None;
    }
}
