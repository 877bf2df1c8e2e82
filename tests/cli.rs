//! The binary: `check`, `check-config`, `default-config`, signals and logs.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = command(args).output().expect("run harena-exporter");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_exits_0_when_all_pass_and_1_naming_the_failing_check() {
    let ok = serve_status(200, "{\"status\":\"ok\"}").await;
    let down = closed_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let good = write_file(
        dir.path(),
        "good.yml",
        &format!(
            "checks:\n  - name: api\n    kind: http\n    url: http://{ok}/health\n  - name: tcp_ok\n    kind: tcp\n    address: {ok}\n"
        ),
    );
    let bad = write_file(
        dir.path(),
        "bad.yml",
        &format!(
            "checks:\n  - name: api\n    kind: http\n    url: http://{ok}/health\n  - name: db\n    kind: tcp\n    address: 127.0.0.1:{down}\n"
        ),
    );
    let good_s = good.to_string_lossy().to_string();
    let bad_s = bad.to_string_lossy().to_string();
    let (code, out, err) =
        tokio::task::spawn_blocking(move || run(&["check", "--config.file", &good_s]))
            .await
            .expect("join");
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("api") && out.contains("2 passed, 0 failed"),
        "{out}"
    );

    let b = bad_s.clone();
    let (code, out, _) = tokio::task::spawn_blocking(move || run(&["check", "--config.file", &b]))
        .await
        .expect("join");
    assert_eq!(code, 1, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("db "))
        .expect("a row for db");
    assert!(line.contains("FAIL") && line.contains("refused"), "{line}");

    let (code, out, _) = tokio::task::spawn_blocking(move || {
        run(&["check", "--config.file", &bad_s, "--output", "json"])
    })
    .await
    .expect("join");
    assert_eq!(code, 1);
    let rows: serde_json::Value = serde_json::from_str(&out).expect("json output");
    let db = rows
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == "db"))
        .expect("db row");
    assert_eq!(db["ok"], false);
    assert_eq!(db["reason"], "refused");
}

#[test]
fn check_waits_for_a_target_that_comes_up() {
    let port = closed_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_file(
        dir.path(),
        "c.yml",
        &format!("checks:\n  - name: late\n    kind: tcp\n    address: 127.0.0.1:{port}\n"),
    );
    let opener = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        let l = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind late port");
        std::thread::sleep(Duration::from_secs(4));
        drop(l);
    });
    let started = Instant::now();
    let (code, out, _) = run(&[
        "check",
        "--config.file",
        &cfg.to_string_lossy(),
        "--wait",
        "10s",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(started.elapsed() < Duration::from_secs(6));
    let _ = opener.join();
}

#[test]
fn check_config_lists_every_error_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_file(
        dir.path(),
        "c.yml",
        "checks:\n  - name: a\n    kind: http\n    url: http://127.0.0.1/\n    tiemout: 1s\n  - name: b\n    kind: tcp\n",
    );
    let (code, _, err) = run(&["check-config", "--config.file", &cfg.to_string_lossy()]);
    assert_eq!(code, 1);
    let p = cfg.to_string_lossy();
    assert!(
        err.contains(&format!(
            "{p}:5:5: checks[0].tiemout: unknown field \"tiemout\", did you mean \"timeout\"?"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{p}:6:5: checks[1]: missing field \"address\"")),
        "{err}"
    );
    let (code, _, _) = run(&["check", "--config.file", &cfg.to_string_lossy()]);
    assert_eq!(code, 2, "check exits 2 on a config error");
    let (code, out, _) = run(&["check-config"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn default_config_prints_a_config_that_loads() {
    let (code, out, _) = run(&["default-config"]);
    assert_eq!(code, 0);
    assert!(out.contains("name: nginx"));
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_file(dir.path(), "d.yml", &out);
    let (code, _, err) = run(&["check-config", "--config.file", &cfg.to_string_lossy()]);
    assert_eq!(code, 0, "{err}");
}

/// Starts the binary on a free port; returns the child and its address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_bad_config_keeps_running_and_sigterm_stops() {
    let ok = serve_status(200, "ok").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let good = format!(
        "checks:\n  - name: api\n    kind: http\n    url: http://{ok}/\n    interval: 300ms\n    timeout: 200ms\n"
    );
    let path = write_file(dir.path(), "c.yml", &good);
    let p = path.to_string_lossy().to_string();
    let mut exporter = Exporter::start(&["--config.file", &p], &[]);
    let (addr, pid) = (exporter.addr, exporter.pid());
    let logs = &exporter.logs;

    write_file(
        dir.path(),
        "c.yml",
        "checks:\n  - name: api\n    kind: http\n    url: http://x/\n    methd: GET\n",
    );
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let mut found = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !found {
        if let Ok(l) = logs.recv_timeout(Duration::from_millis(100)) {
            found = l.contains("level=error") && l.contains(&format!("{p}:5:5: checks[0].methd"));
        }
    }
    assert!(found, "the refused reload is logged with its position");
    let (_, m) = http("GET", addr, "/metrics").await;
    assert_eq!(
        metric_value(&m, "harena_config_last_reload_successful", &[]),
        Some(0.0)
    );
    let before = metric_value(
        &m,
        "harena_probe_last_run_timestamp_seconds",
        &[("check", "api")],
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (_, m) = http("GET", addr, "/metrics").await;
    let after = metric_value(
        &m,
        "harena_probe_last_run_timestamp_seconds",
        &[("check", "api")],
    );
    assert!(after > before, "the old config keeps running");

    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = exporter.child.try_wait().expect("wait") {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn json_logs_are_one_object_per_line() {
    let exporter = Exporter::start(&["--log.format", "json"], &[]);
    let start = exporter.start_line.clone();
    exporter.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    let mut lines: Vec<String> = exporter.logs.try_iter().collect();
    lines.push(start);
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v.get("level").is_some());
    }
}

/// The password a check uses appears in no log line, metric, page, API answer or `check` row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_leak() {
    const SECRET: &str = "Zq9-never-print-me-4711";
    let target = serve_status(401, "unauthorized").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = write_file(dir.path(), "pw", &format!("{SECRET}\n"));
    let yaml = format!(
        "checks:\n  - name: env_auth\n    kind: http\n    url: http://{target}/\n    interval: 300ms\n    timeout: 200ms\n    basic_auth: {{username: monitor, password_env: HARENA_TEST_SECRET}}\n  - name: file_auth\n    kind: http\n    url: http://{target}/\n    interval: 300ms\n    timeout: 200ms\n    basic_auth: {{username: monitor, password_file: {}}}\n",
        secret_file.display()
    );
    let cfg = write_file(dir.path(), "c.yml", &yaml);
    let p = cfg.to_string_lossy().to_string();
    let mut exporter = Exporter::start(
        &["--config.file", &p, "--log.level", "trace"],
        &[("HARENA_TEST_SECRET", SECRET)],
    );
    let (addr, start) = (exporter.addr, exporter.start_line.clone());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut outputs = vec![start];
    for path in ["/metrics", "/", "/api/v1/checks"] {
        let (status, body) = http("GET", addr, path).await;
        assert_eq!(status, 200, "{path}");
        outputs.push(body);
    }
    assert!(outputs[3].contains("\"reason\":\"auth\""), "{}", outputs[3]);
    let p2 = p.clone();
    let checks = tokio::task::spawn_blocking(move || {
        let mut v = Vec::new();
        for format in ["table", "json"] {
            let out = command(&[])
                .args([
                    "check",
                    "--config.file",
                    &p2,
                    "--output",
                    format,
                    "--log.level",
                    "trace",
                ])
                .env("HARENA_TEST_SECRET", SECRET)
                .output()
                .expect("run check");
            v.push(String::from_utf8_lossy(&out.stdout).to_string());
            v.push(String::from_utf8_lossy(&out.stderr).to_string());
        }
        v
    })
    .await
    .expect("join");
    assert!(
        checks[0].contains("env_auth") && checks[0].contains("auth"),
        "{}",
        checks[0]
    );
    outputs.extend(checks);
    exporter.signal(libc::SIGTERM);
    let _ = exporter.child.wait();
    let log_lines: Vec<String> = exporter.logs.try_iter().collect();
    assert!(log_lines.len() > 3, "trace logs were written");
    outputs.push(log_lines.join("\n"));
    for o in &outputs {
        assert!(!o.contains(SECRET), "the secret leaked into:\n{o}");
    }
}
