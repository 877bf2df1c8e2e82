//! `--web.config.file` with the real binary: real TLS handshakes against a CA made here
//! (trusted, untrusted, client certificates), basic auth with a bcrypt hash made here on
//! every endpoint, a broken file refusing the start with its position, certificate
//! rotation without a restart, the `silence` CLI over https with basic auth, and a client
//! that never finishes its handshake not blocking anyone. Every output is scanned for the
//! password.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{Exporter, command, write_file};

const USER: &str = "prometheus";
const PASSWORD: &str = "Web-Secret-5521-xyzzy";
/// Low cost: the binary is a debug build, where bcrypt is slow.
const COST: u32 = 5;

/// A CA and the certificates it signs, as PEM files in a folder.
struct Pki {
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Pki {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{name}-ca.pem")), cert.pem()).unwrap();
        Pki {
            key,
            cert,
            dir: dir.to_path_buf(),
        }
    }

    fn ca_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}-ca.pem"))
    }

    /// A leaf for `localhost` and 127.0.0.1: (certificate PEM, key PEM, certificate DER).
    fn issue(&self, cn: &str, client: bool) -> (String, String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    /// Issues a server certificate into `server.crt`/`server.key`, each replaced by a
    /// rename (as cert-manager or certbot do); returns the certificate's DER.
    fn install_server(&self, cn: &str) -> Vec<u8> {
        let (cert, key, der) = self.issue(cn, false);
        for (name, text) in [("server.crt", cert), ("server.key", key)] {
            let tmp = self.dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, self.dir.join(name)).unwrap();
        }
        der
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_pem_file: &Path) -> RootCertStore {
    let pem = std::fs::read(ca_pem_file).unwrap();
    let mut roots = RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    roots
}

fn client_trusting(ca_pem_file: &Path) -> Arc<ClientConfig> {
    Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots(ca_pem_file))
            .with_no_client_auth(),
    )
}

fn client_with_cert(ca_pem_file: &Path, cert_pem: &str, key_pem: &str) -> Arc<ClientConfig> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .map(Result::unwrap)
        .collect();
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .unwrap()
        .unwrap();
    Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots(ca_pem_file))
            .with_client_auth_cert(certs, key)
            .unwrap(),
    )
}

fn base64(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An answer over TLS.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: String,
    /// DER of the certificate the server presented.
    server_cert: Vec<u8>,
}

/// One request over a fresh TLS connection; `Err` names the phase that failed.
async fn https(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    path: &str,
    auth: Option<(&str, &str)>,
) -> Result<Answer, String> {
    let run = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let name = ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let server_cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(tls))
                .await
                .map_err(|e| format!("http handshake: {e}"))?;
        tokio::spawn(conn);
        let mut req = http::Request::builder()
            .uri(path)
            .header(http::header::HOST, "localhost");
        if let Some((u, p)) = auth {
            let token = base64(format!("{u}:{p}").as_bytes());
            req = req.header(http::header::AUTHORIZATION, format!("Basic {token}"));
        }
        let resp = sender
            .send_request(req.body(Full::new(Bytes::new())).unwrap())
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok(Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            server_cert,
        })
    };
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .map_err(|_| "no answer in 20s".to_string())?
}

/// The exporter's config: one TCP check against a closed port.
fn exporter_config(dir: &Path) -> PathBuf {
    write_file(
        dir,
        "config.yml",
        &format!(
            "checks:\n  - name: web\n    kind: tcp\n    address: 127.0.0.1:{}\n    interval: 1s\n    timeout: 500ms\n",
            common::closed_port()
        ),
    )
}

fn hash() -> String {
    bcrypt::hash(PASSWORD, COST).unwrap()
}

/// A web config with TLS from `server.crt`/`server.key` (relative paths), `extra` below
/// `tls_server_config`, the test user and an extra header.
fn web_config(dir: &Path, extra_tls: &str) -> PathBuf {
    write_file(
        dir,
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{extra_tls}http_server_config:\n  headers:\n    X-Frame-Options: deny\nbasic_auth_users:\n  {USER}: {}\n",
            hash()
        ),
    )
}

fn start(dir: &Path, web: &Path) -> Exporter {
    let cfg = exporter_config(dir);
    Exporter::start(
        &[
            "--config.file",
            cfg.to_str().unwrap(),
            "--web.config.file",
            web.to_str().unwrap(),
            "--log.level",
            "trace",
        ],
        &[],
    )
}

/// Every log line so far (the start line included) must not hold the password.
fn assert_no_password_in_logs(e: &Exporter) -> Vec<String> {
    let mut lines = vec![e.start_line.clone()];
    while let Ok(l) = e.logs.try_recv() {
        lines.push(l);
    }
    for l in &lines {
        assert!(!l.contains(PASSWORD), "password in a log line: {l}");
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_basic_auth_guard_every_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "main");
    let server_der = pki.install_server("harena");
    let web = web_config(dir.path(), "");
    let e = start(dir.path(), &web);
    assert!(e.start_line.contains("tls=true"), "{}", e.start_line);
    let trusted = client_trusting(&pki.ca_path("main"));

    // A real handshake with the CA made above; the server shows the certificate issued.
    let a = https(e.addr, &trusted, "/metrics", Some((USER, PASSWORD)))
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{a:?}");
    assert!(a.body.contains("harena_"), "{}", a.body);
    assert_eq!(a.server_cert, server_der);
    assert_eq!(a.headers["x-frame-options"], "deny");

    for path in ["/metrics", "/", "/api/v1/checks", "/-/healthy"] {
        let none = https(e.addr, &trusted, path, None).await.unwrap();
        assert_eq!(none.status, 401, "{path} without credentials: {none:?}");
        assert_eq!(none.headers["www-authenticate"], "Basic", "{path}");
        assert_eq!(none.headers["x-frame-options"], "deny", "{path}");
        let wrong = https(e.addr, &trusted, path, Some((USER, "not-the-password")))
            .await
            .unwrap();
        assert_eq!(wrong.status, 401, "{path} with a wrong password: {wrong:?}");
        assert_eq!(wrong.headers["www-authenticate"], "Basic", "{path}");
        let stranger = https(e.addr, &trusted, path, Some(("mallory", PASSWORD)))
            .await
            .unwrap();
        assert_eq!(stranger.status, 401, "{path} with an unknown user");
        let right = https(e.addr, &trusted, path, Some((USER, PASSWORD)))
            .await
            .unwrap();
        assert_eq!(right.status, 200, "{path} with the password: {right:?}");
    }
    // Paths without a route too: nothing is answered before authentication.
    let unknown = https(e.addr, &trusted, "/nonexistent", None).await.unwrap();
    assert_eq!(unknown.status, 401);

    // A client that trusts another CA refuses the handshake.
    let other = Pki::new(dir.path(), "other");
    let untrusted = client_trusting(&other.ca_path("other"));
    let err = https(e.addr, &untrusted, "/metrics", Some((USER, PASSWORD)))
        .await
        .unwrap_err();
    assert!(
        err.starts_with("handshake:") && err.contains("UnknownIssuer"),
        "{err}"
    );
    // Plain HTTP on the TLS port gets a 400 that says so, and no data.
    let (status, body) = common::http("GET", e.addr, "/-/healthy").await;
    assert_eq!(
        (status, body.as_str()),
        (400, "Client sent an HTTP request to an HTTPS server.\n")
    );

    assert_no_password_in_logs(&e);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_verified_when_required() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "main");
    pki.install_server("harena");
    let clients = Pki::new(dir.path(), "clients");
    let web = web_config(
        dir.path(),
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients-ca.pem\n",
    );
    let e = start(dir.path(), &web);
    let (cert, key, _) = clients.issue("prometheus", true);
    let with_cert = client_with_cert(&pki.ca_path("main"), &cert, &key);
    let a = https(e.addr, &with_cert, "/-/healthy", Some((USER, PASSWORD)))
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{a:?}");
    // Without a certificate, or with one from a CA the server does not trust: refused.
    let without = client_trusting(&pki.ca_path("main"));
    let err = https(e.addr, &without, "/-/healthy", Some((USER, PASSWORD)))
        .await
        .unwrap_err();
    assert!(!err.is_empty());
    let (cert, key, _) = pki.issue("intruder", true);
    let foreign = client_with_cert(&pki.ca_path("main"), &cert, &key);
    let err = https(e.addr, &foreign, "/-/healthy", Some((USER, PASSWORD)))
        .await
        .unwrap_err();
    assert!(!err.is_empty());
    assert_no_password_in_logs(&e);
}

/// Runs the binary until it exits (at most 20 s); returns (exit code, stderr).
fn run_to_exit(mut cmd: std::process::Command) -> (Option<i32>, String) {
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return (status.code(), err);
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the exporter did not exit with a broken web config");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_broken_web_config_refuses_the_start_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "main");
    pki.install_server("harena");
    let cfg = exporter_config(dir.path());
    let storage = tempfile::tempdir().unwrap();
    let cases = [
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_fil: server.key\n".to_string(),
            "web.yml:3:3: tls_server_config.key_fil: unknown field \"key_fil\", did you mean \"key_file\"?",
        ),
        (
            // The password pasted instead of its hash: refused, and never echoed.
            format!("basic_auth_users:\n  {USER}: {PASSWORD}\n"),
            "web.yml:2:15: basic_auth_users.prometheus: not a bcrypt hash",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: missing.key\n".to_string(),
            "web.yml:3:13: tls_server_config.key_file: read ",
        ),
    ];
    for (text, want) in cases {
        let web = write_file(dir.path(), "web.yml", &text);
        let mut cmd = command(&[
            "--config.file",
            cfg.to_str().unwrap(),
            "--web.config.file",
            web.to_str().unwrap(),
            "--web.listen-address",
            "127.0.0.1:0",
            "--storage.path",
            storage.path().to_str().unwrap(),
        ]);
        cmd.env("HOME", storage.path());
        let (code, stderr) = run_to_exit(cmd);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains(want), "want {want}\ngot {stderr}");
        assert!(!stderr.contains("harena-exporter started"), "{stderr}");
        assert!(!stderr.contains(PASSWORD), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "main");
    let first = pki.install_server("first");
    let web = web_config(dir.path(), "");
    let e = start(dir.path(), &web);
    let trusted = client_trusting(&pki.ca_path("main"));
    let a = https(e.addr, &trusted, "/-/healthy", Some((USER, PASSWORD)))
        .await
        .unwrap();
    assert_eq!(a.server_cert, first);

    // Rotation: the next connections get the new certificate (poll, no fixed sleep).
    let second = pki.install_server("second");
    assert_ne!(first, second);
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let a = https(e.addr, &trusted, "/-/healthy", Some((USER, PASSWORD)))
            .await
            .unwrap();
        assert_eq!(a.status, 200);
        if a.server_cert == second {
            break;
        }
        assert!(Instant::now() < end, "the new certificate was never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A broken certificate file: logged, and the last good certificate stays.
    std::fs::write(dir.path().join("server.crt"), "not a certificate\n").unwrap();
    let a = https(e.addr, &trusted, "/-/healthy", Some((USER, PASSWORD)))
        .await
        .unwrap();
    assert_eq!((a.status, &a.server_cert), (200, &second));
    let mut seen = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while !seen
        .iter()
        .any(|l: &String| l.contains("web config reload refused") && l.contains("server.crt"))
    {
        assert!(Instant::now() < end, "no reload error logged: {seen:#?}");
        if let Ok(l) = e.logs.recv_timeout(Duration::from_millis(200)) {
            assert!(!l.contains(PASSWORD), "{l}");
            seen.push(l);
        }
    }

    // A new password in the web config applies without a restart too.
    let new_password = "Second-Password-7730";
    write_file(
        dir.path(),
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  {USER}: {}\n",
            bcrypt::hash(new_password, COST).unwrap()
        ),
    );
    pki.install_server("third");
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let a = https(e.addr, &trusted, "/-/healthy", Some((USER, new_password)))
            .await
            .unwrap();
        if a.status == 200 {
            break;
        }
        assert!(Instant::now() < end, "the new password never worked: {a:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let old = https(e.addr, &trusted, "/-/healthy", Some((USER, PASSWORD)))
        .await
        .unwrap();
    assert_eq!(old.status, 401);
    for l in assert_no_password_in_logs(&e) {
        assert!(!l.contains(new_password), "{l}");
    }
}

fn silence(url: &str, flags: &[&str], env: &[(&str, &str)], args: &[&str]) -> (bool, String) {
    let mut cmd = command(&[&["silence", "--web.url", url], flags, args].concat());
    cmd.env_remove("HARENA_WEB_PASSWORD");
    cmd.envs(env.iter().copied());
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains(PASSWORD),
        "password in the CLI output: {text}"
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_silence_cli_speaks_https_with_basic_auth() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "main");
    pki.install_server("harena");
    let web = web_config(dir.path(), "");
    let e = start(dir.path(), &web);
    let url = format!("https://{}", e.addr);
    let ca = pki.ca_path("main");
    let ca = ca.to_str().unwrap();
    let password_file = write_file(dir.path(), "password", &format!("{PASSWORD}\n"));
    let env = [("HARENA_WEB_PASSWORD", PASSWORD)];

    // The password from the environment.
    let (ok, out) = silence(
        &url,
        &["--web.ca-file", ca, "--web.username", USER],
        &env,
        &["add", "alertname=WebDown", "--comment", "over https"],
    );
    assert!(ok, "{out}");
    let id = out.trim().to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    // The password from a file.
    let (ok, out) = silence(
        &url,
        &[
            "--web.ca-file",
            ca,
            "--web.username",
            USER,
            "--web.password-file",
            password_file.to_str().unwrap(),
        ],
        &[],
        &["list"],
    );
    assert!(
        ok && out.contains(&id) && out.contains("over https"),
        "{out}"
    );

    // No credentials, a wrong password: 401, with a hint.
    let (ok, out) = silence(&url, &["--web.ca-file", ca], &[], &["list"]);
    assert!(
        !ok && out.contains("401") && out.contains("--web.username"),
        "{out}"
    );
    let (ok, out) = silence(
        &url,
        &["--web.ca-file", ca, "--web.username", USER],
        &[("HARENA_WEB_PASSWORD", "wrong")],
        &["list"],
    );
    assert!(!ok && out.contains("401"), "{out}");
    // A user without a password is refused before any request.
    let (ok, out) = silence(
        &url,
        &["--web.ca-file", ca, "--web.username", USER],
        &[],
        &["list"],
    );
    assert!(!ok && out.contains("HARENA_WEB_PASSWORD"), "{out}");
    // Without the CA the certificate is not trusted; skipping verification works.
    let (ok, out) = silence(&url, &["--web.username", USER], &env, &["list"]);
    assert!(!ok && out.contains("TLS handshake"), "{out}");
    let (ok, out) = silence(
        &url,
        &["--web.insecure-skip-verify", "--web.username", USER],
        &env,
        &["expire", &id],
    );
    assert!(ok, "{out}");

    assert_no_password_in_logs(&e);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_handshakes_blocks_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "main");
    pki.install_server("harena");
    let web = web_config(dir.path(), "");
    let e = start(dir.path(), &web);
    let trusted = client_trusting(&pki.ca_path("main"));

    // Silent connections, and one stuck half-way through a TLS record.
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(TcpStream::connect(e.addr).await.unwrap());
    }
    let mut partial = TcpStream::connect(e.addr).await.unwrap();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();

    let started = Instant::now();
    let a = https(e.addr, &trusted, "/-/healthy", Some((USER, PASSWORD)))
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the second client waited {:?}",
        started.elapsed()
    );

    // The server drops a handshake that does not finish in time (10 s).
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(30), partial.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the stuck handshake was never dropped: {closed:?}"
    );
    assert_no_password_in_logs(&e);

    // SIGTERM with silent connections still open: the exporter stops promptly.
    let mut e = e;
    e.signal(libc::SIGTERM);
    let end = Instant::now() + Duration::from_secs(15);
    while e.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < end, "the exporter did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_works_without_tls() {
    let dir = tempfile::tempdir().unwrap();
    let web = write_file(
        dir.path(),
        "web.yml",
        &format!("basic_auth_users:\n  {USER}: {}\n", hash()),
    );
    let e = start(dir.path(), &web);
    assert!(e.start_line.contains("tls=false"), "{}", e.start_line);
    let (status, _) = common::http("GET", e.addr, "/-/healthy").await;
    assert_eq!(status, 401);
    let url = format!("http://{}", e.addr);
    let (ok, out) = silence(
        &url,
        &["--web.username", USER],
        &[("HARENA_WEB_PASSWORD", PASSWORD)],
        &["list"],
    );
    assert!(ok && out.starts_with("ID"), "{out}");
    assert_no_password_in_logs(&e);
}
