//! The status page in a real browser (headless Chromium, Debian `chromium`): the DOM of
//! a running exporter's page holds every check's name and state, the tunnel URL and a
//! firing alert, and a screenshot is written next to the test output. The JSON API
//! (`/api/v1/status`, `/api/v1/checks`, `/api/v1/checks/{name}`, `/api/v1/alerts`)
//! says the same as the page.

mod common;
mod common_harena;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Exporter, http, require};

const HOSTNAME: &str = "calm-river-status-test.trycloudflare.com";

/// A fake cloudflared metrics server (TESTBED.md): `/ready`, `/quicktunnel`, `/metrics`.
async fn fake_cloudflared() -> SocketAddr {
    let app = axum::Router::new()
        .route(
            "/ready",
            axum::routing::get(|| async {
                r#"{"status":200,"readyConnections":4,"connectorId":"4a7b3c1e-0f5d-4e8a-9b2c-6d1e7f8a9b0c"}"#
            }),
        )
        .route(
            "/quicktunnel",
            axum::routing::get(|| async { format!(r#"{{"hostname":"{HOSTNAME}"}}"#) }),
        )
        .route(
            "/metrics",
            axum::routing::get(|| async { "cloudflared_tunnel_total_requests 12\n" }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    addr
}

async fn start() -> (Exporter, tempfile::TempDir) {
    let ok = common::serve_status(200, "ok").await;
    let tunnel = fake_cloudflared().await;
    let dir = tempfile::tempdir().unwrap();
    common::write_file(
        dir.path(),
        "rules.yml",
        r#"groups:
  - name: t
    interval: 1s
    rules:
      - alert: PostgresDown
        expr: harena_probe_success{check="postgres"} == 0
        labels: {severity: critical}
        annotations: {summary: "PostgreSQL is down"}
"#,
    );
    let cfg = common::write_file(
        dir.path(),
        "config.yml",
        &format!(
            "checks:
  - name: nginx
    kind: http
    url: http://{ok}/health
    interval: 1s
    timeout: 500ms
    labels: {{group: services}}
  - name: postgres
    kind: tcp
    address: 127.0.0.1:{closed}
    interval: 1s
    timeout: 500ms
    labels: {{group: datastores}}
  - name: user_service
    kind: http
    url: http://127.0.0.1:{closed}/health
    depends_on: [postgres]
    interval: 1s
    timeout: 500ms
    labels: {{group: services}}
  - name: tunnel
    kind: tunnel
    metrics_address: {tunnel}
    interval: 1s
    timeout: 500ms
    labels: {{group: tunnel}}
rule_files: [rules.yml]
",
            closed = common::closed_port()
        ),
    );
    let e = Exporter::start(&["--config.file", cfg.to_str().unwrap()], &[]);
    // Until the alert fires.
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, api) = http("GET", e.addr, "/api/v1/alerts").await;
        if api.contains("\"firing\"") {
            break;
        }
        assert!(Instant::now() < end, "no firing alert: {api}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (e, dir)
}

fn chromium(args: &[&str]) -> String {
    require("chromium", "chromium");
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-dev-shm-usage",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `data-state` of the row of `check` in the DOM.
fn row_state<'a>(dom: &'a str, check: &str) -> &'a str {
    let row = dom
        .find(&format!("id=\"check-{check}\""))
        .unwrap_or_else(|| panic!("no row for {check}"));
    let rest = &dom[row..];
    let at = rest.find("data-state=\"").unwrap() + "data-state=\"".len();
    &rest[at..at + rest[at..].find('"').unwrap()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_every_check_the_tunnel_url_and_the_firing_alert() {
    let (e, _dir) = start().await;
    let url = format!("http://{}/", e.addr);
    let dom = tokio::task::spawn_blocking({
        let url = url.clone();
        move || chromium(&["--dump-dom", &url])
    })
    .await
    .unwrap();
    for (check, state) in [
        ("nginx", "ok"),
        ("postgres", "failing"),
        ("user_service", "blocked"),
        ("tunnel", "ok"),
    ] {
        assert_eq!(row_state(&dom, check), state, "{check}");
    }
    assert!(
        dom.contains("blocked by postgres"),
        "the blocked check names its cause"
    );
    assert!(dom.contains("root cause"), "the root cause stands out");
    assert!(
        dom.contains(&format!("value=\"https://{HOSTNAME}\"")),
        "tunnel URL in a copyable field"
    );
    assert!(
        dom.contains("data-alertname=\"PostgresDown\" data-state=\"firing\""),
        "firing alert"
    );
    assert!(dom.contains("id=\"group-services\"") && dom.contains("id=\"group-datastores\""));
    // A phone-sized screenshot next to the test output.
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    tokio::task::spawn_blocking({
        let shot = shot.clone();
        move || {
            chromium(&[
                "--window-size=412,1400",
                &format!("--screenshot={}", shot.display()),
                &url,
            ])
        }
    })
    .await
    .unwrap();
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    println!("screenshot: {}", shot.display());
    // The per-check page, also in the browser.
    let check_dom = tokio::task::spawn_blocking({
        let url = format!("http://{}/check/postgres", e.addr);
        move || chromium(&["--dump-dom", &url])
    })
    .await
    .unwrap();
    assert!(
        check_dom.contains("Recent runs") && check_dom.contains("refused"),
        "{check_dom}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_says_what_the_page_shows() {
    let (e, _dir) = start().await;
    let (_, status) = http("GET", e.addr, "/api/v1/status").await;
    let (_, page) = http("GET", e.addr, "/").await;
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let data = &v["data"];
    assert_eq!(data["tunnel_url"], format!("https://{HOSTNAME}"));
    let checks = data["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 4);
    for c in checks {
        let name = c["name"].as_str().unwrap();
        let state = c["state"].as_str().unwrap();
        // The page may be a moment newer; states here are stable (targets do not change).
        assert_eq!(row_state(&page, name), state, "{name}");
        assert!(c["uptime_24h"].is_number(), "{c}");
    }
    let alerts = data["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["labels"]["alertname"], "PostgresDown");
    let (_, api_alerts) = http("GET", e.addr, "/api/v1/alerts").await;
    assert!(api_alerts.contains("PostgresDown") && api_alerts.contains("\"firing\""));
    let (_, list) = http("GET", e.addr, "/api/v1/checks").await;
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let pg = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "postgres")
        .unwrap();
    assert_eq!(pg["state"], "failing");
    let (code, one) = http("GET", e.addr, "/api/v1/checks/user_service").await;
    assert_eq!(code, 200);
    let one: serde_json::Value = serde_json::from_str(&one).unwrap();
    assert_eq!(one["data"]["state"], "blocked");
    assert_eq!(one["data"]["blocked_by"][0], "postgres");
    assert!(!one["data"]["recent_runs"].as_array().unwrap().is_empty());
    assert_eq!(one["data"]["changes"][0]["success"], false);
    let (code, _) = http("GET", e.addr, "/api/v1/checks/nope").await;
    assert_eq!(code, 404);
}

/// The simulated Harena (every check of the embedded config, same names and kinds):
/// the page in the browser has a row for each, and the API the same states.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_every_check_of_the_embedded_config() {
    let bed = common_harena::Harena::start().await;
    let e = Exporter::start(&bed.args(), &bed.envs());
    assert!(
        e.wait_all_ran(Duration::from_secs(60)).await,
        "every check ran"
    );
    let url = format!("http://{}/", e.addr);
    let dom = tokio::task::spawn_blocking(move || chromium(&["--dump-dom", &url]))
        .await
        .unwrap();
    let (_, status) = http("GET", e.addr, "/api/v1/status").await;
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let embedded = common_harena::checks_of(harena_exporter::config::DEFAULT_CONFIG);
    assert!(embedded.len() >= 20);
    for (name, _) in &embedded {
        let api = v["data"]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} missing from /api/v1/status"));
        let state = row_state(&dom, name);
        assert!(
            ["ok", "failing", "blocked"].contains(&state),
            "{name}: {state}"
        );
        // The page was rendered a moment before the API answered: a check may change
        // in between only if it flaps, which the bed's do not.
        assert_eq!(api["state"].as_str().unwrap(), state, "{name}");
    }
    for group in [
        "services",
        "datastores",
        "tunnel",
        "backups",
        "containers",
        "aws",
    ] {
        assert!(
            dom.contains(&format!("id=\"group-{group}\"")),
            "group {group}"
        );
    }
    assert!(
        dom.contains(&format!("value=\"https://{}\"", bed.tunnel_hostname())),
        "tunnel URL"
    );
}
