//! The scheduler: one loop per check, on its own interval, with a stable jitter.
//!
//! Each run is bounded by the check's timeout, isolated in its own task (a panic
//! becomes reason `internal`), never overlaps the previous run of the same check, and
//! waits for a slot of the global concurrency cap. The scheduler owns the base series
//! (`harena_probe_*`) and writes every outcome to the store and the status board.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::checks::{CheckError, Reason, Recorded, Recorder, RunContext, Vars};
use crate::config::{CheckDef, Config};
use crate::metric;
use crate::model::{Labels, MetricDesc, Sample};
use crate::store::Store;
use crate::telemetry::Telemetry;

metric!(pub PROBE_SUCCESS, gauge, "harena_probe_success", "1 when the check's last run succeeded, 0 when it failed.");
metric!(pub PROBE_DURATION, gauge, "harena_probe_duration_seconds", "How long the check's last run took, in seconds.");
metric!(pub PROBE_LAST_RUN, gauge, "harena_probe_last_run_timestamp_seconds", "When the check's last run ended, as a Unix timestamp.");
metric!(pub PROBE_FAILURES, counter, "harena_probe_failures_total", "Failed runs of the check since the exporter started, by reason.");
metric!(pub PROBE_FAILURE_REASON, gauge, "harena_probe_failure_reason", "1 for the reason of the check's current failure; absent while the check succeeds.");
metric!(pub PROBE_DEPENDENCY_FAILED, gauge, "harena_probe_dependency_failed", "1 while a check this one depends on (directly or not) is failing.");
metric!(pub PROBE_INTERVAL, gauge, "harena_probe_interval_seconds", "The check's configured interval, in seconds.");

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The result of one run.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// True when the target is healthy.
    pub success: bool,
    /// Wall time of the run.
    pub duration: Duration,
    /// Why it failed.
    pub error: Option<CheckError>,
    /// The kind's own samples (without the base series).
    pub samples: Vec<Sample>,
    /// A short summary of a successful run.
    pub detail: Option<String>,
    /// Values exported for other checks.
    pub exports: BTreeMap<String, String>,
}

/// What every run shares: exported values and the state file.
#[derive(Debug, Clone)]
pub struct Env {
    /// `{check.key}` values.
    pub vars: Arc<Vars>,
    /// The state file.
    pub state: Arc<crate::state::State>,
}

impl Env {
    /// An environment with in-memory state (one-shot commands, tests).
    ///
    /// # Errors
    /// SQLite cannot start.
    pub fn in_memory() -> Result<Self, crate::state::StateError> {
        Ok(Env {
            vars: Arc::new(Vars::default()),
            state: Arc::new(crate::state::State::in_memory()?),
        })
    }
}

/// Base labels of a check's series: `check`, `kind`, then global and own labels.
pub fn base_labels(def: &CheckDef, global: &BTreeMap<String, String>) -> Labels {
    let mut l = Labels::from_pairs(global.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    for (k, v) in &def.config.labels {
        l.set(k.as_str(), v.as_str());
    }
    l.set("check", def.config.name.as_str());
    l.set("kind", def.config.spec.kind());
    l
}

/// Runs a check once, bounded by its timeout, with panics caught.
pub async fn run_once(def: &CheckDef, base: Labels, env: &Env) -> Outcome {
    let started = Instant::now();
    let deadline = started + def.config.timeout;
    let check = Arc::clone(&def.check);
    let ctx = RunContext {
        deadline,
        check: def.config.name.clone(),
        vars: Arc::clone(&env.vars),
        state: Arc::clone(&env.state),
    };
    let run = isolated(deadline, def.config.timeout, async move {
        let mut rec = Recorder::new(base);
        let res = check.run(&ctx, &mut rec).await;
        (res, rec.finish())
    });
    let (result, recorded) = match run.await {
        Ok((res, recorded)) => (res, recorded),
        Err(e) => (Err(e), Recorded::default()),
    };
    Outcome {
        success: result.is_ok(),
        duration: started.elapsed(),
        error: result.err(),
        samples: recorded.samples,
        detail: recorded.detail,
        exports: recorded.exports,
    }
}

/// Runs `fut` in its own task, so that a panic is caught (reason `internal`) and a
/// hang is aborted at `deadline` (reason `timeout`).
///
/// # Errors
/// The panic or the timeout.
pub async fn isolated<T: Send + 'static>(
    deadline: Instant,
    timeout: Duration,
    fut: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, CheckError> {
    let handle = tokio::spawn(fut);
    let abort = handle.abort_handle();
    match tokio::time::timeout_at(deadline, handle).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(join)) => {
            let msg = if join.is_panic() {
                let p = join.into_panic();
                let text = p
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                format!("check panicked: {text}")
            } else {
                "check task was cancelled".to_string()
            };
            Err(CheckError::new(Reason::Internal, msg))
        }
        Err(_) => {
            abort.abort();
            Err(CheckError::new(
                Reason::Timeout,
                format!(
                    "timed out after {}",
                    crate::config::types::PromDuration(timeout)
                ),
            ))
        }
    }
}

/// What the status page, the API and `check` show of one check.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CheckStatus {
    /// Check name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Target (URL or address; never a secret).
    pub target: String,
    /// The check's labels.
    pub labels: BTreeMap<String, String>,
    /// Checks it depends on.
    pub depends_on: Vec<String>,
    /// `None` before the first run.
    pub success: Option<bool>,
    /// Reason of the current failure.
    pub reason: Option<&'static str>,
    /// Error detail or success summary.
    pub detail: Option<String>,
    /// Duration of the last run, seconds.
    pub duration_seconds: f64,
    /// End of the last run, ms since the epoch.
    pub last_run_ms: Option<i64>,
    /// When `success` last changed, ms since the epoch.
    pub last_change_ms: Option<i64>,
    /// Failing checks (root causes) this one depends on, directly or not.
    pub blocked_by: Vec<String>,
    /// Runs so far.
    pub runs: u64,
}

/// Latest state of every check, shared by the scheduler and the readers.
#[derive(Debug, Default)]
pub struct StatusBoard {
    inner: RwLock<BTreeMap<String, CheckStatus>>,
    history: std::sync::OnceLock<Arc<crate::history::History>>,
}

impl StatusBoard {
    /// A snapshot of every check, by name.
    pub fn snapshot(&self) -> Vec<CheckStatus> {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Sends every run to `history` from now on (once; later calls are ignored).
    pub fn set_history(&self, history: Arc<crate::history::History>) {
        let _ = self.history.set(history);
    }

    /// One check.
    pub fn get(&self, name: &str) -> Option<CheckStatus> {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Replaces the set of checks: keeps the state of those still present.
    fn sync(&self, defs: &[CheckDef]) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let mut next = BTreeMap::new();
        for d in defs {
            let c = &d.config;
            let mut st = inner.remove(&c.name).unwrap_or_else(|| CheckStatus {
                name: c.name.clone(),
                kind: c.spec.kind().to_string(),
                target: String::new(),
                labels: BTreeMap::new(),
                depends_on: Vec::new(),
                success: None,
                reason: None,
                detail: None,
                duration_seconds: 0.0,
                last_run_ms: None,
                last_change_ms: None,
                blocked_by: Vec::new(),
                runs: 0,
            });
            st.kind = c.spec.kind().to_string();
            st.target = d.check.target();
            st.labels = c.labels.clone();
            st.depends_on = c.depends_on.clone();
            next.insert(c.name.clone(), st);
        }
        *inner = next;
        recompute_blocked(&mut inner);
    }

    /// Records an outcome; returns whether the success state changed.
    fn record(&self, name: &str, outcome: &Outcome, ts_ms: i64) -> bool {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let Some(st) = inner.get_mut(name) else {
            return false;
        };
        let changed = st.success != Some(outcome.success);
        if changed {
            st.last_change_ms = Some(ts_ms);
        }
        st.success = Some(outcome.success);
        st.reason = outcome.error.as_ref().map(|e| e.reason.as_str());
        st.detail = outcome
            .error
            .as_ref()
            .map(|e| e.detail.clone())
            .or_else(|| outcome.detail.clone());
        st.duration_seconds = outcome.duration.as_secs_f64();
        st.last_run_ms = Some(ts_ms);
        st.runs += 1;
        if let Some(h) = self.history.get() {
            h.record(crate::history::Run {
                check: name.to_string(),
                ts_ms,
                success: outcome.success,
                reason: st.reason.unwrap_or_default().to_string(),
                detail: st.detail.clone().unwrap_or_default(),
                duration_seconds: st.duration_seconds,
            });
        }
        if changed {
            recompute_blocked(&mut inner);
        }
        changed
    }
}

/// For each check, the failing checks at the root of its dependency chain.
fn recompute_blocked(all: &mut BTreeMap<String, CheckStatus>) {
    let failing: HashMap<String, bool> = all
        .iter()
        .map(|(k, v)| (k.clone(), v.success == Some(false)))
        .collect();
    let deps: HashMap<String, Vec<String>> = all
        .iter()
        .map(|(k, v)| (k.clone(), v.depends_on.clone()))
        .collect();
    for (name, st) in all.iter_mut() {
        let mut roots = Vec::new();
        let mut seen = vec![name.clone()];
        let mut stack: Vec<String> = deps.get(name).cloned().unwrap_or_default();
        while let Some(d) = stack.pop() {
            if seen.contains(&d) {
                continue;
            }
            seen.push(d.clone());
            let below: Vec<String> = deps.get(&d).cloned().unwrap_or_default();
            let below_failing = below
                .iter()
                .any(|b| failing.get(b).copied().unwrap_or(false));
            if failing.get(&d).copied().unwrap_or(false) && !below_failing {
                roots.push(d.clone());
            }
            stack.extend(below);
        }
        roots.sort();
        st.blocked_by = roots;
    }
}

/// Stable offset of a check's slots inside its interval: FNV-1a of its name.
pub fn jitter(name: &str, interval: Duration) -> Duration {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let ms = u64::try_from(interval.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_millis(h % ms)
}

struct Running {
    def: CheckDef,
    global_labels: BTreeMap<String, String>,
    token: CancellationToken,
}

/// Runs every configured check and applies reloads.
pub struct Scheduler {
    store: Arc<Store>,
    board: Arc<StatusBoard>,
    telemetry: Arc<Telemetry>,
    semaphore: Arc<Semaphore>,
    max_concurrent: usize,
    running: HashMap<String, Running>,
    root: CancellationToken,
    tracker: TaskTracker,
    dep_bases: DependencyBases,
    env: Env,
}

impl Scheduler {
    /// A scheduler with no check yet.
    pub fn new(
        store: Arc<Store>,
        board: Arc<StatusBoard>,
        telemetry: Arc<Telemetry>,
        env: Env,
        root: CancellationToken,
    ) -> Self {
        Scheduler {
            store,
            board,
            telemetry,
            semaphore: Arc::new(Semaphore::new(256)),
            max_concurrent: 256,
            running: HashMap::new(),
            root,
            tracker: TaskTracker::new(),
            dep_bases: DependencyBases::default(),
            env,
        }
    }

    /// Makes the running set match `config`: unchanged checks keep their state and
    /// schedule; changed ones restart; removed ones stop and their series go stale.
    pub fn apply(&mut self, config: &Config) {
        if config.global.max_concurrent_checks != self.max_concurrent {
            // Running checks keep their permits on the old semaphore until they finish.
            self.max_concurrent = config.global.max_concurrent_checks.max(1);
            self.semaphore = Arc::new(Semaphore::new(self.max_concurrent));
            for (_, r) in self.running.drain() {
                r.token.cancel();
            }
        }
        let wanted: HashMap<&str, &CheckDef> = config
            .checks
            .iter()
            .map(|d| (d.config.name.as_str(), d))
            .collect();
        let ts = now_ms();
        let names: Vec<String> = self.running.keys().cloned().collect();
        for name in names {
            let keep = match (wanted.get(name.as_str()), self.running.get(&name)) {
                (Some(d), Some(r)) => {
                    d.config == r.def.config && r.global_labels == config.global.labels
                }
                _ => false,
            };
            if !keep && let Some(r) = self.running.remove(&name) {
                r.token.cancel();
                if !wanted.contains_key(name.as_str()) {
                    self.env.vars.remove(&name);
                    self.store.remove_owner(&name, ts);
                    self.store.remove_owner(&deps_owner(&name), ts);
                }
            }
        }
        self.board.sync(&config.checks);
        for def in &config.checks {
            if self.running.contains_key(&def.config.name) {
                continue;
            }
            let token = self.root.child_token();
            let task = CheckTask {
                def: def.clone(),
                base: base_labels(def, &config.global.labels),
                store: Arc::clone(&self.store),
                board: Arc::clone(&self.board),
                telemetry: Arc::clone(&self.telemetry),
                semaphore: Arc::clone(&self.semaphore),
                token: token.clone(),
                dep_bases: Arc::clone(&self.dep_bases),
                env: self.env.clone(),
            };
            let span = tracing::info_span!("check", check = %def.config.name, kind = def.config.spec.kind());
            self.tracker.spawn(task.run().instrument(span));
            self.running.insert(
                def.config.name.clone(),
                Running {
                    def: def.clone(),
                    global_labels: config.global.labels.clone(),
                    token,
                },
            );
        }
        publish_dependency_flags(&self.store, &self.board, config);
        *self.dep_bases.write().unwrap_or_else(|e| e.into_inner()) = config
            .checks
            .iter()
            .map(|d| (d.config.name.clone(), base_labels(d, &config.global.labels)))
            .collect();
    }

    /// Stops every loop and waits for runs in flight to end.
    pub async fn shutdown(self) {
        self.root.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Base labels of each check, for republishing dependency flags from any check's task.
type DependencyBases = Arc<RwLock<HashMap<String, Labels>>>;

fn deps_owner(name: &str) -> String {
    format!("{name}\u{0}deps")
}

fn publish_dependency_flags(store: &Store, board: &StatusBoard, config: &Config) {
    let ts = now_ms();
    for def in &config.checks {
        let base = base_labels(def, &config.global.labels);
        publish_dependency_flag(store, board, &def.config.name, &base, ts);
    }
}

fn publish_dependency_flag(store: &Store, board: &StatusBoard, name: &str, base: &Labels, ts: i64) {
    let blocked = board.get(name).is_some_and(|s| !s.blocked_by.is_empty());
    store.publish(
        &deps_owner(name),
        ts,
        vec![Sample {
            desc: Arc::clone(&PROBE_DEPENDENCY_FAILED),
            labels: base.clone(),
            value: if blocked { 1.0 } else { 0.0 },
        }],
    );
}

struct CheckTask {
    def: CheckDef,
    base: Labels,
    store: Arc<Store>,
    board: Arc<StatusBoard>,
    telemetry: Arc<Telemetry>,
    semaphore: Arc<Semaphore>,
    token: CancellationToken,
    dep_bases: DependencyBases,
    env: Env,
}

impl CheckTask {
    async fn run(self) {
        let interval = self.def.config.interval;
        let mut failures: BTreeMap<Reason, u64> = Reason::ALL.iter().map(|r| (*r, 0)).collect();
        // The first run comes within two seconds of the start, so that a fresh exporter
        // has data at once; slots then follow every `interval` from there.
        let first = jitter(&self.def.config.name, interval.min(Duration::from_secs(2)));
        let mut next = Instant::now() + first;
        let mut last_success: Option<bool> = None;
        loop {
            tokio::select! {
                () = self.token.cancelled() => return,
                () = tokio::time::sleep_until(next) => {}
            }
            let permit = tokio::select! {
                () = self.token.cancelled() => return,
                p = Arc::clone(&self.semaphore).acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            let delay = Instant::now().saturating_duration_since(next);
            self.telemetry.observe_schedule_delay(delay);
            let outcome = tokio::select! {
                () = self.token.cancelled() => return,
                o = run_once(&self.def, self.base.clone(), &self.env) => o,
            };
            self.env.vars.merge(&self.def.config.name, &outcome.exports);
            drop(permit);
            let ts = now_ms();
            if let Some(e) = &outcome.error {
                *failures.entry(e.reason).or_insert(0) += 1;
            }
            self.log_outcome(&outcome, last_success);
            last_success = Some(outcome.success);
            let samples = self.base_samples(&outcome, &failures, ts);
            self.store.publish(&self.def.config.name, ts, samples);
            if self.board.record(&self.def.config.name, &outcome, ts) {
                // A state change may block or unblock the checks that depend on this one.
                let bases = self
                    .dep_bases
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                for (name, base) in &bases {
                    publish_dependency_flag(&self.store, &self.board, name, base, ts);
                }
            }
            // Skip the slots a long run overlapped: a run never overlaps the previous one.
            next += interval;
            let now = Instant::now();
            while next <= now {
                next += interval;
            }
        }
    }

    fn log_outcome(&self, outcome: &Outcome, last: Option<bool>) {
        let name = &self.def.config.name;
        match (&outcome.error, last) {
            (None, Some(false)) => tracing::info!(check = %name, "check recovered"),
            (None, None) => tracing::debug!(check = %name, "check ok"),
            (None, Some(true)) => {}
            (Some(e), Some(false)) => {
                tracing::debug!(check = %name, reason = e.reason.as_str(), detail = %e.detail, "check failed")
            }
            (Some(e), _) => {
                tracing::info!(check = %name, reason = e.reason.as_str(), detail = %e.detail, "check failing")
            }
        }
    }

    fn base_samples(
        &self,
        outcome: &Outcome,
        failures: &BTreeMap<Reason, u64>,
        ts_ms: i64,
    ) -> Vec<Sample> {
        let mut out = Vec::with_capacity(outcome.samples.len() + 20);
        let s = |desc: &Arc<MetricDesc>, labels: Labels, value: f64| Sample {
            desc: Arc::clone(desc),
            labels,
            value,
        };
        out.push(s(
            &PROBE_SUCCESS,
            self.base.clone(),
            if outcome.success { 1.0 } else { 0.0 },
        ));
        out.push(s(
            &PROBE_DURATION,
            self.base.clone(),
            outcome.duration.as_secs_f64(),
        ));
        out.push(s(&PROBE_LAST_RUN, self.base.clone(), ts_ms as f64 / 1000.0));
        out.push(s(
            &PROBE_INTERVAL,
            self.base.clone(),
            self.def.config.interval.as_secs_f64(),
        ));
        for (reason, n) in failures {
            out.push(s(
                &PROBE_FAILURES,
                self.base.clone().with("reason", reason.as_str()),
                *n as f64,
            ));
        }
        if let Some(e) = &outcome.error {
            out.push(s(
                &PROBE_FAILURE_REASON,
                self.base.clone().with("reason", e.reason.as_str()),
                1.0,
            ));
        }
        out.extend(outcome.samples.iter().cloned());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_internal_and_a_hang_a_timeout() {
        let d = Duration::from_millis(200);
        let e = isolated(Instant::now() + d, d, async { panic!("boom") })
            .await
            .expect_err("the panic is caught");
        assert_eq!(e.reason, Reason::Internal);
        assert_eq!(e.detail, "check panicked: boom");
        let started = Instant::now();
        let e = isolated(Instant::now() + d, d, std::future::pending::<()>())
            .await
            .expect_err("the hang is cut");
        assert_eq!(e.reason, Reason::Timeout);
        assert!(started.elapsed() < Duration::from_millis(400));
        assert_eq!(isolated(Instant::now() + d, d, async { 7 }).await, Ok(7));
    }

    #[test]
    fn jitter_is_stable_and_inside_the_interval() {
        let i = Duration::from_secs(15);
        assert_eq!(jitter("nginx", i), jitter("nginx", i));
        assert!(jitter("nginx", i) < i);
        assert_ne!(jitter("nginx", i), jitter("redis", i));
    }

    fn st(name: &str, deps: &[&str], success: Option<bool>) -> (String, CheckStatus) {
        (
            name.to_string(),
            CheckStatus {
                name: name.into(),
                kind: "http".into(),
                target: String::new(),
                labels: BTreeMap::new(),
                depends_on: deps.iter().map(|s| s.to_string()).collect(),
                success,
                reason: None,
                detail: None,
                duration_seconds: 0.0,
                last_run_ms: None,
                last_change_ms: None,
                blocked_by: Vec::new(),
                runs: 0,
            },
        )
    }

    #[test]
    fn blocked_by_names_the_root_cause() {
        let mut all: BTreeMap<String, CheckStatus> = [
            st("postgres", &[], Some(false)),
            st("user_service", &["postgres", "redis"], Some(false)),
            st("redis", &[], Some(true)),
            st("nginx", &["user_service"], Some(false)),
            st("public_site", &["nginx"], Some(true)),
        ]
        .into_iter()
        .collect();
        recompute_blocked(&mut all);
        assert_eq!(all["user_service"].blocked_by, vec!["postgres"]);
        assert_eq!(all["nginx"].blocked_by, vec!["postgres"]);
        assert_eq!(all["public_site"].blocked_by, vec!["postgres"]);
        assert!(all["postgres"].blocked_by.is_empty());
        assert!(all["redis"].blocked_by.is_empty());
    }
}
