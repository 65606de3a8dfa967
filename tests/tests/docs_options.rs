//! `docs/builders/qemu-rs.mdx` documents every option of the builder: each option of the
//! builder's ConfigSpec, and each of the 129 options of the reference `qemu` builder, has its own
//! row in one of the option tables, with a description; the page names no option the builder does
//! not have; qemu-rs's own options are marked **New**; the WinRM options say they are rejected.
//!
//! The option tables of the builder's, the provisioner's and the post-processor's pages are
//! generated from the options' doc comments (`packer_sdk::config::docs`): every option has a
//! description, each is in exactly one generated block, and the blocks are what the code
//! generates. `make docs` (`QEMU_RS_UPDATE_DOCS=1 cargo test -p qemu-rs-tests --test
//! docs_options`) rewrites the blocks and then runs `scripts/web-docs.py`.

include!("../compat/reference_options.rs");

use std::collections::{BTreeMap, BTreeSet};

use packer_sdk::config::docs::{self, OptionDoc, OptionsBlock};
use qemu_rs_tests::workspace_root;

/// Keys of the reference's HCL2 spec that are Packer plumbing, not options for templates.
const INTERNAL: &[&str] = &["ssh_public_key", "ssh_private_key"];

/// One documented option: the section it is in and the text of its row's last cell.
#[derive(Debug)]
struct Entry {
    section: String,
    notes: String,
}

/// Splits a Markdown table row into its cells (`\|` is an escaped pipe inside a cell).
fn cells(row: &str) -> Vec<String> {
    let inner = row.trim().trim_start_matches('|').trim_end_matches('|');
    let mut out = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                out.last_mut().expect("a cell").push('|');
            }
            '|' => out.push(String::new()),
            c => out.last_mut().expect("a cell").push(c),
        }
    }
    out.into_iter().map(|c| c.trim().to_string()).collect()
}

/// The `code` spans of a cell.
fn code_spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

fn is_option_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Every option row of the builder's page: option name → entries (more than one is a duplicate).
fn documented() -> BTreeMap<String, Vec<Entry>> {
    documented_in("docs/builders/qemu-rs.mdx")
}

/// Every option row of the page `page` (relative to the workspace root).
fn documented_in(page: &str) -> BTreeMap<String, Vec<Entry>> {
    let path = workspace_root().join(page);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut section = String::new();
    let mut out: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    let mut in_code_block = false;
    let mut in_option_table = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code_block = !in_code_block;
            continue;
        }
        if in_code_block {
            continue;
        }
        if let Some(h) = line.strip_prefix('#') {
            section = h.trim_start_matches('#').trim().to_string();
            continue;
        }
        if !line.trim_start().starts_with('|') {
            in_option_table = false;
            continue;
        }
        let row = cells(line);
        let first = &row[0];
        // only tables whose header is `| Option | …` list options; other tables (measurements)
        // may quote QMP commands or file names in code spans
        if first == "Option" {
            in_option_table = true;
            continue;
        }
        if !in_option_table || first.chars().all(|c| c == '-' || c == ':') {
            continue;
        }
        let notes = row.last().cloned().unwrap_or_default();
        for name in code_spans(first).into_iter().filter(|n| is_option_name(n)) {
            out.entry(name.to_string()).or_default().push(Entry { section: section.clone(), notes: notes.clone() });
        }
    }
    out
}

/// The builder's options: the keys of its ConfigSpec without Packer's `packer_*` attributes.
fn spec_options() -> BTreeSet<String> {
    builder_qemu::config::config_spec()
        .entries
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| !k.starts_with("packer_"))
        .collect()
}

#[test]
fn every_builder_option_has_a_described_row() {
    let docs = documented();
    let mut problems = Vec::new();
    for option in spec_options() {
        match docs.get(&option).map(Vec::as_slice) {
            None | Some([]) => problems.push(format!("{option}: no row in docs/builders/qemu-rs.mdx")),
            Some([e]) if e.notes.chars().filter(|c| c.is_alphabetic()).count() < 10 => {
                problems.push(format!("{option}: its row (section {:?}) has no description", e.section))
            }
            Some([_]) => {}
            Some(many) => problems.push(format!(
                "{option}: {} rows (sections {:?}); give each option exactly one",
                many.len(),
                many.iter().map(|e| e.section.as_str()).collect::<Vec<_>>()
            )),
        }
    }
    assert!(problems.is_empty(), "the builder options are not all documented:\n{}", problems.join("\n"));
}

#[test]
fn every_reference_option_is_documented() {
    let docs = documented();
    let missing: Vec<&str> = REFERENCE_OPTIONS.iter().copied().filter(|o| !docs.contains_key(*o)).collect();
    assert!(missing.is_empty(), "options of Packer's qemu builder missing from the docs: {}", missing.join(", "));
}

#[test]
fn the_docs_name_no_option_the_builder_lacks() {
    let spec = spec_options();
    let stale: Vec<String> = documented().into_keys().filter(|o| !spec.contains(o)).collect();
    assert!(stale.is_empty(), "the docs describe options the builder does not have: {}", stale.join(", "));
}

#[test]
fn qemu_rs_options_are_marked_new_and_winrm_options_rejected() {
    let docs = documented();
    let mut problems = Vec::new();
    for option in spec_options() {
        let Some(entry) = docs.get(&option).and_then(|e| e.first()) else { continue };
        let reference = REFERENCE_OPTIONS.contains(&option.as_str()) || INTERNAL.contains(&option.as_str());
        if !reference && !entry.notes.contains("**New.**") {
            problems.push(format!("{option} is not an option of Packer's qemu builder: mark its row **New.**"));
        }
        if reference && entry.notes.contains("**New.**") {
            problems.push(format!("{option} is an option of Packer's qemu builder but its row says **New.**"));
        }
        if option.starts_with("winrm_") && !(entry.notes.contains("Rejected") && entry.notes.contains("not supported"))
        {
            problems.push(format!("{option}: the row must say it is rejected because WinRM is not supported"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_table_parser_reads_rows_as_written() {
    assert_eq!(cells("| `a` / `b` | `x` \\| `y` | note |"), ["`a` / `b`", "`x` | `y`", "note"]);
    assert_eq!(code_spans("`ssh_host_port_min`, `x-y`"), ["ssh_host_port_min", "x-y"]);
    assert!(is_option_name("vnc_port_min") && !is_option_name("x-y") && !is_option_name("qcow2 "));
}

#[test]
fn every_post_processor_option_has_a_described_row_and_no_other() {
    let docs = documented_in("docs/post-processors/convert.mdx");
    let spec: BTreeSet<String> = post_processor_convert::config_spec()
        .entries
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| !k.starts_with("packer_"))
        .collect();
    let mut problems = Vec::new();
    for option in &spec {
        match docs.get(option).map(Vec::as_slice) {
            Some([e]) if e.notes.chars().filter(|c| c.is_alphabetic()).count() >= 10 => {}
            Some([_]) => problems.push(format!("{option}: its row has no description")),
            None | Some([]) => problems.push(format!("{option}: no row")),
            Some(_) => problems.push(format!("{option}: more than one row")),
        }
    }
    problems.extend(docs.keys().filter(|o| !spec.contains(*o)).map(|o| format!("{o}: documented, not an option")));
    assert!(problems.is_empty(), "docs/post-processors/convert.mdx:\n{}", problems.join("\n"));
}

/// The pages with generated option tables.
const GENERATED_PAGES: &[&str] =
    &["docs/builders/qemu-rs.mdx", "docs/provisioners/shell.mdx", "docs/post-processors/convert.mdx"];

/// How to regenerate the blocks, for failure messages.
const REGENERATE: &str =
    "run `make docs` (or `QEMU_RS_UPDATE_DOCS=1 cargo test -p qemu-rs-tests --test docs_options`, which also \
     runs `scripts/web-docs.py`)";

/// The option documentation of the component a block names (`<!-- options:begin COMPONENT … -->`).
fn component_docs(component: &str) -> Result<Vec<OptionDoc>, String> {
    match component {
        "builder" => Ok(builder_qemu::config::Config::option_docs()),
        "provisioner" => Ok(provisioner_shell::config::ShellOptions::option_docs()),
        "post-processor" => Ok(post_processor_convert::ConvertOptionsRaw::option_docs()),
        other => Err(format!("unknown component {other:?}; use builder, provisioner or post-processor")),
    }
}

/// The options a block lists, in order: the builder's tables are the sections of
/// `builder_qemu::config::DOC_SECTIONS`; the provisioner and the post-processor have one table of
/// every option.
fn block_options(block: &OptionsBlock) -> Result<Vec<&'static str>, String> {
    let all = component_docs(&block.component)?;
    match (block.component.as_str(), block.section.as_deref()) {
        ("builder", Some(name)) => builder_qemu::config::DOC_SECTIONS
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.options.to_vec())
            .ok_or_else(|| format!("no section {name:?} in builder_qemu::config::DOC_SECTIONS")),
        ("builder", None) => Err("a builder block needs a section=\"…\" (one of DOC_SECTIONS)".to_string()),
        (_, Some(name)) => Err(format!("section {name:?}: {} has a single table, without sections", block.component)),
        (_, None) => Ok(all.iter().map(|d| d.key).collect()),
    }
}

/// The table a block must hold.
fn generate(block: &OptionsBlock) -> Result<String, String> {
    docs::render_section(&component_docs(&block.component)?, &block_options(block)?)
}

/// The generated blocks of every page: (page, block).
fn generated_blocks() -> Vec<(&'static str, OptionsBlock)> {
    let mut out = Vec::new();
    for page in GENERATED_PAGES {
        let text = std::fs::read_to_string(workspace_root().join(page)).expect("page");
        let blocks = docs::find_blocks(&text).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(!blocks.is_empty(), "{page} has no generated option table (<!-- options:begin … -->)");
        out.extend(blocks.into_iter().map(|b| (*page, b)));
    }
    out
}

#[test]
fn every_option_has_a_description() {
    let mut problems = Vec::new();
    problems.extend(docs::missing_descriptions("builder", &builder_qemu::config::Config::option_docs()));
    problems
        .extend(docs::missing_descriptions("builder qemu_img_args", &builder_qemu::config::QemuImgArgs::option_docs()));
    problems.extend(docs::missing_descriptions("provisioner", &provisioner_shell::config::ShellOptions::option_docs()));
    problems.extend(docs::missing_descriptions(
        "post-processor",
        &post_processor_convert::ConvertOptionsRaw::option_docs(),
    ));
    assert!(
        problems.is_empty(),
        "every option's doc comment is its entry in the docs; describe these (see packer_sdk::config::docs):\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_option_is_in_exactly_one_generated_block() {
    let mut places: BTreeMap<(String, &str), Vec<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for (page, block) in generated_blocks() {
        match block_options(&block) {
            Ok(options) => {
                for o in options {
                    places.entry((block.component.clone(), o)).or_default().push(format!(
                        "{page}:{} ({})",
                        block.line,
                        docs::describe_block(&block)
                    ));
                }
            }
            Err(e) => problems.push(format!("{page}:{}: {e}", block.line)),
        }
    }
    for component in ["builder", "provisioner", "post-processor"] {
        for doc in component_docs(component).expect("a component") {
            match places.get(&(component.to_string(), doc.key)).map(Vec::as_slice) {
                None | Some([]) => problems.push(format!(
                    "{component} option {}: in no generated table{}",
                    doc.key,
                    if component == "builder" {
                        "; add it to a section of builder_qemu::config::DOC_SECTIONS"
                    } else {
                        ""
                    }
                )),
                Some([_]) => {}
                Some(many) => {
                    problems.push(format!("{component} option {}: in {} tables: {many:?}", doc.key, many.len()))
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn generated_option_tables_match_the_code() {
    let update = std::env::var_os("QEMU_RS_UPDATE_DOCS").is_some_and(|v| !v.is_empty() && v != "0");
    let mut stale = Vec::new();
    for page in GENERATED_PAGES {
        let path = workspace_root().join(page);
        let text = std::fs::read_to_string(&path).expect("page");
        let fresh = docs::regenerate_blocks(&text, generate).unwrap_or_else(|e| panic!("{page}: {e}"));
        if fresh == text {
            continue;
        }
        if update {
            std::fs::write(&path, &fresh).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            eprintln!("rewrote the option tables of {page}");
        } else {
            let line = text.lines().zip(fresh.lines()).position(|(a, b)| a != b).map_or(0, |i| i + 1);
            stale.push(format!("{page} (first difference at line {line})"));
        }
    }
    if update {
        let out = std::process::Command::new(workspace_root().join("scripts/web-docs.py")).output().expect("python3");
        assert!(out.status.success(), "scripts/web-docs.py: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(
        stale.is_empty(),
        "the option tables of {} are not what the options' doc comments give (a doc comment or a table was \
         edited): {REGENERATE}; edit the doc comments, not the tables",
        stale.join(", ")
    );
}

#[test]
fn the_sections_of_the_builder_name_real_options() {
    let docs = builder_qemu::config::Config::option_docs();
    for section in builder_qemu::config::DOC_SECTIONS {
        docs::render_section(&docs, section.options).unwrap_or_else(|e| panic!("section {:?}: {e}", section.name));
    }
}
