//! Typing with flow control: a [`KeyDriver`] wrapper that never has more key events in flight than
//! the guest's input queue holds, and sends more as soon as the guest shows it has read them.
//!
//! What "in flight" means and how the guest shows it read keys is up to a [`KeyFeedback`] (for a
//! virtual machine, for example, the number of keyboard bytes the guest has read from its keyboard
//! controller). The wrapper only counts: every event costs [`KeyFeedback::cost`] units, at most
//! [`KeyFeedback::window`] units may be sent and not yet consumed, and before an event that would
//! exceed the window it flushes the inner driver and waits for the guest to consume enough.
//!
//! A keyboard controller is not always the last queue: a PC BIOS moves keys into its own 15-key
//! buffer at once, and the boot loader above it (GRUB, ISOLINUX) takes them from there only as fast
//! as it handles them. A feedback that can see such a buffer answers
//! [`KeyFeedback::wait_handled`]; after each whole key press the wrapper then waits until that buffer
//! has room ([`Handled::Taken`]) instead of making the fixed pause of
//! [`FlowDriver::with_press_gap`], which stays for guests it cannot see into ([`Handled::Unknown`]).
//!
//! When the guest reads nothing for [`FlowDriver::stall_timeout`] (it does not poll its keyboard at
//! that moment), the wrapper logs it and counts everything sent as consumed, so typing goes on as it
//! would blind instead of hanging the build. When the feedback never reported anything at all by
//! then, it is taken as broken and the rest is typed without flow control.

use std::time::Duration;

use async_trait::async_trait;

use super::driver::{DriverError, KeyDriver};
use super::keys::{Key, KeyEvent, SpecialKey};

/// A source of "the guest has read N units of input" (see the module documentation).
#[async_trait]
pub trait KeyFeedback: Send {
    /// Units one key event takes in the guest's input queue (0 for an event that takes none).
    fn cost(&self, ev: KeyEvent) -> usize;

    /// Units the guest's input queue holds: at most this many are sent and not yet consumed.
    fn window(&self) -> usize;

    /// Units consumed since the feedback started, once the count reaches `at_least` or `timeout`
    /// passes, whichever comes first (the count may then be lower than `at_least`).
    async fn wait_consumed(&mut self, at_least: u64, timeout: Duration) -> Result<u64, DriverError>;

    /// Called after a whole key press was read from the keyboard: waits, at most `timeout`, until
    /// the program that reads keys above the keyboard (a BIOS key buffer and the boot loader
    /// taking keys from it) has taken the press and has room for the next one. The default, for
    /// feedbacks that cannot see above the keyboard, answers [`Handled::Unknown`] at once.
    async fn wait_handled(&mut self, timeout: Duration) -> Result<Handled, DriverError> {
        let _ = timeout;
        Ok(Handled::Unknown)
    }

    /// Called after an Enter press was read from the keyboard: waits, at most `timeout`, until the
    /// program above the keyboard has taken every key waiting for it (so the keys typed after Enter
    /// do not sit in a buffer while the submitted line runs, where the command it runs could read
    /// or discard them). The default answers [`Handled::Unknown`] at once.
    async fn wait_drained(&mut self, timeout: Duration) -> Result<Handled, DriverError> {
        let _ = timeout;
        Ok(Handled::Unknown)
    }
}

/// What [`KeyFeedback::wait_handled`] saw of a key press above the keyboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// The press reached the program reading keys, and its buffer has room: the next press may go
    /// at once.
    Taken,
    /// Nothing to see (no such buffer, a key it does not buffer, or it did not make room in time):
    /// the next press waits for the press gap.
    Unknown,
}

/// Counters of a [`FlowDriver`], for logs and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Units sent.
    pub sent: u64,
    /// Units the guest was last seen to have consumed (adjusted after stalls).
    pub consumed: u64,
    /// How many times the wrapper waited for the guest.
    pub waits: u64,
    /// How many times the guest read nothing for the stall timeout.
    pub stalls: u64,
    /// Whether flow control was given up (the feedback never reported a read).
    pub gave_up: bool,
    /// Key presses the program above the keyboard was seen to take ([`Handled::Taken`]): no press
    /// gap after them.
    pub handled: u64,
}

/// Wraps a [`KeyDriver`] with flow control from a [`KeyFeedback`] (see the module documentation).
pub struct FlowDriver<D> {
    inner: D,
    feedback: Box<dyn KeyFeedback>,
    /// With [`FlowDriver::with_press_gap`]: the pause after each key press, by column.
    press_gap: Option<Box<dyn Fn(usize) -> Duration + Send + Sync>>,
    /// With [`FlowDriver::with_line_gap`]: the pause after an Enter press was taken.
    line_gap: Duration,
    /// Whether the press being typed includes Enter (or Return).
    enter_pressed: bool,
    held: usize,
    column: usize,
    /// What the feedback counts as consumed at our `consumed == 0` (moves on after a stall).
    offset: u64,
    stats: FlowStats,
    stall_timeout: Duration,
}

/// How long the guest may read nothing before typing goes on blind (see [`FlowDriver`]).
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(5);

impl<D: KeyDriver> FlowDriver<D> {
    /// Wraps `inner`. The feedback counts from 0 when typing starts (it must not count what the
    /// guest read before).
    pub fn new(inner: D, feedback: Box<dyn KeyFeedback>) -> Self {
        FlowDriver {
            inner,
            feedback,
            press_gap: None,
            line_gap: Duration::ZERO,
            enter_pressed: false,
            held: 0,
            column: 0,
            offset: 0,
            stats: FlowStats::default(),
            stall_timeout: DEFAULT_STALL_TIMEOUT,
        }
    }

    /// After every key press (once no key is held), waits until the guest has read everything
    /// sent, then pauses `gap(column)`, where column counts the characters typed since the last
    /// Enter. For guests that read keys from the keyboard at once but handle them slowly above it
    /// (a BIOS buffer and a line editor that redraws the line for every key): the pause starts when
    /// the guest has the key, so a host too busy to run the guest for a while does not make keys
    /// arrive in a burst.
    pub fn with_press_gap(mut self, gap: Box<dyn Fn(usize) -> Duration + Send + Sync>) -> Self {
        self.press_gap = Some(gap);
        self
    }

    /// With a press gap: after a press of Enter (or Return), waits until the program reading keys
    /// has taken every key typed so far ([`KeyFeedback::wait_drained`]), then pauses `gap` before
    /// the next key; when the feedback cannot see that, the pause is the longer of `gap` and the
    /// press gap. A submitted line makes the guest run something — a boot loader's `cat` reads the
    /// keyboard to let a user stop it — and keys typed ahead while it runs can go to it instead of
    /// the next line. Blind pacing leaves its interval after Enter; this keeps at least that much,
    /// counted from when the guest had the Enter.
    pub fn with_line_gap(mut self, gap: Duration) -> Self {
        self.line_gap = gap;
        self
    }

    /// Sets how long the guest may read nothing before typing goes on blind.
    pub fn with_stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }

    /// The stall timeout.
    pub fn stall_timeout(&self) -> Duration {
        self.stall_timeout
    }

    /// The counters so far.
    pub fn stats(&self) -> FlowStats {
        self.stats
    }

    /// The wrapped driver and the feedback.
    pub fn into_parts(self) -> (D, Box<dyn KeyFeedback>) {
        (self.inner, self.feedback)
    }

    fn in_flight(&self) -> u64 {
        self.stats.sent - self.stats.consumed
    }

    /// Waits until `cost` more units fit in the window (an event larger than the window goes
    /// alone, into an empty queue).
    async fn make_room(&mut self, cost: u64) -> Result<(), DriverError> {
        let window = self.feedback.window() as u64;
        let mut flushed = false;
        while !self.stats.gave_up && self.in_flight() > 0 && self.in_flight() + cost > window {
            if !flushed {
                // what the inner driver batched must reach the guest before it can read it
                self.inner.flush().await?;
                flushed = true;
            }
            let need = self.offset + self.stats.sent + cost.min(window) - window;
            self.stats.waits += 1;
            let seen = self.feedback.wait_consumed(need, self.stall_timeout).await?;
            let consumed = seen.saturating_sub(self.offset).min(self.stats.sent);
            if consumed > self.stats.consumed {
                self.stats.consumed = consumed;
            } else if seen < need {
                // nothing read for the whole stall timeout: the guest is not reading its keyboard now
                self.stats.stalls += 1;
                if seen == self.offset && self.stats.consumed == 0 && self.stats.stalls == 1 {
                    tracing::warn!("no feedback from the guest's keyboard: typing on without flow control");
                    self.stats.gave_up = true;
                }
                tracing::warn!(
                    in_flight = self.in_flight(),
                    "the guest read no key for {:?}; typing on without flow control until it reads again",
                    self.stall_timeout
                );
                self.offset = seen;
                self.stats.consumed = self.stats.sent;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl<D: KeyDriver> KeyDriver for FlowDriver<D> {
    async fn send(&mut self, ev: KeyEvent) -> Result<(), DriverError> {
        if let KeyEvent::Wait(_) = ev {
            return self.inner.send(ev).await;
        }
        let cost = self.feedback.cost(ev) as u64;
        self.make_room(cost).await?;
        self.inner.send(ev).await?;
        self.stats.sent += cost;
        match ev {
            KeyEvent::Down(key) => {
                self.held += 1;
                match key {
                    Key::Char(_) => self.column += 1,
                    Key::Special(SpecialKey::Enter | SpecialKey::Return) => {
                        self.column = 0;
                        self.enter_pressed = true;
                    }
                    Key::Special(_) => {}
                }
            }
            KeyEvent::Up(_) => {
                self.held = self.held.saturating_sub(1);
                if self.held == 0 && self.press_gap.is_some() {
                    // a whole press: all of it read, then the gap
                    let window = self.feedback.window() as u64;
                    self.make_room(window).await?;
                    if self.in_flight() > 0 && !self.stats.gave_up {
                        self.inner.flush().await?;
                        let _ = self.make_room(window).await;
                    }
                    let line = std::mem::take(&mut self.enter_pressed) && !self.line_gap.is_zero();
                    let handled = match (self.stats.gave_up, line) {
                        (true, _) => Handled::Unknown,
                        (false, false) => self.feedback.wait_handled(self.stall_timeout).await?,
                        (false, true) => self.feedback.wait_drained(self.stall_timeout).await?,
                    };
                    let press_gap = match (&self.press_gap, handled) {
                        (Some(gap), Handled::Unknown) => gap(self.column),
                        _ => Duration::ZERO,
                    };
                    if handled == Handled::Taken {
                        self.stats.handled += 1;
                    }
                    let d = match line {
                        true => press_gap.max(self.line_gap),
                        false => press_gap,
                    };
                    if !d.is_zero() {
                        tokio::time::sleep(d).await;
                    }
                }
            }
            KeyEvent::Wait(_) => {}
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), DriverError> {
        self.inner.flush().await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::bootcommand::{parse, type_boot_command};
    use crate::CancellationToken;

    /// A fake guest: a queue of `capacity` units that drops what does not fit (like a PS/2
    /// keyboard), read at `rate` units per `wait_consumed` call, or never when `rate` is 0.
    #[derive(Default)]
    struct Guest {
        queued: u64,
        consumed: u64,
        dropped: u64,
        capacity: u64,
        rate: u64,
        received: Vec<KeyEvent>,
        pending: std::collections::VecDeque<KeyEvent>,
    }

    type Shared = Arc<Mutex<Guest>>;

    struct Keyboard {
        guest: Shared,
        batch: Vec<KeyEvent>,
    }

    #[async_trait]
    impl KeyDriver for Keyboard {
        async fn send(&mut self, ev: KeyEvent) -> Result<(), DriverError> {
            // batched until flushed, like the QMP driver
            self.batch.push(ev);
            Ok(())
        }
        async fn flush(&mut self) -> Result<(), DriverError> {
            let mut g = self.guest.lock().unwrap();
            for ev in self.batch.drain(..) {
                if g.queued < g.capacity {
                    g.queued += 1;
                    g.pending.push_back(ev);
                } else {
                    g.dropped += 1;
                }
            }
            Ok(())
        }
    }

    struct Signal(Shared);

    #[async_trait]
    impl KeyFeedback for Signal {
        fn cost(&self, _: KeyEvent) -> usize {
            1
        }
        fn window(&self) -> usize {
            self.0.lock().unwrap().capacity as usize
        }
        async fn wait_consumed(&mut self, _at_least: u64, timeout: Duration) -> Result<u64, DriverError> {
            let (n, c) = {
                let mut g = self.0.lock().unwrap();
                let n = g.rate.min(g.queued);
                for _ in 0..n {
                    let ev = g.pending.pop_front().unwrap();
                    g.received.push(ev);
                }
                g.queued -= n;
                g.consumed += n;
                (n, g.consumed)
            };
            if n == 0 && !timeout.is_zero() {
                tokio::time::sleep(timeout).await;
            }
            Ok(c)
        }
    }

    fn guest(capacity: u64, rate: u64) -> Shared {
        Arc::new(Mutex::new(Guest { capacity, rate, ..Default::default() }))
    }

    /// The program above the keyboard: takes `taken` presses (then answers unknown), drains the
    /// buffer `drain` after an Enter; records what the flow driver asked.
    struct Above {
        guest: Shared,
        taken: u32,
        drain: Duration,
        calls: Arc<Mutex<Vec<&'static str>>>,
    }

    impl Above {
        fn new(guest: &Shared, taken: u32, drain: Duration) -> Above {
            Above { guest: guest.clone(), taken, drain, calls: Arc::default() }
        }
    }

    #[async_trait]
    impl KeyFeedback for Above {
        fn cost(&self, ev: KeyEvent) -> usize {
            Signal(self.guest.clone()).cost(ev)
        }
        fn window(&self) -> usize {
            Signal(self.guest.clone()).window()
        }
        async fn wait_consumed(&mut self, at_least: u64, timeout: Duration) -> Result<u64, DriverError> {
            Signal(self.guest.clone()).wait_consumed(at_least, timeout).await
        }
        async fn wait_handled(&mut self, _: Duration) -> Result<Handled, DriverError> {
            self.calls.lock().unwrap().push("handled");
            if self.taken == 0 {
                return Ok(Handled::Unknown);
            }
            self.taken -= 1;
            Ok(Handled::Taken)
        }
        async fn wait_drained(&mut self, _: Duration) -> Result<Handled, DriverError> {
            self.calls.lock().unwrap().push("drained");
            tokio::time::sleep(self.drain).await;
            Ok(Handled::Taken)
        }
    }

    async fn type_through(g: &Shared, command: &str) -> FlowStats {
        let kb = Keyboard { guest: g.clone(), batch: Vec::new() };
        let mut d = FlowDriver::new(kb, Box::new(Signal(g.clone())));
        let actions = parse(command).unwrap();
        type_boot_command(&mut d, &actions, Duration::ZERO, CancellationToken::new()).await.unwrap();
        d.stats()
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_guest_with_a_small_queue_gets_every_key_in_order() {
        let g = guest(4, 1);
        let command = "Hello, World! ~!@#$%^&*()_+{}|:\"<>? <bs><enter>".repeat(5);
        let stats = type_through(&g, &command).await;
        // what is still queued is read later
        let mut guest = g.lock().unwrap();
        while let Some(ev) = guest.pending.pop_front() {
            guest.received.push(ev);
        }
        let expected = crate::bootcommand::events(&parse(&command).unwrap());
        assert_eq!(guest.dropped, 0);
        assert_eq!(guest.received, expected);
        assert!(stats.waits > 0, "{stats:?}");
        assert_eq!(stats.stalls, 0);
        assert_eq!(stats.sent, expected.len() as u64);
    }

    #[tokio::test(start_paused = true)]
    async fn without_flow_control_the_same_guest_loses_keys() {
        // the fake guest is able to lose keys: the test above proves something
        let g = guest(4, 1);
        let mut kb = Keyboard { guest: g.clone(), batch: Vec::new() };
        let actions = parse("Hello, World!").unwrap();
        type_boot_command(&mut kb, &actions, Duration::ZERO, CancellationToken::new()).await.unwrap();
        assert!(g.lock().unwrap().dropped > 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_guest_that_reads_nothing_stalls_then_typing_goes_on() {
        let g = guest(2, 0);
        let stats = type_through(&g, "abc").await;
        // a down, a up fill the window; b waits for the stall timeout, then goes on blind
        assert_eq!(stats.stalls, 1, "{stats:?}");
        assert!(stats.gave_up, "{stats:?}");
        assert_eq!(stats.sent, 6);
        let guest = g.lock().unwrap();
        assert_eq!(guest.pending.front(), Some(&KeyEvent::Down(Key::Char('a'))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_guest_that_pauses_reading_stalls_and_flow_control_resumes() {
        // reads 2 units, then nothing until the test lets it go on
        let g = guest(2, 1);
        let kb = Keyboard { guest: g.clone(), batch: Vec::new() };
        let mut d = FlowDriver::new(kb, Box::new(Signal(g.clone())));
        let ab = parse("ab").unwrap();
        type_boot_command(&mut d, &ab, Duration::ZERO, CancellationToken::new()).await.unwrap();
        d.flush().await.unwrap();
        g.lock().unwrap().rate = 0;
        type_boot_command(&mut d, &ab, Duration::ZERO, CancellationToken::new()).await.unwrap();
        let s = d.stats();
        assert!(s.stalls >= 1, "{s:?}");
        assert!(!s.gave_up, "a feedback that worked before is not given up: {s:?}");
        g.lock().unwrap().rate = 1;
        let waits = d.stats().waits;
        type_boot_command(&mut d, &ab, Duration::ZERO, CancellationToken::new()).await.unwrap();
        assert!(d.stats().waits > waits, "flow control goes on after a stall: {:?}", d.stats());
    }

    #[tokio::test(start_paused = true)]
    async fn press_gap_waits_for_the_read_then_pauses_by_column() {
        let g = guest(16, 1);
        let kb = Keyboard { guest: g.clone(), batch: Vec::new() };
        let start = tokio::time::Instant::now();
        let mut d = FlowDriver::new(kb, Box::new(Signal(g.clone())))
            .with_press_gap(Box::new(|col| Duration::from_millis(100 + col as u64)));
        type_boot_command(&mut d, &parse("aB<enter>c").unwrap(), Duration::ZERO, CancellationToken::new())
            .await
            .unwrap();
        // gaps after a (col 1), B (2), enter (0), c (1); every press read before its gap
        assert_eq!(tokio::time::Instant::now() - start, Duration::from_millis(101 + 102 + 100 + 101));
        let guest = g.lock().unwrap();
        assert!(guest.pending.is_empty(), "every press was read before the next: {:?}", guest.pending);
        assert_eq!(guest.received.len(), 10);
        assert_eq!(d.stats().stalls, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_press_taken_above_the_keyboard_needs_no_gap() {
        // the program above the keyboard takes 3 presses, then stops
        let g = guest(16, 1);
        let kb = Keyboard { guest: g.clone(), batch: Vec::new() };
        let start = tokio::time::Instant::now();
        let mut d = FlowDriver::new(kb, Box::new(Above::new(&g, 3, Duration::ZERO)))
            .with_press_gap(Box::new(|col| Duration::from_millis(100 + col as u64)));
        type_boot_command(&mut d, &parse("aBcd").unwrap(), Duration::ZERO, CancellationToken::new()).await.unwrap();
        // a, B, c were taken (no gap); d was not seen above the keyboard: the gap at column 4
        assert_eq!(tokio::time::Instant::now() - start, Duration::from_millis(104));
        assert_eq!(d.stats().handled, 3, "{:?}", d.stats());
        assert_eq!(g.lock().unwrap().received.len(), 10, "every event read");
    }

    #[tokio::test(start_paused = true)]
    async fn after_enter_the_buffer_drains_and_the_line_gap_passes() {
        // presses are taken at once; an Enter is drained after 30 ms (the loader took every key)
        let g = guest(16, 1);
        let above = Above::new(&g, u32::MAX, Duration::from_millis(30));
        let calls = above.calls.clone();
        let kb = Keyboard { guest: g.clone(), batch: Vec::new() };
        let start = tokio::time::Instant::now();
        let mut d = FlowDriver::new(kb, Box::new(above))
            .with_press_gap(Box::new(|col| Duration::from_millis(500 + col as u64)))
            .with_line_gap(Duration::from_millis(100));
        let command = parse("ab<enter>c<return>").unwrap();
        type_boot_command(&mut d, &command, Duration::ZERO, CancellationToken::new()).await.unwrap();
        // no press gap (every press taken); each line end: drained (30 ms), then the line gap
        assert_eq!(tokio::time::Instant::now() - start, Duration::from_millis(2 * (30 + 100)));
        assert_eq!(*calls.lock().unwrap(), ["handled", "handled", "drained", "handled", "drained"]);
        assert_eq!(d.stats().handled, 5, "{:?}", d.stats());

        // a feedback that cannot see above the keyboard: the longer of the press gap and line gap
        let g = guest(16, 1);
        let kb = Keyboard { guest: g.clone(), batch: Vec::new() };
        let start = tokio::time::Instant::now();
        let mut d = FlowDriver::new(kb, Box::new(Signal(g.clone())))
            .with_press_gap(Box::new(|col| Duration::from_millis(10 + col as u64)))
            .with_line_gap(Duration::from_millis(100));
        type_boot_command(&mut d, &parse("a<enter>").unwrap(), Duration::ZERO, CancellationToken::new()).await.unwrap();
        assert_eq!(tokio::time::Instant::now() - start, Duration::from_millis(11 + 100));
    }

    #[tokio::test(start_paused = true)]
    async fn events_larger_than_the_window_still_go() {
        struct Big(Shared);
        #[async_trait]
        impl KeyFeedback for Big {
            fn cost(&self, _: KeyEvent) -> usize {
                3
            }
            fn window(&self) -> usize {
                2
            }
            async fn wait_consumed(&mut self, _: u64, _: Duration) -> Result<u64, DriverError> {
                let g = self.0.lock().unwrap();
                Ok(g.queued * 3)
            }
        }
        let g = guest(100, 0);
        let kb = Keyboard { guest: g.clone(), batch: Vec::new() };
        let mut d = FlowDriver::new(kb, Box::new(Big(g.clone())));
        // the fake counts every flushed event as read at once
        type_boot_command(&mut d, &parse("ab").unwrap(), Duration::ZERO, CancellationToken::new()).await.unwrap();
        assert_eq!(d.stats().stalls, 0, "{:?}", d.stats());
        assert_eq!(g.lock().unwrap().queued, 4);
    }
}
