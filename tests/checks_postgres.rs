//! The `postgres` check against a real PostgreSQL server started by this test binary
//! (`initdb` + `pg_ctl` on a free 127.0.0.1 port, TLS on), plus small fakes for what a
//! real server cannot do: never answer, answer something else, refuse TLS.

mod common_pg;

use std::time::Duration;

use common_pg::PgServer;
use harena_exporter::checks::postgres::{APPLICATION_NAME, PostgresCheck, PostgresConfig};
use harena_exporter::checks::{Check, CheckError, Reason, Recorder, RunContext};
use harena_exporter::model::{Labels, Sample};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::{Client, NoTls};

const TIMEOUT: Duration = Duration::from_secs(5);

/// The monitoring role's password; must never show up in anything the check records.
const MONITOR_PASSWORD: &str = "Mon1tor-s3cret-Zq7";
/// The password of the role only the leak test uses (so that other tests running at the
/// same time do not count).
const LEAK_PASSWORD: &str = "L3ak-s3cret-Wx9";
/// A wrong password, which must not show up either.
const WRONG_PASSWORD: &str = "Wr0ng-s3cret-Kp4";
/// Set by the one test that reads the password from the environment.
const PASSWORD_VAR: &str = "HARENA_TEST_PG_MONITOR_PASSWORD";

fn init(pg: &PgServer) {
    pg.psql("CREATE DATABASE harena");
    pg.psql(&format!(
        "CREATE ROLE monitor LOGIN PASSWORD '{MONITOR_PASSWORD}' IN ROLE pg_monitor"
    ));
    // md5: the 1,000 logins of the leak test cost little, also in a debug build (where
    // SCRAM's 4096 rounds of SHA-256 take tens of milliseconds on the client).
    pg.psql(&format!(
        "SET password_encryption = 'md5'; \
         CREATE ROLE leaktest LOGIN PASSWORD '{LEAK_PASSWORD}' IN ROLE pg_monitor"
    ));
    pg.psql(&format!(
        "CREATE ROLE limited LOGIN PASSWORD '{MONITOR_PASSWORD}' CONNECTION LIMIT 0"
    ));
    pg.write_file("monitor.pw", &format!("{MONITOR_PASSWORD}\n"));
    pg.write_file("leaktest.pw", LEAK_PASSWORD);
    pg.write_file("wrong.pw", WRONG_PASSWORD);
}

fn pg() -> &'static PgServer {
    common_pg::shared(&["host all leaktest 127.0.0.1/32 md5"], init)
}

/// The monitor's config on the shared server, with `extra` keys on top.
fn config(extra: Value) -> Value {
    let pg = pg();
    let mut c = json!({
        "host": "127.0.0.1",
        "port": pg.port,
        "database": "harena",
        "user": "monitor",
        "password_file": pg.dir.join("monitor.pw"),
    });
    let (Value::Object(c_map), Value::Object(extra)) = (&mut c, extra) else {
        panic!("objects expected");
    };
    for (k, v) in extra {
        if v.is_null() {
            c_map.remove(&k);
        } else {
            c_map.insert(k, v);
        }
    }
    c
}

// ---------------------------------------------------------------------------------------
// Running a check and looking at what it recorded.

struct Run {
    result: Result<(), CheckError>,
    samples: Vec<Sample>,
    detail: Option<String>,
    elapsed: Duration,
}

impl Run {
    /// The value of the one series of `name` with these extra labels.
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

    fn count(&self, name: &str) -> usize {
        self.samples.iter().filter(|s| s.desc.name == name).count()
    }

    fn err(&self) -> &CheckError {
        match &self.result {
            Err(e) => e,
            Ok(()) => panic!("expected a failure, got success: {:?}", self.detail),
        }
    }

    /// Fails with the reason, and a detail containing `needle`.
    fn assert_fails(&self, reason: Reason, needle: &str) {
        let e = self.err();
        assert_eq!(e.reason, reason, "detail: {}", e.detail);
        assert!(
            e.detail.contains(needle),
            "{:?} does not contain {needle:?}",
            e.detail
        );
    }

    fn assert_ok(&self) {
        if let Err(e) = &self.result {
            panic!("expected success, got {}: {}", e.reason, e.detail);
        }
        assert!(self.detail.is_some(), "a successful run sets a detail");
    }

    /// What every run must satisfy: labels, names, and no secret anywhere.
    fn assert_baseline(&self, target: &str) {
        for s in &self.samples {
            assert_eq!(s.labels.get("check"), Some("test"), "{}", s.desc.name);
            assert_eq!(s.labels.get("kind"), Some("postgres"), "{}", s.desc.name);
            assert!(
                s.desc.name.starts_with("harena_postgres_")
                    || s.desc.name == "harena_tls_cert_expiry_timestamp_seconds",
                "{}",
                s.desc.name
            );
        }
        let mut texts: Vec<String> = vec![target.to_string()];
        texts.extend(self.detail.clone());
        if let Err(e) = &self.result {
            texts.push(e.detail.clone());
            texts.push(format!("{e:?}"));
        }
        for s in &self.samples {
            texts.extend(s.labels.iter().map(|(k, v)| format!("{k}={v}")));
        }
        for secret in [
            MONITOR_PASSWORD,
            LEAK_PASSWORD,
            WRONG_PASSWORD,
            pg().superuser_password.as_str(),
        ] {
            for t in &texts {
                assert!(!t.contains(secret), "a password leaked into {t:?}");
            }
        }
        if self.result.is_ok() {
            for name in [
                "harena_postgres_max_connections",
                "harena_postgres_reserved_connections",
            ] {
                assert!(self.value(name, &[]).is_some(), "no {name}");
            }
            for state in ["active", "idle", "idle_in_transaction"] {
                assert!(
                    self.value("harena_postgres_connections", &[("state", state)])
                        .is_some(),
                    "no connections{{state={state}}}"
                );
            }
            assert_eq!(self.count("harena_postgres_server_version_info"), 1);
        }
    }
}

fn build(config: Value) -> PostgresCheck {
    let config: PostgresConfig = serde_json::from_value(config).expect("config deserializes");
    PostgresCheck::build(&config).expect("check builds")
}

async fn run_with(check: &PostgresCheck, timeout: Duration) -> Run {
    let start = Instant::now();
    let ctx = RunContext::standalone(start + timeout);
    let mut rec = Recorder::new(Labels::from_pairs([
        ("check", "test"),
        ("kind", "postgres"),
    ]));
    let result = check.run(&ctx, &mut rec).await;
    let elapsed = start.elapsed();
    let recorded = rec.finish();
    let run = Run {
        result,
        samples: recorded.samples,
        detail: recorded.detail,
        elapsed,
    };
    run.assert_baseline(&check.target());
    run
}

async fn run(config: Value) -> Run {
    run_with(&build(config), TIMEOUT).await
}

/// A superuser session of the test itself, in database `harena`.
async fn superuser(app: &str) -> (Client, JoinHandle<()>) {
    let pg = pg();
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(pg.port)
        .user(common_pg::SUPERUSER)
        .password(&pg.superuser_password)
        .dbname("harena")
        .application_name(app)
        .connect(NoTls)
        .await
        .expect("connect as the superuser");
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    (client, task)
}

async fn scalar(client: &Client, sql: &str) -> String {
    let rows = client.simple_query(sql).await.expect("query");
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .expect("one value")
}

/// Sessions of the exporter logged in as `user`, as the server sees them.
async fn exporter_sessions(client: &Client, user: &str) -> u64 {
    scalar(
        client,
        &format!(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name = '{APPLICATION_NAME}' AND usename = '{user}'"
        ),
    )
    .await
    .parse()
    .expect("a count")
}

/// A port on 127.0.0.1 where nothing listens.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A TCP server that answers every connection with `answer` (after reading what the
/// client sends first), then closes; `None` accepts and never answers.
async fn fake_server(answer: Option<&'static [u8]>) -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            match answer {
                None => held.push(stream),
                Some(bytes) => {
                    tokio::spawn(async move {
                        let mut buf = [0u8; 1024];
                        let _ = stream.read(&mut buf).await;
                        let _ = stream.write_all(bytes).await;
                        let _ = stream.shutdown().await;
                    });
                }
            }
        }
    });
    (port, task)
}

// ---------------------------------------------------------------------------------------
// The tests.

#[tokio::test]
async fn connections_by_state_match_what_the_test_opened() {
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(superuser("harena-test-idle").await);
    }
    let (in_tx, task) = superuser("harena-test-in-transaction").await;
    in_tx.batch_execute("BEGIN; SELECT 1").await.unwrap();

    let r = run(config(json!({}))).await;
    r.assert_ok();
    let state = |s: &str| {
        r.value("harena_postgres_connections", &[("state", s)])
            .unwrap()
    };
    assert!(state("idle") >= 3.0, "idle {}", state("idle"));
    assert!(state("idle_in_transaction") >= 1.0);
    // The exporter's own session is active while it asks.
    assert!(state("active") >= 1.0);
    let used: f64 = r
        .samples
        .iter()
        .filter(|s| s.desc.name == "harena_postgres_connections")
        .map(|s| s.value)
        .sum();
    assert!(used >= 5.0, "used {used}");

    let max: f64 = scalar(&in_tx, "SHOW max_connections")
        .await
        .parse()
        .unwrap();
    assert_eq!(r.value("harena_postgres_max_connections", &[]), Some(max));
    let reserved: f64 = scalar(&in_tx, "SHOW superuser_reserved_connections")
        .await
        .parse()
        .unwrap();
    assert_eq!(
        r.value("harena_postgres_reserved_connections", &[]),
        Some(reserved)
    );
    let version = scalar(&in_tx, "SHOW server_version").await;
    let short = version.split_whitespace().next().unwrap();
    assert_eq!(
        r.value("harena_postgres_server_version_info", &[("version", short)]),
        Some(1.0)
    );
    let detail = r.detail.clone().unwrap();
    assert!(
        detail.starts_with(&format!("PostgreSQL {short}, ")) && detail.contains(" connections"),
        "{detail}"
    );
    assert_eq!(
        r.value("harena_tls_cert_expiry_timestamp_seconds", &[]),
        None
    );

    in_tx.batch_execute("ROLLBACK").await.unwrap();
    drop((in_tx, sessions));
    task.await.unwrap();
}

#[tokio::test]
async fn user_queries_become_gauges() {
    let r = run(config(json!({"queries": [
        {"name": "backends", "labels": ["datname"],
         "sql": "SELECT datname, numbackends FROM pg_stat_database WHERE datname IN ('harena', 'postgres')"},
        {"name": "numeric", "sql": "SELECT 1234.5::numeric"},
        {"name": "negative_numeric", "sql": "SELECT -0.0625::numeric"},
        {"name": "count", "sql": "SELECT count(*) FROM generate_series(1, 42)"},
        {"name": "sum", "sql": "SELECT sum(g) FROM generate_series(1, 10) g"},
        {"name": "float", "sql": "SELECT 0.25::float8"},
        {"name": "boolean", "sql": "SELECT pg_is_in_recovery() OR true"},
        {"name": "null_value", "sql": "SELECT NULL::int"},
        {"name": "no_rows", "sql": "SELECT 1 WHERE false"},
        {"name": "by_status", "labels": ["status"],
         "sql": "SELECT status, n FROM (VALUES ('done', 3), ('failed', 1), (NULL, 2)) v(status, n)"},
    ]})))
    .await;
    r.assert_ok();
    let q = |name: &str, extra: &[(&str, &str)]| {
        let mut labels = vec![("query", name)];
        labels.extend_from_slice(extra);
        r.value("harena_postgres_query_value", &labels)
    };
    // The exporter's own session is in `harena`.
    assert!(q("backends", &[("datname", "harena")]).unwrap() >= 1.0);
    assert!(q("backends", &[("datname", "postgres")]).is_some());
    assert_eq!(q("numeric", &[]), Some(1234.5));
    assert_eq!(q("negative_numeric", &[]), Some(-0.0625));
    assert_eq!(q("count", &[]), Some(42.0));
    assert_eq!(q("sum", &[]), Some(55.0));
    assert_eq!(q("float", &[]), Some(0.25));
    assert_eq!(q("boolean", &[]), Some(1.0));
    assert_eq!(q("null_value", &[]), None);
    assert_eq!(q("no_rows", &[]), None);
    assert_eq!(q("by_status", &[("status", "done")]), Some(3.0));
    assert_eq!(q("by_status", &[("status", "failed")]), Some(1.0));
    assert_eq!(q("by_status", &[("status", "")]), Some(2.0));
    assert_eq!(r.count("harena_postgres_query_value"), 11);
    assert!(r.detail.clone().unwrap().contains("10 queries"));
}

#[tokio::test]
async fn a_failing_query_is_named_and_the_rest_is_still_recorded() {
    let r = run(config(json!({"queries": [
        {"name": "good", "sql": "SELECT 7"},
        {"name": "broken", "sql": "SELECT * FROM no_such_table"},
        {"name": "also_good", "sql": "SELECT 8"},
    ]})))
    .await;
    r.assert_fails(
        Reason::Protocol,
        "run query \"broken\": relation \"no_such_table\" does not exist (SQLSTATE 42P01)",
    );
    assert_eq!(
        r.value("harena_postgres_query_value", &[("query", "good")]),
        Some(7.0)
    );
    assert_eq!(
        r.value("harena_postgres_query_value", &[("query", "also_good")]),
        Some(8.0)
    );
    assert!(r.value("harena_postgres_max_connections", &[]).is_some());
    assert!(
        r.value("harena_postgres_connections", &[("state", "active")])
            .is_some()
    );
}

#[tokio::test]
async fn queries_of_the_wrong_shape_are_protocol_errors() {
    let cases: &[(&str, &[&str], &str)] = &[
        ("SELECT 1, 2", &[], "expected exactly one value column"),
        ("SELECT 'x'::text", &[], "is text, not a number"),
        ("SELECT 1 AS v", &["missing"], "no column named \"missing\""),
        ("SELECT 1 AS a, 2 AS b", &["a"], "is int4, not text"),
        (
            "SELECT 'x' AS l, 1 UNION ALL SELECT 'x', 2",
            &["l"],
            "two rows with the same labels {l=\"x\"}",
        ),
        (
            "SELECT g::text AS l, g FROM generate_series(1, 1001) g",
            &["l"],
            "1001 rows, more than 1000",
        ),
        // Sessions are read-only: a query cannot change anything.
        (
            "CREATE TABLE must_not_exist (id int)",
            &[],
            "read-only transaction (SQLSTATE 25006)",
        ),
        ("SELECT 1; SELECT 2", &[], "SQLSTATE 42601"),
    ];
    let mut tasks = Vec::new();
    for (sql, labels, needle) in cases {
        let c = config(json!({"queries": [{"name": "q", "sql": sql, "labels": labels}]}));
        tasks.push(tokio::spawn(async move {
            let r = run(c).await;
            r.assert_fails(Reason::Protocol, "run query \"q\": ");
            r.assert_fails(Reason::Protocol, needle);
            assert!(r.value("harena_postgres_max_connections", &[]).is_some());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (client, _task) = superuser("harena-test-check").await;
    assert_eq!(
        scalar(
            &client,
            "SELECT count(*) FROM pg_class WHERE relname = 'must_not_exist'"
        )
        .await,
        "0"
    );
}

#[tokio::test]
async fn statement_timeout_stops_a_slow_query() {
    let r = run(config(json!({
        "statement_timeout": "200ms",
        "queries": [{"name": "slow", "sql": "SELECT 1 FROM pg_sleep(10)"}],
    })))
    .await;
    r.assert_fails(
        Reason::Timeout,
        "run query \"slow\": canceling statement due to statement timeout (SQLSTATE 57014)",
    );
    assert!(r.elapsed < Duration::from_secs(2), "took {:?}", r.elapsed);
}

#[tokio::test]
async fn wrong_password_is_auth() {
    let pg = pg();
    let r = run(config(json!({"password_file": pg.dir.join("wrong.pw")}))).await;
    r.assert_fails(Reason::Auth, "log in to 127.0.0.1:");
    r.assert_fails(
        Reason::Auth,
        "as monitor: password authentication failed for user \"monitor\" (SQLSTATE 28P01)",
    );
    assert!(r.samples.is_empty(), "nothing is known");
}

#[tokio::test]
async fn unknown_role_is_auth() {
    let r = run(config(json!({"user": "nobody_here"}))).await;
    r.assert_fails(Reason::Auth, "SQLSTATE 28P01");
}

#[tokio::test]
async fn missing_password_variable_is_auth_naming_it() {
    let r = run(config(json!({
        "password_file": null,
        "password_env": "HARENA_TEST_PG_NEVER_SET",
    })))
    .await;
    r.assert_fails(
        Reason::Auth,
        "read password: environment variable HARENA_TEST_PG_NEVER_SET is not set",
    );
    assert!(
        r.elapsed < Duration::from_millis(500),
        "took {:?}",
        r.elapsed
    );
}

#[tokio::test]
async fn password_from_the_environment() {
    // SAFETY: no other test reads or writes this variable, and the standard library
    // serializes its own environment accesses.
    unsafe { std::env::set_var(PASSWORD_VAR, MONITOR_PASSWORD) };
    let r = run(config(
        json!({"password_file": null, "password_env": PASSWORD_VAR}),
    ))
    .await;
    r.assert_ok();
}

#[tokio::test]
async fn no_password_configured_when_the_server_wants_one_is_auth() {
    let r = run(config(json!({"password_file": null}))).await;
    r.assert_fails(
        Reason::Auth,
        "the server asks for a password: set password_file or password_env",
    );
}

#[tokio::test]
async fn no_free_connection_slot_is_refused() {
    // The same SQLSTATE as "sorry, too many clients already", cheaper to cause.
    let r = run(config(json!({"user": "limited"}))).await;
    r.assert_fails(
        Reason::Refused,
        "too many connections for role \"limited\" (SQLSTATE 53300)",
    );
}

#[tokio::test]
async fn missing_database_is_missing() {
    let r = run(config(json!({"database": "no_such_db"}))).await;
    r.assert_fails(
        Reason::Missing,
        "database \"no_such_db\" does not exist (SQLSTATE 3D000)",
    );
}

#[tokio::test]
async fn unresolvable_host_is_dns_without_a_lookup() {
    let r = run(config(json!({"host": "db.invalid"}))).await;
    r.assert_fails(Reason::Dns, "resolve db.invalid: no such host");
    assert!(
        r.elapsed < Duration::from_millis(500),
        "took {:?}",
        r.elapsed
    );
    assert!(r.samples.is_empty());
}

#[tokio::test]
async fn stopped_server_is_refused() {
    let port = closed_port();
    let r = run(config(json!({"port": port}))).await;
    r.assert_fails(
        Reason::Refused,
        &format!("connect to 127.0.0.1:{port}: connection refused"),
    );
}

#[tokio::test]
async fn silent_server_times_out_at_the_deadline() {
    let (port, task) = fake_server(None).await;
    let timeout = Duration::from_secs(1);
    let r = run_with(&build(config(json!({"port": port}))), timeout).await;
    task.abort();
    r.assert_fails(
        Reason::Timeout,
        &format!("log in to 127.0.0.1:{port} as monitor: timed out after"),
    );
    let off = r.elapsed.abs_diff(timeout);
    assert!(
        off < Duration::from_millis(250),
        "ended after {:?}",
        r.elapsed
    );
}

#[tokio::test]
async fn another_protocol_is_a_protocol_error() {
    let (port, task) = fake_server(Some(
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
    ))
    .await;
    let r = run(config(json!({"port": port}))).await;
    task.abort();
    r.assert_fails(
        Reason::Protocol,
        &format!(
            "log in to 127.0.0.1:{port} as monitor: connection closed in the middle of a message: is it a PostgreSQL server?"
        ),
    );
    assert!(r.elapsed < Duration::from_secs(2), "took {:?}", r.elapsed);
}

#[tokio::test]
async fn tls_required_and_verified_with_ca_file() {
    let pg = pg();
    let ssl_query =
        json!([{"name": "ssl", "sql": "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"}]);
    let r = run(config(json!({
        "sslmode": "require",
        "tls_config": {"ca_file": pg.ca_file},
        "queries": ssl_query,
    })))
    .await;
    r.assert_ok();
    assert_eq!(
        r.value("harena_postgres_query_value", &[("query", "ssl")]),
        Some(1.0)
    );
    let expiry = r
        .value("harena_tls_cert_expiry_timestamp_seconds", &[])
        .expect("the certificate's expiry");
    assert!(expiry > 1.9e9, "expiry {expiry}");

    // `prefer` uses TLS when offered; `disable` never does.
    let r = run(config(json!({
        "sslmode": "prefer",
        "tls_config": {"ca_file": pg.ca_file},
        "queries": ssl_query,
    })))
    .await;
    r.assert_ok();
    assert_eq!(
        r.value("harena_postgres_query_value", &[("query", "ssl")]),
        Some(1.0)
    );
    let r = run(config(json!({"queries": ssl_query}))).await;
    r.assert_ok();
    assert_eq!(
        r.value("harena_postgres_query_value", &[("query", "ssl")]),
        Some(0.0)
    );
}

#[tokio::test]
async fn untrusted_certificate_is_tls() {
    let pg = pg();
    let r = run(config(json!({"sslmode": "require"}))).await;
    r.assert_fails(
        Reason::Tls,
        &format!(
            "tls handshake with 127.0.0.1:{}: invalid peer certificate: UnknownIssuer",
            pg.port
        ),
    );
    assert!(
        r.value("harena_tls_cert_expiry_timestamp_seconds", &[])
            .is_some(),
        "the expiry of a rejected certificate is still reported"
    );
    // The name checked is `host`, or tls_config.server_name.
    let r = run(config(json!({
        "sslmode": "require",
        "tls_config": {"ca_file": pg.ca_file, "server_name": "db.example"},
    })))
    .await;
    r.assert_fails(Reason::Tls, "invalid peer certificate");
    let r = run(config(json!({
        "sslmode": "require",
        "tls_config": {"insecure_skip_verify": true},
    })))
    .await;
    r.assert_ok();
}

#[tokio::test]
async fn server_without_tls_fails_require() {
    // A server answers `N` to the SSLRequest when TLS is off.
    let (port, task) = fake_server(Some(b"N")).await;
    let r = run(config(json!({"port": port, "sslmode": "require"}))).await;
    task.abort();
    r.assert_fails(
        Reason::Tls,
        &format!("log in to 127.0.0.1:{port} as monitor: tls: server does not support TLS"),
    );
}

#[tokio::test]
async fn runs_leave_no_session_behind() {
    let pg = pg();
    let (client, _task) = superuser("harena-test-leaks").await;
    let leak_config = json!({
        "host": "127.0.0.1",
        "port": pg.port,
        "database": "harena",
        "user": "leaktest",
        "password_file": pg.dir.join("leaktest.pw"),
        "queries": [{"name": "one", "sql": "SELECT 1"}],
    });
    let check = std::sync::Arc::new(build(leak_config.clone()));
    // 1,000 runs, four at a time (postgres_exporter's best-known bug leaks here).
    let mut workers = Vec::new();
    for _ in 0..4 {
        let check = std::sync::Arc::clone(&check);
        workers.push(tokio::spawn(async move {
            for _ in 0..250 {
                run_with(&check, TIMEOUT).await.assert_ok();
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }

    // A run cut short in the middle of a query (the scheduler's timeout) leaves nothing
    // either: its socket is dropped, and the query is bounded by the deadline.
    let mut slow = leak_config;
    slow["queries"] = json!([{"name": "slow", "sql": "SELECT 1 FROM pg_sleep(30)"}]);
    let slow = build(slow);
    let cut = tokio::time::timeout(
        Duration::from_millis(300),
        run_with(&slow, Duration::from_secs(1)),
    )
    .await;
    assert!(cut.is_err(), "the slow run is cut short");

    let end = Instant::now() + Duration::from_secs(5);
    let mut left = exporter_sessions(&client, "leaktest").await;
    while left > 0 && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = exporter_sessions(&client, "leaktest").await;
    }
    assert_eq!(left, 0, "sessions left behind; server log:\n{}", pg.log());
}

#[test]
fn target_has_no_password() {
    let check = build(json!({
        "host": "db.example", "port": 6432, "database": "harena", "user": "monitor",
        "password_env": "HARENA_POSTGRES_PASSWORD",
    }));
    assert_eq!(check.target(), "postgres://monitor@db.example:6432/harena");
}

#[test]
fn the_default_config_entry_parses() {
    let c: PostgresConfig = serde_json::from_value(json!({
        "host": "127.0.0.1",
        "port": 5432,
        "database": "harena",
        "user": "harena_admin",
        "password_env": "HARENA_POSTGRES_PASSWORD",
    }))
    .unwrap();
    let check = PostgresCheck::build(&c).unwrap();
    assert_eq!(
        check.target(),
        "postgres://harena_admin@127.0.0.1:5432/harena"
    );
    assert_eq!(PostgresCheck::KIND, "postgres");
    assert_eq!(PostgresCheck::DEFAULT_INTERVAL, Duration::from_secs(30));
    assert_eq!(PostgresCheck::DEFAULT_TIMEOUT, Duration::from_secs(10));
}
