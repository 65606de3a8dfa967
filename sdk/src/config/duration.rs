//! Go-style durations (`time.ParseDuration`): `"1m30s"`, `"100ms"`, `"1.5h"`, `"-1s"`.

use std::fmt;

use serde_json::Value;

use super::value::{describe, ConfigValue, Shape};
use crate::hcl::CtyType;

/// A signed duration with nanosecond precision, parsed like Go's `time.ParseDuration` and
/// printed like Go's `Duration.String()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration {
    nanos: i64,
}

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Empty string.
    #[error("empty duration; write a number followed by a unit, e.g. \"30s\" or \"1m30s\"")]
    Empty,
    /// Not of the form `<number><unit>…`.
    #[error(
        "invalid duration {0:?}; write numbers followed by units (ns, us, ms, s, m, h), e.g. \"1m30s\" or \"500ms\""
    )]
    Invalid(String),
    /// A number without a unit (other than the bare `0`).
    #[error("missing unit in duration {0:?}; add one of ns, us, ms, s, m, h (e.g. \"{0}s\")")]
    MissingUnit(String),
    /// An unknown unit.
    #[error("unknown unit {unit:?} in duration {input:?}; use one of ns, us, µs, ms, s, m, h")]
    UnknownUnit {
        /// The unit found.
        unit: String,
        /// The whole input.
        input: String,
    },
    /// More than about 292 years.
    #[error("duration {0:?} is too large (the maximum is about 2562047h)")]
    Overflow(String),
}

impl Duration {
    /// Zero.
    pub const ZERO: Duration = Duration { nanos: 0 };

    /// A duration of `nanos` nanoseconds (negative allowed).
    pub const fn from_nanos(nanos: i64) -> Self {
        Duration { nanos }
    }
    /// A duration of `ms` milliseconds.
    pub const fn from_millis(ms: i64) -> Self {
        Duration { nanos: ms.saturating_mul(1_000_000) }
    }
    /// A duration of `secs` seconds.
    pub const fn from_secs(secs: i64) -> Self {
        Duration { nanos: secs.saturating_mul(1_000_000_000) }
    }
    /// The signed number of nanoseconds.
    pub const fn as_nanos(&self) -> i64 {
        self.nanos
    }
    /// Whether the duration is below zero (Packer uses e.g. `boot_wait = "-1s"` for "no wait").
    pub const fn is_negative(&self) -> bool {
        self.nanos < 0
    }
    /// Whether the duration is exactly zero.
    pub const fn is_zero(&self) -> bool {
        self.nanos == 0
    }
    /// As a `std::time::Duration`; negative durations become zero.
    pub fn to_std(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.nanos.max(0) as u64)
    }

    /// Parses a Go duration string: an optional sign, then one or more `<number><unit>` pairs
    /// (number may have a fraction; units `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`). `"0"` is allowed
    /// without a unit.
    pub fn parse(input: &str) -> Result<Duration, DurationError> {
        let s = input.trim();
        let invalid = || DurationError::Invalid(input.to_string());
        let (neg, mut rest) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        if s.is_empty() {
            return Err(DurationError::Empty);
        }
        if rest == "0" {
            return Ok(Duration::ZERO);
        }
        if rest.is_empty() {
            return Err(invalid());
        }
        let mut total: u128 = 0;
        while !rest.is_empty() {
            // number
            let int_len = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
            let int_part = &rest[..int_len];
            rest = &rest[int_len..];
            let mut frac_part = "";
            if let Some(after_dot) = rest.strip_prefix('.') {
                let frac_len = after_dot.bytes().take_while(|b| b.is_ascii_digit()).count();
                frac_part = &after_dot[..frac_len];
                rest = &after_dot[frac_len..];
            }
            if int_part.is_empty() && frac_part.is_empty() {
                return Err(invalid());
            }
            // unit
            let unit_len = rest.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            if unit.is_empty() {
                return Err(DurationError::MissingUnit(input.to_string()));
            }
            let unit_nanos: u128 = match unit {
                "ns" => 1,
                "us" | "µs" | "μs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                _ => return Err(DurationError::UnknownUnit { unit: unit.to_string(), input: input.to_string() }),
            };
            let overflow = || DurationError::Overflow(input.to_string());
            let whole: u128 = if int_part.is_empty() { 0 } else { int_part.parse().map_err(|_| overflow())? };
            let mut value = whole.checked_mul(unit_nanos).ok_or_else(overflow)?;
            if !frac_part.is_empty() {
                // Keep at most 30 fractional digits; more cannot change a nanosecond result.
                let digits = &frac_part[..frac_part.len().min(30)];
                let f: u128 = digits.parse().map_err(|_| invalid())?;
                let scale = 10u128.pow(digits.len() as u32);
                value = value.checked_add(f.saturating_mul(unit_nanos) / scale).ok_or_else(overflow)?;
            }
            total = total.checked_add(value).ok_or_else(overflow)?;
            if total > i64::MAX as u128 + 1 {
                return Err(overflow());
            }
        }
        if neg {
            Ok(Duration { nanos: (-(total as i128)) as i64 })
        } else if total > i64::MAX as u128 {
            Err(DurationError::Overflow(input.to_string()))
        } else {
            Ok(Duration { nanos: total as i64 })
        }
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration { nanos: i64::try_from(d.as_nanos()).unwrap_or(i64::MAX) }
    }
}

impl std::str::FromStr for Duration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Duration::parse(s)
    }
}

/// Writes `value / 10^prec` with trailing fractional zeros trimmed (Go's `fmtFrac`/`fmtInt`).
fn write_scaled(out: &mut String, value: u128, prec: u32) {
    let scale = 10u128.pow(prec);
    out.push_str(&(value / scale).to_string());
    let frac = value % scale;
    if frac != 0 {
        let digits = format!("{:0width$}", frac, width = prec as usize);
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
}

impl fmt::Display for Duration {
    /// Go's `Duration.String()`: `"1h2m3.5s"`, `"1m30s"`, `"100ms"`, `"0s"`, `"-1s"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        if self.nanos < 0 {
            out.push('-');
        }
        let u = self.nanos.unsigned_abs() as u128;
        if u == 0 {
            return f.write_str("0s");
        }
        if u < 1_000_000_000 {
            if u < 1_000 {
                out.push_str(&format!("{u}ns"));
            } else if u < 1_000_000 {
                write_scaled(&mut out, u, 3);
                out.push_str("µs");
            } else {
                write_scaled(&mut out, u, 6);
                out.push_str("ms");
            }
            return f.write_str(&out);
        }
        let secs_nanos = u % 60_000_000_000;
        let mins_total = u / 60_000_000_000;
        let (hours, mins) = (mins_total / 60, mins_total % 60);
        if hours > 0 {
            out.push_str(&format!("{hours}h{mins}m"));
        } else if mins > 0 {
            out.push_str(&format!("{mins}m"));
        }
        write_scaled(&mut out, secs_nanos, 9);
        out.push('s');
        f.write_str(&out)
    }
}

impl ConfigValue for Duration {
    fn shape() -> Shape {
        Shape::Attr(CtyType::String)
    }
    fn type_label() -> String {
        "duration".to_string()
    }
    fn expected() -> String {
        "a duration such as \"30s\", \"5m\" or \"1h30m\"".to_string()
    }
    fn decode(value: &Value) -> Result<Self, String> {
        match value {
            Value::String(s) => Duration::parse(s).map_err(|e| e.to_string()),
            // A bare number is only unambiguous when it is zero.
            Value::Number(n) if n.as_f64() == Some(0.0) => Ok(Duration::ZERO),
            Value::Number(n) => {
                Err(format!("expected {}, got the number {n}; add a unit, e.g. \"{n}s\" for seconds", Self::expected()))
            }
            other => Err(format!("expected {}, got {}", Self::expected(), describe(other))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> i64 {
        Duration::parse(s).unwrap_or_else(|e| panic!("{s}: {e}")).as_nanos()
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!(p("0"), 0);
        assert_eq!(p("0s"), 0);
        assert_eq!(p("1s"), 1_000_000_000);
        assert_eq!(p("1m30s"), 90_000_000_000);
        assert_eq!(p("100ms"), 100_000_000);
        assert_eq!(p("-1s"), -1_000_000_000);
        assert_eq!(p("+2s"), 2_000_000_000);
        assert_eq!(p("1.5s"), 1_500_000_000);
        assert_eq!(p(".5s"), 500_000_000);
        assert_eq!(p("1h2m3.5s"), 3_723_500_000_000);
        assert_eq!(p("10us"), 10_000);
        assert_eq!(p("10µs"), 10_000);
        assert_eq!(p("10μs"), 10_000);
        assert_eq!(p("7ns"), 7);
        assert_eq!(p("1.000000001s"), 1_000_000_001);
        assert_eq!(p("2h"), 7_200_000_000_000);
        assert_eq!(p("1s1s"), 2_000_000_000);
    }

    #[test]
    fn rejects_bad_durations() {
        assert_eq!(Duration::parse(""), Err(DurationError::Empty));
        assert_eq!(Duration::parse("10"), Err(DurationError::MissingUnit("10".into())));
        assert!(matches!(Duration::parse("5sec"), Err(DurationError::UnknownUnit { .. })));
        assert!(matches!(Duration::parse("abc"), Err(DurationError::Invalid(_))));
        assert!(matches!(Duration::parse("-"), Err(DurationError::Invalid(_))));
        assert!(Duration::parse("1..5s").is_err());
        assert!(matches!(Duration::parse("3000000h"), Err(DurationError::Overflow(_))));
        assert!(Duration::parse("5 s").is_err());
    }

    #[test]
    fn formats_like_go() {
        for (nanos, want) in [
            (0, "0s"),
            (1_000_000_000, "1s"),
            (90_000_000_000, "1m30s"),
            (100_000_000, "100ms"),
            (1_500_000_000, "1.5s"),
            (-1_000_000_000, "-1s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_500_000_000, "1h2m3.5s"),
            (1_500, "1.5µs"),
            (12, "12ns"),
        ] {
            assert_eq!(Duration::from_nanos(nanos).to_string(), want);
            assert_eq!(Duration::parse(want).unwrap().as_nanos(), nanos, "round trip of {want}");
        }
    }

    #[test]
    fn std_conversion_clamps_negative() {
        assert_eq!(Duration::from_secs(-5).to_std(), std::time::Duration::ZERO);
        assert_eq!(Duration::from_millis(1500).to_std(), std::time::Duration::from_millis(1500));
    }

    #[test]
    fn decodes_from_json() {
        assert_eq!(Duration::decode(&Value::from("5m")), Ok(Duration::from_secs(300)));
        assert_eq!(Duration::decode(&Value::from(0)), Ok(Duration::ZERO));
        let err = Duration::decode(&Value::from(30)).unwrap_err();
        assert!(err.contains("\"30s\""), "{err}");
        assert!(Duration::decode(&Value::Bool(true)).is_err());
    }
}
