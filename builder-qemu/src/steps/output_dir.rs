//! Step: create the output directory; remove it again when the build fails.

use std::path::Path;

use async_trait::async_trait;
use packer_sdk::config::PackerCommon;
use packer_sdk::step::{Step, StepContext, StepError};

use crate::config::Config;
use crate::state::BuildState;

/// Creates `output_directory` (replacing it with `-force`).
pub struct PrepareOutputDir<'a> {
    config: &'a Config,
    common: &'a PackerCommon,
}

impl<'a> PrepareOutputDir<'a> {
    /// The step for `config`.
    pub fn new(config: &'a Config, common: &'a PackerCommon) -> Self {
        PrepareOutputDir { config, common }
    }
}

#[async_trait]
impl Step<BuildState> for PrepareOutputDir<'_> {
    fn name(&self) -> &'static str {
        "output directory"
    }

    async fn run(&self, ctx: &StepContext, state: &mut BuildState) -> Result<(), StepError> {
        let dir = Path::new(&self.config.output_directory);
        if dir.exists() {
            if !self.common.force {
                return Err(StepError::failed(format!(
                    "output_directory {:?} already exists; remove it or run packer build with -force",
                    self.config.output_directory
                )));
            }
            ctx.ui.say("Deleting previous output directory...").await;
            tokio::fs::remove_dir_all(dir).await.map_err(|e| {
                StepError::failed(format!("cannot remove the existing output_directory {}: {e}", dir.display()))
            })?;
        }
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| StepError::failed(format!("cannot create output_directory {}: {e}", dir.display())))?;
        state.output_dir_created = true;
        if self.common.on_error != "abort" {
            state.output_dir_guard = Some(packer_sdk::janitor::guard(dir));
        }
        Ok(())
    }

    async fn cleanup(&self, ctx: &StepContext, state: &mut BuildState, outcome: &Result<(), StepError>) {
        // released once this cleanup has decided the directory's fate
        let _guard = state.output_dir_guard.take();
        if outcome.is_ok() || !state.output_dir_created {
            return;
        }
        if self.common.on_error == "abort" {
            ctx.ui.say(&format!("Keeping {} (-on-error=abort)", self.config.output_directory)).await;
            return;
        }
        ctx.ui.say("Deleting output directory...").await;
        if let Err(e) = tokio::fs::remove_dir_all(&self.config.output_directory).await {
            if e.kind() != std::io::ErrorKind::NotFound {
                ctx.ui.error(&format!("Could not delete {}: {e}", self.config.output_directory)).await;
            }
        }
    }
}
