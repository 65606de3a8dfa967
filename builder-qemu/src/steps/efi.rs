//! Step: UEFI firmware — the code image and the build's own copy of the variable store.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use packer_sdk::step::{Step, StepContext, StepError};

use crate::config::Config;
use crate::driver::argv::EfiFiles;
use crate::driver::firmware;
use crate::state::BuildState;

/// Finds the firmware (`efi_firmware_code`/`efi_firmware_vars`, else QEMU's firmware
/// descriptors) and copies the variable store to `<output_directory>/efivars.fd`; sets `efi`.
pub struct PrepareEfi<'a> {
    config: &'a Config,
}

impl<'a> PrepareEfi<'a> {
    /// The step for `config`.
    pub fn new(config: &'a Config) -> Self {
        PrepareEfi { config }
    }
}

#[async_trait]
impl Step<BuildState> for PrepareEfi<'_> {
    fn name(&self) -> &'static str {
        "efi firmware"
    }

    async fn run(&self, ctx: &StepContext, state: &mut BuildState) -> Result<(), StepError> {
        let c = self.config;
        if !c.efi_boot {
            return Ok(());
        }
        let (code, vars_template) = if !c.efi_firmware_code.is_empty() && !c.efi_firmware_vars.is_empty() {
            (PathBuf::from(&c.efi_firmware_code), PathBuf::from(&c.efi_firmware_vars))
        } else {
            let fw = firmware::find(&firmware::descriptor_dirs(), c.arch.as_str(), &c.machine_type, c.secure_boot)
                .map_err(StepError::failed)?;
            ctx.ui.say(&format!("Using UEFI firmware {} ({})", fw.code.display(), fw.descriptor.display())).await;
            let code = if c.efi_firmware_code.is_empty() { fw.code } else { c.efi_firmware_code.clone().into() };
            let vars =
                if c.efi_firmware_vars.is_empty() { fw.vars_template } else { c.efi_firmware_vars.clone().into() };
            (code, vars)
        };
        let vars = Path::new(&c.output_directory).join("efivars.fd");
        // warm start: the variables as they were when the machine was saved
        let vars_template = match state.warm_restore().filter(|r| r.meta.efivars) {
            Some(r) => r.dir.join(crate::driver::warm_cache::EFIVARS_FILE),
            None => vars_template,
        };
        tokio::fs::copy(&vars_template, &vars).await.map_err(|e| {
            StepError::failed(format!("cannot copy the UEFI variable store {}: {e}", vars_template.display()))
        })?;
        state.efi = Some(EfiFiles { code, vars });
        Ok(())
    }
}
