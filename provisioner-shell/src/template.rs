//! Go-template rendering of the shell provisioner's options at provision time (`inline`, `env`,
//! `environment_vars`, `execute_command`), with the build's data: `{{ .Host }}`,
//! ``{{ build `Host` }}``, plus every function of the SDK's engine
//! ([`packer_sdk::config::template`]).
//!
//! Config decoding has already rendered the function calls (``{{ user `name` }}``, `timestamp`…)
//! and kept the data references; this renders what is left with the data.

use std::collections::BTreeMap;

use packer_sdk::config::template::{self as sdk, Data, Reference};

pub use sdk::TemplateError;

/// Where an action takes its value from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// `{{ .Name }}` or `{{ build "Name" }}`: the template data (build data, `Path`, `Vars`…).
    Data(String),
    /// `{{ user "name" }}`: a user variable of a JSON template.
    User(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(sdk::Template);

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
        sdk::Template::parse(text).map(Template)
    }

    /// Every data and user variable the template refers to, in order of first use.
    pub fn lookups(&self) -> Vec<Lookup> {
        self.0
            .references()
            .into_iter()
            .filter_map(|r| match r {
                Reference::Data(n) => Some(Lookup::Data(n)),
                Reference::User(n) => Some(Lookup::User(n)),
                Reference::Func(_) => None,
            })
            .collect()
    }

    /// Renders the template; every data variable it refers to must be defined in `values`.
    pub fn render(&self, values: &TemplateData) -> Result<String, TemplateError> {
        let ctx = sdk::Context { user_variables: Some(values.user.clone()), ..sdk::Context::default() };
        self.0.render_with(&ctx, &Data::strings(&values.data)).map(|r| r.text)
    }
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
    fn trim_markers_functions_and_pipelines() {
        let t = Template::parse("a  {{- .X -}}  \n b {{ .X | upper }} {{ printf \"%s-%s\" .X `y` }}").unwrap();
        assert_eq!(t.render(&data(&[("X", "x")])).unwrap(), "axb X x-y");
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
    fn env_unknown_functions_and_unclosed_actions_are_errors() {
        let e = Template::parse("{{ env `HOME` }}").unwrap().render(&TemplateData::default()).unwrap_err();
        assert!(e.to_string().contains("env vars are not allowed here"), "{e}");
        assert!(matches!(Template::parse("{{ .Path | shout }}"), Err(TemplateError::Syntax { .. })));
        assert_eq!(Template::parse("x {{ .Path"), Err(TemplateError::Unclosed(2)));
    }

    #[test]
    fn undefined_variable_names_what_is_available() {
        let t = Template::parse("{{ .Hots }}").unwrap();
        let err = t.render(&data(&[("Host", "h"), ("Port", "22")])).unwrap_err();
        assert_eq!(err.to_string(), "unknown template variable \".Hots\"; available here: .Host, .Port");
        let err = Template::parse("{{ build `Hots` }}").unwrap().render(&data(&[("Host", "h")])).unwrap_err();
        assert!(err.to_string().contains(".Hots"), "{err}");
    }

    #[test]
    fn lookups_lists_references() {
        let t = Template::parse("{{.A}} {{ build `B` }} {{ user `c` }} {{ upper .A }}").unwrap();
        assert_eq!(t.lookups(), vec![Lookup::Data("A".into()), Lookup::Data("B".into()), Lookup::User("c".into())]);
    }
}
