//! The Go-template subset used inside option values: `{{ .HTTPIP }}`, `{{.Name}}`,
//! `{{ .SSHPublicKey | urlquery }}`, `{{- .X -}}` (whitespace trimming)…
//!
//! Only variable references (optionally piped through `urlquery`, `upper`, `lower`) are
//! supported; anything else (`{{ user ... }}`, `{{ if }}`, …) is reported by [`Template::parse`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Why a template could not be parsed or rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{{` without a matching `}}`.
    #[error("unclosed template action starting at byte {0}: add the closing \"}}}}\"")]
    Unclosed(usize),
    /// An action that is not a variable reference.
    #[error("unsupported template action \"{{{{{0}}}}}\": only variables like {{{{ .Name }}}}, optionally piped to urlquery, upper or lower, are supported here")]
    Unsupported(String),
    /// A pipe to a function we do not provide.
    #[error("unknown template function {0:?}: only urlquery, upper and lower are supported")]
    UnknownFunction(String),
    /// A variable not in the render data (or not allowed for this option).
    #[error("unknown template variable \".{name}\"; available here: {available}")]
    UnknownVariable {
        /// The variable name, without the dot.
        name: String,
        /// The variables that are available, comma-separated.
        available: String,
    },
}

/// A function a value is piped through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// Go's `urlquery` (`url.QueryEscape`).
    UrlQuery,
    /// Upper-case.
    Upper,
    /// Lower-case.
    Lower,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var { name: String, funcs: Vec<Func> },
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `input`. Text outside `{{ }}` is kept verbatim.
    pub fn parse(input: &str) -> Result<Template, TemplateError> {
        let mut parts: Vec<Part> = Vec::new();
        let mut rest = input;
        let mut offset = 0;
        let mut trim_next_text = false;
        while let Some(start) = rest.find("{{") {
            let mut text = &rest[..start];
            if trim_next_text {
                text = text.trim_start();
            }
            let inner_start = start + 2;
            let end = rest[inner_start..].find("}}").ok_or(TemplateError::Unclosed(offset + start))? + inner_start;
            let mut action = &rest[inner_start..end];
            // Go's trim markers: "{{- " and " -}}" (the dash must be followed/preceded by a space).
            if let Some(a) = action.strip_prefix("- ") {
                text = text.trim_end();
                action = a;
            } else if action == "-" {
                return Err(TemplateError::Unsupported(action.to_string()));
            }
            trim_next_text = false;
            if let Some(a) = action.strip_suffix(" -") {
                trim_next_text = true;
                action = a;
            }
            if !text.is_empty() {
                parts.push(Part::Text(text.to_string()));
            }
            parts.push(parse_action(action)?);
            offset += end + 2;
            rest = &rest[end + 2..];
        }
        let text = if trim_next_text { rest.trim_start() } else { rest };
        if !text.is_empty() {
            parts.push(Part::Text(text.to_string()));
        }
        Ok(Template { parts })
    }

    /// The variables the template references, in order of first use, without the dot.
    pub fn variables(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for p in &self.parts {
            if let Part::Var { name, .. } = p {
                if !out.contains(&name.as_str()) {
                    out.push(name);
                }
            }
        }
        out
    }

    /// Checks that every referenced variable is in `allowed` (names without the dot).
    pub fn check_variables(&self, allowed: &[&str]) -> Result<(), TemplateError> {
        match self.variables().into_iter().find(|v| !allowed.contains(v)) {
            Some(name) => Err(TemplateError::UnknownVariable { name: name.to_string(), available: list(allowed) }),
            None => Ok(()),
        }
    }

    /// Renders the template with `data` (keys are variable names without the dot).
    pub fn render(&self, data: &BTreeMap<&str, String>) -> Result<String, TemplateError> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var { name, funcs } => {
                    let mut v = data
                        .get(name.as_str())
                        .ok_or_else(|| TemplateError::UnknownVariable {
                            name: name.clone(),
                            available: list(&data.keys().copied().collect::<Vec<_>>()),
                        })?
                        .clone();
                    for f in funcs {
                        v = match f {
                            Func::UrlQuery => query_escape(&v),
                            Func::Upper => v.to_uppercase(),
                            Func::Lower => v.to_lowercase(),
                        };
                    }
                    out.push_str(&v);
                }
            }
        }
        Ok(out)
    }
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        return "none".to_string();
    }
    names.iter().map(|n| format!(".{n}")).collect::<Vec<_>>().join(", ")
}

fn parse_action(action: &str) -> Result<Part, TemplateError> {
    let unsupported = || TemplateError::Unsupported(action.to_string());
    let mut segments = action.split('|').map(str::trim);
    let head = segments.next().unwrap_or("");
    let name = head.strip_prefix('.').ok_or_else(unsupported)?;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(unsupported());
    }
    let mut funcs = Vec::new();
    for seg in segments {
        funcs.push(match seg {
            "urlquery" => Func::UrlQuery,
            "upper" => Func::Upper,
            "lower" => Func::Lower,
            "" => return Err(unsupported()),
            other => return Err(TemplateError::UnknownFunction(other.to_string())),
        });
    }
    Ok(Part::Var { name: name.to_string(), funcs })
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
mod tests {
    use super::*;

    fn data() -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("HTTPIP", "10.0.2.2".to_string()),
            ("HTTPPort", "8123".to_string()),
            ("Name", "packer-demo".to_string()),
            ("SSHPublicKey", "ssh-ed25519 AAAA+b/c= me@host\n".to_string()),
        ])
    }

    #[test]
    fn renders_variables_with_all_spacings() {
        let t = Template::parse("http://{{ .HTTPIP }}:{{.HTTPPort}}/{{  .Name  }}.cfg").unwrap();
        assert_eq!(t.render(&data()).unwrap(), "http://10.0.2.2:8123/packer-demo.cfg");
        assert_eq!(t.variables(), vec!["HTTPIP", "HTTPPort", "Name"]);
    }

    #[test]
    fn urlquery_matches_go_query_escape() {
        let t = Template::parse("key={{ .SSHPublicKey | urlquery }}").unwrap();
        assert_eq!(t.render(&data()).unwrap(), "key=ssh-ed25519+AAAA%2Bb%2Fc%3D+me%40host%0A");
        assert_eq!(query_escape("a~b-c_d.e é&"), "a~b-c_d.e+%C3%A9%26");
    }

    #[test]
    fn upper_lower_and_chains() {
        let t = Template::parse("{{ .Name | upper }} {{ .Name|upper|lower }}").unwrap();
        assert_eq!(t.render(&data()).unwrap(), "PACKER-DEMO packer-demo");
    }

    #[test]
    fn trim_markers() {
        let t = Template::parse("a   {{- .Name -}}   b").unwrap();
        assert_eq!(t.render(&data()).unwrap(), "apacker-demob");
    }

    #[test]
    fn plain_text_and_lone_braces() {
        let t = Template::parse("no actions } here { at all").unwrap();
        assert!(t.variables().is_empty());
        assert_eq!(t.render(&BTreeMap::new()).unwrap(), "no actions } here { at all");
    }

    #[test]
    fn errors() {
        assert_eq!(Template::parse("x {{ .Name").unwrap_err(), TemplateError::Unclosed(2));
        assert!(matches!(Template::parse("{{ user `x` }}"), Err(TemplateError::Unsupported(_))));
        assert!(matches!(Template::parse("{{ if .X }}"), Err(TemplateError::Unsupported(_))));
        assert!(matches!(Template::parse("{{ . }}"), Err(TemplateError::Unsupported(_))));
        assert!(matches!(Template::parse("{{ .A | }}"), Err(TemplateError::Unsupported(_))));
        assert_eq!(Template::parse("{{ .Name | shout }}").unwrap_err(), TemplateError::UnknownFunction("shout".into()));
        let t = Template::parse("{{ .HTTPAddr }}").unwrap();
        let err = t.render(&data()).unwrap_err();
        assert!(matches!(&err, TemplateError::UnknownVariable { name, .. } if name == "HTTPAddr"));
        assert!(err.to_string().contains(".HTTPIP"), "{err}");
    }

    #[test]
    fn check_variables_without_rendering() {
        let t = Template::parse("{{ .HTTPIP }} {{ .Path }}").unwrap();
        assert!(t.check_variables(&["HTTPIP", "Path"]).is_ok());
        let err = t.check_variables(&["HTTPIP"]).unwrap_err();
        assert_eq!(err, TemplateError::UnknownVariable { name: "Path".into(), available: ".HTTPIP".into() });
        assert_eq!(err.to_string(), "unknown template variable \".Path\"; available here: .HTTPIP");
    }
}
