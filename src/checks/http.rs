//! `http` check: one HTTP(S) request, timed phase by phase, judged on the status code,
//! the body and, for `https`, the certificate.
//!
//! Each phase is done by hand so that it can be timed, as blackbox_exporter does:
//! resolve (`dns`) → `connect` → `tls` (https only) → `processing` (request sent until
//! the response headers arrived) → `transfer` (reading the body). Redirects are followed
//! by hand too, at most [`MAX_REDIRECTS`] of them, and the phases are summed over hops.
//!
//! The URL may name another check's result, as in `https://{tunnel.hostname}/health`:
//! it is expanded at every run from [`RunContext::vars`], so the check follows a value
//! that changes (the quick tunnel's hostname) without a reload. [`client`] offers the
//! same client, without the judging, to checks that read an HTTP API.

pub mod client;
pub mod json_expect;

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::fmt::Write as _;
use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CONNECTION, COOKIE, HOST, LOCATION, PROXY_AUTHORIZATION, USER_AGENT,
};
use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use self::json_expect::JsonExpect;
use super::{BuildError, Check, CheckError, Reason, Recorder, RunContext};
use crate::config::types::{BasicAuth, ConfigRegex, SafeUrl, SecretSource, TlsConfig};
use crate::net::{self, IpProtocol, TLS_CERT_EXPIRY};

/// The most redirects followed before the check fails, as Go's HTTP client.
pub const MAX_REDIRECTS: u32 = 10;

/// The `User-Agent` sent with every request.
pub const USER_AGENT_VALUE: &str = concat!("harena-exporter/", env!("CARGO_PKG_VERSION"));

crate::metric!(
    STATUS_CODE,
    gauge,
    "harena_http_status_code",
    "HTTP status code of the last response, after redirects."
);
crate::metric!(
    DURATION,
    gauge,
    "harena_http_duration_seconds",
    "Duration of each phase of the HTTP request (dns, connect, tls, processing, transfer), summed over redirects."
);
crate::metric!(
    REDIRECTS,
    gauge,
    "harena_http_redirects",
    "Number of redirects followed."
);
crate::metric!(
    RESPONSE_SIZE,
    gauge,
    "harena_http_response_size_bytes",
    "Size of the response body read, at most max_body_bytes."
);
crate::metric!(
    IP_PROTOCOL,
    gauge,
    "harena_http_ip_protocol",
    "IP version of the last connection: 4 or 6."
);

/// The phases, in order, as the `phase` label of `harena_http_duration_seconds`.
const PHASES: [&str; 5] = ["dns", "connect", "tls", "processing", "transfer"];
const DNS: usize = 0;
const CONNECT: usize = 1;
const TLS: usize = 2;
const PROCESSING: usize = 3;
const TRANSFER: usize = 4;

/// How much of a body a failure detail shows.
const SHOWN_CHARS: usize = 80;

/// The keys of an `http` check.
///
/// ```yaml
/// - name: api
///   kind: http
///   url: https://harena.example/health
///   valid_status_codes: [200]
///   json_expect: ['$.status == "ok"']
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// The URL to request, `http://` or `https://`. Required. It carries no password:
    /// use `basic_auth`. It may name a value another check exports, as `{check.key}` in
    /// the host, port or path, expanded at every run; while that value is not known yet
    /// the check fails with reason `missing`. Example: `url: https://harena.example/health`,
    /// `url: https://{tunnel.hostname}/health`.
    #[serde(deserialize_with = "de_url")]
    pub url: SafeUrl,
    /// The request method. Default `GET`. Example: `method: POST`.
    #[serde(default = "default_method", deserialize_with = "de_method")]
    pub method: Method,
    /// Request headers, added to (or replacing) `Host`, `User-Agent` and
    /// `Connection: close`. Default none. Example: `headers: {Accept: application/json}`.
    #[serde(default, deserialize_with = "de_headers")]
    pub headers: BTreeMap<String, String>,
    /// The request body, sent as is. Default none.
    /// Example: `body: '{"query": "ping"}'`.
    #[serde(default)]
    pub body: Option<String>,
    /// The status codes that count as success. Default empty, meaning any 2xx.
    /// Example: `valid_status_codes: [200, 204]`.
    #[serde(default, deserialize_with = "de_status_codes")]
    pub valid_status_codes: Vec<u16>,
    /// Fail when the body matches any of these regular expressions. Default none.
    /// Example: `fail_if_body_matches_regexp: ["(?i)maintenance"]`.
    #[serde(default)]
    pub fail_if_body_matches_regexp: Vec<ConfigRegex>,
    /// Fail when the body does not match each of these regular expressions. Default none.
    /// Example: `fail_if_body_not_matches_regexp: ["\"status\":\\s*\"ok\""]`.
    #[serde(default)]
    pub fail_if_body_not_matches_regexp: Vec<ConfigRegex>,
    /// Expectations on a JSON body, each `PATH [OP JSON-LITERAL]`: `==`, `!=`, `<`, `<=`,
    /// `>`, `>=`, `=~` and `!~` (regular expression), or the path alone for "present and
    /// not null". Paths: `$`, `.key`, `["key with.dots"]`, `[0]`. Default none.
    /// Example: `json_expect: ['$.status == "ok"', '$.checks.db != false', '$.uptime > 0']`.
    #[serde(default)]
    pub json_expect: Vec<JsonExpect>,
    /// HTTP basic authentication, with the password read from a file or an environment
    /// variable at every run. Sent only to the URL's host (also after a redirect to
    /// `https`), never to another host a redirect leads to, nor over a downgrade from
    /// `https` to `http`. Default none.
    /// Example: `basic_auth: {username: monitor, password_env: HEALTH_PASSWORD}`.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// TLS settings for `https` URLs (CA file, client certificate, server name,
    /// `insecure_skip_verify`). Default: the built-in WebPKI roots.
    /// Example: `tls_config: {ca_file: /etc/harena/ca.pem}`.
    #[serde(default)]
    pub tls_config: TlsConfig,
    /// Follow redirects (at most 10); when off, a redirect is judged by
    /// `valid_status_codes` like any response. Default `true`.
    /// Example: `follow_redirects: false`.
    #[serde(default = "yes")]
    pub follow_redirects: bool,
    /// The IP version to connect over, `ip4` or `ip6`. Default `ip4`.
    /// Example: `ip_protocol: ip6`.
    #[serde(default)]
    pub ip_protocol: IpProtocol,
    /// Use the other IP version when the name has no address of `ip_protocol`.
    /// Default `true`. Example: `ip_protocol_fallback: false`.
    #[serde(default = "yes")]
    pub ip_protocol_fallback: bool,
    /// The most bytes of the body read; the rest is not read, and the body regexes and
    /// `json_expect` see only this much. Default `1048576` (1 MiB).
    /// Example: `max_body_bytes: 65536`.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
}

fn yes() -> bool {
    true
}

fn default_method() -> Method {
    Method::GET
}

fn default_max_body_bytes() -> u64 {
    1024 * 1024
}

fn de_url<'de, D: Deserializer<'de>>(d: D) -> Result<SafeUrl, D::Error> {
    let text = String::deserialize(d)?;
    let url = SafeUrl::parse(&text, &["http", "https"]).map_err(D::Error::custom)?;
    UrlSpec::parse(&text).map_err(D::Error::custom)?;
    Ok(url)
}

impl HttpConfig {
    /// The `{check.key}` placeholders of `url`, as `(check, key)`: the checks this one
    /// takes its target from.
    pub fn placeholders(&self) -> Vec<(String, String)> {
        super::placeholders(&self.url.0)
    }
}

/// What stands in for a placeholder while a template URL is checked at load: valid as a
/// host, a port and a path segment alike.
const PLACEHOLDER_DUMMY: &str = "1";

/// Checks the braces of a URL template: each `{` opens a `{check.key}` placeholder.
/// Returns the text with every placeholder replaced by [`PLACEHOLDER_DUMMY`], or `None`
/// when there is none.
fn fill_placeholders(text: &str) -> Result<Option<String>, String> {
    let is_key = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut found = false;
    while let Some(start) = rest.find(['{', '}']) {
        if rest[start..].starts_with('}') {
            return Err(format!(
                "invalid URL {text:?}: '}}' without '{{'; percent-encode a literal brace as %7D"
            ));
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after.find('}').ok_or_else(|| {
            format!(
                "invalid URL {text:?}: '{{' without '}}'; write a placeholder as {{check.key}}, or percent-encode a literal brace as %7B"
            )
        })?;
        let name = &after[..end];
        match name.split_once('.') {
            Some((check, key)) if crate::config::valid_check_name(check) && is_key(key) => {}
            _ => {
                return Err(format!(
                    "invalid placeholder {{{name}}} in URL {text:?}: write {{check.key}}, like {{tunnel.hostname}}"
                ));
            }
        }
        out.push_str(PLACEHOLDER_DUMMY);
        found = true;
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(found.then_some(out))
}

/// The configured URL: fixed, or a template expanded at every run.
#[derive(Debug, Clone, PartialEq, Eq)]
enum UrlSpec {
    Fixed(Target),
    Template(String),
}

impl UrlSpec {
    fn parse(text: &str) -> Result<UrlSpec, String> {
        match fill_placeholders(text)? {
            None => Target::parse(text).map(UrlSpec::Fixed),
            Some(filled) => {
                Target::parse(&filled)?;
                Ok(UrlSpec::Template(text.to_string()))
            }
        }
    }

    /// The URL of this run.
    fn resolve(&self, vars: &super::Vars) -> Result<Target, CheckError> {
        match self {
            UrlSpec::Fixed(t) => Ok(t.clone()),
            UrlSpec::Template(template) => {
                let text = vars.expand(template).map_err(|name| {
                    CheckError::new(Reason::Missing, format!("no value yet for {{{name}}}"))
                })?;
                // The value comes from another check: a URL that is not usable means
                // there is no usable value yet.
                Target::parse(&text).map_err(|e| {
                    CheckError::new(Reason::Missing, format!("expand url {template}: {e}"))
                })
            }
        }
    }
}

fn de_method<'de, D: Deserializer<'de>>(d: D) -> Result<Method, D::Error> {
    let text = String::deserialize(d)?;
    Method::from_bytes(text.to_ascii_uppercase().as_bytes())
        .map_err(|_| D::Error::custom(format!("invalid HTTP method {text:?}")))
}

fn de_headers<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let headers = BTreeMap::<String, String>::deserialize(d)?;
    for (name, value) in &headers {
        HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| D::Error::custom(format!("invalid header name {name:?}")))?;
        HeaderValue::from_str(value).map_err(|_| {
            D::Error::custom(format!(
                "invalid value for header {name}: use visible ASCII characters, no line breaks"
            ))
        })?;
    }
    Ok(headers)
}

fn de_status_codes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u16>, D::Error> {
    let codes = Vec::<u16>::deserialize(d)?;
    if let Some(bad) = codes.iter().find(|c| !(100..=599).contains(*c)) {
        return Err(D::Error::custom(format!(
            "invalid status code {bad}: expected 100 to 599"
        )));
    }
    Ok(codes)
}

/// A parsed `http`/`https` URL: just what a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    https: bool,
    /// Without brackets for IPv6.
    host: String,
    port: u16,
    /// Path and query, starting with `/`; no fragment.
    path: String,
}

impl Target {
    fn parse(text: &str) -> Result<Target, String> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("invalid URL {text:?}: expected http(s)://host[:port]/path"))?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => {
                return Err(format!(
                    "unsupported URL scheme {scheme:?} in {text:?}: expected http or https"
                ));
            }
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.contains('@') {
            return Err(format!(
                "user info in URL {text:?}: remove it and set basic_auth instead"
            ));
        }
        let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
            let (host, after) = inner
                .split_once(']')
                .ok_or_else(|| format!("invalid URL {text:?}: unclosed '['"))?;
            if host.parse::<Ipv6Addr>().is_err() {
                return Err(format!(
                    "invalid URL {text:?}: {host:?} is not an IPv6 address"
                ));
            }
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(|| {
                    format!("invalid URL {text:?}: unexpected {after:?} after ']'")
                })?),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        let bracketed = authority.starts_with('[');
        if host.is_empty()
            || host.contains(char::is_whitespace)
            || (!bracketed && host.contains(':'))
        {
            return Err(format!("invalid URL {text:?}: bad host {host:?}"));
        }
        let default_port = if https { 443 } else { 80 };
        let port = match port {
            None | Some("") => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(format!("invalid URL {text:?}: bad port {p:?}")),
            },
        };
        Ok(Target {
            https,
            host: host.to_string(),
            port,
            path: path_and_query(tail).map_err(|e| format!("invalid URL {text:?}: {e}"))?,
        })
    }

    /// The target a `Location` header points to, relative to this one.
    fn join(&self, location: &str) -> Result<Target, String> {
        let loc = location.trim();
        if loc.starts_with("//") {
            let scheme = if self.https { "https" } else { "http" };
            return Target::parse(&format!("{scheme}:{loc}"));
        }
        let has_scheme = loc.split_once(':').is_some_and(|(scheme, _)| {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        });
        if has_scheme {
            return Target::parse(loc);
        }
        let loc = loc.split('#').next().unwrap_or_default();
        let path = if loc.is_empty() {
            self.path.clone()
        } else if loc.starts_with('/') {
            loc.to_string()
        } else {
            let current = self.path.split('?').next().unwrap_or("/");
            if loc.starts_with('?') {
                format!("{current}{loc}")
            } else {
                let dir = current.rfind('/').map_or("/", |i| &current[..=i]);
                format!("{dir}{loc}")
            }
        };
        Ok(Target {
            path: path_and_query(&path)?,
            ..self.clone()
        })
    }

    /// Whether a hop to `next` may carry what was configured for this URL (credentials,
    /// a `Host` override, the TLS server name): the same host, and no downgrade from
    /// `https` to `http`. An upgrade to `https` or another port keeps them, as in Go.
    fn trusts(&self, next: &Target) -> bool {
        self.host.eq_ignore_ascii_case(&next.host) && (next.https || !self.https)
    }

    /// `host[:port]` as the `Host` header and URLs write it.
    fn authority(&self) -> String {
        let mut out = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port != if self.https { 443 } else { 80 } {
            let _ = write!(out, ":{}", self.port);
        }
        out
    }

    fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority(), self.path)
    }
}

/// The path and query of a URL tail (`/a?b#c` → `/a?b`), checked for what HTTP allows.
fn path_and_query(tail: &str) -> Result<String, String> {
    let tail = tail.split('#').next().unwrap_or_default();
    let path = if tail.starts_with('/') {
        tail.to_string()
    } else {
        format!("/{tail}")
    };
    PathAndQuery::try_from(path.as_str()).map_err(|_| {
        format!("invalid path {path:?}: percent-encode spaces and non-ASCII characters")
    })?;
    Ok(path)
}

/// A runnable `http` check.
#[derive(Debug)]
pub struct HttpCheck {
    // Boxed: the registry's enum of built checks stays small whatever the kind.
    inner: Box<Inner>,
}

#[derive(Debug)]
struct Inner {
    url_text: String,
    url: UrlSpec,
    method: Method,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<Bytes>,
    valid_status_codes: Vec<u16>,
    fail_if_body_matches: Vec<regex::Regex>,
    fail_if_body_not_matches: Vec<regex::Regex>,
    json_expect: Vec<JsonExpect>,
    basic_auth: Option<(String, SecretSource)>,
    tls: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
    follow_redirects: bool,
    ip_protocol: IpProtocol,
    ip_protocol_fallback: bool,
    max_body_bytes: usize,
}

/// What a run saw, recorded as samples whether it succeeded or not.
#[derive(Debug, Default)]
struct Progress {
    phases: [Duration; 5],
    status: Option<StatusCode>,
    redirects: u32,
    body_size: Option<usize>,
    truncated: bool,
    ip: Option<IpProtocol>,
    cert_not_after: Option<i64>,
}

/// Aborts the spawned connection driver when the exchange is over or the run is dropped,
/// so that it never outlives the run.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A response whose body can still be read.
struct Exchange {
    response: Response<Incoming>,
    peer: String,
    _driver: AbortOnDrop,
}

impl Check for HttpCheck {
    type Config = HttpConfig;
    const KIND: &'static str = "http";
    const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    fn build(config: &HttpConfig) -> Result<Self, BuildError> {
        let url = UrlSpec::parse(&config.url.0).map_err(|e| BuildError::new("url", e))?;
        let tls = net::client_config(&config.tls_config)?;
        let server_name = tls_server_name(&config.tls_config)?;
        // A template's host is only known at run time; it is checked then.
        if let (UrlSpec::Fixed(url), None) = (&url, &server_name)
            && url.https
        {
            net::server_name(&url.host).map_err(|e| BuildError::new("url", e))?;
        }
        let mut headers = Vec::new();
        for (name, value) in &config.headers {
            let field = || format!("headers.{name}");
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| BuildError::new(field(), "invalid header name"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| BuildError::new(field(), "invalid header value"))?;
            headers.push((name, value));
        }
        let basic_auth = basic_auth_source(config.basic_auth.as_ref())?;
        Ok(HttpCheck {
            inner: Box::new(Inner {
                url_text: config.url.0.clone(),
                url,
                method: config.method.clone(),
                headers,
                body: config.body.clone().map(Bytes::from),
                valid_status_codes: config.valid_status_codes.clone(),
                fail_if_body_matches: config
                    .fail_if_body_matches_regexp
                    .iter()
                    .map(|r| r.0.clone())
                    .collect(),
                fail_if_body_not_matches: config
                    .fail_if_body_not_matches_regexp
                    .iter()
                    .map(|r| r.0.clone())
                    .collect(),
                json_expect: config.json_expect.clone(),
                basic_auth,
                tls,
                server_name,
                follow_redirects: config.follow_redirects,
                ip_protocol: config.ip_protocol,
                ip_protocol_fallback: config.ip_protocol_fallback,
                max_body_bytes: usize::try_from(config.max_body_bytes).unwrap_or(usize::MAX),
            }),
        })
    }

    fn placeholders(config: &HttpConfig) -> Vec<(String, String)> {
        config.placeholders()
    }

    fn target(&self) -> String {
        self.inner.url_text.clone()
    }

    async fn run(&self, ctx: &RunContext, rec: &mut Recorder) -> Result<(), CheckError> {
        let start = Instant::now();
        let mut p = Progress::default();
        // Expanded at every run, so that the check follows a value that changes.
        let resolved = self.inner.url.resolve(&ctx.vars);
        let result = match &resolved {
            Ok(url) => self.inner.probe(url, ctx.deadline, &mut p).await,
            Err(e) => Err(e.clone()),
        };
        // With a template, say which URL this run used.
        let used = match (&self.inner.url, &resolved) {
            (UrlSpec::Template(_), Ok(url)) => Some(url.url()),
            _ => None,
        };
        let result = match (result, &used) {
            (Err(mut e), Some(url)) => {
                let _ = write!(e.detail, " (url {url})");
                Err(e)
            }
            (result, _) => result,
        };
        for (phase, d) in PHASES.iter().zip(p.phases) {
            rec.record(&DURATION, &[("phase", phase)], d.as_secs_f64());
        }
        if let Some(status) = p.status {
            rec.record(&STATUS_CODE, &[], f64::from(status.as_u16()));
        }
        rec.record(&REDIRECTS, &[], f64::from(p.redirects));
        if let Some(size) = p.body_size {
            rec.record(&RESPONSE_SIZE, &[], as_gauge(size));
        }
        if let Some(ip) = p.ip {
            rec.record(&IP_PROTOCOL, &[], f64::from(ip.number()));
        }
        if let Some(not_after) = p.cert_not_after {
            // Unix seconds are exact in an f64 for the next few million years.
            #[allow(clippy::cast_precision_loss)]
            rec.record(&TLS_CERT_EXPIRY, &[], not_after as f64);
        }
        if result.is_ok() {
            let mut detail = success_detail(&p, start.elapsed());
            if let Some(url) = used {
                let _ = write!(detail, " (url {url})");
            }
            rec.set_detail(detail);
        }
        result
    }
}

/// The TLS server name configured in `tls_config.server_name`, checked.
fn tls_server_name(tls: &TlsConfig) -> Result<Option<ServerName<'static>>, BuildError> {
    tls.server_name
        .as_deref()
        .map(net::server_name)
        .transpose()
        .map_err(|e| BuildError::new("tls_config.server_name", e))
}

/// The user name and the password's source of `basic_auth`, checked.
fn basic_auth_source(
    auth: Option<&BasicAuth>,
) -> Result<Option<(String, SecretSource)>, BuildError> {
    let Some(auth) = auth else {
        return Ok(None);
    };
    if auth.username.contains(':') {
        return Err(BuildError::new(
            "basic_auth.username",
            "a basic auth user name cannot contain ':'",
        ));
    }
    let source = auth
        .source()
        .map_err(|e| BuildError::new("basic_auth", e))?;
    Ok(Some((auth.username.clone(), source)))
}

/// A count as a gauge value (exact below 2^53).
#[allow(clippy::cast_precision_loss)]
fn as_gauge(n: usize) -> f64 {
    n as f64
}

fn success_detail(p: &Progress, elapsed: Duration) -> String {
    let mut out = match p.status {
        Some(s) => format!(
            "{} {}",
            s.as_u16(),
            s.canonical_reason().unwrap_or_default()
        ),
        None => String::new(),
    };
    let out_len = out.trim_end().len();
    out.truncate(out_len);
    match p.redirects {
        0 => {}
        1 => out.push_str(" after 1 redirect"),
        n => {
            let _ = write!(out, " after {n} redirects");
        }
    }
    if let Some(size) = p.body_size {
        let _ = write!(
            out,
            ", {}",
            net::fmt_bytes(u64::try_from(size).unwrap_or(u64::MAX))
        );
        if p.truncated {
            out.push_str(" (cut at max_body_bytes)");
        }
    }
    let _ = write!(out, " in {}", net::fmt_duration(elapsed));
    out
}

fn protocol(detail: String) -> CheckError {
    CheckError::new(Reason::Protocol, detail)
}

/// An error and its sources, joined with `: ` (hyper puts the useful part in a source).
fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = match s.downcast_ref::<std::io::Error>() {
            Some(io) => net::io_error_text(io),
            None => s.to_string(),
        };
        if !out.ends_with(&text) {
            let _ = write!(out, ": {text}");
        }
        source = s.source();
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
                let idx = (n >> (18 - 6 * i)) & 63;
                out.push(char::from(ALPHABET[idx as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

impl Inner {
    /// The `Authorization` header, with the password read now.
    fn authorization(&self) -> Result<Option<HeaderValue>, CheckError> {
        let Some((user, source)) = &self.basic_auth else {
            return Ok(None);
        };
        let password = source
            .read()
            .map_err(|e| CheckError::new(Reason::Auth, format!("read basic_auth password: {e}")))?;
        let token = base64(format!("{user}:{}", password.expose()).as_bytes());
        let mut value = HeaderValue::from_str(&format!("Basic {token}"))
            .map_err(|_| CheckError::new(Reason::Internal, "encode basic_auth credentials"))?;
        value.set_sensitive(true);
        Ok(Some(value))
    }

    /// Requests `start` and judges the answer.
    async fn probe(
        &self,
        start: &Target,
        deadline: Instant,
        p: &mut Progress,
    ) -> Result<(), CheckError> {
        let (status, body) = self.fetch(start, deadline, p).await?;
        self.judge(status, &body, p.truncated)
    }

    /// Requests `start`, following redirects when configured; returns the last status
    /// and at most `max_body_bytes` of its body.
    async fn fetch(
        &self,
        start: &Target,
        deadline: Instant,
        p: &mut Progress,
    ) -> Result<(StatusCode, Vec<u8>), CheckError> {
        let auth = self.authorization()?;
        let mut target = start.clone();
        let mut method = self.method.clone();
        let mut body = self.body.clone();
        loop {
            let trusted = start.trusts(&target);
            let request = self.request(&target, &method, body.as_ref(), trusted, auth.as_ref())?;
            let exchange = self.send(&target, trusted, request, deadline, p).await?;
            let status = exchange.response.status();
            p.status = Some(status);
            if !(self.follow_redirects && is_redirect(status)) {
                let body = read_body(exchange, self.max_body_bytes, deadline, p).await?;
                return Ok((status, body));
            }
            if p.redirects >= MAX_REDIRECTS {
                return Err(protocol(format!(
                    "stopped after {MAX_REDIRECTS} redirects, at {}",
                    target.url()
                )));
            }
            let from = target.url();
            let location = exchange
                .response
                .headers()
                .get(LOCATION)
                .ok_or_else(|| {
                    protocol(format!(
                        "follow redirect from {from}: status {} without a Location header",
                        status.as_u16()
                    ))
                })?
                .to_str()
                .map_err(|_| {
                    protocol(format!(
                        "follow redirect from {from}: Location header is not ASCII"
                    ))
                })?;
            target = target.join(location).map_err(|e| {
                protocol(format!("follow redirect from {from} to {location:?}: {e}"))
            })?;
            // As browsers and Go: 303, and 301/302 after a POST, go on with a GET.
            if status == StatusCode::SEE_OTHER
                || (method == Method::POST
                    && matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND))
            {
                if method != Method::HEAD {
                    method = Method::GET;
                }
                body = None;
            }
            p.redirects += 1;
        }
    }

    fn request(
        &self,
        target: &Target,
        method: &Method,
        body: Option<&Bytes>,
        trusted: bool,
        auth: Option<&HeaderValue>,
    ) -> Result<Request<Full<Bytes>>, CheckError> {
        let mut request = Request::new(Full::new(body.cloned().unwrap_or_default()));
        *request.method_mut() = method.clone();
        *request.uri_mut() = Uri::try_from(target.path.as_str())
            .map_err(|e| protocol(format!("request {}: {e}", target.url())))?;
        let host = HeaderValue::from_str(&target.authority())
            .map_err(|_| protocol(format!("request {}: invalid host", target.url())))?;
        let headers = request.headers_mut();
        headers.insert(HOST, host);
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
        for (name, value) in &self.headers {
            // Credentials and the Host override belong to the configured host only.
            let host_only = [HOST, AUTHORIZATION, PROXY_AUTHORIZATION, COOKIE].contains(name);
            if trusted || !host_only {
                headers.insert(name.clone(), value.clone());
            }
        }
        if let (Some(auth), true) = (auth, trusted) {
            headers.insert(AUTHORIZATION, auth.clone());
        }
        Ok(request)
    }

    /// Resolves, connects, does TLS and sends the request; returns at the response
    /// headers.
    async fn send(
        &self,
        target: &Target,
        trusted: bool,
        request: Request<Full<Bytes>>,
        deadline: Instant,
        p: &mut Progress,
    ) -> Result<Exchange, CheckError> {
        let t = Instant::now();
        let resolved = tokio::time::timeout_at(
            deadline,
            net::resolve(
                &target.host,
                target.port,
                self.ip_protocol,
                self.ip_protocol_fallback,
            ),
        )
        .await;
        p.phases[DNS] += t.elapsed();
        let addr =
            resolved.map_err(|_| net::timed_out(&format!("resolve {}", target.host), t))??;
        p.ip = Some(IpProtocol::of(&addr));
        let peer = addr.to_string();

        let t = Instant::now();
        let stream = net::connect(addr, deadline).await;
        p.phases[CONNECT] += t.elapsed();
        let stream = stream?;

        if !target.https {
            return exchange(stream, request, peer, deadline, p).await;
        }
        let name = match (&self.server_name, trusted) {
            (Some(name), true) => name.clone(),
            _ => net::server_name(&target.host).map_err(|e| {
                CheckError::new(Reason::Tls, format!("tls handshake with {peer}: {e}"))
            })?,
        };
        let t = Instant::now();
        let handshake = net::tls_handshake(stream, &peer, name, &self.tls, deadline).await;
        p.phases[TLS] += t.elapsed();
        match handshake {
            Ok((tls, info)) => {
                p.cert_not_after = info.cert_not_after.or(p.cert_not_after);
                exchange(tls, request, peer, deadline, p).await
            }
            Err((e, info)) => {
                p.cert_not_after = info.cert_not_after.or(p.cert_not_after);
                Err(e)
            }
        }
    }

    fn judge(&self, status: StatusCode, body: &[u8], truncated: bool) -> Result<(), CheckError> {
        let code = status.as_u16();
        let ok = if self.valid_status_codes.is_empty() {
            status.is_success()
        } else {
            self.valid_status_codes.contains(&code)
        };
        if !ok {
            let expected = match self.valid_status_codes.as_slice() {
                [] => "2xx".to_string(),
                [one] => one.to_string(),
                many => {
                    let list: Vec<String> = many.iter().map(u16::to_string).collect();
                    format!("one of {}", list.join(", "))
                }
            };
            // "The password is wrong" must not look like "the site is down".
            let reason = if status == StatusCode::UNAUTHORIZED {
                Reason::Auth
            } else {
                Reason::HttpStatus
            };
            return Err(CheckError::new(
                reason,
                format!("status {code}, expected {expected}"),
            ));
        }
        let mismatch = |detail: String| CheckError::new(Reason::BodyMismatch, detail);
        let text = String::from_utf8_lossy(body);
        for re in &self.fail_if_body_matches {
            if let Some(m) = re.find(&text) {
                return Err(mismatch(format!(
                    "body matches \"{}\": found {}",
                    re.as_str(),
                    net::quote_truncated(m.as_str(), SHOWN_CHARS)
                )));
            }
        }
        for re in &self.fail_if_body_not_matches {
            if !re.is_match(&text) {
                return Err(mismatch(format!(
                    "body does not match \"{}\"; it starts with {}",
                    re.as_str(),
                    net::quote_truncated(&text, SHOWN_CHARS)
                )));
            }
        }
        if self.json_expect.is_empty() {
            return Ok(());
        }
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
            let cut = if truncated {
                " (cut at max_body_bytes)"
            } else {
                ""
            };
            mismatch(format!(
                "json_expect: body is not JSON{cut}: {e}; it starts with {}",
                net::quote_truncated(&text, SHOWN_CHARS)
            ))
        })?;
        for expect in &self.json_expect {
            expect
                .check(&value)
                .map_err(|e| mismatch(format!("json_expect {expect}: {e}")))?;
        }
        Ok(())
    }
}

/// Speaks HTTP/1.1 over an open connection: sends the request, waits for the headers.
async fn exchange<S>(
    io: S,
    request: Request<Full<Bytes>>,
    peer: String,
    deadline: Instant,
    p: &mut Progress,
) -> Result<Exchange, CheckError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let t = Instant::now();
    let what = || format!("wait for response headers from {peer}");
    let result = async {
        let (mut sender, conn) = tokio::time::timeout_at(
            deadline,
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(io)),
        )
        .await
        .map_err(|_| net::timed_out(&what(), t))?
        .map_err(|e| protocol(format!("start HTTP/1.1 with {peer}: {}", error_chain(&e))))?;
        let driver = AbortOnDrop(tokio::spawn(async move {
            // The request sees the same error; this is only for debugging.
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "http connection");
            }
        }));
        let response = tokio::time::timeout_at(deadline, sender.send_request(request))
            .await
            .map_err(|_| net::timed_out(&what(), t))?
            .map_err(|e| response_error(&e, &peer))?;
        Ok((response, driver))
    }
    .await;
    p.phases[PROCESSING] += t.elapsed();
    let (response, driver) = result?;
    Ok(Exchange {
        response,
        peer,
        _driver: driver,
    })
}

fn response_error(e: &hyper::Error, peer: &str) -> CheckError {
    let what = format!("read response from {peer}");
    if e.is_parse() || e.is_parse_status() {
        protocol(format!("{what}: invalid HTTP response: {}", error_chain(e)))
    } else if e.is_incomplete_message() {
        protocol(format!(
            "{what}: connection closed before a complete response"
        ))
    } else {
        protocol(format!("{what}: {}", error_chain(e)))
    }
}

/// Reads at most `max` bytes of the body; records its size and the `transfer` phase.
async fn read_body(
    exchange: Exchange,
    max: usize,
    deadline: Instant,
    p: &mut Progress,
) -> Result<Vec<u8>, CheckError> {
    let t = Instant::now();
    let Exchange {
        response,
        peer,
        _driver,
    } = exchange;
    let mut body = response.into_body();
    let mut buf = Vec::new();
    let result = loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => break Err(net::timed_out(&format!("read body from {peer}"), t)),
            Ok(None) => break Ok(()),
            Ok(Some(Err(e))) => {
                break Err(protocol(format!(
                    "read body from {peer}: {}",
                    error_chain(&e)
                )));
            }
            Ok(Some(Ok(frame))) => {
                let Ok(data) = frame.into_data() else {
                    continue; // trailers
                };
                let room = max.saturating_sub(buf.len());
                if data.len() > room {
                    buf.extend_from_slice(data.get(..room).unwrap_or_default());
                    p.truncated = true;
                    break Ok(());
                }
                buf.extend_from_slice(&data);
            }
        }
    };
    p.phases[TRANSFER] += t.elapsed();
    result?;
    p.body_size = Some(buf.len());
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target(https: bool, host: &str, port: u16, path: &str) -> Target {
        Target {
            https,
            host: host.into(),
            port,
            path: path.into(),
        }
    }

    #[test]
    fn urls_parse() {
        for (text, want) in [
            ("http://127.0.0.1", target(false, "127.0.0.1", 80, "/")),
            (
                "https://h.example/x?y=1#frag",
                target(true, "h.example", 443, "/x?y=1"),
            ),
            ("HTTP://h:8080?q", target(false, "h", 8080, "/?q")),
            (
                "https://[::1]:8443/health",
                target(true, "::1", 8443, "/health"),
            ),
            ("http://[::1]/", target(false, "::1", 80, "/")),
        ] {
            assert_eq!(Target::parse(text), Ok(want), "{text}");
        }
        for bad in [
            "ftp://h/",
            "h:80",
            "http://",
            "http://h:x/",
            "http://h:0/",
            "http://[::1/",
            "http://[zz]/",
            "http://u@h/",
            "http://h/a b",
            "http://a:b:c/",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn url_templates() {
        assert_eq!(fill_placeholders("https://h/x"), Ok(None));
        assert_eq!(
            fill_placeholders("https://{tunnel.hostname}/health"),
            Ok(Some("https://1/health".to_string()))
        );
        assert_eq!(
            fill_placeholders("http://{a.host}:{a.port}/{b-c.p_1}"),
            Ok(Some("http://1:1/1".to_string()))
        );
        for bad in [
            "https://{tunnel}/",
            "https://{.x}/",
            "https://{1a.x}/",
            "https://{a.}/",
            "https://{a.b/",
            "https://a}/",
            "https://{a.b c}/",
            "https://{{a.b}}/",
        ] {
            assert!(fill_placeholders(bad).is_err(), "{bad}");
        }
        let spec = UrlSpec::parse("https://{t.h}/x").unwrap();
        assert_eq!(spec, UrlSpec::Template("https://{t.h}/x".to_string()));
        let vars = crate::checks::Vars::default();
        assert_eq!(spec.resolve(&vars).unwrap_err().reason, Reason::Missing);
        vars.merge(
            "t",
            &BTreeMap::from([("h".to_string(), "H.example".to_string())]),
        );
        assert_eq!(
            spec.resolve(&vars),
            Ok(target(true, "H.example", 443, "/x"))
        );
    }

    #[test]
    fn locations_join() {
        let base = target(false, "h", 8080, "/a/b?x=1");
        for (loc, want) in [
            ("/new", target(false, "h", 8080, "/new")),
            ("c", target(false, "h", 8080, "/a/c")),
            ("?y=2", target(false, "h", 8080, "/a/b?y=2")),
            ("#top", target(false, "h", 8080, "/a/b?x=1")),
            ("//other/p", target(false, "other", 80, "/p")),
            ("https://other:8443/q", target(true, "other", 8443, "/q")),
        ] {
            assert_eq!(base.join(loc), Ok(want), "{loc}");
        }
        assert!(base.join("ftp://other/").is_err());
        assert!(base.join("/a b").is_err());
    }

    #[test]
    fn credentials_follow_only_to_the_same_host() {
        let base = target(true, "h", 443, "/");
        assert!(base.trusts(&target(true, "H", 8443, "/x")));
        assert!(!base.trusts(&target(false, "h", 80, "/")), "downgrade");
        assert!(!base.trusts(&target(true, "other", 443, "/")));
        assert!(target(false, "h", 80, "/").trusts(&base), "upgrade");
    }

    #[test]
    fn host_header_omits_default_ports() {
        assert_eq!(target(false, "h", 80, "/").authority(), "h");
        assert_eq!(target(true, "h", 80, "/").authority(), "h:80");
        assert_eq!(target(true, "::1", 8443, "/").authority(), "[::1]:8443");
        assert_eq!(
            target(true, "::1", 8443, "/p").url(),
            "https://[::1]:8443/p"
        );
    }

    #[test]
    fn base64_encodes() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("monitor:s3cret!", "bW9uaXRvcjpzM2NyZXQh"),
        ] {
            assert_eq!(base64(input.as_bytes()), want, "{input}");
        }
    }

    #[test]
    fn config_defaults() {
        let c: HttpConfig = serde_json::from_value(json!({"url": "http://127.0.0.1/"})).unwrap();
        assert_eq!(c.method, Method::GET);
        assert!(c.follow_redirects && c.ip_protocol_fallback);
        assert_eq!(c.ip_protocol, IpProtocol::Ip4);
        assert_eq!(c.max_body_bytes, 1024 * 1024);
        assert!(c.valid_status_codes.is_empty() && c.headers.is_empty());
    }

    #[test]
    fn bad_configs_are_refused() {
        for (config, needle) in [
            (json!({}), "missing field `url`"),
            (json!({"url": "ftp://h/"}), "scheme"),
            (json!({"url": "https://u:pw@h/"}), "password_file"),
            (
                json!({"url": "http://h/", "method": "GE T"}),
                "invalid HTTP method",
            ),
            (
                json!({"url": "http://h/", "headers": {"Bad Name": "x"}}),
                "invalid header name",
            ),
            (
                json!({"url": "http://h/", "headers": {"X": "a\nb"}}),
                "invalid value for header X",
            ),
            (
                json!({"url": "http://h/", "valid_status_codes": [99]}),
                "invalid status code 99",
            ),
            (
                json!({"url": "http://h/", "json_expect": ["$.a >"]}),
                "invalid json_expect",
            ),
            (
                json!({"url": "http://h/", "ip_protocol": "ip5"}),
                "unknown variant",
            ),
            (
                json!({"url": "http://h/", "timeout_typo": 1}),
                "unknown field",
            ),
        ] {
            let err = serde_json::from_value::<HttpConfig>(config.clone()).unwrap_err();
            assert!(err.to_string().contains(needle), "{config}: {err}");
        }
    }

    #[test]
    fn build_checks_files_and_auth() {
        let c: HttpConfig = serde_json::from_value(json!({
            "url": "https://h/",
            "tls_config": {"ca_file": "/nonexistent.pem"},
        }))
        .unwrap();
        assert_eq!(
            HttpCheck::build(&c).unwrap_err().field,
            "tls_config.ca_file"
        );
        let c: HttpConfig = serde_json::from_value(json!({
            "url": "http://h/",
            "basic_auth": {"username": "u"},
        }))
        .unwrap();
        let e = HttpCheck::build(&c).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("basic_auth", "set password_file or password_env")
        );
        let c: HttpConfig =
            serde_json::from_value(json!({"url": "http://h/", "method": "post"})).unwrap();
        assert_eq!(HttpCheck::build(&c).unwrap().inner.method, Method::POST);
    }
}
