//! The templates users copy from `images/` (one directory per distribution, `images/README.md`).
//!
//! Every `images/*/*.pkr.hcl` (found by listing the directories, so a new one is covered without
//! editing this file; `images/testguest/`, the project's own test guest, is not a user template)
//! is validated with real `packer validate` (Debian's Packer 1.6.6) and the plugin, exactly as
//! stored: the official download and checksum-file URLs stay in place. Validation must not need
//! those hosts, so it runs with every HTTP(S) request sent to a proxy that does not exist.
//! The other tests check what the README promises: each directory has a README naming the
//! official URLs, and the template's `iso_url`/`iso_checksum` defaults are an `https://` URL and
//! a `file:https://…` checksum file (or a literal digest).

use std::path::{Path, PathBuf};

use qemu_rs_tests::{workspace_root, PackerEnv, PackerOutput};

/// Directories under `images/` that hold no user template.
const NOT_USER_TEMPLATES: &[&str] = &["testguest"];

/// Template directories this branch ships; the listing must find at least these.
const EXPECTED_DIRS: &[&str] = &[
    "alpine-cloud",
    "alpine-iso",
    "fedora-cloud",
    "rocky-9-genericcloud",
    "ubuntu-24.04-autoinstall",
    "ubuntu-24.04-cloud",
];

/// Nothing listens here: an HTTP(S) request made through this proxy fails at once.
const DEAD_PROXY: &str = "http://127.0.0.1:9";

/// Every user template, `images/<dir>/<file>.pkr.hcl`, sorted.
fn templates() -> Vec<PathBuf> {
    let images = workspace_root().join("images");
    let mut found = Vec::new();
    let dirs = std::fs::read_dir(&images).unwrap_or_else(|e| panic!("cannot list {}: {e}", images.display()));
    for dir in dirs {
        let dir = dir.expect("directory entry").path();
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if !dir.is_dir() || NOT_USER_TEMPLATES.contains(&name.as_str()) {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())) {
            let f = f.expect("directory entry").path();
            if f.to_str().is_some_and(|s| s.ends_with(".pkr.hcl")) {
                found.push(f);
            }
        }
    }
    found.sort();
    let dirs: Vec<String> = found.iter().map(|t| dir_name(t)).collect();
    for want in EXPECTED_DIRS {
        assert!(dirs.iter().any(|d| d == want), "no template found in images/{want}/ (found: {dirs:?})");
    }
    found
}

/// The name of the directory holding `template`.
fn dir_name(template: &Path) -> String {
    let dir = template.parent().and_then(|d| d.file_name()).expect("template in a directory");
    dir.to_string_lossy().into_owned()
}

/// `packer validate <template> [args]` from a throwaway directory (the templates must not depend
/// on the working directory), with every HTTP(S) request sent to a dead proxy.
fn validate(env: &PackerEnv, template: &Path, extra: &[&str]) -> PackerOutput {
    let mut args = vec!["validate"];
    args.extend_from_slice(extra);
    let path = template.to_str().expect("utf-8 path");
    args.push(path);
    let out = env
        .packer(&args)
        .env("HTTP_PROXY", DEAD_PROXY)
        .env("HTTPS_PROXY", DEAD_PROXY)
        .env("http_proxy", DEAD_PROXY)
        .env("https_proxy", DEAD_PROXY)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .expect("run packer");
    PackerOutput::from(out)
}

/// The string default of `variable "<name>"` in an HCL2 template, if it has one.
fn variable_default(text: &str, name: &str) -> Option<String> {
    let start = text.find(&format!("variable \"{name}\" {{"))?;
    let block = &text[start..];
    let block = &block[..block.find("\n}").unwrap_or(block.len())];
    block.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        if key.trim() != "default" {
            return None;
        }
        let value = value.trim();
        value.strip_prefix('"')?.strip_suffix('"').map(str::to_string)
    })
}

/// Whether `s` is `<algo>:<hex>` (or bare hex) of a known digest length.
fn is_literal_digest(s: &str) -> bool {
    let (algo, hex) = s.split_once(':').unwrap_or(("", s));
    let len_ok = match algo {
        "" => [32, 40, 64, 128].contains(&hex.len()),
        "md5" => hex.len() == 32,
        "sha1" => hex.len() == 40,
        "sha256" => hex.len() == 64,
        "sha512" => hex.len() == 128,
        _ => false,
    };
    len_ok && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `s` is a plausible `https://host/path` URL (no spaces, a host with a dot, a path).
fn is_https_url(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("https://") else { return false };
    let Some((host, path)) = rest.split_once('/') else { return false };
    host.contains('.') && !path.is_empty() && !s.contains(char::is_whitespace)
}

#[test]
fn every_template_passes_packer_validate_offline() {
    let env = PackerEnv::new();
    let mut failures = Vec::new();
    for t in templates() {
        let out = validate(&env, &t, &[]);
        println!("{}: {}", t.display(), if out.success { "ok" } else { "FAILED" });
        if !out.success {
            failures.push(format!("{}:\n{}", t.display(), out.text));
        }
    }
    assert!(failures.is_empty(), "packer validate failed for:\n{}", failures.join("\n"));
}

/// The validation above is the plugin's, not a formality: the same templates with a broken
/// value fail, naming the option.
#[test]
fn templates_with_a_broken_value_fail_validate() {
    let env = PackerEnv::new();
    for t in templates() {
        let out = validate(&env, &t, &["-var", "iso_checksum=sha256:1234"]);
        assert!(!out.success, "{}: a 4-digit sha256 passed packer validate:\n{}", t.display(), out.text);
        assert!(
            out.text.contains("iso_checksum"),
            "{}: the error does not name iso_checksum:\n{}",
            t.display(),
            out.text
        );
    }
}

#[test]
fn every_template_defaults_to_official_https_urls_and_a_checksum() {
    let mut problems = Vec::new();
    for t in templates() {
        let text = std::fs::read_to_string(&t).expect("read template");
        let name = t.display();
        match variable_default(&text, "iso_url") {
            Some(url) if is_https_url(&url) => {}
            other => {
                problems.push(format!("{name}: variable iso_url must default to an https:// URL, it is {other:?}"))
            }
        }
        match variable_default(&text, "iso_checksum") {
            Some(sum) if sum.strip_prefix("file:").is_some_and(is_https_url) || is_literal_digest(&sum) => {}
            other => problems.push(format!(
                "{name}: variable iso_checksum must default to file:https://… or a digest, it is {other:?}"
            )),
        }
        for (var, option) in
            [("iso_url", "iso_url"), ("iso_checksum", "iso_checksum"), ("output_dir", "output_directory")]
        {
            if !text.contains(&format!("variable \"{var}\"")) {
                problems.push(format!("{name}: no variable \"{var}\""));
            }
            if !text.lines().any(|l| l.trim_start().starts_with(option) && l.contains(&format!("var.{var}"))) {
                problems.push(format!("{name}: {option} does not use var.{var}"));
            }
        }
        if text.lines().any(|l| l.trim_start().starts_with("accelerator")) {
            problems.push(format!("{name}: sets accelerator; the templates keep qemu-rs's default"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_template_directory_has_a_readme_naming_its_urls_and_is_indexed() {
    let index_path = workspace_root().join("images/README.md");
    let index = std::fs::read_to_string(&index_path).unwrap_or_else(|e| panic!("{}: {e}", index_path.display()));
    let mut problems = Vec::new();
    for t in templates() {
        let dir = t.parent().expect("template directory");
        let readme_path = dir.join("README.md");
        let Ok(readme) = std::fs::read_to_string(&readme_path) else {
            problems.push(format!("{} is missing", readme_path.display()));
            continue;
        };
        let text = std::fs::read_to_string(&t).expect("read template");
        for var in ["iso_url", "iso_checksum"] {
            let Some(value) = variable_default(&text, var) else { continue };
            let url = value.strip_prefix("file:").unwrap_or(&value);
            if !readme.contains(url) {
                problems.push(format!("{} does not give the {var} default {url}", readme_path.display()));
            }
        }
        let dir = dir_name(&t);
        if !index.contains(&format!("{dir}/")) {
            problems.push(format!("images/README.md does not list {dir}/"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Users copy these files: they are in Packer's canonical layout (`packer fmt -check`).
#[test]
fn every_template_is_packer_fmt_clean() {
    let env = PackerEnv::new();
    let mut unformatted = Vec::new();
    for t in templates() {
        let out = PackerOutput::from(
            env.packer(&["fmt", "-check", t.to_str().expect("utf-8 path")]).output().expect("run packer"),
        );
        if !out.success {
            unformatted.push(format!("{} (run `packer fmt {}`)", t.display(), t.display()));
        }
    }
    assert!(unformatted.is_empty(), "not in packer fmt's layout:\n{}", unformatted.join("\n"));
}

#[test]
fn helpers_recognise_urls_and_digests() {
    assert!(is_https_url("https://dl-cdn.alpinelinux.org/alpine/v3.24/x.iso"));
    assert!(!is_https_url("http://dl-cdn.alpinelinux.org/x.iso"));
    assert!(!is_https_url("https://localhost/x.iso"));
    assert!(!is_https_url("https://example.org"));
    assert!(is_literal_digest(&format!("sha256:{}", "a".repeat(64))));
    assert!(!is_literal_digest(&format!("sha256:{}", "a".repeat(63))));
    assert!(!is_literal_digest("none"));
    let hcl = "variable \"iso_url\" {\n  type    = string\n  default = \"https://a.b/c\"\n}\n\
               variable \"x\" {\n  default = \"y\"\n}\n";
    assert_eq!(variable_default(hcl, "iso_url").as_deref(), Some("https://a.b/c"));
    assert_eq!(variable_default(hcl, "x").as_deref(), Some("y"));
    assert_eq!(variable_default(hcl, "missing"), None);
}
