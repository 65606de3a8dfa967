//! Step: warm start — the moment SSH first answered, before any provisioner runs, save the machine
//! into the warm-start cache (see [`crate::driver::warm_cache`]) so later builds with the same
//! inputs start from here.
//!
//! The machine is paused (`stop`: QEMU flushes the disks), its RAM and device state go into a file
//! through QEMU's migration (`exec:cat > …`), the disks and the UEFI variables are copied (sparse)
//! while it stays paused, and it runs on (`cont`). A save that fails is a warning: the build goes on
//! and no entry is made.

use std::path::Path;

use async_trait::async_trait;
use packer_sdk::step::{Step, StepContext, StepError};

use crate::config::Config;
use crate::driver::qemu::QemuProcess;
use crate::driver::warm_cache::{self, shell_quote, EntryMeta, EFIVARS_FILE, KEY_FILE, LAYOUT_VERSION, STATE_FILE};
use crate::state::BuildState;

/// Saves the machine on a warm-start miss.
pub struct SaveWarmStart<'a> {
    config: &'a Config,
}

impl<'a> SaveWarmStart<'a> {
    /// The step for `config`.
    pub fn new(config: &'a Config) -> Self {
        SaveWarmStart { config }
    }
}

/// State, disks and UEFI variables into `dir`, the machine paused.
async fn save_paused(
    qemu: &QemuProcess,
    dir: &Path,
    disks: &[std::path::PathBuf],
    efivars: Option<&Path>,
) -> Result<(), String> {
    let uri = format!("exec:cat > {}", shell_quote(&dir.join(STATE_FILE)));
    qemu.qmp.migrate(&uri).await.map_err(|e| e.to_string())?;
    qemu.qmp.wait_migration().await.map_err(|e| e.to_string())?;
    for (n, disk) in disks.iter().enumerate() {
        warm_cache::copy_sparse(disk, &dir.join(warm_cache::disk_file(n))).await.map_err(|e| e.to_string())?;
    }
    if let Some(vars) = efivars {
        warm_cache::copy_sparse(vars, &dir.join(EFIVARS_FILE)).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[async_trait]
impl Step<BuildState> for SaveWarmStart<'_> {
    fn name(&self) -> &'static str {
        "warm start save"
    }

    async fn run(&self, ctx: &StepContext, state: &mut BuildState) -> Result<(), StepError> {
        let Some(warm) = state.warm.as_ref().filter(|w| w.restore.is_none()) else { return Ok(()) };
        let Some(qemu) = state.qemu.as_ref() else { return Ok(()) };
        let key = warm.key.clone();
        let cache = warm.cache.clone();
        let staging = match cache.staging_dir(&key) {
            Ok(d) => d,
            Err(e) => {
                ctx.ui.error(&format!("Warning: warm start: the machine is not saved: {e}")).await;
                return Ok(());
            }
        };
        // removed should the plugin be killed before the entry is published
        let _guard = packer_sdk::janitor::guard(staging.path());
        ctx.ui.say("Warm start: saving the machine (SSH answered; no provisioner has run)...").await;
        let started = std::time::Instant::now();
        qemu.qmp.stop().await.map_err(|e| StepError::failed(format!("warm start: cannot pause the machine: {e}")))?;
        let efivars = state.efi.as_ref().map(|e| e.vars.clone());
        let saved = tokio::select! {
            r = save_paused(qemu, staging.path(), &state.disk_paths, efivars.as_deref()) => r,
            _ = ctx.cancel.cancelled() => return Err(StepError::Cancelled),
        };
        // the machine runs on whatever became of the save
        qemu.qmp.cont().await.map_err(|e| StepError::failed(format!("warm start: cannot resume the machine: {e}")))?;
        let paused = started.elapsed();
        if let Err(e) = saved {
            ctx.ui.error(&format!("Warning: warm start: the machine is not saved ({e}); the build goes on")).await;
            return Ok(());
        }
        let ssh = state.ssh_key.clone();
        let stored_key = ssh.as_ref().is_some_and(|k| k.temporary);
        if let Some(k) = ssh.as_ref().filter(|k| k.temporary) {
            let path = staging.path().join(KEY_FILE);
            let written = {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .create_new(true)
                    .write(true)
                    .mode(0o600)
                    .open(&path)
                    .and_then(|mut f| f.write_all(k.private_key.as_bytes()))
            };
            if let Err(e) = written {
                ctx.ui.error(&format!("Warning: warm start: the machine is not saved ({}: {e})", path.display())).await;
                return Ok(());
            }
        }
        let meta = EntryMeta {
            version: LAYOUT_VERSION,
            key: key.clone(),
            key_material: warm.material.lines().to_vec(),
            saved_at: warm_cache::now_secs(),
            disks: state.disk_paths.len(),
            efivars: efivars.is_some(),
            public_key_line: ssh.map(|k| k.public_key_line).unwrap_or_default(),
            stored_key,
            files: Vec::new(),
        };
        let limit = self.config.warm_start_cache_size.bytes();
        let published = super::warm_lookup::blocking(move || {
            let size = cache.publish(staging.path(), meta)?;
            let evicted = cache.evict(limit, &key);
            Ok::<_, warm_cache::WarmError>((size, evicted))
        })
        .await?;
        match published {
            Ok((size, evicted)) => {
                let evicted = match evicted.len() {
                    0 => String::new(),
                    n => format!("; {n} least recently used entr{} removed", if n == 1 { "y" } else { "ies" }),
                };
                ctx.ui
                    .say(&format!(
                        "Warm start: machine saved ({} MiB, paused {:.1}s){evicted}",
                        size >> 20,
                        paused.as_secs_f64()
                    ))
                    .await;
            }
            Err(e) => ctx.ui.error(&format!("Warning: warm start: the machine is not saved ({e})")).await,
        }
        Ok(())
    }
}
