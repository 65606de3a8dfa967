//! A running QEMU: the process, its exit, its QMP connection, its serial console and stderr.
//!
//! QEMU dies with the plugin (`PR_SET_PDEATHSIG`) and when this handle is dropped; stopping it is
//! otherwise the shutdown step's job (ACPI power button first, SIGKILL only after the timeout).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, watch};

use super::process;
use super::qmp::{Qmp, QmpError};

/// Lines of QEMU's stderr kept for error messages.
const STDERR_LINES: usize = 40;

/// Errors starting QEMU.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The binary could not be started.
    #[error("cannot start {binary}: {reason} (install qemu-system-x86, or set qemu_binary)")]
    Spawn {
        /// The binary.
        binary: String,
        /// Why.
        reason: String,
    },
    /// QEMU exited right away.
    #[error("QEMU exited at start ({status}):\n{stderr}")]
    Exited {
        /// Exit status.
        status: String,
        /// What QEMU printed.
        stderr: String,
    },
    /// The QMP socket did not answer.
    #[error("QEMU started but its QMP socket did not answer: {0}")]
    Qmp(#[from] QmpError),
}

/// A running QEMU process.
pub struct QemuProcess {
    pid: u32,
    exit: watch::Receiver<Option<String>>,
    kill: mpsc::UnboundedSender<()>,
    /// The QMP connection.
    pub qmp: Qmp,
    serial_log: PathBuf,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl std::fmt::Debug for QemuProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QemuProcess").field("pid", &self.pid).finish_non_exhaustive()
    }
}

impl QemuProcess {
    /// Starts `binary argv…` and connects to its QMP socket. If QEMU exits before QMP answers,
    /// the error carries QEMU's stderr (e.g. "Could not set up host forwarding rule").
    pub async fn launch(
        binary: &str,
        argv: &[String],
        qmp_socket: &Path,
        serial_log: &Path,
    ) -> Result<QemuProcess, LaunchError> {
        let _ = std::fs::remove_file(qmp_socket);
        let mut child = process::command(binary)
            .args(argv)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| LaunchError::Spawn { binary: binary.to_string(), reason: e.to_string() })?;
        let pid = child.id().unwrap_or(0);
        tracing::info!(pid, "QEMU started");
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward_lines(out, None));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward_lines(err, Some(stderr.clone())));
        }
        let (exit_tx, exit_rx) = watch::channel(None);
        let (kill_tx, mut kill_rx) = mpsc::unbounded_channel::<()>();
        tokio::spawn(async move {
            let status = tokio::select! {
                s = child.wait() => s,
                _ = kill_rx.recv() => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            let text = match status {
                Ok(s) => s.to_string(),
                Err(e) => format!("unknown exit ({e})"),
            };
            tracing::info!(pid, "QEMU ended: {text}");
            let _ = exit_tx.send(Some(text));
        });
        let mut exit = exit_rx.clone();
        let qmp = tokio::select! {
            q = Qmp::connect(qmp_socket, Duration::from_secs(30)) => q,
            _ = async { let _ = exit.wait_for(|e| e.is_some()).await; } => {
                // give the stderr reader a moment to collect QEMU's last words
                tokio::time::sleep(Duration::from_millis(50)).await;
                let status = exit_rx.borrow().clone().unwrap_or_default();
                let text = stderr.lock().expect("stderr lock").iter().cloned().collect::<Vec<_>>().join("\n");
                return Err(LaunchError::Exited { status, stderr: text });
            }
        };
        let qmp = match qmp {
            Ok(q) => q,
            Err(e) => {
                let _ = kill_tx.send(());
                return Err(e.into());
            }
        };
        Ok(QemuProcess { pid, exit: exit_rx, kill: kill_tx, qmp, serial_log: serial_log.to_path_buf(), stderr })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `Some(exit status)` once QEMU has exited.
    pub fn exit_status(&self) -> Option<String> {
        self.exit.borrow().clone()
    }

    /// Waits until QEMU exits and returns its exit status.
    pub async fn wait(&self) -> String {
        let mut rx = self.exit.clone();
        let r = match rx.wait_for(|e| e.is_some()).await {
            Ok(v) => v.clone().unwrap_or_default(),
            Err(_) => String::from("unknown exit"),
        };
        r
    }

    /// Waits up to `timeout` for QEMU to exit; `true` if it did.
    pub async fn wait_timeout(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.wait()).await.is_ok()
    }

    /// Kills QEMU (SIGKILL) and waits for it to be gone.
    pub async fn kill(&self) {
        if self.exit_status().is_none() {
            tracing::warn!(pid = self.pid, "killing QEMU");
            let _ = self.kill.send(());
            self.wait().await;
        }
    }

    /// The path of the serial console log.
    pub fn serial_log(&self) -> &Path {
        &self.serial_log
    }

    /// The last `n` lines of the serial console.
    pub fn serial_tail(&self, n: usize) -> Vec<String> {
        tail_lines(&self.serial_log, n)
    }

    /// The last lines QEMU printed on stderr.
    pub fn stderr_tail(&self) -> Vec<String> {
        self.stderr.lock().expect("stderr lock").iter().cloned().collect()
    }
}

impl Drop for QemuProcess {
    fn drop(&mut self) {
        if self.exit_status().is_none() {
            let _ = self.kill.send(());
        }
    }
}

async fn forward_lines<R: tokio::io::AsyncRead + Unpin>(r: R, keep: Option<Arc<Mutex<VecDeque<String>>>>) {
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!("qemu: {line}");
        if let Some(k) = &keep {
            let mut k = k.lock().expect("stderr lock");
            if k.len() == STDERR_LINES {
                k.pop_front();
            }
            k.push_back(line);
        }
    }
}

/// The last `n` lines of a text file (lossy UTF-8, control characters other than tab removed),
/// reading at most the last 64 KiB.
pub fn tail_lines(path: &Path, n: usize) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else { return Vec::new() };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 * 1024);
    let _ = f.seek(SeekFrom::Start(start));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<String> = text
        .lines()
        .map(|l| l.chars().filter(|c| !c.is_control() || *c == '\t').collect::<String>())
        .filter(|l| !l.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(sock: &Path, serial: &Path, extra: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = ["-accel", "tcg", "-nodefaults", "-display", "none", "-m", "32", "-S", "-qmp"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.push(format!("unix:{},server=on,wait=off", sock.display()));
        a.push("-serial".into());
        a.push(format!("file:{}", serial.display()));
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    }

    #[tokio::test]
    async fn launch_query_kill() {
        let dir = tempfile::tempdir().unwrap();
        let (sock, serial) = (dir.path().join("q.sock"), dir.path().join("serial.log"));
        let q = QemuProcess::launch("qemu-system-x86_64", &argv(&sock, &serial, &[]), &sock, &serial).await.unwrap();
        assert_eq!(q.qmp.status().await.unwrap(), "prelaunch");
        assert!(q.exit_status().is_none());
        assert!(!q.wait_timeout(Duration::from_millis(100)).await);
        q.kill().await;
        assert!(q.exit_status().is_some());
        assert!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(q.pid() as i32), None).is_err(), "still alive");
    }

    #[tokio::test]
    async fn early_exit_reports_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let (sock, serial) = (dir.path().join("q.sock"), dir.path().join("serial.log"));
        let e = QemuProcess::launch("qemu-system-x86_64", &argv(&sock, &serial, &["-no-such-option"]), &sock, &serial)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no-such-option"), "{e}");
        let e = QemuProcess::launch("/nonexistent/qemu", &[], &sock, &serial).await.unwrap_err();
        assert!(matches!(e, LaunchError::Spawn { .. }), "{e}");
    }

    #[tokio::test]
    async fn dropping_the_handle_kills_qemu() {
        let dir = tempfile::tempdir().unwrap();
        let (sock, serial) = (dir.path().join("q.sock"), dir.path().join("serial.log"));
        let q = QemuProcess::launch("qemu-system-x86_64", &argv(&sock, &serial, &[]), &sock, &serial).await.unwrap();
        let pid = nix::unistd::Pid::from_raw(q.pid() as i32);
        drop(q);
        for _ in 0..200 {
            if nix::sys::signal::kill(pid, None).is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("QEMU {pid} survived its handle");
    }

    #[test]
    fn tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.log");
        std::fs::write(&p, "a\r\n\x1b[0mb\n\nc\n").unwrap();
        assert_eq!(tail_lines(&p, 2), ["[0mb", "c"]);
        assert!(tail_lines(&dir.path().join("none"), 3).is_empty());
    }
}
