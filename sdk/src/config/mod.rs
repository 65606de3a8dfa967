//! Decoding the raw configs Packer core sends to `Prepare` into typed structs.
//!
//! JSON templates send msgpack maps ([`RawConfig::Map`]); HCL2 templates send a map of
//! `packer_*` variables plus a cty-JSON blob ([`RawConfig::CtyJson`]). They are merged in order.
//! Every problem is collected into [`ConfigErrors`] and reported at once.

use std::collections::BTreeMap;
use std::fmt;

pub mod docs;
mod duration;
mod macros;
mod size;
pub mod suggest;
pub mod template;
mod value;

pub use docs::{DocSection, OptionDoc};
pub use duration::{Duration, DurationError};
pub use size::{Size, SizeError};
pub use value::{describe, shape_label, ConfigValue, Secret, Shape};

/// A JSON object, as merged from the raw configs.
pub type JsonMap = serde_json::Map<String, serde_json::Value>;
/// A JSON value (re-exported for [`packer_config!`](crate::packer_config)).
pub use serde_json::Value as JsonValue;

use crate::hcl::ObjectSpec;

/// One element of `Prepare`'s `Configs` list.
#[derive(Debug, Clone, PartialEq)]
pub enum RawConfig {
    /// A plain map (JSON template config, `packer_*` variables, overrides).
    Map(serde_json::Map<String, serde_json::Value>),
    /// A cty-JSON document `{"value": …, "type": …}` (HCL2 templates).
    CtyJson(Vec<u8>),
}

/// One problem in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The option concerned (`None` for problems not tied to one option).
    pub option: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.option {
            Some(o) => write!(f, "{o}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// No errors yet.
    pub fn new() -> Self {
        Self::default()
    }
    /// Records a problem with `option`.
    pub fn push(&mut self, option: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError { option: Some(option.into()), message: message.into() });
    }
    /// Records a problem not tied to one option.
    pub fn push_general(&mut self, message: impl Into<String>) {
        self.0.push(ConfigError { option: None, message: message.into() });
    }
    /// Whether no problem was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Appends every problem of `other`.
    pub fn extend(&mut self, other: ConfigErrors) {
        self.0.extend(other.0);
    }
    /// Number of problems recorded.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether some problem concerns `option` (exactly, or a nested path under it such as
    /// `option[0]` / `option.x`), or a general message mentions it in quotes.
    pub fn mentions(&self, option: &str) -> bool {
        let quoted = format!("{option:?}");
        self.0.iter().any(|e| match &e.option {
            Some(o) => {
                o == option || o.strip_prefix(option).is_some_and(|rest| rest.starts_with('[') || rest.starts_with('.'))
            }
            None => e.message.contains(&quoted),
        })
    }
    /// `Ok(value)` if no problem was recorded, else `Err(self)`.
    pub fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ConfigErrors {
    /// Packer's `MultiError` layout: `N error(s) occurred:\n\n* a\n\n* b` (each error prefixed
    /// with `* `, errors separated by a blank line).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error(s) occurred:\n\n", self.0.len())?;
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n\n")?;
            }
            write!(f, "* {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// A configuration type described with [`packer_config!`](crate::packer_config).
pub trait ConfigStruct: Sized {
    /// The HCL2 ConfigSpec of the options (without the `packer_*` common ones).
    fn config_spec() -> ObjectSpec;
    /// Decodes a merged map, reporting every problem.
    fn decode_map(map: &JsonMap) -> Result<Self, ConfigErrors>;
    /// Decodes a merged map as far as possible: options with problems keep their default and
    /// the problems are recorded in `errors`.
    fn decode_partial(map: &JsonMap, errors: &mut ConfigErrors) -> Self;
    /// The documentation of every option, in declaration order (see [`docs`]).
    fn option_docs() -> Vec<OptionDoc>;
}

crate::packer_config! {
    /// The `packer_*` options Packer core adds to every component's configuration.
    #[derive(Debug, Clone, Default, PartialEq)]
    pub struct PackerCommon {
        /// `packer_build_name`: the build's name (`source.name`, or the builder `name`/type in JSON).
        pub build_name: String => "packer_build_name",
        /// `packer_builder_type`: the builder type (`qemu-rs`).
        pub builder_type: String => "packer_builder_type",
        /// `packer_core_version`: version of Packer core (absent with Packer 1.6.6 HCL2).
        pub core_version: String => "packer_core_version",
        /// `packer_debug`: `-debug` was given (HCL2 sends the string `"true"`/`"false"`).
        pub debug: bool => "packer_debug",
        /// `packer_force`: `-force` was given.
        pub force: bool => "packer_force",
        /// `packer_on_error`: the `-on-error` choice (`cleanup`, `abort`, `ask`, `run-cleanup-provisioner`, or empty).
        pub on_error: String => "packer_on_error",
        /// `packer_template_path`: absolute path of the template (JSON templates).
        pub template_path: String => "packer_template_path",
        /// `packer_user_variables`: the template's user variables.
        pub user_variables: BTreeMap<String, String> => "packer_user_variables",
        /// `packer_sensitive_variables`: names of variables whose values must never be logged.
        pub sensitive_variables: Vec<String> => "packer_sensitive_variables",
    }
}

/// The error for a string that is not one of `values`:
/// `unknown value "x"; use one of "a", "b" (did you mean "a"?)`.
pub fn unknown_value_message(input: &str, values: &[&str]) -> String {
    let list = values.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(", ");
    match suggest::closest(input, values.iter().copied()) {
        Some(s) => format!("unknown value {input:?}; use one of {list} (did you mean {s:?}?)"),
        None => format!("unknown value {input:?}; use one of {list}"),
    }
}

/// Joins an option prefix (`""` or `"block."`) and a key.
pub fn join_option(prefix: &str, key: &str) -> String {
    format!("{prefix}{key}")
}

/// Records an "unknown option" error for every key of `map` not in `known` (at top level,
/// i.e. `prefix == ""`, the [`PackerCommon`] keys are known too), with a suggestion of a close
/// known name when there is one.
pub fn report_unknown_keys(prefix: &str, map: &JsonMap, known: &[&str], errors: &mut ConfigErrors) {
    for key in map.keys() {
        if known.contains(&key.as_str()) || (prefix.is_empty() && PackerCommon::KEYS.contains(&key.as_str())) {
            continue;
        }
        let full = join_option(prefix, key);
        let message = match suggest::closest(key, known.iter().copied()) {
            Some(s) => format!("unknown option {full:?}; did you mean {:?}?", join_option(prefix, s)),
            None => format!("unknown option {full:?}; remove it (see the documentation for the supported options)"),
        };
        errors.push_general(message);
    }
}

/// Merges `src` into `dst` key by key: null values are "unset" and never override; objects are
/// merged recursively (like mapstructure decoding into an existing struct/map); anything else
/// replaces the earlier value.
fn merge_into(dst: &mut JsonMap, src: &JsonMap) {
    for (k, v) in src {
        match v {
            serde_json::Value::Null => {}
            serde_json::Value::Object(inner) => match dst.get_mut(k) {
                Some(serde_json::Value::Object(existing)) => merge_into(existing, inner),
                _ => {
                    let mut fresh = JsonMap::new();
                    merge_into(&mut fresh, inner);
                    dst.insert(k.clone(), serde_json::Value::Object(fresh));
                }
            },
            other => {
                dst.insert(k.clone(), other.clone());
            }
        }
    }
}

/// Extracts the attribute map of a go-cty JSON document `{"value": {...}, "type": [...]}`.
pub fn parse_cty_json(bytes: &[u8]) -> Result<JsonMap, String> {
    let doc: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        format!("the HCL2 configuration sent by Packer is not valid JSON ({e}); this is a bug, please report it")
    })?;
    match doc.get("value") {
        Some(serde_json::Value::Object(m)) => Ok(m.clone()),
        Some(serde_json::Value::Null) => Ok(JsonMap::new()),
        _ => Err("the HCL2 configuration sent by Packer is not a cty JSON object with a \"value\" key; \
                  this is a bug, please report it"
            .to_string()),
    }
}

/// Merges the raw configs of `Prepare` into one map, in order: later configs override earlier
/// ones key by key; null values (unset HCL2 attributes) never override.
pub fn merge_raw_configs(raws: &[RawConfig]) -> Result<JsonMap, ConfigErrors> {
    let mut out = JsonMap::new();
    let mut errors = ConfigErrors::new();
    for raw in raws {
        match raw {
            RawConfig::Map(m) => merge_into(&mut out, m),
            RawConfig::CtyJson(bytes) => match parse_cty_json(bytes) {
                Ok(m) => merge_into(&mut out, &m),
                Err(e) => errors.push_general(e),
            },
        }
    }
    errors.into_result(out)
}

/// If the last raw config is the generated-data placeholder map Packer appends for provisioners
/// of JSON templates (it has a `PackerRunUUID` key), splits it off (like the Go SDK's
/// `DetectContextData`): it is template data, not options.
pub fn split_generated_data(raws: &[RawConfig]) -> (&[RawConfig], Option<JsonMap>) {
    match raws.split_last() {
        Some((RawConfig::Map(m), rest)) if m.contains_key("PackerRunUUID") => (rest, Some(m.clone())),
        _ => (raws, None),
    }
}

/// The result of [`decode_raw_configs`].
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded<T> {
    /// The component's options.
    pub config: T,
    /// The `packer_*` options.
    pub common: PackerCommon,
    /// The generated-data placeholder map, when Packer sent one (JSON templates, provisioners).
    pub generated_data: Option<JsonMap>,
    /// The context the option values were rendered with (user variables, build name…), for the
    /// options the component renders later itself.
    pub context: template::Context,
    /// Things the user should know that are not errors (an undefined user variable rendered as "").
    pub warnings: Vec<String>,
}

/// What template data (`{{ .Name }}`, `{{ build `Name` }}`) means in the options that are not
/// excluded (see [`DecodeOptions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldData {
    /// There is none: using it is an error with this explanation (for example which options do
    /// have data). Packer would insert `<no value>`, which is never what the template meant.
    Unavailable(String),
    /// The component renders these options again later with its data (the shell provisioner
    /// renders `inline` with the build's data): data references are kept as template text.
    Deferred,
}

/// How [`decode_raw_configs_with`] renders the Go templates in option values, like the Go SDK's
/// `config.DecodeOpts` (`Interpolate: true` with an `InterpolateFilter`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeOptions<'a> {
    /// Top-level options the component renders later itself with its own data (the builder's
    /// `boot_command` and `qemuargs`, the shell provisioner's `execute_command`): their function
    /// calls (`user`, `timestamp`…) are rendered now, their data references are kept as template
    /// text, and a template syntax error in them is left for the component's validation.
    pub exclude: &'a [&'a str],
    /// Template data in the other options.
    pub data: FieldData,
}

impl Default for DecodeOptions<'_> {
    fn default() -> Self {
        DecodeOptions {
            exclude: &[],
            data: FieldData::Unavailable("template data such as {{ .Name }} is not available in this option".into()),
        }
    }
}

/// Merges the raw configs of `Prepare` and decodes them into `T` and [`PackerCommon`],
/// rendering templates with the default [`DecodeOptions`] and reporting every problem (bad cty
/// JSON, templates, unknown options, wrong types) at once.
pub fn decode_raw_configs<T: ConfigStruct>(raws: &[RawConfig]) -> Result<Decoded<T>, ConfigErrors> {
    let (decoded, errors) = decode_raw_configs_with::<T>(raws, &DecodeOptions::default());
    errors.into_result(decoded)
}

/// The template context of the `packer_*` options: user variables (only when Packer sent them:
/// JSON templates), build name and type, template path, Packer version; `env` not allowed.
pub fn template_context(common: &PackerCommon, has_user_variables: bool) -> template::Context {
    template::Context {
        user_variables: has_user_variables.then(|| common.user_variables.clone()),
        build_name: common.build_name.clone(),
        build_type: common.builder_type.clone(),
        template_path: common.template_path.clone(),
        packer_version: common.core_version.clone(),
        enable_env: false,
    }
}

/// Renders every string (and map key) of `value`, which is option `path`, recording problems.
/// An `excluded` option is rendered for a later rendering by the component
/// ([`template::Template::render_for_later`]) and its syntax errors are left to the component.
fn render_value(
    path: &str,
    value: &mut serde_json::Value,
    ctx: &template::Context,
    data: &template::Data,
    excluded: bool,
    errors: &mut ConfigErrors,
    unset: &mut Vec<(String, String)>,
) {
    match value {
        serde_json::Value::String(s) => {
            if !s.contains("{{") {
                return;
            }
            let parsed = match template::Template::parse(s) {
                Ok(t) => t,
                // Excluded options are validated by the component, which parses them again.
                Err(_) if excluded => return,
                Err(e) => return errors.push(path, e.to_string()),
            };
            let rendered = if excluded { parsed.render_for_later(ctx) } else { parsed.render_with(ctx, data) };
            match rendered {
                Ok(r) => {
                    unset.extend(r.unset_user_variables.into_iter().map(|v| (path.to_string(), v)));
                    *s = r.text;
                }
                Err(e) => errors.push(path, e.to_string()),
            }
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                render_value(&format!("{path}[{i}]"), item, ctx, data, excluded, errors, unset);
            }
        }
        serde_json::Value::Object(map) => {
            let entries = std::mem::take(map);
            for (k, mut v) in entries {
                let mut key = serde_json::Value::String(k.clone());
                render_value(&format!("{path}.{k}"), &mut key, ctx, data, excluded, errors, unset);
                render_value(&format!("{path}.{k}"), &mut v, ctx, data, excluded, errors, unset);
                let key = match key {
                    serde_json::Value::String(s) => s,
                    _ => k,
                };
                map.insert(key, v);
            }
        }
        _ => {}
    }
}

/// What [`interpolate_map`] found besides errors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interpolated {
    /// Things the user should know that are not errors.
    pub warnings: Vec<String>,
    /// The options whose templates failed (they keep their unrendered text).
    pub failed_options: Vec<String>,
}

/// Renders the Go templates in every option of `map` (not the `packer_*` ones) as the Go SDK's
/// `config.Decode` does before decoding; see [`DecodeOptions`].
pub fn interpolate_map(
    map: &mut JsonMap,
    ctx: &template::Context,
    options: &DecodeOptions<'_>,
    errors: &mut ConfigErrors,
) -> Interpolated {
    let data = match &options.data {
        FieldData::Unavailable(hint) => template::Data::Unavailable(hint.clone()),
        FieldData::Deferred => template::Data::Deferred,
    };
    let mut unset = Vec::new();
    let mut failed = Vec::new();
    for (key, value) in map.iter_mut() {
        let before = errors.len();
        // Packer matches the excluded keys case-insensitively.
        let excluded = options.exclude.iter().any(|e| e.eq_ignore_ascii_case(key));
        if excluded {
            render_value(key, value, ctx, &template::Data::Deferred, true, errors, &mut unset);
        } else {
            render_value(key, value, ctx, &data, false, errors, &mut unset);
        }
        if errors.len() > before {
            failed.push(key.clone());
        }
    }
    let mut warnings: Vec<String> = Vec::new();
    for (option, var) in unset {
        let w = format!(
            "{option}: user variable {var:?} is not defined, so {{{{ user `{var}` }}}} is rendered as an empty \
             string (as Packer does); declare it in the template's variables section"
        );
        if !warnings.contains(&w) {
            warnings.push(w);
        }
    }
    Interpolated { warnings, failed_options: failed }
}

/// Merges the raw configs of `Prepare`, renders their templates as `options` say and decodes
/// them into `T` and [`PackerCommon`] as far as possible: the result holds every option that
/// decoded (defaults for the others) together with every problem found, so that a component
/// can validate what it has and report all problems at once.
pub fn decode_raw_configs_with<T: ConfigStruct>(
    raws: &[RawConfig],
    options: &DecodeOptions<'_>,
) -> (Decoded<T>, ConfigErrors) {
    let (raws, generated_data) = split_generated_data(raws);
    let mut errors = ConfigErrors::new();
    let mut map = merge_raw_configs(raws).unwrap_or_else(|e| {
        errors.extend(e);
        JsonMap::new()
    });
    let mut common_map = JsonMap::new();
    for key in PackerCommon::KEYS {
        if let Some(v) = map.remove(*key) {
            common_map.insert(key.to_string(), v);
        }
    }
    let common = PackerCommon::decode_fields("", &common_map, &mut errors);
    let has_user_variables = common_map.get("packer_user_variables").is_some_and(|v| !v.is_null());
    let context = template_context(&common, has_user_variables);
    let interpolated = interpolate_map(&mut map, &context, options, &mut errors);
    // An option whose template failed keeps its text (so the component still sees it is set);
    // what decoding says about that text is not reported a second time.
    let mut decode_errors = ConfigErrors::new();
    let config = T::decode_partial(&map, &mut decode_errors);
    for e in decode_errors.0 {
        let again = e.option.as_deref().is_some_and(|o| {
            interpolated
                .failed_options
                .iter()
                .any(|f| o == f || o.strip_prefix(f.as_str()).is_some_and(|r| r.starts_with('[') || r.starts_with('.')))
        });
        if !again {
            errors.0.push(e);
        }
    }
    (Decoded { config, common, generated_data, context, warnings: interpolated.warnings }, errors)
}

/// `spec` followed by the attributes of the `packer_*` common options (what Packer's generated
/// `FlatConfig` specs contain), for a component's `ConfigSpec`.
pub fn spec_with_common(mut spec: ObjectSpec) -> ObjectSpec {
    for (k, s) in PackerCommon::config_spec().entries {
        if spec.get(&k).is_none() {
            spec.entries.push((k, s));
        }
    }
    spec
}

#[cfg(test)]
mod tests;
