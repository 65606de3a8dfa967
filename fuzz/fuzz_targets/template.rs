//! Go-template parsing and rendering of option values: never a panic, and what
//! `render_for_later` keeps as template text (the data references of `boot_command`) parses again.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use packer_sdk::config::template::{Context, Data, Template};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let Ok(t) = Template::parse(s) else { return };
    let _ = t.is_plain();
    let _ = t.references();
    let _ = t.variables();
    let _ = t.check_variables(&["HTTPIP", "HTTPPort", "Name"]);
    let ctx = Context {
        user_variables: Some(BTreeMap::from([
            ("a".to_string(), "1".to_string()),
            ("name".to_string(), "debian 12".to_string()),
            ("list".to_string(), "x,y,z".to_string()),
        ])),
        build_name: "debian".into(),
        build_type: "qemu-rs".into(),
        template_path: "/srv/templates/debian.pkr.json".into(),
        packer_version: "1.6.6".into(),
        enable_env: false,
    };
    let values =
        Data::strings([("HTTPIP", "10.0.2.2"), ("HTTPPort", "8080"), ("Name", "debian"), ("SSHPublicKey", "")]);
    let _ = t.render_with(&ctx, &values);
    let _ = t.render_with(&Context::default(), &Data::Unavailable("no data here".into()));
    if let Ok(later) = t.render_for_later(&ctx) {
        let again = Template::parse(&later.text);
        assert!(again.is_ok(), "{s:?} kept for later as {:?}, which does not parse: {again:?}", later.text);
    }
});
