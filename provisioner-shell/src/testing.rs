//! Test helpers: a real communicator that runs commands on this machine with `sh -c`, and a
//! Ui that records what it is told.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use packer_sdk::communicator::{CommError, CommandHandle, Communicator, FileInfo, Reader, RemoteCommand, Writer};
use packer_sdk::ui::{ProgressBar, Ui};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

/// Runs commands with `sh -c` in `dir` on this machine; uploads write local files. Dropping a
/// command's [`CommandHandle`] kills its process group.
#[derive(Debug)]
pub struct LocalCommunicator {
    /// Working directory of the commands.
    pub dir: PathBuf,
    /// Every command started, in order.
    pub commands: Mutex<Vec<String>>,
}

impl LocalCommunicator {
    pub fn new(dir: &Path) -> Self {
        LocalCommunicator { dir: dir.to_path_buf(), commands: Mutex::new(Vec::new()) }
    }
}

async fn pump(out: Option<tokio::process::ChildStdout>, w: Option<Writer>) {
    if let (Some(mut r), Some(mut w)) = (out, w) {
        let _ = tokio::io::copy(&mut r, &mut w).await;
        let _ = w.shutdown().await;
    }
}

async fn pump_err(out: Option<tokio::process::ChildStderr>, w: Option<Writer>) {
    if let (Some(mut r), Some(mut w)) = (out, w) {
        let _ = tokio::io::copy(&mut r, &mut w).await;
        let _ = w.shutdown().await;
    }
}

#[async_trait]
impl Communicator for LocalCommunicator {
    async fn start(&self, cmd: RemoteCommand) -> Result<CommandHandle, CommError> {
        self.commands.lock().unwrap().push(cmd.command.clone());
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd.command)
            .current_dir(&self.dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| CommError::Other(format!("spawning sh: {e}")))?;
        let pid = child.id().map(|p| p as i32);
        let (handle, mut tx) = CommandHandle::new();
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let (w_out, w_err) = (cmd.stdout, cmd.stderr);
        tokio::spawn(async move {
            let run = async {
                tokio::join!(pump(stdout, w_out), pump_err(stderr, w_err));
                child.wait().await
            };
            let outcome = tokio::select! {
                status = run => Some(status),
                _ = tx.closed() => None,
            };
            match outcome {
                Some(Ok(s)) => {
                    use std::os::unix::process::ExitStatusExt;
                    let _ = tx.send(Ok(s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))));
                }
                Some(Err(e)) => {
                    let _ = tx.send(Err(CommError::Other(e.to_string())));
                }
                None => {
                    if let Some(pid) = pid {
                        let _ = nix::sys::signal::killpg(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
        });
        Ok(handle)
    }

    async fn upload(&self, path: &str, mut data: Reader, info: Option<FileInfo>) -> Result<(), CommError> {
        let mut buf = Vec::new();
        data.read_to_end(&mut buf).await.map_err(|e| CommError::Transfer(e.to_string()))?;
        let path = self.dir.join(path);
        tokio::fs::write(&path, &buf).await.map_err(|e| CommError::Transfer(e.to_string()))?;
        let mode = info.map(|i| i.mode & 0o7777).unwrap_or(0o644);
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .await
            .map_err(|e| CommError::Transfer(e.to_string()))
    }

    async fn upload_dir(&self, _dst: &str, _src: &Path, _exclude: &[String]) -> Result<(), CommError> {
        Err(CommError::Unsupported("upload_dir in the local test communicator".into()))
    }

    async fn download(&self, path: &str, mut out: Writer) -> Result<(), CommError> {
        let data = tokio::fs::read(self.dir.join(path)).await.map_err(|e| CommError::Transfer(e.to_string()))?;
        out.write_all(&data).await.map_err(|e| CommError::Transfer(e.to_string()))?;
        out.shutdown().await.map_err(|e| CommError::Transfer(e.to_string()))
    }

    async fn download_dir(&self, _src: &str, _dst: &Path, _exclude: &[String]) -> Result<(), CommError> {
        Err(CommError::Unsupported("download_dir in the local test communicator".into()))
    }
}

/// Wraps a communicator, simulating a machine that is rebooting: the first `fail_uploads`
/// uploads fail with a lost connection; if `disconnect_scripts` is set, commands whose text
/// contains it run to completion but report a lost connection instead of their status.
pub struct FlakyCommunicator {
    pub inner: LocalCommunicator,
    pub fail_uploads: AtomicUsize,
    pub disconnect_scripts: Option<String>,
}

#[async_trait]
impl Communicator for FlakyCommunicator {
    async fn start(&self, cmd: RemoteCommand) -> Result<CommandHandle, CommError> {
        let disconnect = self.disconnect_scripts.as_ref().is_some_and(|s| cmd.command.contains(s.as_str()));
        let inner = self.inner.start(cmd).await?;
        if !disconnect {
            return Ok(inner);
        }
        let (handle, tx) = CommandHandle::new();
        tokio::spawn(async move {
            let _ = inner.wait().await;
            let _ = tx.send(Err(CommError::Disconnected("session closed without an exit status".into())));
        });
        Ok(handle)
    }

    async fn upload(&self, path: &str, data: Reader, info: Option<FileInfo>) -> Result<(), CommError> {
        let left = self.fail_uploads.load(Ordering::SeqCst);
        if left > 0 {
            self.fail_uploads.store(left - 1, Ordering::SeqCst);
            return Err(CommError::Disconnected("connection refused (machine rebooting)".into()));
        }
        self.inner.upload(path, data, info).await
    }

    async fn upload_dir(&self, dst: &str, src: &Path, exclude: &[String]) -> Result<(), CommError> {
        self.inner.upload_dir(dst, src, exclude).await
    }

    async fn download(&self, path: &str, out: Writer) -> Result<(), CommError> {
        self.inner.download(path, out).await
    }

    async fn download_dir(&self, src: &str, dst: &Path, exclude: &[String]) -> Result<(), CommError> {
        self.inner.download_dir(src, dst, exclude).await
    }
}

/// What a [`RecordingUi`] was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UiEvent {
    Say(String),
    Message(String),
    Error(String),
}

/// A Ui recording every call.
#[derive(Debug, Default)]
pub struct RecordingUi {
    pub events: Mutex<Vec<UiEvent>>,
    changed: Notify,
}

impl RecordingUi {
    pub fn events(&self) -> Vec<UiEvent> {
        self.events.lock().unwrap().clone()
    }

    /// The `message` lines (a command's stdout).
    pub fn messages(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                UiEvent::Message(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    /// The `error` lines (a command's stderr).
    pub fn errors(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                UiEvent::Error(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    /// Waits until some event satisfies `pred`.
    pub async fn wait_for(&self, pred: impl Fn(&UiEvent) -> bool) {
        loop {
            let notified = self.changed.notified();
            if self.events().iter().any(&pred) {
                return;
            }
            notified.await;
        }
    }

    fn push(&self, e: UiEvent) {
        self.events.lock().unwrap().push(e);
        self.changed.notify_waiters();
    }
}

struct NoBar;

#[async_trait]
impl ProgressBar for NoBar {
    async fn add(&self, _n: i64) {}
    async fn close(&self) {}
}

#[async_trait]
impl Ui for RecordingUi {
    async fn say(&self, message: &str) {
        self.push(UiEvent::Say(message.to_string()));
    }
    async fn message(&self, message: &str) {
        self.push(UiEvent::Message(message.to_string()));
    }
    async fn error(&self, message: &str) {
        self.push(UiEvent::Error(message.to_string()));
    }
    async fn machine(&self, _category: &str, _args: &[String]) {}
    async fn track_progress(&self, _src: &str, _current: i64, _total: i64) -> Box<dyn ProgressBar> {
        Box::new(NoBar)
    }
}
