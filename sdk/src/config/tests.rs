//! Tests of merging, the `packer_*` options, the `packer_config!` macro and error layout.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::*;
use crate::hcl::{CtyType, Spec};

fn map(v: serde_json::Value) -> RawConfig {
    RawConfig::Map(v.as_object().expect("object").clone())
}

fn cty(value: serde_json::Value) -> RawConfig {
    RawConfig::CtyJson(serde_json::to_vec(&json!({"value": value, "type": "dynamic"})).unwrap())
}

crate::packer_config! {
    /// A nested block for tests.
    #[derive(Debug, Clone, Default, PartialEq)]
    pub struct Inner {
        /// A list.
        pub convert: Vec<String> => "convert",
        /// A number.
        pub level: Option<u32> => "level",
    }
}

crate::packer_config! {
    /// A configuration exercising every supported type.
    #[derive(Debug, Clone, Default, PartialEq)]
    pub struct Sample {
        /// string
        pub name: Option<String> => "name",
        /// integer
        pub memory: u64 => "memory",
        /// signed
        pub offset: i64 => "offset",
        /// float
        pub ratio: f64 => "ratio",
        /// bool
        pub headless: Option<bool> => "headless",
        /// list
        pub items: Vec<String> => "items",
        /// list of lists
        pub args: Vec<Vec<String>> => "args",
        /// map
        pub content: BTreeMap<String, String> => "content",
        /// duration
        pub wait: Option<Duration> => "wait",
        /// size
        pub size: Option<Size> => "size",
        /// block
        pub inner: Option<Inner> => "inner",
        /// block list
        pub tunnels: Vec<Inner> => "tunnel",
        /// port
        pub port: Option<u16> => "port",
        /// with a default
        pub retries: u32 = 7 => "retries",
    }
}

#[test]
fn multierror_layout_matches_packer() {
    let mut e = ConfigErrors::new();
    e.push_general("Command, Inline, Script and Scripts options cannot all be empty.");
    assert_eq!(
        e.to_string(),
        "1 error(s) occurred:\n\n* Command, Inline, Script and Scripts options cannot all be empty."
    );
    e.push("memory", "expected a whole number");
    e.push_general("third");
    assert_eq!(
        e.to_string(),
        "3 error(s) occurred:\n\n* Command, Inline, Script and Scripts options cannot all be empty.\n\n\
         * memory: expected a whole number\n\n* third"
    );
}

#[test]
fn spec_from_declaration() {
    let spec = Sample::config_spec();
    let keys: Vec<&str> = spec.entries.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, Sample::KEYS);
    let attr_ty = |k: &str| match spec.get(k) {
        Some(Spec::Attr(a)) => {
            assert_eq!(a.name, k);
            assert!(!a.required);
            a.ty.clone()
        }
        other => panic!("{k}: {other:?}"),
    };
    assert_eq!(attr_ty("name"), CtyType::String);
    assert_eq!(attr_ty("memory"), CtyType::Number);
    assert_eq!(attr_ty("ratio"), CtyType::Number);
    assert_eq!(attr_ty("headless"), CtyType::Bool);
    assert_eq!(attr_ty("items"), CtyType::List(Box::new(CtyType::String)));
    assert_eq!(attr_ty("args"), CtyType::List(Box::new(CtyType::List(Box::new(CtyType::String)))));
    assert_eq!(attr_ty("content"), CtyType::Map(Box::new(CtyType::String)));
    assert_eq!(attr_ty("wait"), CtyType::String);
    assert_eq!(attr_ty("size"), CtyType::String);
    match spec.get("inner") {
        Some(Spec::Block(b)) => {
            assert_eq!(b.type_name, "inner");
            assert_eq!(b.nested, Inner::config_spec());
        }
        other => panic!("{other:?}"),
    }
    match spec.get("tunnel") {
        Some(Spec::BlockList(b)) => assert_eq!((b.type_name.as_str(), b.min_items, b.max_items), ("tunnel", 0, 0)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn decodes_every_type_leniently() {
    let m = json!({
        "name": 12, "memory": "2048", "offset": -3.0, "ratio": "0.5", "headless": "true",
        "items": "single", "args": [["-m", "1G"], ["-no-reboot", ""]], "content": {"/a": "x", "/b": null},
        "wait": "1m30s", "size": "20G", "inner": {"convert": ["-c"], "level": 3.0},
        "tunnel": [{"convert": []}, {"level": "7"}], "port": 2222.0
    });
    let s = Sample::decode(m.as_object().unwrap()).unwrap();
    assert_eq!(s.name.as_deref(), Some("12"));
    assert_eq!(s.memory, 2048);
    assert_eq!(s.offset, -3);
    assert_eq!(s.ratio, 0.5);
    assert_eq!(s.headless, Some(true));
    assert_eq!(s.items, vec!["single"]);
    assert_eq!(s.args, vec![vec!["-m", "1G"], vec!["-no-reboot", ""]]);
    assert_eq!(s.content, BTreeMap::from([("/a".to_string(), "x".to_string())]));
    assert_eq!(s.wait, Some(Duration::from_secs(90)));
    assert_eq!(s.size, Some(Size::from_bytes(20 << 30)));
    assert_eq!(s.inner, Some(Inner { convert: vec!["-c".into()], level: Some(3) }));
    assert_eq!(s.tunnels, vec![Inner::default(), Inner { convert: vec![], level: Some(7) }]);
    assert_eq!(s.port, Some(2222));
}

#[test]
fn absent_and_null_mean_default() {
    let s = Sample::decode(json!({"name": null, "memory": null}).as_object().unwrap()).unwrap();
    assert_eq!(s, Sample { retries: 7, ..Sample::default() });
    let s = Sample::decode(json!({"retries": 0}).as_object().unwrap()).unwrap();
    assert_eq!(s.retries, 0);
}

#[test]
fn reports_every_problem_naming_the_option() {
    let m = json!({
        "memroy": 1, "memory": "abc", "ratio": [1], "headless": "maybe", "items": [1, {"x": 1}],
        "args": [[{"a": 1}]], "wait": "10", "size": "10X", "inner": {"levl": 1, "level": -1},
        "port": 70000, "offset": 1.5, "bogus_thing": true
    });
    let errs = Sample::decode(m.as_object().unwrap()).unwrap_err();
    let text = errs.to_string();
    for needle in [
        "unknown option \"memroy\"; did you mean \"memory\"?",
        "memory: expected a whole number (0 or more), got the string \"abc\"",
        "ratio: expected a number, got a list",
        "headless: expected a bool (true or false), got the string \"maybe\"",
        "items[1]: expected a string, got an object/map",
        "args[0][0]: expected a string, got an object/map",
        "wait: missing unit in duration \"10\"",
        "size: unknown unit \"X\"",
        "unknown option \"inner.levl\"; did you mean \"inner.level\"?",
        "inner.level: -1 is out of range",
        "port: 70000 is out of range; use a value between 0 and 65535",
        "offset: expected a whole number, got the number 1.5 which is not a whole number",
        "unknown option \"bogus_thing\"; remove it",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert_eq!(errs.len(), 13, "{text}");
    assert!(text.starts_with("13 error(s) occurred:\n\n* "));
    assert!(errs.mentions("memory") && errs.mentions("inner.level") && errs.mentions("items"));
    assert!(!errs.mentions("name"));
}

#[test]
fn merge_overrides_key_by_key_and_skips_nulls() {
    let raws = vec![
        map(json!({"name": "a", "memory": 1, "inner": {"level": 1, "convert": ["x"]}})),
        cty(json!({"name": null, "memory": 2, "inner": {"level": null, "convert": ["y"]}})),
        map(json!({"items": ["z"]})),
    ];
    let m = merge_raw_configs(&raws).unwrap();
    assert_eq!(
        serde_json::Value::Object(m),
        json!({"name": "a", "memory": 2, "inner": {"level": 1, "convert": ["y"]}, "items": ["z"]})
    );
}

#[test]
fn bad_cty_json_is_reported() {
    let errs = merge_raw_configs(&[RawConfig::CtyJson(b"{not json".to_vec())]).unwrap_err();
    assert!(errs.to_string().contains("not valid JSON"), "{errs}");
    let errs = merge_raw_configs(&[RawConfig::CtyJson(b"[1,2]".to_vec())]).unwrap_err();
    assert!(errs.to_string().contains("\"value\""), "{errs}");
    assert!(merge_raw_configs(&[RawConfig::CtyJson(br#"{"value":null,"type":"dynamic"}"#.to_vec())])
        .unwrap()
        .is_empty());
}

crate::packer_config! {
    /// The communicator subset of the captured null-builder session.
    #[derive(Debug, Clone, Default, PartialEq)]
    pub struct NullLike {
        /// communicator
        pub communicator: Option<String> => "communicator",
        /// ssh_timeout
        pub ssh_timeout: Option<Duration> => "ssh_timeout",
        /// ssh_port
        pub ssh_port: Option<u16> => "ssh_port",
        /// ssh_username
        pub ssh_username: Option<String> => "ssh_username",
    }
}

/// The exact `Configs` of a captured Packer 1.6.6 HCL2 `Builder.Prepare` (null builder).
#[test]
fn decodes_captured_hcl2_prepare() {
    let blob = include_bytes!("../../testdata/config/prepare-hcl2-null-builder.ctyjson").to_vec();
    let vars = map(json!({"packer_build_name": "demo", "packer_builder_type": "null",
                          "packer_debug": "false", "packer_force": "true", "packer_on_error": ""}));
    // The blob names every attribute of the null builder's spec; keep the ones NullLike knows.
    let full = parse_cty_json(&blob).unwrap();
    assert_eq!(full.get("communicator"), Some(&json!("none")));
    assert!(full.get("packer_build_name").unwrap().is_null());
    let raws = vec![vars.clone(), RawConfig::CtyJson(blob.clone())];
    // Every non-null attribute decodes; the null ones (the many ssh_* / winrm_*) are unset and not unknown.
    let d = decode_raw_configs::<NullLike>(&raws).unwrap();
    assert_eq!(d.config.communicator.as_deref(), Some("none"));
    assert_eq!(d.config.ssh_timeout, None);
    assert_eq!(d.common.build_name, "demo");
    assert_eq!(d.common.builder_type, "null");
    assert!(!d.common.debug);
    assert!(d.common.force, "the string \"true\" from the HCL2 vars map is a bool");
    assert_eq!(d.generated_data, None);
}

#[test]
fn decodes_json_template_prepare() {
    let raws = vec![
        map(json!({"communicator": "ssh", "ssh_port": 2222.0, "ssh_timeout": "20m", "ssh_username": "root"})),
        map(json!({"packer_build_name": "null", "packer_builder_type": "null", "packer_core_version": "1.6.6",
                   "packer_debug": true, "packer_force": false, "packer_on_error": "",
                   "packer_template_path": "/tmp/cap/null.json", "packer_user_variables": {"v": "1"},
                   "packer_sensitive_variables": ["secret"]})),
    ];
    let d = decode_raw_configs::<NullLike>(&raws).unwrap();
    assert_eq!(d.config.ssh_port, Some(2222));
    assert_eq!(d.config.ssh_timeout, Some(Duration::from_secs(1200)));
    assert_eq!(d.common.core_version, "1.6.6");
    assert!(d.common.debug);
    assert_eq!(d.common.template_path, "/tmp/cap/null.json");
    assert_eq!(d.common.user_variables.get("v").map(String::as_str), Some("1"));
    assert_eq!(d.common.sensitive_variables, vec!["secret"]);
}

#[test]
fn generated_data_placeholder_is_split_off() {
    let raws = vec![
        map(json!({"communicator": "none"})),
        map(json!({"packer_build_name": "x"})),
        map(json!({"ID": "Build_ID. To set this dynamically…", "Host": "Build_Host…",
                   "PackerRunUUID": "Build_PackerRunUUID. To set this dynamically…"})),
    ];
    let d = decode_raw_configs::<NullLike>(&raws).unwrap();
    assert_eq!(d.config.communicator.as_deref(), Some("none"));
    assert!(d.generated_data.unwrap().contains_key("Host"));
}

#[test]
fn common_and_config_errors_are_reported_together() {
    let raws = vec![map(json!({"ssh_port": "x", "ssh_usernme": "a", "packer_debug": "perhaps"}))];
    let errs = decode_raw_configs::<NullLike>(&raws).unwrap_err();
    assert_eq!(errs.len(), 3, "{errs}");
    assert!(errs.mentions("packer_debug") && errs.mentions("ssh_port") && errs.mentions("ssh_usernme"));
    assert!(errs.to_string().contains("did you mean \"ssh_username\"?"));
}

#[test]
fn spec_with_common_adds_packer_attributes() {
    let spec = spec_with_common(NullLike::config_spec());
    for k in ["communicator", "packer_build_name", "packer_force", "packer_user_variables"] {
        assert!(spec.get(k).is_some(), "{k}");
    }
    match spec.get("packer_debug") {
        Some(Spec::Attr(a)) => assert_eq!(a.ty, CtyType::Bool),
        other => panic!("{other:?}"),
    }
    match spec.get("packer_sensitive_variables") {
        Some(Spec::Attr(a)) => assert_eq!(a.ty, CtyType::List(Box::new(CtyType::String))),
        other => panic!("{other:?}"),
    }
}

#[test]
fn scalar_decoders() {
    assert_eq!(bool::decode(&json!("1")), Ok(true));
    assert_eq!(bool::decode(&json!("False")), Ok(false));
    assert_eq!(bool::decode(&json!(0)), Ok(false));
    // mapstructure's WeaklyTypedInput: any non-zero number is true.
    assert_eq!(bool::decode(&json!(2)), Ok(true));
    assert_eq!(bool::decode(&json!(0.0)), Ok(false));
    assert_eq!(u32::decode(&json!("512.0")), Ok(512));
    assert_eq!(u32::decode(&json!(" 42 ")), Ok(42));
    assert_eq!(i64::decode(&json!(true)), Ok(1));
    assert!(u32::decode(&json!(-1)).is_err());
    assert!(u8::decode(&json!(256)).is_err());
    assert_eq!(String::decode(&json!(512.0)), Ok("512".to_string()));
    // Go: a bool for a string is "1" / "0".
    assert_eq!(String::decode(&json!(false)), Ok("0".to_string()));
    assert_eq!(String::decode(&json!(true)), Ok("1".to_string()));
    // Go's strconv.ParseInt(s, 0, 64): base prefixes, a leading 0 is octal, underscores.
    assert_eq!(u32::decode(&json!("0x10")), Ok(16));
    assert_eq!(u32::decode(&json!("010")), Ok(8));
    assert_eq!(u32::decode(&json!("0b11")), Ok(3));
    assert_eq!(i64::decode(&json!("-1_000")), Ok(-1000));
    assert_eq!(u32::decode(&json!("")), Ok(0));
    assert!(u32::decode(&json!("0x")).is_err());
    // A string for a list of strings is split at commas; other single values become one element.
    assert_eq!(Vec::<String>::decode(&json!("a,b")), Ok(vec!["a".to_string(), "b".to_string()]));
    assert_eq!(Vec::<String>::decode(&json!("")), Ok(vec![]));
    assert_eq!(Vec::<u32>::decode(&json!("7")), Ok(vec![7]));
    assert_eq!(Vec::<bool>::decode(&json!(true)), Ok(vec![true]));
    assert_eq!(Vec::<Vec<String>>::decode(&json!(["-m,1G"])), Ok(vec![vec!["-m".to_string(), "1G".to_string()]]));
    assert_eq!(Vec::<Vec<String>>::decode(&json!("-m")), Ok(vec![vec!["-m".to_string()]]));
    assert!(String::decode(&json!([])).is_err());
    assert_eq!(f64::decode(&json!("1e3")), Ok(1000.0));
    assert!(f64::decode(&json!("abc")).is_err());
}

crate::packer_config! {
    /// Options of several types, for the interpolation tests.
    #[derive(Debug, Clone, Default, PartialEq)]
    pub struct Interp {
        /// a size-like string
        pub disk_size: String => "disk_size",
        /// a number
        pub memory: u32 => "memory",
        /// a bool
        pub headless: bool => "headless",
        /// a list of lists
        pub qemuargs: Vec<Vec<String>> => "qemuargs",
        /// a list
        pub boot_command: Vec<String> => "boot_command",
        /// a map
        pub env: BTreeMap<String, String> => "env",
        /// a string
        pub vm_name: String => "vm_name",
        /// a list of numbers
        pub codes: Vec<i64> => "codes",
    }
}

fn packer_vars(user: Value) -> RawConfig {
    map(json!({"packer_build_name": "b1", "packer_builder_type": "qemu-rs",
               "packer_template_path": "/t/dir/tpl.json", "packer_user_variables": user}))
}

const EXCLUDE: DecodeOptions<'static> =
    DecodeOptions { exclude: &["boot_command", "qemuargs"], data: FieldData::Deferred };

fn builder_options() -> DecodeOptions<'static> {
    DecodeOptions {
        exclude: &["boot_command", "qemuargs"],
        data: FieldData::Unavailable("template data is only available in boot_command and qemuargs".into()),
    }
}

#[test]
fn json_options_are_interpolated_then_weakly_decoded() {
    let raws = vec![
        map(json!({
            "disk_size": "{{ user `size` }}M", "memory": "{{user `ram`}}", "headless": "{{ user `headless` }}",
            "qemuargs": [["-m", "{{ user `ram` }}M"], ["-name", "{{ .Name }}-{{ build_name }}"]],
            "boot_command": ["<esc> {{ .HTTPIP }}:{{ .HTTPPort }}/{{ user `ks` }}<enter>"],
            "env": {"{{ upper `k` }}": "{{ build_type }}"},
            "vm_name": "{{ build_name }}-{{ timestamp }}.{{ isotime `20060102` }}",
            "codes": "{{ user `code` }}",
        })),
        packer_vars(json!({"size": "20480", "ram": "2048", "headless": "true", "ks": "ks.cfg", "code": "3"})),
    ];
    let (d, errors) = decode_raw_configs_with::<Interp>(&raws, &builder_options());
    assert!(errors.is_empty(), "{errors}");
    let c = d.config;
    assert_eq!(c.disk_size, "20480M");
    assert_eq!(c.memory, 2048);
    assert!(c.headless);
    // Excluded options: functions rendered now, data kept for the component.
    assert_eq!(
        c.qemuargs,
        vec![vec!["-m".to_string(), "2048M".to_string()], vec!["-name".to_string(), "{{.Name}}-b1".to_string()]]
    );
    assert_eq!(c.boot_command, vec!["<esc> {{.HTTPIP}}:{{.HTTPPort}}/ks.cfg<enter>".to_string()]);
    assert_eq!(c.env.get("K").map(String::as_str), Some("qemu-rs"));
    let ts = template::init_time();
    assert_eq!(c.vm_name, format!("b1-{}.{}", ts.timestamp(), ts.format("%Y%m%d")));
    assert_eq!(c.codes, vec![3]);
    assert_eq!(d.context.build_name, "b1");
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}

#[test]
fn hcl2_cty_json_strings_are_interpolated_too() {
    let doc = json!({"value": {"vm_name": "img-{{ build_name }}", "disk_size": "{{ user `x` }}", "memory": null},
                     "type": ["object", {}]});
    let raws = vec![
        map(json!({"packer_build_name": "src", "packer_builder_type": "qemu-rs"})),
        RawConfig::CtyJson(serde_json::to_vec(&doc).unwrap()),
    ];
    let (d, errors) = decode_raw_configs_with::<Interp>(&raws, &builder_options());
    assert_eq!(d.config.vm_name, "img-src");
    // HCL2 sends no user variables: `user` is an error naming the option.
    assert_eq!(errors.len(), 1, "{errors}");
    assert!(
        errors.to_string().contains("disk_size: {{ user `x` }}: user variables are not available here"),
        "{errors}"
    );
}

#[test]
fn template_errors_name_the_option_and_everything_is_reported() {
    let raws = vec![
        map(json!({
            "disk_size": "{{ env `HOME` }}", "vm_name": "{{ .Name }}", "memory": "{{ user `ram` }}x",
            "qemuargs": [["-a", "{{ vault `p` `k` }}"]], "env": {"A": "{{ nope }}"},
            "boot_command": ["{{ .HTTPIP "], "headless": "{{ user `undefined` }}",
        })),
        packer_vars(json!({"ram": "1"})),
    ];
    let (d, errors) = decode_raw_configs_with::<Interp>(&raws, &builder_options());
    let text: Vec<String> = errors.0.iter().map(|e| e.to_string()).collect();
    let expect = [
        "disk_size: {{ env `HOME` }}: env vars are not allowed here",
        "vm_name: {{ .Name }}: template data is only available in boot_command and qemuargs",
        "memory: expected a whole number",
        "qemuargs[0][1]: {{ vault `p` `k` }}: the function \"vault\" is not available in qemu-rs",
        "env.A: template syntax error at byte 3: function \"nope\" not defined",
    ];
    for e in expect {
        assert!(text.iter().any(|t| t.starts_with(e)), "missing {e:?} in {text:#?}");
    }
    assert_eq!(text.len(), expect.len(), "{text:#?}");
    // The unclosed action in the excluded boot_command is left for the component to report.
    assert_eq!(d.config.boot_command, vec!["{{ .HTTPIP ".to_string()]);
    // An undefined user variable is "" as in Packer (a bool false here), with a warning.
    assert!(!d.config.headless);
    assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
    assert!(d.warnings[0].starts_with("headless: user variable \"undefined\" is not defined"), "{:?}", d.warnings);
    // An option whose template failed keeps its text and is not reported twice.
    assert_eq!(d.config.qemuargs, vec![vec!["-a".to_string(), "{{ vault `p` `k` }}".to_string()]]);
    let raws = vec![map(json!({"memory": "{{ env `X` }}"})), packer_vars(json!({}))];
    let (_, errors) = decode_raw_configs_with::<Interp>(&raws, &builder_options());
    assert_eq!(errors.len(), 1, "{errors}");
}

#[test]
fn deferred_field_data_is_kept_and_exclusions_are_case_insensitive() {
    let raws = vec![
        map(json!({"vm_name": "{{ build `Host` }} {{ .Host }} {{ user `a` }}", "BOOT_COMMAND": ["{{ .X }}"]})),
        packer_vars(json!({"a": "1"})),
    ];
    let mut m = merge_raw_configs(&raws).unwrap();
    let common_keys: Vec<String> = m.keys().filter(|k| k.starts_with("packer_")).cloned().collect();
    for k in common_keys {
        m.remove(&k);
    }
    let ctx =
        template::Context { user_variables: Some(BTreeMap::from([("a".into(), "1".into())])), ..Default::default() };
    let mut errors = ConfigErrors::new();
    let opts = DecodeOptions { exclude: &["boot_command"], data: FieldData::Unavailable("no".into()) };
    interpolate_map(&mut m, &ctx, &opts, &mut errors);
    assert!(errors.mentions("vm_name"), "{errors}");
    assert_eq!(m["BOOT_COMMAND"], json!(["{{.X}}"]));
    let mut m2 = merge_raw_configs(&raws[..1]).unwrap();
    let mut errors = ConfigErrors::new();
    interpolate_map(&mut m2, &ctx, &EXCLUDE, &mut errors);
    assert!(errors.is_empty(), "{errors}");
    assert_eq!(m2["vm_name"], json!("{{build \"Host\"}} {{.Host}} 1"));
}

#[test]
fn decode_raw_configs_keeps_its_all_or_nothing_result() {
    let raws = vec![map(json!({"vm_name": "{{ build_name }}", "packer_build_name": "n"}))];
    assert_eq!(decode_raw_configs::<Interp>(&raws).unwrap().config.vm_name, "n");
    let raws = vec![map(json!({"vm_name": "{{ .X }}", "memory": "lots"}))];
    let errs = decode_raw_configs::<Interp>(&raws).unwrap_err();
    assert_eq!(errs.len(), 2, "{errs}");
}

crate::config_enum! {
    /// An enum option, for the type labels.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Mode {
        /// fast
        Fast => "fast",
        /// safe
        Safe => "safe",
    }
}

crate::packer_config! {
    /// Doc comments for the option reference.
    #[derive(Debug, Clone, Default, PartialEq)]
    pub struct Documented {
        /// What the option does,
        /// on two lines.
        ///
        /// A second paragraph.
        ///
        /// Internal: for readers of the code.
        ///
        /// Default: `7`
        #[allow(dead_code)]
        pub retries: u32 = 7 => "retries",
        /// Memory.
        ///
        /// Type: number (MiB)
        pub memory: u64 => "memory",
        pub undocumented: Option<bool> => "undocumented",
        /** A block comment. */
        pub mode: Option<Mode> => "mode",
    }
}

#[test]
fn option_docs_come_from_the_doc_comments_and_types() {
    let docs = Documented::option_docs();
    assert_eq!(docs.iter().map(|d| d.key).collect::<Vec<_>>(), Documented::KEYS);
    assert_eq!(docs[0].description, "What the option does, on two lines.\n\nA second paragraph.");
    assert_eq!(docs[0].default.as_deref(), Some("`7`"));
    assert_eq!(docs[0].type_label, "number");
    assert_eq!(docs[1].type_label, "number (MiB)");
    assert_eq!(docs[1].default, None);
    assert_eq!(docs[2].description, "");
    assert!(!docs[2].has_description());
    assert_eq!(docs[3].description, "A block comment.");
    assert_eq!(docs[3].type_label, "`fast` | `safe`");
    assert_eq!(<Documented as ConfigStruct>::option_docs(), docs);
    // Decoding still uses the field default, whatever the docs say.
    assert_eq!(Documented::decode(&JsonMap::new()).unwrap().retries, 7);
}

#[test]
fn type_labels_of_every_supported_type() {
    let labels: BTreeMap<&str, String> = Sample::option_docs().into_iter().map(|d| (d.key, d.type_label)).collect();
    let expect = [
        ("name", "string"),
        ("memory", "number"),
        ("offset", "number"),
        ("ratio", "number"),
        ("headless", "bool"),
        ("items", "list(string)"),
        ("args", "list(list(string))"),
        ("content", "map(string)"),
        ("wait", "duration"),
        ("size", "size"),
        ("inner", "block `{ convert, level }`"),
        ("tunnel", "list(block `{ convert, level }`)"),
        ("port", "number"),
        ("retries", "number"),
    ];
    for (key, label) in expect {
        assert_eq!(labels[key], label, "{key}");
    }
    assert_eq!(Secret::type_label(), "string");
    assert_eq!(<Option<Vec<Duration>>>::type_label(), "list(duration)");
}
