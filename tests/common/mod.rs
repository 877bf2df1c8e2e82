//! Shared test helpers: the exporter on 127.0.0.1:0, tiny HTTP targets on loopback,
//! a raw HTTP client, and promtool.
#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A GET (or other method) over a fresh connection; returns (status, body).
pub async fn http(method: &str, addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr)
        .await
        .expect("connect to the exporter");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("send request");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read response");
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = match text.split_once("\r\n\r\n") {
        Some((head, body))
            if head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked") =>
        {
            dechunk(body)
        }
        Some((_, body)) => body.to_string(),
        None => String::new(),
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// An HTTP server on 127.0.0.1 that answers every request with `status` and `body`.
pub async fn serve_status(status: u16, body: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind target");
    let addr = l.local_addr().expect("local addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

/// A listener that accepts connections and never answers.
pub async fn serve_hang() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind hang");
    let addr = l.local_addr().expect("local addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            held.push(s);
        }
    });
    addr
}

/// A port on 127.0.0.1 where nothing listens.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Fails with the install command when a tool is missing (tests never skip).
pub fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed: run `apt-get install -y {package}` (./scripts/test.sh does it)"
    );
}

/// Runs `promtool check metrics` on `text`; returns (exit code, stderr).
pub fn promtool_check_metrics(text: &str) -> (i32, String) {
    require("promtool", "prometheus");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("wait for promtool");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Value of the first series of `/metrics` text whose line starts with `prefix`.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let (series, _) = l.rsplit_once(' ').unwrap_or((l, ""));
            (series == name || series.starts_with(&format!("{name}{{")))
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write test file");
    p
}

/// Polls `f` every 50 ms until it returns true or `within` passes.
pub async fn eventually<F: FnMut() -> bool>(within: Duration, mut f: F) -> bool {
    let end = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}

/// Path of the built binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_harena-exporter")
}

/// Environment for every exporter a test starts: nothing can reach AWS or its metadata
/// service (the embedded config has AWS checks), whatever the developer's machine has.
pub const SAFE_ENV: &[(&str, &str)] = &[
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
];

/// Variables removed from an exporter's environment (credentials of the developer).
pub const REMOVED_ENV: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
];

/// A one-shot `harena-exporter` command with [`SAFE_ENV`] and without AWS credentials.
pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    for k in REMOVED_ENV {
        cmd.env_remove(k);
    }
    cmd.envs(SAFE_ENV.iter().copied());
    cmd
}

/// A `harena-exporter` process on a free port, stopped (SIGKILL) when dropped.
pub struct Exporter {
    /// The process.
    pub child: std::process::Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its log lines after the start line.
    pub logs: std::sync::mpsc::Receiver<String>,
    /// The "harena-exporter started" line.
    pub start_line: String,
    /// Its `--storage.path`.
    pub storage: tempfile::TempDir,
}

impl Exporter {
    /// Starts the binary with `args` (plus a free address and a fresh storage folder)
    /// and `envs` on top of [`SAFE_ENV`]; waits for the start line.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Exporter {
        use std::io::BufRead;
        let storage = tempfile::tempdir().expect("storage tempdir");
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .args(["--web.listen-address", "127.0.0.1:0"])
            .env("HOME", storage.path());
        if !args.contains(&"--storage.path") {
            cmd.arg("--storage.path").arg(storage.path());
        }
        for k in REMOVED_ENV {
            cmd.env_remove(k);
        }
        let mut child = cmd
            .envs(SAFE_ENV.iter().copied())
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start exporter");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(200))
                && line.contains("harena-exporter started")
            {
                let addr = line
                    .split_whitespace()
                    .find_map(|kv| kv.strip_prefix("address="))
                    .or_else(|| {
                        line.split("\"address\":\"")
                            .nth(1)
                            .and_then(|s| s.split('"').next())
                    })
                    .expect("address in the start line")
                    .parse()
                    .expect("socket address");
                return Exporter {
                    child,
                    addr,
                    logs: rx,
                    start_line: line,
                    storage,
                };
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("exporter did not start");
    }

    /// The process id, for signals.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits")
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Waits until every check ran once (via `/api/v1/checks`), at most `within`.
    pub async fn wait_all_ran(&self, within: Duration) -> bool {
        let end = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < end {
            let (_, api) = http("GET", self.addr, "/api/v1/checks").await;
            if api.contains("\"name\"") && !api.contains("\"success\":null") {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
