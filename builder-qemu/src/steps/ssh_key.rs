//! Step: the SSH key — `ssh_private_key_file`, or a temporary pair made for this build (also
//! made when a password is used, so `{{ .SSHPublicKey }}` always has a value, as in Packer).

use async_trait::async_trait;
use packer_sdk::communicator::ssh::keys::{public_key_line, KeyType, TemporaryKeyPair};
use packer_sdk::step::{Step, StepContext, StepError};

use crate::config::{CommunicatorType, Config, KeyPairType};
use crate::driver::warm_cache::KEY_FILE;
use crate::state::{BuildState, SshKey};

/// Loads or generates the SSH key; sets `ssh_key`.
pub struct PrepareSshKey<'a> {
    config: &'a Config,
}

impl<'a> PrepareSshKey<'a> {
    /// The step for `config`.
    pub fn new(config: &'a Config) -> Self {
        PrepareSshKey { config }
    }
}

#[async_trait]
impl Step<BuildState> for PrepareSshKey<'_> {
    fn name(&self) -> &'static str {
        "ssh key"
    }

    async fn run(&self, ctx: &StepContext, state: &mut BuildState) -> Result<(), StepError> {
        let c = self.config;
        if c.communicator != CommunicatorType::Ssh {
            return Ok(());
        }
        if let Some(r) = state.warm_restore().filter(|r| r.meta.stored_key) {
            // the restored guest trusts only the key of the build that saved it
            let path = r.dir.join(KEY_FILE);
            let text = tokio::fs::read_to_string(&path)
                .await
                .map_err(|e| StepError::failed(format!("warm start: cannot read {}: {e}", path.display())))?;
            let public = r.meta.public_key_line.clone();
            state.ssh_key = Some(SshKey { private_key: text, public_key_line: public, temporary: true });
            return Ok(());
        }
        if !c.ssh_private_key_file.is_empty() {
            let text = tokio::fs::read_to_string(&c.ssh_private_key_file)
                .await
                .map_err(|e| StepError::failed(format!("ssh_private_key_file {:?}: {e}", c.ssh_private_key_file)))?;
            let public = public_key_line(&text)
                .map_err(|e| StepError::failed(format!("ssh_private_key_file {:?}: {e}", c.ssh_private_key_file)))?;
            state.ssh_key = Some(SshKey { private_key: text, public_key_line: public, temporary: false });
            return Ok(());
        }
        let kind = match c.temporary_key_pair_type {
            KeyPairType::Ed25519 => KeyType::Ed25519,
            KeyPairType::Rsa => KeyType::Rsa {
                bits: if c.temporary_key_pair_bits == 0 { 4096 } else { c.temporary_key_pair_bits as usize },
            },
            KeyPairType::Ecdsa => KeyType::Ecdsa {
                bits: if c.temporary_key_pair_bits == 0 { 521 } else { c.temporary_key_pair_bits as usize },
            },
            KeyPairType::Dsa => {
                // rejected by prepare (see config/validate.rs)
                return Err(StepError::failed(
                    "temporary_key_pair_type \"dsa\" is not supported by qemu-rs; use \"ed25519\", \"ecdsa\" or \"rsa\"",
                ));
            }
        };
        ctx.ui
            .say(&format!(
                "Creating temporary {} SSH key for instance...",
                c.temporary_key_pair_type.as_str().to_ascii_uppercase()
            ))
            .await;
        let pair = tokio::task::spawn_blocking(move || TemporaryKeyPair::generate(kind))
            .await
            .map_err(|e| StepError::failed(format!("key generation failed: {e}")))?
            .map_err(|e| StepError::failed(format!("key generation failed: {e}")))?;
        tracing::info!("temporary SSH key {}", pair.fingerprint);
        state.ssh_key =
            Some(SshKey { private_key: pair.private_key_pem, public_key_line: pair.public_key_line, temporary: true });
        Ok(())
    }
}
