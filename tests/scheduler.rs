//! The scheduler against real sockets: isolation, timeouts, reload.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use harena_exporter::app::{self, Options};
use harena_exporter::config::{self, ConfigSource};
use harena_exporter::model::Labels;
use harena_exporter::scheduler::{Env, base_labels, run_once};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_target_is_ended_at_its_timeout() {
    let hang = serve_hang().await;
    let yaml = format!(
        "checks:\n  - name: hung\n    kind: http\n    url: http://{hang}/health\n    interval: 5s\n    timeout: 1s\n"
    );
    let cfg = config::parse(ConfigSource::Embedded, &yaml).expect("valid config");
    let def = &cfg.checks[0];
    let env = Env::in_memory().expect("state");
    let out = run_once(def, base_labels(def, &cfg.global.labels), &env).await;
    assert!(!out.success);
    let err = out.error.expect("an error");
    assert_eq!(err.reason.as_str(), "timeout", "{}", err.detail);
    let took = out.duration.as_secs_f64();
    assert!(
        (0.95..=1.1).contains(&took),
        "ended after {took:.3}s, expected 1s ±100ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hung_target_does_not_delay_fifty_healthy_ones() {
    let ok = serve_status(200, "ok").await;
    let hang = serve_hang().await;
    let mut yaml = String::from("global:\n  max_concurrent_checks: 16\nchecks:\n");
    yaml.push_str(&format!(
        "  - name: hung\n    kind: http\n    url: http://{hang}/\n    interval: 1s\n    timeout: 900ms\n"
    ));
    for i in 0..50 {
        yaml.push_str(&format!(
            "  - name: ok{i}\n    kind: http\n    url: http://{ok}/health\n    interval: 1s\n    timeout: 900ms\n"
        ));
    }
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
    let store = running.web.store.clone();
    // Sample every check's last-run timestamp for 5 s.
    let mut seen: HashMap<String, Vec<f64>> = HashMap::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < end {
        for i in 0..50 {
            let name = format!("ok{i}");
            let l = Labels::from_pairs([("check", name.as_str()), ("kind", "http")]);
            if let Some(v) = store.get("harena_probe_last_run_timestamp_seconds", &l) {
                let e = seen.entry(name).or_default();
                if e.last() != Some(&v) {
                    e.push(v);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hung = Labels::from_pairs([("check", "hung"), ("kind", "http")]);
    assert_eq!(store.get("harena_probe_success", &hung), Some(0.0));
    for i in 0..50 {
        let runs = &seen[&format!("ok{i}")];
        assert!(runs.len() >= 4, "ok{i} ran {} times in 5 s", runs.len());
        for w in runs.windows(2) {
            let gap = w[1] - w[0];
            assert!(
                (0.8..=1.25).contains(&gap),
                "ok{i}: runs {gap:.3}s apart, expected its 1s interval"
            );
        }
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_unchanged_checks_and_drops_removed_series() {
    let ok = serve_status(200, "ok").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let keep = format!(
        "  - name: keep\n    kind: http\n    url: http://{ok}/\n    interval: 200ms\n    timeout: 150ms\n"
    );
    let gone = format!(
        "  - name: gone\n    kind: http\n    url: http://{ok}/\n    interval: 200ms\n    timeout: 150ms\n"
    );
    let path = write_file(dir.path(), "c.yml", &format!("checks:\n{keep}{gone}"));
    let running = app::start(Options {
        config: ConfigSource::File(path.clone()),
        listen: "127.0.0.1:0".into(),
        storage: None,
        web_config: None,
    })
    .await
    .expect("start");
    let board = running.web.board.clone();
    assert!(
        eventually(Duration::from_secs(3), || {
            board.get("keep").is_some_and(|s| s.runs >= 2)
                && board.get("gone").is_some_and(|s| s.runs >= 1)
        })
        .await
    );
    let (_, m) = http("GET", running.addr, "/metrics").await;
    assert!(m.contains("check=\"gone\""));

    // An invalid config is refused and the running one keeps working.
    write_file(
        dir.path(),
        "c.yml",
        "checks:\n  - name: keep\n    kind: htp\n",
    );
    let err = running.reload().await.expect_err("refused");
    assert!(err.contains("c.yml:3:11: checks[0].kind"), "{err}");
    let (_, m) = http("GET", running.addr, "/metrics").await;
    assert_eq!(
        metric_value(&m, "harena_config_last_reload_successful", &[]),
        Some(0.0)
    );
    let before = board.get("keep").map_or(0, |s| s.runs);
    assert!(
        eventually(Duration::from_secs(2), || board
            .get("keep")
            .is_some_and(|s| s.runs > before + 1))
        .await
    );
    let (_, page) = http("GET", running.addr, "/").await;
    assert!(page.contains("last config reload was refused"), "{page}");

    // A valid one applies: `keep` keeps its state and count, `gone` leaves no series.
    write_file(dir.path(), "c.yml", &format!("checks:\n{keep}"));
    let runs_before = board.get("keep").map_or(0, |s| s.runs);
    running.reload().await.expect("reloaded");
    assert!(board.get("keep").is_some_and(|s| s.runs >= runs_before));
    assert!(board.get("gone").is_none());
    let (_, m) = http("GET", running.addr, "/metrics").await;
    assert!(!m.contains("check=\"gone\""), "{m}");
    assert_eq!(
        metric_value(&m, "harena_config_last_reload_successful", &[]),
        Some(1.0)
    );
    let (status, _) = http("POST", running.addr, "/-/reload").await;
    assert_eq!(status, 200);
    running.stop().await;
}

/// The exporter's own state is in the store, so its own rules see it: a refused reload
/// fires the shipped ExporterConfigReloadFailed inside the exporter (its email can go
/// out), not only in a Prometheus that scrapes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_reload_fires_the_exporters_own_alert() {
    let dir = tempfile::tempdir().unwrap();
    let rules = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/rules/exporter.yml"))
        .unwrap()
        .replace(
            "  - name: harena-exporter\n",
            "  - name: harena-exporter\n    interval: 200ms\n",
        );
    write_file(dir.path(), "exporter.yml", &rules);
    let ok = serve_status(200, "ok").await;
    let good = format!(
        "rule_files: [exporter.yml]\nchecks:\n  - name: keep\n    kind: http\n    url: http://{ok}/\n    interval: 200ms\n    timeout: 150ms\n"
    );
    let path = write_file(dir.path(), "c.yml", &good);
    let running = app::start(Options {
        config: ConfigSource::File(path.clone()),
        listen: "127.0.0.1:0".into(),
        storage: None,
        web_config: None,
    })
    .await
    .expect("start");
    let firing = |running: &app::Running| {
        running.alerts.active_alerts().iter().any(|a| {
            a.labels.get("alertname") == Some("ExporterConfigReloadFailed")
                && a.state == harena_exporter::rules::AlertState::Firing
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!firing(&running), "quiet while the config is good");
    write_file(
        dir.path(),
        "c.yml",
        "checks:\n  - name: keep\n    kind: htp\n",
    );
    running.reload().await.expect_err("refused");
    assert!(
        eventually(Duration::from_secs(5), || firing(&running)).await,
        "fires after a refused reload"
    );
    write_file(dir.path(), "c.yml", &good);
    running.reload().await.expect("applied");
    assert!(
        eventually(Duration::from_secs(5), || !firing(&running)).await,
        "resolves once a config loads"
    );
    running.stop().await;
}
