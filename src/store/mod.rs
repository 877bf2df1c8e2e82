//! The sample store: the current value of every series and a bounded history.
//!
//! Checks publish all their samples of one run at once under their owner name; a series
//! the owner no longer publishes gets a staleness marker and leaves `/metrics` at once.
//! History is kept for `retention` (the rule engine's longest range plus lookback) and
//! no longer. `/metrics` is rendered from here through a `prometheus` [`Collector`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, RwLock};

use prometheus::core::{Collector, Desc};
use prometheus::proto;

use crate::model::{Labels, MetricDesc, MetricKind, Sample};

/// Prometheus's staleness marker: a NaN with this exact bit pattern.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// True when `v` is a staleness marker (not any NaN).
pub fn is_stale_marker(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Identity of a series: metric name plus labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// Metric name.
    pub name: Arc<str>,
    /// Labels without `__name__`.
    pub labels: Labels,
}

#[derive(Debug)]
struct Series {
    desc: Arc<MetricDesc>,
    /// Current value; `None` once the series went stale.
    current: Option<f64>,
    /// `(timestamp ms, value)`, oldest first; staleness markers included.
    history: VecDeque<(i64, f64)>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Series by metric name, then labels: a selector on a name reads only its series.
    series: HashMap<Arc<str>, HashMap<Labels, Series>>,
    owners: HashMap<String, HashSet<SeriesKey>>,
    retention_ms: i64,
}

/// Thread-safe sample store.
#[derive(Debug, Default)]
pub struct Store {
    inner: RwLock<Inner>,
}

/// One series' current value, as `/metrics` and the API read it.
#[derive(Debug, Clone, PartialEq)]
pub struct CurrentSample {
    /// Identity.
    pub key: SeriesKey,
    /// Family description.
    pub desc: Arc<MetricDesc>,
    /// Value.
    pub value: f64,
}

impl Store {
    /// An empty store keeping `retention_ms` of history.
    pub fn new(retention_ms: i64) -> Self {
        Store {
            inner: RwLock::new(Inner {
                retention_ms,
                ..Inner::default()
            }),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind: keep using it.
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes how much history is kept (the next writes prune to it).
    pub fn set_retention_ms(&self, retention_ms: i64) {
        self.write().retention_ms = retention_ms;
    }

    /// Replaces every series of `owner` with `samples`, all at `ts_ms`.
    pub fn publish(&self, owner: &str, ts_ms: i64, samples: Vec<Sample>) {
        let mut inner = self.write();
        let retention = inner.retention_ms;
        let mut new_keys = HashSet::with_capacity(samples.len());
        for s in samples {
            let name: &str = s.desc.name.as_ref();
            let name = match inner.series.get_key_value(name) {
                Some((n, _)) => Arc::clone(n),
                None => Arc::from(name),
            };
            let key = SeriesKey {
                name: Arc::clone(&name),
                labels: s.labels,
            };
            let series = inner
                .series
                .entry(name)
                .or_default()
                .entry(key.labels.clone())
                .or_insert_with(|| Series {
                    desc: Arc::clone(&s.desc),
                    current: None,
                    history: VecDeque::new(),
                });
            series.desc = s.desc;
            series.current = Some(s.value);
            push(&mut series.history, ts_ms, s.value, retention);
            new_keys.insert(key);
        }
        let old = inner.owners.insert(owner.to_string(), new_keys);
        if let Some(old) = old {
            let gone: Vec<SeriesKey> = {
                let new = &inner.owners[owner];
                old.into_iter().filter(|k| !new.contains(k)).collect()
            };
            for key in gone {
                mark_stale(&mut inner, &key, ts_ms);
            }
        }
    }

    /// Marks every series of `owner` stale and forgets the owner (a check removed by a
    /// reload leaves no series behind on `/metrics`).
    pub fn remove_owner(&self, owner: &str, ts_ms: i64) {
        let mut inner = self.write();
        if let Some(keys) = inner.owners.remove(owner) {
            for key in keys {
                mark_stale(&mut inner, &key, ts_ms);
            }
        }
    }

    /// Drops history older than the retention and series with nothing left.
    pub fn gc(&self, now_ms: i64) {
        let mut inner = self.write();
        let cutoff = now_ms - inner.retention_ms;
        inner.series.retain(|_, by_labels| {
            by_labels.retain(|_, s| {
                while s.history.front().is_some_and(|(t, _)| *t < cutoff) {
                    s.history.pop_front();
                }
                s.current.is_some() || !s.history.is_empty()
            });
            !by_labels.is_empty()
        });
    }

    /// Every series that currently has a value, sorted by name then labels.
    pub fn current(&self) -> Vec<CurrentSample> {
        let inner = self.read();
        let mut out: Vec<CurrentSample> = inner
            .series
            .iter()
            .flat_map(|(name, by_labels)| {
                by_labels.iter().filter_map(move |(labels, s)| {
                    s.current.map(|value| CurrentSample {
                        key: SeriesKey {
                            name: Arc::clone(name),
                            labels: labels.clone(),
                        },
                        desc: Arc::clone(&s.desc),
                        value,
                    })
                })
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Current value of one series.
    pub fn get(&self, name: &str, labels: &Labels) -> Option<f64> {
        let inner = self.read();
        inner
            .series
            .get(name)
            .and_then(|m| m.get(labels))
            .and_then(|s| s.current)
    }

    /// Samples of one series with `start_ms <= t <= end_ms` (staleness markers included).
    pub fn range(&self, key: &SeriesKey, start_ms: i64, end_ms: i64) -> Vec<(i64, f64)> {
        let inner = self.read();
        inner
            .series
            .get(&key.name)
            .and_then(|m| m.get(&key.labels))
            .map(|s| {
                s.history
                    .iter()
                    .filter(|(t, _)| *t >= start_ms && *t <= end_ms)
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Number of series held (current or with history).
    pub fn len(&self) -> usize {
        self.read().series.values().map(HashMap::len).sum()
    }

    /// Every series of metric `name` (of every metric when `None`) whose name and labels
    /// pass `keep`, with its samples in `[start_ms, end_ms]` (staleness markers included,
    /// oldest first), read under one lock; series with no sample in the window are left
    /// out. This is the rule evaluator's selector: it clones only the keys that match.
    pub fn select_series(
        &self,
        name: Option<&str>,
        mut keep: impl FnMut(&str, &Labels) -> bool,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<(SeriesKey, Vec<(i64, f64)>)> {
        let inner = self.read();
        let mut out = Vec::new();
        let mut visit = |name: &Arc<str>, by_labels: &HashMap<Labels, Series>| {
            out.reserve(by_labels.len());
            for (labels, s) in by_labels {
                if !keep(name, labels) {
                    continue;
                }
                let (from, to) = window(&s.history, start_ms, end_ms);
                if from < to {
                    let key = SeriesKey {
                        name: Arc::clone(name),
                        labels: labels.clone(),
                    };
                    out.push((key, s.history.range(from..to).copied().collect()));
                }
            }
        };
        match name {
            Some(n) => {
                if let Some((name, by_labels)) = inner.series.get_key_value(n) {
                    visit(name, by_labels);
                }
            }
            None => {
                for (name, by_labels) in &inner.series {
                    visit(name, by_labels);
                }
            }
        }
        out
    }

    /// True when the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Index range of the samples in `[start_ms, end_ms]`. Windows usually sit at the end of
/// the history, so the search gallops from the back: it touches a few cache lines rather
/// than a binary search's worth spread over the whole buffer.
fn window(history: &VecDeque<(i64, f64)>, start_ms: i64, end_ms: i64) -> (usize, usize) {
    // The first index whose time is past `bound` (`> bound` when strict, else `>=`).
    let first_past = |bound: i64, strict: bool| -> usize {
        let past = |i: usize| {
            let t = history[i].0;
            if strict { t > bound } else { t >= bound }
        };
        let mut hi = history.len();
        let mut step = 1;
        while hi > 0 {
            let probe = hi.saturating_sub(step);
            if !past(probe) {
                // The answer lies in (probe, hi].
                let mut lo = probe + 1;
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    if past(mid) {
                        hi = mid;
                    } else {
                        lo = mid + 1;
                    }
                }
                return hi;
            }
            hi = probe;
            step *= 2;
        }
        0
    };
    let to = first_past(end_ms, true);
    let from = first_past(start_ms, false).min(to);
    (from, to)
}

fn push(history: &mut VecDeque<(i64, f64)>, ts_ms: i64, value: f64, retention_ms: i64) {
    if history.back().is_some_and(|(t, _)| *t > ts_ms) {
        // Out-of-order write (clock stepped back): keep the history ordered.
        return;
    }
    if let Some(last) = history.back_mut()
        && last.0 == ts_ms
    {
        last.1 = value;
    } else {
        history.push_back((ts_ms, value));
    }
    let cutoff = ts_ms - retention_ms;
    while history.front().is_some_and(|(t, _)| *t < cutoff) {
        history.pop_front();
    }
}

fn mark_stale(inner: &mut Inner, key: &SeriesKey, ts_ms: i64) {
    let retention = inner.retention_ms;
    let Some(by_labels) = inner.series.get_mut(&key.name) else {
        return;
    };
    if let Some(s) = by_labels.get_mut(&key.labels) {
        if s.current.take().is_some() {
            push(
                &mut s.history,
                ts_ms,
                f64::from_bits(STALE_NAN_BITS),
                retention,
            );
        }
        if retention <= 0 {
            by_labels.remove(&key.labels);
            if by_labels.is_empty() {
                inner.series.remove(&key.name);
            }
        }
    }
}

/// Renders the store's current values as `prometheus` metric families.
#[derive(Debug, Clone)]
pub struct StoreCollector(pub Arc<Store>);

impl Collector for StoreCollector {
    fn desc(&self) -> Vec<&Desc> {
        Vec::new()
    }

    fn collect(&self) -> Vec<proto::MetricFamily> {
        families(&self.0.current())
    }
}

/// Groups current samples into metric families (input sorted by name).
pub fn families(samples: &[CurrentSample]) -> Vec<proto::MetricFamily> {
    let mut out: Vec<proto::MetricFamily> = Vec::new();
    let mut current_name: Option<&str> = None;
    for s in samples {
        if current_name != Some(&*s.key.name) {
            let mut mf = proto::MetricFamily::default();
            mf.set_name(s.key.name.to_string());
            mf.set_help(s.desc.help.to_string());
            mf.set_field_type(match s.desc.kind {
                MetricKind::Gauge => proto::MetricType::GAUGE,
                MetricKind::Counter => proto::MetricType::COUNTER,
            });
            out.push(mf);
            current_name = Some(&s.key.name);
        }
        let mut m = proto::Metric::default();
        let labels: Vec<proto::LabelPair> = s
            .key
            .labels
            .iter()
            .map(|(k, v)| {
                let mut lp = proto::LabelPair::default();
                lp.set_name(k.to_string());
                lp.set_value(v.to_string());
                lp
            })
            .collect();
        m.set_label(labels);
        match s.desc.kind {
            MetricKind::Gauge => {
                let mut g = proto::Gauge::default();
                g.set_value(s.value);
                m.set_gauge(g);
            }
            MetricKind::Counter => {
                let mut c = proto::Counter::default();
                c.set_value(s.value);
                m.set_counter(c);
            }
        }
        if let Some(mf) = out.last_mut() {
            mf.mut_metric().push(m);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &'static str, check: &str, v: f64) -> Sample {
        Sample {
            desc: Arc::new(MetricDesc::gauge(name, "help")),
            labels: Labels::from_pairs([("check", check)]),
            value: v,
        }
    }

    #[test]
    fn publish_replaces_the_owners_series_and_marks_gone_ones_stale() {
        let store = Store::new(60_000);
        store.publish(
            "a",
            1_000,
            vec![sample("m_one", "a", 1.0), sample("m_two", "a", 2.0)],
        );
        store.publish("b", 1_000, vec![sample("m_one", "b", 5.0)]);
        assert_eq!(store.current().len(), 3);
        store.publish("a", 2_000, vec![sample("m_one", "a", 3.0)]);
        let cur = store.current();
        assert_eq!(cur.len(), 2);
        let key = SeriesKey {
            name: Arc::from("m_two"),
            labels: Labels::from_pairs([("check", "a")]),
        };
        let hist = store.range(&key, 0, 10_000);
        assert_eq!(hist.len(), 2);
        assert!(is_stale_marker(hist[1].1));
        store.remove_owner("b", 3_000);
        assert_eq!(store.current().len(), 1);
    }

    #[test]
    fn history_is_bounded_by_retention() {
        let store = Store::new(10_000);
        for t in 0..100 {
            store.publish("a", t * 1_000, vec![sample("m", "a", t as f64)]);
        }
        let key = SeriesKey {
            name: Arc::from("m"),
            labels: Labels::from_pairs([("check", "a")]),
        };
        let h = store.range(&key, 0, i64::MAX);
        assert_eq!(h.first().map(|x| x.0), Some(89_000));
        assert_eq!(h.len(), 11);
        store.remove_owner("a", 100_000);
        store.gc(200_000);
        assert!(store.is_empty());
    }

    #[test]
    fn select_series_reads_one_metric_and_a_closed_window() {
        let store = Store::new(1_000_000);
        for t in 0..50 {
            store.publish(
                "a",
                t * 1_000,
                vec![sample("m_one", "a", t as f64), sample("m_two", "a", 0.0)],
            );
        }
        let got = store.select_series(Some("m_one"), |_, _| true, 10_000, 12_000);
        assert_eq!(got.len(), 1);
        assert_eq!(&*got[0].0.name, "m_one");
        assert_eq!(
            got[0].1,
            vec![(10_000, 10.0), (11_000, 11.0), (12_000, 12.0)]
        );
        // Every window position, against a plain filter.
        let all = store.range(&got[0].0, 0, i64::MAX);
        for start in -2_000..52_000i64 {
            if start % 500 != 0 {
                continue;
            }
            for len in [0i64, 500, 1_000, 7_000, 60_000] {
                let want: Vec<(i64, f64)> = all
                    .iter()
                    .filter(|(t, _)| *t >= start && *t <= start + len)
                    .copied()
                    .collect();
                let got = store.select_series(Some("m_one"), |_, _| true, start, start + len);
                assert_eq!(got.first().map(|g| g.1.clone()).unwrap_or_default(), want);
            }
        }
        assert_eq!(store.select_series(None, |_, _| true, 0, 100_000).len(), 2);
        assert!(
            store
                .select_series(Some("other"), |_, _| true, 0, 100_000)
                .is_empty()
        );
        let none = store.select_series(None, |n, _| n == "m_two", 100_000, 200_000);
        assert!(none.is_empty());
    }

    #[test]
    fn families_group_by_name() {
        let store = Store::new(0);
        store.publish(
            "a",
            1,
            vec![sample("m_a", "x", 1.0), sample("m_b", "x", 1.0)],
        );
        store.publish("b", 1, vec![sample("m_a", "y", 1.0)]);
        let f = families(&store.current());
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].get_metric().len(), 2);
    }
}
