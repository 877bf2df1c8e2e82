//! Configuration: read → parse (strict, positions kept) → validate (every error) → build.
//!
//! `load` never stops at the first problem: every unknown key, wrong type, literal
//! secret, bad duration, duplicate name or dependency cycle is reported, each as
//! `file:line:column: field.path: message`.

pub mod types;
pub mod yaml;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::checks::{BuiltCheck, COMMON_KEYS, CheckSpec, KINDS};
use types::PromDuration;
use yaml::{Context, Diagnostic, Node};

/// The embedded Harena config, used when no `--config.file` is given.
pub const DEFAULT_CONFIG: &str = include_str!("default.yml");

/// Name shown in errors for the embedded config.
pub const EMBEDDED_NAME: &str = "<embedded default config>";

/// The shipped rule files (`rules/*.yml`), built in: the embedded config evaluates them.
/// `tests/config.rs` checks that every `rules/*.yml` is listed.
pub const EMBEDDED_RULES: &[(&str, &str)] = &[
    ("rules/aws.yml", include_str!("../../rules/aws.yml")),
    ("rules/backups.yml", include_str!("../../rules/backups.yml")),
    (
        "rules/containers.yml",
        include_str!("../../rules/containers.yml"),
    ),
    (
        "rules/datastores.yml",
        include_str!("../../rules/datastores.yml"),
    ),
    (
        "rules/exporter.yml",
        include_str!("../../rules/exporter.yml"),
    ),
    (
        "rules/services.yml",
        include_str!("../../rules/services.yml"),
    ),
    ("rules/tunnel.yml", include_str!("../../rules/tunnel.yml")),
];

/// Where a config comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// The embedded Harena config.
    Embedded,
    /// A file on disk.
    File(PathBuf),
}

impl ConfigSource {
    /// From the optional `--config.file` flag.
    pub fn from_flag(path: Option<&Path>) -> Self {
        path.map_or(ConfigSource::Embedded, |p| {
            ConfigSource::File(p.to_path_buf())
        })
    }

    /// The name errors use.
    pub fn display_name(&self) -> String {
        match self {
            ConfigSource::Embedded => EMBEDDED_NAME.to_string(),
            ConfigSource::File(p) => p.display().to_string(),
        }
    }
}

/// `global:` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GlobalConfig {
    /// How many checks may run at the same moment. Default `256`.
    /// Example: `max_concurrent_checks: 64`.
    pub max_concurrent_checks: usize,
    /// Labels added to every series of every check. Default none.
    /// Example: `labels: {env: dev, host: harena-ec2}`.
    pub labels: BTreeMap<String, String>,
    /// Interval of rule groups without their own `interval`. Default `1m`.
    /// Example: `evaluation_interval: 30s`.
    pub evaluation_interval: PromDuration,
    /// `$externalLabels` in alert templates. Default none. Example: `external_labels: {env: prod}`.
    pub external_labels: BTreeMap<String, String>,
    /// `$externalURL` in alert templates. Default empty.
    /// Example: `external_url: https://monitoring.example.org`.
    pub external_url: String,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            max_concurrent_checks: 256,
            labels: BTreeMap::new(),
            evaluation_interval: PromDuration(Duration::from_secs(60)),
            external_labels: BTreeMap::new(),
            external_url: String::new(),
        }
    }
}

/// The keys every check has, whatever its kind.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommonFields {
    name: String,
    kind: String,
    #[serde(default)]
    interval: Option<PromDuration>,
    #[serde(default)]
    timeout: Option<PromDuration>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    depends_on: Vec<String>,
}

/// One check as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckConfig {
    /// Unique name; the `check` label. Example: `name: user_service`.
    pub name: String,
    /// Time between two runs. Default per kind (HTTP 15s). Example: `interval: 30s`.
    pub interval: Duration,
    /// Longest a run may take; must be below `interval`. Default per kind (HTTP 10s),
    /// at most 80 % of `interval`.
    pub timeout: Duration,
    /// Extra labels on every series of the check. Example: `labels: {team: backend}`.
    pub labels: BTreeMap<String, String>,
    /// Checks whose failure explains this one's. Example: `depends_on: [postgres]`.
    pub depends_on: Vec<String>,
    /// The kind and its settings.
    pub spec: CheckSpec,
}

/// A check ready to run: its config and the built probe.
#[derive(Clone)]
pub struct CheckDef {
    /// As configured.
    pub config: CheckConfig,
    /// Built once per (re)load.
    pub check: Arc<BuiltCheck>,
}

impl std::fmt::Debug for CheckDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckDef")
            .field("config", &self.config)
            .finish()
    }
}

/// A loaded, valid config.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from.
    pub source: ConfigSource,
    /// `global:`.
    pub global: GlobalConfig,
    /// `checks:`, in file order.
    pub checks: Vec<CheckDef>,
    /// The rule groups of `rule_files:` (the embedded config: the shipped rules).
    pub rules: Arc<crate::rules::Groups>,
    /// `alerting:` (routes, receivers, inhibitions); `None` when absent.
    pub alerting: Option<Arc<crate::notify::config::AlertingConfig>>,
}

/// The file's top level: only read to report unknown sections.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTop {
    #[serde(default)]
    global: Option<yaml_ignored::Ignored>,
    #[serde(default)]
    checks: Option<yaml_ignored::Ignored>,
    #[serde(default)]
    rule_files: Option<yaml_ignored::Ignored>,
    #[serde(default)]
    alerting: Option<yaml_ignored::Ignored>,
}

mod yaml_ignored {
    /// A placeholder that accepts any value: the section is deserialized on its own.
    #[derive(Debug, Default)]
    pub struct Ignored;
    impl<'de> serde::Deserialize<'de> for Ignored {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            serde::de::IgnoredAny::deserialize(d).map(|_| Ignored)
        }
    }
}

/// Every problem found in a config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// One entry per problem, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl std::fmt::Display for ConfigError {
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

impl ConfigError {
    fn single(file: &str, message: String) -> Self {
        ConfigError {
            diagnostics: vec![Diagnostic {
                file: file.to_string(),
                line: 0,
                column: 0,
                path: String::new(),
                message,
            }],
        }
    }
}

/// Reads and validates a config.
///
/// # Errors
/// Every problem found, with positions.
pub fn load(source: &ConfigSource) -> Result<Config, ConfigError> {
    let name = source.display_name();
    let text = match source {
        ConfigSource::Embedded => DEFAULT_CONFIG.to_string(),
        ConfigSource::File(p) => std::fs::read_to_string(p)
            .map_err(|e| ConfigError::single(&name, format!("read config file: {e}")))?,
    };
    parse(source.clone(), &text)
}

/// Validates config text (the file name is taken from `source`).
///
/// # Errors
/// Every problem found, with positions.
pub fn parse(source: ConfigSource, text: &str) -> Result<Config, ConfigError> {
    let name = source.display_name();
    let root = yaml::parse(&name, text).map_err(|d| ConfigError {
        diagnostics: vec![d],
    })?;
    let mut cx = Context::new(name);
    // Unknown top-level sections first, with did-you-mean.
    let _ = cx.deserialize::<RawTop>(&root, "", &[]);
    let global = match root.get("global") {
        Some(node) => cx
            .deserialize::<GlobalConfig>(node, "global", &[])
            .unwrap_or_default(),
        None => GlobalConfig::default(),
    };
    if global.max_concurrent_checks == 0
        && let Some(node) = root.get("global")
    {
        let at = node.get("max_concurrent_checks").unwrap_or(node);
        cx.error(at, "global.max_concurrent_checks", "must be at least 1");
    }
    if let Some(node) = root.get("global") {
        check_label_names(&mut cx, node.get("labels"), &global.labels, "global.labels");
    }
    let mut checks = Vec::new();
    match root.get("checks") {
        None => {}
        Some(node) => match node.as_seq() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    let before = cx.diagnostics.len();
                    if let Some(c) = parse_check(&mut cx, item, &format!("checks[{i}]")) {
                        checks.push(Parsed {
                            index: i,
                            config: c,
                            node: item,
                            clean: cx.diagnostics.len() == before,
                        });
                    }
                }
            }
            None if matches!(node.value, yaml::NodeValue::Null) => {}
            None => cx.error(node, "checks", "expected a list of checks"),
        },
    }
    validate_checks(&mut cx, &checks);
    if global.evaluation_interval.0.is_zero()
        && let Some(node) = root.get("global")
    {
        let at = node.get("evaluation_interval").unwrap_or(node);
        cx.error(at, "global.evaluation_interval", "must be greater than 0");
    }
    let rules = load_rules(&mut cx, &source, &root);
    let alerting = root
        .get("alerting")
        .filter(|n| !matches!(n.value, yaml::NodeValue::Null))
        .and_then(|node| crate::notify::config::parse(&mut cx, node, "alerting"))
        .map(Arc::new);
    let mut defs = Vec::new();
    for Parsed {
        index: i,
        config: c,
        node,
        clean,
    } in &checks
    {
        if !clean {
            // Its keys already have errors; building it would only repeat them.
            continue;
        }
        match c.spec.build() {
            Ok(b) => defs.push(CheckDef {
                config: c.clone(),
                check: Arc::new(b),
            }),
            Err(e) => {
                let at = node
                    .get(e.field.split('.').next().unwrap_or(""))
                    .unwrap_or(node);
                cx.error(at, &format!("checks[{i}].{}", e.field), e.message);
            }
        }
    }
    match rules {
        Ok(rules) if cx.diagnostics.is_empty() => Ok(Config {
            source,
            global,
            checks: defs,
            rules: Arc::new(rules),
            alerting,
        }),
        rules => {
            let mut diagnostics = cx.diagnostics;
            diagnostics.sort_by_key(|d| (d.line, d.column));
            diagnostics.dedup();
            // The rule files' own problems come after the config file's.
            if let Err(e) = rules {
                diagnostics.extend(e.diagnostics);
            }
            Err(ConfigError { diagnostics })
        }
    }
}

/// `rule_files:` (globs relative to the config file's folder), loaded and validated; the
/// embedded config uses the built-in copies of the shipped rules.
fn load_rules(
    cx: &mut Context,
    source: &ConfigSource,
    root: &Node,
) -> Result<crate::rules::Groups, crate::rules::RuleLoadError> {
    let patterns = match root.get("rule_files") {
        None => Vec::new(),
        Some(node) => cx
            .deserialize::<Vec<String>>(node, "rule_files", &[])
            .unwrap_or_default(),
    };
    let base = match source {
        ConfigSource::Embedded if patterns.is_empty() => {
            return crate::rules::Groups::from_sources(EMBEDDED_RULES);
        }
        ConfigSource::Embedded => PathBuf::from("."),
        ConfigSource::File(p) => p
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
    };
    let mut paths = Vec::new();
    for (i, pattern) in patterns.iter().enumerate() {
        let found = crate::rules::files::glob(&base, pattern);
        if found.is_empty() {
            let at = root
                .get("rule_files")
                .and_then(Node::as_seq)
                .and_then(|s| s.get(i))
                .or(root.get("rule_files"))
                .unwrap_or(root);
            cx.error(
                at,
                &format!("rule_files[{i}]"),
                format!("no file matches {pattern:?}"),
            );
        }
        paths.extend(found);
    }
    crate::rules::Groups::load(&paths)
}

fn parse_check(cx: &mut Context, node: &Node, path: &str) -> Option<CheckConfig> {
    if node.as_map().is_none() {
        cx.error(
            node,
            path,
            "expected a check: a mapping with name, kind and its settings",
        );
        return None;
    }
    let common = cx.deserialize::<CommonFields>(&node.only_keys(COMMON_KEYS), path, &[]);
    let kind_node = node.get("kind");
    let kind = kind_node.and_then(Node::as_str);
    let spec_node = node.without_keys(COMMON_KEYS);
    let spec = match kind {
        Some(k) => match CheckSpec::parse(k, &spec_node, cx, path) {
            Some(spec) => spec,
            None => {
                let msg = match suggest(k, KINDS) {
                    Some(s) => format!("unknown kind {k:?}, did you mean {s:?}?"),
                    None => format!("unknown kind {k:?}, expected one of: {}", KINDS.join(", ")),
                };
                if let Some(kn) = kind_node {
                    cx.error(kn, &format!("{path}.kind"), msg);
                }
                None
            }
        },
        None => None,
    };
    let common = common?;
    let spec = spec?;
    let (def_interval, def_timeout) = spec.defaults();
    let interval = common.interval.map_or(def_interval, |d| d.0);
    // Without its own timeout, a check with a short interval gets 80 % of it.
    let timeout = common
        .timeout
        .map_or(def_timeout.min(interval.mul_f64(0.8)), |d| d.0);
    Some(CheckConfig {
        name: common.name,
        interval,
        timeout,
        labels: common.labels,
        depends_on: common.depends_on,
        spec,
    })
}

fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Check names: a letter or `_`, then letters, digits, `_` or `-`.
pub fn valid_check_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Label names the exporter sets itself.
const RESERVED_LABELS: &[&str] = &[
    "check",
    "kind",
    "reason",
    "phase",
    "alertname",
    "alertstate",
];

fn check_label_names(
    cx: &mut Context,
    node: Option<&Node>,
    labels: &BTreeMap<String, String>,
    path: &str,
) {
    for name in labels.keys() {
        let at = node.and_then(|n| n.as_map()).and_then(|m| {
            m.iter()
                .find(|(k, _)| k.as_str() == Some(name))
                .map(|(k, _)| k)
        });
        let Some(at) = at.or(node) else { continue };
        if !valid_label_name(name) || name.starts_with("__") {
            cx.error(
                at,
                &format!("{path}.{name}"),
                "invalid label name: use letters, digits and _, not starting with a digit or __",
            );
        } else if RESERVED_LABELS.contains(&name.as_str()) {
            cx.error(
                at,
                &format!("{path}.{name}"),
                format!("label {name:?} is set by the exporter and cannot be configured"),
            );
        }
    }
}

/// A check that parsed, with its position in `checks:` and its node.
struct Parsed<'a> {
    index: usize,
    config: CheckConfig,
    node: &'a Node,
    /// No diagnostic was recorded while parsing it.
    clean: bool,
}

fn validate_checks(cx: &mut Context, checks: &[Parsed<'_>]) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for Parsed {
        index: i,
        config: c,
        node,
        ..
    } in checks
    {
        let path = format!("checks[{i}]");
        let name_node = node.get("name").unwrap_or(node);
        if !valid_check_name(&c.name) {
            cx.error(name_node, &format!("{path}.name"), format!("invalid check name {:?}: use letters, digits, _ and -, starting with a letter or _", c.name));
        }
        if let Some(first) = seen.insert(&c.name, *i) {
            cx.error(
                name_node,
                &format!("{path}.name"),
                format!(
                    "duplicate check name {:?} (first used by checks[{first}])",
                    c.name
                ),
            );
        }
        if c.interval.is_zero() {
            let at = node.get("interval").unwrap_or(node);
            cx.error(at, &format!("{path}.interval"), "must be greater than 0");
        }
        if c.timeout.is_zero() || c.timeout >= c.interval {
            let at = node.get("timeout").or(node.get("interval")).unwrap_or(node);
            cx.error(
                at,
                &format!("{path}.timeout"),
                format!(
                    "timeout {} must be greater than 0 and less than interval {}",
                    PromDuration(c.timeout),
                    PromDuration(c.interval)
                ),
            );
        }
        check_label_names(cx, node.get("labels"), &c.labels, &format!("{path}.labels"));
    }
    // depends_on: known names, no self-reference, no cycle.
    let names: Vec<&str> = checks.iter().map(|p| p.config.name.as_str()).collect();
    for Parsed {
        index: i,
        config: c,
        node,
        ..
    } in checks
    {
        let dep_nodes = node.get("depends_on").and_then(Node::as_seq);
        for (j, dep) in c.depends_on.iter().enumerate() {
            let at = dep_nodes.and_then(|d| d.get(j)).unwrap_or(node);
            let path = format!("checks[{i}].depends_on[{j}]");
            if dep == &c.name {
                cx.error(at, &path, "a check cannot depend on itself");
            } else if !seen.contains_key(dep.as_str()) {
                let msg = match suggest(dep, &names) {
                    Some(s) => format!("unknown check {dep:?}, did you mean {s:?}?"),
                    None => format!("unknown check {dep:?}"),
                };
                cx.error(at, &path, msg);
            }
        }
    }
    // `{check.key}` placeholders name an existing check other than the one using them.
    for p in checks {
        for (check, key) in p.config.spec.placeholders() {
            let msg = if check == p.config.name {
                Some(format!(
                    "{{{check}.{key}}}: a check cannot use its own value"
                ))
            } else if !seen.contains_key(check.as_str()) {
                Some(match suggest(&check, &names) {
                    Some(s) => {
                        format!("{{{check}.{key}}}: unknown check {check:?}, did you mean {s:?}?")
                    }
                    None => format!("{{{check}.{key}}}: unknown check {check:?}"),
                })
            } else {
                None
            };
            if let Some(msg) = msg {
                cx.error(p.node, &format!("checks[{}]", p.index), msg);
            }
        }
    }
    if let Some(cycle) = find_cycle(checks.iter().map(|p| &p.config))
        && let Some(p) = checks.iter().find(|p| p.config.name == cycle[0])
    {
        let at = p.node.get("depends_on").unwrap_or(p.node);
        cx.error(
            at,
            &format!("checks[{}].depends_on", p.index),
            format!("dependency cycle: {}", cycle.join(" -> ")),
        );
    }
}

/// Finds one dependency cycle, returned as the names along it (first repeated at the end).
pub fn find_cycle<'a>(checks: impl Iterator<Item = &'a CheckConfig>) -> Option<Vec<String>> {
    let graph: BTreeMap<&str, &[String]> = checks
        .map(|c| (c.name.as_str(), c.depends_on.as_slice()))
        .collect();
    // 0 = unvisited, 1 = on the stack, 2 = done.
    let mut state: HashMap<&str, u8> = HashMap::new();
    fn visit<'a>(
        n: &'a str,
        graph: &BTreeMap<&'a str, &'a [String]>,
        state: &mut HashMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        state.insert(n, 1);
        stack.push(n);
        for d in graph.get(n).copied().unwrap_or_default() {
            let d = d.as_str();
            if !graph.contains_key(d) || d == n {
                continue;
            }
            match state.get(d).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|x| *x == d).unwrap_or(0);
                    let mut cyc: Vec<String> =
                        stack[start..].iter().map(|s| s.to_string()).collect();
                    cyc.push(d.to_string());
                    return Some(cyc);
                }
                0 => {
                    if let Some(c) = visit(d, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n, 2);
        None
    }
    let keys: Vec<&str> = graph.keys().copied().collect();
    for n in keys {
        if state.get(n).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(n, &graph, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

/// The closest candidate by edit distance, when close enough to be a typo.
pub fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (levenshtein(&lower, &c.to_ascii_lowercase()), *c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
