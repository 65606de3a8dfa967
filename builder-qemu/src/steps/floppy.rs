//! Step: build the `floppy_files`/`floppy_dirs`/`floppy_content` floppy image (attached with `-fda`).

use std::path::PathBuf;

use async_trait::async_trait;
use packer_sdk::floppy_image::{self, FloppySpec};
use packer_sdk::step::{Step, StepContext, StepError};

use crate::config::Config;
use crate::state::BuildState;

/// Builds the floppy in a temp file (removed at the end of the build, whatever its outcome).
pub struct CreateFloppy<'a> {
    config: &'a Config,
}

impl<'a> CreateFloppy<'a> {
    /// The step for `config`.
    pub fn new(config: &'a Config) -> Self {
        CreateFloppy { config }
    }

    /// What goes on the floppy.
    pub fn spec(&self) -> FloppySpec {
        let c = self.config;
        FloppySpec {
            files: c.floppy_files.clone().unwrap_or_default(),
            dirs: c.floppy_dirs.clone().unwrap_or_default(),
            content: c.floppy_content.clone().unwrap_or_default(),
            label: c.floppy_label.clone().unwrap_or_default(),
        }
    }
}

#[async_trait]
impl Step<BuildState> for CreateFloppy<'_> {
    fn name(&self) -> &'static str {
        "floppy image"
    }

    async fn run(&self, ctx: &StepContext, state: &mut BuildState) -> Result<(), StepError> {
        let spec = self.spec();
        if spec.is_empty() {
            return Ok(());
        }
        ctx.ui.say("Creating floppy disk...").await;
        let tmp = super::temp_image("qemu-rs-floppy-", ".img", "floppy")?;
        let base = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let report = floppy_image::build(&spec, &base, &tmp).await.map_err(|e| StepError::failed(e.to_string()))?;
        for note in &report.notes {
            ctx.ui.message(&format!("Warning: {note}")).await;
        }
        for (path, from) in &report.files {
            tracing::info!("floppy: /{path} from {from}");
        }
        ctx.ui
            .message(&format!(
                "Floppy (label {:?}): {} file(s): {}",
                if spec.label.is_empty() { floppy_image::DEFAULT_LABEL } else { &spec.label },
                report.files.len(),
                report.files.iter().map(|(p, _)| format!("/{p}")).collect::<Vec<_>>().join(", ")
            ))
            .await;
        state.floppy_path = Some(tmp);
        Ok(())
    }

    async fn cleanup(&self, _ctx: &StepContext, state: &mut BuildState, _outcome: &Result<(), StepError>) {
        // dropping the TempImage deletes the file
        state.floppy_path = None;
    }
}
