//! The heartbeat: a dead man's switch. Monitoring that runs on the host it watches
//! cannot report that host's death by itself, so the exporter calls an external URL
//! (healthchecks.io, Uptime Kuma's push monitor, Cronitor, an Alertmanager-fronted
//! watchdog …) on an interval, and that service alerts when the calls stop.
//!
//! ```yaml
//! alerting:
//!   heartbeats:
//!     - name: healthchecks
//!       url: https://hc-ping.com/6f1e0c1a-0000-4000-8000-000000000000
//!       interval: 1m
//! ```
//!
//! A beat is sent only while the exporter is healthy (the `healthy` callback, which the
//! app wires to its own readiness: config loaded, scheduler and rule evaluation
//! running); when it is not, the beat is skipped and the reason logged at warn, so the
//! external service alerts on a broken monitor too, not only on a dead host.
//!
//! Metrics: `harena_heartbeat_last_success_timestamp_seconds{name}` (absent until the
//! first accepted beat) and `harena_heartbeats_total{name,result}`, `result` being
//! `success`, `unhealthy` (skipped) or the failure reason (`refused`, `timeout`,
//! `http_status`, `auth`, …).

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use prometheus::core::Collector;
use prometheus::{GaugeVec, IntCounterVec, Opts};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::BuildError;
use super::webhook::{Endpoint, HttpSender};
use crate::config::types::{BasicAuth, PromDuration, SafeUrl, TlsConfig};

/// The HTTP method of a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum HeartbeatMethod {
    /// `GET` (the default).
    #[default]
    #[serde(rename = "GET", alias = "get")]
    Get,
    /// `POST`, with an empty body.
    #[serde(rename = "POST", alias = "post")]
    Post,
}

/// One entry of `alerting.heartbeats`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// A unique name, the `name` label of the heartbeat metrics. Required.
    /// Example: `name: healthchecks`.
    pub name: String,
    /// The URL to call, `http://` or `https://`; no password in it (use
    /// `basic_auth`). Logs show only its host and port, so a token in the path stays
    /// out of them. Required. Example: `url: https://hc-ping.com/<uuid>`.
    #[serde(deserialize_with = "de_url")]
    pub url: SafeUrl,
    /// How often to call it. Default `1m`. Example: `interval: 30s`.
    #[serde(default = "default_interval")]
    pub interval: PromDuration,
    /// The most one call may take; less than `interval`. Default `10s`.
    /// Example: `timeout: 5s`.
    #[serde(default = "default_timeout")]
    pub timeout: PromDuration,
    /// `GET` or `POST` (empty body). Default `GET`. Example: `method: POST`.
    #[serde(default)]
    pub method: HeartbeatMethod,
    /// HTTP basic authentication, the password from a file or an environment variable.
    /// Default none. Example: `basic_auth: {username: harena, password_env: HB_PASSWORD}`.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
}

fn default_interval() -> PromDuration {
    PromDuration(Duration::from_secs(60))
}

fn default_timeout() -> PromDuration {
    PromDuration(Duration::from_secs(10))
}

fn de_url<'de, D: Deserializer<'de>>(d: D) -> Result<SafeUrl, D::Error> {
    let text = String::deserialize(d)?;
    let url = SafeUrl::parse(&text, &["http", "https"]).map_err(D::Error::custom)?;
    Endpoint::parse(&text).map_err(D::Error::custom)?;
    Ok(url)
}

impl HeartbeatConfig {
    /// Checks what serde cannot: the times, the URL, the basic auth keys. The config
    /// parser calls it so that [`spawn`] never meets a bad entry.
    ///
    /// # Errors
    /// A [`BuildError`] naming the field.
    pub fn validate(&self) -> Result<(), BuildError> {
        Beat::build(self).map(|_| ())
    }
}

/// The heartbeat metrics; register [`HeartbeatMetrics::collectors`] once.
#[derive(Debug, Clone)]
pub struct HeartbeatMetrics {
    last_success: GaugeVec,
    total: IntCounterVec,
}

impl Default for HeartbeatMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl HeartbeatMetrics {
    /// New, empty metrics.
    pub fn new() -> Self {
        let last_success = GaugeVec::new(
            Opts::new(
                "harena_heartbeat_last_success_timestamp_seconds",
                "When the heartbeat URL last accepted a beat, as a Unix timestamp.",
            ),
            &["name"],
        )
        .expect("static metric definition is valid");
        let total = IntCounterVec::new(
            Opts::new(
                "harena_heartbeats_total",
                "Heartbeats by result: success, unhealthy (skipped because the exporter is not healthy) or the failure reason.",
            ),
            &["name", "result"],
        )
        .expect("static metric definition is valid");
        HeartbeatMetrics {
            last_success,
            total,
        }
    }

    /// The collectors to register.
    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.last_success.clone()),
            Box::new(self.total.clone()),
        ]
    }
}

/// A built heartbeat.
#[derive(Debug)]
struct Beat {
    name: String,
    target: Endpoint,
    interval: Duration,
    method: Method,
    http: HttpSender,
}

impl Beat {
    fn build(c: &HeartbeatConfig) -> Result<Beat, BuildError> {
        if c.name.trim().is_empty() {
            return Err(BuildError::new("name", "must not be empty"));
        }
        if c.interval.0.is_zero() {
            return Err(BuildError::new("interval", "must be more than 0s"));
        }
        if c.timeout.0.is_zero() || c.timeout.0 >= c.interval.0 {
            return Err(BuildError::new(
                "timeout",
                format!(
                    "timeout {} must be more than 0s and less than interval {}",
                    c.timeout, c.interval
                ),
            ));
        }
        let target = Endpoint::parse(&c.url.0).map_err(|e| BuildError::new("url", e))?;
        let http = HttpSender::new(&TlsConfig::default(), c.basic_auth.as_ref(), c.timeout.0)?;
        Ok(Beat {
            name: c.name.clone(),
            target,
            interval: c.interval.0,
            method: match c.method {
                HeartbeatMethod::Get => Method::GET,
                HeartbeatMethod::Post => Method::POST,
            },
            http,
        })
    }
}

/// The health callback: `Err(why)` while the exporter is not healthy.
pub type HealthFn = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Starts one task per heartbeat, beating at once and then every `interval` while
/// `healthy()` is `Ok`, until `token` is cancelled; the handle ends when they all
/// stopped. An entry that does not build (which [`HeartbeatConfig::validate`] catches
/// at load) is logged at error and left out.
pub fn spawn(
    configs: Vec<HeartbeatConfig>,
    healthy: HealthFn,
    token: CancellationToken,
    metrics: &HeartbeatMetrics,
) -> JoinHandle<()> {
    let metrics = metrics.clone();
    tokio::spawn(async move {
        let mut set = JoinSet::new();
        for c in &configs {
            match Beat::build(c) {
                Ok(beat) => {
                    metrics
                        .total
                        .with_label_values(&[beat.name.as_str(), "success"]);
                    set.spawn(run(
                        beat,
                        Arc::clone(&healthy),
                        token.clone(),
                        metrics.clone(),
                    ));
                }
                Err(e) => tracing::error!(heartbeat = %c.name, error = %e, "heartbeat not started"),
            }
        }
        while set.join_next().await.is_some() {}
    })
}

async fn run(beat: Beat, healthy: HealthFn, token: CancellationToken, metrics: HeartbeatMetrics) {
    let mut ticks = tokio::time::interval(beat.interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let name = beat.name.as_str();
    let target = beat.target.authority();
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if let Err(why) = healthy() {
            tracing::warn!(heartbeat = name, why = %why, "exporter not healthy: heartbeat skipped");
            metrics.total.with_label_values(&[name, "unhealthy"]).inc();
            continue;
        }
        let sent = tokio::select! {
            () = token.cancelled() => return,
            r = beat.http.request(beat.method.clone(), &beat.target, None) => r,
        };
        let result = sent.and_then(|a| a.judge(&format!("{} {target}", beat.method)));
        match result {
            Ok(()) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                metrics.last_success.with_label_values(&[name]).set(now);
                metrics.total.with_label_values(&[name, "success"]).inc();
                tracing::debug!(heartbeat = name, target = %target, "heartbeat sent");
            }
            Err(e) => {
                metrics.total.with_label_values(&[name, e.reason]).inc();
                tracing::warn!(
                    heartbeat = name,
                    reason = e.reason,
                    error = %e.message,
                    "heartbeat not accepted"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml::{Context, parse};

    fn load(yaml: &str) -> (Option<HeartbeatConfig>, Vec<String>) {
        let node = parse("hb.yml", yaml).unwrap();
        let mut cx = Context::new("hb.yml");
        let c = cx.deserialize::<HeartbeatConfig>(&node, "alerting.heartbeats[0]", &[]);
        (c, cx.diagnostics.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn defaults_and_errors() {
        let (c, errs) = load("name: hc\nurl: https://hc-ping.com/abc\n");
        assert!(errs.is_empty(), "{errs:?}");
        let c = c.unwrap();
        assert_eq!(c.interval, PromDuration(Duration::from_secs(60)));
        assert_eq!(c.timeout, PromDuration(Duration::from_secs(10)));
        assert_eq!(c.method, HeartbeatMethod::Get);
        assert!(c.validate().is_ok());

        let (c, errs) = load("name: hc\nurl: http://h/\nmethod: POST\ninterval: 30s\n");
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(c.unwrap().method, HeartbeatMethod::Post);

        let (_, errs) = load("name: hc\nurl: http://u:pw@h/\nmethd: GET\n");
        let all = errs.join("\n");
        assert!(all.contains("password_file"), "{all}");
        assert!(all.contains("methd"), "{all}");
        assert!(!all.contains("pw@"), "{all}");

        let (c, _) = load("name: hc\nurl: http://h/\ninterval: 5s\n");
        let e = c.unwrap().validate().unwrap_err();
        assert_eq!(e.field, "timeout");
    }
}
