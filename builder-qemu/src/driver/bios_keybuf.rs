//! The PC BIOS keyboard buffer of an x86 guest, read over QMP: whether the boot loader has taken
//! the keys typed so far.
//!
//! A BIOS (SeaBIOS here) reads every key from the keyboard controller as soon as it arrives and
//! puts it into its own buffer in the BIOS data area: 16 words at `0x41E..0x43E`, a ring with its
//! head (next key to take) at `0x41A` and its tail (next free word) at `0x41C`, offsets from `0x400`
//! ([`HEAD_TAIL`]). A boot loader reading keys through the BIOS (`int 16h`: GRUB on BIOS,
//! ISOLINUX, the Windows boot manager, FreeBSD's loader) takes them from the head; the BIOS drops a
//! key that arrives when the ring is full. That is where keys were lost when typing fast into GRUB:
//! SeaBIOS takes keys from QEMU's keyboard at once, GRUB handles a key only as fast as it redraws
//! its line.
//!
//! So after each key press the typist waits until the tail has moved (the BIOS has the key) and at
//! most [`MAX_BUFFERED`] keys are waiting in the ring ([`Handled::Taken`]). When the tail does not
//! move (an operating system drives the keyboard itself, UEFI firmware, a key the BIOS does not
//! buffer such as a lone Shift) the answer is [`Handled::Unknown`] and the caller pauses as before.
//!
//! Reading: HMP `xp /2hx 0x41a` through QMP `human-monitor-command` (QMP has no command that reads
//! guest memory and returns it; `pmemsave` writes a file). Measured on this machine: 0.7 ms a read
//! (QEMU 7.2, TCG). A read is not free for the guest: QEMU answers it holding its global lock, which
//! the guest's CPU needs for every device access, and GRUB redrawing its line is little else (text
//! mode video memory, the serial port). Reading every 2 ms while GRUB worked through a 400-key line
//! made GRUB 14 % slower (38.0–38.7 s against 33.4–33.7 s unread; 34.7 s read every 20 ms). So while
//! keys wait in the ring the buffer is read at about a quarter of the time the boot loader has been
//! taking per key (a running average of the head's movements), at least every 25 ms: with
//! [`MAX_BUFFERED`] keys waiting the loader still has three in hand when the next one is sent.

use std::time::Duration;

use packer_sdk::bootcommand::{DriverError, Handled};

use super::qmp::Qmp;

/// Guest-physical address of the BIOS keyboard buffer's head and tail words.
pub const HEAD_TAIL: u64 = 0x41a;
/// Offsets (from `0x400`) where the ring starts and ends (IBM PC BIOS, SeaBIOS).
const RING: std::ops::Range<u16> = 0x1e..0x3e;
/// Keys the ring holds: 16 words, one always free.
const RING_KEYS: u16 = 15;
/// Keys that may wait in the ring before the next press is sent: well below [`RING_KEYS`], and
/// enough that the boot loader always finds its next key (measured on the test guest's GRUB: 1, 3
/// and 8 waiting keys all typed ~10 keys/s without a loss).
pub const MAX_BUFFERED: u16 = 4;
/// How long the tail may stay still after the keyboard controller was read before the press is
/// taken as not buffered by a BIOS.
const SETTLE: Duration = Duration::from_millis(10);
/// Pause between reads while a key press has not reached the ring yet.
const POLL: Duration = Duration::from_millis(2);
/// Longest pause between reads while keys wait for the boot loader (see the module documentation).
const MAX_POLL: Duration = Duration::from_millis(25);

/// The BIOS keyboard buffer of one typing session (see the module documentation).
pub struct BiosKeyBuffer {
    qmp: Qmp,
    /// The tail seen last; a press moves it.
    last_tail: Option<u16>,
    /// Reads failed (no memory at that address): not asked again.
    broken: bool,
    /// How fast the boot loader takes keys.
    rate: TakeRate,
}

/// How long a boot loader takes per key, from the movements of the ring's head.
#[derive(Debug, Default, Clone, Copy)]
struct TakeRate {
    /// The head seen last and when it was first seen there.
    last_head: Option<(u16, tokio::time::Instant)>,
    /// Time per key (a running average), once the head has moved twice.
    per_key: Option<Duration>,
}

impl TakeRate {
    /// Notes where the head is at `now`.
    fn saw(&mut self, head: u16, now: tokio::time::Instant) {
        match self.last_head {
            Some((h, _)) if h == head => {}
            Some((h, since)) => {
                let taken = buffered(h, head).max(1);
                let sample = now.saturating_duration_since(since) / u32::from(taken);
                // a running average that follows a loader slowing down as its line grows
                self.per_key = Some(self.per_key.map_or(sample, |avg| (avg * 3 + sample) / 4));
                self.last_head = Some((head, now));
            }
            None => self.last_head = Some((head, now)),
        }
    }

    /// The pause between reads while keys wait for the boot loader: a quarter of its time per key,
    /// from [`POLL`] to [`MAX_POLL`].
    fn pause(&self) -> Duration {
        self.per_key.map_or(POLL, |d| (d / 4).clamp(POLL, MAX_POLL))
    }
}

impl std::fmt::Debug for BiosKeyBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BiosKeyBuffer")
            .field("last_tail", &self.last_tail)
            .field("broken", &self.broken)
            .field("per_key", &self.rate.per_key)
            .finish()
    }
}

/// Head and tail of the ring, or `None` when the words are not a BIOS keyboard ring.
pub fn parse_head_tail(hmp: &str) -> Option<(u16, u16)> {
    // "000000000000041a: 0x001e 0x0020\r\n"
    let mut words = hmp.split_whitespace().skip(1).map(|w| u16::from_str_radix(w.strip_prefix("0x")?, 16).ok());
    let head = words.next()??;
    let tail = words.next()??;
    let valid = |p: u16| RING.contains(&p) && p.is_multiple_of(2);
    (valid(head) && valid(tail)).then_some((head, tail))
}

/// Keys waiting in the ring from `head` to `tail`.
pub fn buffered(head: u16, tail: u16) -> u16 {
    let len = RING.end - RING.start;
    (tail + len - head) % len / 2
}

impl BiosKeyBuffer {
    /// Watches the buffer of the guest behind `qmp`, starting from its present tail.
    pub async fn start(qmp: Qmp) -> BiosKeyBuffer {
        let mut buf = BiosKeyBuffer { qmp, last_tail: None, broken: false, rate: TakeRate::default() };
        buf.last_tail = buf.read().await.map(|(_, tail)| tail);
        buf
    }

    async fn read(&mut self) -> Option<(u16, u16)> {
        if self.broken {
            return None;
        }
        let command = format!("xp /2hx {HEAD_TAIL:#x}");
        match self.qmp.human_monitor(&command).await {
            Ok(text) => parse_head_tail(&text),
            Err(e) => {
                tracing::debug!("reading the BIOS keyboard buffer: {e}; typing without it");
                self.broken = true;
                None
            }
        }
    }

    /// After a key press was read from the keyboard controller: waits (at most `timeout`) until the
    /// BIOS has buffered it and at most [`MAX_BUFFERED`] keys wait in its ring.
    pub async fn wait_taken(&mut self, timeout: Duration) -> Result<Handled, DriverError> {
        self.wait_at_most(MAX_BUFFERED, timeout).await
    }

    /// After an Enter press was read from the keyboard controller: waits (at most `timeout`) until
    /// the BIOS has buffered it and the boot loader has taken every key from the ring.
    pub async fn wait_drained(&mut self, timeout: Duration) -> Result<Handled, DriverError> {
        self.wait_at_most(0, timeout).await
    }

    async fn wait_at_most(&mut self, max_waiting: u16, timeout: Duration) -> Result<Handled, DriverError> {
        let start = tokio::time::Instant::now();
        let mut moved = false;
        loop {
            let Some((head, tail)) = self.read().await else { return Ok(Handled::Unknown) };
            self.rate.saw(head, tokio::time::Instant::now());
            if self.last_tail.is_some_and(|t| t != tail) {
                moved = true;
            }
            self.last_tail = Some(tail);
            let waiting = buffered(head, tail);
            if moved && waiting <= max_waiting {
                return Ok(Handled::Taken);
            }
            let elapsed = start.elapsed();
            if (!moved && elapsed >= SETTLE) || elapsed >= timeout {
                if waiting >= RING_KEYS - 1 {
                    tracing::warn!("the guest's BIOS keyboard buffer is full: the boot loader is not reading keys");
                }
                return Ok(Handled::Unknown);
            }
            tokio::time::sleep(if moved { self.rate.pause() } else { POLL }).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hmp_words() {
        assert_eq!(parse_head_tail("000000000000041a: 0x001e 0x0020\r\n"), Some((0x1e, 0x20)));
        assert_eq!(parse_head_tail("000000000000041a: 0x003c 0x001e\r\n"), Some((0x3c, 0x1e)));
        // not a BIOS ring: zeros (UEFI), odd or out of range, garbage
        assert_eq!(parse_head_tail("000000000000041a: 0x0000 0x0000\r\n"), None);
        assert_eq!(parse_head_tail("000000000000041a: 0x001f 0x0020\r\n"), None);
        assert_eq!(parse_head_tail("000000000000041a: 0x003e 0x0020\r\n"), None);
        assert_eq!(parse_head_tail("Cannot access memory\r\n"), None);
        assert_eq!(parse_head_tail(""), None);
    }

    #[test]
    fn reads_less_often_the_slower_the_loader_takes_keys() {
        let t0 = tokio::time::Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut r = TakeRate::default();
        // nothing known yet: fast reads
        assert_eq!(r.pause(), POLL);
        r.saw(0x1e, ms(0));
        r.saw(0x1e, ms(30));
        assert_eq!(r.pause(), POLL);
        // one key in 80 ms: read every 20 ms
        r.saw(0x20, ms(80));
        assert_eq!(r.pause(), Duration::from_millis(20));
        // two keys at once in 40 ms (20 ms each) pull the average down: (3 × 80 + 20) / 4 = 65 ms
        r.saw(0x24, ms(120));
        assert_eq!(r.per_key, Some(Duration::from_millis(65)));
        // twelve keys at 65 ms each, then one across the end of the ring
        r.saw(0x3c, ms(120 + 12 * 65));
        assert_eq!(r.per_key, Some(Duration::from_millis(65)));
        r.saw(0x1e, ms(120 + 13 * 65));
        assert_eq!(r.per_key, Some(Duration::from_millis(65)));
        // a loader that takes keys at once is read at the fast pace, a very slow one at most every MAX_POLL
        let mut fast = TakeRate::default();
        fast.saw(0x1e, ms(0));
        fast.saw(0x20, ms(1));
        assert_eq!(fast.pause(), POLL);
        let mut slow = TakeRate::default();
        slow.saw(0x1e, ms(0));
        slow.saw(0x20, ms(5000));
        assert_eq!(slow.pause(), MAX_POLL);
    }

    #[test]
    fn counts_keys_around_the_ring() {
        assert_eq!(buffered(0x1e, 0x1e), 0);
        assert_eq!(buffered(0x1e, 0x22), 2);
        assert_eq!(buffered(0x3c, 0x1e), 1);
        assert_eq!(buffered(0x20, 0x1e), RING_KEYS);
    }
}
