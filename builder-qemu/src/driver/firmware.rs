//! Finding UEFI firmware through QEMU's firmware descriptors (`docs/interop/firmware.json`):
//! JSON files in `/usr/share/qemu/firmware`, `/etc/qemu/firmware` and
//! `$XDG_CONFIG_HOME/qemu/firmware`, a later directory overriding a file of the same name, read in
//! file-name order (their numeric prefixes give the priority).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A usable firmware: code and variable-store template (both raw flash images).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firmware {
    /// The descriptor file it came from.
    pub descriptor: PathBuf,
    /// The read-only code image.
    pub code: PathBuf,
    /// The template of the variable store (copied per build).
    pub vars_template: PathBuf,
    /// Whether it enforces Secure Boot.
    pub secure_boot: bool,
}

/// The directories searched, lowest priority first.
pub fn descriptor_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("/usr/share/qemu/firmware"), PathBuf::from("/etc/qemu/firmware")];
    if let Some(c) = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
    {
        dirs.push(c.join("qemu/firmware"));
    }
    dirs
}

/// Finds the best UEFI firmware for `arch` (`x86_64`, `aarch64`) and `machine` (`pc`, `q35`,
/// `virt`, …) with or without Secure Boot, among the descriptors in `dirs`.
pub fn find(dirs: &[PathBuf], arch: &str, machine: &str, secure_boot: bool) -> Result<Firmware, String> {
    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(d) else { continue };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") {
                files.insert(name, e.path());
            }
        }
    }
    let machine_pattern = match machine {
        "pc" => "pc-i440fx-x",
        "q35" => "pc-q35-x",
        // descriptors list versioned machines (`virt-*`); the unversioned alias is the newest
        "virt" => "virt-x",
        m => m,
    };
    for path in files.values() {
        let Ok(text) = std::fs::read_to_string(path) else { continue };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
        if let Some(fw) = check(&v, path, arch, machine_pattern, secure_boot) {
            return Ok(fw);
        }
    }
    Err(format!(
        "no UEFI firmware for {arch} ({machine}{}) found in the QEMU firmware descriptors of {}; install the ovmf \
         package (x86_64) or qemu-efi-aarch64, or set efi_firmware_code and efi_firmware_vars",
        if secure_boot { ", Secure Boot" } else { "" },
        dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
    ))
}

fn check(v: &serde_json::Value, path: &Path, arch: &str, machine: &str, secure_boot: bool) -> Option<Firmware> {
    let strs = |key: &str| -> Vec<String> {
        v[key].as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default()
    };
    if !strs("interface-types").iter().any(|t| t == "uefi") {
        return None;
    }
    let features = strs("features");
    let has_sb = features.iter().any(|f| f == "secure-boot");
    if has_sb != secure_boot {
        return None;
    }
    // SMM-requiring builds need q35 with SMM; enrolled keys are what Secure Boot users want
    if features.iter().any(|f| f == "requires-smm") && !machine.contains("q35") {
        return None;
    }
    let target_ok = v["targets"].as_array()?.iter().any(|t| {
        t["architecture"].as_str() == Some(arch)
            && t["machines"].as_array().is_some_and(|ms| {
                ms.iter().filter_map(|m| m.as_str()).any(|m| glob(m.as_bytes(), machine.as_bytes()) || m == machine)
            })
    });
    if !target_ok {
        return None;
    }
    let mapping = &v["mapping"];
    if mapping["device"].as_str() != Some("flash") {
        return None;
    }
    let code = mapping["executable"]["filename"].as_str()?;
    let vars = mapping["nvram-template"]["filename"].as_str()?;
    let raw = |k: &str| mapping[k]["format"].as_str().is_none_or(|f| f == "raw");
    if !raw("executable") || !raw("nvram-template") || !Path::new(code).is_file() || !Path::new(vars).is_file() {
        return None;
    }
    Some(Firmware {
        descriptor: path.to_path_buf(),
        code: code.into(),
        vars_template: vars.into(),
        secure_boot: has_sb,
    })
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
        (Some(a), Some(b)) if a == b => glob(&p[1..], &s[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_ovmf_from_the_installed_descriptors() {
        let fw = find(&descriptor_dirs(), "x86_64", "pc", false).expect("ovmf is installed here");
        assert!(fw.code.is_file() && fw.vars_template.is_file());
        assert!(!fw.secure_boot);
        let sb = find(&descriptor_dirs(), "x86_64", "q35", true).expect("secure-boot ovmf");
        assert!(sb.secure_boot);
        assert!(find(&descriptor_dirs(), "riscv64", "virt", false).unwrap_err().contains("no UEFI firmware"));
    }

    #[test]
    fn later_directories_override() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let code = a.path().join("code.fd");
        let vars = a.path().join("vars.fd");
        std::fs::write(&code, "c").unwrap();
        std::fs::write(&vars, "v").unwrap();
        let desc = |c: &Path| {
            serde_json::json!({"interface-types": ["uefi"], "features": [],
              "mapping": {"device": "flash", "executable": {"filename": c, "format": "raw"},
                          "nvram-template": {"filename": vars, "format": "raw"}},
              "targets": [{"architecture": "x86_64", "machines": ["pc-i440fx-*"]}]})
            .to_string()
        };
        std::fs::write(a.path().join("10-x.json"), desc(Path::new("/nonexistent"))).unwrap();
        std::fs::write(b.path().join("10-x.json"), desc(&code)).unwrap();
        let fw = find(&[a.path().into(), b.path().into()], "x86_64", "pc", false).unwrap();
        assert_eq!(fw.code, code);
    }
}
