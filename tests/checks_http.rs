//! The `http` check against real servers on 127.0.0.1: a hand-rolled HTTP/1.1 server,
//! plain and behind tokio-rustls with certificates made by rcgen.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harena_exporter::checks::http::{HttpCheck, HttpConfig};
use harena_exporter::checks::{Check, CheckError, Reason, Recorder, RunContext, Vars};
use harena_exporter::model::{Labels, Sample};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_secs(2);

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

    /// The baseline every run records: all five phases, the check's labels, the redirect
    /// count.
    fn assert_baseline(&self) {
        for phase in ["dns", "connect", "tls", "processing", "transfer"] {
            let v = self
                .value("harena_http_duration_seconds", &[("phase", phase)])
                .unwrap_or_else(|| panic!("no duration for phase {phase}"));
            assert!((0.0..10.0).contains(&v), "{phase} = {v}");
        }
        assert!(self.value("harena_http_redirects", &[]).is_some());
        for s in &self.samples {
            assert_eq!(s.labels.get("check"), Some("test"), "{}", s.desc.name);
            assert_eq!(s.labels.get("kind"), Some("http"), "{}", s.desc.name);
            assert!(s.desc.name.starts_with("harena_"), "{}", s.desc.name);
        }
    }
}

fn build(config: Value) -> HttpCheck {
    let config: HttpConfig = serde_json::from_value(config).expect("config deserializes");
    HttpCheck::build(&config).expect("check builds")
}

async fn run_with(check: &HttpCheck, timeout: Duration) -> Run {
    run_in(check, RunContext::standalone(Instant::now() + timeout)).await
}

async fn run_in(check: &HttpCheck, ctx: RunContext) -> Run {
    let start = Instant::now();
    let mut rec = Recorder::new(Labels::from_pairs([("check", "test"), ("kind", "http")]));
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
    run_with(&build(config), TIMEOUT).await
}

// ---------------------------------------------------------------------------------------
// A tiny HTTP/1.1 server: reads one request, writes what the handler returns, closes.

#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    /// Lowercase names.
    headers: Vec<(String, String)>,
    body: String,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn response(status: u16, extra_headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} Whatever\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra_headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

type Handler = Arc<dyn Fn(&Req) -> Vec<u8> + Send + Sync>;

/// A server task, stopped when dropped.
struct Server {
    addr: SocketAddr,
    task: JoinHandle<()>,
    /// Every request received, in order.
    seen: Arc<Mutex<Vec<Req>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn https_url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    fn requests(&self) -> Vec<Req> {
        self.seen.lock().unwrap().clone()
    }
}

async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Option<Req> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Req {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    handler: Handler,
    seen: Arc<Mutex<Vec<Req>>>,
) {
    let Some(req) = read_request(&mut stream).await else {
        return;
    };
    let out = handler(&req);
    seen.lock().unwrap().push(req);
    let _ = stream.write_all(&out).await;
    let _ = stream.shutdown().await;
}

async fn serve_with(
    tls: Option<tokio_rustls::TlsAcceptor>,
    handler: impl Fn(&Req) -> Vec<u8> + Send + Sync + 'static,
) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler: Handler = Arc::new(handler);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (handler, seen) = (Arc::clone(&handler), Arc::clone(&seen2));
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => handle(stream, handler, seen).await,
                    Some(acceptor) => {
                        // A client that rejects the certificate ends the handshake here.
                        if let Ok(stream) = acceptor.accept(stream).await {
                            handle(stream, handler, seen).await;
                        }
                    }
                }
            });
        }
    });
    Server { addr, task, seen }
}

async fn serve(handler: impl Fn(&Req) -> Vec<u8> + Send + Sync + 'static) -> Server {
    serve_with(None, handler).await
}

/// A server that sends the same bytes to every connection, whatever it receives.
async fn serve_raw(bytes: &'static [u8]) -> Server {
    serve(move |_| bytes.to_vec()).await
}

// ---------------------------------------------------------------------------------------
// Certificates.

struct TestCert {
    pem: String,
    der: CertificateDer<'static>,
    key: Vec<u8>,
    not_after: i64,
}

impl TestCert {
    /// A self-signed certificate for 127.0.0.1, valid between the two dates.
    fn new(not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let not_after = params.not_after.unix_timestamp();
        let cert = params.self_signed(&key).unwrap();
        TestCert {
            pem: cert.pem(),
            der: cert.der().clone(),
            key: key.serialize_der(),
            not_after,
        }
    }

    fn valid() -> Self {
        Self::new((2020, 1, 1), (2040, 1, 1))
    }

    fn expired() -> Self {
        Self::new((2019, 1, 1), (2020, 1, 1))
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![self.der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone())),
            )
            .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }

    /// The certificate as a PEM file, kept while the returned guard lives.
    fn ca_file(&self) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &self.pem).unwrap();
        file
    }
}

#[allow(clippy::cast_precision_loss)]
fn as_f64(n: i64) -> f64 {
    n as f64
}

async fn serve_tls(cert: &TestCert, body: &'static str) -> Server {
    serve_with(Some(cert.acceptor()), move |_| response(200, &[], body)).await
}

// ---------------------------------------------------------------------------------------
// The tests.

#[tokio::test]
async fn ok_records_every_phase_and_sends_the_usual_headers() {
    let server = serve(|_| response(200, &[], "hello, world")).await;
    let r = run(json!({"url": server.url("/health?x=1")})).await;
    r.assert_ok();
    assert_eq!(r.value("harena_http_status_code", &[]), Some(200.0));
    assert_eq!(r.value("harena_http_response_size_bytes", &[]), Some(12.0));
    assert_eq!(r.value("harena_http_redirects", &[]), Some(0.0));
    assert_eq!(r.value("harena_http_ip_protocol", &[]), Some(4.0));
    assert_eq!(
        r.value("harena_tls_cert_expiry_timestamp_seconds", &[]),
        None
    );
    assert_eq!(
        r.value("harena_http_duration_seconds", &[("phase", "tls")]),
        Some(0.0)
    );
    let detail = r.detail.clone().unwrap();
    assert!(detail.starts_with("200 OK, 12 B in "), "{detail}");

    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("GET", "/health?x=1")
    );
    assert_eq!(req.header("host"), Some(server.addr.to_string().as_str()));
    assert_eq!(req.header("connection"), Some("close"));
    let ua = req.header("user-agent").unwrap();
    assert!(ua.starts_with("harena-exporter/"), "{ua}");
    assert_eq!(req.header("authorization"), None);
}

#[tokio::test]
async fn method_headers_and_body_are_sent() {
    let server = serve(|_| response(204, &[], "")).await;
    let r = run(json!({
        "url": server.url("/api"),
        "method": "post",
        "headers": {"Content-Type": "application/json", "User-Agent": "custom/1"},
        "body": "{\"ping\":true}",
    }))
    .await;
    r.assert_ok();
    let req = &server.requests()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.body, "{\"ping\":true}");
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("user-agent"), Some("custom/1"));
}

#[tokio::test]
async fn closed_port_is_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let r = run(json!({"url": format!("http://{addr}/")})).await;
    r.assert_fails(
        Reason::Refused,
        &format!("connect to {addr}: connection refused"),
    );
    assert_eq!(r.value("harena_http_status_code", &[]), None);
    assert_eq!(r.value("harena_http_ip_protocol", &[]), Some(4.0));
}

#[tokio::test]
async fn silent_server_times_out_at_the_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream); // accepted, never answered
        }
    });
    let timeout = Duration::from_secs(1);
    let r = run_with(&build(json!({"url": format!("http://{addr}/")})), timeout).await;
    task.abort();
    r.assert_fails(
        Reason::Timeout,
        &format!("wait for response headers from {addr}: timed out after"),
    );
    let off = r.elapsed.abs_diff(timeout);
    assert!(
        off < Duration::from_millis(100),
        "ended after {:?}",
        r.elapsed
    );
    let processing = r
        .value("harena_http_duration_seconds", &[("phase", "processing")])
        .unwrap();
    assert!(processing > 0.8, "processing {processing}");
}

#[tokio::test]
async fn invalid_names_fail_fast_without_a_lookup() {
    let r = run(json!({"url": "http://x.invalid/health"})).await;
    r.assert_fails(Reason::Dns, "resolve x.invalid: no such host");
    assert!(
        r.elapsed < Duration::from_millis(50),
        "took {:?}",
        r.elapsed
    );
    assert_eq!(r.value("harena_http_ip_protocol", &[]), None);
}

#[tokio::test]
async fn self_signed_certificate_fails_without_its_ca() {
    let cert = TestCert::valid();
    let server = serve_tls(&cert, "secure").await;
    let r = run(json!({"url": server.https_url("/")})).await;
    r.assert_fails(
        Reason::Tls,
        &format!(
            "tls handshake with {}: invalid peer certificate: UnknownIssuer",
            server.addr
        ),
    );
    // The chain was presented, so its expiry is known even though it was refused.
    assert_eq!(
        r.value("harena_tls_cert_expiry_timestamp_seconds", &[]),
        Some(as_f64(cert.not_after))
    );
    assert_eq!(r.value("harena_http_status_code", &[]), None);
}

#[tokio::test]
async fn certificate_signed_by_ca_file_succeeds_and_reports_expiry() {
    let cert = TestCert::valid();
    let ca = cert.ca_file();
    let server = serve_tls(&cert, "secure").await;
    let r = run(json!({
        "url": server.https_url("/"),
        "tls_config": {"ca_file": ca.path()},
    }))
    .await;
    r.assert_ok();
    assert_eq!(
        r.value("harena_tls_cert_expiry_timestamp_seconds", &[]),
        Some(as_f64(cert.not_after))
    );
    assert_eq!(cert.not_after, 2_208_988_800);
    let tls = r
        .value("harena_http_duration_seconds", &[("phase", "tls")])
        .unwrap();
    assert!(tls > 0.0, "tls phase {tls}");
    assert_eq!(r.value("harena_http_response_size_bytes", &[]), Some(6.0));
}

#[tokio::test]
async fn expired_certificate_fails_and_still_reports_expiry() {
    let cert = TestCert::expired();
    let ca = cert.ca_file();
    let server = serve_tls(&cert, "stale").await;
    let r = run(json!({
        "url": server.https_url("/"),
        "tls_config": {"ca_file": ca.path()},
    }))
    .await;
    r.assert_fails(
        Reason::Tls,
        "invalid peer certificate: Expired (not valid after 2020-01-01 00:00:00 UTC",
    );
    assert_eq!(
        r.value("harena_tls_cert_expiry_timestamp_seconds", &[]),
        Some(1_577_836_800.0)
    );
}

#[tokio::test]
async fn insecure_skip_verify_accepts_any_certificate() {
    let cert = TestCert::expired();
    let server = serve_tls(&cert, "whatever").await;
    let r = run(json!({
        "url": server.https_url("/"),
        "tls_config": {"insecure_skip_verify": true},
    }))
    .await;
    r.assert_ok();
    assert_eq!(
        r.value("harena_tls_cert_expiry_timestamp_seconds", &[]),
        Some(1_577_836_800.0)
    );
}

#[tokio::test]
async fn server_error_fails_with_http_status() {
    let server = serve(|_| response(503, &[], "busy")).await;
    let r = run(json!({"url": server.url("/")})).await;
    r.assert_fails(Reason::HttpStatus, "status 503, expected 2xx");
    assert_eq!(r.value("harena_http_status_code", &[]), Some(503.0));
    assert_eq!(r.value("harena_http_response_size_bytes", &[]), Some(4.0));

    let r = run(json!({"url": server.url("/"), "valid_status_codes": [503]})).await;
    r.assert_ok();
    let r = run(json!({"url": server.url("/"), "valid_status_codes": [200, 204]})).await;
    r.assert_fails(Reason::HttpStatus, "status 503, expected one of 200, 204");
}

#[tokio::test]
async fn body_regexes() {
    let server = serve(|_| response(200, &[], "status: degraded\nerror: db down\n")).await;
    let r = run(json!({
        "url": server.url("/"),
        "fail_if_body_matches_regexp": ["error: .*"],
    }))
    .await;
    r.assert_fails(
        Reason::BodyMismatch,
        r#"body matches "error: .*": found "error: db down""#,
    );
    assert_eq!(r.value("harena_http_status_code", &[]), Some(200.0));

    let r = run(json!({
        "url": server.url("/"),
        "fail_if_body_not_matches_regexp": ["status: ok"],
    }))
    .await;
    r.assert_fails(Reason::BodyMismatch, r#"body does not match "status: ok""#);

    let r = run(json!({
        "url": server.url("/"),
        "fail_if_body_matches_regexp": ["(?i)maintenance"],
        "fail_if_body_not_matches_regexp": ["^status: \\w+"],
    }))
    .await;
    r.assert_ok();
}

#[tokio::test]
async fn json_expectations() {
    let body =
        r#"{"status":"ok","checks":{"db":true,"cache":false},"uptime":5.5,"version":"1.2.3"}"#;
    let server = serve(move |_| response(200, &[("Content-Type", "application/json")], body)).await;
    let r = run(json!({
        "url": server.url("/"),
        "json_expect": [
            "$.status == \"ok\"",
            "$.checks.db != false",
            "$.uptime > 0",
            "$.version =~ \"^1\\\\.\"",
            "$.checks",
        ],
    }))
    .await;
    r.assert_ok();

    let r = run(json!({
        "url": server.url("/"),
        "json_expect": ["$.status == \"ok\"", "$.checks.cache != false"],
    }))
    .await;
    r.assert_fails(
        Reason::BodyMismatch,
        "json_expect $.checks.cache != false: got false",
    );

    let r = run(json!({"url": server.url("/"), "json_expect": ["$.missing"]})).await;
    r.assert_fails(
        Reason::BodyMismatch,
        "json_expect $.missing: $.missing is missing",
    );

    let text = serve(|_| response(200, &[], "<html>ok</html>")).await;
    let r = run(json!({"url": text.url("/"), "json_expect": ["$.status"]})).await;
    r.assert_fails(Reason::BodyMismatch, "json_expect: body is not JSON");
}

fn redirecting(req: &Req) -> Vec<u8> {
    match req.path.as_str() {
        "/old" => response(302, &[("Location", "/new")], "moved"),
        "/new" => response(200, &[], "fresh"),
        "/loop" => response(302, &[("Location", "/loop")], ""),
        "/nowhere" => response(301, &[], ""),
        _ => response(404, &[], "not found"),
    }
}

#[tokio::test]
async fn redirects_are_followed() {
    let server = serve(redirecting).await;
    let r = run(json!({"url": server.url("/old")})).await;
    r.assert_ok();
    assert_eq!(r.value("harena_http_redirects", &[]), Some(1.0));
    assert_eq!(r.value("harena_http_status_code", &[]), Some(200.0));
    assert_eq!(r.value("harena_http_response_size_bytes", &[]), Some(5.0));
    let detail = r.detail.clone().unwrap();
    assert!(
        detail.starts_with("200 OK after 1 redirect, 5 B in "),
        "{detail}"
    );
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/old", "/new"]);
}

#[tokio::test]
async fn redirects_not_followed_are_judged_by_status() {
    let server = serve(redirecting).await;
    let r = run(json!({"url": server.url("/old"), "follow_redirects": false})).await;
    r.assert_fails(Reason::HttpStatus, "status 302, expected 2xx");
    assert_eq!(r.value("harena_http_redirects", &[]), Some(0.0));
    assert_eq!(r.value("harena_http_status_code", &[]), Some(302.0));

    let r = run(json!({
        "url": server.url("/old"),
        "follow_redirects": false,
        "valid_status_codes": [302],
    }))
    .await;
    r.assert_ok();
    assert_eq!(server.requests().len(), 2, "no hop to /new");
}

#[tokio::test]
async fn bad_redirects_are_protocol_errors() {
    let server = serve(redirecting).await;
    let r = run(json!({"url": server.url("/loop")})).await;
    r.assert_fails(Reason::Protocol, "stopped after 10 redirects");
    assert_eq!(r.value("harena_http_redirects", &[]), Some(10.0));
    let r = run(json!({"url": server.url("/nowhere")})).await;
    r.assert_fails(Reason::Protocol, "status 301 without a Location header");
}

const PASSWORD_VAR: &str = "HARENA_TEST_HTTP_BASIC_AUTH_PASSWORD";

fn guarded(req: &Req) -> Vec<u8> {
    // base64("monitor:s3cret")
    if req.header("authorization") == Some("Basic bW9uaXRvcjpzM2NyZXQ=") {
        response(200, &[], "welcome")
    } else {
        response(401, &[("WWW-Authenticate", "Basic realm=\"x\"")], "")
    }
}

#[tokio::test]
async fn basic_auth_from_the_environment() {
    // SAFETY: no other test reads or writes this variable, and the standard library
    // serializes its own environment accesses.
    unsafe { std::env::set_var(PASSWORD_VAR, "s3cret") };
    let server = serve(guarded).await;
    let r = run(json!({
        "url": server.url("/"),
        "basic_auth": {"username": "monitor", "password_env": PASSWORD_VAR},
    }))
    .await;
    r.assert_ok();

    // Without credentials the server says 401: "credentials missing or rejected".
    let r = run(json!({"url": server.url("/")})).await;
    r.assert_fails(Reason::Auth, "status 401, expected 2xx");
}

#[tokio::test]
async fn basic_auth_with_an_unset_variable_fails_with_auth() {
    let server = serve(guarded).await;
    let r = run(json!({
        "url": server.url("/"),
        "basic_auth": {"username": "monitor", "password_env": "HARENA_TEST_NEVER_SET_PASSWORD"},
    }))
    .await;
    r.assert_fails(Reason::Auth, "HARENA_TEST_NEVER_SET_PASSWORD");
    assert!(
        server.requests().is_empty(),
        "nothing is sent without the password"
    );
}

#[tokio::test]
async fn basic_auth_password_file() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "s3cret\n").unwrap();
    let server = serve(guarded).await;
    let r = run(json!({
        "url": server.url("/"),
        "basic_auth": {"username": "monitor", "password_file": file.path()},
    }))
    .await;
    r.assert_ok();
}

#[tokio::test]
async fn credentials_are_not_sent_to_another_host() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "s3cret").unwrap();
    let server = serve(|req| match req.path.as_str() {
        // localhost is another host name for the same server, resolved without a lookup.
        "/start" => {
            let port = req.header("host").unwrap().rsplit(':').next().unwrap();
            let to = format!("http://localhost:{port}/elsewhere");
            response(302, &[("Location", to.as_str())], "")
        }
        _ => response(200, &[], "ok"),
    })
    .await;
    let r = run(json!({
        "url": server.url("/start"),
        "headers": {"Cookie": "session=1", "Accept": "text/plain"},
        "basic_auth": {"username": "monitor", "password_file": file.path()},
    }))
    .await;
    r.assert_ok();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs[0].header("authorization").is_some());
    assert_eq!(reqs[0].header("cookie"), Some("session=1"));
    let port = server.addr.port();
    assert_eq!(
        reqs[1].header("host"),
        Some(format!("localhost:{port}").as_str())
    );
    assert_eq!(reqs[1].header("authorization"), None);
    assert_eq!(reqs[1].header("cookie"), None);
    assert_eq!(reqs[1].header("accept"), Some("text/plain"));
}

#[tokio::test]
async fn garbage_instead_of_http_is_a_protocol_error() {
    let server = serve_raw(b"garbage, not HTTP at all\r\n\r\n").await;
    let r = run(json!({"url": server.url("/")})).await;
    r.assert_fails(Reason::Protocol, "invalid HTTP response");
    assert_eq!(r.value("harena_http_status_code", &[]), None);
}

#[tokio::test]
async fn closing_without_an_answer_is_a_protocol_error() {
    let server = serve_raw(b"").await;
    let r = run(json!({"url": server.url("/")})).await;
    r.assert_fails(
        Reason::Protocol,
        "connection closed before a complete response",
    );
}

#[tokio::test]
async fn bodies_are_read_up_to_max_body_bytes() {
    let big: &'static str = Box::leak("x".repeat(100_000).into_boxed_str());
    let server = serve(move |_| response(200, &[], big)).await;
    let r = run(json!({"url": server.url("/"), "max_body_bytes": 1000})).await;
    r.assert_ok();
    assert_eq!(
        r.value("harena_http_response_size_bytes", &[]),
        Some(1000.0)
    );
    assert!(r.detail.clone().unwrap().contains("cut at max_body_bytes"));
}

#[tokio::test]
async fn bad_ca_file_is_a_build_error() {
    let config: HttpConfig = serde_json::from_value(json!({
        "url": "https://127.0.0.1/",
        "tls_config": {"ca_file": "/nonexistent/ca.pem"},
    }))
    .unwrap();
    let err = HttpCheck::build(&config).unwrap_err();
    assert_eq!(err.field, "tls_config.ca_file");
    assert!(err.message.contains("/nonexistent/ca.pem"), "{err}");
}

#[test]
fn kind_and_defaults() {
    assert_eq!(HttpCheck::KIND, "http");
    assert_eq!(HttpCheck::DEFAULT_INTERVAL, Duration::from_secs(15));
    assert_eq!(HttpCheck::DEFAULT_TIMEOUT, Duration::from_secs(10));
    assert_eq!(
        build(json!({"url": "http://127.0.0.1:1/x"})).target(),
        "http://127.0.0.1:1/x"
    );
}

// ---------------------------------------------------------------------------------------
// URL templates: `{check.key}` filled from another check's exports at every run.

fn vars_with(check: &str, key: &str, value: &str) -> Arc<Vars> {
    let vars = Arc::new(Vars::default());
    set_var(&vars, check, key, value);
    vars
}

fn set_var(vars: &Vars, check: &str, key: &str, value: &str) {
    vars.merge(
        check,
        &BTreeMap::from([(key.to_string(), value.to_string())]),
    );
}

async fn run_vars(check: &HttpCheck, vars: &Arc<Vars>) -> Run {
    let mut ctx = RunContext::standalone(Instant::now() + TIMEOUT);
    ctx.vars = Arc::clone(vars);
    run_in(check, ctx).await
}

#[tokio::test]
async fn url_template_follows_the_exported_value() {
    let a = serve(|_| response(200, &[], "a")).await;
    let b = serve(|_| response(200, &[], "b")).await;
    let check = build(json!({"url": "http://{t.hostname}/health"}));
    assert_eq!(check.target(), "http://{t.hostname}/health");

    let vars = vars_with("t", "hostname", &a.addr.to_string());
    let r = run_vars(&check, &vars).await;
    r.assert_ok();
    let detail = r.detail.clone().unwrap();
    assert!(
        detail.ends_with(&format!("(url http://{}/health)", a.addr)),
        "{detail}"
    );
    assert_eq!(a.requests().len(), 1);
    assert_eq!(a.requests()[0].path, "/health");
    assert_eq!(
        a.requests()[0].header("host"),
        Some(a.addr.to_string().as_str())
    );

    // The tunnel restarted: the next run goes to the new value, no reload, no cache.
    set_var(&vars, "t", "hostname", &b.addr.to_string());
    let r = run_vars(&check, &vars).await;
    r.assert_ok();
    assert_eq!(a.requests().len(), 1);
    assert_eq!(b.requests().len(), 1);

    // A failure says which URL was used.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    set_var(&vars, "t", "hostname", &addr.to_string());
    let r = run_vars(&check, &vars).await;
    r.assert_fails(Reason::Refused, &format!("(url http://{addr}/health)"));
}

#[tokio::test]
async fn url_template_without_a_value_is_missing() {
    let check = build(json!({"url": "https://{tunnel.hostname}/health"}));
    let r = run_vars(&check, &Arc::new(Vars::default())).await;
    r.assert_fails(Reason::Missing, "no value yet for {tunnel.hostname}");
    assert_eq!(r.value("harena_http_status_code", &[]), None);

    // Another key of the same check is not this one.
    let vars = vars_with("tunnel", "url", "https://x.trycloudflare.com");
    let r = run_vars(&check, &vars).await;
    r.assert_fails(Reason::Missing, "no value yet for {tunnel.hostname}");

    // A value that makes no usable URL is no usable value.
    let vars = vars_with("tunnel", "hostname", "bad host");
    let r = run_vars(&check, &vars).await;
    r.assert_fails(
        Reason::Missing,
        "expand url https://{tunnel.hostname}/health",
    );
    let vars = vars_with("tunnel", "hostname", "user@evil.example");
    let r = run_vars(&check, &vars).await;
    r.assert_fails(Reason::Missing, "user info");
}

#[tokio::test]
async fn url_template_errors_are_config_errors() {
    for (url, needle) in [
        ("https://{tunnel}/health", "invalid placeholder {tunnel}"),
        ("https://{tunnel.hostname/health", "'{' without '}'"),
        ("https://tunnel.hostname}/health", "'}' without '{'"),
        ("https://{1tunnel.hostname}/", "invalid placeholder"),
        ("https://{tunnel.host name}/", "invalid placeholder"),
        ("https://{t.h}:x/", "bad port"),
        ("ftp://{t.h}/", "scheme"),
    ] {
        let e = serde_json::from_value::<HttpConfig>(json!({"url": url})).unwrap_err();
        assert!(e.to_string().contains(needle), "{url}: {e}");
    }
    let c: HttpConfig =
        serde_json::from_value(json!({"url": "http://{a.host}:{b.port}/{c-1.path_x}"})).unwrap();
    assert_eq!(
        c.placeholders(),
        [
            ("a".to_string(), "host".to_string()),
            ("b".to_string(), "port".to_string()),
            ("c-1".to_string(), "path_x".to_string())
        ]
    );
    assert!(HttpCheck::build(&c).is_ok());
}
