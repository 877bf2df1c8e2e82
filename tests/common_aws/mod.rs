//! Shared AWS test helpers: a moto server for the whole test binary, the process
//! environment the SDK's default credentials chain reads, an EC2 client for seeding,
//! a fault-injecting HTTP proxy that sits between the SDK and moto, and a listener
//! that counts the connections it receives.
//!
//! Use from a test binary with `mod common_aws;`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The access key id every test uses (moto accepts any).
pub const ACCESS_KEY_ID: &str = "HARENATESTKEY0000001";
/// The secret key every test uses: tests scan samples and details for it.
pub const SECRET_ACCESS_KEY: &str = "harena-test-secret-Zq9v3LkW0pX7";
/// The region every test uses.
pub const REGION: &str = "eu-west-1";

static ENV: Once = Once::new();

/// Sets the variables the SDK's default credentials chain reads: static test keys in
/// the environment, and IMDS disabled (so that nothing ever tries 169.254.169.254).
///
/// Call it first thing in every test, before the test starts a task or a thread.
pub fn init_env() {
    ENV.call_once(|| {
        // SAFETY: `set_var` races with threads that read the environment at the same
        // time. This runs once per process, at the very start of the first test that
        // gets here, before that test spawns anything; the other tests of the binary
        // call `init_env` first too, so they either wait on the `Once` or find it done,
        // and they all want the same values. libtest's own threads do not read these
        // variables. The subprocess tests pass an explicit environment instead.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID);
            std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY);
            std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
            std::env::remove_var("AWS_SESSION_TOKEN");
            std::env::remove_var("AWS_PROFILE");
            std::env::remove_var("AWS_ENDPOINT_URL");
            std::env::remove_var("AWS_ENDPOINT_URL_EC2");
        }
    });
}

/// A moto server on 127.0.0.1, killed when dropped (and, through `PR_SET_PDEATHSIG`,
/// when the test process ends, for the binary-wide one that is never dropped).
pub struct Moto {
    child: Mutex<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Moto {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts a moto server and waits until it answers.
    pub fn start() -> Moto {
        let found = Command::new("sh")
            .arg("-c")
            .arg("command -v moto_server")
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            found,
            "moto_server is not installed: install it: pip install 'moto[server]' (./scripts/test.sh does it)"
        );
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
            l.local_addr().expect("local addr").port()
        };
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        let mut cmd = Command::new("moto_server");
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the
        // child when the thread that spawned it ends (see `moto`).
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start moto_server");
        let moto = Moto {
            child: Mutex::new(child),
            addr,
        };
        let started = std::time::Instant::now();
        loop {
            if moto_answers(addr) {
                break;
            }
            if let Ok(Some(status)) = moto.child.lock().expect("child").try_wait() {
                panic!("moto_server exited at start with {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto_server did not answer on {addr} within 60s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // The first EC2 call loads moto's EC2 backend (about 1.5 s): pay it here, not
        // inside a test's timeout.
        let (status, body) = blocking_http_with(
            addr,
            "POST",
            "/",
            "Content-Type: application/x-www-form-urlencoded\r\nAuthorization: AWS4-HMAC-SHA256 Credential=HARENATESTKEY0000001/20250101/eu-west-1/ec2/aws4_request, SignedHeaders=host, Signature=0\r\n",
            "Action=DescribeRegions&Version=2016-11-15",
        );
        assert_eq!(status, 200, "moto warm-up call: {body}");
        moto
    }

    /// `POST /moto-api/reset`: wipes every resource.
    pub fn reset(&self) {
        let (status, _) = blocking_http(self.addr, "POST", "/moto-api/reset");
        assert_eq!(status, 200, "moto reset");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let mut c = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn moto_answers(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        && blocking_http(addr, "GET", "/moto-api/data.json").0 == 200
}

/// One blocking HTTP/1.1 request; (status, body). Status 0 when it fails.
fn blocking_http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    blocking_http_with(addr, method, path, "", "")
}

/// One blocking HTTP/1.1 request with extra header lines and a body.
fn blocking_http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The moto server of this test binary, started on first use by a thread that lives
/// as long as the process (the child dies with it).
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<&'static Moto> = OnceLock::new();
    MOTO.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("moto-owner".into())
            .spawn(move || {
                // PR_SET_PDEATHSIG fires when the spawning *thread* ends: this one
                // parks until the process exits.
                let moto: &'static Moto = Box::leak(Box::new(Moto::start()));
                let _ = tx.send(moto);
                loop {
                    std::thread::park();
                }
            })
            .expect("spawn the moto owner thread");
        rx.recv().expect("moto started")
    })
}

/// An EC2 client for seeding resources, built with the exporter's own SDK setup
/// (and so with the test credentials of [`init_env`]).
pub async fn ec2(endpoint: &str) -> aws_sdk_ec2::Client {
    init_env();
    let cfg =
        harena_exporter::clients::aws::sdk_config(REGION, Some(endpoint), Duration::from_secs(30))
            .await;
    aws_sdk_ec2::Client::new(&cfg)
}

/// What the proxy does with the requests it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward to moto and back.
    Pass,
    /// Answer EC2's `RequestLimitExceeded` in its XML error format, HTTP 503.
    Throttle,
    /// Answer an EC2 XML error with this HTTP status and code (e.g. 401 `AuthFailure`).
    Ec2Error(u16, &'static str),
    /// Answer this status with a plain-text body.
    Status(u16),
    /// Wait this long, then forward.
    Delay(Duration),
}

/// A fault-injecting HTTP/1.1 proxy on 127.0.0.1 in front of `upstream`. Every answer
/// carries `Connection: close`, so that the SDK never reuses a connection the proxy
/// closed.
pub struct FaultProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy in pass-through mode.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = l.local_addr().expect("proxy addr");
        let mode = Arc::new(Mutex::new(Mode::Pass));
        let requests = Arc::new(AtomicUsize::new(0));
        let (m, r) = (Arc::clone(&mode), Arc::clone(&requests));
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else { return };
                let (m, r) = (Arc::clone(&m), Arc::clone(&r));
                tokio::spawn(async move {
                    let _ = proxy_one(s, upstream, m, r).await;
                });
            }
        });
        FaultProxy {
            addr,
            mode,
            requests,
            task,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes what the next requests get.
    pub fn set(&self, mode: Mode) {
        *self.mode.lock().expect("mode") = mode;
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Reads one request (head and `Content-Length` body); `None` on EOF.
async fn read_request(s: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((head, body))
}

/// `head` with its `Connection` header replaced by `Connection: close`.
fn with_close(head: &str) -> String {
    let mut out = String::new();
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        let is_conn = line
            .split_once(':')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("connection"));
        if !is_conn {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

fn canned(status: u16, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} Injected\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// An error in EC2's query-protocol XML format.
fn ec2_error(status: u16, code: &str, message: &str) -> Vec<u8> {
    canned(
        status,
        "text/xml;charset=UTF-8",
        &format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</RequestID></Response>"
        ),
    )
}

async fn proxy_one(
    mut s: TcpStream,
    upstream: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    requests: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    let Some((head, body)) = read_request(&mut s).await else {
        return Ok(());
    };
    requests.fetch_add(1, Ordering::SeqCst);
    let mode = *mode.lock().expect("mode");
    let answer = match mode {
        Mode::Throttle => ec2_error(503, "RequestLimitExceeded", "Request limit exceeded."),
        Mode::Ec2Error(status, code) => ec2_error(status, code, "Injected by the test proxy."),
        Mode::Status(code) => canned(code, "text/plain", "Service Unavailable"),
        Mode::Pass | Mode::Delay(_) => {
            if let Mode::Delay(d) = mode {
                tokio::time::sleep(d).await;
            }
            let mut up = TcpStream::connect(upstream).await?;
            up.write_all(with_close(&head).as_bytes()).await?;
            up.write_all(&body).await?;
            let mut resp = Vec::new();
            up.read_to_end(&mut resp).await?;
            match resp.windows(4).position(|w| w == b"\r\n\r\n") {
                Some(i) => {
                    let head = String::from_utf8_lossy(&resp[..i + 4]).to_string();
                    let mut out = with_close(&head).into_bytes();
                    out.extend_from_slice(&resp[i + 4..]);
                    out
                }
                None => resp,
            }
        }
    };
    s.write_all(&answer).await?;
    s.shutdown().await
}

/// A listener that accepts connections, counts them and closes them at once.
pub struct CountingListener {
    /// Where it listens.
    pub addr: SocketAddr,
    count: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CountingListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CountingListener {
    /// Starts listening on 127.0.0.1:0.
    pub async fn start() -> CountingListener {
        let l = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind listener");
        let addr = l.local_addr().expect("addr");
        let count = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&count);
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else { return };
                c.fetch_add(1, Ordering::SeqCst);
                drop(s);
            }
        });
        CountingListener { addr, count, task }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}
