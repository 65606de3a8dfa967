//! Protobuf form of a ConfigSpec: the `Spec` message of the SDK's `rpc/hcl_spec.proto`
//! (plugin-protocol.md §6.3), hand-encoded.
//!
//! ```text
//! message Spec      { oneof block { Object object = 1; Attr attr = 2; Block block_value = 3; BlockList block_list = 4; } }
//! message Object    { map<string, Spec> attributes = 1; }
//! message Attr      { string name = 1; CtyType type = 2; bool required = 3; }
//! message Block     { string name = 1; bool required = 2; Spec nested = 3; }
//! message BlockList { string name = 1; Spec nested = 2; }
//! message CtyType   { oneof typeDef { CtyPrimitive primitive = 1; CtyList list = 2; CtyMap map = 3; } }
//! message CtyPrimitive { string typeString = 1; }
//! message CtyList   { CtyType elementType = 1; }
//! message CtyMap    { CtyType elementType = 1; }
//! ```
//!
//! proto3 rules as protobuf-go applies them: empty strings and `false` are omitted, oneof
//! members and map entries (key and value) are always written. `BlockListSpec` min/max items
//! have no field and are dropped.

use super::{CtyType, ObjectSpec, Spec};

fn put_varint(b: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        b.push((v as u8) | 0x80);
        v >>= 7;
    }
    b.push(v as u8);
}

/// Length-delimited field `field` with contents `data`.
fn put_len(b: &mut Vec<u8>, field: u32, data: &[u8]) {
    put_varint(b, ((field as u64) << 3) | 2);
    put_varint(b, data.len() as u64);
    b.extend_from_slice(data);
}

/// proto3 string field (omitted when empty).
fn put_string(b: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        put_len(b, field, s.as_bytes());
    }
}

/// proto3 bool field (omitted when false).
fn put_bool(b: &mut Vec<u8>, field: u32, v: bool) {
    if v {
        put_varint(b, (field as u64) << 3);
        b.push(1);
    }
}

fn cty_type(ty: &CtyType) -> Vec<u8> {
    let mut b = Vec::new();
    match ty {
        CtyType::String | CtyType::Number | CtyType::Bool => {
            let mut p = Vec::new();
            put_string(&mut p, 1, &ty.go_string());
            put_len(&mut b, 1, &p);
        }
        CtyType::List(e) | CtyType::Map(e) => {
            let mut c = Vec::new();
            put_len(&mut c, 1, &cty_type(e));
            put_len(&mut b, if matches!(ty, CtyType::List(_)) { 2 } else { 3 }, &c);
        }
    }
    b
}

/// The `Spec{object: Object{attributes: …}}` message for `spec`.
fn object(spec: &ObjectSpec, sorted: bool) -> Vec<u8> {
    let mut entries: Vec<&(String, Spec)> = spec.entries.iter().collect();
    if sorted {
        entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    }
    let mut obj = Vec::new();
    for (key, s) in entries {
        let mut entry = Vec::new();
        put_len(&mut entry, 1, key.as_bytes());
        put_len(&mut entry, 2, &spec_entry(s, sorted));
        put_len(&mut obj, 1, &entry);
    }
    let mut b = Vec::new();
    put_len(&mut b, 1, &obj);
    b
}

/// The `Spec` message for one entry.
fn spec_entry(s: &Spec, sorted: bool) -> Vec<u8> {
    let mut m = Vec::new();
    let mut b = Vec::new();
    match s {
        Spec::Attr(a) => {
            put_string(&mut m, 1, &a.name);
            put_len(&mut m, 2, &cty_type(&a.ty));
            put_bool(&mut m, 3, a.required);
            put_len(&mut b, 2, &m);
        }
        Spec::Block(bl) => {
            put_string(&mut m, 1, &bl.type_name);
            put_bool(&mut m, 2, bl.required);
            put_len(&mut m, 3, &object(&bl.nested, sorted));
            put_len(&mut b, 3, &m);
        }
        Spec::BlockList(bl) => {
            put_string(&mut m, 1, &bl.type_name);
            put_len(&mut m, 2, &object(&bl.nested, sorted));
            put_len(&mut b, 4, &m);
        }
    }
    b
}

/// Encodes `spec` as a protobuf `Spec` (oneof `object`); maps in sorted key order at every
/// level if `sorted`, else in `entries` order.
pub fn encode_spec(spec: &ObjectSpec, sorted: bool) -> Vec<u8> {
    object(spec, sorted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        let mut b = Vec::new();
        put_varint(&mut b, 1);
        put_varint(&mut b, 300);
        assert_eq!(b, [0x01, 0xac, 0x02]);
    }

    #[test]
    fn single_attr() {
        let spec = ObjectSpec::new().required_attr("n", CtyType::list(CtyType::Bool));
        // Spec{object{attributes{"n": Spec{attr{name "n", type list{primitive "cty.Bool"}, required}}}}}
        let want = "0a200a1e0a016e121912170a016e1210120e0a0c0a0a0a086374792e426f6f6c1801";
        assert_eq!(hex::encode(spec.to_protobuf()), want);
    }

    #[test]
    fn sorted_vs_entry_order() {
        let spec = ObjectSpec::new().attr("b", CtyType::String).attr("a", CtyType::Number);
        assert_ne!(spec.to_protobuf(), spec.to_protobuf_in_entry_order());
        assert_eq!(spec.to_protobuf(), spec.sorted().to_protobuf_in_entry_order());
        assert_eq!(spec.to_protobuf().len(), spec.to_protobuf_in_entry_order().len());
    }
}
