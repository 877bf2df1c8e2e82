//! Notifications: alerts from the rule engine → dispatcher (route, group, wait,
//! inhibit, silence, maintenance windows) → durable outbox → receivers (email,
//! Alertmanager, webhook), plus the heartbeat and the daily report.
//!
//! The shapes and semantics are Alertmanager's (0.25), which operators already know:
//! `route` with `matchers`/`continue`/`group_by`/`group_wait`/`group_interval`/
//! `repeat_interval`, `receivers`, `inhibit_rules`, `time_intervals`, silences.
//!
//! ```text
//! AlertsView ──► dispatcher ──► aggregation groups ──flush──► mute (inhibit, silence,
//!                                                               time intervals)
//!   ──► dedup (notification log) ──► outbox (SQLite, one row per integration)
//!   ──► one worker per integration: send, retry with capped backoff, delete on success
//! ```
//!
//! The notification log and the outbox row are written in one SQLite transaction, so a
//! crash at any point neither loses a notification nor creates a second one.

pub mod cli;
pub mod config;
pub mod dispatcher;
pub mod matchers;
pub mod outbox;
pub mod receivers;
pub mod report;
pub mod route;
pub mod service;
pub mod silences;
pub mod template;
pub mod timeinterval;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A label set: sorted, unique names.
pub type LabelSet = BTreeMap<String, String>;

/// One alert as receivers see it (Alertmanager's alert model, plus what the exporter knows
/// about the check behind it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotifyAlert {
    /// Labels, `alertname` included, external labels added.
    pub labels: LabelSet,
    /// Templated annotations (`summary`, `description`, `runbook_url`, …).
    pub annotations: LabelSet,
    /// When the alert became active (ms since the epoch).
    pub starts_at_ms: i64,
    /// When it resolved; `None` while it fires.
    pub ends_at_ms: Option<i64>,
    /// Link back to the exporter (the status page of the check).
    pub generator_url: String,
    /// Hex fingerprint of the labels (stable across restarts).
    pub fingerprint: String,
    /// The last value of the rule's expression.
    pub value: f64,
    /// The failure reason of the check named by the `check` label, when there is one.
    #[serde(default)]
    pub reason: String,
    /// The human-readable detail of that check's last run (never holds a secret).
    #[serde(default)]
    pub detail: String,
}

impl NotifyAlert {
    /// True once the alert resolved.
    pub fn resolved(&self) -> bool {
        self.ends_at_ms.is_some()
    }

    /// `firing` or `resolved`.
    pub fn status(&self) -> &'static str {
        if self.resolved() {
            "resolved"
        } else {
            "firing"
        }
    }
}

/// The fingerprint of a label set: FNV-1a 64 over `name\xffvalue\xff…`, in hex.
pub fn fingerprint(labels: &LabelSet) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in labels {
        for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// One notification for one receiver: the alerts of one aggregation group at one flush.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Unique, stable id (the email `Message-ID` is derived from it).
    pub id: String,
    /// Receiver name.
    pub receiver: String,
    /// The aggregation group's key (route path and group labels), as Alertmanager prints it.
    pub group_key: String,
    /// The group's `group_by` labels and their values.
    pub group_labels: LabelSet,
    /// The alerts, firing first, then resolved; each sorted by labels.
    pub alerts: Vec<NotifyAlert>,
    /// The exporter's external URL (the status page), for links.
    pub external_url: String,
    /// When the dispatcher created it (ms since the epoch).
    pub created_ms: i64,
    /// The daily report's pre-rendered content; `None` for alert notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<ReportBody>,
}

/// A pre-rendered email (the daily report): receivers send it as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportBody {
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
}

impl Notification {
    /// `firing` when any alert fires, else `resolved`.
    pub fn status(&self) -> &'static str {
        if self.alerts.iter().any(|a| !a.resolved()) {
            "firing"
        } else {
            "resolved"
        }
    }

    /// The firing alerts.
    pub fn firing(&self) -> impl Iterator<Item = &NotifyAlert> {
        self.alerts.iter().filter(|a| !a.resolved())
    }

    /// The resolved alerts.
    pub fn resolved(&self) -> impl Iterator<Item = &NotifyAlert> {
        self.alerts.iter().filter(|a| a.resolved())
    }

    /// Labels that every alert shares, with the same value.
    pub fn common_labels(&self) -> LabelSet {
        common(self.alerts.iter().map(|a| &a.labels))
    }

    /// Annotations that every alert shares, with the same value.
    pub fn common_annotations(&self) -> LabelSet {
        common(self.alerts.iter().map(|a| &a.annotations))
    }
}

fn common<'a>(mut sets: impl Iterator<Item = &'a LabelSet>) -> LabelSet {
    let Some(first) = sets.next() else {
        return LabelSet::new();
    };
    let mut out = first.clone();
    for s in sets {
        out.retain(|k, v| s.get(k) == Some(v));
    }
    out
}

/// Why a send failed, as receivers report it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// False when sending the same notification again cannot succeed (a message the
    /// server refuses for good); the outbox then drops it and counts it as `dropped`.
    pub retryable: bool,
    /// Short, bounded reason for the `result` label and logs: `refused`, `timeout`,
    /// `tls`, `auth`, `rejected`, `protocol`, `dns`, `http_status`, `not_configured`,
    /// `template`.
    pub reason: &'static str,
    /// Human-readable message; never holds a secret.
    pub message: String,
}

impl SendError {
    /// A failure worth retrying.
    pub fn retry(reason: &'static str, message: impl Into<String>) -> Self {
        SendError {
            retryable: true,
            reason,
            message: message.into(),
        }
    }

    /// A failure that a retry cannot fix.
    pub fn permanent(reason: &'static str, message: impl Into<String>) -> Self {
        SendError {
            retryable: false,
            reason,
            message: message.into(),
        }
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
