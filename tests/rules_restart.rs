//! Alert states survive a SIGKILL: a firing alert keeps its `activeAt` and sends no
//! second "firing", a pending one fires on time; a reload with a broken rule file keeps
//! the running rules.

mod common;

use std::time::Duration;

use common::*;

/// `ALERTS_FOR_STATE` (the alert's activeAt, Unix seconds) of one alert.
fn active_at(metrics: &str, alert: &str) -> Option<f64> {
    metric_value(metrics, "ALERTS_FOR_STATE", &[("alertname", alert)])
}

fn state(metrics: &str, alert: &str) -> Option<&'static str> {
    ["firing", "pending"].into_iter().find(|s| {
        metric_value(
            metrics,
            "ALERTS",
            &[("alertname", alert), ("alertstate", s)],
        ) == Some(1.0)
    })
}

async fn metrics(e: &Exporter) -> String {
    http("GET", e.addr, "/metrics").await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_keeps_firing_and_pending_alerts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = "groups:\n  - name: restart\n    interval: 1s\n    rules:\n      - alert: AlwaysFiring\n        expr: vector(1)\n      - alert: SlowPending\n        expr: vector(1)\n        for: 20s\n";
    write_file(dir.path(), "r.yml", rules);
    let cfg = write_file(dir.path(), "c.yml", "rule_files: [r.yml]\nchecks: []\n");
    let cfg = cfg.to_string_lossy().to_string();
    let storage = dir.path().join("data");
    let storage_s = storage.to_string_lossy().to_string();
    let args = [
        "--config.file",
        cfg.as_str(),
        "--storage.path",
        storage_s.as_str(),
    ];

    let first = Exporter::start(&args, &[]);
    let mut m = String::new();
    for _ in 0..100 {
        m = metrics(&first).await;
        if state(&m, "AlwaysFiring") == Some("firing")
            && state(&m, "SlowPending") == Some("pending")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state(&m, "AlwaysFiring"), Some("firing"), "{m}");
    assert_eq!(state(&m, "SlowPending"), Some("pending"), "{m}");
    let firing_since = active_at(&m, "AlwaysFiring").expect("activeAt of the firing alert");
    let pending_since = active_at(&m, "SlowPending").expect("activeAt of the pending alert");
    first.signal(libc::SIGKILL);
    drop(first);

    // Two seconds later, a new process on the same state file.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = Exporter::start(&args, &[]);
    let mut m = String::new();
    for _ in 0..50 {
        m = metrics(&second).await;
        if state(&m, "AlwaysFiring").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        state(&m, "AlwaysFiring"),
        Some("firing"),
        "still firing:\n{m}"
    );
    assert_eq!(
        active_at(&m, "AlwaysFiring"),
        Some(firing_since),
        "original activeAt"
    );
    assert_eq!(
        active_at(&m, "SlowPending"),
        Some(pending_since),
        "pending keeps counting"
    );

    // The pending alert fires 20 s after its original activeAt, within one interval.
    let mut fired_at = None;
    for _ in 0..300 {
        let m = metrics(&second).await;
        if state(&m, "SlowPending") == Some("firing") {
            fired_at = Some(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("clock")
                    .as_secs_f64(),
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fired_at = fired_at.expect("the pending alert fired");
    let due = pending_since + 20.0;
    assert!(
        (due - 1.0..=due + 2.5).contains(&fired_at),
        "fired at {fired_at:.1}, due at {due:.1}"
    );

    // A broken rule file is refused; the running rules keep working.
    write_file(
        dir.path(),
        "r.yml",
        "groups:\n  - name: restart\n    rules:\n      - alert: Broken\n        expr: holt_winters(\n",
    );
    second.signal(libc::SIGHUP);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let m = metrics(&second).await;
    assert_eq!(
        metric_value(&m, "harena_config_last_reload_successful", &[]),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        state(&m, "AlwaysFiring"),
        Some("firing"),
        "old rules still run:\n{m}"
    );
}
