//! `docker` check: the containers whose name matches a pattern, read from the Docker
//! Engine API over its unix socket. Read only: it lists and inspects, nothing else.
//!
//! ```yaml
//! - name: containers
//!   kind: docker
//!   socket: /var/run/docker.sock
//!   name_pattern: "^harena_"
//! ```
//!
//! Each run asks `GET /version` (unversioned) for the API versions the daemon serves,
//! then `GET /v1.xx/containers/json?all=true`, then `GET /v1.xx/containers/{id}/json`
//! for each matching container. HTTP/1.1 goes over a `tokio::net::UnixStream` with
//! hyper, one connection per request, every step bounded by the run's deadline.
//!
//! # The API version
//! `api_version` is the version asked for, moved into the range the daemon serves:
//! down to its maximum (as the Docker CLI negotiates) and up to its minimum, because
//! Docker Engine 29 refuses anything below 1.44 ("client version 1.41 is too old").
//! The fields read here have kept their shape since API 1.24.
//!
//! # When the check fails
//! With reason `missing` ("the container is gone" in the reason set, as opposed to
//! "the socket is wrong" or "the daemon answers nonsense") when no container matches,
//! or when a matching container is not running (exited, restarting, paused, created,
//! dead), is unhealthy by its own healthcheck, or was restarted by its restart policy
//! since the previous run: a crash loop (the Loki incident) may be caught between two
//! crashes in the `running` state, but its `RestartCount` still climbs. A container
//! whose healthcheck is still `starting` does not fail the check. The detail lists every
//! bad container: `harena_loki is restarting (exit code 1, 14 restarts)`.
//! A missing socket, or one this user may not open, fails with `refused`; an answer that
//! is not the Engine API's with `protocol`; an API error status with `http_status`
//! (`auth` for 401 and 403, as a socket proxy answers for an endpoint it forbids).

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, HOST, USER_AGENT};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use tokio::net::UnixStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{BuildError, Check, CheckError, Reason, Recorder, RunContext};
use crate::config::types::ConfigRegex;
use crate::net;

crate::metric!(
    RUNNING,
    gauge,
    "harena_container_running",
    "1 when the container's state is running (not restarting, paused or stopped), else 0."
);
crate::metric!(
    HEALTH,
    gauge,
    "harena_container_health",
    "Healthcheck status of the container: 1 on the current one of healthy, unhealthy, starting, none (no healthcheck)."
);
crate::metric!(
    RESTARTS,
    counter,
    "harena_container_restarts_total",
    "Restarts of the container by its restart policy (Docker's RestartCount); starts again at 0 when the container is recreated."
);
crate::metric!(
    OOM_KILLED,
    gauge,
    "harena_container_oom_killed",
    "1 when the container's last stop was by the out-of-memory killer, else 0."
);
crate::metric!(
    EXIT_CODE,
    gauge,
    "harena_container_exit_code",
    "Exit code of the container's last run; 0 while it runs (Docker resets it at each start)."
);
crate::metric!(
    STARTED_AT,
    gauge,
    "harena_container_started_at_timestamp_seconds",
    "When the container last started (Unix seconds); absent when it never started."
);
crate::metric!(
    MATCHED,
    gauge,
    "harena_containers_matched",
    "Number of containers, running or not, whose name matches name_pattern."
);

/// The `status` label values of `harena_container_health`.
pub const HEALTH_STATUSES: [&str; 4] = ["healthy", "unhealthy", "starting", "none"];

/// The most bytes read from one answer; a container list of a few thousand entries fits.
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// How much of an API error message a detail shows.
const SHOWN_CHARS: usize = 200;

/// The keys of a `docker` check.
///
/// ```yaml
/// - name: containers
///   kind: docker
///   name_pattern: "^harena_"
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerConfig {
    /// The Docker Engine API's unix socket. The exporter's user must be allowed to open
    /// it (the `docker` group, or the socket mounted read-only into its container).
    /// Default `/var/run/docker.sock`. Example: `socket: /run/user/1000/docker.sock`.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// The containers to watch: those whose name (without the leading `/`) matches this
    /// regular expression. Default `^harena_`. Example: `name_pattern: "^harena_(nginx|loki)$"`.
    #[serde(default = "default_name_pattern")]
    pub name_pattern: ConfigRegex,
    /// The Engine API version to ask for, `v1.NN`; it is moved into the range the daemon
    /// serves (see the module docs). Default `v1.41`. Example: `api_version: v1.44`.
    #[serde(default = "default_api_version", deserialize_with = "de_api_version")]
    pub api_version: String,
}

fn default_socket() -> PathBuf {
    PathBuf::from("/var/run/docker.sock")
}

fn default_name_pattern() -> ConfigRegex {
    ConfigRegex(regex::Regex::new("^harena_").expect("the default pattern is valid"))
}

fn default_api_version() -> String {
    "v1.41".to_string()
}

fn de_api_version<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    ApiVersion::parse(&text).map_err(D::Error::custom)?;
    Ok(text)
}

/// An Engine API version, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct ApiVersion(u32, u32);

impl ApiVersion {
    /// Parses `v1.41` or `1.41`.
    fn parse(text: &str) -> Result<ApiVersion, String> {
        let bad = || format!("invalid API version {text:?}: expected v1.NN, e.g. v1.41");
        let digits = text.strip_prefix('v').unwrap_or(text);
        let (major, minor) = digits.split_once('.').ok_or_else(bad)?;
        let number = |s: &str| {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            s.parse::<u32>().map_err(|_| bad())
        };
        Ok(ApiVersion(number(major)?, number(minor)?))
    }

    /// The version to use with a daemon that serves `min..=max`.
    fn negotiate(self, min: Option<ApiVersion>, max: ApiVersion) -> ApiVersion {
        let mut v = self.min(max);
        if let Some(min) = min.filter(|m| *m <= max) {
            v = v.max(min);
        }
        v
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{}.{}", self.0, self.1)
    }
}

/// A runnable `docker` check.
#[derive(Debug)]
pub struct DockerCheck {
    // Boxed: the registry's enum of built checks stays small whatever the kind.
    inner: Box<Inner>,
}

#[derive(Debug)]
struct Inner {
    socket: PathBuf,
    name_pattern: regex::Regex,
    api_version: ApiVersion,
    /// `RestartCount` of each container (by id) at the previous run.
    restarts: Mutex<HashMap<String, u64>>,
}

// --- The Engine API's answers: only the fields read; the rest (environment variables
// with secrets among them) is skipped by serde and never kept.

/// `GET /version`.
#[derive(Debug, Deserialize)]
struct VersionAnswer {
    #[serde(rename = "ApiVersion")]
    api_version: String,
    #[serde(rename = "MinAPIVersion", default)]
    min_api_version: Option<String>,
}

/// One entry of `GET /containers/json`.
#[derive(Debug, Deserialize)]
struct ContainerSummary {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Names", default)]
    names: Option<Vec<String>>,
}

/// `GET /containers/{id}/json`.
#[derive(Debug, Deserialize)]
struct ContainerInspect {
    #[serde(rename = "RestartCount", default)]
    restart_count: u64,
    #[serde(rename = "State")]
    state: ContainerState,
}

#[derive(Debug, Deserialize)]
struct ContainerState {
    #[serde(rename = "Status")]
    status: String,
    #[serde(rename = "OOMKilled", default)]
    oom_killed: bool,
    #[serde(rename = "ExitCode", default)]
    exit_code: i64,
    #[serde(rename = "StartedAt", default)]
    started_at: Option<String>,
    #[serde(rename = "Health", default)]
    health: Option<HealthState>,
}

#[derive(Debug, Deserialize)]
struct HealthState {
    #[serde(rename = "Status", default)]
    status: String,
    #[serde(rename = "FailingStreak", default)]
    failing_streak: u64,
}

/// An `{"message": "..."}` error answer.
#[derive(Debug, Deserialize)]
struct ErrorAnswer {
    message: String,
}

/// Aborts the spawned connection driver when the request is over or the run is dropped,
/// so that it never outlives the run.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A non-2xx answer.
struct Failed {
    status: StatusCode,
    /// Whether the answer came from the Engine API (its `Api-Version` header, or a
    /// `Server: Docker/…` header).
    from_docker: bool,
    body: Bytes,
}

impl Check for DockerCheck {
    type Config = DockerConfig;
    const KIND: &'static str = "docker";
    const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    fn build(config: &DockerConfig) -> Result<Self, BuildError> {
        if config.socket.as_os_str().is_empty() {
            return Err(BuildError::new("socket", "socket is empty"));
        }
        let api_version = ApiVersion::parse(&config.api_version)
            .map_err(|e| BuildError::new("api_version", e))?;
        Ok(DockerCheck {
            inner: Box::new(Inner {
                socket: config.socket.clone(),
                name_pattern: config.name_pattern.0.clone(),
                api_version,
                restarts: Mutex::new(HashMap::new()),
            }),
        })
    }

    fn target(&self) -> String {
        format!(
            "unix://{} {}",
            self.inner.socket.display(),
            self.inner.name_pattern.as_str()
        )
    }

    async fn run(&self, ctx: &RunContext, rec: &mut Recorder) -> Result<(), CheckError> {
        self.inner.probe(ctx.deadline, rec).await
    }
}

/// What one matching container looks like, for the verdict.
struct Seen {
    name: String,
    id: String,
    inspect: Option<ContainerInspect>,
}

impl Inner {
    async fn probe(&self, deadline: Instant, rec: &mut Recorder) -> Result<(), CheckError> {
        let version: VersionAnswer = self.get_json("/version", deadline).await?;
        let max = ApiVersion::parse(&version.api_version).map_err(|_| {
            protocol(format!(
                "GET /version: unexpected ApiVersion {}",
                net::quote_truncated(&version.api_version, 20)
            ))
        })?;
        let min = version
            .min_api_version
            .as_deref()
            .and_then(|v| ApiVersion::parse(v).ok());
        let v = self.api_version.negotiate(min, max);

        let list: Vec<ContainerSummary> = self
            .get_json(&format!("/{v}/containers/json?all=true"), deadline)
            .await?;
        let total = list.len();
        let mut matched: Vec<(String, String)> = list
            .into_iter()
            .filter_map(|c| {
                let name = container_name(c.names.as_deref().unwrap_or_default())?;
                self.name_pattern.is_match(&name).then_some((name, c.id))
            })
            .collect();
        matched.sort();
        rec.record(&MATCHED, &[], as_gauge(matched.len()));
        if matched.is_empty() {
            return Err(CheckError::new(
                Reason::Missing,
                format!(
                    "find containers: none of {total} matches {}",
                    self.name_pattern.as_str()
                ),
            ));
        }

        let mut seen = Vec::with_capacity(matched.len());
        for (name, id) in matched {
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(protocol(format!(
                    "GET /{v}/containers/json: container {name} has an invalid Id {}",
                    net::quote_truncated(&id, 80)
                )));
            }
            let path = format!("/{v}/containers/{id}/json");
            let inspect = match self.get(&path, deadline).await? {
                Ok(body) => Some(parse_json::<ContainerInspect>(&path, &body)?),
                // Removed between the list and now, e.g. recreated by `compose up`.
                Err(f) if f.status == StatusCode::NOT_FOUND && f.from_docker => None,
                Err(f) => return Err(failed(&path, &f)),
            };
            seen.push(Seen { name, id, inspect });
        }
        self.judge(&seen, rec)
    }

    /// Records each container's series and decides.
    fn judge(&self, seen: &[Seen], rec: &mut Recorder) -> Result<(), CheckError> {
        let mut previous = self.restarts.lock().unwrap_or_else(|e| e.into_inner());
        let mut current = HashMap::new();
        let mut problems = Vec::new();
        let mut health_counts: HashMap<&str, usize> = HashMap::new();
        for c in seen {
            let label = [("container", c.name.as_str())];
            let Some(inspect) = &c.inspect else {
                rec.record(&RUNNING, &label, 0.0);
                problems.push(format!("{} disappeared (no such container)", c.name));
                continue;
            };
            let state = &inspect.state;
            let running = state.status == "running";
            let health = match state.health.as_ref().map(|h| h.status.as_str()) {
                None | Some("" | "none") => "none",
                Some(other) => other,
            };
            rec.record(&RUNNING, &label, if running { 1.0 } else { 0.0 });
            for status in HEALTH_STATUSES {
                rec.record(
                    &HEALTH,
                    &[("container", c.name.as_str()), ("status", status)],
                    if status == health { 1.0 } else { 0.0 },
                );
            }
            rec.record(&RESTARTS, &label, as_gauge_u64(inspect.restart_count));
            rec.record(
                &OOM_KILLED,
                &label,
                if state.oom_killed { 1.0 } else { 0.0 },
            );
            #[allow(clippy::cast_precision_loss)]
            rec.record(&EXIT_CODE, &label, state.exit_code as f64);
            if let Some(t) = state.started_at.as_deref().and_then(started_at) {
                rec.record(&STARTED_AT, &label, t);
            }

            current.insert(c.id.clone(), inspect.restart_count);
            let restarted = previous
                .get(&c.id)
                .map_or(0, |before| inspect.restart_count.saturating_sub(*before));
            if !running {
                problems.push(not_running(&c.name, inspect));
            } else if health == "unhealthy" {
                let streak = state.health.as_ref().map_or(0, |h| h.failing_streak);
                problems.push(format!(
                    "{} is unhealthy ({streak} failed health check{} in a row)",
                    c.name,
                    plural(streak)
                ));
            } else if restarted > 0 {
                // Docker resets ExitCode when the container starts again: not shown.
                problems.push(format!(
                    "{} was restarted {restarted} time{} since the last run ({} restart{} in all)",
                    c.name,
                    plural(restarted),
                    inspect.restart_count,
                    plural(inspect.restart_count)
                ));
            } else {
                *health_counts.entry(health).or_default() += 1;
            }
        }
        *previous = current;
        drop(previous);

        if !problems.is_empty() {
            return Err(CheckError::new(Reason::Missing, problems.join("; ")));
        }
        let mut detail = format!(
            "{} container{} running",
            seen.len(),
            plural(seen.len() as u64)
        );
        let parts: Vec<String> = [
            ("healthy", "healthy"),
            ("starting", "starting"),
            ("none", "without healthcheck"),
        ]
        .iter()
        .filter_map(|(key, text)| {
            health_counts
                .get(key)
                .filter(|n| **n > 0)
                .map(|n| format!("{n} {text}"))
        })
        .collect();
        if !parts.is_empty() {
            let _ = write!(detail, " ({})", parts.join(", "));
        }
        rec.set_detail(detail);
        Ok(())
    }

    /// `GET path`, a 2xx answer parsed as JSON.
    async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        deadline: Instant,
    ) -> Result<T, CheckError> {
        match self.get(path, deadline).await? {
            Ok(body) => parse_json(path, &body),
            Err(f) => Err(failed(path, &f)),
        }
    }

    /// `GET path` over a new connection: the body of a 2xx answer, or the failed answer.
    async fn get(
        &self,
        path: &str,
        deadline: Instant,
    ) -> Result<Result<Bytes, Failed>, CheckError> {
        let start = Instant::now();
        let what = format!("GET {path} on {}", self.socket.display());
        tokio::time::timeout_at(deadline, self.exchange(path, &what))
            .await
            .map_err(|_| net::timed_out(&what, start))?
    }

    async fn exchange(&self, path: &str, what: &str) -> Result<Result<Bytes, Failed>, CheckError> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| connect_error(&self.socket, &e))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|e| protocol(format!("{what}: start HTTP/1.1: {}", error_chain(&e))))?;
        let _driver = AbortOnDrop(tokio::spawn(async move {
            // The request sees the same error; this is only for debugging.
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "docker API connection");
            }
        }));
        let request = Request::builder()
            .method(Method::GET)
            .uri(path)
            // The daemon ignores the host; Docker's own client sends this one.
            .header(HOST, HeaderValue::from_static("api.moby.localhost"))
            .header(
                USER_AGENT,
                HeaderValue::from_static(super::http::USER_AGENT_VALUE),
            )
            .header(CONNECTION, HeaderValue::from_static("close"))
            .body(Empty::<Bytes>::new())
            .map_err(|e| {
                CheckError::new(Reason::Internal, format!("{what}: build request: {e}"))
            })?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| response_error(&e, what))?;
        let status = response.status();
        let headers = response.headers();
        let from_docker = headers.contains_key("api-version")
            || headers
                .get(http::header::SERVER)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|s| s.starts_with("Docker/"));
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    protocol(format!(
                        "{what}: answer larger than {} MiB",
                        MAX_ANSWER_BYTES >> 20
                    ))
                } else {
                    protocol(format!("{what}: read answer: {}", error_chain(&*e)))
                }
            })?
            .to_bytes();
        if status.is_success() {
            Ok(Ok(body))
        } else {
            Ok(Err(Failed {
                status,
                from_docker,
                body,
            }))
        }
    }
}

/// The name of a container from its `Names` (`["/harena_nginx"]`): the one without a
/// link path (`/other/alias`), without its leading `/`.
fn container_name(names: &[String]) -> Option<String> {
    let trimmed = |n: &String| n.strip_prefix('/').unwrap_or(n).to_string();
    names
        .iter()
        .map(trimmed)
        .find(|n| !n.contains('/') && !n.is_empty())
        .or_else(|| names.first().map(trimmed))
}

/// `harena_loki is restarting (exit code 1, 14 restarts)`.
fn not_running(name: &str, inspect: &ContainerInspect) -> String {
    let state = &inspect.state;
    let mut out = match state.status.as_str() {
        "exited" => format!("{name} has exited"),
        "" => format!("{name} is not running"),
        status => format!("{name} is {status}"),
    };
    let mut facts = vec![format!("exit code {}", state.exit_code)];
    if state.oom_killed {
        facts.push("killed for lack of memory".to_string());
    }
    if inspect.restart_count > 0 {
        facts.push(format!(
            "{} restart{}",
            inspect.restart_count,
            plural(inspect.restart_count)
        ));
    }
    let _ = write!(out, " ({})", facts.join(", "));
    out
}

/// Unix seconds of an RFC 3339 `StartedAt`; `None` for Docker's "never" (year 1).
fn started_at(text: &str) -> Option<f64> {
    let t = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    if t.timestamp() <= 0 {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    let millis = t.timestamp_millis() as f64;
    Some(millis / 1000.0)
}

fn parse_json<T: DeserializeOwned>(path: &str, body: &[u8]) -> Result<T, CheckError> {
    serde_json::from_slice(body).map_err(|e| {
        // Only the position: serde's message may quote values from the answer, and
        // an inspect answer holds the container's environment variables.
        let what = match e.classify() {
            serde_json::error::Category::Data => "unexpected JSON fields",
            _ => "invalid JSON",
        };
        protocol(format!(
            "GET {path}: not a Docker Engine API answer: {what} at line {} column {}",
            e.line(),
            e.column()
        ))
    })
}

/// The error for a non-2xx answer.
fn failed(path: &str, f: &Failed) -> CheckError {
    let code = f.status.as_u16();
    let message = serde_json::from_slice::<ErrorAnswer>(&f.body)
        .map(|a| format!(": {}", net::quote_truncated(&a.message, SHOWN_CHARS)))
        .unwrap_or_default();
    if matches!(code, 401 | 403) {
        // A socket proxy (docker-socket-proxy) that forbids the call answers so.
        return CheckError::new(
            Reason::Auth,
            format!("GET {path}: status {code}{message}: access to this endpoint is denied"),
        );
    }
    if !f.from_docker {
        return protocol(format!(
            "GET {path}: status {code} without an Api-Version header: not a Docker Engine API"
        ));
    }
    CheckError::new(
        Reason::HttpStatus,
        format!("GET {path}: status {code}{message}"),
    )
}

fn connect_error(socket: &std::path::Path, e: &io::Error) -> CheckError {
    let hint = match e.kind() {
        io::ErrorKind::NotFound => ": is Docker running, and is its socket mounted here?",
        io::ErrorKind::PermissionDenied => {
            ": add the exporter's user to the docker group, or mount the socket for it"
        }
        _ => "",
    };
    CheckError::new(
        Reason::Refused,
        format!(
            "connect to {}: {}{hint}",
            socket.display(),
            net::io_error_text(e)
        ),
    )
}

fn response_error(e: &hyper::Error, what: &str) -> CheckError {
    if e.is_parse() || e.is_parse_status() {
        protocol(format!(
            "{what}: not a Docker Engine API answer: invalid HTTP response: {}",
            error_chain(e)
        ))
    } else if e.is_incomplete_message() {
        protocol(format!(
            "{what}: connection closed before a complete response"
        ))
    } else {
        protocol(format!("{what}: {}", error_chain(e)))
    }
}

fn protocol(detail: String) -> CheckError {
    CheckError::new(Reason::Protocol, detail)
}

/// An error and its sources, joined with `: `.
fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = match s.downcast_ref::<io::Error>() {
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

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A count as a gauge value (exact below 2^53).
#[allow(clippy::cast_precision_loss)]
fn as_gauge(n: usize) -> f64 {
    n as f64
}

/// A count as a gauge value (exact below 2^53).
#[allow(clippy::cast_precision_loss)]
fn as_gauge_u64(n: u64) -> f64 {
    n as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn api_versions_parse_and_negotiate() {
        assert_eq!(ApiVersion::parse("v1.41"), Ok(ApiVersion(1, 41)));
        assert_eq!(ApiVersion::parse("1.44"), Ok(ApiVersion(1, 44)));
        for bad in [
            "", "v1", "v1.", "1.x", "v1.41.2", "vv1.41", "v+1.41", " 1.41",
        ] {
            assert!(ApiVersion::parse(bad).is_err(), "{bad}");
        }
        let want = ApiVersion(1, 41);
        // Docker 24: 1.12–1.43; Docker 29: 1.44–1.52; an old daemon without a minimum.
        assert_eq!(
            want.negotiate(Some(ApiVersion(1, 12)), ApiVersion(1, 43)),
            ApiVersion(1, 41)
        );
        assert_eq!(
            want.negotiate(Some(ApiVersion(1, 44)), ApiVersion(1, 52)),
            ApiVersion(1, 44)
        );
        assert_eq!(want.negotiate(None, ApiVersion(1, 40)), ApiVersion(1, 40));
        assert_eq!(
            want.negotiate(Some(ApiVersion(1, 50)), ApiVersion(1, 45)),
            ApiVersion(1, 41).min(ApiVersion(1, 45))
        );
        assert_eq!(ApiVersion(1, 44).to_string(), "v1.44");
    }

    #[test]
    fn names_drop_the_slash_and_links() {
        let names = |v: &[&str]| -> Vec<String> { v.iter().map(|s| s.to_string()).collect() };
        assert_eq!(
            container_name(&names(&["/harena_nginx"])).as_deref(),
            Some("harena_nginx")
        );
        assert_eq!(
            container_name(&names(&["/web/db", "/harena_postgres"])).as_deref(),
            Some("harena_postgres")
        );
        assert_eq!(container_name(&names(&[])), None);
    }

    #[test]
    fn started_at_skips_never() {
        assert_eq!(started_at("0001-01-01T00:00:00Z"), None);
        assert_eq!(
            started_at("2025-11-20T10:00:00.123456789Z"),
            Some(1_763_632_800.123)
        );
        assert_eq!(started_at("yesterday"), None);
    }

    #[test]
    fn config_defaults_and_errors() {
        let c: DockerConfig = serde_json::from_value(json!({})).unwrap();
        assert_eq!(c.socket, PathBuf::from("/var/run/docker.sock"));
        assert_eq!(c.name_pattern.0.as_str(), "^harena_");
        assert_eq!(c.api_version, "v1.41");
        assert_eq!(
            DockerCheck::build(&c).unwrap().target(),
            "unix:///var/run/docker.sock ^harena_"
        );
        for (config, needle) in [
            (json!({"api_version": "latest"}), "invalid API version"),
            (
                json!({"name_pattern": "(unclosed"}),
                "invalid regular expression",
            ),
            (json!({"sock": "/x"}), "unknown field"),
        ] {
            let e = serde_json::from_value::<DockerConfig>(config.clone()).unwrap_err();
            assert!(e.to_string().contains(needle), "{config}: {e}");
        }
    }
}
