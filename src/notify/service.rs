//! The notification side of a running exporter: dispatcher, outbox, silences,
//! heartbeats and the daily report, started once and re-configured on every reload.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::config::AlertingConfig;
use super::dispatcher::{Deps, Dispatcher, Settings};
use super::outbox::Outbox;
use super::receivers::heartbeat::{self, HealthFn, HeartbeatMetrics};
use super::report::{self, ReportDeps, Schedule};
use super::silences::Silences;
use crate::config::Config;
use crate::history::History;
use crate::rules::AlertsView;
use crate::scheduler::StatusBoard;
use crate::state::State;
use crate::store::Store;
use crate::telemetry::Telemetry;

/// What the notification side reads.
#[derive(Clone)]
pub struct ServiceDeps {
    /// The state file.
    pub state: Arc<State>,
    /// Check states.
    pub board: Arc<StatusBoard>,
    /// The rule engine's alerts.
    pub alerts: AlertsView,
    /// Current sample values.
    pub store: Arc<Store>,
    /// Probe history.
    pub history: Arc<History>,
}

/// Handles of the running notification side.
pub struct NotifyService {
    /// The dispatcher (routes, groups, mutes, dedups).
    pub dispatcher: Dispatcher,
    /// The durable outbox and its workers.
    pub outbox: Arc<Outbox>,
    /// Silences.
    pub silences: Arc<Silences>,
    /// The rule engine's alerts.
    pub alerts: AlertsView,
    report: ReportDeps,
    heartbeat_metrics: HeartbeatMetrics,
    token: CancellationToken,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Tasks that end with the config (heartbeats, daily report).
    config_token: Mutex<CancellationToken>,
}

impl std::fmt::Debug for NotifyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NotifyService")
    }
}

impl NotifyService {
    /// Starts the dispatcher loop and the outbox (no receivers until [`Self::apply`]).
    pub fn start(deps: ServiceDeps, telemetry: &Telemetry, token: CancellationToken) -> Arc<Self> {
        let ServiceDeps {
            state,
            board,
            alerts,
            store,
            history,
        } = deps;
        let outbox = Arc::new(Outbox::new(Arc::clone(&state)));
        for c in outbox.collectors() {
            telemetry.register(c);
        }
        let heartbeat_metrics = HeartbeatMetrics::new();
        for c in heartbeat_metrics.collectors() {
            telemetry.register(c);
        }
        let silences = Arc::new(Silences::load(Arc::clone(&state)));
        let dispatcher = Dispatcher::new(Deps {
            state: Arc::clone(&state),
            outbox: Arc::clone(&outbox),
            silences: Arc::clone(&silences),
            board: Arc::clone(&board),
            alerts: Arc::new(alerts.clone()),
        });
        let wake_outbox = Arc::clone(&outbox);
        let report = ReportDeps {
            board,
            history,
            store,
            state,
            wake: Arc::new(move || wake_outbox.wake()),
        };
        let task = dispatcher.spawn(token.child_token());
        Arc::new(NotifyService {
            dispatcher,
            outbox,
            silences,
            alerts,
            report,
            heartbeat_metrics,
            config_token: Mutex::new(token.child_token()),
            token,
            tasks: Mutex::new(vec![task]),
        })
    }

    /// Applies a (re)loaded config.
    pub fn apply(&self, cfg: &Config) {
        let settings = Settings {
            external_labels: cfg.global.external_labels.clone(),
            external_url: cfg.global.external_url.clone(),
        };
        self.dispatcher.apply(cfg.alerting.clone(), settings);
        let fresh = self.token.child_token();
        let old = std::mem::replace(
            &mut *self.config_token.lock().unwrap_or_else(|e| e.into_inner()),
            fresh.clone(),
        );
        old.cancel();
        if let Some(a) = &cfg.alerting {
            self.start_config_tasks(a, &cfg.global.external_url, &fresh);
        }
    }

    fn start_config_tasks(
        &self,
        a: &AlertingConfig,
        external_url: &str,
        token: &CancellationToken,
    ) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|t| !t.is_finished());
        if !a.heartbeats.is_empty() {
            let alerts = self.alerts.clone();
            let healthy: HealthFn = Arc::new(move || pipeline_healthy(&alerts.active_alerts()));
            tasks.push(heartbeat::spawn(
                a.heartbeats.clone(),
                healthy,
                token.child_token(),
                &self.heartbeat_metrics,
            ));
        }
        if let Some(r) = &a.daily_report
            && let Some(receiver) = a.receivers.iter().find(|x| x.name == r.receiver)
        {
            {
                let schedule = Schedule::new(r);
                tasks.push(report::spawn(
                    self.report.clone(),
                    receiver.clone(),
                    schedule,
                    external_url.to_string(),
                    token.child_token(),
                ));
            }
        }
    }

    /// Queues today's daily report now (for tests and the `report` endpoint). Blocking.
    ///
    /// # Errors
    /// No report configured, or SQLite.
    pub fn queue_report_now(&self) -> Result<usize, String> {
        let cfg = self.dispatcher.config().ok_or("no alerting section")?;
        let r = cfg.daily_report.as_ref().ok_or("no daily_report section")?;
        let receiver = cfg
            .receivers
            .iter()
            .find(|x| x.name == r.receiver)
            .ok_or("unknown receiver")?;
        let schedule = Schedule::new(r);
        let now = chrono::Utc::now();
        let url = self
            .dispatcher
            .settings()
            .map(|s| s.external_url)
            .unwrap_or_default();
        let n = report::queue(
            &self.report,
            receiver,
            &url,
            &schedule.local_date(now).to_string(),
            now,
        )
        .map_err(|e| e.to_string())?;
        self.outbox.wake();
        Ok(n)
    }

    /// Whether email can be sent: `Ok` with the number of email integrations ready, or
    /// why not.
    pub fn email_status(&self) -> Result<usize, String> {
        let Some(cfg) = self.dispatcher.config() else {
            return Err("no alerting section in the config".into());
        };
        let mut ready = 0;
        let mut why = None;
        for r in &cfg.receivers {
            for i in &r.integrations {
                if i.kind() == "email" {
                    match i.configured() {
                        Ok(()) => ready += 1,
                        Err(e) => why = Some(e),
                    }
                }
            }
        }
        match (ready, why) {
            (0, Some(e)) => Err(e),
            (0, None) => Err("no email receiver in the config".into()),
            (n, _) => Ok(n),
        }
    }

    /// Stops every task.
    pub async fn shutdown(&self) {
        self.token.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
        self.outbox.shutdown().await;
    }
}

/// The heartbeat's notion of health: the always-firing `Watchdog` alert fires, which
/// proves that probes ran, the store holds their series and the rules evaluate. A
/// config without such a rule beats while the process runs.
pub fn pipeline_healthy(alerts: &[crate::rules::Alert]) -> Result<(), String> {
    let watchdog: Vec<&crate::rules::Alert> = alerts
        .iter()
        .filter(|a| a.labels.get("alertname") == Some("Watchdog"))
        .collect();
    if watchdog.is_empty()
        || watchdog
            .iter()
            .any(|a| a.state == crate::rules::AlertState::Firing)
    {
        Ok(())
    } else {
        Err("the Watchdog alert is not firing".into())
    }
}
