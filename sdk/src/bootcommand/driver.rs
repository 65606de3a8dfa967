//! Typing a parsed boot command through a [`KeyDriver`] (VNC, QMP …), paced and cancellable.

use std::time::Duration;

use async_trait::async_trait;

use super::grammar::Action;
use super::keys::{events, Key, KeyEvent};
use crate::CancellationToken;

/// Why a key driver failed.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// Reading from or writing to the connection failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The remote side broke the protocol or refused us.
    #[error("{0}")]
    Protocol(String),
    /// The remote side closed the connection.
    #[error("{0}")]
    Closed(String),
    /// The driver cannot send this key (e.g. a character a US keyboard cannot type, over QMP).
    #[error("cannot type {key}: {reason}")]
    UnsupportedKey {
        /// The key.
        key: Key,
        /// Why, and what to do instead.
        reason: String,
    },
}

impl DriverError {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        DriverError::Io { context: context.into(), source }
    }
}

/// Something that delivers key events to a machine.
#[async_trait]
pub trait KeyDriver: Send {
    /// Sends one key event. [`type_boot_command`] only sends [`KeyEvent::Down`] and
    /// [`KeyEvent::Up`] (it performs waits itself); a driver given a [`KeyEvent::Wait`] sleeps.
    async fn send(&mut self, ev: KeyEvent) -> Result<(), DriverError>;

    /// Delivers anything buffered. Called before each wait and at the end of a command.
    async fn flush(&mut self) -> Result<(), DriverError>;
}

#[async_trait]
impl KeyDriver for Box<dyn KeyDriver> {
    async fn send(&mut self, ev: KeyEvent) -> Result<(), DriverError> {
        (**self).send(ev).await
    }

    async fn flush(&mut self) -> Result<(), DriverError> {
        (**self).flush().await
    }
}

/// The key interval when neither `boot_key_interval` nor `PACKER_KEY_INTERVAL` sets one.
pub const DEFAULT_KEY_INTERVAL: Duration = Duration::from_millis(100);

/// The environment variable Packer reads the key interval from.
pub const KEY_INTERVAL_ENV: &str = "PACKER_KEY_INTERVAL";

/// The effective key interval, as Packer's VNC driver computes it: a positive `boot_key_interval`
/// wins; otherwise `env` (the value of [`KEY_INTERVAL_ENV`]) if it is a valid Go duration
/// (negative means none); otherwise [`DEFAULT_KEY_INTERVAL`].
pub fn key_interval(configured: Duration, env: Option<&str>) -> Duration {
    if !configured.is_zero() {
        return configured;
    }
    match env.map(super::grammar::go_parse_duration) {
        Some(Ok(ns)) => Duration::from_nanos(u64::try_from(ns).unwrap_or(0)),
        _ => DEFAULT_KEY_INTERVAL,
    }
}

/// Why typing a boot command stopped.
#[derive(Debug, thiserror::Error)]
pub enum TypeError {
    /// The build was cancelled.
    #[error("typing the boot command was cancelled")]
    Cancelled,
    /// The key driver failed.
    #[error("typing the boot command failed: {0}")]
    Driver(#[from] DriverError),
}

/// Sleeps `d` unless `cancel` fires first.
async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> Result<(), TypeError> {
    if d.is_zero() {
        return if cancel.is_cancelled() { Err(TypeError::Cancelled) } else { Ok(()) };
    }
    tokio::select! {
        _ = cancel.cancelled() => Err(TypeError::Cancelled),
        _ = tokio::time::sleep(d) => Ok(()),
    }
}

/// Types `actions` through `driver` like Packer's VNC driver: every key event (down or up) is
/// followed by `key_interval`; `<waitN>` pauses (after a flush); Shift is added around characters
/// that need it (see [`events`]). Cancellation is checked before every event and inside every
/// sleep. The driver is flushed at the end.
pub async fn type_boot_command(
    driver: &mut dyn KeyDriver,
    actions: &[Action],
    key_interval: Duration,
    cancel: CancellationToken,
) -> Result<(), TypeError> {
    for ev in events(actions) {
        if cancel.is_cancelled() {
            return Err(TypeError::Cancelled);
        }
        match ev {
            KeyEvent::Wait(d) => {
                driver.flush().await?;
                tracing::debug!("boot command: waiting {d:?}");
                sleep_or_cancel(d, &cancel).await?;
            }
            key_event => {
                driver.send(key_event).await?;
                sleep_or_cancel(key_interval, &cancel).await?;
            }
        }
    }
    driver.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootcommand::{parse, SpecialKey};

    /// Records events, for checking the sequence the typing loop produces.
    #[derive(Default)]
    struct Recorder {
        sent: Vec<KeyEvent>,
        flushes: usize,
        fail_after: Option<usize>,
    }

    #[async_trait]
    impl KeyDriver for Recorder {
        async fn send(&mut self, ev: KeyEvent) -> Result<(), DriverError> {
            if self.fail_after == Some(self.sent.len()) {
                return Err(DriverError::Closed("server went away".into()));
            }
            self.sent.push(ev);
            Ok(())
        }
        async fn flush(&mut self) -> Result<(), DriverError> {
            self.flushes += 1;
            Ok(())
        }
    }

    #[tokio::test]
    async fn types_events_in_order_and_flushes() {
        let actions = parse("a<wait1ms>B<enter>").unwrap();
        let mut r = Recorder::default();
        type_boot_command(&mut r, &actions, Duration::ZERO, CancellationToken::new()).await.unwrap();
        let shift = Key::Special(SpecialKey::LeftShift);
        assert_eq!(
            r.sent,
            vec![
                KeyEvent::Down(Key::Char('a')),
                KeyEvent::Up(Key::Char('a')),
                KeyEvent::Down(shift),
                KeyEvent::Down(Key::Char('B')),
                KeyEvent::Up(Key::Char('B')),
                KeyEvent::Up(shift),
                KeyEvent::Down(Key::Special(SpecialKey::Enter)),
                KeyEvent::Up(Key::Special(SpecialKey::Enter)),
            ]
        );
        assert_eq!(r.flushes, 2);
    }

    #[test]
    fn key_interval_resolution() {
        let ms = Duration::from_millis;
        assert_eq!(key_interval(ms(5), Some("1s")), ms(5));
        assert_eq!(key_interval(Duration::ZERO, Some("1s")), ms(1000));
        assert_eq!(key_interval(Duration::ZERO, Some("50ms")), ms(50));
        assert_eq!(key_interval(Duration::ZERO, Some("0")), Duration::ZERO);
        assert_eq!(key_interval(Duration::ZERO, Some("-1s")), Duration::ZERO);
        assert_eq!(key_interval(Duration::ZERO, Some("+1.5s")), ms(1500));
        assert_eq!(key_interval(Duration::ZERO, Some("fast")), DEFAULT_KEY_INTERVAL);
        assert_eq!(key_interval(Duration::ZERO, Some("")), DEFAULT_KEY_INTERVAL);
        assert_eq!(key_interval(Duration::ZERO, Some("10")), DEFAULT_KEY_INTERVAL);
        assert_eq!(key_interval(Duration::ZERO, None), DEFAULT_KEY_INTERVAL);
    }

    /// Records the (virtual) instant of every event.
    struct Clocked {
        at: Vec<(tokio::time::Instant, KeyEvent)>,
    }

    #[async_trait]
    impl KeyDriver for Clocked {
        async fn send(&mut self, ev: KeyEvent) -> Result<(), DriverError> {
            self.at.push((tokio::time::Instant::now(), ev));
            Ok(())
        }
        async fn flush(&mut self) -> Result<(), DriverError> {
            Ok(())
        }
    }

    /// With tokio's paused clock, time only moves through our sleeps, so the spacing of events is
    /// exact: one key interval after every down and every up, plus the waits.
    #[tokio::test(start_paused = true)]
    async fn key_interval_follows_every_event_and_waits_add_up() {
        let interval = Duration::from_millis(100);
        let start = tokio::time::Instant::now();
        let mut d = Clocked { at: Vec::new() };
        let actions = parse("A<wait2>b").unwrap();
        type_boot_command(&mut d, &actions, interval, CancellationToken::new()).await.unwrap();
        let offsets: Vec<Duration> = d.at.iter().map(|(t, _)| *t - start).collect();
        let ms = Duration::from_millis;
        // Shift down, A down, A up, Shift up, (2 s), b down, b up.
        assert_eq!(offsets, vec![ms(0), ms(100), ms(200), ms(300), ms(2400), ms(2500)]);
        assert_eq!(tokio::time::Instant::now() - start, ms(2600));
    }

    #[tokio::test]
    async fn cancellation_interrupts_a_long_wait() {
        let actions = parse("a<wait1h>b").unwrap();
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            c2.cancel();
        });
        let mut r = Recorder::default();
        let res = type_boot_command(&mut r, &actions, Duration::ZERO, cancel).await;
        assert!(matches!(res, Err(TypeError::Cancelled)));
        assert_eq!(r.sent.len(), 2, "b must not be typed");
    }

    #[tokio::test]
    async fn already_cancelled_types_nothing() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let mut r = Recorder::default();
        let res = type_boot_command(&mut r, &parse("abc").unwrap(), Duration::from_millis(1), cancel).await;
        assert!(matches!(res, Err(TypeError::Cancelled)));
        assert!(r.sent.is_empty());
    }

    #[tokio::test]
    async fn driver_errors_stop_typing() {
        let mut r = Recorder { fail_after: Some(3), ..Default::default() };
        let res = type_boot_command(&mut r, &parse("abcdef").unwrap(), Duration::ZERO, CancellationToken::new()).await;
        let err = res.unwrap_err();
        assert!(err.to_string().contains("server went away"), "{err}");
        assert_eq!(r.sent.len(), 3);
    }
}
