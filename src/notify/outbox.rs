//! The durable outbox: every notification is a row of the state file's `outbox` table
//! before anything is sent, and leaves it only once its receiver accepted it.
//!
//! ```text
//! dispatcher ──(one SQLite transaction: notification log + insert())──► outbox table
//!     └─ wake() ──► one worker per integration (`receiver/kind/i`), each its own task:
//!                   oldest row first, one at a time, send (with a timeout), then
//!                     accepted        → delete the row, count `success`
//!                     retryable error → attempts+1, next attempt after a capped
//!                                       exponential backoff (1 s, 2 s, 4 s … 5 min, ±10 %)
//!                     permanent error → delete the row, count `dropped`, log at error
//! ```
//!
//! A worker never waits for another: a hung SMTP server only holds its own integration's
//! queue. Rows survive restarts and are picked up by the next run's workers; rows of an
//! integration that is no longer configured stay pending (and are reported by
//! [`Outbox::pending`] and in the log) until it comes back: they are never deleted
//! silently.
//!
//! # Delivery guarantee
//! At least once, with one small duplicate window: between the receiver's acceptance and
//! the `DELETE` of the row, which runs as its own statement right after the send returns.
//! A crash (or a power loss within SQLite's `synchronous=NORMAL` window) exactly there
//! sends that notification again after the restart. Nothing else can lose or repeat one:
//! the row is written in the same transaction as the notification log entry, before any
//! send.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Gauge, IntCounterVec, IntGauge, Opts};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use super::receivers::Integration;
use super::{Notification, SendError, now_ms};
use crate::net::fmt_duration;
use crate::state::State;

/// Something that can deliver a notification: every [`Integration`], and the fakes of
/// tests.
pub trait Deliver: Send + Sync + 'static {
    /// Sends one notification; `Ok` means the receiver accepted it.
    ///
    /// # Errors
    /// Why it was not accepted, and whether a retry can help.
    fn send<'a>(
        &'a self,
        n: &'a Notification,
    ) -> Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;
}

impl Deliver for Integration {
    fn send<'a>(
        &'a self,
        n: &'a Notification,
    ) -> Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>> {
        Box::pin(Integration::send(self, n))
    }
}

/// Tuning of an [`Outbox`]; [`Default`] is what the exporter runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxOptions {
    /// The most one send may take, whatever the integration's own timeouts (a hung
    /// send counts as a `timeout` and is retried). Default 2 minutes.
    pub send_timeout: Duration,
    /// The wait after the first failed attempt; it doubles with each further failure.
    /// Default 1 second.
    pub backoff_initial: Duration,
    /// The longest wait between two attempts. Default 5 minutes.
    pub backoff_max: Duration,
    /// Random spread of each wait, as a fraction (0.1 = ±10 %), so that many queues do
    /// not retry in lockstep. Default 0.1.
    pub jitter: f64,
    /// How long [`Outbox::shutdown`] lets sends in flight finish before it aborts them.
    /// Default 10 seconds.
    pub shutdown_grace: Duration,
}

impl Default for OutboxOptions {
    fn default() -> Self {
        OutboxOptions {
            send_timeout: Duration::from_secs(120),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            jitter: 0.1,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl OutboxOptions {
    /// The wait before attempt `failures + 1`, after `failures` (≥ 1) failed attempts:
    /// `backoff_initial · 2^(failures-1)`, spread by `jitter`, never above `backoff_max`.
    pub fn backoff(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(30);
        let base = self
            .backoff_initial
            .checked_mul(1u32 << exp)
            .unwrap_or(self.backoff_max)
            .min(self.backoff_max);
        let spread = self.jitter.clamp(0.0, 1.0) * (2.0 * random_unit() - 1.0);
        base.mul_f64(1.0 + spread).min(self.backoff_max)
    }
}

/// Creates the `outbox` table when it is missing; a failure is logged (every later
/// use of the table then fails with its own error).
pub fn init_schema(conn: &Connection) {
    if let Err(e) = create_table(conn) {
        error!(error = %e, "create the outbox table");
    }
}

fn create_table(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            integration TEXT NOT NULL,
            receiver TEXT NOT NULL,
            notification TEXT NOT NULL,
            created_ms INTEGER NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_ms INTEGER NOT NULL,
            last_error TEXT,
            last_reason TEXT
        );
        CREATE INDEX IF NOT EXISTS outbox_by_integration ON outbox (integration, id);",
    )
}

/// Queues `n` for the integration `integration_key` (`receiver/kind/i`); returns the
/// row id. The dispatcher calls it inside the transaction that also records the
/// notification in its log, then calls [`Outbox::wake`] once the transaction committed.
///
/// # Errors
/// SQLite refused, or the notification cannot be encoded.
pub fn insert(tx: &Connection, integration_key: &str, n: &Notification) -> rusqlite::Result<i64> {
    create_table(tx)?;
    let json = serde_json::to_string(n)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    let now = now_ms();
    tx.execute(
        "INSERT INTO outbox (integration, receiver, notification, created_ms, attempts, next_attempt_ms)
         VALUES (?1, ?2, ?3, ?4, 0, ?4)",
        params![integration_key, n.receiver, json, now],
    )?;
    Ok(tx.last_insert_rowid())
}

/// A queued notification, as the status page and `/api/v1` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PendingInfo {
    /// Row id (grows with every insert, never reused).
    pub id: i64,
    /// Integration key, `receiver/kind/i`.
    pub integration: String,
    /// Receiver name.
    pub receiver: String,
    /// When it was queued (ms since the epoch).
    pub created_ms: i64,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When the next attempt is due (ms since the epoch).
    pub next_attempt_ms: i64,
    /// Message of the last failed attempt (never holds a secret).
    pub last_error: Option<String>,
    /// Reason of the last failed attempt (`timeout`, `auth`, …).
    pub last_reason: Option<String>,
    /// The `alertname` of each alert in it.
    pub alert_names: Vec<String>,
    /// False when no configured integration has this key any more: the row waits until
    /// one does.
    pub has_integration: bool,
}

/// The outbox: its workers, its metrics and the access to its table.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<String> = self.inner.slots().keys().cloned().collect();
        f.debug_struct("Outbox")
            .field("state", &self.inner.state.path())
            .field("integrations", &keys)
            .field("options", &self.inner.opts)
            .finish()
    }
}

struct Inner {
    state: Arc<State>,
    opts: OutboxOptions,
    slots: Mutex<HashMap<String, Slot>>,
    token: CancellationToken,
    tracker: TaskTracker,
    metrics: Metrics,
}

/// One integration's worker: what it sends with, and how to reach it.
struct Slot {
    /// `None` once the integration was removed: the worker exits at its next turn.
    deliver: Option<Arc<dyn Deliver>>,
    /// New rows may be there (from [`Outbox::wake`]).
    wake: Arc<Notify>,
    /// The integration was replaced or removed (config reload).
    control: Arc<Notify>,
    /// Set on replacement: the next attempt does not wait for the backoff, since the
    /// new config may have fixed the problem.
    retry_now: bool,
    abort: Option<AbortHandle>,
}

/// A row of the `outbox` table.
#[derive(Debug)]
struct Row {
    id: i64,
    receiver: String,
    notification: String,
    attempts: u32,
    next_attempt_ms: i64,
}

impl Outbox {
    /// An outbox over the state file with the default options. Creates the table when
    /// it is missing; no worker runs before [`Outbox::set_integrations`].
    pub fn new(state: Arc<State>) -> Self {
        Self::new_with(state, OutboxOptions::default())
    }

    /// An outbox with the given options (tests use short backoffs).
    pub fn new_with(state: Arc<State>, opts: OutboxOptions) -> Self {
        state.with_conn(init_schema);
        let inner = Arc::new(Inner {
            state,
            opts,
            slots: Mutex::new(HashMap::new()),
            token: CancellationToken::new(),
            tracker: TaskTracker::new(),
            metrics: Metrics::new(),
        });
        inner.refresh_stats_blocking();
        Outbox { inner }
    }

    /// Sets the integrations, by key (`receiver/kind/i`): at start and on every config
    /// reload. Starts a worker for each new key, hands the new integration to the
    /// worker of a known key (which then retries at once), and stops the workers of
    /// keys that are gone once their send in flight (if any) finished. Rows of a key
    /// with no integration stay pending and are reported, never deleted.
    ///
    /// Call it from within a Tokio runtime (it spawns the workers).
    pub fn set_integrations(&self, map: BTreeMap<String, Arc<dyn Deliver>>) {
        if self.inner.token.is_cancelled() {
            warn!("outbox is shut down: integrations not started");
            return;
        }
        let mut receivers: HashSet<String> = HashSet::new();
        {
            let mut slots = self.inner.slots();
            for (key, slot) in slots.iter_mut() {
                if !map.contains_key(key) && slot.deliver.take().is_some() {
                    info!(integration = %key, "integration removed: its worker stops");
                    slot.control.notify_one();
                }
            }
            for (key, deliver) in map {
                receivers.insert(receiver_of(&key).to_string());
                match slots.get_mut(&key) {
                    Some(slot) => {
                        let same = slot
                            .deliver
                            .as_ref()
                            .is_some_and(|d| Arc::ptr_eq(d, &deliver));
                        if !same {
                            slot.deliver = Some(deliver);
                            slot.retry_now = true;
                            slot.control.notify_one();
                        }
                    }
                    None => {
                        let wake = Arc::new(Notify::new());
                        let control = Arc::new(Notify::new());
                        let inner = Arc::clone(&self.inner);
                        let handle = self.inner.tracker.spawn(worker(
                            inner,
                            key.clone(),
                            Arc::clone(&wake),
                            Arc::clone(&control),
                        ));
                        slots.insert(
                            key,
                            Slot {
                                deliver: Some(deliver),
                                wake,
                                control,
                                retry_now: false,
                                abort: Some(handle.abort_handle()),
                            },
                        );
                    }
                }
            }
        }
        for r in receivers {
            // Every receiver shows a `success` series from the start.
            self.inner.metrics.sent.with_label_values(&[&r, "success"]);
        }
        let inner = Arc::clone(&self.inner);
        self.inner.tracker.spawn(async move {
            inner.report_orphans().await;
        });
    }

    /// Tells the workers that rows may have been added (after the dispatcher's
    /// transaction committed). An idle worker starts at once; a worker waiting out a
    /// backoff keeps waiting.
    pub fn wake(&self) {
        for slot in self.inner.slots().values() {
            slot.wake.notify_one();
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let inner = Arc::clone(&self.inner);
            rt.spawn(async move { inner.refresh_stats().await });
        }
    }

    /// Every queued notification, oldest first (blocking: a short query; run it on the
    /// blocking pool from async code).
    pub fn pending(&self) -> Vec<PendingInfo> {
        let configured: HashSet<String> = self
            .inner
            .slots()
            .iter()
            .filter(|(_, s)| s.deliver.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        let rows = self.inner.state.with_conn(|c| -> rusqlite::Result<Vec<_>> {
            create_table(c)?;
            let mut stmt = c.prepare(
                "SELECT id, integration, receiver, created_ms, attempts, next_attempt_ms,
                        last_error, last_reason, notification
                 FROM outbox ORDER BY id",
            )?;
            let rows = stmt.query_map([], |r| {
                let json: String = r.get(8)?;
                let integration: String = r.get(1)?;
                Ok(PendingInfo {
                    id: r.get(0)?,
                    has_integration: configured.contains(&integration),
                    integration,
                    receiver: r.get(2)?,
                    created_ms: r.get(3)?,
                    attempts: r.get(4)?,
                    next_attempt_ms: r.get(5)?,
                    last_error: r.get(6)?,
                    last_reason: r.get(7)?,
                    alert_names: serde_json::from_str::<Notification>(&json)
                        .map(|n| alert_names(&n))
                        .unwrap_or_default(),
                })
            })?;
            rows.collect()
        });
        match rows {
            Ok(rows) => rows,
            Err(e) => {
                warn!(error = %e, "read the outbox");
                Vec::new()
            }
        }
    }

    /// `harena_notifications_total{receiver,result}`, `harena_notification_queue_length`
    /// and `harena_notification_oldest_pending_seconds`, to register once.
    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.inner.metrics.sent.clone()),
            Box::new(QueueCollector {
                metrics: self.inner.metrics.clone(),
            }),
        ]
    }

    /// Stops the workers: idle and waiting ones at once, a send in flight after it
    /// finished, or after [`OutboxOptions::shutdown_grace`] when it takes longer (that
    /// notification stays queued and is sent again by the next run).
    pub async fn shutdown(&self) {
        self.inner.token.cancel();
        self.inner.tracker.close();
        let grace = self.inner.opts.shutdown_grace;
        if tokio::time::timeout(grace, self.inner.tracker.wait())
            .await
            .is_ok()
        {
            return;
        }
        let busy: Vec<String> = self.inner.slots().keys().cloned().collect();
        warn!(
            integrations = %busy.join(", "),
            "sends still in flight after {}: aborted, their notifications stay queued",
            fmt_duration(grace)
        );
        for slot in self.inner.slots().values() {
            if let Some(a) = &slot.abort {
                a.abort();
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.tracker.wait()).await;
    }
}

impl Inner {
    fn slots(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a short SQLite call on the blocking pool.
    async fn db<T, F>(&self, f: F) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let state = Arc::clone(&self.state);
        match tokio::task::spawn_blocking(move || state.with_conn(f)).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("state file task failed: {e}")),
        }
    }

    fn refresh_stats_blocking(&self) {
        match self.state.with_conn(queue_stats) {
            Ok((len, oldest)) => self.metrics.set_queue(len, oldest),
            Err(e) => warn!(error = %e, "read the outbox size"),
        }
    }

    async fn refresh_stats(&self) {
        match self.db(queue_stats).await {
            Ok((len, oldest)) => self.metrics.set_queue(len, oldest),
            Err(e) => warn!(error = %e, "read the outbox size"),
        }
    }

    /// Logs the keys that have rows but no integration.
    async fn report_orphans(&self) {
        let counts = self
            .db(|c| {
                let mut stmt =
                    c.prepare("SELECT integration, COUNT(*) FROM outbox GROUP BY integration")?;
                let rows =
                    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await;
        let counts = match counts {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "read the outbox");
                return;
            }
        };
        let orphans: Vec<(String, i64)> = {
            let slots = self.slots();
            counts
                .into_iter()
                .filter(|(k, _)| slots.get(k).is_none_or(|s| s.deliver.is_none()))
                .collect()
        };
        for (key, count) in orphans {
            warn!(
                integration = %key,
                pending = count,
                "notifications wait for an integration that is not configured; they are sent once it is back"
            );
        }
    }

    /// What the worker of `key` should send with now, and whether to skip the backoff;
    /// `None` when it should stop (its slot is then removed).
    fn turn(&self, key: &str) -> Option<(Arc<dyn Deliver>, bool)> {
        let mut slots = self.slots();
        let slot = slots.get_mut(key)?;
        match &slot.deliver {
            Some(d) => Some((Arc::clone(d), std::mem::take(&mut slot.retry_now))),
            None => {
                slots.remove(key);
                None
            }
        }
    }

    /// Whether `deliver` is still the integration of `key`.
    fn is_current(&self, key: &str, deliver: &Arc<dyn Deliver>) -> bool {
        self.slots()
            .get(key)
            .and_then(|s| s.deliver.as_ref())
            .is_some_and(|d| Arc::ptr_eq(d, deliver))
    }

    /// One attempt at the oldest row. Returns the id of a row that was accepted but
    /// could not be deleted (it must not be sent again by this run).
    async fn attempt(&self, key: &str, row: Row, deliver: Arc<dyn Deliver>) -> Option<i64> {
        let id = row.id;
        let receiver = row.receiver.clone();
        let n: Notification = match serde_json::from_str(&row.notification) {
            Ok(n) => n,
            Err(e) => {
                error!(integration = %key, row = id, error = %e, "queued notification cannot be read: dropped");
                self.metrics.count(&receiver, "dropped");
                if let Err(e) = self.db(move |c| delete_row(c, id)).await {
                    error!(integration = %key, row = id, error = %e, "delete an unreadable notification");
                }
                return None;
            }
        };
        let attempts = row.attempts.saturating_add(1);
        let timeout = self.opts.send_timeout;
        let shared = Arc::new(n);
        let sending = Arc::clone(&shared);
        // Its own task: a panic in an integration only fails this attempt, and the
        // guard aborts the send when the worker itself is aborted.
        let task =
            tokio::spawn(
                async move { tokio::time::timeout(timeout, deliver.send(&sending)).await },
            );
        let guard = AbortOnDrop(task.abort_handle());
        let result = match task.await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(SendError::retry(
                "timeout",
                format!("send did not finish within {}", fmt_duration(timeout)),
            )),
            Err(e) if e.is_panic() => Err(SendError::retry("internal", "the integration panicked")),
            Err(_) => Err(SendError::retry("internal", "the send was cancelled")),
        };
        drop(guard);
        let n = shared;
        let names = alert_names(&n).join(",");
        match result {
            Ok(()) => {
                self.metrics.count(&receiver, "success");
                // At once: the smaller the gap after acceptance, the smaller the
                // duplicate window (see the module docs).
                let deleted = self.db(move |c| delete_row(c, id)).await;
                info!(
                    receiver = %receiver,
                    integration = %key,
                    notification = %n.id,
                    attempts,
                    alerts = %names,
                    "notification sent"
                );
                if let Err(e) = deleted {
                    error!(
                        integration = %key,
                        notification = %n.id,
                        error = %e,
                        "remove a sent notification from the outbox: it may be sent again after a restart"
                    );
                    return Some(id);
                }
            }
            Err(e) if e.retryable => {
                let delay = self.opts.backoff(attempts);
                let next =
                    now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
                self.metrics.count(&receiver, e.reason);
                let (message, reason) = (e.message.clone(), e.reason);
                let saved = self
                    .db(move |c| record_failure(c, id, attempts, next, &message, reason))
                    .await;
                if let Err(err) = saved {
                    error!(integration = %key, row = id, error = %err, "record a failed attempt");
                }
                warn!(
                    receiver = %receiver,
                    integration = %key,
                    notification = %n.id,
                    attempts,
                    reason = e.reason,
                    error = %e.message,
                    next_attempt = %crate::telemetry::rfc3339(next),
                    "notification not accepted: retrying in {}",
                    fmt_duration(delay)
                );
            }
            Err(e) => {
                self.metrics.count(&receiver, e.reason);
                self.metrics.count(&receiver, "dropped");
                let deleted = self.db(move |c| delete_row(c, id)).await;
                error!(
                    receiver = %receiver,
                    integration = %key,
                    notification = %n.id,
                    attempts,
                    reason = e.reason,
                    error = %e.message,
                    alerts = %names,
                    "notification refused for good: dropped"
                );
                if let Err(err) = deleted {
                    error!(integration = %key, row = id, error = %err, "remove a dropped notification");
                    return Some(id);
                }
            }
        }
        None
    }
}

/// The loop of one integration's worker.
async fn worker(inner: Arc<Inner>, key: String, wake: Arc<Notify>, control: Arc<Notify>) {
    // Rows this run finished with but could not delete: never sent twice by this run.
    let mut done: Vec<i64> = Vec::new();
    let token = inner.token.clone();
    loop {
        if token.is_cancelled() {
            break;
        }
        if !done.is_empty() {
            let ids = done.clone();
            match inner
                .db(move |c| ids.iter().try_for_each(|id| delete_row(c, *id)))
                .await
            {
                Ok(()) => done.clear(),
                Err(e) => {
                    warn!(integration = %key, error = %e, "remove finished notifications from the outbox");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = token.cancelled() => break,
                    }
                    continue;
                }
            }
        }
        let Some((deliver, retry_now)) = inner.turn(&key) else {
            info!(integration = %key, "outbox worker stopped");
            return;
        };
        let k = key.clone();
        let row = match inner.db(move |c| oldest_row(c, &k)).await {
            Ok(row) => row,
            Err(e) => {
                warn!(integration = %key, error = %e, "read the outbox");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = token.cancelled() => break,
                }
                continue;
            }
        };
        let Some(row) = row else {
            tokio::select! {
                () = wake.notified() => {}
                () = control.notified() => {}
                () = token.cancelled() => break,
            }
            continue;
        };
        if !inner.is_current(&key, &deliver) {
            // Replaced or removed while the row was read: start the turn again.
            continue;
        }
        let now = now_ms();
        if !retry_now && row.next_attempt_ms > now {
            // A clock that jumped back must not park a row for longer than a backoff.
            let max_ms = i64::try_from(inner.opts.backoff_max.as_millis()).unwrap_or(i64::MAX);
            let wait_ms = (row.next_attempt_ms - now).min(max_ms);
            let wait = Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0));
            // Only a new integration (reload) or the shutdown cuts a backoff short;
            // wake() does not.
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = control.notified() => {}
                () = token.cancelled() => break,
            }
            if row.next_attempt_ms - now > max_ms {
                // Waited a full backoff: go.
                let _ = inner
                    .db(move |c| {
                        c.execute(
                            "UPDATE outbox SET next_attempt_ms = ?2 WHERE id = ?1",
                            params![row.id, now_ms()],
                        )
                    })
                    .await;
            }
            continue;
        }
        if let Some(id) = inner.attempt(&key, row, deliver).await {
            done.push(id);
        }
        inner.refresh_stats().await;
    }
}

fn oldest_row(c: &Connection, key: &str) -> rusqlite::Result<Option<Row>> {
    c.query_row(
        "SELECT id, receiver, notification, attempts, next_attempt_ms
         FROM outbox WHERE integration = ?1 ORDER BY id LIMIT 1",
        params![key],
        |r| {
            Ok(Row {
                id: r.get(0)?,
                receiver: r.get(1)?,
                notification: r.get(2)?,
                attempts: r.get(3)?,
                next_attempt_ms: r.get(4)?,
            })
        },
    )
    .optional()
}

fn delete_row(c: &Connection, id: i64) -> rusqlite::Result<()> {
    c.execute("DELETE FROM outbox WHERE id = ?1", params![id])
        .map(|_| ())
}

fn record_failure(
    c: &Connection,
    id: i64,
    attempts: u32,
    next_attempt_ms: i64,
    message: &str,
    reason: &str,
) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE outbox SET attempts = ?2, next_attempt_ms = ?3, last_error = ?4, last_reason = ?5
         WHERE id = ?1",
        params![id, attempts, next_attempt_ms, message, reason],
    )
    .map(|_| ())
}

/// Row count and the oldest `created_ms` (0 when empty).
fn queue_stats(c: &Connection) -> rusqlite::Result<(i64, i64)> {
    c.query_row(
        "SELECT COUNT(*), COALESCE(MIN(created_ms), 0) FROM outbox",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// `receiver` of a key `receiver/kind/i` (a receiver name may hold `/`).
fn receiver_of(key: &str) -> &str {
    let mut parts = key.rsplitn(3, '/');
    let _index = parts.next();
    let _kind = parts.next();
    parts.next().unwrap_or(key)
}

fn alert_names(n: &Notification) -> Vec<String> {
    n.alerts
        .iter()
        .map(|a| a.labels.get("alertname").cloned().unwrap_or_default())
        .collect()
}

struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A number in [0, 1) from a process-wide xorshift generator seeded by the clock and the
/// pid: enough for spreading retries.
fn random_unit() -> f64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut x = STATE.load(Ordering::Relaxed);
    if x == 0 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        x = (nanos as u64) ^ (u64::from(std::process::id()) << 32) | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// The outbox's metrics.
#[derive(Clone)]
struct Metrics {
    sent: IntCounterVec,
    queue_length: IntGauge,
    oldest_pending: Gauge,
    len: Arc<AtomicI64>,
    oldest_ms: Arc<AtomicI64>,
}

impl Metrics {
    fn new() -> Self {
        let sent = IntCounterVec::new(
            Opts::new(
                "harena_notifications_total",
                "Notification delivery attempts, by receiver and result: success, the reason of a failed attempt (timeout, refused, auth, rejected, …), and dropped once more for a notification dropped after a permanent failure.",
            ),
            &["receiver", "result"],
        )
        .expect("static metric definition is valid");
        let queue_length = IntGauge::new(
            "harena_notification_queue_length",
            "Notifications in the outbox, waiting to be accepted by their receiver.",
        )
        .expect("static metric definition is valid");
        let oldest_pending = Gauge::new(
            "harena_notification_oldest_pending_seconds",
            "Age of the oldest notification in the outbox, in seconds; 0 when it is empty.",
        )
        .expect("static metric definition is valid");
        Metrics {
            sent,
            queue_length,
            oldest_pending,
            len: Arc::new(AtomicI64::new(0)),
            oldest_ms: Arc::new(AtomicI64::new(0)),
        }
    }

    fn count(&self, receiver: &str, result: &str) {
        self.sent.with_label_values(&[receiver, result]).inc();
    }

    fn set_queue(&self, len: i64, oldest_ms: i64) {
        self.len.store(len, Ordering::Relaxed);
        self.oldest_ms.store(oldest_ms, Ordering::Relaxed);
        self.update_gauges();
    }

    fn update_gauges(&self) {
        let len = self.len.load(Ordering::Relaxed);
        let oldest = self.oldest_ms.load(Ordering::Relaxed);
        self.queue_length.set(len);
        let age_ms = if len > 0 && oldest > 0 {
            (now_ms() - oldest).max(0)
        } else {
            0
        };
        #[allow(clippy::cast_precision_loss)]
        self.oldest_pending.set(age_ms as f64 / 1000.0);
    }
}

/// The two queue gauges, brought up to date at every scrape (the oldest age grows while
/// nothing else happens).
struct QueueCollector {
    metrics: Metrics,
}

impl Collector for QueueCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.metrics.queue_length.desc();
        d.extend(self.metrics.oldest_pending.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.metrics.update_gauges();
        let mut out = self.metrics.queue_length.collect();
        out.extend(self.metrics.oldest_pending.collect());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let o = OutboxOptions {
            jitter: 0.0,
            ..OutboxOptions::default()
        };
        assert_eq!(o.backoff(1), Duration::from_secs(1));
        assert_eq!(o.backoff(2), Duration::from_secs(2));
        assert_eq!(o.backoff(3), Duration::from_secs(4));
        assert_eq!(o.backoff(9), Duration::from_secs(256));
        assert_eq!(o.backoff(10), Duration::from_secs(300));
        assert_eq!(o.backoff(1000), Duration::from_secs(300));
        let j = OutboxOptions::default();
        for _ in 0..200 {
            let d = j.backoff(3).as_secs_f64();
            assert!((3.6..=4.4).contains(&d), "{d}");
            assert!(j.backoff(40) <= Duration::from_secs(300));
        }
    }

    #[test]
    fn receiver_names_come_from_keys() {
        assert_eq!(receiver_of("team/email/0"), "team");
        assert_eq!(receiver_of("a/b/webhook/1"), "a/b");
        assert_eq!(receiver_of("odd"), "odd");
    }

    #[test]
    fn insert_creates_the_table_and_rows_read_back() {
        let state = State::in_memory().expect("state");
        let n = Notification {
            id: "n1".into(),
            receiver: "team".into(),
            group_key: "{}:{}".into(),
            group_labels: Default::default(),
            alerts: Vec::new(),
            external_url: String::new(),
            created_ms: 1,
            report: None,
        };
        let id = state
            .with_conn(|c| insert(c, "team/email/0", &n))
            .expect("insert");
        let row = state
            .with_conn(|c| oldest_row(c, "team/email/0"))
            .expect("read")
            .expect("row");
        assert_eq!(row.id, id);
        assert_eq!(row.attempts, 0);
        assert_eq!(row.receiver, "team");
        assert_eq!(
            serde_json::from_str::<Notification>(&row.notification).expect("json"),
            n
        );
        assert_eq!(state.with_conn(queue_stats).expect("stats").0, 1);
    }
}
