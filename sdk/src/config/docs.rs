//! The option reference generated from the options' own declarations.
//!
//! [`packer_config!`](crate::packer_config) keeps every field's doc comment and makes it
//! available at run time as an [`OptionDoc`] (`Config::option_docs()`), together with the
//! option's type label ([`ConfigValue::type_label`](crate::config::ConfigValue::type_label)).
//! This module turns those into the Markdown option tables of a plugin's documentation:
//!
//! - [`OptionDoc::from_doc_lines`] reads the doc comment conventions (below);
//! - [`render_table`] / [`render_section`] render `| Option | Type | Default | Notes |` tables;
//! - [`find_blocks`] / [`regenerate_blocks`] find and rewrite the generated blocks of a page,
//!   delimited by [`BEGIN_MARKER`] and [`END_MARKER`] comments, leaving the rest of the page as
//!   it was written.
//!
//! # Doc comment conventions
//!
//! The doc comment of a field is ordinary rustdoc, read as paragraphs (separated by blank `///`
//! lines; the lines of a paragraph are joined with spaces). A paragraph that starts with one of
//! these words is not part of the description:
//!
//! - `Default: <text>`: the Default column (Markdown; `—` when there is none);
//! - `Type: <text>`: replaces the generated type label, for the rare option whose Rust type says
//!   less than the user needs (`number (MiB)`) or accepts values the option rejects;
//! - `Internal: <text>`: a note for readers of the code (what the value holds after `prepare`…);
//!   shown by rustdoc, left out of the option reference.
//!
//! Every other paragraph is the description (the Notes column). Write it for template authors:
//! plain Markdown prose, no lists or code blocks (a table cell holds one line), no intra-doc
//! links. Put the `Type:`/`Default:`/`Internal:` paragraphs last, so rustdoc reads naturally:
//!
//! ```text
//! /// RAM of the guest. **Deviation:** values 1–9 are rejected (Packer silently uses 512).
//! ///
//! /// Type: number (MiB)
//! ///
//! /// Default: `512`
//! pub memory: u64 => "memory",
//! ```
//!
//! Which table a row belongs to is not in the doc comment: a plugin with several tables lists
//! them next to its configuration struct as [`DocSection`]s (the table order is the list order);
//! a plugin with one table renders every option in declaration order.
//!
//! # Generated blocks
//!
//! ```text
//! <!-- options:begin builder section="Machine" -->
//!
//! | Option | Type | Default | Notes |
//! …
//!
//! <!-- options:end -->
//! ```
//!
//! `builder` names the component (the caller decides what it means), `section="…"` is optional.
//! Everything between the two markers is replaced on regeneration.

use std::fmt::Write as _;

/// The marker that opens a generated block: `<!-- options:begin COMPONENT [section="NAME"] -->`.
pub const BEGIN_MARKER: &str = "<!-- options:begin ";
/// The marker that closes a generated block.
pub const END_MARKER: &str = "<!-- options:end -->";

/// One option's documentation, as [`packer_config!`](crate::packer_config) gathers it from the
/// field's doc comment and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionDoc {
    /// The option name (`disk_size`).
    pub key: &'static str,
    /// The description: the doc comment's paragraphs without the `Default:`, `Type:` and
    /// `Internal:` ones, separated by blank lines (Markdown).
    pub description: String,
    /// The type for the reference: the `Type:` paragraph, else the generated label
    /// ([`ConfigValue::type_label`](crate::config::ConfigValue::type_label)).
    pub type_label: String,
    /// The `Default:` paragraph, if any.
    pub default: Option<String>,
}

impl OptionDoc {
    /// Builds the documentation of option `key` from the `#[doc]` attributes of its field (one
    /// entry per attribute, `None` for other attributes; each line loses one leading space, as
    /// rustdoc does for `///`) and the generated type label.
    pub fn from_doc_lines(key: &'static str, docs: &[Option<&str>], generated_type: String) -> Self {
        let mut paragraphs: Vec<String> = Vec::new();
        let mut current: Vec<&str> = Vec::new();
        let lines = docs.iter().flatten().flat_map(|d| d.split('\n'));
        for line in lines {
            let line = line.strip_prefix(' ').unwrap_or(line).trim_end();
            if line.trim().is_empty() {
                if !current.is_empty() {
                    paragraphs.push(current.join(" "));
                    current.clear();
                }
            } else {
                current.push(line.trim());
            }
        }
        if !current.is_empty() {
            paragraphs.push(current.join(" "));
        }
        let mut description = Vec::new();
        let mut type_label = generated_type;
        let mut default = None;
        for p in paragraphs {
            if let Some(rest) = p.strip_prefix("Default:") {
                default = Some(rest.trim().to_string());
            } else if let Some(rest) = p.strip_prefix("Type:") {
                type_label = rest.trim().to_string();
            } else if p.starts_with("Internal:") {
                continue;
            } else {
                description.push(p);
            }
        }
        OptionDoc { key, description: description.join("\n\n"), type_label, default }
    }

    /// Whether the description says something: at least 10 letters besides the option's own name
    /// (a doc comment that only repeats `` `key` `` is no description).
    pub fn has_description(&self) -> bool {
        let without_key = self.description.replace(self.key, "");
        without_key.chars().filter(|c| c.is_alphabetic()).count() >= 10
    }

    /// The row of this option in a [`render_table`] table.
    pub fn table_row(&self) -> String {
        format!(
            "| `{}` | {} | {} | {} |",
            self.key,
            cell(&self.type_label),
            cell(self.default.as_deref().unwrap_or("—")),
            cell(&self.description)
        )
    }
}

/// Text made fit for one Markdown table cell: on one line, `|` escaped.
fn cell(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::with_capacity(one_line.len());
    let mut prev = ' ';
    for c in one_line.chars() {
        if c == '|' && prev != '\\' {
            out.push('\\');
        }
        out.push(c);
        prev = c;
    }
    out
}

/// The options of `docs` that have no description ([`OptionDoc::has_description`]), as
/// `"key: no description"` messages, `what` naming the configuration (`"builder"`).
pub fn missing_descriptions(what: &str, docs: &[OptionDoc]) -> Vec<String> {
    docs.iter()
        .filter(|d| !d.has_description())
        .map(|d| format!("{what} option {}: its doc comment has no description", d.key))
        .collect()
}

/// A Markdown table `| Option | Type | Default | Notes |` with one row per option, in order.
pub fn render_table<'a>(rows: impl IntoIterator<Item = &'a OptionDoc>) -> String {
    let mut out = String::from("| Option | Type | Default | Notes |\n|---|---|---|---|\n");
    for row in rows {
        let _ = writeln!(out, "{}", row.table_row());
    }
    out
}

/// One table of a plugin's option reference: a name (the `section="…"` of its block) and the
/// options it lists, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocSection {
    /// The section name, as in `<!-- options:begin builder section="Machine" -->`.
    pub name: &'static str,
    /// The options of the table, in the order of its rows.
    pub options: &'static [&'static str],
}

/// The table of `keys`, taken from `docs`; an error names the keys `docs` does not have.
pub fn render_section(docs: &[OptionDoc], keys: &[&str]) -> Result<String, String> {
    let mut rows = Vec::new();
    let mut unknown = Vec::new();
    for key in keys {
        match docs.iter().find(|d| d.key == *key) {
            Some(d) => rows.push(d),
            None => unknown.push(*key),
        }
    }
    if unknown.is_empty() {
        Ok(render_table(rows))
    } else {
        Err(format!("no such option: {}", unknown.join(", ")))
    }
}

/// A generated block of a documentation page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionsBlock {
    /// The component named by the begin marker (`builder`).
    pub component: String,
    /// The `section="…"` of the begin marker, if any.
    pub section: Option<String>,
    /// The 1-based line number of the begin marker.
    pub line: usize,
    /// The text between the markers (without the marker lines).
    pub content: String,
}

/// Parses the inside of a begin marker: `COMPONENT [section="NAME"]`.
fn parse_marker(rest: &str) -> Option<(String, Option<String>)> {
    let inner = rest.trim().strip_suffix("-->")?.trim();
    let (component, attrs) = match inner.split_once(char::is_whitespace) {
        Some((c, a)) => (c, a.trim()),
        None => (inner, ""),
    };
    if component.is_empty() {
        return None;
    }
    let section = if attrs.is_empty() {
        None
    } else {
        let value = attrs.strip_prefix("section=\"")?.strip_suffix('"')?;
        if value.contains('"') {
            return None;
        }
        Some(value.to_string())
    };
    Some((component.to_string(), section))
}

/// The generated blocks of `text`, in order. An error (with its line number) for a malformed
/// begin marker, a begin without end, an end without begin, or nested blocks.
pub fn find_blocks(text: &str) -> Result<Vec<OptionsBlock>, String> {
    let mut blocks = Vec::new();
    let mut open: Option<(OptionsBlock, Vec<&str>)> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix(BEGIN_MARKER.trim_end()) {
            if let Some((b, _)) = &open {
                return Err(format!("line {n}: options block opened inside the block of line {}", b.line));
            }
            let (component, section) = parse_marker(rest).ok_or_else(|| {
                format!(
                    "line {n}: malformed marker {trimmed:?}; write <!-- options:begin COMPONENT section=\"NAME\" -->"
                )
            })?;
            open = Some((OptionsBlock { component, section, line: n, content: String::new() }, Vec::new()));
        } else if trimmed == END_MARKER {
            let (mut block, lines) = open.take().ok_or_else(|| format!("line {n}: {END_MARKER} without a begin"))?;
            block.content = lines.iter().map(|l| format!("{l}\n")).collect();
            blocks.push(block);
        } else if let Some((_, lines)) = &mut open {
            lines.push(line);
        }
    }
    match open {
        Some((b, _)) => Err(format!("line {}: options block not closed with {END_MARKER}", b.line)),
        None => Ok(blocks),
    }
}

/// The content a generated block gets for `table`: the table between blank lines.
pub fn block_content(table: &str) -> String {
    format!("\n{}\n\n", table.trim_end_matches('\n'))
}

/// `text` with the content of every generated block replaced by [`block_content`] of what
/// `generate` returns for it; the text outside the blocks (and the markers) is kept byte for
/// byte. The first error of `generate` is returned with the block's line.
pub fn regenerate_blocks(
    text: &str,
    mut generate: impl FnMut(&OptionsBlock) -> Result<String, String>,
) -> Result<String, String> {
    let blocks = find_blocks(text)?;
    let mut out = String::with_capacity(text.len());
    let mut blocks = blocks.into_iter().peekable();
    let mut skipping = false;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let n = i + 1;
        if skipping {
            if line.trim() == END_MARKER {
                skipping = false;
                out.push_str(line);
            }
            continue;
        }
        out.push_str(line);
        if blocks.peek().is_some_and(|b| b.line == n) {
            let block = blocks.next().expect("peeked");
            let table = generate(&block).map_err(|e| format!("line {n} ({}): {e}", describe_block(&block)))?;
            if !line.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&block_content(&table));
            skipping = true;
        }
    }
    Ok(out)
}

/// `builder section="Machine"`: how a block is named in messages.
pub fn describe_block(block: &OptionsBlock) -> String {
    match &block.section {
        Some(s) => format!("{} section={s:?}", block.component),
        None => block.component.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_lines_split_into_description_default_and_type() {
        let d = OptionDoc::from_doc_lines(
            "memory",
            &[
                Some(" RAM of the guest."),
                None,
                Some(" Values 1–9 are rejected."),
                Some(""),
                Some(" Second | paragraph."),
                Some(""),
                Some(" Internal: after `prepare`,"),
                Some(" never 0."),
                Some(""),
                Some(" Type: number (MiB)"),
                Some(""),
                Some(" Default: `512` (or"),
                Some(" more)"),
            ],
            "number".to_string(),
        );
        assert_eq!(d.description, "RAM of the guest. Values 1–9 are rejected.\n\nSecond | paragraph.");
        assert_eq!(d.type_label, "number (MiB)");
        assert_eq!(d.default.as_deref(), Some("`512` (or more)"));
        assert!(d.has_description());
        assert_eq!(
            d.table_row(),
            "| `memory` | number (MiB) | `512` (or more) | RAM of the guest. Values 1–9 are rejected. Second \\| paragraph. |"
        );
    }

    #[test]
    fn a_doc_that_only_names_the_option_is_no_description() {
        let d = OptionDoc::from_doc_lines("inline", &[Some(" `inline`")], "list(string)".into());
        assert!(!d.has_description());
        assert_eq!(d.default, None);
        assert_eq!(d.table_row(), "| `inline` | list(string) | — | `inline` |");
        assert_eq!(missing_descriptions("shell", &[d]), ["shell option inline: its doc comment has no description"]);
        let none = OptionDoc::from_doc_lines("x", &[], "bool".into());
        assert!(!none.has_description());
    }

    #[test]
    fn pipes_are_escaped_once() {
        assert_eq!(cell("`a` | `b` \\| c\n  d"), "`a` \\| `b` \\| c d");
    }

    #[test]
    fn sections_render_in_list_order_and_name_unknown_options() {
        let docs = [
            OptionDoc::from_doc_lines("a", &[Some(" The a option.")], "bool".into()),
            OptionDoc::from_doc_lines("b", &[Some(" The b option.")], "string".into()),
        ];
        assert_eq!(
            render_section(&docs, &["b", "a"]).unwrap(),
            "| Option | Type | Default | Notes |\n|---|---|---|---|\n\
             | `b` | string | — | The b option. |\n| `a` | bool | — | The a option. |\n"
        );
        assert_eq!(render_section(&docs, &["a", "c", "d"]).unwrap_err(), "no such option: c, d");
    }

    const PAGE: &str = "# Title\n\nProse.\n\n<!-- options:begin builder section=\"Machine\" -->\nold\n\
                        <!-- options:end -->\n\nMore prose.\n<!-- options:begin shell -->\n<!-- options:end -->\n";

    #[test]
    fn blocks_are_found_and_regenerated_keeping_the_prose() {
        let blocks = find_blocks(PAGE).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].component, "builder");
        assert_eq!(blocks[0].section.as_deref(), Some("Machine"));
        assert_eq!(blocks[0].line, 5);
        assert_eq!(blocks[0].content, "old\n");
        assert_eq!(describe_block(&blocks[1]), "shell");
        assert_eq!(blocks[1].content, "");
        let out = regenerate_blocks(PAGE, |b| Ok(format!("T {}", describe_block(b)))).unwrap();
        assert_eq!(
            out,
            "# Title\n\nProse.\n\n<!-- options:begin builder section=\"Machine\" -->\n\nT builder section=\"Machine\"\n\n\
             <!-- options:end -->\n\nMore prose.\n<!-- options:begin shell -->\n\nT shell\n\n<!-- options:end -->\n"
        );
        // Regenerating is idempotent, and the block content is what find_blocks reads back.
        let again = regenerate_blocks(&out, |b| Ok(format!("T {}", describe_block(b)))).unwrap();
        assert_eq!(again, out);
        assert_eq!(find_blocks(&out).unwrap()[1].content, block_content("T shell"));
        let err = regenerate_blocks(PAGE, |_| Err("no such option: x".into())).unwrap_err();
        assert_eq!(err, "line 5 (builder section=\"Machine\"): no such option: x");
    }

    #[test]
    fn malformed_blocks_are_errors() {
        assert!(find_blocks("<!-- options:begin -->\n<!-- options:end -->\n").unwrap_err().contains("malformed"));
        assert!(find_blocks("<!-- options:begin a section=Machine -->\n<!-- options:end -->\n").is_err());
        assert!(find_blocks("<!-- options:begin a -->\n").unwrap_err().contains("not closed"));
        assert!(find_blocks("<!-- options:end -->\n").unwrap_err().contains("without a begin"));
        assert!(find_blocks("<!-- options:begin a -->\n<!-- options:begin b -->\n").unwrap_err().contains("inside"));
    }
}
