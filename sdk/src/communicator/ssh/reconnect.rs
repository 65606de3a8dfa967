//! An SSH communicator that survives a guest reboot (a provisioner with `expect_disconnect`).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use super::{lock, SshCommunicator};
use crate::communicator::{CommError, CommandHandle, Communicator, FileInfo, Reader, RemoteCommand, Writer};

/// An [`SshCommunicator`] that connects again once its connection is gone — after the guest
/// rebooted under a provisioner with `expect_disconnect` — as Packer's SSH communicator does:
/// an operation that finds the connection closed first makes one new connection attempt (with the
/// same settings, port forwards included). A failed attempt fails the operation; provisioners
/// retry for their `start_retry_timeout`, so the guest has that long to come back.
pub struct ReconnectingSsh {
    current: tokio::sync::Mutex<SshCommunicator>,
    closed: AtomicBool,
}

impl ReconnectingSsh {
    /// Wraps a connected communicator.
    pub fn new(comm: SshCommunicator) -> Self {
        ReconnectingSsh { current: tokio::sync::Mutex::new(comm), closed: AtomicBool::new(false) }
    }

    /// The live connection: the current one, or a new one when it is gone.
    async fn live(&self) -> Result<SshCommunicator, CommError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(CommError::Disconnected("the SSH communicator was closed".into()));
        }
        let mut current = self.current.lock().await;
        let gone = current.is_closed() || lock(&current.inner.shared.disconnect_reason).is_some();
        if !gone {
            return Ok(current.clone());
        }
        let config = current.inner.config.clone();
        tracing::info!("the SSH connection to {} was lost; connecting again", config.addr());
        let fresh = SshCommunicator::connect(&config).await.map_err(|e| {
            CommError::Disconnected(format!(
                "the SSH connection to {} was lost (the guest rebooted?) and connecting again failed: {e}",
                config.addr()
            ))
        })?;
        if let Err(e) = fresh.start_forwarding().await {
            tracing::warn!("the port forwards could not be opened again after reconnecting: {e}");
        }
        tracing::info!("connected to {} again", config.addr());
        *current = fresh.clone();
        Ok(fresh)
    }

    /// Closes the connection; later operations fail instead of connecting again.
    pub async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.current.lock().await.close().await;
    }

    /// Whether [`close`](Self::close) was called or the current connection is gone.
    pub async fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst) || self.current.lock().await.is_closed()
    }
}

#[async_trait]
impl Communicator for ReconnectingSsh {
    async fn start(&self, cmd: RemoteCommand) -> Result<CommandHandle, CommError> {
        self.live().await?.start(cmd).await
    }
    async fn upload(&self, path: &str, data: Reader, info: Option<FileInfo>) -> Result<(), CommError> {
        self.live().await?.upload(path, data, info).await
    }
    async fn upload_dir(&self, dst: &str, src: &Path, exclude: &[String]) -> Result<(), CommError> {
        self.live().await?.upload_dir(dst, src, exclude).await
    }
    async fn download(&self, path: &str, out: Writer) -> Result<(), CommError> {
        self.live().await?.download(path, out).await
    }
    async fn download_dir(&self, src: &str, dst: &Path, exclude: &[String]) -> Result<(), CommError> {
        self.live().await?.download_dir(src, dst, exclude).await
    }
}
