//! Flow control for typing from QEMU's own trace events: how many keyboard bytes the guest has
//! read, exactly, whatever the guest runs.
//!
//! QEMU is launched with `-D FILE` (see [`crate::driver::argv`]); before typing, QMP
//! `trace-event-set-state` turns on the event [`READ_EVENT`] (`ps2_read_data`: the i8042 takes one
//! byte out of the PS/2 keyboard queue for the guest), and QEMU's `log` trace backend writes one line
//! per byte to FILE. [`Ps2Feedback`] counts those lines and tells the [`FlowDriver`] how many bytes
//! left the queue, so that never more than the queue's [`PS2_QUEUE_BYTES`] are in flight: no key is
//! ever dropped by QEMU, whatever the host load. After typing the event is turned off again
//! ([`stop`]), so it costs nothing while the guest runs.
//!
//! Measured on the test guest (QEMU 7.2, TCG): enabling the event costs one QMP command; the guest
//! reads a byte within milliseconds of its arrival. What this signal cannot see is a guest that buffers
//! keys above the keyboard controller and drops them there: SeaBIOS keeps 15 keys in its own buffer
//! and GRUB reads them from it. On an x86 BIOS guest the feedback therefore also watches that buffer
//! ([`Ps2Feedback::with_bios_buffer`], [`super::bios_keybuf`]); where it sees nothing, the pauses of
//! [`KeyPacing`](super::qmp_keys::KeyPacing) stay.
//!
//! [`FlowDriver`]: packer_sdk::bootcommand::FlowDriver

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use packer_sdk::bootcommand::{DriverError, Handled, KeyEvent, KeyFeedback};
use serde_json::json;

use super::bios_keybuf::BiosKeyBuffer;
use super::qmp::Qmp;
use super::qmp_keys::{scancode_bytes, PS2_QUEUE_BYTES};

/// The trace event counted: one line per byte the guest's keyboard controller reads from the PS/2
/// keyboard queue.
pub const READ_EVENT: &str = "ps2_read_data";

/// How often the trace file is read while waiting.
const POLL: Duration = Duration::from_millis(2);

/// The PS/2 "bytes read" feedback of one typing session (see the module documentation).
pub struct Ps2Feedback {
    file: std::fs::File,
    path: PathBuf,
    pos: u64,
    partial: Vec<u8>,
    reads: u64,
    bios: Option<BiosKeyBuffer>,
}

impl std::fmt::Debug for Ps2Feedback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ps2Feedback").field("path", &self.path).field("reads", &self.reads).finish()
    }
}

/// The scancode bytes a key event puts in the PS/2 queue (2 for a key without a US key, which
/// QEMU's VNC keymap may turn into two scancodes).
pub fn event_bytes(ev: KeyEvent) -> usize {
    match ev {
        KeyEvent::Down(k) | KeyEvent::Up(k) => k.qcode().map(scancode_bytes).unwrap_or(2),
        KeyEvent::Wait(_) => 0,
    }
}

impl Ps2Feedback {
    /// Turns the trace event on and starts counting at the end of `trace_log` (the `-D` file).
    /// Fails when this QEMU cannot trace (no `log` trace backend, no `-D` file): the caller then
    /// types without feedback.
    pub async fn start(qmp: Qmp, trace_log: &Path) -> Result<Ps2Feedback, String> {
        set_state(&qmp, true).await?;
        let open = std::fs::File::open(trace_log);
        let mut file = match open {
            Ok(f) => f,
            Err(e) => {
                let _ = set_state(&qmp, false).await;
                return Err(format!("cannot read QEMU's trace log {}: {e}", trace_log.display()));
            }
        };
        let pos = file.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
        Ok(Ps2Feedback { file, path: trace_log.to_path_buf(), pos, partial: Vec::new(), reads: 0, bios: None })
    }
}

impl Ps2Feedback {
    /// Also watches the guest's BIOS keyboard buffer (x86 guests booted with a BIOS): a key press
    /// the boot loader has taken from it needs no pause (see [`super::bios_keybuf`]).
    pub async fn with_bios_buffer(mut self, qmp: Qmp) -> Ps2Feedback {
        self.bios = Some(BiosKeyBuffer::start(qmp).await);
        self
    }
}

/// Turns the trace event off again (after typing with a [`Ps2Feedback`] on `qmp`).
pub async fn stop(qmp: &Qmp) {
    if let Err(e) = set_state(qmp, false).await {
        tracing::debug!("turning off the {READ_EVENT} trace event: {e}");
    }
}

impl Ps2Feedback {
    /// Reads what QEMU appended to the trace log and counts the new reads.
    fn poll(&mut self) -> Result<u64, DriverError> {
        let mut buf = Vec::new();
        self.file
            .read_to_end(&mut buf)
            .map_err(|e| DriverError::io(format!("reading QEMU's trace log {}", self.path.display()), e))?;
        self.pos += buf.len() as u64;
        self.reads += count_reads(&mut self.partial, &buf);
        Ok(self.reads)
    }
}

/// Counts the complete lines of `partial` + `chunk` that are [`READ_EVENT`] lines, keeping an
/// unfinished last line in `partial`.
fn count_reads(partial: &mut Vec<u8>, chunk: &[u8]) -> u64 {
    partial.extend_from_slice(chunk);
    let Some(last_nl) = partial.iter().rposition(|b| *b == b'\n') else { return 0 };
    let complete: Vec<u8> = partial.drain(..=last_nl).collect();
    complete.split(|b| *b == b'\n').filter(|line| is_read_line(line)).count() as u64
}

/// `ps2_read_data 0x55d0c0ffee00`, possibly after a `-msg timestamp=on` prefix or a pid.
fn is_read_line(line: &[u8]) -> bool {
    let text = String::from_utf8_lossy(line);
    text.split_whitespace().any(|w| w == READ_EVENT || w.ends_with(&format!(":{READ_EVENT}")))
}

async fn set_state(qmp: &Qmp, enable: bool) -> Result<(), String> {
    qmp.execute("trace-event-set-state", Some(json!({ "name": READ_EVENT, "enable": enable })))
        .await
        .map(|_| ())
        .map_err(|e| format!("QMP trace-event-set-state {READ_EVENT}: {e}"))
}

#[async_trait]
impl KeyFeedback for Ps2Feedback {
    fn cost(&self, ev: KeyEvent) -> usize {
        event_bytes(ev)
    }

    fn window(&self) -> usize {
        PS2_QUEUE_BYTES
    }

    async fn wait_consumed(&mut self, at_least: u64, timeout: Duration) -> Result<u64, DriverError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let n = self.poll()?;
            if n >= at_least || tokio::time::Instant::now() >= deadline {
                return Ok(n);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn wait_handled(&mut self, timeout: Duration) -> Result<Handled, DriverError> {
        match self.bios.as_mut() {
            Some(bios) => bios.wait_taken(timeout).await,
            None => Ok(Handled::Unknown),
        }
    }

    async fn wait_drained(&mut self, timeout: Duration) -> Result<Handled, DriverError> {
        match self.bios.as_mut() {
            Some(bios) => bios.wait_drained(timeout).await,
            None => Ok(Handled::Unknown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use packer_sdk::bootcommand::{Key, SpecialKey};

    #[test]
    fn counts_whole_read_lines_across_chunks() {
        let mut partial = Vec::new();
        assert_eq!(count_reads(&mut partial, b"ps2_read_data 0x1\nps2_put_keycode 0x1 0x1c\nps2_re"), 1);
        assert_eq!(count_reads(&mut partial, b"ad_data 0x1"), 0);
        assert_eq!(count_reads(&mut partial, b"\n12345@1.5:ps2_read_data 0x1\nps2_read_datax 1\n"), 2);
        assert!(partial.is_empty());
    }

    #[test]
    fn scancode_bytes_per_event() {
        assert_eq!(event_bytes(KeyEvent::Down(Key::Char('a'))), 1);
        assert_eq!(event_bytes(KeyEvent::Up(Key::Special(SpecialKey::End))), 2);
        assert_eq!(event_bytes(KeyEvent::Wait(Duration::from_secs(1))), 0);
        assert_eq!(event_bytes(KeyEvent::Down(Key::Char('é'))), 2);
    }
}
