//! The HTTP integrations against real peers: a real Alertmanager 0.25 (Debian's
//! `prometheus-alertmanager`) receives our alerts from the `alertmanager` integration
//! and notifies a webhook of the test in turn; our `webhook` integration posts to a
//! local axum server; the heartbeat beats a local server only while healthy.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use harena_exporter::notify::receivers::alertmanager::AlertmanagerConfig;
use harena_exporter::notify::receivers::heartbeat::{self, HeartbeatConfig, HeartbeatMetrics};
use harena_exporter::notify::receivers::webhook::WebhookConfig;
use harena_exporter::notify::{LabelSet, Notification, NotifyAlert, fingerprint, now_ms};

use common::{closed_port, http, require, serve_hang};

// ---------------------------------------------------------------------------------------
// A recording HTTP server

/// One request the server received.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// Records every request and answers with `status` (and, for 401, the request's
/// `Authorization` header echoed in the body, as a careless server might).
#[derive(Clone)]
struct Recorder {
    got: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
}

impl Recorder {
    fn received(&self, path: &str) -> Vec<Received> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    fn set_status(&self, s: u16) {
        self.status.store(s, Ordering::SeqCst);
    }
}

async fn record(
    State(rec): State<Recorder>,
    method: axum::http::Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let status = rec.status.load(Ordering::SeqCst);
    let echo = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    rec.got.lock().unwrap().push(Received {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers,
        body: body.to_vec(),
    });
    let body = if status == 401 {
        format!("bad credentials: {echo}")
    } else {
        "ok".to_string()
    };
    (StatusCode::from_u16(status).unwrap(), body)
}

async fn recorder() -> (Recorder, SocketAddr) {
    let rec = Recorder {
        got: Arc::new(Mutex::new(Vec::new())),
        status: Arc::new(AtomicU16::new(200)),
    };
    let app = Router::new().fallback(record).with_state(rec.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (rec, addr)
}

async fn wait_for<T>(within: Duration, what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let end = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Alerts

fn ls(pairs: &[(&str, &str)]) -> LabelSet {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn alert(name: &str, check: &str) -> NotifyAlert {
    let labels = ls(&[
        ("alertname", name),
        ("check", check),
        ("severity", "critical"),
        ("instance", "harena-test"),
    ]);
    NotifyAlert {
        fingerprint: fingerprint(&labels),
        labels,
        annotations: ls(&[
            ("summary", &format!("{check} is down")),
            ("runbook_url", "https://runbooks.example/down"),
        ]),
        starts_at_ms: now_ms() - 60_000,
        ends_at_ms: None,
        generator_url: format!("http://127.0.0.1:9115/#check-{check}"),
        value: 0.0,
        reason: "refused".into(),
        detail: "connect to 127.0.0.1:5432: connection refused".into(),
    }
}

fn notification(receiver: &str, alerts: Vec<NotifyAlert>) -> Notification {
    Notification {
        id: format!("test-{}", now_ms()),
        receiver: receiver.into(),
        group_key: "{}/{severity=\"critical\"}:{alertname=\"HarenaTestDown\"}".into(),
        group_labels: ls(&[("alertname", "HarenaTestDown")]),
        alerts,
        external_url: "http://127.0.0.1:9115".into(),
        created_ms: now_ms(),
        report: None,
    }
}

fn resolved(mut n: Notification) -> Notification {
    let now = now_ms();
    for a in &mut n.alerts {
        a.ends_at_ms = Some(now);
    }
    n
}

// ---------------------------------------------------------------------------------------
// A real Alertmanager

/// `prometheus-alertmanager` on a free loopback port, killed on drop.
struct Alertmanager {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Alertmanager {
    /// Starts one whose only route sends to `hook` (a webhook of the test), at once.
    async fn start(hook: &str) -> Alertmanager {
        require("prometheus-alertmanager", "prometheus-alertmanager");
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: hook\n    webhook_configs:\n      - url: {hook}\n        send_resolved: true\n"
        );
        let config_path = dir.path().join("alertmanager.yml");
        std::fs::write(&config_path, config).unwrap();
        let storage = dir.path().join("data");
        let port = closed_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log = std::fs::File::create(dir.path().join("alertmanager.log")).unwrap();
        let child = Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.path={}", storage.display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus-alertmanager");
        let mut am = Alertmanager {
            child,
            addr,
            _dir: dir,
        };
        let end = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = am.child.try_wait() {
                panic!(
                    "prometheus-alertmanager exited with {status}: {}",
                    am.log(am._dir.path())
                );
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok()
                && http("GET", addr, "/-/ready").await.0 == 200
            {
                return am;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "prometheus-alertmanager not ready on {addr}: {}",
                am.log(am._dir.path())
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log(&self, dir: &Path) -> String {
        std::fs::read_to_string(dir.join("alertmanager.log")).unwrap_or_default()
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `GET /api/v2/alerts`: the alerts it holds (active, silenced or inhibited; not
    /// resolved ones).
    async fn alerts(&self) -> Vec<Value> {
        let (status, body) = http("GET", self.addr, "/api/v2/alerts").await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Vec<Value>>(&body).expect("alerts JSON")
    }
}

fn alertmanager_integration(
    urls: &[String],
) -> harena_exporter::notify::receivers::alertmanager::Alertmanager {
    let config: AlertmanagerConfig = serde_json::from_value(serde_json::json!({
        "urls": urls,
        "timeout": "5s",
    }))
    .unwrap();
    config.build().expect("build the alertmanager integration")
}

fn ours(alerts: &[Value]) -> Vec<&Value> {
    alerts
        .iter()
        .filter(|a| a["labels"]["alertname"] == "HarenaTestDown")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_alertmanager_receives_and_resolves_our_alerts() {
    let (hook, hook_addr) = recorder().await;
    let am = Alertmanager::start(&format!("http://{hook_addr}/am")).await;
    let integration = alertmanager_integration(&[am.url()]);
    let firing = notification(
        "alertmanager",
        vec![
            alert("HarenaTestDown", "postgres"),
            alert("HarenaTestDown", "redis"),
        ],
    );
    integration
        .send(&firing)
        .await
        .expect("Alertmanager accepts the alerts");

    let held = wait_for(
        Duration::from_secs(20),
        "our alerts in /api/v2/alerts",
        async || {
            let all = am.alerts().await;
            let mine: Vec<Value> = ours(&all).into_iter().cloned().collect();
            (mine.len() == 2).then_some(mine)
        },
    )
    .await;
    for a in &held {
        let check = a["labels"]["check"].as_str().unwrap();
        assert_eq!(a["status"]["state"], "active", "{a}");
        assert_eq!(a["labels"]["severity"], "critical");
        assert_eq!(a["labels"]["instance"], "harena-test");
        assert_eq!(a["annotations"]["summary"], format!("{check} is down"));
        assert_eq!(
            a["annotations"]["runbook_url"],
            "https://runbooks.example/down"
        );
        assert_eq!(
            a["generatorURL"],
            format!("http://127.0.0.1:9115/#check-{check}")
        );
        let want = firing
            .alerts
            .iter()
            .find(|x| x.labels["check"] == check)
            .unwrap();
        assert_eq!(a["fingerprint"].as_str().unwrap().len(), 16);
        let starts = chrono::DateTime::parse_from_rfc3339(a["startsAt"].as_str().unwrap()).unwrap();
        assert_eq!(starts.timestamp_millis(), want.starts_at_ms, "{a}");
    }

    // Alertmanager notifies its own webhook of them.
    let note = wait_for(
        Duration::from_secs(20),
        "Alertmanager's firing notification",
        async || {
            hook.received("/am")
                .into_iter()
                .map(|r| r.json())
                .find(|v| v["status"] == "firing")
        },
    )
    .await;
    assert_eq!(note["alerts"].as_array().unwrap().len(), 2, "{note}");
    assert_eq!(note["commonLabels"]["alertname"], "HarenaTestDown");

    // Resolved: gone from the active list, and Alertmanager says so too.
    integration
        .send(&resolved(firing))
        .await
        .expect("Alertmanager accepts the resolved alerts");
    wait_for(
        Duration::from_secs(20),
        "our alerts to resolve",
        async || ours(&am.alerts().await).is_empty().then_some(()),
    )
    .await;
    let note = wait_for(
        Duration::from_secs(20),
        "Alertmanager's resolved notification",
        async || {
            hook.received("/am")
                .into_iter()
                .map(|r| r.json())
                .find(|v| v["status"] == "resolved")
        },
    )
    .await;
    assert!(
        note["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["status"] == "resolved" && a["endsAt"] != "0001-01-01T00:00:00Z"),
        "{note}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_alertmanager_down_is_enough_and_all_down_is_retried() {
    let (_hook, hook_addr) = recorder().await;
    let am = Alertmanager::start(&format!("http://{hook_addr}/am")).await;
    let down = format!("http://127.0.0.1:{}", closed_port());
    let n = notification("alertmanager", vec![alert("HarenaTestDown", "tunnel")]);

    let pair = alertmanager_integration(&[down.clone(), am.url()]);
    pair.send(&n).await.expect("one Alertmanager accepted");
    wait_for(
        Duration::from_secs(20),
        "the alert in the live Alertmanager",
        async || (ours(&am.alerts().await).len() == 1).then_some(()),
    )
    .await;

    let other_down = format!("http://127.0.0.1:{}", closed_port());
    let none = alertmanager_integration(&[down, other_down]);
    let e = none.send(&n).await.expect_err("no Alertmanager is up");
    assert!(e.retryable, "{e:?}");
    assert_eq!(e.reason, "refused", "{e:?}");
    assert!(
        e.message.contains("no Alertmanager accepted"),
        "{}",
        e.message
    );

    // Alertmanager refuses an alert it cannot parse for good: a permanent error.
    let mut bad = n.clone();
    bad.alerts[0].labels.insert("bad label".into(), "x".into());
    let e = alertmanager_integration(&[am.url()])
        .send(&bad)
        .await
        .expect_err("Alertmanager refuses an invalid label name");
    assert!(!e.retryable, "{e:?}");
    assert_eq!(e.reason, "rejected");
}

// ---------------------------------------------------------------------------------------
// Webhook

fn webhook(config: Value) -> harena_exporter::notify::receivers::webhook::Webhook {
    serde_json::from_value::<WebhookConfig>(config)
        .expect("webhook config")
        .build()
        .expect("build the webhook")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_posts_alertmanagers_json() {
    let (rec, addr) = recorder().await;
    let w = webhook(serde_json::json!({"url": format!("http://{addr}/hook?team=ops")}));
    let mut n = notification(
        "chat",
        vec![
            alert("HarenaTestDown", "postgres"),
            alert("HarenaTestDown", "redis"),
        ],
    );
    n.alerts[1].ends_at_ms = Some(n.alerts[1].starts_at_ms + 30_000);
    w.send(&n).await.expect("accepted");
    let got = rec.received("/hook");
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.headers["content-type"], "application/json");
    assert!(
        r.headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("harena-exporter/")
    );
    let v = r.json();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = vec![
        "receiver",
        "status",
        "alerts",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "version",
        "groupKey",
        "truncatedAlerts",
    ];
    want.sort_unstable();
    let mut keys_sorted = keys.clone();
    keys_sorted.sort_unstable();
    assert_eq!(keys_sorted, want);
    assert_eq!(v["version"], "4");
    assert_eq!(v["receiver"], "chat");
    assert_eq!(v["status"], "firing");
    assert_eq!(v["groupKey"], n.group_key);
    assert_eq!(
        v["groupLabels"],
        serde_json::json!({"alertname": "HarenaTestDown"})
    );
    assert_eq!(v["externalURL"], "http://127.0.0.1:9115");
    assert_eq!(v["truncatedAlerts"], 0);
    assert_eq!(
        v["commonLabels"],
        serde_json::json!({"alertname": "HarenaTestDown", "severity": "critical", "instance": "harena-test"})
    );
    assert_eq!(
        v["commonAnnotations"],
        serde_json::json!({"runbook_url": "https://runbooks.example/down"})
    );
    let alerts = v["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0]["status"], "firing");
    assert_eq!(alerts[0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(alerts[1]["status"], "resolved");
    assert_ne!(alerts[1]["endsAt"], "0001-01-01T00:00:00Z");
    for (a, want) in alerts.iter().zip(&n.alerts) {
        assert_eq!(a["fingerprint"], want.fingerprint);
        assert_eq!(a["generatorURL"], want.generator_url);
        assert_eq!(a["labels"]["check"], want.labels["check"]);
        let starts = chrono::DateTime::parse_from_rfc3339(a["startsAt"].as_str().unwrap()).unwrap();
        assert_eq!(starts.timestamp_millis(), want.starts_at_ms);
        let alert_keys: Vec<&str> = a.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(alert_keys.len(), 7, "{a}");
    }

    // max_alerts cuts and counts.
    let w = webhook(serde_json::json!({"url": format!("http://{addr}/cut"), "max_alerts": 1}));
    w.send(&n).await.expect("accepted");
    let v = rec.received("/cut")[0].json();
    assert_eq!(v["alerts"].as_array().unwrap().len(), 1);
    assert_eq!(v["truncatedAlerts"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_errors_are_retried_or_dropped_by_their_kind() {
    let (rec, addr) = recorder().await;
    let w = webhook(serde_json::json!({"url": format!("http://{addr}/hook")}));
    let n = notification("chat", vec![alert("HarenaTestDown", "postgres")]);

    rec.set_status(503);
    let e = w.send(&n).await.expect_err("503");
    assert!(e.retryable && e.reason == "http_status", "{e:?}");
    assert!(e.message.contains("503"), "{}", e.message);

    rec.set_status(429);
    let e = w.send(&n).await.expect_err("429");
    assert!(e.retryable && e.reason == "http_status", "{e:?}");

    rec.set_status(400);
    let e = w.send(&n).await.expect_err("400");
    assert!(!e.retryable && e.reason == "rejected", "{e:?}");

    let closed =
        webhook(serde_json::json!({"url": format!("http://127.0.0.1:{}/", closed_port())}));
    let e = closed.send(&n).await.expect_err("nothing listens");
    assert!(e.retryable && e.reason == "refused", "{e:?}");

    let hang = serve_hang().await;
    let slow = webhook(serde_json::json!({"url": format!("http://{hang}/"), "timeout": "500ms"}));
    let start = std::time::Instant::now();
    let e = slow.send(&n).await.expect_err("no answer");
    assert!(e.retryable && e.reason == "timeout", "{e:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

const HOOK_PASSWORD: &str = "Hook-Secret-Pw-7719";
const HOOK_PASSWORD_VAR: &str = "HARENA_TEST_HOOK_PASSWORD";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_basic_auth_comes_from_the_environment_and_never_leaks() {
    // SAFETY: set before any request of this test, under a name only this test uses;
    // the standard library serializes its own environment accesses.
    unsafe { std::env::set_var(HOOK_PASSWORD_VAR, HOOK_PASSWORD) };
    let token = {
        // base64("harena:<password>"), computed independently of the exporter's code.
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s' 'harena:{HOOK_PASSWORD}' | base64 -w0"))
            .output()
            .expect("run base64");
        String::from_utf8(out.stdout).unwrap()
    };
    let (rec, addr) = recorder().await;
    let config = serde_json::json!({
        "url": format!("http://{addr}/auth"),
        "http_config": {"basic_auth": {"username": "harena", "password_env": HOOK_PASSWORD_VAR}},
    });
    let w = webhook(config.clone());
    let n = notification("chat", vec![alert("HarenaTestDown", "postgres")]);
    w.send(&n).await.expect("accepted");
    let got = rec.received("/auth");
    assert_eq!(got[0].headers["authorization"], format!("Basic {token}"));

    // A server that answers 401 and echoes the credentials: the error keeps neither.
    rec.set_status(401);
    let e = w.send(&n).await.expect_err("401");
    assert!(e.retryable && e.reason == "auth", "{e:?}");
    let everything = format!(
        "{e} {e:?} {w:?} {:?} {config}",
        serde_json::from_value::<WebhookConfig>(config.clone()).unwrap()
    );
    assert!(everything.contains("bad credentials"), "{everything}");
    for secret in [HOOK_PASSWORD, token.as_str()] {
        assert!(
            !everything.contains(secret),
            "leaked {secret}: {everything}"
        );
    }

    // An unset variable: a retryable `auth` error that names the variable, not a value.
    let missing = webhook(serde_json::json!({
        "url": format!("http://{addr}/auth"),
        "http_config": {"basic_auth": {"username": "harena", "password_env": "HARENA_TEST_UNSET_VAR_93"}},
    }));
    let e = missing.send(&n).await.expect_err("no password");
    assert!(e.retryable && e.reason == "auth", "{e:?}");
    assert!(
        e.message.contains("HARENA_TEST_UNSET_VAR_93"),
        "{}",
        e.message
    );
}

// ---------------------------------------------------------------------------------------
// Heartbeat

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_beat_only_while_healthy() {
    let (rec, addr) = recorder().await;
    let config = |name: &str, path: &str, method: &str| -> HeartbeatConfig {
        serde_json::from_value(serde_json::json!({
            "name": name,
            "url": format!("http://{addr}{path}"),
            "interval": "300ms",
            "timeout": "250ms",
            "method": method,
        }))
        .unwrap()
    };
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let checks = Arc::new(AtomicUsize::new(0));
    let health: heartbeat::HealthFn = {
        let healthy = Arc::clone(&healthy);
        let checks = Arc::clone(&checks);
        Arc::new(move || {
            checks.fetch_add(1, Ordering::SeqCst);
            if healthy.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err("rule evaluation stalled".to_string())
            }
        })
    };
    let metrics = HeartbeatMetrics::new();
    let registry = prometheus::Registry::new();
    for c in metrics.collectors() {
        registry.register(c).unwrap();
    }
    let value = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
        registry
            .gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric().to_vec())
            .find(|m| {
                labels.iter().all(|(k, v)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == *k && l.value() == *v)
                })
            })
            .map(|m| {
                if name.ends_with("_total") {
                    m.get_counter().get_value()
                } else {
                    m.get_gauge().get_value()
                }
            })
    };
    let token = CancellationToken::new();
    let handle = heartbeat::spawn(
        vec![
            config("hc", "/beat", "GET"),
            config("kuma", "/push", "POST"),
        ],
        health,
        token.clone(),
        &metrics,
    );
    let total = "harena_heartbeats_total";
    wait_for(
        Duration::from_secs(20),
        "three accepted beats of each",
        async || {
            let n = |name| value(total, &[("name", name), ("result", "success")]).unwrap_or(0.0);
            (n("hc") >= 3.0 && n("kuma") >= 3.0).then_some(())
        },
    )
    .await;
    assert!(rec.received("/beat").iter().all(|r| r.method == "GET"));
    assert!(rec.received("/push").iter().all(|r| r.method == "POST"));
    let last = value(
        "harena_heartbeat_last_success_timestamp_seconds",
        &[("name", "kuma")],
    )
    .expect("last success of kuma");
    #[allow(clippy::cast_precision_loss)]
    let now = now_ms() as f64 / 1000.0;
    assert!(now - last < 30.0 && last <= now, "{last} vs {now}");

    // Unhealthy: the checks go on, the beats stop.
    healthy.store(false, Ordering::SeqCst);
    let seen = checks.load(Ordering::SeqCst);
    // Two turns of each: a beat that was in flight has landed.
    wait_for(Duration::from_secs(20), "unhealthy turns", async || {
        (checks.load(Ordering::SeqCst) >= seen + 4).then_some(())
    })
    .await;
    let beats = rec.received("/beat").len() + rec.received("/push").len();
    let seen = checks.load(Ordering::SeqCst);
    wait_for(
        Duration::from_secs(20),
        "more unhealthy turns",
        async || (checks.load(Ordering::SeqCst) >= seen + 4).then_some(()),
    )
    .await;
    assert_eq!(
        rec.received("/beat").len() + rec.received("/push").len(),
        beats,
        "no beat while unhealthy"
    );
    assert!(value(total, &[("name", "hc"), ("result", "unhealthy")]).unwrap_or(0.0) >= 2.0);

    // Healthy again against a failing URL: the beats resume and count their reason.
    rec.set_status(500);
    healthy.store(true, Ordering::SeqCst);
    wait_for(Duration::from_secs(20), "failed beats", async || {
        (value(total, &[("name", "hc"), ("result", "http_status")]).unwrap_or(0.0) >= 1.0)
            .then_some(())
    })
    .await;

    let mut text = Vec::new();
    prometheus::Encoder::encode(
        &prometheus::TextEncoder::new(),
        &registry.gather(),
        &mut text,
    )
    .unwrap();
    let (code, problems) = common::promtool_check_metrics(&String::from_utf8(text).unwrap());
    assert_eq!(code, 0, "promtool check metrics: {problems}");

    token.cancel();
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .expect("heartbeats stop on cancel")
        .unwrap();
}
