//! The configuration of `provisioner "qemu-rs-shell"`: decoding the raw configs of
//! `Provisioner.Prepare`, defaults, and validation reporting every problem at once.
//!
//! Options and their semantics are those of Packer's `shell` provisioner (see
//! `docs/provisioners/shell.mdx`); `env_var_format` is rejected as not supported yet.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use packer_sdk::config::{self as sdkconfig, ConfigErrors, DecodeOptions, FieldData, PackerCommon, RawConfig};
use packer_sdk::hcl::ObjectSpec;
use rand::Rng;

use crate::env::is_valid_name;
use crate::template::{Lookup, Template};

/// `execute_command` when not set.
pub const DEFAULT_EXECUTE_COMMAND: &str = "chmod +x {{.Path}}; {{.Vars}} {{.Path}}";
/// `execute_command` when not set and `use_env_var_file = true`.
pub const DEFAULT_EXECUTE_COMMAND_ENV_FILE: &str = "chmod +x {{.Path}}; . {{.EnvVarFile}} && {{.Path}}";
/// `inline_shebang` when not set.
pub const DEFAULT_INLINE_SHEBANG: &str = "/bin/sh -e";
/// `remote_folder` when not set.
pub const DEFAULT_REMOTE_FOLDER: &str = "/tmp";
/// `start_retry_timeout` when not set.
pub const DEFAULT_START_RETRY_TIMEOUT: Duration = Duration::from_secs(300);

/// The variables `execute_command` provides besides the build's generated data.
pub const EXECUTE_COMMAND_VARIABLES: [&str; 3] = ["Path", "Vars", "EnvVarFile"];

packer_sdk::packer_config! {
    /// The options as written in the template (every option of Packer's `shell` provisioner),
    /// before defaults and validation; see [`Config`] for their meaning.
    #[derive(Debug, Clone, Default, PartialEq)]
    pub struct ShellOptions {
        /// Commands, one per line of a script the provisioner generates. The script starts with `#!`
        /// followed by `inline_shebang`, unless its first line already is a `#!` line (that line wins).
        /// Each line may use the build's data: `{{ .Host }}`, `{{ .Port }}`, ``{{ build `PackerHTTPAddr` }}``,
        /// … An empty list counts as unset.
        pub inline: Vec<String> => "inline",
        /// The interpreter of the inline script: with the default the script stops at the first failing
        /// command.
        ///
        /// Default: `/bin/sh -e`
        pub inline_shebang: Option<String> => "inline_shebang",
        /// Path of one local script to upload and run. It must exist when the template is validated.
        pub script: Option<String> => "script",
        /// Several local scripts, uploaded and run in order. Setting both `script` and `scripts` is an
        /// error.
        pub scripts: Vec<String> => "scripts",
        /// Variables for the scripts, each `NAME=value`. `NAME` must be a shell variable name. Values are
        /// single-quoted, so spaces, quotes, `$`, backquotes and backslashes arrive unchanged.
        pub environment_vars: Vec<String> => "environment_vars",
        /// Variables as a map; wins over `environment_vars` for the same name.
        pub env: BTreeMap<String, String> => "env",
        /// How each script is run. Template variables: `.Path` (the uploaded script), `.Vars` (the
        /// variables, `NAME='value' ` each, sorted by name), `.EnvVarFile` (the uploaded variables file)
        /// and the build's data (`.Host`, …). A misspelt variable such as `{{ .path }}` is reported when
        /// the template is validated.
        ///
        /// Default: `chmod +x {{.Path}}; {{.Vars}} {{.Path}}` (with `use_env_var_file`:
        /// `chmod +x {{.Path}}; . {{.EnvVarFile}} && {{.Path}}`)
        pub execute_command: Option<String> => "execute_command",
        /// Where scripts are uploaded; set it when `/tmp` is mounted `noexec`.
        ///
        /// Default: `/tmp`
        pub remote_folder: Option<String> => "remote_folder",
        /// File name of the uploaded script.
        ///
        /// Default: `script_<n>.sh`, `n` random and chosen once
        pub remote_file: Option<String> => "remote_file",
        /// Full path of the uploaded script; when set, `remote_folder` and `remote_file` are not used for
        /// it. The same path is reused for every script of the provisioner.
        pub remote_path: Option<String> => "remote_path",
        /// Upload the scripts unchanged. By default CRLF line endings are converted to LF, so scripts
        /// edited on Windows run.
        ///
        /// Default: `false`
        pub binary: bool => "binary",
        /// Write the variables (`export NAME='value'` lines) to a file uploaded as
        /// `<remote_folder>/varfile_<n>.sh` with mode 0600, instead of putting them on the command line.
        ///
        /// Default: `false`
        pub use_env_var_file: bool => "use_env_var_file",
        /// Count a connection lost while a script runs (typically a reboot) as success. Otherwise it fails
        /// the build.
        ///
        /// Default: `false`
        pub expect_disconnect: bool => "expect_disconnect",
        /// How long uploading and starting a script is retried (every 2 s) while the machine cannot be
        /// reached, e.g. while it reboots. A script is never restarted once it has started.
        ///
        /// Default: `5m`
        pub start_retry_timeout: Option<sdkconfig::Duration> => "start_retry_timeout",
        /// Leave the uploaded script (and variables file) on the machine. By default they are removed
        /// with `rm -f` after each run.
        ///
        /// Default: `false`
        pub skip_clean: bool => "skip_clean",
        /// Exit statuses counted as success. Any other status fails the build with
        /// `Script exited with non-zero exit status: N. Allowed exit codes are: [0]`.
        ///
        /// Default: `[0]`
        pub valid_exit_codes: Option<Vec<i64>> => "valid_exit_codes",
        /// Wait this long after the provisioner succeeded. Cancelling the build ends the pause at once.
        pub pause_after: Option<sdkconfig::Duration> => "pause_after",
        /// Not supported yet: the provisioner fails with `env_var_format is not supported by qemu-rs yet`
        /// (Packer's `shell` uses it to format the variables of `.Vars`). Use `execute_command` to pass
        /// the variables differently.
        ///
        /// Internal: accepted by the schema only to be rejected with a clear message.
        pub env_var_format: Option<String> => "env_var_format",
    }
}

/// The HCL2 schema: every option of Packer's shell provisioner (so HCL2 templates written for
/// `shell` decode), plus the common `packer_*` keys.
pub fn config_spec() -> ObjectSpec {
    sdkconfig::spec_with_common(ShellOptions::config_spec())
}

/// The decoded, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `inline`: commands, one per line of the generated script (templates, rendered at provision time).
    pub inline: Vec<String>,
    /// `inline_shebang` (default `/bin/sh -e`).
    pub inline_shebang: String,
    /// `script` followed by `scripts`: local script files, run in order.
    pub scripts: Vec<PathBuf>,
    /// `environment_vars`, split into name and value, in the order given.
    pub environment_vars: Vec<(String, String)>,
    /// `env`: wins over `environment_vars` for the same name.
    pub env: BTreeMap<String, String>,
    /// `execute_command` template (default [`DEFAULT_EXECUTE_COMMAND`]).
    pub execute_command: String,
    /// Where each script is uploaded: `remote_path`, else `remote_folder`/`remote_file`.
    pub remote_path: String,
    /// `remote_folder` (default `/tmp`): also where the `use_env_var_file` file goes.
    pub remote_folder: String,
    /// `binary`: upload scripts unchanged (no CRLF → LF conversion).
    pub binary: bool,
    /// `use_env_var_file`: pass variables in an uploaded file sourced by `execute_command`.
    pub use_env_var_file: bool,
    /// `expect_disconnect`: a lost connection while a script runs is not an error.
    pub expect_disconnect: bool,
    /// `start_retry_timeout` (default 5m): how long uploading and starting a script is retried.
    pub start_retry_timeout: Duration,
    /// `skip_clean`: leave the uploaded scripts on the machine.
    pub skip_clean: bool,
    /// `valid_exit_codes` (default `[0]`).
    pub valid_exit_codes: Vec<i64>,
    /// `pause_after` (default 0): wait after a successful run.
    pub pause_after: Duration,
    /// `packer_build_name`: exported as `PACKER_BUILD_NAME`.
    pub packer_build_name: String,
    /// `packer_builder_type`: exported as `PACKER_BUILDER_TYPE`.
    pub packer_builder_type: String,
    /// `packer_user_variables`: values of ``{{ user `name` }}`` (JSON templates).
    pub user_variables: BTreeMap<String, String>,
}

impl Config {
    /// Decodes and validates the raw configs of `Prepare`, merged in order (later values win).
    /// Returns every problem found.
    pub fn from_raws(raws: &[RawConfig]) -> Result<Config, ConfigErrors> {
        // As Packer's shell provisioner: every option is rendered now except execute_command;
        // the build's data (`{{ .Host }}`, `{{ build `Host` }}`) is only known at provision
        // time, where inline, env and environment_vars are rendered again with it.
        let options = DecodeOptions { exclude: &["execute_command"], data: FieldData::Deferred };
        let (decoded, mut errs) = sdkconfig::decode_raw_configs_with::<ShellOptions>(raws, &options);
        for warning in &decoded.warnings {
            tracing::warn!("{warning}");
        }
        let config = Config::from_options(decoded.config, decoded.common, &mut errs);
        config.validate(&mut errs);
        errs.into_result(config)
    }

    /// Applies defaults and checks what can be checked option by option.
    fn from_options(o: ShellOptions, common: PackerCommon, errs: &mut ConfigErrors) -> Config {
        let script = o.script.filter(|s| !s.is_empty());
        if script.is_some() && !o.scripts.is_empty() {
            errs.push_general(
                "only one of script or scripts can be set: put every file in scripts, or use script for a single one",
            );
        } else if !o.inline.is_empty() && (script.is_some() || !o.scripts.is_empty()) {
            errs.push_general(
                "only one of inline, script or scripts can be set: use one provisioner block for each kind",
            );
        }
        let scripts: Vec<PathBuf> = script.into_iter().chain(o.scripts).map(PathBuf::from).collect();

        let mut environment_vars = Vec::new();
        for entry in &o.environment_vars {
            match entry.split_once('=') {
                Some((k, v)) if is_valid_name(k) => environment_vars.push((k.to_string(), v.to_string())),
                Some((k, _)) => errs.push(
                    "environment_vars",
                    format!(
                        "{entry:?}: {k:?} is not a valid variable name (letters, digits and _, not starting with a digit)"
                    ),
                ),
                None => errs.push(
                    "environment_vars",
                    format!("{entry:?} is not in the form NAME=value: write it as NAME=value"),
                ),
            }
        }
        for k in o.env.keys() {
            if !is_valid_name(k) {
                errs.push(
                    "env",
                    format!("{k:?} is not a valid variable name (letters, digits and _, not starting with a digit)"),
                );
            }
        }
        if o.env_var_format.is_some() {
            errs.push(
                "env_var_format",
                "env_var_format is not supported by qemu-rs yet: remove it; variables are passed as NAME='value' \
                 (change execute_command to pass them differently)",
            );
        }
        let mut duration = |option: &str, d: Option<sdkconfig::Duration>, default: Duration| match d {
            Some(d) if d.is_negative() => {
                errs.push(option, "must not be negative: write a duration such as \"30s\" or \"5m\"");
                default
            }
            Some(d) => d.to_std(),
            None => default,
        };
        let start_retry_timeout = duration("start_retry_timeout", o.start_retry_timeout, DEFAULT_START_RETRY_TIMEOUT);
        let pause_after = duration("pause_after", o.pause_after, Duration::ZERO);

        let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
        let execute_command = non_empty(o.execute_command).unwrap_or_else(|| {
            if o.use_env_var_file { DEFAULT_EXECUTE_COMMAND_ENV_FILE } else { DEFAULT_EXECUTE_COMMAND }.to_string()
        });
        let remote_folder = non_empty(o.remote_folder).unwrap_or_else(|| DEFAULT_REMOTE_FOLDER.into());
        let remote_file =
            non_empty(o.remote_file).unwrap_or_else(|| format!("script_{}.sh", rand::thread_rng().gen_range(0..9999)));
        let remote_path = non_empty(o.remote_path)
            .unwrap_or_else(|| format!("{}/{remote_file}", remote_folder.trim_end_matches('/')));

        Config {
            inline: o.inline,
            inline_shebang: non_empty(o.inline_shebang).unwrap_or_else(|| DEFAULT_INLINE_SHEBANG.into()),
            scripts,
            environment_vars,
            env: o.env,
            execute_command,
            remote_path,
            remote_folder,
            binary: o.binary,
            use_env_var_file: o.use_env_var_file,
            expect_disconnect: o.expect_disconnect,
            start_retry_timeout,
            skip_clean: o.skip_clean,
            valid_exit_codes: o.valid_exit_codes.filter(|v| !v.is_empty()).unwrap_or_else(|| vec![0]),
            pause_after,
            packer_build_name: common.build_name,
            packer_builder_type: common.builder_type,
            user_variables: common.user_variables,
        }
    }

    fn validate(&self, errs: &mut ConfigErrors) {
        if self.inline.is_empty() && self.scripts.is_empty() {
            errs.push_general(
                "inline, script and scripts options cannot all be empty: set inline to a list of commands, \
                 script to a local script file, or scripts to a list of local script files",
            );
        }
        for path in &self.scripts {
            match std::fs::metadata(path) {
                Ok(m) if m.is_file() => {}
                Ok(_) => errs.push(
                    "script",
                    format!("{} is not a regular file: give the path of a local script file", path.display()),
                ),
                Err(e) => errs.push(
                    "script",
                    format!(
                        "cannot read script file {}: {e}; give the path of an existing local file \
                         (relative paths are relative to the directory packer runs in)",
                        path.display()
                    ),
                ),
            }
        }
        match Template::parse(&self.execute_command) {
            Ok(t) => {
                for lookup in t.lookups() {
                    self.check_lookup("execute_command", &lookup, true, errs);
                }
            }
            Err(e) => errs.push("execute_command", e.to_string()),
        }
        let templated = self
            .inline
            .iter()
            .map(|l| ("inline", l))
            .chain(self.environment_vars.iter().map(|(_, v)| ("environment_vars", v)))
            .chain(self.env.values().map(|v| ("env", v)));
        for (option, text) in templated {
            match Template::parse(text) {
                Ok(t) => {
                    for lookup in t.lookups() {
                        self.check_lookup(option, &lookup, false, errs);
                    }
                }
                Err(e) => errs.push(option, format!("in {text:?}: {e}")),
            }
        }
        if self.remote_path.ends_with('/') {
            errs.push(
                "remote_path",
                format!("{:?} names a directory: give a file path, or set remote_folder instead", self.remote_path),
            );
        }
    }

    /// Checks a template reference at Prepare time. Build data keys are only known at
    /// provision time, so they are checked then; obvious mistakes are caught here.
    fn check_lookup(&self, option: &str, lookup: &Lookup, execute_vars: bool, errs: &mut ConfigErrors) {
        match lookup {
            // Rendered by config decoding already (an undefined one is "" as in Packer, with a
            // warning); what is left is rendered at provision time the same way.
            Lookup::User(_) => {}
            Lookup::Data(name) => {
                let exact = EXECUTE_COMMAND_VARIABLES.contains(&name.as_str());
                if exact && execute_vars {
                    return;
                }
                if exact {
                    errs.push(option, format!(".{name} is only available in execute_command"));
                    return;
                }
                let close = EXECUTE_COMMAND_VARIABLES.iter().find(|v| v.eq_ignore_ascii_case(name));
                let allowed = if execute_vars {
                    ".Path, .Vars, .EnvVarFile and the build's data (.Host, .Port, .PackerHTTPAddr, …)"
                } else {
                    "the build's data (.Host, .Port, .PackerHTTPAddr, …)"
                };
                match close {
                    Some(v) if execute_vars => {
                        errs.push(option, format!("unknown template variable .{name} (did you mean .{v}?)"))
                    }
                    _ if name.starts_with(|c: char| c.is_ascii_lowercase()) => {
                        errs.push(option, format!("unknown template variable .{name}: available are {allowed}"))
                    }
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn map(v: Value) -> RawConfig {
        match v {
            Value::Object(m) => RawConfig::Map(m),
            _ => panic!("not an object"),
        }
    }

    fn errors_of(raws: &[RawConfig]) -> Vec<String> {
        Config::from_raws(raws).unwrap_err().0.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn defaults() {
        let c = Config::from_raws(&[map(json!({"inline": ["echo hi"]}))]).unwrap();
        assert_eq!(c.execute_command, DEFAULT_EXECUTE_COMMAND);
        assert_eq!(c.inline_shebang, "/bin/sh -e");
        assert_eq!(c.valid_exit_codes, vec![0]);
        assert_eq!(c.start_retry_timeout, Duration::from_secs(300));
        assert_eq!(c.pause_after, Duration::ZERO);
        assert!(c.remote_path.starts_with("/tmp/script_") && c.remote_path.ends_with(".sh"), "{}", c.remote_path);
        assert!(!c.binary && !c.skip_clean && !c.expect_disconnect && !c.use_env_var_file);
    }

    #[test]
    fn env_var_file_changes_default_execute_command() {
        let c = Config::from_raws(&[map(json!({"inline": ["x"], "use_env_var_file": true}))]).unwrap();
        assert_eq!(c.execute_command, DEFAULT_EXECUTE_COMMAND_ENV_FILE);
    }

    #[test]
    fn remote_path_composition() {
        let c =
            Config::from_raws(&[map(json!({"inline": ["x"], "remote_folder": "/var/tmp/", "remote_file": "a.sh"}))])
                .unwrap();
        assert_eq!(c.remote_path, "/var/tmp/a.sh");
        let c = Config::from_raws(&[map(
            json!({"inline": ["x"], "remote_folder": "/var/tmp", "remote_file": "a.sh", "remote_path": "/opt/b.sh"}),
        )])
        .unwrap();
        assert_eq!(c.remote_path, "/opt/b.sh");
        assert_eq!(c.remote_folder, "/var/tmp");
    }

    #[test]
    fn later_configs_win_and_placeholder_map_is_skipped() {
        let c = Config::from_raws(&[
            map(json!({"inline": ["a"], "skip_clean": false, "packer_build_name": "old"})),
            map(json!({"packer_build_name": "b", "packer_builder_type": "null", "packer_debug": false})),
            map(json!({"skip_clean": "true"})),
            map(json!({"Host": "Build_Host. To set this dynamically…", "ID": "x", "PackerRunUUID": "u"})),
        ])
        .unwrap();
        assert_eq!(c.packer_build_name, "b");
        assert_eq!(c.packer_builder_type, "null");
        assert!(c.skip_clean);
    }

    #[test]
    fn hcl2_cty_json_with_nulls() {
        let doc = json!({
            "value": {"inline": ["echo {{ .Host }}"], "script": null, "valid_exit_codes": [0, 3.0],
                      "env": {"A": "1"}, "pause_after": "1s", "packer_build_name": null},
            "type": ["object", {"inline": ["list", "string"]}]
        });
        let c = Config::from_raws(&[
            map(json!({"packer_build_name": "demo", "packer_builder_type": "null"})),
            RawConfig::CtyJson(serde_json::to_vec(&doc).unwrap()),
        ])
        .unwrap();
        assert_eq!(c.packer_build_name, "demo");
        assert_eq!(c.valid_exit_codes, vec![0, 3]);
        assert_eq!(c.env.get("A").map(String::as_str), Some("1"));
        assert_eq!(c.pause_after, Duration::from_secs(1));
    }

    #[test]
    fn empty_provisioner_names_the_options() {
        let errs = errors_of(&[map(json!({"packer_build_name": "x"}))]);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("inline, script and scripts options cannot all be empty"), "{errs:?}");
        // An empty inline list counts as unset.
        let errs = errors_of(&[map(json!({"inline": []}))]);
        assert!(errs[0].contains("cannot all be empty"), "{errs:?}");
    }

    #[test]
    fn all_problems_reported_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.sh");
        let errs = errors_of(&[map(json!({
            "inline": ["echo {{ .Path }}", "{{ env `X` }}"],
            "script": missing.to_str().unwrap(),
            "environment_vars": ["NOEQUALS", "1BAD=x", "GOOD=fine"],
            "env": {"A B": "x"},
            "execute_command": "{{ .path }} {{ .Vars }} {{ .Host }} {{ .vars }}",
            "valid_exit_codes": [0, "x"],
            "start_retry_timeout": "5 minutes",
            "pause_after": "-3s",
            "binary": "maybe",
            "env_var_format": "%s=%s",
            "inlne_shebang": "/bin/bash",
        }))]);
        let expect = [
            "only one of inline, script or scripts can be set",
            "environment_vars: \"NOEQUALS\" is not in the form NAME=value",
            "environment_vars: \"1BAD=x\": \"1BAD\" is not a valid variable name",
            "env: \"A B\" is not a valid variable name",
            "valid_exit_codes[1]: expected a whole number",
            "start_retry_timeout: ",
            "pause_after: ",
            "binary: expected a bool",
            "env_var_format: env_var_format is not supported by qemu-rs yet",
            "unknown option \"inlne_shebang\"; did you mean \"inline_shebang\"?",
            "script: cannot read script file",
            "execute_command: unknown template variable .path (did you mean .Path?)",
            "execute_command: unknown template variable .vars (did you mean .Vars?)",
            "inline[1]: {{ env `X` }}: env vars are not allowed here",
            "inline: .Path is only available in execute_command",
        ];
        for e in expect {
            assert!(errs.iter().any(|x| x.starts_with(e)), "missing {e:?} in {errs:#?}");
        }
        assert_eq!(errs.len(), expect.len(), "{errs:#?}");
    }

    #[test]
    fn script_and_scripts_conflict_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.sh");
        std::fs::write(&f, "echo a").unwrap();
        let errs = errors_of(&[map(json!({"script": f.to_str().unwrap(), "scripts": [dir.path().to_str().unwrap()]}))]);
        assert!(errs.iter().any(|e| e.starts_with("only one of script or scripts")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("is not a regular file")), "{errs:?}");
        let c = Config::from_raws(&[map(json!({"scripts": [f.to_str().unwrap(), f.to_str().unwrap()]}))]).unwrap();
        assert_eq!(c.scripts.len(), 2);
    }

    #[test]
    fn user_variables_are_rendered_when_decoding() {
        let c = Config::from_raws(&[
            map(json!({"inline": ["echo {{ user `who` }} {{ build `Host` }} {{ .Port }}"],
                       "execute_command": "{{ user `sudo` }} {{ .Path }}"})),
            map(json!({"packer_user_variables": {"who": "me", "sudo": "sudo -E"}, "packer_build_name": "b"})),
        ])
        .unwrap();
        // Functions are rendered now; the build's data is kept for provision time.
        assert_eq!(c.inline, vec!["echo me {{build \"Host\"}} {{.Port}}".to_string()]);
        assert_eq!(c.execute_command, "sudo -E {{.Path}}");
        // Packer renders an undefined user variable of a JSON template as "".
        let c = Config::from_raws(&[map(json!({"inline": ["echo [{{ user `nope` }}]"], "packer_user_variables": {}}))])
            .unwrap();
        assert_eq!(c.inline, vec!["echo []".to_string()]);
        // HCL2 templates have no user variables.
        let errs = errors_of(&[map(json!({"inline": ["echo {{ user `nope` }}"]}))]);
        assert!(errs[0].starts_with("inline[0]: {{ user `nope` }}: user variables are not available here"), "{errs:?}");
        assert_eq!(errs.len(), 1, "{errs:?}");
    }

    #[test]
    fn spec_lists_every_option_of_packers_shell() {
        let spec = config_spec();
        let names: Vec<&str> = spec.entries.iter().map(|(k, _)| k.as_str()).collect();
        for option in [
            "inline",
            "script",
            "scripts",
            "environment_vars",
            "env",
            "execute_command",
            "inline_shebang",
            "remote_folder",
            "remote_file",
            "remote_path",
            "binary",
            "use_env_var_file",
            "expect_disconnect",
            "start_retry_timeout",
            "skip_clean",
            "valid_exit_codes",
            "pause_after",
            "env_var_format",
        ] {
            assert!(names.contains(&option), "{option} missing");
        }
        for common in ["packer_build_name", "packer_builder_type", "packer_user_variables"] {
            assert!(names.contains(&common), "{common} missing");
        }
    }
}
