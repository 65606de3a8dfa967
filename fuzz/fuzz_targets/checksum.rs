//! `iso_checksum` values and checksum files (GNU and BSD syntax): never a panic. The input is
//! `FILE_NAME\nCHECKSUM-FILE TEXT`; the first line is also parsed as an `iso_checksum` value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use packer_sdk::download::{lookup_checksum, Checksum};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (name, body) = text.split_once('\n').unwrap_or((&text, ""));
    let _ = Checksum::parse(name);
    let _ = lookup_checksum(body, name);
    let _ = lookup_checksum(body, "debian.iso");
});
