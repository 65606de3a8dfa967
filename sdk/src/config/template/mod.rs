//! Go `text/template` rendering of option values, as Packer's Go SDK does it
//! (`template/interpolate`): `{{ user `disk_size` }}`, `{{ .HTTPIP }}`,
//! `{{ isotime "20060102" | upper }}`, `{{ if eq (user `x`) "1" }}…{{ end }}`.
//!
//! Supported: actions, comments `{{/* */}}`, trim markers `{{- -}}`, pipelines `a | b`, commands
//! with arguments, string literals (`"…"` with Go escapes, raw `` `…` ``), character constants,
//! numbers, bools, `nil`, parenthesised pipelines, fields `.X.Y` of map-like data, `.`, variables
//! (`$x := …`, `$`), and `if`/`else`/`else if`/`with`/`else with`/`range`/`end`. Functions: Go's
//! builtins (`and or not len index print printf println html js urlquery eq ne lt le gt ge`) and
//! Packer's (`user env timestamp isotime strftime uuid pwd template_dir build_name build_type
//! packer_version build split replace replace_all upper lower clean_resource_name`); `consul_key`,
//! `vault`, `aws_secretsmanager`, `aws_secretsmanager_raw` and `sed` are known but give an error
//! saying they are not available in qemu-rs. `define`/`template`/`block` are rejected.
//!
//! # Why an own engine and not the `gtmpl` crate
//!
//! `gtmpl` (0.7.1, "Go templates for Rust") was evaluated first. Its function type is
//! `gtmpl_value::Func = fn(&[Value]) -> Result<Value, FuncError>`: a bare `fn` pointer that cannot
//! capture anything, so `user`, `build_name`, `template_dir` and `env`-allowed-or-not — which
//! depend on the build being prepared — could only be fed through process-global state (and tests
//! run builds in parallel threads). It also cannot leave the data references of `boot_command` or
//! `qemuargs` for later while computing the function calls now ([`Data::Deferred`], which config
//! decoding needs), and its last release is from August 2021 (thiserror 1, lazy_static). The
//! subset Packer templates use is small enough to implement here with Go's semantics and with
//! error messages that name the problem.
//!
//! # Data
//!
//! [`Data`] says what `.Field` (and `build "Field"`) refer to: a value (boot command variables at
//! run time), [`Data::Deferred`] (config decoding of options the component renders later: the data
//! references are written back as template text, every computable part replaced by its value), or
//! [`Data::Unavailable`] (options with no data at all: using `.Field` is an error with the hint).

use std::collections::BTreeMap;
use std::fmt::Write as _;

mod exec;
mod funcs;
mod gotime;
mod parse;
mod value;

pub use gotime::{format_go, format_strftime, init_time};
pub use value::Value;

use parse::{Arg, Node, Pipe};

/// Why a template could not be parsed or rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{{` without a matching `}}`.
    #[error("unclosed template action starting at byte {0}: add the closing \"}}}}\"")]
    Unclosed(usize),
    /// A syntax error (unknown function, bad literal, missing `{{ end }}`…).
    #[error("template syntax error at byte {offset}: {message}")]
    Syntax {
        /// Byte offset in the template.
        offset: usize,
        /// What is wrong.
        message: String,
    },
    /// A variable not in the render data (or not allowed for this option).
    #[error("unknown template variable \".{name}\"; available here: {available}")]
    UnknownVariable {
        /// The variable name, without the dot.
        name: String,
        /// The variables that are available (`.A, .B`), or `none`.
        available: String,
    },
    /// An action failed while rendering (a function error, a wrong type…).
    #[error("{action}: {message}")]
    Exec {
        /// The action, as written (`{{ env `HOME` }}`).
        action: String,
        /// What went wrong.
        message: String,
    },
}

/// What a template is rendered with besides its data: the values behind Packer's functions.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// `packer_user_variables` (`user`); `None` when Packer sent none (HCL2 templates), which
    /// makes `user` an error.
    pub user_variables: Option<BTreeMap<String, String>>,
    /// `packer_build_name` (`build_name`).
    pub build_name: String,
    /// `packer_builder_type` (`build_type`).
    pub build_type: String,
    /// `packer_template_path` (`template_dir`).
    pub template_path: String,
    /// `packer_core_version` (`packer_version`).
    pub packer_version: String,
    /// Whether `env` may be used (only the variables section, never a component's options) and
    /// whether an undefined user variable is an error rather than "".
    pub enable_env: bool,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // User variable values may be secrets: only their names are shown.
        f.debug_struct("Context")
            .field("user_variables", &self.user_variables.as_ref().map(|m| m.keys().collect::<Vec<_>>()))
            .field("build_name", &self.build_name)
            .field("build_type", &self.build_type)
            .field("template_path", &self.template_path)
            .field("packer_version", &self.packer_version)
            .field("enable_env", &self.enable_env)
            .finish()
    }
}

/// What `.Field`, `.` and `build "Field"` refer to.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// This value (usually a [`Value::Map`]); a missing field is an error listing the fields.
    Value(Value),
    /// Data only known later: the actions using it are kept as template text.
    Deferred,
    /// No data exists here: using it is an error with this explanation.
    Unavailable(String),
}

impl Data {
    /// Data from a map of strings.
    pub fn strings<K: AsRef<str>, V: AsRef<str>>(map: impl IntoIterator<Item = (K, V)>) -> Data {
        Data::Value(Value::Map(
            map.into_iter().map(|(k, v)| (k.as_ref().to_string(), Value::Str(v.as_ref().to_string()))).collect(),
        ))
    }
}

/// The result of [`Template::render_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The output (with deferred parts as template text when [`Data::Deferred`] was used).
    pub text: String,
    /// User variables that were used but are not defined (rendered as "", as Packer does).
    pub unset_user_variables: Vec<String>,
}

/// What a template refers to (see [`Template::references`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `.Name` on the data root, or `build "Name"`.
    Data(String),
    /// `user "name"` with a literal name.
    User(String),
    /// A call of this function.
    Func(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

impl Template {
    /// Parses `input`. Text outside `{{ }}` is kept verbatim.
    pub fn parse(input: &str) -> Result<Template, TemplateError> {
        Ok(Template { nodes: parse::parse(input)? })
    }

    /// Whether the template is plain text (no action at all).
    pub fn is_plain(&self) -> bool {
        self.nodes.iter().all(|n| matches!(n, Node::Text(_)))
    }

    /// Everything the template refers to, in order of first use.
    pub fn references(&self) -> Vec<Reference> {
        let mut out = Vec::new();
        refs_nodes(&self.nodes, true, &mut out);
        let mut seen = Vec::new();
        out.retain(|r| {
            let new = !seen.contains(r);
            if new {
                seen.push(r.clone());
            }
            new
        });
        out
    }

    /// The data variables the template references (`.Name` on the root and `build "Name"`), in
    /// order of first use, without the dot.
    pub fn variables(&self) -> Vec<String> {
        self.references()
            .into_iter()
            .filter_map(|r| match r {
                Reference::Data(n) => Some(n),
                _ => None,
            })
            .collect()
    }

    /// Checks that every referenced data variable is in `allowed` (names without the dot).
    pub fn check_variables(&self, allowed: &[&str]) -> Result<(), TemplateError> {
        match self.variables().into_iter().find(|v| !allowed.contains(&v.as_str())) {
            Some(name) => Err(TemplateError::UnknownVariable { name, available: list(allowed) }),
            None => Ok(()),
        }
    }

    /// Renders the template with `data` (keys are variable names without the dot) and an empty
    /// [`Context`].
    pub fn render(&self, data: &BTreeMap<&str, String>) -> Result<String, TemplateError> {
        self.render_with(&Context::default(), &Data::Value(exec::string_map(data))).map(|r| r.text)
    }

    /// Renders the template with the functions' context and the data.
    pub fn render_with(&self, ctx: &Context, data: &Data) -> Result<Rendered, TemplateError> {
        let (text, mut unset) = exec::Exec::new(ctx, data).run(&self.nodes, false)?;
        unset.dedup();
        Ok(Rendered { text, unset_user_variables: unset })
    }

    /// Renders the function calls now and keeps the data references, for a template that is
    /// rendered again later with its data (the builder's `boot_command`): the result is template
    /// text whose later rendering gives what one rendering with both would give — text that
    /// function calls returned is never interpreted as template code.
    pub fn render_for_later(&self, ctx: &Context) -> Result<Rendered, TemplateError> {
        let (text, mut unset) = exec::Exec::new(ctx, &Data::Deferred).run(&self.nodes, true)?;
        unset.dedup();
        Ok(Rendered { text, unset_user_variables: unset })
    }
}

/// Parses and renders `input` in one go.
pub fn render(input: &str, ctx: &Context, data: &Data) -> Result<Rendered, TemplateError> {
    Template::parse(input)?.render_with(ctx, data)
}

fn refs_nodes(nodes: &[Node], root: bool, out: &mut Vec<Reference>) {
    for n in nodes {
        match n {
            Node::Text(_) => {}
            Node::Action { pipe, .. } => refs_pipe(pipe, root, out),
            Node::If { pipe, then, otherwise, .. } => {
                refs_pipe(pipe, root, out);
                refs_nodes(then, root, out);
                refs_nodes(otherwise, root, out);
            }
            Node::With { pipe, then, otherwise, .. } | Node::Range { pipe, then, otherwise, .. } => {
                refs_pipe(pipe, root, out);
                refs_nodes(then, false, out);
                refs_nodes(otherwise, root, out);
            }
        }
    }
}

fn refs_pipe(pipe: &Pipe, root: bool, out: &mut Vec<Reference>) {
    for cmd in &pipe.cmds {
        if let Some(Arg::Func(name)) = cmd.args.first() {
            out.push(Reference::Func(name.clone()));
            match (name.as_str(), cmd.args.get(1)) {
                ("build", Some(Arg::Str(s))) => out.push(Reference::Data(s.clone())),
                ("user", Some(Arg::Str(s))) => out.push(Reference::User(s.clone())),
                _ => {}
            }
        }
        for arg in &cmd.args {
            match arg {
                Arg::Field(names) if root => out.push(Reference::Data(names[0].clone())),
                Arg::Var(v, names) if v == "$" && !names.is_empty() => out.push(Reference::Data(names[0].clone())),
                Arg::Func(name) => out.push(Reference::Func(name.clone())),
                Arg::Paren(p, _) => refs_pipe(p, root, out),
                _ => {}
            }
        }
    }
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        return "none".to_string();
    }
    names.iter().map(|n| format!(".{n}")).collect::<Vec<_>>().join(", ")
}

/// Go's `url.QueryEscape`: unreserved bytes (`A-Z a-z 0-9 - _ . ~`) kept, space → `+`, every
/// other byte → `%XX` (upper-case hex).
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
