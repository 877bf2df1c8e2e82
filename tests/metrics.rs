//! `/metrics` on the embedded default config: every Harena service, promtool-clean.

mod common;

use std::time::Duration;

use harena_exporter::app::{self, Options};
use harena_exporter::config::ConfigSource;

use common::*;

/// The README's run command: the binary on its embedded config (in a subprocess, so
/// that its AWS checks get an environment that cannot reach AWS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_config_metrics_pass_promtool_and_cover_the_ten_services() {
    let running = Exporter::start(&[], &[]);
    assert!(
        running.wait_all_ran(Duration::from_secs(15)).await,
        "every check ran once"
    );
    let (status, text) = http("GET", running.addr, "/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "nginx",
        "user_service",
        "search_service",
        "metric_service",
        "sync_service",
        "enrichment_service",
        "budget_profiling_service",
        "conversation_service",
        "grafana",
        "prometheus",
    ] {
        let v = metric_value(&text, "harena_probe_success", &[("check", name)]);
        assert!(v.is_some(), "no harena_probe_success for {name}");
        for series in [
            "harena_probe_duration_seconds",
            "harena_probe_last_run_timestamp_seconds",
            "harena_probe_dependency_failed",
            "harena_http_duration_seconds",
        ] {
            assert!(
                metric_value(&text, series, &[("check", name)]).is_some(),
                "no {series} for {name}"
            );
        }
        if v == Some(0.0) {
            assert!(
                text.contains(&format!("harena_probe_failure_reason{{check=\"{name}\"")),
                "a failing check shows its reason"
            );
        }
    }
    for series in [
        "harena_exporter_build_info",
        "harena_config_last_reload_successful",
        "harena_config_last_reload_success_timestamp_seconds",
        "harena_scheduler_start_delay_seconds_bucket",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ] {
        assert!(text.contains(series), "{series} missing");
    }
    let (code, out) = promtool_check_metrics(&text);
    assert_eq!(code, 0, "promtool check metrics failed:\n{out}");
    assert!(out.trim().is_empty(), "promtool warned:\n{out}");
    let (s, _) = http("GET", running.addr, "/-/healthy").await;
    assert_eq!(s, 200);
    let (s, _) = http("GET", running.addr, "/-/ready").await;
    assert_eq!(s, 200);
    let (s, body) = http("GET", running.addr, "/api/v1/checks").await;
    assert_eq!(s, 200);
    assert!(body.contains("\"name\":\"nginx\""), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_reasons_and_dependency_flags_are_series() {
    let down = closed_port();
    let ok = serve_status(200, "ok").await;
    let yaml = format!(
        "checks:\n  - name: db\n    kind: tcp\n    address: 127.0.0.1:{down}\n    interval: 300ms\n    timeout: 200ms\n  - name: api\n    kind: http\n    url: http://{ok}/\n    interval: 300ms\n    timeout: 200ms\n    depends_on: [db]\n    labels: {{team: core}}\n"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_file(dir.path(), "c.yml", &yaml);
    let running = app::start(Options {
        config: ConfigSource::File(path),
        listen: "127.0.0.1:0".into(),
        storage: None,
        web_config: None,
    })
    .await
    .expect("start");
    let board = running.web.board.clone();
    assert!(
        eventually(Duration::from_secs(5), || board.get("api").is_some_and(
            |s| s.blocked_by == vec!["db".to_string()] && s.success == Some(true)
        ))
        .await
    );
    let (_, text) = http("GET", running.addr, "/metrics").await;
    assert_eq!(
        metric_value(
            &text,
            "harena_probe_failure_reason",
            &[("check", "db"), ("reason", "refused")]
        ),
        Some(1.0)
    );
    assert!(
        metric_value(
            &text,
            "harena_probe_failures_total",
            &[("check", "db"), ("reason", "refused")]
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    assert_eq!(
        metric_value(
            &text,
            "harena_probe_failures_total",
            &[("check", "db"), ("reason", "dns")]
        ),
        Some(0.0)
    );
    assert_eq!(
        metric_value(
            &text,
            "harena_probe_dependency_failed",
            &[("check", "api"), ("team", "core")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&text, "harena_probe_success", &[("check", "api")]),
        Some(1.0)
    );
    assert!(!text.contains("harena_probe_failure_reason{check=\"api\""));
    let (_, page) = http("GET", running.addr, "/").await;
    assert!(page.contains("refused"), "{page}");
    let (code, out) = promtool_check_metrics(&text);
    assert_eq!(code, 0, "{out}");
    running.stop().await;
}

/// Every family on `/metrics` (http, tcp, TLS, self and process metrics) is in docs/metrics.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exposed_series_is_documented() {
    let ok = serve_status(200, "ok").await;
    let tcp = serve_status(200, "ok").await;
    let yaml = format!(
        "checks:\n  - name: web\n    kind: http\n    url: http://{ok}/\n    interval: 1s\n    timeout: 500ms\n  - name: port\n    kind: tcp\n    address: {tcp}\n    interval: 1s\n    timeout: 500ms\n  - name: tls\n    kind: http\n    url: https://localhost:{port}/\n    interval: 1s\n    timeout: 500ms\n",
        port = closed_port()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_file(dir.path(), "c.yml", &yaml);
    let running = app::start(Options {
        config: ConfigSource::File(path),
        listen: "127.0.0.1:0".into(),
        storage: None,
        web_config: None,
    })
    .await
    .expect("start");
    let board = running.web.board.clone();
    assert!(
        eventually(Duration::from_secs(5), || board
            .snapshot()
            .iter()
            .all(|c| c.success.is_some()))
        .await
    );
    let (_, text) = http("GET", running.addr, "/metrics").await;
    running.stop().await;
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md"))
        .expect("read docs/metrics.md");
    let mut families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    // The TLS expiry series needs a certificate; the tcp/http checks cover it in their tests.
    families.push("harena_tls_cert_expiry_timestamp_seconds");
    for f in families {
        assert!(
            docs.contains(&format!("`{f}")),
            "{f} is not documented in docs/metrics.md"
        );
    }
}

/// Every metric name declared in the source is documented in docs/metrics.md.
#[test]
fn every_declared_metric_is_documented() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md"))
        .expect("read docs/metrics.md");
    let mut files = vec![std::path::PathBuf::from(root)];
    let mut names = Vec::new();
    while let Some(p) = files.pop() {
        if p.is_dir() {
            for e in std::fs::read_dir(&p).expect("read dir").flatten() {
                files.push(e.path());
            }
        } else if p.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&p).expect("read source");
            // Metric declarations: `metric!(…, "harena_…", …)` and the self metrics'
            // `Opts::new("harena_…"` / `Gauge::new("harena_…"`.
            for marker in ["metric!(", "Opts::new(", "Gauge::new("] {
                let mut rest = text.as_str();
                while let Some(i) = rest.find(marker) {
                    let decl = &rest[i..];
                    let decl = &decl[..decl.find(';').unwrap_or(decl.len())];
                    if let Some(j) = decl.find("\"harena_") {
                        let lit = &decl[j + 1..];
                        let name = &lit[..lit.find('"').unwrap_or(0)];
                        names.push((p.display().to_string(), name.to_string()));
                    }
                    rest = &rest[i + marker.len()..];
                }
            }
        }
    }
    assert!(names.len() > 20, "found the metric names in the source");
    for (file, name) in names {
        assert!(
            docs.contains(&format!("`{name}")),
            "{name} ({file}) is not in docs/metrics.md"
        );
    }
}
