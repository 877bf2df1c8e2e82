//! The route tree of `alerting.route`, with Alertmanager 0.25's semantics
//! (`dispatch/route.go`):
//!
//! - Matching is depth-first, left to right. A node whose matchers hold looks at its
//!   children in order; a matching child ends the search at that level unless it has
//!   `continue: true`. A node none of whose children matches is itself a match.
//! - Children inherit `receiver`, `group_by`, `group_wait` (default 30s),
//!   `group_interval` (5m) and `repeat_interval` (4h) from their parent, but NOT
//!   `mute_time_intervals` nor `active_time_intervals`: those apply to the node that
//!   names them only.
//! - `group_by: ['...']` groups by every label; an empty or missing `group_by` inherits.
//! - Legacy `match`/`match_re` maps are read as Alertmanager reads them (a `match_re`
//!   value `a|b` becomes the matcher `=~"^(?:a|b)$"`, which shows in route keys), then
//!   all matchers of a node are sorted by name, value and operator.
//! - A node's key is its ancestors' matcher lists joined by `/` (`{}/{severity="critical"}`);
//!   an aggregation group's key is `route_key:{group labels}`, as Alertmanager prints it.
//!
//! [`Route::format_routes_test`] gives the line `amtool config routes test` prints for
//! the same tree and labels (`tests/notify_routing.rs` checks it against the real amtool).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::LabelSet;
use super::matchers::{self, MatchOp, Matcher};
use crate::config::types::PromDuration;
use crate::config::yaml::{Context, Node, NodeValue};

/// Default `group_wait` of the root route.
pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
/// Default `group_interval` of the root route.
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Default `repeat_interval` of the root route.
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);

/// One entry of `matchers:`: a matcher, or several separated by commas, optionally in
/// braces, as Alertmanager reads each line.
#[derive(Debug, Clone, PartialEq)]
pub struct MatcherLine(pub Vec<Matcher>);

impl<'de> Deserialize<'de> for MatcherLine {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        matchers::parse_list(&text)
            .map(MatcherLine)
            .map_err(serde::de::Error::custom)
    }
}

/// One node of `alerting.route`, as configured (Alertmanager's `<route>`).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Receiver of the alerts that end at this node. Required on the root, inherited
    /// otherwise. Example: `receiver: team-critical`.
    #[serde(default)]
    pub receiver: Option<String>,
    /// Labels that split alerts into aggregation groups (one notification per group);
    /// `['...']` groups by all labels. Default: inherited (the root: none, one group for
    /// everything). Example: `group_by: [alertname, check]`.
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    /// Label matchers an alert must satisfy to enter this node (`=`, `!=`, `=~`, `!~`,
    /// regexes anchored). Not allowed on the root. Default none.
    /// Example: `matchers: ['severity="critical"', 'check=~"postgres|redis"']`.
    #[serde(default)]
    pub matchers: Vec<MatcherLine>,
    /// Legacy equality matchers (Alertmanager's deprecated `match`). Default none.
    /// Example: `match: {severity: critical}`.
    #[serde(default, rename = "match")]
    pub match_eq: BTreeMap<String, String>,
    /// Legacy regex matchers (Alertmanager's deprecated `match_re`). Default none.
    /// Example: `match_re: {check: 'aws_.*'}`.
    #[serde(default)]
    pub match_re: BTreeMap<String, String>,
    /// Whether the following siblings are tried after this node matched. Default `false`;
    /// not allowed on the root. Example: `continue: true`.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    /// How long a new group waits for more alerts before its first notification.
    /// Default: inherited, `30s` at the root. Example: `group_wait: 0s`.
    #[serde(default)]
    pub group_wait: Option<PromDuration>,
    /// How long a group waits before notifying about alerts added to it. Must not be 0.
    /// Default: inherited, `5m` at the root. Example: `group_interval: 1m`.
    #[serde(default)]
    pub group_interval: Option<PromDuration>,
    /// How long before a notification that changed nothing is sent again. Must not be 0.
    /// Default: inherited, `4h` at the root. Example: `repeat_interval: 12h`.
    #[serde(default)]
    pub repeat_interval: Option<PromDuration>,
    /// Names of `time_intervals` during which this node sends nothing (not inherited by
    /// child routes; not allowed on the root). Default none.
    /// Example: `mute_time_intervals: [weekend-maintenance]`.
    #[serde(default)]
    pub mute_time_intervals: Vec<String>,
    /// Names of `time_intervals` outside which this node sends nothing (not inherited;
    /// not allowed on the root). Default none: always active.
    /// Example: `active_time_intervals: [business-hours]`.
    #[serde(default)]
    pub active_time_intervals: Vec<String>,
    /// Child routes, tried in order. Default none.
    /// Example: `routes: [{matchers: ['severity="critical"'], receiver: team-critical}]`.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

/// The names a route may refer to.
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    /// Receiver names.
    pub receivers: &'a BTreeSet<String>,
    /// Time interval names.
    pub time_intervals: &'a BTreeSet<String>,
}

/// Parses and validates the route tree at `node` (field path `path`, e.g.
/// `alerting.route`), recording every problem in `cx`; `None` when there was any.
pub fn parse(cx: &mut Context, node: &Node, path: &str, names: Names<'_>) -> Option<Route> {
    let start = cx.diagnostics.len();
    let config = parse_node(cx, node, path, names, true);
    match config {
        Some(c) if cx.diagnostics.len() == start => Some(Route::new(&c)),
        _ => None,
    }
}

fn parse_node(
    cx: &mut Context,
    node: &Node,
    path: &str,
    names: Names<'_>,
    root: bool,
) -> Option<RouteConfig> {
    if node.as_map().is_none() {
        let what = if root { "the root route" } else { "a route" };
        cx.error(
            node,
            path,
            format!("expected {what}: a mapping with receiver, matchers, routes, …"),
        );
        return None;
    }
    let config = cx.deserialize::<RouteConfig>(&node.without_keys(&["routes"]), path, &["routes"]);
    if let Some(c) = &config {
        validate_node(cx, node, path, c, names, root);
    }
    let mut children = Vec::new();
    match node.get("routes") {
        None => {}
        Some(n) if n.value == NodeValue::Null => {}
        Some(n) => match n.as_seq() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    let p = format!("{path}.routes[{i}]");
                    children.push(parse_node(cx, item, &p, names, false));
                }
            }
            None => cx.error(n, &format!("{path}.routes"), "expected a list of routes"),
        },
    }
    let mut config = config?;
    config.routes = children.into_iter().flatten().collect();
    Some(config)
}

/// The node of `key` in a mapping, else the mapping itself.
fn at<'n>(node: &'n Node, key: &str) -> &'n Node {
    node.get(key).unwrap_or(node)
}

/// The `i`-th item of the list under `key`, else the best node nearby.
fn item<'n>(node: &'n Node, key: &str, i: usize) -> &'n Node {
    let list = at(node, key);
    list.as_seq().and_then(|s| s.get(i)).unwrap_or(list)
}

/// The key node of entry `name` in the mapping under `key`.
fn map_key<'n>(node: &'n Node, key: &str, name: &str) -> &'n Node {
    let map = at(node, key);
    map.as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(name)))
        .map_or(map, |(k, _)| k)
}

/// The value node of entry `name` in the mapping under `key`.
fn map_value<'n>(node: &'n Node, key: &str, name: &str) -> &'n Node {
    let map = at(node, key);
    map.as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(name)))
        .map_or(map, |(_, v)| v)
}

/// `undefined X "name" used in route`, with a suggestion when one is close.
fn undefined(what: &str, name: &str, known: &BTreeSet<String>) -> String {
    let candidates: Vec<&str> = known.iter().map(String::as_str).collect();
    match crate::config::suggest(name, &candidates) {
        Some(s) => format!("undefined {what} {name:?} used in route, did you mean {s:?}?"),
        None => format!("undefined {what} {name:?} used in route"),
    }
}

fn validate_node(
    cx: &mut Context,
    node: &Node,
    path: &str,
    c: &RouteConfig,
    names: Names<'_>,
    root: bool,
) {
    if root {
        if c.receiver.as_deref().unwrap_or("").is_empty() {
            cx.error(node, path, "root route must specify a default receiver");
        }
        for key in ["matchers", "match", "match_re"] {
            let set = match key {
                "matchers" => !c.matchers.is_empty(),
                "match" => !c.match_eq.is_empty(),
                _ => !c.match_re.is_empty(),
            };
            if set {
                let p = format!("{path}.{key}");
                cx.error(at(node, key), &p, "root route must not have any matchers");
            }
        }
        if c.continue_matching {
            let p = format!("{path}.continue");
            cx.error(
                at(node, "continue"),
                &p,
                "cannot have continue in root route",
            );
        }
        for (key, list) in [
            ("mute_time_intervals", &c.mute_time_intervals),
            ("active_time_intervals", &c.active_time_intervals),
        ] {
            if !list.is_empty() {
                let what = key.trim_end_matches('s').replace('_', " ");
                let message = format!("root route must not have any {what}s");
                cx.error(at(node, key), &format!("{path}.{key}"), message);
            }
        }
    }
    if let Some(r) = c.receiver.as_deref()
        && !r.is_empty()
        && !names.receivers.contains(r)
    {
        let message = undefined("receiver", r, names.receivers);
        cx.error(at(node, "receiver"), &format!("{path}.receiver"), message);
    }
    if let Some(group_by) = &c.group_by {
        let mut seen = BTreeSet::new();
        let mut all = false;
        for (i, l) in group_by.iter().enumerate() {
            let p = format!("{path}.group_by[{i}]");
            if l == "..." {
                all = true;
            } else if !matchers::valid_label_name(l) {
                let message = format!("invalid label name {l:?} in group_by list");
                cx.error(item(node, "group_by", i), &p, message);
            } else if !seen.insert(l.as_str()) {
                let message = format!("duplicated label {l:?} in group_by");
                cx.error(item(node, "group_by", i), &p, message);
            }
        }
        if all && group_by.iter().any(|l| l != "...") {
            cx.error(
                at(node, "group_by"),
                &format!("{path}.group_by"),
                "cannot have wildcard group_by (`...`) and other labels at the same time",
            );
        }
    }
    for (key, value) in [
        ("group_interval", c.group_interval),
        ("repeat_interval", c.repeat_interval),
    ] {
        if value.is_some_and(|d| d.0.is_zero()) {
            let p = format!("{path}.{key}");
            cx.error(at(node, key), &p, format!("{key} cannot be zero"));
        }
    }
    for name in c.match_eq.keys().chain(c.match_re.keys()) {
        if !matchers::valid_label_name(name) {
            let key = if c.match_eq.contains_key(name) {
                "match"
            } else {
                "match_re"
            };
            let p = format!("{path}.{key}.{name}");
            cx.error(
                map_key(node, key, name),
                &p,
                format!("invalid label name {name:?}"),
            );
        }
    }
    for (name, value) in &c.match_re {
        if matchers::valid_label_name(name)
            && let Err(e) = Matcher::new(name, MatchOp::Regex, value)
        {
            let p = format!("{path}.match_re.{name}");
            cx.error(map_value(node, "match_re", name), &p, e);
        }
    }
    for (key, list) in [
        ("mute_time_intervals", &c.mute_time_intervals),
        ("active_time_intervals", &c.active_time_intervals),
    ] {
        for (i, name) in list.iter().enumerate() {
            if !names.time_intervals.contains(name) {
                let message = undefined("time interval", name, names.time_intervals);
                cx.error(item(node, key, i), &format!("{path}.{key}[{i}]"), message);
            }
        }
    }
}

/// The matchers of a node as Alertmanager builds them: `match`, then `match_re` (anchored
/// as in Alertmanager), then `matchers`, sorted by name, value and operator.
pub fn node_matchers(c: &RouteConfig) -> Vec<Matcher> {
    let mut out: Vec<Matcher> = Vec::new();
    for (name, value) in &c.match_eq {
        out.extend(Matcher::new(name, MatchOp::Equal, value).ok());
    }
    for (name, value) in &c.match_re {
        out.extend(Matcher::new(name, MatchOp::Regex, &format!("^(?:{value})$")).ok());
    }
    out.extend(c.matchers.iter().flat_map(|l| l.0.iter().cloned()));
    sort_matchers(&mut out);
    out
}

/// Alertmanager's matcher order: name, then value, then operator (`=`, `!=`, `=~`, `!~`).
pub fn sort_matchers(ms: &mut [Matcher]) {
    let rank = |op: MatchOp| match op {
        MatchOp::Equal => 0,
        MatchOp::NotEqual => 1,
        MatchOp::Regex => 2,
        MatchOp::NotRegex => 3,
    };
    ms.sort_by(|a, b| (&a.name, &a.value, rank(a.op)).cmp(&(&b.name, &b.value, rank(b.op))));
}

/// A matcher list as Alertmanager prints it in route keys: `{a="1",b=~"x"}` (no spaces).
pub fn format_matchers(ms: &[Matcher]) -> String {
    let parts: Vec<String> = ms.iter().map(ToString::to_string).collect();
    format!("{{{}}}", parts.join(","))
}

/// A label set as Alertmanager (Go's `model.LabelSet.String`) prints it in group keys:
/// `{alertname="X", check="db"}`, the `name="value"` pairs sorted as strings, values
/// quoted as Go's `%q` does.
pub fn format_label_set(labels: &LabelSet) -> String {
    let mut pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    pairs.sort();
    format!("{{{}}}", pairs.join(", "))
}

/// Go's `strconv.Quote`. Printability follows Rust's notion of control and whitespace
/// characters plus Go's common format characters, which agrees with Go's `IsPrint` for
/// all but exotic code points.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if c < ' ' || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c if c.is_control()
                || (c != ' ' && c.is_whitespace())
                || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
                    | '\u{2060}'..='\u{2064}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}') =>
            {
                let v = u32::from(c);
                if v < 0x10000 {
                    out.push_str(&format!("\\u{v:04x}"));
                } else {
                    out.push_str(&format!("\\U{v:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One node of the built route tree, with its inherited settings resolved.
#[derive(Debug, Clone)]
pub struct RouteNode {
    /// Matchers an alert must satisfy to enter (sorted as Alertmanager sorts them).
    pub matchers: Vec<Matcher>,
    /// Whether the following siblings are tried after this node matched.
    pub continue_matching: bool,
    /// Receiver name (own or inherited).
    pub receiver: String,
    /// `group_by` labels (own or inherited), sorted.
    pub group_by: Vec<String>,
    /// Group by every label (`group_by: ['...']`, own or inherited).
    pub group_by_all: bool,
    /// `group_wait`, own or inherited.
    pub group_wait: Duration,
    /// `group_interval`, own or inherited.
    pub group_interval: Duration,
    /// `repeat_interval`, own or inherited.
    pub repeat_interval: Duration,
    /// Names of the time intervals that mute this node (its own only).
    pub mute_time_intervals: Vec<String>,
    /// Names of the time intervals outside which this node is muted (its own only).
    pub active_time_intervals: Vec<String>,
    /// Children, in order.
    pub routes: Vec<RouteNode>,
    key: String,
    id: String,
}

impl RouteNode {
    fn new(c: &RouteConfig, parent: Option<&RouteNode>, index: Option<usize>) -> RouteNode {
        let matchers = node_matchers(c);
        let own = format_matchers(&matchers);
        let key = match parent {
            Some(p) => format!("{}/{own}", p.key),
            None => own,
        };
        let id = match index {
            Some(i) => format!("{key}/{i}"),
            None => key.clone(),
        };
        let (mut receiver, mut group_by, mut group_by_all, mut wait, mut interval, mut repeat) =
            match parent {
                Some(p) => (
                    p.receiver.clone(),
                    p.group_by.clone(),
                    p.group_by_all,
                    p.group_wait,
                    p.group_interval,
                    p.repeat_interval,
                ),
                None => (
                    String::new(),
                    Vec::new(),
                    false,
                    DEFAULT_GROUP_WAIT,
                    DEFAULT_GROUP_INTERVAL,
                    DEFAULT_REPEAT_INTERVAL,
                ),
            };
        if let Some(r) = c.receiver.as_deref().filter(|r| !r.is_empty()) {
            receiver = r.to_string();
        }
        // Alertmanager: labels other than `...` replace the parent's (and turn off
        // group-by-all); `...` alone turns it on; neither (missing or empty) inherits.
        let labels: BTreeSet<&str> = c
            .group_by
            .iter()
            .flatten()
            .map(String::as_str)
            .filter(|l| *l != "...")
            .collect();
        if !labels.is_empty() {
            group_by = labels.into_iter().map(String::from).collect();
            group_by_all = false;
        } else if c.group_by.iter().flatten().any(|l| l == "...") {
            group_by_all = true;
        }
        if let Some(d) = c.group_wait {
            wait = d.0;
        }
        if let Some(d) = c.group_interval {
            interval = d.0;
        }
        if let Some(d) = c.repeat_interval {
            repeat = d.0;
        }
        let mut node = RouteNode {
            matchers,
            continue_matching: c.continue_matching,
            receiver,
            group_by,
            group_by_all,
            group_wait: wait,
            group_interval: interval,
            repeat_interval: repeat,
            mute_time_intervals: c.mute_time_intervals.clone(),
            active_time_intervals: c.active_time_intervals.clone(),
            routes: Vec::new(),
            key,
            id,
        };
        node.routes = c
            .routes
            .iter()
            .enumerate()
            .map(|(i, child)| RouteNode::new(child, Some(&node), Some(i)))
            .collect();
        node
    }

    /// Alertmanager's route key: the matcher lists from the root down, joined by `/`
    /// (`{}/{severity="critical"}`). Two siblings with the same matchers share it.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Alertmanager's route ID: the key plus the node's position among its siblings
    /// (`{}/{severity="critical"}/0`; the root's is `{}`). Stable while the tree does not
    /// change.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// True when the node's own matchers hold.
    pub fn matches(&self, labels: &LabelSet) -> bool {
        matchers::matches_all(&self.matchers, labels)
    }

    /// Alertmanager's `Route.Match`: the nodes where `labels` end, depth-first.
    pub fn match_routes(&self, labels: &LabelSet) -> Vec<&RouteNode> {
        if !self.matches(labels) {
            return Vec::new();
        }
        let mut all = Vec::new();
        for child in &self.routes {
            let found = child.match_routes(labels);
            let matched = !found.is_empty();
            all.extend(found);
            if matched && !child.continue_matching {
                break;
            }
        }
        if all.is_empty() {
            all.push(self);
        }
        all
    }

    /// The labels of an alert that name its aggregation group at this node.
    pub fn group_labels(&self, labels: &LabelSet) -> LabelSet {
        labels
            .iter()
            .filter(|(k, _)| self.group_by_all || self.group_by.binary_search(k).is_ok())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The aggregation group key of an alert at this node, as Alertmanager prints it:
    /// `{}/{severity="critical"}:{alertname="X"}`.
    pub fn group_key(&self, labels: &LabelSet) -> String {
        format!(
            "{}:{}",
            self.key,
            format_label_set(&self.group_labels(labels))
        )
    }

    fn walk<'a>(&'a self, out: &mut Vec<&'a RouteNode>) {
        out.push(self);
        for child in &self.routes {
            child.walk(out);
        }
    }
}

/// The built route tree.
#[derive(Debug, Clone)]
pub struct Route {
    /// The root node.
    pub root: RouteNode,
    /// The configuration it was built from.
    pub config: RouteConfig,
}

impl Route {
    /// Builds the tree (the config is assumed valid: see [`parse`]).
    pub fn new(config: &RouteConfig) -> Route {
        Route {
            root: RouteNode::new(config, None, None),
            config: config.clone(),
        }
    }

    /// The nodes where an alert with `labels` ends, in Alertmanager's order.
    pub fn match_routes(&self, labels: &LabelSet) -> Vec<&RouteNode> {
        self.root.match_routes(labels)
    }

    /// Every node, depth-first (root first).
    pub fn nodes(&self) -> Vec<&RouteNode> {
        let mut out = Vec::new();
        self.root.walk(&mut out);
        out
    }

    /// The node with this [`RouteNode::id`].
    pub fn find(&self, id: &str) -> Option<&RouteNode> {
        self.nodes().into_iter().find(|n| n.id == id)
    }

    /// The receivers that `labels` reach, in the order `amtool config routes test` prints
    /// them. Like amtool (0.25), a receiver reached through two routes is listed twice.
    pub fn routes_test(&self, labels: &LabelSet) -> Vec<String> {
        self.match_routes(labels)
            .into_iter()
            .map(|n| n.receiver.clone())
            .collect()
    }

    /// The line `amtool config routes test --config.file F label=value…` prints on
    /// standard output, without its newline: the receivers joined by commas.
    pub fn format_routes_test(&self, labels: &LabelSet) -> String {
        self.routes_test(labels).join(",")
    }
}

/// Parses `routes test` arguments as amtool does: each `name=value` (value quoted or
/// bare); a later label of the same name wins.
///
/// # Errors
/// `failed to parse labels: …` for an argument that is not `name=value`.
pub fn parse_label_args<S: AsRef<str>>(args: &[S]) -> Result<LabelSet, String> {
    let mut labels = LabelSet::new();
    for arg in args {
        let m = Matcher::parse(arg.as_ref()).map_err(|e| format!("failed to parse labels: {e}"))?;
        if m.op != MatchOp::Equal {
            return Err(
                "failed to parse labels: labels must be specified as key=value pairs".into(),
            );
        }
        labels.insert(m.name, m.value);
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml;

    fn ls(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn names() -> (BTreeSet<String>, BTreeSet<String>) {
        let r = ["r0", "r1", "r2", "r3"].map(String::from).into();
        let t = ["weekend", "office"].map(String::from).into();
        (r, t)
    }

    fn load(text: &str) -> Result<Route, Vec<String>> {
        let node = yaml::parse("f.yml", text).unwrap();
        let mut cx = yaml::Context::new("f.yml");
        let (r, t) = names();
        let names = Names {
            receivers: &r,
            time_intervals: &t,
        };
        parse(&mut cx, &node, "route", names).ok_or_else(|| {
            cx.diagnostics.sort_by_key(|d| (d.line, d.column));
            cx.diagnostics.iter().map(ToString::to_string).collect()
        })
    }

    const TREE: &str = r#"
receiver: r0
group_by: [alertname]
routes:
  - matchers: ['severity="critical"']
    receiver: r1
    group_wait: 0s
    continue: true
    mute_time_intervals: [weekend]
    routes:
      - match: {check: postgres}
        receiver: r2
        group_by: ['...']
      - match_re: {check: 'redis|es'}
        repeat_interval: 1h
  - matchers: ['team=~"db.*"', 'env!=dev']
    receiver: r3
    group_by: [team]
    routes:
      - matchers: [zone=a]
  - matchers: ['severity="critical"']
    receiver: r2
"#;

    #[test]
    fn matches_like_alertmanager() {
        let route = load(TREE).unwrap();
        let ids = |l: LabelSet| -> Vec<String> {
            route
                .match_routes(&l)
                .iter()
                .map(|n| n.id().to_string())
                .collect()
        };
        assert_eq!(ids(ls(&[("severity", "warning")])), ["{}"]);
        // Critical continues past its node to the third sibling.
        assert_eq!(
            ids(ls(&[("severity", "critical")])),
            [
                r#"{}/{severity="critical"}/0"#,
                r#"{}/{severity="critical"}/2"#
            ]
        );
        // A matching child replaces its parent; the legacy match_re is anchored.
        assert_eq!(
            ids(ls(&[("severity", "critical"), ("check", "redis")])),
            [
                r#"{}/{severity="critical"}/{check=~"^(?:redis|es)$"}/1"#,
                r#"{}/{severity="critical"}/2"#
            ]
        );
        assert_eq!(
            route.routes_test(&ls(&[("severity", "critical"), ("check", "postgres")])),
            ["r2", "r2"]
        );
        assert_eq!(
            route.format_routes_test(&ls(&[("team", "dba"), ("zone", "a")])),
            "r3"
        );
        assert_eq!(
            ids(ls(&[("team", "dba"), ("zone", "a")])),
            [r#"{}/{env!="dev",team=~"db.*"}/{zone="a"}/0"#]
        );
        assert_eq!(
            route.routes_test(&ls(&[("team", "dba"), ("env", "dev")])),
            ["r0"]
        );
    }

    #[test]
    fn inherits_like_alertmanager() {
        let route = load(TREE).unwrap();
        let root = &route.root;
        assert_eq!(
            (root.group_wait, root.group_interval, root.repeat_interval),
            (
                Duration::from_secs(30),
                Duration::from_secs(300),
                Duration::from_secs(4 * 3600)
            )
        );
        let crit = &root.routes[0];
        assert_eq!(crit.group_wait, Duration::ZERO);
        assert_eq!(crit.group_by, ["alertname"]);
        assert_eq!(crit.mute_time_intervals, ["weekend"]);
        let pg = &crit.routes[0];
        // Timers and receiver inherited, mute intervals not.
        assert_eq!(
            (pg.group_wait, pg.receiver.as_str()),
            (Duration::ZERO, "r2")
        );
        assert!(pg.mute_time_intervals.is_empty());
        assert!(pg.group_by_all);
        let redis = &crit.routes[1];
        assert_eq!(redis.receiver, "r1");
        assert_eq!(redis.repeat_interval, Duration::from_secs(3600));
        assert!(!redis.group_by_all);
        let team = &root.routes[1].routes[0];
        assert_eq!(
            (team.receiver.as_str(), team.group_by.clone()),
            ("r3", vec!["team".to_string()])
        );

        let alert = ls(&[
            ("alertname", "Down"),
            ("severity", "critical"),
            ("check", "postgres"),
            ("instance", "a\"b"),
        ]);
        assert_eq!(
            crit.group_key(&alert),
            r#"{}/{severity="critical"}:{alertname="Down"}"#
        );
        assert_eq!(
            pg.group_key(&alert),
            r#"{}/{severity="critical"}/{check="postgres"}:{alertname="Down", check="postgres", instance="a\"b", severity="critical"}"#
        );
        assert_eq!(root.group_key(&LabelSet::new()), "{}:{}");
        assert_eq!(route.find(pg.id()).map(|n| n.receiver.as_str()), Some("r2"));
        assert_eq!(route.nodes().len(), 7);
    }

    #[test]
    fn group_by_all_inheritance() {
        let route = load(
            "receiver: r0\ngroup_by: ['...']\nroutes:\n  - {matchers: [a=1]}\n  - {matchers: [a=2], group_by: [b]}\n  - {matchers: [a=3], group_by: []}\n",
        )
        .unwrap();
        let r = &route.root.routes;
        assert!(route.root.group_by_all && r[0].group_by_all && r[2].group_by_all);
        assert!(!r[1].group_by_all);
        assert_eq!(
            r[1].group_labels(&ls(&[("a", "2"), ("b", "x"), ("c", "y")])),
            ls(&[("b", "x")])
        );
    }

    #[test]
    fn formats_like_go() {
        let l = ls(&[("a0", "x"), ("a", "t\tab\u{1}é"), ("b", "\u{a0}")]);
        assert_eq!(
            format_label_set(&l),
            r#"{a0="x", a="t\tab\x01é", b="\u00a0"}"#
        );
        let mut ms =
            matchers::parse_list(r#"zz="1", b=~"x|y", b="q\"uo\\te", a!="1", a="1""#).unwrap();
        sort_matchers(&mut ms);
        assert_eq!(
            format_matchers(&ms),
            r#"{a="1",a!="1",b="q\"uo\\te",b=~"x|y",zz="1"}"#
        );
    }

    #[test]
    fn label_args_like_amtool() {
        assert_eq!(
            parse_label_args(&["severity=critical", "a=\"b c\"", "severity=x"]),
            Ok(ls(&[("severity", "x"), ("a", "b c")]))
        );
        assert_eq!(
            parse_label_args(&["severity=~crit"]),
            Err("failed to parse labels: labels must be specified as key=value pairs".into())
        );
        assert!(parse_label_args(&["sev erity=x"]).is_err());
    }

    #[test]
    fn validation_errors() {
        let cases: &[(&str, &[&str])] = &[
            (
                "group_by: [a]",
                &["f.yml:1:1: route: root route must specify a default receiver"],
            ),
            (
                "receiver: r0\nmatchers: [a=b]\nmatch: {a: b}",
                &[
                    "f.yml:2:11: route.matchers: root route must not have any matchers",
                    "f.yml:3:8: route.match: root route must not have any matchers",
                ],
            ),
            (
                "receiver: r0\ncontinue: true\nmute_time_intervals: [weekend]\nactive_time_intervals: [office]",
                &[
                    "f.yml:2:11: route.continue: cannot have continue in root route",
                    "f.yml:3:22: route.mute_time_intervals: root route must not have any mute time intervals",
                    "f.yml:4:24: route.active_time_intervals: root route must not have any active time intervals",
                ],
            ),
            (
                "receiver: nope\nroutes:\n  - receiver: r9\n  - receiver: r1\n    routes: [{receiver: x}]",
                &[
                    r#"f.yml:1:11: route.receiver: undefined receiver "nope" used in route"#,
                    r#"f.yml:3:15: route.routes[0].receiver: undefined receiver "r9" used in route, did you mean "r0"?"#,
                    r#"f.yml:5:25: route.routes[1].routes[0].receiver: undefined receiver "x" used in route"#,
                ],
            ),
            (
                "receiver: r0\ngroup_by: ['...', a, a-b, a]\ngroup_interval: 0s\nrepeat_interval: 0s",
                &[
                    "f.yml:2:11: route.group_by: cannot have wildcard group_by (`...`) and other labels at the same time",
                    r#"f.yml:2:22: route.group_by[2]: invalid label name "a-b" in group_by list"#,
                    r#"f.yml:2:27: route.group_by[3]: duplicated label "a" in group_by"#,
                    "f.yml:3:17: route.group_interval: group_interval cannot be zero",
                    "f.yml:4:18: route.repeat_interval: repeat_interval cannot be zero",
                ],
            ),
            (
                "receiver: r0\nroutes:\n  - matchers: ['a=~(', 'b-c=1']\n    match: {a-b: x}\n    match_re: {c: '[z'}\n    mute_time_intervals: [weekends]\n    active_time_intervals: [office, zzz]",
                &[
                    r#"f.yml:3:16: route.routes[0].matchers[0]: "a=~(": invalid regular expression "(": regex parse error:"#,
                    r#"f.yml:3:24: route.routes[0].matchers[1]: "b-c=1": expected one of = != =~ !~ after "b""#,
                    r#"f.yml:4:13: route.routes[0].match.a-b: invalid label name "a-b""#,
                    r#"f.yml:5:19: route.routes[0].match_re.c: invalid regular expression "[z": regex parse error:"#,
                    r#"f.yml:6:27: route.routes[0].mute_time_intervals[0]: undefined time interval "weekends" used in route, did you mean "weekend"?"#,
                    r#"f.yml:7:37: route.routes[0].active_time_intervals[1]: undefined time interval "zzz" used in route"#,
                ],
            ),
            (
                "receiver: r0\nroutes: [{recever: r1}, 3, {routes: x}]\ngroup_wait: 5x",
                &[
                    r#"f.yml:2:11: route.routes[0].recever: unknown field "recever", did you mean "receiver"?"#,
                    "f.yml:2:25: route.routes[1]: expected a route: a mapping with receiver, matchers, routes, …",
                    "f.yml:2:37: route.routes[2].routes: expected a list of routes",
                    r#"f.yml:3:13: route.group_wait: invalid duration "5x""#,
                ],
            ),
        ];
        for (text, expected) in cases {
            let got = load(text).expect_err(text);
            assert_eq!(got.len(), expected.len(), "{text}: {got:#?}");
            for (g, e) in got.iter().zip(expected.iter()) {
                assert!(g.starts_with(e), "{text}:\n got {g}\nwant {e}");
            }
        }
    }
}
