//! The dispatcher: Alertmanager's pipeline over the rule engine's alerts.
//!
//! Every tick it reads the alerts (firing, and those resolved recently), routes each one
//! through the route tree into aggregation groups (one per matched route and value of
//! its `group_by` labels), and flushes the groups whose timer is due: the first time
//! `group_wait` after the group appeared, then every `group_interval`. A flush drops the
//! alerts that are muted (inhibited by another firing alert, silenced, or inside a
//! route's `mute_time_intervals` / outside its `active_time_intervals`), then, for each
//! integration of the route's receiver, asks the notification log whether anything new
//! needs saying (new firing alerts, newly resolved ones when `send_resolved`, everything
//! resolved, or `repeat_interval` passed: Alertmanager's `DedupStage`). When it does, the
//! notification goes into the outbox and the notification log is updated in the same
//! SQLite transaction.
//!
//! Aggregation groups live in memory: after a restart (or a reload) the alerts, which
//! the rule engine restores, form new groups, and the notification log keeps them from
//! being announced a second time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::config::AlertingConfig;
use super::outbox::{self, Deliver, Outbox};
use super::receivers::Receiver;
use super::silences::Silences;
use super::{LabelSet, Notification, NotifyAlert, fingerprint};
use crate::rules::{Alert, AlertState, AlertsView};
use crate::scheduler::StatusBoard;
use crate::state::State;

/// How often the dispatcher looks at the alerts and its timers.
pub const TICK: Duration = Duration::from_millis(250);

/// Notification log entries older than this are forgotten (Alertmanager: 120 h).
const NFLOG_RETENTION_MS: i64 = 120 * 3600 * 1000;

/// What the dispatcher needs from the rest of the exporter.
#[derive(Clone)]
pub struct Deps {
    /// The state file (notification log, outbox).
    pub state: Arc<State>,
    /// The outbox and its workers.
    pub outbox: Arc<Outbox>,
    /// Silences.
    pub silences: Arc<Silences>,
    /// Check states, for the reason and detail of an alert's check.
    pub board: Arc<StatusBoard>,
    /// The rule engine's alerts.
    pub alerts: Arc<dyn AlertSource>,
}

/// Where the dispatcher reads alerts: the rule engine ([`AlertsView`]), or a test.
pub trait AlertSource: Send + Sync + 'static {
    /// Pending, firing and recently resolved alerts.
    fn alerts(&self) -> Vec<Alert>;
}

impl AlertSource for AlertsView {
    fn alerts(&self) -> Vec<Alert> {
        self.active_alerts()
    }
}

/// Settings that come from `global:` rather than `alerting:`.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Labels added to every alert (`global.external_labels`).
    pub external_labels: LabelSet,
    /// The exporter's URL (`global.external_url`), for links in notifications.
    pub external_url: String,
}

/// Why an alert is not notified right now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Suppression {
    /// Ids of the silences that mute it.
    #[serde(rename = "silencedBy")]
    pub silenced_by: Vec<String>,
    /// Fingerprints of the firing alerts that inhibit it.
    #[serde(rename = "inhibitedBy")]
    pub inhibited_by: Vec<String>,
}

impl Suppression {
    /// True when muted.
    pub fn muted(&self) -> bool {
        !self.silenced_by.is_empty() || !self.inhibited_by.is_empty()
    }
}

/// Timers and target of one matched route.
#[derive(Debug, Clone, PartialEq)]
struct GroupOpts {
    receiver: String,
    group_wait_ms: i64,
    group_interval_ms: i64,
    repeat_interval_ms: i64,
    mute_time_intervals: Vec<String>,
    active_time_intervals: Vec<String>,
}

#[derive(Debug)]
struct AggrGroup {
    key: String,
    labels: LabelSet,
    opts: GroupOpts,
    alerts: BTreeMap<String, NotifyAlert>,
    next_flush_ms: i64,
    has_flushed: bool,
}

struct Inner {
    config: Option<Arc<AlertingConfig>>,
    settings: Settings,
    /// The alerts the dispatcher knows, by fingerprint.
    alerts: HashMap<String, NotifyAlert>,
    groups: BTreeMap<String, AggrGroup>,
    /// Muted alerts and why, as of the last tick.
    suppressed: HashMap<String, Suppression>,
    seq: u64,
    last_gc_ms: i64,
}

/// The dispatcher. Cheap to share.
#[derive(Clone)]
pub struct Dispatcher {
    deps: Deps,
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dispatcher")
    }
}

/// One notification to write: the outbox row (when `Some`) and the log entry.
struct Write {
    integration: String,
    group_key: String,
    firing: Vec<String>,
    resolved: Vec<String>,
    notification: Option<Notification>,
}

impl Dispatcher {
    /// A dispatcher with no config yet (alerts are only shown until one is applied).
    pub fn new(deps: Deps) -> Self {
        deps.state.with_conn(init_schema);
        Dispatcher {
            deps,
            inner: Arc::new(Mutex::new(Inner {
                config: None,
                settings: Settings::default(),
                alerts: HashMap::new(),
                groups: BTreeMap::new(),
                suppressed: HashMap::new(),
                seq: 0,
                last_gc_ms: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies a (re)loaded config: the receivers' integrations get outbox workers and
    /// the aggregation groups start over (the notification log prevents repeats).
    pub fn apply(&self, config: Option<Arc<AlertingConfig>>, settings: Settings) {
        let mut map: BTreeMap<String, Arc<dyn Deliver>> = BTreeMap::new();
        if let Some(c) = &config {
            for r in &c.receivers {
                for (i, int) in r.integrations.iter().enumerate() {
                    map.insert(r.key(i), Arc::clone(int) as Arc<dyn Deliver>);
                }
            }
        }
        self.deps.outbox.set_integrations(map);
        let mut inner = self.lock();
        inner.config = config;
        inner.settings = settings;
        inner.groups.clear();
        let alerts: Vec<NotifyAlert> = inner.alerts.values().cloned().collect();
        for a in alerts {
            route_alert(&mut inner, &a, crate::notify::now_ms());
        }
    }

    /// The settings from `global:`.
    pub fn settings(&self) -> Option<Settings> {
        Some(self.lock().settings.clone())
    }

    /// The running config's `alerting:` section, if any.
    pub fn config(&self) -> Option<Arc<AlertingConfig>> {
        self.lock().config.clone()
    }

    /// Why an alert (by its labels, external labels included) is muted, if it is.
    pub fn suppression(&self, labels: &LabelSet) -> Suppression {
        self.lock()
            .suppressed
            .get(&fingerprint(labels))
            .cloned()
            .unwrap_or_default()
    }

    /// Runs the loop until `token` is cancelled.
    pub fn spawn(&self, token: CancellationToken) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = token.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let me2 = me.clone();
                // SQLite writes: off the runtime's workers.
                let res = tokio::task::spawn_blocking(move || {
                    me2.tick(crate::notify::now_ms());
                })
                .await;
                if let Err(e) = res {
                    tracing::error!(error = %e, "dispatcher tick failed");
                }
            }
        })
    }

    /// One pass at time `now_ms`: read the alerts, route them, flush due groups.
    /// Blocking (SQLite); the loop runs it on the blocking pool.
    pub fn tick(&self, now_ms: i64) {
        let current = self.collect(now_ms);
        let writes = {
            let mut inner = self.lock();
            sync_alerts(&mut inner, current, now_ms);
            refresh_suppression(&mut inner, &self.deps.silences, now_ms);
            flush_due(&mut inner, &self.deps.state, now_ms)
        };
        if !writes.is_empty() {
            self.commit(&writes, now_ms);
        }
        let gc = {
            let mut inner = self.lock();
            let due = now_ms - inner.last_gc_ms > 3_600_000;
            if due {
                inner.last_gc_ms = now_ms;
            }
            due
        };
        if gc {
            self.deps.state.with_conn(|c| {
                if let Err(e) = c.execute(
                    "DELETE FROM nflog WHERE ts_ms < ?1",
                    params![now_ms - NFLOG_RETENTION_MS],
                ) {
                    tracing::warn!(error = %e, "prune the notification log");
                }
            });
            self.deps.silences.gc(now_ms);
        }
    }

    /// The alerts to dispatch now, as receivers see them.
    fn collect(&self, now_ms: i64) -> Vec<NotifyAlert> {
        let settings = self.lock().settings.clone();
        let mut out = Vec::new();
        for a in self.deps.alerts.alerts() {
            let ends_at_ms = match a.state {
                AlertState::Firing => None,
                AlertState::Pending => continue,
                AlertState::Inactive => match (a.fired_at_ms, a.resolved_at_ms) {
                    (Some(_), Some(r)) => Some(r),
                    _ => continue,
                },
            };
            let mut labels: LabelSet = a
                .labels
                .iter()
                .filter(|(k, _)| *k != "__name__")
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            for (k, v) in &settings.external_labels {
                labels.entry(k.clone()).or_insert_with(|| v.clone());
            }
            let annotations: LabelSet = a
                .annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let (reason, detail) = labels
                .get("check")
                .and_then(|c| self.deps.board.get(c))
                .map(|s| {
                    (
                        s.reason.unwrap_or_default().to_string(),
                        s.detail.unwrap_or_default(),
                    )
                })
                .unwrap_or_default();
            let check = labels.get("check").cloned();
            out.push(NotifyAlert {
                fingerprint: fingerprint(&labels),
                labels,
                annotations,
                starts_at_ms: a.fired_at_ms.unwrap_or(a.active_at_ms),
                ends_at_ms: ends_at_ms.map(|e| e.min(now_ms)),
                generator_url: generator_url(&settings.external_url, check.as_deref()),
                value: a.value,
                reason,
                detail,
            });
        }
        out
    }

    fn commit(&self, writes: &[Write], now_ms: i64) {
        let res = self.deps.state.with_conn(|c| -> rusqlite::Result<()> {
            let tx = c.unchecked_transaction()?;
            for w in writes {
                if let Some(n) = &w.notification {
                    outbox::insert(&tx, &w.integration, n)?;
                }
                tx.execute(
                    "INSERT INTO nflog (integration, group_key, firing, resolved, ts_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(integration, group_key) DO UPDATE SET firing = excluded.firing,
                       resolved = excluded.resolved, ts_ms = excluded.ts_ms",
                    params![
                        w.integration,
                        w.group_key,
                        w.firing.join(","),
                        w.resolved.join(","),
                        now_ms
                    ],
                )?;
            }
            tx.commit()
        });
        match res {
            Ok(()) => {
                for w in writes {
                    if let Some(n) = &w.notification {
                        tracing::info!(
                            receiver = %n.receiver,
                            integration = %w.integration,
                            group = %w.group_key,
                            status = n.status(),
                            alerts = %alert_names(n),
                            id = %n.id,
                            "notification queued"
                        );
                    }
                }
                self.deps.outbox.wake();
            }
            Err(e) => {
                // Nothing was written: the next flush of these groups tries again.
                tracing::error!(error = %e, "write notifications to the outbox");
                let mut inner = self.lock();
                for w in writes {
                    for g in inner.groups.values_mut() {
                        if g.key == w.group_key {
                            g.next_flush_ms = now_ms + 1000;
                        }
                    }
                }
            }
        }
    }
}

/// `alertname` of each alert, deduplicated, comma-separated (for logs).
pub fn alert_names(n: &Notification) -> String {
    let names: BTreeSet<&str> = n
        .alerts
        .iter()
        .filter_map(|a| a.labels.get("alertname").map(String::as_str))
        .collect();
    names.into_iter().collect::<Vec<_>>().join(",")
}

fn generator_url(external_url: &str, check: Option<&str>) -> String {
    let base = external_url.trim_end_matches('/');
    match check {
        Some(c) => format!("{base}/check/{c}"),
        None => format!("{base}/"),
    }
}

/// Creates the notification log and the outbox tables.
pub fn init_schema(c: &rusqlite::Connection) {
    let res = c.execute_batch(
        "CREATE TABLE IF NOT EXISTS nflog (
            integration TEXT NOT NULL,
            group_key TEXT NOT NULL,
            firing TEXT NOT NULL,
            resolved TEXT NOT NULL,
            ts_ms INTEGER NOT NULL,
            PRIMARY KEY (integration, group_key)
        );",
    );
    if let Err(e) = res {
        tracing::error!(error = %e, "create the notification log table");
    }
    outbox::init_schema(c);
}

/// Updates the known alerts from the rule engine's, and routes new or changed ones.
fn sync_alerts(inner: &mut Inner, current: Vec<NotifyAlert>, now_ms: i64) {
    let mut seen = BTreeSet::new();
    for a in current {
        seen.insert(a.fingerprint.clone());
        let lifecycle = |x: &NotifyAlert| (x.starts_at_ms, x.ends_at_ms);
        let changed = inner.alerts.get(&a.fingerprint).map(lifecycle) != Some(lifecycle(&a));
        if changed {
            route_alert(inner, &a, now_ms);
        } else {
            // Fresher value and detail for the groups that hold it.
            for g in inner.groups.values_mut() {
                if let Some(slot) = g.alerts.get_mut(&a.fingerprint) {
                    *slot = a.clone();
                }
            }
        }
        inner.alerts.insert(a.fingerprint.clone(), a);
    }
    // Alerts the rule engine no longer has: a firing one whose rule went away resolves
    // now; a resolved one is forgotten (its groups keep it until they flushed it).
    let gone: Vec<String> = inner
        .alerts
        .keys()
        .filter(|fp| !seen.contains(*fp))
        .cloned()
        .collect();
    for fp in gone {
        if let Some(mut a) = inner.alerts.remove(&fp)
            && !a.resolved()
        {
            a.ends_at_ms = Some(now_ms);
            route_alert(inner, &a, now_ms);
        }
    }
}

/// Puts an alert into the aggregation group of every route it matches.
fn route_alert(inner: &mut Inner, a: &NotifyAlert, now_ms: i64) {
    let Some(cfg) = inner.config.clone() else {
        return;
    };
    for node in cfg.route.match_routes(&a.labels) {
        let key = node.group_key(&a.labels);
        let group = inner.groups.entry(key.clone()).or_insert_with(|| {
            let opts = GroupOpts {
                receiver: node.receiver.clone(),
                group_wait_ms: ms(node.group_wait),
                group_interval_ms: ms(node.group_interval),
                repeat_interval_ms: ms(node.repeat_interval),
                mute_time_intervals: node.mute_time_intervals.clone(),
                active_time_intervals: node.active_time_intervals.clone(),
            };
            AggrGroup {
                key: key.clone(),
                labels: node.group_labels(&a.labels),
                next_flush_ms: now_ms + opts.group_wait_ms,
                opts,
                alerts: BTreeMap::new(),
                has_flushed: false,
            }
        });
        // Alertmanager: an alert older than group_wait in a group that never flushed
        // goes out at once (after a restart, the alerts are old).
        if !group.has_flushed && a.starts_at_ms + group.opts.group_wait_ms <= now_ms {
            group.next_flush_ms = group.next_flush_ms.min(now_ms);
        }
        group.alerts.insert(a.fingerprint.clone(), a.clone());
    }
}

/// Recomputes which known alerts are inhibited or silenced.
fn refresh_suppression(inner: &mut Inner, silences: &Silences, now_ms: i64) {
    let mut out = HashMap::new();
    let cfg = inner.config.clone();
    let firing: Vec<&NotifyAlert> = inner.alerts.values().filter(|a| !a.resolved()).collect();
    for a in inner.alerts.values() {
        let mut s = Suppression {
            silenced_by: silences.silenced_by(&a.labels, now_ms),
            inhibited_by: Vec::new(),
        };
        if let Some(cfg) = &cfg {
            s.inhibited_by = inhibitors(cfg, &firing, &a.labels);
        }
        if s.muted() {
            out.insert(a.fingerprint.clone(), s);
        }
    }
    inner.suppressed = out;
}

/// Fingerprints of the firing alerts that inhibit an alert with `labels`, as
/// Alertmanager's inhibitor decides: a rule whose target matchers match, and a firing
/// source alert with equal values of the `equal` labels (an alert matching both sides
/// of a rule cannot inhibit one that also does).
fn inhibitors(cfg: &AlertingConfig, firing: &[&NotifyAlert], labels: &LabelSet) -> Vec<String> {
    let mut by = BTreeSet::new();
    for rule in &cfg.inhibit_rules {
        for src in firing {
            if &src.labels != labels && rule.inhibits(&src.labels, labels) {
                by.insert(src.fingerprint.clone());
            }
        }
    }
    by.into_iter().collect()
}

/// Flushes every due group; returns what to write.
fn flush_due(inner: &mut Inner, state: &State, now_ms: i64) -> Vec<Write> {
    let Some(cfg) = inner.config.clone() else {
        return Vec::new();
    };
    let due: Vec<String> = inner
        .groups
        .iter()
        .filter(|(_, g)| g.next_flush_ms <= now_ms)
        .map(|(k, _)| k.clone())
        .collect();
    let mut writes = Vec::new();
    for key in due {
        let Some(group) = inner.groups.get_mut(&key) else {
            continue;
        };
        group.next_flush_ms = now_ms + group.opts.group_interval_ms;
        group.has_flushed = true;
        let alerts: Vec<NotifyAlert> = group.alerts.values().cloned().collect();
        let labels = group.labels.clone();
        let opts = group.opts.clone();
        // Resolved alerts leave the group once a flush has seen them.
        group.alerts.retain(|_, a| !a.resolved());
        if group.alerts.is_empty() {
            inner.groups.remove(&key);
        }
        if in_mute_window(&cfg, &opts, now_ms) {
            tracing::debug!(group = %key, "inside a mute time interval: nothing sent");
            continue;
        }
        let mut kept: Vec<NotifyAlert> = alerts
            .into_iter()
            .filter(|a| !inner.suppressed.contains_key(&a.fingerprint))
            .collect();
        if kept.is_empty() {
            continue;
        }
        kept.sort_by(|a, b| {
            (a.resolved(), &a.labels, &a.fingerprint).cmp(&(
                b.resolved(),
                &b.labels,
                &b.fingerprint,
            ))
        });
        let Some(receiver) = cfg.receivers.iter().find(|r| r.name == opts.receiver) else {
            continue;
        };
        flush_group(
            inner,
            state,
            receiver,
            &key,
            &labels,
            &opts,
            &kept,
            now_ms,
            &mut writes,
        );
    }
    writes
}

#[allow(clippy::too_many_arguments)]
fn flush_group(
    inner: &mut Inner,
    state: &State,
    receiver: &Receiver,
    key: &str,
    labels: &LabelSet,
    opts: &GroupOpts,
    alerts: &[NotifyAlert],
    now_ms: i64,
    writes: &mut Vec<Write>,
) {
    let firing: BTreeSet<String> = alerts
        .iter()
        .filter(|a| !a.resolved())
        .map(|a| a.fingerprint.clone())
        .collect();
    let resolved: BTreeSet<String> = alerts
        .iter()
        .filter(|a| a.resolved())
        .map(|a| a.fingerprint.clone())
        .collect();
    for (i, integration) in receiver.integrations.iter().enumerate() {
        let ikey = receiver.key(i);
        let entry = read_nflog(state, &ikey, key);
        if !needs_update(
            entry.as_ref(),
            &firing,
            &resolved,
            integration.send_resolved(),
            opts.repeat_interval_ms,
            now_ms,
        ) {
            continue;
        }
        let to_send: Vec<NotifyAlert> = alerts
            .iter()
            .filter(|a| integration.send_resolved() || !a.resolved())
            .cloned()
            .collect();
        let mut notification = None;
        if !to_send.is_empty() {
            inner.seq += 1;
            let n = Notification {
                id: format!(
                    "{now_ms:x}.{:x}.{}",
                    inner.seq,
                    &fingerprint(&BTreeMap::from([
                        ("i".to_string(), ikey.clone()),
                        ("g".to_string(), key.to_string()),
                    ]))[..8]
                ),
                receiver: receiver.name.clone(),
                group_key: key.to_string(),
                group_labels: labels.clone(),
                alerts: to_send,
                external_url: inner.settings.external_url.clone(),
                created_ms: now_ms,
                report: None,
            };
            match integration.configured() {
                Ok(()) => notification = Some(n),
                Err(why) => tracing::warn!(
                    receiver = %receiver.name,
                    integration = %ikey,
                    status = n.status(),
                    alerts = %alert_names(&n),
                    reason = %why,
                    "notification not sent"
                ),
            }
        }
        writes.push(Write {
            integration: ikey,
            group_key: key.to_string(),
            firing: firing.iter().cloned().collect(),
            resolved: resolved.iter().cloned().collect(),
            notification,
        });
    }
}

/// A notification log entry.
#[derive(Debug, Clone, PartialEq)]
struct NflogEntry {
    firing: BTreeSet<String>,
    resolved: BTreeSet<String>,
    ts_ms: i64,
}

fn read_nflog(state: &State, integration: &str, group_key: &str) -> Option<NflogEntry> {
    let split = |s: String| -> BTreeSet<String> {
        s.split(',')
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    };
    let row = state.with_conn(|c| {
        c.query_row(
            "SELECT firing, resolved, ts_ms FROM nflog WHERE integration = ?1 AND group_key = ?2",
            params![integration, group_key],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            },
        )
        .optional()
    });
    match row {
        Ok(Some((f, r, ts))) => Some(NflogEntry {
            firing: split(f),
            resolved: split(r),
            ts_ms: ts,
        }),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "read the notification log");
            None
        }
    }
}

/// Alertmanager's `DedupStage.needsUpdate`.
fn needs_update(
    entry: Option<&NflogEntry>,
    firing: &BTreeSet<String>,
    resolved: &BTreeSet<String>,
    send_resolved: bool,
    repeat_ms: i64,
    now_ms: i64,
) -> bool {
    let Some(e) = entry else {
        return !firing.is_empty();
    };
    if !firing.is_subset(&e.firing) {
        return true;
    }
    // Everything resolved: always logged (and sent when send_resolved), so the log
    // forgets the firing alerts.
    if firing.is_empty() {
        return !e.firing.is_empty();
    }
    if send_resolved && !resolved.is_subset(&e.resolved) {
        return true;
    }
    e.ts_ms <= now_ms - repeat_ms
}

fn in_mute_window(cfg: &AlertingConfig, opts: &GroupOpts, now_ms: i64) -> bool {
    let Some(now) = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(now_ms) else {
        return false;
    };
    let active = |names: &[String]| {
        names
            .iter()
            .any(|n| cfg.time_intervals.get(n).is_some_and(|ti| ti.contains(now)))
    };
    if active(&opts.mute_time_intervals) {
        return true;
    }
    !opts.active_time_intervals.is_empty() && !active(&opts.active_time_intervals)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dedup_follows_alertmanager() {
        let now = 10_000_000;
        let repeat = 3_600_000;
        // Nothing sent yet: only firing alerts are worth a notification.
        assert!(needs_update(
            None,
            &set(&["a"]),
            &set(&[]),
            true,
            repeat,
            now
        ));
        assert!(!needs_update(
            None,
            &set(&[]),
            &set(&["a"]),
            true,
            repeat,
            now
        ));
        let e = NflogEntry {
            firing: set(&["a", "b"]),
            resolved: set(&[]),
            ts_ms: now - 1000,
        };
        // Same firing set: quiet until repeat_interval.
        assert!(!needs_update(
            Some(&e),
            &set(&["a", "b"]),
            &set(&[]),
            true,
            repeat,
            now
        ));
        assert!(needs_update(
            Some(&e),
            &set(&["a", "b"]),
            &set(&[]),
            true,
            repeat,
            now + repeat
        ));
        // A new firing alert.
        assert!(needs_update(
            Some(&e),
            &set(&["a", "c"]),
            &set(&[]),
            false,
            repeat,
            now
        ));
        // One resolved: only with send_resolved.
        assert!(needs_update(
            Some(&e),
            &set(&["a"]),
            &set(&["b"]),
            true,
            repeat,
            now
        ));
        assert!(!needs_update(
            Some(&e),
            &set(&["a"]),
            &set(&["b"]),
            false,
            repeat,
            now
        ));
        // All resolved: logged either way.
        assert!(needs_update(
            Some(&e),
            &set(&[]),
            &set(&["a", "b"]),
            false,
            repeat,
            now
        ));
        let cleared = NflogEntry {
            firing: set(&[]),
            resolved: set(&["a", "b"]),
            ts_ms: now,
        };
        assert!(!needs_update(
            Some(&cleared),
            &set(&[]),
            &set(&["a", "b"]),
            true,
            repeat,
            now
        ));
    }
}
