//! The user interface Packer core shows: what a component says to the user.

use async_trait::async_trait;

/// Packer's UI, as seen from a plugin. Implemented by the RPC client (core's Ui) and by
/// anything that forwards or records messages (tests).
///
/// Methods never fail: a message that cannot be delivered is logged and dropped, as in
/// Packer's own SDK.
#[async_trait]
pub trait Ui: Send + Sync {
    /// A status line (shown with `==> name:` by Packer).
    async fn say(&self, message: &str);
    /// A detail line (shown indented by Packer).
    async fn message(&self, message: &str);
    /// An error line.
    async fn error(&self, message: &str);
    /// Machine-readable output (`packer -machine-readable`).
    async fn machine(&self, category: &str, args: &[String]);
    /// Starts a progress bar for a transfer of `total_size` bytes named `src`.
    async fn track_progress(&self, src: &str, current_size: i64, total_size: i64) -> Box<dyn ProgressBar>;
}

/// A progress bar created by [`Ui::track_progress`].
#[async_trait]
pub trait ProgressBar: Send + Sync {
    /// Reports `n` more bytes transferred.
    async fn add(&self, n: i64);
    /// Closes the bar.
    async fn close(&self);
}
