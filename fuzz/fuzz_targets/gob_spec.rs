//! The gob ConfigSpec and cty type decoders: never a panic; a decoded spec re-encodes (both gob
//! flavours) to bytes that decode to the same spec.
#![no_main]

use libfuzzer_sys::fuzz_target;
use packer_sdk::hcl::gob::{decode_cty_type, decode_object_spec, encode_object_spec, GobDecoder};
use packer_sdk::hcl::{GobFlavor, DEFAULT_FIRST_TYPE_ID};

fuzz_target!(|data: &[u8]| {
    let _ = decode_cty_type(data, 0);
    let mut d = GobDecoder::new(data);
    while !d.at_end() {
        if d.decode().is_err() {
            break;
        }
    }
    if let Ok(decoded) = decode_object_spec(data) {
        for flavor in [GobFlavor::Module, GobFlavor::DebianVendored] {
            let bytes = encode_object_spec(&decoded.spec, flavor, DEFAULT_FIRST_TYPE_ID);
            let again = decode_object_spec(&bytes).expect("a decoded spec re-encodes to a valid gob stream");
            assert_eq!(again.spec, decoded.spec);
        }
    }
});
