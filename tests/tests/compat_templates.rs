//! The compatibility suite (`tests/compat/`): templates written for HashiCorp's `qemu` builder in
//! the shapes people publish (JSON with user variables and functions, HCL2, kickstart, preseed,
//! autoinstall, cloud images, BSD installers, aarch64, UEFI, floppies, vTPM, Windows…).
//!
//! Each template is stored exactly as written for the `qemu` builder and the `shell` provisioner.
//! The tests:
//! - check that together the templates use every option of the reference builder, and only those;
//! - rename the builder type `qemu` to `qemu-rs` and the provisioner type `shell` to
//!   `qemu-rs-shell` (the type names only, nothing else) and run real `packer validate` (Packer
//!   1.6.6) with the plugin installed: every template must pass, except the WinRM ones, which must
//!   fail with the WinRM message and nothing else;
//! - validate the original templates with Packer 1.6.6's own `qemu` builder, to show they are real
//!   templates. Packer 1.6.6 predates 20 of the options; a template it rejects is accepted as "too
//!   old" only when the same template without those options passes.
//!
//! The qemu-rs test prints a table (template → ok / failed with the first error) and fails listing
//! every template that did not behave as expected.

include!("../compat/reference_options.rs");

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use qemu_rs_tests::{workspace_root, PackerEnv, PackerOutput};

/// The suite must hold at least this many templates (the issue asks for 30, the brief for 32).
const MIN_TEMPLATES: usize = 32;

/// Templates that use the WinRM communicator: qemu-rs must reject them with its WinRM message.
const EXPECT_WINRM_FAILURE: &[&str] = &["hcl-windows11-winrm-vtpm.pkr.hcl", "json-windows2019-winrm.json"];

/// The two template syntaxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Syntax {
    Json,
    Hcl,
}

/// One template of the suite.
#[derive(Debug, Clone)]
struct Template {
    /// File name inside `tests/compat/`.
    name: String,
    syntax: Syntax,
    /// File name of its variable file (`<base>.vars.json` / `<base>.pkrvars.hcl`), if any.
    var_file: Option<String>,
}

impl Template {
    /// `packer validate` arguments for this template (relative to the suite directory).
    fn validate_args(&self, file_name: &str) -> Vec<String> {
        let mut args = vec!["validate".to_string()];
        if let Some(v) = &self.var_file {
            args.push(format!("-var-file={v}"));
        }
        args.push(file_name.to_string());
        args
    }
}

fn compat_dir() -> PathBuf {
    workspace_root().join("tests").join("compat")
}

/// Every template of the suite, sorted by name.
fn templates() -> Vec<Template> {
    let dir = compat_dir();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())) {
        let name = entry.expect("directory entry").file_name().to_string_lossy().into_owned();
        let (syntax, var_file) = if let Some(base) = name.strip_suffix(".pkr.hcl") {
            (Syntax::Hcl, format!("{base}.pkrvars.hcl"))
        } else if name.ends_with(".vars.json") {
            continue;
        } else if let Some(base) = name.strip_suffix(".json") {
            (Syntax::Json, format!("{base}.vars.json"))
        } else {
            continue;
        };
        let var_file = dir.join(&var_file).is_file().then_some(var_file);
        out.push(Template { name, syntax, var_file });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn read_template(t: &Template) -> String {
    let p = compat_dir().join(&t.name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

// ---- renaming `qemu` → `qemu-rs`, `shell` → `qemu-rs-shell` (type names only) ----

/// Replaces, in a JSON template, every `"type": "qemu"` by `"type": "qemu-rs"` and every
/// `"type": "shell"` by `"type": "qemu-rs-shell"` (any whitespace around the colon), leaving
/// everything else byte for byte. Returns the new text and the number of replacements.
fn rename_json(text: &str) -> (String, usize) {
    let mut out = String::with_capacity(text.len() + 64);
    let mut count = 0;
    let mut rest = text;
    while let Some(pos) = rest.find("\"type\"") {
        let after_key = pos + "\"type\"".len();
        out.push_str(&rest[..after_key]);
        rest = &rest[after_key..];
        let ws1 = rest.len() - rest.trim_start().len();
        let after_ws1 = &rest[ws1..];
        let Some(after_colon) = after_ws1.strip_prefix(':') else { continue };
        let ws2 = after_colon.len() - after_colon.trim_start().len();
        let value = &after_colon[ws2..];
        let replacement = if value.starts_with("\"qemu\"") {
            Some(("\"qemu\"", "\"qemu-rs\""))
        } else if value.starts_with("\"shell\"") {
            Some(("\"shell\"", "\"qemu-rs-shell\""))
        } else {
            None
        };
        if let Some((old, new)) = replacement {
            let prefix_len = ws1 + 1 + ws2;
            out.push_str(&rest[..prefix_len]);
            out.push_str(new);
            rest = &rest[prefix_len + old.len()..];
            count += 1;
        }
    }
    out.push_str(rest);
    (out, count)
}

/// Replaces, in an HCL2 template, the builder type in `source "qemu" "<name>"` blocks and in
/// `source.qemu.<name>` / `qemu.<name>` references (in `sources`, `only` and `except`), and the
/// provisioner type in `provisioner "shell"` blocks. Returns the new text and the number of
/// replacements.
fn rename_hcl(text: &str) -> (String, usize) {
    let mut count = 0;
    let mut lines = Vec::new();
    for line in text.split_inclusive('\n') {
        let indent = &line[..line.len() - line.trim_start().len()];
        let trimmed = line.trim_start();
        let mut new = None;
        for (keyword, old, replacement) in [
            ("source", "\"qemu\"", "\"qemu-rs\""),
            ("provisioner", "\"shell\"", "\"qemu-rs-shell\""),
            ("error-cleanup-provisioner", "\"shell\"", "\"qemu-rs-shell\""),
        ] {
            if let Some(after) = trimmed.strip_prefix(keyword) {
                let ws = after.len() - after.trim_start().len();
                if ws > 0 && after[ws..].starts_with(old) {
                    new = Some(format!("{indent}{keyword}{}{replacement}{}", &after[..ws], &after[ws + old.len()..]));
                    count += 1;
                }
            }
        }
        let mut line = new.unwrap_or_else(|| line.to_string());
        let n = line.matches("\"source.qemu.").count();
        if n > 0 {
            line = line.replace("\"source.qemu.", "\"source.qemu-rs.");
            count += n;
        }
        let key = line.trim_start();
        if key.starts_with("only") || key.starts_with("except") {
            let n = line.matches("\"qemu.").count();
            line = line.replace("\"qemu.", "\"qemu-rs.");
            count += n;
        }
        lines.push(line);
    }
    (lines.concat(), count)
}

fn rename(t: &Template, text: &str) -> String {
    let (renamed, count) = match t.syntax {
        Syntax::Json => rename_json(text),
        Syntax::Hcl => rename_hcl(text),
    };
    assert!(count > 0, "{}: nothing was renamed: the template has no `qemu` builder", t.name);
    renamed
}

// ---- which builder options a template uses ----

/// The options set on the `qemu` builders of a JSON template.
fn json_options(text: &str) -> Result<BTreeSet<String>, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let builders = v.get("builders").and_then(|b| b.as_array()).ok_or("no \"builders\" list")?;
    let mut keys = BTreeSet::new();
    for b in builders {
        let obj = b.as_object().ok_or("a builder is not an object")?;
        if obj.get("type").and_then(|t| t.as_str()) == Some("qemu") {
            keys.extend(obj.keys().filter(|k| *k != "type" && *k != "name").cloned());
        }
    }
    Ok(keys)
}

/// A line-oriented view of an HCL2 file good enough for the suite's templates: tracks brace depth
/// (outside strings, comments and heredocs) so the attributes of `source "qemu"` blocks can be
/// found.
struct HclLine<'a> {
    text: &'a str,
    /// Brace/bracket depth before the line.
    depth_before: i32,
    /// Depth after the line.
    depth_after: i32,
    /// The line is part of a heredoc body.
    in_heredoc: bool,
}

fn hcl_lines(text: &str) -> Vec<HclLine<'_>> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut heredoc: Option<String> = None;
    for line in text.lines() {
        if let Some(end) = &heredoc {
            let done = line.trim() == end;
            out.push(HclLine { text: line, depth_before: depth, depth_after: depth, in_heredoc: true });
            if done {
                heredoc = None;
            }
            continue;
        }
        let before = depth;
        let mut in_string = false;
        let mut chars = line.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if in_string {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => in_string = false,
                    _ => {}
                }
                continue;
            }
            match c {
                '"' => in_string = true,
                '#' => break,
                '/' if line[i..].starts_with("//") => break,
                '{' | '[' | '(' => depth += 1,
                '}' | ']' | ')' => depth -= 1,
                '<' if line[i..].starts_with("<<") => {
                    let marker = line[i + 2..].trim_start_matches('-').trim();
                    if !marker.is_empty() && marker.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        heredoc = Some(marker.to_string());
                    }
                    break;
                }
                _ => {}
            }
        }
        out.push(HclLine { text: line, depth_before: before, depth_after: depth, in_heredoc: false });
    }
    out
}

/// The attribute or block name a line starts with (`name =` or `name {`), if any.
fn hcl_item_name(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let end = t.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(t.len());
    if end == 0 {
        return None;
    }
    let rest = t[end..].trim_start();
    ((rest.starts_with('=') && !rest.starts_with("==")) || rest.starts_with('{')).then_some(&t[..end])
}

/// Whether a depth-0 line opens a `source "qemu" "<name>"` block.
fn opens_qemu_source(line: &str) -> bool {
    let t = line.trim_start();
    t.strip_prefix("source")
        .is_some_and(|r| r.starts_with(char::is_whitespace) && r.trim_start().starts_with("\"qemu\""))
}

/// For each `source "qemu"` block item: (line index of the item, name, line index after its value).
fn hcl_qemu_items(lines: &[HclLine<'_>]) -> Vec<(usize, String, usize)> {
    let mut items = Vec::new();
    let mut in_source = false;
    let mut i = 0;
    while i < lines.len() {
        let l = &lines[i];
        if l.in_heredoc {
            i += 1;
            continue;
        }
        if l.depth_before == 0 {
            in_source = opens_qemu_source(l.text);
        } else if in_source && l.depth_before == 1 {
            if let Some(name) = hcl_item_name(l.text) {
                let mut end = i + 1;
                if l.depth_after > 1 {
                    while end < lines.len() && (lines[end].in_heredoc || lines[end].depth_after > 1) {
                        end += 1;
                    }
                    end += 1;
                }
                items.push((i, name.to_string(), end.min(lines.len())));
                i = end;
                continue;
            }
        }
        i += 1;
    }
    items
}

/// The options set in the `source "qemu"` blocks of an HCL2 template.
fn hcl_options(text: &str) -> BTreeSet<String> {
    let lines = hcl_lines(text);
    hcl_qemu_items(&lines).into_iter().map(|(_, name, _)| name).collect()
}

fn template_options(t: &Template, text: &str) -> BTreeSet<String> {
    match t.syntax {
        Syntax::Json => json_options(text).unwrap_or_else(|e| panic!("{}: {e}", t.name)),
        Syntax::Hcl => hcl_options(text),
    }
}

// ---- removing the options Packer 1.6.6 does not know ----

/// Whether Packer 1.6.6 is too old for this option (with this value): the 20 options it does not
/// know, the `disk_interface` values added later (`sata`, `sd`), and `http_interface`, which 1.6.6
/// rejects even alone ("either http_interface of http_bind_address can be specified": it applied the
/// `http_bind_address` default before that check; the SDK fixed the order later).
fn too_new_for_1_6_6(option: &str, value: &str) -> bool {
    NOT_IN_PACKER_1_6_6.contains(&option)
        || option == "http_interface"
        || (option == "disk_interface" && (value.contains("\"sata\"") || value.contains("\"sd\"")))
}

/// The JSON template without the options Packer 1.6.6 does not know (and the option names removed).
fn strip_json(text: &str) -> (String, Vec<String>) {
    let mut v: serde_json::Value = serde_json::from_str(text).expect("valid JSON");
    let mut removed = Vec::new();
    if let Some(builders) = v.get_mut("builders").and_then(|b| b.as_array_mut()) {
        for b in builders {
            let Some(obj) = b.as_object_mut() else { continue };
            if obj.get("type").and_then(|t| t.as_str()) != Some("qemu") {
                continue;
            }
            let drop: Vec<String> =
                obj.iter().filter(|(k, v)| too_new_for_1_6_6(k, &v.to_string())).map(|(k, _)| k.clone()).collect();
            for k in drop {
                obj.remove(&k);
                if !removed.contains(&k) {
                    removed.push(k);
                }
            }
        }
    }
    (serde_json::to_string_pretty(&v).expect("serialize JSON"), removed)
}

/// The HCL2 template without the options Packer 1.6.6 does not know (and the option names removed).
fn strip_hcl(text: &str) -> (String, Vec<String>) {
    let lines = hcl_lines(text);
    let mut skip = vec![false; lines.len()];
    let mut removed = Vec::new();
    for (start, name, end) in hcl_qemu_items(&lines) {
        let value: String = lines[start..end].iter().map(|l| l.text).collect::<Vec<_>>().join("\n");
        if too_new_for_1_6_6(&name, &value) {
            skip[start..end].iter_mut().for_each(|s| *s = true);
            removed.push(name);
        }
    }
    let kept: Vec<&str> = lines.iter().zip(&skip).filter(|(_, s)| !**s).map(|(l, _)| l.text).collect();
    (kept.join("\n") + "\n", removed)
}

// ---- running packer ----

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap_or_else(|e| panic!("mkdir {}: {e}", dst.display()));
    for entry in std::fs::read_dir(src).unwrap_or_else(|e| panic!("list {}: {e}", src.display())) {
        let entry = entry.expect("directory entry");
        let to = dst.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).unwrap_or_else(|e| panic!("copy to {}: {e}", to.display()));
        }
    }
}

/// A copy of the suite directory inside the Packer environment (templates get written over).
fn suite_copy(env: &PackerEnv) -> PathBuf {
    let dir = env.path().join("compat");
    copy_dir(&compat_dir(), &dir);
    dir
}

fn validate(env: &PackerEnv, dir: &Path, t: &Template, file_name: &str) -> PackerOutput {
    let args = t.validate_args(file_name);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.packer(&args).current_dir(dir).output().expect("run packer validate");
    PackerOutput::from(out)
}

/// The error items Packer printed: `* …` entries (joined over their wrapped lines), else the
/// `Error: …` summaries with their first detail line.
fn error_items(text: &str) -> Vec<String> {
    let mut items: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(item) = t.strip_prefix("* ") {
            if let Some(c) = current.take() {
                items.push(c);
            }
            current = Some(item.to_string());
        } else if t.is_empty() || t.starts_with("Error:") || t.starts_with("on ") || t.starts_with('(') {
            if let Some(c) = current.take() {
                items.push(c);
            }
        } else if let Some(c) = current.as_mut() {
            c.push(' ');
            c.push_str(t);
        }
    }
    items.extend(current);
    if items.is_empty() {
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for (i, l) in lines.iter().enumerate() {
            if let Some(summary) = l.strip_prefix("Error: ") {
                let detail = lines[i + 1..]
                    .iter()
                    .find(|d| !d.is_empty() && !d.starts_with("on ") && !d.starts_with('(') && !d.starts_with("Error"))
                    .copied()
                    .unwrap_or("");
                items.push(format!("{summary} — {detail}"));
            }
        }
    }
    if items.is_empty() && !text.trim().is_empty() {
        items.push(text.trim().lines().next().unwrap_or_default().to_string());
    }
    items
}

fn first_error(text: &str) -> String {
    let first = error_items(text).into_iter().next().unwrap_or_default();
    if first.chars().count() > 160 {
        format!("{}…", first.chars().take(160).collect::<String>())
    } else {
        first
    }
}

fn is_winrm_rejection(item: &str) -> bool {
    let lower = item.to_ascii_lowercase();
    lower.contains("winrm") && lower.contains("not supported")
}

fn table(rows: &[(String, String, String)]) -> String {
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(8).max(8);
    let mut s = format!("{:<w$}  {:<10}  first error\n", "template", "result");
    for (name, result, err) in rows {
        s.push_str(&format!("{name:<w$}  {result:<10}  {err}\n"));
    }
    s
}

// ---- the tests ----

#[test]
fn the_suite_has_enough_templates_and_winrm_ones_are_listed() {
    let all = templates();
    assert!(
        all.len() >= MIN_TEMPLATES,
        "only {} templates in tests/compat; at least {MIN_TEMPLATES} needed",
        all.len()
    );
    let json = all.iter().filter(|t| t.syntax == Syntax::Json).count();
    let hcl = all.len() - json;
    assert!(json >= 10 && hcl >= 10, "the suite should mix JSON ({json}) and HCL2 ({hcl}) templates");
    for t in &all {
        let text = read_template(t);
        let winrm = text.contains("\"winrm\"");
        assert_eq!(
            winrm,
            EXPECT_WINRM_FAILURE.contains(&t.name.as_str()),
            "{}: a template uses communicator \"winrm\" exactly when it is listed in EXPECT_WINRM_FAILURE",
            t.name
        );
    }
    for name in EXPECT_WINRM_FAILURE {
        assert!(all.iter().any(|t| t.name == *name), "{name} is listed in EXPECT_WINRM_FAILURE but does not exist");
    }
}

#[test]
fn the_templates_use_every_reference_option_and_only_those() {
    assert_eq!(REFERENCE_OPTIONS.len(), 129, "the reference builder has 129 user-facing options");
    let mut used = BTreeSet::new();
    let mut unknown = Vec::new();
    for t in templates() {
        for option in template_options(&t, &read_template(&t)) {
            if !REFERENCE_OPTIONS.contains(&option.as_str()) {
                unknown.push(format!("{}: {option}", t.name));
            }
            used.insert(option);
        }
    }
    assert!(unknown.is_empty(), "options that the reference qemu builder does not have:\n{}", unknown.join("\n"));
    let missing: Vec<&str> = REFERENCE_OPTIONS.iter().copied().filter(|o| !used.contains(*o)).collect();
    assert!(missing.is_empty(), "no template of tests/compat uses these reference options: {}", missing.join(", "));
}

#[test]
fn every_template_validates_with_qemu_rs() {
    let env = PackerEnv::new();
    let dir = suite_copy(&env);
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for t in templates() {
        let renamed = rename(&t, &read_template(&t));
        std::fs::write(dir.join(&t.name), renamed).expect("write renamed template");
        let out = validate(&env, &dir, &t, &t.name);
        let expect_winrm = EXPECT_WINRM_FAILURE.contains(&t.name.as_str());
        let items = error_items(&out.text);
        let (result, problem) = match (expect_winrm, out.success) {
            (false, true) => ("ok", None),
            (false, false) => ("FAILED", Some(first_error(&out.text))),
            (true, true) => ("FAILED", Some("passed, but WinRM templates must be rejected".to_string())),
            (true, false) => {
                let others: Vec<&String> = items.iter().filter(|i| !i.to_ascii_lowercase().contains("winrm")).collect();
                if !items.iter().any(|i| is_winrm_rejection(i)) {
                    ("FAILED", Some(format!("no WinRM message; first error: {}", first_error(&out.text))))
                } else if let Some(other) = others.first() {
                    ("FAILED", Some(format!("rejected for more than WinRM: {other}")))
                } else {
                    ("ok (winrm)", None)
                }
            }
        };
        rows.push((t.name.clone(), result.to_string(), problem.clone().unwrap_or_default()));
        if let Some(p) = problem {
            let all: Vec<String> = items.iter().map(|i| format!("\n    - {i}")).collect();
            failures.push(format!("{}: {p}{}", t.name, all.concat()));
        }
    }
    let table = table(&rows);
    println!("packer validate with qemu-rs (qemu → qemu-rs, shell → qemu-rs-shell):\n{table}");
    assert!(
        failures.is_empty(),
        "{} of {} templates did not validate as expected with qemu-rs:\n{table}\nfailing:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

#[test]
fn every_template_is_valid_for_packers_own_qemu_builder() {
    let env = PackerEnv::new();
    let dir = suite_copy(&env);
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for t in templates() {
        let out = validate(&env, &dir, &t, &t.name);
        if out.success {
            rows.push((t.name.clone(), "ok".to_string(), String::new()));
            continue;
        }
        let text = read_template(&t);
        let (stripped, removed) = match t.syntax {
            Syntax::Json => strip_json(&text),
            Syntax::Hcl => strip_hcl(&text),
        };
        let stripped_name = format!("stripped-{}", t.name);
        std::fs::write(dir.join(&stripped_name), stripped).expect("write stripped template");
        let again = if removed.is_empty() { out } else { validate(&env, &dir, &t, &stripped_name) };
        if again.success {
            rows.push((
                t.name.clone(),
                "too old".to_string(),
                format!("Packer 1.6.6 cannot take {}", removed.join(", ")),
            ));
        } else {
            let e = first_error(&again.text);
            rows.push((t.name.clone(), "FAILED".to_string(), e.clone()));
            failures.push(format!("{}: {e}", t.name));
        }
    }
    let table = table(&rows);
    println!("packer validate with Packer 1.6.6's built-in qemu builder (templates as written):\n{table}");
    assert!(
        failures.is_empty(),
        "Packer's own qemu builder rejects templates for more than being too old:\n{table}\nfailing:\n{}",
        failures.join("\n")
    );
}

// ---- the helpers themselves ----

#[test]
fn rename_json_changes_only_the_type_names() {
    let src = r#"{"builders":[{"type" :  "qemu","qemu_binary":"qemu","name":"qemu"}],
        "provisioners":[{"type":"shell","inline":["echo \"type\": \"qemu\""]},{"type":"shell-local"}],
        "post-processors":[{"type":"shell"}]}"#;
    let (out, n) = rename_json(src);
    assert_eq!(n, 3);
    assert!(out.contains(r#""type" :  "qemu-rs","qemu_binary":"qemu","name":"qemu""#), "{out}");
    assert!(out.contains(r#"{"type":"qemu-rs-shell","inline""#), "{out}");
    assert!(out.contains(r#"{"type":"shell-local"}"#), "{out}");
    // The escaped quotes inside a string are not a "type" key.
    assert!(out.contains(r#"echo \"type\": \"qemu\""#), "{out}");
}

#[test]
fn rename_hcl_changes_only_the_type_names() {
    let src = "source \"qemu\" \"a\" {\n  qemu_binary = \"qemu\"\n}\nbuild {\n  sources = [\"source.qemu.a\"]\n  \
               source \"source.qemu.a\" {\n    name = \"b\"\n  }\n  provisioner \"shell\" {\n    only = [\"qemu.b\"]\n    \
               inline = [\"echo qemu.b shell\"]\n  }\n  provisioner \"shell-local\" {\n    inline = [\"true\"]\n  }\n}\n";
    let (out, n) = rename_hcl(src);
    assert_eq!(n, 5, "{out}");
    assert!(out.starts_with("source \"qemu-rs\" \"a\" {\n  qemu_binary = \"qemu\"\n"), "{out}");
    assert!(out.contains("sources = [\"source.qemu-rs.a\"]"), "{out}");
    assert!(out.contains("source \"source.qemu-rs.a\" {"), "{out}");
    assert!(out.contains("provisioner \"qemu-rs-shell\" {"), "{out}");
    assert!(out.contains("only = [\"qemu-rs.b\"]"), "{out}");
    assert!(out.contains("inline = [\"echo qemu.b shell\"]"), "{out}");
    assert!(out.contains("provisioner \"shell-local\" {"), "{out}");
}

#[test]
fn hcl_scanner_finds_source_options_and_strips_new_ones() {
    let src = r#"locals {
  user_data = <<-EOT
    memory = 1
  EOT
}
source "qemu" "a" {
  memory = 512 # a comment with a { brace
  http_content = {
    "/ks.cfg" = "x {{ .HTTPIP }}"
  }
  qemu_img_args {
    create = ["-o", "x"]
  }
  disk_interface = "sata"
  boot_steps = [
    ["<enter>", "go"],
  ]
}
build {
  sources = ["source.qemu.a"]
}
"#;
    let opts: Vec<String> = hcl_options(src).into_iter().collect();
    assert_eq!(opts, ["boot_steps", "disk_interface", "http_content", "memory", "qemu_img_args"]);
    let (stripped, removed) = strip_hcl(src);
    assert_eq!(removed, ["http_content", "disk_interface", "boot_steps"]);
    assert!(stripped.contains("memory = 512") && stripped.contains("qemu_img_args {\n    create"), "{stripped}");
    assert!(!stripped.contains("ks.cfg") && !stripped.contains("sata") && !stripped.contains("<enter>"), "{stripped}");
    assert!(stripped.contains("    memory = 1\n") && stripped.contains("sources = [\"source.qemu.a\"]"), "{stripped}");
}

#[test]
fn strip_json_removes_only_new_options_of_qemu_builders() {
    let src = r#"{"builders":[{"type":"qemu","vtpm":true,"memory":1,"disk_interface":"sd"},
        {"type":"qemu","disk_interface":"ide"}],"provisioners":[{"type":"shell","vtpm":1}]}"#;
    let (out, mut removed) = strip_json(src);
    removed.sort();
    assert_eq!(removed, ["disk_interface", "vtpm"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["builders"][0], serde_json::json!({"type": "qemu", "memory": 1}));
    assert_eq!(v["builders"][1]["disk_interface"], "ide");
    assert_eq!(v["provisioners"][0]["vtpm"], 1);
}

#[test]
fn error_items_join_wrapped_lines() {
    let json_style = "Error: Failed to prepare build: \"x\"\n\n2 error(s) occurred:\n\n* disk_size: invalid size \
                      \"{{user\n`disk_size`}}\"; write a number\n\n* communicator: \"winrm\" is not supported\n\n";
    assert_eq!(
        error_items(json_style),
        [
            "disk_size: invalid size \"{{user `disk_size`}}\"; write a number",
            "communicator: \"winrm\" is not supported"
        ]
    );
    let hcl_style = "Error: Unsupported argument\n\n  on a.pkr.hcl line 3:\n  (source code not available)\n\n\
                     An argument named \"vtpm\" is not expected here.\n";
    assert_eq!(error_items(hcl_style), ["Unsupported argument — An argument named \"vtpm\" is not expected here."]);
}
