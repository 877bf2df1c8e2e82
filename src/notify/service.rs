//! The notification side of a running exporter: dispatcher, outbox, silences,
//! heartbeats and the daily report, started once and re-configured on every reload.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::config::AlertingConfig;
use super::dispatcher::{Deps, Dispatcher, Settings};
use super::outbox::Outbox;
use super::silences::Silences;
use crate::config::Config;
use crate::rules::AlertsView;
use crate::scheduler::StatusBoard;
use crate::state::State;
use crate::telemetry::Telemetry;

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
    pub fn start(
        state: Arc<State>,
        board: Arc<StatusBoard>,
        alerts: AlertsView,
        telemetry: &Telemetry,
        token: CancellationToken,
    ) -> Arc<Self> {
        let outbox = Arc::new(Outbox::new(Arc::clone(&state)));
        for c in outbox.collectors() {
            telemetry.register(c);
        }
        let silences = Arc::new(Silences::load(Arc::clone(&state)));
        let dispatcher = Dispatcher::new(Deps {
            state,
            outbox: Arc::clone(&outbox),
            silences: Arc::clone(&silences),
            board,
            alerts: alerts.clone(),
        });
        let task = dispatcher.spawn(token.child_token());
        Arc::new(NotifyService {
            dispatcher,
            outbox,
            silences,
            alerts,
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
            self.start_config_tasks(a, fresh);
        }
    }

    fn start_config_tasks(&self, _a: &AlertingConfig, _token: CancellationToken) {}

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
