//! The subset of Go's `text/template` that Packer templates use in shell provisioner options:
//! `{{ .Name }}`, ``{{ build `Name` }}`` / `{{ build "Name" }}`, ``{{ user `name` }}``, and the
//! whitespace-trimming markers `{{-` / `-}}`.
//!
//! Anything else inside `{{ }}` is rejected when the template is parsed (at `Prepare`), so a
//! typo is reported before the build starts rather than rendered as `<no value>`.

use std::collections::BTreeMap;

/// A problem parsing or rendering a template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `{{` without its closing `}}`.
    #[error("template action opened at byte {0} is never closed: add the missing `}}}}`")]
    Unclosed(usize),
    /// An action this implementation does not understand.
    #[error(
        "unsupported template action `{{{{{0}}}}}`: use `{{{{ .Name }}}}`, `{{{{ build `Name` }}}}` or `{{{{ user `name` }}}}`"
    )]
    Unsupported(String),
    /// A variable the template refers to has no value.
    #[error("template variable `{name}` is not defined; available: {available}")]
    Undefined {
        /// The variable as written (`.Foo`, ``build `Foo` ``, …).
        name: String,
        /// The names that are defined, comma-separated.
        available: String,
    },
}

/// Where an action takes its value from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// `{{ .Name }}` or `{{ build "Name" }}`: the template data (build data, `Path`, `Vars`…).
    Data(String),
    /// `{{ user "name" }}`: a user variable of a JSON template.
    User(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Text(String),
    Action { lookup: Lookup, source: String },
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    nodes: Vec<Node>,
}

/// The values a template is rendered with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateData {
    /// Values of `{{ .Name }}` / `{{ build "Name" }}`.
    pub data: BTreeMap<String, String>,
    /// Values of `{{ user "name" }}`.
    pub user: BTreeMap<String, String>,
}

impl TemplateData {
    /// Builds template data from Packer's generated-data map (`Host`, `Port`, `PackerHTTPAddr`…):
    /// strings are used as they are, numbers and booleans in their JSON spelling, nulls as "".
    pub fn from_generated(generated: &serde_json::Map<String, serde_json::Value>) -> Self {
        let data = generated.iter().map(|(k, v)| (k.clone(), value_to_string(v))).collect();
        TemplateData { data, user: BTreeMap::new() }
    }
}

/// The text of a JSON value as a template inserts it.
pub fn value_to_string(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl Template {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut nodes = Vec::new();
        let mut rest = text;
        let mut offset = 0;
        let mut trim_next_text = false;
        while let Some(start) = rest.find("{{") {
            let mut before = &rest[..start];
            if trim_next_text {
                before = before.trim_start();
            }
            let after_open = &rest[start + 2..];
            let Some(end) = after_open.find("}}") else {
                return Err(TemplateError::Unclosed(offset + start));
            };
            let mut inner = &after_open[..end];
            if inner.starts_with("- ") || inner == "-" {
                before = before.trim_end();
                inner = &inner[1..];
            }
            trim_next_text = false;
            if inner.ends_with(" -") {
                trim_next_text = true;
                inner = &inner[..inner.len() - 1];
            }
            if !before.is_empty() {
                nodes.push(Node::Text(before.to_string()));
            }
            let lookup = parse_action(inner.trim()).ok_or_else(|| TemplateError::Unsupported(inner.to_string()))?;
            nodes.push(Node::Action { lookup, source: inner.trim().to_string() });
            let consumed = start + 2 + end + 2;
            offset += consumed;
            rest = &rest[consumed..];
        }
        let tail = if trim_next_text { rest.trim_start() } else { rest };
        if !tail.is_empty() {
            nodes.push(Node::Text(tail.to_string()));
        }
        Ok(Template { nodes })
    }

    /// Every variable the template refers to, in order.
    pub fn lookups(&self) -> impl Iterator<Item = &Lookup> {
        self.nodes.iter().filter_map(|n| match n {
            Node::Action { lookup, .. } => Some(lookup),
            Node::Text(_) => None,
        })
    }

    /// Renders the template; every variable it refers to must be defined in `values`.
    pub fn render(&self, values: &TemplateData) -> Result<String, TemplateError> {
        let mut out = String::new();
        for node in &self.nodes {
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Action { lookup, source } => {
                    let (map, kind) = match lookup {
                        Lookup::Data(name) => (&values.data, name),
                        Lookup::User(name) => (&values.user, name),
                    };
                    match map.get(kind) {
                        Some(v) => out.push_str(v),
                        None => {
                            let available = if map.is_empty() {
                                "none".to_string()
                            } else {
                                map.keys().cloned().collect::<Vec<_>>().join(", ")
                            };
                            return Err(TemplateError::Undefined { name: source.clone(), available });
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Parses the inside of `{{ }}` (already trimmed).
fn parse_action(inner: &str) -> Option<Lookup> {
    if let Some(name) = inner.strip_prefix('.') {
        return is_identifier(name).then(|| Lookup::Data(name.to_string()));
    }
    let (func, arg) = inner.split_once(char::is_whitespace)?;
    let arg = unquote(arg.trim())?;
    match func {
        "build" => Some(Lookup::Data(arg)),
        "user" => Some(Lookup::User(arg)),
        _ => None,
    }
}

/// Go string literal in backquotes or double quotes (without escapes inside double quotes).
fn unquote(s: &str) -> Option<String> {
    let body = s
        .strip_prefix('`')
        .and_then(|r| r.strip_suffix('`'))
        .or_else(|| s.strip_prefix('"').and_then(|r| r.strip_suffix('"')))?;
    if body.contains(['"', '`', '\\']) {
        return None;
    }
    Some(body.to_string())
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> TemplateData {
        TemplateData {
            data: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            user: BTreeMap::new(),
        }
    }

    #[test]
    fn renders_fields_and_build_calls() {
        let t = Template::parse("chmod +x {{.Path}}; {{ .Vars }}{{ build `Path` }} {{build \"Host\"}}!").unwrap();
        let out = t.render(&data(&[("Path", "/tmp/s.sh"), ("Vars", "A='1' "), ("Host", "h")])).unwrap();
        assert_eq!(out, "chmod +x /tmp/s.sh; A='1' /tmp/s.sh h!");
    }

    #[test]
    fn trim_markers_remove_adjacent_whitespace() {
        let t = Template::parse("a  {{- .X -}}  \n b").unwrap();
        assert_eq!(t.render(&data(&[("X", "x")])).unwrap(), "axb");
    }

    #[test]
    fn user_variables() {
        let t = Template::parse("{{ user `name` }}").unwrap();
        let mut d = TemplateData::default();
        d.user.insert("name".into(), "v".into());
        assert_eq!(t.render(&d).unwrap(), "v");
    }

    #[test]
    fn text_without_actions_is_unchanged() {
        let s = "echo 'a b' \"$HOME\" } { }";
        assert_eq!(Template::parse(s).unwrap().render(&TemplateData::default()).unwrap(), s);
    }

    #[test]
    fn unsupported_and_unclosed_actions_are_errors() {
        assert!(matches!(Template::parse("{{ env `HOME` }}"), Err(TemplateError::Unsupported(_))));
        assert!(matches!(Template::parse("{{ .Path | printf }}"), Err(TemplateError::Unsupported(_))));
        assert_eq!(Template::parse("x {{ .Path"), Err(TemplateError::Unclosed(2)));
    }

    #[test]
    fn undefined_variable_names_what_is_available() {
        let t = Template::parse("{{ .Hots }}").unwrap();
        let err = t.render(&data(&[("Host", "h"), ("Port", "22")])).unwrap_err();
        assert_eq!(err.to_string(), "template variable `.Hots` is not defined; available: Host, Port");
    }

    #[test]
    fn lookups_lists_references() {
        let t = Template::parse("{{.A}} {{ build `B` }} {{ user `c` }}").unwrap();
        let l: Vec<_> = t.lookups().cloned().collect();
        assert_eq!(l, vec![Lookup::Data("A".into()), Lookup::Data("B".into()), Lookup::User("c".into())]);
    }
}
