//! The `alertmanager` integration: `POST /api/v2/alerts` to one or more Alertmanagers,
//! the way Prometheus hands its alerts over. This is the path for teams that run an
//! exporter per host and one Alertmanager cluster that deduplicates, groups and
//! routes for all of them.
//!
//! ```yaml
//! receivers:
//!   - name: alertmanager
//!     alertmanager_configs:
//!       - urls: [http://10.0.0.5:9093, http://10.0.0.6:9093]
//! route:
//!   routes:
//!     - receiver: alertmanager
//!       group_wait: 0s
//!       group_interval: 1m
//!       repeat_interval: 1m   # under the Alertmanagers' resolve_timeout (5m)
//!       continue: true
//! ```
//!
//! **Use a short `repeat_interval` on routes to this receiver** (1m, well under the
//! Alertmanagers' `resolve_timeout`, 5m by default). Firing alerts are sent without
//! `endsAt`, so an Alertmanager resolves an alert on its own once `resolve_timeout`
//! passed without the alert being sent again; Prometheus re-sends every alert every
//! minute for this reason, and the route's repeats do it here.
//!
//! A notification is accepted when at least one Alertmanager accepted it (they share
//! alerts through their cluster); the others' failures are logged at warn. When all
//! fail, the send fails with the first retryable error (a retry may reach an
//! Alertmanager that is back), or with a permanent one when every error is permanent
//! (Alertmanager answers 400 to alerts it refuses to parse).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use tokio::task::JoinSet;

use super::BuildError;
use super::webhook::{Endpoint, HttpSender, go_time};
use crate::config::types::{BasicAuth, PromDuration, SafeUrl, TlsConfig};
use crate::notify::{LabelSet, Notification, SendError};

/// Alertmanager's alerts API, the default `api_path`.
pub const DEFAULT_API_PATH: &str = "/api/v2/alerts";

/// `alertmanager_configs` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// The Alertmanagers' base URLs, `http://` or `https://`; every one receives every
    /// alert (as Prometheus sends to each member of a cluster). Required, at least one.
    /// Example: `urls: [http://127.0.0.1:9093]`.
    #[serde(deserialize_with = "de_urls")]
    pub urls: Vec<SafeUrl>,
    /// The most one request to one Alertmanager may take. Default `10s`.
    /// Example: `timeout: 5s`.
    #[serde(default = "default_timeout")]
    pub timeout: PromDuration,
    /// The path appended to each URL. Default `/api/v2/alerts`.
    /// Example: `api_path: /alertmanager/api/v2/alerts` (behind a reverse proxy).
    #[serde(default)]
    pub api_path: Option<String>,
    /// HTTP basic authentication (an Alertmanager behind a proxy, or with its
    /// `--web.config.file`), the password from a file or an environment variable.
    /// Default none. Example: `basic_auth: {username: harena, password_env: AM_PASSWORD}`.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// TLS settings for `https` URLs. Default: the built-in WebPKI roots.
    /// Example: `tls_config: {ca_file: /etc/harena/am-ca.pem}`.
    #[serde(default)]
    pub tls_config: TlsConfig,
    /// Whether resolved alerts are sent (with their `endsAt`, so that the Alertmanagers
    /// resolve them at once rather than after `resolve_timeout`). Default `true`.
    /// Example: `send_resolved: false`.
    #[serde(default)]
    pub send_resolved: Option<bool>,
}

fn default_timeout() -> PromDuration {
    PromDuration(Duration::from_secs(10))
}

fn de_urls<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SafeUrl>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts
        .iter()
        .map(|t| {
            let url = SafeUrl::parse(t, &["http", "https"]).map_err(D::Error::custom)?;
            Endpoint::parse(t).map_err(D::Error::custom)?;
            Ok(url)
        })
        .collect()
}

impl AlertmanagerConfig {
    /// Builds the integration.
    ///
    /// # Errors
    /// A [`BuildError`] naming the field: `urls`, `api_path`, `timeout`, `basic_auth`,
    /// `tls_config.*`.
    pub fn build(&self) -> Result<Alertmanager, BuildError> {
        if self.urls.is_empty() {
            return Err(BuildError::new("urls", "set at least one Alertmanager URL"));
        }
        if self.timeout.0.is_zero() {
            return Err(BuildError::new("timeout", "must be more than 0s"));
        }
        let path = self.api_path.as_deref().unwrap_or(DEFAULT_API_PATH);
        if !path.starts_with('/') {
            return Err(BuildError::new(
                "api_path",
                format!("{path:?} must start with '/'"),
            ));
        }
        let mut targets = Vec::with_capacity(self.urls.len());
        for (i, url) in self.urls.iter().enumerate() {
            let e = Endpoint::parse(&url.0)
                .and_then(|e| e.with_path(path))
                .map_err(|e| BuildError::new(format!("urls[{i}]"), e))?;
            targets.push(e);
        }
        let http = HttpSender::new(&self.tls_config, self.basic_auth.as_ref(), self.timeout.0)?;
        Ok(Alertmanager {
            targets,
            http: Arc::new(http),
            send_resolved: self.send_resolved.unwrap_or(true),
        })
    }
}

/// A built alertmanager integration.
#[derive(Debug)]
pub struct Alertmanager {
    targets: Vec<Endpoint>,
    http: Arc<HttpSender>,
    send_resolved: bool,
}

/// One alert of `POST /api/v2/alerts` (`PostableAlert`).
#[derive(Debug, Serialize)]
struct PostableAlert<'a> {
    labels: &'a LabelSet,
    annotations: &'a LabelSet,
    #[serde(rename = "startsAt")]
    starts_at: String,
    #[serde(rename = "endsAt", skip_serializing_if = "Option::is_none")]
    ends_at: Option<String>,
    #[serde(rename = "generatorURL")]
    generator_url: &'a str,
}

impl Alertmanager {
    /// Whether resolved alerts are sent.
    pub fn send_resolved(&self) -> bool {
        self.send_resolved
    }

    /// The JSON array for `n` (without resolved alerts when `send_resolved` is off);
    /// `None` when nothing is left to send.
    pub fn payload(&self, n: &Notification) -> Option<serde_json::Value> {
        let alerts: Vec<PostableAlert<'_>> = n
            .alerts
            .iter()
            .filter(|a| self.send_resolved || !a.resolved())
            .map(|a| PostableAlert {
                labels: &a.labels,
                annotations: &a.annotations,
                starts_at: go_time(a.starts_at_ms),
                ends_at: a.ends_at_ms.map(go_time),
                generator_url: &a.generator_url,
            })
            .collect();
        if alerts.is_empty() {
            return None;
        }
        serde_json::to_value(alerts).ok()
    }

    /// Posts the alerts to every Alertmanager at once.
    ///
    /// # Errors
    /// When no Alertmanager accepted them (see the module docs for which error).
    pub async fn send(&self, n: &Notification) -> Result<(), SendError> {
        let Some(payload) = self.payload(n) else {
            return Ok(());
        };
        let body = Bytes::from(
            serde_json::to_vec(&payload)
                .map_err(|e| SendError::permanent("internal", format!("encode alerts: {e}")))?,
        );
        let mut set = JoinSet::new();
        for (i, target) in self.targets.iter().enumerate() {
            let http = Arc::clone(&self.http);
            let target = target.clone();
            let body = body.clone();
            set.spawn(async move {
                let what = format!("POST alerts to {}", target.authority());
                let r = match http
                    .request(Method::POST, &target, Some((body, "application/json")))
                    .await
                {
                    Ok(answer) => answer.judge(&what),
                    Err(e) => Err(SendError {
                        message: format!("{what}: {}", e.message),
                        ..e
                    }),
                };
                (i, r)
            });
        }
        let mut results: Vec<(usize, Result<(), SendError>)> = Vec::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(r) => results.push(r),
                Err(e) => results.push((
                    usize::MAX,
                    Err(SendError::retry(
                        "internal",
                        format!("send task failed: {e}"),
                    )),
                )),
            }
        }
        results.sort_by_key(|(i, _)| *i);
        let accepted = results.iter().filter(|(_, r)| r.is_ok()).count();
        let errors: Vec<SendError> = results.into_iter().filter_map(|(_, r)| r.err()).collect();
        if accepted > 0 {
            for e in &errors {
                tracing::warn!(
                    receiver = %n.receiver,
                    notification = %n.id,
                    reason = e.reason,
                    error = %e.message,
                    "an Alertmanager did not accept the alerts; another one did"
                );
            }
            return Ok(());
        }
        let summary = errors
            .iter()
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        let worst = errors
            .iter()
            .find(|e| e.retryable)
            .or(errors.first())
            .cloned()
            .unwrap_or_else(|| SendError::retry("internal", "no Alertmanager to send to"));
        Err(SendError {
            message: if errors.len() > 1 {
                format!("no Alertmanager accepted the alerts: {summary}")
            } else {
                summary
            },
            ..worst
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::NotifyAlert;

    fn ls(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn am(json: &str) -> Result<Alertmanager, String> {
        let c: AlertmanagerConfig = serde_json::from_str(json).map_err(|e| e.to_string())?;
        c.build().map_err(|e| e.to_string())
    }

    #[test]
    fn config() {
        let a = am(r#"{"urls":["http://127.0.0.1:9093","https://am.example/prefix"]}"#).unwrap();
        assert_eq!(a.targets[0].authority(), "127.0.0.1:9093");
        assert_eq!(a.targets[1].authority(), "am.example:443");
        assert!(a.send_resolved());
        assert!(
            am(r#"{"urls":[]}"#)
                .unwrap_err()
                .starts_with("urls: set at least one")
        );
        assert!(am(r#"{}"#).unwrap_err().contains("missing field `urls`"));
        assert!(
            am(r#"{"urls":["http://u:p@h"]}"#)
                .unwrap_err()
                .contains("password_file")
        );
        assert!(
            am(r#"{"urls":["http://h"],"api_path":"api"}"#)
                .unwrap_err()
                .starts_with("api_path:")
        );
        assert!(
            am(r#"{"urls":["http://h"],"basic_auth":{"username":"u","password_file":"/a","password_env":"B"}}"#)
                .unwrap_err()
                .starts_with("basic_auth: set only one")
        );
    }

    #[test]
    fn payload_is_a_postable_alert_list() {
        let a = am(r#"{"urls":["http://127.0.0.1:9093"]}"#).unwrap();
        let labels = ls(&[("alertname", "Down"), ("check", "pg")]);
        let mut alert = NotifyAlert {
            fingerprint: crate::notify::fingerprint(&labels),
            labels,
            annotations: ls(&[("summary", "pg is down")]),
            starts_at_ms: 1_714_557_600_000,
            ends_at_ms: None,
            generator_url: "http://harena:9115/".into(),
            value: 1.0,
            reason: String::new(),
            detail: String::new(),
        };
        let mut n = Notification {
            id: "n".into(),
            receiver: "am".into(),
            group_key: "{}".into(),
            group_labels: LabelSet::new(),
            alerts: vec![alert.clone()],
            external_url: String::new(),
            created_ms: 0,
            report: None,
        };
        assert_eq!(
            a.payload(&n).unwrap(),
            serde_json::json!([{
                "labels": {"alertname": "Down", "check": "pg"},
                "annotations": {"summary": "pg is down"},
                "startsAt": "2024-05-01T10:00:00Z",
                "generatorURL": "http://harena:9115/"
            }])
        );
        alert.ends_at_ms = Some(1_714_557_660_000);
        n.alerts = vec![alert];
        assert_eq!(a.payload(&n).unwrap()[0]["endsAt"], "2024-05-01T10:01:00Z");
        let quiet = am(r#"{"urls":["http://h"],"send_resolved":false}"#).unwrap();
        assert!(quiet.payload(&n).is_none());
    }
}
