//! The [`Communicator`] trait: how provisioners reach a machine (run a command, move files).
//!
//! Implementations: the RPC client (a provisioner using the communicator Packer core hands it,
//! in `rpc::communicator`) and the SSH communicator a builder connects to its guest.

pub mod ssh;

use std::path::Path;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

/// A byte source for stdin or uploads.
pub type Reader = Box<dyn AsyncRead + Send + Unpin>;
/// A byte sink for stdout/stderr or downloads.
pub type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// Metadata of an uploaded file (Go's `os.FileInfo` as Packer sends it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileInfo {
    /// Base name of the file.
    pub name: String,
    /// Size in bytes.
    pub size: i64,
    /// Go `os.FileMode`: permission bits plus type bits (directory = 1 << 31).
    pub mode: u32,
}

/// A command to run on the remote machine.
pub struct RemoteCommand {
    /// The command line, run by the remote shell.
    pub command: String,
    /// What the command reads on stdin (`None`: empty stdin).
    pub stdin: Option<Reader>,
    /// Where the command's stdout goes (`None`: discarded).
    pub stdout: Option<Writer>,
    /// Where the command's stderr goes (`None`: discarded).
    pub stderr: Option<Writer>,
}

impl RemoteCommand {
    /// A command with no stdin and discarded output.
    pub fn new(command: impl Into<String>) -> Self {
        RemoteCommand { command: command.into(), stdin: None, stdout: None, stderr: None }
    }
}

impl std::fmt::Debug for RemoteCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteCommand").field("command", &self.command).finish_non_exhaustive()
    }
}

/// A started remote command; [`CommandHandle::wait`] gives its exit status.
#[derive(Debug)]
pub struct CommandHandle {
    exit: tokio::sync::oneshot::Receiver<Result<i32, CommError>>,
}

impl CommandHandle {
    /// Creates a handle and the sender the communicator completes when the command ends.
    pub fn new() -> (Self, tokio::sync::oneshot::Sender<Result<i32, CommError>>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (CommandHandle { exit: rx }, tx)
    }

    /// Waits for the command to end and returns its exit status. Its stdout and stderr writers
    /// have been flushed and closed by then.
    pub async fn wait(self) -> Result<i32, CommError> {
        match self.exit.await {
            Ok(r) => r,
            Err(_) => Err(CommError::Disconnected("the command's exit status was lost".into())),
        }
    }
}

/// Errors of a communicator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommError {
    /// The connection to the machine was lost (the command's outcome is unknown).
    #[error("connection lost: {0}")]
    Disconnected(String),
    /// A file transfer failed.
    #[error("file transfer failed: {0}")]
    Transfer(String),
    /// The operation is not supported by this communicator.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// Any other failure, with its message.
    #[error("{0}")]
    Other(String),
}

/// How provisioners reach a machine. Mirrors Packer's `packersdk.Communicator`.
#[async_trait]
pub trait Communicator: Send + Sync {
    /// Starts `cmd` and returns as soon as it runs; the handle gives its exit status.
    async fn start(&self, cmd: RemoteCommand) -> Result<CommandHandle, CommError>;
    /// Uploads everything `data` yields to `path` on the machine.
    async fn upload(&self, path: &str, data: Reader, info: Option<FileInfo>) -> Result<(), CommError>;
    /// Uploads the local directory `src` to `dst` on the machine (rsync semantics for a
    /// trailing `/` on `src`), skipping `exclude` patterns.
    async fn upload_dir(&self, dst: &str, src: &Path, exclude: &[String]) -> Result<(), CommError>;
    /// Downloads the remote file `path` into `out`.
    async fn download(&self, path: &str, out: Writer) -> Result<(), CommError>;
    /// Downloads the remote directory `src` into the local directory `dst`.
    async fn download_dir(&self, src: &str, dst: &Path, exclude: &[String]) -> Result<(), CommError>;
}
