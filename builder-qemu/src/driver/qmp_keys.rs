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
use packer_sdk::bootcommand::{DriverError, Key, KeyDriver, KeyEvent};
use serde_json::{json, Value};

use super::qmp::{Qmp, QmpError};

/// Bytes the PS/2 keyboard emulation of QEMU queues before it drops scancodes (`PS2_QUEUE_SIZE`).
pub const PS2_QUEUE_BYTES: usize = 16;

/// How QMP typing is paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPacing {
    /// Largest batch, in PS/2 scancode bytes (see [`scancode_bytes`]). A batch never holds fewer
    /// than one event, whatever this says. At most [`PS2_QUEUE_BYTES`] is safe.
    pub max_batch_bytes: usize,
    /// Pause after every batch, for the guest to read the keys.
    pub batch_pause: Duration,
}

impl KeyPacing {
    /// The default for QMP typing when the user did not set `boot_key_interval`: batches of at most
    /// 8 scancode bytes (2–4 characters; half the PS/2 queue, so a guest that is late reading one
    /// batch still has room for the next), 60 ms apart. Measured on the test guest's GRUB entry
    /// editor under TCG (see the module tests and `tests/tests/boot_command_typing.rs`).
    pub const DEFAULT: KeyPacing = KeyPacing { max_batch_bytes: 8, batch_pause: Duration::from_millis(60) };

    /// Packer's pacing: one key event per command and `interval` after each.
    pub fn per_event(interval: Duration) -> KeyPacing {
        KeyPacing { max_batch_bytes: 1, batch_pause: interval }
    }
}

impl Default for KeyPacing {
    fn default() -> Self {
        KeyPacing::DEFAULT
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
    pacing: KeyPacing,
    batch: Vec<(&'static str, bool)>,
    batch_bytes: usize,
    commands: u64,
    events: u64,
}

impl std::fmt::Debug for QmpKeyDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QmpKeyDriver")
            .field("pacing", &self.pacing)
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
        QmpKeyDriver { qmp, pacing, batch: Vec::new(), batch_bytes: 0, commands: 0, events: 0 }
    }

    /// The pacing in use.
    pub fn pacing(&self) -> KeyPacing {
        self.pacing
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
        self.batch_bytes = 0;
        self.qmp.execute("input-send-event", Some(json!({ "events": events }))).await.map_err(qmp_error)?;
        self.commands += 1;
        self.events += n;
        if !self.pacing.batch_pause.is_zero() {
            tokio::time::sleep(self.pacing.batch_pause).await;
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
        if !self.batch.is_empty() && self.batch_bytes + bytes > self.pacing.max_batch_bytes {
            self.send_batch().await?;
        }
        self.batch.push((qcode, down));
        self.batch_bytes += bytes;
        if self.batch_bytes >= self.pacing.max_batch_bytes {
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
        let pacing = KeyPacing { max_batch_bytes: 4, batch_pause: Duration::ZERO };
        let mut d = QmpKeyDriver::new(q.qmp.clone(), pacing);
        type_boot_command(&mut d, &actions, Duration::ZERO, CancellationToken::new()).await.unwrap();
        // [a↓ a↑ shift↓ b↓] [b↑ shift↑ end↓] [end↑]
        assert_eq!((d.commands_sent(), d.events_sent()), (3, 8));

        let mut d = QmpKeyDriver::new(q.qmp.clone(), KeyPacing::per_event(Duration::ZERO));
        type_boot_command(&mut d, &actions, Duration::ZERO, CancellationToken::new()).await.unwrap();
        assert_eq!((d.commands_sent(), d.events_sent()), (8, 8));

        // a wait flushes the batch first
        let mut d = QmpKeyDriver::new(q.qmp.clone(), KeyPacing { max_batch_bytes: 16, batch_pause: Duration::ZERO });
        type_boot_command(&mut d, &parse("ab<wait0.01s>cd").unwrap(), Duration::ZERO, CancellationToken::new())
            .await
            .unwrap();
        assert_eq!((d.commands_sent(), d.events_sent()), (2, 8));

        // a character with no US key fails before anything of its batch is sent
        let mut d = QmpKeyDriver::new(q.qmp.clone(), KeyPacing { max_batch_bytes: 16, batch_pause: Duration::ZERO });
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
