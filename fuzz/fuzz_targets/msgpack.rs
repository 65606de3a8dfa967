//! The net/rpc msgpack codec: every value of the input stream decodes or fails cleanly, headers
//! decode or fail cleanly, and a decoded value re-encodes to bytes that decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use packer_sdk::rpc::codec::{
    decode, decode_prefix, encode, from_json, to_json, value_len, RequestHeader, ResponseHeader,
};

fuzz_target!(|data: &[u8]| {
    let _ = value_len(data);
    let _ = decode(data);
    let mut rest = data;
    while let Ok(Some((v, n))) = decode_prefix(rest) {
        assert!(n > 0 && n <= rest.len());
        let _ = RequestHeader::from_value(&v);
        let _ = ResponseHeader::from_value(&v);
        let _ = from_json(&to_json(&v));
        let bytes = encode(&v);
        let again = decode(&bytes).expect("a decoded value re-encodes to valid msgpack");
        assert_eq!(encode(&again), bytes);
        rest = &rest[n..];
    }
});
