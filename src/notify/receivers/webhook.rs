//! The `webhook` integration: Alertmanager's `webhook_config`, posting Alertmanager's
//! webhook JSON (version `"4"`) byte for byte in its shape, so that whatever consumes
//! Alertmanager's webhooks consumes ours.
//!
//! ```yaml
//! receivers:
//!   - name: chat
//!     webhook_configs:
//!       - url: http://127.0.0.1:5001/hook
//!         max_alerts: 20
//!         http_config:
//!           basic_auth: {username: harena, password_env: HARENA_HOOK_PASSWORD}
//! ```
//!
//! The answer decides the outbox's next step: any 2xx is accepted; 401 and 403 are
//! retried as `auth` (the password is read at every send, so fixing its file or
//! variable fixes the queue without losing a notification); 408 and 429 are retried;
//! other 4xx are refused for good (`rejected`: the same body would be refused again);
//! 5xx and the rest are retried (`http_status`); a connection that cannot be made is
//! retried with its reason (`dns`, `refused`, `timeout`, `tls`).
//!
//! This file also holds the small HTTP/1.1 client ([`HttpSender`]) that the
//! `alertmanager` integration and the heartbeat use: one request per connection,
//! bounded by a deadline, TLS and basic auth as the checks configure them, and error
//! messages that name only `host:port` (a webhook URL may carry a token in its path)
//! and never a password.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONNECTION, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::BuildError;
use crate::checks::Reason;
use crate::config::types::{BasicAuth, PromDuration, SafeUrl, SecretSource, TlsConfig};
use crate::net;
use crate::notify::{LabelSet, Notification, NotifyAlert, SendError};

/// `webhook_configs` entry, as in Alertmanager.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to `POST` the JSON: `http://` or `https://`, no password in it (use
    /// `http_config.basic_auth`). Set this or `url_file`. Default none.
    /// Example: `url: http://127.0.0.1:5001/hook`.
    #[serde(default, deserialize_with = "de_url")]
    pub url: Option<SafeUrl>,
    /// File that holds the URL (trailing newline trimmed), read at every send: for
    /// URLs that carry a token. Set this or `url`. Default none.
    /// Example: `url_file: /run/secrets/chat_webhook_url`.
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// Whether resolved alerts are sent. Default `true`. Example: `send_resolved: false`.
    #[serde(default)]
    pub send_resolved: Option<bool>,
    /// The most alerts in one message; the rest are left out and counted in
    /// `truncatedAlerts`. Default `0`: all. Example: `max_alerts: 20`.
    #[serde(default)]
    pub max_alerts: u64,
    /// HTTP client settings: `basic_auth` and `tls_config`. Default: none, and the
    /// built-in WebPKI roots.
    /// Example: `http_config: {basic_auth: {username: harena, password_env: HOOK_PASSWORD}}`.
    #[serde(default)]
    pub http_config: HttpClientConfig,
    /// The most one request may take, connection included. Default `10s`.
    /// Example: `timeout: 30s`.
    #[serde(default = "default_timeout")]
    pub timeout: PromDuration,
}

/// `http_config:` of a webhook: the part of Prometheus's HTTP client settings the
/// exporter supports.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpClientConfig {
    /// HTTP basic authentication, with the password from a file or an environment
    /// variable, read at every send. Default none.
    /// Example: `basic_auth: {username: harena, password_file: /run/secrets/hook}`.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// TLS settings for an `https` URL. Default: the built-in WebPKI roots.
    /// Example: `tls_config: {ca_file: /etc/harena/ca.pem}`.
    #[serde(default)]
    pub tls_config: TlsConfig,
}

fn default_timeout() -> PromDuration {
    PromDuration(Duration::from_secs(10))
}

fn de_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SafeUrl>, D::Error> {
    let text = String::deserialize(d)?;
    let url = SafeUrl::parse(&text, &["http", "https"]).map_err(D::Error::custom)?;
    Endpoint::parse(&text).map_err(D::Error::custom)?;
    Ok(Some(url))
}

impl WebhookConfig {
    /// Builds the integration: checks the URL (or that `url_file` is readable), loads
    /// the TLS files and checks the basic auth keys.
    ///
    /// # Errors
    /// A [`BuildError`] naming the field (`url`, `url_file`, `http_config.basic_auth`,
    /// `http_config.tls_config.ca_file`, `timeout`).
    pub fn build(&self) -> Result<Webhook, BuildError> {
        let target = match (&self.url, &self.url_file) {
            (Some(_), Some(_)) => {
                return Err(BuildError::new("url", "set only one of url and url_file"));
            }
            (None, None) => return Err(BuildError::new("url", "set url or url_file")),
            (Some(url), None) => {
                UrlSource::Fixed(Endpoint::parse(&url.0).map_err(|e| BuildError::new("url", e))?)
            }
            (None, Some(path)) => {
                read_url_file(path).map_err(|e| BuildError::new("url_file", e))?;
                UrlSource::File(path.clone())
            }
        };
        if self.timeout.0.is_zero() {
            return Err(BuildError::new("timeout", "must be more than 0s"));
        }
        let http = HttpSender::new(
            &self.http_config.tls_config,
            self.http_config.basic_auth.as_ref(),
            self.timeout.0,
        )
        .map_err(|e| BuildError::new(format!("http_config.{}", e.field), e.message))?;
        Ok(Webhook {
            target,
            send_resolved: self.send_resolved.unwrap_or(true),
            max_alerts: usize::try_from(self.max_alerts).unwrap_or(usize::MAX),
            http,
        })
    }
}

#[derive(Debug)]
enum UrlSource {
    Fixed(Endpoint),
    File(PathBuf),
}

/// Reads and checks the URL in `url_file`; the message never shows the URL.
fn read_url_file(path: &std::path::Path) -> Result<Endpoint, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("read {}: {}", path.display(), net::io_error_text(&e)))?;
    Endpoint::parse(text.trim()).map_err(|_| {
        format!(
            "{} does not hold an http(s) URL of the form http(s)://host[:port]/path",
            path.display()
        )
    })
}

/// A built webhook integration.
#[derive(Debug)]
pub struct Webhook {
    target: UrlSource,
    send_resolved: bool,
    max_alerts: usize,
    http: HttpSender,
}

impl Webhook {
    /// Whether resolved alerts are sent.
    pub fn send_resolved(&self) -> bool {
        self.send_resolved
    }

    /// The JSON message for `n`: without resolved alerts when `send_resolved` is off,
    /// cut to `max_alerts`; `None` when no alert is left to send.
    pub fn message(&self, n: &Notification) -> Option<serde_json::Value> {
        self.body(n).and_then(|b| serde_json::from_slice(&b).ok())
    }

    /// The message as sent: Alertmanager's key order kept.
    fn body(&self, n: &Notification) -> Option<Vec<u8>> {
        let alerts: Vec<&NotifyAlert> = n
            .alerts
            .iter()
            .filter(|a| self.send_resolved || !a.resolved())
            .collect();
        if alerts.is_empty() {
            return None;
        }
        serde_json::to_vec(&message(n, alerts, self.max_alerts)).ok()
    }

    /// Posts the notification's JSON; a notification with nothing to send (only
    /// resolved alerts and `send_resolved: false`) is accepted without a request.
    ///
    /// # Errors
    /// Why it was not accepted (see the module docs for what is retried).
    pub async fn send(&self, n: &Notification) -> Result<(), SendError> {
        let Some(body) = self.body(n) else {
            return Ok(());
        };
        let endpoint = match &self.target {
            UrlSource::Fixed(e) => e.clone(),
            UrlSource::File(path) => {
                read_url_file(path).map_err(|e| SendError::retry("internal", e))?
            }
        };
        let answer = self
            .http
            .request(
                Method::POST,
                &endpoint,
                Some((Bytes::from(body), "application/json")),
            )
            .await?;
        answer.judge(&format!("POST to {}", endpoint.authority()))
    }
}

/// Alertmanager's webhook message (`notify/webhook.Message`, version 4) for `alerts`,
/// which are alerts of `n`.
fn message<'a>(
    n: &'a Notification,
    alerts: Vec<&'a NotifyAlert>,
    max_alerts: usize,
) -> Message<'a> {
    let total = alerts.len();
    let kept: Vec<&'a NotifyAlert> = if max_alerts > 0 {
        alerts.into_iter().take(max_alerts).collect()
    } else {
        alerts
    };
    let truncated = total - kept.len();
    let status = if kept.iter().any(|a| !a.resolved()) {
        "firing"
    } else {
        "resolved"
    };
    Message {
        receiver: quote_meta(&n.receiver),
        status,
        alerts: kept
            .iter()
            .copied()
            .map(|a| WireAlert {
                status: a.status(),
                labels: &a.labels,
                annotations: &a.annotations,
                starts_at: go_time(a.starts_at_ms),
                ends_at: a
                    .ends_at_ms
                    .map_or_else(|| GO_ZERO_TIME.to_string(), go_time),
                generator_url: &a.generator_url,
                fingerprint: &a.fingerprint,
            })
            .collect(),
        group_labels: &n.group_labels,
        common_labels: common(kept.iter().map(|a| &a.labels)),
        common_annotations: common(kept.iter().map(|a| &a.annotations)),
        external_url: &n.external_url,
        version: "4",
        group_key: &n.group_key,
        truncated_alerts: truncated,
    }
}

#[derive(Serialize)]
struct Message<'a> {
    receiver: String,
    status: &'static str,
    alerts: Vec<WireAlert<'a>>,
    #[serde(rename = "groupLabels")]
    group_labels: &'a LabelSet,
    #[serde(rename = "commonLabels")]
    common_labels: LabelSet,
    #[serde(rename = "commonAnnotations")]
    common_annotations: LabelSet,
    #[serde(rename = "externalURL")]
    external_url: &'a str,
    version: &'static str,
    #[serde(rename = "groupKey")]
    group_key: &'a str,
    #[serde(rename = "truncatedAlerts")]
    truncated_alerts: usize,
}

#[derive(Serialize)]
struct WireAlert<'a> {
    status: &'static str,
    labels: &'a LabelSet,
    annotations: &'a LabelSet,
    #[serde(rename = "startsAt")]
    starts_at: String,
    #[serde(rename = "endsAt")]
    ends_at: String,
    #[serde(rename = "generatorURL")]
    generator_url: &'a str,
    fingerprint: &'a str,
}

fn common<'a>(mut sets: impl Iterator<Item = &'a LabelSet>) -> LabelSet {
    let Some(first) = sets.next() else {
        return LabelSet::new();
    };
    let mut out = first.clone();
    for s in sets {
        out.retain(|k, v| s.get(k) == Some(v));
    }
    out
}

/// Go's zero `time.Time` in JSON: what Alertmanager sends as `endsAt` while an alert
/// fires.
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// ms since the epoch as Go's `time.Time` marshals to JSON (RFC 3339, UTC, trailing
/// zeros of the fraction dropped): `2024-05-01T10:00:00Z`, `2024-05-01T10:00:00.25Z`.
pub fn go_time(ms: i64) -> String {
    let full = crate::telemetry::rfc3339(ms); // …:SS.mmmZ
    let Some(body) = full.strip_suffix('Z') else {
        return full;
    };
    let trimmed = body.trim_end_matches('0').trim_end_matches('.');
    // Only the fraction may lose zeros: seconds "…:50.000" must keep their "50".
    let keep = body.len().min(trimmed.len().max(body.len() - 4));
    format!("{}Z", &body[..keep])
}

/// Go's `regexp.QuoteMeta`, which Alertmanager applies to the receiver name.
fn quote_meta(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------
// The integrations' HTTP client
// ---------------------------------------------------------------------------------------

/// The most body bytes read from an answer (only an error message uses it).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// How much of an error answer's body a message shows.
const SHOWN_CHARS: usize = 200;

/// A parsed `http(s)://host[:port]/path?query` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    https: bool,
    host: String,
    port: u16,
    path: String,
}

impl Endpoint {
    /// Parses a URL; the message shows the URL, so call it on config text only.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("invalid URL {text:?}: expected http(s)://host[:port]/path"))?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => {
                return Err(format!(
                    "invalid URL {text:?}: scheme must be http or https"
                ));
            }
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.contains('@') {
            return Err(format!(
                "invalid URL {text:?}: remove the user from the URL and set basic_auth instead"
            ));
        }
        let default_port = if https { 443 } else { 80 };
        let (host, port) = if authority.starts_with('[') {
            match authority.rsplit_once("]:") {
                Some((h, p)) => (format!("{h}]"), Some(p)),
                None => (authority.to_string(), None),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .map_or(host.clone(), str::to_string);
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '[' || c == ']') {
            return Err(format!("invalid URL {text:?}: bad host"));
        }
        let port = match port {
            None | Some("") => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(format!("invalid URL {text:?}: bad port {p:?}")),
            },
        };
        let tail = tail.split('#').next().unwrap_or_default();
        let path = if tail.starts_with('/') {
            tail.to_string()
        } else {
            format!("/{tail}")
        };
        Uri::try_from(path.as_str()).map_err(|_| {
            format!("invalid URL {text:?}: percent-encode spaces and non-ASCII characters")
        })?;
        Ok(Endpoint {
            https,
            host,
            port,
            path,
        })
    }

    /// A copy with another path (for `api_path`).
    pub(crate) fn with_path(&self, path: &str) -> Result<Self, String> {
        let base = self.path.trim_end_matches('/');
        let joined = format!("{base}/{}", path.trim_start_matches('/'));
        Uri::try_from(joined.as_str()).map_err(|_| format!("invalid path {joined:?}"))?;
        Ok(Endpoint {
            path: joined,
            ..self.clone()
        })
    }

    /// `host:port`, for messages (no path: it may hold a token).
    pub(crate) fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn host_header(&self) -> String {
        let default = if self.https { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// An answer: the status and at most 64 KiB of the body, with any secret of the request
/// already cut out of it.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    /// The integrations' verdict on a status code: 2xx is accepted; 401/403 are `auth`
    /// and 408/429 `http_status`, retried; other 4xx `rejected`, for good; the rest
    /// (5xx, 1xx, 3xx) `http_status`, retried.
    pub(crate) fn judge(&self, what: &str) -> Result<(), SendError> {
        let code = self.status;
        if (200..300).contains(&code) {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        let message = if text.is_empty() {
            format!("{what}: status {code}")
        } else {
            format!(
                "{what}: status {code}: {}",
                net::quote_truncated(text, SHOWN_CHARS)
            )
        };
        Err(match code {
            401 | 403 => SendError::retry("auth", message),
            408 | 429 => SendError::retry("http_status", message),
            400..=499 => SendError::permanent("rejected", message),
            _ => SendError::retry("http_status", message),
        })
    }
}

/// A small HTTP/1.1 client for the integrations: one request per connection, bounded
/// by `timeout`, TLS and basic auth as the checks configure them.
#[derive(Debug)]
pub(crate) struct HttpSender {
    tls: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
    basic_auth: Option<(String, SecretSource)>,
    timeout: Duration,
}

impl HttpSender {
    /// Loads the TLS files and checks the basic auth keys; field names in errors are
    /// relative (`basic_auth`, `tls_config.ca_file`).
    pub(crate) fn new(
        tls: &TlsConfig,
        basic_auth: Option<&BasicAuth>,
        timeout: Duration,
    ) -> Result<Self, BuildError> {
        let basic_auth = match basic_auth {
            None => None,
            Some(a) => {
                if a.username.contains(':') {
                    return Err(BuildError::new(
                        "basic_auth.username",
                        "a basic auth user name cannot contain ':'",
                    ));
                }
                let source = a.source().map_err(|e| BuildError::new("basic_auth", e))?;
                Some((a.username.clone(), source))
            }
        };
        let server_name = tls
            .server_name
            .as_deref()
            .map(net::server_name)
            .transpose()
            .map_err(|e| BuildError::new("tls_config.server_name", e))?;
        Ok(HttpSender {
            tls: net::client_config(tls)?,
            server_name,
            basic_auth,
            timeout,
        })
    }

    /// Sends one request and reads the answer, all within the timeout.
    ///
    /// # Errors
    /// A retryable [`SendError`] with the phase's reason: `auth` (password unreadable),
    /// `dns`, `refused`, `timeout`, `tls`, `protocol`.
    pub(crate) async fn request(
        &self,
        method: Method,
        to: &Endpoint,
        body: Option<(Bytes, &'static str)>,
    ) -> Result<Answer, SendError> {
        let deadline = Instant::now() + self.timeout;
        let mut secrets: Vec<String> = Vec::new();
        let auth = match &self.basic_auth {
            None => None,
            Some((user, source)) => {
                let password = source.read().map_err(|e| {
                    SendError::retry("auth", format!("read basic_auth password: {e}"))
                })?;
                let token = base64(format!("{user}:{}", password.expose()).as_bytes());
                secrets.push(password.expose().to_string());
                secrets.push(token.clone());
                let mut value = HeaderValue::from_str(&format!("Basic {token}")).map_err(|_| {
                    SendError::retry("auth", "basic_auth credentials are not a valid header")
                })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        let peer_name = to.authority();
        let result =
            tokio::time::timeout_at(deadline, self.exchange(method, to, body, auth, deadline))
                .await
                .unwrap_or_else(|_| {
                    Err(SendError::retry(
                        "timeout",
                        format!(
                            "request to {peer_name}: timed out after {}",
                            net::fmt_duration(self.timeout)
                        ),
                    ))
                });
        // An echoing server must not put the password into a log line.
        result.map(|mut a| {
            a.body = redact(&a.body, &secrets);
            a
        })
    }

    async fn exchange(
        &self,
        method: Method,
        to: &Endpoint,
        body: Option<(Bytes, &'static str)>,
        auth: Option<HeaderValue>,
        deadline: Instant,
    ) -> Result<Answer, SendError> {
        let (bytes, content_type) = match body {
            Some((b, t)) => (b, Some(t)),
            None => (Bytes::new(), None),
        };
        let mut request = Request::new(Full::new(bytes));
        *request.method_mut() = method;
        *request.uri_mut() = Uri::try_from(to.path.as_str())
            .map_err(|e| SendError::permanent("internal", format!("build request: {e}")))?;
        let headers = request.headers_mut();
        let host = HeaderValue::from_str(&to.host_header())
            .map_err(|_| SendError::permanent("internal", "build request: invalid host"))?;
        headers.insert(HOST, host);
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(crate::checks::http::USER_AGENT_VALUE),
        );
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
        if let Some(t) = content_type {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(t));
        }
        if let Some(a) = auth {
            headers.insert(AUTHORIZATION, a);
        }

        let addr = net::resolve(&to.host, to.port, net::IpProtocol::Ip4, true)
            .await
            .map_err(from_check)?;
        let peer = addr.to_string();
        let stream = net::connect(addr, deadline).await.map_err(from_check)?;
        if !to.https {
            return http1(stream, request, &peer, deadline).await;
        }
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => net::server_name(&to.host).map_err(|e| SendError::retry("tls", e))?,
        };
        let (tls, _) = net::tls_handshake(stream, &peer, name, &self.tls, deadline)
            .await
            .map_err(|(e, _)| from_check(e))?;
        http1(tls, request, &peer, deadline).await
    }
}

/// A check error of a network phase as a retryable send error with the same reason.
fn from_check(e: crate::checks::CheckError) -> SendError {
    let reason = match e.reason {
        Reason::Dns => "dns",
        Reason::Refused => "refused",
        Reason::Timeout => "timeout",
        Reason::Tls => "tls",
        Reason::Auth => "auth",
        Reason::Protocol => "protocol",
        _ => "internal",
    };
    SendError::retry(reason, e.detail)
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn http1<S>(
    io: S,
    request: Request<Full<Bytes>>,
    peer: &str,
    deadline: Instant,
) -> Result<Answer, SendError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let protocol = |what: &str, e: &dyn std::fmt::Display| {
        SendError::retry("protocol", format!("{what} {peer}: {e}"))
    };
    let late = |what: &str| SendError::retry("timeout", format!("{what} {peer}: timed out"));
    let (mut sender, conn) = tokio::time::timeout_at(
        deadline,
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(io)),
    )
    .await
    .map_err(|_| late("start HTTP/1.1 with"))?
    .map_err(|e| protocol("start HTTP/1.1 with", &e))?;
    let driver = tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "notification http connection");
        }
    });
    let _driver = AbortOnDrop(driver.abort_handle());
    let response = tokio::time::timeout_at(deadline, sender.send_request(request))
        .await
        .map_err(|_| late("wait for the answer of"))?
        .map_err(|e| {
            if e.is_incomplete_message() {
                SendError::retry(
                    "protocol",
                    format!(
                        "read answer from {peer}: connection closed before a complete response"
                    ),
                )
            } else {
                protocol("read answer from", &e)
            }
        })?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut buf = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(late("read the body from")),
            Ok(None) => break,
            // The status is what counts; a body cut short only shortens the message.
            Ok(Some(Err(_))) => break,
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    let room = MAX_ANSWER_BYTES.saturating_sub(buf.len());
                    buf.extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
                    if buf.len() >= MAX_ANSWER_BYTES {
                        break;
                    }
                }
            }
        }
    }
    Ok(Answer { status, body: buf })
}

/// `body` with every occurrence of each secret replaced by `<secret>`.
fn redact(body: &[u8], secrets: &[String]) -> Vec<u8> {
    let mut out = body.to_vec();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        let needle = s.as_bytes();
        let mut result = Vec::with_capacity(out.len());
        let mut i = 0;
        while i < out.len() {
            if out[i..].starts_with(needle) {
                result.extend_from_slice(b"<secret>");
                i += needle.len();
            } else {
                result.push(out[i]);
                i += 1;
            }
        }
        out = result;
    }
    out
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                let idx = usize::try_from((n >> (18 - 6 * i)) & 63).unwrap_or(0);
                out.push(char::from(ALPHABET[idx]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::fingerprint;

    fn ls(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn alert(name: &str, check: &str, ends: Option<i64>) -> NotifyAlert {
        let labels = ls(&[
            ("alertname", name),
            ("check", check),
            ("severity", "critical"),
        ]);
        NotifyAlert {
            fingerprint: fingerprint(&labels),
            labels,
            annotations: ls(&[("summary", &format!("{check} is down"))]),
            starts_at_ms: 1_714_557_600_250,
            ends_at_ms: ends,
            generator_url: "http://harena:9115/#check-x".into(),
            value: 0.0,
            reason: "refused".into(),
            detail: String::new(),
        }
    }

    fn notification(alerts: Vec<NotifyAlert>) -> Notification {
        Notification {
            id: "n-1".into(),
            receiver: "team.email".into(),
            group_key: "{}:{alertname=\"Down\"}".into(),
            group_labels: ls(&[("alertname", "Down")]),
            alerts,
            external_url: "http://harena:9115".into(),
            created_ms: 0,
            report: None,
        }
    }

    fn hook(yaml_like: &str) -> Webhook {
        let c: WebhookConfig = serde_json::from_str(yaml_like).unwrap();
        c.build().unwrap()
    }

    #[test]
    fn go_times() {
        assert_eq!(go_time(1_714_557_600_000), "2024-05-01T10:00:00Z");
        assert_eq!(go_time(1_714_557_600_250), "2024-05-01T10:00:00.25Z");
        assert_eq!(go_time(1_714_557_650_000), "2024-05-01T10:00:50Z");
        assert_eq!(go_time(1_714_557_600_001), "2024-05-01T10:00:00.001Z");
        assert_eq!(go_time(1_714_557_610_100), "2024-05-01T10:00:10.1Z");
    }

    #[test]
    fn message_is_alertmanagers_version_4() {
        let w = hook(r#"{"url": "http://127.0.0.1:1/hook"}"#);
        let n = notification(vec![
            alert("Down", "pg", None),
            alert("Down", "redis", Some(1_714_557_660_000)),
        ]);
        let v = w.message(&n).unwrap();
        let expected = serde_json::json!({
            "receiver": "team\\.email",
            "status": "firing",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": "Down", "check": "pg", "severity": "critical"},
                    "annotations": {"summary": "pg is down"},
                    "startsAt": "2024-05-01T10:00:00.25Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://harena:9115/#check-x",
                    "fingerprint": n.alerts[0].fingerprint,
                },
                {
                    "status": "resolved",
                    "labels": {"alertname": "Down", "check": "redis", "severity": "critical"},
                    "annotations": {"summary": "redis is down"},
                    "startsAt": "2024-05-01T10:00:00.25Z",
                    "endsAt": "2024-05-01T10:01:00Z",
                    "generatorURL": "http://harena:9115/#check-x",
                    "fingerprint": n.alerts[1].fingerprint,
                }
            ],
            "groupLabels": {"alertname": "Down"},
            "commonLabels": {"alertname": "Down", "severity": "critical"},
            "commonAnnotations": {},
            "externalURL": "http://harena:9115",
            "version": "4",
            "groupKey": "{}:{alertname=\"Down\"}",
            "truncatedAlerts": 0
        });
        assert_eq!(v, expected);
        // Key order as Alertmanager writes it.
        let text = String::from_utf8(w.body(&n).unwrap()).unwrap();
        let pos = |k: &str| text.find(&format!("\"{k}\":")).unwrap();
        assert!(pos("receiver") < pos("status") && pos("externalURL") < pos("version"));
    }

    #[test]
    fn send_resolved_and_max_alerts() {
        let n = notification(vec![
            alert("Down", "a", None),
            alert("Down", "b", None),
            alert("Down", "c", Some(1_714_557_660_000)),
        ]);
        let w = hook(r#"{"url": "http://127.0.0.1:1/", "send_resolved": false}"#);
        assert_eq!(
            w.message(&n).unwrap()["alerts"].as_array().unwrap().len(),
            2
        );
        let only_resolved = notification(vec![alert("Down", "c", Some(1))]);
        assert!(w.message(&only_resolved).is_none());
        let w = hook(r#"{"url": "http://127.0.0.1:1/", "max_alerts": 1}"#);
        let v = w.message(&n).unwrap();
        assert_eq!(v["alerts"].as_array().unwrap().len(), 1);
        assert_eq!(v["truncatedAlerts"], 2);
        assert_eq!(v["commonLabels"]["check"], "a");
    }

    #[test]
    fn config_errors_name_fields() {
        let err = |json: &str| {
            serde_json::from_str::<WebhookConfig>(json)
                .map_err(|e| e.to_string())
                .and_then(|c| c.build().map(|_| ()).map_err(|e| e.to_string()))
                .unwrap_err()
        };
        assert!(err("{}").starts_with("url: set url or url_file"));
        assert!(err(r#"{"url":"http://u:pw@h/"}"#).contains("password_file"));
        assert!(err(r#"{"url":"ftp://h/"}"#).contains("scheme"));
        assert!(err(r#"{"url":"http://h/","url_file":"/x"}"#).contains("only one"));
        assert!(err(r#"{"url_file":"/nonexistent/hook"}"#).starts_with("url_file: read"));
        assert!(
            err(r#"{"url":"http://h/","http_config":{"basic_auth":{"username":"u"}}}"#)
                .starts_with("http_config.basic_auth: set password_file or password_env")
        );
        assert!(err(r#"{"url":"http://h/","unknown":1}"#).contains("unknown field"));
        let c: WebhookConfig = serde_json::from_str(r#"{"url":"http://h/"}"#).unwrap();
        assert_eq!(c.timeout, PromDuration(Duration::from_secs(10)));
        assert_eq!(c.max_alerts, 0);
        assert!(c.build().unwrap().send_resolved());
    }

    #[test]
    fn answers_are_judged() {
        let a = |status: u16, body: &str| Answer {
            status,
            body: body.as_bytes().to_vec(),
        };
        assert!(a(200, "").judge("POST").is_ok());
        assert!(a(204, "").judge("POST").is_ok());
        for (code, reason, retryable) in [
            (500, "http_status", true),
            (503, "http_status", true),
            (429, "http_status", true),
            (408, "http_status", true),
            (401, "auth", true),
            (400, "rejected", false),
            (404, "rejected", false),
            (302, "http_status", true),
        ] {
            let e = a(code, "nope").judge("POST to h:1").unwrap_err();
            assert_eq!((e.reason, e.retryable), (reason, retryable), "{code}");
            assert!(e.message.contains(&code.to_string()), "{}", e.message);
        }
    }

    #[test]
    fn endpoints_parse() {
        let e = Endpoint::parse("https://hooks.example/services/T0/B1?x=1#frag").unwrap();
        assert_eq!(e.authority(), "hooks.example:443");
        assert_eq!(e.path, "/services/T0/B1?x=1");
        assert_eq!(e.host_header(), "hooks.example");
        let e = Endpoint::parse("http://[::1]:9093").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("::1", 9093, "/")
        );
        assert_eq!(
            e.with_path("/api/v2/alerts").unwrap().path,
            "/api/v2/alerts"
        );
        let p = Endpoint::parse("http://am:9093/prefix/").unwrap();
        assert_eq!(
            p.with_path("api/v2/alerts").unwrap().path,
            "/prefix/api/v2/alerts"
        );
        assert!(Endpoint::parse("http://h:0/").is_err());
        assert!(Endpoint::parse("http:///x").is_err());
    }

    #[test]
    fn secrets_are_cut_out() {
        let out = redact(
            b"echo: Basic dTpodW50ZXIy and hunter2",
            &["hunter2".into(), "dTpodW50ZXIy".into()],
        );
        assert_eq!(out, b"echo: Basic <secret> and <secret>");
        assert_eq!(base64(b"u:hunter2"), "dTpodW50ZXIy");
    }
}
