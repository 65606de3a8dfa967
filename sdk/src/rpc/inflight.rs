//! The long calls in progress on one connection (`Builder.Run`, `Provisioner.Provision`).
//!
//! Packer core can vanish without a word (SIGKILL, the OOM killer): its socket closes, or the
//! plugin is handed to another parent. Ending the plugin process then would drop a running build in
//! the middle — QEMU dies with us, but the output directory, temp files and other cleanups would be
//! left behind. Instead the connection's [`InFlight`] cancels what runs and waits (bounded) for its
//! cleanups to finish before the process exits.

use std::time::Duration;

use tokio_util::task::TaskTracker;

use crate::CancellationToken;

/// The cancellation and tracking of the long calls of one connection. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl InFlight {
    /// Nothing in flight yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A token for one call: cancelled by the call's own `Cancel` and when the connection is lost.
    pub fn token(&self) -> CancellationToken {
        self.cancel.child_token()
    }

    /// Runs `fut`, tracked: [`InFlight::drain`] waits for it.
    pub async fn track<F: std::future::Future>(&self, fut: F) -> F::Output {
        self.tracker.track_future(fut).await
    }

    /// How many tracked calls are running.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    /// Whether no tracked call is running.
    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }

    /// Cancels every call and waits up to `grace` for them to finish their cleanups. Returns
    /// whether they all finished in time.
    pub async fn drain(&self, grace: Duration) -> bool {
        if self.tracker.is_empty() {
            return true;
        }
        tracing::warn!("Packer is gone: cancelling {} running call(s) and waiting for their cleanup", self.len());
        self.cancel.cancel();
        self.tracker.close();
        let done = tokio::time::timeout(grace, self.tracker.wait()).await.is_ok();
        if !done {
            tracing::error!("cleanup did not finish within {} s; exiting anyway", grace.as_secs());
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn drain_cancels_and_waits_for_cleanup() {
        let inflight = InFlight::new();
        let cleaned = Arc::new(AtomicBool::new(false));
        let token = inflight.token();
        let task = {
            let inflight = inflight.clone();
            let cleaned = cleaned.clone();
            tokio::spawn(async move {
                inflight
                    .track(async {
                        token.cancelled().await;
                        // a cleanup that takes a while
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        cleaned.store(true, Ordering::SeqCst);
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(inflight.len(), 1);
        assert!(inflight.drain(Duration::from_secs(5)).await);
        assert!(cleaned.load(Ordering::SeqCst), "drain returned before the cleanup ran");
        task.await.unwrap();
    }

    #[tokio::test]
    async fn drain_is_bounded_and_instant_when_idle() {
        let inflight = InFlight::new();
        assert!(inflight.drain(Duration::from_secs(5)).await);
        let stuck = inflight.clone();
        let _task = tokio::spawn(async move { stuck.track(std::future::pending::<()>()).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t = std::time::Instant::now();
        assert!(!inflight.drain(Duration::from_millis(200)).await);
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_call_cancel_does_not_cancel_the_others() {
        let inflight = InFlight::new();
        let a = inflight.token();
        let b = inflight.token();
        a.cancel();
        assert!(!b.is_cancelled());
        inflight.cancel.cancel();
        assert!(b.is_cancelled());
    }
}
