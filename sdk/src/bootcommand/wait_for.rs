//! `<waitForSerial "text" 60s>`: a boot-command token of qemu-rs (not Packer's) that pauses typing
//! until the guest's serial console shows `text`, for at most the timeout.
//!
//! ```text
//! WaitFor  := "<waitForSerial" " "+ Quoted " "+ Duration ">"     -- case-sensitive
//! Quoted   := '"' ( [^"\\] | '\\"' | '\\\\' )+ '"'              -- the text, not empty
//! Duration := a positive Go duration (60s, 2m30s, 500ms)
//! ```
//!
//! Packer's grammar has no such token (it would type it character by character), so a command
//! using it is only meaningful to qemu-rs. [`split`] cuts a command into the key text around the
//! tokens (each part parsed with [`parse`](super::parse) as usual) and the waits; [`mask`] blanks the
//! tokens so the rest can be checked with [`validate`](super::validate) at the same positions.

use std::time::Duration;

use super::grammar::go_parse_duration;

/// The token's opening, up to the first space.
pub const WAIT_FOR_SERIAL: &str = "<waitForSerial";

/// The syntax, for error messages.
pub const WAIT_FOR_SYNTAX: &str = "write <waitForSerial \"text\" TIMEOUT>, e.g. <waitForSerial \"login:\" 2m>: the \
                                   text in double quotes (\\\" for a quote, \\\\ for a backslash), then a positive \
                                   Go duration";

/// One part of a boot command with `<waitForSerial>` tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Keys, in Packer's grammar (may be empty).
    Keys(String),
    /// Wait until the serial console shows `text`, at most `timeout`.
    WaitForSerial {
        /// The text to wait for (a plain substring, not a pattern).
        text: String,
        /// How long to wait before the build fails.
        timeout: Duration,
    },
}

/// A malformed `<waitForSerial …>` token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed <waitForSerial> token `{token}` at byte {offset}: {reason}; {WAIT_FOR_SYNTAX}")]
pub struct WaitForError {
    /// Byte offset of the token.
    pub offset: usize,
    /// The token (shortened when long).
    pub token: String,
    /// What is wrong.
    pub reason: String,
}

/// Splits `command` into key text and waits (see the module documentation).
pub fn split(command: &str) -> Result<Vec<Segment>, WaitForError> {
    let mut out = Vec::new();
    let mut rest_from = 0;
    for (start, end, token) in tokens(command) {
        let token = token?;
        out.push(Segment::Keys(command[rest_from..start].to_string()));
        out.push(token);
        rest_from = end;
    }
    out.push(Segment::Keys(command[rest_from..].to_string()));
    out.retain(|s| !matches!(s, Segment::Keys(k) if k.is_empty()));
    Ok(out)
}

/// Every malformed token of `command`.
pub fn errors(command: &str) -> Vec<WaitForError> {
    tokens(command).filter_map(|(_, _, t)| t.err()).collect()
}

/// `command` with every `<waitForSerial …>` token (well-formed or not) replaced by as many `x`
/// characters, so the key grammar can be checked at unchanged positions.
pub fn mask(command: &str) -> String {
    let mut out = String::with_capacity(command.len());
    let mut from = 0;
    for (start, end, _) in tokens(command) {
        out.push_str(&command[from..start]);
        out.extend(std::iter::repeat_n('x', command[start..end].chars().count()));
        from = end;
    }
    out.push_str(&command[from..]);
    out
}

type Found = (usize, usize, Result<Segment, WaitForError>);

/// The tokens of `command`: start, end (bytes) and the parsed token or why it is malformed. A
/// malformed token ends at the next `>` (or the end of the command).
fn tokens(command: &str) -> impl Iterator<Item = Found> + '_ {
    let mut from = 0;
    std::iter::from_fn(move || {
        let start = from + command.get(from..)?.find(WAIT_FOR_SERIAL)?;
        let (end, parsed) = parse_token(command, start);
        from = end;
        Some((start, end, parsed))
    })
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s.to_string()
    }
}

/// Parses the token starting at `start`; returns its end and the result.
fn parse_token(command: &str, start: usize) -> (usize, Result<Segment, WaitForError>) {
    let after = start + WAIT_FOR_SERIAL.len();
    let fail = |end: usize, reason: &str| {
        let end = end.min(command.len());
        (end, Err(WaitForError { offset: start, token: shorten(&command[start..end]), reason: reason.to_string() }))
    };
    let bad_end = |from: usize| command[from..].find('>').map(|i| from + i + 1).unwrap_or(command.len());
    let rest = &command[after..];
    let trimmed = rest.trim_start_matches(' ');
    if trimmed.len() == rest.len() || !trimmed.starts_with('"') {
        return fail(bad_end(after), "expected a space then the text in double quotes");
    }
    // the quoted text
    let q = command.len() - trimmed.len() + 1;
    let mut text = String::new();
    let mut chars = command[q..].char_indices();
    let mut close = None;
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                close = Some(q + i + 1);
                break;
            }
            '\\' => match chars.next() {
                Some((_, e @ ('"' | '\\'))) => text.push(e),
                _ => return fail(bad_end(q + i), "only \\\" and \\\\ may follow a backslash in the text"),
            },
            c => text.push(c),
        }
    }
    let Some(close) = close else { return fail(command.len(), "the text has no closing double quote") };
    if text.is_empty() {
        return fail(bad_end(close), "the text is empty");
    }
    let rest = &command[close..];
    let trimmed = rest.trim_start_matches(' ');
    let Some(gt) = trimmed.find('>') else { return fail(command.len(), "no closing `>`") };
    if gt == 0 {
        return fail(command.len() - trimmed.len() + 1, "a timeout is required");
    }
    if trimmed.len() == rest.len() {
        return fail(close + gt + 1 + (rest.len() - trimmed.len()), "expected a space then a timeout");
    }
    let d_start = command.len() - trimmed.len();
    let end = d_start + gt + 1;
    let duration = trimmed[..gt].trim_end_matches(' ');
    match go_parse_duration(duration) {
        Ok(ns) if ns > 0 => {
            (end, Ok(Segment::WaitForSerial { text, timeout: Duration::from_nanos(u64::try_from(ns).unwrap_or(0)) }))
        }
        Ok(_) => fail(end, "the timeout must be positive"),
        Err(e) if duration.is_empty() => fail(end, &format!("a timeout is required ({e})")),
        Err(e) => fail(end, &format!("invalid timeout {duration:?} ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(text: &str, secs: u64) -> Segment {
        Segment::WaitForSerial { text: text.into(), timeout: Duration::from_secs(secs) }
    }

    #[test]
    fn splits_keys_and_waits() {
        let s = split(r#"<waitForSerial "boot:" 30s>linux<enter><waitForSerial "say \"hi\" \\o/"  2m >root<enter>"#)
            .unwrap();
        assert_eq!(
            s,
            vec![
                wait("boot:", 30),
                Segment::Keys("linux<enter>".into()),
                wait(r#"say "hi" \o/"#, 120),
                Segment::Keys("root<enter>".into()),
            ]
        );
        assert_eq!(split("abc<wait5>").unwrap(), vec![Segment::Keys("abc<wait5>".into())]);
        assert_eq!(split("").unwrap(), vec![]);
        // `>` inside the text is text
        assert_eq!(split(r#"<waitForSerial "a>b" 1s>"#).unwrap(), vec![wait("a>b", 1)]);
    }

    #[test]
    fn malformed_tokens_are_errors_with_the_reason() {
        for (cmd, reason) in [
            (r#"<waitForSerial "login:">"#, "timeout is required"),
            (r#"<waitForSerial "login:" soon>"#, "invalid timeout"),
            (r#"<waitForSerial "login:" 0s>"#, "positive"),
            (r#"<waitForSerial login: 5s>"#, "double quotes"),
            (r#"<waitForSerial"login:" 5s>"#, "double quotes"),
            (r#"<waitForSerial "" 5s>"#, "empty"),
            (r#"<waitForSerial "login: 5s>"#, "closing double quote"),
            (r#"<waitForSerial "a\nb" 5s>"#, "backslash"),
            (r#"<waitForSerial "a" 5s"#, "closing `>`"),
            (r#"<waitForSerial "a"5s>"#, "a space then a timeout"),
        ] {
            let e = split(cmd).unwrap_err();
            assert!(e.reason.contains(reason), "{cmd}: {e}");
            assert!(e.to_string().contains("<waitForSerial \"login:\" 2m>"), "{e}");
            assert_eq!(errors(cmd).len(), 1, "{cmd}");
        }
    }

    #[test]
    fn mask_keeps_positions() {
        let cmd = r#"a<waitForSerial "x" 1s>b<waitForSerial oops>c<foo>"#;
        let m = mask(cmd);
        assert_eq!(m.len(), cmd.len());
        assert!(m.starts_with("axxxx"));
        assert_eq!(m.find("<foo>"), cmd.find("<foo>"));
        assert!(!m.contains("waitFor"));
        assert_eq!(errors(cmd).len(), 1);
    }
}
