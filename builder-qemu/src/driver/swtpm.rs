//! A software TPM (`swtpm`, Debian package `swtpm`) for one build: its state lives in a temp
//! directory, QEMU reaches it through a unix control socket in that directory.
//!
//! swtpm dies with the plugin (`PR_SET_PDEATHSIG`, see [`super::process`]) and when its handle is
//! dropped; [`Swtpm::stop`] kills it by pid, waits for it and removes the state directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use super::process;

/// How long swtpm may take to create its control socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors starting swtpm.
#[derive(Debug, thiserror::Error)]
pub enum SwtpmError {
    /// swtpm is not installed.
    #[error("vtpm needs swtpm, which was not found: install it (apt-get install swtpm) or remove vtpm")]
    Missing,
    /// Something else went wrong.
    #[error("vtpm: {0}")]
    Failed(String),
}

/// TPM specification version emulated by swtpm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TpmVersion {
    /// TPM 1.2 (`use_tpm1`).
    V1_2,
    /// TPM 2.0 (default).
    V2,
}

/// A running swtpm.
pub struct Swtpm {
    child: tokio::process::Child,
    pid: u32,
    socket: PathBuf,
    dir: tempfile::TempDir,
    // after `dir`: released once the directory is gone
    _guard: packer_sdk::janitor::Guard,
}

impl std::fmt::Debug for Swtpm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swtpm").field("pid", &self.pid).field("socket", &self.socket).finish()
    }
}

/// The arguments of `swtpm` for a state directory and control socket.
pub fn args(state_dir: &Path, socket: &Path, version: TpmVersion) -> Vec<String> {
    let mut a = vec![
        "socket".to_string(),
        "--tpmstate".to_string(),
        format!("dir={}", state_dir.display()),
        "--ctrl".to_string(),
        format!("type=unixio,path={}", socket.display()),
    ];
    if version == TpmVersion::V2 {
        a.push("--tpm2".to_string());
    }
    a
}

impl Swtpm {
    /// Starts `binary` (normally `swtpm`) with a fresh state directory under `temp_dir`, and waits
    /// until its control socket exists.
    pub async fn start(binary: &str, temp_dir: &Path, version: TpmVersion) -> Result<Swtpm, SwtpmError> {
        let dir = tempfile::Builder::new().prefix("qemu-rs-vtpm-").tempdir_in(temp_dir).map_err(|e| {
            SwtpmError::Failed(format!("cannot create the TPM state directory in {}: {e}", temp_dir.display()))
        })?;
        let _guard = packer_sdk::janitor::guard(dir.path());
        let socket = dir.path().join("vtpm.sock");
        if socket.as_os_str().len() > 100 {
            return Err(SwtpmError::Failed(format!(
                "the socket path {} is too long for a unix socket; set TMPDIR to a shorter directory",
                socket.display()
            )));
        }
        let argv = args(dir.path(), &socket, version);
        tracing::info!("Executing {binary} {}", argv.join(" "));
        let mut child = process::command(binary)
            .args(&argv)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => SwtpmError::Missing,
                _ => SwtpmError::Failed(format!("cannot start {binary}: {e}")),
            })?;
        let pid = child.id().unwrap_or(0);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        for out in [
            child.stdout.take().map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child.stderr.take().map(|e| Box::new(e) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(out).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::info!("swtpm: {line}");
                    let _ = tx.send(line);
                }
            });
        }
        drop(tx);
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if socket.exists() {
                tracing::info!(pid, "swtpm started, control socket {}", socket.display());
                return Ok(Swtpm { child, pid, socket, dir, _guard });
            }
            if let Ok(Some(status)) = child.try_wait() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let mut said = Vec::new();
                while let Ok(l) = rx.try_recv() {
                    said.push(l);
                }
                return Err(SwtpmError::Failed(format!("swtpm exited at start ({status}): {}", said.join("\n"))));
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(SwtpmError::Failed(format!(
                    "swtpm did not create its control socket {} within {START_TIMEOUT:?}",
                    socket.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The control socket QEMU connects to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Kills swtpm (SIGKILL, by its pid), waits for it and removes its state directory.
    pub async fn stop(mut self) {
        if let Ok(None) = self.child.try_wait() {
            tracing::info!(pid = self.pid, "stopping swtpm");
            let _ = self.child.start_kill();
        }
        let _ = self.child.wait().await;
        let path = self.dir.path().to_path_buf();
        if let Err(e) = self.dir.close() {
            tracing::warn!("cannot remove the TPM state directory {}: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_like_packer() {
        let a = args(Path::new("/tmp/s"), Path::new("/tmp/s/vtpm.sock"), TpmVersion::V2);
        assert_eq!(a, ["socket", "--tpmstate", "dir=/tmp/s", "--ctrl", "type=unixio,path=/tmp/s/vtpm.sock", "--tpm2"]);
        let a = args(Path::new("/tmp/s"), Path::new("/tmp/s/vtpm.sock"), TpmVersion::V1_2);
        assert!(!a.contains(&"--tpm2".to_string()));
    }

    /// A real swtpm wired to a real QEMU (not started: `-S`): QEMU initialises the TPM backend
    /// at start-up, so `query-tpm` shows the device only when the wiring works.
    async fn qemu_sees_the_tpm(version: TpmVersion, device: &str) {
        let dir = tempfile::tempdir().unwrap();
        let tpm = Swtpm::start("swtpm", dir.path(), version).await.expect("swtpm starts (apt-get install swtpm)");
        let state_dir = tpm.state_dir().to_path_buf();
        assert!(tpm.socket().starts_with(&state_dir));
        let (sock, serial) = (dir.path().join("q.sock"), dir.path().join("serial.log"));
        let mut argv: Vec<String> = ["-accel", "tcg", "-nodefaults", "-display", "none", "-m", "64", "-S", "-qmp"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        argv.push(format!("unix:{},server=on,wait=off", sock.display()));
        argv.extend(["-chardev".into(), format!("socket,id=vtpm,path={}", tpm.socket().display())]);
        argv.extend(["-tpmdev".into(), "emulator,id=tpm0,chardev=vtpm".into()]);
        argv.extend(["-device".into(), format!("{device},tpmdev=tpm0")]);
        let q = crate::driver::qemu::QemuProcess::launch("qemu-system-x86_64", &argv, &sock, &serial)
            .await
            .expect("QEMU starts with the vTPM");
        let info = q.qmp.execute("query-tpm", None).await.unwrap();
        let text = info.to_string();
        assert!(text.contains(&format!("\"model\":\"{device}\"")), "{text}");
        assert!(text.contains("\"type\":\"emulator\"") && text.contains("\"id\":\"tpm0\""), "{text}");
        q.kill().await;
        let pid = nix::unistd::Pid::from_raw(tpm.pid() as i32);
        tpm.stop().await;
        assert!(nix::sys::signal::kill(pid, None).is_err(), "swtpm {pid} survived stop");
        assert!(!state_dir.exists(), "the TPM state {} was not removed", state_dir.display());
    }

    #[tokio::test]
    async fn tpm2_with_tpm_tis() {
        qemu_sees_the_tpm(TpmVersion::V2, "tpm-tis").await;
    }

    #[tokio::test]
    async fn tpm2_with_tpm_crb() {
        qemu_sees_the_tpm(TpmVersion::V2, "tpm-crb").await;
    }

    #[tokio::test]
    async fn tpm1_2_with_tpm_tis() {
        qemu_sees_the_tpm(TpmVersion::V1_2, "tpm-tis").await;
    }

    #[tokio::test]
    async fn dropping_the_handle_kills_swtpm() {
        let dir = tempfile::tempdir().unwrap();
        let tpm = Swtpm::start("swtpm", dir.path(), TpmVersion::V2).await.unwrap();
        let pid = nix::unistd::Pid::from_raw(tpm.pid() as i32);
        drop(tpm);
        for _ in 0..200 {
            if nix::sys::signal::kill(pid, None).is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("swtpm {pid} survived its handle");
    }

    #[tokio::test]
    async fn missing_binary_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = Swtpm::start("/nonexistent/swtpm", dir.path(), TpmVersion::V2).await.unwrap_err();
        assert!(e.to_string().contains("apt-get install swtpm"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "state directory left behind");
    }
}
