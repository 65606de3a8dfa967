//! The tiny part of Go's `encoding/gob` the RPC layer needs: `CommandFinished{ExitStatus int}`,
//! written once on `Communicator.Start`'s response stream (plugin-protocol.md §5.5).
//!
//! The encoder produces exactly what Go 1.19 writes (a type definition with id 65, then the
//! value). The decoder reads any gob stream that defines a struct with an `ExitStatus` field.

use std::collections::HashMap;

/// Errors decoding a gob stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GobError {
    /// The bytes are not a gob stream we understand.
    #[error("invalid gob data on the command's response stream: {0}")]
    Invalid(String),
    /// The stream ended before a value was read.
    #[error("the command's response stream ended before its exit status arrived")]
    Truncated,
}

const TYPE_ID: i64 = 65;
const GOB_INT: i64 = 2;

fn put_uint(out: &mut Vec<u8>, u: u64) {
    if u < 128 {
        out.push(u as u8);
    } else {
        let bytes = u.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let n = bytes.len() - skip;
        out.push((256 - n) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn put_int(out: &mut Vec<u8>, i: i64) {
    let u = if i < 0 { ((!i as u64) << 1) | 1 } else { (i as u64) << 1 };
    put_uint(out, u);
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    put_uint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn message(out: &mut Vec<u8>, payload: &[u8]) {
    put_uint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// The gob stream of `CommandFinished{ExitStatus: exit}` as a fresh Go encoder writes it.
pub fn encode_command_finished(exit: i64) -> Vec<u8> {
    let mut def = Vec::new();
    put_int(&mut def, -TYPE_ID);
    def.push(3); // wireType.StructT (field 2, delta 3)
    def.push(1); // structType.CommonType
    def.push(1); // CommonType.Name
    put_string(&mut def, "CommandFinished");
    def.push(1); // CommonType.Id
    put_int(&mut def, TYPE_ID);
    def.push(0); // end CommonType
    def.push(1); // structType.Field
    put_uint(&mut def, 1); // one field
    def.push(1); // fieldType.Name
    put_string(&mut def, "ExitStatus");
    def.push(1); // fieldType.Id
    put_int(&mut def, GOB_INT);
    def.push(0); // end fieldType
    def.push(0); // end structType
    def.push(0); // end wireType
    let mut val = Vec::new();
    put_int(&mut val, TYPE_ID);
    if exit != 0 {
        val.push(1);
        put_int(&mut val, exit);
    }
    val.push(0);
    let mut out = Vec::new();
    message(&mut out, &def);
    message(&mut out, &val);
    out
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Result<u8, GobError> {
        let b = *self.buf.get(self.pos).ok_or(GobError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }
    fn uint(&mut self) -> Result<u64, GobError> {
        let b = self.byte()?;
        if b < 128 {
            return Ok(u64::from(b));
        }
        let n = 256 - usize::from(b);
        if n > 8 {
            return Err(GobError::Invalid(format!("bad uint length byte {b:#x}")));
        }
        let mut u = 0u64;
        for _ in 0..n {
            u = (u << 8) | u64::from(self.byte()?);
        }
        Ok(u)
    }
    fn int(&mut self) -> Result<i64, GobError> {
        let u = self.uint()?;
        Ok(if u & 1 == 1 { !((u >> 1) as i64) } else { (u >> 1) as i64 })
    }
    fn bytes(&mut self) -> Result<&'a [u8], GobError> {
        let n = self.uint()?;
        let n = usize::try_from(n).map_err(|_| GobError::Truncated)?;
        let end = self.pos.checked_add(n).ok_or(GobError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(GobError::Truncated)?;
        self.pos = end;
        Ok(s)
    }
    fn string(&mut self) -> Result<String, GobError> {
        Ok(String::from_utf8_lossy(self.bytes()?).into_owned())
    }
}

/// The field number after `field` and a field delta read from the stream (an overflowing delta is
/// corrupt data, not a panic).
fn next_field(field: u64, delta: u64) -> Result<u64, GobError> {
    field.checked_add(delta).ok_or_else(|| GobError::Invalid(format!("field delta {delta} out of range")))
}

/// A parsed `structType`: its name, type id and fields as (name, type id).
type StructType = (String, i64, Vec<(String, i64)>);

/// Parses a `structType` inside a wire type definition.
fn parse_struct_type(c: &mut Cursor<'_>) -> Result<StructType, GobError> {
    let (mut name, mut id, mut fields) = (String::new(), 0, Vec::new());
    let mut field = 0u64;
    loop {
        let delta = c.uint()?;
        if delta == 0 {
            break;
        }
        field = next_field(field, delta)?;
        match field {
            1 => {
                // CommonType{Name, Id}
                let mut f = 0u64;
                loop {
                    let d = c.uint()?;
                    if d == 0 {
                        break;
                    }
                    f = next_field(f, d)?;
                    match f {
                        1 => name = c.string()?,
                        2 => id = c.int()?,
                        _ => return Err(GobError::Invalid("unknown CommonType field".into())),
                    }
                }
            }
            2 => {
                let count = c.uint()?;
                if count > 1024 {
                    return Err(GobError::Invalid(format!("struct with {count} fields")));
                }
                for _ in 0..count {
                    let (mut fname, mut fid) = (String::new(), 0);
                    let mut f = 0u64;
                    loop {
                        let d = c.uint()?;
                        if d == 0 {
                            break;
                        }
                        f = next_field(f, d)?;
                        match f {
                            1 => fname = c.string()?,
                            2 => fid = c.int()?,
                            _ => return Err(GobError::Invalid("unknown fieldType field".into())),
                        }
                    }
                    fields.push((fname, fid));
                }
            }
            _ => return Err(GobError::Invalid("unknown structType field".into())),
        }
    }
    Ok((name, id, fields))
}

/// Reads the exit status from a gob stream holding a `CommandFinished` value.
pub fn decode_command_finished(buf: &[u8]) -> Result<i64, GobError> {
    let mut c = Cursor { buf, pos: 0 };
    let mut structs: HashMap<i64, Vec<(String, i64)>> = HashMap::new();
    loop {
        let len = c.uint()?;
        let len = usize::try_from(len).map_err(|_| GobError::Truncated)?;
        let end = c.pos.checked_add(len).ok_or(GobError::Truncated)?;
        let payload = buf.get(c.pos..end).ok_or(GobError::Truncated)?;
        c.pos = end;
        let mut m = Cursor { buf: payload, pos: 0 };
        let type_id = m.int()?;
        if type_id < 0 {
            // wireType: only StructT (field 3) matters; other definitions are ignored.
            if m.uint()? == 3 {
                let (_, id, fields) = parse_struct_type(&mut m)?;
                let id =
                    if id != 0 { id } else { type_id.checked_neg().ok_or(GobError::Invalid("bad type id".into()))? };
                structs.insert(id, fields);
            }
            continue;
        }
        let fields =
            structs.get(&type_id).ok_or_else(|| GobError::Invalid(format!("value of undefined type id {type_id}")))?;
        let mut exit = 0;
        let mut idx: usize = 0;
        let mut first = true;
        loop {
            let d = m.uint()?;
            if d == 0 {
                break;
            }
            let d = usize::try_from(d).map_err(|_| GobError::Invalid("bad field delta".into()))?;
            idx = if first { d - 1 } else { idx.checked_add(d).ok_or(GobError::Truncated)? };
            first = false;
            let (fname, fid) =
                fields.get(idx).ok_or_else(|| GobError::Invalid(format!("field number {idx} out of range")))?;
            match *fid {
                2 if fname == "ExitStatus" => exit = m.int()?,
                1..=3 => {
                    m.uint()?;
                }
                5 | 6 => {
                    m.bytes()?;
                }
                other => return Err(GobError::Invalid(format!("unsupported field type id {other}"))),
            }
        }
        if !fields.iter().any(|(n, _)| n == "ExitStatus") {
            return Err(GobError::Invalid("the value has no ExitStatus field".into()));
        }
        return Ok(exit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for e in [0, 1, 123, -1, 255, 2300218, i64::MIN, i64::MAX] {
            assert_eq!(decode_command_finished(&encode_command_finished(e)).unwrap(), e);
        }
    }

    /// Found by `cargo fuzz` (target `gob_exit_status`): a huge field delta overflowed the field
    /// number (a panic with overflow checks on).
    #[test]
    fn huge_field_delta_is_an_error() {
        let bytes = hex::decode(
            [
                "2cff8d0301010f436f6d6d616e64466969652cff81030101f8ffffffffffffff",
                "ff64011404002cff696e696873656401ff82000101010a452dff6e64736801ff",
                "82000101018a4578697453810301010114000000000000ff0100240f",
            ]
            .concat(),
        )
        .unwrap();
        assert!(matches!(decode_command_finished(&bytes), Err(GobError::Invalid(_))));
        // A type definition message whose id is i64::MIN (int encoding 0xff…).
        let mut def = vec![0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x03, 0x00];
        def.insert(0, def.len() as u8);
        assert!(decode_command_finished(&def).is_err());
    }

    #[test]
    fn truncated_is_an_error() {
        let full = encode_command_finished(7);
        for cut in 0..full.len() {
            assert!(decode_command_finished(&full[..cut]).is_err(), "cut at {cut}");
        }
    }
}
