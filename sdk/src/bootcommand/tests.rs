//! Grammar tests: every special key, waits, toggles, Packer's edge cases (reference §3.3), the lint.

use std::time::Duration;

use super::*;

fn press(c: char) -> Action {
    Action::Press(Key::Char(c))
}
fn sp(k: SpecialKey) -> Action {
    Action::Press(Key::Special(k))
}
fn literal(s: &str) -> Vec<Action> {
    s.chars().map(press).collect()
}
fn secs(s: u64) -> Action {
    Action::Wait(Duration::from_secs(s))
}

#[test]
fn empty_command_is_empty() {
    assert_eq!(parse(""), Ok(vec![]));
    assert!(validate("").is_empty());
}

#[test]
fn plain_text_is_pressed_char_by_char() {
    assert_eq!(parse("ab C1 !\n\té").unwrap(), literal("ab C1 !\n\té"));
}

#[test]
fn every_special_key_in_three_casings_and_with_on_off() {
    for (name, key) in SpecialKey::GRAMMAR_ORDER {
        for spelled in [name.to_string(), name.to_uppercase(), name.to_lowercase()] {
            assert_eq!(parse(&format!("<{spelled}>")).unwrap(), vec![sp(key)], "<{spelled}>");
            for on in ["on", "On", "ON", "oN"] {
                assert_eq!(
                    parse(&format!("<{spelled}{on}>")).unwrap(),
                    vec![Action::Down(Key::Special(key))],
                    "<{spelled}{on}>"
                );
            }
            for off in ["off", "Off", "OFF"] {
                assert_eq!(
                    parse(&format!("<{spelled}{off}>")).unwrap(),
                    vec![Action::Up(Key::Special(key))],
                    "<{spelled}{off}>"
                );
            }
        }
        assert!(validate(&format!("<{name}>")).is_empty());
    }
}

#[test]
fn function_keys_and_left_right_prefixes() {
    use SpecialKey::*;
    assert_eq!(
        parse("<f1><f10><f11><f12><f9><left><leftAlt><right><rightShift><leftOn>").unwrap(),
        vec![
            sp(F1),
            sp(F10),
            sp(F11),
            sp(F12),
            sp(F9),
            sp(Left),
            sp(LeftAlt),
            sp(Right),
            sp(RightShift),
            Action::Down(Key::Special(Left))
        ]
    );
    // No such key: typed literally by Packer.
    assert_eq!(parse("<f13>").unwrap(), literal("<f13>"));
    assert_eq!(parse("<f0>").unwrap(), literal("<f0>"));
}

#[test]
fn modifier_chords() {
    use SpecialKey::*;
    let ctrl = Key::Special(LeftCtrl);
    assert_eq!(parse("<leftCtrlOn>c<leftCtrlOff>").unwrap(), vec![Action::Down(ctrl), press('c'), Action::Up(ctrl)]);
    let alt = Key::Special(LeftAlt);
    assert_eq!(parse("<LeftAltON><f2><leftaltoff>").unwrap(), vec![Action::Down(alt), sp(F2), Action::Up(alt)]);
}

#[test]
fn char_toggles() {
    assert_eq!(
        parse("<aOn><aOff><AON><%off><<on><>off>").unwrap(),
        vec![
            Action::Down(Key::Char('a')),
            Action::Up(Key::Char('a')),
            Action::Down(Key::Char('A')),
            Action::Up(Key::Char('%')),
            Action::Down(Key::Char('<')),
            Action::Up(Key::Char('>')),
        ]
    );
    // CharToggle is tried before Special: <fOn> is the letter f, <f1On> is F1.
    assert_eq!(parse("<fOn>").unwrap(), vec![Action::Down(Key::Char('f'))]);
    assert_eq!(parse("<f1On>").unwrap(), vec![Action::Down(Key::Special(SpecialKey::F1))]);
    assert_eq!(parse("<won>").unwrap(), vec![Action::Down(Key::Char('w'))]);
}

#[test]
fn waits_integer_seconds_and_default() {
    assert_eq!(parse("<wait>").unwrap(), vec![secs(1)]);
    assert_eq!(parse("<wait5>").unwrap(), vec![secs(5)]);
    assert_eq!(parse("<wait10><wait180>").unwrap(), vec![secs(10), secs(180)]);
}

#[test]
fn waits_go_durations() {
    let cases = [
        ("<wait1m30s>", Duration::from_secs(90)),
        ("<wait500ms>", Duration::from_millis(500)),
        ("<wait1.5s>", Duration::from_millis(1500)),
        ("<wait2h>", Duration::from_secs(7200)),
        ("<wait1h2m3s4ms5us6ns>", Duration::new(3723, 4_005_006)),
        ("<wait10us>", Duration::from_micros(10)),
        ("<wait10µs>", Duration::from_micros(10)),
        ("<wait1ns>", Duration::from_nanos(1)),
        ("<wait0.5m>", Duration::from_secs(30)),
        ("<wait1s1s>", Duration::from_secs(2)),
        ("<wait0s500ms>", Duration::from_millis(500)),
    ];
    for (text, d) in cases {
        assert_eq!(parse(text).unwrap(), vec![Action::Wait(d)], "{text}");
        assert!(validate(text).is_empty(), "{text}");
    }
}

#[test]
fn non_positive_waits_are_errors() {
    for text in ["<wait0>", "<wait0s>", "<wait-1s>", "<wait-1m30s>", "<wait0ms>"] {
        let err = parse(text).unwrap_err();
        assert_eq!(err.kind, ParseErrorKind::NonPositiveWait, "{text}");
        assert_eq!((err.line, err.column, err.offset), (1, 1, 0));
        assert_eq!(err.token, text);
        assert!(!err.kind.is_lint());
    }
}

#[test]
fn invalid_wait_values_are_errors() {
    // Go's ParseDuration only accepts a sign in front.
    let err = parse("x<wait1s-2s>").unwrap_err();
    assert!(matches!(err.kind, ParseErrorKind::InvalidWait { .. }), "{err}");
    assert_eq!(err.column, 7);
    assert!(matches!(parse("<wait99999999999999999999>").unwrap_err().kind, ParseErrorKind::InvalidWait { .. }));
    assert!(matches!(parse("<wait9999999999999>").unwrap_err().kind, ParseErrorKind::InvalidWait { .. }));
    assert!(matches!(parse("<wait3000000h>").unwrap_err().kind, ParseErrorKind::InvalidWait { .. }));
    // Pigeon keeps errors of actions that ran inside a rule that then failed.
    assert!(parse("<wait1s-2sx>").is_err());
}

#[test]
fn things_packer_types_literally() {
    for text in [
        "<WAIT5>",
        "<Wait>",
        "<wait 5>",
        "<wait5sec>",
        "<wait05>",
        "<wait1.5>",
        "<foo>",
        "<>",
        "<",
        "a<b",
        "<enter",
        "enter>",
        "<enterx>",
        "<leftShiftOnOff>",
        "<waitOn>",
        "<wait5s >",
    ] {
        assert_eq!(parse(text).unwrap(), literal(text), "{text}");
    }
}

#[test]
fn special_key_match_does_not_backtrack() {
    // "left" matches before the failing ">" and PEG does not retry, so this is literal text.
    assert_eq!(parse("<leftx>").unwrap(), literal("<leftx>"));
    // But a failed Special does not stop the rest from parsing.
    assert_eq!(parse("<<enter>").unwrap(), vec![press('<'), sp(SpecialKey::Enter)]);
}

#[test]
fn go_unicode_lowercasing_in_key_names() {
    // pigeon compares unicode.ToLower(rune): U+0130 lowers to 'i'.
    assert_eq!(parse("<\u{130}nsert>").unwrap(), vec![sp(SpecialKey::Insert)]);
}

#[test]
fn mixed_realistic_command() {
    let cmd =
        "<esc><wait>linux auto=true url=http://10.0.2.2:8080/preseed.cfg<enter><wait1m30s><leftCtrlOn>d<leftCtrlOff>";
    let a = parse(cmd).unwrap();
    assert_eq!(a[0], sp(SpecialKey::Esc));
    assert_eq!(a[1], secs(1));
    assert_eq!(&a[2..7], literal("linux").as_slice());
    assert!(a.contains(&Action::Wait(Duration::from_secs(90))));
    assert_eq!(a.last(), Some(&Action::Up(Key::Special(SpecialKey::LeftCtrl))));
    assert!(validate(cmd).is_empty());
    let spanned = parse_spanned(cmd).unwrap();
    assert_eq!(&cmd[spanned[1].span.clone()], "<wait>");
}

#[test]
fn lint_flags_token_lookalikes() {
    type Check = fn(&ParseErrorKind) -> bool;
    let cases: [(&str, Check); 9] = [
        ("<foo>", |k| matches!(k, ParseErrorKind::UnknownToken { suggestion: None })),
        ("<WAIT5>", |k| *k == ParseErrorKind::MalformedWait),
        ("<wait 5>", |k| *k == ParseErrorKind::MalformedWait),
        ("<wait5sec>", |k| *k == ParseErrorKind::MalformedWait),
        ("<wait1.5>", |k| *k == ParseErrorKind::MalformedWait),
        ("<>", |k| *k == ParseErrorKind::EmptyToken),
        ("<f13>", |k| matches!(k, ParseErrorKind::UnknownToken { .. })),
        ("<leftShiftOnOff>", |k| matches!(k, ParseErrorKind::UnknownToken { .. })),
        ("<enterx>", |k| matches!(k, ParseErrorKind::UnknownToken { .. })),
    ];
    for (text, check) in cases {
        let errs = lint(text);
        assert_eq!(errs.len(), 1, "{text}: {errs:?}");
        assert!(check(&errs[0].kind), "{text}: {:?}", errs[0].kind);
        assert!(errs[0].kind.is_lint());
        assert_eq!(errs[0].token, text);
        // parse stays Packer-compatible: no error.
        assert!(parse(text).is_ok());
        assert_eq!(validate(text), errs);
    }
}

#[test]
fn lint_suggestions() {
    let sug = |t: &str| match &lint(t)[0].kind {
        ParseErrorKind::UnknownToken { suggestion } => suggestion.clone(),
        k => panic!("{k:?}"),
    };
    assert_eq!(sug("<ctrl>").as_deref(), Some("<leftCtrl>"));
    assert_eq!(sug("<ctrlOn>").as_deref(), Some("<leftCtrlOn>"));
    assert_eq!(sug("<entr>").as_deref(), Some("<enter>"));
    assert_eq!(sug("<space>").as_deref(), Some("<spacebar>"));
    assert_eq!(sug("<pgdn>").as_deref(), Some("<pageDown>"));
    assert_eq!(sug("<xyzzy>"), None);
}

#[test]
fn lint_ignores_shell_text_and_the_escape() {
    for text in [
        "cat < file",
        "a<b",
        "echo x > y",
        "<<on><<off>foo>",
        "x <- y",
        "<1>",
        "if [ $a -lt 3 ]; then <enter>",
        "<",
        "<enter",
        "<<",
    ] {
        assert!(lint(text).is_empty(), "{text}: {:?}", lint(text));
    }
    // The escape types "<foo>".
    let ev = events(&parse("<<on><<off>foo>").unwrap());
    let typed: String = ev
        .iter()
        .filter_map(|e| match e {
            KeyEvent::Down(Key::Char(c)) => Some(*c),
            _ => None,
        })
        .collect();
    assert_eq!(typed, "<foo>");
}

#[test]
fn error_positions_and_messages() {
    let cmd = "abc<enter>\nde<wait0>\n  <ctrl>";
    let errs = validate(cmd);
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert_eq!((errs[0].line, errs[0].column, errs[0].token.as_str()), (2, 3, "<wait0>"));
    assert_eq!((errs[1].line, errs[1].column, errs[1].token.as_str()), (3, 3, "<ctrl>"));
    let msg = errs[1].to_string();
    assert!(msg.contains("line 3, column 3"), "{msg}");
    assert!(msg.contains("<leftCtrl>"), "{msg}");
    assert!(msg.contains("<<on><<off>"), "{msg}");
    let msg = errs[0].to_string();
    assert!(msg.contains("positive"), "{msg}");
    // Columns count characters, not bytes.
    let e = &validate("ééé<wait0>")[0];
    assert_eq!((e.column, e.offset), (4, 6));
}

#[test]
fn template_markers_parse_as_text() {
    let cmd = "url=http://{{ .HTTPIP }}:{{ .HTTPPort }}/ks.cfg key={{ .SSHPublicKey | urlquery }}<enter>";
    let a = parse(cmd).unwrap();
    assert_eq!(a.len(), cmd.len() - "<enter>".len() + 1);
    assert!(validate(cmd).is_empty());
}

#[test]
fn boot_steps_shapes() {
    let raw = vec![
        vec!["<esc>".to_string(), "menu".to_string()],
        vec![],
        vec!["linux<enter>".to_string()],
        vec!["<wait>".to_string(), String::new()],
    ];
    let steps = parse_boot_steps(&raw).unwrap();
    assert_eq!(
        steps,
        vec![
            BootStep { command: "<esc>".into(), description: Some("menu".into()) },
            BootStep { command: "linux<enter>".into(), description: None },
            BootStep { command: "<wait>".into(), description: None },
        ]
    );
    let bad = vec![
        vec!["a".to_string(), "b".to_string(), "c".to_string()],
        vec!["ok".to_string()],
        vec!["<wait0>".to_string(), "x".to_string()],
        vec!["<foo>".to_string()],
    ];
    let errs = parse_boot_steps(&bad).unwrap_err();
    assert_eq!(errs.len(), 3);
    assert_eq!(errs[0], BootStepError::TooManyElements { index: 1, count: 3 });
    assert!(
        matches!(&errs[1], BootStepError::Command { index: 3, error } if error.kind == ParseErrorKind::NonPositiveWait)
    );
    assert!(matches!(&errs[2], BootStepError::Command { index: 4, .. }));
    assert!(errs[0].to_string().contains("[\"<keys>\", \"description\"]"));
}

#[test]
fn flatten_joins_without_separator() {
    let parts = vec!["<esc><wait>".to_string(), "linux".to_string(), "<enter>".to_string()];
    assert_eq!(flatten_boot_command(&parts), "<esc><wait>linux<enter>");
    // A token split across list elements still parses, as in Packer.
    assert_eq!(parse(&flatten_boot_command(&["<ent".into(), "er>".into()])).unwrap(), vec![sp(SpecialKey::Enter)]);
}

#[test]
fn events_of_parsed_commands() {
    let shift = Key::Special(SpecialKey::LeftShift);
    let ev = events(&parse("A<wait2>").unwrap());
    assert_eq!(
        ev,
        vec![
            KeyEvent::Down(shift),
            KeyEvent::Down(Key::Char('A')),
            KeyEvent::Up(Key::Char('A')),
            KeyEvent::Up(shift),
            KeyEvent::Wait(Duration::from_secs(2)),
        ]
    );
    // Every down has a matching up for a command without toggles.
    let ev = events(&parse("Hello, World! <enter>~").unwrap());
    let downs = ev.iter().filter(|e| matches!(e, KeyEvent::Down(_))).count();
    let ups = ev.iter().filter(|e| matches!(e, KeyEvent::Up(_))).count();
    assert_eq!(downs, ups);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the user writes, parse/lint/validate return (never panic), errors point inside
        /// the command, and a successful parse's spans tile the command exactly.
        #[test]
        fn never_panics_and_spans_tile(cmd in "(<|>|wait|WAIT|on|Off|enter|left|f1|[0-9]|\\.|-|ms|s|m|h|µ|é| |\n|[a-zA-Z])*") {
            let errs = validate(&cmd);
            for e in &errs {
                prop_assert!(e.offset < cmd.len());
                prop_assert!(cmd.is_char_boundary(e.offset));
                prop_assert!(!e.to_string().is_empty());
            }
            let _ = lint(&cmd);
            if let Ok(spanned) = parse_spanned(&cmd) {
                let mut at = 0;
                for s in &spanned {
                    prop_assert_eq!(s.span.start, at);
                    at = s.span.end;
                }
                prop_assert_eq!(at, cmd.len());
                let ev = events(&spanned.iter().map(|s| s.action).collect::<Vec<_>>());
                prop_assert!(ev.len() >= spanned.len());
            }
        }

        /// Text without `<` is typed exactly as written.
        #[test]
        fn text_without_angle_brackets_is_literal(cmd in "[^<]*") {
            prop_assert_eq!(parse(&cmd).unwrap(), literal(&cmd));
            prop_assert!(validate(&cmd).is_empty());
        }

        /// Integer waits are whole seconds.
        #[test]
        fn integer_waits(n in 1u64..1_000_000) {
            prop_assert_eq!(parse(&format!("<wait{n}>")).unwrap(), vec![secs(n)]);
        }
    }
}
