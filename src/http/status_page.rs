//! The status page: server-rendered HTML, no script, readable on a phone.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Html;

use super::WebState;
use crate::scheduler::{CheckStatus, now_ms};

/// `GET /`.
pub async fn page(State(st): State<Arc<WebState>>) -> Html<String> {
    render(&st)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn ago(ms: Option<i64>, now: i64) -> String {
    match ms {
        None => "never".into(),
        Some(t) => {
            let s = (now - t).max(0) / 1000;
            match s {
                0..=59 => format!("{s}s ago"),
                60..=3599 => format!("{}m ago", s / 60),
                3600..=86_399 => format!("{}h{}m ago", s / 3600, (s % 3600) / 60),
                _ => format!("{}d ago", s / 86_400),
            }
        }
    }
}

fn state_cell(c: &CheckStatus) -> (&'static str, String) {
    match c.success {
        None => ("pending", "pending".into()),
        Some(true) => ("ok", "ok".into()),
        Some(false) if !c.blocked_by.is_empty() => {
            ("blocked", format!("blocked by {}", c.blocked_by.join(", ")))
        }
        Some(false) => ("fail", "FAIL".into()),
    }
}

/// Firing and pending alerts, silences, and the state of notifications.
fn alerts_section(st: &WebState, h: &mut String, now: i64) {
    use crate::rules::AlertState;
    let notify = &st.notify;
    let mut alerts: Vec<crate::rules::Alert> = notify
        .alerts
        .active_alerts()
        .into_iter()
        .filter(|a| {
            a.state != AlertState::Inactive && a.labels.get("alertname") != Some("Watchdog")
        })
        .collect();
    alerts.sort_by_key(|a| (a.state != AlertState::Firing, a.active_at_ms));
    let _ = write!(h, "<h2>Alerts</h2>");
    if alerts.is_empty() {
        h.push_str("<p class=ok>No alert is firing.</p>");
    } else {
        h.push_str("<table id=alerts><thead><tr><th>Alert</th><th>State</th><th>Summary</th><th class=wide>Since</th></tr></thead><tbody>");
        for a in &alerts {
            let labels: crate::notify::LabelSet = a
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let muted = notify.dispatcher.suppression(&labels);
            let state = match (a.state, muted.muted()) {
                (AlertState::Firing, true) if !muted.silenced_by.is_empty() => "firing (silenced)",
                (AlertState::Firing, true) => "firing (inhibited)",
                (AlertState::Firing, false) => "firing",
                _ => "pending",
            };
            let class = if a.state == AlertState::Firing && !muted.muted() {
                "fail"
            } else {
                "pending"
            };
            let _ = write!(
                h,
                "<tr><td><b>{}</b><div class=detail>{}</div></td><td class={class}>{state}</td><td>{}</td><td class=wide>{}</td></tr>",
                esc(a.labels.get("alertname").unwrap_or("")),
                esc(&a
                    .labels
                    .iter()
                    .filter(|(k, _)| *k != "alertname")
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")),
                esc(a.annotations.get("summary").unwrap_or("")),
                ago(Some(a.active_at_ms), now),
            );
        }
        h.push_str("</tbody></table>");
    }
    let silences = notify.silences.list();
    let active = silences.iter().filter(|s| s.state(now) == "active").count();
    let pending = notify.outbox.pending();
    let email = match notify.email_status() {
        Ok(n) => format!(
            "<span class=ok>email configured</span> ({n} receiver integration{})",
            if n == 1 { "" } else { "s" }
        ),
        Err(why) => format!(
            "<span class=fail>email is not configured</span>: {}",
            esc(&why)
        ),
    };
    let _ = write!(
        h,
        "<p id=notifications>Notifications: {email}. {} waiting in the outbox{}. {active} active silence{}.</p>",
        pending.len(),
        pending
            .first()
            .map(|p| format!(
                " (oldest {}, {})",
                ago(Some(p.created_ms), now),
                esc(p.last_error.as_deref().unwrap_or("not tried yet"))
            ))
            .unwrap_or_default(),
        if active == 1 { "" } else { "s" }
    );
}

/// Renders the page.
pub fn render(st: &WebState) -> Html<String> {
    let now = now_ms();
    let checks = st.board.snapshot();
    let failing = checks.iter().filter(|c| c.success == Some(false)).count();
    let mut h = String::with_capacity(8 * 1024);
    h.push_str(concat!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        "<meta name=viewport content=\"width=device-width,initial-scale=1\">",
        "<meta http-equiv=refresh content=15><title>Harena status</title><style>",
        "body{font:15px system-ui,sans-serif;margin:1rem;color:#222}",
        "table{border-collapse:collapse;width:100%}td,th{padding:.3rem .5rem;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}",
        ".ok{color:#176f2c}.fail{color:#b00020;font-weight:bold}.blocked{color:#8a5a00}.pending{color:#666}",
        ".detail{color:#555;font-size:13px;word-break:break-word}",
        "@media(max-width:600px){.wide{display:none}}",
        "</style></head><body>"
    ));
    let _ = write!(
        h,
        "<h1>Harena status</h1><p>{} checks, <span class={}>{} failing</span>.",
        checks.len(),
        if failing > 0 { "fail" } else { "ok" },
        failing
    );
    if let Some(err) = st
        .last_reload_error
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
    {
        let _ = write!(
            h,
            " <span class=fail>Last config reload refused:</span><pre>{}</pre>",
            esc(err)
        );
    }
    h.push_str("</p>");
    alerts_section(st, &mut h, now);
    h.push_str("<h2>Checks</h2><table><thead><tr><th>Check</th><th>State</th><th class=wide>Kind</th><th>Reason</th><th class=wide>Latency</th><th class=wide>Last run</th><th class=wide>Changed</th></tr></thead><tbody>");
    for c in &checks {
        let (class, state) = state_cell(c);
        let _ = write!(
            h,
            "<tr id=\"check-{name}\"><td><b>{name}</b><div class=detail>{target}</div></td><td class={class}>{state}</td><td class=wide>{kind}</td><td>{reason}<div class=detail>{detail}</div></td><td class=wide>{lat:.1} ms</td><td class=wide>{run}</td><td class=wide>{chg}</td></tr>",
            name = esc(&c.name),
            target = esc(&c.target),
            kind = esc(&c.kind),
            reason = c.reason.unwrap_or(""),
            detail = esc(c.detail.as_deref().unwrap_or("")),
            lat = c.duration_seconds * 1000.0,
            run = ago(c.last_run_ms, now),
            chg = ago(c.last_change_ms, now),
        );
    }
    h.push_str("</tbody></table><p class=detail><a href=\"/metrics\">/metrics</a> · <a href=\"/api/v1/checks\">/api/v1/checks</a> · <a href=\"/api/v1/alerts\">/api/v1/alerts</a> · <a href=\"/api/v1/silences\">/api/v1/silences</a> · <a href=\"/api/v1/notifications\">/api/v1/notifications</a></p></body></html>");
    Html(h)
}
