//! Wiring: load the config, start the scheduler and the web server, apply reloads
//! (SIGHUP, `POST /-/reload`), and stop cleanly on SIGINT/SIGTERM.
//!
//! A reload builds the new config completely before anything changes; a config that
//! fails to load is refused, logged with its positions, and the running one is kept.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::checks::Vars;
use crate::config::{self, Config, ConfigError, ConfigSource};
use crate::http::{self, ReloadRequest, WebState};
use crate::notify::service::{NotifyService, ServiceDeps};
use crate::rules::{AlertsView, EngineOptions, RuleEngine};
use crate::scheduler::{Env, Scheduler, StatusBoard};
use crate::store::Store;
use crate::telemetry::Telemetry;

/// How the exporter is started.
#[derive(Debug, Clone)]
pub struct Options {
    /// Config file, or the embedded config.
    pub config: ConfigSource,
    /// Address of the web server (`127.0.0.1:0` picks a free port).
    pub listen: String,
    /// Folder of the state file; `None` keeps state in memory only.
    pub storage: Option<std::path::PathBuf>,
    /// `--web.config.file`: TLS and basic auth of the web server (exporter-toolkit's
    /// format); `None` serves plain HTTP to everyone.
    pub web_config: Option<std::path::PathBuf>,
}

/// A started exporter.
pub struct Running {
    /// The address the web server listens on.
    pub addr: SocketAddr,
    /// Shared state of the web handlers.
    pub web: Arc<WebState>,
    /// The alerts of the rule engine (pending, firing, recently resolved).
    pub alerts: AlertsView,
    reload_tx: mpsc::Sender<ReloadRequest>,
    shutdown: CancellationToken,
    main: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Reloads the config as SIGHUP does.
    ///
    /// # Errors
    /// The refused config's errors.
    pub async fn reload(&self) -> Result<(), String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.reload_tx
            .send(tx)
            .await
            .map_err(|_| "exporter stopped".to_string())?;
        rx.await.map_err(|_| "exporter stopped".to_string())?
    }

    /// Stops everything and waits for in-flight runs.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.main.await;
    }

    /// Waits until the exporter stops (after a signal).
    pub async fn wait(self) {
        let _ = self.main.await;
    }

    /// A token that stops the exporter when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Loads the config and starts the exporter.
///
/// # Errors
/// A config that does not load, or an address that cannot be bound.
pub async fn start(opts: Options) -> anyhow::Result<Running> {
    let cfg = config::load(&opts.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    // A broken web config refuses the start, with its positions, before anything runs.
    let web_security = match &opts.web_config {
        Some(path) => Some(Arc::new(
            http::webconfig::WebSecurity::new(path).map_err(|e| anyhow::anyhow!("{e}"))?,
        )),
        None => None,
    };
    let tls = web_security
        .as_ref()
        .is_some_and(|s| s.snapshot().tls.is_some());
    // History is only kept for what rules read; with none loaded, the latest value suffices.
    let store = Arc::new(Store::new(0));
    let board = Arc::new(StatusBoard::default());
    let telemetry = Arc::new(Telemetry::new());
    let shutdown = CancellationToken::new();
    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadRequest>(4);
    let state = match &opts.storage {
        Some(dir) => crate::state::State::open(dir)?,
        None => crate::state::State::in_memory()?,
    };
    let env = Env {
        vars: Arc::new(Vars::default()),
        state: Arc::new(state),
    };
    let mut rules = RuleEngine::new(
        Arc::clone(&store),
        Arc::clone(&env.state),
        rule_options(&cfg),
        shutdown.child_token(),
    );
    let alerts = rules.view();
    let history = Arc::new(crate::history::History::new(Arc::clone(&env.state)));
    board.set_history(Arc::clone(&history));
    let history_task = history.spawn(shutdown.child_token());
    let notify = NotifyService::start(
        ServiceDeps {
            state: Arc::clone(&env.state),
            board: Arc::clone(&board),
            alerts: alerts.clone(),
            store: Arc::clone(&store),
            history: Arc::clone(&history),
        },
        &telemetry,
        shutdown.child_token(),
    );
    let web = Arc::new(WebState {
        store: Arc::clone(&store),
        board: Arc::clone(&board),
        telemetry: Arc::clone(&telemetry),
        reload: reload_tx.clone(),
        ready: false.into(),
        last_reload_error: std::sync::RwLock::new(None),
        config_name: std::sync::RwLock::new(opts.config.display_name()),
        notify: Arc::clone(&notify),
        history,
    });
    let listener = tokio::net::TcpListener::bind(&opts.listen)
        .await
        .with_context(|| format!("listen on {}", opts.listen))?;
    let addr = listener.local_addr().context("read the bound address")?;

    let mut scheduler = Scheduler::new(
        Arc::clone(&store),
        Arc::clone(&board),
        Arc::clone(&telemetry),
        env,
        shutdown.child_token(),
    );
    // Signal handlers exist before anyone can learn that we started.
    let mut hup = signals::Hangup::new();
    let term = signals::terminate();
    scheduler.apply(&cfg);
    notify.apply(&cfg);
    let first_round = first_round_limit(&cfg);
    let first_rules = Arc::clone(&cfg.rules);
    telemetry.config_loaded(&store, true);
    web.ready.store(true, Ordering::Release);
    tracing::info!(config = %opts.config.display_name(), checks = cfg.checks.len(), address = %addr, tls, "harena-exporter started");

    let server_token = shutdown.clone();
    let router = http::app(Arc::clone(&web));
    let server = tokio::spawn(async move {
        let res = http::serve::serve_with(listener, router, web_security, server_token).await;
        if let Err(e) = res {
            tracing::error!(error = %e, "web server stopped");
        }
    });

    let source = opts.config.clone();
    let web2 = Arc::clone(&web);
    let token = shutdown.clone();
    let board2 = Arc::clone(&board);
    let main = tokio::spawn(async move {
        tokio::pin!(term);
        // Rules start once every check has run once (all do within two seconds plus
        // their timeout): the store is empty after a restart, and an alert restored as
        // firing would otherwise resolve at the first evaluation and fire again.
        tokio::select! {
            () = wait_first_round(&board2, first_round) => {}
            () = token.cancelled() => {}
            () = &mut term => {
                tracing::info!("shutting down");
                token.cancel();
            }
        }
        // `term` must not be polled again once it fired: then the loop is skipped.
        if !token.is_cancelled() {
            rules.apply(&first_rules).await;
        }
        while !token.is_cancelled() {
            tokio::select! {
                biased;
                () = token.cancelled() => break,
                () = &mut term => {
                    tracing::info!("shutting down");
                    token.cancel();
                    break;
                }
                () = hup.recv() => {
                    if let Ok(cfg) = apply_reload(&source, &mut scheduler, &web2) {
                        rules.set_options(rule_options(&cfg));
                        rules.apply(&cfg.rules).await;
                        web2.notify.apply(&cfg);
                    }
                }
                Some(req) = reload_rx.recv() => {
                    let res = apply_reload(&source, &mut scheduler, &web2);
                    if let Ok(cfg) = &res {
                        rules.set_options(rule_options(cfg));
                        rules.apply(&cfg.rules).await;
                        web2.notify.apply(cfg);
                    }
                    let _ = req.send(res.map(|_| ()).map_err(|e| e.to_string()));
                }
            }
        }
        rules.shutdown().await;
        scheduler.shutdown().await;
        web2.notify.shutdown().await;
        let _ = history_task.await;
        let _ = server.await;
    });
    Ok(Running {
        addr,
        web,
        alerts,
        reload_tx,
        shutdown,
        main,
    })
}

/// How long the first round of checks may take: the scheduler starts every check within
/// two seconds, and each run ends within its timeout.
fn first_round_limit(cfg: &Config) -> std::time::Duration {
    let longest = cfg
        .checks
        .iter()
        .map(|c| c.config.timeout)
        .max()
        .unwrap_or_default();
    (std::time::Duration::from_secs(3) + longest).min(std::time::Duration::from_secs(90))
}

async fn wait_first_round(board: &StatusBoard, limit: std::time::Duration) {
    let end = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < end {
        if board.snapshot().iter().all(|c| c.success.is_some()) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tracing::warn!("rules start before every check ran once");
}

/// The rule engine's settings from the config's `global:` section.
fn rule_options(cfg: &Config) -> EngineOptions {
    EngineOptions {
        default_interval: cfg.global.evaluation_interval.0,
        external_labels: cfg.global.external_labels.clone(),
        external_url: cfg.global.external_url.clone(),
        ..EngineOptions::default()
    }
}

fn apply_reload(
    source: &ConfigSource,
    scheduler: &mut Scheduler,
    web: &WebState,
) -> Result<Config, ConfigError> {
    match config::load(source) {
        Ok(cfg) => {
            scheduler.apply(&cfg);
            web.telemetry.config_loaded(&web.store, true);
            *web.last_reload_error
                .write()
                .unwrap_or_else(|e| e.into_inner()) = None;
            tracing::info!(checks = cfg.checks.len(), "config reloaded");
            Ok(cfg)
        }
        Err(e) => {
            web.telemetry.config_loaded(&web.store, false);
            for d in &e.diagnostics {
                tracing::error!(error = %d, "config reload refused; keeping the running config");
            }
            *web.last_reload_error
                .write()
                .unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
            Err(e)
        }
    }
}

mod signals {
    //! Unix signals, degraded to "never" where a handler cannot be installed.

    use tokio::signal::unix::{Signal, SignalKind, signal};

    /// SIGHUP stream.
    pub struct Hangup(Option<Signal>);

    impl Hangup {
        pub fn new() -> Self {
            Hangup(signal(SignalKind::hangup()).ok())
        }

        pub async fn recv(&mut self) {
            match &mut self.0 {
                Some(s) => {
                    if s.recv().await.is_none() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// Resolves on SIGINT or SIGTERM; the handlers are installed when this is called.
    pub fn terminate() -> impl std::future::Future<Output = ()> + Send {
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            let wait = |s: Option<Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(term) => {}
                () = wait(int) => {}
            }
        }
    }
}
