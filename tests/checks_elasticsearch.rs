//! The `elasticsearch` check against a fake Elasticsearch on 127.0.0.1 (axum) that
//! serves the real `GET /_cluster/health` JSON and, when asked, requires basic auth as
//! Elasticsearch security does. No Elasticsearch is packaged for this machine (see
//! TESTBED.md), so the fake speaks its wire format.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use harena_exporter::checks::elasticsearch::{ElasticsearchCheck, ElasticsearchConfig};
use harena_exporter::checks::{Check, CheckError, Reason, Recorder, RunContext};
use harena_exporter::model::{Labels, Sample};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_secs(5);
const USER: &str = "monitor";
const PASSWORD: &str = "Elast1c-s3cret!";
/// `Basic base64("monitor:Elast1c-s3cret!")`.
const AUTHORIZATION_VALUE: &str = "Basic bW9uaXRvcjpFbGFzdDFjLXMzY3JldCE=";

// ---------------------------------------------------------------------------------------
// Real answers of Elasticsearch 8 to `GET /_cluster/health`.

fn green() -> Value {
    json!({
        "cluster_name": "harena",
        "status": "green",
        "timed_out": false,
        "number_of_nodes": 3,
        "number_of_data_nodes": 3,
        "active_primary_shards": 12,
        "active_shards": 24,
        "relocating_shards": 0,
        "initializing_shards": 0,
        "unassigned_shards": 0,
        "unassigned_primary_shards": 0,
        "delayed_unassigned_shards": 0,
        "number_of_pending_tasks": 0,
        "number_of_in_flight_fetch": 0,
        "task_max_waiting_in_queue_millis": 0,
        "active_shards_percent_as_number": 100.0
    })
}

/// One node: the replicas have nowhere to go.
fn yellow_single_node() -> Value {
    json!({
        "cluster_name": "docker-cluster",
        "status": "yellow",
        "timed_out": false,
        "number_of_nodes": 1,
        "number_of_data_nodes": 1,
        "active_primary_shards": 5,
        "active_shards": 5,
        "relocating_shards": 0,
        "initializing_shards": 0,
        "unassigned_shards": 1,
        "unassigned_primary_shards": 0,
        "delayed_unassigned_shards": 0,
        "number_of_pending_tasks": 0,
        "number_of_in_flight_fetch": 0,
        "task_max_waiting_in_queue_millis": 0,
        "active_shards_percent_as_number": 83.33333333333334
    })
}

fn red() -> Value {
    json!({
        "cluster_name": "harena",
        "status": "red",
        "timed_out": false,
        "number_of_nodes": 1,
        "number_of_data_nodes": 1,
        "active_primary_shards": 3,
        "active_shards": 3,
        "relocating_shards": 0,
        "initializing_shards": 0,
        "unassigned_shards": 4,
        "unassigned_primary_shards": 2,
        "delayed_unassigned_shards": 0,
        "number_of_pending_tasks": 0,
        "number_of_in_flight_fetch": 0,
        "task_max_waiting_in_queue_millis": 0,
        "active_shards_percent_as_number": 42.857142857142854
    })
}

/// Elasticsearch's answer to a request without (or with wrong) credentials.
fn security_exception() -> Value {
    json!({
        "error": {
            "root_cause": [{
                "type": "security_exception",
                "reason": "missing authentication credentials for REST request [/_cluster/health]",
                "header": {"WWW-Authenticate": ["Basic realm=\"security\", charset=\"UTF-8\"", "ApiKey"]}
            }],
            "type": "security_exception",
            "reason": "missing authentication credentials for REST request [/_cluster/health]",
            "header": {"WWW-Authenticate": ["Basic realm=\"security\", charset=\"UTF-8\"", "ApiKey"]}
        },
        "status": 401
    })
}

// ---------------------------------------------------------------------------------------
// The fake.

#[derive(Clone)]
struct Fake {
    /// Status and body of `/_cluster/health`.
    answer: Arc<Mutex<(StatusCode, String, &'static str)>>,
    /// Require this `Authorization` header.
    require_auth: bool,
    /// Paths requested.
    paths: Arc<Mutex<Vec<String>>>,
}

/// A fake Elasticsearch, stopped when dropped.
struct Server {
    addr: SocketAddr,
    fake: Fake,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn answer_json(&self, body: &Value) {
        *self.fake.answer.lock().unwrap() = (StatusCode::OK, body.to_string(), "application/json");
    }

    fn answer(&self, status: StatusCode, body: &str, content_type: &'static str) {
        *self.fake.answer.lock().unwrap() = (status, body.to_string(), content_type);
    }

    fn paths(&self) -> Vec<String> {
        self.fake.paths.lock().unwrap().clone()
    }
}

async fn handle(State(fake): State<Fake>, uri: Uri, headers: HeaderMap) -> Response {
    fake.paths.lock().unwrap().push(uri.path().to_string());
    if fake.require_auth
        && headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(AUTHORIZATION_VALUE)
    {
        return (
            StatusCode::UNAUTHORIZED,
            [
                (
                    WWW_AUTHENTICATE,
                    "Basic realm=\"security\", charset=\"UTF-8\"",
                ),
                (CONTENT_TYPE, "application/json"),
            ],
            security_exception().to_string(),
        )
            .into_response();
    }
    if !uri.path().ends_with("/_cluster/health") {
        return (StatusCode::NOT_FOUND, "no handler").into_response();
    }
    let (status, body, content_type) = fake.answer.lock().unwrap().clone();
    (status, [(CONTENT_TYPE, content_type)], body).into_response()
}

async fn serve(health: Value, require_auth: bool) -> Server {
    let fake = Fake {
        answer: Arc::new(Mutex::new((
            StatusCode::OK,
            health.to_string(),
            "application/json",
        ))),
        require_auth,
        paths: Arc::default(),
    };
    let app = Router::new().fallback(handle).with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server { addr, fake, task }
}

// ---------------------------------------------------------------------------------------
// Running the check.

struct Run {
    result: Result<(), CheckError>,
    samples: Vec<Sample>,
    detail: Option<String>,
}

impl Run {
    fn value(&self, name: &str, extra: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<f64> = self
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

    fn assert_ok(&self) {
        if let Err(e) = &self.result {
            panic!("expected success, got {}: {}", e.reason, e.detail);
        }
        assert!(self.detail.is_some(), "a successful run sets a detail");
    }

    fn assert_fails(&self, reason: Reason, needle: &str) {
        let Err(e) = &self.result else {
            panic!("expected a failure, got success: {:?}", self.detail);
        };
        assert_eq!(e.reason, reason, "detail: {}", e.detail);
        assert!(
            e.detail.contains(needle),
            "{:?} does not contain {needle:?}",
            e.detail
        );
    }

    /// The current status series: exactly one of the three is 1.
    fn status(&self) -> &'static str {
        let mut current = Vec::new();
        for s in ["green", "yellow", "red"] {
            match self.value("harena_elasticsearch_cluster_status", &[("status", s)]) {
                Some(1.0) => current.push(s),
                Some(0.0) => {}
                other => panic!("status {s}: {other:?}"),
            }
        }
        assert_eq!(current.len(), 1, "{current:?}");
        current[0]
    }

    /// No sample, label or detail carries the password.
    fn assert_no_secret(&self) {
        for s in &self.samples {
            for (k, v) in s.labels.iter() {
                assert!(
                    !k.contains(PASSWORD) && !v.contains(PASSWORD),
                    "{}",
                    s.desc.name
                );
            }
        }
        if let Some(d) = &self.detail {
            assert!(!d.contains(PASSWORD), "{d}");
        }
        if let Err(e) = &self.result {
            assert!(!e.detail.contains(PASSWORD), "{}", e.detail);
        }
    }
}

fn build(config: Value) -> ElasticsearchCheck {
    let config: ElasticsearchConfig = serde_json::from_value(config).expect("config deserializes");
    ElasticsearchCheck::build(&config).expect("check builds")
}

async fn run(config: Value) -> Run {
    let check = build(config);
    let ctx = RunContext::standalone(Instant::now() + TIMEOUT);
    let mut rec = Recorder::new(Labels::from_pairs([
        ("check", "elasticsearch"),
        ("kind", "elasticsearch"),
    ]));
    let result = check.run(&ctx, &mut rec).await;
    let recorded = rec.finish();
    for s in &recorded.samples {
        assert_eq!(
            s.labels.get("check"),
            Some("elasticsearch"),
            "{}",
            s.desc.name
        );
        assert_eq!(
            s.labels.get("kind"),
            Some("elasticsearch"),
            "{}",
            s.desc.name
        );
        assert!(
            s.desc.name.starts_with("harena_elasticsearch_"),
            "{}",
            s.desc.name
        );
    }
    let run = Run {
        result,
        samples: recorded.samples,
        detail: recorded.detail,
    };
    run.assert_no_secret();
    run
}

fn password_file() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("{PASSWORD}\n")).unwrap();
    file
}

// ---------------------------------------------------------------------------------------
// The tests.

#[tokio::test]
async fn green_cluster_records_every_series() {
    let server = serve(green(), false).await;
    let r = run(json!({"url": server.url()})).await;
    r.assert_ok();
    assert_eq!(r.status(), "green");
    assert_eq!(
        r.value("harena_elasticsearch_number_of_nodes", &[]),
        Some(3.0)
    );
    assert_eq!(
        r.value("harena_elasticsearch_unassigned_shards", &[]),
        Some(0.0)
    );
    assert_eq!(
        r.value("harena_elasticsearch_active_shards_percent", &[]),
        Some(100.0)
    );
    let detail = r.detail.unwrap();
    assert!(
        detail.starts_with(
            "cluster \"harena\" is green, 3 nodes, 0 unassigned shards, 100% of shards active in "
        ),
        "{detail}"
    );
    assert_eq!(server.paths(), ["/_cluster/health"]);
}

#[tokio::test]
async fn base_url_with_a_path_prefix() {
    let server = serve(green(), false).await;
    let r = run(json!({"url": format!("{}/es/", server.url())})).await;
    r.assert_ok();
    assert_eq!(server.paths(), ["/es/_cluster/health"]);
}

#[tokio::test]
async fn yellow_single_node_is_a_labelled_fact_not_a_failure() {
    let server = serve(yellow_single_node(), false).await;
    let r = run(json!({"url": server.url()})).await;
    r.assert_ok();
    assert_eq!(r.status(), "yellow");
    assert_eq!(
        r.value("harena_elasticsearch_number_of_nodes", &[]),
        Some(1.0)
    );
    assert_eq!(
        r.value("harena_elasticsearch_unassigned_shards", &[]),
        Some(1.0)
    );
    let percent = r
        .value("harena_elasticsearch_active_shards_percent", &[])
        .unwrap();
    assert!((percent - 83.333).abs() < 0.001, "{percent}");
    assert!(
        r.detail
            .as_deref()
            .unwrap()
            .contains("is yellow, 1 node, 1 unassigned shard, 83.3%")
    );
}

#[tokio::test]
async fn yellow_fails_when_yellow_is_failure() {
    let server = serve(yellow_single_node(), false).await;
    let r = run(json!({"url": server.url(), "yellow_is_failure": true})).await;
    r.assert_fails(Reason::BodyMismatch, "cluster \"docker-cluster\" is yellow");
    r.assert_fails(Reason::BodyMismatch, "yellow_is_failure");
    // What is known is still recorded.
    assert_eq!(r.status(), "yellow");
    assert_eq!(
        r.value("harena_elasticsearch_unassigned_shards", &[]),
        Some(1.0)
    );
}

#[tokio::test]
async fn red_cluster_fails_and_still_records() {
    let server = serve(red(), false).await;
    let r = run(json!({"url": server.url()})).await;
    r.assert_fails(Reason::BodyMismatch, "cluster \"harena\" is red");
    r.assert_fails(Reason::BodyMismatch, "primary shards are not allocated");
    assert_eq!(r.status(), "red");
    assert_eq!(
        r.value("harena_elasticsearch_unassigned_shards", &[]),
        Some(4.0)
    );

    // The cluster recovers: the next run follows.
    server.answer_json(&green());
    let r = run(json!({"url": server.url()})).await;
    r.assert_ok();
    assert_eq!(r.status(), "green");
}

#[tokio::test]
async fn basic_auth() {
    let server = serve(green(), true).await;

    // Elasticsearch security without credentials: 401, reason auth.
    let r = run(json!({"url": server.url()})).await;
    r.assert_fails(
        Reason::Auth,
        "status 401, expected 2xx: credentials missing or rejected",
    );
    assert_eq!(r.value("harena_elasticsearch_number_of_nodes", &[]), None);

    let file = password_file();
    let r = run(json!({
        "url": server.url(),
        "basic_auth": {"username": USER, "password_file": file.path()},
    }))
    .await;
    r.assert_ok();
    assert_eq!(r.status(), "green");

    // A wrong password is auth too, and the detail shows no password.
    let wrong = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(wrong.path(), "not-it").unwrap();
    let r = run(json!({
        "url": server.url(),
        "basic_auth": {"username": USER, "password_file": wrong.path()},
    }))
    .await;
    r.assert_fails(Reason::Auth, "401");

    // A password that cannot be read is auth, naming the variable.
    let r = run(json!({
        "url": server.url(),
        "basic_auth": {"username": USER, "password_env": "HARENA_TEST_ES_NEVER_SET"},
    }))
    .await;
    r.assert_fails(Reason::Auth, "HARENA_TEST_ES_NEVER_SET");
}

#[tokio::test]
async fn forbidden_is_auth() {
    let server = serve(green(), false).await;
    server.answer(
        StatusCode::FORBIDDEN,
        r#"{"error":{"type":"security_exception","reason":"action [cluster:monitor/health] is unauthorized for user [harena]"},"status":403}"#,
        "application/json",
    );
    let r = run(json!({"url": server.url()})).await;
    r.assert_fails(
        Reason::Auth,
        "status 403, expected 2xx: the user lacks the monitor privilege",
    );
}

#[tokio::test]
async fn non_json_is_a_protocol_error() {
    let server = serve(green(), false).await;
    server.answer(
        StatusCode::OK,
        "<html><body>Welcome to nginx!</body></html>",
        "text/html",
    );
    let r = run(json!({"url": server.url()})).await;
    r.assert_fails(Reason::Protocol, "not the expected JSON");
    r.assert_fails(Reason::Protocol, "Welcome to nginx");
    assert!(r.samples.is_empty(), "nothing known: {:?}", r.samples.len());

    // JSON, but not a cluster health.
    server.answer(
        StatusCode::OK,
        r#"{"name":"node-1","tagline":"You Know, for Search"}"#,
        "application/json",
    );
    let r = run(json!({"url": server.url()})).await;
    r.assert_fails(Reason::Protocol, "missing field `status`");

    // An unknown status.
    server.answer_json(&json!({"cluster_name": "x", "status": "purple"}));
    let r = run(json!({"url": server.url()})).await;
    r.assert_fails(Reason::Protocol, "unknown status \"purple\"");
}

#[tokio::test]
async fn server_error_is_http_status() {
    let server = serve(green(), false).await;
    server.answer(
        StatusCode::SERVICE_UNAVAILABLE,
        r#"{"error":{"type":"master_not_discovered_exception"},"status":503}"#,
        "application/json",
    );
    let r = run(json!({"url": server.url()})).await;
    r.assert_fails(Reason::HttpStatus, "status 503, expected 2xx");
}

#[tokio::test]
async fn nothing_listening_is_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let r = run(json!({"url": format!("http://{addr}")})).await;
    r.assert_fails(
        Reason::Refused,
        &format!("connect to {addr}: connection refused"),
    );
}

#[test]
fn target_is_the_health_url() {
    let check = build(json!({"url": "http://127.0.0.1:9200/"}));
    assert_eq!(check.target(), "http://127.0.0.1:9200/_cluster/health");
}
