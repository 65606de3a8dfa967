//! The qemu-rs-shell provisioner: runs shell scripts on a machine through any communicator.
//!
//! It does what Packer's own `shell` provisioner does, option for option (see
//! `docs/provisioners/shell.mdx`), through whatever [`Communicator`] Packer core hands it:
//! - [`config`]: decoding and validating the options at `Prepare`, all problems at once;
//! - [`provision`]: uploading and running the scripts, retries, exit codes, cleanup;
//! - [`output`]: streaming the output to the UI line by line;
//! - [`env`], [`template`]: quoting, the Go-template subset.

use std::sync::Arc;

use async_trait::async_trait;
use packer_sdk::communicator::Communicator;
use packer_sdk::component::{Provisioner, RunError};
use packer_sdk::config::{ConfigErrors, RawConfig};
use packer_sdk::hcl::ObjectSpec;
use packer_sdk::ui::Ui;
use packer_sdk::CancellationToken;

pub mod config;
pub mod env;
pub mod output;
pub mod provision;
pub mod template;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

pub use config::Config;
pub use provision::ShellError;

/// The `qemu-rs-shell` provisioner (registered as `shell` by the plugin binary).
#[derive(Debug, Default)]
pub struct ShellProvisioner {
    config: Option<Config>,
}

impl ShellProvisioner {
    /// The configuration of the last successful `prepare`.
    pub fn config(&self) -> Option<&Config> {
        self.config.as_ref()
    }
}

#[async_trait]
impl Provisioner for ShellProvisioner {
    fn config_spec(&self) -> ObjectSpec {
        config::config_spec()
    }

    async fn prepare(&mut self, raws: Vec<RawConfig>) -> Result<(), ConfigErrors> {
        self.config = Some(Config::from_raws(&raws)?);
        Ok(())
    }

    async fn provision(
        &self,
        ui: Arc<dyn Ui>,
        comm: Arc<dyn Communicator>,
        generated_data: serde_json::Map<String, serde_json::Value>,
        cancel: CancellationToken,
    ) -> Result<(), RunError> {
        let config = self.config.as_ref().ok_or_else(|| RunError::new(ShellError::NotPrepared.to_string()))?;
        provision::Run::new(config, ui, comm, &generated_data, cancel)
            .run()
            .await
            .map_err(|e| RunError::new(e.to_string()))
    }
}
