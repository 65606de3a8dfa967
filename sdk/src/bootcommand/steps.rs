//! `boot_command` (a list joined into one string) and `boot_steps` (a list of
//! `[command, description]` entries).

use super::grammar::{validate, ParseError};

/// Joins the `boot_command` list with no separator, as Packer does (`FlatBootCommand`).
pub fn flatten_boot_command(parts: &[String]) -> String {
    parts.concat()
}

/// One `boot_steps` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootStep {
    /// The keys to type (boot command syntax; still to be template-rendered).
    pub command: String,
    /// What the step does, logged as "Typing boot command for: …" (`None` when absent or empty).
    pub description: Option<String>,
}

/// What is wrong with one `boot_steps` entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootStepError {
    /// The entry has more than two elements.
    #[error(
        "boot_steps entry {index} has {count} elements; write each step as [\"<keys>\"] or [\"<keys>\", \"description\"]"
    )]
    TooManyElements {
        /// 1-based position of the entry in `boot_steps`.
        index: usize,
        /// How many elements it has.
        count: usize,
    },
    /// The entry's command does not parse, or fails the lint.
    #[error("boot_steps entry {index}: {error}")]
    Command {
        /// 1-based position of the entry in `boot_steps`.
        index: usize,
        /// The problem in the command.
        error: ParseError,
    },
}

/// Turns the raw `boot_steps` value into steps: empty entries are skipped (as in Packer), entries
/// with more than two elements are rejected, and — unlike Packer, which only finds them while
/// typing — every command is checked with [`validate`] (parse errors and lint). Returns every
/// problem at once. Commands should be checked before template rendering only if their templates
/// cannot produce `<`; the builder parses each step again after rendering.
pub fn parse_boot_steps(raw: &[Vec<String>]) -> Result<Vec<BootStep>, Vec<BootStepError>> {
    let mut steps = Vec::new();
    let mut errors = Vec::new();
    for (i, entry) in raw.iter().enumerate() {
        let index = i + 1;
        match entry.as_slice() {
            [] => continue,
            [command] => steps.push(BootStep { command: command.clone(), description: None }),
            [command, description] => steps.push(BootStep {
                command: command.clone(),
                description: Some(description.clone()).filter(|d| !d.is_empty()),
            }),
            _ => {
                errors.push(BootStepError::TooManyElements { index, count: entry.len() });
                continue;
            }
        }
        let command = &entry[0];
        errors.extend(validate(command).into_iter().map(|error| BootStepError::Command { index, error }));
    }
    if errors.is_empty() {
        Ok(steps)
    } else {
        Err(errors)
    }
}
