//! ConfigSpec encoders for arbitrary specs: the gob encoding decodes back to the same spec, and
//! the protobuf encoding is well-formed protobuf wire format (the project has no protobuf
//! decoder; Packer core is the reader).
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use packer_sdk::hcl::gob::{decode_object_spec, encode_object_spec};
use packer_sdk::hcl::{AttrSpec, BlockListSpec, BlockSpec, CtyType, GobFlavor, ObjectSpec, Spec};

fn cty(u: &mut Unstructured<'_>, depth: u32) -> Result<CtyType> {
    Ok(match u.int_in_range(0..=if depth < 4 { 4 } else { 2 })? {
        0 => CtyType::String,
        1 => CtyType::Number,
        2 => CtyType::Bool,
        3 => CtyType::List(Box::new(cty(u, depth + 1)?)),
        _ => CtyType::Map(Box::new(cty(u, depth + 1)?)),
    })
}

fn spec(u: &mut Unstructured<'_>, depth: u32) -> Result<ObjectSpec> {
    let mut s = ObjectSpec::new();
    for _ in 0..u.int_in_range(0..=6u8)? {
        let name: String = u.arbitrary()?;
        let entry = match u.int_in_range(0..=if depth < 3 { 2 } else { 0 })? {
            0 => Spec::Attr(AttrSpec { name: name.clone(), ty: cty(u, 0)?, required: u.arbitrary()? }),
            1 => Spec::Block(BlockSpec {
                type_name: name.clone(),
                nested: spec(u, depth + 1)?,
                required: u.arbitrary()?,
            }),
            _ => Spec::BlockList(BlockListSpec {
                type_name: name.clone(),
                nested: spec(u, depth + 1)?,
                // Go's hcldec fields are `int`: larger counts do not exist on the wire.
                min_items: u.int_in_range(0..=i64::MAX as u64)?,
                max_items: u.int_in_range(0..=i64::MAX as u64)?,
            }),
        };
        s.insert(&name, entry);
    }
    Ok(s)
}

fn varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..70).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Walks a protobuf message; length-delimited fields are walked as messages when they parse as one.
fn well_formed(b: &[u8]) -> bool {
    let mut pos = 0;
    while pos < b.len() {
        let Some(key) = varint(b, &mut pos) else { return false };
        if key >> 3 == 0 {
            return false;
        }
        match key & 7 {
            0 => {
                if varint(b, &mut pos).is_none() {
                    return false;
                }
            }
            2 => {
                let Some(len) = varint(b, &mut pos) else { return false };
                let Some(end) = usize::try_from(len).ok().and_then(|l| pos.checked_add(l)) else { return false };
                if end > b.len() {
                    return false;
                }
                pos = end;
            }
            _ => return false,
        }
    }
    true
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(s) = spec(&mut u, 0) else { return };
    for flavor in [GobFlavor::Module, GobFlavor::DebianVendored] {
        let bytes = encode_object_spec(&s, flavor, 65);
        let back = decode_object_spec(&bytes).expect("an encoded spec decodes");
        assert_eq!(back.spec, s);
    }
    assert!(well_formed(&s.to_protobuf()));
    assert!(well_formed(&s.to_protobuf_in_entry_order()));
});
