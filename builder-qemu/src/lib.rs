//! The qemu-rs builder: builds machine images with QEMU.
pub mod artifact;
pub mod build;
pub mod config;
pub mod driver;
pub mod state;
pub mod steps;

use std::sync::Arc;

use async_trait::async_trait;
use packer_sdk::artifact::Artifact;
use packer_sdk::component::{Builder, Hook, PrepareError, PrepareOutput, RunError};
use packer_sdk::config::RawConfig;
use packer_sdk::hcl::ObjectSpec;
use packer_sdk::ui::Ui;
use packer_sdk::CancellationToken;

/// The builder id reported by qemu-rs artifacts.
pub const BUILDER_ID: &str = "qemu-rs.builder";

/// The qemu-rs builder. `prepare` decodes and validates the configuration and keeps it for `run`.
#[derive(Debug, Default)]
pub struct QemuBuilder {
    prepared: Option<config::PreparedConfig>,
}

impl QemuBuilder {
    /// The configuration accepted by the last successful `prepare`, if any.
    pub fn prepared(&self) -> Option<&config::PreparedConfig> {
        self.prepared.as_ref()
    }
}

#[async_trait]
impl Builder for QemuBuilder {
    fn config_spec(&self) -> ObjectSpec {
        config::config_spec()
    }

    async fn prepare(&mut self, raws: Vec<RawConfig>) -> Result<PrepareOutput, PrepareError> {
        let prepared = config::Config::prepare(&raws)?;
        let warnings = prepared.warnings.clone();
        self.prepared = Some(prepared);
        Ok(PrepareOutput { generated_vars: Vec::new(), warnings })
    }

    async fn run(
        &self,
        ui: Arc<dyn Ui>,
        hook: Arc<dyn Hook>,
        cancel: CancellationToken,
    ) -> Result<Option<Arc<dyn Artifact>>, RunError> {
        let Some(prepared) = &self.prepared else {
            return Err(RunError::new("the builder was not prepared; this is a bug in Packer or qemu-rs"));
        };
        build::run(prepared, ui, hook, cancel).await
    }
}
