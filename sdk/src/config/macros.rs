//! The [`packer_config!`](crate::packer_config) macro: describe a configuration once, get the
//! struct, its HCL2 ConfigSpec and its all-errors-at-once decoder.

/// Declares a configuration struct once and generates, from the same declaration:
///
/// - the struct itself (attributes and doc comments are kept);
/// - `KEYS`: the option names;
/// - `config_spec() -> ObjectSpec`: the HCL2 ConfigSpec (types from [`ConfigValue`](crate::config::ConfigValue));
/// - `decode(&JsonMap) -> Result<Self, ConfigErrors>`: decodes a merged config map, reporting
///   **every** problem: unknown options (with a "did you mean" suggestion), wrong types, each
///   naming the option. Keys of the `packer_*` family ([`PackerCommon`](crate::config::PackerCommon))
///   are never reported as unknown;
/// - `decode_fields(prefix, &JsonMap, &mut ConfigErrors) -> Self`: the same, collecting into `errors`;
/// - `option_docs() -> Vec<OptionDoc>`: the option reference, one
///   [`OptionDoc`](crate::config::OptionDoc) per option in declaration order: the option name,
///   the field's doc comment and its type label
///   ([`ConfigValue::type_label`](crate::config::ConfigValue::type_label)), from which
///   [`config::docs`](crate::config::docs) renders the documentation's option tables;
/// - impls of [`ConfigValue`](crate::config::ConfigValue) (so the struct can be nested as an HCL
///   block: `pub qemu_img_args: Option<QemuImgArgs> => "qemu_img_args"`) and
///   [`ConfigStruct`](crate::config::ConfigStruct) (for [`decode_raw_configs`](crate::config::decode_raw_configs)).
///
/// Every field type must implement [`ConfigValue`](crate::config::ConfigValue). An absent or
/// null option gets the field's default: `= expr` after the type (`pub headless: bool = true =>
/// "headless"`), else `Default::default()` (use `Option<T>` to tell "unset" apart). The `= expr`
/// defaults apply to decoding only, not to a derived `Default` impl of the struct.
/// Defaults and cross-field validation belong in the component's `prepare`, after decoding.
///
/// # Doc comments are the option reference
///
/// The `///` comment of a field stays an ordinary rustdoc comment on the struct field, and is
/// also the option's entry in the user documentation (`option_docs()`), so write it for template
/// authors. Its paragraphs are the description, except those starting with:
///
/// - `Default: …`: the default as the reference shows it (`—` when absent);
/// - `Type: …`: replaces the generated type label (`number (MiB)`, or an enum label without a
///   value the option rejects);
/// - `Internal: …`: a note for readers of the code only, left out of the reference.
///
/// Put them last. Field docs are one-line table cells in the reference: prose only, no lists,
/// code blocks or intra-doc links. See [`config::docs`](crate::config::docs) for the rest
/// (sections, generated blocks in Markdown pages).
///
/// # Example
///
/// ```
/// use std::collections::BTreeMap;
/// use packer_sdk::config::{decode_raw_configs, Duration, RawConfig};
///
/// packer_sdk::packer_config! {
///     /// The shell provisioner's configuration.
///     #[derive(Debug, Clone, Default, PartialEq)]
///     pub struct Config {
///         /// Commands to run.
///         pub inline: Vec<String> => "inline",
///         /// A script to upload and run.
///         pub script: Option<String> => "script",
///         /// Extra environment.
///         pub env: BTreeMap<String, String> => "env",
///         /// Accepted exit codes.
///         pub valid_exit_codes: Option<Vec<i64>> => "valid_exit_codes",
///         /// How long to retry starting the script.
///         ///
///         /// Default: `5m`
///         pub start_retry_timeout: Option<Duration> => "start_retry_timeout",
///         /// Accept a dropped connection.
///         pub expect_disconnect: bool => "expect_disconnect",
///     }
/// }
///
/// // The HCL2 schema, for `ConfigSpec`:
/// let spec = Config::config_spec();
/// assert!(spec.get("inline").is_some());
///
/// // Decoding what `Prepare` receives (JSON template: plain maps; HCL2: cty JSON blobs).
/// let raw = serde_json::json!({"inline": ["echo hi"], "expect_disconnect": "true",
///                              "start_retry_timeout": "1m30s", "packer_build_name": "demo"});
/// let decoded = decode_raw_configs::<Config>(&[RawConfig::Map(raw.as_object().unwrap().clone())]).unwrap();
/// assert_eq!(decoded.config.inline, vec!["echo hi".to_string()]);
/// assert!(decoded.config.expect_disconnect);
/// assert_eq!(decoded.config.start_retry_timeout, Some(Duration::from_secs(90)));
/// assert_eq!(decoded.common.build_name, "demo");
///
/// // Every problem at once, each naming the option:
/// let bad = serde_json::json!({"inlin": ["x"], "valid_exit_codes": ["abc"], "expect_disconnect": "maybe"});
/// let errs = decode_raw_configs::<Config>(&[RawConfig::Map(bad.as_object().unwrap().clone())]).unwrap_err();
/// assert_eq!(errs.0.len(), 3);
/// assert!(errs.to_string().contains("unknown option \"inlin\"; did you mean \"inline\"?"));
/// assert!(errs.to_string().contains("valid_exit_codes[0]: expected a whole number"));
///
/// // The option reference, from the doc comments and the types:
/// let docs = Config::option_docs();
/// assert_eq!(docs.len(), Config::KEYS.len());
/// assert_eq!(docs[4].key, "start_retry_timeout");
/// assert_eq!(docs[4].description, "How long to retry starting the script.");
/// assert_eq!(docs[4].type_label, "duration");
/// assert_eq!(docs[4].default.as_deref(), Some("`5m`"));
/// assert_eq!(docs[3].type_label, "list(number)");
/// assert_eq!(
///     packer_sdk::config::docs::render_section(&docs, &["env", "expect_disconnect"]).unwrap(),
///     "| Option | Type | Default | Notes |\n|---|---|---|---|\n\
///      | `env` | map(string) | — | Extra environment. |\n\
///      | `expect_disconnect` | bool | — | Accept a dropped connection. |\n"
/// );
/// ```
#[macro_export]
macro_rules! packer_config {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[$($fattr:tt)*])*
                $fvis:vis $field:ident : $ty:ty $(= $def:expr)? => $key:literal
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $(
                $(#[$($fattr)*])*
                $fvis $field: $ty,
            )*
        }

        impl $name {
            /// The option names this configuration accepts, in declaration order.
            pub const KEYS: &'static [&'static str] = &[$($key),*];

            /// The HCL2 ConfigSpec of this configuration (one entry per option).
            pub fn config_spec() -> $crate::hcl::ObjectSpec {
                let mut spec = $crate::hcl::ObjectSpec::new();
                $(
                    spec.entries.push((
                        ::std::string::String::from($key),
                        <$ty as $crate::config::ConfigValue>::spec_entry($key),
                    ));
                )*
                spec
            }

            /// The documentation of every option, in declaration order: the option name, the
            /// field's doc comment (read with the conventions of `packer_sdk::config::docs`) and
            /// its type label.
            pub fn option_docs() -> ::std::vec::Vec<$crate::config::OptionDoc> {
                ::std::vec![$(
                    $crate::config::OptionDoc::from_doc_lines(
                        $key,
                        &[$($crate::__packer_config_doc!($($fattr)*)),*],
                        <$ty as $crate::config::ConfigValue>::type_label(),
                    ),
                )*]
            }

            /// Decodes a merged config map, reporting every problem at once.
            pub fn decode(map: &$crate::config::JsonMap) -> ::std::result::Result<Self, $crate::config::ConfigErrors> {
                let mut errors = $crate::config::ConfigErrors::new();
                let value = Self::decode_fields("", map, &mut errors);
                errors.into_result(value)
            }

            /// Decodes a config map, recording problems in `errors` with option names prefixed by
            /// `prefix` (`""` at top level, `"block."`-style for nested blocks). Options with
            /// problems keep their default value.
            pub fn decode_fields(
                prefix: &str,
                map: &$crate::config::JsonMap,
                errors: &mut $crate::config::ConfigErrors,
            ) -> Self {
                $crate::config::report_unknown_keys(prefix, map, Self::KEYS, errors);
                Self {
                    $(
                        $field: match map.get($key) {
                            ::std::option::Option::None
                            | ::std::option::Option::Some($crate::config::JsonValue::Null) => {
                                $crate::__packer_config_default!($($def)?)
                            }
                            ::std::option::Option::Some(v) => <$ty as $crate::config::ConfigValue>::decode_at(
                                &$crate::config::join_option(prefix, $key),
                                v,
                                errors,
                            )
                            .unwrap_or_else(|| $crate::__packer_config_default!($($def)?)),
                        },
                    )*
                }
            }
        }

        impl $crate::config::ConfigValue for $name {
            fn shape() -> $crate::config::Shape {
                $crate::config::Shape::Block(Self::config_spec())
            }
            fn expected() -> ::std::string::String {
                ::std::string::String::from("a block (an object of options)")
            }
            fn decode(value: &$crate::config::JsonValue) -> ::std::result::Result<Self, ::std::string::String> {
                let mut errors = $crate::config::ConfigErrors::new();
                match <Self as $crate::config::ConfigValue>::decode_at("", value, &mut errors) {
                    ::std::option::Option::Some(v) if errors.is_empty() => ::std::result::Result::Ok(v),
                    _ => ::std::result::Result::Err(
                        errors.0.iter().map(|e| e.to_string()).collect::<::std::vec::Vec<_>>().join("; "),
                    ),
                }
            }
            fn decode_at(
                option: &str,
                value: &$crate::config::JsonValue,
                errors: &mut $crate::config::ConfigErrors,
            ) -> ::std::option::Option<Self> {
                match value {
                    $crate::config::JsonValue::Object(map) => {
                        let prefix = if option.is_empty() { ::std::string::String::new() } else { format!("{option}.") };
                        ::std::option::Option::Some(Self::decode_fields(&prefix, map, errors))
                    }
                    // A block list with one element, as cty sends single blocks from some cores.
                    $crate::config::JsonValue::Array(items) if items.len() == 1 && items[0].is_object() => {
                        <Self as $crate::config::ConfigValue>::decode_at(option, &items[0], errors)
                    }
                    other => {
                        errors.push(
                            option,
                            format!(
                                "expected {}, got {}",
                                <Self as $crate::config::ConfigValue>::expected(),
                                $crate::config::describe(other)
                            ),
                        );
                        ::std::option::Option::None
                    }
                }
            }
        }

        impl $crate::config::ConfigStruct for $name {
            fn config_spec() -> $crate::hcl::ObjectSpec {
                $name::config_spec()
            }
            fn decode_map(map: &$crate::config::JsonMap) -> ::std::result::Result<Self, $crate::config::ConfigErrors> {
                $name::decode(map)
            }
            fn decode_partial(map: &$crate::config::JsonMap, errors: &mut $crate::config::ConfigErrors) -> Self {
                $name::decode_fields("", map, errors)
            }
            fn option_docs() -> ::std::vec::Vec<$crate::config::OptionDoc> {
                $name::option_docs()
            }
        }
    };
}

/// The text of a `#[doc = …]` attribute of a [`packer_config!`](crate::packer_config) field, or
/// `None` for any other attribute.
#[doc(hidden)]
#[macro_export]
macro_rules! __packer_config_doc {
    (doc = $doc:expr) => {
        ::std::option::Option::Some($doc)
    };
    ($($other:tt)*) => {
        ::std::option::Option::None
    };
}

/// The default of a [`packer_config!`](crate::packer_config) field: the given expression, or
/// `Default::default()`.
#[doc(hidden)]
#[macro_export]
macro_rules! __packer_config_default {
    () => {
        ::std::default::Default::default()
    };
    ($e:expr) => {
        $e
    };
}

/// Declares a string-valued enum option: the enum, `VALUES`, `as_str()`, `from_name()`,
/// `Display`, `FromStr` and a [`ConfigValue`](crate::config::ConfigValue) impl whose error lists
/// the accepted values (with a "did you mean" suggestion). Derive `Default` with `#[default]`
/// on a variant yourself if you need it.
///
/// ```
/// packer_sdk::config_enum! {
///     /// Disk image format.
///     #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
///     pub enum Format {
///         /// qcow2
///         #[default]
///         Qcow2 => "qcow2",
///         /// raw
///         Raw => "raw",
///     }
/// }
/// use packer_sdk::config::ConfigValue;
/// assert_eq!(Format::decode(&serde_json::json!("raw")), Ok(Format::Raw));
/// let err = Format::decode(&serde_json::json!("qcow")).unwrap_err();
/// assert_eq!(err, "unknown value \"qcow\"; use one of \"qcow2\", \"raw\" (did you mean \"qcow2\"?)");
/// ```
#[macro_export]
macro_rules! config_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident => $value:literal
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $(
                $(#[$vmeta])*
                $variant,
            )+
        }

        impl $name {
            /// Every accepted value, in declaration order.
            pub const VALUES: &'static [&'static str] = &[$($value),+];

            /// The value as written in templates.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $( Self::$variant => $value, )+
                }
            }

            /// The variant named `name` (exact match, or ASCII case-insensitive).
            pub fn from_name(name: &str) -> ::std::option::Option<Self> {
                $(
                    if name == $value || name.eq_ignore_ascii_case($value) {
                        return ::std::option::Option::Some(Self::$variant);
                    }
                )+
                ::std::option::Option::None
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = ::std::string::String;
            fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {
                Self::from_name(s.trim()).ok_or_else(|| $crate::config::unknown_value_message(s, Self::VALUES))
            }
        }

        impl $crate::config::ConfigValue for $name {
            fn shape() -> $crate::config::Shape {
                $crate::config::Shape::Attr($crate::hcl::CtyType::String)
            }
            fn type_label() -> ::std::string::String {
                Self::VALUES.iter().map(|v| format!("`{v}`")).collect::<::std::vec::Vec<_>>().join(" | ")
            }
            fn expected() -> ::std::string::String {
                format!(
                    "one of {}",
                    Self::VALUES.iter().map(|v| format!("{v:?}")).collect::<::std::vec::Vec<_>>().join(", ")
                )
            }
            fn decode(value: &$crate::config::JsonValue) -> ::std::result::Result<Self, ::std::string::String> {
                match value {
                    $crate::config::JsonValue::String(s) => s.parse(),
                    other => ::std::result::Result::Err(format!(
                        "expected {}, got {}",
                        <Self as $crate::config::ConfigValue>::expected(),
                        $crate::config::describe(other)
                    )),
                }
            }
        }
    };
}
