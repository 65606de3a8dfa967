//! The values a template computes with, printed the way Go's `text/template` and `fmt` print them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A value in a template: data, a literal, or a function result.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// No value at all (a missing map entry, a JSON null): printed `<no value>` like Go.
    Missing,
    /// A bool.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(String),
    /// A list.
    List(Vec<Value>),
    /// A map (iterated in key order, as Go does).
    Map(BTreeMap<String, Value>),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<&serde_json::Value> for Value {
    fn from(v: &serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => Value::Missing,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::Str(s.clone()),
            serde_json::Value::Array(a) => Value::List(a.iter().map(Value::from).collect()),
            serde_json::Value::Object(m) => Value::Map(m.iter().map(|(k, v)| (k.clone(), Value::from(v))).collect()),
        }
    }
}

impl Value {
    /// Go's name for the kind of value, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Missing => "nil",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Map(_) => "map",
        }
    }

    /// Go's notion of truth (`if`, `and`, `or`, `not`): false, 0, "", nil and empty lists/maps
    /// are false.
    pub fn truth(&self) -> bool {
        match self {
            Value::Missing => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.is_empty(),
        }
    }

    /// The text an action inserts for this value (`{{ . }}`): like `fmt.Print`, with
    /// `<no value>` for a missing value.
    pub fn to_output(&self) -> String {
        match self {
            Value::Missing => "<no value>".to_string(),
            other => other.to_print(),
        }
    }

    /// `fmt`'s `%v` of the value.
    pub fn to_print(&self) -> String {
        match self {
            Value::Missing => "<nil>".to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => go_float(*f),
            Value::Str(s) => s.clone(),
            Value::List(items) => {
                let inner: Vec<String> = items.iter().map(Value::to_print).collect();
                format!("[{}]", inner.join(" "))
            }
            Value::Map(m) => {
                let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{}", v.to_print())).collect();
                format!("map[{}]", inner.join(" "))
            }
        }
    }
}

/// `%v` of a float64: shortest representation, exponent form below 1e-4 and from 1e21 on.
pub fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let exp = f.abs().log10().floor() as i32;
    if !(-4..21).contains(&exp) {
        // Rust's `{:e}` gives the shortest mantissa: "1.5e21" → Go's "1.5e+21".
        let s = format!("{f:e}");
        let (mantissa, e) = s.split_once('e').unwrap_or((&s, "0"));
        let e: i32 = e.parse().unwrap_or(0);
        return format!("{mantissa}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    }
    format!("{f}")
}

/// Go's `strconv.Quote`: a double-quoted string literal with Go escapes.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                if (c as u32) < 0x10000 {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                } else {
                    let _ = write!(out, "\\U{:08x}", c as u32);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `fmt.Sprint`: operands printed with `%v`, a space between two operands when neither is
/// a string.
pub fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !matches!(a, Value::Str(_)) && !matches!(args[i - 1], Value::Str(_)) {
            out.push(' ');
        }
        out.push_str(&a.to_print());
    }
    out
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%v %s %q %d %t %x %X %o %b %c %f %e %g %%`,
/// with flags `-+# 0`, width and precision.
pub fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    let mut next_arg = 0;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut minus = false;
        let mut plus = false;
        let mut zero = false;
        let mut space = false;
        let mut sharp = false;
        while let Some(&f) = chars.peek() {
            match f {
                '-' => minus = true,
                '+' => plus = true,
                '0' => zero = true,
                ' ' => space = true,
                '#' => sharp = true,
                _ => break,
            }
            chars.next();
        }
        // Go's `parsenum`: a number that grows past 1e6 is "crazy long" (`Err`) and swallows the
        // rest of the format, which then ends in `%!(NOVERB)` (no multi-gigabyte padding).
        let number = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| -> Result<Option<usize>, ()> {
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                if n.unwrap_or(0) > 1_000_000 {
                    return Err(());
                }
                n = Some(n.unwrap_or(0) * 10 + d as usize);
                chars.next();
            }
            Ok(n)
        };
        let Ok(width) = number(&mut chars) else {
            out.push_str("%!(NOVERB)");
            break;
        };
        let precision = if chars.peek() == Some(&'.') {
            chars.next();
            let Ok(p) = number(&mut chars) else {
                out.push_str("%!(NOVERB)");
                break;
            };
            Some(p.unwrap_or(0))
        } else {
            None
        };
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next_arg) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        next_arg += 1;
        let bad = || format!("%!{verb}({}={})", arg.kind(), arg.to_print());
        let body: String = match (verb, arg) {
            ('v', Value::Str(s)) if sharp => go_quote(s),
            ('v', a) => a.to_print(),
            ('s', Value::Str(s)) => match precision {
                Some(p) => s.chars().take(p).collect(),
                None => s.clone(),
            },
            ('s', a @ (Value::List(_) | Value::Map(_))) => a.to_print(),
            ('q', Value::Str(s)) => go_quote(s),
            ('q', Value::Int(i)) => match char::from_u32(*i as u32) {
                Some(c) => format!("'{c}'"),
                None => bad(),
            },
            ('d', Value::Int(i)) => sign(i.to_string(), plus, space),
            ('t', Value::Bool(b)) => b.to_string(),
            ('x', Value::Int(i)) => radix(*i, 16, sharp, "0x", false, plus),
            ('X', Value::Int(i)) => radix(*i, 16, sharp, "0X", true, plus),
            ('o', Value::Int(i)) => radix(*i, 8, sharp, "0", false, plus),
            ('b', Value::Int(i)) => radix(*i, 2, false, "", false, plus),
            ('x', Value::Str(s)) => s.bytes().map(|b| format!("{b:02x}")).collect(),
            ('X', Value::Str(s)) => s.bytes().map(|b| format!("{b:02X}")).collect(),
            ('c', Value::Int(i)) => char::from_u32(*i as u32).map(String::from).unwrap_or_else(bad),
            ('f' | 'F', Value::Float(_) | Value::Int(_)) => {
                sign(float_fixed(as_f64(arg), precision.unwrap_or(6)), plus, space)
            }
            ('e', Value::Float(_) | Value::Int(_)) => {
                sign(go_exp(&float_exp(as_f64(arg), precision.unwrap_or(6))), plus, space)
            }
            ('g', Value::Float(f)) => sign(go_float(*f), plus, space),
            ('g', Value::Int(i)) => sign(go_float(*i as f64), plus, space),
            _ => bad(),
        };
        out.push_str(&pad(body, width, minus, zero && !matches!(verb, 's' | 'q' | 'v' | 't')));
    }
    if next_arg < args.len() {
        let extra: Vec<String> = args[next_arg..].iter().map(|a| format!("{}={}", a.kind(), a.to_print())).collect();
        let _ = write!(out, "%!(EXTRA {})", extra.join(", "));
    }
    out
}

/// Precisions past this are formatted as this many digits plus zeros. Rust's formatter takes a
/// precision of at most `u16::MAX` (more is a panic), Go's up to 1e6; the exact decimal expansion
/// of an f64 ends within 1074 digits after the point (767 significant digits), so every digit
/// past 1100 is a zero.
const EXACT_DIGITS: usize = 1100;

/// `{f:.p$}` for any precision.
fn float_fixed(f: f64, p: usize) -> String {
    if p <= EXACT_DIGITS {
        return format!("{f:.p$}");
    }
    let mut s = format!("{f:.EXACT_DIGITS$}");
    if f.is_finite() {
        s.push_str(&"0".repeat(p - EXACT_DIGITS));
    }
    s
}

/// `{f:.p$e}` for any precision.
fn float_exp(f: f64, p: usize) -> String {
    if p <= EXACT_DIGITS {
        return format!("{f:.p$e}");
    }
    let s = format!("{f:.EXACT_DIGITS$e}");
    match s.split_once('e') {
        Some((m, e)) if f.is_finite() => format!("{m}{}e{e}", "0".repeat(p - EXACT_DIGITS)),
        _ => s,
    }
}

fn as_f64(v: &Value) -> f64 {
    match v {
        Value::Float(f) => *f,
        Value::Int(i) => *i as f64,
        _ => f64::NAN,
    }
}

/// Rust's `1.5e2` exponent → Go's `1.5e+02`.
fn go_exp(s: &str) -> String {
    match s.split_once('e') {
        Some((m, e)) => {
            let e: i32 = e.parse().unwrap_or(0);
            format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
        }
        None => s.to_string(),
    }
}

fn sign(s: String, plus: bool, space: bool) -> String {
    if s.starts_with('-') {
        s
    } else if plus {
        format!("+{s}")
    } else if space {
        format!(" {s}")
    } else {
        s
    }
}

fn radix(i: i64, base: u32, sharp: bool, prefix: &str, upper: bool, plus: bool) -> String {
    let neg = i < 0;
    let mut digits = match base {
        16 => format!("{:x}", i.unsigned_abs()),
        8 => format!("{:o}", i.unsigned_abs()),
        _ => format!("{:b}", i.unsigned_abs()),
    };
    if upper {
        digits = digits.to_uppercase();
    }
    let prefix = if sharp { prefix } else { "" };
    let s = format!("{prefix}{digits}");
    if neg {
        format!("-{s}")
    } else if plus {
        format!("+{s}")
    } else {
        s
    }
}

fn pad(s: String, width: Option<usize>, left: bool, zero: bool) -> String {
    let Some(w) = width else { return s };
    let len = s.chars().count();
    if len >= w {
        return s;
    }
    let fill = w - len;
    if left {
        format!("{s}{}", " ".repeat(fill))
    } else if zero {
        let (sign, digits) = match s.strip_prefix(['-', '+']) {
            Some(rest) => (&s[..1], rest),
            None => ("", s.as_str()),
        };
        format!("{sign}{}{digits}", "0".repeat(fill))
    } else {
        format!("{}{s}", " ".repeat(fill))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printf_like_go() {
        let s = |v: &str| Value::from(v);
        assert_eq!(
            sprintf("%s-%d-%v-%q", &[s("a"), Value::Int(3), Value::Bool(true), s("x\"y")]),
            "a-3-true-\"x\\\"y\""
        );
        assert_eq!(
            sprintf(
                "%05d|%-4s|%4s|%x|%#x|%X",
                &[Value::Int(42), s("ab"), s("ab"), Value::Int(255), Value::Int(255), s("hi")]
            ),
            "00042|ab  |  ab|ff|0xff|6869"
        );
        assert_eq!(
            sprintf(
                "%.2f %e %g %t %c %%",
                &[Value::Float(1.23456), Value::Float(1500.0), Value::Float(0.5), Value::Bool(false), Value::Int(65)]
            ),
            "1.23 1.500000e+03 0.5 false A %"
        );
        assert_eq!(sprintf("%d %s", &[s("x")]), "%!d(string=x) %!s(MISSING)");
        assert_eq!(sprintf("%s", &[s("a"), Value::Int(1)]), "a%!(EXTRA int=1)");
        assert_eq!(sprintf("%v %v", &[Value::List(vec![s("a"), Value::Int(1)]), Value::Missing]), "[a 1] <nil>");
    }

    /// Found by `cargo fuzz` (target `template`): a huge width (`printf "%5555…5d"`) was a
    /// capacity-overflow panic (or gigabytes of padding). Go gives up on numbers past 1e6.
    #[test]
    fn sprintf_huge_width_or_precision_is_noverb() {
        let huge = format!("%{}d|%j", "5".repeat(44));
        assert_eq!(sprintf(&huge, &[Value::Int(0)]), "%!(NOVERB)%!(EXTRA int=0)");
        assert_eq!(sprintf("a%.99999999f", &[Value::Float(1.0)]), "a%!(NOVERB)%!(EXTRA float64=1)");
        assert_eq!(sprintf("%3d|%.2f", &[Value::Int(7), Value::Float(1.0)]), "  7|1.00");
        assert_eq!(sprintf("%1000001d", &[Value::Int(1)]).len(), 1_000_001);
    }

    /// Found by `cargo fuzz` (target `template`): `printf "%.5555555e"` — a precision past
    /// `u16::MAX` was a panic ("Formatting argument out of range") in Rust's formatter.
    #[test]
    fn sprintf_precision_past_u16_max() {
        let f = sprintf("%.70000f", &[Value::Float(0.1)]);
        assert_eq!(f.len(), 70_002);
        assert_eq!(&f[..EXACT_DIGITS + 2], format!("{:.1100}", 0.1));
        assert!(f[EXACT_DIGITS + 2..].bytes().all(|b| b == b'0'));
        let e = sprintf("%.5555555e", &[Value::Int(-3)]);
        assert_eq!(e.len(), "-3.".len() + 5_555_555 + "e+00".len());
        assert!(e.starts_with("-3.000") && e.ends_with("0e+00"), "{}…{}", &e[..8], &e[e.len() - 8..]);
        // The exact digits before the zeros, as with a precision Rust's formatter takes.
        assert_eq!(float_exp(1.0 / 3.0, 1200)[..1000], format!("{:.1000e}", 1.0 / 3.0)[..1000]);
        assert_eq!(float_fixed(f64::INFINITY, 70_000), "inf");
    }

    #[test]
    fn sprint_spaces_between_non_strings() {
        assert_eq!(sprint(&[Value::Int(1), Value::Int(2), Value::from("a"), Value::Int(3)]), "1 2a3");
    }

    #[test]
    fn floats_and_quotes() {
        assert_eq!(go_float(1.5), "1.5");
        assert_eq!(go_float(3.0), "3");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_quote("a\tb\u{1}é"), "\"a\\tb\\x01é\"");
    }
}
