//! Defaults and validation of the floppy, vTPM, VNC and network options.

use std::path::Path;

use packer_sdk::config::ConfigErrors;
use packer_sdk::floppy_image;

use crate::config::{CommunicatorType, Config};

/// TPM device models accepted by `tpm_device_type`.
pub const TPM_DEVICE_TYPES: &[&str] = &["tpm-tis", "tpm-crb", "tpm-tis-device", "tpm-spapr"];

/// Whether the build uses `net_bridge`.
pub(crate) fn bridged(c: &Config) -> bool {
    c.net_bridge.as_deref().is_some_and(|b| !b.is_empty())
}

/// Applies the defaults of these options and records their problems.
pub(super) fn run(c: &mut Config, errors: &mut ConfigErrors, warnings: &mut Vec<String>) {
    floppy(c, errors);
    vtpm(c, errors, warnings);
    vnc(c, errors, warnings);
    network(c, errors, warnings);
}

fn floppy(c: &mut Config, errors: &mut ConfigErrors) {
    // Packer: every entry without a glob must exist, every glob must be a valid pattern.
    for (option, entries) in [("floppy_files", &c.floppy_files), ("floppy_dirs", &c.floppy_dirs)] {
        for entry in entries.iter().flatten() {
            if floppy_image::has_glob(entry) {
                if let Err(e) = floppy_image::check_pattern(entry) {
                    errors.push(option, e);
                }
            } else if !Path::new(entry).exists() {
                errors.push(option, format!("{entry:?} does not exist; fix the path (relative to where packer runs)"));
            }
        }
    }
    for key in c.floppy_content.iter().flat_map(|m| m.keys()) {
        if let Err(e) = floppy_image::content_path(key) {
            errors.push("floppy_content", e);
        }
    }
    match c.floppy_label.as_deref() {
        None | Some("") => c.floppy_label = Some(floppy_image::DEFAULT_LABEL.to_string()),
        Some(label) => {
            if let Err(e) = floppy_image::check_label(label) {
                errors.push("floppy_label", e);
            }
        }
    }
}

fn vtpm(c: &mut Config, errors: &mut ConfigErrors, warnings: &mut Vec<String>) {
    let on = c.vtpm == Some(true);
    match c.tpm_device_type.as_deref() {
        None | Some("") => c.tpm_device_type = Some("tpm-tis".to_string()),
        Some(t) if TPM_DEVICE_TYPES.contains(&t) => {
            if !on {
                warnings.push("tpm_device_type has no effect without vtpm = true".into());
            }
        }
        Some(t) => errors.push("tpm_device_type", packer_sdk::config::unknown_value_message(t, TPM_DEVICE_TYPES)),
    }
    if c.use_tpm1 == Some(true) {
        if !on {
            warnings.push("use_tpm1 has no effect without vtpm = true".into());
        } else if c.tpm_device_type.as_deref() == Some("tpm-crb") {
            errors.push("tpm_device_type", "\"tpm-crb\" is a TPM 2.0 interface; use \"tpm-tis\" with use_tpm1");
        }
    }
}

fn vnc(c: &mut Config, errors: &mut ConfigErrors, warnings: &mut Vec<String>) {
    let use_password = c.vnc_use_password == Some(true);
    let disabled = c.disable_vnc == Some(true);
    if let Some(p) = c.vnc_password.as_ref().filter(|p| !p.is_empty()) {
        if !use_password {
            warnings.push(
                "vnc_password has no effect without vnc_use_password = true (as with Packer's qemu builder); set \
                 vnc_use_password or remove vnc_password"
                    .into(),
            );
        } else if p.expose().len() > 8 {
            // never echo the value
            errors.push(
                "vnc_password",
                format!("is {} bytes long; a VNC password has at most 8 characters", p.expose().len()),
            );
        }
    }
    if disabled {
        if !c.boot_command.is_empty() {
            errors.push(
                "disable_vnc",
                "A boot command cannot be used when vnc is disabled: remove disable_vnc or boot_command",
            );
        }
        if !c.boot_steps.is_empty() {
            warnings.push("boot_steps are not typed because disable_vnc is set (as with Packer's qemu builder)".into());
        }
        if use_password {
            warnings.push("vnc_use_password has no effect with disable_vnc = true (there is no VNC server)".into());
        }
    }
}

fn network(c: &mut Config, errors: &mut ConfigErrors, warnings: &mut Vec<String>) {
    if let Some(br) = c.net_bridge.as_deref().filter(|b| !b.is_empty()) {
        if br.len() > 15 || br.contains(['/', ':', ' ', ',', '\t', '\n']) || br == "." || br == ".." {
            errors.push(
                "net_bridge",
                format!("{br:?} is not a network interface name (at most 15 characters, no '/', ':', ',' or spaces)"),
            );
        }
        if c.skip_nat_mapping == Some(true) {
            warnings.push("skip_nat_mapping has no effect with net_bridge (there is no port forward)".into());
        }
    } else if c.skip_nat_mapping == Some(true) && c.communicator == CommunicatorType::None {
        warnings.push("skip_nat_mapping has no effect with communicator = \"none\"".into());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::config::{Config, PreparedConfig};
    use packer_sdk::component::PrepareError;
    use packer_sdk::config::RawConfig;

    fn prepare(extra: Value) -> Result<PreparedConfig, PrepareError> {
        let mut m = json!({"iso_url": "https://example.com/x.iso", "iso_checksum": "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "ssh_username": "root"});
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        let common = json!({"packer_build_name": "devices"});
        Config::prepare(&[
            RawConfig::Map(m.as_object().unwrap().clone()),
            RawConfig::Map(common.as_object().unwrap().clone()),
        ])
    }

    fn ok(extra: Value) -> PreparedConfig {
        prepare(extra).unwrap_or_else(|e| panic!("unexpected errors: {}", e.errors))
    }

    fn errors(extra: Value) -> String {
        match prepare(extra) {
            Ok(_) => panic!("expected errors"),
            Err(e) => e.errors.to_string(),
        }
    }

    #[test]
    fn floppy_options() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ks.cfg");
        std::fs::write(&file, "x").unwrap();
        let p = ok(json!({"floppy_files": [file, format!("{}/*.inf", dir.path().display())],
                          "floppy_dirs": [dir.path()], "floppy_content": {"a/b.txt": "x", "/c": "y"}}));
        assert_eq!(p.config.floppy_label.as_deref(), Some("packer"));
        assert_eq!(ok(json!({"floppy_label": "cidata"})).config.floppy_label.as_deref(), Some("cidata"));
        let e = errors(json!({
            "floppy_files": ["/nonexistent/ks.cfg", "[.cfg"], "floppy_dirs": ["/nonexistent/drivers"],
            "floppy_content": {"../x": "y", "a:b": "z"}, "floppy_label": "this is too long"
        }));
        for needle in [
            "floppy_files: \"/nonexistent/ks.cfg\" does not exist",
            "floppy_files: \"[.cfg\" is not a valid pattern",
            "floppy_dirs: \"/nonexistent/drivers\" does not exist",
            "floppy_content: key \"../x\"",
            "floppy_content: key \"a:b\"",
            "floppy_label: \"this is too long\" must be at most 11 ASCII characters",
        ] {
            assert!(e.contains(needle), "{needle:?} not in:\n{e}");
        }
    }

    #[test]
    fn vtpm_options() {
        let c = ok(json!({"vtpm": true})).config;
        assert_eq!(c.tpm_device_type.as_deref(), Some("tpm-tis"));
        let p = ok(json!({"vtpm": true, "use_tpm1": true, "tpm_device_type": "tpm-tis-device"}));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        let e = errors(json!({"vtpm": true, "tpm_device_type": "tpm-tiss"}));
        assert!(
            e.contains("tpm_device_type: unknown value \"tpm-tiss\"") && e.contains("did you mean \"tpm-tis\""),
            "{e}"
        );
        let e = errors(json!({"vtpm": true, "use_tpm1": true, "tpm_device_type": "tpm-crb"}));
        assert!(e.contains("TPM 2.0 interface"), "{e}");
        let p = ok(json!({"use_tpm1": true, "tpm_device_type": "tpm-crb"}));
        assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
        assert!(p.warnings.iter().all(|w| w.contains("has no effect without vtpm = true")), "{:?}", p.warnings);
    }

    #[test]
    fn vnc_options() {
        ok(json!({"vnc_use_password": true}));
        ok(json!({"vnc_use_password": true, "vnc_password": "12345678"}));
        let e = errors(json!({"vnc_use_password": true, "vnc_password": "123456789"}));
        assert!(e.contains("vnc_password: is 9 bytes long"), "{e}");
        assert!(!e.contains("123456789"), "the password must not be echoed: {e}");
        let p = ok(json!({"vnc_password": "secret"}));
        assert!(p.warnings.iter().any(|w| w.contains("vnc_password has no effect")), "{:?}", p.warnings);
        let e = errors(json!({"disable_vnc": true, "boot_command": ["<enter>"]}));
        assert!(e.contains("disable_vnc: A boot command cannot be used when vnc is disabled"), "{e}");
        let p = ok(json!({"disable_vnc": true, "boot_steps": [["<enter>"]], "vnc_use_password": true,
                          "ssh_timeout": "10m"}));
        assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
    }

    #[test]
    fn network_options() {
        let c = ok(json!({"net_bridge": "br0", "http_content": {"/x": "y"}})).config;
        assert_eq!(c.ssh_host, "", "the guest address is discovered with a bridge");
        assert_eq!(c.http_bind_address, "", "the HTTP server listens on the bridge's address");
        let c = ok(json!({"net_bridge": "br0", "ssh_host": "192.0.2.9", "http_bind_address": "0.0.0.0"})).config;
        assert_eq!((c.ssh_host.as_str(), c.http_bind_address.as_str()), ("192.0.2.9", "0.0.0.0"));
        let e = errors(json!({"net_bridge": "br0/../x"}));
        assert!(e.contains("net_bridge: \"br0/../x\" is not a network interface name"), "{e}");
        let p = ok(json!({"net_bridge": "br0", "skip_nat_mapping": true}));
        assert!(p.warnings.iter().any(|w| w.contains("skip_nat_mapping has no effect")), "{:?}", p.warnings);
        let c = ok(json!({"skip_nat_mapping": true, "ssh_port": 2200})).config;
        assert_eq!((c.ssh_host.as_str(), c.ssh_port), ("127.0.0.1", 2200));
    }
}
