//! Environment variables for the remote command: quoting, flattening into `{{ .Vars }}`, and the
//! contents of the `use_env_var_file` file.
//!
//! Values are single-quoted for a POSIX shell; a `'` inside a value becomes `'"'"'` (close the
//! quote, a double-quoted `'`, reopen), exactly as Packer's shell provisioner does. Inside single
//! quotes nothing else is special, so spaces, `"`, `$`, backquotes and backslashes arrive unchanged.

use std::collections::BTreeMap;

/// Escapes `value` for use between single quotes in a POSIX shell.
pub fn escape_single_quoted(value: &str) -> String {
    value.replace('\'', r#"'"'"'"#)
}

/// `value` as one single-quoted shell word.
pub fn single_quote(value: &str) -> String {
    format!("'{}'", escape_single_quoted(value))
}

/// The `{{ .Vars }}` text: `K='V' ` for every variable, sorted by name (each followed by a space,
/// like Packer's default `env_var_format` `%s='%s' `).
pub fn flatten_vars(vars: &BTreeMap<String, String>) -> String {
    vars.iter().map(|(k, v)| format!("{k}={} ", single_quote(v))).collect()
}

/// The contents of the environment file of `use_env_var_file`: one `export K='V'` line per
/// variable, sorted by name.
pub fn env_file_contents(vars: &BTreeMap<String, String>) -> String {
    vars.iter().map(|(k, v)| format!("export {k}={}\n", single_quote(v))).collect()
}

/// Whether `name` can be assigned by a POSIX shell (`[A-Za-z_][A-Za-z0-9_]*`).
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Runs `printf '%s' "$V"` with `V` assigned through our quoting, in a real `sh`.
    fn through_shell(assignments: &str, var: &str) -> Vec<u8> {
        let script = format!("{assignments} sh -c 'printf %s \"${var}\"'");
        let out = std::process::Command::new("sh").arg("-c").arg(&script).output().unwrap();
        assert!(out.status.success(), "sh failed: {script}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    #[test]
    fn escaping_of_single_quotes() {
        assert_eq!(escape_single_quoted("it's"), r#"it'"'"'s"#);
        assert_eq!(single_quote(""), "''");
    }

    #[test]
    fn flatten_is_sorted_and_space_terminated() {
        let vars: BTreeMap<String, String> =
            [("B", "2"), ("A", "x y"), ("C", "")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(flatten_vars(&vars), "A='x y' B='2' C='' ");
        assert_eq!(env_file_contents(&vars), "export A='x y'\nexport B='2'\nexport C=''\n");
    }

    #[test]
    fn tricky_values_survive_a_real_shell() {
        for value in
            ["a b  c", "it's", "\"quoted\"", "$HOME ${X} $(id) `id`", "back\\slash", "'", "''", "\n\tx", "*?[a]"]
        {
            let mut vars = BTreeMap::new();
            vars.insert("V".to_string(), value.to_string());
            vars.insert("W".to_string(), "other".to_string());
            assert_eq!(through_shell(&flatten_vars(&vars), "V"), value.as_bytes(), "value {value:?}");
        }
    }

    #[test]
    fn env_file_survives_a_real_shell() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vars.sh");
        let mut vars = BTreeMap::new();
        vars.insert("V".to_string(), "it's $x \"y\"".to_string());
        std::fs::write(&path, env_file_contents(&vars)).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(". {} && printf %s \"$V\"", path.display()))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "it's $x \"y\"");
    }

    #[test]
    fn names() {
        assert!(is_valid_name("PATH_2"));
        assert!(is_valid_name("_x"));
        assert!(!is_valid_name("2X"));
        assert!(!is_valid_name("A B"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("A-B"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_value_without_nul_survives(value in "[^\u{0}]{0,40}") {
            let mut vars = BTreeMap::new();
            vars.insert("V".to_string(), value.clone());
            prop_assert_eq!(through_shell(&flatten_vars(&vars), "V"), value.into_bytes());
        }
    }
}
