//! The whole host side against a test bed: real PostgreSQL and Redis, fakes that speak
//! cloudflared's, Elasticsearch's and HTTP services' formats, backup folders. `check`
//! prints one row per check with the right state and reason, `/metrics` passes
//! promtool, and the secrets the test sets appear in no output.

mod common;
mod common_pg;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::Router;
use axum::routing::get;

use common::*;

const PG_PASSWORD: &str = "Pg-Testbed-Secret-8841";
const REDIS_PASSWORD: &str = "Redis-Testbed-Secret-5530";

fn init_pg(pg: &common_pg::PgServer) {
    pg.psql(&format!(
        "CREATE ROLE monitor LOGIN PASSWORD '{PG_PASSWORD}' IN ROLE pg_monitor"
    ));
    pg.psql("CREATE DATABASE harena");
}

/// A `redis-server` with `requirepass` on a free port, killed on drop.
struct Redis(Child, u16);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_redis() -> Redis {
    require("redis-server", "redis-server");
    let port = closed_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--requirepass", REDIS_PASSWORD])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server");
    let r = Redis(child, port);
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("redis-server did not start on {port}");
}

async fn serve(router: Router) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(l, router).await });
    addr
}

fn today_name() -> String {
    chrono::Utc::now().format("backup_%Y%m%d.sql").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_against_the_test_bed_reports_every_check_rightly() {
    let pg = common_pg::shared(&[], init_pg);
    let redis = start_redis().await;
    let service =
        serve(Router::new().route("/health", get(|| async { "{\"status\":\"ok\"}" }))).await;
    let es = serve(Router::new().route(
        "/_cluster/health",
        get(|| async {
            axum::Json(serde_json::json!({
                "cluster_name": "harena", "status": "yellow", "timed_out": false,
                "number_of_nodes": 1, "number_of_data_nodes": 1, "active_primary_shards": 5,
                "active_shards": 5, "relocating_shards": 0, "initializing_shards": 0,
                "unassigned_shards": 5, "delayed_unassigned_shards": 0,
                "number_of_pending_tasks": 0, "number_of_in_flight_fetch": 0,
                "task_max_waiting_in_queue_millis": 0, "active_shards_percent_as_number": 50.0
            }))
        }),
    ))
    .await;
    // The "public site" the tunnel points at, and cloudflared's metrics server.
    let site = serve(Router::new().route("/health", get(|| async { "ok" }))).await;
    // cloudflared answers a bare host name; `localhost` resolves to loopback without a lookup.
    let quick = "{\"hostname\":\"localhost\"}";
    let tunnel = serve(
        Router::new()
            .route(
                "/ready",
                get(|| async { axum::Json(serde_json::json!({"status": 200, "readyConnections": 4, "connectorId": "5b4b6f0e-0000-4000-8000-000000000001"})) }),
            )
            .route("/quicktunnel", get(move || async move { quick }))
            .route(
                "/metrics",
                get(|| async {
                    "# TYPE cloudflared_tunnel_total_requests counter\ncloudflared_tunnel_total_requests 42\n# TYPE cloudflared_tunnel_request_errors counter\ncloudflared_tunnel_request_errors 1\n"
                }),
            ),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let fresh = dir.path().join("fresh");
    let old = dir.path().join("old");
    std::fs::create_dir_all(&fresh).expect("mkdir");
    std::fs::create_dir_all(&old).expect("mkdir");
    let dump = format!(
        "{}\n-- PostgreSQL database dump complete\n\n",
        "-- data\n".repeat(300)
    );
    std::fs::write(fresh.join(today_name()), &dump).expect("write dump");
    std::fs::write(old.join("backup_20200101.sql"), &dump).expect("write dump");
    let pw_file = write_file(dir.path(), "redis.pw", REDIS_PASSWORD);
    let yaml = format!(
        r#"checks:
  - {{name: user_service, kind: http, url: "http://{service}/health", json_expect: ['$.status == "ok"'], depends_on: [postgres, redis]}}
  - {{name: postgres, kind: postgres, port: {pg_port}, database: harena, user: monitor, password_env: TESTBED_PG_PASSWORD}}
  - {{name: postgres_wrong_password, kind: postgres, port: {pg_port}, database: harena, user: monitor, password_env: TESTBED_WRONG_PASSWORD}}
  - {{name: postgres_bad_host, kind: postgres, host: postgres.invalid, port: {pg_port}, user: monitor, password_env: TESTBED_PG_PASSWORD}}
  - {{name: redis, kind: redis, address: "127.0.0.1:{redis_port}", password_file: {pw_file}}}
  - {{name: redis_no_password, kind: redis, address: "127.0.0.1:{redis_port}", password_env: TESTBED_UNSET_VARIABLE}}
  - {{name: elasticsearch, kind: elasticsearch, url: "http://{es}"}}
  - {{name: tunnel, kind: tunnel, metrics_address: "{tunnel}"}}
  - {{name: public_site, kind: http, url: "http://{{tunnel.hostname}}:{site_port}/health", depends_on: [tunnel]}}
  - {{name: pg_dump_backups, kind: backup_files, directory: {fresh}, pattern: "backup_%Y%m%d.sql", require_pg_dump_trailer: true}}
  - {{name: old_backups, kind: backup_files, directory: {old}, pattern: "backup_%Y%m%d.sql"}}
  - {{name: containers, kind: docker, socket: {sock}}}
"#,
        pg_port = pg.port,
        site_port = site.port(),
        redis_port = redis.1,
        pw_file = pw_file.display(),
        fresh = fresh.display(),
        old = old.display(),
        sock = dir.path().join("no-docker.sock").display(),
    );
    let cfg = write_file(dir.path(), "testbed.yml", &yaml);
    let envs = [
        ("TESTBED_PG_PASSWORD", PG_PASSWORD),
        ("TESTBED_WRONG_PASSWORD", "not-the-password"),
    ];
    let cfg_s = cfg.to_string_lossy().to_string();
    let (code, table, json, stderr) = tokio::task::spawn_blocking(move || {
        let run = |format: &str| {
            command(&["check", "--config.file", &cfg_s, "--output", format])
                .envs(envs)
                .output()
                .expect("run check")
        };
        let t = run("table");
        let j = run("json");
        (
            t.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&t.stdout).to_string(),
            String::from_utf8_lossy(&j.stdout).to_string(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&t.stderr),
                String::from_utf8_lossy(&j.stderr)
            ),
        )
    })
    .await
    .expect("join");
    assert_eq!(code, 1, "some checks fail on purpose:\n{table}");
    let rows: serde_json::Value = serde_json::from_str(&json).expect("json rows");
    let rows = rows.as_array().expect("an array");
    assert_eq!(rows.len(), 12, "one row per check:\n{table}");
    let expect: &[(&str, bool, Option<&str>)] = &[
        ("user_service", true, None),
        ("postgres", true, None),
        ("postgres_wrong_password", false, Some("auth")),
        ("postgres_bad_host", false, Some("dns")),
        ("redis", true, None),
        ("redis_no_password", false, Some("auth")),
        ("elasticsearch", true, None),
        ("tunnel", true, None),
        ("public_site", true, None),
        ("pg_dump_backups", true, None),
        ("old_backups", false, Some("stale")),
        ("containers", false, Some("refused")),
    ];
    for (name, ok, reason) in expect {
        let row = rows
            .iter()
            .find(|r| r["name"] == *name)
            .unwrap_or_else(|| panic!("no row for {name}:\n{table}"));
        assert_eq!(row["ok"], *ok, "{name}: {row}\n{table}");
        assert_eq!(row["reason"].as_str(), *reason, "{name}: {row}");
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no table line for {name}"));
        assert!(line.contains(if *ok { " ok " } else { " FAIL " }), "{line}");
    }
    assert!(
        rows.iter().any(|r| r["name"] == "redis_no_password"
            && r["detail"]
                .as_str()
                .is_some_and(|d| d.contains("TESTBED_UNSET_VARIABLE"))),
        "the detail names the missing variable"
    );

    // The same config, served: /metrics passes promtool, and no output holds a secret.
    let exporter = Exporter::start(
        &[
            "--config.file",
            &cfg.to_string_lossy(),
            "--log.level",
            "debug",
        ],
        &envs,
    );
    let addr = exporter.addr;
    assert!(
        exporter.wait_all_ran(Duration::from_secs(10)).await,
        "every check ran"
    );
    let (_, metrics) = http("GET", addr, "/metrics").await;
    let (_, page) = http("GET", addr, "/").await;
    let (_, api) = http("GET", addr, "/api/v1/checks").await;
    drop(exporter);
    let (code, out) = promtool_check_metrics(&metrics);
    assert_eq!(code, 0, "promtool check metrics:\n{out}");
    assert!(out.trim().is_empty(), "promtool warned:\n{out}");
    for series in [
        "harena_postgres_connections{",
        "harena_postgres_max_connections{",
        "harena_redis_connected_clients{",
        "harena_redis_auth_required{",
        "harena_elasticsearch_cluster_status{",
        "harena_tunnel_ready_connections{",
        "harena_tunnel_info{",
        "harena_backup_last_success_timestamp_seconds{",
        "harena_probe_dependency_failed{",
    ] {
        assert!(metrics.contains(series), "{series} missing from /metrics");
    }
    for (what, text) in [
        ("check table", &table),
        ("check json", &json),
        ("check stderr", &stderr),
        ("/metrics", &metrics),
        ("status page", &page),
        ("api", &api),
    ] {
        for secret in [PG_PASSWORD, REDIS_PASSWORD] {
            assert!(!text.contains(secret), "{what} shows a secret:\n{text}");
        }
    }
    drop(redis);
}
