//! Alerting rules: the alert lifecycle of Prometheus 2.42 (`rules/alerting.go`).
//!
//! Each evaluation turns the expression's result into alerts, one per label set (the
//! result's labels without `__name__`, plus the rule's templated labels and
//! `alertname`):
//!
//! - a new label set is **pending**, `activeAt` = now; with `for: 0` it fires at once;
//! - a pending alert whose `for` has elapsed since `activeAt` is **firing** (`firedAt`);
//! - a label set that is no longer returned: a pending alert is dropped; a firing one is
//!   **resolved** (`resolvedAt`), unless `keep_firing_for` keeps it firing that long after
//!   it was last returned (`keepFiringSince`);
//! - resolved alerts stay listed 15 minutes, so that a notifier can send "resolved".
//!
//! Labels and annotations are re-templated at every evaluation with `$labels` and
//! `$value`. Each evaluation also yields the `ALERTS` and `ALERTS_FOR_STATE` samples
//! Prometheus writes. State can be exported and restored (see `persist.rs`).

use std::collections::{BTreeMap, HashMap};

use crate::model::Labels;
use crate::rules::files::AlertingSpec;
use crate::rules::promql::{EvalError, Sample};
use crate::rules::template::TemplateData;

/// How long a resolved alert stays listed (Prometheus's `resolvedRetention`).
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// Metric name of the alert series.
pub const ALERTS_METRIC: &str = "ALERTS";
/// Metric name of the `for`-state series (value: `activeAt` in seconds).
pub const ALERTS_FOR_STATE_METRIC: &str = "ALERTS_FOR_STATE";

/// Where an alert is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertState {
    /// Resolved (kept for a while so that "resolved" can be sent).
    Inactive,
    /// Active, waiting for `for` to elapse.
    Pending,
    /// Firing.
    Firing,
}

impl AlertState {
    /// `inactive`, `pending` or `firing`, as in the `alertstate` label.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }

    /// The inverse of [`AlertState::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "inactive" => Some(AlertState::Inactive),
            "pending" => Some(AlertState::Pending),
            "firing" => Some(AlertState::Firing),
            _ => None,
        }
    }
}

/// One alert of one alerting rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Name of the rule group.
    pub group: String,
    /// Index of the rule in its group.
    pub rule_index: usize,
    /// Labels, `alertname` included.
    pub labels: Labels,
    /// Templated annotations.
    pub annotations: Labels,
    /// Lifecycle state.
    pub state: AlertState,
    /// When the alert became pending (ms since the epoch).
    pub active_at_ms: i64,
    /// When it started firing.
    pub fired_at_ms: Option<i64>,
    /// When it resolved.
    pub resolved_at_ms: Option<i64>,
    /// Since when `keep_firing_for` holds it firing after its expression stopped
    /// returning it.
    pub keep_firing_since_ms: Option<i64>,
    /// The last value of the expression for this label set.
    pub value: f64,
}

/// The state of one alerting rule.
#[derive(Debug, Clone)]
pub struct AlertingRule {
    spec: AlertingSpec,
    group: String,
    index: usize,
    external_labels: BTreeMap<String, String>,
    external_url: String,
    active: HashMap<Labels, Alert>,
}

impl AlertingRule {
    /// A rule with no alert yet.
    pub fn new(
        spec: AlertingSpec,
        group: &str,
        index: usize,
        external_labels: BTreeMap<String, String>,
        external_url: String,
    ) -> Self {
        AlertingRule {
            spec,
            group: group.to_string(),
            index,
            external_labels,
            external_url,
            active: HashMap::new(),
        }
    }

    /// The alert name.
    pub fn name(&self) -> &str {
        &self.spec.alert
    }

    /// The rule's definition.
    pub fn spec(&self) -> &AlertingSpec {
        &self.spec
    }

    /// Every alert held: pending, firing and recently resolved ones, sorted by labels.
    pub fn alerts(&self) -> Vec<Alert> {
        let mut v: Vec<Alert> = self.active.values().cloned().collect();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        v
    }

    /// Pending and firing alerts (Prometheus's `ActiveAlerts`).
    pub fn active_alerts(&self) -> Vec<Alert> {
        let mut v = self.alerts();
        v.retain(|a| a.state != AlertState::Inactive);
        v
    }

    /// Replaces the held alerts (after a restart or a reload); alerts of other rules are
    /// ignored by the caller.
    pub fn restore(&mut self, alerts: impl IntoIterator<Item = Alert>) {
        for mut a in alerts {
            a.group = self.group.clone();
            a.rule_index = self.index;
            self.active.insert(a.labels.clone(), a);
        }
    }

    /// Moves the rule to another position (a reload that reordered rules).
    pub fn set_position(&mut self, group: &str, index: usize) {
        self.group = group.to_string();
        self.index = index;
        for a in self.active.values_mut() {
            a.group = group.to_string();
            a.rule_index = index;
        }
    }

    /// Applies one evaluation at `ts_ms` whose expression returned `result` (a scalar is
    /// one sample with no label). Returns the `ALERTS` and `ALERTS_FOR_STATE` samples
    /// (labels with `__name__`).
    ///
    /// # Errors
    /// Two results with the same label set after templating, or more than `limit` alerts
    /// (then every alert is dropped, as Prometheus does).
    pub fn eval(
        &mut self,
        ts_ms: i64,
        result: &[Sample],
        limit: usize,
    ) -> Result<Vec<(Labels, f64)>, EvalError> {
        let mut fresh: HashMap<Labels, Alert> = HashMap::with_capacity(result.len());
        for s in result {
            let data = TemplateData {
                labels: s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                external_labels: self.external_labels.clone(),
                external_url: self.external_url.clone(),
                value: s.value,
            };
            let mut labels = s.labels.clone();
            labels.remove("__name__");
            for (name, t) in &self.spec.labels {
                let v = t.expand_or_error(&data);
                if v.is_empty() {
                    labels.remove(name);
                } else {
                    labels.set(name.clone(), v);
                }
            }
            labels.set("alertname", self.spec.alert.clone());
            let mut annotations = Labels::new();
            for (name, t) in &self.spec.annotations {
                annotations.set(name.clone(), t.expand_or_error(&data));
            }
            if fresh.contains_key(&labels) {
                return Err(EvalError(
                    "vector contains metrics with the same labelset after applying alert labels"
                        .to_string(),
                ));
            }
            fresh.insert(
                labels.clone(),
                Alert {
                    group: self.group.clone(),
                    rule_index: self.index,
                    labels,
                    annotations,
                    state: AlertState::Pending,
                    active_at_ms: ts_ms,
                    fired_at_ms: None,
                    resolved_at_ms: None,
                    keep_firing_since_ms: None,
                    value: s.value,
                },
            );
        }
        let returned: std::collections::HashSet<Labels> = fresh.keys().cloned().collect();
        for (key, a) in fresh {
            match self.active.get_mut(&key) {
                Some(old) if old.state != AlertState::Inactive => {
                    old.value = a.value;
                    old.annotations = a.annotations;
                }
                _ => {
                    self.active.insert(key, a);
                }
            }
        }

        let hold_ms = duration_ms(self.spec.hold);
        let keep_ms = duration_ms(self.spec.keep_firing_for);
        let mut out = Vec::new();
        let mut active_count = 0usize;
        let mut drop = Vec::new();
        let mut keys: Vec<Labels> = self.active.keys().cloned().collect();
        keys.sort();
        for key in keys {
            let Some(a) = self.active.get_mut(&key) else {
                continue;
            };
            if !returned.contains(&key) {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && keep_ms > 0 {
                    let since = *a.keep_firing_since_ms.get_or_insert(ts_ms);
                    keep_firing = ts_ms - since < keep_ms;
                }
                if a.state == AlertState::Pending
                    || a.resolved_at_ms
                        .is_some_and(|r| ts_ms - r > RESOLVED_RETENTION_MS)
                {
                    drop.push(key.clone());
                }
                if a.state != AlertState::Inactive && !keep_firing {
                    a.state = AlertState::Inactive;
                    a.resolved_at_ms = Some(ts_ms);
                }
                if !keep_firing {
                    continue;
                }
            } else {
                a.keep_firing_since_ms = None;
            }
            active_count += 1;
            if a.state == AlertState::Pending && ts_ms - a.active_at_ms >= hold_ms {
                a.state = AlertState::Firing;
                a.fired_at_ms = Some(ts_ms);
            }
            // Prometheus starts these series from the rule's labels as written, then sets
            // the alert's: a label whose template expanded to "" (so the alert has none)
            // keeps its template text here. Kept as is for parity.
            let mut series_labels = Labels::new();
            for (name, t) in &self.spec.labels {
                series_labels.set(name.clone(), t.text());
            }
            for (k, v) in a.labels.iter() {
                series_labels.set(k, v);
            }
            let mut alert_labels = series_labels.clone();
            alert_labels.set("__name__", ALERTS_METRIC);
            alert_labels.set("alertstate", a.state.as_str());
            out.push((alert_labels, 1.0));
            let mut for_labels = series_labels;
            for_labels.set("__name__", ALERTS_FOR_STATE_METRIC);
            // Whole seconds, as Prometheus writes it (time.Unix()).
            out.push((for_labels, a.active_at_ms.div_euclid(1000) as f64));
        }
        for key in drop {
            self.active.remove(&key);
        }
        if limit > 0 && active_count > limit {
            self.active.clear();
            return Err(EvalError(format!(
                "exceeded limit of {limit} with {active_count} alerts"
            )));
        }
        Ok(out)
    }
}

fn duration_ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::rules::promql;
    use crate::rules::template::Template;

    fn rule(hold_s: u64, keep_s: u64) -> AlertingRule {
        let spec = AlertingSpec {
            alert: "Down".into(),
            expr: Arc::new(promql::parse("up == 0").expect("parse")),
            hold: Duration::from_secs(hold_s),
            keep_firing_for: Duration::from_secs(keep_s),
            labels: vec![("severity".into(), Template::parse("t", "page").expect("t"))],
            annotations: vec![(
                "summary".into(),
                Template::parse("t", "{{ $labels.job }} is {{ $value }}").expect("t"),
            )],
        };
        AlertingRule::new(spec, "g", 0, BTreeMap::new(), String::new())
    }

    fn down(v: f64) -> Vec<Sample> {
        vec![Sample {
            labels: Labels::from_pairs([("__name__", "up"), ("job", "api")]),
            value: v,
        }]
    }

    const MIN: i64 = 60_000;

    #[test]
    fn pending_then_firing_then_resolved_then_dropped() {
        let mut r = rule(120, 0);
        let out = r.eval(0, &down(0.0), 0).expect("eval");
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0.get("alertstate"), Some("pending"));
        assert_eq!(out[0].0.get("severity"), Some("page"));
        assert_eq!(out[1].0.get("__name__"), Some("ALERTS_FOR_STATE"));
        let a = &r.alerts()[0];
        assert_eq!((a.state, a.active_at_ms), (AlertState::Pending, 0));
        assert_eq!(a.annotations.get("summary"), Some("api is 0"));
        r.eval(MIN, &down(0.0), 0).expect("eval");
        assert_eq!(r.alerts()[0].state, AlertState::Pending);
        let out = r.eval(2 * MIN, &down(0.0), 0).expect("eval");
        assert_eq!(out[0].0.get("alertstate"), Some("firing"));
        assert_eq!(r.alerts()[0].fired_at_ms, Some(2 * MIN));
        let out = r.eval(3 * MIN, &[], 0).expect("eval");
        assert!(out.is_empty());
        let a = &r.alerts()[0];
        assert_eq!(
            (a.state, a.resolved_at_ms),
            (AlertState::Inactive, Some(3 * MIN))
        );
        assert!(r.active_alerts().is_empty());
        r.eval(18 * MIN, &[], 0).expect("eval");
        assert_eq!(r.alerts().len(), 1, "kept 15 minutes");
        r.eval(18 * MIN + 1, &[], 0).expect("eval");
        assert!(r.alerts().is_empty());
    }

    #[test]
    fn a_pending_alert_that_stops_is_dropped_and_restarts_its_for() {
        let mut r = rule(120, 0);
        r.eval(0, &down(0.0), 0).expect("eval");
        r.eval(MIN, &[], 0).expect("eval");
        assert!(r.alerts().is_empty());
        r.eval(2 * MIN, &down(0.0), 0).expect("eval");
        assert_eq!(r.alerts()[0].active_at_ms, 2 * MIN);
    }

    #[test]
    fn keep_firing_for_holds_a_firing_alert() {
        let mut r = rule(0, 120);
        r.eval(0, &down(0.0), 0).expect("eval");
        assert_eq!(r.alerts()[0].state, AlertState::Firing);
        r.eval(MIN, &[], 0).expect("eval");
        let a = &r.alerts()[0];
        assert_eq!(
            (a.state, a.keep_firing_since_ms),
            (AlertState::Firing, Some(MIN))
        );
        r.eval(2 * MIN, &[], 0).expect("eval");
        assert_eq!(r.alerts()[0].state, AlertState::Firing);
        // Returned again: the hold resets.
        r.eval(3 * MIN, &down(0.0), 0).expect("eval");
        assert_eq!(r.alerts()[0].keep_firing_since_ms, None);
        r.eval(4 * MIN, &[], 0).expect("eval");
        r.eval(6 * MIN, &[], 0).expect("eval");
        assert_eq!(r.alerts()[0].state, AlertState::Inactive);
        assert_eq!(r.alerts()[0].resolved_at_ms, Some(6 * MIN));
    }

    #[test]
    fn duplicates_and_limits_fail() {
        let mut r = rule(0, 0);
        let two = vec![
            Sample {
                labels: Labels::from_pairs([("__name__", "a"), ("job", "x")]),
                value: 1.0,
            },
            Sample {
                labels: Labels::from_pairs([("__name__", "b"), ("job", "x")]),
                value: 1.0,
            },
        ];
        let e = r.eval(0, &two, 0).expect_err("duplicate");
        assert!(e.0.contains("same labelset"), "{e}");
        let two = vec![
            Sample {
                labels: Labels::from_pairs([("job", "x")]),
                value: 1.0,
            },
            Sample {
                labels: Labels::from_pairs([("job", "y")]),
                value: 1.0,
            },
        ];
        let e = r.eval(0, &two, 1).expect_err("limit");
        assert_eq!(e.0, "exceeded limit of 1 with 2 alerts");
        assert!(r.alerts().is_empty());
    }
}
