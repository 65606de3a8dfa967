//! The `boot_command` grammar, bit-compatible with Packer's PEG grammar
//! (`packer-plugin-sdk/bootcommand/boot_command.pigeon`), plus qemu-rs's lint of `<tokens>` that
//! Packer would silently type as literal text.
//!
//! ```text
//! Input      := Expr EOF
//! Expr       := ( Wait | CharToggle | Special | Literal )+        -- ordered choice, no backtracking
//! Wait       := "<" "wait" ( Duration | Integer )? ">"            -- "wait" is case-sensitive
//! CharToggle := "<" AnyChar ( "on"i | "off"i ) ">"
//! Special    := "<" SpecialKey ( "on"i | "off"i )? ">"            -- key names case-insensitive
//! Integer    := "0" | [1-9][0-9]*                                 -- seconds
//! Duration   := ( "-"? Integer ( "." [0-9]+ )? TimeUnit )+        -- then Go's time.ParseDuration
//! TimeUnit   := "ns" | "us" | "µs" | "ms" | "s" | "m" | "h"
//! Literal    := any character
//! ```

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use super::keys::{Key, SpecialKey};
use crate::config::suggest::edit_distance;

/// One step of a parsed boot command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Press and release the key (`a`, `<enter>`).
    Press(Key),
    /// Press the key and keep it down (`<leftCtrlOn>`, `<aOn>`).
    Down(Key),
    /// Release the key (`<leftCtrlOff>`, `<aOff>`).
    Up(Key),
    /// Pause (`<wait>` = 1 s, `<wait5>` = 5 s, `<wait1m30s>`).
    Wait(Duration),
}

/// What is wrong with a boot command (see [`ParseError`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// A `<waitX>` whose number or duration cannot be evaluated (overflow, a sign inside a
    /// multi-part duration such as `1s-2s`). Packer rejects these too.
    InvalidWait {
        /// Why the value is invalid.
        reason: String,
    },
    /// A `<wait0>`, `<wait0s>`, `<wait-1s>` … Packer rejects these at validation
    /// ("Expecting a positive wait value").
    NonPositiveWait,
    /// (lint) `<name>` that is not a special key: Packer would type it character by character.
    UnknownToken {
        /// A special key the author probably meant, as `<name>` (e.g. `<leftCtrl>`).
        suggestion: Option<String>,
    },
    /// (lint) Something like a wait that does not match the wait syntax (`<WAIT5>`, `<wait 5>`,
    /// `<wait5sec>`, `<wait1.5>`): Packer would type it character by character.
    MalformedWait,
    /// (lint) `<>`: Packer would type it literally.
    EmptyToken,
}

impl ParseErrorKind {
    /// Whether this is a qemu-rs lint (text Packer accepts and types literally) rather than
    /// something Packer itself rejects.
    pub fn is_lint(&self) -> bool {
        matches!(self, Self::UnknownToken { .. } | Self::MalformedWait | Self::EmptyToken)
    }
}

/// A problem in a boot command, with its position and a hint on how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    /// Byte offset of the offending token in the command.
    pub offset: usize,
    /// 1-based line of the offending token (lines are separated by `\n` in the command).
    pub line: usize,
    /// 1-based column (in characters) of the offending token.
    pub column: usize,
    /// The offending text (shortened when long).
    pub token: String,
    /// What is wrong.
    pub kind: ParseErrorKind,
}

const WAIT_SYNTAX: &str = "waits are written in lower case without spaces: <wait> (1 second), <wait5> (whole \
                           seconds) or a Go duration such as <wait1m30s>, <wait500ms>, <wait1.5s> (units ns, us, \
                           ms, s, m, h)";
const LITERAL_ESCAPE: &str = "to type a literal `<`, write <<on><<off>";

impl ParseError {
    /// How to fix the problem.
    pub fn hint(&self) -> String {
        match &self.kind {
            ParseErrorKind::InvalidWait { .. } => WAIT_SYNTAX.to_string(),
            ParseErrorKind::NonPositiveWait => "use a wait longer than zero, or remove it".to_string(),
            ParseErrorKind::UnknownToken { suggestion } => {
                let names: Vec<&str> = SpecialKey::GRAMMAR_ORDER.iter().map(|(n, _)| *n).collect();
                let mut h = String::new();
                if let Some(s) = suggestion {
                    h.push_str(&format!("did you mean {s}? "));
                }
                h.push_str(&format!(
                    "Packer would type this text literally. Special keys (case-insensitive, optionally followed by \
                     On/Off): {}; {LITERAL_ESCAPE}",
                    names.join(" ")
                ));
                h
            }
            ParseErrorKind::MalformedWait => format!("Packer would type this text literally; {WAIT_SYNTAX}"),
            ParseErrorKind::EmptyToken => format!("Packer would type `<>` literally; {LITERAL_ESCAPE}"),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.kind {
            ParseErrorKind::InvalidWait { reason } => format!("invalid wait value ({reason})"),
            ParseErrorKind::NonPositiveWait => "expecting a positive wait value".to_string(),
            ParseErrorKind::UnknownToken { .. } => "unknown special key".to_string(),
            ParseErrorKind::MalformedWait => "malformed wait".to_string(),
            ParseErrorKind::EmptyToken => "empty key name".to_string(),
        };
        write!(f, "{what} `{}` at line {}, column {}: {}", self.token, self.line, self.column, self.hint())
    }
}

/// A parsed action with the byte range of the source text it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned {
    /// Byte range in the command.
    pub span: Range<usize>,
    /// The action.
    pub action: Action,
}

/// Parses a boot command (already template-rendered) exactly as Packer does, including Packer's
/// validation (waits must be positive). Unknown `<tokens>` are typed literally, as in Packer: use
/// [`lint`] or [`validate`] to reject them. An empty command is an empty list of actions.
pub fn parse(command: &str) -> Result<Vec<Action>, ParseError> {
    parse_spanned(command).map(|v| v.into_iter().map(|s| s.action).collect())
}

/// Like [`parse`], keeping the source span of each action.
pub fn parse_spanned(command: &str) -> Result<Vec<Spanned>, ParseError> {
    let (items, mut errors) = run(command);
    if errors.is_empty() {
        Ok(items.into_iter().map(|i| i.spanned).collect())
    } else {
        Err(errors.swap_remove(0))
    }
}

/// qemu-rs's lint: every `<…>` that looks like a token but that Packer would type literally
/// (`<foo>`, `<ctrl>`, `<WAIT5>`, `<wait 5>`, `<wait5sec>`, `<>`). A `<` not followed by a
/// token-like word and `>` (`cat < file`, `a<b`) is not reported. A literal `<` can always be
/// typed with `<<on><<off>`.
pub fn lint(command: &str) -> Vec<ParseError> {
    let (items, _) = run(command);
    lint_items(command, &items)
}

/// Every problem in a boot command, for `Prepare`: Packer's parse and validation errors and
/// qemu-rs's lint, in source order.
pub fn validate(command: &str) -> Vec<ParseError> {
    let (items, mut errors) = run(command);
    errors.extend(lint_items(command, &items));
    errors.sort_by_key(|e| e.offset);
    errors
}

struct Item {
    spanned: Spanned,
    /// Whether this is a plain literal `<` (the start of text that failed to parse as a token).
    literal_lt: bool,
}

/// A tiny cursor over the characters of the command with their byte offsets.
struct Src<'a> {
    text: &'a str,
    chars: Vec<(usize, char)>,
}

impl<'a> Src<'a> {
    fn new(text: &'a str) -> Self {
        Src { text, chars: text.char_indices().collect() }
    }
    fn at(&self, i: usize) -> Option<char> {
        self.chars.get(i).map(|(_, c)| *c)
    }
    fn byte(&self, i: usize) -> usize {
        self.chars.get(i).map(|(b, _)| *b).unwrap_or(self.text.len())
    }
    fn slice(&self, from: usize, to: usize) -> &'a str {
        &self.text[self.byte(from)..self.byte(to)]
    }
    /// Case-sensitive literal match at `i`; returns the index after it.
    fn lit(&self, i: usize, s: &str) -> Option<usize> {
        let mut j = i;
        for c in s.chars() {
            if self.at(j)? != c {
                return None;
            }
            j += 1;
        }
        Some(j)
    }
    /// Case-insensitive literal match (pigeon's `"…"i`: each input rune is lower-cased with Go's
    /// `unicode.ToLower` and compared with the lower-cased literal).
    fn lit_i(&self, i: usize, s: &str) -> Option<usize> {
        let mut j = i;
        for c in s.chars() {
            if go_lower(self.at(j)?) != c.to_ascii_lowercase() {
                return None;
            }
            j += 1;
        }
        Some(j)
    }
    fn digit(&self, i: usize) -> bool {
        self.at(i).is_some_and(|c| c.is_ascii_digit())
    }
}

/// Go's `unicode.ToLower` for one rune (single-rune mapping, unlike Rust's `to_lowercase`).
fn go_lower(c: char) -> char {
    match c {
        'A'..='Z' => c.to_ascii_lowercase(),
        '\u{0130}' => 'i', // LATIN CAPITAL LETTER I WITH DOT ABOVE
        '\u{212A}' => 'k', // KELVIN SIGN
        _ if c.is_ascii() => c,
        _ => {
            let mut l = c.to_lowercase();
            match (l.next(), l.next()) {
                (Some(x), None) => x,
                _ => c,
            }
        }
    }
}

enum Toggle {
    On,
    Off,
}

fn toggle_at(src: &Src, i: usize) -> Option<(usize, Toggle)> {
    if let Some(j) = src.lit_i(i, "on") {
        return Some((j, Toggle::On));
    }
    src.lit_i(i, "off").map(|j| (j, Toggle::Off))
}

/// A Go-style evaluation error found while matching (pigeon records these even when the enclosing
/// rule then fails, and the whole parse fails).
struct EvalError {
    start: usize,
    end: usize,
    reason: String,
}

/// `Integer := "0" | [1-9][0-9]*`; on overflow of int64 (Go's `strconv.ParseInt`) an error is recorded.
fn integer_at(src: &Src, i: usize, errs: &mut Vec<EvalError>) -> Option<(usize, Option<i64>)> {
    match src.at(i)? {
        '0' => Some((i + 1, Some(0))),
        '1'..='9' => {
            let mut j = i + 1;
            while src.digit(j) {
                j += 1;
            }
            match src.slice(i, j).parse::<i64>() {
                Ok(v) => Some((j, Some(v))),
                Err(_) => {
                    errs.push(EvalError { start: i, end: j, reason: "number out of range".into() });
                    Some((j, None))
                }
            }
        }
        _ => None,
    }
}

/// `Number := "-"? Integer ("." [0-9]+)?`
fn number_at(src: &Src, i: usize, errs: &mut Vec<EvalError>) -> Option<usize> {
    let mut j = i;
    if src.at(j) == Some('-') {
        j += 1;
    }
    let (mut j, _) = integer_at(src, j, errs)?;
    if src.at(j) == Some('.') && src.digit(j + 1) {
        j += 2;
        while src.digit(j) {
            j += 1;
        }
    }
    Some(j)
}

fn time_unit_at(src: &Src, i: usize) -> Option<usize> {
    ["ns", "us", "µs", "ms", "s", "m", "h"].iter().find_map(|u| src.lit(i, u))
}

/// `Duration := (Number TimeUnit)+`, evaluated with Go's `time.ParseDuration` (nanoseconds).
fn duration_at(src: &Src, i: usize, errs: &mut Vec<EvalError>) -> Option<(usize, Option<i64>)> {
    let mut j = i;
    let mut local = Vec::new();
    loop {
        let mut tmp = Vec::new();
        let Some(n) = number_at(src, j, &mut tmp) else { break };
        let Some(u) = time_unit_at(src, n) else {
            // The failed iteration's Integer action still ran (pigeon keeps its errors).
            local.extend(tmp);
            break;
        };
        local.extend(tmp);
        j = u;
    }
    errs.extend(local);
    if j == i {
        return None;
    }
    match go_parse_duration(src.slice(i, j)) {
        Ok(ns) => Some((j, Some(ns))),
        Err(reason) => {
            errs.push(EvalError { start: i, end: j, reason });
            Some((j, None))
        }
    }
}

/// Go's `time.ParseDuration` (nanoseconds, possibly negative).
pub(super) fn go_parse_duration(s: &str) -> Result<i64, String> {
    let invalid = || format!("invalid duration {s:?}");
    let mut rest = s;
    let neg = rest.starts_with('-');
    if neg || rest.starts_with('+') {
        rest = &rest[1..];
    }
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    const LIMIT: u64 = 1 << 63;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        if !rest.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
            return Err(invalid());
        }
        let int_len = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let mut v: u64 = 0;
        for d in rest[..int_len].bytes() {
            v = v.checked_mul(10).and_then(|v| v.checked_add(u64::from(d - b'0'))).ok_or_else(invalid)?;
            if v > LIMIT {
                return Err(invalid());
            }
        }
        rest = &rest[int_len..];
        let (mut f, mut scale, mut overflow) = (0u64, 1f64, false);
        if let Some(r) = rest.strip_prefix('.') {
            let frac_len = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            for d in r[..frac_len].bytes() {
                if overflow {
                    continue;
                }
                if f > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let y = f * 10 + u64::from(d - b'0');
                if y > LIMIT {
                    overflow = true;
                    continue;
                }
                f = y;
                scale *= 10.0;
            }
            rest = &r[frac_len..];
        }
        let unit_len = rest.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(rest.len());
        let unit: u64 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("missing unit in duration {s:?}")),
            u => return Err(format!("unknown unit {u:?} in duration {s:?}")),
        };
        rest = &rest[unit_len..];
        if v > LIMIT / unit {
            return Err(invalid());
        }
        v *= unit;
        if f > 0 {
            v += (f as f64 * (unit as f64 / scale)) as u64;
            if v > LIMIT {
                return Err(invalid());
            }
        }
        total += v;
        if total > LIMIT {
            return Err(invalid());
        }
    }
    if neg {
        return Ok((total as i64).wrapping_neg());
    }
    if total > LIMIT - 1 {
        return Err(invalid());
    }
    Ok(total as i64)
}

enum WaitValue {
    Default,
    Seconds(Option<i64>),
    Nanos(Option<i64>),
}

/// `Wait := "<" "wait" (Duration / Integer)? ">"`
fn wait_at(src: &Src, i: usize, errs: &mut Vec<EvalError>) -> Option<(usize, WaitValue)> {
    let j = src.lit(i, "<wait")?;
    let (j, value) = if let Some((j, ns)) = duration_at(src, j, errs) {
        (j, WaitValue::Nanos(ns))
    } else if let Some((j, s)) = integer_at(src, j, errs) {
        (j, WaitValue::Seconds(s))
    } else {
        (j, WaitValue::Default)
    };
    src.lit(j, ">").map(|j| (j, value))
}

fn special_at(src: &Src, i: usize) -> Option<(usize, Action)> {
    let j = src.lit(i, "<")?;
    // PEG ordered choice: the first name that matches is taken, even if the rest then fails.
    let (j, key) = SpecialKey::GRAMMAR_ORDER.iter().find_map(|(name, key)| src.lit_i(j, name).map(|j| (j, *key)))?;
    let key = Key::Special(key);
    let (j, action) = match toggle_at(src, j) {
        Some((j, Toggle::On)) => (j, Action::Down(key)),
        Some((j, Toggle::Off)) => (j, Action::Up(key)),
        None => (j, Action::Press(key)),
    };
    src.lit(j, ">").map(|j| (j, action))
}

fn char_toggle_at(src: &Src, i: usize) -> Option<(usize, Action)> {
    let j = src.lit(i, "<")?;
    let c = src.at(j)?;
    let (j, t) = toggle_at(src, j + 1)?;
    let j = src.lit(j, ">")?;
    Some(match t {
        Toggle::On => (j, Action::Down(Key::Char(c))),
        Toggle::Off => (j, Action::Up(Key::Char(c))),
    })
}

fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, col)
}

fn shorten(s: &str) -> String {
    const MAX: usize = 48;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(MAX).collect();
        t.push('…');
        t
    }
}

fn error_at(text: &str, span: Range<usize>, kind: ParseErrorKind) -> ParseError {
    let (line, column) = position(text, span.start);
    ParseError { offset: span.start, line, column, token: shorten(&text[span]), kind }
}

/// Runs the grammar over the whole command: the actions and every Packer-side error.
fn run(command: &str) -> (Vec<Item>, Vec<ParseError>) {
    let src = Src::new(command);
    let mut items = Vec::new();
    let mut errors = Vec::new();
    let mut evals = Vec::new();
    let mut i = 0;
    let n = src.chars.len();
    while i < n {
        let start = src.byte(i);
        if let Some((j, value)) = wait_at(&src, i, &mut evals) {
            let span = start..src.byte(j);
            let ns: Option<i128> = match value {
                WaitValue::Default => Some(1_000_000_000),
                WaitValue::Nanos(ns) => ns.map(i128::from),
                // Go multiplies by time.Second and silently wraps on overflow; we reject instead.
                WaitValue::Seconds(None) => None,
                WaitValue::Seconds(Some(s)) => {
                    let ns = i128::from(s) * 1_000_000_000;
                    if ns > i128::from(i64::MAX) {
                        errors.push(error_at(
                            command,
                            span.clone(),
                            ParseErrorKind::InvalidWait { reason: "wait too long".into() },
                        ));
                        None
                    } else {
                        Some(ns)
                    }
                }
            };
            if let Some(ns) = ns {
                if ns <= 0 {
                    errors.push(error_at(command, span.clone(), ParseErrorKind::NonPositiveWait));
                }
                let d = Duration::from_nanos(u64::try_from(ns).unwrap_or(0));
                items.push(Item { spanned: Spanned { span, action: Action::Wait(d) }, literal_lt: false });
            }
            i = j;
            continue;
        }
        let matched = char_toggle_at(&src, i).or_else(|| special_at(&src, i));
        if let Some((j, action)) = matched {
            items.push(Item { spanned: Spanned { span: start..src.byte(j), action }, literal_lt: false });
            i = j;
            continue;
        }
        let c = src.at(i).unwrap_or('\0');
        items.push(Item {
            spanned: Spanned { span: start..src.byte(i + 1), action: Action::Press(Key::Char(c)) },
            literal_lt: c == '<',
        });
        i += 1;
    }
    for e in evals {
        let span = src.byte(e.start)..src.byte(e.end);
        errors.insert(0, error_at(command, span, ParseErrorKind::InvalidWait { reason: e.reason }));
    }
    errors.sort_by_key(|e| e.offset);
    (items, errors)
}

fn lint_items(command: &str, items: &[Item]) -> Vec<ParseError> {
    let mut out = Vec::new();
    for item in items.iter().filter(|i| i.literal_lt) {
        let start = item.spanned.span.start;
        let rest = &command[start + 1..];
        let Some(close) = rest.char_indices().take(40).find(|(_, c)| matches!(c, '>' | '<' | '\n')) else {
            continue;
        };
        if close.1 != '>' {
            continue;
        }
        let content = &rest[..close.0];
        let span = start..start + 1 + close.0 + 1;
        let kind = if content.is_empty() {
            ParseErrorKind::EmptyToken
        } else if content.to_lowercase().starts_with("wait") {
            ParseErrorKind::MalformedWait
        } else if content.starts_with(|c: char| c.is_ascii_alphabetic())
            && content.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            ParseErrorKind::UnknownToken { suggestion: suggest(content) }
        } else {
            continue;
        };
        out.push(error_at(command, span, kind));
    }
    out
}

/// A likely intended special key for an unknown name, as `<name>` (keeping an `On`/`Off` suffix).
fn suggest(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    let (base, suffix) = if let Some(b) = lower.strip_suffix("off") {
        (b.to_string(), "Off")
    } else if let Some(b) = lower.strip_suffix("on") {
        (b.to_string(), "On")
    } else {
        (lower.clone(), "")
    };
    const ALIASES: [(&str, &str); 16] = [
        ("ctrl", "leftCtrl"),
        ("control", "leftCtrl"),
        ("alt", "leftAlt"),
        ("shift", "leftShift"),
        ("super", "leftSuper"),
        ("win", "leftSuper"),
        ("meta", "leftSuper"),
        ("space", "spacebar"),
        ("backspace", "bs"),
        ("delete", "del"),
        ("escape", "esc"),
        ("pgup", "pageUp"),
        ("pgdn", "pageDown"),
        ("pagedn", "pageDown"),
        ("ins", "insert"),
        ("ret", "return"),
    ];
    let candidates = |b: &str| -> Option<&'static str> {
        if let Some((_, k)) = ALIASES.iter().find(|(a, _)| *a == b) {
            return Some(k);
        }
        let limit = |n: &str| if n.len() <= 4 { 1 } else { 2 };
        SpecialKey::GRAMMAR_ORDER
            .iter()
            // The distance is at least the length difference: skip names that cannot be close
            // (most of them, for a long unknown token) without computing it.
            .filter(|(n, _)| n.len().abs_diff(b.len()) <= limit(n))
            .map(|(n, _)| (edit_distance(&n.to_ascii_lowercase(), b), *n))
            .filter(|(d, n)| *d <= limit(n))
            .min_by_key(|(d, _)| *d)
            .map(|(_, n)| n)
    };
    if let Some(k) = candidates(&base) {
        return Some(format!("<{k}{suffix}>"));
    }
    candidates(&lower).map(|k| format!("<{k}>"))
}
