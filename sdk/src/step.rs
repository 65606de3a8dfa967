//! Build steps: a [`Step`] does one thing and knows how to undo it; the [`StepRunner`] runs
//! steps in order, checks for cancellation between them, and runs the cleanups of every step
//! that started, in reverse order, whatever happened.

use std::sync::Arc;

use async_trait::async_trait;

use crate::ui::Ui;
use crate::CancellationToken;

/// What every step gets besides the state: the user interface and the build's cancellation.
pub struct StepContext {
    /// Where to tell the user what happens.
    pub ui: Arc<dyn Ui>,
    /// Cancelled when the user cancels the build (`Builder.Cancel`).
    pub cancel: CancellationToken,
}

/// Why a build stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// A step failed; the message is shown to the user.
    #[error("{0}")]
    Failed(String),
    /// The build was cancelled.
    #[error("build cancelled")]
    Cancelled,
}

impl StepError {
    /// A failure with `message`.
    pub fn failed(message: impl Into<String>) -> Self {
        StepError::Failed(message.into())
    }
}

/// One step of a build, over a typed state `S`.
#[async_trait]
pub trait Step<S: Send>: Send + Sync {
    /// A short name for logs.
    fn name(&self) -> &'static str;
    /// Does the step's work, recording what it made in `state`.
    async fn run(&self, ctx: &StepContext, state: &mut S) -> Result<(), StepError>;
    /// Undoes what `run` made, when it should not outlive the build. Called for every step whose
    /// `run` was entered (even if it failed), in reverse order, after success, failure or cancel;
    /// `outcome` tells which. Must not fail: problems are reported through `ctx.ui`.
    async fn cleanup(&self, _ctx: &StepContext, _state: &mut S, _outcome: &Result<(), StepError>) {}
}

/// Runs steps in order and their cleanups in reverse.
pub struct StepRunner {
    ctx: StepContext,
}

impl StepRunner {
    /// A runner reporting to `ui` and stopping when `cancel` fires.
    pub fn new(ui: Arc<dyn Ui>, cancel: CancellationToken) -> Self {
        StepRunner { ctx: StepContext { ui, cancel } }
    }

    /// The context steps receive.
    pub fn context(&self) -> &StepContext {
        &self.ctx
    }

    /// Runs `steps` over `state`. A cancellation while a step runs makes that step's `run`
    /// future be dropped (steps must keep what they made in `state` before awaiting, so cleanup
    /// can find it) and the result is [`StepError::Cancelled`].
    pub async fn run<S: Send>(&self, steps: &[Box<dyn Step<S> + '_>], state: &mut S) -> Result<(), StepError> {
        let mut started = 0;
        let mut outcome = Ok(());
        for step in steps {
            if self.ctx.cancel.is_cancelled() {
                outcome = Err(StepError::Cancelled);
                break;
            }
            started += 1;
            tracing::debug!(step = step.name(), "step start");
            let r = tokio::select! {
                biased;
                _ = self.ctx.cancel.cancelled() => Err(StepError::Cancelled),
                r = step.run(&self.ctx, state) => r,
            };
            tracing::debug!(step = step.name(), ok = r.is_ok(), "step end");
            if let Err(e) = r {
                outcome = Err(e);
                break;
            }
        }
        if outcome.is_ok() && self.ctx.cancel.is_cancelled() {
            // Cancelled while the last step finished: Packer reports the build as cancelled and
            // keeps no artifact, so the cleanups must treat it as cancelled too (and remove the
            // output directory), not as a success.
            outcome = Err(StepError::Cancelled);
        }
        for step in steps[..started].iter().rev() {
            tracing::debug!(step = step.name(), "cleanup");
            step.cleanup(&self.ctx, state, &outcome).await;
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::ProgressBar;
    use std::sync::Mutex;

    struct NullUi;
    #[async_trait]
    impl Ui for NullUi {
        async fn say(&self, _: &str) {}
        async fn message(&self, _: &str) {}
        async fn error(&self, _: &str) {}
        async fn machine(&self, _: &str, _: &[String]) {}
        async fn track_progress(&self, _: &str, _: i64, _: i64) -> Box<dyn ProgressBar> {
            struct P;
            #[async_trait]
            impl ProgressBar for P {
                async fn add(&self, _: i64) {}
                async fn close(&self) {}
            }
            Box::new(P)
        }
    }

    type Log = Arc<Mutex<Vec<String>>>;
    struct Rec {
        name: &'static str,
        fail: bool,
        hang: bool,
        log: Log,
    }
    #[async_trait]
    impl Step<Vec<&'static str>> for Rec {
        fn name(&self) -> &'static str {
            self.name
        }
        async fn run(&self, _: &StepContext, st: &mut Vec<&'static str>) -> Result<(), StepError> {
            self.log.lock().unwrap().push(format!("run {}", self.name));
            st.push(self.name);
            if self.hang {
                std::future::pending::<()>().await;
            }
            if self.fail {
                return Err(StepError::failed(format!("{} broke", self.name)));
            }
            Ok(())
        }
        async fn cleanup(&self, _: &StepContext, _: &mut Vec<&'static str>, o: &Result<(), StepError>) {
            self.log.lock().unwrap().push(format!("cleanup {} ok={}", self.name, o.is_ok()));
        }
    }

    fn steps(log: &Log, spec: &[(&'static str, bool, bool)]) -> Vec<Box<dyn Step<Vec<&'static str>>>> {
        spec.iter()
            .map(|&(name, fail, hang)| Box::new(Rec { name, fail, hang, log: log.clone() }) as Box<dyn Step<_>>)
            .collect()
    }

    #[tokio::test]
    async fn success_runs_all_and_cleans_up_in_reverse() {
        let log = Log::default();
        let r = StepRunner::new(Arc::new(NullUi), CancellationToken::new());
        let mut st = vec![];
        r.run(&steps(&log, &[("a", false, false), ("b", false, false)]), &mut st).await.unwrap();
        assert_eq!(*log.lock().unwrap(), ["run a", "run b", "cleanup b ok=true", "cleanup a ok=true"]);
        assert_eq!(st, ["a", "b"]);
    }

    #[tokio::test]
    async fn failure_stops_and_cleans_started_steps() {
        let log = Log::default();
        let r = StepRunner::new(Arc::new(NullUi), CancellationToken::new());
        let e = r
            .run(&steps(&log, &[("a", false, false), ("b", true, false), ("c", false, false)]), &mut vec![])
            .await
            .unwrap_err();
        assert_eq!(e, StepError::failed("b broke"));
        assert_eq!(*log.lock().unwrap(), ["run a", "run b", "cleanup b ok=false", "cleanup a ok=false"]);
    }

    /// Cancels the build from inside its `run`, then succeeds (a cancel arriving as it ends).
    struct CancelAtTheEnd(CancellationToken);
    #[async_trait]
    impl Step<Vec<&'static str>> for CancelAtTheEnd {
        fn name(&self) -> &'static str {
            "last"
        }
        async fn run(&self, _: &StepContext, _: &mut Vec<&'static str>) -> Result<(), StepError> {
            self.0.cancel();
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_cancel_during_the_last_step_cancels_the_build() {
        let log = Log::default();
        let cancel = CancellationToken::new();
        let r = StepRunner::new(Arc::new(NullUi), cancel.clone());
        let mut all = steps(&log, &[("a", false, false)]);
        all.push(Box::new(CancelAtTheEnd(cancel)));
        assert_eq!(r.run(&all, &mut vec![]).await.unwrap_err(), StepError::Cancelled);
        assert_eq!(*log.lock().unwrap(), ["run a", "cleanup a ok=false"]);
    }

    #[tokio::test]
    async fn cancel_interrupts_a_hanging_step() {
        let log = Log::default();
        let cancel = CancellationToken::new();
        let r = StepRunner::new(Arc::new(NullUi), cancel.clone());
        let c2 = cancel.clone();
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            c2.cancel();
        });
        let e = r.run(&steps(&log, &[("a", false, true), ("b", false, false)]), &mut vec![]).await.unwrap_err();
        assert_eq!(e, StepError::Cancelled);
        assert_eq!(*log.lock().unwrap(), ["run a", "cleanup a ok=false"]);
    }
}
