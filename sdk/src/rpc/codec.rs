//! Go `net/rpc` framing with ugorji's msgpack GoRpc codec (plugin-protocol.md §4).
//!
//! An RPC stream is a plain concatenation of msgpack values: header, body, header, body, …
//! Values are handled generically as [`Value`] (rmpv). Encoding follows what Go's ugorji codec
//! writes with `WriteExt: true` (smallest int forms, `fixstr`/`str8`/… strings, `bin` for bytes,
//! maps in field declaration order); decoding accepts any msgpack form and never panics.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

pub use rmpv::Value;

/// The largest msgpack value accepted from the network (64 MiB).
pub const MAX_MESSAGE_SIZE: usize = 64 << 20;

/// Nesting deeper than this is rejected (rmpv's recursion limit).
const MAX_DEPTH: usize = 512;

/// Errors of the msgpack codec.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The bytes are not valid msgpack.
    #[error("invalid msgpack data from the peer: {0} (is the other side really a Packer plugin connection?)")]
    Invalid(String),
    /// A value is larger than [`MAX_MESSAGE_SIZE`].
    #[error("msgpack value too large ({0} bytes or more, limit {MAX_MESSAGE_SIZE}); the peer sent garbage or an unsupported message")]
    TooLarge(u64),
    /// The stream ended in the middle of a value.
    #[error("the RPC stream ended in the middle of a message ({0} bytes buffered)")]
    Truncated(usize),
    /// Reading the stream failed.
    #[error("reading the RPC stream failed: {0}")]
    Io(#[from] io::Error),
    /// A header did not have the `net/rpc` shape.
    #[error("malformed net/rpc header: {0}")]
    BadHeader(String),
}

/// Encodes one value the way ugorji's msgpack handle does.
pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, v);
    out
}

/// Appends the encoding of `v` to `out`.
pub fn encode_into(out: &mut Vec<u8>, v: &Value) {
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(out, v);
}

fn need(pos: usize, n: u64, buf_len: usize) -> Result<Option<usize>, CodecError> {
    let end = pos as u64 + n;
    if end > MAX_MESSAGE_SIZE as u64 {
        return Err(CodecError::TooLarge(end));
    }
    if end > buf_len as u64 {
        return Ok(None);
    }
    Ok(Some(end as usize))
}

/// Returns the length of the first complete msgpack value in `buf`, `Ok(None)` when more bytes
/// are needed, or an error for invalid data. Iterative: never recurses, never allocates.
pub fn value_len(buf: &[u8]) -> Result<Option<usize>, CodecError> {
    let mut pos = 0usize;
    let mut pending: u64 = 1;
    macro_rules! take {
        ($n:expr) => {
            match need(pos, $n as u64, buf.len())? {
                Some(end) => {
                    let s = &buf[pos..end];
                    pos = end;
                    s
                }
                None => return Ok(None),
            }
        };
    }
    macro_rules! be {
        ($n:expr) => {{
            let s = take!($n);
            s.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
        }};
    }
    while pending > 0 {
        if pos as u64 + pending > MAX_MESSAGE_SIZE as u64 {
            return Err(CodecError::TooLarge(pos as u64 + pending));
        }
        let m = take!(1)[0];
        pending -= 1;
        match m {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => {}
            0x80..=0x8f => pending += 2 * u64::from(m & 0x0f),
            0x90..=0x9f => pending += u64::from(m & 0x0f),
            0xa0..=0xbf => {
                take!(m & 0x1f);
            }
            0xc1 => return Err(CodecError::Invalid(format!("reserved marker 0xc1 at offset {}", pos - 1))),
            0xc4 | 0xd9 => {
                let n = be!(1);
                take!(n);
            }
            0xc5 | 0xda => {
                let n = be!(2);
                take!(n);
            }
            0xc6 | 0xdb => {
                let n = be!(4);
                take!(n);
            }
            0xc7 => {
                let n = be!(1);
                take!(n + 1);
            }
            0xc8 => {
                let n = be!(2);
                take!(n + 1);
            }
            0xc9 => {
                let n = be!(4);
                take!(n + 1);
            }
            0xca | 0xce | 0xd2 => {
                take!(4);
            }
            0xcb | 0xcf | 0xd3 => {
                take!(8);
            }
            0xcc | 0xd0 => {
                take!(1);
            }
            0xcd | 0xd1 => {
                take!(2);
            }
            0xd4 => {
                take!(2);
            }
            0xd5 => {
                take!(3);
            }
            0xd6 => {
                take!(5);
            }
            0xd7 => {
                take!(9);
            }
            0xd8 => {
                take!(17);
            }
            0xdc => pending += be!(2),
            0xdd => pending += be!(4),
            0xde => pending += 2 * be!(2),
            0xdf => pending += 2 * be!(4),
        }
    }
    Ok(Some(pos))
}

/// Decodes the first value of `buf`; returns it and the number of bytes it used.
/// `Ok(None)` when `buf` holds only part of a value.
pub fn decode_prefix(buf: &[u8]) -> Result<Option<(Value, usize)>, CodecError> {
    let Some(len) = value_len(buf)? else { return Ok(None) };
    let mut slice = &buf[..len];
    let v = rmpv::decode::read_value_with_max_depth(&mut slice, MAX_DEPTH)
        .map_err(|e| CodecError::Invalid(e.to_string()))?;
    Ok(Some((v, len)))
}

/// Decodes `buf`, which must hold exactly one complete value.
pub fn decode(buf: &[u8]) -> Result<Value, CodecError> {
    match decode_prefix(buf)? {
        Some((v, n)) if n == buf.len() => Ok(v),
        Some((_, n)) => Err(CodecError::Invalid(format!("{} trailing bytes after the value", buf.len() - n))),
        None => Err(CodecError::Truncated(buf.len())),
    }
}

/// Reads msgpack values one by one from an async byte stream.
pub struct ValueReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
}

impl<R: AsyncRead + Unpin> ValueReader<R> {
    /// Wraps a byte stream.
    pub fn new(inner: R) -> Self {
        ValueReader { inner, buf: Vec::new(), start: 0 }
    }

    /// The next value, `Ok(None)` at a clean end of stream (between values).
    pub async fn next(&mut self) -> Result<Option<Value>, CodecError> {
        loop {
            if self.start < self.buf.len() {
                if let Some((v, n)) = decode_prefix(&self.buf[self.start..])? {
                    self.start += n;
                    return Ok(Some(v));
                }
            }
            if self.start > 0 && self.start == self.buf.len() {
                self.buf.clear();
                self.start = 0;
            } else if self.start > 64 * 1024 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.inner.read(&mut chunk).await?;
            if n == 0 {
                let left = self.buf.len() - self.start;
                return if left == 0 { Ok(None) } else { Err(CodecError::Truncated(left)) };
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next value; end of stream is an error.
    pub async fn expect(&mut self) -> Result<Value, CodecError> {
        match self.next().await? {
            Some(v) => Ok(v),
            None => Err(CodecError::Truncated(0)),
        }
    }
}

/// A `net/rpc` request header: `{ServiceMethod, Seq}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    /// `"Service.Method"`.
    pub service_method: String,
    /// The client's sequence number.
    pub seq: u64,
}

/// A `net/rpc` response header: `{ServiceMethod, Seq, Error}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHeader {
    /// `"Service.Method"` of the request.
    pub service_method: String,
    /// The request's sequence number.
    pub seq: u64,
    /// The method's error text; empty = success.
    pub error: String,
}

impl RequestHeader {
    /// The header as a msgpack map, in Go's field order.
    pub fn to_value(&self) -> Value {
        map(vec![("ServiceMethod", Value::from(self.service_method.as_str())), ("Seq", Value::from(self.seq))])
    }

    /// Reads a header; unknown keys are ignored like Go does.
    pub fn from_value(v: &Value) -> Result<Self, CodecError> {
        let entries = v.as_map().ok_or_else(|| CodecError::BadHeader(format!("expected a map, got {}", kind(v))))?;
        let mut h = RequestHeader { service_method: String::new(), seq: 0 };
        for (k, val) in entries {
            match key_str(k).as_deref() {
                Some("ServiceMethod") => h.service_method = string_of(val, "ServiceMethod")?,
                Some("Seq") => h.seq = uint_of(val, "Seq")?,
                _ => {}
            }
        }
        Ok(h)
    }
}

impl ResponseHeader {
    /// The header as a msgpack map, in Go's field order.
    pub fn to_value(&self) -> Value {
        map(vec![
            ("ServiceMethod", Value::from(self.service_method.as_str())),
            ("Seq", Value::from(self.seq)),
            ("Error", Value::from(self.error.as_str())),
        ])
    }

    /// Reads a header; unknown keys are ignored like Go does.
    pub fn from_value(v: &Value) -> Result<Self, CodecError> {
        let entries = v.as_map().ok_or_else(|| CodecError::BadHeader(format!("expected a map, got {}", kind(v))))?;
        let mut h = ResponseHeader { service_method: String::new(), seq: 0, error: String::new() };
        for (k, val) in entries {
            match key_str(k).as_deref() {
                Some("ServiceMethod") => h.service_method = string_of(val, "ServiceMethod")?,
                Some("Seq") => h.seq = uint_of(val, "Seq")?,
                Some("Error") if !val.is_nil() => h.error = string_of(val, "Error")?,
                _ => {}
            }
        }
        Ok(h)
    }
}

/// The kind of a value, for error messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Boolean(_) => "bool",
        Value::Integer(_) => "integer",
        Value::F32(_) | Value::F64(_) => "float",
        Value::String(_) => "string",
        Value::Binary(_) => "binary",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        Value::Ext(..) => "ext",
    }
}

fn key_str(k: &Value) -> Option<String> {
    match k {
        Value::String(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Value::Binary(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

/// Builds a msgpack map with string keys, keeping the order given.
pub fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (Value::from(k), v)).collect())
}

/// Looks a key up in a msgpack map (string or binary keys).
pub fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_map()?.iter().find(|(k, _)| key_str(k).as_deref() == Some(key)).map(|(_, v)| v)
}

/// Reads a string (str or bin, like ugorji's RawToString) named `what`.
pub fn string_of(v: &Value, what: &str) -> Result<String, CodecError> {
    match v {
        Value::String(s) => Ok(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Value::Binary(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        Value::Nil => Ok(String::new()),
        other => Err(CodecError::BadHeader(format!("{what}: expected a string, got {}", kind(other)))),
    }
}

/// Reads a non-negative integer named `what` (nil = 0).
pub fn uint_of(v: &Value, what: &str) -> Result<u64, CodecError> {
    match v {
        Value::Integer(i) => {
            i.as_u64().ok_or_else(|| CodecError::BadHeader(format!("{what}: expected a non-negative integer, got {i}")))
        }
        Value::Nil => Ok(0),
        Value::F64(f) if *f >= 0.0 && f.fract() == 0.0 && *f < 1.8e19 => Ok(*f as u64),
        other => Err(CodecError::BadHeader(format!("{what}: expected an integer, got {}", kind(other)))),
    }
}

/// Reads an integer named `what` (nil = 0).
pub fn int_of(v: &Value, what: &str) -> Result<i64, CodecError> {
    match v {
        Value::Integer(i) => {
            i.as_i64().ok_or_else(|| CodecError::BadHeader(format!("{what}: integer {i} does not fit in 64 bits")))
        }
        Value::Nil => Ok(0),
        Value::F64(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(*f as i64),
        other => Err(CodecError::BadHeader(format!("{what}: expected an integer, got {}", kind(other)))),
    }
}

/// Reads a broker id (u32) named `what`.
pub fn u32_of(v: &Value, what: &str) -> Result<u32, CodecError> {
    let n = uint_of(v, what)?;
    u32::try_from(n).map_err(|_| CodecError::BadHeader(format!("{what}: {n} is not a valid stream id")))
}

/// Reads a list of strings (nil = empty).
pub fn strings_of(v: &Value, what: &str) -> Result<Vec<String>, CodecError> {
    match v {
        Value::Nil => Ok(Vec::new()),
        Value::Array(a) => a.iter().map(|x| string_of(x, what)).collect(),
        other => Err(CodecError::BadHeader(format!("{what}: expected a list of strings, got {}", kind(other)))),
    }
}

/// A list of strings as Go encodes a `[]string`: nil when empty.
pub fn strings_or_nil(list: &[String]) -> Value {
    if list.is_empty() {
        Value::Nil
    } else {
        Value::Array(list.iter().map(|s| Value::from(s.as_str())).collect())
    }
}

/// Converts a msgpack value to JSON: maps with non-string keys get stringified keys (scalars as
/// JSON text, arrays and maps in msgpack notation: `{1: [2, "x"]}`), binary
/// data becomes a (lossy) string, NaN/inf and ext values become null.
pub fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Nil => J::Null,
        Value::Boolean(b) => J::Bool(*b),
        Value::Integer(i) => {
            if let Some(u) = i.as_u64() {
                J::from(u)
            } else if let Some(s) = i.as_i64() {
                J::from(s)
            } else {
                J::Null
            }
        }
        Value::F32(f) => serde_json::Number::from_f64(f64::from(*f)).map(J::Number).unwrap_or(J::Null),
        Value::F64(f) => serde_json::Number::from_f64(*f).map(J::Number).unwrap_or(J::Null),
        Value::String(s) => J::String(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Value::Binary(b) => J::String(String::from_utf8_lossy(b).into_owned()),
        Value::Array(a) => J::Array(a.iter().map(to_json).collect()),
        Value::Map(m) => {
            let mut out = serde_json::Map::new();
            for (k, val) in m {
                let key = match (key_str(k), k) {
                    (Some(s), _) => s,
                    // msgpack's own notation: its size is linear in the key's. (The JSON text of
                    // a key that is a map with map keys escapes the inner keys' quotes once per
                    // level, so its size doubles with every level of nesting.)
                    (None, Value::Array(_) | Value::Map(_) | Value::Ext(..)) => k.to_string(),
                    (None, _) => match to_json(k) {
                        J::String(s) => s,
                        other => other.to_string(),
                    },
                };
                out.insert(key, to_json(val));
            }
            J::Object(out)
        }
        Value::Ext(..) => J::Null,
    }
}

/// Converts JSON to msgpack (integers stay integers, other numbers become float64).
pub fn from_json(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Nil,
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                Value::F64(n.as_f64().unwrap_or(0.0))
            }
        }
        J::String(s) => Value::from(s.as_str()),
        J::Array(a) => Value::Array(a.iter().map(from_json).collect()),
        J::Object(o) => Value::Map(o.iter().map(|(k, v)| (Value::from(k.as_str()), from_json(v))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_header_matches_go() {
        let h = RequestHeader { service_method: "Builder.ConfigSpec".into(), seq: 0 };
        let mut bytes = encode(&h.to_value());
        bytes.push(0xc0);
        assert_eq!(
            hex::encode(&bytes),
            "82ad536572766963654d6574686f64b24275696c6465722e436f6e66696753706563a353657100c0"
        );
    }

    #[test]
    fn value_len_reports_partial_and_complete() {
        let full = encode(&map(vec![("a", Value::from(vec![Value::from(1), Value::from("xyz")]))]));
        for cut in 0..full.len() {
            assert_eq!(value_len(&full[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert_eq!(value_len(&full).unwrap(), Some(full.len()));
        assert!(value_len(&[0xc1]).is_err());
        assert!(matches!(value_len(&[0xdd, 0xff, 0xff, 0xff, 0xff]), Err(CodecError::TooLarge(_))));
    }

    #[test]
    fn str8_and_ints_use_smallest_forms() {
        let s = "x".repeat(40);
        assert_eq!(&encode(&Value::from(s.as_str()))[..2], &[0xd9, 40]);
        assert_eq!(encode(&Value::from(200u64)), vec![0xcc, 200]);
        assert_eq!(encode(&Value::from(-1i64)), vec![0xff]);
        assert_eq!(encode(&Value::from(-100i64)), vec![0xd0, 0x9c]);
    }

    /// Found by `cargo fuzz` (target `msgpack`): maps used as map keys, nested, made the
    /// stringified key double in size per level (out of memory from 1.4 KB of input).
    #[test]
    fn nested_map_keys_stay_linear() {
        let mut v = Value::from("\"quoted\"");
        for _ in 0..64 {
            v = Value::Map(vec![(v, Value::Nil)]);
        }
        let j = to_json(&Value::Map(vec![(v, Value::from(1))]));
        let (key, value) = j.as_object().unwrap().iter().next().unwrap();
        assert!(key.len() < 1000, "key of {} bytes", key.len());
        assert!(key.starts_with("{{{") && key.contains(r#""\"quoted\"""#), "{key}");
        assert_eq!(value, &serde_json::json!(1));
        let j =
            to_json(&Value::Map(vec![(Value::from(5), Value::Nil), (Value::Array(vec![Value::from(1)]), Value::Nil)]));
        assert_eq!(j, serde_json::json!({"5": null, "[1]": null}));
    }

    #[test]
    fn json_round_trip() {
        let j = serde_json::json!({"a": [1, -2, 1.5, "s", null, true], "b": {"c": {}}});
        assert_eq!(to_json(&from_json(&j)), j);
    }
}
