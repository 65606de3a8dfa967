//! Executes a parsed template. Besides Go's plain execution, it can *defer* the parts that
//! need template data that only exists later (`.HTTPIP` in `boot_command` at `Prepare`): those
//! are written back as template text, with every part that could be computed now (function calls
//! such as `user`, `timestamp`) replaced by its value as a literal, so the later rendering needs
//! only the data.

use std::collections::BTreeMap;

use super::parse::{Arg, Cmd, Node, Pipe};
use super::value::{go_float, go_quote, Value};
use super::{Context, Data, TemplateError};

/// Why an evaluation stopped.
#[derive(Debug)]
pub(crate) enum Flow {
    /// It needs template data that is deferred to a later rendering.
    Defer,
    /// An error (the message, without the action).
    Fail(String),
    /// A field that is not in the data.
    Unknown { name: String, available: String },
}

/// The value of `.` at some point: known, deferred, or not available at all.
#[derive(Debug, Clone)]
enum Dot {
    Known(Value),
    Deferred,
    Unavailable,
}

enum Seg {
    /// Output text.
    Lit(String),
    /// Template code kept for a later rendering.
    Code(String),
}

/// The executor of one rendering.
pub(crate) struct Exec<'a> {
    pub ctx: &'a Context,
    data: &'a Data,
    /// Variables in scope; `None` is a deferred value.
    vars: Vec<(String, Option<Value>)>,
    out: Vec<Seg>,
    /// User variables the template used that are not defined (rendered as "" like Packer does).
    pub unset_user_variables: Vec<String>,
}

/// Template code for a value, if it has a literal form.
fn literal(v: &Value) -> Option<String> {
    match v {
        Value::Str(s) => Some(go_quote(s)),
        Value::Int(i) => Some(i.to_string()),
        Value::Float(f) if f.is_finite() => {
            let s = go_float(*f);
            Some(if s.contains(['.', 'e']) { s } else { format!("{s}.0") })
        }
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn list_names(names: &[&String]) -> String {
    if names.is_empty() {
        return "none".to_string();
    }
    names.iter().map(|n| format!(".{n}")).collect::<Vec<_>>().join(", ")
}

impl<'a> Exec<'a> {
    pub(crate) fn new(ctx: &'a Context, data: &'a Data) -> Self {
        let root = match data {
            Data::Value(v) => Some(v.clone()),
            Data::Deferred | Data::Unavailable(_) => None,
        };
        Exec { ctx, data, vars: vec![("$".to_string(), root)], out: Vec::new(), unset_user_variables: Vec::new() }
    }

    fn root_dot(&self) -> Dot {
        match self.data {
            Data::Value(v) => Dot::Known(v.clone()),
            Data::Deferred => Dot::Deferred,
            Data::Unavailable(_) => Dot::Unavailable,
        }
    }

    /// Renders `nodes`; the output, with deferred parts as template text. With `reparsed`, the
    /// output is template text even if nothing was deferred (literal braces are escaped).
    pub(crate) fn run(mut self, nodes: &[Node], reparsed: bool) -> Result<(String, Vec<String>), TemplateError> {
        let dot = self.root_dot();
        self.walk(nodes, &dot)?;
        let deferred = reparsed || self.out.iter().any(|s| matches!(s, Seg::Code(_)));
        let mut out = String::new();
        if !deferred {
            for seg in &self.out {
                if let Seg::Lit(s) = seg {
                    out.push_str(s);
                }
            }
        } else {
            // The output will be parsed again: a literal "{" next to another "{" is written as
            // {{"{"}} so that it cannot form a delimiter. Only literal segments with a "{" are
            // looked at char by char; the rest is copied (a printf width makes megabytes).
            // `next[i]`: the first char after segment `i`, for a "{" at the segment's end.
            let mut next = vec![None; self.out.len()];
            let mut following = None;
            for (i, seg) in self.out.iter().enumerate().rev() {
                next[i] = following;
                let (Seg::Lit(s) | Seg::Code(s)) = seg;
                following = s.chars().next().or(following);
            }
            for (seg, after) in self.out.iter().zip(next) {
                match seg {
                    Seg::Lit(s) if s.contains('{') => {
                        let mut chars = s.chars().peekable();
                        while let Some(c) = chars.next() {
                            let next_is_brace = chars.peek().copied().or(after) == Some('{');
                            if c == '{' && (out.ends_with('{') || next_is_brace) {
                                out.push_str("{{\"{\"}}");
                            } else {
                                out.push(c);
                            }
                        }
                    }
                    Seg::Lit(s) | Seg::Code(s) => out.push_str(s),
                }
            }
        }
        Ok((out, self.unset_user_variables))
    }

    fn error(&self, src: &str, flow: Flow) -> TemplateError {
        match flow {
            Flow::Fail(message) => TemplateError::Exec { action: src.to_string(), message },
            Flow::Unknown { name, available } => TemplateError::UnknownVariable { name, available },
            Flow::Defer => match self.data {
                Data::Unavailable(hint) => TemplateError::Exec { action: src.to_string(), message: hint.clone() },
                _ => TemplateError::Exec {
                    action: src.to_string(),
                    message: "template data is not available here".to_string(),
                },
            },
        }
    }

    fn walk(&mut self, nodes: &[Node], dot: &Dot) -> Result<(), TemplateError> {
        for node in nodes {
            match node {
                Node::Text(t) => self.out.push(Seg::Lit(t.clone())),
                Node::Action { pipe, src } => match self.eval_pipe(pipe, dot, true) {
                    Ok(v) => {
                        if pipe.decl.is_empty() {
                            self.out.push(Seg::Lit(v.to_output()));
                        }
                    }
                    Err(Flow::Defer) if self.can_defer() => {
                        let code = self.residual_pipe(pipe, dot).map_err(|f| self.error(src, f))?;
                        self.bind_deferred(pipe);
                        self.out.push(Seg::Code(format!("{{{{{code}}}}}")));
                    }
                    Err(f) => return Err(self.error(src, f)),
                },
                Node::If { pipe, then, otherwise, src } | Node::With { pipe, then, otherwise, src } => {
                    let is_with = matches!(node, Node::With { .. });
                    let mark = self.vars.len();
                    match self.eval_pipe(pipe, dot, true) {
                        Ok(v) => {
                            if v.truth() {
                                let inner = if is_with { Dot::Known(v) } else { dot.clone() };
                                self.walk(then, &inner)?;
                            } else {
                                self.walk(otherwise, dot)?;
                            }
                        }
                        Err(Flow::Defer) if self.can_defer() => {
                            let (keyword, inner) = if is_with { ("with", Dot::Deferred) } else { ("if", dot.clone()) };
                            self.defer_block(keyword, pipe, src, dot, then, &inner, otherwise)?;
                        }
                        Err(f) => return Err(self.error(src, f)),
                    }
                    self.vars.truncate(mark);
                }
                Node::Range { pipe, then, otherwise, src } => {
                    let mark = self.vars.len();
                    match self.eval_pipe(pipe, dot, false) {
                        Ok(v) => {
                            let items: Vec<(Value, Value)> = match v {
                                Value::List(l) => {
                                    l.into_iter().enumerate().map(|(i, v)| (Value::Int(i as i64), v)).collect()
                                }
                                Value::Map(m) => m.into_iter().map(|(k, v)| (Value::Str(k), v)).collect(),
                                Value::Missing => Vec::new(),
                                other => {
                                    return Err(self.error(
                                        src,
                                        Flow::Fail(format!("range can't iterate over {}", other.to_print())),
                                    ))
                                }
                            };
                            if items.is_empty() {
                                self.walk(otherwise, dot)?;
                            }
                            for (key, item) in items {
                                let inner = self.vars.len();
                                match pipe.decl.as_slice() {
                                    [e] => self.vars.push((e.clone(), Some(item.clone()))),
                                    [k, e] => {
                                        self.vars.push((k.clone(), Some(key)));
                                        self.vars.push((e.clone(), Some(item.clone())));
                                    }
                                    _ => {}
                                }
                                self.walk(then, &Dot::Known(item))?;
                                self.vars.truncate(inner);
                            }
                        }
                        Err(Flow::Defer) if self.can_defer() => {
                            self.defer_block("range", pipe, src, dot, then, &Dot::Deferred, otherwise)?;
                        }
                        Err(f) => return Err(self.error(src, f)),
                    }
                    self.vars.truncate(mark);
                }
            }
        }
        Ok(())
    }

    fn can_defer(&self) -> bool {
        matches!(self.data, Data::Deferred)
    }

    /// Writes back an `if`/`with`/`range` whose pipeline needs build data: `{{keyword code}}`,
    /// the body rendered with `inner` as dot, `{{else}}` and its branch, `{{end}}`.
    #[allow(clippy::too_many_arguments)]
    fn defer_block(
        &mut self,
        keyword: &str,
        pipe: &Pipe,
        src: &str,
        dot: &Dot,
        then: &[Node],
        inner: &Dot,
        otherwise: &[Node],
    ) -> Result<(), TemplateError> {
        let code = self.residual_pipe(pipe, dot).map_err(|f| self.error(src, f))?;
        self.bind_deferred(pipe);
        self.out.push(Seg::Code(format!("{{{{{keyword} {code}}}}}")));
        self.walk(then, inner)?;
        if !otherwise.is_empty() {
            self.out.push(Seg::Code("{{else}}".to_string()));
            self.walk(otherwise, dot)?;
        }
        self.out.push(Seg::Code("{{end}}".to_string()));
        Ok(())
    }

    /// Declares the variables of a deferred pipeline as deferred.
    fn bind_deferred(&mut self, pipe: &Pipe) {
        if pipe.is_assign {
            for name in &pipe.decl {
                if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    slot.1 = None;
                }
            }
        } else {
            for name in &pipe.decl {
                self.vars.push((name.clone(), None));
            }
        }
    }

    /// Evaluates a pipeline; with `bind`, declares/assigns its variables.
    fn eval_pipe(&mut self, pipe: &Pipe, dot: &Dot, bind: bool) -> Result<Value, Flow> {
        let mut value: Option<Value> = None;
        for cmd in &pipe.cmds {
            value = Some(self.eval_cmd(cmd, dot, value)?);
        }
        let value = value.unwrap_or(Value::Missing);
        if bind {
            for name in &pipe.decl {
                if pipe.is_assign {
                    match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                        Some(slot) => slot.1 = Some(value.clone()),
                        None => return Err(Flow::Fail(format!("undefined variable: {name}"))),
                    }
                } else {
                    self.vars.push((name.clone(), Some(value.clone())));
                }
            }
        }
        Ok(value)
    }

    fn eval_cmd(&mut self, cmd: &Cmd, dot: &Dot, piped: Option<Value>) -> Result<Value, Flow> {
        let first = &cmd.args[0];
        if let Arg::Func(name) = first {
            let mut args = Vec::with_capacity(cmd.args.len());
            for a in &cmd.args[1..] {
                args.push(self.eval_arg(a, dot)?);
            }
            args.extend(piped);
            return self.call(name, args);
        }
        if cmd.args.len() > 1 || piped.is_some() {
            return Err(Flow::Fail(match first {
                Arg::Field(names) => format!("{} is not a method but has arguments", names.join(".")),
                other => format!("can't give argument to non-function {other}"),
            }));
        }
        if matches!(first, Arg::Nil) {
            return Err(Flow::Fail("nil is not a command".to_string()));
        }
        self.eval_arg(first, dot)
    }

    fn eval_arg(&mut self, arg: &Arg, dot: &Dot) -> Result<Value, Flow> {
        match arg {
            Arg::Func(name) => self.call(name, Vec::new()),
            Arg::Dot => match dot {
                Dot::Known(v) => Ok(v.clone()),
                Dot::Deferred | Dot::Unavailable => Err(Flow::Defer),
            },
            Arg::Nil => Ok(Value::Missing),
            Arg::Bool(b) => Ok(Value::Bool(*b)),
            Arg::Num(_, v) => Ok(v.clone()),
            Arg::Str(s) => Ok(Value::Str(s.clone())),
            Arg::Field(names) => {
                let receiver = match dot {
                    Dot::Known(v) => v.clone(),
                    Dot::Deferred | Dot::Unavailable => return Err(Flow::Defer),
                };
                fields(receiver, names)
            }
            Arg::Var(name, names) => {
                let value = match self.vars.iter().rev().find(|(n, _)| n == name) {
                    Some((_, Some(v))) => v.clone(),
                    Some((_, None)) => return Err(Flow::Defer),
                    None => return Err(Flow::Fail(format!("undefined variable: {name}"))),
                };
                fields(value, names)
            }
            Arg::Paren(pipe, names) => {
                let v = self.eval_pipe(pipe, dot, true)?;
                fields(v, names)
            }
        }
    }

    /// `build "Name"` / `.Name` on the data root.
    pub(crate) fn data_field(&mut self, name: &str) -> Result<Value, Flow> {
        match self.root_dot() {
            Dot::Known(root) => fields(root, &[name.to_string()]),
            _ => Err(Flow::Defer),
        }
    }

    /// The code of a pipeline that must be evaluated later, with what can be computed now
    /// replaced by literals.
    fn residual_pipe(&mut self, pipe: &Pipe, dot: &Dot) -> Result<String, Flow> {
        let mut out = String::new();
        if !pipe.decl.is_empty() {
            out.push_str(&format!("{} {} ", pipe.decl.join(", "), if pipe.is_assign { "=" } else { ":=" }));
        }
        let mut stages: Vec<String> = Vec::new();
        let mut value: Option<Value> = None;
        let mut deferred = false;
        for (i, cmd) in pipe.cmds.iter().enumerate() {
            if !deferred {
                match self.eval_cmd(cmd, dot, value.clone()) {
                    Ok(v) => {
                        value = Some(v);
                        continue;
                    }
                    Err(Flow::Defer) => {
                        deferred = true;
                        if i > 0 {
                            match value.as_ref().and_then(literal) {
                                Some(l) => stages.push(l),
                                None => stages.extend(pipe.cmds[..i].iter().map(|c| c.to_string())),
                            }
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            stages.push(self.residual_cmd(cmd, dot, i > 0)?);
        }
        if !deferred {
            // Fully computable after all (cannot happen when called after a Defer, kept for safety).
            stages.push(value.as_ref().and_then(literal).unwrap_or_else(|| pipe.to_string()));
        }
        out.push_str(&stages.join(" | "));
        Ok(out)
    }

    /// The text of `cmd` with what can be computed now replaced by its value. In a later stage of
    /// a pipeline (`later`) the command must stay executable: a first argument computed now to a
    /// literal (`x | (split "a,b" "," 0) …` → `"a" …`) would not parse ("non executable command in
    /// pipeline stage N"), so it stays in parentheses (`("a") …`), which parses and fails at run
    /// time as the original does in Go ("can't give argument to non-function").
    fn residual_cmd(&mut self, cmd: &Cmd, dot: &Dot, later: bool) -> Result<String, Flow> {
        let mut parts = Vec::with_capacity(cmd.args.len());
        for (i, arg) in cmd.args.iter().enumerate() {
            if i == 0 {
                if let Arg::Func(name) = arg {
                    parts.push(name.clone());
                    continue;
                }
            }
            let code = self.residual_arg(arg, dot)?;
            if i == 0 && later && is_literal_code(&code) {
                parts.push(format!("({code})"));
            } else {
                parts.push(code);
            }
        }
        Ok(parts.join(" "))
    }

    fn residual_arg(&mut self, arg: &Arg, dot: &Dot) -> Result<String, Flow> {
        match arg {
            Arg::Nil | Arg::Bool(_) | Arg::Num(..) | Arg::Str(_) => Ok(arg.to_string()),
            _ => match self.eval_arg(arg, dot) {
                Ok(v) => Ok(literal(&v).unwrap_or_else(|| arg.to_string())),
                Err(Flow::Defer) => match arg {
                    Arg::Paren(pipe, names) => {
                        let inner = self.residual_pipe(pipe, dot)?;
                        let fields: String = names.iter().map(|n| format!(".{n}")).collect();
                        Ok(format!("({inner}){fields}"))
                    }
                    other => Ok(other.to_string()),
                },
                Err(e) => Err(e),
            },
        }
    }
}

/// Whether `code` (what [`literal`] writes, or template text kept as it was) is a constant:
/// a string, a number, a boolean or nil.
fn is_literal_code(code: &str) -> bool {
    matches!(code, "true" | "false" | "nil")
        || code.starts_with(['"', '`', '\'', '-', '+'])
        || code.starts_with(|c: char| c.is_ascii_digit())
}

/// Follows the field chain `names` from `value`.
fn fields(mut value: Value, names: &[String]) -> Result<Value, Flow> {
    for name in names {
        value = match value {
            Value::Map(mut m) => match m.remove(name) {
                Some(v) => v,
                None => {
                    let keys: Vec<&String> = m.keys().collect();
                    return Err(Flow::Unknown { name: name.clone(), available: list_names(&keys) });
                }
            },
            Value::Missing => return Err(Flow::Fail(format!("nil pointer evaluating .{name}"))),
            other => return Err(Flow::Fail(format!("can't evaluate field {name} in type {}", other.kind()))),
        };
    }
    Ok(value)
}

/// Converts a string map into template data.
pub(crate) fn string_map(map: &BTreeMap<&str, String>) -> Value {
    Value::Map(map.iter().map(|(k, v)| (k.to_string(), Value::Str(v.clone()))).collect())
}
