//! Rule files in Prometheus's format, loaded and validated as strictly as
//! `promtool check rules` (Prometheus 2.42's `rulefmt`).
//!
//! A file is `groups:` of `{name, interval, limit, rules}`; a rule is either alerting
//! (`alert`, `expr`, `for`, `keep_firing_for`, `labels`, `annotations`) or recording
//! (`record`, `expr`, `labels`). Every problem is reported at once, each as
//! `file:line:column: groups[i].rules[j].field: group "g", rule N, "name": message`:
//! unknown keys, wrong types, bad durations, empty or repeated group names, both or
//! neither of `alert`/`record`, invalid metric and label names, fields a recording rule
//! cannot have, expressions that do not parse, use a construct the evaluator refuses
//! (named), or do not return a vector or a scalar, and label or annotation templates
//! that do not parse.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::config::types::PromDuration;
use crate::config::yaml::{self, Context, Diagnostic, Node, NodeValue};
use crate::rules::promql::{self, PromqlError, Query, ValueKind};
use crate::rules::template::Template;

/// Every problem found in a set of rule files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RuleLoadError {
    /// One entry per problem, file by file, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl std::fmt::Display for RuleLoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// A recording rule.
#[derive(Debug, Clone)]
pub struct RecordingSpec {
    /// The metric name it writes (`record:`).
    pub record: String,
    /// The expression.
    pub expr: Arc<Query>,
    /// Labels set on every result (an empty value removes the label).
    pub labels: BTreeMap<String, String>,
}

/// An alerting rule.
#[derive(Debug, Clone)]
pub struct AlertingSpec {
    /// The alert name (`alert:`), also its `alertname` label.
    pub alert: String,
    /// The expression.
    pub expr: Arc<Query>,
    /// `for:` (how long an alert stays pending before it fires).
    pub hold: Duration,
    /// `keep_firing_for:` (how long a firing alert keeps firing once its expression
    /// stopped returning it).
    pub keep_firing_for: Duration,
    /// Label templates, by name.
    pub labels: Vec<(String, Template)>,
    /// Annotation templates, by name.
    pub annotations: Vec<(String, Template)>,
}

/// One rule.
#[derive(Debug, Clone)]
pub enum RuleSpec {
    /// `record:`.
    Recording(RecordingSpec),
    /// `alert:`.
    Alerting(AlertingSpec),
}

impl RuleSpec {
    /// The rule's name (`record` or `alert`).
    pub fn name(&self) -> &str {
        match self {
            RuleSpec::Recording(r) => &r.record,
            RuleSpec::Alerting(a) => &a.alert,
        }
    }

    /// The rule's expression.
    pub fn expr(&self) -> &Arc<Query> {
        match self {
            RuleSpec::Recording(r) => &r.expr,
            RuleSpec::Alerting(a) => &a.expr,
        }
    }
}

/// One rule group.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    /// `name:`.
    pub name: String,
    /// The file it was read from (as given).
    pub file: String,
    /// `interval:`; `None` takes the global evaluation interval.
    pub interval: Option<Duration>,
    /// `limit:` on alerts (alerting rules) or series (recording rules) per rule; 0 is none.
    pub limit: usize,
    /// The rules, in evaluation order.
    pub rules: Vec<RuleSpec>,
}

/// A validated set of rule groups, from one or more files.
#[derive(Debug, Clone, Default)]
pub struct Groups {
    /// Groups in file order.
    pub groups: Vec<GroupSpec>,
}

impl Groups {
    /// Reads and validates rule files.
    ///
    /// # Errors
    /// Every problem of every file (a file that cannot be read is one problem).
    pub fn load<P: AsRef<Path>>(paths: &[P]) -> Result<Groups, RuleLoadError> {
        let mut sources = Vec::new();
        let mut diagnostics = Vec::new();
        for p in paths {
            let name = p.as_ref().display().to_string();
            match std::fs::read_to_string(p.as_ref()) {
                Ok(text) => sources.push((name, text)),
                Err(e) => diagnostics.push(Diagnostic {
                    file: name,
                    line: 0,
                    column: 0,
                    path: String::new(),
                    message: format!("read rule file: {e}"),
                }),
            }
        }
        match Groups::from_sources(&sources) {
            Ok(g) if diagnostics.is_empty() => Ok(g),
            Ok(_) => Err(RuleLoadError { diagnostics }),
            Err(e) => {
                diagnostics.extend(e.diagnostics);
                Err(RuleLoadError { diagnostics })
            }
        }
    }

    /// Validates rule files given as `(name, text)` (the embedded rules, tests).
    ///
    /// # Errors
    /// Every problem found.
    pub fn from_sources<N: AsRef<str>, T: AsRef<str>>(
        sources: &[(N, T)],
    ) -> Result<Groups, RuleLoadError> {
        let mut groups = Vec::new();
        let mut diagnostics = Vec::new();
        for (name, text) in sources {
            match parse_file(name.as_ref(), text.as_ref()) {
                Ok(g) => groups.extend(g),
                Err(d) => diagnostics.extend(d),
            }
        }
        if diagnostics.is_empty() {
            Ok(Groups { groups })
        } else {
            Err(RuleLoadError { diagnostics })
        }
    }

    /// History the store must keep for these rules: the longest
    /// [`Query::lookback_needed_ms`] (0 when there is no rule).
    pub fn max_lookback_ms(&self) -> i64 {
        self.groups
            .iter()
            .flat_map(|g| &g.rules)
            .map(|r| r.expr().lookback_needed_ms())
            .max()
            .unwrap_or(0)
    }

    /// Number of rules in all groups.
    pub fn rule_count(&self) -> usize {
        self.groups.iter().map(|g| g.rules.len()).sum()
    }
}

// ---------------------------------------------------------------------------------------------
// Raw shapes (serde, strict)
// ---------------------------------------------------------------------------------------------

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTop {
    #[serde(default)]
    groups: Option<Ignored>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    name: String,
    #[serde(default)]
    interval: Option<PromDuration>,
    #[serde(default)]
    limit: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    record: Option<String>,
    #[serde(default)]
    alert: Option<String>,
    #[serde(default)]
    expr: Option<String>,
    #[serde(default, rename = "for")]
    hold: Option<PromDuration>,
    #[serde(default)]
    keep_firing_for: Option<PromDuration>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

/// Accepts any value (a section deserialized on its own).
#[derive(Debug, Default)]
struct Ignored;

impl<'de> Deserialize<'de> for Ignored {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| Ignored)
    }
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

// ---------------------------------------------------------------------------------------------
// Parsing one file
// ---------------------------------------------------------------------------------------------

/// Validates one rule file's text.
///
/// # Errors
/// Every problem found, with positions.
pub fn parse_file(file: &str, text: &str) -> Result<Vec<GroupSpec>, Vec<Diagnostic>> {
    let root = yaml::parse(file, text).map_err(|d| vec![d])?;
    let mut cx = Context::new(file);
    let mut out = Vec::new();
    if !matches!(root.value, NodeValue::Null) {
        let _ = cx.deserialize::<RawTop>(&root, "", &[]);
    }
    let groups_node = root.get("groups");
    let items: &[Node] = match groups_node {
        None => &[],
        Some(n) if matches!(n.value, NodeValue::Null) => &[],
        Some(n) => match n.as_seq() {
            Some(items) => items,
            None => {
                cx.error(n, "groups", "expected a list of rule groups");
                &[]
            }
        },
    };
    let mut seen: HashSet<String> = HashSet::new();
    for (gi, gnode) in items.iter().enumerate() {
        let gpath = format!("groups[{gi}]");
        if gnode.as_map().is_none() {
            cx.error(
                gnode,
                &gpath,
                "expected a rule group: a mapping with name and rules",
            );
            continue;
        }
        let raw = cx.deserialize::<RawGroup>(gnode, &gpath, &["rules"]);
        let name = raw.as_ref().map_or_else(
            || {
                gnode
                    .get("name")
                    .and_then(Node::as_str)
                    .unwrap_or("")
                    .to_string()
            },
            |r| r.name.clone(),
        );
        let name_node = gnode.get("name").unwrap_or(gnode);
        if name.is_empty() {
            cx.error(
                name_node,
                &format!("{gpath}.name"),
                "Groupname must not be empty",
            );
        } else if !seen.insert(name.clone()) {
            cx.error(
                name_node,
                &format!("{gpath}.name"),
                format!("groupname: {name:?} is repeated in the same file"),
            );
        }
        let rules_node = gnode.get("rules");
        let rule_items: &[Node] = match rules_node {
            None => &[],
            Some(n) if matches!(n.value, NodeValue::Null) => &[],
            Some(n) => match n.as_seq() {
                Some(items) => items,
                None => {
                    cx.error(n, &format!("{gpath}.rules"), "expected a list of rules");
                    &[]
                }
            },
        };
        let mut rules = Vec::new();
        for (ri, rnode) in rule_items.iter().enumerate() {
            if let Some(rule) =
                parse_rule(&mut cx, &name, ri, rnode, &format!("{gpath}.rules[{ri}]"))
            {
                rules.push(rule);
            }
        }
        if let Some(raw) = raw {
            let interval = raw.interval.map(|d| d.0).filter(|d| !d.is_zero());
            let limit = raw.limit.and_then(|l| usize::try_from(l).ok()).unwrap_or(0);
            out.push(GroupSpec {
                name,
                file: file.to_string(),
                interval,
                limit,
                rules,
            });
        }
    }
    if cx.diagnostics.is_empty() {
        Ok(out)
    } else {
        let mut d = cx.diagnostics;
        d.sort_by_key(|d| (d.line, d.column));
        d.dedup();
        Err(d)
    }
}

/// Validates one rule; `None` when it has any problem (all of them are recorded).
fn parse_rule(
    cx: &mut Context,
    group: &str,
    index: usize,
    node: &Node,
    path: &str,
) -> Option<RuleSpec> {
    if node.as_map().is_none() {
        cx.error(
            node,
            path,
            "expected a rule: a mapping with alert or record, and expr",
        );
        return None;
    }
    let before = cx.diagnostics.len();
    let raw = cx.deserialize::<RawRule>(node, path, &[]);
    let text = |key: &str| {
        node.get(key)
            .and_then(Node::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (record, alert) = match &raw {
        Some(r) => (
            r.record.clone().unwrap_or_default(),
            r.alert.clone().unwrap_or_default(),
        ),
        None => (text("record"), text("alert")),
    };
    let rule_name = if alert.is_empty() { &record } else { &alert };
    let prefix = format!("group {group:?}, rule {}, {rule_name:?}", index + 1);
    let at = |key: &str| node.get(key).unwrap_or(node);
    let err = |cx: &mut Context, key: &str, field: &str, msg: String| {
        let p = if field.is_empty() {
            path.to_string()
        } else {
            format!("{path}.{field}")
        };
        cx.error(at(key), &p, format!("{prefix}: {msg}"));
    };
    if !record.is_empty() && !alert.is_empty() {
        err(
            cx,
            "record",
            "record",
            "only one of 'record' and 'alert' must be set".into(),
        );
    }
    if record.is_empty() && alert.is_empty() {
        err(cx, "", "", "one of 'record' or 'alert' must be set".into());
    }
    // The expression.
    let expr_text = match &raw {
        Some(r) => r.expr.clone().unwrap_or_default(),
        None => text("expr"),
    };
    let mut expr = None;
    if expr_text.is_empty() {
        err(
            cx,
            "expr",
            "expr",
            "field 'expr' must be set in rule".into(),
        );
    } else {
        match promql::parse(&expr_text) {
            Ok(q) => match q.kind() {
                ValueKind::Vector | ValueKind::Scalar => expr = Some(Arc::new(q)),
                kind => err(
                    cx,
                    "expr",
                    "expr",
                    format!(
                        "the expression returns a {}; a rule needs an instant vector or a scalar",
                        match kind {
                            ValueKind::Matrix => "range vector",
                            _ => "string",
                        }
                    ),
                ),
            },
            Err(PromqlError::Parse(e)) => err(
                cx,
                "expr",
                "expr",
                format!("could not parse expression: {e}"),
            ),
            Err(PromqlError::Unsupported(what)) => err(
                cx,
                "expr",
                "expr",
                format!(
                    "unsupported PromQL construct: {what} (harena-exporter does not evaluate it)"
                ),
            ),
        }
    }
    let raw = raw?;
    let labels = raw.labels.clone().unwrap_or_default();
    let annotations = raw.annotations.clone().unwrap_or_default();
    let hold = raw.hold.map_or(Duration::ZERO, |d| d.0);
    let keep = raw.keep_firing_for.map_or(Duration::ZERO, |d| d.0);
    let key_at = |section: &str, key: &str| -> &Node {
        node.get(section)
            .and_then(Node::as_map)
            .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(key)))
            .map_or_else(|| node.get(section).unwrap_or(node), |(k, _)| k)
    };
    if !record.is_empty() {
        if !annotations.is_empty() {
            err(
                cx,
                "record",
                "annotations",
                "invalid field 'annotations' in recording rule".into(),
            );
        }
        if !hold.is_zero() {
            err(
                cx,
                "record",
                "for",
                "invalid field 'for' in recording rule".into(),
            );
        }
        if !keep.is_zero() {
            err(
                cx,
                "record",
                "keep_firing_for",
                "invalid field 'keep_firing_for' in recording rule".into(),
            );
        }
        if !valid_metric_name(&record) {
            err(
                cx,
                "record",
                "record",
                format!("invalid recording rule name: {record}"),
            );
        }
    }
    for k in labels.keys() {
        if !valid_label_name(k) || k == "__name__" {
            cx.error(
                key_at("labels", k),
                &format!("{path}.labels.{k}"),
                format!("{prefix}: invalid label name: {k}"),
            );
        }
    }
    for k in annotations.keys() {
        if !valid_label_name(k) {
            cx.error(
                key_at("annotations", k),
                &format!("{path}.annotations.{k}"),
                format!("{prefix}: invalid annotation name: {k}"),
            );
        }
    }
    // Templates of alerting rules, parsed now (as promtool does) so that an error shows
    // at load, not in an email.
    let mut label_templates = Vec::new();
    let mut annotation_templates = Vec::new();
    if !alert.is_empty() {
        let tname = format!("__alert_{alert}");
        for (section, map, out) in [
            ("labels", &labels, &mut label_templates),
            ("annotations", &annotations, &mut annotation_templates),
        ] {
            for (k, v) in map {
                match Template::parse(&tname, v) {
                    Ok(t) => out.push((k.clone(), t)),
                    Err(e) => {
                        let what = if section == "labels" {
                            "label"
                        } else {
                            "annotation"
                        };
                        let value_node = node.get(section).and_then(|s| s.get(k)).unwrap_or(node);
                        cx.error(
                            value_node,
                            &format!("{path}.{section}.{k}"),
                            format!("{prefix}: {what} {k:?}: {e}"),
                        );
                    }
                }
            }
        }
    }
    if cx.diagnostics.len() > before {
        return None;
    }
    let expr = expr?;
    Some(if alert.is_empty() {
        RuleSpec::Recording(RecordingSpec {
            record,
            expr,
            labels,
        })
    } else {
        RuleSpec::Alerting(AlertingSpec {
            alert,
            expr,
            hold,
            keep_firing_for: keep,
            labels: label_templates,
            annotations: annotation_templates,
        })
    })
}

// ---------------------------------------------------------------------------------------------
// Globs
// ---------------------------------------------------------------------------------------------

/// Expands `pattern` (relative to `base` unless absolute) as Go's `filepath.Glob` does:
/// `*`, `?` and `[…]` in any path segment; sorted matches. A pattern without wildcards
/// is returned as is, whether or not the file exists (its read error says so later).
pub fn glob(base: &Path, pattern: &str) -> Vec<PathBuf> {
    let full = if Path::new(pattern).is_absolute() {
        PathBuf::from(pattern)
    } else {
        base.join(pattern)
    };
    if !pattern.contains(['*', '?', '[']) {
        return vec![full];
    }
    let mut current: Vec<PathBuf> = vec![PathBuf::new()];
    for comp in full.components() {
        let part = comp.as_os_str().to_string_lossy().to_string();
        let mut next = Vec::new();
        for prefix in &current {
            if part.contains(['*', '?', '[']) {
                let dir = if prefix.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    prefix.clone()
                };
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                let mut names: Vec<String> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| wildcard_match(&part, n))
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|n| prefix.join(n)));
            } else {
                next.push(prefix.join(&part));
            }
        }
        current = next;
    }
    current.retain(|p| p.exists());
    current.sort();
    current
}

/// Shell-style match of one path segment: `*`, `?`, `[abc]`, `[a-z]`, `[^a]`.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|i| go(&p[1..], &n[i..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some('[') => {
                let Some(end) = p.iter().position(|c| *c == ']') else {
                    return false;
                };
                let Some(&c) = n.first() else { return false };
                let mut class = &p[1..end];
                let negate = class.first() == Some(&'^');
                if negate {
                    class = &class[1..];
                }
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == '-' {
                        hit |= class[i] <= c && c <= class[i + 2];
                        i += 3;
                    } else {
                        hit |= class[i] == c;
                        i += 1;
                    }
                }
                hit != negate && go(&p[end + 1..], &n[1..])
            }
            Some(&c) => n.first() == Some(&c) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match parse_file("r.yml", text) {
            Ok(_) => Vec::new(),
            Err(d) => d.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn a_valid_file_loads() {
        let g = parse_file(
            "r.yml",
            "groups:\n- name: g\n  interval: 30s\n  limit: 3\n  rules:\n  - record: a:b\n    expr: sum(up)\n    labels: {x: y}\n  - alert: A\n    expr: up == 0\n    for: 5m\n    keep_firing_for: 1m\n    labels: {severity: page}\n    annotations: {summary: '{{ $labels.job }} down'}\n",
        )
        .expect("valid");
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].interval, Some(Duration::from_secs(30)));
        assert_eq!(g[0].limit, 3);
        assert_eq!(g[0].rules.len(), 2);
        match &g[0].rules[1] {
            RuleSpec::Alerting(a) => {
                assert_eq!(a.hold, Duration::from_secs(300));
                assert_eq!(a.keep_firing_for, Duration::from_secs(60));
            }
            RuleSpec::Recording(_) => panic!("alerting rule expected"),
        }
        assert!(parse_file("e.yml", "").expect("empty file").is_empty());
    }

    #[test]
    fn every_problem_is_reported_with_its_position() {
        let text = "groups:
- name: g
  rules:
  - alert: A
    expr: up == 0
    labels:
      x: '{{ $foo }}'
      __name__: y
    annotations:
      a: '{{ nofunc 1 }}'
      b-c: x
  - record: a-b
    expr: up
    for: 1m
    annotations: {x: y}
  - record: r
    alert: r
    expr: up
  - expr: up
  - record: q
  - record: s
    expr: 'up +'
  - record: t
    expr: histogram_count(up)
    bogus: 1
  - alert: M
    expr: up[5m]
    for: 1.5m
- name: g
  rules: []
";
        let got = errors(text);
        let want = [
            "r.yml:7:10: groups[0].rules[0].labels.x: group \"g\", rule 1, \"A\": label \"x\": template: __alert_A:1: undefined variable \"$foo\"",
            "r.yml:8:7: groups[0].rules[0].labels.__name__: group \"g\", rule 1, \"A\": invalid label name: __name__",
            "r.yml:10:10: groups[0].rules[0].annotations.a: group \"g\", rule 1, \"A\": annotation \"a\": template: __alert_A:1: function \"nofunc\" not defined",
            "r.yml:11:7: groups[0].rules[0].annotations.b-c: group \"g\", rule 1, \"A\": invalid annotation name: b-c",
            "r.yml:12:13: groups[0].rules[1].annotations: group \"g\", rule 2, \"a-b\": invalid field 'annotations' in recording rule",
            "r.yml:12:13: groups[0].rules[1].for: group \"g\", rule 2, \"a-b\": invalid field 'for' in recording rule",
            "r.yml:12:13: groups[0].rules[1].record: group \"g\", rule 2, \"a-b\": invalid recording rule name: a-b",
            "r.yml:16:13: groups[0].rules[2].record: group \"g\", rule 3, \"r\": only one of 'record' and 'alert' must be set",
            "r.yml:19:5: groups[0].rules[3]: group \"g\", rule 4, \"\": one of 'record' or 'alert' must be set",
            "r.yml:20:5: groups[0].rules[4].expr: group \"g\", rule 5, \"q\": field 'expr' must be set in rule",
            "r.yml:22:11: groups[0].rules[5].expr: group \"g\", rule 6, \"s\": could not parse expression:",
            "r.yml:24:11: groups[0].rules[6].expr: group \"g\", rule 7, \"t\": unsupported PromQL construct: function histogram_count",
            "r.yml:25:5: groups[0].rules[6].bogus: unknown field \"bogus\"",
            "r.yml:27:11: groups[0].rules[7].expr: group \"g\", rule 8, \"M\": the expression returns a range vector",
            "r.yml:28:10: groups[0].rules[7].for: invalid duration \"1.5m\"",
            "r.yml:29:9: groups[1].name: groupname: \"g\" is repeated in the same file",
        ];
        for w in want {
            assert!(
                got.iter().any(|g| g.starts_with(w)),
                "missing {w:?} in\n{}",
                got.join("\n")
            );
        }
        assert_eq!(got.len(), want.len(), "{}", got.join("\n"));
    }

    #[test]
    fn yaml_errors_and_shapes() {
        assert_eq!(
            errors("groups:\n- name: g\n  rules:\n  - record: a\n    record: b\n"),
            ["r.yml:5:5: groups[0].rules[0].record: duplicate key \"record\""]
        );
        assert_eq!(
            errors("grups: []\n"),
            ["r.yml:1:1: grups: unknown field \"grups\", did you mean \"groups\"?"]
        );
        assert_eq!(
            errors("groups:\n- name: ''\n  rules: []\n"),
            ["r.yml:2:9: groups[0].name: Groupname must not be empty"]
        );
        assert_eq!(errors("groups: 3\n").len(), 1);
    }

    #[test]
    fn globs() {
        let dir = tempfile::tempdir().expect("tempdir");
        for f in ["a.yml", "b.yml", "c.txt"] {
            std::fs::write(dir.path().join(f), "").expect("write");
        }
        let got = glob(dir.path(), "*.yml");
        let names: Vec<String> = got
            .iter()
            .map(|p| {
                p.file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(names, ["a.yml", "b.yml"]);
        assert_eq!(glob(dir.path(), "x.yml"), [dir.path().join("x.yml")]);
        assert!(wildcard_match("[a-c]?.y*", "b1.yml"));
        assert!(!wildcard_match("[^a]*", "abc"));
    }
}
