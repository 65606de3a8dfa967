//! Tests of the builder configuration: defaults, every validation rule, all errors at once,
//! JSON-template maps and HCL2 cty-JSON input.

use serde_json::{json, Value};

use super::validate::check_checksum;
use super::*;
use packer_sdk::hcl::Spec;

const SHA256: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn no_env(_: &str) -> Option<String> {
    None
}

fn raws(options: Value, build: &str) -> Vec<RawConfig> {
    // What Packer 1.6.6 sends for a JSON template: the builder's map, then the core map.
    vec![
        RawConfig::Map(options.as_object().unwrap().clone()),
        RawConfig::Map(
            json!({"packer_build_name": build, "packer_builder_type": "qemu-rs", "packer_core_version": "1.6.6",
                   "packer_debug": false, "packer_force": false, "packer_on_error": "",
                   "packer_template_path": "/tmp/x.json", "packer_user_variables": {}})
            .as_object()
            .unwrap()
            .clone(),
        ),
    ]
}

/// A valid base configuration, with `extra` merged over it.
fn base(extra: Value) -> Value {
    let mut m = json!({"iso_url": "https://example.com/debian.iso", "iso_checksum": SHA256, "ssh_username": "root"});
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    m
}

fn prepare(options: Value) -> Result<PreparedConfig, PrepareError> {
    Config::prepare_with(&raws(options, "unit-test-build"), &Env { var: &no_env })
}

fn ok(options: Value) -> PreparedConfig {
    prepare(options).unwrap_or_else(|e| panic!("unexpected errors: {}", e.errors))
}

fn err(options: Value) -> PrepareError {
    match prepare(options) {
        Ok(p) => panic!("expected errors, got {:?}", p.config),
        Err(e) => e,
    }
}

/// Asserts that the errors mention `option` and that the text contains `needle`.
fn assert_error(e: &PrepareError, option: &str, needle: &str) {
    assert!(e.errors.mentions(option), "no error for {option}:\n{}", e.errors);
    assert!(e.errors.to_string().contains(needle), "no {needle:?} in:\n{}", e.errors);
}

#[test]
fn defaults_are_applied() {
    let p = ok(base(json!({})));
    let c = &p.config;
    assert_eq!(c.vm_name, "packer-unit-test-build");
    assert_eq!(c.output_directory, "output-unit-test-build");
    assert_eq!(c.iso_urls, vec!["https://example.com/debian.iso"]);
    assert_eq!(c.format, DiskFormat::Qcow2);
    assert_eq!(c.disk_size, Size::from_mib(40960));
    assert_eq!(c.disk_interface, DiskInterface::Virtio);
    assert_eq!(c.disk_cache, DiskCache::Writeback);
    assert_eq!(c.disk_discard, DiskDiscard::Ignore);
    assert_eq!(c.disk_detect_zeroes, DetectZeroes::Off);
    assert_eq!(c.memory, 512);
    assert_eq!(c.cpus, 1);
    assert!(c.headless, "headless defaults to true in qemu-rs");
    assert_eq!(c.accelerator, Accelerator::Auto);
    assert_eq!(c.qemu_binary, "qemu-system-x86_64");
    assert_eq!(c.machine_type, "pc");
    assert!(!c.efi_boot);
    assert_eq!(c.net_device, "virtio-net");
    assert_eq!((c.vnc_bind_address.as_str(), c.vnc_port_min, c.vnc_port_max), ("127.0.0.1", 5900, 6000));
    assert_eq!((c.http_bind_address.as_str(), c.http_port_min, c.http_port_max), ("127.0.0.1", 8000, 9000));
    assert_eq!((c.host_port_min, c.host_port_max), (2222, 4444));
    assert_eq!(c.qmp_socket_path, "output-unit-test-build/packer-unit-test-build.monitor");
    assert_eq!(c.serial_log, "output-unit-test-build/serial.log");
    assert_eq!(c.boot_wait, Duration::from_secs(10));
    assert_eq!(c.boot_key_interval, Duration::from_millis(100));
    assert_eq!(c.boot_command_transport, BootTransport::Qmp);
    assert_eq!(c.shutdown_timeout, Duration::from_secs(300));
    assert_eq!(c.communicator, CommunicatorType::Ssh);
    assert_eq!(c.ssh_timeout, Duration::from_secs(300));
    assert_eq!(c.ssh_handshake_attempts, 10);
    assert_eq!(c.ssh_port, 22);
    assert_eq!(c.ssh_host, "127.0.0.1");
    assert_eq!(c.ssh_keep_alive_interval, Duration::from_secs(5));
    assert_eq!(c.ssh_file_transfer_method, FileTransferMethod::Scp);
    assert_eq!((c.temporary_key_pair_type, c.temporary_key_pair_bits), (KeyPairType::Rsa, 4096));
    assert_eq!(c.cd_label, "packer");
    assert_eq!(c.output_checksum, OutputChecksum::None);
    assert_eq!(c.disk_path(), PathBuf::from("output-unit-test-build/packer-unit-test-build"));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert_eq!(p.common.build_name, "unit-test-build");
}

#[test]
fn explicit_values_win_and_json_numbers_are_lenient() {
    let c = ok(base(json!({
        "memory": 2048.0, "cpus": "4", "headless": false, "disk_size": 10240, "format": "raw",
        "disk_compression": false, "vm_name": "disk.img", "boot_wait": "-1s", "boot_key_interval": "10ms",
        "ssh_timeout": "30m", "accelerator": "tcg", "arch": "aarch64", "output_checksum": true,
        "disk_interface": "virtio-scsi", "cdrom_interface": "virtio-scsi", "net_device": "e1000",
        "temporary_key_pair_type": "ed25519", "boot_command_transport": "vnc", "communicator": "ssh",
        "qemuargs": [["-device", "virtio-rng-pci"], ["-no-reboot", ""]], "qemu_extra_args": ["-rtc", "base=utc"]
    })))
    .config;
    assert_eq!((c.memory, c.cpus, c.headless), (2048, 4, false));
    assert_eq!(c.disk_size, Size::from_mib(10240));
    assert_eq!(c.format, DiskFormat::Raw);
    assert!(c.skip_compaction, "raw forces skip_compaction");
    assert_eq!(c.boot_wait, Duration::ZERO, "negative boot_wait means no wait");
    assert_eq!(c.boot_key_interval, Duration::from_millis(10));
    assert_eq!(c.ssh_timeout, Duration::from_secs(1800));
    assert_eq!(c.accelerator, Accelerator::Tcg);
    assert_eq!(
        (c.arch, c.qemu_binary.as_str(), c.machine_type.as_str()),
        (Arch::Aarch64, "qemu-system-aarch64", "virt")
    );
    assert!(c.efi_boot, "aarch64 boots UEFI");
    assert_eq!(c.output_checksum, OutputChecksum::Sha256);
    assert_eq!(c.cdrom_interface, Some(CdromInterface::VirtioScsi));
    assert_eq!(c.qemuargs.len(), 2);
    assert_eq!(c.boot_command_transport, BootTransport::Vnc);
}

#[test]
fn secure_boot_implies_q35_and_efi() {
    let c = ok(base(json!({"secure_boot": true}))).config;
    assert_eq!(c.machine_type, "q35");
    assert!(c.efi_boot);
    let e = err(base(json!({"secure_boot": true, "machine_type": "pc"})));
    assert_error(&e, "machine_type", "needs a q35 machine");
    let e = err(base(json!({"secure_boot": true, "arch": "aarch64"})));
    assert_error(&e, "secure_boot", "only supported with arch = \"x86_64\"");
}

#[test]
fn hcl2_cty_json_input() {
    // Build the cty JSON like Packer: every attribute of our spec, null unless set.
    let spec = config_spec();
    let mut value = serde_json::Map::new();
    for (k, _) in &spec.entries {
        value.insert(k.clone(), Value::Null);
    }
    value.insert("iso_url".into(), json!("/tmp/x.iso"));
    value.insert("iso_checksum".into(), json!("none"));
    value.insert("ssh_username".into(), json!("debian"));
    value.insert("memory".into(), json!(1024));
    value.insert("headless".into(), json!(false));
    value.insert("qemuargs".into(), json!([["-m", "1G"]]));
    value.insert("boot_steps".into(), json!([["<enter>", "press enter"]]));
    value.insert("http_content".into(), json!({"/user-data": "#cloud-config\n"}));
    let blob = serde_json::to_vec(&json!({"value": value, "type": ["object", {}]})).unwrap();
    let raws = vec![
        RawConfig::Map(
            json!({"packer_build_name": "hcl", "packer_builder_type": "qemu-rs", "packer_debug": "false",
                   "packer_force": "true", "packer_on_error": ""})
            .as_object()
            .unwrap()
            .clone(),
        ),
        RawConfig::CtyJson(blob),
    ];
    let p = Config::prepare_with(&raws, &Env { var: &no_env }).unwrap_or_else(|e| panic!("{}", e.errors));
    assert!(p.common.force);
    assert_eq!(p.config.memory, 1024);
    assert!(!p.config.headless);
    assert_eq!(p.config.vm_name, "packer-hcl");
    assert_eq!(p.config.qemuargs, vec![vec!["-m".to_string(), "1G".to_string()]]);
    assert_eq!(p.config.boot_steps(), vec![("<enter>".to_string(), Some("press enter".to_string()))]);
    assert_eq!(p.config.http_content.get("/user-data").map(String::as_str), Some("#cloud-config\n"));
    assert!(p.warnings.iter().any(|w| w.contains("checksum of 'none'")), "{:?}", p.warnings);
}

#[test]
fn config_spec_has_every_option_and_the_common_ones() {
    let spec = config_spec();
    let ty = |k: &str| match spec.get(k) {
        Some(Spec::Attr(a)) => a.ty.clone(),
        other => panic!("{k}: {other:?}"),
    };
    let list = |t: CtyType| CtyType::List(Box::new(t));
    assert_eq!(ty("qemuargs"), list(list(CtyType::String)));
    assert_eq!(ty("boot_steps"), list(list(CtyType::String)));
    assert_eq!(ty("qemu_extra_args"), list(CtyType::String));
    assert_eq!(ty("headless"), CtyType::Bool);
    assert_eq!(ty("memory"), CtyType::Number);
    assert_eq!(ty("disk_size"), CtyType::String);
    assert_eq!(ty("boot_wait"), CtyType::String);
    assert_eq!(ty("http_content"), CtyType::Map(Box::new(CtyType::String)));
    assert_eq!(ty("packer_force"), CtyType::Bool);
    assert_eq!(ty("ssh_private_key"), list(CtyType::Number));
    assert!(matches!(spec.get("qemu_img_args"), Some(Spec::Block(_))));
    // Every key Packer 1.6.6's qemu builder accepts is accepted (so old templates get our messages).
    let packer_keys = include_str!("../../testdata/packer-1.6.6-qemu-keys.txt");
    for k in packer_keys.split_whitespace() {
        assert!(spec.get(k).is_some(), "Packer option {k} is missing from the spec");
    }
}

#[test]
fn all_errors_at_once() {
    let e = err(json!({
        "iso_checksum": "", "memory": 4, "format": "vmdk", "disk_interface": "scsi", "accelerator": "hvf",
        "disk_size": "10X", "boot_wait": "10", "net_device": "e1001", "vnc_port_min": 5800,
        "http_port_min": 9500, "communicator": "ssh", "bogus": 1, "ssh_timeout": "abc",
        "floppy_files": ["a"], "ssh_bastion_host": "jump"
    }));
    // Decode round: every type error and unknown option together.
    for (option, needle) in [
        ("format", "unknown value \"vmdk\""),
        ("accelerator", "not supported: qemu-rs runs on Linux hosts only"),
        ("disk_size", "unknown unit \"X\""),
        ("boot_wait", "missing unit"),
        ("ssh_timeout", "invalid duration"),
        ("bogus", "unknown option \"bogus\""),
    ] {
        assert_error(&e, option, needle);
    }
    // Validation runs too (every problem at once), without a second error for an option that
    // failed to decode.
    assert_error(&e, "iso_url", "one of iso_url or iso_urls must be set");
    for option in ["format", "accelerator", "disk_size", "boot_wait", "ssh_timeout"] {
        assert_eq!(
            e.errors.0.iter().filter(|x| x.option.as_deref() == Some(option)).count(),
            1,
            "{option}: {}",
            e.errors
        );
    }

    // Validation round: every rule that fails, together.
    let e = err(json!({
        "iso_checksum": "", "memory": 4, "disk_additional_size": ["10GB"], "net_device": "e1001", "vnc_port_min": 5800,
        "http_port_min": 9500, "floppy_files": ["a"], "ssh_bastion_host": "jump", "skip_resize_disk": true,
        "boot_command": ["<wait0>"], "boot_steps": [["a"]], "qemuargs": [["m", "1G"]], "run_once": true
    }));
    for (option, needle) in [
        ("iso_url", "one of iso_url or iso_urls must be set"),
        ("iso_checksum", "a checksum must be specified"),
        ("memory", "too little memory"),
        ("disk_additional_size[0]", "\"10GB\" is not a size"),
        ("net_device", "did you mean \"e1000\"?"),
        ("vnc_port_min", "below 5900"),
        ("http_port_min", "must not be greater than http_port_max"),
        ("ssh_username", "must be set when communicator is \"ssh\""),
        ("floppy_files", "\"a\" does not exist"),
        ("ssh_bastion_host", "ssh_bastion_agent_auth or ssh_bastion_interactive must be specified"),
        ("skip_resize_disk", "only makes sense with disk_image"),
        ("boot_command", "expecting a positive wait value"),
        ("boot_steps", "cannot both be set"),
        ("qemuargs[0]", "must be a QEMU switch starting with '-'"),
    ] {
        assert_error(&e, option, needle);
    }
    assert_eq!(e.errors.len(), 14, "{}", e.errors);
    assert!(e.warnings.iter().any(|w| w.contains("run_once")), "warnings survive errors: {:?}", e.warnings);
    assert!(e.errors.to_string().starts_with("14 error(s) occurred:\n\n* "));
}

#[test]
fn iso_source_rules() {
    assert_error(&err(base(json!({"iso_urls": ["a", "b"]}))), "iso_url", "cannot both be set");
    let c =
        ok(json!({"iso_urls": ["http://m1/x.iso", "http://m2/x.iso"], "iso_checksum": SHA256, "ssh_username": "u"}))
            .config;
    assert_eq!(c.iso_url, "http://m1/x.iso");
    assert_eq!(c.iso_urls.len(), 2);
}

#[test]
fn checksum_grammar() {
    assert!(check_checksum(SHA256).is_ok());
    assert!(check_checksum(&"a".repeat(32)).is_ok());
    assert!(check_checksum(&"a".repeat(40)).is_ok());
    assert!(check_checksum(&format!("SHA512:{}", "f".repeat(128))).is_ok());
    assert!(check_checksum("file:https://example.com/SHA256SUMS").is_ok());
    assert!(check_checksum("none").is_ok());
    assert!(check_checksum("").unwrap_err().contains("must be specified"));
    assert!(check_checksum("file:").is_err());
    assert!(check_checksum("debian.iso").unwrap_err().contains("looks like an ISO"));
    assert!(check_checksum("sha256:abcd").unwrap_err().contains("64 hex digits"));
    assert!(check_checksum("sha3:abcd").unwrap_err().contains("unknown checksum algorithm"));
    assert!(check_checksum("xyz").unwrap_err().contains("not a hexadecimal"));
    assert!(check_checksum(&"a".repeat(33)).unwrap_err().contains("matches no algorithm"));
}

#[test]
fn output_directory_must_not_exist_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap().to_string();
    assert_error(&err(base(json!({"output_directory": out}))), "output_directory", "run packer build with -force");
    let mut r = raws(base(json!({"output_directory": out})), "b");
    r.push(RawConfig::Map(json!({"packer_force": true}).as_object().unwrap().clone()));
    assert!(Config::prepare_with(&r, &Env { var: &no_env }).is_ok());
}

#[test]
fn ssh_private_key_file_must_be_readable() {
    let e = err(base(json!({"ssh_private_key_file": "/nonexistent/qemu-rs/id_ed25519"})));
    assert_error(&e, "ssh_private_key_file", "cannot read");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id");
    std::fs::write(&key, "").unwrap();
    assert_error(&err(base(json!({"ssh_private_key_file": key}))), "ssh_private_key_file", "is empty");
    std::fs::write(&key, "-----BEGIN OPENSSH PRIVATE KEY-----\n").unwrap();
    assert_error(&err(base(json!({"ssh_private_key_file": key}))), "ssh_private_key_file", "not a usable private key");
    let pair =
        packer_sdk::communicator::ssh::TemporaryKeyPair::generate(packer_sdk::communicator::ssh::KeyType::Ed25519)
            .unwrap();
    std::fs::write(&key, pair.private_key_pem).unwrap();
    assert_eq!(ok(base(json!({"ssh_private_key_file": key}))).config.ssh_private_key_file, key.to_str().unwrap());
}

/// `cd_content`/`http_content` keep `{{ .Name }}`/`{{ .SSHPublicKey }}` for the build (a NoCloud
/// seed carrying the temporary key); other template data is an error naming the option and key.
#[test]
fn content_templates_are_kept_for_the_build() {
    let p = ok(base(json!({
        "cd_content": {"user-data": "ssh_authorized_keys:\n  - {{ .SSHPublicKey }}", "meta-data": "local-hostname: {{ .Name }}"},
        "http_content": {"/preseed.cfg": "d-i passwd/username string {{ \"builder\" }}"}
    })));
    assert_eq!(p.config.cd_content["user-data"], "ssh_authorized_keys:\n  - {{.SSHPublicKey}}");
    assert_eq!(p.config.http_content["/preseed.cfg"], "d-i passwd/username string builder");
    assert_error(&err(base(json!({"cd_content": {"user-data": "{{ .HTTPIP }}"}}))), "cd_content", "\"user-data\"");
    assert_error(&err(base(json!({"http_content": {"/x": "{{ .HTTPPort"}}))), "http_content", "unclosed");
    assert_error(&err(base(json!({"cd_content": {"{{ .Foo }}": "x"}}))), "cd_content", ".Foo");
}

#[test]
fn boot_command_templates_and_grammar() {
    let p = ok(base(json!({"boot_command": [
        "<esc><wait>auto url=http://{{ .HTTPIP }}:{{.HTTPPort}}/preseed.cfg ",
        "hostname={{ .Name }} key={{ .SSHPublicKey | urlquery }}<enter>"
    ], "ssh_timeout": "30m"})));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert_eq!(p.config.boot_steps().len(), 1);

    assert_error(
        &err(base(json!({"boot_command": ["{{ .HTTPAddr }}"]}))),
        "boot_command",
        "unknown template variable \".HTTPAddr\"",
    );
    assert_error(&err(base(json!({"boot_command": ["{{ .HTTPIP "]}))), "boot_command", "unclosed template action");
    assert_error(&err(base(json!({"boot_steps": [["<wait0s>", "bad"]]}))), "boot_steps[0]", "positive wait");
    assert_error(&err(base(json!({"boot_steps": [["a", "b", "c"]]}))), "boot_steps[0]", "has 3 elements");
    assert_error(&err(base(json!({"boot_steps": [["{{ .Path }}"]]}))), "boot_steps[0]", ".Path");
    // An unknown <token> (Packer would type it literally) is an error naming the token.
    assert_error(&err(base(json!({"boot_command": ["<entr>"]}))), "boot_command", "unknown special key `<entr>`");
    let p = ok(base(json!({"boot_command": ["<enter>"]})));
    assert!(p.warnings.iter().any(|w| w.contains("ssh_timeout is the default 5m")), "{:?}", p.warnings);
    // qemu-rs's <waitForSerial "text" TIMEOUT>: accepted when well formed, a clear error otherwise
    ok(base(json!({"boot_command": ["<waitForSerial \"boot:\" 1m>e<waitForSerial \"a>b\" 5s><enter>"]})));
    assert_error(
        &err(base(json!({"boot_command": ["<waitForSerial \"login:\">root<enter>"]}))),
        "boot_command",
        "malformed <waitForSerial> token `<waitForSerial \"login:\">` at byte 0: a timeout is required",
    );
    assert_error(
        &err(base(json!({"boot_steps": [["a<waitForSerial login 5s>", "x"]]}))),
        "boot_steps[0]",
        "expected a space then the text in double quotes",
    );
    // the keys around a token are still checked
    assert_error(&err(base(json!({"boot_command": ["<waitForSerial \"x\" 1s><entr>"]}))), "boot_command", "`<entr>`");
}

#[test]
fn key_interval_from_environment() {
    let env = |k: &str| (k == "PACKER_KEY_INTERVAL").then(|| "25ms".to_string());
    let p = Config::prepare_with(&raws(base(json!({})), "b"), &Env { var: &env }).unwrap();
    assert_eq!(p.config.boot_key_interval, Duration::from_millis(25));
    let p = Config::prepare_with(&raws(base(json!({"boot_key_interval": "5ms"})), "b"), &Env { var: &env }).unwrap();
    assert_eq!(p.config.boot_key_interval, Duration::from_millis(5), "the option wins over the environment");
    let bad = |_: &str| Some("fast".to_string());
    let e = Config::prepare_with(&raws(base(json!({})), "b"), &Env { var: &bad }).unwrap_err();
    assert!(e.errors.to_string().contains("PACKER_KEY_INTERVAL=\"fast\""), "{}", e.errors);
}

#[test]
fn deprecated_aliases_warn_and_apply() {
    let p = ok(base(json!({
        "ssh_wait_timeout": "45m", "ssh_host_port_min": 3000, "ssh_host_port_max": 3100, "run_once": true,
        "boot_keygroup_interval": "1s", "qmp_enable": true, "temporary_key_pair_name": "x",
        "http_interface": "eth0", "http_network_protocol": "tcp"
    })));
    assert_eq!(p.config.ssh_timeout, Duration::from_secs(2700));
    assert_eq!((p.config.host_port_min, p.config.host_port_max), (3000, 3100));
    for needle in [
        "ssh_wait_timeout is deprecated",
        "ssh_host_port_min is deprecated",
        "ssh_host_port_max is deprecated",
        "run_once",
        "boot_keygroup_interval",
        "qmp_enable",
        "temporary_key_pair_name",
        "http_interface",
        "http_network_protocol is ignored",
    ] {
        assert!(p.warnings.iter().any(|w| w.contains(needle)), "no warning {needle:?} in {:?}", p.warnings);
    }
    assert_error(&err(base(json!({"http_network_protocol": "unix"}))), "http_network_protocol", "not supported");
}

#[test]
fn winrm_and_dsa_are_rejected_with_the_reason() {
    for (option, value, needle) in [
        ("communicator", json!("winrm"), "no Windows guest can be run"),
        ("winrm_username", json!("x"), "qemu-rs has no WinRM communicator"),
        ("winrm_port", json!(5985), "use communicator = \"ssh\""),
        ("winrm_use_ssl", json!(true), "qemu-rs has no WinRM communicator"),
        ("temporary_key_pair_type", json!("dsa"), "refused by OpenSSH since 7.0"),
    ] {
        assert_error(&err(base(json!({ option: value }))), option, needle);
    }
    // Packer defaults written out explicitly are harmless.
    ok(base(json!({"vnc_use_password": false, "floppy_files": [], "sockets": 0, "iso_skip_cache": false})));
}

#[test]
fn disk_rules() {
    assert_error(&err(base(json!({"use_backing_file": true}))), "use_backing_file", "needs disk_image = true");
    assert_error(
        &err(base(json!({"use_backing_file": true, "disk_image": true, "format": "raw"}))),
        "use_backing_file",
        "format = \"qcow2\"",
    );
    let c = ok(base(json!({"use_backing_file": true, "disk_image": true}))).config;
    assert!(c.skip_compaction);
    let p = ok(base(json!({"format": "raw", "disk_compression": true})));
    assert!(!p.config.disk_compression);
    assert!(p.warnings.iter().any(|w| w.contains("disk_compression has no effect")));
    assert_error(&err(base(json!({"vm_name": "a/b"}))), "vm_name", "plain file name");
    assert_eq!(ok(base(json!({"disk_size": "0"}))).config.disk_size, DEFAULT_DISK_SIZE);
}

#[test]
fn machine_rules() {
    assert_error(
        &err(base(json!({"efi_firmware_code": "/nonexistent/OVMF_CODE.fd"}))),
        "efi_firmware_code",
        "not a readable file",
    );
    let dir = tempfile::tempdir().unwrap();
    let code = dir.path().join("CODE.fd");
    std::fs::write(&code, [0u8; 16]).unwrap();
    let c = ok(base(json!({"efi_firmware_code": code}))).config;
    assert!(c.efi_boot, "a firmware path implies efi_boot");
    assert_error(
        &err(base(json!({"vnc_port_min": 6100, "vnc_port_max": 6000}))),
        "vnc_port_min",
        "must not be greater",
    );
    assert_error(
        &err(base(json!({"host_port_min": 5000, "host_port_max": 4000}))),
        "host_port_min",
        "must not be greater",
    );
    assert_error(&err(base(json!({"accelerator": "foo"}))), "accelerator", "unknown value \"foo\"");
    assert_eq!(ok(base(json!({"accelerator": "KVM"}))).config.accelerator, Accelerator::Kvm);
    assert_error(&err(base(json!({"arch": "riscv64"}))), "arch", "unknown value");
    assert_error(&err(base(json!({"output_checksum": "md5"}))), "output_checksum", "unknown value");
    assert_eq!(ok(base(json!({"output_checksum": "sha512"}))).config.output_checksum, OutputChecksum::Sha512);
    assert_error(&err(base(json!({"port": 1}))), "port", "unknown option \"port\"");
}

#[test]
fn http_cd_and_communicator_rules() {
    assert_error(&err(base(json!({"http_content": {"user-data": "x"}}))), "http_content", "must start with '/'");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert_error(
        &err(base(json!({"http_directory": d, "http_content": {"/a": "x"}}))),
        "http_content",
        "cannot both be set",
    );
    assert_error(&err(base(json!({"http_directory": "/nonexistent/http"}))), "http_directory", "not a directory");
    assert_error(&err(base(json!({"cd_files": ["/nonexistent/seed"]}))), "cd_files", "does not exist");
    ok(base(json!({"cd_files": ["/nonexistent/*.yaml"], "cd_content": {"user-data": "x"}, "cd_label": "cidata"})));
    assert_error(&err(base(json!({"cd_content": {"../x": "y"}}))), "cd_content", "without \"..\"");
    assert_error(
        &err(base(json!({"communicator": "none", "shutdown_command": "poweroff"}))),
        "shutdown_command",
        "needs a communicator",
    );
    let c = ok(json!({"iso_url": "/x.iso", "iso_checksum": SHA256, "communicator": "none"})).config;
    assert_eq!(c.communicator, CommunicatorType::None);
    assert_error(&err(base(json!({"temporary_key_pair_bits": 1024}))), "temporary_key_pair_bits", "not a valid RSA");
    assert_error(
        &err(base(json!({"temporary_key_pair_type": "ecdsa", "temporary_key_pair_bits": 300}))),
        "temporary_key_pair_bits",
        "256, 384 or 521",
    );
    assert_error(&err(base(json!({"ssh_file_transfer_method": "rsync"}))), "ssh_file_transfer_method", "unknown value");
    assert_error(&err(base(json!({"qemuargs": [["-name", "{{ .Foo }}"]]}))), "qemuargs[0]", "\".Foo\"");
    ok(base(
        json!({"qemuargs": [["-drive", "file={{ .OutputDir }}/{{ .Name }}"]], "qemu_extra_args": ["{{ .HTTPIP }}"]}),
    ));
    assert_error(&err(base(json!({"qemu_extra_args": ["{{ .X }}"]}))), "qemu_extra_args[0]", "\".X\"");
}

#[test]
fn secrets_are_not_in_debug_output() {
    let c = ok(base(json!({"ssh_password": "hunter2-secret"}))).config;
    assert_eq!(c.ssh_password.expose(), "hunter2-secret");
    assert!(!format!("{c:?}").contains("hunter2-secret"));
}

#[tokio::test]
async fn builder_prepare_and_run() {
    use packer_sdk::component::Builder;
    let mut b = crate::QemuBuilder::default();
    assert!(b.config_spec().get("packer_build_name").is_some());
    let out = b.prepare(raws(base(json!({"iso_checksum": "none"})), "b")).await.unwrap();
    assert!(out.generated_vars.is_empty());
    assert!(out.warnings.iter().any(|w| w.contains("checksum")));
    assert_eq!(b.prepared().unwrap().config.vm_name, "packer-b");
    let e = b.prepare(raws(json!({"memory": "lots"}), "b")).await.unwrap_err();
    assert!(e.errors.mentions("memory"));
    assert_eq!(crate::BUILDER_ID, "qemu-rs.builder");
}

fn prepare_with_user_variables(options: Value, user: Value) -> Result<PreparedConfig, PrepareError> {
    let mut r = raws(options, "tpl-build");
    if let RawConfig::Map(m) = &mut r[1] {
        m.insert("packer_user_variables".into(), user);
    }
    Config::prepare_with(&r, &Env { var: &no_env })
}

#[test]
fn json_user_variables_and_functions_in_options() {
    let p = prepare_with_user_variables(
        base(json!({
            "disk_size": "{{ user `disk_size` }}", "memory": "{{user `ram`}}", "cpus": "{{ user `cpus` }}",
            "headless": "{{ user `headless` }}", "vm_name": "{{ build_name }}-{{ user `name` }}.qcow2",
            "qemuargs": [["-m", "{{ user `ram` }}M"], ["-name", "{{ .Name }}"]],
            "boot_command": ["<esc> auto url=http://{{ .HTTPIP }}:{{ .HTTPPort }}/{{ user `preseed` }}<enter>"],
            "shutdown_command": "echo '{{ user `password` }}' | sudo -S poweroff",
        })),
        json!({"disk_size": "8G", "ram": "2048", "cpus": "2", "headless": "true", "name": "deb",
               "preseed": "preseed.cfg", "password": "pw"}),
    )
    .unwrap_or_else(|e| panic!("{}", e.errors));
    let c = &p.config;
    assert_eq!(c.memory, 2048);
    assert_eq!(c.cpus, 2);
    assert!(c.headless);
    assert_eq!(c.vm_name, "tpl-build-deb.qcow2");
    assert_eq!(c.shutdown_command, "echo 'pw' | sudo -S poweroff");
    assert_eq!(
        c.qemuargs,
        vec![vec!["-m".to_string(), "2048M".to_string()], vec!["-name".to_string(), "{{.Name}}".to_string()]]
    );
    assert_eq!(c.boot_command, vec!["<esc> auto url=http://{{.HTTPIP}}:{{.HTTPPort}}/preseed.cfg<enter>".to_string()]);
}

#[test]
fn template_data_outside_boot_command_and_qemuargs_is_an_error() {
    let e = err(base(json!({"vm_name": "{{ .Name }}", "output_directory": "{{ env `HOME` }}"})));
    assert_error(&e, "vm_name", "only available in boot_command, boot_steps, qemuargs");
    assert_error(&e, "output_directory", "env vars are not allowed here");
    assert_eq!(e.errors.len(), 2, "{}", e.errors);
}

#[test]
fn three_different_mistakes_are_reported_together() {
    let e = err(base(json!({"format": "vmdkx", "disk_interface": "floppy", "boot_command": ["<wiat>"]})));
    assert_error(&e, "format", "unknown value \"vmdkx\"");
    assert_error(&e, "disk_interface", "\"floppy\"");
    assert_error(&e, "boot_command", "<wiat>");
    assert_eq!(e.errors.len(), 3, "{}", e.errors);
}

/// Key files made by `ssh-keygen` for the SSH option tests: (dir, key path, matching cert path,
/// other key path).
pub(super) fn ssh_files() -> (tempfile::TempDir, String, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let keygen = |name: &str| {
        let path = dir.path().join(name);
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&path)
            .status()
            .expect("run ssh-keygen");
        assert!(st.success());
        path
    };
    let (ca, key, other) = (keygen("ca"), keygen("id"), keygen("other"));
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(&ca)
        .args(["-I", "test", "-n", "root"])
        .arg(key.with_extension("pub"))
        .status()
        .expect("run ssh-keygen -s");
    assert!(st.success());
    let s = |p: std::path::PathBuf| p.to_string_lossy().into_owned();
    let cert = dir.path().join("id-cert.pub");
    (dir, s(key), s(cert), s(other))
}

#[test]
fn ssh_keys_and_certificates_are_checked_at_prepare() {
    let (dir, key, cert, other) = ssh_files();
    let c = ok(base(json!({"ssh_private_key_file": key, "ssh_certificate_file": cert}))).config;
    assert_eq!(c.ssh_certificate_file.as_deref(), Some(cert.as_str()));

    assert_error(
        &err(base(json!({"ssh_certificate_file": cert}))),
        "ssh_certificate_file",
        "ssh_private_key_file must be specified if ssh_certificate_file is specified",
    );
    assert_error(
        &err(base(json!({"ssh_private_key_file": other, "ssh_certificate_file": cert}))),
        "ssh_certificate_file",
        "certifies the key",
    );
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, "-----BEGIN OPENSSH PRIVATE KEY-----\nnope\n-----END OPENSSH PRIVATE KEY-----\n").unwrap();
    let garbage = garbage.to_string_lossy().into_owned();
    assert_error(
        &err(base(json!({"ssh_private_key_file": garbage}))),
        "ssh_private_key_file",
        "is not a usable private key",
    );
    assert_error(
        &err(base(json!({"ssh_private_key_file": key, "ssh_certificate_file": key}))),
        "ssh_certificate_file",
        "could not read the SSH certificate",
    );
    assert_error(
        &err(base(json!({"ssh_private_key_file": key, "ssh_certificate_file": "/no/such-cert.pub"}))),
        "ssh_certificate_file",
        "cannot read",
    );
    // the bastion's key and certificate: the same checks, under the bastion's option names
    let e = err(base(json!({
        "ssh_bastion_host": "jump", "ssh_bastion_private_key_file": garbage,
    })));
    assert_error(&e, "ssh_bastion_private_key_file", "is not a usable private key");
    assert_eq!(e.errors.len(), 1, "{}", e.errors);
    assert_error(
        &err(base(json!({"ssh_bastion_host": "jump", "ssh_bastion_private_key_file": other,
                         "ssh_bastion_certificate_file": cert}))),
        "ssh_bastion_certificate_file",
        "certifies the key",
    );
    assert_error(
        &err(base(json!({"ssh_bastion_certificate_file": cert}))),
        "ssh_bastion_certificate_file",
        "ssh_bastion_private_key_file must be specified",
    );
}

#[test]
fn bastion_and_proxy_defaults_and_rules() {
    let (_dir, key, cert, _) = ssh_files();
    // the bastion logs in with ssh_private_key_file (and its certificate) unless told otherwise
    let c =
        ok(base(json!({"ssh_bastion_host": "jump", "ssh_private_key_file": key, "ssh_certificate_file": cert}))).config;
    assert_eq!(c.ssh_bastion_port, Some(22));
    assert_eq!(c.ssh_bastion_username.as_deref(), Some("root"));
    assert_eq!(c.ssh_bastion_private_key_file.as_deref(), Some(key.as_str()));
    assert_eq!(c.ssh_bastion_certificate_file.as_deref(), Some(cert.as_str()));
    let c = ok(base(json!({"ssh_bastion_host": "jump", "ssh_bastion_port": 2200, "ssh_bastion_username": "hop",
                           "ssh_bastion_password": "pw"})))
    .config;
    assert_eq!((c.ssh_bastion_port, c.ssh_bastion_username.as_deref()), (Some(2200), Some("hop")));
    ok(base(json!({"ssh_bastion_host": "jump", "ssh_bastion_agent_auth": true})));
    ok(base(json!({"ssh_bastion_host": "jump", "ssh_bastion_interactive": true})));
    assert_error(&err(base(json!({"ssh_bastion_host": "jump"}))), "ssh_bastion_host", "must be specified");

    let c = ok(base(json!({"ssh_proxy_host": "socks", "ssh_proxy_username": "u", "ssh_proxy_password": "p"}))).config;
    assert_eq!(c.ssh_proxy_port, Some(1080));
    assert_error(
        &err(base(json!({"ssh_proxy_host": "socks", "ssh_bastion_host": "jump", "ssh_bastion_password": "x"}))),
        "ssh_proxy_host",
        "either ssh_bastion_host or ssh_proxy_host, not both",
    );
    assert_error(&err(base(json!({"ssh_proxy_username": "u"}))), "ssh_proxy_username", "need ssh_proxy_host");
}

#[test]
fn ssh_algorithms_tunnels_agent_and_pause() {
    let c = ok(base(json!({
        "ssh_ciphers": ["aes128-ctr", "3des-cbc"], "ssh_key_exchange_algorithms": ["curve25519-sha256"],
        "ssh_local_tunnels": ["8080:localhost:80"], "ssh_remote_tunnels": ["9090:[::1]:90"],
        "pause_before_connecting": "1m", "ssh_disable_agent_forwarding": true,
        "temporary_key_pair_type": "ecdsa"
    })))
    .config;
    assert_eq!(c.temporary_key_pair_bits, 521);
    assert_eq!(c.pause_before_connecting, Some(Duration::from_secs(60)));

    let e = err(base(json!({"ssh_ciphers": ["aes512-ctr", "arcfour"], "ssh_key_exchange_algorithms": ["x"]})));
    assert_error(&e, "ssh_ciphers", "\"aes512-ctr\" is not a cipher qemu-rs knows; use one of: chacha20-poly1305");
    assert_error(&e, "ssh_ciphers", "RC4 is broken");
    assert_error(&e, "ssh_key_exchange_algorithms", "curve25519-sha256");
    assert_eq!(e.errors.len(), 3, "{}", e.errors);

    let e = err(base(json!({"ssh_local_tunnels": ["8080:localhost:80", "80:nohost"], "ssh_remote_tunnels": ["x"]})));
    assert_error(&e, "ssh_local_tunnels[1]", "PORT:HOST:HOSTPORT");
    assert_error(&e, "ssh_remote_tunnels[0]", "has no ':'");
    assert_eq!(e.errors.len(), 2, "{}", e.errors);

    assert_error(&err(base(json!({"pause_before_connecting": "-1s"}))), "pause_before_connecting", "negative");

    // an agent is looked for when the build connects, as in Packer: without one, a warning
    let p = ok(base(json!({"ssh_agent_auth": true})));
    assert!(p.warnings.iter().any(|w| w.contains("SSH_AUTH_SOCK")), "{:?}", p.warnings);
    let with_agent = |k: &str| (k == "SSH_AUTH_SOCK").then(|| "/run/agent.sock".to_string());
    let p = Config::prepare_with(&raws(base(json!({"ssh_agent_auth": true})), "b"), &Env { var: &with_agent }).unwrap();
    assert!(!p.warnings.iter().any(|w| w.contains("SSH_AUTH_SOCK")), "{:?}", p.warnings);
}

#[test]
fn media_machine_and_disk_options_of_packer() {
    // iso_skip_cache: URLs only, checksum forced to none with a warning
    let p = ok(base(json!({"iso_skip_cache": true})));
    assert_eq!(p.config.iso_checksum, "none");
    assert!(p.warnings.iter().any(|w| w.contains("not verified with iso_skip_cache")), "{:?}", p.warnings);
    let e = err(base(json!({"iso_skip_cache": true, "iso_urls": ["/local/x.iso", "https://m/x.iso"], "iso_url": ""})));
    assert_error(&e, "iso_skip_cache", "\"/local/x.iso\" is not an http:// or https:// URL");
    assert_eq!(e.errors.len(), 1, "{}", e.errors);
    // iso_target_*: normalised, a file with an extension or a directory without
    let dir = tempfile::tempdir().unwrap();
    let p = ok(base(json!({"iso_target_extension": ".QCOW2", "iso_target_path": dir.path()})));
    assert_eq!(p.config.iso_target_extension.as_deref(), Some("qcow2"));
    assert_error(&err(base(json!({"iso_target_extension": "a/b"}))), "iso_target_extension", "without '/'");
    let file = dir.path().join("noext");
    std::fs::write(&file, "x").unwrap();
    assert_error(&err(base(json!({"iso_target_path": file}))), "iso_target_path", "names a directory");
    let ext_dir = dir.path().join("cache.d");
    std::fs::create_dir(&ext_dir).unwrap();
    assert_error(&err(base(json!({"iso_target_path": ext_dir}))), "iso_target_path", "is a directory");
    // qemu_img_args in both JSON shapes decode into the three lists
    let p = ok(base(json!({"qemu_img_args": {"create": ["-o", "cluster_size=8192"], "resize": ["--shrink"]}})));
    let a = p.config.qemu_img_args.unwrap();
    assert_eq!((a.create.len(), a.convert.len(), a.resize.len()), (2, 0, 1));
}
