//! A real SMTP server for tests: aiosmtpd (PyPI `aiosmtpd`) driven by `smtpd.py` next
//! to this file, on a free 127.0.0.1 port, stopped when the [`SmtpServer`] is dropped.
//!
//! ```ignore
//! #[path = "common_smtp/mod.rs"]
//! mod common_smtp;
//! use common_smtp::{SmtpOptions, SmtpServer};
//!
//! let smtp = SmtpServer::start(SmtpOptions::starttls("alice", "s3cret"));
//! // email_configs: smarthost: smtp.smarthost(), tls_config: {ca_file: smtp.ca_file()}
//! let got = smtp.wait_for(1, Duration::from_secs(10)).await;
//! assert_eq!(got[0].subject, "[FIRING] TargetDown");
//! ```
//!
//! Modes ([`SmtpMode`]): plain, STARTTLS (AUTH offered and required only after
//! STARTTLS, as `auth_require_tls=True`), and implicit TLS (SMTPS, AUTH offered at once:
//! aiosmtpd never offers AUTH on SMTPS with `auth_require_tls=True`, see TESTBED.md).
//! Options: credentials (AUTH required when set), recipients to refuse with 550, a delay
//! before the reply to DATA, a fixed reply to DATA (e.g. `451 …`), and a stall before
//! every reply (greeting included).
//!
//! Every message that reaches the end of DATA is recorded as one JSON line in
//! [`SmtpServer::messages_file`]; [`SmtpServer::messages`] reads them, parsed by
//! Python's `email` package (subject decoded, text and HTML parts, headers).
//! [`Received::accepted`] is true only when the server answered 250 while the client
//! was still connected: a message whose client vanished during a slow DATA is recorded
//! with `accepted: false`. [`SmtpServer::accepted`] keeps only those.
//!
//! The certificate (self-signed, SAN `IP:127.0.0.1` and `localhost`, made with rcgen)
//! is at [`SmtpServer::ca_file`]: give it to the client as `tls_config.ca_file`. The
//! port is never 465, so an implicit-TLS client needs `tls: implicit` explicitly.
//!
//! [`SmtpServer::stop`] and [`SmtpServer::restart`] take the server down and bring it
//! back on the same port, with the same messages file (an outage); [`SmtpServer::restart_with`]
//! changes the options at the same time. The server also exits when the test process
//! dies (it watches its stdin), so none outlives a killed test.
//!
//! A missing Python or aiosmtpd fails the test with `pip install aiosmtpd`; it never
//! skips. `HARENA_TEST_PYTHON` picks the interpreter (default `python3`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How the server speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmtpMode {
    /// No TLS at all.
    #[default]
    Plain,
    /// STARTTLS offered and required before MAIL; AUTH only after STARTTLS.
    StartTls,
    /// TLS from the first byte (SMTPS, usually port 465).
    ImplicitTls,
}

/// What the server does; build with [`SmtpOptions::plain`], [`SmtpOptions::starttls`] or
/// [`SmtpOptions::implicit_tls`], then the `with_*` methods.
#[derive(Debug, Clone, Default)]
pub struct SmtpOptions {
    /// TLS mode.
    pub mode: SmtpMode,
    /// `(username, password)`: AUTH PLAIN/LOGIN required with exactly these; any other
    /// pair gets `535 5.7.8 Authentication credentials invalid`.
    pub auth: Option<(String, String)>,
    /// A Python regular expression (`re.search`): matching recipients get
    /// `550 5.1.1 <addr>: recipient refused by the test server`.
    pub refuse_rcpt: Option<String>,
    /// Wait this long before answering the end of DATA.
    pub data_delay: Duration,
    /// Answer the end of DATA with this line instead of 250 (e.g. `451 4.3.0 try later`
    /// or `554 5.6.0 rejected`); the message is then recorded with `accepted: false`.
    pub data_reply: Option<String>,
    /// Wait this long before every reply, the greeting included.
    pub stall: Duration,
}

impl SmtpOptions {
    /// No TLS, no AUTH.
    pub fn plain() -> Self {
        SmtpOptions::default()
    }

    /// STARTTLS required, then AUTH required with these credentials.
    pub fn starttls(username: &str, password: &str) -> Self {
        SmtpOptions {
            mode: SmtpMode::StartTls,
            auth: Some((username.into(), password.into())),
            ..SmtpOptions::default()
        }
    }

    /// Implicit TLS (SMTPS), then AUTH required with these credentials.
    pub fn implicit_tls(username: &str, password: &str) -> Self {
        SmtpOptions {
            mode: SmtpMode::ImplicitTls,
            auth: Some((username.into(), password.into())),
            ..SmtpOptions::default()
        }
    }

    /// Require AUTH with these credentials (in any mode).
    pub fn with_auth(mut self, username: &str, password: &str) -> Self {
        self.auth = Some((username.into(), password.into()));
        self
    }

    /// Refuse recipients matching this Python regex with 550.
    pub fn with_refused(mut self, pattern: &str) -> Self {
        self.refuse_rcpt = Some(pattern.into());
        self
    }

    /// Wait before answering the end of DATA.
    pub fn with_data_delay(mut self, delay: Duration) -> Self {
        self.data_delay = delay;
        self
    }

    /// Answer the end of DATA with this line instead of 250.
    pub fn with_data_reply(mut self, reply: &str) -> Self {
        self.data_reply = Some(reply.into());
        self
    }

    /// Wait before every reply.
    pub fn with_stall(mut self, stall: Duration) -> Self {
        self.stall = stall;
        self
    }
}

/// One message that reached the end of DATA.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Received {
    /// Envelope sender (`MAIL FROM`).
    pub mail_from: String,
    /// Envelope recipients the server accepted (`RCPT TO`).
    pub rcpt_tos: Vec<String>,
    /// The message as sent (headers and MIME body, CRLF line ends).
    pub raw: String,
    /// True when the server answered 250 with the client still connected.
    pub accepted: bool,
    /// True when the connection was encrypted (STARTTLS or implicit TLS).
    pub tls: bool,
    /// The user that authenticated, if any.
    pub auth_user: Option<String>,
    /// `Subject`, decoded.
    pub subject: String,
    /// `Message-ID`, with its angle brackets.
    pub message_id: String,
    /// Every header, in order, decoded.
    pub headers: Vec<(String, String)>,
    /// The `text/plain` part (or the body of a single-part text message), decoded.
    pub text: String,
    /// The `text/html` part, decoded; empty when there is none.
    pub html: String,
    /// Unix time at which the server recorded it.
    pub received_at: f64,
}

impl Received {
    /// The first header of this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A running aiosmtpd; killed when dropped.
pub struct SmtpServer {
    addr: SocketAddr,
    options: SmtpOptions,
    messages_file: PathBuf,
    ca_file: PathBuf,
    key_file: PathBuf,
    log_file: PathBuf,
    child: Option<(Child, ChildStdin)>,
    // Kept last: removed after the server is stopped.
    dir: tempfile::TempDir,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common_smtp/smtpd.py")
}

fn python() -> String {
    std::env::var("HARENA_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

impl SmtpServer {
    /// Starts a server on a free 127.0.0.1 port (about 0.3 s) and waits until it listens.
    ///
    /// # Panics
    /// When Python or aiosmtpd is missing (with `pip install aiosmtpd`), or the server
    /// does not start (with its log).
    pub fn start(options: SmtpOptions) -> SmtpServer {
        let dir = tempfile::Builder::new()
            .prefix("harena-smtp-")
            .tempdir()
            .expect("create a temporary folder");
        let key = rcgen::KeyPair::generate().expect("generate a key");
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("certificate parameters");
        let cert = params.self_signed(&key).expect("self-sign");
        let ca_file = dir.path().join("smtpd.crt");
        std::fs::write(&ca_file, cert.pem()).expect("write the certificate");
        let key_file = dir.path().join("smtpd.key");
        std::fs::write(&key_file, key.serialize_pem()).expect("write the key");
        let messages_file = dir.path().join("messages.jsonl");
        std::fs::write(&messages_file, "").expect("create the messages file");
        let mut server = SmtpServer {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            options,
            messages_file,
            ca_file,
            key_file,
            log_file: dir.path().join("smtpd.log"),
            child: None,
            dir,
        };
        server.spawn(0);
        server
    }

    fn spawn(&mut self, port: u16) {
        let o = &self.options;
        let mut cmd = Command::new(python());
        cmd.arg(script())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--messages")
            .arg(&self.messages_file)
            .arg("--cert")
            .arg(&self.ca_file)
            .arg("--key")
            .arg(&self.key_file)
            .args([
                "--mode",
                match o.mode {
                    SmtpMode::Plain => "plain",
                    SmtpMode::StartTls => "starttls",
                    SmtpMode::ImplicitTls => "implicit",
                },
            ])
            .args(["--data-delay", &o.data_delay.as_secs_f64().to_string()])
            .args(["--stall", &o.stall.as_secs_f64().to_string()]);
        if let Some((user, password)) = &o.auth {
            cmd.args(["--username", user, "--password", password]);
        }
        if let Some(p) = &o.refuse_rcpt {
            cmd.args(["--refuse-rcpt", p]);
        }
        if let Some(r) = &o.data_reply {
            cmd.args(["--data-reply", r]);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .expect("open the server log");
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(log);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!(
                "start {} for the test SMTP server: {e}: install Python 3 and aiosmtpd \
                 (apt-get install -y python3 python3-pip && pip install aiosmtpd)",
                python()
            ),
        };
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        // Read the READY line on a thread, so that a hung interpreter cannot hang the test.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok);
            let _ = tx.send(first);
            // Keep draining, so that a stray print never blocks the server.
            for _ in lines {}
        });
        let ready = rx.recv_timeout(Duration::from_secs(30)).ok().flatten();
        let port = ready
            .as_deref()
            .and_then(|l| l.strip_prefix("READY "))
            .and_then(|p| p.trim().parse::<u16>().ok());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            let log = self.log();
            if log.contains("MISSING aiosmtpd") || log.contains("No module named 'aiosmtpd'") {
                panic!("aiosmtpd is not installed: pip install aiosmtpd\n{log}");
            }
            panic!("the test SMTP server did not start (got {ready:?}):\n{log}");
        };
        self.addr = SocketAddr::from(([127, 0, 0, 1], port));
        self.child = Some((child, stdin));
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`, for `smarthost`.
    pub fn smarthost(&self) -> String {
        self.addr.to_string()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// PEM of the server's self-signed certificate: the client's `tls_config.ca_file`.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The JSON-lines file the server appends every message to.
    pub fn messages_file(&self) -> &Path {
        &self.messages_file
    }

    /// The options it runs with.
    pub fn options(&self) -> &SmtpOptions {
        &self.options
    }

    /// What the server printed on stderr (errors, tracebacks).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// Every message recorded so far, accepted or not, in arrival order.
    pub fn messages(&self) -> Vec<Received> {
        let text = std::fs::read_to_string(&self.messages_file).unwrap_or_default();
        text.lines()
            // The last line may be half-written while the server appends it.
            .filter(|l| l.ends_with('}'))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The messages the server accepted (250 while the client was connected).
    pub fn accepted(&self) -> Vec<Received> {
        self.messages().into_iter().filter(|m| m.accepted).collect()
    }

    /// Waits until at least `n` messages were accepted and returns all accepted ones.
    ///
    /// # Panics
    /// After `timeout`, with what arrived so far and the server log.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.accepted();
            if got.len() >= n {
                return got;
            }
            if Instant::now() >= deadline {
                panic!(
                    "waited {timeout:?} for {n} accepted message(s), got {}: {:#?}\nserver log:\n{}",
                    got.len(),
                    self.messages(),
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the server process runs.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Stops the server (SIGKILL); connections are cut and the port stops answering.
    pub fn stop(&mut self) {
        if let Some((mut child, stdin)) = self.child.take() {
            drop(stdin);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, with the same options and messages file.
    ///
    /// # Panics
    /// When the port was taken meanwhile, or the server does not start.
    pub fn restart(&mut self) {
        self.stop();
        let port = self.addr.port();
        self.spawn(port);
    }

    /// Starts it again on the same port and messages file, with other options (the TLS
    /// certificate stays the same).
    pub fn restart_with(&mut self, options: SmtpOptions) {
        self.stop();
        self.options = options;
        let port = self.addr.port();
        self.spawn(port);
    }

    /// The temporary folder holding the certificate, key, log and messages.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}
