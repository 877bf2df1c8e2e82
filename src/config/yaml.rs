//! YAML loading that reports every problem of a config file at once.
//!
//! `serde_yaml` stops at the first error and loses the position of errors raised by custom
//! `Deserialize` impls. Here a file is parsed into a [`Node`] tree whose every node knows its
//! position, and a serde `Deserializer` over that tree records each problem as a
//! [`Diagnostic`] (`file:line:column: field.path: message`) in a [`Context`].
//!
//! Recovery works by re-running: serde visitors are consumed by value, so a half-built struct
//! cannot be resumed once one of its fields failed. Instead, a failed attempt records its
//! error and names the tree entry that caused it (the "culprit"); that entry is then hidden
//! and the whole value is deserialized again from scratch, so the field falls back to its
//! default (or is "missing", which is not reported again) and later fields get their turn.
//! Diagnostics are deduplicated, so repeated attempts report nothing twice.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::de::{self, DeserializeSeed, Error as _, Expected, Unexpected, Visitor};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Deepest nesting accepted: bounds the recursion of both the tree builder and serde.
const MAX_DEPTH: usize = 128;
/// Most nodes accepted, alias expansions included (against "billion laughs" documents).
const MAX_NODES: usize = 1_000_000;
const TOO_DEEP: &str = "the document is nested too deeply";
const TOO_LARGE: &str = "the document is too large (too many nodes once aliases are expanded)";
const START: Mark = Mark { line: 1, column: 1 };

/// Position of a node (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    /// Line number, starting at 1.
    pub line: usize,
    /// Column number (in characters), starting at 1.
    pub column: usize,
}

impl From<Marker> for Mark {
    fn from(m: Marker) -> Self {
        // yaml-rust2 lines are 1-based but its columns are 0-based.
        let (line, column) = (m.line(), m.col() + 1);
        Mark { line, column }
    }
}

/// The content of a [`Node`].
#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    /// An empty value or a plain `~`, `null`, `Null`, `NULL`.
    Null,
    /// Any other scalar, as written.
    Scalar {
        /// The text of the scalar (quotes and escapes already processed).
        value: String,
        /// Whether the scalar was unquoted (only plain scalars resolve to bool/int/float).
        plain: bool,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order.
    Map(Vec<(Node, Node)>),
}

/// A YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the node starts.
    pub mark: Mark,
    /// What the node holds.
    pub value: NodeValue,
}

impl Node {
    /// Looks up `key` in a mapping (by scalar key).
    pub fn get(&self, key: &str) -> Option<&Node> {
        let mut entries = self.as_map()?.iter();
        entries
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// Text of a scalar node.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    /// Items of a sequence node.
    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            NodeValue::Seq(items) => Some(items),
            _ => None,
        }
    }

    /// Entries of a mapping node.
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            NodeValue::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// A copy of a mapping without the given keys (any other node is cloned as is).
    pub fn without_keys(&self, keys: &[&str]) -> Node {
        self.filter_keys(|k| k.is_none_or(|k| !keys.contains(&k)))
    }

    /// A copy of a mapping with only the given keys (any other node is cloned as is).
    pub fn only_keys(&self, keys: &[&str]) -> Node {
        self.filter_keys(|k| k.is_some_and(|k| keys.contains(&k)))
    }

    fn filter_keys(&self, keep: impl Fn(Option<&str>) -> bool) -> Node {
        let Some(entries) = self.as_map() else {
            return self.clone();
        };
        let kept = entries.iter().filter(|(k, _)| keep(k.as_str()));
        let value = NodeValue::Map(kept.cloned().collect());
        Node {
            mark: self.mark,
            value,
        }
    }
}

/// One problem in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name, as given to [`parse`] or [`Context::new`].
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Field path such as `checks[3].tls_config.ca_file`; empty for the document itself.
    pub path: String,
    /// What is wrong (never contains the value of a secret).
    pub message: String,
}

impl Diagnostic {
    fn new(file: &str, mark: Mark, path: &str, message: impl Into<String>) -> Self {
        let (file, path, message) = (file.to_owned(), path.to_owned(), message.into());
        let Mark { line, column } = mark;
        Diagnostic {
            file,
            line,
            column,
            path,
            message,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diagnostic {}

fn join_key(path: &str, key: &str) -> String {
    match path {
        "" => key.to_owned(),
        _ => format!("{path}.{key}"),
    }
}

fn join_index(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// Key text used in field paths; non-scalar keys have no sensible name.
fn key_text(key: &Node) -> &str {
    match &key.value {
        NodeValue::Scalar { value, .. } => value,
        NodeValue::Null => "~",
        _ => "?",
    }
}

fn is_empty_scalar(ev: &Event) -> bool {
    matches!(ev, Event::Scalar(t, TScalarStyle::Plain, _, _) if t.is_empty())
}

// ---------------------------------------------------------------------------------------------
// Parsing: YAML events -> Node tree
// ---------------------------------------------------------------------------------------------

/// Parses a whole document. An empty document is [`NodeValue::Null`] at 1:1.
///
/// A syntax error, a second document, a merge key (`<<`) or a duplicate key is returned as
/// one [`Diagnostic`]. Aliases are replaced by a copy of the anchored node.
pub fn parse(file: &str, text: &str) -> Result<Node, Diagnostic> {
    let parser = Parser::new_from_str(text);
    let mut b = Builder {
        file,
        parser,
        anchors: HashMap::new(),
        nodes: 0,
    };
    // We drive the parser event by event rather than through `Parser::load`, whose helpers
    // assert on unexpected events instead of returning errors.
    let expect = |b: &mut Builder, want: Event, message: &str| match b.next()? {
        (ev, _) if ev == want => Ok(()),
        (_, mark) => Err(Diagnostic::new(file, mark, "", message)),
    };
    expect(
        &mut b,
        Event::StreamStart,
        "expected the start of the YAML stream",
    )?;
    match b.next()? {
        (Event::StreamEnd, _) => {
            return Ok(Node {
                mark: START,
                value: NodeValue::Null,
            });
        }
        (Event::DocumentStart, _) => {}
        (_, mark) => return Err(Diagnostic::new(file, mark, "", "expected a YAML document")),
    }
    let (ev, mark) = b.next()?;
    // A document without content (e.g. only `---`) yields an empty scalar marked wherever the
    // parser stopped; by convention an empty document is at 1:1.
    let empty = is_empty_scalar(&ev);
    let mut root = b.node(ev, mark, "", 0)?;
    if empty {
        root.mark = START;
    }
    expect(
        &mut b,
        Event::DocumentEnd,
        "expected the end of the YAML document",
    )?;
    expect(&mut b, Event::StreamEnd, "expected a single YAML document")?;
    Ok(root)
}

struct Builder<'t> {
    file: &'t str,
    parser: Parser<std::str::Chars<'t>>,
    /// Anchor id -> anchored node with its size and depth, to expand aliases.
    anchors: HashMap<usize, (Node, usize, usize)>,
    /// Nodes built so far, alias expansions included.
    nodes: usize,
}

impl Builder<'_> {
    fn fail(&self, mark: Mark, path: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self.file, mark, path, message)
    }

    fn next(&mut self) -> Result<(Event, Mark), Diagnostic> {
        match self.parser.next_token() {
            Ok((ev, mark)) => Ok((ev, mark.into())),
            Err(e) => Err(self.fail((*e.marker()).into(), "", e.info())),
        }
    }

    /// Counts `n` more nodes against [`MAX_NODES`].
    fn count(&mut self, n: usize, mark: Mark, path: &str) -> Result<(), Diagnostic> {
        self.nodes = self.nodes.saturating_add(n);
        match self.nodes > MAX_NODES {
            true => Err(self.fail(mark, path, TOO_LARGE)),
            false => Ok(()),
        }
    }

    /// Builds the node that starts with event `ev`; `path` is only used in error messages.
    fn node(
        &mut self,
        ev: Event,
        mark: Mark,
        path: &str,
        depth: usize,
    ) -> Result<Node, Diagnostic> {
        if depth > MAX_DEPTH {
            return Err(self.fail(mark, path, TOO_DEEP));
        }
        self.count(1, mark, path)?;
        let (value, anchor) = match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let plain = style == TScalarStyle::Plain && !is_str_tag(tag.as_ref());
                let null = plain && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL");
                match null {
                    true => (NodeValue::Null, anchor),
                    false => (NodeValue::Scalar { value: text, plain }, anchor),
                }
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (ev, item_mark) = self.next()?;
                    if ev == Event::SequenceEnd {
                        break;
                    }
                    let item_path = join_index(path, items.len());
                    items.push(self.node(ev, item_mark, &item_path, depth + 1)?);
                }
                (NodeValue::Seq(items), anchor)
            }
            Event::MappingStart(anchor, _) => (self.mapping(path, depth)?, anchor),
            Event::Alias(id) => return self.alias(id, mark, path, depth),
            _ => return Err(self.fail(mark, path, "unexpected YAML structure")),
        };
        let mut node = Node { mark, value };
        // The parser marks a block mapping one column after its first key, a flow mapping at
        // its `{`: the earlier of the two is where the mapping really starts.
        if let Some((key, _)) = node.as_map().and_then(|entries| entries.first())
            && (key.mark.line, key.mark.column) < (mark.line, mark.column)
        {
            node.mark = key.mark;
        }
        if anchor != 0 {
            let (size, node_depth) = measure(&node);
            self.anchors
                .insert(anchor, (node.clone(), size, node_depth));
        }
        Ok(node)
    }

    fn mapping(&mut self, path: &str, depth: usize) -> Result<NodeValue, Diagnostic> {
        let mut entries: Vec<(Node, Node)> = Vec::new();
        loop {
            let (ev, key_mark) = self.next()?;
            if ev == Event::MappingEnd {
                break;
            }
            let key = self.node(ev, key_mark, path, depth + 1)?;
            let key_path = join_key(path, key_text(&key));
            if matches!(&key.value, NodeValue::Scalar { value, plain: true } if value == "<<") {
                return Err(self.fail(key.mark, &key_path, "merge keys are not supported"));
            }
            let k = key.as_str();
            if k.is_some() && entries.iter().any(|(e, _)| e.as_str() == k) {
                let message = format!("duplicate key \"{}\"", key_text(&key));
                return Err(self.fail(key.mark, &key_path, message));
            }
            let (ev, value_mark) = self.next()?;
            // An empty value is marked by the parser at the NEXT token (often on the next
            // line); pointing at its key is far more helpful.
            let implicit_null = is_empty_scalar(&ev);
            let mut value = self.node(ev, value_mark, &key_path, depth + 1)?;
            if implicit_null {
                value.mark = key.mark;
            }
            entries.push((key, value));
        }
        Ok(NodeValue::Map(entries))
    }

    fn alias(
        &mut self,
        id: usize,
        mark: Mark,
        path: &str,
        depth: usize,
    ) -> Result<Node, Diagnostic> {
        // An anchor is registered once its node is complete, so an alias inside its own
        // anchored node finds nothing (the parser itself rejects unknown anchors).
        let Some((anchored, size, node_depth)) = self.anchors.get(&id) else {
            let message = "an alias cannot refer to a node that contains it";
            return Err(self.fail(mark, path, message));
        };
        if depth + node_depth > MAX_DEPTH {
            return Err(self.fail(mark, path, TOO_DEEP));
        }
        let (mut node, size) = (anchored.clone(), *size);
        self.count(size, mark, path)?;
        node.mark = mark;
        Ok(node)
    }
}

fn is_str_tag(tag: Option<&Tag>) -> bool {
    tag.is_some_and(|t| t.handle == "tag:yaml.org,2002:" && t.suffix == "str")
}

/// Number of nodes and nesting depth of a tree.
fn measure(node: &Node) -> (usize, usize) {
    let children: Vec<&Node> = match &node.value {
        NodeValue::Seq(items) => items.iter().collect(),
        NodeValue::Map(entries) => entries.iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => Vec::new(),
    };
    let add = |(size, depth): (usize, usize), (s, d)| (size + s, depth.max(d + 1));
    children.into_iter().map(measure).fold((1, 0), add)
}

// ---------------------------------------------------------------------------------------------
// Plain scalar resolution (YAML 1.2 core schema; null is resolved while parsing)
// ---------------------------------------------------------------------------------------------

enum Resolved {
    Bool(bool),
    Int(i128),
    Float(f64),
    Str,
}

fn resolve(text: &str) -> Resolved {
    match text {
        "true" | "True" | "TRUE" => Resolved::Bool(true),
        "false" | "False" | "FALSE" => Resolved::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => Resolved::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Resolved::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => Resolved::Float(f64::NAN),
        _ => match parse_int(text) {
            Some(i) => Resolved::Int(i),
            // Rust's float parser also accepts `inf`, `nan`, ..., hence the syntax check.
            None if is_float(text) => text.parse().map_or(Resolved::Str, Resolved::Float),
            None => Resolved::Str,
        },
    }
}

fn all_digits(s: &str, radix: u32) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_digit(radix))
}

/// `[-+]?[0-9]+`, `0o[0-7]+` or `0x[0-9a-fA-F]+`.
fn parse_int(text: &str) -> Option<i128> {
    let (digits, radix) = match (text.strip_prefix("0x"), text.strip_prefix("0o")) {
        (Some(hex), _) => (hex, 16),
        (_, Some(oct)) => (oct, 8),
        _ => (text.strip_prefix(['-', '+']).unwrap_or(text), 10),
    };
    // The digit check also stops `from_str_radix` from accepting a sign after `0x`.
    let text = if radix == 10 { text } else { digits };
    all_digits(digits, radix).then(|| i128::from_str_radix(text, radix).ok())?
}

/// `[-+]? ( \.[0-9]+ | [0-9]+ ( \.[0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`
fn is_float(text: &str) -> bool {
    let unsigned = |s: &str| s.strip_prefix(['-', '+']).unwrap_or(s).to_owned();
    let s = unsigned(text);
    let (mantissa, exponent) = match s.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(unsigned(e))),
        None => (s.as_str(), None),
    };
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => digits(int) && digits(frac) && !(int.is_empty() && frac.is_empty()),
        None => all_digits(mantissa, 10),
    };
    mantissa_ok && exponent.is_none_or(|e| all_digits(&e, 10))
}

/// How a node is described in "invalid type" messages.
fn unexpected(node: &Node) -> Unexpected<'_> {
    match &node.value {
        NodeValue::Null => Unexpected::Unit,
        NodeValue::Scalar { value, plain: true } => match resolve(value) {
            Resolved::Bool(b) => Unexpected::Bool(b),
            Resolved::Int(i) => match (u64::try_from(i), i64::try_from(i)) {
                (Ok(u), _) => Unexpected::Unsigned(u),
                (_, Ok(s)) => Unexpected::Signed(s),
                _ => Unexpected::Other("integer"),
            },
            Resolved::Float(f) => Unexpected::Float(f),
            Resolved::Str => Unexpected::Str(value),
        },
        NodeValue::Scalar { value, .. } => Unexpected::Str(value),
        NodeValue::Seq(_) => Unexpected::Seq,
        NodeValue::Map(_) => Unexpected::Map,
    }
}

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

/// Edit distance counting a swap of two adjacent characters as one edit, a common typo
/// (optimal string alignment distance).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    // Row i holds the distances between a[..i] and every b[..j]; two rows back are needed.
    let mut before: Vec<usize> = Vec::new();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let substitution = prev[j - 1] + usize::from(a[i - 1] != b[j - 1]);
            cur[j] = substitution.min(prev[j] + 1).min(cur[j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = cur[j].min(before[j - 2] + 1);
            }
        }
        before = std::mem::replace(&mut prev, cur);
    }
    prev[b.len()]
}

/// The allowed name closest to `name`, if close enough to be a likely typo.
fn suggest<'f>(name: &str, allowed: &[&'f str]) -> Option<&'f str> {
    let close = |&(d, c): &(usize, &str)| d <= (c.len() / 3).max(1) || c.eq_ignore_ascii_case(name);
    let candidates = allowed.iter().map(|&c| (edit_distance(name, c), c));
    candidates
        .filter(close)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// `unknown field "x", did you mean "y"?` or `unknown field "x", expected one of: a, b`.
fn unknown_message<'f>(kind: &str, name: &str, allowed: &[&'f str]) -> (String, Option<&'f str>) {
    let suggestion = suggest(name, allowed);
    let message = match suggestion {
        Some(s) => format!("unknown {kind} \"{name}\", did you mean \"{s}\"?"),
        None if allowed.is_empty() => format!("unknown {kind} \"{name}\", there are none here"),
        None => format!(
            "unknown {kind} \"{name}\", expected one of: {}",
            allowed.join(", ")
        ),
    };
    (message, suggestion)
}

/// For a literal secret key (`password: ...`) in a struct that offers `password_file` or
/// `password_env`, the message pointing there. Deliberately never mentions the value.
fn literal_secret_message(key: &str, fields: &[&str]) -> Option<String> {
    const SECRETS: [&str; 4] = ["password", "secret", "token", "api_key"];
    if !SECRETS
        .iter()
        .any(|s| key == *s || key.ends_with(&format!("_{s}")))
    {
        return None;
    }
    let (file, env) = (format!("{key}_file"), format!("{key}_env"));
    let mut ways = Vec::new();
    if fields.contains(&file.as_str()) {
        ways.push(format!("`{file}: /run/secrets/<name>` (a file)"));
    }
    if fields.contains(&env.as_str()) {
        ways.push(format!("`{env}: <VARIABLE>` (an environment variable)"));
    }
    let ways = (!ways.is_empty()).then(|| ways.join(" or "))?;
    Some(format!(
        "a literal {key} is not allowed in the config file: use {ways} instead"
    ))
}

// ---------------------------------------------------------------------------------------------
// Deserialization
// ---------------------------------------------------------------------------------------------

/// Collects diagnostics for one file.
#[derive(Debug, Clone)]
pub struct Context {
    /// File name used in diagnostics.
    pub file: String,
    /// Problems found so far, without duplicates.
    pub diagnostics: Vec<Diagnostic>,
}

impl Context {
    /// A context with no diagnostics yet.
    pub fn new(file: impl Into<String>) -> Self {
        Context {
            file: file.into(),
            diagnostics: Vec::new(),
        }
    }

    /// Records an error at a node.
    pub fn error(&mut self, node: &Node, path: &str, message: impl Into<String>) {
        self.record(node.mark, path, message.into());
    }

    fn record(&mut self, mark: Mark, path: &str, message: String) {
        // Retries (see the module docs) find the same problems again: keep the first.
        let same =
            |d: &Diagnostic| (d.line, d.column, &d.message) == (mark.line, mark.column, &message);
        if !self.diagnostics.iter().any(same) {
            self.diagnostics
                .push(Diagnostic::new(&self.file, mark, path, message));
        }
    }

    /// Deserializes `node` (whose field path is `path`, e.g. `checks[2]`) into `T`, recording
    /// every problem found; returns `None` when `T` could not be built.
    ///
    /// `extra_allowed` lists keys of the top-level mapping (only that one) that are skipped
    /// silently even though `T` has no such field.
    pub fn deserialize<T: de::DeserializeOwned>(
        &mut self,
        node: &Node,
        path: &str,
        extra_allowed: &[&str],
    ) -> Option<T> {
        let start = self.diagnostics.len();
        // Entries hidden so far, by id (see `De::id`).
        let mut removed: HashSet<Vec<usize>> = HashSet::new();
        let result = loop {
            let explained = HashSet::new();
            let mut run = Run {
                ctx: self,
                removed: &removed,
                extra_allowed,
                explained,
                culprit: None,
            };
            let result = T::deserialize(De::new(&mut run, node, &[], path));
            if let Ok(value) = run.locate(node, &[], path, result) {
                break Some(value);
            }
            // Retry without the culprit; each retry hides one more entry, so this ends.
            match run.culprit.take() {
                Some(id) if !id.is_empty() && !removed.contains(&id) => removed.insert(id),
                _ => break None,
            };
        };
        self.diagnostics[start..].sort_by_key(|d| (d.line, d.column));
        result
    }
}

/// State of one deserialization attempt.
struct Run<'a> {
    ctx: &'a mut Context,
    removed: &'a HashSet<Vec<usize>>,
    extra_allowed: &'a [&'a str],
    /// (struct id, field) pairs whose absence is already explained by a reported unknown key
    /// (`methd` for `method`): a "missing field" error would only be noise.
    explained: HashSet<(Vec<usize>, String)>,
    /// The entry to hide before the next attempt.
    culprit: Option<Vec<usize>>,
}

/// The error type of our deserializer.
#[derive(Debug)]
enum Error {
    /// Already recorded in the context (or deliberately not reported): just unwind.
    Recorded,
    /// Not located yet: the closest enclosing node will record it.
    Message(String),
    /// Kept apart so that fields hidden by a retry are not reported as missing.
    MissingField(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Recorded => f.write_str("error already reported"),
            Error::Message(m) => f.write_str(m),
            Error::MissingField(field) => write!(f, "missing field \"{field}\""),
        }
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::Message(msg.to_string())
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        // serde calls null "unit value", which means nothing to someone writing YAML.
        match unexp {
            Unexpected::Unit => Error::Message(format!("invalid type: null, expected {exp}")),
            _ => Error::Message(format!("invalid type: {unexp}, expected {exp}")),
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Error::MissingField(field)
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Error::Message(unknown_message("field", field, expected).0)
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Error::Message(unknown_message("variant", variant, expected).0)
    }
}

fn child_id(id: &[usize], index: usize) -> Vec<usize> {
    [id, &[index]].concat()
}

impl Run<'_> {
    /// Called where a node's deserialization ends: an error not located yet belongs to this
    /// node, so it is recorded here and the node becomes the culprit.
    fn locate<T>(
        &mut self,
        node: &Node,
        id: &[usize],
        path: &str,
        result: Result<T, Error>,
    ) -> Result<T, Error> {
        let message = match result {
            Ok(value) => return Ok(value),
            Err(Error::Recorded) => return Err(Error::Recorded),
            Err(Error::MissingField(field)) => {
                let entries = node.as_map().unwrap_or_default().iter().enumerate();
                let mut hidden = entries.filter(|(i, _)| self.removed.contains(&child_id(id, *i)));
                let hidden = hidden.any(|(_, (k, _))| k.as_str() == Some(field));
                let explained = self.explained.contains(&(id.to_vec(), field.to_owned()));
                (!hidden && !explained).then(|| format!("missing field \"{field}\""))
            }
            Err(Error::Message(message)) => Some(message),
        };
        if let Some(message) = message {
            self.ctx.record(node.mark, path, message);
        }
        self.culprit = Some(id.to_vec());
        Err(Error::Recorded)
    }

    /// Deserializes a child node through `seed`, locating its errors.
    fn descend<'de, S>(
        &mut self,
        seed: S,
        node: &Node,
        id: &[usize],
        path: &str,
    ) -> Result<S::Value, Error>
    where
        S: DeserializeSeed<'de>,
    {
        let result = seed.deserialize(De::new(self, node, id, path));
        self.locate(node, id, path, result)
    }
}

/// Deserializer for one node.
struct De<'r, 'a> {
    run: &'r mut Run<'a>,
    node: &'r Node,
    /// Child indices from the root node: identifies the node across attempts. A map entry's
    /// key and value share the entry's id, so hiding an id hides the whole entry.
    id: &'r [usize],
    path: &'r str,
}

impl<'r, 'a> De<'r, 'a> {
    fn new(run: &'r mut Run<'a>, node: &'r Node, id: &'r [usize], path: &'r str) -> Self {
        De {
            run,
            node,
            id,
            path,
        }
    }

    fn visible(&self, index: usize) -> bool {
        !self.run.removed.contains(&child_id(self.id, index))
    }

    /// Entries of a mapping that no earlier attempt hid; a null is empty.
    fn entries(&self) -> Vec<(usize, &'r Node, &'r Node)> {
        let entries = self.node.as_map().unwrap_or_default().iter().enumerate();
        entries
            .filter(|(i, _)| self.visible(*i))
            .map(|(i, (k, v))| (i, k, v))
            .collect()
    }

    fn visit_map<'de, V: Visitor<'de>>(
        self,
        visitor: V,
        entries: Vec<(usize, &'r Node, &'r Node)>,
    ) -> Out<'de, V> {
        let (run, id, path) = (self.run, self.id, self.path);
        visitor.visit_map(EntryAccess {
            run,
            entries: entries.into_iter(),
            value: None,
            id,
            path,
        })
    }

    fn visit_seq<'de, V: Visitor<'de>>(self, visitor: V) -> Out<'de, V> {
        let items = self.node.as_seq().unwrap_or_default().iter().enumerate();
        let items: Vec<(usize, &Node)> = items.filter(|(i, _)| self.visible(*i)).collect();
        let (run, id, path) = (self.run, self.id, self.path);
        visitor.visit_seq(ItemAccess {
            run,
            items: items.into_iter(),
            id,
            path,
        })
    }

    fn invalid_type<'de, V: Visitor<'de>, T>(&self, visitor: V) -> Result<T, Error> {
        Err(Error::invalid_type(unexpected(self.node), &visitor))
    }

    /// Records an unknown key of a struct and remembers what it probably meant.
    fn unknown_key(&mut self, key: &Node, name: &str, allowed: &[&str], fields: &[&str]) {
        let (message, suggestion) = match literal_secret_message(name, fields) {
            Some(message) => (message, None),
            None => unknown_message("field", name, allowed),
        };
        if let Some(meant) = suggestion {
            self.run
                .explained
                .insert((self.id.to_vec(), meant.to_owned()));
        }
        self.run
            .ctx
            .record(key.mark, &join_key(self.path, name), message);
    }
}

/// The result of a visitor.
type Out<'de, V> = Result<<V as Visitor<'de>>::Value, Error>;

/// `deserialize_*` methods that only forward to another one (their arguments are unused).
macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*) => $target:ident;)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Out<'de, V> {
            self.$target(visitor)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for De<'_, '_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Out<'de, V> {
        match &self.node.value {
            NodeValue::Null => visitor.visit_unit(),
            NodeValue::Scalar { value, plain: true } => match resolve(value) {
                Resolved::Bool(b) => visitor.visit_bool(b),
                Resolved::Int(i) => match (u64::try_from(i), i64::try_from(i)) {
                    (Ok(u), _) => visitor.visit_u64(u),
                    (_, Ok(s)) => visitor.visit_i64(s),
                    _ => visitor.visit_i128(i),
                },
                Resolved::Float(f) => visitor.visit_f64(f),
                Resolved::Str => visitor.visit_str(value),
            },
            NodeValue::Scalar { value, .. } => visitor.visit_str(value),
            NodeValue::Seq(_) => self.visit_seq(visitor),
            NodeValue::Map(_) => {
                let entries = self.entries();
                self.visit_map(visitor, entries)
            }
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Out<'de, V> {
        // Plain `80` or `1.10` into a String is the text as written (like serde_yaml).
        match &self.node.value {
            NodeValue::Scalar { value, .. } => visitor.visit_str(value),
            _ => self.deserialize_any(visitor),
        }
    }

    // Any scalar is text for these; unused arguments are lengths and type names.
    forward! {
        deserialize_string() => deserialize_str;
        deserialize_char() => deserialize_str;
        deserialize_bytes() => deserialize_str;
        deserialize_byte_buf() => deserialize_str;
        deserialize_identifier() => deserialize_str;
        deserialize_unit_struct(_name: &'static str) => deserialize_unit;
        deserialize_tuple(_len: usize) => deserialize_seq;
        deserialize_tuple_struct(_name: &'static str, _len: usize) => deserialize_seq;
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Out<'de, V> {
        match self.node.value {
            NodeValue::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Out<'de, V> {
        match self.node.value {
            NodeValue::Null => visitor.visit_unit(),
            _ => self.invalid_type(visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Out<'de, V> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Out<'de, V> {
        match self.node.value {
            NodeValue::Seq(_) | NodeValue::Null => self.visit_seq(visitor),
            _ => self.invalid_type(visitor),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Out<'de, V> {
        match self.node.value {
            NodeValue::Map(_) | NodeValue::Null => {
                let entries = self.entries();
                self.visit_map(visitor, entries)
            }
            _ => self.invalid_type(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        mut self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Out<'de, V> {
        // Not `deserialize_any`: derived struct visitors would accept a sequence positionally.
        if !matches!(self.node.value, NodeValue::Map(_) | NodeValue::Null) {
            return self.invalid_type(visitor);
        }
        let extra = if self.id.is_empty() {
            self.run.extra_allowed
        } else {
            &[]
        };
        let allowed = [fields, extra].concat();
        let mut known = Vec::new();
        for (i, key, value) in self.entries() {
            match key.as_str() {
                Some(name) if fields.contains(&name) => known.push((i, key, value)),
                Some(name) if extra.contains(&name) => {}
                // Reported here and hidden from the visitor, so that serde's own
                // `deny_unknown_fields` never stops the struct at its first unknown key.
                Some(name) => self.unknown_key(key, name, &allowed, fields),
                // A non-scalar key: the field visitor reports its type.
                None => known.push((i, key, value)),
            }
        }
        self.visit_map(visitor, known)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Out<'de, V> {
        let (variant, content) = match &self.node.value {
            NodeValue::Scalar { .. } => (self.node, None),
            NodeValue::Map(entries) if entries.len() == 1 => (&entries[0].0, Some(&entries[0].1)),
            NodeValue::Map(entries) => {
                let n = entries.len();
                let expected = format!("a single key naming a variant of enum {name}");
                return Err(Error::custom(format!(
                    "invalid value: map with {n} keys, expected {expected}"
                )));
            }
            _ => return self.invalid_type(visitor),
        };
        let (run, id, path) = (self.run, self.id, self.path);
        visitor.visit_enum(VariantAccess {
            run,
            variant,
            content,
            id,
            path,
        })
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Out<'de, V> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64
    }
}

/// Map access over the visible entries of a mapping.
struct EntryAccess<'r, 'a> {
    run: &'r mut Run<'a>,
    entries: std::vec::IntoIter<(usize, &'r Node, &'r Node)>,
    /// The entry whose key was just returned.
    value: Option<(usize, &'r Node, &'r Node)>,
    id: &'r [usize],
    path: &'r str,
}

impl<'de> de::MapAccess<'de> for EntryAccess<'_, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(entry @ (i, key, _)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(entry);
        let (id, path) = (child_id(self.id, i), join_key(self.path, key_text(key)));
        self.run.descend(seed, key, &id, &path).map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        let Some((i, key, value)) = self.value.take() else {
            return Err(Error::custom("a map value was requested before its key"));
        };
        let (id, path) = (child_id(self.id, i), join_key(self.path, key_text(key)));
        self.run.descend(seed, value, &id, &path)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// Sequence access over the visible items of a sequence.
struct ItemAccess<'r, 'a> {
    run: &'r mut Run<'a>,
    items: std::vec::IntoIter<(usize, &'r Node)>,
    id: &'r [usize],
    path: &'r str,
}

impl<'de> de::SeqAccess<'de> for ItemAccess<'_, '_> {
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        let Some((i, item)) = self.items.next() else {
            return Ok(None);
        };
        // Original indices, so that paths match the file even after items were hidden.
        let (id, path) = (child_id(self.id, i), join_index(self.path, i));
        self.run.descend(seed, item, &id, &path).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// Enum access: `variant` names the variant (a scalar, or the key of a one-entry map whose
/// value is `content`). The content reuses the enum node's id, so that a failure inside it
/// hides the whole enum value rather than leaving an empty, differently-wrong map.
struct VariantAccess<'r, 'a> {
    run: &'r mut Run<'a>,
    variant: &'r Node,
    content: Option<&'r Node>,
    id: &'r [usize],
    path: &'r str,
}

impl<'r> VariantAccess<'r, '_> {
    fn content(&self, expected: &str) -> Result<(&'r Node, String), Error> {
        let content = self
            .content
            .ok_or_else(|| Error::invalid_type(Unexpected::UnitVariant, &expected))?;
        Ok((content, join_key(self.path, key_text(self.variant))))
    }
}

impl<'de> de::EnumAccess<'de> for VariantAccess<'_, '_> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self), Error> {
        let value = self.run.descend(seed, self.variant, self.id, self.path)?;
        Ok((value, self))
    }
}

impl<'de> de::VariantAccess<'de> for VariantAccess<'_, '_> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        match self.content.map(|c| (c, &c.value)) {
            None | Some((_, NodeValue::Null)) => Ok(()),
            Some((c, _)) => Err(Error::invalid_type(
                unexpected(c),
                &"a unit variant (no value)",
            )),
        }
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, Error> {
        let (content, path) = self.content("a newtype variant")?;
        self.run.descend(seed, content, self.id, &path)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _: usize, visitor: V) -> Out<'de, V> {
        let (content, path) = self.content("a tuple variant")?;
        let de = De::new(&mut *self.run, content, self.id, &path);
        let result = de::Deserializer::deserialize_seq(de, visitor);
        self.run.locate(content, self.id, &path, result)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Out<'de, V> {
        let (content, path) = self.content("a struct variant")?;
        let de = De::new(&mut *self.run, content, self.id, &path);
        let result = de::Deserializer::deserialize_struct(de, "", fields, visitor);
        self.run.locate(content, self.id, &path, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Tls {
        ca_file: Option<String>,
        #[serde(default)]
        insecure: bool,
    }

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Method {
        #[default]
        Get,
        Post,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "snake_case", deny_unknown_fields)]
    enum Probe {
        Http { url: String },
        Tcp(u16),
    }

    /// Seconds, written `5s` or `5m`; anything else is a custom error.
    #[derive(Debug, PartialEq)]
    struct Dur(u64);

    impl<'de> Deserialize<'de> for Dur {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let s = String::deserialize(d)?;
            let (num, unit) = s.split_at(s.len().saturating_sub(1));
            let bad = || D::Error::custom(format!("invalid duration {s:?}"));
            let n: u64 = num.parse().map_err(|_| bad())?;
            match unit {
                "s" => Ok(Dur(n)),
                "m" => Ok(Dur(n * 60)),
                _ => Err(bad()),
            }
        }
    }

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Check {
        name: String,
        #[serde(default)]
        method: Method,
        #[serde(default)]
        port: u16,
        interval: Option<Dur>,
        password_file: Option<String>,
        password_env: Option<String>,
        tls_config: Option<Tls>,
        probe: Option<Probe>,
    }

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Config {
        #[serde(default)]
        listen: String,
        #[serde(default)]
        checks: Vec<Check>,
        #[serde(default)]
        tls_config: Tls,
    }

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Scalars {
        s: Option<String>,
        u: Option<u16>,
        i: Option<i8>,
        f: Option<f64>,
        b: Option<bool>,
        c: Option<char>,
        m: Option<HashMap<String, u8>>,
        e: Option<Method>,
    }

    fn load<T: de::DeserializeOwned>(
        text: &str,
        path: &str,
        extra: &[&str],
    ) -> (Option<T>, Vec<String>) {
        let node = parse("f.yml", text).expect("test YAML is valid");
        let mut ctx = Context::new("f.yml");
        let value = ctx.deserialize(&node, path, extra);
        (
            value,
            ctx.diagnostics.iter().map(ToString::to_string).collect(),
        )
    }

    fn check(name: &str) -> Check {
        Check {
            name: name.into(),
            ..Check::default()
        }
    }

    #[test]
    fn three_problems_in_different_places() {
        let text = "listen: ':9100'\nchecks:\n  - name: web\n    methd: post\n  - name: db\n    interval: [1, 2]\n    password: hunter2\n";
        let (config, diags) = load::<Config>(text, "", &[]);
        assert_eq!(diags.len(), 3, "{diags:#?}");
        assert_eq!(
            diags[0],
            r#"f.yml:4:5: checks[0].methd: unknown field "methd", did you mean "method"?"#
        );
        assert_eq!(
            diags[1],
            "f.yml:6:15: checks[1].interval: invalid type: sequence, expected a string"
        );
        let secret = "f.yml:7:5: checks[1].password: a literal password is not allowed in the config file: use `password_file: /run/secrets/<name>` (a file) or `password_env: <VARIABLE>` (an environment variable) instead";
        assert_eq!(diags[2], secret);
        assert!(diags.iter().all(|d| !d.contains("hunter2")));
        // Recovery keeps what is valid: both checks, without the bad interval.
        assert_eq!(
            config.map(|c| c.checks),
            Some(vec![check("web"), check("db")])
        );
    }

    #[test]
    fn several_problems_in_one_struct() {
        let text = "checks:\n  - nme: web\n    methd: post\n    port: 70000\n";
        let (config, diags) = load::<Config>(text, "", &[]);
        let expected = [
            r#"f.yml:2:5: checks[0].nme: unknown field "nme", did you mean "name"?"#,
            r#"f.yml:3:5: checks[0].methd: unknown field "methd", did you mean "method"?"#,
            "f.yml:4:11: checks[0].port: invalid value: integer `70000`, expected u16",
        ];
        assert_eq!(diags, expected);
        // `name` is missing, but the typo explains that already; the check is dropped.
        assert_eq!(config.map(|c| c.checks.len()), Some(0));
    }

    #[test]
    fn bad_items_of_a_sequence_are_all_reported() {
        #[derive(Debug, Deserialize)]
        struct List {
            items: Vec<Check>,
        }
        let text = "items:\n  - name: a\n    interval: 5x\n  - name: b\n  - name: c\n    method: pots\n  - {}\n";
        let (list, diags) = load::<List>(text, "", &[]);
        let expected = [
            r#"f.yml:3:15: items[0].interval: invalid duration "5x""#,
            r#"f.yml:6:13: items[2].method: unknown variant "pots", did you mean "post"?"#,
            r#"f.yml:7:5: items[3]: missing field "name""#,
        ];
        assert_eq!(diags, expected);
        // Bad fields with a default fall back to it; an item that cannot be built is dropped.
        assert_eq!(
            list.map(|l| l.items),
            Some(vec![check("a"), check("b"), check("c")])
        );
    }

    #[test]
    fn unknown_keys_and_extra_allowed() {
        let cases: [(&str, &[&str], &[&str]); 5] = [
            (
                "ca_fil: x",
                &[],
                &[r#"f.yml:1:1: t.ca_fil: unknown field "ca_fil", did you mean "ca_file"?"#],
            ),
            (
                "CA_FILE: x",
                &[],
                &[r#"f.yml:1:1: t.CA_FILE: unknown field "CA_FILE", did you mean "ca_file"?"#],
            ),
            (
                "zzz: 1",
                &[],
                &[r#"f.yml:1:1: t.zzz: unknown field "zzz", expected one of: ca_file, insecure"#],
            ),
            ("kind: http", &["kind"], &[]),
            (
                "kinf: http",
                &["kind"],
                &[r#"f.yml:1:1: t.kinf: unknown field "kinf", did you mean "kind"?"#],
            ),
        ];
        for (text, extra, expected) in cases {
            let (tls, diags) = load::<Tls>(text, "t", extra);
            assert_eq!(tls, Some(Tls::default()), "{text}");
            assert_eq!(diags, expected, "{text}");
        }
        // extra_allowed applies to the top-level mapping only.
        let (c, diags) = load::<Check>(
            "name: a\nkind: http\ntls_config:\n  kind: x\n",
            "checks[2]",
            &["kind"],
        );
        let expected = r#"f.yml:4:3: checks[2].tls_config.kind: unknown field "kind", expected one of: ca_file, insecure"#;
        assert_eq!(
            (c.map(|c| c.name), diags),
            (Some("a".into()), vec![expected.to_owned()])
        );
    }

    #[test]
    fn scalars() {
        let ok = |text: &str| load::<Scalars>(text, "", &[]).0.expect(text);
        assert_eq!(ok("s: 80").s.as_deref(), Some("80"));
        assert_eq!(ok("s: 'x'").s.as_deref(), Some("x"));
        assert_eq!(ok("s: ~").s, None);
        assert_eq!(
            [ok("u: 0x10").u, ok("u: 0o17").u, ok("u: +8").u],
            [Some(16), Some(15), Some(8)]
        );
        assert_eq!(ok("i: -128").i, Some(-128));
        assert_eq!(
            [ok("f: 1e3").f, ok("f: .5").f, ok("f: 3").f],
            [Some(1000.0), Some(0.5), Some(3.0)]
        );
        assert_eq!(ok("f: -.inf").f, Some(f64::NEG_INFINITY));
        assert_eq!(
            [ok("b: TRUE").b, ok("b: false").b],
            [Some(true), Some(false)]
        );
        assert_eq!(ok("c: x").c, Some('x'));
        assert_eq!(
            ok("m: {a: 1}").m,
            Some(HashMap::from([("a".to_owned(), 1)]))
        );
        assert_eq!(ok("e: post").e, Some(Method::Post));

        let cases = [
            ("u: '80'", r#"u: invalid type: string "80", expected u16"#),
            ("u: abc", r#"u: invalid type: string "abc", expected u16"#),
            (
                "u: 1.5",
                "u: invalid type: floating point `1.5`, expected u16",
            ),
            ("i: -129", "i: invalid value: integer `-129`, expected i8"),
            ("f: inf", r#"f: invalid type: string "inf", expected f64"#),
            (
                "b: yes",
                r#"b: invalid type: string "yes", expected a boolean"#,
            ),
            ("b: {a: 1}", "b: invalid type: map, expected a boolean"),
            (
                "b: 'true'",
                r#"b: invalid type: string "true", expected a boolean"#,
            ),
            (
                "c: xy",
                r#"c: invalid value: string "xy", expected a character"#,
            ),
            ("s: [a]", "s: invalid type: sequence, expected a string"),
            ("m: [a]", "m: invalid type: sequence, expected a map"),
            (
                "e: zzzz",
                r#"e: unknown variant "zzzz", expected one of: get, post"#,
            ),
            (
                "e: {get: 1}",
                "e: invalid type: integer `1`, expected a unit variant (no value)",
            ),
        ];
        for (text, expected) in cases {
            let (_, diags) = load::<Scalars>(text, "", &[]);
            assert_eq!(diags, [format!("f.yml:1:4: {expected}")], "{text}");
        }
        let (_, diags) = load::<Scalars>("m: {a: 300, [x]: 1}", "", &[]);
        let expected = [
            "f.yml:1:8: m.a: invalid value: integer `300`, expected u8",
            "f.yml:1:13: m.?: invalid type: sequence, expected a string",
        ];
        assert_eq!(diags, expected);
    }

    #[test]
    fn enums_with_content() {
        let probe = |text: &str| load::<Check>(&format!("name: a\nprobe: {text}"), "c", &[]);
        let (c, diags) = probe("{tcp: 80}");
        assert_eq!(
            (c.and_then(|c| c.probe), diags),
            (Some(Probe::Tcp(80)), vec![])
        );
        let (c, diags) = probe("\n  http:\n    url: x\n");
        assert_eq!(
            (c.and_then(|c| c.probe), diags),
            (Some(Probe::Http { url: "x".into() }), vec![])
        );
        let (c, diags) = probe("\n  http:\n    urll: x\n");
        assert_eq!(
            diags,
            [r#"f.yml:4:5: c.probe.http.urll: unknown field "urll", did you mean "url"?"#]
        );
        assert_eq!(c.map(|c| c.probe), Some(None));
        let (_, diags) = probe("{http: {}}");
        assert_eq!(diags, [r#"f.yml:2:15: c.probe.http: missing field "url""#]);
        let (_, diags) = probe("{tcp: 1, http: 2}");
        let expected =
            "invalid value: map with 2 keys, expected a single key naming a variant of enum Probe";
        assert_eq!(diags, [format!("f.yml:2:8: c.probe: {expected}")]);
    }

    #[test]
    fn nulls_missing_fields_and_ignored_values() {
        // An empty value or document is an empty struct or list.
        for text in ["tls_config:\nchecks:\n", "", "# nothing\n", "---\n"] {
            assert_eq!(
                load::<Config>(text, "", &[]),
                (Some(Config::default()), vec![]),
                "{text}"
            );
        }
        // A struct missing a required field is reported at the struct.
        let expected = r#"f.yml:1:1: checks[2]: missing field "name""#.to_owned();
        assert_eq!(
            load::<Check>("method: get\n", "checks[2]", &[]),
            (None, vec![expected])
        );
        let expected = r#"f.yml:1:1: missing field "name""#.to_owned();
        assert_eq!(load::<Check>("", "", &[]), (None, vec![expected]));
        // An empty value points at its key rather than at the next line.
        let (_, diags) = load::<Check>("name:\nport: 1\n", "", &[]);
        assert_eq!(
            diags,
            ["f.yml:1:1: name: invalid type: null, expected a string"]
        );
        // The wrong kind of node for a struct or a list.
        let (_, diags) = load::<Config>("tls_config: [a]\nchecks: x\n", "", &[]);
        let expected = [
            "f.yml:1:13: tls_config: invalid type: sequence, expected struct Tls",
            r#"f.yml:2:9: checks: invalid type: string "x", expected a sequence"#,
        ];
        assert_eq!(diags, expected);
        let (v, diags) = load::<de::IgnoredAny>("a: [1, {b: c}]\n", "", &[]);
        assert!(v.is_some() && diags.is_empty());
    }

    #[test]
    fn context_error_and_display() {
        let node = parse("f.yml", "checks:\n  - name: a\n    methd: get\n").expect("valid");
        let check = node.get("checks").and_then(Node::as_seq).expect("list");
        let methd = &check[0].as_map().expect("map")[1].0;
        let mut ctx = Context::new("f.yml");
        for _ in 0..2 {
            ctx.error(
                methd,
                "checks[0].methd",
                r#"unknown field "methd", did you mean "method"?"#,
            );
        }
        let shown: Vec<String> = ctx.diagnostics.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [r#"f.yml:3:5: checks[0].methd: unknown field "methd", did you mean "method"?"#]
        );
        let d = Diagnostic {
            path: String::new(),
            ..ctx.diagnostics[0].clone()
        };
        assert_eq!(
            d.to_string(),
            r#"f.yml:3:5: unknown field "methd", did you mean "method"?"#
        );
    }

    #[test]
    fn parse_errors() {
        let cases = [
            (
                "a: 1\n  b: 2\n",
                2,
                4,
                "",
                "mapping values are not allowed in this context",
            ),
            (
                "a: [1, 2\n",
                2,
                1,
                "",
                "while parsing a flow sequence, expected ',' or ']'",
            ),
            (
                "a: 1\n---\nb: 2\n",
                2,
                1,
                "",
                "expected a single YAML document",
            ),
            ("a: 1\nb: 2\na: 3\n", 3, 1, "a", r#"duplicate key "a""#),
            (
                "x:\n  - y: 1\n    y: 2\n",
                3,
                5,
                "x[0].y",
                r#"duplicate key "y""#,
            ),
            (
                "a: &x {b: 1}\nc:\n  <<: *x\n",
                3,
                3,
                "c.<<",
                "merge keys are not supported",
            ),
            (
                "a: *nope\n",
                1,
                4,
                "",
                "while parsing node, found unknown anchor",
            ),
        ];
        for (text, line, column, path, message) in cases {
            let expected = Diagnostic::new("f.yml", Mark { line, column }, path, message);
            assert_eq!(parse("f.yml", text), Err(expected), "{text}");
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(
            parse("f.yml", &deep).map_err(|d| d.message),
            Err(TOO_DEEP.to_owned())
        );
        let mut bomb = "a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n".to_owned();
        for i in 1..7 {
            bomb += &format!(
                "a{i}: &a{i} [{}]\n",
                vec![format!("*a{}", i - 1); 10].join(", ")
            );
        }
        assert_eq!(
            parse("f.yml", &bomb).map_err(|d| d.message),
            Err(TOO_LARGE.to_owned())
        );
    }

    #[test]
    fn parse_tree() {
        let scalar = |value: &str, plain| NodeValue::Scalar {
            value: value.into(),
            plain,
        };
        let null = Node {
            mark: START,
            value: NodeValue::Null,
        };
        assert_eq!(
            (parse("f.yml", ""), parse("f.yml", "---\n")),
            (Ok(null.clone()), Ok(null))
        );

        let text =
            "base: &b {ca_file: x}\ntls: *b\nlist:\n  - 'q'\n  - ~\n  - !!str 5\n  - |\n    text\n";
        let root = parse("f.yml", text).expect("valid");
        let tls = root.get("tls").expect("tls");
        assert_eq!((root.mark, tls.mark), (START, Mark { line: 2, column: 6 }));
        assert_eq!(tls.get("ca_file").and_then(Node::as_str), Some("x"));
        assert_eq!(
            root.get("base").map(|b| b.mark),
            Some(Mark {
                line: 1,
                column: 10
            })
        );
        let list = root.get("list").and_then(Node::as_seq).expect("list");
        let values: Vec<&NodeValue> = list.iter().map(|n| &n.value).collect();
        assert_eq!(
            values,
            [
                &scalar("q", false),
                &NodeValue::Null,
                &scalar("5", false),
                &scalar("text\n", false)
            ]
        );
        assert_eq!(list[0].mark, Mark { line: 4, column: 5 });

        let keys = |n: Node| {
            n.as_map()
                .unwrap_or_default()
                .iter()
                .filter_map(|(k, _)| k.as_str().map(String::from))
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(root.only_keys(&["tls", "zzz"])), ["tls"]);
        assert_eq!(keys(root.without_keys(&["tls"])), ["base", "list"]);
        assert_eq!(list[0].without_keys(&["a"]), list[0]);
    }

    #[test]
    fn core_schema_resolution() {
        let ints = [
            ("0x1f", Some(31)),
            ("-12", Some(-12)),
            ("+7", Some(7)),
            ("0o7", Some(7)),
        ];
        let not_ints = [
            ("0x", None),
            ("1_000", None),
            ("-0x5", None),
            ("0x-5", None),
            ("", None),
        ];
        for (text, expected) in ints.into_iter().chain(not_ints) {
            assert_eq!(parse_int(text), expected, "{text}");
        }
        for text in ["1.5", ".5", "-1.", "1e5", "+1.5E-3", "3"] {
            assert!(is_float(text), "{text}");
        }
        for text in ["inf", "nan", ".", "e5", "1e", "1.2.3", "0x5", "1e+"] {
            assert!(!is_float(text), "{text}");
        }
        let distances = [
            ("methd", "method", 1),
            ("methdo", "method", 1),
            ("", "abc", 3),
            ("kitten", "sitting", 3),
        ];
        for (a, b, d) in distances {
            assert_eq!(
                (edit_distance(a, b), edit_distance(b, a)),
                (d, d),
                "{a} {b}"
            );
        }
    }
}
