//! Lexer and parser: template text → [`Node`] tree, following Go's `text/template/parse`
//! (delimiters `{{ }}`, trim markers `{{- ` / ` -}}`, comments `{{/* */}}`, pipelines, control
//! structures `if`/`else`/`else if`/`with`/`range`/`end`).

use std::fmt;

use super::value::{go_quote, Value};
use super::TemplateError;

/// One node of a parsed template.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// Literal text (already trimmed by the markers around it).
    Text(String),
    /// `{{ pipeline }}`.
    Action { pipe: Pipe, src: String },
    /// `{{ if p }} … {{ else }} … {{ end }}` (`else if` nests another `If` in `otherwise`).
    If { pipe: Pipe, then: Vec<Node>, otherwise: Vec<Node>, src: String },
    /// `{{ with p }} … {{ else }} … {{ end }}`.
    With { pipe: Pipe, then: Vec<Node>, otherwise: Vec<Node>, src: String },
    /// `{{ range p }} … {{ else }} … {{ end }}`.
    Range { pipe: Pipe, then: Vec<Node>, otherwise: Vec<Node>, src: String },
}

/// A pipeline: optional variable declarations, then commands separated by `|`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pipe {
    /// Declared/assigned variables, with their `$`.
    pub decl: Vec<String>,
    /// `=` instead of `:=`.
    pub is_assign: bool,
    /// The commands.
    pub cmds: Vec<Cmd>,
}

/// One command of a pipeline: a function and its arguments, or a single operand.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cmd {
    pub args: Vec<Arg>,
}

/// An operand.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    /// A function name.
    Func(String),
    /// `.`
    Dot,
    /// `nil`
    Nil,
    /// `true` / `false`
    Bool(bool),
    /// A number, with its source text.
    Num(String, Value),
    /// A string or raw string literal (unquoted).
    Str(String),
    /// `.A.B`: fields of dot.
    Field(Vec<String>),
    /// `$x.A.B` (`$` alone is the data root).
    Var(String, Vec<String>),
    /// `(pipeline).A.B`
    Paren(Box<Pipe>, Vec<String>),
}

/// The functions a template may call (Go's builtins and Packer's interpolation functions).
pub(crate) const KNOWN_FUNCS: &[&str] = &[
    // Go builtins
    "and",
    "or",
    "not",
    "len",
    "index",
    "print",
    "printf",
    "println",
    "html",
    "js",
    "urlquery",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "call",
    "slice",
    // Packer
    "build_name",
    "build_type",
    "env",
    "isotime",
    "strftime",
    "pwd",
    "split",
    "template_dir",
    "timestamp",
    "uuid",
    "user",
    "packer_version",
    "consul_key",
    "vault",
    "sed",
    "build",
    "aws_secretsmanager",
    "aws_secretsmanager_raw",
    "replace",
    "replace_all",
    "upper",
    "lower",
    "clean_resource_name",
];

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Text(String),
    /// `{{` (byte offset)
    Open(usize),
    Close,
    Space,
    Pipe,
    LParen,
    RParen,
    Str(String),
    Char(i64, String),
    Num(String),
    Ident(String),
    Field(String),
    Var(String),
    Dot,
    Declare,
    Assign,
    Comma,
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn syntax(offset: usize, message: impl Into<String>) -> TemplateError {
    TemplateError::Syntax { offset, message: message.into() }
}

/// Splits `input` into tokens, applying trim markers and dropping comments.
fn lex(input: &str) -> Result<Vec<(Tok, usize)>, TemplateError> {
    let b = input.as_bytes();
    let mut toks: Vec<(Tok, usize)> = Vec::new();
    let mut pos = 0;
    let mut trim_next = false;
    while pos < b.len() {
        let Some(rel) = input[pos..].find("{{") else {
            let mut text = &input[pos..];
            if trim_next {
                text = text.trim_start_matches([' ', '\t', '\r', '\n']);
            }
            if !text.is_empty() {
                toks.push((Tok::Text(text.to_string()), pos));
            }
            break;
        };
        let open = pos + rel;
        let mut text = &input[pos..open];
        if trim_next {
            text = text.trim_start_matches([' ', '\t', '\r', '\n']);
        }
        let mut i = open + 2;
        // "{{- " trims the text before.
        if b.get(i) == Some(&b'-') && b.get(i + 1).is_some_and(|c| is_space(*c)) {
            text = text.trim_end_matches([' ', '\t', '\r', '\n']);
            i += 2;
        }
        if !text.is_empty() {
            toks.push((Tok::Text(text.to_string()), pos));
        }
        // Comment.
        if input[i..].starts_with("/*") {
            let end = input[i + 2..].find("*/").ok_or(TemplateError::Unclosed(open))? + i + 2 + 2;
            let (close, trim) = at_close(b, end).ok_or_else(|| syntax(end, "comment ends before closing delimiter"))?;
            trim_next = trim;
            pos = close;
            continue;
        }
        toks.push((Tok::Open(open), open));
        let (next, trim) = lex_action(input, i, open, &mut toks)?;
        trim_next = trim;
        pos = next;
    }
    Ok(toks)
}

/// If a closing delimiter (`}}` or ` -}}`) starts at `i`: the position after it and whether it
/// trims.
fn at_close(b: &[u8], i: usize) -> Option<(usize, bool)> {
    if b[i..].starts_with(b"}}") {
        return Some((i + 2, false));
    }
    if i + 1 < b.len() && is_space(b[i]) && b[i + 1..].starts_with(b"-}}") {
        return Some((i + 4, true));
    }
    None
}

/// Lexes the inside of an action starting at `i`, up to and including its closing delimiter.
fn lex_action(
    input: &str,
    mut i: usize,
    open: usize,
    toks: &mut Vec<(Tok, usize)>,
) -> Result<(usize, bool), TemplateError> {
    let b = input.as_bytes();
    loop {
        if i >= b.len() {
            return Err(TemplateError::Unclosed(open));
        }
        if let Some((next, trim)) = at_close(b, i) {
            toks.push((Tok::Close, i));
            return Ok((next, trim));
        }
        let c = b[i];
        let start = i;
        match c {
            c if is_space(c) => {
                while i < b.len() && is_space(b[i]) && at_close(b, i).is_none() {
                    i += 1;
                }
                toks.push((Tok::Space, start));
            }
            b'|' => {
                toks.push((Tok::Pipe, i));
                i += 1;
            }
            b'(' => {
                toks.push((Tok::LParen, i));
                i += 1;
            }
            b')' => {
                toks.push((Tok::RParen, i));
                i += 1;
            }
            b',' => {
                toks.push((Tok::Comma, i));
                i += 1;
            }
            b'=' => {
                toks.push((Tok::Assign, i));
                i += 1;
            }
            b':' => {
                if b.get(i + 1) != Some(&b'=') {
                    return Err(syntax(i, "expected :="));
                }
                toks.push((Tok::Declare, i));
                i += 2;
            }
            b'"' => {
                let (s, next) = lex_quoted(input, i)?;
                toks.push((Tok::Str(s), i));
                i = next;
            }
            b'`' => {
                let end = input[i + 1..].find('`').ok_or_else(|| syntax(i, "unterminated raw quoted string"))? + i + 1;
                toks.push((Tok::Str(input[i + 1..end].to_string()), i));
                i = end + 1;
            }
            b'\'' => {
                let (c, next) = lex_char(input, i)?;
                toks.push((Tok::Char(c, input[i..next].to_string()), i));
                i = next;
            }
            b'$' => {
                i += 1;
                while i < b.len() && is_ident_byte(input, i) {
                    i += next_char_len(input, i);
                }
                toks.push((Tok::Var(input[start..i].to_string()), start));
            }
            b'.' if b.get(i + 1).is_some_and(|d| d.is_ascii_digit()) => {
                i = lex_number(input, i);
                toks.push((Tok::Num(input[start..i].to_string()), start));
            }
            b'.' => {
                i += 1;
                if i < b.len() && is_ident_byte(input, i) {
                    while i < b.len() && is_ident_byte(input, i) {
                        i += next_char_len(input, i);
                    }
                    toks.push((Tok::Field(input[start + 1..i].to_string()), start));
                } else {
                    toks.push((Tok::Dot, start));
                }
            }
            b'+' | b'-' | b'0'..=b'9' => {
                i = lex_number(input, i);
                toks.push((Tok::Num(input[start..i].to_string()), start));
            }
            _ if is_ident_byte(input, i) => {
                while i < b.len() && is_ident_byte(input, i) {
                    i += next_char_len(input, i);
                }
                toks.push((Tok::Ident(input[start..i].to_string()), start));
            }
            _ => {
                let ch = input[i..].chars().next().unwrap_or_default();
                return Err(syntax(i, format!("unrecognized character in action: {ch:?}")));
            }
        }
    }
}

fn next_char_len(input: &str, i: usize) -> usize {
    input[i..].chars().next().map(char::len_utf8).unwrap_or(1)
}

fn is_ident_byte(input: &str, i: usize) -> bool {
    input[i..].chars().next().is_some_and(|c| c == '_' || c.is_alphanumeric())
}

fn lex_number(input: &str, mut i: usize) -> usize {
    let b = input.as_bytes();
    if matches!(b[i], b'+' | b'-') {
        i += 1;
    }
    while i < b.len() {
        let c = b[i];
        let exponent_sign = matches!(c, b'+' | b'-') && matches!(b[i - 1], b'e' | b'E' | b'p' | b'P');
        if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || exponent_sign {
            i += 1;
        } else {
            break;
        }
    }
    i
}

/// Parses a Go number literal (`42`, `-7`, `0x1F`, `0o17`, `017`, `0b101`, `1_000`, `1.5e3`, `.5`).
fn parse_number(text: &str) -> Option<Value> {
    let clean = text.replace('_', "");
    let (neg, body) = match clean.strip_prefix('-') {
        Some(r) => (true, r.to_string()),
        None => (false, clean.strip_prefix('+').unwrap_or(&clean).to_string()),
    };
    let lower = body.to_ascii_lowercase();
    let int = if let Some(h) = lower.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()
    } else if let Some(o) = lower.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()
    } else if let Some(bin) = lower.strip_prefix("0b") {
        i64::from_str_radix(bin, 2).ok()
    } else if lower.len() > 1 && lower.starts_with('0') && lower.bytes().all(|c| c.is_ascii_digit()) {
        i64::from_str_radix(&lower[1..], 8).ok()
    } else {
        lower.parse::<i64>().ok()
    };
    if let Some(i) = int {
        return Some(Value::Int(if neg { -i } else { i }));
    }
    if lower.starts_with("0x") || lower.ends_with('i') {
        return None;
    }
    let f: f64 = lower.parse().ok()?;
    let f = if neg { -f } else { f };
    // Go's number nodes: a float that is a whole number is usable as an int too.
    if f.fract() == 0.0 && f.abs() < 9.0e15 && !lower.contains(['.', 'e']) {
        return Some(Value::Int(f as i64));
    }
    Some(Value::Float(f))
}

/// Lexes a double-quoted Go string at `i`, decoding its escapes.
fn lex_quoted(input: &str, i: usize) -> Result<(String, usize), TemplateError> {
    let mut out = String::new();
    let mut chars = input[i + 1..].char_indices();
    while let Some((off, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1 + off + 1)),
            '\n' => break,
            '\\' => {
                let (_, e) = chars.next().ok_or_else(|| syntax(i, "unterminated quoted string"))?;
                decode_escape(e, &mut chars, &mut out, '"').map_err(|m| syntax(i + 1 + off, m))?;
            }
            c => out.push(c),
        }
    }
    Err(syntax(i, "unterminated quoted string"))
}

fn lex_char(input: &str, i: usize) -> Result<(i64, usize), TemplateError> {
    let mut chars = input[i + 1..].char_indices();
    let mut out = String::new();
    match chars.next() {
        Some((_, '\\')) => {
            let (_, e) = chars.next().ok_or_else(|| syntax(i, "unterminated character constant"))?;
            decode_escape(e, &mut chars, &mut out, '\'').map_err(|m| syntax(i, m))?;
        }
        Some((_, '\'')) | None => return Err(syntax(i, "empty character constant")),
        Some((_, c)) => out.push(c),
    }
    match chars.next() {
        Some((off, '\'')) if out.chars().count() == 1 => {
            Ok((out.chars().next().map(|c| c as i64).unwrap_or(0), i + 1 + off + 1))
        }
        _ => Err(syntax(i, "malformed character constant")),
    }
}

/// Decodes the escape after a backslash (`e` is the character after it).
fn decode_escape(e: char, chars: &mut std::str::CharIndices<'_>, out: &mut String, quote: char) -> Result<(), String> {
    let hex = |n: usize, chars: &mut std::str::CharIndices<'_>| -> Result<u32, String> {
        let mut v = 0u32;
        for _ in 0..n {
            let d = chars.next().and_then(|(_, c)| c.to_digit(16)).ok_or("invalid hex escape in string")?;
            v = v * 16 + d;
        }
        Ok(v)
    };
    match e {
        'a' => out.push('\x07'),
        'b' => out.push('\x08'),
        'f' => out.push('\x0c'),
        'n' => out.push('\n'),
        'r' => out.push('\r'),
        't' => out.push('\t'),
        'v' => out.push('\x0b'),
        '\\' => out.push('\\'),
        c if c == quote => out.push(c),
        'x' => {
            let v = hex(2, chars)?;
            out.push(char::from_u32(v).ok_or("invalid \\x escape")?);
        }
        'u' => out.push(char::from_u32(hex(4, chars)?).ok_or("invalid \\u escape")?),
        'U' => out.push(char::from_u32(hex(8, chars)?).ok_or("invalid \\U escape")?),
        '0'..='7' => {
            let mut v = e.to_digit(8).unwrap_or(0);
            for _ in 0..2 {
                let d = chars.next().and_then(|(_, c)| c.to_digit(8)).ok_or("invalid octal escape in string")?;
                v = v * 8 + d;
            }
            out.push(char::from_u32(v).filter(|_| v < 256).ok_or("invalid octal escape")?);
        }
        other => return Err(format!("unknown escape sequence \\{other} in string")),
    }
    Ok(())
}

/// The result of parsing a list of nodes: what ended it.
enum Stop {
    Eof,
    End,
    Else,
    /// `{{ else if … }}` / `{{ else with … }}`: the keyword.
    ElseChain(String),
}

struct Parser<'a> {
    input: &'a str,
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

/// Parses a template.
pub(crate) fn parse(input: &str) -> Result<Vec<Node>, TemplateError> {
    let toks = lex(input)?;
    let mut p = Parser { input, toks, pos: 0 };
    let (nodes, end) = p.list()?;
    match end {
        Stop::Eof => Ok(nodes),
        Stop::End => Err(p.err("unexpected {{end}}")),
        Stop::Else | Stop::ElseChain(_) => Err(p.err("unexpected {{else}}")),
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }
    fn offset(&self) -> usize {
        self.toks.get(self.pos).map(|(_, o)| *o).unwrap_or(self.input.len())
    }
    fn err(&self, message: impl Into<String>) -> TemplateError {
        syntax(self.offset(), message)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(t, _)| t.clone());
        self.pos += 1;
        t
    }
    fn skip_space(&mut self) {
        while self.peek() == Some(&Tok::Space) {
            self.pos += 1;
        }
    }
    /// The source text of the action whose `Open` token is at index `open`, without its trim markers.
    fn action_src(&self, open: usize) -> String {
        let start = self.toks[open].1;
        let close = self.toks[open..].iter().find(|(t, _)| *t == Tok::Close).map(|(_, o)| *o).unwrap_or(start);
        let inner = &self.input[start + 2..close];
        let inner = inner.strip_prefix("- ").map(|i| format!(" {i}")).unwrap_or_else(|| inner.to_string());
        // A closing " -}}" starts at its space, which is not part of `inner`.
        let space = if self.input.as_bytes().get(close).is_some_and(|c| is_space(*c)) { " " } else { "" };
        format!("{{{{{inner}{space}}}}}")
    }

    fn list(&mut self) -> Result<(Vec<Node>, Stop), TemplateError> {
        let mut nodes = Vec::new();
        while let Some(tok) = self.next() {
            match tok {
                Tok::Text(t) => nodes.push(Node::Text(t)),
                Tok::Open(_) => {
                    let open = self.pos - 1;
                    self.skip_space();
                    let keyword = match self.peek() {
                        Some(Tok::Ident(k)) => Some(k.clone()),
                        _ => None,
                    };
                    match keyword.as_deref() {
                        Some("end") => {
                            self.pos += 1;
                            self.close()?;
                            return Ok((nodes, Stop::End));
                        }
                        Some("else") => {
                            self.pos += 1;
                            self.skip_space();
                            match self.peek() {
                                Some(Tok::Close) => {
                                    self.pos += 1;
                                    return Ok((nodes, Stop::Else));
                                }
                                Some(Tok::Ident(k)) if k == "if" || k == "with" => {
                                    let k = k.clone();
                                    return Ok((nodes, Stop::ElseChain(k)));
                                }
                                _ => return Err(self.err("unexpected token after else")),
                            }
                        }
                        Some(k @ ("if" | "with" | "range")) => {
                            let k = k.to_string();
                            self.pos += 1;
                            nodes.push(self.control(&k, open)?);
                        }
                        Some(k @ ("define" | "template" | "block" | "break" | "continue")) => {
                            return Err(self.err(format!(
                                "{{{{{k}}}}} is not supported in option values; only actions, if, with and range are"
                            )));
                        }
                        _ => {
                            let pipe = self.pipeline(false)?;
                            self.close()?;
                            if pipe.cmds.is_empty() {
                                return Err(self.err("missing value for command"));
                            }
                            nodes.push(Node::Action { pipe, src: self.action_src(open) });
                        }
                    }
                }
                other => return Err(self.err(format!("unexpected {other:?}"))),
            }
        }
        Ok((nodes, Stop::Eof))
    }

    fn close(&mut self) -> Result<(), TemplateError> {
        self.skip_space();
        match self.next() {
            Some(Tok::Close) => Ok(()),
            _ => {
                self.pos -= 1;
                Err(self.err("unexpected token in action; expected \"}}\""))
            }
        }
    }

    /// Parses `if`/`with`/`range` after its keyword, up to its `end`.
    fn control(&mut self, keyword: &str, open: usize) -> Result<Node, TemplateError> {
        let src = self.action_src(open);
        let pipe = self.pipeline(keyword == "range")?;
        self.close()?;
        if pipe.cmds.is_empty() {
            return Err(self.err(format!("missing value for {keyword}")));
        }
        let (then, end) = self.list()?;
        let otherwise = match end {
            Stop::Eof => return Err(self.err(format!("unexpected EOF: {{{{{keyword}}}}} without {{{{end}}}}"))),
            Stop::End => Vec::new(),
            Stop::Else => {
                let (otherwise, end) = self.list()?;
                if !matches!(end, Stop::End) {
                    return Err(self.err(format!("expected {{{{end}}}} after {{{{else}}}} of {{{{{keyword}}}}}")));
                }
                otherwise
            }
            Stop::ElseChain(k) => {
                if k != keyword || keyword == "range" {
                    return Err(self.err(format!("{{{{else {k}}}}} inside {{{{{keyword}}}}}")));
                }
                // `{{ else if p }}` is an `if` nested in the else branch, sharing the outer `end`.
                let chain_open = self.pos - 1;
                self.pos += 1;
                vec![self.control(&k, chain_open)?]
            }
        };
        Ok(match keyword {
            "if" => Node::If { pipe, then, otherwise, src },
            "with" => Node::With { pipe, then, otherwise, src },
            _ => Node::Range { pipe, then, otherwise, src },
        })
    }

    /// Parses a pipeline up to (not including) `}}` or `)`.
    fn pipeline(&mut self, range: bool) -> Result<Pipe, TemplateError> {
        let mut pipe = Pipe { decl: Vec::new(), is_assign: false, cmds: Vec::new() };
        self.skip_space();
        // Declarations: `$x :=`, `$x =`, `$i, $e :=` (range only).
        let save = self.pos;
        if let Some(Tok::Var(v)) = self.peek().cloned() {
            self.pos += 1;
            self.skip_space();
            match self.peek() {
                Some(Tok::Declare) | Some(Tok::Assign) => {
                    pipe.is_assign = self.peek() == Some(&Tok::Assign);
                    self.pos += 1;
                    pipe.decl.push(v);
                }
                Some(Tok::Comma) if range => {
                    self.pos += 1;
                    self.skip_space();
                    let Some(Tok::Var(v2)) = self.next() else {
                        return Err(self.err("expected a second variable in range declaration"));
                    };
                    self.skip_space();
                    match self.next() {
                        Some(Tok::Declare) | Some(Tok::Assign) => {}
                        _ => return Err(self.err("expected := after range variables")),
                    }
                    pipe.decl = vec![v, v2];
                }
                _ => self.pos = save,
            }
        }
        loop {
            self.skip_space();
            match self.peek() {
                None | Some(Tok::Close) | Some(Tok::RParen) => break,
                _ => {}
            }
            let cmd = self.command()?;
            if !pipe.cmds.is_empty()
                && !matches!(cmd.args[0], Arg::Func(_) | Arg::Field(_) | Arg::Var(..) | Arg::Paren(..))
            {
                return Err(self.err(format!("non executable command in pipeline stage {}", pipe.cmds.len() + 1)));
            }
            pipe.cmds.push(cmd);
            self.skip_space();
            if self.peek() == Some(&Tok::Pipe) {
                self.pos += 1;
                self.skip_space();
                if matches!(self.peek(), None | Some(Tok::Close) | Some(Tok::RParen)) {
                    return Err(self.err("missing command after |"));
                }
            }
        }
        Ok(pipe)
    }

    fn command(&mut self) -> Result<Cmd, TemplateError> {
        let mut args = Vec::new();
        loop {
            self.skip_space();
            match self.peek() {
                None | Some(Tok::Close) | Some(Tok::RParen) | Some(Tok::Pipe) => break,
                _ => {}
            }
            args.push(self.operand()?);
            match self.peek() {
                Some(Tok::Space) | Some(Tok::Close) | Some(Tok::RParen) | Some(Tok::Pipe) | None => {}
                _ => return Err(self.err("missing space between operands")),
            }
        }
        if args.is_empty() {
            return Err(self.err("empty command"));
        }
        Ok(Cmd { args })
    }

    fn fields(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(Tok::Field(f)) = self.peek() {
            out.push(f.clone());
            self.pos += 1;
        }
        out
    }

    fn operand(&mut self) -> Result<Arg, TemplateError> {
        let offset = self.offset();
        let tok = self.next().ok_or_else(|| self.err("unexpected end of action"))?;
        let arg = match tok {
            Tok::Ident(name) => match name.as_str() {
                "true" => Arg::Bool(true),
                "false" => Arg::Bool(false),
                "nil" => Arg::Nil,
                _ if KNOWN_FUNCS.contains(&name.as_str()) => Arg::Func(name),
                _ => return Err(syntax(offset, format!("function {name:?} not defined"))),
            },
            Tok::Dot => Arg::Dot,
            Tok::Str(s) => Arg::Str(s),
            Tok::Char(c, text) => Arg::Num(text, Value::Int(c)),
            Tok::Num(text) => {
                let v = parse_number(&text).ok_or_else(|| syntax(offset, format!("bad number syntax: {text:?}")))?;
                Arg::Num(text, v)
            }
            Tok::Field(f) => {
                let mut names = vec![f];
                names.extend(self.fields());
                return Ok(Arg::Field(names));
            }
            Tok::Var(v) => {
                let fields = self.fields();
                return Ok(Arg::Var(v, fields));
            }
            Tok::LParen => {
                let pipe = self.pipeline(false)?;
                if self.next() != Some(Tok::RParen) {
                    return Err(syntax(offset, "unclosed left paren"));
                }
                if pipe.cmds.is_empty() {
                    return Err(syntax(offset, "missing value in parenthesized pipeline"));
                }
                let fields = self.fields();
                return Ok(Arg::Paren(Box::new(pipe), fields));
            }
            other => return Err(syntax(offset, format!("unexpected {} in operand", describe_tok(&other)))),
        };
        if matches!(self.peek(), Some(Tok::Field(_))) {
            return Err(self.err("unexpected field access after a literal or function name"));
        }
        Ok(arg)
    }
}

fn describe_tok(t: &Tok) -> &'static str {
    match t {
        Tok::Pipe => "\"|\"",
        Tok::RParen => "\")\"",
        Tok::Declare => "\":=\"",
        Tok::Assign => "\"=\"",
        Tok::Comma => "\",\"",
        _ => "token",
    }
}

fn write_fields(f: &mut fmt::Formatter<'_>, fields: &[String]) -> fmt::Result {
    for name in fields {
        write!(f, ".{name}")?;
    }
    Ok(())
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Func(n) => f.write_str(n),
            Arg::Dot => f.write_str("."),
            Arg::Nil => f.write_str("nil"),
            Arg::Bool(b) => write!(f, "{b}"),
            Arg::Num(text, _) => f.write_str(text),
            Arg::Str(s) => f.write_str(&go_quote(s)),
            Arg::Field(names) => write_fields(f, names),
            Arg::Var(v, fields) => {
                f.write_str(v)?;
                write_fields(f, fields)
            }
            Arg::Paren(p, fields) => {
                write!(f, "({p})")?;
                write_fields(f, fields)
            }
        }
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.args.iter().map(|a| a.to_string()).collect();
        f.write_str(&parts.join(" "))
    }
}

impl fmt::Display for Pipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.decl.is_empty() {
            write!(f, "{} {} ", self.decl.join(", "), if self.is_assign { "=" } else { ":=" })?;
        }
        let parts: Vec<String> = self.cmds.iter().map(|c| c.to_string()).collect();
        f.write_str(&parts.join(" | "))
    }
}
