//! Step: type `boot_command` / `boot_steps` into the guest.
//!
//! Waits `boot_wait` (cancellable), then for each step renders the template variables
//! (`{{ .HTTPIP }}`, `{{ .HTTPPort }}`, `{{ .Name }}`, `{{ .SSHPublicKey }}`), parses the keys with
//! Packer's grammar and types them through QMP `input-send-event` (default) or VNC.
//!
//! What it reads from [`BuildState`] (and nothing else):
//! - `qemu` (its `qmp` connection) — for the QMP transport;
//! - `vnc_port` — for the VNC transport (it connects to `vnc_bind_address`, or 127.0.0.1 when that
//!   is a wildcard address);
//! - `http_ip`, `http_port` — `{{ .HTTPIP }}`, `{{ .HTTPPort }}`;
//! - `ssh_key` — `{{ .SSHPublicKey }}` (its `public_key_line`; empty without a key).
//!
//! It changes nothing in the state and has no cleanup. Rendered commands may hold passwords: they
//! are only logged at debug level; the UI shows the step descriptions only.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use packer_sdk::bootcommand::vnc::VncClient;
use packer_sdk::bootcommand::wait_for::{self, Segment};
use packer_sdk::bootcommand::{
    self, type_boot_command, DriverError, FlowDriver, FlowStats, Key, KeyDriver, KeyEvent, TypeError,
};
use packer_sdk::config::template::Template;
use packer_sdk::step::{Step, StepContext, StepError};
use packer_sdk::CancellationToken;

use crate::config::{Arch, BootTransport, Config};
use crate::driver::key_trace::{self, Ps2Feedback};
use crate::driver::qmp::Qmp;
use crate::driver::qmp_keys::{scancode_bytes, KeyPacing, Pacer, QmpKeyDriver, PS2_QUEUE_BYTES};
use crate::state::BuildState;

/// Pacing of VNC typing when `boot_key_interval` is not set: one key event at a time, 50 ms +
/// 0.25 ms per column after each, at most 300 ms (so a character — press and release — takes what
/// it takes over QMP, see [`KeyPacing::DEFAULT`]). Whole presses in one flush lost keys around
/// shifted characters on the test guest, because QEMU's VNC server delivers the events of a flush
/// spaced by its own `key-delay-ms`.
pub const VNC_DEFAULT_PACING: KeyPacing = KeyPacing {
    max_batch_bytes: 1,
    whole_presses: false,
    batch_pause: Duration::from_millis(50),
    per_column: Duration::from_micros(250),
    max_pause: Duration::from_millis(300),
};

/// QEMU's VNC server delivers a client's key events at least this far apart (its `key-delay-ms`
/// option, 10 ms by default in QEMU 7.2), holding the rest in its input queue.
pub const QEMU_VNC_KEY_DELAY: Duration = Duration::from_millis(10);

/// With flow control ([`BootTyping::feedback`]): how the events of one key press are sent — QMP all
/// at once (one `input-send-event`), VNC one at a time, [`QEMU_VNC_KEY_DELAY`] + 2 ms apart (the
/// events of a whole press in one flush lost keys around Shift; one at a time, QEMU's own spacing
/// is all the guest needs) — before the flow control waits for the guest to read them and pauses
/// by [`KeyPacing::DEFAULT`]'s column rule.
pub fn flow_inner_pacing(transport: BootTransport) -> KeyPacing {
    match transport {
        BootTransport::Qmp => KeyPacing { whole_presses: true, ..KeyPacing::batches(PS2_QUEUE_BYTES, Duration::ZERO) },
        BootTransport::Vnc => KeyPacing::batches(1, QEMU_VNC_KEY_DELAY + Duration::from_millis(2)),
    }
}

/// The pause after a key press with flow control: [`KeyPacing::DEFAULT`] by column, counted from
/// the moment the guest read the press.
pub fn flow_press_gap(column: usize) -> Duration {
    KeyPacing::DEFAULT.pause_at(column)
}

/// The pause after an Enter the guest has taken, before the next key (see
/// [`FlowDriver::with_line_gap`]): Packer's default key interval, which blind typing leaves after
/// every key, counted here from when the guest had the Enter.
pub const FLOW_LINE_GAP: Duration = PACKER_DEFAULT_KEY_INTERVAL;

/// Packer's default key interval: the value `prepare` gives `boot_key_interval` when neither it
/// nor `PACKER_KEY_INTERVAL` is set.
pub const PACKER_DEFAULT_KEY_INTERVAL: Duration = Duration::from_millis(100);

/// How the boot command is typed: through which transport, and how fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootTyping {
    /// QMP or VNC.
    pub transport: BootTransport,
    /// Batching and pauses.
    pub pacing: KeyPacing,
    /// Whether to type with flow control from QEMU's keyboard trace events (see
    /// [`crate::driver::key_trace`]): with the builder's own pacing, not with a user's interval.
    pub feedback: bool,
}

impl BootTyping {
    /// The typing of `config`. `packer_key_interval_env` is the value of `PACKER_KEY_INTERVAL`.
    ///
    /// An explicit key interval (`boot_key_interval`, or `PACKER_KEY_INTERVAL`) means Packer's
    /// pacing: one key event at a time, that interval after each. Otherwise the transport's
    /// batched default ([`KeyPacing::DEFAULT`], [`VNC_DEFAULT_PACING`]) is used. Because `prepare`
    /// turns an unset `boot_key_interval` into 100 ms, a value of exactly 100 ms with the variable
    /// unset is taken as "not set".
    pub fn from_config(config: &Config, packer_key_interval_env: Option<&str>) -> BootTyping {
        let interval = config.boot_key_interval.to_std();
        let env_set = packer_key_interval_env.is_some_and(|v| !v.trim().is_empty());
        let explicit = env_set || interval != PACKER_DEFAULT_KEY_INTERVAL;
        let pacing = match (explicit, config.boot_command_transport) {
            (true, _) => KeyPacing::per_event(interval),
            (false, BootTransport::Qmp) => KeyPacing::DEFAULT,
            (false, BootTransport::Vnc) => VNC_DEFAULT_PACING,
        };
        BootTyping { transport: config.boot_command_transport, pacing, feedback: !explicit }
    }
}

/// The values of the boot command's template variables.
#[derive(Clone, PartialEq, Eq)]
pub struct BootVars {
    /// `{{ .HTTPIP }}`.
    pub http_ip: String,
    /// `{{ .HTTPPort }}`.
    pub http_port: u16,
    /// `{{ .Name }}` (`vm_name`).
    pub name: String,
    /// `{{ .SSHPublicKey }}` (the `authorized_keys` line; empty without an SSH key).
    pub ssh_public_key: String,
}

impl std::fmt::Debug for BootVars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootVars")
            .field("http_ip", &self.http_ip)
            .field("http_port", &self.http_port)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl BootVars {
    /// The variables of a build: `http_ip`, `http_port` and `ssh_key` from `state`, `vm_name`.
    pub fn from_state(state: &BuildState, vm_name: &str) -> BootVars {
        BootVars {
            http_ip: state.http_ip.clone(),
            http_port: state.http_port,
            name: vm_name.to_string(),
            ssh_public_key: state.ssh_public_key_line(),
        }
    }

    /// Renders `command` (Go-template subset) with these values.
    pub fn render(&self, command: &str) -> Result<String, String> {
        let template = Template::parse(command).map_err(|e| e.to_string())?;
        let data = BTreeMap::from([
            ("HTTPIP", self.http_ip.clone()),
            ("HTTPPort", self.http_port.to_string()),
            ("Name", self.name.clone()),
            ("SSHPublicKey", self.ssh_public_key.clone()),
        ]);
        template.render(&data).map_err(|e| e.to_string())
    }
}

/// The scancode bytes a key event puts in the guest's PS/2 queue (2 for keys that have no US
/// key, which QEMU's VNC keymap may turn into two scancodes).
fn event_bytes(key: Key) -> usize {
    key.qcode().map(scancode_bytes).unwrap_or(2)
}

/// Paces a driver that sends every event at once (the VNC client): after each batch (see
/// [`KeyPacing`]) it flushes and pauses.
pub struct PacedDriver<D> {
    inner: D,
    pacer: Pacer,
}

impl<D: KeyDriver> PacedDriver<D> {
    /// Wraps `inner`.
    pub fn new(inner: D, pacing: KeyPacing) -> Self {
        PacedDriver { inner, pacer: Pacer::new(pacing) }
    }

    /// The wrapped driver.
    pub fn into_inner(self) -> D {
        self.inner
    }

    async fn end_batch(&mut self) -> Result<(), DriverError> {
        let pause = self.pacer.sent();
        self.inner.flush().await?;
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        Ok(())
    }
}

#[async_trait]
impl<D: KeyDriver> KeyDriver for PacedDriver<D> {
    async fn send(&mut self, ev: KeyEvent) -> Result<(), DriverError> {
        let (key, down) = match ev {
            KeyEvent::Down(k) => (k, true),
            KeyEvent::Up(k) => (k, false),
            KeyEvent::Wait(d) => {
                self.flush().await?;
                tokio::time::sleep(d).await;
                return Ok(());
            }
        };
        let bytes = event_bytes(key);
        if self.pacer.full_before(bytes) {
            self.end_batch().await?;
        }
        self.inner.send(ev).await?;
        if self.pacer.add(key, down, bytes) {
            self.end_batch().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), DriverError> {
        if self.pacer.pending() {
            self.end_batch().await
        } else {
            self.inner.flush().await
        }
    }
}

/// Parses an already rendered boot command and types it through `driver` (which does the pacing),
/// stopping when `cancel` fires. Returns the number of key presses typed. `<waitForSerial>` tokens
/// (see [`bootcommand::wait_for`]) wait on `serial`; without one they are an error.
pub async fn type_command(
    driver: &mut dyn KeyDriver,
    rendered: &str,
    serial: Option<&mut SerialWatch>,
    cancel: &CancellationToken,
) -> Result<usize, StepError> {
    let segments = wait_for::split(rendered).map_err(|e| StepError::failed(format!("boot_command: {e}")))?;
    let mut serial = serial;
    let mut presses = 0;
    for segment in segments {
        match segment {
            Segment::Keys(keys) => presses += type_keys(driver, &keys, cancel).await?,
            Segment::WaitForSerial { text, timeout } => {
                let watch = serial.as_deref_mut().ok_or_else(|| {
                    StepError::failed(
                        "boot_command: <waitForSerial> needs the serial console, which is not available here",
                    )
                })?;
                driver.flush().await.map_err(|e| StepError::failed(format!("typing the boot command failed: {e}")))?;
                watch.wait_for(&text, timeout, cancel).await?;
            }
        }
    }
    Ok(presses)
}

async fn type_keys(driver: &mut dyn KeyDriver, keys: &str, cancel: &CancellationToken) -> Result<usize, StepError> {
    let actions = bootcommand::parse(keys)
        .map_err(|e| StepError::failed(format!("the boot command does not parse after rendering: {e}")))?;
    let presses = actions.iter().filter(|a| matches!(a, bootcommand::Action::Press(_))).count();
    let typing = type_boot_command(driver, &actions, Duration::ZERO, cancel.clone());
    let r = tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(TypeError::Cancelled),
        r = typing => r,
    };
    match r {
        Ok(()) => Ok(presses),
        Err(TypeError::Cancelled) => Err(StepError::Cancelled),
        Err(e) => Err(StepError::failed(format!("{e}; check that QEMU is still running (see the serial log)"))),
    }
}

/// Watches the serial console log for `<waitForSerial>`: each wait looks at what the guest wrote
/// after the previous match (from the start of the log for the first), so text that appeared while
/// keys were typed counts.
#[derive(Debug)]
pub struct SerialWatch {
    path: PathBuf,
    from: usize,
}

/// How often the serial log is read while waiting.
const SERIAL_POLL: Duration = Duration::from_millis(50);

impl SerialWatch {
    /// Watches the log at `path` from its start.
    pub fn new(path: &Path) -> Self {
        SerialWatch { path: path.to_path_buf(), from: 0 }
    }

    /// Waits until the log shows `text` after the previous match, at most `timeout`.
    pub async fn wait_for(
        &mut self,
        text: &str,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<(), StepError> {
        tracing::debug!("boot command: waiting up to {timeout:?} for {text:?} on the serial console");
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let log = tokio::fs::read(&self.path).await.unwrap_or_default();
            if let Some(i) = log.get(self.from..).and_then(|rest| find(rest, text.as_bytes())) {
                self.from += i + text.len();
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StepError::failed(format!(
                    "boot_command: the serial console ({}) did not show {text:?} within {timeout:?} \
                     (<waitForSerial>); check the text, raise the timeout, or check that the guest writes to its \
                     serial port",
                    self.path.display()
                )));
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(StepError::Cancelled),
                _ = tokio::time::sleep(SERIAL_POLL) => {}
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The address to reach QEMU's VNC server at, given `vnc_bind_address`.
pub fn vnc_connect_host(bind_address: &str) -> String {
    match bind_address.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
        Ok(IpAddr::V6(ip)) => format!("[{ip}]"),
        Ok(ip) => ip.to_string(),
        Err(_) if bind_address.is_empty() => "127.0.0.1".to_string(),
        Err(_) => bind_address.to_string(),
    }
}

/// Types the boot command (see the module documentation for what it reads from the state).
pub struct TypeBootCommand<'a> {
    config: &'a Config,
    typing: BootTyping,
}

impl<'a> TypeBootCommand<'a> {
    /// The step for `config`, with the key interval from `config` and `PACKER_KEY_INTERVAL`.
    pub fn new(config: &'a Config) -> Self {
        let env = std::env::var(bootcommand::KEY_INTERVAL_ENV).ok();
        TypeBootCommand { config, typing: BootTyping::from_config(config, env.as_deref()) }
    }

    /// The step for `config` with explicit typing settings.
    pub fn with_typing(config: &'a Config, typing: BootTyping) -> Self {
        TypeBootCommand { config, typing }
    }

    /// How keys will be typed.
    pub fn typing(&self) -> BootTyping {
        self.typing
    }

    async fn driver(&self, state: &BuildState, pacing: KeyPacing) -> Result<Box<dyn KeyDriver>, StepError> {
        match self.typing.transport {
            BootTransport::Qmp => {
                let qemu = state.qemu.as_ref().ok_or_else(|| {
                    StepError::failed("cannot type the boot command: QEMU is not running (this is a bug in qemu-rs)")
                })?;
                Ok(Box::new(QmpKeyDriver::new(qemu.qmp.clone(), pacing)))
            }
            BootTransport::Vnc => {
                let port = state.vnc_port.ok_or_else(|| {
                    StepError::failed(
                        "cannot type the boot command over VNC: QEMU has no VNC server (remove disable_vnc, or \
                         set boot_command_transport = \"qmp\")",
                    )
                })?;
                let addr = format!("{}:{port}", vnc_connect_host(&self.config.vnc_bind_address));
                // vnc_use_password: the password the launch step set over QMP
                let password = state.vnc_password.as_ref().map(|p| p.expose().to_string());
                let client = VncClient::connect_tcp(&addr, password.as_deref()).await.map_err(|e| {
                    StepError::failed(format!(
                        "cannot connect to QEMU's VNC server at {addr} to type the boot command: {e} (or set \
                         boot_command_transport = \"qmp\")"
                    ))
                })?;
                Ok(Box::new(PacedDriver::new(client, pacing)))
            }
        }
    }
}

impl TypeBootCommand<'_> {
    /// The driver to type through: with flow control from QEMU's trace events when the typing
    /// wants it and this QEMU can trace; else blind, paced by [`BootTyping::pacing`].
    async fn typist(&self, state: &BuildState) -> Result<Typist, StepError> {
        if let (Some(qemu), Some(log), true) = (state.qemu.as_ref(), state.trace_log.as_ref(), self.typing.feedback) {
            match Ps2Feedback::start(qemu.qmp.clone(), log.path()).await {
                Ok(feedback) => {
                    // a BIOS keyboard buffer exists on x86 guests that boot without UEFI firmware
                    let feedback = match (self.config.arch, state.efi.is_none()) {
                        (Arch::X86_64, true) => feedback.with_bios_buffer(qemu.qmp.clone()).await,
                        _ => feedback,
                    };
                    let driver = match self.driver(state, flow_inner_pacing(self.typing.transport)).await {
                        Ok(d) => d,
                        Err(e) => {
                            key_trace::stop(&qemu.qmp).await;
                            return Err(e);
                        }
                    };
                    let flow = FlowDriver::new(driver, Box::new(feedback))
                        .with_press_gap(Box::new(flow_press_gap))
                        .with_line_gap(FLOW_LINE_GAP);
                    return Ok(Typist::Flow(flow, qemu.qmp.clone()));
                }
                Err(e) => tracing::info!("typing without feedback (blind pacing): {e}"),
            }
        }
        Ok(Typist::Blind(self.driver(state, self.typing.pacing).await?))
    }
}

/// The driver a boot command is typed through: blind (paced only), or with flow control.
pub enum Typist {
    /// Paced only.
    Blind(Box<dyn KeyDriver>),
    /// Paced and flow-controlled by QEMU's keyboard trace events (turned off by [`Typist::finish`]).
    Flow(FlowDriver<Box<dyn KeyDriver>>, Qmp),
}

impl Typist {
    /// Turns off what typing turned on; the flow-control counters, if any.
    pub async fn finish(&mut self) -> Option<FlowStats> {
        match self {
            Typist::Flow(flow, qmp) => {
                key_trace::stop(qmp).await;
                Some(flow.stats())
            }
            Typist::Blind(_) => None,
        }
    }
}

#[async_trait]
impl KeyDriver for Typist {
    async fn send(&mut self, ev: KeyEvent) -> Result<(), DriverError> {
        match self {
            Typist::Blind(d) => d.send(ev).await,
            Typist::Flow(d, _) => d.send(ev).await,
        }
    }

    async fn flush(&mut self) -> Result<(), DriverError> {
        match self {
            Typist::Blind(d) => d.flush().await,
            Typist::Flow(d, _) => d.flush().await,
        }
    }
}

#[async_trait]
impl Step<BuildState> for TypeBootCommand<'_> {
    fn name(&self) -> &'static str {
        "boot command"
    }

    async fn run(&self, ctx: &StepContext, state: &mut BuildState) -> Result<(), StepError> {
        let steps = self.config.boot_steps();
        if steps.is_empty() {
            return Ok(());
        }
        if state.warm_restore().is_some() {
            ctx.ui.say("Warm start: no boot wait and no boot command (the machine was restored past them)").await;
            return Ok(());
        }
        if self.config.disable_vnc == Some(true) {
            // as Packer: disable_vnc skips typing (prepare rejects boot_command with it)
            tracing::info!("disable_vnc is set: skipping the boot command");
            return Ok(());
        }
        let wait = self.config.boot_wait.to_std();
        if !wait.is_zero() {
            ctx.ui.say(&format!("Waiting {} for boot...", self.config.boot_wait)).await;
            tokio::select! {
                biased;
                _ = ctx.cancel.cancelled() => return Err(StepError::Cancelled),
                _ = tokio::time::sleep(wait) => {}
            }
        }
        let vars = BootVars::from_state(state, &self.config.vm_name);
        let mut driver = self.typist(state).await?;
        let mut serial = state.qemu.as_ref().map(|q| SerialWatch::new(q.serial_log()));
        let via = match self.typing.transport {
            BootTransport::Qmp => "QMP",
            BootTransport::Vnc => "VNC",
        };
        ctx.ui.say(&format!("Typing the boot command over {via}...")).await;
        tracing::debug!(typing = ?self.typing, flow = matches!(driver, Typist::Flow(..)), "boot command typing");
        for (i, (command, description)) in steps.iter().enumerate() {
            if let Some(d) = description {
                ctx.ui.say(&format!("Typing boot command for: {d}")).await;
            }
            let rendered = vars.render(command).map_err(|e| {
                StepError::failed(format!("cannot render the template in boot command step {}: {e}", i + 1))
            })?;
            // the text itself is never logged: it may hold a password or a sensitive variable
            tracing::debug!(step = i + 1, chars = rendered.chars().count(), "typing boot command");
            let started = tokio::time::Instant::now();
            let typed = type_command(&mut driver, &rendered, serial.as_mut(), &ctx.cancel).await;
            let presses = match typed {
                Ok(p) => p,
                Err(e) => {
                    driver.finish().await;
                    return Err(e);
                }
            };
            tracing::debug!(step = i + 1, presses, elapsed = ?started.elapsed(), "boot command typed");
        }
        let stats = driver.finish().await;
        tracing::debug!(?stats, "boot command flow control");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use packer_sdk::bootcommand::SpecialKey;

    fn config(interval_ms: i64, transport: BootTransport) -> Config {
        Config {
            boot_key_interval: packer_sdk::config::Duration::from_millis(interval_ms),
            boot_command_transport: transport,
            ..Default::default()
        }
    }

    #[test]
    fn pacing_follows_explicit_intervals_and_transport_defaults() {
        let t = BootTyping::from_config(&config(100, BootTransport::Qmp), None);
        assert_eq!(t, BootTyping { transport: BootTransport::Qmp, pacing: KeyPacing::DEFAULT, feedback: true });
        let t = BootTyping::from_config(&config(100, BootTransport::Vnc), None);
        assert_eq!(t.pacing, VNC_DEFAULT_PACING);
        // explicit values: Packer's one-event-at-a-time pacing
        let t = BootTyping::from_config(&config(30, BootTransport::Qmp), None);
        assert_eq!(t.pacing, KeyPacing::per_event(Duration::from_millis(30)));
        assert!(!t.feedback, "a user's interval types blind");
        let t = BootTyping::from_config(&config(100, BootTransport::Vnc), Some("100ms"));
        assert_eq!(t.pacing, KeyPacing::per_event(Duration::from_millis(100)));
        let t = BootTyping::from_config(&config(100, BootTransport::Qmp), Some(" "));
        assert_eq!(t.pacing, KeyPacing::DEFAULT);
    }

    #[test]
    fn renders_every_variable_and_urlquery() {
        let vars = BootVars {
            http_ip: "10.0.2.2".into(),
            http_port: 8123,
            name: "vm-1".into(),
            ssh_public_key: "ssh-ed25519 AAAA+/= me@host".into(),
        };
        let out = vars
            .render("url=http://{{ .HTTPIP }}:{{.HTTPPort}}/{{ .Name }} k={{ .SSHPublicKey | urlquery }}<enter>")
            .unwrap();
        assert_eq!(out, "url=http://10.0.2.2:8123/vm-1 k=ssh-ed25519+AAAA%2B%2F%3D+me%40host<enter>");
        let e = vars.render("{{ .Nope }}").unwrap_err();
        assert!(e.contains(".Nope"), "{e}");
        // the key is not in Debug output (a rendered command may be logged, the vars are not)
        assert!(!format!("{vars:?}").contains("AAAA"));
    }

    #[test]
    fn vnc_host_for_wildcards_and_v6() {
        assert_eq!(vnc_connect_host("0.0.0.0"), "127.0.0.1");
        assert_eq!(vnc_connect_host(""), "127.0.0.1");
        assert_eq!(vnc_connect_host("127.0.0.1"), "127.0.0.1");
        assert_eq!(vnc_connect_host("::1"), "[::1]");
        assert_eq!(vnc_connect_host("::"), "127.0.0.1");
    }

    /// Records batches: what was sent between flushes, on tokio's paused clock.
    #[derive(Default)]
    struct Batches {
        current: Vec<KeyEvent>,
        done: Vec<(Duration, Vec<KeyEvent>)>,
        start: Option<tokio::time::Instant>,
    }

    #[async_trait]
    impl KeyDriver for Batches {
        async fn send(&mut self, ev: KeyEvent) -> Result<(), DriverError> {
            self.start.get_or_insert_with(tokio::time::Instant::now);
            self.current.push(ev);
            Ok(())
        }
        async fn flush(&mut self) -> Result<(), DriverError> {
            if !self.current.is_empty() {
                let at = tokio::time::Instant::now() - self.start.unwrap_or_else(tokio::time::Instant::now);
                self.done.push((at, std::mem::take(&mut self.current)));
            }
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn paced_driver_cuts_batches_by_scancode_bytes_and_pauses() {
        let pacing = KeyPacing::batches(4, Duration::from_millis(50));
        let mut d = PacedDriver::new(Batches::default(), pacing);
        let n = type_command(&mut d, "ab<end>C", None, &CancellationToken::new()).await.unwrap();
        assert_eq!(n, 4);
        let b = d.into_inner().done;
        let (a, bb, end, c) = (Key::Char('a'), Key::Char('b'), Key::Special(SpecialKey::End), Key::Char('C'));
        let shift = Key::Special(SpecialKey::LeftShift);
        let ms = Duration::from_millis;
        assert_eq!(
            b,
            vec![
                (ms(0), vec![KeyEvent::Down(a), KeyEvent::Up(a), KeyEvent::Down(bb), KeyEvent::Up(bb)]),
                (ms(50), vec![KeyEvent::Down(end), KeyEvent::Up(end)]),
                (ms(100), vec![KeyEvent::Down(shift), KeyEvent::Down(c), KeyEvent::Up(c), KeyEvent::Up(shift)]),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn per_event_pacing_is_packers() {
        let mut d = PacedDriver::new(Batches::default(), KeyPacing::per_event(Duration::from_millis(100)));
        type_command(&mut d, "A", None, &CancellationToken::new()).await.unwrap();
        let at: Vec<Duration> = d.into_inner().done.iter().map(|(t, _)| *t).collect();
        let ms = Duration::from_millis;
        assert_eq!(at, vec![ms(0), ms(100), ms(200), ms(300)]);
    }

    #[tokio::test]
    async fn wait_for_serial_waits_for_new_text_and_times_out_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serial.log");
        std::fs::write(&log, "boot: ").unwrap();
        let mut watch = SerialWatch::new(&log);
        let mut d = Batches::default();
        let cancel = CancellationToken::new();
        let writer = {
            let log = log.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                std::fs::write(&log, "boot: ok\nlogin: ").unwrap();
            })
        };
        let cmd = r#"<waitForSerial "boot:" 5s>a<waitForSerial "login:" 5s>b"#;
        let n = type_command(&mut d, cmd, Some(&mut watch), &cancel).await.unwrap();
        writer.await.unwrap();
        assert_eq!(n, 2);
        // "boot:" was seen once already: waiting for it again needs a new one
        let e = type_command(&mut d, r#"<waitForSerial "boot:" 100ms>"#, Some(&mut watch), &cancel).await.unwrap_err();
        assert!(e.to_string().contains("did not show \"boot:\" within 100ms"), "{e}");
        let e = type_command(&mut d, r#"<waitForSerial "x" 1s>"#, None, &cancel).await.unwrap_err();
        assert!(e.to_string().contains("needs the serial console"), "{e}");
        let e = type_command(&mut d, r#"<waitForSerial "x">"#, None, &cancel).await.unwrap_err();
        assert!(e.to_string().contains("boot_command: malformed <waitForSerial>"), "{e}");
    }

    #[tokio::test]
    async fn cancel_stops_a_long_pause_and_bad_commands_fail_clearly() {
        let cancel = CancellationToken::new();
        let mut d = PacedDriver::new(Batches::default(), KeyPacing::per_event(Duration::from_secs(3600)));
        let c2 = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            c2.cancel();
        });
        assert_eq!(type_command(&mut d, "abc", None, &cancel).await.unwrap_err(), StepError::Cancelled);
        let e = type_command(&mut d, "<wait0s>", None, &CancellationToken::new()).await.unwrap_err();
        assert!(e.to_string().contains("does not parse"), "{e}");
    }
}
