//! What the PromQL evaluator reads: series selected by label matchers, with their samples
//! in a time window.
//!
//! [`Storage`] is implemented by the sample store ([`crate::store::Store`]), which the rule
//! evaluator reads in production, and by [`MemStorage`], which the PromQL test scripts and
//! promtool-style rule unit tests load.

use std::collections::BTreeMap;

use promql_parser::label::{METRIC_NAME, MatchOp, Matcher, Matchers};

use crate::model::Labels;
use crate::store::Store;

/// One series: its labels (including `__name__`) and samples, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Labels, including `__name__`.
    pub labels: Labels,
    /// `(timestamp ms, value)`, oldest first; staleness markers included.
    pub samples: Vec<(i64, f64)>,
}

/// A source of series for the evaluator.
pub trait Storage: Send + Sync {
    /// Series matching every matcher (on labels incl. `__name__`), with their samples in
    /// `[start_ms, end_ms]` inclusive, oldest first; staleness markers included. A series
    /// with no sample in the window may be left out.
    fn select(&self, matchers: &Matchers, start_ms: i64, end_ms: i64) -> Vec<Series>;
}

/// True when `value` (the empty string for a missing label) passes `m`.
pub fn matcher_matches(m: &Matcher, value: &str) -> bool {
    match &m.op {
        MatchOp::Equal => m.value == value,
        MatchOp::NotEqual => m.value != value,
        MatchOp::Re(re) => re.is_match(value),
        MatchOp::NotRe(re) => !re.is_match(value),
    }
}

/// True when `labels` (which carry `__name__`) pass every matcher of `matchers`.
/// Alternatives (`or` inside braces, a Prometheus 3 feature) match when any group matches.
pub fn labels_match(matchers: &Matchers, labels: &Labels) -> bool {
    let one = |group: &[Matcher]| {
        group
            .iter()
            .all(|m| matcher_matches(m, labels.get(&m.name).unwrap_or("")))
    };
    if matchers.or_matchers.is_empty() {
        one(&matchers.matchers)
    } else {
        matchers.or_matchers.iter().any(|g| one(g))
    }
}

fn key_matches(matchers: &Matchers, name: &str, labels: &Labels) -> bool {
    let one = |group: &[Matcher]| {
        group.iter().all(|m| {
            let v = if m.name == METRIC_NAME {
                name
            } else {
                labels.get(&m.name).unwrap_or("")
            };
            matcher_matches(m, v)
        })
    };
    if matchers.or_matchers.is_empty() {
        one(&matchers.matchers)
    } else {
        matchers.or_matchers.iter().any(|g| one(g))
    }
}

impl Storage for Store {
    fn select(&self, matchers: &Matchers, start_ms: i64, end_ms: i64) -> Vec<Series> {
        // An equality matcher on the name narrows the scan to that metric's series.
        let name = matchers
            .matchers
            .iter()
            .find(|m| m.name == METRIC_NAME && matches!(m.op, MatchOp::Equal))
            .filter(|_| matchers.or_matchers.is_empty())
            .map(|m| m.value.as_str());
        let mut out: Vec<Series> = self
            .select_series(name, |n, l| key_matches(matchers, n, l), start_ms, end_ms)
            .into_iter()
            .map(|(key, samples)| {
                let mut labels = key.labels;
                labels.set(METRIC_NAME, &*key.name);
                Series { labels, samples }
            })
            .collect();
        // Prometheus hands series out sorted by their label sets; results keep that order.
        out.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
        out
    }
}

/// An in-memory storage: the PromQL test scripts' `load` and the rule unit tests'
/// `input_series` write here.
#[derive(Debug, Default, Clone)]
pub struct MemStorage {
    series: BTreeMap<Labels, Vec<(i64, f64)>>,
}

impl MemStorage {
    /// An empty storage.
    pub fn new() -> Self {
        MemStorage::default()
    }

    /// Adds samples to the series `labels` (which carry `__name__`). Samples are kept in
    /// time order; a sample at a timestamp the series already has is dropped (the first
    /// write wins, as in Prometheus's TSDB). Labels with an empty value are ignored.
    pub fn add(&mut self, labels: Labels, samples: impl IntoIterator<Item = (i64, f64)>) {
        let labels = if labels.iter().any(|(_, v)| v.is_empty()) {
            Labels::from_pairs(labels.iter().filter(|(_, v)| !v.is_empty()))
        } else {
            labels
        };
        let series = self.series.entry(labels).or_default();
        for (t, v) in samples {
            match series.binary_search_by(|(st, _)| st.cmp(&t)) {
                Ok(_) => {}
                Err(i) => series.insert(i, (t, v)),
            }
        }
    }

    /// Removes every series.
    pub fn clear(&mut self) {
        self.series.clear();
    }

    /// Number of series held.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// True when no series is held.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

impl Storage for MemStorage {
    fn select(&self, matchers: &Matchers, start_ms: i64, end_ms: i64) -> Vec<Series> {
        self.series
            .iter()
            .filter(|(labels, _)| labels_match(matchers, labels))
            .filter_map(|(labels, samples)| {
                let from = samples.partition_point(|(t, _)| *t < start_ms);
                let to = samples.partition_point(|(t, _)| *t <= end_ms);
                (from < to).then(|| Series {
                    labels: labels.clone(),
                    samples: samples[from..to].to_vec(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{MetricDesc, Sample};

    fn eq(name: &str, value: &str) -> Matcher {
        Matcher::new(MatchOp::Equal, name, value)
    }

    #[test]
    fn mem_storage_selects_by_matchers_and_window() {
        let mut s = MemStorage::new();
        s.add(
            Labels::from_pairs([("__name__", "up"), ("job", "a")]),
            [(0, 1.0), (10, 2.0), (20, 3.0)],
        );
        s.add(
            Labels::from_pairs([("__name__", "up"), ("job", "b")]),
            [(0, 5.0)],
        );
        let m = Matchers::new(vec![eq("__name__", "up"), eq("job", "a")]);
        let got = s.select(&m, 5, 20);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].samples, vec![(10, 2.0), (20, 3.0)]);
        // A missing label matches the empty string.
        let m = Matchers::new(vec![eq("__name__", "up"), eq("zone", "")]);
        assert_eq!(s.select(&m, 0, 100).len(), 2);
        s.clear();
        assert!(s.is_empty());
    }

    #[test]
    fn store_adapter_adds_the_metric_name() {
        let store = Store::new(60_000);
        let desc = Arc::new(MetricDesc::gauge("harena_probe_success", "help"));
        store.publish(
            "a",
            1_000,
            vec![Sample {
                desc: Arc::clone(&desc),
                labels: Labels::from_pairs([("check", "a")]),
                value: 1.0,
            }],
        );
        store.publish("a", 2_000, vec![]);
        let m = Matchers::new(vec![eq("__name__", "harena_probe_success")]);
        let got = store.select(&m, 0, 10_000);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].labels.get("__name__"), Some("harena_probe_success"));
        assert_eq!(got[0].samples.len(), 2);
        assert!(crate::store::is_stale_marker(got[0].samples[1].1));
        let m = Matchers::new(vec![eq("__name__", "other")]);
        assert!(store.select(&m, 0, 10_000).is_empty());
    }
}
