//! The `alerting:` section of the config file: Alertmanager 0.25's `global` (SMTP),
//! `route`, `receivers`, `inhibit_rules` and `time_intervals`, plus the exporter's own
//! `heartbeats` and `daily_report`.
//!
//! ```yaml
//! alerting:
//!   global: {smtp_smarthost: 'smtp.example.org:587', smtp_from: monitor@example.org}
//!   route:
//!     receiver: team-digest
//!     group_by: [alertname, check]
//!     routes:
//!       - matchers: ['severity="critical"']
//!         receiver: team-critical
//!         group_wait: 0s
//!   receivers:
//!     - name: team-digest
//!       email_configs: [{to: team@example.org}]
//!     - name: team-critical
//!       email_configs: [{to: oncall@example.org}]
//!   inhibit_rules:
//!     - source_matchers: ['alertname="TunnelDown"']
//!       target_matchers: ['alertname="PublicSiteDown"']
//!   time_intervals:
//!     - name: weekend-maintenance
//!       time_intervals: [{weekdays: [sunday], times: [{start_time: '02:00', end_time: '04:00'}]}]
//!   daily_report: {receiver: team-digest, at: '08:00', location: Europe/Paris}
//! ```
//!
//! [`parse`] reports every problem it finds, each at the offending node
//! (`file:line:column: alerting.route.routes[1].receiver: undefined receiver "x" used in
//! route`), with Alertmanager's validations: receivers and time intervals that routes name
//! must exist, names are unique, the root route has a receiver and no matchers, `group_by`
//! labels are valid, `group_interval`/`repeat_interval` are not 0, matchers and regexes
//! parse, and every integration builds.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveTime, TimeDelta, Utc};
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::LabelSet;
use super::matchers::{self, MatchOp, Matcher};
use super::receivers::{self, ReceiverConfig};
use super::route::{self, MatcherLine, RouteNode};
use super::timeinterval::{self, TimeInterval, TimeIntervalConfig, Zone};
use crate::config::yaml::{Context, Node, NodeValue};

/// The `alerting:` section, parsed, validated and built.
#[derive(Debug)]
pub struct AlertingConfig {
    /// `alerting.global`: SMTP defaults of every `email_configs` entry.
    pub global: receivers::email::SmtpGlobal,
    /// `alerting.route`: the route tree.
    pub route: route::Route,
    /// `alerting.receivers`, built, in file order.
    pub receivers: Vec<receivers::Receiver>,
    /// `alerting.receivers` as configured, in file order.
    pub receiver_configs: Vec<ReceiverConfig>,
    /// `alerting.inhibit_rules`, in file order.
    pub inhibit_rules: Vec<InhibitRule>,
    /// `alerting.time_intervals` (and Alertmanager's deprecated `mute_time_intervals`), by
    /// name.
    pub time_intervals: BTreeMap<String, TimeInterval>,
    /// `alerting.heartbeats`, in file order.
    pub heartbeats: Vec<receivers::heartbeat::HeartbeatConfig>,
    /// `alerting.daily_report`, when set.
    pub daily_report: Option<DailyReportConfig>,
}

impl AlertingConfig {
    /// The built receiver with this name.
    pub fn receiver(&self, name: &str) -> Option<&receivers::Receiver> {
        self.receivers.iter().find(|r| r.name == name)
    }

    /// True when a route node sends nothing at `t` because of its time intervals
    /// (Alertmanager's time-mute and time-active stages): one of its
    /// `mute_time_intervals` contains `t`, or it has `active_time_intervals` and none
    /// contains `t`.
    pub fn time_muted(&self, node: &RouteNode, t: DateTime<Utc>) -> bool {
        let contains = |name: &String| {
            self.time_intervals
                .get(name)
                .is_some_and(|ti| ti.contains(t))
        };
        node.mute_time_intervals.iter().any(contains)
            || (!node.active_time_intervals.is_empty()
                && !node.active_time_intervals.iter().any(contains))
    }

    /// The first firing source alert that inhibits `target` under any rule (see
    /// [`InhibitRule::inhibited_by`]).
    pub fn inhibited_by<'a>(
        &self,
        target: &LabelSet,
        firing: &[&'a LabelSet],
    ) -> Option<&'a LabelSet> {
        self.inhibit_rules
            .iter()
            .find_map(|r| r.inhibited_by(target, firing.iter().copied()))
    }
}

/// The keys of `alerting:`; only read to report unknown ones (each section is parsed on
/// its own).
#[allow(dead_code)]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertingKeys {
    /// SMTP defaults, as Alertmanager's `global`. Default: none.
    /// Example: `global: {smtp_smarthost: 'smtp.example.org:587'}`.
    #[serde(default)]
    global: Option<IgnoredAny>,
    /// The route tree. Required. Example: `route: {receiver: team-digest}`.
    #[serde(default)]
    route: Option<IgnoredAny>,
    /// Receivers. Default none. Example: `receivers: [{name: team-digest}]`.
    #[serde(default)]
    receivers: Option<IgnoredAny>,
    /// Inhibition rules. Default none.
    /// Example: `inhibit_rules: [{source_matchers: [alertname=TunnelDown], target_matchers: [alertname=SiteDown]}]`.
    #[serde(default)]
    inhibit_rules: Option<IgnoredAny>,
    /// Named time intervals. Default none.
    /// Example: `time_intervals: [{name: nights, time_intervals: [{times: [{start_time: '00:00', end_time: '06:00'}]}]}]`.
    #[serde(default)]
    time_intervals: Option<IgnoredAny>,
    /// Alertmanager's deprecated name for `time_intervals`, accepted. Default none.
    #[serde(default)]
    mute_time_intervals: Option<IgnoredAny>,
    /// Dead man's switches. Default none. Example: `heartbeats: [{name: hc, url: https://hc.example.org/ping/x}]`.
    #[serde(default)]
    heartbeats: Option<IgnoredAny>,
    /// The daily report. Default none. Example: `daily_report: {receiver: team-digest}`.
    #[serde(default)]
    daily_report: Option<IgnoredAny>,
}

/// One entry of `alerting.inhibit_rules`, as configured (Alertmanager's
/// `<inhibit_rule>`): while a firing alert matches the source side, alerts that match the
/// target side and have the same values for the `equal` labels are not notified.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitRuleConfig {
    /// Matchers the inhibiting (source) alert must satisfy. Default none.
    /// Example: `source_matchers: ['alertname="TunnelDown"']`.
    #[serde(default)]
    pub source_matchers: Vec<MatcherLine>,
    /// Legacy equality matchers on the source (Alertmanager's deprecated `source_match`).
    /// Default none. Example: `source_match: {alertname: TunnelDown}`.
    #[serde(default)]
    pub source_match: BTreeMap<String, String>,
    /// Legacy regex matchers on the source (`source_match_re`). Default none.
    /// Example: `source_match_re: {check: 'postgres|redis'}`.
    #[serde(default)]
    pub source_match_re: BTreeMap<String, String>,
    /// Matchers the muted (target) alert must satisfy. Default none.
    /// Example: `target_matchers: ['alertname="PublicSiteDown"']`.
    #[serde(default)]
    pub target_matchers: Vec<MatcherLine>,
    /// Legacy equality matchers on the target (`target_match`). Default none.
    /// Example: `target_match: {severity: warning}`.
    #[serde(default)]
    pub target_match: BTreeMap<String, String>,
    /// Legacy regex matchers on the target (`target_match_re`). Default none.
    /// Example: `target_match_re: {check: 'user_.*'}`.
    #[serde(default)]
    pub target_match_re: BTreeMap<String, String>,
    /// Labels whose values must be equal in the source and the target (a label missing
    /// from both counts as equal). Default none. Example: `equal: [env]`.
    #[serde(default)]
    pub equal: Vec<String>,
}

/// A built inhibition rule (Alertmanager's `inhibit.InhibitRule`).
#[derive(Debug, Clone, PartialEq)]
pub struct InhibitRule {
    /// Matchers of the inhibiting alert (`source_match`, `source_match_re`,
    /// `source_matchers` together).
    pub source_matchers: Vec<Matcher>,
    /// Matchers of the muted alert.
    pub target_matchers: Vec<Matcher>,
    /// Labels that must have equal values.
    pub equal: Vec<String>,
}

impl InhibitRule {
    /// Builds a rule from a valid config (invalid matchers are skipped: see [`parse`]).
    pub fn new(c: &InhibitRuleConfig) -> Self {
        let side = |eq: &BTreeMap<String, String>,
                    re: &BTreeMap<String, String>,
                    lines: &[MatcherLine]| {
            let mut out: Vec<Matcher> = Vec::new();
            for (k, v) in eq {
                out.extend(Matcher::new(k, MatchOp::Equal, v).ok());
            }
            for (k, v) in re {
                out.extend(Matcher::new(k, MatchOp::Regex, &format!("^(?:{v})$")).ok());
            }
            out.extend(lines.iter().flat_map(|l| l.0.iter().cloned()));
            out
        };
        InhibitRule {
            source_matchers: side(&c.source_match, &c.source_match_re, &c.source_matchers),
            target_matchers: side(&c.target_match, &c.target_match_re, &c.target_matchers),
            equal: c.equal.clone(),
        }
    }

    /// True when an alert with these labels is on the source side.
    pub fn source_matches(&self, labels: &LabelSet) -> bool {
        matchers::matches_all(&self.source_matchers, labels)
    }

    /// True when an alert with these labels is on the target side.
    pub fn target_matches(&self, labels: &LabelSet) -> bool {
        matchers::matches_all(&self.target_matchers, labels)
    }

    /// True when the `equal` labels have the same values (missing = empty) in both.
    pub fn equal_labels(&self, source: &LabelSet, target: &LabelSet) -> bool {
        self.equal.iter().all(|n| {
            source.get(n).map_or("", String::as_str) == target.get(n).map_or("", String::as_str)
        })
    }

    /// True when the firing alert `source` inhibits `target`, as Alertmanager decides:
    /// the target matches the target side, the source the source side, the `equal` labels
    /// agree, and, when the target also matches the source side, the source does not
    /// match both sides (so that such alerts cannot inhibit each other, nor themselves).
    pub fn inhibits(&self, source: &LabelSet, target: &LabelSet) -> bool {
        if !self.target_matches(target) || !self.source_matches(source) {
            return false;
        }
        if !self.equal_labels(source, target) {
            return false;
        }
        let two_sided = self.source_matches(target);
        !(two_sided && self.target_matches(source))
    }

    /// The first of the firing alerts `sources` that inhibits `target` (pass only firing
    /// alerts: resolved ones inhibit nothing).
    pub fn inhibited_by<'a>(
        &self,
        target: &LabelSet,
        sources: impl IntoIterator<Item = &'a LabelSet>,
    ) -> Option<&'a LabelSet> {
        if !self.target_matches(target) {
            return None;
        }
        sources.into_iter().find(|s| self.inhibits(s, target))
    }
}

/// `alerting.daily_report`: one email a day with each check's uptime, the incidents, the
/// backup and snapshot ages and the exposed ports.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DailyReportConfig {
    /// The receiver that gets the report; must be one of `alerting.receivers`. Required.
    /// Example: `receiver: team-digest`.
    pub receiver: String,
    /// Local time of day of the report, `HH:MM` (24-hour clock). Default `"08:00"`.
    /// Example: `at: "07:30"`.
    #[serde(default = "default_report_at")]
    pub at: String,
    /// IANA time zone that `at` is read in. Default: the host's local time
    /// (`/etc/localtime`). Example: `location: Europe/Paris`.
    #[serde(default)]
    pub location: Option<String>,
}

fn default_report_at() -> String {
    "08:00".into()
}

impl DailyReportConfig {
    /// The zone of `at`: `location`, else the host's local zone (UTC when it cannot be
    /// read; [`parse`] already refused a `location` that does not load).
    pub fn zone(&self) -> Zone {
        Zone::load(self.location.as_deref().unwrap_or("Local")).unwrap_or_else(|_| Zone::utc())
    }

    /// The time of day of `at`, 08:00 when it does not parse ([`parse`] refuses that).
    pub fn time_of_day(&self) -> NaiveTime {
        parse_time_of_day(&self.at).unwrap_or(NaiveTime::MIN + TimeDelta::hours(8))
    }

    /// The first report time strictly after `after`, in `zone` (see [`Zone::from_local`]
    /// for days with a daylight-saving change).
    pub fn next_run(&self, after: DateTime<Utc>, zone: &Zone) -> DateTime<Utc> {
        let local_date = zone.to_local(after).date();
        let tod = self.time_of_day();
        (0..3)
            .filter_map(|d| local_date.checked_add_signed(TimeDelta::days(d)))
            .map(|date| zone.from_local(date.and_time(tod)))
            .find(|t| *t > after)
            .unwrap_or(after + TimeDelta::days(1))
    }
}

/// `HH:MM` from `00:00` to `23:59`.
fn parse_time_of_day(text: &str) -> Option<NaiveTime> {
    let minutes = timeinterval::parse_hhmm(text).ok().filter(|m| *m < 1440)?;
    let secs = u32::try_from(minutes * 60).ok()?;
    NaiveTime::from_num_seconds_from_midnight_opt(secs, 0)
}

/// Parses the `alerting:` section at `node` (field path `path`, `alerting`), recording
/// every problem in `cx`. Returns `None` when there was any: a returned config is valid.
pub fn parse(cx: &mut Context, node: &Node, path: &str) -> Option<AlertingConfig> {
    let start = cx.diagnostics.len();
    if node.as_map().is_none() {
        cx.error(
            node,
            path,
            "expected a mapping with route, receivers and the other alerting settings",
        );
        return None;
    }
    let _ = cx.deserialize::<AlertingKeys>(node, path, &[]);
    let global = match node.get("global") {
        Some(n) if n.value != NodeValue::Null => cx
            .deserialize::<receivers::email::SmtpGlobal>(n, &format!("{path}.global"), &[])
            .unwrap_or_default(),
        _ => receivers::email::SmtpGlobal::default(),
    };

    // Time intervals, with Alertmanager's deprecated `mute_time_intervals` first.
    let mut time_intervals = BTreeMap::new();
    let mut ti_first: BTreeMap<String, usize> = BTreeMap::new();
    for key in ["mute_time_intervals", "time_intervals"] {
        let p = format!("{path}.{key}");
        for (i, item) in list(cx, node.get(key), &p, "time intervals") {
            let ip = format!("{p}[{i}]");
            let Some(c) = cx.deserialize::<TimeIntervalConfig>(item, &ip, &[]) else {
                continue;
            };
            if c.name.is_empty() {
                cx.error(item, &ip, "missing name in time interval");
                continue;
            }
            let name_node = item.get("name").unwrap_or(item);
            if let Some(line) = ti_first.get(&c.name) {
                let message = format!(
                    "time interval {:?} is not unique (first defined at line {line})",
                    c.name
                );
                cx.error(name_node, &format!("{ip}.name"), message);
                continue;
            }
            ti_first.insert(c.name.clone(), name_node.mark.line);
            time_intervals.insert(c.name.clone(), TimeInterval::new(c));
        }
    }

    // Receivers: configs, unique names, then the integrations built.
    let mut receiver_configs = Vec::new();
    let mut built = Vec::new();
    let mut rc_first: BTreeMap<String, usize> = BTreeMap::new();
    let p = format!("{path}.receivers");
    for (i, item) in list(cx, node.get("receivers"), &p, "receivers") {
        let ip = format!("{p}[{i}]");
        let before = cx.diagnostics.len();
        let Some(c) = cx.deserialize::<ReceiverConfig>(item, &ip, &[]) else {
            continue;
        };
        let name_node = item.get("name").unwrap_or(item);
        if c.name.is_empty() {
            cx.error(name_node, &ip, "missing name in receiver");
        } else if let Some(line) = rc_first.get(&c.name) {
            let message = format!(
                "receiver name {:?} is not unique (first defined at line {line})",
                c.name
            );
            cx.error(name_node, &format!("{ip}.name"), message);
        } else {
            rc_first.insert(c.name.clone(), name_node.mark.line);
        }
        if cx.diagnostics.len() == before {
            match c.build(&global) {
                Ok(r) => built.push(r),
                Err(errors) => report_build_errors(cx, item, &ip, errors),
            }
        }
        receiver_configs.push(c);
    }

    // Names as written, so that an entry with another problem does not also make every
    // reference to it "undefined".
    let written = |key: &str| -> BTreeSet<String> {
        node.get(key)
            .and_then(Node::as_seq)
            .unwrap_or_default()
            .iter()
            .filter_map(|n| n.get("name").and_then(Node::as_str))
            .map(String::from)
            .collect()
    };
    let receiver_names = written("receivers");
    let mut ti_names = written("time_intervals");
    ti_names.extend(written("mute_time_intervals"));

    let names = route::Names {
        receivers: &receiver_names,
        time_intervals: &ti_names,
    };
    let route = match node.get("route") {
        Some(n) => route::parse(cx, n, &format!("{path}.route"), names),
        None => {
            cx.error(
                node,
                path,
                "no route provided: add `route:` with a default receiver",
            );
            None
        }
    };

    let mut inhibit_rules = Vec::new();
    let p = format!("{path}.inhibit_rules");
    for (i, item) in list(cx, node.get("inhibit_rules"), &p, "inhibition rules") {
        let ip = format!("{p}[{i}]");
        if let Some(c) = cx.deserialize::<InhibitRuleConfig>(item, &ip, &[]) {
            validate_inhibit_rule(cx, item, &ip, &c);
            inhibit_rules.push(InhibitRule::new(&c));
        }
    }

    let mut heartbeats = Vec::new();
    let p = format!("{path}.heartbeats");
    for (i, item) in list(cx, node.get("heartbeats"), &p, "heartbeats") {
        let ip = format!("{p}[{i}]");
        if let Some(h) = cx.deserialize::<receivers::heartbeat::HeartbeatConfig>(item, &ip, &[]) {
            if let Err(e) = h.validate() {
                let at = item
                    .get(e.field.split('.').next().unwrap_or(""))
                    .unwrap_or(item);
                cx.error(
                    at,
                    format!("{ip}.{}", e.field).trim_end_matches('.'),
                    e.message,
                );
            }
            heartbeats.push(h);
        }
    }

    let daily_report = match node.get("daily_report") {
        Some(n) if n.value != NodeValue::Null => {
            let dp = format!("{path}.daily_report");
            let d = cx.deserialize::<DailyReportConfig>(n, &dp, &[]);
            if let Some(d) = &d {
                validate_daily_report(cx, n, &dp, d, &receiver_names);
            }
            d
        }
        _ => None,
    };

    if cx.diagnostics.len() > start {
        return None;
    }
    Some(AlertingConfig {
        global,
        route: route?,
        receivers: built,
        receiver_configs,
        inhibit_rules,
        time_intervals,
        heartbeats,
        daily_report,
    })
}

/// Reports the build errors of receiver `path` (`alerting.receivers[2]`), each at the
/// deepest node of its field path that the file has (else the receiver itself).
fn report_build_errors(
    cx: &mut Context,
    node: &Node,
    path: &str,
    errors: Vec<receivers::BuildError>,
) {
    for e in errors {
        let field = e.field.trim_matches('.');
        let p = if field.is_empty() {
            path.to_string()
        } else {
            format!("{path}.{field}")
        };
        cx.error(locate(node, field), &p, e.message);
    }
}

/// The items of an optional list (`None` or null: no items); anything else is reported.
fn list<'n>(
    cx: &mut Context,
    node: Option<&'n Node>,
    path: &str,
    what: &str,
) -> Vec<(usize, &'n Node)> {
    match node {
        None => Vec::new(),
        Some(n) if n.value == NodeValue::Null => Vec::new(),
        Some(n) => match n.as_seq() {
            Some(items) => items.iter().enumerate().collect(),
            None => {
                cx.error(n, path, format!("expected a list of {what}"));
                Vec::new()
            }
        },
    }
}

/// The deepest node along a field path such as `email_configs[0].smarthost`, starting
/// at `node`.
fn locate<'n>(node: &'n Node, field: &str) -> &'n Node {
    let mut cur = node;
    for part in field.split('.').filter(|p| !p.is_empty()) {
        let (key, indices) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            match cur.get(key) {
                Some(n) => cur = n,
                None => return cur,
            }
        }
        for index in indices
            .split(['[', ']'])
            .filter(|s| !s.is_empty())
            .filter_map(|s| s.parse::<usize>().ok())
        {
            match cur.as_seq().and_then(|s| s.get(index)) {
                Some(n) => cur = n,
                None => return cur,
            }
        }
    }
    cur
}

fn validate_inhibit_rule(cx: &mut Context, node: &Node, path: &str, c: &InhibitRuleConfig) {
    for (key, map, regex) in [
        ("source_match", &c.source_match, false),
        ("source_match_re", &c.source_match_re, true),
        ("target_match", &c.target_match, false),
        ("target_match_re", &c.target_match_re, true),
    ] {
        let map_node = node.get(key).unwrap_or(node);
        for (name, value) in map {
            let entry = map_node
                .as_map()
                .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(name)));
            let p = format!("{path}.{key}.{name}");
            if !matchers::valid_label_name(name) {
                let at = entry.map_or(map_node, |(k, _)| k);
                cx.error(at, &p, format!("invalid label name {name:?}"));
            } else if regex && let Err(e) = Matcher::new(name, MatchOp::Regex, value) {
                let at = entry.map_or(map_node, |(_, v)| v);
                cx.error(at, &p, e);
            }
        }
    }
    for (i, name) in c.equal.iter().enumerate() {
        if !matchers::valid_label_name(name) {
            let at = node
                .get("equal")
                .and_then(Node::as_seq)
                .and_then(|s| s.get(i))
                .unwrap_or(node);
            let message = format!("invalid label name {name:?} in equal list");
            cx.error(at, &format!("{path}.equal[{i}]"), message);
        }
    }
}

fn validate_daily_report(
    cx: &mut Context,
    node: &Node,
    path: &str,
    d: &DailyReportConfig,
    receivers: &BTreeSet<String>,
) {
    if !receivers.contains(&d.receiver) {
        let candidates: Vec<&str> = receivers.iter().map(String::as_str).collect();
        let message = match crate::config::suggest(&d.receiver, &candidates) {
            Some(s) => format!("undefined receiver {:?}, did you mean {s:?}?", d.receiver),
            None => format!("undefined receiver {:?}", d.receiver),
        };
        let at = node.get("receiver").unwrap_or(node);
        cx.error(at, &format!("{path}.receiver"), message);
    }
    if parse_time_of_day(&d.at).is_none() {
        let at = node.get("at").unwrap_or(node);
        let message = format!(
            "invalid time of day {:?}: expected HH:MM from 00:00 to 23:59",
            d.at
        );
        cx.error(at, &format!("{path}.at"), message);
    }
    if let Some(loc) = &d.location
        && let Err(e) = Zone::load(loc)
    {
        let at = node.get("location").unwrap_or(node);
        cx.error(at, &format!("{path}.location"), e);
    }
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

    fn load(text: &str) -> Result<AlertingConfig, Vec<String>> {
        let node = yaml::parse("f.yml", text).unwrap();
        let mut cx = yaml::Context::new("f.yml");
        let alerting = node.get("alerting").unwrap();
        parse(&mut cx, alerting, "alerting").ok_or_else(|| {
            cx.diagnostics.sort_by_key(|d| (d.line, d.column));
            cx.diagnostics.iter().map(ToString::to_string).collect()
        })
    }

    #[test]
    fn parses_a_full_section() {
        let c = load(
            r#"
alerting:
  route:
    receiver: digest
    routes: [{matchers: [severity=critical], receiver: critical, mute_time_intervals: [nights]}]
  receivers: [{name: digest}, {name: critical}]
  inhibit_rules:
    - source_match: {alertname: TunnelDown}
      target_matchers: ['alertname="SiteDown"']
      equal: [env]
  mute_time_intervals:
    - name: nights
      time_intervals: [{times: [{start_time: '00:00', end_time: '06:00'}]}]
  time_intervals:
    - name: office
      time_intervals: [{weekdays: ['monday:friday']}]
  daily_report: {receiver: digest}
"#,
        )
        .unwrap();
        assert_eq!(c.receivers.len(), 2);
        assert_eq!(
            c.receiver("critical").map(|r| r.name.as_str()),
            Some("critical")
        );
        assert_eq!(
            c.time_intervals.keys().collect::<Vec<_>>(),
            ["nights", "office"]
        );
        let d = c.daily_report.as_ref().unwrap();
        assert_eq!((d.at.as_str(), d.location.as_deref()), ("08:00", None));
        let node = &c.route.root.routes[0];
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert!(c.time_muted(node, t("2024-06-03T03:00:00Z")));
        assert!(!c.time_muted(node, t("2024-06-03T07:00:00Z")));
        assert!(!c.time_muted(&c.route.root, t("2024-06-03T03:00:00Z")));

        let down = ls(&[("alertname", "TunnelDown"), ("env", "prod")]);
        let other = ls(&[("alertname", "TunnelDown"), ("env", "dev")]);
        let site = ls(&[("alertname", "SiteDown"), ("env", "prod")]);
        assert_eq!(c.inhibited_by(&site, &[&other, &down]), Some(&down));
        assert_eq!(c.inhibited_by(&site, &[&other]), None);
        assert_eq!(c.inhibited_by(&down, &[&down]), None);
    }

    #[test]
    fn inhibition_semantics() {
        let rule = InhibitRule::new(&InhibitRuleConfig {
            source_matchers: vec![MatcherLine(
                matchers::parse_list("severity=critical").unwrap(),
            )],
            target_matchers: vec![MatcherLine(
                matchers::parse_list("severity=~critical|warning").unwrap(),
            )],
            equal: vec!["check".into()],
            ..Default::default()
        });
        let crit = ls(&[("severity", "critical"), ("check", "db")]);
        let crit2 = ls(&[("severity", "critical"), ("check", "db"), ("x", "1")]);
        let warn = ls(&[("severity", "warning"), ("check", "db")]);
        let warn_other = ls(&[("severity", "warning"), ("check", "web")]);
        assert!(rule.inhibits(&crit, &warn));
        assert!(!rule.inhibits(&crit, &warn_other));
        // Alerts on both sides never inhibit one another (nor themselves).
        assert!(!rule.inhibits(&crit, &crit2));
        assert!(!rule.inhibits(&crit, &crit));
        assert!(!rule.inhibits(&warn, &warn));
        // Missing on both sides counts as equal.
        let r2 = InhibitRule {
            equal: vec!["zone".into()],
            ..rule.clone()
        };
        assert!(r2.inhibits(&crit, &warn));
        assert_eq!(rule.inhibited_by(&warn, [&warn_other, &crit]), Some(&crit));
    }

    #[test]
    fn daily_report_next_run() {
        let d = DailyReportConfig {
            receiver: "x".into(),
            at: "08:00".into(),
            location: Some("Europe/Paris".into()),
        };
        let z = d.zone();
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(
            d.next_run(t("2024-01-15T06:00:00Z"), &z),
            t("2024-01-15T07:00:00Z")
        );
        assert_eq!(
            d.next_run(t("2024-01-15T07:00:00Z"), &z),
            t("2024-01-16T07:00:00Z")
        );
        assert_eq!(
            d.next_run(t("2024-07-15T23:30:00Z"), &z),
            t("2024-07-16T06:00:00Z")
        );
        // The night of the spring change.
        assert_eq!(
            d.next_run(t("2024-03-30T07:00:00Z"), &z),
            t("2024-03-31T06:00:00Z")
        );
        let utc = DailyReportConfig {
            location: Some("UTC".into()),
            at: "23:59".into(),
            ..d
        };
        assert_eq!(
            utc.next_run(t("2024-12-31T23:59:00Z"), &utc.zone()),
            t("2025-01-01T23:59:00Z")
        );
    }

    #[test]
    fn reports_every_problem_with_its_position() {
        let text = r#"
alerting:
  globl: {}
  route:
    receiver: digest
    routes:
      - {receiver: critcal, matchers: ['a=~(']}
  receivers:
    - name: digest
    - name: critical
    - name: digest
    - {}
    - email_configs: []
      name: ''
  time_intervals:
    - name: nights
      time_intervals: [{weekdays: [funday]}]
    - name: nights
    - time_intervals: []
  inhibit_rules:
    - source_match: {a-b: x}
      target_match_re: {c: '('}
      source_matchers: ['a==~']
      equal: [ok, not-ok]
  daily_report: {receiver: digst, at: '24:00', location: Mars/Base}
  heartbeats: {}
"#;
        let got = load(text).unwrap_err();
        let expected = [
            r#"f.yml:3:3: alerting.globl: unknown field "globl", did you mean "global"?"#,
            r#"f.yml:7:20: alerting.route.routes[0].receiver: undefined receiver "critcal" used in route, did you mean "critical"?"#,
            r#"f.yml:7:40: alerting.route.routes[0].matchers[0]: "a=~(": invalid regular expression "(""#,
            r#"f.yml:11:13: alerting.receivers[2].name: receiver name "digest" is not unique (first defined at line 9)"#,
            r#"f.yml:12:7: alerting.receivers[3]: missing field "name""#,
            r#"f.yml:14:13: alerting.receivers[4]: missing name in receiver"#,
            r#"f.yml:17:36: alerting.time_intervals[0].time_intervals[0].weekdays[0]: funday is not a valid weekday"#,
            r#"f.yml:18:13: alerting.time_intervals[1].name: time interval "nights" is not unique (first defined at line 16)"#,
            r#"f.yml:19:7: alerting.time_intervals[2]: missing name in time interval"#,
            r#"f.yml:21:22: alerting.inhibit_rules[0].source_match.a-b: invalid label name "a-b""#,
            r#"f.yml:22:28: alerting.inhibit_rules[0].target_match_re.c: invalid regular expression "(""#,
            r#"f.yml:24:19: alerting.inhibit_rules[0].equal[1]: invalid label name "not-ok" in equal list"#,
            r#"f.yml:25:28: alerting.daily_report.receiver: undefined receiver "digst", did you mean "digest"?"#,
            r#"f.yml:25:39: alerting.daily_report.at: invalid time of day "24:00": expected HH:MM from 00:00 to 23:59"#,
            r#"f.yml:25:58: alerting.daily_report.location: unknown time zone Mars/Base"#,
            r#"f.yml:26:15: alerting.heartbeats: expected a list of heartbeats"#,
        ];
        for (i, e) in expected.iter().enumerate() {
            let g = got.get(i).map_or("", String::as_str);
            assert!(g.starts_with(e), "#{i}\n got {g}\nwant {e}\nall: {got:#?}");
        }
        assert_eq!(got.len(), expected.len(), "{got:#?}");
    }

    #[test]
    fn root_route_rules_and_missing_route() {
        let got = load("alerting:\n  receivers: [{name: a}]\n").unwrap_err();
        assert_eq!(
            got,
            ["f.yml:2:3: alerting: no route provided: add `route:` with a default receiver"]
        );
        let got = load("alerting:\n").unwrap_err();
        assert_eq!(
            got,
            [
                "f.yml:1:1: alerting: expected a mapping with route, receivers and the other alerting settings"
            ]
        );
    }

    #[test]
    fn build_errors_point_at_the_field() {
        let text =
            "receivers:\n  - name: a\n    email_configs:\n      - to: x\n      - smarthost: y\n";
        let node = yaml::parse("f.yml", text).unwrap();
        let item = &node.get("receivers").unwrap().as_seq().unwrap()[0];
        let mut cx = yaml::Context::new("f.yml");
        let errors = vec![
            receivers::BuildError::new("email_configs[1].smarthost", "bad smarthost"),
            receivers::BuildError::new("email_configs[0].from", "no sender"),
            receivers::BuildError::new("", "no integration"),
        ];
        report_build_errors(&mut cx, item, "alerting.receivers[0]", errors);
        let got: Vec<String> = cx.diagnostics.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "f.yml:5:20: alerting.receivers[0].email_configs[1].smarthost: bad smarthost",
                "f.yml:4:9: alerting.receivers[0].email_configs[0].from: no sender",
                "f.yml:2:5: alerting.receivers[0]: no integration",
            ]
        );
    }

    #[test]
    fn locate_follows_field_paths() {
        let node = yaml::parse(
            "f.yml",
            "name: a\nemail_configs:\n  - to: x\n  - smarthost: y\n",
        )
        .unwrap();
        assert_eq!(locate(&node, "email_configs[1].smarthost").mark.line, 4);
        assert_eq!(locate(&node, "email_configs[1].tls.ca").mark.line, 4);
        assert_eq!(locate(&node, "email_configs[5]").mark.line, 3);
        assert_eq!(locate(&node, "").mark.line, 1);
    }
}
