//! The HTTP seed server's request target → file resolution: never a panic, and a resolved path
//! never leaves the served directory.
#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use packer_sdk::http_server::resolve_request_path;

fuzz_target!(|data: &[u8]| {
    let target = String::from_utf8_lossy(data);
    let Some(rel) = resolve_request_path(&target) else { return };
    let p = Path::new(&rel);
    assert!(p.is_relative(), "{target:?} resolved to the absolute path {rel:?}");
    for c in p.components() {
        assert!(matches!(c, Component::Normal(_)), "{target:?} resolved to {rel:?} with component {c:?}");
    }
    let root = Path::new("/srv/http");
    assert!(root.join(p).starts_with(root), "{target:?} resolved to {rel:?}, outside the root");
});
