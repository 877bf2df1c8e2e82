//! The `tunnel` check against a fake of cloudflared's metrics server on 127.0.0.1
//! (axum), speaking its wire format: `/ready` (200, or 503 without an edge connection),
//! `/quicktunnel` and `/metrics` (Prometheus text). cloudflared cannot reach Cloudflare
//! from here, so the real one would never be ready; see TESTBED.md.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use harena_exporter::checks::tunnel::{TunnelCheck, TunnelConfig};
use harena_exporter::checks::{Check, CheckError, Reason, Recorded, Recorder, RunContext};
use harena_exporter::model::Labels;
use harena_exporter::state::State as StateFile;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_secs(5);
const FIRST: &str = "seasonal-deck-organisms-sf.trycloudflare.com";
const SECOND: &str = "bridge-webhook-moves-again.trycloudflare.com";

// ---------------------------------------------------------------------------------------
// The fake cloudflared.

#[derive(Debug, Clone)]
struct Cloudflared {
    ready_connections: u64,
    /// `/quicktunnel`'s hostname; empty for a named tunnel.
    hostname: String,
    /// Serve `/quicktunnel` (cloudflared before 2023 had none).
    has_quicktunnel: bool,
    total_requests: u64,
}

impl Default for Cloudflared {
    fn default() -> Self {
        Cloudflared {
            ready_connections: 4,
            hostname: FIRST.to_string(),
            has_quicktunnel: true,
            total_requests: 42,
        }
    }
}

type Shared = Arc<Mutex<Cloudflared>>;

async fn ready(State(s): State<Shared>) -> Response {
    let n = s.lock().unwrap().ready_connections;
    let status = if n > 0 {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    // As cloudflared's metrics/readiness.go writes it (no Content-Type set).
    let body = format!(
        r#"{{"status":{},"readyConnections":{n},"connectorId":"4a7b3c1e-0f5d-4e8a-9b2c-6d1e7f8a9b0c"}}"#,
        status.as_u16()
    );
    (status, [(CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

async fn quicktunnel(State(s): State<Shared>) -> Response {
    let s = s.lock().unwrap().clone();
    if !s.has_quicktunnel {
        return (StatusCode::NOT_FOUND, "404 page not found\n").into_response();
    }
    (
        [(CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!(r#"{{"hostname":"{}"}}"#, s.hostname),
    )
        .into_response()
}

async fn metrics(State(s): State<Shared>) -> Response {
    let total = s.lock().unwrap().total_requests;
    let text = format!(
        r#"# HELP build_info Build and version information
# TYPE build_info gauge
build_info{{goversion="go1.22.5",revision="2025-10-01-1200 UTC",type="",version="2025.10.0"}} 1
# HELP cloudflared_tunnel_active_streams Total active streams
# TYPE cloudflared_tunnel_active_streams gauge
cloudflared_tunnel_active_streams 0
# HELP cloudflared_tunnel_concurrent_requests_per_tunnel Concurrent requests proxied through each tunnel
# TYPE cloudflared_tunnel_concurrent_requests_per_tunnel gauge
cloudflared_tunnel_concurrent_requests_per_tunnel 0
# HELP cloudflared_tunnel_ha_connections Number of active ha connections
# TYPE cloudflared_tunnel_ha_connections gauge
cloudflared_tunnel_ha_connections 4
# HELP cloudflared_tunnel_request_errors Amount of errors due to proxying
# TYPE cloudflared_tunnel_request_errors counter
cloudflared_tunnel_request_errors 3
# HELP cloudflared_tunnel_response_by_code Count of responses by HTTP status code
# TYPE cloudflared_tunnel_response_by_code counter
cloudflared_tunnel_response_by_code{{status_code="200"}} 35
cloudflared_tunnel_response_by_code{{status_code="404"}} 4
cloudflared_tunnel_response_by_code{{status_code="502"}} 3
# HELP cloudflared_tunnel_server_locations Where each tunnel is connected to. 1 means current location, 0 means previous locations.
# TYPE cloudflared_tunnel_server_locations gauge
cloudflared_tunnel_server_locations{{connection_id="0",edge_location="cdg01"}} 1
cloudflared_tunnel_server_locations{{connection_id="1",edge_location="dub01"}} 1
# HELP cloudflared_tunnel_total_requests Amount of requests proxied through all the tunnels
# TYPE cloudflared_tunnel_total_requests counter
cloudflared_tunnel_total_requests {total}
# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 87
"#
    );
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}

/// A server task, stopped when dropped.
struct Server {
    addr: SocketAddr,
    state: Shared,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    fn set(&self, f: impl FnOnce(&mut Cloudflared)) {
        f(&mut self.state.lock().unwrap());
    }
}

async fn serve_router(app: Router, state: Shared) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server { addr, state, task }
}

async fn serve(c: Cloudflared) -> Server {
    let state: Shared = Arc::new(Mutex::new(c));
    let app = Router::new()
        .route("/ready", get(ready))
        .route("/quicktunnel", get(quicktunnel))
        .route("/metrics", get(metrics))
        .fallback(|| async { (StatusCode::NOT_FOUND, "404 page not found\n") })
        .with_state(Arc::clone(&state));
    serve_router(app, state).await
}

/// Something else on a candidate port: answers everything with a 404 page.
async fn serve_other() -> Server {
    let app = Router::new().fallback(|| async {
        (
            StatusCode::NOT_FOUND,
            [(CONTENT_TYPE, "text/html")],
            "<html><body>Not Found</body></html>",
        )
    });
    serve_router(app, Shared::default()).await
}

/// An address where nothing listens.
fn closed_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

// ---------------------------------------------------------------------------------------
// Running the check.

struct Run {
    result: Result<(), CheckError>,
    recorded: Recorded,
}

impl Run {
    fn value(&self, name: &str, extra: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<f64> = self
            .recorded
            .samples
            .iter()
            .filter(|s| s.desc.name == name)
            .filter(|s| extra.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| s.value)
            .collect();
        assert!(
            found.len() <= 1,
            "{name}{extra:?} recorded {} times",
            found.len()
        );
        found.first().copied()
    }

    fn count(&self, name: &str) -> usize {
        self.recorded
            .samples
            .iter()
            .filter(|s| s.desc.name == name)
            .count()
    }

    fn detail(&self) -> &str {
        self.recorded.detail.as_deref().unwrap_or_default()
    }

    fn assert_ok(&self) {
        if let Err(e) = &self.result {
            panic!("expected success, got {}: {}", e.reason, e.detail);
        }
        assert!(
            self.recorded.detail.is_some(),
            "a successful run sets a detail"
        );
    }

    fn assert_fails(&self, reason: Reason, needle: &str) {
        let Err(e) = &self.result else {
            panic!(
                "expected a failure, got success: {:?}",
                self.recorded.detail
            );
        };
        assert_eq!(e.reason, reason, "detail: {}", e.detail);
        assert!(
            e.detail.contains(needle),
            "{:?} does not contain {needle:?}",
            e.detail
        );
    }

    fn export(&self, key: &str) -> Option<&str> {
        self.recorded.exports.get(key).map(String::as_str)
    }

    /// The hostname series: `(hostname, source)` of the one `harena_tunnel_info`.
    fn info(&self) -> Option<(String, String)> {
        assert!(self.count("harena_tunnel_info") <= 1);
        self.recorded
            .samples
            .iter()
            .find(|s| s.desc.name == "harena_tunnel_info")
            .map(|s| {
                assert_eq!(s.value, 1.0);
                (
                    s.labels.get("hostname").unwrap().to_string(),
                    s.labels.get("source").unwrap().to_string(),
                )
            })
    }

    fn changed_at(&self) -> Option<f64> {
        self.value("harena_tunnel_hostname_changed_timestamp_seconds", &[])
    }
}

fn build(config: Value) -> TunnelCheck {
    let config: TunnelConfig = serde_json::from_value(config).expect("config deserializes");
    TunnelCheck::build(&config).expect("check builds")
}

fn context(state: &Arc<StateFile>) -> RunContext {
    let mut ctx = RunContext::standalone(Instant::now() + TIMEOUT);
    ctx.check = "tunnel".into();
    ctx.state = Arc::clone(state);
    ctx
}

async fn run_in(check: &TunnelCheck, state: &Arc<StateFile>) -> Run {
    let ctx = context(state);
    let mut rec = Recorder::new(Labels::from_pairs([
        ("check", "tunnel"),
        ("kind", "tunnel"),
    ]));
    let result = check.run(&ctx, &mut rec).await;
    let recorded = rec.finish();
    for s in &recorded.samples {
        assert_eq!(s.labels.get("check"), Some("tunnel"), "{}", s.desc.name);
        assert_eq!(s.labels.get("kind"), Some("tunnel"), "{}", s.desc.name);
        assert!(s.desc.name.starts_with("harena_tunnel_"), "{}", s.desc.name);
    }
    Run { result, recorded }
}

fn memory_state() -> Arc<StateFile> {
    Arc::new(StateFile::in_memory().unwrap())
}

async fn run(config: Value) -> Run {
    run_in(&build(config), &memory_state()).await
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// cloudflared's log across two quick tunnels, a failed attempt in between and after.
fn write_log(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let lines = [
        "2025-11-03T09:00:00Z INF Thank you for trying Cloudflare Tunnel. Doing so, without a Cloudflare account, is a quick way to experiment and try it out. However, be aware that these account-less Tunnels have no uptime guarantee.",
        "2025-11-03T09:00:00Z INF Requesting new quick Tunnel on trycloudflare.com...",
        "2025-11-03T09:00:02Z INF +--------------------------------------------------------------------------------------------+",
        "2025-11-03T09:00:02Z INF |  Your quick Tunnel has been created! Visit it at (it may take some time to be reachable):  |",
        &format!(
            "2025-11-03T09:00:02Z INF |  https://{FIRST}                                      |"
        ),
        "2025-11-03T09:00:02Z INF +--------------------------------------------------------------------------------------------+",
        "2025-11-03T09:00:02Z INF Starting metrics server on 127.0.0.1:20241/metrics",
        "2025-11-03T10:00:00Z ERR failed to request quick Tunnel: Post \"https://api.trycloudflare.com/tunnel\": dial tcp: lookup api.trycloudflare.com: i/o timeout",
        "2025-11-03T10:05:00Z INF Requesting new quick Tunnel on trycloudflare.com...",
        &format!(
            "2025-11-03T10:05:03Z INF |  https://{SECOND}                                      |"
        ),
        "2025-11-03T10:05:03Z INF Registered tunnel connection connIndex=0 connection=9c1f location=cdg01 protocol=quic",
        "2025-11-03T12:00:00Z ERR Connection terminated error=\"context canceled\" connIndex=0",
        "2025-11-03T12:00:01Z ERR failed to request quick Tunnel: Post \"https://api.trycloudflare.com/tunnel\"",
    ];
    for line in lines {
        writeln!(f, "{line}").unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// The tests.

#[tokio::test]
async fn healthy_tunnel_records_everything_and_exports_the_hostname() {
    let server = serve(Cloudflared::default()).await;
    let before = now_secs();
    let r = run(json!({"metrics_address": server.addr.to_string()})).await;
    r.assert_ok();
    assert_eq!(r.value("harena_tunnel_ready_connections", &[]), Some(4.0));
    assert_eq!(r.info(), Some((FIRST.to_string(), "metrics".to_string())));
    assert_eq!(r.value("harena_tunnel_requests_total", &[]), Some(42.0));
    assert_eq!(
        r.value("harena_tunnel_request_errors_total", &[]),
        Some(3.0)
    );
    for (code, n) in [("200", 35.0), ("404", 4.0), ("502", 3.0)] {
        assert_eq!(
            r.value("harena_tunnel_responses_total", &[("status_code", code)]),
            Some(n),
            "{code}"
        );
    }
    assert_eq!(r.count("harena_tunnel_responses_total"), 3);
    // The very first run ever: the change time is now.
    let changed = r.changed_at().unwrap();
    assert!(
        changed >= before.floor() && changed <= now_secs() + 1.0,
        "{changed}"
    );
    assert_eq!(r.export("hostname"), Some(FIRST));
    assert_eq!(r.export("url"), Some(format!("https://{FIRST}").as_str()));
    let detail = r.detail();
    assert!(
        detail.starts_with(&format!(
            "4 edge connections, hostname {FIRST} (from metrics at {}), 42 requests, 3 errors in ",
            server.addr
        )),
        "{detail}"
    );
    let check = build(json!({"metrics_address": server.addr.to_string()}));
    assert_eq!(check.target(), server.addr.to_string());
}

#[tokio::test]
async fn no_edge_connection_fails_and_still_exports() {
    let server = serve(Cloudflared {
        ready_connections: 0,
        ..Cloudflared::default()
    })
    .await;
    let r = run(json!({"metrics_address": server.addr.to_string()})).await;
    r.assert_fails(
        Reason::HttpStatus,
        "cloudflared has no edge connection (ready 503)",
    );
    assert_eq!(r.value("harena_tunnel_ready_connections", &[]), Some(0.0));
    assert_eq!(r.info(), Some((FIRST.to_string(), "metrics".to_string())));
    assert_eq!(r.export("hostname"), Some(FIRST));
    assert_eq!(r.value("harena_tunnel_requests_total", &[]), Some(42.0));
}

/// Collects what tracing writes, for the "hostname changed" line.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn hostname_change_moves_the_timestamp_and_the_export() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The test runs on one thread: the guard covers every run below.
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = serve(Cloudflared::default()).await;
    let check = build(json!({"metrics_address": server.addr.to_string()}));
    let state = memory_state();
    let r1 = run_in(&check, &state).await;
    r1.assert_ok();
    let t1 = r1.changed_at().unwrap();

    // Same hostname: the time stays.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let r2 = run_in(&check, &state).await;
    assert_eq!(r2.changed_at(), Some(t1));
    assert_eq!(r2.export("hostname"), Some(FIRST));

    // cloudflared restarted with a new quick tunnel.
    server.set(|c| c.hostname = SECOND.to_string());
    let r3 = run_in(&check, &state).await;
    r3.assert_ok();
    let t3 = r3.changed_at().unwrap();
    assert!(t3 > t1, "{t3} > {t1}");
    assert_eq!(r3.export("hostname"), Some(SECOND));
    assert_eq!(r3.export("url"), Some(format!("https://{SECOND}").as_str()));
    assert_eq!(r3.info(), Some((SECOND.to_string(), "metrics".to_string())));
    assert_eq!(
        state.get_blocking("tunnel/tunnel/hostname").as_deref(),
        Some(SECOND)
    );

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("tunnel hostname changed"))
        .unwrap_or_else(|| panic!("no change logged in:\n{text}"));
    assert!(line.contains(" INFO "), "{line}");
    assert!(line.contains(&format!("old={FIRST}")), "{line}");
    assert!(line.contains(&format!("new={SECOND}")), "{line}");
    assert_eq!(text.matches("tunnel hostname changed").count(), 1, "{text}");
}

#[tokio::test]
async fn state_survives_a_restart_and_a_change_while_down_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(Cloudflared::default()).await;
    let check = build(json!({"metrics_address": server.addr.to_string()}));

    let state = Arc::new(StateFile::open(dir.path()).unwrap());
    let t1 = run_in(&check, &state).await.changed_at().unwrap();
    drop(state);

    // A restart without a change: the time is the one from before the restart.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let state = Arc::new(StateFile::open(dir.path()).unwrap());
    let r = run_in(&check, &state).await;
    r.assert_ok();
    assert_eq!(r.changed_at(), Some(t1));
    drop(state);

    // The exporter is down; cloudflared restarts with a new hostname meanwhile.
    server.set(|c| c.hostname = SECOND.to_string());
    let state = Arc::new(StateFile::open(dir.path()).unwrap());
    let r = run_in(&check, &state).await;
    r.assert_ok();
    let t2 = r.changed_at().unwrap();
    assert!(t2 > t1, "the change made while down is seen: {t2} > {t1}");
    assert_eq!(r.export("hostname"), Some(SECOND));
}

#[tokio::test]
async fn metrics_server_down_takes_the_newest_url_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("cloudflare-tunnel.log");
    write_log(&log);
    let down = closed_addr();
    let r = run(json!({"metrics_address": down.to_string(), "log_file": log})).await;
    r.assert_fails(Reason::Refused, "connection refused");
    r.assert_fails(Reason::Refused, &format!("hostname {SECOND} (from log"));
    assert_eq!(r.info(), Some((SECOND.to_string(), "log".to_string())));
    assert_eq!(r.export("hostname"), Some(SECOND));
    assert_eq!(r.export("url"), Some(format!("https://{SECOND}").as_str()));
    assert!(r.changed_at().is_some());
    // Unknown, so not recorded.
    assert_eq!(r.value("harena_tunnel_ready_connections", &[]), None);
    assert_eq!(r.value("harena_tunnel_requests_total", &[]), None);

    // The same through scanning.
    let check = build(json!({"log_file": log})).with_candidates(vec![closed_addr(), down]);
    let r = run_in(&check, &memory_state()).await;
    r.assert_fails(Reason::Refused, "no cloudflared metrics server answers on");
    assert_eq!(r.info(), Some((SECOND.to_string(), "log".to_string())));
}

#[tokio::test]
async fn only_the_last_mebibyte_of_the_log_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("cloudflare-tunnel.log");
    write_log(&log);
    // An older URL, then more than 1 MiB of noise: only what follows counts.
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let noise = "2025-11-03T12:00:02Z INF noise without any URL\n".repeat(30_000);
    f.write_all(noise.as_bytes()).unwrap();
    drop(f);
    let r = run(json!({"metrics_address": closed_addr().to_string(), "log_file": log})).await;
    r.assert_fails(Reason::Missing, "no quick tunnel URL in");
    assert_eq!(r.info(), None);

    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    writeln!(f, "2025-11-03T13:00:00Z INF |  https://{FIRST}  |").unwrap();
    drop(f);
    let r = run(json!({"metrics_address": closed_addr().to_string(), "log_file": log})).await;
    r.assert_fails(Reason::Refused, &format!("hostname {FIRST}"));
}

#[tokio::test]
async fn no_server_and_no_log_fails() {
    // Nothing at all: refused, nothing exported.
    let r = run(json!({"metrics_address": closed_addr().to_string()})).await;
    r.assert_fails(
        Reason::Refused,
        "cloudflared's metrics server does not answer",
    );
    assert!(r.recorded.samples.is_empty());
    assert!(r.recorded.exports.is_empty());

    // A log file that does not exist: still refused, and the detail says why.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.log");
    let r = run(json!({"metrics_address": closed_addr().to_string(), "log_file": missing})).await;
    r.assert_fails(Reason::Refused, "nope.log: no such file or directory");

    // A log without any quick tunnel URL: missing.
    let log = dir.path().join("empty.log");
    std::fs::write(
        &log,
        "2025-11-03T10:00:00Z ERR failed to request quick Tunnel: Post \"https://api.trycloudflare.com/tunnel\"\n",
    )
    .unwrap();
    let r = run(json!({"metrics_address": closed_addr().to_string(), "log_file": log})).await;
    r.assert_fails(Reason::Missing, "no quick tunnel URL in");
    assert!(r.recorded.exports.is_empty());
}

#[tokio::test]
async fn last_known_change_time_is_kept_while_the_hostname_is_unknown() {
    let server = serve(Cloudflared::default()).await;
    let state = memory_state();
    let up = build(json!({"metrics_address": server.addr.to_string()}));
    let t1 = run_in(&up, &state).await.changed_at().unwrap();
    let down = build(json!({"metrics_address": closed_addr().to_string()}));
    let r = run_in(&down, &state).await;
    r.assert_fails(Reason::Refused, "connection refused");
    assert_eq!(r.changed_at(), Some(t1));
    assert_eq!(r.info(), None);
}

#[tokio::test]
async fn scanning_takes_the_first_candidate_that_is_cloudflared() {
    let other = serve_other().await;
    let first = serve(Cloudflared::default()).await;
    let second = serve(Cloudflared {
        hostname: SECOND.to_string(),
        ..Cloudflared::default()
    })
    .await;
    let check =
        build(json!({})).with_candidates(vec![closed_addr(), other.addr, first.addr, second.addr]);
    let r = run_in(&check, &memory_state()).await;
    r.assert_ok();
    assert_eq!(r.export("hostname"), Some(FIRST));
    assert!(
        r.detail()
            .contains(&format!("from metrics at {}", first.addr)),
        "{}",
        r.detail()
    );

    // Nothing but a non-cloudflared server: not found, and the detail says what answered.
    let check = build(json!({})).with_candidates(vec![closed_addr(), other.addr]);
    let r = run_in(&check, &memory_state()).await;
    r.assert_fails(
        Reason::Refused,
        &format!("{} is not cloudflared", other.addr),
    );

    // With metrics_address set, a non-cloudflared answer is a protocol error.
    let r = run(json!({"metrics_address": other.addr.to_string()})).await;
    r.assert_fails(Reason::Protocol, "not cloudflared's readiness JSON");
}

#[tokio::test]
async fn named_tunnel_has_no_hostname() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("cloudflare-tunnel.log");
    write_log(&log);
    let server = serve(Cloudflared {
        hostname: String::new(),
        ..Cloudflared::default()
    })
    .await;
    // The log's old quick tunnel URLs are not this tunnel's: they are not used.
    let r = run(json!({"metrics_address": server.addr.to_string(), "log_file": log})).await;
    r.assert_ok();
    assert!(r.detail().contains("a named tunnel"), "{}", r.detail());
    assert_eq!(r.info(), None);
    assert!(r.recorded.exports.is_empty());
    assert_eq!(r.value("harena_tunnel_ready_connections", &[]), Some(4.0));
}

#[tokio::test]
async fn cloudflared_without_quicktunnel_falls_back_to_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("cloudflare-tunnel.log");
    write_log(&log);
    let server = serve(Cloudflared {
        has_quicktunnel: false,
        ..Cloudflared::default()
    })
    .await;
    let r = run(json!({"metrics_address": server.addr.to_string(), "log_file": log})).await;
    r.assert_ok();
    assert_eq!(r.info(), Some((SECOND.to_string(), "log".to_string())));
    assert!(
        r.detail()
            .contains(&format!("hostname {SECOND} (from log)")),
        "{}",
        r.detail()
    );
}
