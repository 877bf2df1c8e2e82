//! The web server: `/metrics`, `/-/healthy`, `/-/ready`, `/-/reload`, `/api/v1/checks`
//! and the status page at `/`.

pub mod api;
pub mod serve;
pub mod status_page;
pub mod webconfig;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{mpsc, oneshot};

use crate::scheduler::StatusBoard;
use crate::store::Store;
use crate::telemetry::Telemetry;

/// A request to reload the config; the answer is `Err(message)` when it was refused.
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// What the handlers read.
pub struct WebState {
    /// Samples.
    pub store: Arc<Store>,
    /// Check states.
    pub board: Arc<StatusBoard>,
    /// Self metrics and rendering.
    pub telemetry: Arc<Telemetry>,
    /// Where `POST /-/reload` sends its request.
    pub reload: mpsc::Sender<ReloadRequest>,
    /// True once the first config runs.
    pub ready: AtomicBool,
    /// The last reload error, shown on the status page.
    pub last_reload_error: std::sync::RwLock<Option<String>>,
    /// Config name (file path or the embedded config).
    pub config_name: std::sync::RwLock<String>,
    /// Alerts, silences, the outbox.
    pub notify: Arc<crate::notify::service::NotifyService>,
    /// Probe history (uptime, incidents, recent runs).
    pub history: Arc<crate::history::History>,
}

/// The router, without a listener (tests call it with `oneshot`).
pub fn app(state: Arc<WebState>) -> Router {
    Router::new()
        .route("/", get(status_page::page))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "Healthy\n" }))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload).put(reload))
        .route("/api/v1/checks", get(checks))
        .route("/api/v1/checks/{name}", get(status_page::check_api))
        .route("/api/v1/status", get(status_page::status_api))
        .route("/check/{name}", get(status_page::check_page))
        .route("/api/v1/alerts", get(api::alerts))
        .route("/api/v1/notifications", get(api::notifications))
        .route("/api/v1/report", post(api::report_now))
        .route(
            "/api/v1/silences",
            get(api::silences_list).post(api::silences_add),
        )
        .route(
            "/api/v1/silences/{id}",
            axum::routing::delete(api::silences_expire),
        )
        .with_state(state)
}

async fn metrics(State(st): State<Arc<WebState>>) -> Response {
    let body = st.telemetry.render(&st.store);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn ready(State(st): State<Arc<WebState>>) -> Response {
    if st.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "Ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Not ready\n").into_response()
    }
}

async fn reload(State(st): State<Arc<WebState>>) -> Response {
    let (tx, rx) = oneshot::channel();
    if st.reload.send(tx).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match rx.await {
        Ok(Ok(())) => (StatusCode::OK, "config reloaded\n").into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("config reload refused; the running config is kept:\n{e}\n"),
        )
            .into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
    }
}

async fn checks(State(st): State<Arc<WebState>>) -> Response {
    match tokio::task::spawn_blocking(move || status_page::overview(&st).checks).await {
        Ok(checks) => axum::Json(serde_json::json!({
            "status": "success",
            "data": checks,
        }))
        .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
