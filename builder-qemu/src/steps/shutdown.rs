//! Stops the guest at the end of the build and waits for QEMU to exit.
//!
//! Three ways, chosen from the configuration:
//! - `shutdown_command` set: the command runs through the SSH communicator (its output is shown
//!   to the user, its exit status ignored: the connection dropping mid-command is expected);
//! - no command, `communicator = "ssh"`: the ACPI power button is pressed over QMP
//!   (`system_powerdown`), again every [`POWERDOWN_INTERVAL`] in case a busy guest missed it —
//!   a deliberate deviation from Packer, which SIGKILLs QEMU and loses the guest's unwritten data;
//! - `communicator = "none"`: the guest must power itself off.
//!
//! In every case QEMU gets `shutdown_timeout` to exit. When it does not, it is killed (SIGKILL)
//! and the build **fails**: a disk whose guest did not shut down cleanly may be inconsistent, and
//! qemu-rs does not ship it. QEMU ending abnormally (killed by a signal, non-zero exit) fails the
//! build for the same reason. The communicator is closed before the step returns.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use packer_sdk::communicator::{CommandHandle, Communicator, RemoteCommand};
use packer_sdk::step::{Step, StepContext, StepError};
use packer_sdk::ui::Ui;
use tokio::io::AsyncBufReadExt;

use crate::config::{CommunicatorType, Config};
use crate::driver::qemu::QemuProcess;
use crate::state::BuildState;

/// How often the ACPI power button is pressed again while the guest has not powered off.
pub const POWERDOWN_INTERVAL: Duration = Duration::from_secs(5);

/// How long to wait, after QEMU exited, for the shutdown command's last output and exit status.
const COMMAND_DRAIN: Duration = Duration::from_secs(5);

/// How long closing the communicator may take (the guest is gone, the connection may be dead).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serial console lines shown when the guest does not power off.
const SERIAL_LINES: usize = 15;

/// The QEMU exit status of a clean exit (the guest powered off), as [`QemuProcess`] reports it.
const CLEAN_EXIT: &str = "exit status: 0";

/// How the guest is asked to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShutdownMethod {
    /// Run this command through the communicator.
    Command(String),
    /// Press the ACPI power button over QMP, repeatedly.
    PowerButton,
    /// Wait for the guest to power itself off (`communicator = "none"`).
    WaitForGuest,
}

/// The shutdown step.
#[derive(Debug, Clone)]
pub struct Shutdown {
    method: ShutdownMethod,
    timeout: Duration,
    powerdown_interval: Duration,
}

impl Shutdown {
    /// The step for `config` (`shutdown_command`, `shutdown_timeout`, `communicator`).
    pub fn new(config: &Config) -> Self {
        let method = if !config.shutdown_command.is_empty() {
            ShutdownMethod::Command(config.shutdown_command.clone())
        } else if config.communicator == CommunicatorType::None {
            ShutdownMethod::WaitForGuest
        } else {
            ShutdownMethod::PowerButton
        };
        Shutdown::with_method(method, config.shutdown_timeout.to_std())
    }

    /// A step using `method` and waiting up to `timeout` for QEMU to exit.
    pub fn with_method(method: ShutdownMethod, timeout: Duration) -> Self {
        Shutdown { method, timeout, powerdown_interval: POWERDOWN_INTERVAL }
    }

    /// Changes how often the power button is pressed again (default [`POWERDOWN_INTERVAL`]).
    pub fn powerdown_interval(mut self, interval: Duration) -> Self {
        self.powerdown_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// The method this step uses.
    pub fn method(&self) -> &ShutdownMethod {
        &self.method
    }

    /// Presses the power button now and every `powerdown_interval`; never returns (the caller
    /// races it against QEMU's exit).
    async fn press_power_button(&self, qemu: &QemuProcess, ui: &dyn Ui) {
        let mut presses = 0u32;
        loop {
            match qemu.qmp.system_powerdown().await {
                Ok(()) => {
                    presses += 1;
                    if presses > 1 {
                        tracing::info!(presses, "pressed the ACPI power button again");
                    }
                }
                // QEMU is on its way out; the exit watch will tell.
                Err(crate::driver::qmp::QmpError::Closed) => {}
                Err(e) => {
                    if presses == 0 {
                        ui.error(&format!("Could not press the ACPI power button: {e}")).await;
                    }
                    tracing::warn!("system_powerdown failed: {e}");
                }
            }
            tokio::time::sleep(self.powerdown_interval).await;
        }
    }
}

/// Starts `command` on `comm` with stdout and stderr forwarded line by line to `ui.message`.
/// Returns the command's handle and the task forwarding its output.
async fn start_streaming(
    comm: &dyn Communicator,
    command: &str,
    ui: Arc<dyn Ui>,
) -> Result<(CommandHandle, tokio::task::JoinHandle<()>), packer_sdk::communicator::CommError> {
    let (out_w, out_r) = tokio::io::duplex(16 * 1024);
    let (err_w, err_r) = tokio::io::duplex(16 * 1024);
    let mut cmd = RemoteCommand::new(command);
    cmd.stdout = Some(Box::new(out_w));
    cmd.stderr = Some(Box::new(err_w));
    let handle = comm.start(cmd).await?;
    let forward = tokio::spawn(async move {
        let forward_one = |r: tokio::io::DuplexStream, ui: Arc<dyn Ui>| async move {
            let mut lines = tokio::io::BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                ui.message(&line).await;
            }
        };
        tokio::join!(forward_one(out_r, ui.clone()), forward_one(err_r, ui));
    });
    Ok((handle, forward))
}

#[async_trait]
impl Step<BuildState> for Shutdown {
    fn name(&self) -> &'static str {
        "shutdown"
    }

    async fn run(&self, ctx: &StepContext, state: &mut BuildState) -> Result<(), StepError> {
        let result = self.shut_down(ctx, state).await;
        // The guest is gone (or going): the SSH connection is of no further use.
        if let Some(comm) = state.comm.take() {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, comm.close()).await;
        }
        result
    }
}

impl Shutdown {
    async fn shut_down(&self, ctx: &StepContext, state: &mut BuildState) -> Result<(), StepError> {
        let Some(qemu) = state.qemu.as_ref() else {
            return Err(StepError::failed(
                "cannot shut down: no QEMU process is recorded in the build state (a bug in qemu-rs; please report it)",
            ));
        };
        if let Some(status) = qemu.exit_status() {
            // The guest powered off during provisioning (or QEMU died): judge how it ended.
            tracing::info!("QEMU had already exited before the shutdown step ({status})");
            return check_exit(&status, qemu);
        }
        let timeout = self.timeout;
        let mut command: Option<(CommandHandle, tokio::task::JoinHandle<()>)> = None;
        let what = match &self.method {
            ShutdownMethod::Command(cmd) => {
                let Some(comm) = state.comm.clone() else {
                    return Err(StepError::failed(
                        "cannot run shutdown_command: no communicator is connected (a bug in qemu-rs; please report it)",
                    ));
                };
                ctx.ui.say("Gracefully halting virtual machine...").await;
                tracing::info!("running shutdown_command: {cmd}");
                let started = start_streaming(comm.as_ref(), cmd, ctx.ui.clone()).await.map_err(|e| {
                    StepError::failed(format!(
                        "could not start shutdown_command {cmd:?}: {e}. Check that the guest is still reachable \
                         over SSH and that the command exists in the guest"
                    ))
                })?;
                command = Some(started);
                "after shutdown_command"
            }
            ShutdownMethod::PowerButton => {
                ctx.ui.say("Pressing the ACPI power button (no shutdown_command set)...").await;
                "after the ACPI power button was pressed"
            }
            ShutdownMethod::WaitForGuest => {
                ctx.ui.say("Waiting for the guest to power itself off...").await;
                "while waiting for the guest to power itself off"
            }
        };
        let press = async {
            if self.method == ShutdownMethod::PowerButton {
                self.press_power_button(qemu, ctx.ui.as_ref()).await
            } else {
                std::future::pending::<()>().await
            }
        };
        let exited = tokio::select! {
            status = qemu.wait() => Some(status),
            _ = press => None, // never completes
            _ = tokio::time::sleep(timeout) => None,
            _ = ctx.cancel.cancelled() => return Err(StepError::Cancelled),
        };
        if let Some((handle, forward)) = command {
            // The command's output and status arrive before or just after QEMU's end; don't wait
            // long for a connection that may be dead.
            let drain = async {
                match handle.wait().await {
                    Ok(code) => tracing::info!("shutdown_command exited with status {code} (ignored)"),
                    Err(e) => tracing::info!("shutdown_command: {e} (expected while the guest powers off)"),
                }
                let _ = forward.await;
            };
            let _ = tokio::time::timeout(COMMAND_DRAIN, drain).await;
        }
        match exited {
            Some(status) => {
                tracing::info!("QEMU exited: {status}");
                check_exit(&status, qemu)
            }
            None => {
                let serial = qemu.serial_tail(SERIAL_LINES);
                ctx.ui
                    .error(&format!(
                        "QEMU did not exit within shutdown_timeout ({}) {what}; killing it",
                        go_duration(timeout)
                    ))
                    .await;
                qemu.kill().await;
                Err(StepError::failed(timeout_message(&self.method, timeout, what, &serial)))
            }
        }
    }
}

/// Fails the step unless QEMU exited cleanly.
fn check_exit(status: &str, qemu: &QemuProcess) -> Result<(), StepError> {
    if status == CLEAN_EXIT {
        return Ok(());
    }
    let mut msg = format!(
        "QEMU ended abnormally ({status}) instead of the guest powering off; the disk may be inconsistent, so the \
         build stops. Look at QEMU's messages and the serial console ({}) for the cause",
        qemu.serial_log().display()
    );
    let stderr = qemu.stderr_tail();
    if !stderr.is_empty() {
        msg.push_str(":\n");
        msg.push_str(&stderr.join("\n"));
    }
    Err(StepError::failed(msg))
}

/// `d` written like Packer writes durations (`5m0s`).
fn go_duration(d: Duration) -> String {
    packer_sdk::config::Duration::from_nanos(d.as_nanos().min(i64::MAX as u128) as i64).to_string()
}

/// The error of a shutdown that timed out: what happened, how to fix it, the serial console.
fn timeout_message(method: &ShutdownMethod, timeout: Duration, what: &str, serial: &[String]) -> String {
    let shown = go_duration(timeout);
    let hint = match method {
        ShutdownMethod::Command(_) => {
            "check that shutdown_command really powers the guest off (e.g. \"sudo shutdown -P now\"; sudo may need \
             a password or a TTY), or raise shutdown_timeout"
        }
        ShutdownMethod::PowerButton => {
            "the guest ignored the ACPI power button: install/enable acpid or systemd-logind in the image, or set \
             shutdown_command (e.g. \"sudo shutdown -P now\"), or raise shutdown_timeout"
        }
        ShutdownMethod::WaitForGuest => {
            "with communicator = \"none\" the guest must power itself off (e.g. cloud-init power_state or the \
             installer's poweroff option); check that it does, or raise shutdown_timeout"
        }
    };
    let mut msg = format!(
        "QEMU did not exit within shutdown_timeout ({shown}) {what}, so it was killed; the disk may be \
         inconsistent and the build fails. To fix: {hint}"
    );
    if !serial.is_empty() {
        msg.push_str(".\nLast lines of the serial console:\n");
        msg.push_str(&serial.join("\n"));
    }
    msg
}

#[cfg(test)]
#[path = "../../../sdk/tests/common/sshd.rs"]
mod sshd;

/// A [`Ui`] that records what it is told, and a QEMU that runs no guest, for the tests of the steps.
#[cfg(test)]
pub(crate) mod test_ui {
    use async_trait::async_trait;
    use packer_sdk::ui::{ProgressBar, Ui};
    use std::sync::Mutex;

    use crate::driver::qemu::QemuProcess;
    use std::path::Path;

    /// A paused QEMU (`-S`, no guest code runs, no ACPI OS): it only exits when told to.
    pub(crate) async fn paused_qemu(dir: &Path) -> QemuProcess {
        let (sock, serial) = (dir.join("q.sock"), dir.join("serial.log"));
        let mut argv: Vec<String> = ["-accel", "tcg", "-nodefaults", "-display", "none", "-m", "32", "-S", "-qmp"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        argv.push(format!("unix:{},server=on,wait=off", sock.display()));
        argv.extend(["-serial".to_string(), format!("file:{}", serial.display())]);
        QemuProcess::launch("qemu-system-x86_64", &argv, &sock, &serial).await.expect("launch QEMU")
    }

    /// Records `say:`, `out:` (message) and `err:` lines.
    #[derive(Default)]
    pub(crate) struct Recorder(pub(crate) Mutex<Vec<String>>);

    impl Recorder {
        /// Everything recorded so far.
        pub(crate) fn lines(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }
    }

    struct NoBar;
    #[async_trait]
    impl ProgressBar for NoBar {
        async fn add(&self, _n: i64) {}
        async fn close(&self) {}
    }

    #[async_trait]
    impl Ui for Recorder {
        async fn say(&self, m: &str) {
            self.0.lock().unwrap().push(format!("say:{m}"));
        }
        async fn message(&self, m: &str) {
            self.0.lock().unwrap().push(format!("out:{m}"));
        }
        async fn error(&self, m: &str) {
            self.0.lock().unwrap().push(format!("err:{m}"));
        }
        async fn machine(&self, _c: &str, _a: &[String]) {}
        async fn track_progress(&self, _s: &str, _c: i64, _t: i64) -> Box<dyn ProgressBar> {
            Box::new(NoBar)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_ui::{paused_qemu, Recorder};
    use super::*;
    use packer_sdk::communicator::ssh::{ReconnectingSsh, SshAuth, SshCommunicator, SshConfig};
    use packer_sdk::CancellationToken;

    fn ctx(ui: Arc<Recorder>, cancel: CancellationToken) -> StepContext {
        StepContext { ui, cancel }
    }

    fn alive(pid: u32) -> bool {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
    }

    #[test]
    fn method_from_config() {
        let mut c = Config { shutdown_timeout: packer_sdk::config::Duration::from_secs(7), ..Config::default() };
        assert_eq!(Shutdown::new(&c).method(), &ShutdownMethod::PowerButton);
        assert_eq!(Shutdown::new(&c).timeout, Duration::from_secs(7));
        c.communicator = CommunicatorType::None;
        assert_eq!(Shutdown::new(&c).method(), &ShutdownMethod::WaitForGuest);
        c.communicator = CommunicatorType::Ssh;
        c.shutdown_command = "sudo poweroff".into();
        assert_eq!(Shutdown::new(&c).method(), &ShutdownMethod::Command("sudo poweroff".into()));
    }

    /// The guest ignores the power button: the button is pressed (QEMU reports POWERDOWN), then
    /// on timeout QEMU is killed and the step fails.
    #[tokio::test]
    async fn power_button_ignored_times_out_kills_and_fails() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = BuildState { qemu: Some(paused_qemu(dir.path()).await), ..BuildState::default() };
        let qemu = state.qemu.as_ref().unwrap();
        let pid = qemu.pid();
        let mut events = qemu.qmp.events();
        let ui = Arc::new(Recorder::default());
        let step = Shutdown::with_method(ShutdownMethod::PowerButton, Duration::from_millis(1500))
            .powerdown_interval(Duration::from_millis(300));
        let err = step.run(&ctx(ui.clone(), CancellationToken::new()), &mut state).await.unwrap_err();
        let StepError::Failed(msg) = err else { panic!("expected a failure, got {err:?}") };
        assert!(msg.contains("did not exit within shutdown_timeout (1.5s)"), "{msg}");
        assert!(msg.contains("ACPI power button"), "{msg}");
        let qemu = state.qemu.as_ref().unwrap();
        assert!(qemu.exit_status().is_some(), "QEMU still running after the timeout");
        assert!(!alive(pid), "QEMU process {pid} survived");
        let mut powerdowns = 0;
        while let Ok(ev) = events.try_recv() {
            if ev.name == "POWERDOWN" {
                powerdowns += 1;
            }
        }
        assert!(powerdowns >= 1, "QEMU never saw system_powerdown");
        let said = ui.0.lock().unwrap().clone();
        assert!(said.iter().any(|l| l.starts_with("say:Pressing the ACPI power button")), "{said:?}");
        assert!(said.iter().any(|l| l.starts_with("err:QEMU did not exit")), "{said:?}");
    }

    /// communicator = none: the step returns as soon as the guest ends QEMU (here: QMP quit,
    /// which exits QEMU with status 0 like a guest power-off).
    #[tokio::test]
    async fn waits_for_the_guest_to_power_off() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = BuildState { qemu: Some(paused_qemu(dir.path()).await), ..BuildState::default() };
        let qmp = state.qemu.as_ref().unwrap().qmp.clone();
        let ui = Arc::new(Recorder::default());
        let step = Shutdown::with_method(ShutdownMethod::WaitForGuest, Duration::from_secs(600));
        let quitter = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            qmp.quit().await
        });
        step.run(&ctx(ui.clone(), CancellationToken::new()), &mut state).await.unwrap();
        quitter.await.unwrap().unwrap();
        assert_eq!(state.qemu.as_ref().unwrap().exit_status().as_deref(), Some(CLEAN_EXIT));
        assert!(ui.0.lock().unwrap().iter().any(|l| l == "say:Waiting for the guest to power itself off..."));
    }

    /// QEMU killed from outside (not a guest power-off) fails the build.
    #[tokio::test]
    async fn abnormal_qemu_end_fails() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = BuildState { qemu: Some(paused_qemu(dir.path()).await), ..BuildState::default() };
        let pid = state.qemu.as_ref().unwrap().pid();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
        let step = Shutdown::with_method(ShutdownMethod::WaitForGuest, Duration::from_secs(600));
        let err = step.run(&ctx(Arc::default(), CancellationToken::new()), &mut state).await.unwrap_err();
        assert!(err.to_string().contains("QEMU ended abnormally"), "{err}");
    }

    /// Cancelling the build interrupts the wait.
    #[tokio::test]
    async fn cancel_interrupts_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = BuildState { qemu: Some(paused_qemu(dir.path()).await), ..BuildState::default() };
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            c2.cancel();
        });
        let step = Shutdown::with_method(ShutdownMethod::PowerButton, Duration::from_secs(600));
        let err = tokio::time::timeout(Duration::from_secs(120), step.run(&ctx(Arc::default(), cancel), &mut state))
            .await
            .expect("the step ignored the cancellation")
            .unwrap_err();
        assert_eq!(err, StepError::Cancelled);
        // QEMU is left to the launch step's cleanup.
        state.qemu.as_ref().unwrap().kill().await;
    }

    /// shutdown_command runs over real SSH (a local sshd), its output reaches the UI, and the
    /// step returns once QEMU has exited; the communicator is closed afterwards. The command
    /// ends QEMU with SIGTERM, on which QEMU exits cleanly as on a guest power-off.
    #[tokio::test]
    async fn shutdown_command_over_ssh() {
        let sshd = sshd::Sshd::start();
        let dir = tempfile::tempdir().unwrap();
        let qemu = paused_qemu(dir.path()).await;
        let pid = qemu.pid();
        let config =
            SshConfig::new("127.0.0.1", sshd.port(), sshd.user(), SshAuth::PrivateKey(sshd.client_private_key()));
        let comm = Arc::new(ReconnectingSsh::new(
            SshCommunicator::connect(&config).await.unwrap_or_else(|e| panic!("{e}\n{}", sshd.log())),
        ));
        let mut state = BuildState { qemu: Some(qemu), comm: Some(comm.clone()), ..BuildState::default() };
        let ui = Arc::new(Recorder::default());
        let cmd = format!("echo going down; echo on-stderr >&2; kill -TERM {pid}; exit 3");
        let step = Shutdown::with_method(ShutdownMethod::Command(cmd), Duration::from_secs(600));
        step.run(&ctx(ui.clone(), CancellationToken::new()), &mut state).await.unwrap();
        assert_eq!(state.qemu.as_ref().unwrap().exit_status().as_deref(), Some(CLEAN_EXIT));
        assert!(state.comm.is_none(), "the communicator was not released");
        let said = ui.0.lock().unwrap().clone();
        assert!(said.contains(&"out:going down".to_string()), "{said:?}");
        assert!(said.contains(&"out:on-stderr".to_string()), "{said:?}");
        // closed: a new command is refused
        let r = comm.start(RemoteCommand::new("true")).await;
        let closed = match r {
            Err(_) => true,
            Ok(h) => h.wait().await.is_err(),
        };
        assert!(closed, "the SSH connection is still usable after the shutdown step");
    }

    /// A shutdown_command that does not power off: timeout, kill, failure naming the command fix.
    #[tokio::test]
    async fn shutdown_command_that_does_nothing_times_out() {
        let sshd = sshd::Sshd::start();
        let dir = tempfile::tempdir().unwrap();
        let qemu = paused_qemu(dir.path()).await;
        let config =
            SshConfig::new("127.0.0.1", sshd.port(), sshd.user(), SshAuth::PrivateKey(sshd.client_private_key()));
        let comm = Arc::new(ReconnectingSsh::new(
            SshCommunicator::connect(&config).await.unwrap_or_else(|e| panic!("{e}\n{}", sshd.log())),
        ));
        let mut state = BuildState { qemu: Some(qemu), comm: Some(comm), ..BuildState::default() };
        let step = Shutdown::with_method(ShutdownMethod::Command("true".into()), Duration::from_millis(500));
        let err = step.run(&ctx(Arc::default(), CancellationToken::new()), &mut state).await.unwrap_err();
        assert!(err.to_string().contains("shutdown_command really powers the guest off"), "{err}");
        assert!(state.qemu.as_ref().unwrap().exit_status().is_some());
        assert!(state.comm.is_none());
    }
}
