//! The daily report: one email a day with each check's state and uptime over the last
//! 24 hours, the incidents (state changes) of those hours, the backup and snapshot ages
//! and the ports open to the internet, so the team sees every morning that the monitor
//! itself is alive.
//!
//! It goes through the outbox like any notification (one row per email integration of
//! the report's receiver), under the group key `daily-report/<date>`: the notification
//! log keeps a restart from sending the same day's report twice.

use crate::model::escape_html as esc;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use tokio_util::sync::CancellationToken;

use super::config::DailyReportConfig;
use super::receivers::Receiver;
use super::timeinterval::Zone;
use super::{Notification, ReportBody};
use crate::history::History;
use crate::scheduler::StatusBoard;
use crate::state::State;
use crate::store::Store;

/// What the report task needs.
#[derive(Clone)]
pub struct ReportDeps {
    /// Check states.
    pub board: Arc<StatusBoard>,
    /// Uptime and incidents.
    pub history: Arc<History>,
    /// Current values (backup ages, exposed ports).
    pub store: Arc<Store>,
    /// Outbox rows and the notification log.
    pub state: Arc<State>,
    /// Wakes the outbox workers.
    pub wake: Arc<dyn Fn() + Send + Sync>,
}

/// When the report goes out: `daily_report.at` in `daily_report.location`.
#[derive(Clone)]
pub struct Schedule {
    /// The config entry.
    pub config: DailyReportConfig,
    /// Its zone, loaded once.
    pub zone: Zone,
}

impl std::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schedule")
            .field("at", &self.config.at)
            .finish()
    }
}

impl Schedule {
    /// The schedule of a `daily_report` entry.
    pub fn new(config: &DailyReportConfig) -> Self {
        Schedule {
            zone: config.zone(),
            config: config.clone(),
        }
    }

    /// The first instant after `now` whose local time is `at`.
    pub fn next_after(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.config.next_run(now, &self.zone)
    }

    /// The local date of an instant (the report's name).
    pub fn local_date(&self, t: DateTime<Utc>) -> chrono::NaiveDate {
        self.zone.to_local(t).date()
    }
}

/// Runs the report loop until `token` is cancelled.
pub fn spawn(
    deps: ReportDeps,
    receiver: Receiver,
    schedule: Schedule,
    external_url: String,
    token: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let now = Utc::now();
            let next = schedule.next_after(now);
            let wait = (next - now).to_std().unwrap_or_default();
            tracing::debug!(next = %next, "daily report scheduled");
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            let deps2 = deps.clone();
            let r = receiver.clone();
            let url = external_url.clone();
            let date = schedule.local_date(next);
            let res = tokio::task::spawn_blocking(move || {
                queue(&deps2, &r, &url, &date.to_string(), Utc::now())
            })
            .await;
            match res {
                Ok(Ok(n)) if n > 0 => (deps.wake)(),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "queue the daily report"),
                Err(e) => tracing::error!(error = %e, "queue the daily report"),
            }
        }
    })
}

/// Builds the report and queues it for every email integration of `receiver` that has
/// not had this date's report yet. Returns how many were queued. Blocking.
///
/// # Errors
/// SQLite.
pub fn queue(
    deps: &ReportDeps,
    receiver: &Receiver,
    external_url: &str,
    date: &str,
    now: DateTime<Utc>,
) -> rusqlite::Result<usize> {
    let body = build(deps, external_url, date, now);
    let group_key = format!("daily-report/{date}");
    let now_ms = now.timestamp_millis();
    let mut queued = 0;
    deps.state.with_conn(|c| -> rusqlite::Result<()> {
        let tx = c.unchecked_transaction()?;
        for (i, int) in receiver.integrations.iter().enumerate() {
            if int.kind() != "email" {
                continue;
            }
            let key = receiver.key(i);
            let done: Option<i64> = tx
                .query_row(
                    "SELECT ts_ms FROM nflog WHERE integration = ?1 AND group_key = ?2",
                    params![key, group_key],
                    |r| r.get(0),
                )
                .optional()?;
            if done.is_some() {
                continue;
            }
            if let Err(why) = int.configured() {
                tracing::warn!(integration = %key, reason = %why, "daily report not sent");
                continue;
            }
            let n = Notification {
                id: format!(
                    "report-{date}-{}",
                    super::fingerprint(&BTreeMap::from([("i".to_string(), key.clone())]))
                ),
                receiver: receiver.name.clone(),
                group_key: group_key.clone(),
                group_labels: BTreeMap::new(),
                alerts: Vec::new(),
                external_url: external_url.to_string(),
                created_ms: now_ms,
                report: Some(body.clone()),
            };
            super::outbox::insert(&tx, &key, &n)?;
            tx.execute(
                "INSERT INTO nflog (integration, group_key, firing, resolved, ts_ms)
                 VALUES (?1, ?2, '', '', ?3)",
                params![key, group_key, now_ms],
            )?;
            queued += 1;
        }
        tx.commit()
    })?;
    if queued > 0 {
        tracing::info!(receiver = %receiver.name, date, "daily report queued");
    }
    Ok(queued)
}

fn age(now_s: f64, ts: f64) -> String {
    crate::rules::template::humanize_duration((now_s - ts).max(0.0))
}

fn local(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// Renders the report (text and HTML).
pub fn build(deps: &ReportDeps, external_url: &str, date: &str, now: DateTime<Utc>) -> ReportBody {
    let now_ms = now.timestamp_millis();
    #[allow(clippy::cast_precision_loss)]
    let now_s = now_ms as f64 / 1000.0;
    let since = now_ms - 24 * 3_600_000;
    let uptime = deps.history.uptime_since(since);
    let changes = deps.history.changes_since(None, since);
    let checks = deps.board.snapshot();
    let failing = checks.iter().filter(|c| c.success == Some(false)).count();
    let current = deps.store.current();
    let values = |name: &str, label: &str| -> Vec<(String, f64)> {
        current
            .iter()
            .filter(|s| &*s.key.name == name)
            .map(|s| {
                (
                    s.key.labels.get(label).unwrap_or_default().to_string(),
                    s.value,
                )
            })
            .collect()
    };
    let backups = values("harena_backup_last_success_timestamp_seconds", "backup");
    let snapshots = values(
        "harena_ebs_snapshot_last_success_timestamp_seconds",
        "volume_id",
    );
    let exposed: Vec<(String, String)> = current
        .iter()
        .filter(|s| &*s.key.name == "harena_security_group_exposed_port")
        .map(|s| {
            (
                s.key.labels.get("port").unwrap_or_default().to_string(),
                s.key.labels.get("source").unwrap_or_default().to_string(),
            )
        })
        .collect();

    let subject = format!(
        "[harena] daily report {date}: {} of {} checks ok, {} incident{} in 24h",
        checks.len() - failing,
        checks.len(),
        changes.iter().filter(|c| !c.success).count(),
        if changes.iter().filter(|c| !c.success).count() == 1 {
            ""
        } else {
            "s"
        }
    );
    let mut text = String::new();
    let mut html = String::from(
        "<html><body style=\"font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#222\">",
    );
    let _ = writeln!(
        text,
        "harena-exporter daily report for {date} (last 24 hours)\n"
    );
    let _ = write!(
        html,
        "<h2 style=\"margin:0 0 8px\">Daily report {}</h2>",
        esc(date)
    );

    let _ = writeln!(text, "Checks");
    let _ = writeln!(
        text,
        "  {:<28} {:<22} {:>8}  detail",
        "check", "state", "uptime"
    );
    html.push_str("<h3>Checks</h3><table cellpadding=\"4\" style=\"border-collapse:collapse\"><tr style=\"background:#eee\"><th align=\"left\">check</th><th align=\"left\">state</th><th align=\"right\">uptime 24h</th><th align=\"left\">detail</th></tr>");
    for c in &checks {
        let state = match c.success {
            Some(true) => "ok".to_string(),
            Some(false) => format!("FAIL ({})", c.reason.unwrap_or("unknown")),
            None => "not run".to_string(),
        };
        let up = uptime
            .get(&c.name)
            .and_then(|u| u.ratio())
            .map_or("-".to_string(), |r| format!("{:.2}%", r * 100.0));
        let detail = if c.success == Some(false) {
            c.detail.clone().unwrap_or_default()
        } else {
            String::new()
        };
        let _ = writeln!(text, "  {:<28} {:<22} {:>8}  {}", c.name, state, up, detail);
        let color = if c.success == Some(false) {
            "#c0392b"
        } else {
            "#222"
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td style=\"color:{color}\">{}</td><td align=\"right\">{}</td><td>{}</td></tr>",
            esc(&c.name),
            esc(&state),
            esc(&up),
            esc(&detail)
        );
    }
    html.push_str("</table>");

    let _ = writeln!(text, "\nIncidents");
    html.push_str("<h3>Incidents</h3>");
    if changes.is_empty() {
        let _ = writeln!(text, "  none");
        html.push_str("<p>None.</p>");
    } else {
        html.push_str("<ul>");
        for ch in &changes {
            let what = if ch.success {
                "recovered".to_string()
            } else {
                format!("failed ({}): {}", ch.reason, ch.detail)
            };
            let _ = writeln!(text, "  {}  {}  {}", local(ch.ts_ms), ch.check, what);
            let _ = write!(
                html,
                "<li>{} <b>{}</b> {}</li>",
                esc(&local(ch.ts_ms)),
                esc(&ch.check),
                esc(&what)
            );
        }
        html.push_str("</ul>");
    }

    let _ = writeln!(text, "\nBackups and snapshots");
    html.push_str("<h3>Backups and snapshots</h3><ul>");
    if backups.is_empty() && snapshots.is_empty() {
        let _ = writeln!(text, "  none found");
        html.push_str("<li>None found.</li>");
    }
    for (name, ts) in &backups {
        let line = format!("backup {name}: newest is {} old", age(now_s, *ts));
        let _ = writeln!(text, "  {line}");
        let _ = write!(html, "<li>{}</li>", esc(&line));
    }
    for (vol, ts) in &snapshots {
        let line = format!(
            "EBS volume {vol}: newest snapshot is {} old",
            age(now_s, *ts)
        );
        let _ = writeln!(text, "  {line}");
        let _ = write!(html, "<li>{}</li>", esc(&line));
    }
    html.push_str("</ul>");

    let _ = writeln!(text, "\nPorts open to the internet");
    html.push_str("<h3>Ports open to the internet</h3>");
    if exposed.is_empty() {
        let _ = writeln!(text, "  none");
        html.push_str("<p>None.</p>");
    } else {
        let list: Vec<String> = exposed.iter().map(|(p, s)| format!("{p} ({s})")).collect();
        let _ = writeln!(text, "  {}", list.join(", "));
        let _ = write!(
            html,
            "<p style=\"color:#c0392b\">{}</p>",
            esc(&list.join(", "))
        );
    }
    if !external_url.is_empty() {
        let _ = writeln!(text, "\nStatus page: {external_url}");
        let _ = write!(
            html,
            "<p><a href=\"{0}\">Status page</a></p>",
            esc(external_url)
        );
    }
    let _ = writeln!(
        text,
        "\nThis report comes every day while harena-exporter runs. No report means the\nmonitor itself is down."
    );
    html.push_str("<p style=\"color:#888;font-size:12px\">This report comes every day while harena-exporter runs. No report means the monitor itself is down.</p></body></html>");
    ReportBody {
        subject,
        text,
        html,
    }
}
