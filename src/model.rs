//! Plain data shared by every stage: labels, metric descriptions and samples.
//! No I/O lives here.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// The Prometheus type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// A value that goes up and down.
    Gauge,
    /// A monotonically increasing value (name ends in `_total`).
    Counter,
}

/// A metric family's name, help text and type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MetricDesc {
    /// Full metric name, e.g. `harena_probe_success`.
    pub name: Cow<'static, str>,
    /// One-line help text shown in `# HELP`.
    pub help: Cow<'static, str>,
    /// Gauge or counter.
    pub kind: MetricKind,
}

impl MetricDesc {
    /// A gauge description usable in `const` context.
    pub const fn gauge(name: &'static str, help: &'static str) -> Self {
        MetricDesc {
            name: Cow::Borrowed(name),
            help: Cow::Borrowed(help),
            kind: MetricKind::Gauge,
        }
    }

    /// A counter description usable in `const` context.
    pub const fn counter(name: &'static str, help: &'static str) -> Self {
        MetricDesc {
            name: Cow::Borrowed(name),
            help: Cow::Borrowed(help),
            kind: MetricKind::Counter,
        }
    }
}

/// A sorted, duplicate-free set of label pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Vec<(String, String)>);

impl Labels {
    /// An empty label set.
    pub fn new() -> Self {
        Labels(Vec::new())
    }

    /// Builds a label set from pairs; later pairs win over earlier ones with the same name.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut l = Labels::new();
        for (k, v) in pairs {
            l.set(k, v);
        }
        l
    }

    /// Sets one label, replacing an existing value.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(&name)) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (name, value)),
        }
    }

    /// Returns a copy with one more label.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set(name, value);
        self
    }

    /// The value of a label, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    /// Removes a label and returns its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| self.0.remove(i).1)
    }

    /// Iterates over `(name, value)` in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is no label.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v:?}")?;
        }
        f.write_str("}")
    }
}

/// One value of one series, as a check or rule produces it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The family this sample belongs to.
    pub desc: Arc<MetricDesc>,
    /// The series' labels (without `__name__`).
    pub labels: Labels,
    /// The value.
    pub value: f64,
}

/// Escapes text for HTML element content and double-quoted attributes (the status
/// page, the daily report, emails, the demo's mailbox).
pub fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
