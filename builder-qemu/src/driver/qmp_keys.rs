//! A [`KeyDriver`] that types through QMP `input-send-event` with QEMU `qcode` key names, so no VNC
//! connection (and no VNC keymap) is needed.
//!
//! QEMU puts the scancodes of an `input-send-event` into the guest's PS/2 keyboard queue at once,
//! and that queue holds only [`PS2_QUEUE_BYTES`] bytes: whatever does not fit is dropped without a
//! word. So the driver sends events in *batches* that fit in the queue ([`KeyPacing::max_batch_bytes`])
//! and pauses after each batch ([`KeyPacing::batch_pause`]) so the guest can drain it. With
//! `max_batch_bytes = 1` it sends one event per command, like Packer's VNC driver.

use std::time::Duration;

use async_trait::async_trait;
use packer_sdk::bootcommand::{DriverError, Key, KeyDriver, KeyEvent, SpecialKey};
use serde_json::{json, Value};

use super::qmp::{Qmp, QmpError};

/// Bytes the PS/2 keyboard emulation of QEMU queues before it drops scancodes (`PS2_QUEUE_SIZE`).
pub const PS2_QUEUE_BYTES: usize = 16;

/// How typing is paced (QMP and VNC).
///
/// Keys are sent in *batches* (one QMP command, or one flush of the VNC socket) followed by a
/// pause. A batch ends when it reaches [`max_batch_bytes`](Self::max_batch_bytes), or — with
/// [`whole_presses`](Self::whole_presses) — when every key of it is released again (one character
/// with its Shift). The pause is [`batch_pause`](Self::batch_pause) plus
/// [`per_column`](Self::per_column) for every character typed since the last Enter, at most
/// [`max_pause`](Self::max_pause): line editors (GRUB, isolinux, installers) redraw the whole line
/// for each key, so they read keys more slowly as the line grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPacing {
    /// Largest batch, in PS/2 scancode bytes (see [`scancode_bytes`]). A batch never holds fewer
    /// than one event, whatever this says. At most [`PS2_QUEUE_BYTES`] is safe.
    pub max_batch_bytes: usize,
    /// End a batch as soon as no key is held (one key press with its modifiers).
    pub whole_presses: bool,
    /// Pause after every batch, for the guest to read the keys.
    pub batch_pause: Duration,
    /// Extra pause per character typed since the last Enter.
    pub per_column: Duration,
    /// Longest pause.
    pub max_pause: Duration,
}

impl KeyPacing {
    /// The default when the user did not set `boot_key_interval`: one key press (with its
    /// modifiers) per batch, 100 ms + 0.5 ms per column after each, at most 600 ms.
    ///
    /// A guest's rate of reading keys, not the transport, sets the limit. Measured on the test
    /// guest's GRUB entry editor under TCG with a 300-character line (`typing_bench` in
    /// `tests/tests/boot_command_typing.rs`): one event every 20 ms lost keys once the line passed
    /// ~190 characters, batches of 8 bytes every 60 ms lost keys at once, one event every 50 ms lost
    /// keys past ~350 characters (GRUB redraws the whole line for each key) — hence a pause that
    /// grows with the column; whole presses 22 ms apart lost keys right after the editor opened,
    /// and a pause capped at 150 ms lost keys past column ~390. 40 ms + 0.4 ms per column passed
    /// on an idle host but lost keys at the line wrap (column ~80) while the host's two cores were
    /// busy compiling; the default keeps a margin of about 25 % over that. A cap of 300 ms lost a
    /// key once in three runs on a 750-character line (an RSA-4096 `sshkey=` parameter, columns
    /// 500–800), so the cap is 600 ms, reached at column 1100. 50 ms + 0.5 ms per column lost the
    /// second `/` of `seed=http://` (column ~75, where GRUB wraps the line and redraws the screen
    /// below it, also on the serial terminal) in the first build of a benchmark run, so the base
    /// pause is 100 ms: Packer's interval per key event, here per whole key press.
    pub const DEFAULT: KeyPacing = KeyPacing {
        max_batch_bytes: 12,
        whole_presses: true,
        batch_pause: Duration::from_millis(100),
        per_column: Duration::from_micros(500),
        max_pause: Duration::from_millis(600),
    };

    /// Packer's pacing: one key event per command and `interval` after each.
    pub fn per_event(interval: Duration) -> KeyPacing {
        KeyPacing::batches(1, interval)
    }

    /// The pause after a batch ending at `column` (characters since the last Enter).
    pub fn pause_at(&self, column: usize) -> Duration {
        let extra = self.per_column.saturating_mul(u32::try_from(column).unwrap_or(u32::MAX));
        self.batch_pause.saturating_add(extra).min(self.max_pause.max(self.batch_pause))
    }

    /// Batches of at most `max_batch_bytes`, `pause` after each (for tests and benchmarks).
    pub fn batches(max_batch_bytes: usize, pause: Duration) -> KeyPacing {
        KeyPacing {
            max_batch_bytes,
            whole_presses: false,
            batch_pause: pause,
            per_column: Duration::ZERO,
            max_pause: pause,
        }
    }
}

impl Default for KeyPacing {
    fn default() -> Self {
        KeyPacing::DEFAULT
    }
}

/// The batching state of one typing session: which events go together and how long to pause
/// after them (see [`KeyPacing`]). Shared by the QMP and the VNC drivers.
#[derive(Debug, Clone)]
pub struct Pacer {
    pacing: KeyPacing,
    bytes: usize,
    held: usize,
    column: usize,
}

impl Pacer {
    /// A pacer with nothing batched yet, at column 0.
    pub fn new(pacing: KeyPacing) -> Self {
        Pacer { pacing, bytes: 0, held: 0, column: 0 }
    }

    /// The pacing.
    pub fn pacing(&self) -> KeyPacing {
        self.pacing
    }

    /// Whether the current batch must be sent before an event of `bytes` scancode bytes joins it.
    pub fn full_before(&self, bytes: usize) -> bool {
        self.bytes > 0 && self.bytes + bytes > self.pacing.max_batch_bytes
    }

    /// Records a key event of `bytes` scancode bytes joining the batch; true when the batch is
    /// complete and must be sent now.
    pub fn add(&mut self, key: Key, down: bool, bytes: usize) -> bool {
        self.bytes += bytes;
        if down {
            self.held += 1;
            match key {
                Key::Char(_) => self.column += 1,
                Key::Special(SpecialKey::Enter | SpecialKey::Return) => self.column = 0,
                Key::Special(_) => {}
            }
        } else {
            self.held = self.held.saturating_sub(1);
        }
        self.bytes >= self.pacing.max_batch_bytes || (self.pacing.whole_presses && self.held == 0)
    }

    /// Whether a batch is waiting to be sent.
    pub fn pending(&self) -> bool {
        self.bytes > 0
    }

    /// Marks the batch as sent and returns the pause to make now.
    pub fn sent(&mut self) -> Duration {
        self.bytes = 0;
        self.pacing.pause_at(self.column)
    }
}

/// qcodes whose set-1 scancode has the `0xE0` prefix (two bytes per press and per release).
const EXTENDED_QCODES: &[&str] = &[
    "delete",
    "up",
    "down",
    "left",
    "right",
    "home",
    "end",
    "pgup",
    "pgdn",
    "insert",
    "compose",
    "ctrl_r",
    "alt_r",
    "meta_l",
    "meta_r",
    "kp_enter",
    "kp_divide",
];

/// The number of bytes one press or release of `qcode` puts in the PS/2 queue (scancode set 1, as
/// the i8042 translates it): 2 for `0xE0`-prefixed keys, 1 for the others.
pub fn scancode_bytes(qcode: &str) -> usize {
    if EXTENDED_QCODES.contains(&qcode) {
        2
    } else {
        1
    }
}

/// The qcode of `key` for QMP, or why it cannot be typed.
pub fn qcode_of(key: Key) -> Result<&'static str, DriverError> {
    key.qcode().ok_or_else(|| DriverError::UnsupportedKey {
        key,
        reason: "QMP typing presses keys of a US keyboard and this character has none; remove it from the \
                 boot command or set boot_command_transport = \"vnc\" (VNC sends X11 keysyms)"
            .to_string(),
    })
}

/// Types key events through QMP `input-send-event`, batched and paced by [`KeyPacing`].
pub struct QmpKeyDriver {
    qmp: Qmp,
    pacer: Pacer,
    batch: Vec<(&'static str, bool)>,
    commands: u64,
    events: u64,
}

impl std::fmt::Debug for QmpKeyDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QmpKeyDriver")
            .field("pacing", &self.pacer.pacing())
            .field("commands", &self.commands)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

fn qmp_error(e: QmpError) -> DriverError {
    match e {
        QmpError::Closed => DriverError::Closed("QEMU closed its QMP connection while keys were typed".to_string()),
        other => DriverError::Protocol(format!("sending keys through QMP failed: {other}")),
    }
}

impl QmpKeyDriver {
    /// A driver typing into the QEMU behind `qmp`.
    pub fn new(qmp: Qmp, pacing: KeyPacing) -> Self {
        QmpKeyDriver { qmp, pacer: Pacer::new(pacing), batch: Vec::new(), commands: 0, events: 0 }
    }

    /// The pacing in use.
    pub fn pacing(&self) -> KeyPacing {
        self.pacer.pacing()
    }

    /// How many `input-send-event` commands were sent so far.
    pub fn commands_sent(&self) -> u64 {
        self.commands
    }

    /// How many key events were sent so far.
    pub fn events_sent(&self) -> u64 {
        self.events
    }

    /// Sends the current batch (if any) and pauses.
    async fn send_batch(&mut self) -> Result<(), DriverError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let events: Vec<Value> = self
            .batch
            .iter()
            .map(|(qcode, down)| {
                json!({ "type": "key", "data": { "down": down, "key": { "type": "qcode", "data": qcode } } })
            })
            .collect();
        let n = self.batch.len() as u64;
        self.batch.clear();
        let pause = self.pacer.sent();
        self.qmp.execute("input-send-event", Some(json!({ "events": events }))).await.map_err(qmp_error)?;
        self.commands += 1;
        self.events += n;
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        Ok(())
    }
}

#[async_trait]
impl KeyDriver for QmpKeyDriver {
    async fn send(&mut self, ev: KeyEvent) -> Result<(), DriverError> {
        let (key, down) = match ev {
            KeyEvent::Down(k) => (k, true),
            KeyEvent::Up(k) => (k, false),
            KeyEvent::Wait(d) => {
                self.send_batch().await?;
                tokio::time::sleep(d).await;
                return Ok(());
            }
        };
        let qcode = qcode_of(key)?;
        let bytes = scancode_bytes(qcode);
        if self.pacer.full_before(bytes) {
            self.send_batch().await?;
        }
        self.batch.push((qcode, down));
        if self.pacer.add(key, down, bytes) {
            self.send_batch().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), DriverError> {
        self.send_batch().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::process;
    use packer_sdk::bootcommand::{parse, type_boot_command, SpecialKey};
    use packer_sdk::CancellationToken;

    #[test]
    fn extended_keys_take_two_bytes() {
        assert_eq!(scancode_bytes("a"), 1);
        assert_eq!(scancode_bytes("shift"), 1);
        assert_eq!(scancode_bytes("f10"), 1);
        assert_eq!(scancode_bytes("ret"), 1);
        for k in [SpecialKey::Up, SpecialKey::Down, SpecialKey::End, SpecialKey::Home, SpecialKey::Del] {
            assert_eq!(scancode_bytes(k.qcode()), 2, "{k}");
        }
    }

    #[test]
    fn characters_without_a_us_key_are_refused_with_a_hint() {
        let e = qcode_of(Key::Char('é')).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("'é'") && msg.contains("boot_command_transport"), "{msg}");
        assert_eq!(qcode_of(Key::Char('A')).unwrap(), "a");
    }

    struct Qemu {
        child: tokio::process::Child,
        _dir: tempfile::TempDir,
        qmp: Qmp,
    }

    /// A QEMU with no disk (SeaBIOS only): QMP accepts key events and QEMU queues them.
    async fn qemu() -> Qemu {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qmp.sock");
        let child = process::command("qemu-system-x86_64")
            .args(["-accel", "tcg", "-nodefaults", "-display", "none", "-S", "-m", "32", "-qmp"])
            .arg(format!("unix:{},server=on,wait=off", sock.display()))
            .spawn()
            .expect("start qemu-system-x86_64");
        let qmp = Qmp::connect(&sock, Duration::from_secs(30)).await.expect("connect to QMP");
        qmp.cont().await.expect("cont"); // QEMU refuses input events while the VM is not running
        Qemu { child, _dir: dir, qmp }
    }

    #[tokio::test]
    async fn batches_fit_the_byte_budget_against_real_qemu() {
        let mut q = qemu().await;
        // "aB<end>": a↓ a↑ (2 bytes), shift↓ b↓ b↑ shift↑ (4), end↓ end↑ (4) = 10 bytes, 8 events.
        let actions = parse("aB<end>").unwrap();
        let pacing = KeyPacing::batches(4, Duration::ZERO);
        let mut d = QmpKeyDriver::new(q.qmp.clone(), pacing);
        type_boot_command(&mut d, &actions, Duration::ZERO, CancellationToken::new()).await.unwrap();
        // [a↓ a↑ shift↓ b↓] [b↑ shift↑ end↓] [end↑]
        assert_eq!((d.commands_sent(), d.events_sent()), (3, 8));

        let mut d = QmpKeyDriver::new(q.qmp.clone(), KeyPacing::per_event(Duration::ZERO));
        type_boot_command(&mut d, &actions, Duration::ZERO, CancellationToken::new()).await.unwrap();
        assert_eq!((d.commands_sent(), d.events_sent()), (8, 8));

        // a wait flushes the batch first
        let mut d = QmpKeyDriver::new(q.qmp.clone(), KeyPacing::batches(16, Duration::ZERO));
        type_boot_command(&mut d, &parse("ab<wait0.01s>cd").unwrap(), Duration::ZERO, CancellationToken::new())
            .await
            .unwrap();
        assert_eq!((d.commands_sent(), d.events_sent()), (2, 8));

        // a character with no US key fails before anything of its batch is sent
        let mut d = QmpKeyDriver::new(q.qmp.clone(), KeyPacing::batches(16, Duration::ZERO));
        let e = type_boot_command(&mut d, &parse("xé").unwrap(), Duration::ZERO, CancellationToken::new())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("cannot type 'é'"), "{e}");
        assert_eq!(d.commands_sent(), 0);

        q.qmp.quit().await.unwrap();
        q.child.wait().await.unwrap();
        // QEMU gone: a clear error, not a hang
        let mut d = QmpKeyDriver::new(q.qmp.clone(), KeyPacing::DEFAULT);
        let e = type_boot_command(&mut d, &parse("a").unwrap(), Duration::ZERO, CancellationToken::new())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("QMP"), "{e}");
    }
}
