//! The demo's mailbox page: the messages the SMTP sink received, newest first, each
//! readable as text, as its HTML part (served sandboxed) and as raw source; plus the
//! heartbeat sink that stands in for an external dead man's switch.
//!
//! Routes: `/` (the list, refreshing itself), `/messages/{id}`, `/messages/{id}/html`,
//! `/messages/{id}/raw`, `/api/messages` (JSON), `/ping/{id}` (GET or POST: one beat).

use crate::model::escape_html as esc;
use std::fmt::Write as _;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::smtp::{Mailbox, ReceivedEmail};

/// What the pages read.
#[derive(Debug, Clone)]
pub struct PageState {
    /// The messages and heartbeats.
    pub mailbox: Mailbox,
    /// The exporter's status page, linked from the header.
    pub exporter_url: String,
}

/// The mailbox web app.
pub fn router(state: PageState) -> Router {
    Router::new()
        .route("/", get(list))
        .route("/messages/{id}", get(message))
        .route("/messages/{id}/html", get(message_html))
        .route("/messages/{id}/raw", get(message_raw))
        .route("/api/messages", get(api_messages))
        .route("/ping/{id}", get(ping).post(ping))
        .with_state(state)
}

fn time(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%H:%M:%S")
                .to_string()
        })
        .unwrap_or_default()
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1rem auto;max-width:60rem;padding:0 1rem;color:#222}\
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #ddd;vertical-align:top}\
th{background:#f4f4f4}a{color:#0b5cad}.muted{color:#777}pre{white-space:pre-wrap;background:#f7f7f7;padding:1rem;border:1px solid #ddd}\
.firing{color:#b00020;font-weight:600}.resolved{color:#1b7f3b;font-weight:600}iframe{width:100%;height:38rem;border:1px solid #ddd}\
@media (max-width:40rem){td:nth-child(3),th:nth-child(3){display:none}}";

fn page(title: &str, refresh: bool, exporter_url: &str, body: &str) -> Html<String> {
    let meta = if refresh {
        r#"<meta http-equiv="refresh" content="5">"#
    } else {
        ""
    };
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{meta}\
<title>{title}</title><style>{STYLE}</style></head><body>\
<p class=\"muted\">harena-exporter demo · <a href=\"/\">mailbox</a> · <a href=\"{url}\">status page</a></p>\
{body}</body></html>",
        title = esc(title),
        url = esc(exporter_url),
    ))
}

fn subject_class(subject: &str) -> &'static str {
    let s = subject.to_ascii_uppercase();
    if s.contains("RESOLVED") {
        "resolved"
    } else if s.contains("FIRING") {
        "firing"
    } else {
        ""
    }
}

async fn list(State(st): State<PageState>) -> Html<String> {
    let messages = st.mailbox.messages();
    let beats = st.mailbox.heartbeats();
    let mut h = String::new();
    let _ = write!(
        h,
        "<h1>Mailbox</h1><p>Every email the exporter sent through the demo's SMTP server \
         ({} so far, newest first). This page refreshes itself.</p>",
        messages.len()
    );
    if messages.is_empty() {
        h.push_str(
            "<p class=\"muted\">No email yet: the first alerts go out once the rules have run \
             for a few seconds.</p>",
        );
    } else {
        h.push_str("<table><tr><th>Received</th><th>Subject</th><th>To</th></tr>");
        for m in messages.iter().rev() {
            let _ = write!(
                h,
                "<tr><td>{}</td><td><a class=\"{}\" href=\"/messages/{}\">{}</a></td><td>{}</td></tr>",
                time(m.received_ms),
                subject_class(&m.subject),
                m.id,
                esc(if m.subject.is_empty() {
                    "(no subject)"
                } else {
                    &m.subject
                }),
                esc(&m.to),
            );
        }
        h.push_str("</table>");
    }
    let _ = write!(
        h,
        "<h2>Heartbeat</h2><p>The dead man's switch (<code>alerting.heartbeats</code>) called \
         this sink {} time(s){}.</p>",
        beats.count,
        beats
            .last_ms
            .map(|t| format!(", last at {}", time(t)))
            .unwrap_or_default()
    );
    page("Mailbox · harena-exporter demo", true, &st.exporter_url, &h)
}

fn find(st: &PageState, id: &str) -> Option<ReceivedEmail> {
    id.parse::<u64>().ok().and_then(|id| st.mailbox.message(id))
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "no such message\n").into_response()
}

async fn message(State(st): State<PageState>, Path(id): Path<String>) -> Response {
    let Some(m) = find(&st, &id) else {
        return not_found();
    };
    let mut h = String::new();
    let _ = write!(
        h,
        "<h1 class=\"{}\">{}</h1><table>\
<tr><th>From</th><td>{}</td></tr><tr><th>To</th><td>{}</td></tr>\
<tr><th>Date</th><td>{}</td></tr><tr><th>Envelope</th><td>{} → {}</td></tr></table>\
<p><a href=\"/messages/{id}/raw\">raw source</a></p>",
        subject_class(&m.subject),
        esc(&m.subject),
        esc(&m.from),
        esc(&m.to),
        esc(&m.date),
        esc(&m.envelope_from),
        esc(&m.envelope_to.join(", ")),
        id = m.id,
    );
    if m.html.is_some() {
        let _ = write!(
            h,
            "<h2>HTML part</h2><iframe sandbox src=\"/messages/{}/html\" title=\"HTML part\"></iframe>",
            m.id
        );
    }
    let _ = write!(h, "<h2>Text part</h2><pre>{}</pre>", esc(&m.text));
    page(&m.subject, false, &st.exporter_url, &h).into_response()
}

async fn message_html(State(st): State<PageState>, Path(id): Path<String>) -> Response {
    match find(&st, &id) {
        Some(ReceivedEmail {
            html: Some(html), ..
        }) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                // The email's HTML runs no script and loads nothing from elsewhere.
                (
                    header::CONTENT_SECURITY_POLICY,
                    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:",
                ),
            ],
            html,
        )
            .into_response(),
        Some(_) => (StatusCode::NOT_FOUND, "no HTML part\n").into_response(),
        None => not_found(),
    }
}

async fn message_raw(State(st): State<PageState>, Path(id): Path<String>) -> Response {
    match find(&st, &id) {
        Some(m) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], m.raw).into_response(),
        None => not_found(),
    }
}

async fn api_messages(State(st): State<PageState>) -> Response {
    axum::Json(serde_json::json!({
        "messages": st.mailbox.messages(),
        "heartbeats": st.mailbox.heartbeats(),
    }))
    .into_response()
}

async fn ping(State(st): State<PageState>) -> &'static str {
    st.mailbox.record_heartbeat();
    "OK\n"
}
