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
    series: HashMap<SeriesKey, Series>,
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
            let key = SeriesKey {
                name: Arc::from(s.desc.name.as_ref()),
                labels: s.labels,
            };
            let series = inner.series.entry(key.clone()).or_insert_with(|| Series {
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
        inner.series.retain(|_, s| {
            while s.history.front().is_some_and(|(t, _)| *t < cutoff) {
                s.history.pop_front();
            }
            s.current.is_some() || !s.history.is_empty()
        });
    }

    /// Every series that currently has a value, sorted by name then labels.
    pub fn current(&self) -> Vec<CurrentSample> {
        let inner = self.read();
        let mut out: Vec<CurrentSample> = inner
            .series
            .iter()
            .filter_map(|(k, s)| {
                s.current.map(|value| CurrentSample {
                    key: k.clone(),
                    desc: Arc::clone(&s.desc),
                    value,
                })
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Current value of one series.
    pub fn get(&self, name: &str, labels: &Labels) -> Option<f64> {
        let inner = self.read();
        let key = SeriesKey {
            name: Arc::from(name),
            labels: labels.clone(),
        };
        inner.series.get(&key).and_then(|s| s.current)
    }

    /// Samples of one series with `start_ms <= t <= end_ms` (staleness markers included).
    pub fn range(&self, key: &SeriesKey, start_ms: i64, end_ms: i64) -> Vec<(i64, f64)> {
        let inner = self.read();
        inner
            .series
            .get(key)
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
        self.read().series.len()
    }

    /// True when the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
    if let Some(s) = inner.series.get_mut(key) {
        if s.current.take().is_some() {
            push(
                &mut s.history,
                ts_ms,
                f64::from_bits(STALE_NAN_BITS),
                retention,
            );
        }
        if retention <= 0 {
            inner.series.remove(key);
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
