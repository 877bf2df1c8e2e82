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
    h.push_str("</p><table><thead><tr><th>Check</th><th>State</th><th class=wide>Kind</th><th>Reason</th><th class=wide>Latency</th><th class=wide>Last run</th><th class=wide>Changed</th></tr></thead><tbody>");
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
    h.push_str("</tbody></table><p class=detail><a href=\"/metrics\">/metrics</a> · <a href=\"/api/v1/checks\">/api/v1/checks</a></p></body></html>");
    Html(h)
}
