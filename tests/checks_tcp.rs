//! The `tcp` check against tiny line servers on 127.0.0.1, plain and behind tokio-rustls.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use harena_exporter::checks::tcp::{TcpCheck, TcpConfig};
use harena_exporter::checks::{Check, CheckError, Reason, Recorder, RunContext};
use harena_exporter::model::{Labels, Sample};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_secs(2);

struct Run {
    result: Result<(), CheckError>,
    samples: Vec<Sample>,
    detail: Option<String>,
    elapsed: Duration,
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

    fn assert_ok(&self) {
        if let Err(e) = &self.result {
            panic!("expected success, got {}: {}", e.reason, e.detail);
        }
        assert!(self.detail.is_some(), "a successful run sets a detail");
    }

    /// Every run records the four phases, with the check's labels.
    fn assert_baseline(&self) {
        for phase in ["dns", "connect", "tls", "exchange"] {
            let v = self
                .value("harena_tcp_duration_seconds", &[("phase", phase)])
                .unwrap_or_else(|| panic!("no duration for phase {phase}"));
            assert!((0.0..10.0).contains(&v), "{phase} = {v}");
        }
        for s in &self.samples {
            assert_eq!(s.labels.get("check"), Some("test"), "{}", s.desc.name);
            assert_eq!(s.labels.get("kind"), Some("tcp"), "{}", s.desc.name);
        }
    }
}

fn build(config: Value) -> TcpCheck {
    let config: TcpConfig = serde_json::from_value(config).expect("config deserializes");
    TcpCheck::build(&config).expect("check builds")
}

async fn run_with(config: Value, timeout: Duration) -> Run {
    let check = build(config);
    let start = Instant::now();
    let ctx = RunContext::standalone(start + timeout);
    let mut rec = Recorder::new(Labels::from_pairs([("check", "test"), ("kind", "tcp")]));
    let result = check.run(&ctx, &mut rec).await;
    let elapsed = start.elapsed();
    let recorded = rec.finish();
    let (samples, detail) = (recorded.samples, recorded.detail);
    let run = Run {
        result,
        samples,
        detail,
        elapsed,
    };
    run.assert_baseline();
    run
}

async fn run(config: Value) -> Run {
    run_with(config, TIMEOUT).await
}

/// A server task, stopped when dropped.
struct Server {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers each line it reads with `reply(line)`; `None` closes the connection.
/// A `greeting` is sent first when set.
async fn talk<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    greeting: Option<&str>,
    reply: fn(&str) -> Option<String>,
) {
    let mut stream = BufReader::new(stream);
    if let Some(g) = greeting {
        let _ = stream.write_all(g.as_bytes()).await;
    }
    let mut line = String::new();
    while matches!(stream.read_line(&mut line).await, Ok(n) if n > 0) {
        let Some(out) = reply(line.trim_end()) else {
            break;
        };
        if stream.write_all(out.as_bytes()).await.is_err() {
            break;
        }
        line.clear();
    }
    let _ = stream.shutdown().await;
}

async fn serve(
    tls: Option<tokio_rustls::TlsAcceptor>,
    greeting: Option<&'static str>,
    reply: fn(&str) -> Option<String>,
) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => talk(stream, greeting, reply).await,
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            talk(stream, greeting, reply).await;
                        }
                    }
                }
            });
        }
    });
    Server { addr, task }
}

/// Redis, as far as PING goes.
fn redis(line: &str) -> Option<String> {
    match line {
        "PING" => Some("+PONG\r\n".to_string()),
        _ => Some("-ERR unknown command\r\n".to_string()),
    }
}

/// A Redis that wants a password first (and, like Redis, keeps the connection open).
fn redis_noauth(_: &str) -> Option<String> {
    Some("-NOAUTH Authentication required.\r\n".to_string())
}

fn hang_up(_: &str) -> Option<String> {
    None
}

struct TestCert {
    pem: String,
    acceptor: tokio_rustls::TlsAcceptor,
    not_after: i64,
}

fn test_cert() -> TestCert {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2040, 1, 1);
    let not_after = params.not_after.unix_timestamp();
    let cert = params.self_signed(&key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    TestCert {
        pem: cert.pem(),
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        not_after,
    }
}

#[tokio::test]
async fn ping_gets_pong() {
    let server = serve(None, None, redis).await;
    let r = run(json!({
        "address": server.addr.to_string(),
        "send": "PING",
        "expect": "^\\+PONG",
    }))
    .await;
    r.assert_ok();
    let detail = r.detail.clone().unwrap();
    assert!(
        detail.starts_with(&format!("\"+PONG\" from {} in ", server.addr)),
        "{detail}"
    );
    assert_eq!(
        r.value("harena_tcp_duration_seconds", &[("phase", "tls")]),
        Some(0.0)
    );
    assert_eq!(
        r.value("harena_tls_cert_expiry_timestamp_seconds", &[]),
        None
    );
}

#[tokio::test]
async fn expect_skips_lines_until_one_matches() {
    let server = serve(None, Some("220 hello\r\n250-one\r\n250 ready\r\n"), hang_up).await;
    // (the greeting is sent before any request, like SMTP's)
    let r = run(json!({"address": server.addr.to_string(), "expect": "^250 "})).await;
    r.assert_ok();
}

#[tokio::test]
async fn connect_only() {
    let server = serve(None, None, hang_up).await;
    let r = run(json!({"address": server.addr.to_string()})).await;
    r.assert_ok();
    let exchange = r.value("harena_tcp_duration_seconds", &[("phase", "exchange")]);
    assert!(exchange.unwrap() < 0.1, "nothing to exchange, {exchange:?}");
}

#[tokio::test]
async fn unexpected_answer_is_a_protocol_error() {
    let server = serve(None, None, redis_noauth).await;
    let r = run_with(
        json!({
            "address": server.addr.to_string(),
            "send": "PING",
            "expect": "^\\+PONG",
        }),
        Duration::from_secs(1),
    )
    .await;
    // An answer arrived, just not the expected one: protocol, not timeout.
    r.assert_fails(
        Reason::Protocol,
        "first line \"-NOAUTH Authentication required.\"",
    );
    r.assert_fails(Reason::Protocol, "matches \"^\\+PONG\" (timed out after");
}

#[tokio::test]
async fn closed_without_a_word_is_a_protocol_error() {
    let server = serve(None, None, hang_up).await;
    let r = run(json!({
        "address": server.addr.to_string(),
        "send": "PING",
        "expect": "^\\+PONG",
    }))
    .await;
    r.assert_fails(Reason::Protocol, "(connection closed); nothing received");
}

#[tokio::test]
async fn closed_port_is_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let r = run(json!({"address": addr.to_string()})).await;
    r.assert_fails(
        Reason::Refused,
        &format!("connect to {addr}: connection refused"),
    );
}

#[tokio::test]
async fn silent_server_times_out_at_the_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let timeout = Duration::from_secs(1);
    let r = run_with(
        json!({"address": addr.to_string(), "send": "PING", "expect": "^\\+PONG"}),
        timeout,
    )
    .await;
    task.abort();
    r.assert_fails(Reason::Timeout, "timed out after");
    let off = r.elapsed.abs_diff(timeout);
    assert!(
        off < Duration::from_millis(100),
        "ended after {:?}",
        r.elapsed
    );
}

#[tokio::test]
async fn invalid_names_fail_fast_without_a_lookup() {
    let r = run(json!({"address": "redis.invalid:6379"})).await;
    r.assert_fails(Reason::Dns, "resolve redis.invalid: no such host");
    assert!(
        r.elapsed < Duration::from_millis(50),
        "took {:?}",
        r.elapsed
    );
}

#[tokio::test]
async fn tls_with_ca_file() {
    let cert = test_cert();
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), &cert.pem).unwrap();
    let server = serve(Some(cert.acceptor.clone()), None, redis).await;
    let r = run(json!({
        "address": server.addr.to_string(),
        "tls": true,
        "tls_config": {"ca_file": ca.path()},
        "send": "PING",
        "expect": "^\\+PONG",
    }))
    .await;
    r.assert_ok();
    assert!(
        r.detail.clone().unwrap().contains("(TLS 1.3)"),
        "{:?}",
        r.detail
    );
    #[allow(clippy::cast_precision_loss)]
    let want = cert.not_after as f64;
    assert_eq!(
        r.value("harena_tls_cert_expiry_timestamp_seconds", &[]),
        Some(want)
    );
    assert!(
        r.value("harena_tcp_duration_seconds", &[("phase", "tls")])
            .unwrap()
            > 0.0
    );
}

#[tokio::test]
async fn tls_with_an_untrusted_certificate_fails() {
    let cert = test_cert();
    let server = serve(Some(cert.acceptor.clone()), None, redis).await;
    let r = run(json!({"address": server.addr.to_string(), "tls": true})).await;
    r.assert_fails(Reason::Tls, "invalid peer certificate: UnknownIssuer");
    #[allow(clippy::cast_precision_loss)]
    let want = cert.not_after as f64;
    assert_eq!(
        r.value("harena_tls_cert_expiry_timestamp_seconds", &[]),
        Some(want)
    );
}

#[tokio::test]
async fn tls_against_a_plain_server_fails() {
    let server = serve(None, Some("+OK plain text greeting\r\n"), hang_up).await;
    let r = run(json!({
        "address": server.addr.to_string(),
        "tls": true,
        "tls_config": {"insecure_skip_verify": true},
    }))
    .await;
    r.assert_fails(Reason::Tls, &format!("tls handshake with {}", server.addr));
    assert_eq!(
        r.value("harena_tls_cert_expiry_timestamp_seconds", &[]),
        None
    );
}

#[test]
fn kind_and_defaults() {
    assert_eq!(TcpCheck::KIND, "tcp");
    assert_eq!(TcpCheck::DEFAULT_INTERVAL, Duration::from_secs(15));
    assert_eq!(TcpCheck::DEFAULT_TIMEOUT, Duration::from_secs(10));
    assert_eq!(
        build(json!({"address": "127.0.0.1:6379"})).target(),
        "127.0.0.1:6379"
    );
}
