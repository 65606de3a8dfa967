//! The functions templates call: Go's builtins (`printf`, `eq`, `index`…) and Packer's
//! interpolation functions (`user`, `timestamp`, `isotime`, `split`…), with the behaviour of the
//! Go SDK's `template/interpolate/funcs.go`.

use std::cmp::Ordering;
use std::fmt::Write as _;

use super::exec::{Exec, Flow};
use super::gotime::{format_go, format_strftime, init_time};
use super::query_escape;
use super::value::{sprint, sprintf, Value};

fn fail<T>(message: impl Into<String>) -> Result<T, Flow> {
    Err(Flow::Fail(message.into()))
}

fn arity(name: &str, args: &[Value], want: usize) -> Result<(), Flow> {
    if args.len() == want {
        Ok(())
    } else {
        fail(format!("wrong number of args for {name}: want {want} got {}", args.len()))
    }
}

fn at_least(name: &str, args: &[Value], want: usize) -> Result<(), Flow> {
    if args.len() >= want {
        Ok(())
    } else {
        fail(format!("wrong number of args for {name}: want at least {want} got {}", args.len()))
    }
}

fn string(name: &str, v: &Value) -> Result<String, Flow> {
    match v {
        Value::Str(s) => Ok(s.clone()),
        other => fail(format!("wrong type for value in {name}; expected string; got {}", other.kind())),
    }
}

fn int(name: &str, v: &Value) -> Result<i64, Flow> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Float(f) if f.fract() == 0.0 => Ok(*f as i64),
        other => fail(format!("wrong type for value in {name}; expected int; got {}", other.kind())),
    }
}

/// Go's `strings.Split`: an empty separator splits after each character.
fn go_split(s: &str, sep: &str) -> Vec<String> {
    if sep.is_empty() {
        return s.chars().map(String::from).collect();
    }
    s.split(sep).map(String::from).collect()
}

/// Go's `strings.Replace`: at most `n` replacements (`n < 0`: all); an empty `old` matches
/// before each character and at the end.
pub(crate) fn go_replace(src: &str, old: &str, new: &str, n: i64) -> String {
    if n == 0 || old == new && !old.is_empty() {
        return src.to_string();
    }
    let limit = if n < 0 { usize::MAX } else { n as usize };
    let mut out = String::new();
    let mut done = 0;
    if old.is_empty() {
        for c in src.chars() {
            if done < limit {
                out.push_str(new);
                done += 1;
            }
            out.push(c);
        }
        if done < limit {
            out.push_str(new);
        }
        return out;
    }
    let mut rest = src;
    while done < limit {
        match rest.find(old) {
            Some(i) => {
                out.push_str(&rest[..i]);
                out.push_str(new);
                rest = &rest[i + old.len()..];
                done += 1;
            }
            None => break,
        }
    }
    out.push_str(rest);
    out
}

/// Go's `template.JSEscapeString`.
fn js_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' | '>' | '&' | '=' => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Go's `template.HTMLEscapeString`.
fn html_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Lower-cases and replaces every character that is not `a-z`, `0-9` or `-` with `-` (the
/// image-name rule of Packer's `clean_resource_name`).
fn clean_resource_name(s: &str) -> String {
    s.to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' { c } else { '-' })
        .collect()
}

/// Go's `crypto/rand`-based `uuid.TimeOrderedUUID` of the Packer SDK: 32 bits of Unix time,
/// then 96 random bits.
fn time_ordered_uuid() -> String {
    use rand::RngCore;
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut b = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut b);
    format!(
        "{:08x}-{}-{}-{}-{}{}",
        secs as u32,
        hex::encode(&b[0..2]),
        hex::encode(&b[2..4]),
        hex::encode(&b[4..6]),
        hex::encode(&b[6..8]),
        hex::encode(&b[8..12])
    )
}

#[derive(PartialEq, PartialOrd)]
enum Basic<'a> {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
}

fn basic(v: &Value) -> Option<Basic<'_>> {
    match v {
        Value::Bool(b) => Some(Basic::Bool(*b)),
        Value::Int(i) => Some(Basic::Int(*i)),
        Value::Float(f) => Some(Basic::Float(*f)),
        Value::Str(s) => Some(Basic::Str(s)),
        _ => None,
    }
}

/// Go's template comparison of two basic values (`eq`, `lt`…).
fn compare(a: &Value, b: &Value) -> Result<Option<Ordering>, Flow> {
    let (Some(x), Some(y)) = (basic(a), basic(b)) else {
        return fail(format!("invalid type for comparison: {} and {}", a.kind(), b.kind()));
    };
    if std::mem::discriminant(&x) != std::mem::discriminant(&y) {
        return fail(format!("incompatible types for comparison: {} and {}", a.kind(), b.kind()));
    }
    Ok(x.partial_cmp(&y))
}

impl Exec<'_> {
    /// Calls the function `name` with `args`.
    pub(crate) fn call(&mut self, name: &str, args: Vec<Value>) -> Result<Value, Flow> {
        let s = |v: String| Ok(Value::Str(v));
        match name {
            // --- Go builtins ---
            "and" => {
                at_least(name, &args, 1)?;
                let last = args.len() - 1;
                Ok(args
                    .into_iter()
                    .enumerate()
                    .find(|(i, v)| !v.truth() || *i == last)
                    .map(|(_, v)| v)
                    .unwrap_or(Value::Missing))
            }
            "or" => {
                at_least(name, &args, 1)?;
                let last = args.len() - 1;
                Ok(args
                    .into_iter()
                    .enumerate()
                    .find(|(i, v)| v.truth() || *i == last)
                    .map(|(_, v)| v)
                    .unwrap_or(Value::Missing))
            }
            "not" => {
                arity(name, &args, 1)?;
                Ok(Value::Bool(!args[0].truth()))
            }
            "len" => {
                arity(name, &args, 1)?;
                match &args[0] {
                    Value::Str(s) => Ok(Value::Int(s.len() as i64)),
                    Value::List(l) => Ok(Value::Int(l.len() as i64)),
                    Value::Map(m) => Ok(Value::Int(m.len() as i64)),
                    other => fail(format!("len of type {}", other.kind())),
                }
            }
            "index" => {
                at_least(name, &args, 1)?;
                let mut item = args[0].clone();
                for idx in &args[1..] {
                    item = match (&item, idx) {
                        (Value::List(l), i) => {
                            let i = int(name, i)?;
                            usize::try_from(i)
                                .ok()
                                .and_then(|i| l.get(i))
                                .cloned()
                                .ok_or_else(|| Flow::Fail(format!("error calling index: index out of range: {i}")))?
                        }
                        (Value::Str(st), i) => {
                            let i = int(name, i)?;
                            usize::try_from(i)
                                .ok()
                                .and_then(|i| st.as_bytes().get(i))
                                .map(|b| Value::Int(*b as i64))
                                .ok_or_else(|| Flow::Fail(format!("error calling index: index out of range: {i}")))?
                        }
                        (Value::Map(m), k) => m.get(&string(name, k)?).cloned().unwrap_or(Value::Missing),
                        (Value::Missing, _) => return fail("error calling index: index of untyped nil"),
                        (other, _) => {
                            return fail(format!("error calling index: can't index item of type {}", other.kind()))
                        }
                    };
                }
                Ok(item)
            }
            "print" => s(sprint(&args)),
            "println" => s(format!("{}\n", args.iter().map(Value::to_print).collect::<Vec<_>>().join(" "))),
            "printf" => {
                at_least(name, &args, 1)?;
                let format = string(name, &args[0])?;
                s(sprintf(&format, &args[1..]))
            }
            "html" => s(html_escape(&sprint(&args))),
            "js" => s(js_escape(&sprint(&args))),
            "urlquery" => s(query_escape(&sprint(&args))),
            "eq" => {
                at_least(name, &args, 2)?;
                for other in &args[1..] {
                    if compare(&args[0], other)? == Some(Ordering::Equal) {
                        return Ok(Value::Bool(true));
                    }
                }
                Ok(Value::Bool(false))
            }
            "ne" | "lt" | "le" | "gt" | "ge" => {
                arity(name, &args, 2)?;
                if name != "ne" && matches!(args[0], Value::Bool(_)) {
                    return fail(format!("invalid type for comparison: {}", args[0].kind()));
                }
                let ord = compare(&args[0], &args[1])?;
                Ok(Value::Bool(match name {
                    "ne" => ord != Some(Ordering::Equal),
                    "lt" => ord == Some(Ordering::Less),
                    "le" => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
                    "gt" => ord == Some(Ordering::Greater),
                    _ => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
                }))
            }
            "call" | "slice" => fail(format!("the Go template function {name:?} is not supported by qemu-rs")),

            // --- Packer ---
            "build_name" => {
                arity(name, &args, 0)?;
                match self.ctx.build_name.as_str() {
                    "" => fail("build_name not available"),
                    n => s(n.to_string()),
                }
            }
            "build_type" => {
                arity(name, &args, 0)?;
                match self.ctx.build_type.as_str() {
                    "" => fail("build_type not available"),
                    n => s(n.to_string()),
                }
            }
            "packer_version" => {
                arity(name, &args, 0)?;
                match self.ctx.packer_version.as_str() {
                    "" => fail("packer_version not available (Packer did not send its version)"),
                    n => s(n.to_string()),
                }
            }
            "template_dir" => {
                arity(name, &args, 0)?;
                if self.ctx.template_path.is_empty() {
                    return fail("template path not available (Packer did not send packer_template_path)");
                }
                let path = std::path::Path::new(&self.ctx.template_path);
                let dir = path.parent().unwrap_or(std::path::Path::new(""));
                let abs = if dir.is_absolute() {
                    dir.to_path_buf()
                } else {
                    std::env::current_dir().map_err(|e| Flow::Fail(e.to_string()))?.join(dir)
                };
                s(abs.to_string_lossy().trim_end_matches('/').to_string()).map(|v| match v {
                    Value::Str(p) if p.is_empty() => Value::Str("/".into()),
                    v => v,
                })
            }
            "pwd" => {
                arity(name, &args, 0)?;
                let dir = std::env::current_dir().map_err(|e| Flow::Fail(e.to_string()))?;
                s(dir.to_string_lossy().into_owned())
            }
            "timestamp" => {
                arity(name, &args, 0)?;
                s(init_time().timestamp().to_string())
            }
            "isotime" => match args.len() {
                0 => s(format_go(&init_time(), "2006-01-02T15:04:05Z07:00")),
                1 => s(format_go(&init_time(), &string(name, &args[0])?)),
                _ => fail(format!("too many values, 1 needed: {}", Value::List(args).to_print())),
            },
            "strftime" => {
                arity(name, &args, 1)?;
                s(format_strftime(&init_time(), &string(name, &args[0])?))
            }
            "uuid" => {
                arity(name, &args, 0)?;
                s(time_ordered_uuid())
            }
            "env" => {
                arity(name, &args, 1)?;
                let key = string(name, &args[0])?;
                if !self.ctx.enable_env {
                    return fail(format!(
                        "env vars are not allowed here: Packer only evaluates {{{{ env `{key}` }}}} in the template's \
                         variables section; declare a variable there (\"x\": \"{{{{ env `{key}` }}}}\") and use \
                         {{{{ user `x` }}}} here"
                    ));
                }
                s(std::env::var(&key).unwrap_or_default())
            }
            "user" => {
                arity(name, &args, 1)?;
                let key = string(name, &args[0])?;
                let Some(vars) = &self.ctx.user_variables else {
                    return fail(format!(
                        "user variables are not available here: {{{{ user `{key}` }}}} works in JSON templates only; \
                         in HCL2 templates use var.{key}"
                    ));
                };
                match vars.get(&key) {
                    Some(v) => s(v.clone()),
                    None if self.ctx.enable_env => fail(format!("Error: variable not set: {key}")),
                    None => {
                        // Packer renders an undeclared user variable as "" outside the variables
                        // section; say so instead of failing a template Packer accepts.
                        self.unset_user_variables.push(key);
                        s(String::new())
                    }
                }
            }
            "build" => {
                arity(name, &args, 1)?;
                let key = string(name, &args[0])?;
                self.data_field(&key)
            }
            "split" => {
                arity(name, &args, 3)?;
                let (text, sep, i) = (string(name, &args[0])?, string(name, &args[1])?, int(name, &args[2])?);
                let parts = go_split(&text, &sep);
                match usize::try_from(i).ok().and_then(|i| parts.get(i)) {
                    Some(p) => s(p.clone()),
                    None => fail(format!(
                        "the substring {i} was unavailable using the separator value, {sep}, only {} values were found",
                        parts.len()
                    )),
                }
            }
            "replace" => {
                arity(name, &args, 4)?;
                let (old, new, n, src) =
                    (string(name, &args[0])?, string(name, &args[1])?, int(name, &args[2])?, string(name, &args[3])?);
                s(go_replace(&src, &old, &new, n))
            }
            "replace_all" => {
                arity(name, &args, 3)?;
                let (old, new, src) = (string(name, &args[0])?, string(name, &args[1])?, string(name, &args[2])?);
                s(go_replace(&src, &old, &new, -1))
            }
            "upper" => {
                arity(name, &args, 1)?;
                s(string(name, &args[0])?.to_uppercase())
            }
            "lower" => {
                arity(name, &args, 1)?;
                s(string(name, &args[0])?.to_lowercase())
            }
            "clean_resource_name" => {
                arity(name, &args, 1)?;
                s(clean_resource_name(&string(name, &args[0])?))
            }
            "consul_key" | "vault" | "aws_secretsmanager" | "aws_secretsmanager_raw" => fail(format!(
                "the function {name:?} is not available in qemu-rs: it reads secrets from an outside service, which \
                 Packer itself only does in the template's variables section; set a variable there and use \
                 {{{{ user `name` }}}} here"
            )),
            "sed" => fail(
                "the function \"sed\" is deprecated and not available in qemu-rs: use replace or replace_all instead \
                 (https://www.packer.io/docs/templates/engine)",
            ),
            other => fail(format!("function {other:?} not defined")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_strings_functions() {
        assert_eq!(go_replace("aaaa", "a", "b", 2), "bbaa");
        assert_eq!(go_replace("aaaa", "a", "b", -1), "bbbb");
        assert_eq!(go_replace("ab", "", "-", -1), "-a-b-");
        assert_eq!(go_replace("ab", "", "-", 2), "-a-b");
        assert_eq!(go_split("a,b,,c", ","), vec!["a", "b", "", "c"]);
        assert_eq!(go_split("héj", ""), vec!["h", "é", "j"]);
        assert_eq!(clean_resource_name("My Build_2024-01-02T03:04:05Z"), "my-build-2024-01-02t03-04-05z");
        assert_eq!(js_escape("a'b<\n"), "a\\'b\\u003C\\u000A");
        assert_eq!(html_escape("<a href=\"x\">&'"), "&lt;a href=&#34;x&#34;&gt;&amp;&#39;");
    }

    #[test]
    fn uuid_shape() {
        let u = time_ordered_uuid();
        let parts: Vec<&str> = u.split('-').collect();
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), vec![8, 4, 4, 4, 12], "{u}");
        assert_ne!(u, time_ordered_uuid());
    }
}
