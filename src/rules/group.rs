//! Rule groups: evaluation (shared by the running exporter and `test-rules`) and the
//! per-group loops of the [`RuleEngine`].
//!
//! A group evaluates its rules in order at one timestamp. A recording rule's result is
//! written at once, so later rules of the group read it; an alerting rule updates its
//! alerts and writes `ALERTS` / `ALERTS_FOR_STATE`. A rule that fails (an evaluation
//! error, a duplicate label set, its `limit`) writes nothing, counts one failure and does
//! not stop the others.
//!
//! In the exporter each group runs on its own loop, at `interval` (default: the global
//! evaluation interval, 1 minute) on slots aligned to a stable per-group offset, as
//! Prometheus does. Results go to the sample store under the owner `rules/<group>/<index>`
//! (so they show on `/metrics` and a rule that stops returning a series marks it stale),
//! with `harena_rule_evaluation_duration_seconds{group}`,
//! `harena_rule_evaluation_failures_total{group}` and
//! `harena_rule_group_last_evaluation_timestamp_seconds{group}` under
//! `rules/<group>/meta`. After each evaluation the group's alerts are published for
//! [`RuleEngine::active_alerts`] and, when they changed, saved to the state file
//! (`persist.rs`).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::model::{Labels, MetricDesc, MetricKind, Sample as StoreSample};
use crate::rules::alerting::{
    ALERTS_FOR_STATE_METRIC, ALERTS_METRIC, Alert, AlertState, AlertingRule,
};
use crate::rules::files::{GroupSpec, Groups, RecordingSpec, RuleSpec};
use crate::rules::persist::{self, SavedAlert};
use crate::rules::promql::{self, EvalError, EvalOptions, Sample, Value};
use crate::rules::storage::Storage;
use crate::state::State;
use crate::store::Store;

/// Default evaluation interval of a group without `interval:` (Prometheus's default).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);

/// Default outage tolerance for restoring pending alerts (Prometheus's
/// `--rules.alert.for-outage-tolerance`).
pub const DEFAULT_OUTAGE_TOLERANCE: Duration = Duration::from_secs(3600);

/// Wall-clock time of the rule loops, injectable for tests.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        crate::scheduler::now_ms()
    }
}

/// A clock that follows tokio's (pausable) time from a starting wall time: with
/// `#[tokio::test(start_paused = true)]` the loops run in virtual time.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    base_ms: i64,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// Starts at `base_ms` now.
    pub fn starting_at(base_ms: i64) -> Self {
        TokioClock {
            base_ms,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.start.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.base_ms.saturating_add(elapsed)
    }
}

/// Settings of the rule engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Interval of groups without their own (and the default step of subqueries).
    pub default_interval: Duration,
    /// `$externalLabels` in templates.
    pub external_labels: BTreeMap<String, String>,
    /// `$externalURL` in templates.
    pub external_url: String,
    /// A pending alert saved longer ago than this starts over after a restart.
    pub for_outage_tolerance: Duration,
    /// Wall-clock time.
    pub clock: Arc<dyn Clock>,
    /// Run each group on its interval (`true`); `false` evaluates only through
    /// [`RuleEngine::evaluate_once`] (one-shot tools, tests).
    pub evaluate_on_schedule: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            default_interval: DEFAULT_INTERVAL,
            external_labels: BTreeMap::new(),
            external_url: String::new(),
            for_outage_tolerance: DEFAULT_OUTAGE_TOLERANCE,
            clock: Arc::new(SystemClock),
            evaluate_on_schedule: true,
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

// ---------------------------------------------------------------------------------------------
// One group's evaluation
// ---------------------------------------------------------------------------------------------

/// Where a group reads series and writes its results.
pub trait RuleBackend {
    /// What expressions read.
    fn storage(&self) -> &dyn Storage;
    /// Writes the whole output of rule `rule_index` at `ts_ms` (labels with `__name__`);
    /// a series the rule wrote last time and not now must end (a staleness marker).
    fn write(&mut self, rule_index: usize, ts_ms: i64, samples: Vec<(Labels, f64)>);
}

/// A rule that failed one evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFailure {
    /// Index of the rule in its group.
    pub index: usize,
    /// Its name.
    pub rule: String,
    /// The error, as Prometheus words it.
    pub error: String,
}

#[derive(Debug, Clone)]
enum RuntimeRule {
    Recording(RecordingSpec),
    Alerting(AlertingRule),
}

/// A group with the state of its alerting rules.
#[derive(Debug, Clone)]
pub struct GroupRuntime {
    id: String,
    name: String,
    file: String,
    interval: Duration,
    limit: usize,
    rules: Vec<RuntimeRule>,
    failures_total: u64,
    /// What was last saved to the state file (to skip unchanged saves).
    saved: Option<Vec<PersistKey>>,
}

type PersistKey = (
    usize,
    Labels,
    AlertState,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

impl GroupRuntime {
    /// A group ready to evaluate; `id` names it in metrics, owners and the state file
    /// (its name, unless another file has a group of the same name).
    pub fn new(spec: &GroupSpec, id: &str, opts: &EngineOptions) -> Self {
        let rules = spec
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| match r {
                RuleSpec::Recording(r) => RuntimeRule::Recording(r.clone()),
                RuleSpec::Alerting(a) => RuntimeRule::Alerting(AlertingRule::new(
                    a.clone(),
                    id,
                    i,
                    opts.external_labels.clone(),
                    opts.external_url.clone(),
                )),
            })
            .collect();
        GroupRuntime {
            id: id.to_string(),
            name: spec.name.clone(),
            file: spec.file.clone(),
            interval: spec.interval.unwrap_or(opts.default_interval),
            limit: spec.limit,
            rules,
            failures_total: 0,
            saved: None,
        }
    }

    /// The group's id (see [`GroupRuntime::new`]).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file the group comes from.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Its evaluation interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when the group has no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Failed rule evaluations since the group was loaded.
    pub fn failures_total(&self) -> u64 {
        self.failures_total
    }

    /// The alerting rules with their index.
    pub fn alerting_rules(&self) -> impl Iterator<Item = (usize, &AlertingRule)> {
        self.rules.iter().enumerate().filter_map(|(i, r)| match r {
            RuntimeRule::Alerting(a) => Some((i, a)),
            RuntimeRule::Recording(_) => None,
        })
    }

    /// Every alert held (pending, firing, resolved within 15 minutes).
    pub fn alerts(&self) -> Vec<Alert> {
        self.alerting_rules()
            .flat_map(|(_, r)| r.alerts())
            .collect()
    }

    /// Evaluates every rule at `ts_ms`, in order.
    pub fn eval(
        &mut self,
        ts_ms: i64,
        backend: &mut dyn RuleBackend,
        opts: EvalOptions,
    ) -> Vec<RuleFailure> {
        let mut failures = Vec::new();
        let limit = self.limit;
        for (index, rule) in self.rules.iter_mut().enumerate() {
            let (name, expr) = match rule {
                RuntimeRule::Recording(r) => (r.record.clone(), Arc::clone(&r.expr)),
                RuntimeRule::Alerting(a) => (a.name().to_string(), Arc::clone(&a.spec().expr)),
            };
            let result = promql::eval_instant_with(&expr, ts_ms, backend.storage(), opts)
                .and_then(into_vector);
            let output = result.and_then(|vector| match rule {
                RuntimeRule::Recording(r) => record(r, vector, limit),
                RuntimeRule::Alerting(a) => a.eval(ts_ms, &vector, limit),
            });
            match output {
                Ok(samples) => backend.write(index, ts_ms, samples),
                Err(e) => {
                    self.failures_total += 1;
                    failures.push(RuleFailure {
                        index,
                        rule: name,
                        error: e.0,
                    });
                }
            }
        }
        failures
    }

    /// Takes the alerts of `old` (the same group before a reload): each alerting rule
    /// gets those of the old rule with its name at its index, else of the first old rule
    /// with its name not yet taken.
    pub fn take_state_from(&mut self, old: &GroupRuntime) {
        self.failures_total = old.failures_total;
        let mut taken: HashSet<usize> = HashSet::new();
        let old_rules: Vec<(usize, &AlertingRule)> = old.alerting_rules().collect();
        for (i, rule) in self.rules.iter_mut().enumerate() {
            let RuntimeRule::Alerting(new) = rule else {
                continue;
            };
            let same =
                |(j, r): &&(usize, &AlertingRule)| r.name() == new.name() && !taken.contains(j);
            let pick = old_rules
                .iter()
                .filter(same)
                .find(|(j, _)| *j == i)
                .or_else(|| old_rules.iter().find(same));
            if let Some((j, r)) = pick {
                taken.insert(*j);
                new.restore(r.alerts());
            }
        }
    }

    /// Restores alerts saved in the state file for this group. Pending alerts saved
    /// more than `tolerance_ms` before `now_ms` are dropped (their `for` starts over).
    pub fn restore(&mut self, saved: Vec<SavedAlert>, now_ms: i64, tolerance_ms: i64) {
        let mut per_rule: BTreeMap<usize, Vec<Alert>> = BTreeMap::new();
        for s in saved {
            if s.alert.state == AlertState::Pending && now_ms - s.saved_ms > tolerance_ms {
                continue;
            }
            let name = s.alert.labels.get("alertname").unwrap_or("").to_string();
            let at_index = match self.rules.get(s.alert.rule_index) {
                Some(RuntimeRule::Alerting(a)) if a.name() == name => Some(s.alert.rule_index),
                _ => None,
            };
            let target = at_index.or_else(|| {
                self.rules
                    .iter()
                    .position(|r| matches!(r, RuntimeRule::Alerting(a) if a.name() == name))
            });
            if let Some(i) = target {
                per_rule.entry(i).or_default().push(s.alert);
            }
        }
        for (i, alerts) in per_rule {
            if let Some(RuntimeRule::Alerting(a)) = self.rules.get_mut(i) {
                a.restore(alerts);
            }
        }
    }

    /// The alerts to save, when they changed since the last call that returned some.
    fn alerts_to_save(&mut self) -> Option<Vec<Alert>> {
        let alerts = self.alerts();
        let key: Vec<PersistKey> = alerts
            .iter()
            .map(|a| {
                (
                    a.rule_index,
                    a.labels.clone(),
                    a.state,
                    a.active_at_ms,
                    a.fired_at_ms,
                    a.resolved_at_ms,
                    a.keep_firing_since_ms,
                )
            })
            .collect();
        if self.saved.as_ref() == Some(&key) {
            return None;
        }
        self.saved = Some(key);
        Some(alerts)
    }
}

/// A vector or a scalar as a vector (a scalar is one sample with no label), as
/// Prometheus's rule query function does.
fn into_vector(v: Value) -> Result<Vec<Sample>, EvalError> {
    match v {
        Value::Vector(v) => Ok(v),
        Value::Scalar(x) => Ok(vec![Sample {
            labels: Labels::new(),
            value: x,
        }]),
        Value::String(_) | Value::Matrix(_) => Err(EvalError(
            "rule result is not a vector or scalar".to_string(),
        )),
    }
}

/// A recording rule's output: the result renamed, with the rule's labels.
fn record(
    spec: &RecordingSpec,
    vector: Vec<Sample>,
    limit: usize,
) -> Result<Vec<(Labels, f64)>, EvalError> {
    let mut seen: HashSet<Labels> = HashSet::with_capacity(vector.len());
    let mut out = Vec::with_capacity(vector.len());
    for s in vector {
        let mut labels = s.labels;
        labels.set("__name__", spec.record.clone());
        for (k, v) in &spec.labels {
            if v.is_empty() {
                labels.remove(k);
            } else {
                labels.set(k.clone(), v.clone());
            }
        }
        if !seen.insert(labels.clone()) {
            return Err(EvalError(
                "vector contains metrics with the same labelset after applying rule labels"
                    .to_string(),
            ));
        }
        out.push((labels, s.value));
    }
    if limit > 0 && out.len() > limit {
        return Err(EvalError(format!(
            "exceeded limit of {limit} with {} series",
            out.len()
        )));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The store as a backend
// ---------------------------------------------------------------------------------------------

static ALERTS_DESC: LazyLock<Arc<MetricDesc>> = LazyLock::new(|| {
    Arc::new(MetricDesc::gauge(
        ALERTS_METRIC,
        "Pending and firing alerts of the alerting rules (1 per alert), as Prometheus writes them.",
    ))
});
static ALERTS_FOR_STATE_DESC: LazyLock<Arc<MetricDesc>> = LazyLock::new(|| {
    Arc::new(MetricDesc::gauge(
        ALERTS_FOR_STATE_METRIC,
        "When each pending or firing alert became active, as a Unix timestamp.",
    ))
});
static EVAL_DURATION: LazyLock<Arc<MetricDesc>> = LazyLock::new(|| {
    Arc::new(MetricDesc::gauge(
        "harena_rule_evaluation_duration_seconds",
        "How long the last evaluation of the rule group took, in seconds.",
    ))
});
static EVAL_FAILURES: LazyLock<Arc<MetricDesc>> = LazyLock::new(|| {
    Arc::new(MetricDesc::counter(
        "harena_rule_evaluation_failures_total",
        "Rule evaluations of the group that failed, since the rules were loaded.",
    ))
});
static LAST_EVAL: LazyLock<Arc<MetricDesc>> = LazyLock::new(|| {
    Arc::new(MetricDesc::gauge(
        "harena_rule_group_last_evaluation_timestamp_seconds",
        "When the rule group was last evaluated, as a Unix timestamp.",
    ))
});

/// Owner name of a rule's series in the store.
pub fn rule_owner(group_id: &str, index: usize) -> String {
    format!("rules/{group_id}/{index}")
}

/// Owner name of a group's own metrics in the store.
pub fn meta_owner(group_id: &str) -> String {
    format!("rules/{group_id}/meta")
}

/// Writes rule results into the [`Store`].
struct StoreBackend<'a> {
    store: &'a Store,
    group_id: &'a str,
    descs: HashMap<String, Arc<MetricDesc>>,
}

impl StoreBackend<'_> {
    fn desc(&mut self, name: &str) -> Arc<MetricDesc> {
        match name {
            ALERTS_METRIC => return Arc::clone(&ALERTS_DESC),
            ALERTS_FOR_STATE_METRIC => return Arc::clone(&ALERTS_FOR_STATE_DESC),
            _ => {}
        }
        let group = self.group_id;
        Arc::clone(self.descs.entry(name.to_string()).or_insert_with(|| {
            Arc::new(MetricDesc {
                name: Cow::Owned(name.to_string()),
                help: Cow::Owned(format!("Recording rule {name} of rule group {group}.")),
                kind: MetricKind::Gauge,
            })
        }))
    }
}

impl RuleBackend for StoreBackend<'_> {
    fn storage(&self) -> &dyn Storage {
        self.store
    }

    fn write(&mut self, rule_index: usize, ts_ms: i64, samples: Vec<(Labels, f64)>) {
        let samples = samples
            .into_iter()
            .map(|(mut labels, value)| {
                let name = labels.remove("__name__").unwrap_or_default();
                StoreSample {
                    desc: self.desc(&name),
                    labels,
                    value,
                }
            })
            .collect();
        self.store
            .publish(&rule_owner(self.group_id, rule_index), ts_ms, samples);
    }
}

// ---------------------------------------------------------------------------------------------
// The engine
// ---------------------------------------------------------------------------------------------

struct Shared {
    store: Arc<Store>,
    state: Arc<State>,
    opts: RwLock<EngineOptions>,
    /// Alerts of every group after its last evaluation, by group id.
    alerts: RwLock<BTreeMap<String, Vec<Alert>>>,
    last_gc_ms: AtomicI64,
}

impl Shared {
    fn opts(&self) -> EngineOptions {
        self.opts.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn now_ms(&self) -> i64 {
        self.opts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clock
            .now_ms()
    }

    fn eval_options(&self) -> EvalOptions {
        let interval = self
            .opts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .default_interval;
        EvalOptions {
            default_subquery_step_ms: ms(interval).max(1),
            ..EvalOptions::default()
        }
    }

    fn set_alerts(&self, group: &str, alerts: Vec<Alert>) {
        let mut map = self.alerts.write().unwrap_or_else(|e| e.into_inner());
        map.insert(group.to_string(), alerts);
    }

    /// One evaluation of one group at `ts_ms` (blocking: run on the blocking pool).
    fn evaluate(
        &self,
        runtime: &tokio::sync::Mutex<GroupRuntime>,
        token: &CancellationToken,
        ts_ms: i64,
    ) {
        let mut g = runtime.blocking_lock();
        // A reload may have replaced this group while we waited for it.
        if token.is_cancelled() {
            return;
        }
        let started = std::time::Instant::now();
        let id = g.id.clone();
        let mut backend = StoreBackend {
            store: &self.store,
            group_id: &id,
            descs: HashMap::new(),
        };
        let failures = g.eval(ts_ms, &mut backend, self.eval_options());
        for f in &failures {
            tracing::warn!(group = %g.id, rule = %f.rule, index = f.index, error = %f.error, "rule evaluation failed");
        }
        let group_labels = Labels::from_pairs([("group", g.id.as_str())]);
        let meta = vec![
            StoreSample {
                desc: Arc::clone(&EVAL_DURATION),
                labels: group_labels.clone(),
                value: started.elapsed().as_secs_f64(),
            },
            StoreSample {
                desc: Arc::clone(&EVAL_FAILURES),
                labels: group_labels.clone(),
                value: g.failures_total as f64,
            },
            StoreSample {
                desc: Arc::clone(&LAST_EVAL),
                labels: group_labels,
                value: ts_ms as f64 / 1000.0,
            },
        ];
        self.store.publish(&meta_owner(&g.id), ts_ms, meta);
        self.set_alerts(&g.id, g.alerts());
        if let Some(alerts) = g.alerts_to_save()
            && let Err(e) = persist::save_group(&self.state, &g.id, &alerts, self.now_ms())
        {
            // Our own fault (disk full, file removed): alert state would not survive a restart.
            tracing::error!(group = %g.id, error = %e, "save alert states");
            g.saved = None;
        }
        let last = self.last_gc_ms.load(Ordering::Relaxed);
        if ts_ms - last >= 60_000 {
            self.last_gc_ms.store(ts_ms, Ordering::Relaxed);
            self.store.gc(ts_ms);
        }
    }
}

struct RunningGroup {
    runtime: Arc<tokio::sync::Mutex<GroupRuntime>>,
    token: CancellationToken,
    rules: usize,
}

/// A read-only view of the engine's alerts, cheap to clone (for the web pages and the
/// notifier).
#[derive(Clone)]
pub struct AlertsView(Arc<Shared>);

impl std::fmt::Debug for AlertsView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AlertsView")
    }
}

impl AlertsView {
    /// See [`RuleEngine::active_alerts`].
    pub fn active_alerts(&self) -> Vec<Alert> {
        let map = self.0.alerts.read().unwrap_or_else(|e| e.into_inner());
        map.values().flatten().cloned().collect()
    }
}

/// Runs the rule groups: one loop per group, reloadable, alert states kept in the state
/// file.
pub struct RuleEngine {
    shared: Arc<Shared>,
    running: BTreeMap<String, RunningGroup>,
    root: CancellationToken,
    tracker: TaskTracker,
    /// Alerts read from the state file, until their group is loaded.
    saved: Option<Vec<SavedAlert>>,
}

impl std::fmt::Debug for RuleEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleEngine")
            .field("groups", &self.running.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Ids of groups: the name, or `file;name` when several files have a group of that name.
fn group_ids(groups: &Groups) -> Vec<String> {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for g in &groups.groups {
        *count.entry(g.name.as_str()).or_default() += 1;
    }
    groups
        .groups
        .iter()
        .map(|g| {
            if count.get(g.name.as_str()).copied().unwrap_or(0) > 1 {
                format!("{};{}", g.file, g.name)
            } else {
                g.name.clone()
            }
        })
        .collect()
}

impl RuleEngine {
    /// An engine with no group yet; its loops stop when `root` is cancelled.
    pub fn new(
        store: Arc<Store>,
        state: Arc<State>,
        opts: EngineOptions,
        root: CancellationToken,
    ) -> Self {
        RuleEngine {
            shared: Arc::new(Shared {
                store,
                state,
                opts: RwLock::new(opts),
                alerts: RwLock::new(BTreeMap::new()),
                last_gc_ms: AtomicI64::new(0),
            }),
            running: BTreeMap::new(),
            root,
            tracker: TaskTracker::new(),
            saved: None,
        }
    }

    /// Replaces the settings (a reload of the config): they apply from the next
    /// [`RuleEngine::apply`].
    pub fn set_options(&mut self, opts: EngineOptions) {
        *self.shared.opts.write().unwrap_or_else(|e| e.into_inner()) = opts;
    }

    /// A view of the alerts that outlives reloads.
    pub fn view(&self) -> AlertsView {
        AlertsView(Arc::clone(&self.shared))
    }

    /// Every alert of every group after its last evaluation: pending and firing ones, and
    /// those resolved in the last 15 minutes (state [`AlertState::Inactive`] with
    /// `resolved_at_ms`), so that a notifier can send "resolved". Sorted by group, rule,
    /// labels.
    pub fn active_alerts(&self) -> Vec<Alert> {
        self.view().active_alerts()
    }

    /// Makes the running groups those of `groups` (the first call also restores the
    /// alerts saved in the state file). A group that stays keeps its alerts (matched by
    /// alert name); a removed group's series go stale and its saved alerts are forgotten.
    /// Also sets the store's retention to what the rules read.
    pub async fn apply(&mut self, groups: &Groups) {
        if self.saved.is_none() {
            let state = Arc::clone(&self.shared.state);
            let loaded = tokio::task::spawn_blocking(move || persist::load_all(&state)).await;
            self.saved = Some(match loaded {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "read saved alert states; alerts start over");
                    Vec::new()
                }
                Err(e) => {
                    tracing::error!(error = %e, "read saved alert states; alerts start over");
                    Vec::new()
                }
            });
        }
        let opts = self.shared.opts();
        let now = opts.clock.now_ms();
        let tolerance = ms(opts.for_outage_tolerance);
        let ids = group_ids(groups);
        let mut next: BTreeMap<String, RunningGroup> = BTreeMap::new();
        for (spec, id) in groups.groups.iter().zip(&ids) {
            let mut runtime = GroupRuntime::new(spec, id, &opts);
            if let Some(old) = self.running.remove(id) {
                old.token.cancel();
                let old_rt = old.runtime.lock().await;
                runtime.take_state_from(&old_rt);
                drop(old_rt);
                for i in runtime.len()..old.rules {
                    self.shared.store.remove_owner(&rule_owner(id, i), now);
                }
            } else if let Some(saved) = self.saved.as_mut() {
                let (mine, rest): (Vec<SavedAlert>, Vec<SavedAlert>) = std::mem::take(saved)
                    .into_iter()
                    .partition(|s| &s.alert.group == id);
                *saved = rest;
                runtime.restore(mine, now, tolerance);
            }
            self.shared.set_alerts(id, runtime.alerts());
            next.insert(
                id.clone(),
                RunningGroup {
                    rules: runtime.len(),
                    runtime: Arc::new(tokio::sync::Mutex::new(runtime)),
                    token: self.root.child_token(),
                },
            );
        }
        // Groups that are gone.
        for (id, old) in std::mem::take(&mut self.running) {
            old.token.cancel();
            for i in 0..old.rules {
                self.shared.store.remove_owner(&rule_owner(&id, i), now);
            }
            self.shared.store.remove_owner(&meta_owner(&id), now);
            let mut map = self
                .shared
                .alerts
                .write()
                .unwrap_or_else(|e| e.into_inner());
            map.remove(&id);
        }
        let state = Arc::clone(&self.shared.state);
        let keep = ids.clone();
        if let Ok(Err(e)) =
            tokio::task::spawn_blocking(move || persist::retain_groups(&state, &keep)).await
        {
            tracing::error!(error = %e, "forget alert states of removed groups");
        }
        self.shared.store.set_retention_ms(groups.max_lookback_ms());
        for (id, g) in next.iter().filter(|_| opts.evaluate_on_schedule) {
            let interval = g.runtime.lock().await.interval();
            let task = group_loop(
                Arc::clone(&self.shared),
                Arc::clone(&g.runtime),
                g.token.clone(),
                id.clone(),
                interval,
            );
            self.tracker.spawn(task);
        }
        self.running = next;
        tracing::info!(
            groups = self.running.len(),
            rules = groups.rule_count(),
            "rule groups loaded"
        );
    }

    /// Evaluates every group once at `ts_ms`, outside their schedule (tests, one-shot
    /// tools); the loops are not disturbed.
    pub async fn evaluate_once(&self, ts_ms: i64) {
        for g in self.running.values() {
            let (shared, runtime, token) = (
                Arc::clone(&self.shared),
                Arc::clone(&g.runtime),
                g.token.clone(),
            );
            let _ =
                tokio::task::spawn_blocking(move || shared.evaluate(&runtime, &token, ts_ms)).await;
        }
    }

    /// Stops every loop and waits for evaluations in flight.
    pub async fn shutdown(self) {
        for g in self.running.values() {
            g.token.cancel();
        }
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// The next evaluation slot after `now_ms`: `k * interval + offset`, the offset a stable
/// hash of the group id, so that groups spread over their interval and keep their slots
/// across restarts and reloads.
pub fn next_slot(now_ms: i64, interval_ms: i64, offset_ms: i64) -> i64 {
    let interval_ms = interval_ms.max(1);
    ((now_ms - offset_ms).div_euclid(interval_ms) + 1) * interval_ms + offset_ms
}

async fn group_loop(
    shared: Arc<Shared>,
    runtime: Arc<tokio::sync::Mutex<GroupRuntime>>,
    token: CancellationToken,
    id: String,
    interval: Duration,
) {
    let interval_ms = ms(interval).max(1);
    let offset_ms = ms(crate::scheduler::jitter(&id, interval));
    loop {
        let now = shared.now_ms();
        let slot = next_slot(now, interval_ms, offset_ms);
        let delay = Duration::from_millis(u64::try_from(slot - now).unwrap_or(0));
        tokio::select! {
            () = token.cancelled() => break,
            () = tokio::time::sleep(delay) => {}
        }
        let (sh, rt, tk) = (Arc::clone(&shared), Arc::clone(&runtime), token.clone());
        let span = tracing::info_span!("rule_group", group = %id, ts = slot);
        let res = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            sh.evaluate(&rt, &tk, slot);
        })
        .await;
        if let Err(e) = res {
            // A panic in an evaluation is a bug of ours; the loop goes on.
            tracing::error!(group = %id, error = %e, "rule group evaluation panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_aligned_and_in_the_future() {
        assert_eq!(next_slot(0, 60_000, 5_000), 5_000);
        assert_eq!(next_slot(5_000, 60_000, 5_000), 65_000);
        assert_eq!(next_slot(64_999, 60_000, 5_000), 65_000);
        assert_eq!(next_slot(-1, 1_000, 0), 0);
    }

    #[test]
    fn recording_rules_rename_label_and_check_duplicates() {
        let spec = RecordingSpec {
            record: "job:up:sum".into(),
            expr: Arc::new(promql::parse("up").expect("parse")),
            labels: [
                ("team".to_string(), "a".to_string()),
                ("x".to_string(), String::new()),
            ]
            .into(),
        };
        let s = |pairs: &[(&str, &str)]| Sample {
            labels: Labels::from_pairs(pairs.iter().copied()),
            value: 1.0,
        };
        let out = record(
            &spec,
            vec![s(&[("__name__", "up"), ("x", "1"), ("j", "a")])],
            0,
        )
        .expect("record");
        assert_eq!(
            out[0].0,
            Labels::from_pairs([("__name__", "job:up:sum"), ("j", "a"), ("team", "a")])
        );
        let e = record(&spec, vec![s(&[("x", "1")]), s(&[("x", "2")])], 0).expect_err("dup");
        assert!(e.0.contains("same labelset"));
        let e = record(&spec, vec![s(&[("j", "1")]), s(&[("j", "2")])], 1).expect_err("limit");
        assert_eq!(e.0, "exceeded limit of 1 with 2 series");
    }
}
