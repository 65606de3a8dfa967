//! Table of bad configurations: every row must fail `prepare` (never panic) with an error that
//! names the option at fault. All rows run, and every failing row is reported at once.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use serde_json::{json, Value};

use super::*;

const SHA256: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// One bad configuration: options merged over a valid base, the option the error must name,
/// and a fragment its message must contain (empty: any message).
struct Row {
    options: Value,
    option: &'static str,
    fragment: String,
}

fn row(options: Value, option: &'static str, fragment: &str) -> Row {
    Row { options, option, fragment: fragment.to_string() }
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// What Packer 1.6.6 sends for a JSON template: the base config with `extra` over it, then the
/// core map.
fn raws(extra: &Value) -> Vec<RawConfig> {
    let mut m = json!({"iso_url": "https://example.com/debian.iso", "iso_checksum": SHA256, "ssh_username": "root"});
    for (k, v) in extra.as_object().expect("row options are an object") {
        m[k] = v.clone();
    }
    vec![
        RawConfig::Map(m.as_object().unwrap().clone()),
        RawConfig::Map(
            json!({"packer_build_name": "bad-configs", "packer_builder_type": "qemu-rs", "packer_core_version": "1.6.6",
                   "packer_debug": false, "packer_force": false, "packer_on_error": "",
                   "packer_template_path": "/tmp/x.json", "packer_user_variables": {}})
            .as_object()
            .unwrap()
            .clone(),
        ),
    ]
}

/// Whether `text` contains `word` not as part of a longer identifier.
fn contains_word(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back().is_none_or(|c| !ident(c));
        let after = text[i + word.len()..].chars().next().is_none_or(|c| !ident(c));
        before && after
    })
}

/// Whether an error names `option`: as its option (or an element of it, `option[1]`), quoted in
/// a general message, or in the message of another option's error (e.g. `min > max` reported
/// on the `_min` option names both).
fn names(errors: &ConfigErrors, option: &str) -> bool {
    errors.mentions(option) || errors.0.iter().any(|e| contains_word(&e.message, option))
}

/// Files the rows point at: (temp dir, a regular file without extension, a directory with an
/// extension, an empty file, a garbage private key, a passphrase-protected key, a key, its
/// certificate, another key).
struct Files {
    _dir: tempfile::TempDir,
    _keys_dir: tempfile::TempDir,
    plain: String,
    dir_ext: String,
    empty: String,
    garbage_key: String,
    encrypted_key: String,
    key: String,
    cert: String,
    other_key: String,
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "not a directory").unwrap();
    let dir_ext = dir.path().join("cache.d");
    std::fs::create_dir(&dir_ext).unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    let garbage_key = dir.path().join("garbage");
    std::fs::write(&garbage_key, "-----BEGIN OPENSSH PRIVATE KEY-----\nnope\n-----END OPENSSH PRIVATE KEY-----\n")
        .unwrap();
    let encrypted_key = dir.path().join("encrypted");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "a passphrase", "-f"])
        .arg(&encrypted_key)
        .status()
        .expect("run ssh-keygen");
    assert!(st.success());
    let (keys_dir, key, cert, other_key) = super::tests::ssh_files();
    Files {
        plain: s(&plain),
        dir_ext: s(&dir_ext),
        empty: s(&empty),
        garbage_key: s(&garbage_key),
        encrypted_key: s(&encrypted_key),
        key,
        cert,
        other_key,
        _dir: dir,
        _keys_dir: keys_dir,
    }
}

fn rows(f: &Files) -> Vec<Row> {
    let under_file = format!("{}/sub", f.plain);
    vec![
        // ---- wrong types ----
        row(json!({"memory": "lots"}), "memory", ""),
        row(json!({"headless": "maybe"}), "headless", ""),
        row(json!({"format": 5}), "format", ""),
        row(json!({"qemuargs": "-m 1G"}), "qemuargs", ""),
        row(json!({"qemuargs": {"-m": "1G"}}), "qemuargs", ""),
        row(json!({"boot_command": {"a": "b"}}), "boot_command", ""),
        row(json!({"http_content": ["/a"]}), "http_content", ""),
        row(json!({"bogus_option": 1}), "bogus_option", "unknown option"),
        // ---- out-of-range numbers ----
        row(json!({"memory": 4}), "memory", "too little memory"),
        row(json!({"memory": -1}), "memory", ""),
        row(json!({"cpus": -2}), "cpus", ""),
        row(json!({"ssh_port": 70000}), "ssh_port", ""),
        row(json!({"http_port_min": -1}), "http_port_min", ""),
        row(json!({"http_port_min": 9500}), "http_port_min", "must not be greater"),
        row(json!({"host_port_min": 5000, "host_port_max": 4000}), "host_port_min", "must not be greater"),
        row(json!({"vnc_port_min": 5800}), "vnc_port_min", "below 5900"),
        row(json!({"vnc_port_max": 5800}), "vnc_port_max", "must not be greater"),
        row(json!({"ssh_handshake_attempts": -3}), "ssh_handshake_attempts", ""),
        row(json!({"temporary_key_pair_bits": 1024}), "temporary_key_pair_bits", "not a valid RSA"),
        row(
            json!({"temporary_key_pair_type": "ecdsa", "temporary_key_pair_bits": 300}),
            "temporary_key_pair_bits",
            "256, 384 or 521",
        ),
        row(json!({"sockets": 100000, "cores": 100000}), "sockets", "4096"),
        row(json!({"cores": 5000}), "sockets", "4096"),
        row(
            json!({"ssh_bastion_host": "jump", "ssh_bastion_password": "x", "ssh_bastion_port": 99999}),
            "ssh_bastion_port",
            "",
        ),
        // ---- durations ----
        row(json!({"boot_wait": "10"}), "boot_wait", "missing unit"),
        row(json!({"ssh_timeout": "5 minutes"}), "ssh_timeout", ""),
        row(json!({"ssh_timeout": "-5m"}), "ssh_timeout", "negative"),
        row(json!({"ssh_wait_timeout": "-5m"}), "ssh_wait_timeout", "negative"),
        row(json!({"shutdown_timeout": "-1m"}), "shutdown_timeout", "negative"),
        row(json!({"boot_key_interval": "-10ms"}), "boot_key_interval", "negative"),
        row(json!({"ssh_read_write_timeout": "-1s"}), "ssh_read_write_timeout", "negative"),
        row(json!({"pause_before_connecting": "-1s"}), "pause_before_connecting", "negative"),
        row(json!({"boot_wait": true}), "boot_wait", ""),
        // ---- sizes ----
        row(json!({"disk_size": "10X"}), "disk_size", "unknown unit"),
        row(json!({"disk_size": "-5G"}), "disk_size", ""),
        row(json!({"disk_size": "abc"}), "disk_size", ""),
        row(json!({"disk_additional_size": ["10GB"]}), "disk_additional_size", "is not a size"),
        row(json!({"disk_additional_size": ["0"]}), "disk_additional_size", "empty disk"),
        row(json!({"disk_additional_size": ["-1G"]}), "disk_additional_size", ""),
        row(json!({"disk_additional_size": [""]}), "disk_additional_size", ""),
        row(json!({"disk_interface": "sd", "disk_size": "1000M"}), "disk_size", "power of 2"),
        // ---- unknown enum values ----
        row(json!({"format": "vmdk"}), "format", "unknown value"),
        row(json!({"disk_interface": "floppy"}), "disk_interface", "floppy"),
        row(json!({"disk_cache": "fast"}), "disk_cache", "unknown value"),
        row(json!({"disk_discard": "on"}), "disk_discard", ""),
        row(json!({"disk_detect_zeroes": "maybe"}), "disk_detect_zeroes", ""),
        row(json!({"cdrom_interface": "sata"}), "cdrom_interface", ""),
        row(json!({"accelerator": "hvf"}), "accelerator", "Linux hosts only"),
        row(json!({"accelerator": "foo"}), "accelerator", "unknown value"),
        row(json!({"arch": "riscv64"}), "arch", "unknown value"),
        row(json!({"communicator": "telnet"}), "communicator", ""),
        row(json!({"communicator": "winrm"}), "communicator", "no WinRM"),
        row(json!({"temporary_key_pair_type": "dsa"}), "temporary_key_pair_type", "ed25519"),
        row(json!({"ssh_file_transfer_method": "rsync"}), "ssh_file_transfer_method", "unknown value"),
        row(json!({"boot_command_transport": "serial"}), "boot_command_transport", ""),
        row(json!({"output_checksum": "md5"}), "output_checksum", "unknown value"),
        row(json!({"net_device": "e1001"}), "net_device", "did you mean \"e1000\""),
        row(json!({"vga": "cga"}), "vga", "unknown value"),
        row(json!({"vtpm": true, "tpm_device_type": "tpm-foo"}), "tpm_device_type", "unknown value"),
        row(json!({"http_network_protocol": "udp"}), "http_network_protocol", "not supported"),
        // ---- checksums and sources ----
        row(json!({"iso_checksum": ""}), "iso_checksum", "must be specified"),
        row(json!({"iso_checksum": "sha256:abcd"}), "iso_checksum", "64 hex digits"),
        row(json!({"iso_checksum": "sha3:abcd"}), "iso_checksum", "unknown checksum algorithm"),
        row(json!({"iso_checksum": "xyz"}), "iso_checksum", "not a hexadecimal"),
        row(json!({"iso_checksum": "debian.iso"}), "iso_checksum", "looks like an ISO"),
        row(json!({"iso_checksum": "file:"}), "iso_checksum", "needs a URL or path"),
        row(json!({"iso_checksum": "a".repeat(33)}), "iso_checksum", "matches no algorithm"),
        row(json!({"iso_urls": ["https://m/x.iso"]}), "iso_url", "cannot both be set"),
        row(json!({"iso_url": "", "iso_urls": ["https://m/x.iso", ""]}), "iso_urls", "empty URL"),
        row(json!({"iso_url": "/local/x.iso", "iso_skip_cache": true}), "iso_skip_cache", "http://"),
        row(json!({"iso_target_extension": "a/b"}), "iso_target_extension", "without '/'"),
        row(json!({"iso_target_path": f.plain}), "iso_target_path", "it is a file"),
        row(json!({"iso_target_path": f.dir_ext}), "iso_target_path", "is a directory"),
        row(json!({"iso_target_path": format!("{under_file}/x.iso")}), "iso_target_path", "is a file"),
        // ---- conflicting options ----
        row(json!({"use_backing_file": true}), "use_backing_file", "disk_image"),
        row(json!({"skip_resize_disk": true}), "skip_resize_disk", "disk_image"),
        row(json!({"secure_boot": true, "machine_type": "pc"}), "machine_type", "q35"),
        row(json!({"secure_boot": true, "arch": "aarch64"}), "secure_boot", "x86_64"),
        row(json!({"boot_command": ["<enter>"], "boot_steps": [["<enter>"]]}), "boot_steps", "cannot both be set"),
        row(json!({"disable_vnc": true, "boot_command": ["<enter>"]}), "disable_vnc", "vnc is disabled"),
        row(json!({"communicator": "none", "shutdown_command": "poweroff"}), "shutdown_command", "communicator"),
        row(json!({"http_directory": f.dir_ext, "http_content": {"/a": "x"}}), "http_content", "cannot both be set"),
        row(
            json!({"ssh_proxy_host": "socks", "ssh_bastion_host": "jump", "ssh_bastion_password": "x"}),
            "ssh_proxy_host",
            "not both",
        ),
        row(json!({"ssh_proxy_username": "u"}), "ssh_proxy_username", "ssh_proxy_host"),
        row(json!({"ssh_bastion_host": "jump"}), "ssh_bastion_host", "must be specified"),
        row(json!({"vtpm": true, "use_tpm1": true, "tpm_device_type": "tpm-crb"}), "tpm_device_type", "TPM 2.0"),
        row(
            json!({"firmware": f.plain, "use_pflash": true, "efi_boot": true}),
            "use_pflash",
            "cannot be combined with UEFI",
        ),
        row(json!({"winrm_username": "admin"}), "winrm_username", "no WinRM"),
        row(json!({"communicator": "ssh", "ssh_username": ""}), "ssh_username", "must be set"),
        // ---- boot command ----
        row(json!({"boot_command": ["<wiat>"]}), "boot_command", "<wiat>"),
        row(json!({"boot_command": ["<wait0>"]}), "boot_command", "positive wait"),
        row(json!({"boot_command": ["<wait5x>"]}), "boot_command", ""),
        row(json!({"boot_command": ["{{ .Foo }}"]}), "boot_command", ".Foo"),
        row(json!({"boot_command": ["{{ .HTTPIP "]}), "boot_command", ""),
        row(json!({"boot_steps": [["<enter>", "desc", "extra"]]}), "boot_steps", "3 elements"),
        row(json!({"boot_steps": [["<enter>"], ["<esc><wiat>"]]}), "boot_steps", "<wiat>"),
        // ---- qemuargs ----
        row(json!({"qemuargs": [["m", "1G"]]}), "qemuargs", "starting with '-'"),
        row(json!({"qemuargs": [[]]}), "qemuargs", "is empty"),
        row(json!({"qemuargs": [["-name", "{{ .Foo }}"]]}), "qemuargs", ".Foo"),
        row(json!({"qemuargs": [["-name", "{{ if }}"]]}), "qemuargs", ""),
        row(json!({"qemu_extra_args": ["{{ .X }}"]}), "qemu_extra_args", ".X"),
        // ---- template syntax in ordinary options ----
        row(json!({"vm_name": "{{ .Name }}"}), "vm_name", "only available in boot_command"),
        row(json!({"output_directory": "{{ env `HOME` }}"}), "output_directory", "env vars are not allowed"),
        row(json!({"shutdown_command": "{{ user `x` "}), "shutdown_command", ""),
        row(json!({"vm_name": "{{ nosuchfunc }}"}), "vm_name", ""),
        // ---- files and paths ----
        row(json!({"ssh_private_key_file": "/nonexistent/qemu-rs/id"}), "ssh_private_key_file", "cannot read"),
        row(json!({"ssh_private_key_file": f.empty}), "ssh_private_key_file", "is empty"),
        row(json!({"ssh_private_key_file": f.garbage_key}), "ssh_private_key_file", "not a usable private key"),
        row(json!({"ssh_private_key_file": f.dir_ext}), "ssh_private_key_file", ""),
        row(json!({"ssh_private_key_file": "/dev/zero"}), "ssh_private_key_file", "not a regular file"),
        row(
            json!({"ssh_certificate_file": "/dev/null", "ssh_private_key_file": f.other_key}),
            "ssh_certificate_file",
            "not a regular file",
        ),
        row(
            json!({"ssh_private_key_file": f.other_key, "ssh_certificate_file": f.cert}),
            "ssh_certificate_file",
            "certifies the key",
        ),
        row(json!({"ssh_certificate_file": f.cert}), "ssh_certificate_file", "ssh_private_key_file must be specified"),
        row(
            json!({"ssh_private_key_file": f.key, "ssh_certificate_file": f.key}),
            "ssh_certificate_file",
            "could not read the SSH certificate",
        ),
        row(
            json!({"ssh_bastion_host": "jump", "ssh_bastion_private_key_file": f.garbage_key}),
            "ssh_bastion_private_key_file",
            "not a usable private key",
        ),
        row(json!({"ssh_private_key_file": f.encrypted_key}), "ssh_private_key_file", "ssh_agent_auth"),
        row(json!({"ssh_private_key_file": format!("{}.pub", f.key)}), "ssh_private_key_file", "not a private key"),
        row(json!({"ssh_private_key_file": "~/qemu-rs-no-such-dir/id"}), "ssh_private_key_file", "cannot read"),
        row(
            json!({"ssh_private_key_file": f.key, "ssh_certificate_file": "/nonexistent/id-cert.pub"}),
            "ssh_certificate_file",
            "cannot read",
        ),
        row(
            json!({"ssh_bastion_host": "jump", "ssh_bastion_private_key_file": "/nonexistent/bastion_id"}),
            "ssh_bastion_private_key_file",
            "cannot read",
        ),
        row(
            json!({"ssh_bastion_host": "jump", "ssh_bastion_private_key_file": f.encrypted_key}),
            "ssh_bastion_private_key_file",
            "passphrase",
        ),
        row(
            json!({"ssh_bastion_host": "jump", "ssh_bastion_password": "x",
                   "ssh_bastion_certificate_file": "/nonexistent/b-cert.pub"}),
            "ssh_bastion_certificate_file",
            "",
        ),
        row(json!({"iso_checksum": "file:/nonexistent/SHA256SUMS"}), "iso_checksum", "does not exist"),
        row(json!({"iso_checksum": "file:file:///nonexistent/SHA256SUMS"}), "iso_checksum", "does not exist"),
        row(json!({"iso_checksum": "file:./qemu-rs-no-such-SHA256SUMS"}), "iso_checksum", "does not exist"),
        row(json!({"iso_checksum": format!("file:{}", f.dir_ext)}), "iso_checksum", "is a directory"),
        row(json!({"output_directory": f.dir_ext}), "output_directory", "-force"),
        row(json!({"http_directory": "/nonexistent/http"}), "http_directory", "not a directory"),
        row(json!({"floppy_files": ["qemu-rs-no-such-file.cfg"]}), "floppy_files", "does not exist"),
        row(json!({"cd_files": ["./qemu-rs-no-such-dir/"]}), "cd_files", "does not exist"),
        row(json!({"efi_firmware_vars": "/nonexistent/OVMF_VARS.fd"}), "efi_firmware_vars", "not a readable file"),
        row(json!({"ssh_timeout": "1d"}), "ssh_timeout", ""),
        row(json!({"shutdown_timeout": "5"}), "shutdown_timeout", "missing unit"),
        row(json!({"output_directory": f.plain}), "output_directory", "is a file"),
        row(json!({"output_directory": format!("{under_file}/out")}), "output_directory", "is a file"),
        row(json!({"http_directory": f.plain}), "http_directory", "not a directory"),
        row(json!({"serial_log": format!("{under_file}/serial.log")}), "serial_log", "is a file"),
        row(json!({"qmp_socket_path": format!("{under_file}/qmp.sock")}), "qmp_socket_path", "is a file"),
        row(json!({"floppy_files": ["/nonexistent/ks.cfg"]}), "floppy_files", "does not exist"),
        row(json!({"floppy_files": ["[.cfg"]}), "floppy_files", "not a valid pattern"),
        row(json!({"floppy_dirs": ["/nonexistent/drivers"]}), "floppy_dirs", "does not exist"),
        row(json!({"floppy_content": {"../x": "y"}}), "floppy_content", ""),
        row(json!({"cd_files": ["/nonexistent/seed"]}), "cd_files", "does not exist"),
        row(json!({"cd_content": {"../x": "y"}}), "cd_content", "without \"..\""),
        row(json!({"efi_firmware_code": "/nonexistent/OVMF_CODE.fd"}), "efi_firmware_code", "not a readable file"),
        row(json!({"firmware": "/nonexistent/bios.bin"}), "firmware", "not a readable file"),
        row(json!({"vm_name": "a/b"}), "vm_name", "plain file name"),
        row(json!({"vm_name": ".."}), "vm_name", "plain file name"),
        row(json!({"http_content": {"user-data": "x"}}), "http_content", "must start with '/'"),
        // ---- SSH algorithms and tunnels ----
        row(json!({"ssh_ciphers": ["aes512-ctr"]}), "ssh_ciphers", "not a cipher qemu-rs knows"),
        row(json!({"ssh_ciphers": ["arcfour"]}), "ssh_ciphers", "RC4 is broken"),
        row(json!({"ssh_key_exchange_algorithms": ["x"]}), "ssh_key_exchange_algorithms", "curve25519-sha256"),
        row(json!({"ssh_local_tunnels": ["80:nohost"]}), "ssh_local_tunnels", "PORT:HOST:HOSTPORT"),
        row(json!({"ssh_remote_tunnels": ["x"]}), "ssh_remote_tunnels", "has no ':'"),
        row(json!({"ssh_local_tunnels": ["99999:localhost:80"]}), "ssh_local_tunnels", ""),
        row(json!({"ssh_remote_tunnels": ["9090:::1:90"]}), "ssh_remote_tunnels", "brackets"),
        // ---- devices ----
        row(json!({"vnc_use_password": true, "vnc_password": "123456789"}), "vnc_password", "at most 8"),
        row(json!({"floppy_label": "this is too long"}), "floppy_label", "at most 11"),
        row(json!({"floppy_label": "ÄÖÜ"}), "floppy_label", "ASCII"),
        row(json!({"cd_label": "x".repeat(40)}), "cd_label", "32 characters"),
        row(json!({"net_bridge": "br0/../x"}), "net_bridge", "not a network interface name"),
        row(json!({"net_bridge": "a-very-long-bridge-name"}), "net_bridge", "at most 15"),
        row(json!({"warm_start": true, "communicator": "none"}), "warm_start", "communicator = \"ssh\""),
        row(json!({"warm_start": true, "net_bridge": "br0"}), "warm_start", "net_bridge"),
        row(json!({"warm_start": true, "vtpm": true}), "warm_start", "vtpm"),
        row(json!({"warm_start": "sometimes"}), "warm_start", ""),
        row(json!({"warm_start": true, "warm_start_cache_size": "lots"}), "warm_start_cache_size", ""),
    ]
}

/// Why a row failed.
enum Failure {
    Panicked(String),
    Accepted,
    NotNamed(String),
    NoFragment(String),
}

#[test]
fn bad_configurations_are_rejected_naming_the_option() {
    let f = files();
    let rows = rows(&f);
    assert!(rows.len() >= 60, "only {} rows", rows.len());
    let mut failures = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let raws = raws(&r.options);
        let outcome = catch_unwind(AssertUnwindSafe(|| Config::prepare_with(&raws, &Env { var: &no_env })));
        let failure = match outcome {
            Err(p) => Some(Failure::Panicked(
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default(),
            )),
            Ok(Ok(_)) => Some(Failure::Accepted),
            Ok(Err(e)) if !names(&e.errors, r.option) => Some(Failure::NotNamed(e.errors.to_string())),
            Ok(Err(e)) if !e.errors.to_string().contains(&r.fragment) => {
                Some(Failure::NoFragment(e.errors.to_string()))
            }
            Ok(Err(_)) => None,
        };
        if let Some(failure) = failure {
            failures.push((i, r, failure));
        }
    }
    let mut report = String::new();
    for (i, r, failure) in &failures {
        let what = match failure {
            Failure::Panicked(m) => format!("PANICKED: {m}"),
            Failure::Accepted => "ACCEPTED (passed validation)".to_string(),
            Failure::NotNamed(e) => format!("the errors do not name {:?}:\n{e}", r.option),
            Failure::NoFragment(e) => format!("no {:?} in:\n{e}", r.fragment),
        };
        report.push_str(&format!("\nrow {i} {} (option {}): {what}\n", r.options, r.option));
    }
    assert!(failures.is_empty(), "{} of {} bad configurations misbehave:\n{report}", failures.len(), rows.len());
}

/// Prepare reports every problem of a configuration at once, not the first one: a template with
/// one mistake per row of a group of independent rows gets an error naming each option.
#[test]
fn every_problem_is_reported_at_once() {
    let f = files();
    let options = json!({
        "ssh_private_key_file": f.encrypted_key,
        "ssh_timeout": "-5m",
        "shutdown_timeout": "-1m",
        "output_directory": f.plain,
        "http_directory": f.plain,
        "iso_checksum": "file:/nonexistent/SHA256SUMS",
        "floppy_files": ["/nonexistent/ks.cfg"],
        "cd_files": ["/nonexistent/seed"],
        "memory": 4,
        "boot_command": ["<wiat>"],
    });
    let e = Config::prepare_with(&raws(&options), &Env { var: &no_env }).expect_err("the configuration is bad");
    let missing: Vec<&str> =
        options.as_object().unwrap().keys().map(String::as_str).filter(|o| !names(&e.errors, o)).collect();
    assert!(missing.is_empty(), "no error names {missing:?}; the errors:\n{}", e.errors);
}
