//! Go duration and disk-size parsing: never a panic; what parses prints back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use packer_sdk::config::{Duration, Size};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(d) = Duration::parse(s) {
        let printed = d.to_string();
        assert_eq!(Duration::parse(&printed), Ok(d), "{s:?} printed as {printed:?}");
        let _ = d.to_std();
    }
    if let Ok(size) = Size::parse(s) {
        let _ = size.to_string();
    }
});
