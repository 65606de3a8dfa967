//! The `boot_command` grammar: strings with `<special>` keys and `<waitN>` pauses, parsed into
//! key events.
//!
//! - [`parse`] / [`validate`] / [`lint`]: the grammar (bit-compatible with Packer's) and
//!   qemu-rs's lint of `<tokens>` Packer would type literally;
//! - [`wait_for`]: qemu-rs's `<waitForSerial "text" 60s>` token, split out before parsing;
//! - [`parse_boot_steps`], [`flatten_boot_command`]: the two option shapes;
//! - [`Key`], [`SpecialKey`], [`us_layout`], [`events`]: keys, keysyms, QMP qcodes, Shift handling;
//! - [`KeyDriver`], [`type_boot_command`]: paced, cancellable typing; [`FlowDriver`]: typing with flow
//!   control from a [`KeyFeedback`] (the guest shows what it has read); [`vnc::VncClient`]: the VNC driver.

mod driver;
mod flow;
mod grammar;
mod keys;
mod steps;
#[cfg(test)]
mod tests;
pub mod vnc;
pub mod wait_for;

pub use driver::{
    key_interval, type_boot_command, DriverError, KeyDriver, TypeError, DEFAULT_KEY_INTERVAL, KEY_INTERVAL_ENV,
};
pub use flow::{FlowDriver, FlowStats, Handled, KeyFeedback, DEFAULT_STALL_TIMEOUT};
pub use grammar::{lint, parse, parse_spanned, validate, Action, ParseError, ParseErrorKind, Spanned};
pub use keys::{events, us_layout, Key, KeyEvent, SpecialKey, UsKey, SHIFTED_SYMBOLS};
pub use steps::{flatten_boot_command, parse_boot_steps, BootStep, BootStepError};
