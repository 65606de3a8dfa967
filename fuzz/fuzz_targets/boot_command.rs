//! The `boot_command` grammar: parsing, spans, lint and the key events of what parses: never a
//! panic. Lines after the first form `boot_steps` entries (`command\tdescription`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use packer_sdk::bootcommand::{events, flatten_boot_command, parse, parse_boot_steps, parse_spanned, validate};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(actions) = parse(s) {
        let _ = events(&actions);
    }
    let _ = parse_spanned(s);
    // validate = parse errors + lint (lint's suggestions are the expensive part: called once)
    for e in validate(s) {
        let _ = e.hint();
        let _ = e.to_string();
    }
    if !s.contains('\n') {
        return;
    }
    let parts: Vec<String> = s.lines().map(str::to_string).collect();
    let _ = flatten_boot_command(&parts);
    let steps: Vec<Vec<String>> = s.lines().map(|l| l.split('\t').map(str::to_string).collect()).collect();
    let _ = parse_boot_steps(&steps);
});
