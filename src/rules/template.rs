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
//!
//! # Notification templates
//!
//! The same engine expands Alertmanager-style notification templates
//! ([`Template::parse_with`] with [`Mode::Text`] or [`Mode::Html`], then
//! [`Template::expand_value`] over a [`TplValue`]). Their differences from alert templates:
//!
//! - Only `$` is predeclared (dot is the data, Alertmanager's `template.Data`); columns in
//!   error messages count from the start of the text, as Go's do.
//! - The functions are Go's built-ins and Alertmanager's (`toUpper toLower title join
//!   match safeHtml reReplaceAll stringSlice trimSpace date since humanizeDuration`), plus
//!   `humanize humanize1024 humanizePercentage` for the exporter's `.Value`. Prometheus's
//!   rule-only functions (`stripPort`, `externalURL`, …) are not defined there. `tz` is
//!   refused at parse: the exporter has no time zone database, and times print in UTC.
//! - Values have more shapes: lists (`range`, `len`, `index`), structs (field access), lists
//!   with fields (Alertmanager's `Alerts` with `.Firing`/`.Resolved`), `time.Time` with
//!   `.Unix .UnixMilli .IsZero .UTC .Format "layout" .Sub t`, `time.Duration` (from `since`
//!   or `Sub`) with `.Seconds .Minutes .Hours .Milliseconds .String`, and maps that are
//!   Alertmanager's `KV`, with `.SortedPairs .Names .Values .Remove list`.
//! - [`Mode::Html`] is a simplified `html/template`: every value an action prints is
//!   HTML-escaped, unless it is a `safeHtml` (or `html`) result. There is one context only,
//!   text: a value inside an attribute is escaped the same way (quotes included), but URLs
//!   are not filtered and `<script>`/`<style>` contents get no JavaScript or CSS escaping.
//! - `{{define}}`, `{{template}}` and `{{block}}` stay unsupported: a template is one text.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::rc::Rc;

/// Variables every alert template may use without declaring them.
const PREDECLARED: [&str; 5] = ["$", "$labels", "$externalLabels", "$externalURL", "$value"];

/// What a template is for: it decides the predeclared variables, the functions, how
/// values print and where error columns count from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// A Prometheus alert label or annotation (`$labels`, `$value`, Prometheus's
    /// functions), as promtool checks it.
    #[default]
    Alert,
    /// An Alertmanager notification template as `text/template` runs it.
    Text,
    /// An Alertmanager notification template whose printed values are HTML-escaped
    /// (a simplified `html/template`, see the module docs).
    Html,
}

impl Mode {
    fn is_notification(self) -> bool {
        matches!(self, Mode::Text | Mode::Html)
    }
}

/// Functions of notification templates besides Go's built-ins: Alertmanager's, and the
/// humanize helpers for `.Value`.
const NOTIFY_FUNCTIONS: &[&str] = &[
    "toUpper",
    "toLower",
    "title",
    "join",
    "match",
    "safeHtml",
    "reReplaceAll",
    "stringSlice",
    "trimSpace",
    "date",
    "since",
    "humanizeDuration",
    "humanize",
    "humanize1024",
    "humanizePercentage",
];

/// Functions Alertmanager defines that notification templates refuse, with the reason.
const NOTIFY_REFUSED: &[(&str, &str)] = &[("tz", "no time zone database here; times print in UTC")];

/// Go's zero `time.Time` (0001-01-01 00:00:00 UTC) in milliseconds since the epoch: the
/// `EndsAt` of an alert that still fires.
pub const GO_ZERO_TIME_MS: i64 = -62_135_596_800_000;

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

/// Go's built-in template functions, which every template may call.
const GO_BUILTINS: &[&str] = &[
    "and", "or", "not", "len", "index", "print", "printf", "println", "eq", "ne", "lt", "le", "gt",
    "ge", "html", "urlquery",
];

/// Prometheus's functions an alert template may call besides Go's built-ins.
const FUNCTIONS: &[&str] = &[
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

/// A value a notification template reads ([`Template::expand_value`]): the Go values of
/// Alertmanager's template data, in a form that needs no reflection.
#[derive(Debug, Clone, PartialEq)]
pub enum TplValue {
    /// Go's `nil` (prints `<no value>`).
    Nil,
    /// A `bool`.
    Bool(bool),
    /// An `int`.
    Int(i64),
    /// A `float64`.
    Float(f64),
    /// A `string`.
    Str(String),
    /// A `time.Time`: milliseconds since the epoch, always in UTC. [`GO_ZERO_TIME_MS`] is
    /// Go's zero time.
    Time(i64),
    /// A `map[string]string`; in notification templates Alertmanager's `KV`, with its
    /// methods `.SortedPairs`, `.Names`, `.Values` and `.Remove`.
    Map(BTreeMap<String, String>),
    /// A slice, possibly with zero-argument methods modelled as fields.
    List(TplList),
    /// A struct with named fields.
    Struct(TplStruct),
}

/// A slice value: its items, and the zero-argument methods of its type, modelled as
/// fields (Alertmanager's `Alerts` has `.Firing` and `.Resolved`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TplList {
    /// Go's name of the type, for error messages (`template.Alerts`, `[]string`).
    pub type_name: String,
    /// The elements.
    pub items: Vec<TplValue>,
    /// `.Name` → value.
    pub fields: Vec<(String, TplValue)>,
}

/// A struct value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TplStruct {
    /// Go's name of the type, for error messages (`template.Alert`).
    pub type_name: String,
    /// Fields in declaration order (Go prints a struct in that order).
    pub fields: Vec<(String, TplValue)>,
}

impl TplValue {
    /// A `[]string`.
    pub fn strings<S: Into<String>>(items: impl IntoIterator<Item = S>) -> TplValue {
        TplValue::List(TplList {
            type_name: "[]string".into(),
            items: items.into_iter().map(|s| TplValue::Str(s.into())).collect(),
            fields: Vec::new(),
        })
    }

    /// A string value.
    pub fn str(s: impl Into<String>) -> TplValue {
        TplValue::Str(s.into())
    }
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    name: String,
    text: String,
    mode: Mode,
    root: Vec<Node>,
}

impl Template {
    /// Parses `text`; `name` is used in error messages (Prometheus uses `__alert_<name>`).
    ///
    /// # Errors
    /// The first syntax error, an undefined variable or function, or a refused function.
    pub fn parse(name: &str, text: &str) -> Result<Self, TemplateError> {
        Self::parse_with(name, text, Mode::Alert)
    }

    /// Parses `text` as a template of the given [`Mode`]; `name` is used in error messages.
    ///
    /// # Errors
    /// The first syntax error, an undefined variable or function, or a refused function.
    pub fn parse_with(name: &str, text: &str, mode: Mode) -> Result<Self, TemplateError> {
        let segments = split(name, text)?;
        let vars = if mode.is_notification() {
            vec!["$".to_string()]
        } else {
            PREDECLARED.iter().map(|s| s.to_string()).collect()
        };
        let mut p = Parser {
            name,
            text,
            mode,
            segments,
            pos: 0,
            vars,
            range_depth: 0,
        };
        let (root, end) = p.list()?;
        if let Some(t) = end {
            return Err(p.error(t.line, &format!("unexpected {}", t.describe())));
        }
        Ok(Template {
            name: name.to_string(),
            text: text.to_string(),
            mode,
            root,
        })
    }

    /// The template's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The mode it was parsed in.
    pub fn mode(&self) -> Mode {
        self.mode
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
            mode: self.mode,
            vars: vec![
                ("$".to_string(), root.clone()),
                ("$labels".to_string(), labels),
                ("$externalLabels".to_string(), external),
                ("$externalURL".to_string(), url),
                ("$value".to_string(), value),
            ],
            out: String::new(),
            data: Some(data),
            now_ms: 0,
        };
        ex.walk(&self.root, &root)?;
        Ok(ex.out)
    }

    /// Expands the template with `dot` (also `$`) as its data; `now_ms` is the moment
    /// `since` counts to (ms since the epoch). Only `$` is bound: an alert template that
    /// reads `$labels` fails here with `undefined variable`.
    ///
    /// # Errors
    /// An execution error, worded as Go words it.
    pub fn expand_value(&self, dot: &TplValue, now_ms: i64) -> Result<String, TemplateError> {
        let root = Value::from_tpl(dot, self.mode);
        let mut ex = Exec {
            name: &self.name,
            mode: self.mode,
            vars: vec![("$".to_string(), root.clone())],
            out: String::new(),
            data: None,
            now_ms,
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
    mode: Mode,
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

    /// What Go's columns on line 1 count from: Prometheus's prepended definitions, or
    /// nothing in a notification template.
    fn defs_len(&self) -> usize {
        if self.mode.is_notification() {
            0
        } else {
            DEFS_LEN
        }
    }

    /// Line and column of a byte offset as Go reports them: the column counts bytes
    /// from 0, and on line 1 from the start of the definitions Prometheus prepends.
    fn pos_of(&self, offset: usize) -> Pos {
        let before = &self.text[..offset.min(self.text.len())];
        match before.rfind('\n') {
            None => Pos {
                line: 1,
                column: offset + self.defs_len(),
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
                                let kind = if self.mode.is_notification() {
                                    "notification"
                                } else {
                                    "alert"
                                };
                                return Err(self.error(
                                    line,
                                    &format!("{{{{{word}}}}} is not supported in {kind} templates"),
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
            column: if line == 1 {
                offset + self.defs_len()
            } else {
                offset
            },
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
                let notify = self.mode.is_notification();
                let refused = REFUSED
                    .iter()
                    .chain(if notify { NOTIFY_REFUSED } else { &[] })
                    .find(|(n, _)| *n == name);
                if let Some((_, why)) = refused {
                    return Err(self.error(
                        line,
                        &format!("function {name:?} is not supported by harena-exporter: {why}"),
                    ));
                }
                let known = GO_BUILTINS.contains(&name.as_str())
                    || if notify {
                        NOTIFY_FUNCTIONS.contains(&name.as_str())
                    } else {
                        FUNCTIONS.contains(&name.as_str())
                            || LINK_FUNCTIONS.contains(&name.as_str())
                    };
                if !known {
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
    /// `template.HTML` (notification templates): printed unescaped in HTML mode.
    Html(String),
    /// A `time.Duration`, in nanoseconds (notification templates).
    Duration(i64),
    /// Alertmanager's `template.KV`: a `map[string]string` with methods.
    Kv(Rc<BTreeMap<String, String>>),
    List(Rc<ListValue>),
    Struct(Rc<StructValue>),
}

#[derive(Debug, Clone, PartialEq)]
struct ListValue {
    type_name: String,
    items: Vec<Value>,
    fields: Vec<(String, Value)>,
}

#[derive(Debug, Clone, PartialEq)]
struct StructValue {
    type_name: String,
    fields: Vec<(String, Value)>,
}

impl Value {
    fn from_tpl(v: &TplValue, mode: Mode) -> Value {
        match v {
            TplValue::Nil => Value::Nil,
            TplValue::Bool(b) => Value::Bool(*b),
            TplValue::Int(i) => Value::Int(*i),
            TplValue::Float(f) => Value::Float(*f),
            TplValue::Str(s) => Value::Str(s.clone()),
            TplValue::Time(ms) => Value::Time(*ms),
            TplValue::Map(m) if mode.is_notification() => Value::Kv(Rc::new(m.clone())),
            TplValue::Map(m) => Value::Map(Rc::new(m.clone())),
            TplValue::List(l) => Value::List(Rc::new(ListValue {
                type_name: l.type_name.clone(),
                items: l.items.iter().map(|x| Value::from_tpl(x, mode)).collect(),
                fields: l
                    .fields
                    .iter()
                    .map(|(k, x)| (k.clone(), Value::from_tpl(x, mode)))
                    .collect(),
            })),
            TplValue::Struct(st) => Value::Struct(Rc::new(StructValue {
                type_name: st.type_name.clone(),
                fields: st
                    .fields
                    .iter()
                    .map(|(k, x)| (k.clone(), Value::from_tpl(x, mode)))
                    .collect(),
            })),
        }
    }

    /// A `[]string` of notification templates.
    fn strings(items: impl IntoIterator<Item = String>) -> Value {
        Value::List(Rc::new(ListValue {
            type_name: "[]string".into(),
            items: items.into_iter().map(Value::Str).collect(),
            fields: Vec::new(),
        }))
    }

    fn type_name(&self) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Borrowed(match self {
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
            Value::Html(_) => "template.HTML",
            Value::Duration(_) => "time.Duration",
            Value::Kv(_) => "template.KV",
            Value::List(l) => return std::borrow::Cow::Borrowed(l.type_name.as_str()),
            Value::Struct(st) => return std::borrow::Cow::Borrowed(st.type_name.as_str()),
        })
    }

    fn truth(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) | Value::Html(s) => !s.is_empty(),
            Value::Map(m) | Value::Kv(m) => !m.is_empty(),
            Value::Duration(d) => *d != 0,
            Value::List(l) => !l.items.is_empty(),
            Value::Data(_) | Value::Time(_) | Value::Struct(_) => true,
        }
    }

    /// `fmt.Sprint` of one value.
    fn display(&self) -> String {
        match self {
            Value::Nil => "<nil>".into(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => format_float(*f, 'g', None),
            Value::Str(s) | Value::Html(s) => s.clone(),
            Value::Map(m) | Value::Kv(m) => {
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
            Value::Duration(ns) => go_duration(*ns),
            Value::List(l) => {
                let items: Vec<String> = l.items.iter().map(Value::display).collect();
                format!("[{}]", items.join(" "))
            }
            Value::Struct(st) => {
                let items: Vec<String> = st.fields.iter().map(|(_, v)| v.display()).collect();
                format!("{{{}}}", items.join(" "))
            }
        }
    }

    /// The text of a string-kinded value (`string`, `template.HTML`).
    fn as_text(&self) -> Option<&str> {
        match self {
            Value::Str(s) | Value::Html(s) => Some(s),
            _ => None,
        }
    }
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `12m0s`, `1.5ms`, `0s`.
fn go_duration(ns: i64) -> String {
    fn frac(v: u64, prec: u32) -> (String, u64) {
        let p = 10u64.pow(prec);
        let (int, f) = (v / p, v % p);
        if f == 0 {
            return (String::new(), int);
        }
        let digits = format!("{f:0width$}", width = prec as usize);
        (format!(".{}", digits.trim_end_matches('0')), int)
    }
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let mut out = String::new();
    if u < 1_000_000_000 {
        let (unit, prec) = if u < 1_000 {
            ("ns", 0)
        } else if u < 1_000_000 {
            ("\u{b5}s", 3)
        } else {
            ("ms", 6)
        };
        let (f, int) = frac(u, prec);
        let _ = write!(out, "{int}{f}{unit}");
    } else {
        let (f, secs) = frac(u, 9);
        let (mins, s) = (secs / 60, secs % 60);
        let (hours, m) = (mins / 60, mins % 60);
        if hours > 0 {
            let _ = write!(out, "{hours}h");
        }
        if mins > 0 {
            let _ = write!(out, "{m}m");
        }
        let _ = write!(out, "{s}{f}s");
    }
    if neg {
        out.insert(0, '-');
    }
    out
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
    mode: Mode,
    vars: Vec<(String, Value)>,
    out: String,
    /// The alert data, for `externalURL` and `pathPrefix` (alert templates only).
    data: Option<&'a TemplateData>,
    /// What `since` counts to (ms since the epoch).
    now_ms: i64,
}

/// What functions may read besides their arguments.
struct CallCtx<'a> {
    mode: Mode,
    data: Option<&'a TemplateData>,
    now_ms: i64,
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
                            Value::Html(h) => self.out.push_str(&h),
                            v if self.mode == Mode::Html => {
                                self.out.push_str(&html_escape(&v.display()));
                            }
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
                        Value::Map(m) | Value::Kv(m) => m
                            .iter()
                            .map(|(k, v)| (Value::Str(k.clone()), Value::Str(v.clone())))
                            .collect(),
                        Value::List(l) => l
                            .items
                            .iter()
                            .enumerate()
                            .map(|(i, x)| {
                                (Value::Int(i64::try_from(i).unwrap_or(i64::MAX)), x.clone())
                            })
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
            // `.Labels.Remove (stringSlice "a")`, `.StartsAt.Format "…"`: a method call
            // with arguments (notification templates only).
            if self.mode.is_notification()
                && let Some((receiver, method)) = self.method_receiver(first, dot)?
            {
                let mut args = Vec::with_capacity(cmd.args.len());
                for a in &cmd.args[1..] {
                    args.push(self.operand(a, dot)?);
                }
                if let Some(p) = piped {
                    args.push(p);
                }
                return call_method(&receiver, &method, &args)
                    .map_err(|m| self.fail(first.pos, &first.text, m));
            }
            return Err(self.fail(pos, &cmd.text, "can't give argument to non-function"));
        }
        self.operand(first, dot)
    }

    /// The receiver and name of the last field of an operand that ends in a field
    /// (`.A.B`, `$x.B`, `(…).B`); `None` when it has no field.
    fn method_receiver(
        &mut self,
        op: &Operand,
        dot: &Value,
    ) -> Result<Option<(Value, String)>, TemplateError> {
        let (pos, at) = (op.pos, op.text.as_str());
        if let Term::Field(chain) = &op.term {
            let Some((last, init)) = chain.split_last() else {
                return Ok(None);
            };
            let receiver = self.fields(dot.clone(), init, pos, at)?;
            return Ok(Some((receiver, last.clone())));
        }
        let Some((last, init)) = op.fields.split_last() else {
            return Ok(None);
        };
        let base = Operand {
            fields: Vec::new(),
            ..op.clone()
        };
        let base = self.operand(&base, dot)?;
        let receiver = self.fields(base, init, op.fields_pos, at)?;
        Ok(Some((receiver, last.clone())))
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
            if self.mode.is_notification() {
                v = notify_field(&v, f).map_err(|m| self.fail(pos, at, m))?;
                continue;
            }
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
        let ctx = CallCtx {
            mode: self.mode,
            data: self.data,
            now_ms: self.now_ms,
        };
        call_function(name, &values, &ctx).map_err(|e| match e {
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

/// Argument `i` as a `[]string`.
fn arg_strings(args: &[Value], i: usize) -> Result<Vec<&str>, CallError> {
    let wrong = |t: &str| {
        CallError::Arg(
            i,
            format!("wrong type for value; expected []string; got {t}"),
        )
    };
    match &args[i] {
        Value::List(l) if l.type_name == "[]string" => Ok(l
            .items
            .iter()
            .map(|x| x.as_text().unwrap_or_default())
            .collect()),
        other => Err(wrong(&other.type_name())),
    }
}

/// Argument `i` as a `time.Time` (ms since the epoch).
fn arg_time(args: &[Value], i: usize) -> Result<i64, CallError> {
    match &args[i] {
        Value::Time(ms) => Ok(*ms),
        other => Err(CallError::Arg(
            i,
            format!(
                "wrong type for value; expected time.Time; got {}",
                other.type_name()
            ),
        )),
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
        // Alertmanager's `humanizeDuration` takes a `time.Duration` as seconds.
        Value::Duration(ns) => Ok(*ns as f64 / 1e9),
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
        Value::Str(_) | Value::Html(_) => Some(Kind::Str),
        Value::Duration(_) => Some(Kind::Int),
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
        (Value::Int(x) | Value::Duration(x), Value::Int(y) | Value::Duration(y)) => x.cmp(y),
        // NaN compares unequal and unordered; Less keeps `eq` false and `lt` … as Go does
        // closely enough (Go's `lt NaN x` is false; so is ours for `lt`, see below).
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y).unwrap_or(Ordering::Greater),
        (Value::Str(x) | Value::Html(x), Value::Str(y) | Value::Html(y)) => x.cmp(y),
        _ => return Err(bad_type()),
    })
}

fn call_function(name: &str, args: &[Value], ctx: &CallCtx<'_>) -> Result<Value, CallError> {
    use std::cmp::Ordering;
    let notify = ctx.mode.is_notification();
    let one = |args: &[Value]| -> Result<Value, CallError> {
        want_args(name, args, 1)?;
        Ok(args[0].clone())
    };
    match name {
        "not" => Ok(Value::Bool(!one(args)?.truth())),
        "len" => match one(args)? {
            Value::Str(s) | Value::Html(s) => Ok(Value::Int(s.len() as i64)),
            Value::Map(m) | Value::Kv(m) => Ok(Value::Int(m.len() as i64)),
            Value::List(l) => Ok(Value::Int(l.items.len() as i64)),
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
                    (Value::Map(m) | Value::Kv(m), Value::Str(k)) => {
                        Value::Str(m.get(k).cloned().unwrap_or_default())
                    }
                    (Value::List(l), Value::Int(i)) => {
                        match usize::try_from(*i).ok().and_then(|i| l.items.get(i)) {
                            Some(x) => x.clone(),
                            None => {
                                return Err(CallError::Call(format!("index out of range: {i}")));
                            }
                        }
                    }
                    (Value::List(_), other) => {
                        return Err(CallError::Call(format!(
                            "cannot index slice/array with type {}",
                            other.type_name()
                        )));
                    }
                    (Value::Map(_) | Value::Kv(_), other) => {
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
        // In HTML mode the escaped text is safe: printing it again must not escape twice.
        "html" if ctx.mode == Mode::Html => Ok(Value::Html(html_escape(&sprint(args)))),
        "html" => Ok(Value::Str(html_escape(&sprint(args)))),
        "urlquery" => Ok(Value::Str(query_escape(&sprint(args)))),
        "safeHtml" => {
            want_args(name, args, 1)?;
            let s = arg_str(args, 0)?.to_string();
            Ok(if notify {
                Value::Html(s)
            } else {
                Value::Str(s)
            })
        }
        "trimSpace" => {
            want_args(name, args, 1)?;
            Ok(Value::Str(arg_str(args, 0)?.trim().to_string()))
        }
        "stringSlice" => {
            let mut items = Vec::with_capacity(args.len());
            for i in 0..args.len() {
                items.push(arg_str(args, i)?.to_string());
            }
            Ok(Value::strings(items))
        }
        "join" => {
            want_args(name, args, 2)?;
            let sep = arg_str(args, 0)?;
            let items = arg_strings(args, 1)?;
            Ok(Value::Str(items.join(sep)))
        }
        "date" => {
            want_args(name, args, 2)?;
            let layout = arg_str(args, 0)?;
            let ms = arg_time(args, 1)?;
            Ok(Value::Str(go_format_time(ms, layout)))
        }
        "since" => {
            want_args(name, args, 1)?;
            let ms = arg_time(args, 0)?;
            Ok(Value::Duration(
                ctx.now_ms.saturating_sub(ms).saturating_mul(1_000_000),
            ))
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
            Ok(Value::Str(
                ctx.data.map(|d| d.external_url.clone()).unwrap_or_default(),
            ))
        }
        "pathPrefix" => {
            want_args(name, args, 0)?;
            Ok(Value::Str(
                ctx.data
                    .map(|d| url_path(&d.external_url))
                    .unwrap_or_default(),
            ))
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

/// A field (or zero-argument method) of a value in a notification template.
fn notify_field(v: &Value, f: &str) -> Result<Value, String> {
    let no_field = |v: &Value| format!("can't evaluate field {f} in type {}", v.type_name());
    let want_args = |n: usize| format!("wrong number of args for {f}: want {n} got 0");
    Ok(match v {
        Value::Kv(m) => match f {
            "SortedPairs" => sorted_pairs(m),
            "Names" => Value::strings(sorted_keys(m).into_iter().map(|(k, _)| k.clone())),
            "Values" => Value::strings(sorted_keys(m).into_iter().map(|(_, v)| v.clone())),
            "Remove" => return Err(want_args(1)),
            key => Value::Str(m.get(key).cloned().unwrap_or_default()),
        },
        Value::Map(m) => Value::Str(m.get(f).cloned().unwrap_or_default()),
        Value::List(l) => match l.fields.iter().find(|(k, _)| k == f) {
            Some((_, x)) => x.clone(),
            None => return Err(no_field(v)),
        },
        Value::Struct(st) => match st.fields.iter().find(|(k, _)| k == f) {
            Some((_, x)) => x.clone(),
            None => return Err(no_field(v)),
        },
        Value::Time(ms) => match f {
            "Unix" => Value::Int(ms.div_euclid(1000)),
            "UnixMilli" => Value::Int(*ms),
            "IsZero" => Value::Bool(*ms == GO_ZERO_TIME_MS),
            "UTC" => Value::Time(*ms),
            "Format" | "Sub" => return Err(want_args(1)),
            _ => return Err(no_field(v)),
        },
        Value::Duration(ns) => match f {
            "Hours" => Value::Float(*ns as f64 / 3.6e12),
            "Minutes" => Value::Float(*ns as f64 / 6e10),
            "Seconds" => Value::Float(*ns as f64 / 1e9),
            "Milliseconds" => Value::Int(ns / 1_000_000),
            "String" => Value::Str(go_duration(*ns)),
            _ => return Err(no_field(v)),
        },
        Value::Nil => return Err(format!("nil pointer evaluating interface {{}}.{f}")),
        other => return Err(no_field(other)),
    })
}

/// A method called with arguments in a notification template (`.Labels.Remove …`,
/// `.StartsAt.Format …`, `.EndsAt.Sub …`).
fn call_method(receiver: &Value, name: &str, args: &[Value]) -> Result<Value, String> {
    let want = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!(
                "wrong number of args for {name}: want {n} got {}",
                args.len()
            ))
        }
    };
    let wrong_type = |want: &str, got: &Value| {
        format!(
            "wrong type for value; expected {want}; got {}",
            got.type_name()
        )
    };
    match (receiver, name) {
        (Value::Kv(m), "Remove") => {
            want(1)?;
            let Value::List(l) = &args[0] else {
                return Err(wrong_type("[]string", &args[0]));
            };
            if l.type_name != "[]string" {
                return Err(wrong_type("[]string", &args[0]));
            }
            let mut out = (**m).clone();
            for k in l.items.iter().filter_map(Value::as_text) {
                out.remove(k);
            }
            Ok(Value::Kv(Rc::new(out)))
        }
        (Value::Time(ms), "Format") => {
            want(1)?;
            match &args[0] {
                Value::Str(layout) => Ok(Value::Str(go_format_time(*ms, layout))),
                other => Err(wrong_type("string", other)),
            }
        }
        (Value::Time(ms), "Sub") => {
            want(1)?;
            match &args[0] {
                Value::Time(t) => Ok(Value::Duration(
                    ms.saturating_sub(*t).saturating_mul(1_000_000),
                )),
                other => Err(wrong_type("time.Time", other)),
            }
        }
        (Value::Kv(_), "SortedPairs" | "Names" | "Values") => Err(format!(
            "wrong number of args for {name}: want 0 got {}",
            args.len()
        )),
        (Value::Kv(_) | Value::Map(_), _) => {
            Err(format!("{name} is not a method but has arguments"))
        }
        (Value::Time(_), "Unix" | "UnixMilli" | "IsZero" | "UTC")
        | (Value::Duration(_), "Hours" | "Minutes" | "Seconds" | "Milliseconds" | "String") => Err(
            format!("wrong number of args for {name}: want 0 got {}", args.len()),
        ),
        (Value::Struct(st), _) if st.fields.iter().any(|(k, _)| k == name) => Err(format!(
            "{name} has arguments but cannot be invoked as function"
        )),
        (Value::List(l), _) if l.fields.iter().any(|(k, _)| k == name) => Err(format!(
            "wrong number of args for {name}: want 0 got {}",
            args.len()
        )),
        (Value::Nil, _) => Err(format!("nil pointer evaluating interface {{}}.{name}")),
        (other, _) => Err(format!(
            "can't evaluate field {name} in type {}",
            other.type_name()
        )),
    }
}

/// Alertmanager's key order for `KV`: `alertname` first, then the others sorted.
fn sorted_keys(m: &BTreeMap<String, String>) -> Vec<(&String, &String)> {
    let mut out: Vec<(&String, &String)> = m.iter().filter(|(k, _)| *k == "alertname").collect();
    out.extend(m.iter().filter(|(k, _)| *k != "alertname"));
    out
}

/// Alertmanager's `KV.SortedPairs()`: a `template.Pairs` of `template.Pair{Name, Value}`,
/// with its methods `.Names` and `.Values`.
fn sorted_pairs(m: &BTreeMap<String, String>) -> Value {
    let keys = sorted_keys(m);
    let items = keys
        .iter()
        .map(|(k, v)| {
            Value::Struct(Rc::new(StructValue {
                type_name: "template.Pair".into(),
                fields: vec![
                    ("Name".into(), Value::Str((*k).clone())),
                    ("Value".into(), Value::Str((*v).clone())),
                ],
            }))
        })
        .collect();
    Value::List(Rc::new(ListValue {
        type_name: "template.Pairs".into(),
        items,
        fields: vec![
            (
                "Names".into(),
                Value::strings(keys.iter().map(|(k, _)| (*k).clone())),
            ),
            (
                "Values".into(),
                Value::strings(keys.iter().map(|(_, v)| (*v).clone())),
            ),
        ],
    }))
}

/// Go's `time.Time.Format(layout)` of a UTC time, for the layout elements of Go's `time`
/// package: `2006 06 01 1 Jan January 02 2 _2 002 15 03 3 04 4 05 5 PM pm Mon Monday MST`,
/// the zone offsets (`-0700 -07:00 -07 Z0700 Z07:00 Z07` …, always UTC here) and fractional
/// seconds (`.000`, `.999`, also after `,`). Anything else is copied.
pub fn go_format_time(ms: i64, layout: &str) -> String {
    use chrono::{Datelike, Timelike};
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
    ];
    let Some(t) = chrono::DateTime::from_timestamp_millis(ms) else {
        return format!("{ms}ms");
    };
    let month = MONTHS[t.month0() as usize];
    let day = DAYS[t.weekday().num_days_from_sunday() as usize];
    let hour12 = match t.hour() % 12 {
        0 => 12,
        h => h,
    };
    let millis = ms.rem_euclid(1000);
    let b = layout.as_bytes();
    let mut out = String::with_capacity(layout.len() + 8);
    let mut i = 0;
    // The longest element that starts at `i`, as Go's `nextStdChunk` picks it.
    while i < b.len() {
        let rest = &layout[i..];
        let starts = |p: &str| rest.starts_with(p);
        let (text, n): (String, usize) = if starts("January") {
            (month.into(), 7)
        } else if starts("Jan") {
            (month[..3].into(), 3)
        } else if starts("Monday") {
            (day.into(), 6)
        } else if starts("Mon") {
            (day[..3].into(), 3)
        } else if starts("MST") {
            ("UTC".into(), 3)
        } else if starts("2006") {
            (format!("{:04}", t.year()), 4)
        } else if starts("002") {
            (format!("{:03}", t.ordinal()), 3)
        } else if starts("01") {
            (format!("{:02}", t.month()), 2)
        } else if starts("02") {
            (format!("{:02}", t.day()), 2)
        } else if starts("03") {
            (format!("{hour12:02}"), 2)
        } else if starts("04") {
            (format!("{:02}", t.minute()), 2)
        } else if starts("05") {
            (format!("{:02}", t.second()), 2)
        } else if starts("06") {
            (format!("{:02}", t.year().rem_euclid(100)), 2)
        } else if starts("15") {
            (format!("{:02}", t.hour()), 2)
        } else if starts("1") {
            (t.month().to_string(), 1)
        } else if starts("__2") {
            (format!("{:>3}", t.ordinal()), 3)
        } else if starts("_2") && !starts("_2006") {
            (format!("{:>2}", t.day()), 2)
        } else if starts("2") {
            (t.day().to_string(), 1)
        } else if starts("3") {
            (hour12.to_string(), 1)
        } else if starts("4") {
            (t.minute().to_string(), 1)
        } else if starts("5") {
            (t.second().to_string(), 1)
        } else if starts("PM") || starts("pm") {
            let pm = if t.hour() >= 12 { "PM" } else { "AM" };
            (
                if starts("pm") {
                    pm.to_lowercase()
                } else {
                    pm.into()
                },
                2,
            )
        } else if let Some(p) = ["-07:00:00", "-070000", "-07:00", "-0700", "-07"]
            .iter()
            .find(|p| starts(p))
        {
            let zeros: String = p[1..]
                .chars()
                .map(|c| if c == ':' { ':' } else { '0' })
                .collect();
            (format!("+{zeros}"), p.len())
        } else if let Some(p) = ["Z07:00:00", "Z070000", "Z07:00", "Z0700", "Z07"]
            .iter()
            .find(|p| starts(p))
        {
            ("Z".into(), p.len())
        } else if (b[i] == b'.' || b[i] == b',') && matches!(b.get(i + 1), Some(b'0' | b'9')) && {
            let d = b[i + 1];
            let j = i + 1 + b[i + 1..].iter().take_while(|c| **c == d).count();
            !b.get(j).is_some_and(u8::is_ascii_digit)
        } {
            let d = b[i + 1];
            let digits = b[i + 1..].iter().take_while(|c| **c == d).count();
            let frac = format!("{millis:03}{}", "0".repeat(digits.saturating_sub(3)));
            let frac = &frac[..digits.min(frac.len())];
            let sep = char::from(b[i]);
            let text = if d == b'0' {
                format!("{sep}{frac}")
            } else {
                let trimmed = frac.trim_end_matches('0');
                if trimmed.is_empty() {
                    String::new()
                } else {
                    format!("{sep}{trimmed}")
                }
            };
            (text, 1 + digits)
        } else {
            let ch = rest.chars().next().unwrap_or(' ');
            (ch.to_string(), ch.len_utf8())
        };
        out.push_str(&text);
        i += n;
    }
    out
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
        if i > 0 && a.as_text().is_none() && args[i - 1].as_text().is_none() {
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
            ('v' | 's', Value::Str(s) | Value::Html(s)) => match prec {
                Some(p) => s.chars().take(p).collect(),
                None => s.clone(),
            },
            ('v', other) => other.display(),
            (
                's',
                Value::Map(_)
                | Value::Data(_)
                | Value::Time(_)
                | Value::Kv(_)
                | Value::List(_)
                | Value::Struct(_)
                | Value::Duration(_),
            ) => arg.display(),
            ('d', Value::Duration(n)) => number_sign(n.to_string(), *n >= 0),
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

    /// 2024-05-01 10:00:00.5 UTC.
    const AT: i64 = 1_714_557_600_500;

    fn notify_data() -> TplValue {
        let item = |name: &str| {
            TplValue::Struct(TplStruct {
                type_name: "test.Item".into(),
                fields: vec![("Name".into(), TplValue::str(name))],
            })
        };
        TplValue::Struct(TplStruct {
            type_name: "*test.Data".into(),
            fields: vec![
                ("Name".into(), TplValue::str("n<&>\"'")),
                (
                    "Items".into(),
                    TplValue::List(TplList {
                        type_name: "test.Items".into(),
                        items: vec![item("a"), item("b")],
                        fields: vec![("First".into(), item("a"))],
                    }),
                ),
                (
                    "Labels".into(),
                    TplValue::Map(
                        [("b", "2"), ("alertname", "Down"), ("a", "1")]
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                    ),
                ),
                ("At".into(), TplValue::Time(AT)),
                ("Zero".into(), TplValue::Time(GO_ZERO_TIME_MS)),
                ("Value".into(), TplValue::Float(1234.5)),
                ("Empty".into(), TplValue::List(TplList::default())),
            ],
        })
    }

    fn notify(mode: Mode, text: &str) -> Result<String, String> {
        let t = Template::parse_with("t", text, mode).map_err(|e| e.0)?;
        // 12 min 1.5 s after AT.
        t.expand_value(&notify_data(), AT + 721_500)
            .map_err(|e| e.0)
    }

    #[test]
    fn notification_mode_table() {
        let cases: &[(&str, &str)] = &[
            ("{{ range .Items }}{{ .Name }},{{ end }}", "a,b,"),
            (
                "{{ range $i, $x := .Items }}{{ $i }}:{{ $x.Name }} {{ end }}",
                "0:a 1:b ",
            ),
            ("{{ range .Empty }}x{{ else }}none{{ end }}", "none"),
            ("{{ len .Items }} {{ (index .Items 1).Name }}", "2 b"),
            ("{{ .Items.First.Name }} {{ .Items }}", "a [{a} {b}]"),
            ("{{ if .Empty }}x{{ else }}empty{{ end }}", "empty"),
            ("{{ .Labels.b }}[{{ .Labels.nope }}]", "2[]"),
            ("{{ index .Labels \"a\" }}", "1"),
            ("{{ .Labels.Names | join \",\" }}", "alertname,a,b"),
            ("{{ .Labels.Values | join \" \" }}", "Down 1 2"),
            (
                "{{ range .Labels.SortedPairs }}{{ .Name }}={{ .Value }};{{ end }}",
                "alertname=Down;a=1;b=2;",
            ),
            ("{{ .Labels.SortedPairs.Names | join \"\" }}", "alertnameab"),
            (
                "{{ .Labels.Remove (stringSlice \"alertname\" \"b\") }}",
                "map[a:1]",
            ),
            (
                "{{ range $k, $v := .Labels }}{{ $k }}{{ end }}",
                "aalertnameb",
            ),
            ("{{ .At }}", "2024-05-01 10:00:00.5 +0000 UTC"),
            (
                "{{ .Zero }} {{ .Zero.IsZero }} {{ .At.IsZero }}",
                "0001-01-01 00:00:00 +0000 UTC true false",
            ),
            (
                "{{ .At | date \"2006-01-02 15:04:05 MST\" }}",
                "2024-05-01 10:00:00 UTC",
            ),
            (
                "{{ .At.Format \"Mon Monday Jan January 1 01 2 02 _2 002 06 3 03 4 04 5 05 15 PM pm\" }}",
                "Wed Wednesday May May 5 05 1 01  1 122 24 10 10 0 00 0 00 10 AM am",
            ),
            (
                "{{ .At.Format \"-0700 -07:00 -07 Z0700 Z07:00 .000 .999 ,00 .9999 1.000x\" }}",
                "+0000 +00:00 +00 Z Z .500 .5 ,50 .5 5.500x",
            ),
            ("{{ .Zero.Format \".999|.000\" }}", "|.000"),
            (
                "{{ .At.Unix }} {{ .At.UnixMilli }}",
                "1714557600 1714557600500",
            ),
            ("{{ since .At }}", "12m1.5s"),
            ("{{ since .At | humanizeDuration }}", "12m 1s"),
            (
                "{{ (since .At).Minutes }} {{ (since .At).Milliseconds }}",
                "12.025 721500",
            ),
            (
                "{{ .At.Sub .Zero | printf \"%.0f\" }}",
                "%!f(time.Duration=2562047h47m16.854775807s)",
            ),
            (
                "{{ (.At.Sub .At) }} {{ .At.Sub .At | humanizeDuration }}",
                "0s 0s",
            ),
            (
                "{{ printf \"%v|%s|%d\" (since .At) (since .At) (since .At) }}",
                "12m1.5s|12m1.5s|721500000000",
            ),
            ("{{ if gt (since .At) 0 }}old{{ end }}", "old"),
            (
                "{{ trimSpace \"  a b \" }}|{{ toUpper \"a\" }}{{ title \"ab cd\" }}",
                "a b|AAb Cd",
            ),
            (
                "{{ if match \"^a\" \"abc\" }}y{{ end }}{{ reReplaceAll \"a\" \"b\" \"aa\" }}",
                "ybb",
            ),
            (
                "{{ .Value | humanize }} {{ humanizePercentage 0.5 }} {{ .Value }}",
                "1.234k 50% 1234.5",
            ),
            (
                "{{ stringSlice \"a\" \"b\" }} {{ len (stringSlice) }}",
                "[a b] 0",
            ),
            ("{{ safeHtml \"<b>\" }}{{ .Name }}", "<b>n<&>\"'"),
            (
                "{{ eq (safeHtml \"a\") \"a\" }} {{ print (safeHtml \"a\") 1 }}",
                "true a1",
            ),
            ("{{ $.Name }}", "n<&>\"'"),
        ];
        for (text, want) in cases {
            assert_eq!(
                notify(Mode::Text, text).as_deref(),
                Ok(*want),
                "template {text}"
            );
        }
    }

    #[test]
    fn notification_mode_html_escapes_printed_values() {
        let cases: &[(&str, &str)] = &[
            ("<p>{{ .Name }}</p>", "<p>n&lt;&amp;&gt;&#34;&#39;</p>"),
            ("{{ safeHtml \"<b>\" }}", "<b>"),
            ("{{ html .Name }}", "n&lt;&amp;&gt;&#34;&#39;"),
            ("{{ printf \"<%s>\" \"x\" }}", "&lt;x&gt;"),
            ("{{ .Labels }}", "map[a:1 alertname:Down b:2]"),
            ("{{ $x := \"<\" }}{{ $x }}", "&lt;"),
        ];
        for (text, want) in cases {
            assert_eq!(
                notify(Mode::Html, text).as_deref(),
                Ok(*want),
                "template {text}"
            );
        }
    }

    #[test]
    fn notification_mode_errors() {
        let cases: &[(&str, &str)] = &[
            (
                "{{ .Nope }}",
                "template: t:1:3: executing \"t\" at <.Nope>: can't evaluate field Nope in type *test.Data",
            ),
            (
                "x\n {{ index .Items 5 }}",
                "template: t:2:4: executing \"t\" at <index .Items 5>: error calling index: index out of range: 5",
            ),
            (
                "{{ .Labels.Remove }}",
                "template: t:1:3: executing \"t\" at <.Labels.Remove>: wrong number of args for Remove: want 1 got 0",
            ),
            (
                "{{ .Labels.Remove \"a\" }}",
                "template: t:1:3: executing \"t\" at <.Labels.Remove>: wrong type for value; expected []string; got string",
            ),
            (
                "{{ .Name.Foo }}",
                "template: t:1:3: executing \"t\" at <.Name.Foo>: can't evaluate field Foo in type string",
            ),
            (
                "{{ join \",\" .Name }}",
                "template: t:1:12: executing \"t\" at <.Name>: wrong type for value; expected []string; got string",
            ),
            (
                "{{ .Name | date \"2006\" }}",
                "template: t:1:11: executing \"t\" at <date \"2006\">: wrong type for value; expected time.Time; got string",
            ),
            (
                "{{ safeHtml \"a\" | toUpper }}",
                "template: t:1:18: executing \"t\" at <toUpper>: wrong type for value; expected string; got template.HTML",
            ),
            (
                "{{ .Items.First.Name \"x\" }}",
                "template: t:1:3: executing \"t\" at <.Items.First.Name>: Name has arguments but cannot be invoked as function",
            ),
            (
                "{{ .Labels.a \"x\" }}",
                "template: t:1:3: executing \"t\" at <.Labels.a>: a is not a method but has arguments",
            ),
            (
                "{{ $labels }}",
                "template: t:1: undefined variable \"$labels\"",
            ),
            (
                "{{ humanizeTimestamp 1 }}",
                "template: t:1: function \"humanizeTimestamp\" not defined",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(
                notify(Mode::Text, text).err().as_deref(),
                Some(*want),
                "template {text}"
            );
        }
    }

    #[test]
    fn alert_templates_keep_refusing_notification_functions() {
        for f in ["join", "since", "date", "trimSpace", "stringSlice"] {
            let err = Template::parse("__alert_T", &format!("{{{{ {f} }}}}")).expect_err(f);
            assert_eq!(
                err.0,
                format!("template: __alert_T:1: function \"{f}\" not defined")
            );
        }
        // `safeHtml` stays a string function there, as the parity suite checks.
        assert_eq!(expand("{{ safeHtml \"a\" | toUpper }}", 0.0), "A");
    }

    #[test]
    fn go_duration_strings() {
        let cases: &[(i64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5\u{b5}s"),
            (1_500_000, "1.5ms"),
            (1_000_000_000, "1s"),
            (61_000_000_000, "1m1s"),
            (3_600_000_000_000, "1h0m0s"),
            (-90_500_000_000, "-1m30.5s"),
        ];
        for (ns, want) in cases {
            assert_eq!(go_duration(*ns), *want, "{ns}");
        }
    }
}
