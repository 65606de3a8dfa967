//! Step: warm start — read the saved machine into the QEMU that [`super::launch::LaunchQemu`]
//! started waiting for it (`-incoming defer`), and let it run on from the moment SSH first
//! answered. The guest's clock is as old as the entry until the guest synchronizes it.

use async_trait::async_trait;
use packer_sdk::step::{Step, StepContext, StepError};

use crate::driver::warm_cache::{now_secs, shell_quote, short_key, STATE_FILE};
use crate::state::BuildState;

/// How long reading a saved state may take (GiBs of RAM from a slow disk).
const RESTORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Restores the saved machine, on a warm-start hit; sets `warm.restored`.
#[derive(Default)]
pub struct RestoreWarmStart;

impl RestoreWarmStart {
    /// The step.
    pub fn new() -> Self {
        RestoreWarmStart
    }
}

#[async_trait]
impl Step<BuildState> for RestoreWarmStart {
    fn name(&self) -> &'static str {
        "warm start restore"
    }

    async fn run(&self, ctx: &StepContext, state: &mut BuildState) -> Result<(), StepError> {
        let Some(restore) = state.warm_restore() else { return Ok(()) };
        let qemu = state.qemu.as_ref().ok_or_else(|| StepError::failed("warm start: QEMU is not running"))?;
        let started = std::time::Instant::now();
        let uri = format!("exec:cat {}", shell_quote(&restore.dir.join(STATE_FILE)));
        let saved_at = restore.meta.saved_at;
        let restored = async {
            qemu.qmp.migrate_incoming(&uri).await.map_err(|e| e.to_string())?;
            qemu.qmp.wait_migration().await.map_err(|e| e.to_string())?;
            qemu.qmp.cont().await.map_err(|e| e.to_string())
        };
        let outcome = tokio::select! {
            r = tokio::time::timeout(RESTORE_TIMEOUT, restored) => r.unwrap_or_else(|_| Err(format!("no end after {RESTORE_TIMEOUT:?}"))),
            _ = ctx.cancel.cancelled() => return Err(StepError::Cancelled),
        };
        let warm = state.warm.as_mut().expect("warm start state");
        let key = warm.key.clone();
        // QEMU has read the state (or failed to): the entry may be evicted again
        if let Some(r) = warm.restore.as_mut() {
            r.lock = None;
        }
        if let Err(e) = outcome {
            // the entry passed its checksums, so this QEMU cannot take it: do not try it again
            let cache = warm.cache.clone();
            let k = key.clone();
            if let Ok(Err(e)) = super::warm_lookup::blocking(move || cache.discard(&k)).await {
                tracing::warn!("warm start: {e}");
            }
            let stderr = state.qemu.as_ref().map(|q| q.stderr_tail()).unwrap_or_default();
            let stderr = if stderr.is_empty() { String::new() } else { format!("\nQEMU said:\n{}", stderr.join("\n")) };
            return Err(StepError::failed(format!(
                "warm start: QEMU could not restore the saved machine {}: {e}; the entry was removed, so the next \
                 build runs cold and saves a new one{stderr}",
                short_key(&key)
            )));
        }
        let behind = now_secs().saturating_sub(saved_at);
        tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "warm start: machine restored");
        ctx.ui
            .say(&format!(
                "Warm start: machine restored in {:.1}s; its clock is {} behind until the guest synchronizes it",
                started.elapsed().as_secs_f64(),
                packer_sdk::config::Duration::from_secs(behind as i64)
            ))
            .await;
        Ok(())
    }
}
