//! The status page: server-rendered HTML, no script, readable on a phone, refreshing
//! itself every 15 s. On top: the public tunnel URL, firing and pending alerts,
//! silences, notifications and the config's state; then every check grouped (services,
//! data stores, tunnel and public site, backups, containers, AWS) with its state
//! ("blocked by postgres" for a check whose dependency fails, the root cause standing
//! out), reason, detail, latency, time since its last change, and uptime over 24 h and
//! 7 d from the probe history. `/check/<name>` shows one check's recent runs and
//! changes.
//!
//! The page and `/api/v1/status` are built from the same [`Overview`], so they agree.

use crate::model::escape_html as esc;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;

use super::WebState;
use crate::history::{Change, Run, Uptime};
use crate::notify::LabelSet;
use crate::rules::AlertState;
use crate::scheduler::{CheckStatus, now_ms};

/// The groups of the page, in order: (`group` label value, title).
pub const GROUPS: &[(&str, &str)] = &[
    ("services", "Services"),
    ("datastores", "Data stores"),
    ("tunnel", "Tunnel and public site"),
    ("backups", "Backups"),
    ("containers", "Containers"),
    ("aws", "AWS"),
    ("monitoring", "Monitoring"),
];

const DAY_MS: i64 = 86_400_000;

/// One check as the page and the API show it.
#[derive(Debug, Clone, Serialize)]
pub struct CheckView {
    /// The board's state.
    #[serde(flatten)]
    pub status: CheckStatus,
    /// `ok`, `failing`, `blocked` or `pending` (not run yet).
    pub state: &'static str,
    /// Share of passing runs over the last 24 h, 0..=1 (`null` without runs).
    pub uptime_24h: Option<f64>,
    /// Share of passing runs over the last 7 days.
    pub uptime_7d: Option<f64>,
    /// The group it is shown in.
    pub group: String,
}

/// One alert as the page and the API show it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    /// Labels.
    pub labels: LabelSet,
    /// Annotations.
    pub annotations: LabelSet,
    /// `pending` or `firing`.
    pub state: &'static str,
    /// Since when (ms since the epoch).
    pub active_at_ms: i64,
    /// Silences muting it.
    pub silenced_by: Vec<String>,
    /// Alerts inhibiting it.
    pub inhibited_by: Vec<String>,
}

/// Everything on the page.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    /// When it was built (ms since the epoch).
    pub now_ms: i64,
    /// The current public URL of the quick tunnel, when known.
    pub tunnel_url: Option<String>,
    /// When the tunnel's hostname last changed (ms since the epoch).
    pub tunnel_changed_ms: Option<i64>,
    /// Checks, in page order.
    pub checks: Vec<CheckView>,
    /// Firing and pending alerts (the Watchdog left out), firing first.
    pub alerts: Vec<AlertView>,
    /// Active and pending silences.
    pub silences: Vec<crate::notify::silences::Silence>,
    /// Notifications waiting in the outbox.
    pub pending_notifications: Vec<crate::notify::outbox::PendingInfo>,
    /// `None` when email can be sent, else why not.
    pub email_not_configured: Option<String>,
    /// Config file name.
    pub config: String,
    /// The last refused reload's error, if the last reload failed.
    pub last_reload_error: Option<String>,
    /// The exporter's version.
    pub version: &'static str,
}

fn group_of(c: &CheckStatus) -> String {
    if let Some(g) = c.labels.get("group") {
        return g.clone();
    }
    match c.kind.as_str() {
        "postgres" | "redis" | "elasticsearch" => "datastores",
        "tunnel" => "tunnel",
        "backup_files" => "backups",
        "docker" => "containers",
        k if k.starts_with("aws") || k == "cloudwatch" => "aws",
        _ => "services",
    }
    .to_string()
}

fn group_rank(g: &str) -> usize {
    GROUPS
        .iter()
        .position(|(k, _)| *k == g)
        .unwrap_or(GROUPS.len())
}

/// Builds the overview (blocking: reads the probe history).
pub fn overview(st: &WebState) -> Overview {
    let now = now_ms();
    let up24 = st.history.uptime_since(now - DAY_MS);
    let up7 = st.history.uptime_since(now - 7 * DAY_MS);
    let ratio = |m: &BTreeMap<String, Uptime>, name: &str| m.get(name).and_then(Uptime::ratio);
    let mut checks: Vec<CheckView> = st
        .board
        .snapshot()
        .into_iter()
        .map(|c| CheckView {
            state: match c.success {
                None => "pending",
                Some(true) => "ok",
                Some(false) if !c.blocked_by.is_empty() => "blocked",
                Some(false) => "failing",
            },
            uptime_24h: ratio(&up24, &c.name),
            uptime_7d: ratio(&up7, &c.name),
            group: group_of(&c),
            status: c,
        })
        .collect();
    checks.sort_by(|a, b| {
        (group_rank(&a.group), &a.group, &a.status.name).cmp(&(
            group_rank(&b.group),
            &b.group,
            &b.status.name,
        ))
    });
    let current = st.store.current();
    let tunnel = current
        .iter()
        .find(|s| &*s.key.name == "harena_tunnel_info")
        .and_then(|s| s.key.labels.get("hostname").map(str::to_string));
    #[allow(clippy::cast_possible_truncation)]
    let tunnel_changed_ms = current
        .iter()
        .find(|s| &*s.key.name == "harena_tunnel_hostname_changed_timestamp_seconds")
        .map(|s| (s.value * 1000.0) as i64);
    let notify = &st.notify;
    let mut alerts: Vec<AlertView> = notify
        .alerts
        .active_alerts()
        .into_iter()
        .filter(|a| {
            a.state != AlertState::Inactive && a.labels.get("alertname") != Some("Watchdog")
        })
        .map(|a| {
            let labels: LabelSet = a
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let muted = notify.dispatcher.suppression(&labels);
            AlertView {
                annotations: a
                    .annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                labels,
                state: a.state.as_str(),
                active_at_ms: a.active_at_ms,
                silenced_by: muted.silenced_by,
                inhibited_by: muted.inhibited_by,
            }
        })
        .collect();
    alerts.sort_by(|a, b| {
        (a.state != "firing", a.active_at_ms).cmp(&(b.state != "firing", b.active_at_ms))
    });
    Overview {
        now_ms: now,
        tunnel_url: tunnel.map(|h| format!("https://{h}")),
        tunnel_changed_ms,
        checks,
        alerts,
        silences: notify
            .silences
            .list()
            .into_iter()
            .filter(|s| s.state(now) != "expired")
            .collect(),
        pending_notifications: notify.outbox.pending(),
        email_not_configured: notify.email_status().err().map(|e| {
            e.trim_start_matches("email is not configured: ")
                .to_string()
        }),
        config: st
            .config_name
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        last_reload_error: st
            .last_reload_error
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        version: env!("CARGO_PKG_VERSION"),
    }
}

/// `GET /`.
pub async fn page(State(st): State<Arc<WebState>>) -> Response {
    match tokio::task::spawn_blocking(move || render(&overview(&st))).await {
        Ok(h) => Html(h).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// `GET /api/v1/status`: the overview as JSON.
pub async fn status_api(State(st): State<Arc<WebState>>) -> Response {
    match tokio::task::spawn_blocking(move || overview(&st)).await {
        Ok(o) => axum::Json(serde_json::json!({"status": "success", "data": o})).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// One check's page data: its state, uptime, recent runs and changes.
#[derive(Debug, Clone, Serialize)]
pub struct CheckDetail {
    /// The check.
    #[serde(flatten)]
    pub check: CheckView,
    /// The last runs, newest first.
    pub recent_runs: Vec<Run>,
    /// State changes of the last 7 days, newest first.
    pub changes: Vec<Change>,
}

fn detail(st: &WebState, name: &str) -> Option<CheckDetail> {
    let o = overview(st);
    let check = o.checks.into_iter().find(|c| c.status.name == name)?;
    let mut changes = st.history.changes_since(Some(name), o.now_ms - 7 * DAY_MS);
    changes.reverse();
    Some(CheckDetail {
        check,
        recent_runs: st.history.recent_runs(name, 50),
        changes,
    })
}

/// `GET /api/v1/checks/{name}`.
pub async fn check_api(State(st): State<Arc<WebState>>, Path(name): Path<String>) -> Response {
    match tokio::task::spawn_blocking(move || detail(&st, &name)).await {
        Ok(Some(d)) => {
            axum::Json(serde_json::json!({"status": "success", "data": d})).into_response()
        }
        Ok(None) => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"status": "error", "error": "no such check"})),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// `GET /check/{name}`.
pub async fn check_page(State(st): State<Arc<WebState>>, Path(name): Path<String>) -> Response {
    match tokio::task::spawn_blocking(move || detail(&st, &name)).await {
        Ok(Some(d)) => Html(render_check(&d)).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Html(
                page_head("Not found").to_string()
                    + "<p>No such check. <a href=\"/\">Back</a></p></body></html>",
            ),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
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

fn pct(r: Option<f64>) -> String {
    r.map_or("–".to_string(), |r| {
        if (0.9995..1.0).contains(&r) {
            "99.9%".into()
        } else {
            format!("{:.1}%", r * 100.0)
        }
    })
}

fn utc(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

fn page_head(title: &str) -> String {
    format!(
        "{}<title>{}</title><style>{}</style></head><body>",
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width,initial-scale=1\"><meta http-equiv=refresh content=15>",
        esc(title),
        concat!(
            "body{font:15px system-ui,sans-serif;margin:1rem auto;max-width:72rem;padding:0 .6rem;color:#222}",
            "h1{font-size:1.4rem;margin:.2rem 0}h2{font-size:1.1rem;margin:1.2rem 0 .3rem;border-bottom:2px solid #eee}",
            "table{border-collapse:collapse;width:100%}td,th{padding:.3rem .45rem;border-bottom:1px solid #e4e4e4;text-align:left;vertical-align:top}",
            "th{font-size:13px;color:#555;font-weight:600}",
            ".ok{color:#176f2c}.failing,.fail{color:#b00020;font-weight:bold}.blocked{color:#8a5a00}.pending{color:#666}",
            ".root{background:#fde8ea}.detail{color:#555;font-size:13px;word-break:break-word}",
            ".badge{display:inline-block;padding:.05rem .45rem;border-radius:.6rem;font-size:13px;background:#eee}",
            ".url{font:15px ui-monospace,monospace;padding:.3rem .5rem;border:1px solid #ccc;border-radius:.3rem;width:100%;max-width:32rem;box-sizing:border-box}",
            ".box{padding:.5rem .7rem;border:1px solid #e4e4e4;border-radius:.4rem;margin:.4rem 0}",
            "a{color:#0b57d0}",
            "@media(max-width:640px){.wide{display:none}body{font-size:14px}}"
        )
    )
}

/// Renders the status page.
pub fn render(o: &Overview) -> String {
    let now = o.now_ms;
    let failing = o.checks.iter().filter(|c| c.state == "failing").count();
    let blocked = o.checks.iter().filter(|c| c.state == "blocked").count();
    let mut h = page_head("Harena status");
    let _ = write!(
        h,
        "<h1>Harena status</h1><p id=summary>{} checks: <span class={}>{} failing</span>{}, {} firing alert{}.</p>",
        o.checks.len(),
        if failing > 0 { "fail" } else { "ok" },
        failing,
        if blocked > 0 {
            format!(", <span class=blocked>{blocked} blocked by a failing dependency</span>")
        } else {
            String::new()
        },
        o.alerts.iter().filter(|a| a.state == "firing").count(),
        if o.alerts.iter().filter(|a| a.state == "firing").count() == 1 {
            ""
        } else {
            "s"
        },
    );
    // The public URL.
    h.push_str("<div class=box id=tunnel><b>Public URL</b> (Cloudflare quick tunnel): ");
    match &o.tunnel_url {
        Some(u) => {
            let _ = write!(
                h,
                "<br><input class=url readonly value=\"{0}\" onfocus=\"this.select()\" aria-label=\"public URL\"> <a href=\"{0}\">open</a><div class=detail>changed {1}{2}</div>",
                esc(u),
                ago(o.tunnel_changed_ms, now),
                o.tunnel_changed_ms
                    .map(|t| format!(" ({})", utc(t)))
                    .unwrap_or_default()
            );
        }
        None => h.push_str(
            "<span class=pending>unknown (the tunnel check has not found a hostname)</span>",
        ),
    }
    h.push_str("</div>");
    // Config.
    if let Some(err) = &o.last_reload_error {
        let _ = write!(
            h,
            "<div class=\"box root\" id=config><span class=fail>The last config reload was refused</span>; the previous config keeps running:<pre class=detail>{}</pre></div>",
            esc(err)
        );
    }
    // Alerts.
    h.push_str("<h2 id=alerts-title>Alerts</h2>");
    if o.alerts.is_empty() {
        h.push_str("<p class=ok id=alerts>No alert is firing or pending.</p>");
    } else {
        h.push_str("<table id=alerts><thead><tr><th>Alert</th><th>State</th><th>Summary</th><th class=wide>Since</th></tr></thead><tbody>");
        for a in &o.alerts {
            let muted = if !a.silenced_by.is_empty() {
                " (silenced)"
            } else if !a.inhibited_by.is_empty() {
                " (inhibited)"
            } else {
                ""
            };
            let class = if a.state == "firing" && muted.is_empty() {
                "fail"
            } else {
                "pending"
            };
            let labels: Vec<String> = a
                .labels
                .iter()
                .filter(|(k, _)| *k != "alertname")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = write!(
                h,
                "<tr class=alert data-alertname=\"{0}\" data-state=\"{1}\"><td><b>{0}</b><div class=detail>{2}</div></td><td class={class}>{1}{muted}</td><td>{3}</td><td class=wide>{4}</td></tr>",
                esc(a.labels.get("alertname").map_or("", String::as_str)),
                a.state,
                esc(&labels.join(" ")),
                esc(a.annotations.get("summary").map_or("", String::as_str)),
                ago(Some(a.active_at_ms), now),
            );
        }
        h.push_str("</tbody></table>");
    }
    // Notifications and silences.
    let email = match &o.email_not_configured {
        None => "<span class=ok>email configured</span>".to_string(),
        Some(why) => format!(
            "<span class=fail>email is not configured</span>: {}",
            esc(why)
        ),
    };
    let _ = write!(
        h,
        "<p id=notifications>Notifications: {email}. <span id=outbox>{} waiting in the outbox</span>",
        o.pending_notifications.len()
    );
    if let Some(p) = o.pending_notifications.first() {
        let _ = write!(
            h,
            " (oldest {}, to {}: {})",
            ago(Some(p.created_ms), now),
            esc(&p.receiver),
            esc(p.last_error.as_deref().unwrap_or("not tried yet"))
        );
    }
    let _ = write!(
        h,
        ". {} silence{}",
        o.silences.len(),
        if o.silences.len() == 1 { "" } else { "s" }
    );
    if !o.silences.is_empty() {
        let list: Vec<String> = o
            .silences
            .iter()
            .map(|s| {
                let m: Vec<String> = s.matchers.iter().map(ToString::to_string).collect();
                format!(
                    "{} until {} ({})",
                    m.join(", "),
                    utc(s.ends_at_ms),
                    s.comment
                )
            })
            .collect();
        let _ = write!(
            h,
            ": <span class=detail id=silences>{}</span>",
            esc(&list.join("; "))
        );
    }
    h.push_str(".</p>");
    // Checks by group.
    let mut current: Option<&str> = None;
    for c in &o.checks {
        if current != Some(c.group.as_str()) {
            if current.is_some() {
                h.push_str("</tbody></table>");
            }
            current = Some(c.group.as_str());
            let title = GROUPS
                .iter()
                .find(|(k, _)| *k == c.group)
                .map_or(c.group.as_str(), |(_, t)| t);
            let _ = write!(
                h,
                "<h2 id=\"group-{0}\">{1}</h2><table><thead><tr><th>Check</th><th>State</th><th>Reason</th><th class=wide>Latency</th><th class=wide>Changed</th><th>24 h</th><th class=wide>7 d</th></tr></thead><tbody>",
                esc(&c.group),
                esc(title)
            );
        }
        let s = &c.status;
        let state = match c.state {
            "blocked" => format!("blocked by {}", s.blocked_by.join(", ")),
            "failing" => "FAIL".into(),
            other => other.into(),
        };
        // A failing check that others depend on is a root cause: it stands out.
        let root = c.state == "failing"
            && o.checks
                .iter()
                .any(|x| x.status.blocked_by.contains(&s.name));
        let _ = write!(
            h,
            "<tr id=\"check-{name}\" class=\"check{root}\" data-state=\"{st}\"><td><a href=\"/check/{name}\"><b>{name}</b></a>{rc}<div class=detail>{target}</div></td><td class={st}>{state}</td><td>{reason}<div class=detail>{detail}</div></td><td class=wide>{lat:.1} ms</td><td class=wide>{chg}</td><td>{u24}</td><td class=wide>{u7}</td></tr>",
            name = esc(&s.name),
            root = if root { " root" } else { "" },
            rc = if root {
                " <span class=badge>root cause</span>"
            } else {
                ""
            },
            st = c.state,
            target = esc(&s.target),
            reason = s.reason.unwrap_or(""),
            detail = esc(s.detail.as_deref().unwrap_or("")),
            lat = s.duration_seconds * 1000.0,
            chg = ago(s.last_change_ms, now),
            u24 = pct(c.uptime_24h),
            u7 = pct(c.uptime_7d),
        );
    }
    if current.is_some() {
        h.push_str("</tbody></table>");
    }
    let _ = write!(
        h,
        "<p class=detail>harena-exporter {} · config {} · <a href=\"/metrics\">/metrics</a> · <a href=\"/api/v1/status\">/api/v1/status</a> · <a href=\"/api/v1/checks\">checks</a> · <a href=\"/api/v1/alerts\">alerts</a> · <a href=\"/api/v1/silences\">silences</a> · <a href=\"/api/v1/notifications\">notifications</a> · refreshes every 15 s · {}</p></body></html>",
        o.version,
        esc(&o.config),
        utc(now)
    );
    h
}

/// Renders one check's page.
pub fn render_check(d: &CheckDetail) -> String {
    let s = &d.check.status;
    let now = now_ms();
    let mut h = page_head(&format!("{} · Harena status", s.name));
    let _ = write!(
        h,
        "<p><a href=\"/\">← all checks</a></p><h1>{}</h1><p><span class={st}>{state}</span> · {kind} · {target}</p>",
        esc(&s.name),
        st = d.check.state,
        state = d.check.state,
        kind = esc(&s.kind),
        target = esc(&s.target),
    );
    if !s.blocked_by.is_empty() {
        let _ = write!(
            h,
            "<p class=blocked>Blocked by {}: fix that first.</p>",
            esc(&s.blocked_by.join(", "))
        );
    }
    let _ = write!(
        h,
        "<p>Reason: <b>{}</b><br><span class=detail>{}</span></p><p>Uptime: {} over 24 h, {} over 7 d. Last run {}, state changed {}. Depends on: {}.</p>",
        s.reason.unwrap_or("none"),
        esc(s.detail.as_deref().unwrap_or("")),
        pct(d.check.uptime_24h),
        pct(d.check.uptime_7d),
        ago(s.last_run_ms, now),
        ago(s.last_change_ms, now),
        if s.depends_on.is_empty() {
            "nothing".to_string()
        } else {
            esc(&s.depends_on.join(", "))
        },
    );
    h.push_str("<h2>Changes (7 days)</h2>");
    if d.changes.is_empty() {
        h.push_str("<p>None.</p>");
    } else {
        h.push_str("<table id=changes><thead><tr><th>When</th><th>State</th><th>Reason</th></tr></thead><tbody>");
        for c in &d.changes {
            let _ = write!(
                h,
                "<tr><td>{}</td><td class={}>{}</td><td>{}<div class=detail>{}</div></td></tr>",
                utc(c.ts_ms),
                if c.success { "ok" } else { "fail" },
                if c.success { "recovered" } else { "failed" },
                esc(&c.reason),
                esc(&c.detail)
            );
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("<h2>Recent runs</h2><table id=runs><thead><tr><th>When</th><th>Result</th><th class=wide>Duration</th><th>Detail</th></tr></thead><tbody>");
    for r in &d.recent_runs {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class={}>{}</td><td class=wide>{:.1} ms</td><td class=detail>{}</td></tr>",
            utc(r.ts_ms),
            if r.success { "ok" } else { "fail" },
            if r.success {
                "ok".to_string()
            } else {
                esc(&r.reason)
            },
            r.duration_seconds * 1000.0,
            esc(&r.detail)
        );
    }
    h.push_str("</tbody></table></body></html>");
    h
}
