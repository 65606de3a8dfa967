//! [`ConfigValue`]: how one option's Rust type maps to the HCL ConfigSpec and how it is decoded
//! from the merged JSON map, leniently where Packer's mapstructure (`WeaklyTypedInput`) is.

use std::collections::BTreeMap;

use serde_json::Value;

use super::ConfigErrors;
use crate::hcl::{AttrSpec, BlockListSpec, BlockSpec, CtyType, ObjectSpec, Spec};

/// The HCL shape of a config value: an attribute of some cty type, a nested block, or a
/// repeated nested block.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// `name = value` with this cty type.
    Attr(CtyType),
    /// `name { … }` (at most one).
    Block(ObjectSpec),
    /// `name { … }` repeated.
    BlockList(ObjectSpec),
}

/// A Rust type usable as a config option: it knows its HCL shape and decodes itself from the
/// JSON value Packer sent.
///
/// Decoding is lenient like Packer's (`"512"` is a fine number, `512.0` a fine integer, `"true"`
/// a fine bool) but never guesses: `"abc"` for a number is an error.
pub trait ConfigValue: Sized {
    /// The HCL shape of this type.
    fn shape() -> Shape;

    /// What the user should write, for error messages (`"a whole number"`, `"a list of strings"`).
    fn expected() -> String;

    /// Decodes a non-null value. The error says what was wrong (the caller adds the option name).
    fn decode(value: &Value) -> Result<Self, String>;

    /// The type as the option reference shows it: `string`, `bool`, `number`, `duration`,
    /// `size`, `list(string)`, `map(string)`, ``block `{ a, b }` ``, or the accepted values
    /// `` `a` | `b` `` of an enum. The default is derived from [`ConfigValue::shape`];
    /// override it when the HCL type says less than the user needs (a duration is a string to
    /// HCL). A field's doc comment can still replace it with a `Type:` paragraph (see
    /// [`config::docs`](crate::config::docs)).
    fn type_label() -> String {
        shape_label(&Self::shape())
    }

    /// The ConfigSpec entry for an option named `name` of this type.
    fn spec_entry(name: &str) -> Spec {
        match Self::shape() {
            Shape::Attr(ty) => Spec::Attr(AttrSpec { name: name.to_string(), ty, required: false }),
            Shape::Block(nested) => Spec::Block(BlockSpec { type_name: name.to_string(), nested, required: false }),
            Shape::BlockList(nested) => {
                Spec::BlockList(BlockListSpec { type_name: name.to_string(), nested, min_items: 0, max_items: 0 })
            }
        }
    }

    /// Decodes the value of option `option`, recording any problem in `errors` (named after the
    /// option). Nested types override this to report every inner problem with its full path.
    fn decode_at(option: &str, value: &Value, errors: &mut ConfigErrors) -> Option<Self> {
        match Self::decode(value) {
            Ok(v) => Some(v),
            Err(msg) => {
                errors.push(option, msg);
                None
            }
        }
    }
}

/// The option-reference label of a [`Shape`]: the HCL type expression for attributes (`string`,
/// `list(string)`, see [`CtyType`]'s `Display`), ``block `{ a, b }` ``
/// (the nested option names) for blocks, ``list(block `{ a, b }`)`` for repeated blocks.
pub fn shape_label(shape: &Shape) -> String {
    let names = |spec: &ObjectSpec| spec.entries.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(", ");
    match shape {
        Shape::Attr(ty) => ty.to_string(),
        Shape::Block(spec) => format!("block `{{ {} }}`", names(spec)),
        Shape::BlockList(spec) => format!("list(block `{{ {} }}`)", names(spec)),
    }
}

/// Describes a JSON value for error messages: `the string "abc"`, `the number 1.5`, `a list`…
pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing (null)".to_string(),
        Value::Bool(b) => format!("the bool {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => {
            let mut shown: String = s.chars().take(60).collect();
            if shown.len() < s.len() {
                shown.push('…');
            }
            format!("the string {shown:?}")
        }
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "an object/map".to_string(),
    }
}

fn mismatch<T: ConfigValue>(value: &Value) -> String {
    format!("expected {}, got {}", T::expected(), describe(value))
}

/// Formats a JSON number the way a user wrote it: `512.0` → `512`.
fn number_to_string(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        Some(f) => f.to_string(),
        None => n.to_string(),
    }
}

impl ConfigValue for String {
    fn shape() -> Shape {
        Shape::Attr(CtyType::String)
    }
    fn expected() -> String {
        "a string".to_string()
    }
    fn decode(value: &Value) -> Result<Self, String> {
        match value {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(number_to_string(n)),
            // mapstructure's WeaklyTypedInput: true → "1", false → "0".
            Value::Bool(b) => Ok(if *b { "1" } else { "0" }.to_string()),
            other => Err(mismatch::<Self>(other)),
        }
    }
}

/// Go's `strconv.ParseBool` (used by mapstructure for strings).
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" | "" => Some(false),
        _ => None,
    }
}

impl ConfigValue for bool {
    fn shape() -> Shape {
        Shape::Attr(CtyType::Bool)
    }
    fn expected() -> String {
        "a bool (true or false)".to_string()
    }
    fn decode(value: &Value) -> Result<Self, String> {
        match value {
            Value::Bool(b) => Ok(*b),
            Value::String(s) => parse_go_bool(s.trim()).ok_or_else(|| mismatch::<Self>(value)),
            // mapstructure's WeaklyTypedInput: any number other than 0 is true.
            Value::Number(n) => match n.as_f64() {
                Some(f) if f.is_finite() => Ok(f != 0.0),
                _ => Err(mismatch::<Self>(value)),
            },
            other => Err(mismatch::<Self>(other)),
        }
    }
}

/// Parses a JSON value as a whole number in `[min, max]`.
fn decode_integer(value: &Value, min: i128, max: i128, expected: &str) -> Result<i128, String> {
    let n: i128 = match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i as i128
            } else if let Some(u) = n.as_u64() {
                u as i128
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if f.fract() != 0.0 || !f.is_finite() {
                    return Err(format!("expected {expected}, got the number {n} which is not a whole number"));
                }
                if f.abs() > 1e30 {
                    return Err(format!("the number {n} is too large; use a value between {min} and {max}"));
                }
                f as i128
            }
        }
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty() {
                0
            } else if let Some(i) = parse_go_int(t) {
                i
            } else {
                match t.parse::<f64>() {
                    Ok(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e30 => f as i128,
                    _ => return Err(format!("expected {expected}, got {}", describe(value))),
                }
            }
        }
        Value::Bool(b) => *b as i128,
        other => return Err(format!("expected {expected}, got {}", describe(other))),
    };
    if n < min || n > max {
        return Err(format!("{n} is out of range; use a value between {min} and {max}"));
    }
    Ok(n)
}

/// Go's `strconv.ParseInt(s, 0, 64)` (what mapstructure uses for strings): an optional sign,
/// then decimal, `0x` hex, `0o`/leading-`0` octal or `0b` binary digits, `_` between digits.
fn parse_go_int(s: &str) -> Option<i128> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.to_string())
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.to_string())
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.to_string())
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string())
    } else {
        (10, lower.clone())
    };
    if digits.is_empty() || digits.starts_with('_') || digits.ends_with('_') || digits.contains("__") {
        return None;
    }
    let n = i128::from_str_radix(&digits.replace('_', ""), radix).ok()?;
    Some(if neg { -n } else { n })
}

macro_rules! impl_integer {
    ($($t:ty => $what:literal),* $(,)?) => {$(
        impl ConfigValue for $t {
            fn shape() -> Shape {
                Shape::Attr(CtyType::Number)
            }
            fn expected() -> String {
                $what.to_string()
            }
            fn decode(value: &Value) -> Result<Self, String> {
                decode_integer(value, <$t>::MIN as i128, <$t>::MAX as i128, $what).map(|n| n as $t)
            }
        }
    )*};
}

impl_integer!(
    u8 => "a whole number between 0 and 255",
    u16 => "a whole number between 0 and 65535",
    u32 => "a whole number (0 or more)",
    u64 => "a whole number (0 or more)",
    usize => "a whole number (0 or more)",
    i32 => "a whole number",
    i64 => "a whole number",
);

impl ConfigValue for f64 {
    fn shape() -> Shape {
        Shape::Attr(CtyType::Number)
    }
    fn expected() -> String {
        "a number".to_string()
    }
    fn decode(value: &Value) -> Result<Self, String> {
        match value {
            Value::Number(n) => n.as_f64().ok_or_else(|| mismatch::<Self>(value)),
            Value::String(s) if s.trim().is_empty() => Ok(0.0),
            Value::String(s) => {
                s.trim().parse::<f64>().ok().filter(|f| f.is_finite()).ok_or_else(|| mismatch::<Self>(value))
            }
            Value::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
            other => Err(mismatch::<Self>(other)),
        }
    }
}

impl<T: ConfigValue> ConfigValue for Option<T> {
    fn shape() -> Shape {
        T::shape()
    }
    fn type_label() -> String {
        T::type_label()
    }
    fn expected() -> String {
        T::expected()
    }
    fn decode(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            v => T::decode(v).map(Some),
        }
    }
    fn decode_at(option: &str, value: &Value, errors: &mut ConfigErrors) -> Option<Self> {
        match value {
            Value::Null => Some(None),
            v => T::decode_at(option, v, errors).map(Some),
        }
    }
}

impl<T: ConfigValue> ConfigValue for Vec<T> {
    fn shape() -> Shape {
        match T::shape() {
            Shape::Attr(ty) => Shape::Attr(CtyType::List(Box::new(ty))),
            Shape::Block(nested) | Shape::BlockList(nested) => Shape::BlockList(nested),
        }
    }
    fn type_label() -> String {
        format!("list({})", T::type_label())
    }
    fn expected() -> String {
        let inner = T::expected();
        let inner = inner.strip_prefix("a ").or_else(|| inner.strip_prefix("an ")).unwrap_or(&inner);
        format!("a list of {inner}s")
    }
    fn decode(value: &Value) -> Result<Self, String> {
        let mut errors = ConfigErrors::new();
        match Self::decode_at("", value, &mut errors) {
            Some(v) if errors.is_empty() => Ok(v),
            _ => Err(errors.0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")),
        }
    }
    fn decode_at(option: &str, value: &Value, errors: &mut ConfigErrors) -> Option<Self> {
        match value {
            Value::Array(items) => {
                let before = errors.0.len();
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    if item.is_null() {
                        errors
                            .push(format!("{option}[{i}]"), format!("expected {}, got nothing (null)", T::expected()));
                        continue;
                    }
                    if let Some(v) = T::decode_at(&format!("{option}[{i}]"), item, errors) {
                        out.push(v);
                    }
                }
                (errors.0.len() == before).then_some(out)
            }
            // The Go SDK's StringToSliceHookFunc(","): a string for a list of strings is split
            // at commas ("" is an empty list).
            Value::String(s) if matches!(T::shape(), Shape::Attr(CtyType::String)) => {
                if s.is_empty() {
                    return Some(Vec::new());
                }
                let before = errors.0.len();
                let mut out = Vec::new();
                for (i, part) in s.split(',').enumerate() {
                    if let Some(v) = T::decode_at(&format!("{option}[{i}]"), &Value::String(part.to_string()), errors) {
                        out.push(v);
                    }
                }
                (errors.0.len() == before).then_some(out)
            }
            // mapstructure's WeaklyTypedInput turns a single value into a one-element list.
            Value::String(_) | Value::Number(_) | Value::Bool(_)
                if matches!(
                    T::shape(),
                    Shape::Attr(CtyType::String | CtyType::Number | CtyType::Bool | CtyType::List(_))
                ) =>
            {
                T::decode_at(option, value, errors).map(|v| vec![v])
            }
            Value::Object(_) if matches!(T::shape(), Shape::Block(_)) => {
                T::decode_at(&format!("{option}[0]"), value, errors).map(|v| vec![v])
            }
            other => {
                errors.push(option, format!("expected {}, got {}", Self::expected(), describe(other)));
                None
            }
        }
    }
}

impl<T: ConfigValue> ConfigValue for BTreeMap<String, T> {
    fn shape() -> Shape {
        match T::shape() {
            Shape::Attr(ty) => Shape::Attr(CtyType::Map(Box::new(ty))),
            // A map of blocks has no hcldec equivalent here; describe it as a map of strings.
            _ => Shape::Attr(CtyType::Map(Box::new(CtyType::String))),
        }
    }
    fn type_label() -> String {
        format!("map({})", T::type_label())
    }
    fn expected() -> String {
        let inner = T::expected();
        let inner = inner.strip_prefix("a ").or_else(|| inner.strip_prefix("an ")).unwrap_or(&inner);
        format!("a map of {inner}s")
    }
    fn decode(value: &Value) -> Result<Self, String> {
        let mut errors = ConfigErrors::new();
        match Self::decode_at("", value, &mut errors) {
            Some(v) if errors.is_empty() => Ok(v),
            _ => Err(errors.0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")),
        }
    }
    fn decode_at(option: &str, value: &Value, errors: &mut ConfigErrors) -> Option<Self> {
        match value {
            Value::Object(map) => {
                let before = errors.0.len();
                let mut out = BTreeMap::new();
                for (k, v) in map {
                    if v.is_null() {
                        continue;
                    }
                    if let Some(v) = T::decode_at(&format!("{option}[{k:?}]"), v, errors) {
                        out.insert(k.clone(), v);
                    }
                }
                (errors.0.len() == before).then_some(out)
            }
            other => {
                errors.push(option, format!("expected {}, got {}", Self::expected(), describe(other)));
                None
            }
        }
    }
}

/// A string option that must never be logged (`ssh_password`, `vnc_password`…): its `Debug`
/// output is redacted. Read it with [`Secret::expose`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret value itself (do not log it).
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Whether the value is empty (i.e. unset).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("Secret(\"\")")
        } else {
            f.write_str("Secret(<redacted>)")
        }
    }
}

impl ConfigValue for Secret {
    fn shape() -> Shape {
        Shape::Attr(CtyType::String)
    }
    fn expected() -> String {
        String::expected()
    }
    fn decode(value: &Value) -> Result<Self, String> {
        String::decode(value).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_redacted_in_debug() {
        let s = Secret::decode(&Value::from("hunter2")).unwrap();
        assert_eq!(s.expose(), "hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(format!("{:?}", Secret::default()), "Secret(\"\")");
    }
}
