//! Alert label and annotation templates: the part of Go's `text/template` that
//! Prometheus 2.42 alert rules use, with Prometheus's own functions.
//!
//! A template is parsed once, when its rule file loads (an unknown function, an undefined
//! variable or an unbalanced `{{end}}` is a load error, as in `promtool check rules`), and
//! expanded at every evaluation with `$labels`, `$value`, `$externalLabels` and
//! `$externalURL` (also reachable as `.Labels`, `.Value`, …). Expansion errors give the
//! text Prometheus gives, `<error expanding template: …>`, in place of the value.
//!
//! Supported: text, `{{- -}}` trimming, comments, `if`/`else if`/`else`, `range` (with
//! `$k, $v :=`, `else`, `break`, `continue`), `with`/`else`, variables (`:=`, `=`),
//! pipelines, parenthesized pipelines, field chains (`$labels.instance`), the literals of
//! Go templates, the Go built-ins `and or not len index print printf println eq ne lt le
//! gt ge html urlquery`, and Prometheus's `humanize humanize1024 humanizeDuration
//! humanizePercentage humanizeTimestamp toUpper toLower title reReplaceAll match safeHtml
//! stripPort parseDuration toTime pathPrefix externalURL graphLink tableLink`. Refused at
//! load, with the reason: `query` (a template never runs PromQL here) and `first`,
//! `label`, `value`, `strvalue`, `sortByLabel`, `args`, which only serve it; the Go
//! built-ins `js`, `slice`, `call`; `{{define}}`, `{{template}}`, `{{block}}`.
//!
//! Values print as Go prints them (`fmt.Sprint`): `{{ $value }}` of 1000000 is `1e+06`.
//! Error messages and positions are Go's, checked against promtool by the parity suite
//! (`testdata/rules/templates_test.yml`); only the wording of an invalid regular
//! expression's reason differs (Rust's `regex` crate words it).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::rc::Rc;

/// Variables every alert template may use without declaring them.
const PREDECLARED: [&str; 5] = ["$", "$labels", "$externalLabels", "$externalURL", "$value"];

/// Length of the variable definitions Prometheus puts in front of every template: Go
/// reports columns of line 1 counted from the start of those.
const DEFS_LEN: usize = 112;

/// Functions Prometheus 2.42 defines that this exporter refuses, with the reason.
const REFUSED: &[(&str, &str)] = &[
    ("query", "it runs a PromQL query while expanding"),
    ("first", "it reads the result of `query`"),
    ("label", "it reads the result of `query`"),
    ("value", "it reads the result of `query`"),
    ("strvalue", "it reads the result of `query`"),
    ("sortByLabel", "it sorts the result of `query`"),
    (
        "args",
        "it serves `template` calls, which are not supported either",
    ),
    (
        "js",
        "not implemented here (alert texts are not JavaScript)",
    ),
    ("slice", "not implemented here"),
    (
        "call",
        "not implemented here (templates have no function values)",
    ),
];

/// Every function a template may call.
const FUNCTIONS: &[&str] = &[
    "and",
    "or",
    "not",
    "len",
    "index",
    "print",
    "printf",
    "println",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "html",
    "urlquery",
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "toUpper",
    "toLower",
    "title",
    "reReplaceAll",
    "match",
    "safeHtml",
    "stripPort",
    "parseDuration",
    "toTime",
    "pathPrefix",
    "externalURL",
];

/// Functions also accepted by name (`graphLink`, `tableLink`), kept apart to keep
/// [`FUNCTIONS`] a fixed-size list of the common ones.
const LINK_FUNCTIONS: &[&str] = &["graphLink", "tableLink"];

/// A template that failed to parse or to expand; the message is Go's, as Prometheus
/// shows it (`template: __alert_X:1: function "foo" not defined`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

/// What a template can read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TemplateData {
    /// The alert's labels (`$labels`, `.Labels`), without `__name__`.
    pub labels: BTreeMap<String, String>,
    /// `$externalLabels` / `.ExternalLabels`.
    pub external_labels: BTreeMap<String, String>,
    /// `$externalURL` / `.ExternalURL`.
    pub external_url: String,
    /// `$value` / `.Value`: the sample value of the alert.
    pub value: f64,
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    name: String,
    text: String,
    root: Vec<Node>,
}

impl Template {
    /// Parses `text`; `name` is used in error messages (Prometheus uses `__alert_<name>`).
    ///
    /// # Errors
    /// The first syntax error, an undefined variable or function, or a refused function.
    pub fn parse(name: &str, text: &str) -> Result<Self, TemplateError> {
        let segments = split(name, text)?;
        let mut p = Parser {
            name,
            text,
            segments,
            pos: 0,
            vars: PREDECLARED.iter().map(|s| s.to_string()).collect(),
            range_depth: 0,
        };
        let (root, end) = p.list()?;
        if let Some(t) = end {
            return Err(p.error(t.line, &format!("unexpected {}", t.describe())));
        }
        Ok(Template {
            name: name.to_string(),
            text: text.to_string(),
            root,
        })
    }

    /// True when the text has no action at all (expansion is the text itself).
    pub fn is_plain(&self) -> bool {
        self.root.iter().all(|n| matches!(n, Node::Text(_)))
    }

    /// The source text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Expands the template.
    ///
    /// # Errors
    /// An execution error, worded as Go words it.
    pub fn expand(&self, data: &TemplateData) -> Result<String, TemplateError> {
        let labels = Value::Map(Rc::new(data.labels.clone()));
        let external = Value::Map(Rc::new(data.external_labels.clone()));
        let url = Value::Str(data.external_url.clone());
        let value = Value::Float(data.value);
        let root = Value::Data(Rc::new(DataValue {
            labels: labels.clone(),
            external_labels: external.clone(),
            external_url: url.clone(),
            value: value.clone(),
        }));
        let mut ex = Exec {
            name: &self.name,
            vars: vec![
                ("$".to_string(), root.clone()),
                ("$labels".to_string(), labels),
                ("$externalLabels".to_string(), external),
                ("$externalURL".to_string(), url),
                ("$value".to_string(), value),
            ],
            out: String::new(),
            data,
        };
        ex.walk(&self.root, &root)?;
        Ok(ex.out)
    }

    /// Expands the template as Prometheus does: an error becomes
    /// `<error expanding template: …>`.
    pub fn expand_or_error(&self, data: &TemplateData) -> String {
        match self.expand(data) {
            Ok(s) => s,
            Err(e) => format!(
                "<error expanding template: error executing template {}: {e}>",
                self.name
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Splitting the text into text and actions
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Segment {
    Text(String),
    /// The tokens of one action, with the line and byte offset where it starts.
    Action {
        tokens: Vec<Tok>,
        offsets: Vec<usize>,
        line: usize,
        offset: usize,
    },
}

fn line_of(text: &str, offset: usize) -> usize {
    1 + text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn split(name: &str, text: &str) -> Result<Vec<Segment>, TemplateError> {
    let bytes = text.as_bytes();
    let mut out: Vec<Segment> = Vec::new();
    let mut pos = 0;
    let mut trim_next = false;
    loop {
        let next = text[pos..].find("{{").map(|i| pos + i);
        let end = next.unwrap_or(text.len());
        let mut chunk = &text[pos..end];
        if trim_next {
            chunk = chunk.trim_start_matches([' ', '\t', '\r', '\n']);
        }
        let Some(start) = next else {
            if !chunk.is_empty() {
                out.push(Segment::Text(chunk.to_string()));
            }
            break;
        };
        let line = line_of(text, start);
        let mut inner = start + 2;
        // `{{- ` trims the text before.
        if bytes.get(inner) == Some(&b'-') && bytes.get(inner + 1).is_some_and(|c| is_space(*c)) {
            chunk = chunk.trim_end_matches([' ', '\t', '\r', '\n']);
            inner += 2;
        }
        if !chunk.is_empty() {
            out.push(Segment::Text(chunk.to_string()));
        }
        // A comment: `{{/* … */}}`, possibly with trim markers.
        let after_space = inner + bytes[inner..].iter().take_while(|c| is_space(**c)).count();
        if text[after_space..].starts_with("/*") {
            let Some(close) = text[after_space + 2..].find("*/") else {
                return Err(err_at(name, line, "unclosed comment"));
            };
            let mut p = after_space + 2 + close + 2;
            let rest = &text[p..];
            if rest.starts_with("}}") {
                trim_next = false;
                p += 2;
            } else if rest.starts_with(" -}}") {
                trim_next = true;
                p += 4;
            } else {
                return Err(err_at(name, line, "comment ends before closing delimiter"));
            }
            pos = p;
            continue;
        }
        let (tokens, offsets, close) = lex_action(name, text, inner, line)?;
        // ` -}}` trims the text after.
        trim_next = close.1;
        out.push(Segment::Action {
            tokens,
            offsets,
            line,
            offset: start,
        });
        pos = close.0;
    }
    Ok(out)
}

fn err_at(name: &str, line: usize, message: &str) -> TemplateError {
    TemplateError(format!("template: {name}:{line}: {message}"))
}

// ---------------------------------------------------------------------------------------------
// Tokens of an action
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Space,
    Ident(String),
    /// `.Name` (the name without the dot).
    Field(String),
    /// `.` alone.
    Dot,
    /// `$` or `$name` (with the `$`).
    Var(String),
    Str(String),
    Number(String),
    Char(char),
    Bool(bool),
    Nil,
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
}

/// Tokens of an action, their offsets, and (offset after `}}`, trim the text after).
type Lexed = (Vec<Tok>, Vec<usize>, (usize, bool));

/// Lexes one action starting at `start` (after `{{` and its trim marker); returns its
/// tokens and (offset after `}}`, whether `-}}` asked to trim the following text).
fn lex_action(name: &str, text: &str, start: usize, line: usize) -> Result<Lexed, TemplateError> {
    let bytes = text.as_bytes();
    let mut toks: Vec<Tok> = Vec::new();
    let mut offs: Vec<usize> = Vec::new();
    let mut i = start;
    // Every token with the byte offset where it starts.
    macro_rules! emit {
        ($t:expr) => {{
            let t = $t;
            offs.push(i);
            toks.push(t);
        }};
    }
    let unclosed = || err_at(name, line, "unclosed action");
    loop {
        let Some(&c) = bytes.get(i) else {
            return Err(unclosed());
        };
        // End of the action: `}}` or ` -}}`.
        if text[i..].starts_with("}}") {
            return Ok((toks, offs, (i + 2, false)));
        }
        if is_space(c) {
            let n = bytes[i..].iter().take_while(|c| is_space(**c)).count();
            if text[i + n..].starts_with("-}}") {
                return Ok((toks, offs, (i + n + 3, true)));
            }
            if toks.last() != Some(&Tok::Space) {
                emit!(Tok::Space);
            }
            i += n;
            continue;
        }
        match c {
            b'|' => {
                emit!(Tok::Pipe);
                i += 1;
            }
            b'(' => {
                emit!(Tok::LParen);
                i += 1;
            }
            b')' => {
                emit!(Tok::RParen);
                i += 1;
            }
            b',' => {
                emit!(Tok::Comma);
                i += 1;
            }
            b':' if bytes.get(i + 1) == Some(&b'=') => {
                emit!(Tok::Declare);
                i += 2;
            }
            b'=' => {
                emit!(Tok::Assign);
                i += 1;
            }
            b'"' => {
                let (s, n) = lex_quoted(&text[i..])
                    .ok_or_else(|| err_at(name, line, "unterminated quoted string"))?;
                emit!(Tok::Str(s));
                i += n;
            }
            b'`' => {
                let Some(close) = text[i + 1..].find('`') else {
                    return Err(err_at(name, line, "unterminated raw quoted string"));
                };
                emit!(Tok::Str(text[i + 1..i + 1 + close].to_string()));
                i += close + 2;
            }
            b'\'' => {
                let rest = &text[i + 1..];
                let (ch, n) = if let Some(r) = rest.strip_prefix('\\') {
                    let mut cs = r.chars();
                    let e = cs
                        .next()
                        .ok_or_else(|| err_at(name, line, "unterminated character constant"))?;
                    let ch = match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        '0' => '\0',
                        other => other,
                    };
                    (ch, 1 + e.len_utf8())
                } else {
                    let ch = rest
                        .chars()
                        .next()
                        .ok_or_else(|| err_at(name, line, "unterminated character constant"))?;
                    (ch, ch.len_utf8())
                };
                if rest.as_bytes().get(n) != Some(&b'\'') {
                    let message = match rest.find('\'') {
                        Some(close) => {
                            format!("malformed character constant: '{}'", &rest[..close])
                        }
                        None => "unterminated character constant".to_string(),
                    };
                    return Err(err_at(name, line, &message));
                }
                emit!(Tok::Char(ch));
                i += n + 2;
            }
            b'.' if bytes.get(i + 1).is_some_and(|c| c.is_ascii_digit()) => {
                let n = number_len(&text[i..]);
                emit!(Tok::Number(text[i..i + n].to_string()));
                i += n;
            }
            b'.' => {
                let n = ident_len(&text[i + 1..]);
                if n == 0 {
                    emit!(Tok::Dot);
                } else {
                    emit!(Tok::Field(text[i + 1..i + 1 + n].to_string()));
                }
                i += 1 + n;
            }
            b'$' => {
                let n = ident_len(&text[i + 1..]);
                emit!(Tok::Var(text[i..i + 1 + n].to_string()));
                i += 1 + n;
            }
            b'0'..=b'9' => {
                let n = number_len(&text[i..]);
                // A number glued to a letter (`1x`) is not a number, as Go's lexer says.
                if let Some(c) = text[i + n..].chars().next()
                    && (c.is_alphanumeric() || c == '_')
                {
                    let bad = &text[i..i + n + c.len_utf8()];
                    return Err(err_at(name, line, &format!("bad number syntax: {bad:?}")));
                }
                emit!(Tok::Number(text[i..i + n].to_string()));
                i += n;
            }
            b'+' | b'-'
                if bytes
                    .get(i + 1)
                    .is_some_and(|c| c.is_ascii_digit() || *c == b'.') =>
            {
                let n = 1 + number_len(&text[i + 1..]);
                emit!(Tok::Number(text[i..i + n].to_string()));
                i += n;
            }
            _ if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let n = ident_len(&text[i..]).max(1);
                let word = &text[i..i + n];
                emit!(match word {
                    "true" => Tok::Bool(true),
                    "false" => Tok::Bool(false),
                    "nil" => Tok::Nil,
                    w => Tok::Ident(w.to_string()),
                });
                i += n;
            }
            _ => {
                let ch = text[i..].chars().next().unwrap_or('?');
                return Err(err_at(name, line, &format!("unexpected {ch:?} in command")));
            }
        }
    }
}

fn ident_len(s: &str) -> usize {
    s.char_indices()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
        .map_or(s.len(), |(i, _)| i)
}

fn number_len(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    let hex = s.starts_with("0x") || s.starts_with("0X");
    if hex {
        i = 2;
    }
    while i < b.len() {
        let c = b[i];
        let ok = c.is_ascii_digit()
            || c == b'.'
            || c == b'_'
            || (hex && c.is_ascii_hexdigit())
            || (!hex && (c == b'e' || c == b'E'))
            || ((c == b'+' || c == b'-') && i > 0 && matches!(b[i - 1], b'e' | b'E'));
        if !ok {
            break;
        }
        i += 1;
    }
    i
}

/// Unquotes a Go interpreted string literal at the start of `s`; returns it and the
/// number of bytes consumed.
fn lex_quoted(s: &str) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, i + 1)),
            '\n' => return None,
            '\\' => {
                let (_, e) = chars.next()?;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'v' => out.push('\u{b}'),
                    '\\' => out.push('\\'),
                    '"' => out.push('"'),
                    '\'' => out.push('\''),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let mut hex = String::new();
                        for _ in 0..n {
                            hex.push(chars.next()?.1);
                        }
                        let code = u32::from_str_radix(&hex, 16).ok()?;
                        out.push(char::from_u32(code)?);
                    }
                    _ => return None,
                }
            }
            c => out.push(c),
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Tree
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Action(Pipeline),
    If(Control),
    With(Control),
    Range(Control),
    Break,
    Continue,
}

#[derive(Debug, Clone, PartialEq)]
struct Control {
    pipe: Pipeline,
    list: Vec<Node>,
    else_list: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq)]
struct Pipeline {
    /// Declared or assigned variables.
    decl: Vec<String>,
    /// `=` rather than `:=`.
    assign: bool,
    cmds: Vec<Command>,
    /// Where it is, for execution errors.
    pos: Pos,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Pos {
    line: usize,
    column: usize,
}

#[derive(Debug, Clone, PartialEq)]
struct Command {
    args: Vec<Operand>,
    /// Where it starts.
    pos: Pos,
    /// Source text, for error messages (`<humanize $value>`).
    text: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Term {
    Dot,
    /// `.A.B` from dot.
    Field(Vec<String>),
    Var(String),
    Func(String),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    Pipe(Box<Pipeline>),
}

#[derive(Debug, Clone, PartialEq)]
struct Operand {
    /// Where it starts, where its trailing fields start, and its source text.
    pos: Pos,
    fields_pos: Pos,
    text: String,
    term: Term,
    /// Fields applied after the term (`$labels.job`, `(…).Labels`).
    fields: Vec<String>,
}

/// What ended a list.
#[derive(Debug, Clone)]
struct Terminator {
    kind: TermKind,
    line: usize,
    /// The tokens after `else` (for `else if`), and their offsets.
    rest: Vec<Tok>,
    rest_offsets: Vec<usize>,
    offset: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum TermKind {
    End,
    Else,
}

impl Terminator {
    fn describe(&self) -> &'static str {
        match self.kind {
            TermKind::End => "{{end}}",
            TermKind::Else => "{{else}}",
        }
    }
}

struct Parser<'a> {
    name: &'a str,
    text: &'a str,
    segments: Vec<Segment>,
    pos: usize,
    vars: Vec<String>,
    range_depth: usize,
}

/// A cursor over the tokens of one action.
struct Toks {
    toks: Vec<Tok>,
    offs: Vec<usize>,
    i: usize,
}

impl Toks {
    /// Byte offset of the current token.
    fn offset(&self) -> usize {
        self.offs
            .get(self.i)
            .or(self.offs.last())
            .copied()
            .unwrap_or(0)
    }
    fn skip_space(&mut self) {
        while self.toks.get(self.i) == Some(&Tok::Space) {
            self.i += 1;
        }
    }
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.i).cloned();
        self.i += 1;
        t
    }
    fn peek_nonspace(&mut self) -> Option<&Tok> {
        self.skip_space();
        self.peek()
    }
}

fn tok_text(t: &Tok) -> String {
    match t {
        Tok::Space => " ".into(),
        Tok::Ident(s) => s.clone(),
        Tok::Field(s) => format!(".{s}"),
        Tok::Dot => ".".into(),
        Tok::Var(s) => s.clone(),
        Tok::Str(s) => format!("{s:?}"),
        Tok::Number(s) => s.clone(),
        Tok::Char(c) => format!("{c:?}"),
        Tok::Bool(b) => b.to_string(),
        Tok::Nil => "nil".into(),
        Tok::Pipe => "|".into(),
        Tok::LParen => "(".into(),
        Tok::RParen => ")".into(),
        Tok::Declare => ":=".into(),
        Tok::Assign => "=".into(),
        Tok::Comma => ",".into(),
    }
}

impl Parser<'_> {
    fn error(&self, line: usize, message: &str) -> TemplateError {
        err_at(self.name, line, message)
    }

    /// Line and column of a byte offset as Go reports them: the column counts bytes
    /// from 0, and on line 1 from the start of the definitions Prometheus prepends.
    fn pos_of(&self, offset: usize) -> Pos {
        let before = &self.text[..offset.min(self.text.len())];
        match before.rfind('\n') {
            None => Pos {
                line: 1,
                column: offset + DEFS_LEN,
            },
            Some(nl) => Pos {
                line: line_of(self.text, offset),
                column: offset - nl - 1,
            },
        }
    }

    /// Parses nodes until `{{end}}`, `{{else …}}` or the end of the text.
    fn list(&mut self) -> Result<(Vec<Node>, Option<Terminator>), TemplateError> {
        let mut nodes = Vec::new();
        while let Some(seg) = self.segments.get(self.pos).cloned() {
            self.pos += 1;
            match seg {
                Segment::Text(t) => nodes.push(Node::Text(t)),
                Segment::Action {
                    tokens,
                    offsets,
                    line,
                    offset,
                } => {
                    let mut t = Toks {
                        toks: tokens,
                        offs: offsets,
                        i: 0,
                    };
                    let first = t.peek_nonspace().cloned();
                    match first {
                        None => return Err(self.error(line, "missing value for command")),
                        Some(Tok::Ident(word)) => match word.as_str() {
                            "end" | "else" => {
                                t.next();
                                let rest: Vec<Tok> = t.toks[t.i..].to_vec();
                                let rest_offsets: Vec<usize> = t.offs[t.i..].to_vec();
                                let kind = if word == "end" {
                                    TermKind::End
                                } else {
                                    TermKind::Else
                                };
                                if kind == TermKind::End && rest.iter().any(|x| *x != Tok::Space) {
                                    return Err(self.error(line, "unexpected token in end"));
                                }
                                return Ok((
                                    nodes,
                                    Some(Terminator {
                                        kind,
                                        line,
                                        rest,
                                        rest_offsets,
                                        offset,
                                    }),
                                ));
                            }
                            "if" | "with" | "range" => {
                                t.next();
                                nodes.push(self.control(&word, t, line, offset)?);
                            }
                            "break" | "continue" => {
                                if self.range_depth == 0 {
                                    return Err(self.error(
                                        line,
                                        &format!("{{{{{word}}}}} outside {{{{range}}}}"),
                                    ));
                                }
                                nodes.push(if word == "break" {
                                    Node::Break
                                } else {
                                    Node::Continue
                                });
                            }
                            "define" | "template" | "block" => {
                                return Err(self.error(
                                    line,
                                    &format!("{{{{{word}}}}} is not supported in alert templates"),
                                ));
                            }
                            _ => {
                                let pipe = self.pipeline(&mut t, line, offset, 1, "command")?;
                                nodes.push(Node::Action(pipe));
                            }
                        },
                        Some(_) => {
                            let pipe = self.pipeline(&mut t, line, offset, 1, "command")?;
                            nodes.push(Node::Action(pipe));
                        }
                    }
                }
            }
        }
        Ok((nodes, None))
    }

    fn control(
        &mut self,
        word: &str,
        mut t: Toks,
        line: usize,
        offset: usize,
    ) -> Result<Node, TemplateError> {
        let mark = self.vars.len();
        let max_decl = if word == "range" { 2 } else { 1 };
        let pipe = self.pipeline(&mut t, line, offset, max_decl, word)?;
        if word == "range" {
            self.range_depth += 1;
        }
        let (list, end) = self.list()?;
        if word == "range" {
            self.range_depth -= 1;
        }
        let Some(end) = end else {
            return Err(self.error(line, "unexpected EOF"));
        };
        let else_list = match end.kind {
            TermKind::End => Vec::new(),
            TermKind::Else => {
                let mut rest = Toks {
                    toks: end.rest.clone(),
                    offs: end.rest_offsets.clone(),
                    i: 0,
                };
                match rest.peek_nonspace() {
                    // `{{else if …}}` / `{{else with …}}`: a nested control sharing our {{end}}.
                    Some(Tok::Ident(w))
                        if (w == "if" && word == "if") || (w == "with" && word == "with") =>
                    {
                        let w = w.clone();
                        rest.next();
                        vec![self.control(&w, rest, end.line, end.offset)?]
                    }
                    None => {
                        let (else_list, end2) = self.list()?;
                        match end2 {
                            Some(e) if e.kind == TermKind::End => else_list,
                            Some(e) => {
                                return Err(self.error(
                                    e.line,
                                    &format!("expected end; found {}", e.describe()),
                                ));
                            }
                            None => return Err(self.error(line, "unexpected EOF")),
                        }
                    }
                    Some(_) => return Err(self.error(end.line, "unexpected token in else")),
                }
            }
        };
        self.vars.truncate(mark);
        let c = Control {
            pipe,
            list,
            else_list,
        };
        Ok(match word {
            "if" => Node::If(c),
            "with" => Node::With(c),
            _ => Node::Range(c),
        })
    }

    fn pipeline(
        &mut self,
        t: &mut Toks,
        line: usize,
        offset: usize,
        max_decl: usize,
        context: &str,
    ) -> Result<Pipeline, TemplateError> {
        let pos = Pos {
            line,
            column: if line == 1 { offset + DEFS_LEN } else { offset },
        };
        // Declarations: `$x :=`, `$x =`, `$k, $v :=`.
        let mut decl = Vec::new();
        let mut assign = false;
        let save = t.i;
        t.skip_space();
        if let Some(Tok::Var(v)) = t.peek().cloned() {
            t.next();
            t.skip_space();
            match t.peek().cloned() {
                Some(Tok::Declare) | Some(Tok::Assign) => {
                    assign = t.peek() == Some(&Tok::Assign);
                    t.next();
                    decl.push(v);
                }
                Some(Tok::Comma) if max_decl > 1 => {
                    t.next();
                    t.skip_space();
                    match (t.next(), {
                        t.skip_space();
                        t.next()
                    }) {
                        (Some(Tok::Var(v2)), Some(Tok::Declare | Tok::Assign)) => {
                            decl.push(v);
                            decl.push(v2);
                        }
                        (Some(Tok::Var(_)), Some(Tok::Comma)) => {
                            return Err(self.error(line, "too many declarations in range"));
                        }
                        _ => return Err(self.error(line, "range can only initialize variables")),
                    }
                }
                _ => t.i = save,
            }
        } else {
            t.i = save;
        }
        if decl.len() > max_decl {
            return Err(self.error(line, "too many declarations"));
        }
        for v in &decl {
            if assign {
                if !self.vars.contains(v) {
                    return Err(self.error(line, &format!("undefined variable {v:?}")));
                }
            } else {
                self.vars.push(v.clone());
            }
        }
        let cmds = self.commands(t, line, false)?;
        if cmds.is_empty() {
            return Err(self.error(line, &format!("missing value for {context}")));
        }
        Ok(Pipeline {
            decl,
            assign,
            cmds,
            pos,
        })
    }

    /// Commands separated by `|`, up to the end of the tokens (or `)` when `nested`).
    fn commands(
        &mut self,
        t: &mut Toks,
        line: usize,
        nested: bool,
    ) -> Result<Vec<Command>, TemplateError> {
        let mut cmds = Vec::new();
        loop {
            let mut args = Vec::new();
            t.skip_space();
            let start = t.i;
            let pos = self.pos_of(t.offset());
            loop {
                t.skip_space();
                match t.peek() {
                    None => break,
                    Some(Tok::Pipe) => break,
                    Some(Tok::RParen) if nested => break,
                    Some(Tok::RParen) => {
                        return Err(self.error(line, "unexpected \")\" in command"));
                    }
                    _ => {}
                }
                args.push(self.operand(t, line)?);
            }
            let text: String = t.toks[start..t.i]
                .iter()
                .map(tok_text)
                .collect::<String>()
                .trim()
                .to_string();
            let end = t.peek().cloned();
            if args.is_empty() {
                if end == Some(Tok::Pipe) {
                    return Err(self.error(line, "missing command"));
                }
                // A trailing `|` (`{{ x | }}`) is accepted, as Go's parser does.
                break;
            }
            if !cmds.is_empty() {
                // A command after `|` receives a value: it must be a function call.
                if !matches!(args[0].term, Term::Func(_)) {
                    return Err(self.error(
                        line,
                        &format!(
                            "non executable command in pipeline stage {}",
                            cmds.len() + 1
                        ),
                    ));
                }
            }
            cmds.push(Command { args, pos, text });
            if end == Some(Tok::Pipe) {
                t.next();
                continue;
            }
            break;
        }
        Ok(cmds)
    }

    fn operand(&mut self, t: &mut Toks, line: usize) -> Result<Operand, TemplateError> {
        let start = t.i;
        let pos = self.pos_of(t.offset());
        let text_of = |t: &Toks| t.toks[start..t.i].iter().map(tok_text).collect::<String>();
        let Some(tok) = t.next() else {
            return Err(self.error(line, "missing value"));
        };
        let term = match tok {
            Tok::Dot => Term::Dot,
            Tok::Field(f) => {
                let mut chain = vec![f];
                while let Some(Tok::Field(f)) = t.peek().cloned() {
                    t.next();
                    chain.push(f);
                }
                return Ok(Operand {
                    pos,
                    fields_pos: pos,
                    text: text_of(t),
                    term: Term::Field(chain),
                    fields: Vec::new(),
                });
            }
            Tok::Var(v) => {
                if !self.vars.contains(&v) {
                    return Err(self.error(line, &format!("undefined variable {v:?}")));
                }
                Term::Var(v)
            }
            Tok::Ident(name) => {
                if let Some((_, why)) = REFUSED.iter().find(|(n, _)| *n == name) {
                    return Err(self.error(
                        line,
                        &format!("function {name:?} is not supported by harena-exporter: {why}"),
                    ));
                }
                if !FUNCTIONS.contains(&name.as_str()) && !LINK_FUNCTIONS.contains(&name.as_str()) {
                    return Err(self.error(line, &format!("function {name:?} not defined")));
                }
                Term::Func(name)
            }
            Tok::Str(s) => Term::Str(s),
            Tok::Char(c) => Term::Int(i64::from(u32::from(c))),
            Tok::Number(n) => parse_number(&n)
                .ok_or_else(|| self.error(line, &format!("bad number syntax: {n:?}")))?,
            Tok::Bool(b) => Term::Bool(b),
            Tok::Nil => Term::Nil,
            Tok::LParen => {
                let cmds = self.commands(t, line, true)?;
                if t.next() != Some(Tok::RParen) {
                    return Err(self.error(line, "unclosed left paren"));
                }
                if cmds.is_empty() {
                    return Err(self.error(line, "missing value for parenthesized pipeline"));
                }
                Term::Pipe(Box::new(Pipeline {
                    decl: Vec::new(),
                    assign: false,
                    cmds,
                    pos: Pos { line, column: 0 },
                }))
            }
            other => {
                return Err(self.error(
                    line,
                    &format!("unexpected {:?} in operand", tok_text(&other)),
                ));
            }
        };
        let mut fields = Vec::new();
        let fields_pos = self.pos_of(t.offset());
        while let Some(Tok::Field(f)) = t.peek().cloned() {
            if matches!(
                term,
                Term::Func(_)
                    | Term::Str(_)
                    | Term::Int(_)
                    | Term::Float(_)
                    | Term::Bool(_)
                    | Term::Nil
            ) {
                return Err(self.error(line, &format!("unexpected .{f} after term")));
            }
            t.next();
            fields.push(f);
        }
        Ok(Operand {
            pos,
            fields_pos,
            text: text_of(t),
            term,
            fields,
        })
    }
}

fn parse_number(n: &str) -> Option<Term> {
    let clean = n.replace('_', "");
    let (neg, body) = match clean.strip_prefix('-') {
        Some(b) => (true, b.to_string()),
        None => (false, clean.strip_prefix('+').unwrap_or(&clean).to_string()),
    };
    let sign = |v: i64| if neg { -v } else { v };
    if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        return i64::from_str_radix(hex, 16)
            .ok()
            .map(|v| Term::Int(sign(v)));
    }
    if body.contains(['.', 'e', 'E']) {
        let v: f64 = body.parse().ok()?;
        return Some(Term::Float(if neg { -v } else { v }));
    }
    if body.len() > 1 && body.starts_with('0') && body.bytes().all(|b| b.is_ascii_digit()) {
        return i64::from_str_radix(&body[1..], 8)
            .ok()
            .map(|v| Term::Int(sign(v)));
    }
    match body.parse::<i64>() {
        Ok(v) => Some(Term::Int(sign(v))),
        Err(_) => body
            .parse::<f64>()
            .ok()
            .map(|v| Term::Float(if neg { -v } else { v })),
    }
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct DataValue {
    labels: Value,
    external_labels: Value,
    external_url: Value,
    value: Value,
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    /// Go's invalid/nil value.
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Map(Rc<BTreeMap<String, String>>),
    Data(Rc<DataValue>),
    /// A `time.Time` (milliseconds since the epoch), from `toTime`.
    Time(i64),
}

impl Value {
    fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::Map(_) => "map[string]string",
            Value::Data(_) => {
                "struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value float64 }"
            }
            Value::Time(_) => "time.Time",
        }
    }

    fn truth(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Map(m) => !m.is_empty(),
            Value::Data(_) | Value::Time(_) => true,
        }
    }

    /// `fmt.Sprint` of one value.
    fn display(&self) -> String {
        match self {
            Value::Nil => "<nil>".into(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => format_float(*f, 'g', None),
            Value::Str(s) => s.clone(),
            Value::Map(m) => {
                let items: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("map[{}]", items.join(" "))
            }
            Value::Data(d) => format!(
                "{{{} {} {} {}}}",
                d.labels.display(),
                d.external_labels.display(),
                d.external_url.display(),
                d.value.display()
            ),
            Value::Time(ms) => go_time(*ms),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Execution
// ---------------------------------------------------------------------------------------------

enum Flow {
    Normal,
    Break,
    Continue,
}

struct Exec<'a> {
    name: &'a str,
    vars: Vec<(String, Value)>,
    out: String,
    data: &'a TemplateData,
}

/// Most iterations `range` may run over one value (templates are small; this bounds a
/// pathological one).
const MAX_OUTPUT: usize = 1 << 20;

impl Exec<'_> {
    fn fail(&self, pos: Pos, at: &str, message: impl std::fmt::Display) -> TemplateError {
        TemplateError(format!(
            "template: {}:{}:{}: executing {:?} at <{}>: {}",
            self.name, pos.line, pos.column, self.name, at, message
        ))
    }

    fn walk(&mut self, nodes: &[Node], dot: &Value) -> Result<Flow, TemplateError> {
        for node in nodes {
            if self.out.len() > MAX_OUTPUT {
                return Err(TemplateError(format!(
                    "template: {}: output longer than {MAX_OUTPUT} bytes",
                    self.name
                )));
            }
            match node {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(pipe) => {
                    let v = self.pipeline(pipe, dot, true)?;
                    if pipe.decl.is_empty() {
                        match v {
                            Value::Nil => self.out.push_str("<no value>"),
                            v => self.out.push_str(&v.display()),
                        }
                    }
                }
                Node::If(c) | Node::With(c) => {
                    let mark = self.vars.len();
                    let v = self.pipeline(&c.pipe, dot, true)?;
                    let flow = if v.truth() {
                        let inner = if matches!(node, Node::With(_)) {
                            &v
                        } else {
                            dot
                        };
                        self.walk(&c.list, inner)?
                    } else {
                        self.walk(&c.else_list, dot)?
                    };
                    self.vars.truncate(mark);
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Range(c) => {
                    let mark = self.vars.len();
                    let v = self.pipeline(&c.pipe, dot, false)?;
                    let items: Vec<(Value, Value)> = match &v {
                        Value::Map(m) => m
                            .iter()
                            .map(|(k, v)| (Value::Str(k.clone()), Value::Str(v.clone())))
                            .collect(),
                        Value::Nil => Vec::new(),
                        other => {
                            let at = c.pipe.cmds.first().map_or("", |c| c.text.as_str());
                            return Err(self.fail(
                                c.pipe.cmds.first().map_or(c.pipe.pos, |c| c.pos),
                                at,
                                format!("range can't iterate over {}", other.display()),
                            ));
                        }
                    };
                    if items.is_empty() {
                        self.walk(&c.else_list, dot)?;
                    }
                    for (k, elem) in items {
                        match c.pipe.decl.as_slice() {
                            [v] => self.vars.push((v.clone(), elem.clone())),
                            [k_name, v] => {
                                self.vars.push((k_name.clone(), k));
                                self.vars.push((v.clone(), elem.clone()));
                            }
                            _ => {}
                        }
                        let flow = self.walk(&c.list, &elem)?;
                        self.vars.truncate(mark);
                        if matches!(flow, Flow::Break) {
                            break;
                        }
                    }
                    self.vars.truncate(mark);
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    /// Evaluates a pipeline; `bind` sets its declared variables to the result.
    fn pipeline(
        &mut self,
        pipe: &Pipeline,
        dot: &Value,
        bind: bool,
    ) -> Result<Value, TemplateError> {
        let mut value: Option<Value> = None;
        for cmd in &pipe.cmds {
            value = Some(self.command(cmd, dot, value)?);
        }
        let value = value.unwrap_or(Value::Nil);
        if bind {
            for name in &pipe.decl {
                if pipe.assign {
                    if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                        slot.1 = value.clone();
                    }
                } else {
                    self.vars.push((name.clone(), value.clone()));
                }
            }
        }
        Ok(value)
    }

    fn command(
        &mut self,
        cmd: &Command,
        dot: &Value,
        piped: Option<Value>,
    ) -> Result<Value, TemplateError> {
        let pos = cmd.pos;
        let first = &cmd.args[0];
        if let Term::Func(name) = &first.term {
            return self.call(name, &cmd.args[1..], piped, dot, pos, &cmd.text);
        }
        if matches!(first.term, Term::Nil) {
            return Err(self.fail(pos, &cmd.text, "nil is not a command"));
        }
        if cmd.args.len() > 1 || piped.is_some() {
            return Err(self.fail(pos, &cmd.text, "can't give argument to non-function"));
        }
        self.operand(first, dot)
    }

    fn operand(&mut self, op: &Operand, dot: &Value) -> Result<Value, TemplateError> {
        let (pos, at) = (op.pos, op.text.as_str());
        let base = match &op.term {
            Term::Dot => dot.clone(),
            Term::Field(chain) => return self.fields(dot.clone(), chain, pos, at),
            Term::Var(name) => match self.vars.iter().rev().find(|(n, _)| n == name) {
                Some((_, v)) => v.clone(),
                None => {
                    return Err(self.fail(pos, at, format!("undefined variable: {name}")));
                }
            },
            Term::Func(name) => return self.call(name, &[], None, dot, pos, at),
            Term::Str(s) => Value::Str(s.clone()),
            Term::Int(i) => Value::Int(*i),
            Term::Float(f) => Value::Float(*f),
            Term::Bool(b) => Value::Bool(*b),
            Term::Nil => Value::Nil,
            Term::Pipe(p) => self.pipeline(p, dot, false)?,
        };
        self.fields(base, &op.fields, op.fields_pos, at)
    }

    fn fields(
        &self,
        mut v: Value,
        chain: &[String],
        pos: Pos,
        at: &str,
    ) -> Result<Value, TemplateError> {
        for f in chain {
            v = match &v {
                Value::Map(m) => Value::Str(m.get(f).cloned().unwrap_or_default()),
                Value::Data(d) => match f.as_str() {
                    "Labels" => d.labels.clone(),
                    "ExternalLabels" => d.external_labels.clone(),
                    "ExternalURL" => d.external_url.clone(),
                    "Value" => d.value.clone(),
                    _ => {
                        return Err(self.fail(
                            pos,
                            at,
                            format!("can't evaluate field {f} in type {}", v.type_name()),
                        ));
                    }
                },
                Value::Nil => {
                    return Err(self.fail(
                        pos,
                        at,
                        format!("nil pointer evaluating interface {{}}.{f}"),
                    ));
                }
                other => {
                    return Err(self.fail(
                        pos,
                        at,
                        format!("can't evaluate field {f} in type {}", other.type_name()),
                    ));
                }
            };
        }
        Ok(v)
    }

    fn call(
        &mut self,
        name: &str,
        args: &[Operand],
        piped: Option<Value>,
        dot: &Value,
        pos: Pos,
        at: &str,
    ) -> Result<Value, TemplateError> {
        // `and` / `or` short-circuit: arguments are evaluated only as needed.
        if name == "and" || name == "or" {
            let n = args.len() + usize::from(piped.is_some());
            if n < 1 {
                return Err(self.fail(
                    pos,
                    at,
                    format!("wrong number of args for {name}: want at least 1 got 0"),
                ));
            }
            let mut last = Value::Nil;
            for a in args {
                last = self.operand(a, dot)?;
                if (name == "and") != last.truth() {
                    return Ok(last);
                }
            }
            if let Some(p) = piped {
                last = p;
            }
            return Ok(last);
        }
        let mut values = Vec::with_capacity(args.len() + 1);
        for a in args {
            values.push(self.operand(a, dot)?);
        }
        if let Some(p) = piped {
            values.push(p);
        }
        call_function(name, &values, self.data).map_err(|e| match e {
            CallError::Call(m) => self.fail(pos, at, format!("error calling {name}: {m}")),
            // A mistyped argument is reported at that argument (the piped one at the call).
            CallError::Arg(i, m) => match args.get(i) {
                Some(a) => self.fail(a.pos, &a.text, m),
                None => self.fail(pos, at, m),
            },
            CallError::Args(m) => self.fail(pos, at, m),
        })
    }
}

enum CallError {
    /// The function returned an error (`error calling f: …`).
    Call(String),
    /// The arguments did not fit the function's signature.
    Args(String),
    /// Argument `.0` has the wrong type.
    Arg(usize, String),
}

fn want_args(name: &str, args: &[Value], n: usize) -> Result<(), CallError> {
    if args.len() == n {
        Ok(())
    } else {
        Err(CallError::Args(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        )))
    }
}

fn arg_str(args: &[Value], i: usize) -> Result<&str, CallError> {
    match &args[i] {
        Value::Str(s) => Ok(s),
        other => Err(CallError::Arg(
            i,
            format!(
                "wrong type for value; expected string; got {}",
                other.type_name()
            ),
        )),
    }
}

/// Prometheus's `convertToFloat`.
fn to_float(v: &Value) -> Result<f64, CallError> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::Int(i) => Ok(*i as f64),
        Value::Str(s) => parse_go_float(s).ok_or_else(|| {
            CallError::Call(format!("strconv.ParseFloat: parsing {s:?}: invalid syntax"))
        }),
        other => Err(CallError::Call(format!(
            "can't convert {} to float",
            other.type_name()
        ))),
    }
}

fn parse_go_float(s: &str) -> Option<f64> {
    let lower = s.to_ascii_lowercase();
    match lower.trim_start_matches(['+', '-']) {
        "inf" | "infinity" => {
            return Some(if s.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            });
        }
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    s.replace('_', "").parse().ok()
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Bool,
    Int,
    Float,
    Str,
}

fn basic_kind(v: &Value) -> Option<Kind> {
    match v {
        Value::Bool(_) => Some(Kind::Bool),
        Value::Int(_) => Some(Kind::Int),
        Value::Float(_) => Some(Kind::Float),
        Value::Str(_) => Some(Kind::Str),
        _ => None,
    }
}

fn compare(a: &Value, b: &Value, ordered: bool) -> Result<std::cmp::Ordering, CallError> {
    let bad_type = || CallError::Call("invalid type for comparison".into());
    let (ka, kb) = (
        basic_kind(a).ok_or_else(bad_type)?,
        basic_kind(b).ok_or_else(bad_type)?,
    );
    if ka != kb {
        return Err(CallError::Call("incompatible types for comparison".into()));
    }
    use std::cmp::Ordering;
    Ok(match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => {
            if ordered {
                return Err(bad_type());
            }
            if x == y {
                Ordering::Equal
            } else {
                Ordering::Less
            }
        }
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        // NaN compares unequal and unordered; Less keeps `eq` false and `lt` … as Go does
        // closely enough (Go's `lt NaN x` is false; so is ours for `lt`, see below).
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y).unwrap_or(Ordering::Greater),
        (Value::Str(x), Value::Str(y)) => x.cmp(y),
        _ => return Err(bad_type()),
    })
}

fn call_function(name: &str, args: &[Value], data: &TemplateData) -> Result<Value, CallError> {
    use std::cmp::Ordering;
    let one = |args: &[Value]| -> Result<Value, CallError> {
        want_args(name, args, 1)?;
        Ok(args[0].clone())
    };
    match name {
        "not" => Ok(Value::Bool(!one(args)?.truth())),
        "len" => match one(args)? {
            Value::Str(s) => Ok(Value::Int(s.len() as i64)),
            Value::Map(m) => Ok(Value::Int(m.len() as i64)),
            other => Err(CallError::Call(format!(
                "len of type {}",
                other.type_name()
            ))),
        },
        "index" => {
            if args.is_empty() {
                return Err(CallError::Args(
                    "wrong number of args for index: want at least 1 got 0".into(),
                ));
            }
            let mut v = args[0].clone();
            for k in &args[1..] {
                v = match (&v, k) {
                    (Value::Map(m), Value::Str(k)) => {
                        Value::Str(m.get(k).cloned().unwrap_or_default())
                    }
                    (Value::Map(_), other) => {
                        return Err(CallError::Call(format!(
                            "value has type {}; should be string",
                            other.type_name()
                        )));
                    }
                    (Value::Nil, _) => return Err(CallError::Call("index of untyped nil".into())),
                    (other, _) => {
                        return Err(CallError::Call(format!(
                            "can't index item of type {}",
                            other.type_name()
                        )));
                    }
                };
            }
            Ok(v)
        }
        "print" => Ok(Value::Str(sprint(args))),
        "println" => {
            let parts: Vec<String> = args.iter().map(Value::display).collect();
            Ok(Value::Str(format!("{}\n", parts.join(" "))))
        }
        "printf" => {
            let Some((_, rest)) = args.split_first() else {
                return Err(CallError::Args(
                    "wrong number of args for printf: want at least 1 got 0".into(),
                ));
            };
            Ok(Value::Str(sprintf(arg_str(args, 0)?, rest)))
        }
        "eq" | "ne" => {
            if args.len() < 2 {
                return Err(CallError::Call("missing argument for comparison".into()));
            }
            let mut truth = false;
            for other in &args[1..] {
                if compare(&args[0], other, false)? == Ordering::Equal {
                    truth = true;
                    break;
                }
            }
            if name == "ne" {
                want_args(name, args, 2)?;
                truth = !truth;
            }
            Ok(Value::Bool(truth))
        }
        "lt" | "le" | "gt" | "ge" => {
            want_args(name, args, 2)?;
            let nan = matches!(&args[0], Value::Float(f) if f.is_nan())
                || matches!(&args[1], Value::Float(f) if f.is_nan());
            let ord = compare(&args[0], &args[1], true)?;
            if nan {
                return Ok(Value::Bool(false));
            }
            Ok(Value::Bool(match name {
                "lt" => ord == Ordering::Less,
                "le" => ord != Ordering::Greater,
                "gt" => ord == Ordering::Greater,
                _ => ord != Ordering::Less,
            }))
        }
        "html" => Ok(Value::Str(html_escape(&sprint(args)))),
        "urlquery" => Ok(Value::Str(query_escape(&sprint(args)))),
        "safeHtml" => {
            want_args(name, args, 1)?;
            Ok(Value::Str(arg_str(args, 0)?.to_string()))
        }
        "toUpper" | "toLower" | "title" | "stripPort" => {
            want_args(name, args, 1)?;
            let s = arg_str(args, 0)?;
            Ok(Value::Str(match name {
                "toUpper" => s.to_uppercase(),
                "toLower" => s.to_lowercase(),
                "title" => go_title(s),
                _ => strip_port(s),
            }))
        }
        "reReplaceAll" => {
            want_args(name, args, 3)?;
            let (pattern, repl, text) = (arg_str(args, 0)?, arg_str(args, 1)?, arg_str(args, 2)?);
            let re = regex::Regex::new(pattern)
                .map_err(|e| CallError::Call(regexp_error(pattern, &e)))?;
            Ok(Value::Str(re.replace_all(text, repl).into_owned()))
        }
        "match" => {
            want_args(name, args, 2)?;
            let (pattern, text) = (arg_str(args, 0)?, arg_str(args, 1)?);
            let re = regex::Regex::new(pattern)
                .map_err(|e| CallError::Call(regexp_parse_error(pattern, &e)))?;
            Ok(Value::Bool(re.is_match(text)))
        }
        "humanize" | "humanize1024" | "humanizeDuration" | "humanizePercentage"
        | "humanizeTimestamp" | "toTime" => {
            want_args(name, args, 1)?;
            let v = to_float(&args[0])?;
            match name {
                "humanize" => Ok(Value::Str(humanize(v))),
                "humanize1024" => Ok(Value::Str(humanize1024(v))),
                "humanizeDuration" => Ok(Value::Str(humanize_duration(v))),
                "humanizePercentage" => Ok(Value::Str(format!(
                    "{}%",
                    format_float(v * 100.0, 'g', Some(4))
                ))),
                "humanizeTimestamp" => {
                    if v.is_nan() || v.is_infinite() {
                        return Ok(Value::Str(format_float(v, 'g', Some(4))));
                    }
                    Ok(Value::Str(go_time(timestamp_ms(v)?)))
                }
                _ => Ok(Value::Time(timestamp_ms(v)?)),
            }
        }
        "parseDuration" => {
            want_args(name, args, 1)?;
            let s = arg_str(args, 0)?;
            let d = crate::config::types::PromDuration::parse(s).map_err(CallError::Call)?;
            Ok(Value::Float(d.0.as_secs_f64()))
        }
        "externalURL" => {
            want_args(name, args, 0)?;
            Ok(Value::Str(data.external_url.clone()))
        }
        "pathPrefix" => {
            want_args(name, args, 0)?;
            Ok(Value::Str(url_path(&data.external_url)))
        }
        "graphLink" | "tableLink" => {
            want_args(name, args, 1)?;
            let expr = arg_str(args, 0)?;
            let tab = if name == "graphLink" { 0 } else { 1 };
            Ok(Value::Str(format!(
                "/graph?g0.expr={}&g0.tab={tab}",
                query_escape(expr)
            )))
        }
        other => Err(CallError::Args(format!("function {other:?} not defined"))),
    }
}

/// Go's `regexp.MustCompile` panic text (the reason itself is the Rust crate's).
fn regexp_error(pattern: &str, e: &regex::Error) -> String {
    let quoted = if pattern.contains('`') || pattern.chars().any(char::is_control) {
        format!("{pattern:?}")
    } else {
        format!("`{pattern}`")
    };
    format!(
        "regexp: Compile({quoted}): {}",
        regexp_parse_error(pattern, e)
    )
}

/// Go's `regexp.Compile` error text (the reason itself is the Rust crate's).
fn regexp_parse_error(pattern: &str, e: &regex::Error) -> String {
    let quoted = if pattern.contains('`') || pattern.chars().any(char::is_control) {
        format!("{pattern:?}")
    } else {
        format!("`{pattern}`")
    };
    let reason = e.to_string();
    let reason = reason
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .trim_start_matches("error: ")
        .to_string();
    format!("error parsing regexp: {reason}: {quoted}")
}

fn timestamp_ms(v: f64) -> Result<i64, CallError> {
    let ns = v * 1e9;
    if !(ns > i64::MIN as f64 && ns < i64::MAX as f64) {
        return Err(CallError::Call(format!(
            "{} cannot be represented as a nanoseconds timestamp since it overflows int64",
            format_float(v, 'g', None)
        )));
    }
    // Prometheus truncates to milliseconds (model.TimeFromUnixNano).
    Ok((ns as i64) / 1_000_000)
}

/// Go's `time.Time.String()` of a UTC time: `2006-01-02 15:04:05.999999999 +0000 UTC`.
fn go_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let Some(dt) = chrono::DateTime::from_timestamp(secs, 0) else {
        return format!("{ms}ms");
    };
    let mut s = dt.format("%Y-%m-%d %H:%M:%S").to_string();
    if frac != 0 {
        let f = format!("{frac:03}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s.push_str(" +0000 UTC");
    s
}

fn url_path(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    match after_scheme.find('/') {
        Some(i) => {
            let path = &after_scheme[i..];
            path.split(['?', '#']).next().unwrap_or("").to_string()
        }
        None => String::new(),
    }
}

/// Go's `strings.Title`: the first letter of each word in upper case.
fn go_title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_sep = true;
    for c in s.chars() {
        if prev_sep {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_sep = !(c.is_alphanumeric() || c == '_') && (c.is_ascii() || c.is_whitespace());
    }
    out
}

/// Prometheus's `stripPort`: the host of `host:port`, or the input when it has no port.
fn strip_port(s: &str) -> String {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((host, port)) = rest.split_once("]:")
            && !port.contains(':')
        {
            return host.to_string();
        }
        return s.to_string();
    }
    match s.rsplit_once(':') {
        Some((host, _)) if !host.contains(':') => host.to_string(),
        _ => s.to_string(),
    }
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '"' => out.push_str("&#34;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Go's `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            b => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// `fmt.Sprint`: spaces between operands when neither is a string.
fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !matches!(a, Value::Str(_)) && !matches!(args[i - 1], Value::Str(_)) {
            out.push(' ');
        }
        out.push_str(&a.display());
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Prometheus's humanize functions
// ---------------------------------------------------------------------------------------------

fn g4(v: f64) -> String {
    format_float(v, 'g', Some(4))
}

/// `humanize`: SI prefixes, 4 significant digits.
pub fn humanize(mut v: f64) -> String {
    if v == 0.0 || v.is_nan() || v.is_infinite() {
        return g4(v);
    }
    if v.abs() >= 1.0 {
        let mut prefix = "";
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
        return format!("{}{prefix}", g4(v));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}", g4(v))
}

/// `humanize1024`: binary prefixes.
pub fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || v.is_nan() || v.is_infinite() {
        return g4(v);
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", g4(v))
}

/// Go's `int64(v)` as the amd64 build of promtool computes it: out of range (and NaN)
/// is the minimum int64.
fn go_int64(v: f64) -> i64 {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if v.is_nan() || !(-LIMIT..LIMIT).contains(&v) {
        i64::MIN
    } else {
        v as i64
    }
}

/// `humanizeDuration`: seconds as `1d 2h 3m 4s`.
pub fn humanize_duration(mut v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return g4(v);
    }
    if v == 0.0 {
        return format!("{}s", g4(v));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let duration = go_int64(v);
        let seconds = duration % 60;
        let minutes = (duration / 60) % 60;
        let hours = (duration / 60 / 60) % 24;
        let days = duration / 60 / 60 / 24;
        if days != 0 {
            return format!("{sign}{days}d {hours}h {minutes}m {seconds}s");
        }
        if hours != 0 {
            return format!("{sign}{hours}h {minutes}m {seconds}s");
        }
        if minutes != 0 {
            return format!("{sign}{minutes}m {seconds}s");
        }
        return format!("{sign}{}s", g4(v));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", g4(v))
}

// ---------------------------------------------------------------------------------------------
// Go's number formatting
// ---------------------------------------------------------------------------------------------

/// Decimal digits of |v| (no leading or trailing zeros; empty for zero) and the decimal
/// point position, rounded to `digits` significant digits (`None`: shortest round-trip).
fn decimal_digits(v: f64, digits: Option<usize>) -> (String, i32) {
    let s = match digits {
        Some(d) => format!("{:.*e}", d.saturating_sub(1), v.abs()),
        None => format!("{:e}", v.abs()),
    };
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_end_matches('0').to_string();
    if digits.is_empty() {
        return (String::new(), 0);
    }
    (digits, exp + 1)
}

fn exp_suffix(exp: i32, upper: bool) -> String {
    let e = if upper { 'E' } else { 'e' };
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{e}{sign}{:02}", exp.abs())
}

fn fmt_e(neg: bool, digits: &str, dp: i32, prec: usize, upper: bool) -> String {
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    let mut chars = digits.chars();
    out.push(chars.next().unwrap_or('0'));
    if prec > 0 {
        out.push('.');
        let rest: String = chars.collect();
        out.push_str(&rest);
        for _ in rest.len()..prec {
            out.push('0');
        }
    }
    let exp = if digits.is_empty() { 0 } else { dp - 1 };
    out.push_str(&exp_suffix(exp, upper));
    out
}

fn fmt_f(neg: bool, digits: &str, dp: i32, prec: usize) -> String {
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    let d = digits.as_bytes();
    if dp > 0 {
        for i in 0..dp as usize {
            out.push(d.get(i).map_or('0', |b| char::from(*b)));
        }
    } else {
        out.push('0');
    }
    if prec > 0 {
        out.push('.');
        for i in 0..prec {
            let j = dp + i as i32;
            let c = if j >= 0 {
                d.get(j as usize).copied()
            } else {
                None
            };
            out.push(c.map_or('0', char::from));
        }
    }
    out
}

/// Go's `strconv.FormatFloat(v, fmt, prec, 64)` for `e`, `f`, `g` (upper case variants
/// with `E`, `G`); `prec` `None` is the shortest representation.
pub fn format_float(v: f64, verb: char, prec: Option<usize>) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let neg = v.is_sign_negative();
    let upper = verb.is_ascii_uppercase();
    match verb.to_ascii_lowercase() {
        'e' => {
            let p = prec.unwrap_or(usize::MAX);
            let (digits, dp) = if p == usize::MAX {
                decimal_digits(v, None)
            } else {
                decimal_digits(v, Some(p + 1))
            };
            let p = if p == usize::MAX {
                digits.len().saturating_sub(1)
            } else {
                p
            };
            fmt_e(neg, &digits, dp, p, upper)
        }
        'f' => match prec {
            Some(p) => {
                let s = format!("{:.*}", p, v.abs());
                if neg { format!("-{s}") } else { s }
            }
            None => {
                let (digits, dp) = decimal_digits(v, None);
                let p = (digits.len() as i32 - dp).max(0) as usize;
                fmt_f(neg, &digits, dp, p)
            }
        },
        _ => {
            let shortest = prec.is_none();
            let (digits, dp) = match prec {
                Some(0) => decimal_digits(v, Some(1)),
                Some(p) => decimal_digits(v, Some(p)),
                None => decimal_digits(v, None),
            };
            let nd = digits.len() as i32;
            let mut p = match prec {
                Some(0) => 1,
                Some(p) => p as i32,
                None => nd,
            };
            let mut eprec = p;
            if eprec > nd && nd >= dp {
                eprec = nd;
            }
            if shortest {
                eprec = 6;
            }
            let exp = dp - 1;
            if !digits.is_empty() && (exp < -4 || exp >= eprec) {
                if p > nd {
                    p = nd;
                }
                return fmt_e(neg, &digits, dp, (p - 1).max(0) as usize, upper);
            }
            if p > dp {
                p = nd;
            }
            fmt_f(neg, &digits, dp, (p - dp).max(0) as usize)
        }
    }
}

/// Go's `fmt.Sprintf` for the verbs templates use: `v s d f F e E g G q x X t c %`, with
/// flags, width and precision. Mismatches print as Go prints them (`%!d(float64=1.5)`).
fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let chars: Vec<char> = format.chars().collect();
    let mut i = 0;
    let mut next_arg = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '%' {
            out.push(c);
            i += 1;
            continue;
        }
        i += 1;
        let (mut minus, mut plus, mut sharp, mut space, mut zero) =
            (false, false, false, false, false);
        while let Some(&f) = chars.get(i) {
            match f {
                '-' => minus = true,
                '+' => plus = true,
                '#' => sharp = true,
                ' ' => space = true,
                '0' => zero = true,
                _ => break,
            }
            i += 1;
        }
        let mut width: Option<usize> = None;
        while let Some(d) = chars.get(i).and_then(|c| c.to_digit(10)) {
            width = Some(width.unwrap_or(0) * 10 + d as usize);
            i += 1;
        }
        let mut prec: Option<usize> = None;
        if chars.get(i) == Some(&'.') {
            i += 1;
            let mut p = 0usize;
            while let Some(d) = chars.get(i).and_then(|c| c.to_digit(10)) {
                p = p * 10 + d as usize;
                i += 1;
            }
            prec = Some(p);
        }
        let Some(&verb) = chars.get(i) else {
            out.push_str("%!(NOVERB)");
            break;
        };
        i += 1;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next_arg) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        next_arg += 1;
        let bad = |arg: &Value| format!("%!{verb}({}={})", arg.type_name(), arg.display());
        let number_sign = |s: String, nonneg: bool| -> String {
            if nonneg && plus {
                format!("+{s}")
            } else if nonneg && space {
                format!(" {s}")
            } else {
                s
            }
        };
        let body = match (verb, arg) {
            ('v', Value::Float(f)) => number_sign(
                format_float(*f, 'g', prec),
                !f.is_sign_negative() && !f.is_nan(),
            ),
            ('v', Value::Int(n)) => number_sign(n.to_string(), *n >= 0),
            ('v', Value::Str(s)) | ('s', Value::Str(s)) => match prec {
                Some(p) => s.chars().take(p).collect(),
                None => s.clone(),
            },
            ('v', other) => other.display(),
            ('s', Value::Map(_) | Value::Data(_) | Value::Time(_)) => arg.display(),
            ('d', Value::Int(n)) => number_sign(n.to_string(), *n >= 0),
            ('f' | 'F' | 'e' | 'E' | 'g' | 'G', Value::Float(f)) => {
                let v = if verb == 'F' { 'f' } else { verb };
                let p = match v {
                    'f' | 'e' | 'E' => Some(prec.unwrap_or(6)),
                    _ => prec,
                };
                let mut s = format_float(*f, v, p);
                if sharp && !s.contains('.') && f.is_finite() {
                    s.push('.');
                }
                number_sign(s, !f.is_sign_negative() && !f.is_nan())
            }
            ('t', Value::Bool(b)) => b.to_string(),
            ('q', Value::Str(s)) => format!("{s:?}"),
            ('q', Value::Int(n)) => {
                let c = u32::try_from(*n)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{FFFD}');
                format!("{c:?}")
            }
            ('c', Value::Int(n)) => u32::try_from(*n)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}')
                .to_string(),
            ('x' | 'X', Value::Int(n)) => {
                let s = if verb == 'x' {
                    format!("{:x}", n.unsigned_abs())
                } else {
                    format!("{:X}", n.unsigned_abs())
                };
                let s = if sharp {
                    format!("0{}{s}", if verb == 'x' { 'x' } else { 'X' })
                } else {
                    s
                };
                if *n < 0 { format!("-{s}") } else { s }
            }
            ('o', Value::Int(n)) => {
                let s = format!("{:o}", n.unsigned_abs());
                if *n < 0 { format!("-{s}") } else { s }
            }
            ('b', Value::Int(n)) => {
                let s = format!("{:b}", n.unsigned_abs());
                if *n < 0 { format!("-{s}") } else { s }
            }
            ('x' | 'X', Value::Str(s)) => s
                .bytes()
                .map(|b| {
                    if verb == 'x' {
                        format!("{b:02x}")
                    } else {
                        format!("{b:02X}")
                    }
                })
                .collect(),
            (_, other) => bad(other),
        };
        let w = width.unwrap_or(0);
        let len = body.chars().count();
        if len >= w {
            out.push_str(&body);
        } else if minus {
            out.push_str(&body);
            out.extend(std::iter::repeat_n(' ', w - len));
        } else if zero
            && matches!(arg, Value::Int(_) | Value::Float(_))
            && !body.contains("Inf")
            && !body.contains("NaN")
        {
            let (sign, digits) = match body.chars().next() {
                Some(c @ ('-' | '+' | ' ')) => (c.to_string(), &body[1..]),
                _ => (String::new(), body.as_str()),
            };
            out.push_str(&sign);
            out.extend(std::iter::repeat_n('0', w - len));
            out.push_str(digits);
        } else {
            out.extend(std::iter::repeat_n(' ', w - len));
            out.push_str(&body);
        }
    }
    if next_arg < args.len() {
        let extra: Vec<String> = args[next_arg..]
            .iter()
            .map(|a| format!("{}={}", a.type_name(), a.display()))
            .collect();
        let _ = write!(out, "%!(EXTRA {})", extra.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(value: f64, labels: &[(&str, &str)]) -> TemplateData {
        TemplateData {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            external_labels: [("env".to_string(), "prod".to_string())].into(),
            external_url: "http://example.org:9090/prom".into(),
            value,
        }
    }

    fn expand(text: &str, value: f64) -> String {
        let t = Template::parse("__alert_T", text).unwrap_or_else(|e| panic!("{text}: {e}"));
        t.expand_or_error(&data(value, &[("instance", "db:5432"), ("job", "pg")]))
    }

    #[test]
    fn go_float_formatting() {
        let cases: &[(f64, char, Option<usize>, &str)] = &[
            (1.0, 'g', None, "1"),
            (1_000_000.0, 'g', None, "1e+06"),
            (123_456.0, 'g', None, "123456"),
            (0.0001, 'g', None, "0.0001"),
            (0.00001, 'g', None, "1e-05"),
            (0.2, 'g', None, "0.2"),
            (-3.5, 'g', None, "-3.5"),
            (0.0, 'g', None, "0"),
            (20.0, 'g', Some(4), "20"),
            (524.288, 'g', Some(4), "524.3"),
            (12345.0, 'g', Some(4), "1.234e+04"),
            (f64::INFINITY, 'g', None, "+Inf"),
            (f64::NAN, 'g', Some(4), "NaN"),
            (1.23456, 'f', Some(2), "1.23"),
            (1234.5, 'e', Some(2), "1.23e+03"),
            (1.0, 'e', None, "1e+00"),
            (0.1, 'f', None, "0.1"),
        ];
        for (v, verb, prec, want) in cases {
            assert_eq!(format_float(*v, *verb, *prec), *want, "{v} {verb} {prec:?}");
        }
    }

    #[test]
    fn humanize_helpers() {
        assert_eq!(humanize(0.0), "0");
        assert_eq!(humanize(1234.0), "1.234k");
        assert_eq!(humanize(524_288_000.0), "524.3M");
        assert_eq!(humanize(0.001234), "1.234m");
        assert_eq!(humanize1024(1024.0), "1ki");
        assert_eq!(humanize1024(1.0), "1");
        assert_eq!(humanize1024(1_073_741_824.0), "1Gi");
        assert_eq!(humanize_duration(0.0), "0s");
        assert_eq!(humanize_duration(540.0), "9m 0s");
        assert_eq!(humanize_duration(101_200.0), "1d 4h 6m 40s");
        assert_eq!(humanize_duration(-3700.0), "-1h 1m 40s");
        assert_eq!(humanize_duration(1.5), "1.5s");
        assert_eq!(humanize_duration(0.0015), "1.5ms");
    }

    #[test]
    fn expansion_table() {
        let cases: &[(&str, f64, &str)] = &[
            ("plain text", 0.0, "plain text"),
            ("{{ $labels.instance }} down", 0.0, "db:5432 down"),
            ("{{ .Labels.job }}", 0.0, "pg"),
            ("[{{ $labels.missing }}]", 0.0, "[]"),
            ("{{ $value }}", 1e6, "1e+06"),
            ("{{ .Value }}", 2.5, "2.5"),
            ("{{ $value | humanize }}", 1234.0, "1.234k"),
            ("{{ humanize1024 $value }}", 2048.0, "2ki"),
            ("{{ $value | humanizeDuration }}", 90.0, "1m 30s"),
            ("{{ $value | humanizePercentage }}", 0.2, "20%"),
            (
                "{{ humanizeTimestamp 1.5 }}",
                0.0,
                "1970-01-01 00:00:01.5 +0000 UTC",
            ),
            (
                "{{ $value | humanizeTimestamp }}",
                86400.0,
                "1970-01-02 00:00:00 +0000 UTC",
            ),
            ("{{ printf \"%.2f\" $value }}", 1.23456, "1.23"),
            ("{{ printf \"%s=%v\" $labels.job $value }}", 1.0, "pg=1"),
            ("{{ printf \"%d\" $value }}", 1.0, "%!d(float64=1)"),
            (
                "{{ printf \"%5.1f|%-4s|\" $value \"a\" }}",
                2.25,
                "  2.2|a   |",
            ),
            (
                "{{ if gt $value 10.0 }}big{{ else }}small{{ end }}",
                11.0,
                "big",
            ),
            (
                "{{ if gt $value 10.0 }}big{{ else if gt $value 5.0 }}mid{{ else }}small{{ end }}",
                6.0,
                "mid",
            ),
            (
                "{{ if eq $labels.job \"pg\" \"redis\" }}db{{ end }}",
                0.0,
                "db",
            ),
            (
                "{{ if ne $labels.job \"pg\" }}x{{ else }}y{{ end }}",
                0.0,
                "y",
            ),
            (
                "{{ if and (ge $value 1.0) (le $value 2.0) }}in{{ end }}",
                1.5,
                "in",
            ),
            (
                "{{ if or (lt $value 0.0) (not true) }}x{{ else }}y{{ end }}",
                1.0,
                "y",
            ),
            (
                "{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}",
                0.0,
                "instance=db:5432;job=pg;",
            ),
            ("{{ range $labels }}{{ . }},{{ end }}", 0.0, "db:5432,pg,"),
            (
                "{{ range $k, $v := $labels }}{{ if eq $k \"job\" }}{{ break }}{{ end }}{{ $k }}{{ end }}",
                0.0,
                "instance",
            ),
            ("{{ with $labels.job }}job {{ . }}{{ end }}", 0.0, "job pg"),
            (
                "{{ with $labels.nope }}x{{ else }}none{{ end }}",
                0.0,
                "none",
            ),
            ("{{ $x := \"a\" }}{{ $x = \"b\" }}{{ $x }}", 0.0, "b"),
            (
                "{{ toUpper $labels.job }}{{ $labels.job | toLower }}",
                0.0,
                "PGpg",
            ),
            ("{{ title \"hello world-wide\" }}", 0.0, "Hello World-Wide"),
            (
                "{{ reReplaceAll \":.*\" \"\" $labels.instance }}",
                0.0,
                "db",
            ),
            (
                "{{ reReplaceAll \"(.*):(.*)\" \"$2/$1\" $labels.instance }}",
                0.0,
                "5432/db",
            ),
            (
                "{{ if match \"^db\" $labels.instance }}m{{ end }}",
                0.0,
                "m",
            ),
            ("{{ stripPort $labels.instance }}", 0.0, "db"),
            (
                "{{ $externalLabels.env }} {{ $externalURL }}",
                0.0,
                "prod http://example.org:9090/prom",
            ),
            ("{{ pathPrefix }}", 0.0, "/prom"),
            ("{{ parseDuration \"1m30s\" }}", 0.0, "90"),
            ("{{ len $labels }} {{ index $labels \"job\" }}", 0.0, "2 pg"),
            ("a  {{- \" b \" -}}  c", 0.0, "a b c"),
            ("x{{/* a comment */}}y", 0.0, "xy"),
            ("{{ print 1 2 \"a\" }}", 0.0, "1 2a"),
            ("{{ html \"<a>\" }}", 0.0, "&lt;a&gt;"),
            (
                "{{ 'a' }} {{ 0x10 }} {{ 1.5e3 }} {{ true }}",
                0.0,
                "97 16 1500 true",
            ),
            ("{{ (printf \"%s\" \"p\") }}", 0.0, "p"),
        ];
        for (text, value, want) in cases {
            assert_eq!(expand(text, *value), *want, "template {text}");
        }
    }

    #[test]
    fn execution_errors_replace_the_value() {
        let got = expand("{{ if gt $value 1 }}x{{ end }}", 2.0);
        assert!(
            got == "<error expanding template: error executing template __alert_T: template: \
                    __alert_T:1:118: executing \"__alert_T\" at <gt $value 1>: error calling gt: \
                    incompatible types for comparison>",
            "{got}"
        );
        let got = expand("{{ humanize \"abc\" }}", 0.0);
        assert!(
            got.contains("error calling humanize: strconv.ParseFloat"),
            "{got}"
        );
        let got = expand("{{ .Nope }}", 0.0);
        assert!(got.contains("can't evaluate field Nope"), "{got}");
        // A mistyped argument is reported at the argument, a piped one at the call; a
        // second line counts columns from 0.
        let got = expand("{{ toUpper $value }}", 0.0);
        assert!(
            got.contains("__alert_T:1:123: executing \"__alert_T\" at <$value>"),
            "{got}"
        );
        let got = expand("{{ $value | toUpper }}", 0.0);
        assert!(
            got.contains("__alert_T:1:124: executing \"__alert_T\" at <toUpper>"),
            "{got}"
        );
        let got = expand("line\n  {{ humanize \"x\" }}", 0.0);
        assert!(
            got.contains("__alert_T:2:5: executing \"__alert_T\" at <humanize \"x\">"),
            "{got}"
        );
        let got = expand("{{ nil }}", 0.0);
        assert!(got.contains("nil is not a command"), "{got}");
        let got = expand("{{ toUpper $value }}", 0.0);
        assert!(
            got.contains("wrong type for value; expected string; got float64"),
            "{got}"
        );
    }

    #[test]
    fn parse_errors() {
        let cases: &[(&str, &str)] = &[
            (
                "{{ $foo }}",
                "template: __alert_T:1: undefined variable \"$foo\"",
            ),
            (
                "{{ nofunc 1 }}",
                "template: __alert_T:1: function \"nofunc\" not defined",
            ),
            ("{{ query \"up\" }}", "function \"query\" is not supported"),
            ("{{ if true }}x", "unexpected EOF"),
            ("x{{ end }}", "unexpected {{end}}"),
            ("{{ $value", "unclosed action"),
            (
                "a\n{{ break }}",
                "template: __alert_T:2: {{break}} outside {{range}}",
            ),
            ("{{ template \"x\" }}", "not supported"),
            ("{{ }}", "missing value"),
            ("{{ \"a\" | \"b\" }}", "non executable command"),
        ];
        for (text, want) in cases {
            match Template::parse("__alert_T", text) {
                Ok(_) => panic!("{text} parsed"),
                Err(e) => assert!(e.0.contains(want), "{text}: {e}"),
            }
        }
        // Variables declared in a control do not leak out of it.
        assert!(Template::parse("t", "{{ if true }}{{ $x := 1 }}{{ end }}{{ $x }}").is_err());
    }
}
