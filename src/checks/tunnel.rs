//! `tunnel` check: the Cloudflare quick tunnel, through cloudflared's metrics server.
//!
//! One run reads `/ready` (edge connections), `/quicktunnel` (the random
//! `<words>.trycloudflare.com` hostname) and `/metrics` (request counters). When the
//! metrics server does not answer, the newest `https://….trycloudflare.com` URL in
//! cloudflared's log stands in for the hostname, and the check fails.
//!
//! The hostname changes at every tunnel restart, silently breaking whatever was
//! registered with the old one (the Bridge webhook). So the check exports it as
//! `{<check>.hostname}` and `{<check>.url}` for other checks (`public_site`), and
//! remembers it in the state file: a change is logged and timestamped, also one that
//! happened while the exporter was not running.

use std::fmt::Write as _;
use std::io::SeekFrom;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::time::Instant;

use super::http::client::{Fetched, HttpGet};
use super::{BuildError, Check, CheckError, Reason, Recorder, RunContext};
use crate::config::types::TlsConfig;
use crate::net;

crate::metric!(
    READY_CONNECTIONS,
    gauge,
    "harena_tunnel_ready_connections",
    "Connections from cloudflared to Cloudflare's edge that can serve traffic, from cloudflared's /ready."
);
crate::metric!(
    INFO,
    gauge,
    "harena_tunnel_info",
    "Always 1: the quick tunnel's current hostname, and where it was read (source: metrics or log)."
);
crate::metric!(
    HOSTNAME_CHANGED,
    gauge,
    "harena_tunnel_hostname_changed_timestamp_seconds",
    "When the exporter first saw the tunnel's current hostname, in Unix seconds (kept across restarts)."
);
crate::metric!(
    REQUESTS,
    counter,
    "harena_tunnel_requests_total",
    "Requests proxied through the tunnel since cloudflared started (cloudflared_tunnel_total_requests)."
);
crate::metric!(
    REQUEST_ERRORS,
    counter,
    "harena_tunnel_request_errors_total",
    "Requests cloudflared failed to proxy to the origin since it started (cloudflared_tunnel_request_errors)."
);
crate::metric!(
    RESPONSES,
    counter,
    "harena_tunnel_responses_total",
    "Responses through the tunnel since cloudflared started, by HTTP status code (cloudflared_tunnel_response_by_code)."
);

/// The ports cloudflared tries for its metrics server when `--metrics` is not given; it
/// takes the first free one.
pub const DEFAULT_PORTS: RangeInclusive<u16> = 20241..=20245;

/// The most of the log file's end that is read.
pub const MAX_LOG_BYTES: u64 = 1024 * 1024;

/// The quick tunnel URL as cloudflared logs it; `api.trycloudflare.com` is the service
/// that hands out tunnels, named in cloudflared's errors, never a tunnel.
static QUICK_TUNNEL_URL: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"(?i)https://([a-z0-9](?:[a-z0-9-]*[a-z0-9])?)\.trycloudflare\.com\b")
        .expect("the quick tunnel URL pattern is valid")
});

/// The keys of a `tunnel` check.
///
/// ```yaml
/// - name: tunnel
///   kind: tunnel
///   log_file: /home/ec2-user/cloudflare-tunnel.log
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelConfig {
    /// cloudflared's metrics server, `host:port`, as given to `cloudflared --metrics`.
    /// Default: the first of `localhost:20241` to `localhost:20245` that answers `/ready`
    /// as cloudflared does (cloudflared's own default range).
    /// Example: `metrics_address: 127.0.0.1:20241`.
    #[serde(default, deserialize_with = "de_address")]
    pub metrics_address: Option<String>,
    /// cloudflared's log file: when the metrics server does not answer (or has no
    /// `/quicktunnel`), the hostname is the last `https://….trycloudflare.com` URL in the
    /// last 1 MiB of this file. Default none (the embedded config sets
    /// `/home/ec2-user/cloudflare-tunnel.log`).
    /// Example: `log_file: /home/ec2-user/cloudflare-tunnel.log`.
    #[serde(default)]
    pub log_file: Option<PathBuf>,
}

fn de_address<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(d)?;
    if text.contains("://") {
        return Err(D::Error::custom(format!(
            "invalid address {text:?}: write host:port without a scheme, like 127.0.0.1:20241"
        )));
    }
    net::split_host_port(&text).map_err(D::Error::custom)?;
    Ok(Some(text))
}

/// `host:port` as a URL writes it.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// cloudflared's `/ready` answer.
#[derive(Debug, Deserialize)]
struct Ready {
    #[serde(rename = "readyConnections")]
    ready_connections: u64,
}

/// cloudflared's `/quicktunnel` answer.
#[derive(Debug, Deserialize)]
struct QuickTunnel {
    hostname: String,
}

/// A runnable `tunnel` check.
#[derive(Debug)]
pub struct TunnelCheck {
    /// Metrics server addresses (`host:port`) tried in order.
    candidates: Vec<String>,
    /// `metrics_address` was set: its answer is taken as it is, not scanned past.
    explicit: bool,
    /// The candidates, for messages.
    scan_label: String,
    log_file: Option<PathBuf>,
    client: HttpGet,
}

impl TunnelCheck {
    /// Replaces the addresses tried when `metrics_address` is not set (cloudflared's
    /// default `localhost:20241` to `localhost:20245`): for tests, which cannot rely on
    /// those ports being free.
    #[must_use]
    pub fn with_candidates(mut self, candidates: Vec<SocketAddr>) -> Self {
        self.candidates = candidates.iter().map(SocketAddr::to_string).collect();
        self.scan_label = self.candidates.join(", ");
        self.explicit = false;
        self
    }
}

/// Why no metrics server was found, when none was.
#[derive(Debug)]
struct NotFound {
    reason: Reason,
    detail: String,
}

/// The hostname of this run and where it came from.
struct Hostname {
    name: String,
    source: &'static str,
}

impl Check for TunnelCheck {
    type Config = TunnelConfig;
    const KIND: &'static str = "tunnel";
    const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    fn build(config: &TunnelConfig) -> Result<Self, BuildError> {
        let (candidates, explicit, scan_label) = match &config.metrics_address {
            Some(text) => {
                let (host, port) = net::split_host_port(text)
                    .map_err(|e| BuildError::new("metrics_address", e))?;
                let addr = authority(&host, port);
                (vec![addr.clone()], true, addr)
            }
            None => (
                DEFAULT_PORTS.map(|p| authority("localhost", p)).collect(),
                false,
                format!(
                    "localhost:{}-{}",
                    DEFAULT_PORTS.start(),
                    DEFAULT_PORTS.end()
                ),
            ),
        };
        Ok(TunnelCheck {
            candidates,
            explicit,
            scan_label,
            log_file: config.log_file.clone(),
            client: HttpGet::new(&TlsConfig::default(), None)?,
        })
    }

    fn target(&self) -> String {
        match &self.log_file {
            Some(log) => format!("{}, {}", self.scan_label, log.display()),
            None => self.scan_label.clone(),
        }
    }

    async fn run(&self, ctx: &RunContext, rec: &mut Recorder) -> Result<(), CheckError> {
        let start = Instant::now();
        match self.find(ctx.deadline).await {
            Ok((addr, ready)) => self.run_with_metrics(ctx, rec, &addr, ready, start).await,
            Err(not_found) => self.run_without_metrics(ctx, rec, not_found).await,
        }
    }
}

impl TunnelCheck {
    /// The first candidate that answers `/ready` as cloudflared does, and its answer.
    async fn find(&self, deadline: Instant) -> Result<(String, Fetched), NotFound> {
        let mut others = Vec::new();
        let n = self.candidates.len();
        for (i, addr) in self.candidates.iter().enumerate() {
            // Each candidate gets a share of the time left, so that one that accepts
            // and never answers leaves time for the others and for the log.
            let now = Instant::now();
            let left = deadline.saturating_duration_since(now);
            let share = u32::try_from(n - i + 1).unwrap_or(u32::MAX);
            let step = now + left / share;
            let url = format!("http://{addr}/ready");
            match self.client.get(&url, step).await {
                Ok(answer) if is_ready_answer(&answer) => return Ok((addr.clone(), answer)),
                Ok(answer) => {
                    let what = format!(
                        "get {url}: status {}, not cloudflared's readiness JSON; it starts with {}",
                        answer.status,
                        net::quote_truncated(&String::from_utf8_lossy(&answer.body), 60)
                    );
                    if self.explicit {
                        return Err(NotFound {
                            reason: Reason::Protocol,
                            detail: what,
                        });
                    }
                    others.push(format!("{addr} is not cloudflared"));
                }
                Err(e) if self.explicit => {
                    return Err(NotFound {
                        reason: e.reason,
                        detail: format!("cloudflared's metrics server does not answer: {e}"),
                    });
                }
                Err(e) => {
                    if e.reason == Reason::Timeout {
                        others.push(format!("{addr} did not answer in time"));
                    }
                    if Instant::now() >= deadline {
                        return Err(NotFound {
                            reason: Reason::Timeout,
                            detail: format!(
                                "no cloudflared metrics server found on {} before the timeout",
                                self.scan_label
                            ),
                        });
                    }
                }
            }
        }
        let mut detail = format!(
            "no cloudflared metrics server answers on {}",
            self.scan_label
        );
        if !others.is_empty() {
            let _ = write!(detail, " ({})", others.join(", "));
        }
        Err(NotFound {
            reason: Reason::Refused,
            detail,
        })
    }

    /// The run when the metrics server answered `/ready`.
    async fn run_with_metrics(
        &self,
        ctx: &RunContext,
        rec: &mut Recorder,
        addr: &str,
        ready: Fetched,
        start: Instant,
    ) -> Result<(), CheckError> {
        let connections = serde_json::from_slice::<Ready>(&ready.body)
            .map(|r| r.ready_connections)
            .unwrap_or(0);
        #[allow(clippy::cast_precision_loss)] // a handful of connections
        rec.record(&READY_CONNECTIONS, &[], connections as f64);
        // The first failure seen after /ready; /ready's own comes first.
        let mut failure: Option<CheckError> = None;

        // The hostname: /quicktunnel, else (an old cloudflared without it) the log.
        let mut named = false;
        let mut hostname = None;
        let url = format!("http://{addr}/quicktunnel");
        match self.client.get(&url, ctx.deadline).await {
            Ok(answer) if answer.status == 200 => {
                match serde_json::from_slice::<QuickTunnel>(&answer.body) {
                    Ok(q) if q.hostname.trim().is_empty() => named = true,
                    Ok(q) => match valid_hostname(q.hostname.trim()) {
                        Some(name) => {
                            hostname = Some(Hostname {
                                name,
                                source: "metrics",
                            });
                        }
                        None => {
                            failure.get_or_insert(CheckError::new(
                                Reason::Protocol,
                                format!(
                                    "get {url}: invalid hostname {}",
                                    net::quote_truncated(&q.hostname, 80)
                                ),
                            ));
                        }
                    },
                    Err(e) => {
                        failure.get_or_insert(CheckError::new(
                            Reason::Protocol,
                            format!("get {url}: not the expected JSON ({e})"),
                        ));
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
        let mut log_note = None;
        if hostname.is_none()
            && !named
            && let Some(log) = &self.log_file
        {
            match newest_url_in_log(log, ctx.deadline).await {
                Ok(Some(name)) => {
                    hostname = Some(Hostname {
                        name,
                        source: "log",
                    });
                }
                Ok(None) => log_note = Some(format!("no quick tunnel URL in {}", log.display())),
                Err(e) => log_note = Some(e),
            }
        }

        // The request counters.
        let mut requests = None;
        let url = format!("http://{addr}/metrics");
        match self.client.get(&url, ctx.deadline).await {
            Ok(answer) if answer.status == 200 => {
                requests = record_counters(rec, &String::from_utf8_lossy(&answer.body));
            }
            Ok(answer) => {
                failure.get_or_insert(CheckError::new(
                    Reason::HttpStatus,
                    format!("get {url}: status {}, expected 200", answer.status),
                ));
            }
            Err(e) => {
                failure.get_or_insert(e);
            }
        }

        self.note_hostname(ctx, rec, hostname.as_ref()).await;

        let mut facts = Vec::new();
        match (&hostname, named) {
            (Some(h), _) if h.source == "metrics" => {
                facts.push(format!("hostname {} (from metrics at {addr})", h.name))
            }
            (Some(h), _) => facts.push(format!("hostname {} (from log)", h.name)),
            (None, true) => facts.push("a named tunnel (no quick tunnel hostname)".to_string()),
            (None, false) => facts.push(match log_note {
                Some(note) => format!("no hostname ({note})"),
                None => "no hostname".to_string(),
            }),
        }
        if let Some((total, errors)) = requests {
            facts.push(format!("{total} requests, {errors} errors"));
        }
        let facts = facts.join(", ");
        if ready.status != 200 || connections == 0 {
            return Err(CheckError::new(
                Reason::HttpStatus,
                format!(
                    "cloudflared has no edge connection (ready {}); {facts}",
                    ready.status
                ),
            ));
        }
        if let Some(e) = failure {
            return Err(e);
        }
        let mut detail = match connections {
            1 => format!("1 edge connection, {facts}"),
            n => format!("{n} edge connections, {facts}"),
        };
        let _ = write!(detail, " in {}", net::fmt_duration(start.elapsed()));
        rec.set_detail(detail);
        Ok(())
    }

    /// The run when no metrics server answered: the hostname from the log, and a failure.
    async fn run_without_metrics(
        &self,
        ctx: &RunContext,
        rec: &mut Recorder,
        not_found: NotFound,
    ) -> Result<(), CheckError> {
        let NotFound { reason, detail } = not_found;
        let Some(log) = &self.log_file else {
            self.note_hostname(ctx, rec, None).await;
            return Err(CheckError::new(reason, detail));
        };
        match newest_url_in_log(log, ctx.deadline).await {
            Ok(Some(name)) => {
                let detail = format!("{detail}; hostname {name} (from log {})", log.display());
                let hostname = Hostname {
                    name,
                    source: "log",
                };
                self.note_hostname(ctx, rec, Some(&hostname)).await;
                Err(CheckError::new(reason, detail))
            }
            Ok(None) => {
                self.note_hostname(ctx, rec, None).await;
                Err(CheckError::new(
                    Reason::Missing,
                    format!("{detail}; no quick tunnel URL in {}", log.display()),
                ))
            }
            Err(e) => {
                self.note_hostname(ctx, rec, None).await;
                Err(CheckError::new(reason, format!("{detail}; {e}")))
            }
        }
    }

    /// Compares the hostname with the one in the state file, records the info and
    /// change-time series, and exports it. Without a hostname this run, the last change
    /// time known is still recorded.
    async fn note_hostname(&self, ctx: &RunContext, rec: &mut Recorder, h: Option<&Hostname>) {
        let host_key = format!("tunnel/{}/hostname", ctx.check);
        let changed_key = format!("tunnel/{}/hostname_changed_ms", ctx.check);
        let stored_changed = |text: Option<String>| text.and_then(|t| t.parse::<i64>().ok());
        let changed_ms = match h {
            None => stored_changed(ctx.state.get(&changed_key).await),
            Some(h) => {
                let previous = ctx.state.get(&host_key).await;
                let now = crate::scheduler::now_ms();
                let changed = match previous.as_deref() {
                    Some(old) if old == h.name => {
                        match stored_changed(ctx.state.get(&changed_key).await) {
                            Some(ms) => ms,
                            None => {
                                ctx.state.set(&changed_key, &now.to_string()).await;
                                now
                            }
                        }
                    }
                    previous => {
                        match previous {
                            Some(old) => tracing::info!(
                                check = %ctx.check,
                                old = %old,
                                new = %h.name,
                                source = %h.source,
                                "tunnel hostname changed"
                            ),
                            None => tracing::info!(
                                check = %ctx.check,
                                new = %h.name,
                                source = %h.source,
                                "tunnel hostname first seen"
                            ),
                        }
                        // The time first, so that a crash in between makes the next run
                        // see the change again rather than keep a stale time.
                        ctx.state.set(&changed_key, &now.to_string()).await;
                        ctx.state.set(&host_key, &h.name).await;
                        now
                    }
                };
                rec.record(
                    &INFO,
                    &[("hostname", h.name.as_str()), ("source", h.source)],
                    1.0,
                );
                rec.export("hostname", h.name.clone());
                rec.export("url", format!("https://{}", h.name));
                Some(changed)
            }
        };
        if let Some(ms) = changed_ms {
            #[allow(clippy::cast_precision_loss)] // exact for the next 280,000 years
            rec.record(&HOSTNAME_CHANGED, &[], ms as f64 / 1000.0);
        }
    }
}

/// cloudflared's `/ready`: 200 or 503 with a JSON body that has `readyConnections`.
fn is_ready_answer(answer: &Fetched) -> bool {
    matches!(answer.status, 200 | 503) && serde_json::from_slice::<Ready>(&answer.body).is_ok()
}

/// A DNS name as a URL can carry it, lowercased; `None` if it is not one.
fn valid_hostname(text: &str) -> Option<String> {
    let ok = !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    ok.then(|| text.to_ascii_lowercase())
}

/// The hostname of the last quick tunnel URL in the last [`MAX_LOG_BYTES`] of `path`.
///
/// # Errors
/// A detail naming the file, when it cannot be read.
async fn newest_url_in_log(path: &Path, deadline: Instant) -> Result<Option<String>, String> {
    let what = || format!("read {}", path.display());
    let read = async {
        let mut file = tokio::fs::File::open(path).await?;
        let len = file.metadata().await?.len();
        let from = len.saturating_sub(MAX_LOG_BYTES);
        file.seek(SeekFrom::Start(from)).await?;
        let mut buf = Vec::new();
        file.take(MAX_LOG_BYTES).read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout_at(deadline, read)
        .await
        .map_err(|_| format!("{}: timed out", what()))?
        .map_err(|e| format!("{}: {}", what(), net::io_error_text(&e)))?;
    Ok(last_quick_tunnel_host(&String::from_utf8_lossy(&buf)))
}

/// The hostname of the last quick tunnel URL in `text`.
fn last_quick_tunnel_host(text: &str) -> Option<String> {
    QUICK_TUNNEL_URL
        .captures_iter(text)
        .filter_map(|c| c.get(1))
        .map(|m| m.as_str().to_ascii_lowercase())
        .filter(|label| label != "api")
        .last()
        .map(|label| format!("{label}.trycloudflare.com"))
}

/// Records the request counters found in cloudflared's `/metrics`; returns
/// `(requests, errors)` when both were there, for the detail.
fn record_counters(rec: &mut Recorder, text: &str) -> Option<(f64, f64)> {
    let (mut total, mut errors) = (None, None);
    for line in text.lines() {
        let Some((name, labels, value)) = parse_sample(line) else {
            continue;
        };
        match name {
            "cloudflared_tunnel_total_requests" => {
                rec.record(&REQUESTS, &[], value);
                total = Some(value);
            }
            "cloudflared_tunnel_request_errors" => {
                rec.record(&REQUEST_ERRORS, &[], value);
                errors = Some(value);
            }
            "cloudflared_tunnel_response_by_code" => {
                if let Some((_, code)) = labels.iter().find(|(k, _)| k == "status_code") {
                    rec.record(&RESPONSES, &[("status_code", code.as_str())], value);
                }
            }
            _ => {}
        }
    }
    total.zip(errors)
}

/// A sample's labels, in order.
type Labels = Vec<(String, String)>;

/// One sample line of the Prometheus text format: `name{k="v",…} value [timestamp]`.
/// Comments, blank lines and lines that do not parse give `None`.
fn parse_sample(line: &str) -> Option<(&str, Labels, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let (name, mut rest) = line.split_at(name_end);
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = rest.split_once('=')?;
            let after = after.trim_start().strip_prefix('"')?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                let (i, c) = chars.next()?;
                match c {
                    '\\' => {
                        let (_, escaped) = chars.next()?;
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                    '"' => break i + 1,
                    c => value.push(c),
                }
            };
            labels.push((key.trim().to_string(), value));
            rest = after.get(end..)?.trim_start();
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().ok()?,
    };
    Some((name, labels, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn config() {
        let c: TunnelConfig = serde_json::from_value(json!({})).unwrap();
        assert_eq!(c, TunnelConfig::default());
        let check = TunnelCheck::build(&c).unwrap();
        assert_eq!(check.target(), "localhost:20241-20245");
        assert_eq!(check.candidates.len(), 5);
        assert_eq!(check.candidates[0], "localhost:20241");
        assert!(!check.explicit);
        let c: TunnelConfig = serde_json::from_value(
            json!({"metrics_address": "[::1]:2000", "log_file": "/var/log/cf.log"}),
        )
        .unwrap();
        let check = TunnelCheck::build(&c).unwrap();
        assert_eq!(check.candidates, ["[::1]:2000"]);
        assert_eq!(check.target(), "[::1]:2000, /var/log/cf.log");
        for (bad, needle) in [
            (
                json!({"metrics_address": "localhost"}),
                "expected host:port",
            ),
            (
                json!({"metrics_address": "http://localhost:2000"}),
                "without a scheme",
            ),
            (json!({"metrics": "x:1"}), "unknown field"),
        ] {
            let e = serde_json::from_value::<TunnelConfig>(bad.clone()).unwrap_err();
            assert!(e.to_string().contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn samples_parse() {
        let (name, labels, v) =
            parse_sample(r#"cloudflared_tunnel_response_by_code{status_code="200"} 35"#).unwrap();
        assert_eq!(
            (name, labels, v),
            (
                "cloudflared_tunnel_response_by_code",
                vec![("status_code".to_string(), "200".to_string())],
                35.0
            )
        );
        let (name, labels, v) =
            parse_sample(r#"x{a="q\"uo,te}", b = "2" ,} 1.5e3 1700000000000"#).unwrap();
        assert_eq!(name, "x");
        assert_eq!(
            labels,
            vec![
                ("a".to_string(), "q\"uo,te}".to_string()),
                ("b".to_string(), "2".to_string())
            ]
        );
        assert_eq!(v, 1500.0);
        assert_eq!(parse_sample("up +Inf").unwrap().2, f64::INFINITY);
        assert!(parse_sample("up NaN").unwrap().2.is_nan());
        for skip in [
            "",
            "# HELP x y",
            "# TYPE x counter",
            "x",
            "x{a=\"1\" 2",
            "x{a=1} 2",
            "x abc",
        ] {
            assert!(parse_sample(skip).is_none(), "{skip:?}");
        }
    }

    #[test]
    fn log_urls() {
        let log = "\
2025-11-03T09:00:00Z INF Requesting new quick Tunnel on trycloudflare.com...
2025-11-03T09:00:02Z INF |  https://first-words-here.trycloudflare.com                |
2025-11-03T10:00:00Z ERR failed to request quick Tunnel: Post \"https://api.trycloudflare.com/tunnel\": dial tcp: i/o timeout
2025-11-03T10:05:02Z INF |  https://Second-Words-There.trycloudflare.com              |
2025-11-03T10:06:00Z ERR failed to request quick Tunnel: Post \"https://api.trycloudflare.com/tunnel\"
";
        assert_eq!(
            last_quick_tunnel_host(log).as_deref(),
            Some("second-words-there.trycloudflare.com")
        );
        assert_eq!(last_quick_tunnel_host("nothing here"), None);
        assert_eq!(
            last_quick_tunnel_host("https://api.trycloudflare.com/tunnel"),
            None
        );
    }

    #[test]
    fn hostnames() {
        assert_eq!(
            valid_hostname("Words-Here.trycloudflare.com").as_deref(),
            Some("words-here.trycloudflare.com")
        );
        for bad in [
            "",
            "a b.com",
            "a/b",
            "-a.com",
            "a..com",
            "evil.com@x",
            "a:1",
        ] {
            assert_eq!(valid_hostname(bad), None, "{bad}");
        }
    }
}
