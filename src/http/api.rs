//! `/api/v1/alerts`, `/api/v1/silences`, `/api/v1/notifications`: JSON for scripts, the
//! CLI and the status page. Shapes follow Prometheus's and Alertmanager's APIs where
//! they have one (`{"status": "success", "data": …}`).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::WebState;
use crate::notify::LabelSet;
use crate::rules::AlertState;
use crate::telemetry::rfc3339;

/// `GET /api/v1/alerts`: pending and firing alerts as Prometheus lists them, with
/// Alertmanager's `silencedBy` / `inhibitedBy` for the muted ones.
pub async fn alerts(State(st): State<Arc<WebState>>) -> Response {
    let notify = &st.notify;
    let mut out = Vec::new();
    for a in notify.alerts.active_alerts() {
        if a.state == AlertState::Inactive {
            continue;
        }
        let labels: LabelSet = a
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let annotations: LabelSet = a
            .annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let muted = notify.dispatcher.suppression(&with_external(&st, &labels));
        out.push(json!({
            "labels": labels,
            "annotations": annotations,
            "state": a.state.as_str(),
            "activeAt": rfc3339(a.active_at_ms),
            "firedAt": a.fired_at_ms.map(rfc3339),
            "value": crate::rules::template::format_float(a.value, 'e', None),
            "silencedBy": muted.silenced_by,
            "inhibitedBy": muted.inhibited_by,
        }));
    }
    axum::Json(json!({"status": "success", "data": {"alerts": out}})).into_response()
}

fn with_external(st: &WebState, labels: &LabelSet) -> LabelSet {
    let mut l = labels.clone();
    if let Some(cfg) = st.notify.dispatcher.settings() {
        for (k, v) in cfg.external_labels {
            l.entry(k).or_insert(v);
        }
    }
    l
}

/// `GET /api/v1/notifications`: whether email is configured, and the notifications
/// waiting in the outbox.
pub async fn notifications(State(st): State<Arc<WebState>>) -> Response {
    let email = match st.notify.email_status() {
        Ok(n) => json!({"configured": true, "integrations": n}),
        Err(why) => json!({"configured": false, "reason": why}),
    };
    let pending = st.notify.outbox.pending();
    axum::Json(json!({"status": "success", "data": {"email": email, "pending": pending}}))
        .into_response()
}

fn error(status: axum::http::StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"status": "error", "error": message.into()})),
    )
        .into_response()
}

/// `GET /api/v1/silences`: every silence (Alertmanager API v2's `gettableSilences`).
pub async fn silences_list(State(st): State<Arc<WebState>>) -> Response {
    axum::Json(st.notify.silences.list()).into_response()
}

/// `POST /api/v1/silences`: Alertmanager's `postableSilence`; answers `{"silenceID": …}`.
pub async fn silences_add(State(st): State<Arc<WebState>>, body: axum::body::Bytes) -> Response {
    let new: crate::notify::silences::NewSilence = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => return error(axum::http::StatusCode::BAD_REQUEST, e.to_string()),
    };
    let silences = Arc::clone(&st.notify.silences);
    match tokio::task::spawn_blocking(move || silences.add(new)).await {
        Ok(Ok(id)) => {
            tracing::info!(id = %id, "silence added");
            axum::Json(json!({"silenceID": id})).into_response()
        }
        Ok(Err(e)) => error(axum::http::StatusCode::BAD_REQUEST, e),
        Err(e) => error(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `DELETE /api/v1/silences/{id}`: expires a silence now.
pub async fn silences_expire(
    State(st): State<Arc<WebState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let silences = Arc::clone(&st.notify.silences);
    let id2 = id.clone();
    match tokio::task::spawn_blocking(move || silences.expire(&id2)).await {
        Ok(Ok(())) => {
            tracing::info!(id = %id, "silence expired");
            axum::Json(json!({"status": "success"})).into_response()
        }
        Ok(Err(e)) => error(axum::http::StatusCode::NOT_FOUND, e),
        Err(e) => error(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `POST /api/v1/report`: queues today's daily report now (once per day and integration,
/// like the scheduled one).
pub async fn report_now(State(st): State<Arc<WebState>>) -> Response {
    let notify = Arc::clone(&st.notify);
    match tokio::task::spawn_blocking(move || notify.queue_report_now()).await {
        Ok(Ok(n)) => {
            axum::Json(json!({"status": "success", "data": {"queued": n}})).into_response()
        }
        Ok(Err(e)) => error(axum::http::StatusCode::BAD_REQUEST, e),
        Err(e) => error(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
