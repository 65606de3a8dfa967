//! Config decoding end to end: the raw configs of `Prepare` (a JSON-template map or an HCL2 cty
//! JSON document) through the sdk's `decode_raw_configs_with` into the builder's and the shell
//! provisioner's `prepare`: every problem is an error, never a panic.
//!
//! Input: one mode byte, then JSON text. Mode bit 0: the text is sent as cty JSON bytes (else it
//! must be a JSON object, sent as a map); bit 1: a valid base configuration (with the `packer_*`
//! options of a JSON template) comes first, so the fuzzed one overrides parts of it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use packer_sdk::config::RawConfig;

fn base() -> RawConfig {
    let v = serde_json::json!({
        "iso_url": "https://example.com/debian.iso",
        "iso_checksum": "none",
        "ssh_username": "root",
        "ssh_password": "root",
        "output_directory": "/nonexistent/fuzz-output",
        "packer_build_name": "fuzz",
        "packer_builder_type": "qemu-rs",
        "packer_user_variables": {"size": "10G", "user": "root"},
    });
    let serde_json::Value::Object(m) = v else { unreachable!() };
    RawConfig::Map(m)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, text)) = data.split_first() else { return };
    let fuzzed = if mode & 1 == 1 {
        RawConfig::CtyJson(text.to_vec())
    } else {
        match serde_json::from_slice::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(m)) => RawConfig::Map(m),
            _ => return,
        }
    };
    let raws = if mode & 2 == 2 { vec![base(), fuzzed] } else { vec![fuzzed] };
    let _ = builder_qemu::config::Config::prepare(&raws);
    let _ = provisioner_shell::config::Config::from_raws(&raws);
});
