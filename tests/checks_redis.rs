//! The `redis` check against real Redis servers (`redis-server` from the Debian package
//! `redis-server`), each test starting its own on a free loopback port and stopping it
//! when done, plus tiny fakes on 127.0.0.1 for what a real Redis cannot do (stay
//! silent, speak HTTP).

mod common;

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Once};
use std::time::Duration;

use harena_exporter::checks::redis::{RedisCheck, RedisConfig};
use harena_exporter::checks::{Check, CheckError, Reason, Recorder, RunContext};
use harena_exporter::model::{Labels, Sample};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use common::require;

/// Generous: a loaded 2-core machine runs several Redis servers at once here.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The `requirepass` of the protected servers.
const PASSWORD: &str = "hunter2-Redis-q7Zx";
/// Holds [`PASSWORD`].
const PASSWORD_VAR: &str = "HARENA_TEST_REDIS_PASSWORD";
/// A password that is not the server's.
const WRONG_PASSWORD: &str = "not-the-password-55Kw";
/// Holds [`WRONG_PASSWORD`].
const WRONG_PASSWORD_VAR: &str = "HARENA_TEST_REDIS_WRONG_PASSWORD";
/// Never set by anyone.
const UNSET_VAR: &str = "HARENA_TEST_REDIS_NEVER_SET_PASSWORD";
/// The password of the ACL users.
const ACL_PASSWORD: &str = "acl-Monitor-pw-3141";

/// Every secret the tests use: none may show up in a sample, a detail or an error.
const SECRETS: [&str; 3] = [PASSWORD, WRONG_PASSWORD, ACL_PASSWORD];

/// Every gauge and counter a successful run records.
const SERIES: [&str; 9] = [
    "harena_redis_connected_clients",
    "harena_redis_maxclients",
    "harena_redis_memory_used_bytes",
    "harena_redis_maxmemory_bytes",
    "harena_redis_rejected_connections_total",
    "harena_redis_evicted_keys_total",
    "harena_redis_auth_required",
    "harena_redis_uptime_seconds",
    "harena_redis_version_info",
];

fn set_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: set once, before any check of this binary reads them; the standard
        // library serializes its own environment accesses, and nothing here reads the
        // environment through libc.
        unsafe {
            std::env::set_var(PASSWORD_VAR, PASSWORD);
            std::env::set_var(WRONG_PASSWORD_VAR, WRONG_PASSWORD);
            std::env::remove_var(UNSET_VAR);
        }
    });
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

    fn must(&self, name: &str) -> f64 {
        self.value(name, &[])
            .unwrap_or_else(|| panic!("{name} not recorded: {:?}", self.names()))
    }

    fn names(&self) -> Vec<&str> {
        self.samples.iter().map(|s| &*s.desc.name).collect()
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

    /// Succeeds, with every series recorded once.
    fn assert_ok(&self) {
        if let Err(e) = &self.result {
            panic!("expected success, got {}: {}", e.reason, e.detail);
        }
        assert!(self.detail.is_some(), "a successful run sets a detail");
        for name in SERIES {
            let n = self.samples.iter().filter(|s| s.desc.name == name).count();
            assert_eq!(n, 1, "{name} recorded {n} times on success");
        }
    }

    /// What every run must respect: the check's labels, the namespace, no secret.
    fn assert_baseline(&self) {
        let mut texts: Vec<String> = self.detail.iter().cloned().collect();
        if let Err(e) = &self.result {
            texts.push(e.detail.clone());
            texts.push(e.to_string());
            texts.push(format!("{e:?}"));
        }
        for s in &self.samples {
            assert_eq!(s.labels.get("check"), Some("test"), "{}", s.desc.name);
            assert_eq!(s.labels.get("kind"), Some("redis"), "{}", s.desc.name);
            assert!(s.desc.name.starts_with("harena_"), "{}", s.desc.name);
            texts.extend(s.labels.iter().map(|(k, v)| format!("{k}={v}")));
        }
        for secret in SECRETS {
            for text in &texts {
                assert!(!text.contains(secret), "a secret leaked into {text:?}");
            }
        }
    }
}

fn build(config: Value) -> RedisCheck {
    let config: RedisConfig = serde_json::from_value(config).expect("config deserializes");
    let check = RedisCheck::build(&config).expect("check builds");
    let debug = format!("{check:?} {config:?}");
    for secret in SECRETS {
        assert!(!debug.contains(secret), "a secret leaked into {debug}");
    }
    check
}

async fn run_with(config: Value, timeout: Duration) -> Run {
    set_env();
    let check = build(config);
    let start = Instant::now();
    let ctx = RunContext::standalone(start + timeout);
    let mut rec = Recorder::new(Labels::from_pairs([("check", "test"), ("kind", "redis")]));
    let result = check.run(&ctx, &mut rec).await;
    let elapsed = start.elapsed();
    let recorded = rec.finish();
    let run = Run {
        result,
        samples: recorded.samples,
        detail: recorded.detail,
        elapsed,
    };
    run.assert_baseline();
    run
}

async fn run(config: Value) -> Run {
    run_with(config, TIMEOUT).await
}

// ---------------------------------------------------------------------------------------
// Real Redis servers.

/// A `redis-server` process on a free loopback port, killed when dropped.
struct Redis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
    /// `requirepass`, for `redis-cli`.
    password: Option<&'static str>,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago (Redis takes it by number, so the start retries
/// when another process got there first).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl Redis {
    /// A server without a password.
    fn open() -> Redis {
        Redis::start(None, &[])
    }

    /// A server with `requirepass` [`PASSWORD`].
    fn protected(extra: &[&str]) -> Redis {
        Redis::start(Some(PASSWORD), extra)
    }

    /// Starts `redis-server` on a free port (`{port}` in `extra` is replaced by it) and
    /// waits until it logs that it accepts connections.
    fn start(password: Option<&'static str>, extra: &[&str]) -> Redis {
        require("redis-server", "redis-server");
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let dir = tempfile::tempdir().expect("tempdir");
            let log = dir.path().join("redis.log");
            let mut cmd = Command::new("redis-server");
            cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .arg("--logfile")
                .arg(&log);
            if !extra.contains(&"--port") {
                cmd.args(["--port", &port.to_string()]);
            }
            for arg in extra {
                cmd.arg(arg.replace("{port}", &port.to_string()));
            }
            if let Some(pw) = password {
                cmd.args(["--requirepass", pw]);
            }
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // SAFETY: prctl is async-signal-safe. The server dies with the test thread
            // that started it even when the test binary is killed (Drop does not run
            // then); `start` runs on the test's own thread, which outlives the server.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let child = cmd.spawn().expect("start redis-server");
            let mut redis = Redis {
                child,
                port,
                _dir: dir,
                password,
            };
            if redis.wait_ready(&log) {
                return redis;
            }
            last_log = std::fs::read_to_string(&log).unwrap_or_default();
        }
        panic!("redis-server did not start; its last log:\n{last_log}");
    }

    fn wait_ready(&mut self, log: &Path) -> bool {
        let end = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false; // the port was taken, most likely
            }
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains("Ready to accept connections") {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `redis-cli` against this server, authenticated when it has a password; stdout.
    fn cli(&self, args: &[&str]) -> String {
        require("redis-cli", "redis-server");
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(pw) = self.password {
            // REDISCLI_AUTH rather than -a: the password stays off the command line.
            cmd.env("REDISCLI_AUTH", pw);
        }
        let out = cmd.args(args).output().expect("run redis-cli");
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `redis-cli INFO` as a map.
    fn info(&self) -> HashMap<String, String> {
        self.cli(&["INFO"])
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.trim_end().split_once(':'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn info_f64(info: &HashMap<String, String>, key: &str) -> f64 {
        info.get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("redis-cli INFO has no number {key}"))
    }
}

// ---------------------------------------------------------------------------------------
// Fakes.

/// A server task, stopped when dropped.
struct Fake {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An HTTP server as Redis's PING finds one: whatever arrives, `400 Bad Request`.
async fn serve_http() -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                if matches!(s.read(&mut buf).await, Ok(n) if n > 0) {
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nConnection: close\r\n\r\nBad Request",
                        )
                        .await;
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    Fake { addr, task }
}

/// Accepts connections and never says a word.
async fn serve_silent() -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    Fake { addr, task }
}

/// Splits the first RESP command (an array of bulk strings) off `buf`.
fn take_command(buf: &mut Vec<u8>) -> Option<Vec<String>> {
    fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let rest = buf.get(at..)?;
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        Some((&rest[..end], at + end + 2))
    }
    let (head, mut at) = line(buf, 0)?;
    let n: usize = std::str::from_utf8(head.strip_prefix(b"*")?)
        .ok()?
        .parse()
        .ok()?;
    let mut args = Vec::new();
    for _ in 0..n {
        let (len, next) = line(buf, at)?;
        let len: usize = std::str::from_utf8(len.strip_prefix(b"$")?)
            .ok()?
            .parse()
            .ok()?;
        let arg = buf.get(next..next + len)?;
        args.push(String::from_utf8_lossy(arg).into_owned());
        at = next + len + 2;
    }
    buf.drain(..at.min(buf.len()));
    Some(args)
}

/// A server that reads RESP commands and answers each with `reply(args)`.
async fn serve_resp(reply: fn(&[String]) -> Vec<u8>) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(args) = take_command(&mut buf) {
                        if s.write_all(&reply(&args)).await.is_err() {
                            return;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    Fake { addr, task }
}

// ---------------------------------------------------------------------------------------
// Tests against real Redis.

#[tokio::test]
async fn protected_server_with_the_right_password() {
    let redis = Redis::protected(&["--maxclients", "64", "--maxmemory", "100mb"]);
    let r = run(json!({"address": redis.address(), "password_env": PASSWORD_VAR})).await;
    r.assert_ok();
    let detail = r.detail.clone().unwrap();
    assert!(
        detail.starts_with("authenticated as default; redis "),
        "{detail}"
    );
    assert_eq!(r.must("harena_redis_auth_required"), 1.0);

    let info = redis.info();
    let want = |key| Redis::info_f64(&info, key);
    assert_eq!(r.must("harena_redis_maxclients"), want("maxclients"));
    assert_eq!(r.must("harena_redis_maxclients"), 64.0);
    assert_eq!(r.must("harena_redis_maxmemory_bytes"), want("maxmemory"));
    assert_eq!(
        r.must("harena_redis_maxmemory_bytes"),
        100.0 * 1024.0 * 1024.0
    );
    // Each saw itself: the check's connection, then redis-cli's.
    let clients = r.must("harena_redis_connected_clients");
    assert!(
        (clients - want("connected_clients")).abs() <= 1.0,
        "check saw {clients}, redis-cli {}",
        want("connected_clients")
    );
    assert!(clients >= 1.0);
    assert_eq!(
        r.must("harena_redis_rejected_connections_total"),
        want("rejected_connections")
    );
    assert_eq!(
        r.must("harena_redis_evicted_keys_total"),
        want("evicted_keys")
    );
    let used = r.must("harena_redis_memory_used_bytes");
    assert!(used > 100_000.0, "used_memory {used}");
    let uptime = r.must("harena_redis_uptime_seconds");
    assert!(
        uptime <= want("uptime_in_seconds") && uptime >= 0.0,
        "uptime {uptime}"
    );
    let version = info.get("redis_version").expect("redis_version");
    assert_eq!(
        r.value("harena_redis_version_info", &[("version", version)]),
        Some(1.0)
    );
    assert!(
        detail.contains(&format!("redis {version} at {}", redis.address())),
        "{detail}"
    );
    assert!(detail.contains("of 64 clients"), "{detail}");
}

#[tokio::test]
async fn open_server_succeeds_and_reports_that_no_password_is_required() {
    let redis = Redis::open();
    let r = run(json!({"address": redis.address()})).await;
    r.assert_ok();
    assert_eq!(r.must("harena_redis_auth_required"), 0.0);
    // maxmemory 0 is "no limit", recorded as 0.
    let info = redis.info();
    assert_eq!(
        r.must("harena_redis_maxmemory_bytes"),
        Redis::info_f64(&info, "maxmemory")
    );
    assert_eq!(r.must("harena_redis_maxmemory_bytes"), 0.0);
    assert_eq!(
        r.must("harena_redis_maxclients"),
        Redis::info_f64(&info, "maxclients")
    );
    let detail = r.detail.clone().unwrap();
    assert!(detail.starts_with("no password required; "), "{detail}");
    assert!(detail.contains("no maxmemory"), "{detail}");

    // A configured password is not sent to a server that wants none (Redis would
    // answer AUTH with an error).
    let r = run(json!({"address": redis.address(), "password_env": PASSWORD_VAR})).await;
    r.assert_ok();
    assert_eq!(r.must("harena_redis_auth_required"), 0.0);
    let detail = r.detail.clone().unwrap();
    assert!(
        detail.starts_with("no password required (the configured one was not sent); "),
        "{detail}"
    );
}

#[tokio::test]
async fn wrong_password_fails_with_auth() {
    let redis = Redis::protected(&[]);
    let r = run(json!({"address": redis.address(), "password_env": WRONG_PASSWORD_VAR})).await;
    r.assert_fails(
        Reason::Auth,
        &format!(
            "authenticate as default to {}: \"-WRONGPASS invalid username-password pair",
            redis.address()
        ),
    );
    assert_eq!(r.value("harena_redis_auth_required", &[]), Some(1.0));
    assert_eq!(r.value("harena_redis_connected_clients", &[]), None);
}

#[tokio::test]
async fn missing_password_fails_with_auth_naming_the_variable() {
    let redis = Redis::protected(&[]);
    let r = run(json!({"address": redis.address(), "password_env": UNSET_VAR})).await;
    r.assert_fails(
        Reason::Auth,
        &format!("environment variable {UNSET_VAR} is not set"),
    );
    assert_eq!(r.value("harena_redis_auth_required", &[]), Some(1.0));

    let r = run(json!({"address": redis.address()})).await;
    r.assert_fails(
        Reason::Auth,
        "requires a password and none is configured: set password_env or password_file",
    );
    assert_eq!(r.value("harena_redis_auth_required", &[]), Some(1.0));

    let r = run(json!({
        "address": redis.address(),
        "password_file": "/nonexistent/redis_password",
    }))
    .await;
    r.assert_fails(Reason::Auth, "/nonexistent/redis_password");
}

#[tokio::test]
async fn acl_user_with_password_file() {
    let redis = Redis::protected(&[]);
    // The least privilege the check needs: INFO. AUTH and QUIT are always allowed, and
    // the first PING runs before authentication.
    let acl = format!(">{ACL_PASSWORD}");
    assert_eq!(
        redis
            .cli(&["ACL", "SETUSER", "monitor", "on", &acl, "-@all", "+info"])
            .trim(),
        "OK"
    );
    assert_eq!(
        redis
            .cli(&["ACL", "SETUSER", "pinger", "on", &acl, "-@all", "+ping"])
            .trim(),
        "OK"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("redis_password");
    std::fs::write(&file, format!("{ACL_PASSWORD}\n")).unwrap();

    let r = run(json!({
        "address": redis.address(),
        "username": "monitor",
        "password_file": file,
    }))
    .await;
    r.assert_ok();
    assert_eq!(r.must("harena_redis_auth_required"), 1.0);
    let detail = r.detail.clone().unwrap();
    assert!(detail.starts_with("authenticated as monitor; "), "{detail}");

    // A user without +info: the permission is missing, say which.
    let r = run(json!({
        "address": redis.address(),
        "username": "pinger",
        "password_file": file,
    }))
    .await;
    r.assert_fails(Reason::Auth, "grant it with `ACL SETUSER pinger +info`");

    // An unknown user reads like a wrong password (Redis does not tell them apart).
    let r = run(json!({
        "address": redis.address(),
        "username": "nobody",
        "password_file": file,
    }))
    .await;
    r.assert_fails(Reason::Auth, "authenticate as nobody to");
    r.assert_fails(Reason::Auth, "WRONGPASS");
}

struct TestCert {
    dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    not_after: i64,
}

fn test_cert() -> TestCert {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2040, 1, 1);
    let not_after = params.not_after.unix_timestamp();
    let cert = params.self_signed(&key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("redis.crt");
    let key_path = dir.path().join("redis.key");
    std::fs::File::create(&cert_path)
        .and_then(|mut f| f.write_all(cert.pem().as_bytes()))
        .unwrap();
    std::fs::File::create(&key_path)
        .and_then(|mut f| f.write_all(key.serialize_pem().as_bytes()))
        .unwrap();
    TestCert {
        dir,
        cert: cert_path,
        key: key_path,
        not_after,
    }
}

#[tokio::test]
async fn tls_port_with_ca_file() {
    let cert = test_cert();
    let (cert_file, key_file) = (
        cert.cert.to_string_lossy().into_owned(),
        cert.key.to_string_lossy().into_owned(),
    );
    let redis = Redis::protected(&[
        "--port",
        "0",
        "--tls-port",
        "{port}",
        "--tls-cert-file",
        &cert_file,
        "--tls-key-file",
        &key_file,
        "--tls-ca-cert-file",
        &cert_file,
        "--tls-auth-clients",
        "no",
    ]);
    let r = run(json!({
        "address": redis.address(),
        "password_env": PASSWORD_VAR,
        "tls": true,
        "tls_config": {"ca_file": cert.cert},
    }))
    .await;
    r.assert_ok();
    let detail = r.detail.clone().unwrap();
    assert!(detail.contains(" over TLS 1."), "{detail}");
    #[allow(clippy::cast_precision_loss)]
    let want = cert.not_after as f64;
    assert_eq!(
        r.value("harena_tls_cert_expiry_timestamp_seconds", &[]),
        Some(want)
    );

    // Without the CA: the certificate is refused, and its expiry still reported.
    let r = run(json!({"address": redis.address(), "tls": true})).await;
    r.assert_fails(Reason::Tls, "invalid peer certificate: UnknownIssuer");
    assert_eq!(
        r.value("harena_tls_cert_expiry_timestamp_seconds", &[]),
        Some(want)
    );
    assert_eq!(r.value("harena_redis_auth_required", &[]), None);

    // Plain text to a TLS port: Redis hangs up on it.
    let r = run(json!({"address": redis.address(), "password_env": PASSWORD_VAR})).await;
    r.assert_fails(
        Reason::Protocol,
        "closed the connection before answering PING",
    );
    drop(cert.dir);
}

// ---------------------------------------------------------------------------------------
// Failures without a Redis.

#[tokio::test]
async fn closed_port_is_refused() {
    let addr = format!("127.0.0.1:{}", common::closed_port());
    let r = run(json!({"address": addr})).await;
    r.assert_fails(
        Reason::Refused,
        &format!("connect to {addr}: connection refused"),
    );
    assert!(r.samples.is_empty(), "{:?}", r.names());
}

#[tokio::test]
async fn silent_server_times_out_at_the_deadline() {
    let fake = serve_silent().await;
    let timeout = Duration::from_secs(1);
    let r = run_with(
        json!({"address": fake.addr.to_string(), "password_env": PASSWORD_VAR}),
        timeout,
    )
    .await;
    r.assert_fails(
        Reason::Timeout,
        &format!(
            "wait for the reply to PING from {}: timed out after",
            fake.addr
        ),
    );
    assert!(r.elapsed >= timeout, "ended early, after {:?}", r.elapsed);
    assert!(
        r.elapsed < timeout + Duration::from_millis(500),
        "ended after {:?}",
        r.elapsed
    );
}

#[tokio::test]
async fn http_server_is_a_protocol_error() {
    let fake = serve_http().await;
    let r = run(json!({"address": fake.addr.to_string(), "password_env": PASSWORD_VAR})).await;
    r.assert_fails(
        Reason::Protocol,
        &format!(
            "{} does not speak RESP (a reply starts with one of + - : $ *): it answered PING with \"HTTP/1.1 400 Bad Request\"",
            fake.addr
        ),
    );
    assert!(r.elapsed < Duration::from_secs(1), "took {:?}", r.elapsed);
}

#[tokio::test]
async fn invalid_names_fail_fast_with_dns() {
    let r = run(json!({"address": "x.invalid:6379"})).await;
    r.assert_fails(Reason::Dns, "resolve x.invalid: no such host");
    assert!(
        r.elapsed < Duration::from_millis(100),
        "took {:?}",
        r.elapsed
    );
}

#[test]
fn kind_defaults_and_target() {
    assert_eq!(RedisCheck::KIND, "redis");
    assert_eq!(RedisCheck::DEFAULT_INTERVAL, Duration::from_secs(15));
    assert_eq!(RedisCheck::DEFAULT_TIMEOUT, Duration::from_secs(5));
    // The entry of the embedded default config.
    let check = build(json!({
        "address": "127.0.0.1:6379",
        "password_env": "HARENA_REDIS_PASSWORD",
    }));
    assert_eq!(check.target(), "redis://127.0.0.1:6379");
    assert_eq!(build(json!({})).target(), "redis://127.0.0.1:6379");
}

/// Several runs of one check at once, as the scheduler never does for one check but does
/// for several checks of one server: each gets its own connection and answer.
#[tokio::test]
async fn concurrent_runs_share_nothing() {
    set_env();
    let redis = Redis::protected(&[]);
    let check = Arc::new(build(
        json!({"address": redis.address(), "password_env": PASSWORD_VAR}),
    ));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let check = Arc::clone(&check);
        tasks.push(tokio::spawn(async move {
            let ctx = RunContext::standalone(Instant::now() + TIMEOUT);
            let mut rec = Recorder::new(Labels::from_pairs([("check", "test")]));
            check.run(&ctx, &mut rec).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), Ok(()));
    }
}

/// A server that echoes the password in its refusal: the detail shows no part of it.
#[tokio::test]
async fn a_password_echoed_by_the_server_is_scrubbed() {
    let fake = serve_resp(|args| match args.first().map(String::as_str) {
        Some("PING") => b"-NOAUTH Authentication required.\r\n".to_vec(),
        Some("AUTH") => format!("-ERR invalid password {}\r\n", args.join(" ")).into_bytes(),
        _ => b"-ERR unknown command\r\n".to_vec(),
    })
    .await;
    let r = run(json!({"address": fake.addr.to_string(), "password_env": PASSWORD_VAR})).await;
    r.assert_fails(Reason::Auth, "\"-ERR invalid password AUTH <secret>\"");
}

/// RESP, but not the replies Redis gives; and replies beyond the 1 MiB bound.
#[tokio::test]
async fn unexpected_and_oversized_replies_are_protocol_errors() {
    let fake = serve_resp(|_| b":1\r\n".to_vec()).await;
    let r = run(json!({"address": fake.addr.to_string()})).await;
    r.assert_fails(
        Reason::Protocol,
        &format!("unexpected reply to PING from {}: integer 1", fake.addr),
    );

    let fake = serve_resp(|args| match args.first().map(String::as_str) {
        Some("PING") => b"+PONG\r\n".to_vec(),
        _ => b"$2000000\r\n".to_vec(),
    })
    .await;
    let r = run(json!({"address": fake.addr.to_string()})).await;
    r.assert_fails(Reason::Protocol, "the reply to INFO from");
    r.assert_fails(Reason::Protocol, "is larger than 1.0 MiB");
    assert_eq!(r.value("harena_redis_auth_required", &[]), Some(0.0));

    // A simple string that never ends: reading stops at the bound, not at the deadline.
    let fake = serve_resp(|args| match args.first().map(String::as_str) {
        Some("PING") => b"+PONG\r\n".to_vec(),
        _ => {
            let mut endless = b"+".to_vec();
            endless.resize(3 * 1024 * 1024, b'a');
            endless
        }
    })
    .await;
    let r = run(json!({"address": fake.addr.to_string()})).await;
    r.assert_fails(Reason::Protocol, "is larger than 1.0 MiB");
    assert!(r.elapsed < Duration::from_secs(2), "took {:?}", r.elapsed);

    // INFO text without any field the check reads.
    let fake = serve_resp(|args| match args.first().map(String::as_str) {
        Some("PING") => b"+PONG\r\n".to_vec(),
        _ => b"$13\r\n<html></html>\r\n".to_vec(),
    })
    .await;
    let r = run(json!({"address": fake.addr.to_string()})).await;
    r.assert_fails(Reason::Protocol, "has none of the expected fields");
}
