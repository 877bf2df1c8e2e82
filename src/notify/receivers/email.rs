//! The `email` integration: one multipart (plain text and HTML) email per notification,
//! over SMTP with STARTTLS, implicit TLS or none, with Alertmanager's `email_config`
//! keys and its `global.smtp_*` defaults.
//!
//! ```yaml
//! alerting:
//!   global:
//!     smtp_smarthost_env: HARENA_SMTP_SMARTHOST   # smtp.example.org:587
//!     smtp_from: harena-exporter@example.org
//!     smtp_auth_username: harena
//!     smtp_auth_password_file: /run/secrets/smtp_password
//!   receivers:
//!     - name: ops
//!       email_configs:
//!         - to: ops@example.org, oncall@example.org
//!           send_resolved: true
//! ```
//!
//! One send is one SMTP transaction, bounded as a whole by `timeout`: resolve → connect
//! → TLS handshake (implicit TLS) → greeting and `EHLO` → `STARTTLS` and `EHLO` again →
//! `AUTH` → `MAIL FROM` → one `RCPT TO` per recipient → `DATA` → `QUIT`. It runs on
//! lettre's low-level [`AsyncSmtpConnection`] rather than its transport, because the
//! transport gives up at the first refused recipient: here a refused recipient is noted
//! and the others still get the email. TCP and TLS are the project's own
//! ([`crate::net`]), so `tls_config` means the same as for the checks and every phase
//! fails with its own reason; STARTTLS swaps the TLS stream in under lettre's connection.
//!
//! Failures map to [`SendError`] reasons (the outbox retries the retryable ones):
//!
//! | what happened                                          | reason          | retried |
//! |--------------------------------------------------------|-----------------|---------|
//! | smarthost/from/to/user/password from an unset variable | `not_configured`| yes     |
//! | host name does not resolve                             | `dns`           | yes     |
//! | connection refused or unreachable                      | `refused`       | yes     |
//! | `timeout` passed, in any phase                         | `timeout`       | yes     |
//! | TLS handshake, STARTTLS missing or refused, password over cleartext | `tls` | yes     |
//! | AUTH refused (535…), no usable mechanism, 530 on MAIL  | `auth`          | yes     |
//! | 4xx to MAIL, every RCPT, DATA or the message           | `rejected`      | yes     |
//! | 5xx to MAIL, every RCPT, DATA or the message           | `rejected`      | no      |
//! | bad greeting, connection closed, unexpected reply      | `protocol`      | yes     |
//! | a template that fails to render                        | `template`      | no      |
//!
//! AUTH and TLS failures are retried: the operator fixes the password or the certificate
//! and the queued notification goes out. A permanent refusal of the message itself
//! cannot be fixed by sending it again. When only some recipients are refused, the send
//! succeeds (the others got it) and a warning names the refused ones. Error messages and
//! logs never hold the password: it is only read at send time, and every message is
//! scrubbed of it.

use crate::model::escape_html as html_escape;
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream};
use lettre::transport::smtp::commands::{Auth, Data, Ehlo, Mail, Rcpt, Starttls};
use lettre::transport::smtp::extension::{
    ClientId, Extension, MailBodyParameter, MailParameter, ServerInfo,
};
use lettre::transport::smtp::response::Response;
use rustls::ClientConfig;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

use super::BuildError;
use crate::checks::{CheckError, Reason};
use crate::config::types::{PromDuration, Secret, SecretSource, TlsConfig};
use crate::net::{self, IpProtocol};
use crate::notify::template::{EmailTemplates, RenderedEmail};
use crate::notify::{Notification, SendError};

/// Default bound of one send.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `EHLO` name, as Alertmanager.
const DEFAULT_HELLO: &str = "localhost";
/// Passwords at least this long are removed from error messages.
const MIN_SCRUBBED_CHARS: usize = 4;
/// The subject of `send-test-email`.
pub const TEST_SUBJECT: &str = "harena-exporter test email";
/// Headers the exporter sets itself; `headers` may not override them.
const RESERVED_HEADERS: [&str; 11] = [
    "From",
    "To",
    "Cc",
    "Bcc",
    "Message-ID",
    "Date",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "X-Harena-Status",
    "X-Harena-Group-Key",
];

/// How the connection is encrypted: `tls` in an `email_configs` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Plain TCP, then `STARTTLS`, which must be offered and must succeed.
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Implicit,
    /// No TLS at all, even when the server offers `STARTTLS` (a local relay).
    None,
}

/// One entry of a receiver's `email_configs` (Alertmanager's `email_config`, plus `tls`,
/// `*_env` keys and template files).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// Recipients, comma-separated. Required unless `to_env` is set.
    /// Example: `to: ops@example.org, Oncall <oncall@example.org>`.
    #[serde(default)]
    pub to: Option<String>,
    /// Environment variable holding the recipients (read at send time). Default none.
    /// Example: `to_env: HARENA_ALERT_EMAIL`.
    #[serde(default)]
    pub to_env: Option<String>,
    /// Sender address. Default `alerting.global.smtp_from`.
    /// Example: `from: Harena monitor <harena@example.org>`.
    #[serde(default)]
    pub from: Option<String>,
    /// Environment variable holding the sender (read at send time). Default none.
    /// Example: `from_env: HARENA_SMTP_FROM`.
    #[serde(default)]
    pub from_env: Option<String>,
    /// SMTP server, `host:port`. Default `alerting.global.smtp_smarthost`.
    /// Example: `smarthost: smtp.example.org:587`.
    #[serde(default)]
    pub smarthost: Option<String>,
    /// Environment variable holding the `host:port` (read at send time). Default none.
    /// Example: `smarthost_env: HARENA_SMTP_SMARTHOST`.
    #[serde(default)]
    pub smarthost_env: Option<String>,
    /// Name sent in `EHLO`. Default `alerting.global.smtp_hello`, else `localhost`.
    /// Example: `hello: monitor.example.org`.
    #[serde(default)]
    pub hello: Option<String>,
    /// User to authenticate as (AUTH PLAIN or LOGIN). Default
    /// `alerting.global.smtp_auth_username`, else no AUTH. Example: `auth_username: harena`.
    #[serde(default)]
    pub auth_username: Option<String>,
    /// Environment variable holding the user (read at send time). Default none.
    /// Example: `auth_username_env: HARENA_SMTP_USER`.
    #[serde(default)]
    pub auth_username_env: Option<String>,
    /// File holding the password (read at every send, trailing newline trimmed). Default
    /// `alerting.global.smtp_auth_password_file`.
    /// Example: `auth_password_file: /run/secrets/smtp_password`.
    #[serde(default)]
    pub auth_password_file: Option<PathBuf>,
    /// Environment variable holding the password. Default
    /// `alerting.global.smtp_auth_password_env`.
    /// Example: `auth_password_env: HARENA_SMTP_PASSWORD`.
    #[serde(default)]
    pub auth_password_env: Option<String>,
    /// Require STARTTLS (when `tls` is not set). Default `alerting.global.smtp_require_tls`,
    /// which defaults to `true`. With `false`, STARTTLS is still used when the server
    /// offers it, as Alertmanager does. Example: `require_tls: false`.
    #[serde(default)]
    pub require_tls: Option<bool>,
    /// `starttls`, `implicit` or `none`. Default: `implicit` when the port is 465, else
    /// `starttls` when `require_tls` holds, else STARTTLS only when the server offers it.
    /// Example: `tls: implicit`.
    #[serde(default)]
    pub tls: Option<TlsMode>,
    /// TLS settings (`ca_file`, `insecure_skip_verify`, `server_name`, `cert_file`,
    /// `key_file`). Default: the built-in roots, the smarthost's host name.
    /// Example: `tls_config: {ca_file: /etc/harena/smtp-ca.pem}`.
    #[serde(default)]
    pub tls_config: TlsConfig,
    /// Extra headers, literal text. `Subject` here is the subject template. The exporter's
    /// own headers (`From`, `To`, `Message-ID`, `Date`, MIME headers, `X-Harena-*`) cannot
    /// be set. Default none. Example: `headers: {Reply-To: ops@example.org}`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Whether resolved notifications are sent. Default `false` (Alertmanager's default
    /// for email). Example: `send_resolved: true`.
    #[serde(default)]
    pub send_resolved: bool,
    /// Subject template. Default: the built-in one, which names the alerts.
    /// Example: `subject: '[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }}'`.
    #[serde(default)]
    pub subject: Option<String>,
    /// Plain-text body template. Default: the built-in one. Example: `text: '{{ .Status }}'`.
    #[serde(default)]
    pub text: Option<String>,
    /// HTML body template. Default: the built-in one. Example: `html: '<p>{{ .Status }}</p>'`.
    #[serde(default)]
    pub html: Option<String>,
    /// File holding the subject template, read when the config loads. Default none.
    /// Example: `subject_file: /etc/harena/email/subject.tmpl`.
    #[serde(default)]
    pub subject_file: Option<PathBuf>,
    /// File holding the plain-text template, read when the config loads. Default none.
    /// Example: `text_file: /etc/harena/email/text.tmpl`.
    #[serde(default)]
    pub text_file: Option<PathBuf>,
    /// File holding the HTML template, read when the config loads. Default none.
    /// Example: `html_file: /etc/harena/email/html.tmpl`.
    #[serde(default)]
    pub html_file: Option<PathBuf>,
    /// Bound of one whole send, connection to `QUIT`. Default `30s`. Example: `timeout: 1m`.
    #[serde(default)]
    pub timeout: Option<PromDuration>,
}

/// `alerting.global`: the SMTP defaults of every `email_configs` entry, with
/// Alertmanager's names, plus `*_env` keys so that a config can take everything from the
/// environment.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpGlobal {
    /// Default sender. Example: `smtp_from: harena-exporter@example.org`.
    #[serde(default)]
    pub smtp_from: Option<String>,
    /// Environment variable holding the default sender. Default none.
    /// Example: `smtp_from_env: HARENA_SMTP_FROM`.
    #[serde(default)]
    pub smtp_from_env: Option<String>,
    /// Default SMTP server, `host:port`. Default none.
    /// Example: `smtp_smarthost: smtp.example.org:587`.
    #[serde(default)]
    pub smtp_smarthost: Option<String>,
    /// Environment variable holding the default `host:port`. Default none.
    /// Example: `smtp_smarthost_env: HARENA_SMTP_SMARTHOST`.
    #[serde(default)]
    pub smtp_smarthost_env: Option<String>,
    /// Default `EHLO` name. Default `localhost`. Example: `smtp_hello: monitor.example.org`.
    #[serde(default)]
    pub smtp_hello: Option<String>,
    /// Default AUTH user. Default none (no AUTH). Example: `smtp_auth_username: harena`.
    #[serde(default)]
    pub smtp_auth_username: Option<String>,
    /// Environment variable holding the default AUTH user. Default none.
    /// Example: `smtp_auth_username_env: HARENA_SMTP_USER`.
    #[serde(default)]
    pub smtp_auth_username_env: Option<String>,
    /// File holding the default password. Default none.
    /// Example: `smtp_auth_password_file: /run/secrets/smtp_password`.
    #[serde(default)]
    pub smtp_auth_password_file: Option<PathBuf>,
    /// Environment variable holding the default password. Default none.
    /// Example: `smtp_auth_password_env: HARENA_SMTP_PASSWORD`.
    #[serde(default)]
    pub smtp_auth_password_env: Option<String>,
    /// Default of `require_tls`. Default `true`. Example: `smtp_require_tls: false`.
    #[serde(default)]
    pub smtp_require_tls: Option<bool>,
}

/// A value from the config, or from an environment variable read at send time.
#[derive(Debug, Clone, PartialEq)]
enum Setting<T> {
    Fixed(T),
    Env(String),
}

impl<T: Clone> Setting<T> {
    /// The value now; `parse` turns the variable's text into `T`.
    fn get(&self, parse: impl Fn(&str) -> Result<T, String>) -> Result<T, String> {
        match self {
            Setting::Fixed(v) => Ok(v.clone()),
            Setting::Env(name) => match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => {
                    parse(v.trim()).map_err(|e| format!("{name}: {e}"))
                }
                _ => Err(format!("{name} is not set")),
            },
        }
    }
}

/// Picks the value of one setting: this entry's literal or `_env` key, else the global
/// one's. Both keys of one level set is an error.
fn pick(
    key: &str,
    literal: Option<&String>,
    env: Option<&String>,
    global_key: &str,
    global_literal: Option<&String>,
    global_env: Option<&String>,
) -> Result<Option<Setting<String>>, BuildError> {
    let level = |prefix: &str, k: &str, lit: Option<&String>, env: Option<&String>| match (lit, env)
    {
        (Some(_), Some(_)) => Err(BuildError::new(
            k,
            format!("{prefix}set only one of {k} and {k}_env"),
        )),
        (Some(v), None) => Ok(Some(Setting::Fixed(v.trim().to_string()))),
        (None, Some(e)) if e.trim().is_empty() => Err(BuildError::new(
            format!("{k}_env"),
            format!("{prefix}{k}_env is empty: name an environment variable"),
        )),
        (None, Some(e)) => Ok(Some(Setting::Env(e.trim().to_string()))),
        (None, None) => Ok(None),
    };
    match level("", key, literal, env)? {
        Some(s) => Ok(Some(s)),
        None => level("alerting.global: ", global_key, global_literal, global_env)
            .map_err(|e| BuildError::new(key, e.message)),
    }
}

fn parse_smarthost(text: &str) -> Result<(String, u16), String> {
    net::split_host_port(text)
}

fn parse_mailbox(text: &str) -> Result<Mailbox, String> {
    Mailbox::from_str(text.trim()).map_err(|e| format!("invalid address {:?}: {e}", text.trim()))
}

fn parse_mailboxes(text: &str) -> Result<Vec<Mailbox>, String> {
    let list: Vec<Mailbox> = split_addresses(text)
        .iter()
        .map(|a| parse_mailbox(a))
        .collect::<Result<_, _>>()?;
    if list.is_empty() {
        return Err("no recipient: expected a comma-separated list of addresses".to_string());
    }
    Ok(list)
}

/// Splits `a@x, "Doe, Jane" <b@x>` at the commas outside quotes and angle brackets.
fn split_addresses(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut angle) = (false, false);
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A built email integration.
pub struct Email {
    // Boxed: the `Integration` enum stays small.
    inner: Box<Inner>,
}

struct Inner {
    smarthost: Setting<(String, u16)>,
    from: Setting<Mailbox>,
    to: Setting<Vec<Mailbox>>,
    hello: String,
    username: Option<Setting<String>>,
    password: Option<SecretSource>,
    tls: Option<TlsMode>,
    require_tls: bool,
    tls_client: Arc<ClientConfig>,
    server_name: Option<String>,
    headers: Vec<(String, String)>,
    templates: EmailTemplates,
    send_resolved: bool,
    timeout: Duration,
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The TLS client config is long and says nothing useful; the password source
        // names only a file or a variable.
        f.debug_struct("Email")
            .field("smarthost", &self.inner.smarthost)
            .field("from", &self.inner.from)
            .field("to", &self.inner.to)
            .field("hello", &self.inner.hello)
            .field("username", &self.inner.username)
            .field("password", &self.inner.password)
            .field("tls", &self.inner.tls)
            .field("require_tls", &self.inner.require_tls)
            .field("server_name", &self.inner.server_name)
            .field("headers", &self.inner.headers)
            .field("send_resolved", &self.inner.send_resolved)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl EmailConfig {
    /// Builds the integration; `global` holds the defaults of `alerting.global`.
    ///
    /// Literal values (addresses, `host:port`) are checked here; values from environment
    /// variables are read and checked at send time (see [`Email::configured`]).
    ///
    /// # Errors
    /// The first field that is wrong, or that names a template file that cannot be read.
    pub fn build(&self, global: &SmtpGlobal) -> Result<Email, BuildError> {
        let required = |key: &str, global_key: &str| {
            BuildError::new(
                key,
                format!("set {key} or {key}_env (or alerting.global.{global_key})"),
            )
        };
        let smarthost = pick(
            "smarthost",
            self.smarthost.as_ref(),
            self.smarthost_env.as_ref(),
            "smtp_smarthost",
            global.smtp_smarthost.as_ref(),
            global.smtp_smarthost_env.as_ref(),
        )?
        .ok_or_else(|| required("smarthost", "smtp_smarthost"))?;
        let smarthost = match smarthost {
            Setting::Fixed(v) => {
                Setting::Fixed(parse_smarthost(&v).map_err(|e| BuildError::new("smarthost", e))?)
            }
            Setting::Env(name) => Setting::Env(name),
        };

        let from = pick(
            "from",
            self.from.as_ref(),
            self.from_env.as_ref(),
            "smtp_from",
            global.smtp_from.as_ref(),
            global.smtp_from_env.as_ref(),
        )?
        .ok_or_else(|| required("from", "smtp_from"))?;
        let from = match from {
            Setting::Fixed(v) => {
                Setting::Fixed(parse_mailbox(&v).map_err(|e| BuildError::new("from", e))?)
            }
            Setting::Env(name) => Setting::Env(name),
        };

        let to = match (&self.to, &self.to_env) {
            (Some(_), Some(_)) => {
                return Err(BuildError::new("to", "set only one of to and to_env"));
            }
            (Some(v), None) => {
                Setting::Fixed(parse_mailboxes(v).map_err(|e| BuildError::new("to", e))?)
            }
            (None, Some(e)) if e.trim().is_empty() => {
                return Err(BuildError::new(
                    "to_env",
                    "to_env is empty: name an environment variable",
                ));
            }
            (None, Some(e)) => Setting::Env(e.trim().to_string()),
            (None, None) => {
                return Err(BuildError::new(
                    "to",
                    "set to (comma-separated addresses) or to_env",
                ));
            }
        };

        let hello = self
            .hello
            .as_ref()
            .or(global.smtp_hello.as_ref())
            .map_or(DEFAULT_HELLO, |h| h.trim())
            .to_string();
        if hello.is_empty() || hello.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(BuildError::new(
                "hello",
                format!("invalid EHLO name {hello:?}: expected a host name"),
            ));
        }

        let username = pick(
            "auth_username",
            self.auth_username.as_ref(),
            self.auth_username_env.as_ref(),
            "smtp_auth_username",
            global.smtp_auth_username.as_ref(),
            global.smtp_auth_username_env.as_ref(),
        )?;
        if matches!(&username, Some(Setting::Fixed(u)) if u.is_empty()) {
            return Err(BuildError::new(
                "auth_username",
                "auth_username is empty: remove it, or name the user",
            ));
        }
        let password = match SecretSource::from_pair(
            self.auth_password_file.as_ref(),
            self.auth_password_env.as_ref(),
            "auth_password",
        )
        .map_err(|e| BuildError::new("auth_password_file", e))?
        {
            Some(s) => Some(s),
            None => SecretSource::from_pair(
                global.smtp_auth_password_file.as_ref(),
                global.smtp_auth_password_env.as_ref(),
                "smtp_auth_password",
            )
            .map_err(|e| BuildError::new("auth_password_file", format!("alerting.global: {e}")))?,
        };
        if matches!(&password, Some(SecretSource::Env(e)) if e.trim().is_empty()) {
            return Err(BuildError::new(
                "auth_password_env",
                "auth_password_env is empty: name an environment variable",
            ));
        }
        match (&username, &password) {
            (Some(_), None) => {
                return Err(BuildError::new(
                    "auth_password_file",
                    "auth_username is set: set auth_password_file or auth_password_env too",
                ));
            }
            (None, Some(_)) => {
                return Err(BuildError::new(
                    "auth_username",
                    "a password is set but no user: set auth_username or auth_username_env",
                ));
            }
            _ => {}
        }

        let require_tls = self.require_tls.or(global.smtp_require_tls).unwrap_or(true);
        if self.tls == Some(TlsMode::None) && self.require_tls == Some(true) {
            return Err(BuildError::new(
                "tls",
                "tls: none contradicts require_tls: true: remove one of them",
            ));
        }
        let tls_client = net::client_config(&self.tls_config)?;
        let server_name = match &self.tls_config.server_name {
            Some(name) => {
                net::server_name(name).map_err(|e| BuildError::new("tls_config.server_name", e))?;
                Some(name.clone())
            }
            None => None,
        };

        let mut subject = self.template("subject", &self.subject, &self.subject_file)?;
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            let field = format!("headers.{name}");
            if name.eq_ignore_ascii_case("Subject") {
                if subject.is_some() {
                    return Err(BuildError::new(
                        field,
                        "set the subject once: in subject, subject_file or headers.Subject",
                    ));
                }
                subject = Some((value.clone(), field));
                continue;
            }
            if let Some(own) = RESERVED_HEADERS
                .iter()
                .find(|h| h.eq_ignore_ascii_case(name))
            {
                return Err(BuildError::new(
                    field,
                    format!("{own} is set by the exporter (use to and from for the addresses)"),
                ));
            }
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                return Err(BuildError::new(field, "invalid header name"));
            }
            if value.contains(['\r', '\n']) {
                return Err(BuildError::new(
                    field,
                    "a header value cannot contain a line break",
                ));
            }
            headers.push((name.clone(), value.clone()));
        }
        let text = self.template("text", &self.text, &self.text_file)?;
        let html = self.template("html", &self.html, &self.html_file)?;
        // Parse each template alone first, so that an error names its field.
        for (t, which) in [(&subject, 0), (&text, 1), (&html, 2)] {
            if let Some((src, field)) = t {
                let mut parts = [None, None, None];
                parts[which] = Some(src.as_str());
                EmailTemplates::new(parts[0], parts[1], parts[2])
                    .map_err(|e| BuildError::new(field.clone(), e))?;
            }
        }
        let templates = EmailTemplates::new(
            subject.as_ref().map(|(s, _)| s.as_str()),
            text.as_ref().map(|(s, _)| s.as_str()),
            html.as_ref().map(|(s, _)| s.as_str()),
        )
        .map_err(|e| BuildError::new("subject", e))?;

        let timeout = self.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0);
        if timeout.is_zero() {
            return Err(BuildError::new("timeout", "timeout must be more than 0s"));
        }

        Ok(Email {
            inner: Box::new(Inner {
                smarthost,
                from,
                to,
                hello,
                username,
                password,
                tls: self.tls,
                require_tls,
                tls_client,
                server_name,
                headers,
                templates,
                send_resolved: self.send_resolved,
                timeout,
            }),
        })
    }

    /// The template of one part: inline text or a file read now. Returns the text and
    /// the field it came from.
    fn template(
        &self,
        key: &str,
        inline: &Option<String>,
        file: &Option<PathBuf>,
    ) -> Result<Option<(String, String)>, BuildError> {
        match (inline, file) {
            (Some(_), Some(_)) => Err(BuildError::new(
                key,
                format!("set only one of {key} and {key}_file"),
            )),
            (Some(t), None) => Ok(Some((t.clone(), key.to_string()))),
            (None, Some(path)) => {
                let field = format!("{key}_file");
                let text = read_template(path).map_err(|e| BuildError::new(&field, e))?;
                Ok(Some((text, field)))
            }
            (None, None) => Ok(None),
        }
    }
}

fn read_template(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map_err(|e| format!("read {}: {}", path.display(), net::io_error_text(&e)))
}

/// The TLS mode of one send, once the port is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Implicit,
    StartTls,
    /// STARTTLS when offered, else plain (Alertmanager with `require_tls: false`).
    Opportunistic,
    Plain,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Implicit => "implicit TLS",
            Mode::StartTls => "STARTTLS",
            Mode::Opportunistic => "STARTTLS if offered",
            Mode::Plain => "none",
        }
    }
}

/// Everything one send needs, read from the config and the environment.
struct Target {
    host: String,
    port: u16,
    from: Mailbox,
    to: Vec<Mailbox>,
    username: Option<String>,
    mode: Mode,
}

impl Target {
    fn peer(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// What a transaction got to, for error messages and the `send-test-email` transcript.
#[derive(Debug, Default)]
struct Progress {
    /// The step running now (or when it failed), e.g. `RCPT TO`.
    step: &'static str,
    server_name: String,
    tls: Option<String>,
    auth: Option<String>,
    accepted: Vec<String>,
    refused: Vec<String>,
    /// Whether every refusal so far was permanent (5xx).
    refusals_permanent: bool,
    reply: Option<String>,
}

impl Email {
    /// Whether resolved notifications are sent.
    pub fn send_resolved(&self) -> bool {
        self.inner.send_resolved
    }

    /// The bound of one send.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// `Err(why)` when a value that comes from the environment is not set (or not valid):
    /// `email is not configured: HARENA_SMTP_SMARTHOST is not set`.
    ///
    /// # Errors
    /// The first missing or invalid value, naming its variable.
    pub fn configured(&self) -> Result<(), String> {
        let check = || -> Result<(), String> {
            let target = self.target()?;
            // A password file is only read when sending; a variable is cheap to look at.
            if let (Some(_), Some(SecretSource::Env(name))) =
                (&target.username, &self.inner.password)
            {
                match std::env::var(name) {
                    Ok(v) if !v.is_empty() => {}
                    _ => return Err(format!("{name} is not set")),
                }
            }
            Ok(())
        };
        check().map_err(|e| format!("email is not configured: {e}"))
    }

    fn target(&self) -> Result<Target, String> {
        let (host, port) = self.inner.smarthost.get(parse_smarthost)?;
        let from = self.inner.from.get(parse_mailbox)?;
        let to = self.inner.to.get(parse_mailboxes)?;
        // A user from an unset variable means no AUTH (a relay that needs none), so
        // the shipped config's HARENA_SMTP_USERNAME and _PASSWORD are optional.
        let username = match &self.inner.username {
            Some(Setting::Env(name)) => std::env::var(name)
                .ok()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty()),
            Some(u) => Some(u.get(|s| Ok(s.to_string()))?),
            None => None,
        };
        let mode = match self.inner.tls {
            Some(TlsMode::Implicit) => Mode::Implicit,
            Some(TlsMode::Starttls) => Mode::StartTls,
            Some(TlsMode::None) => Mode::Plain,
            None if port == 465 => Mode::Implicit,
            None if self.inner.require_tls => Mode::StartTls,
            None => Mode::Opportunistic,
        };
        Ok(Target {
            host,
            port,
            from,
            to,
            username,
            mode,
        })
    }

    fn credentials(&self, target: &Target) -> Result<Option<(String, Secret)>, SendError> {
        let (Some(user), Some(source)) = (&target.username, &self.inner.password) else {
            return Ok(None);
        };
        let secret = source.read().map_err(|e| {
            SendError::retry(
                "not_configured",
                format!("email is not configured: read the SMTP password: {e}"),
            )
        })?;
        Ok(Some((user.clone(), secret)))
    }

    /// Sends one notification: one email to every recipient, rendered by the templates,
    /// or as it comes for the daily report ([`Notification::report`]).
    ///
    /// Succeeds when the server accepted the message for at least one recipient (a
    /// warning names the refused ones). Resolved-only notifications are sent as given:
    /// the caller filters them by [`Email::send_resolved`].
    ///
    /// # Errors
    /// Why the message was not accepted, with a reason from the table in the module docs.
    pub async fn send(&self, n: &Notification) -> Result<(), SendError> {
        let target = self.target().map_err(|e| {
            SendError::retry("not_configured", format!("email is not configured: {e}"))
        })?;
        // The daily report comes rendered; alert notifications go through the templates.
        let (rendered, status) = match &n.report {
            Some(r) => (
                RenderedEmail {
                    subject: r.subject.clone(),
                    text: r.text.clone(),
                    html: r.html.clone(),
                },
                "report",
            ),
            None => (
                self.inner.templates.render(n).map_err(|e| {
                    SendError::permanent("template", format!("render the email templates: {e}"))
                })?,
                n.status(),
            ),
        };
        let mut headers = self.inner.headers.clone();
        headers.push(("X-Harena-Status".into(), status.into()));
        headers.push(("X-Harena-Group-Key".into(), one_line(&n.group_key)));
        let message_id = format!("<{}@harena-exporter>", message_id_part(&n.id));
        let body = build_message(
            &target,
            &one_line(&rendered.subject),
            rendered.text,
            rendered.html,
            &message_id,
            &headers,
        )?;
        let progress = self.deliver(&target, &body).await?;
        if !progress.refused.is_empty() {
            tracing::warn!(
                receiver = %n.receiver,
                message_id = %message_id,
                accepted = %progress.accepted.join(", "),
                refused = %progress.refused.join("; "),
                "email accepted for some recipients only"
            );
        } else {
            tracing::debug!(
                receiver = %n.receiver,
                message_id = %message_id,
                recipients = %progress.accepted.join(", "),
                "email sent"
            );
        }
        Ok(())
    }

    /// Sends a short test email (subject `harena-exporter test email`) to `to` (a
    /// comma-separated list) or to the configured recipients, and returns what happened,
    /// for `harena-exporter send-test-email`: the server, the TLS mode, the user (never
    /// the password), the accepted and refused recipients and the server's last reply.
    ///
    /// # Errors
    /// As [`Email::send`], with what went wrong in the message.
    pub async fn send_test(&self, to: Option<&str>) -> Result<String, SendError> {
        let mut target = self.target().map_err(|e| {
            SendError::retry("not_configured", format!("email is not configured: {e}"))
        })?;
        if let Some(to) = to {
            target.to = parse_mailboxes(to)
                .map_err(|e| SendError::permanent("not_configured", format!("--to: {e}")))?;
        }
        let now = chrono::Utc::now();
        let message_id = format!(
            "<test-{}-{}@harena-exporter>",
            now.timestamp_millis(),
            std::process::id()
        );
        let text = format!(
            "This is a test email from harena-exporter, sent at {} through {} (TLS: {}).\n\n\
             If you can read this, alert emails reach this address.\n",
            now.format("%Y-%m-%d %H:%M:%S UTC"),
            target.peer(),
            target.mode.name()
        );
        let html = format!(
            "<p>This is a test email from harena-exporter, sent at {} through {} (TLS: {}).</p>\
             <p>If you can read this, alert emails reach this address.</p>",
            now.format("%Y-%m-%d %H:%M:%S UTC"),
            html_escape(&target.peer()),
            target.mode.name()
        );
        let headers = vec![("X-Harena-Status".to_string(), "test".to_string())];
        let body = build_message(&target, TEST_SUBJECT, text, html, &message_id, &headers)?;
        let p = self.deliver(&target, &body).await?;
        let mut out = String::new();
        let server = if p.server_name.is_empty() {
            target.peer()
        } else {
            format!("{} ({})", target.peer(), p.server_name)
        };
        out.push_str(&format!("server: {server}\n"));
        out.push_str(&format!(
            "tls: {}\n",
            p.tls.as_deref().unwrap_or("none (not encrypted)")
        ));
        out.push_str(&format!(
            "authenticated as: {}\n",
            p.auth.as_deref().unwrap_or("(no AUTH)")
        ));
        out.push_str(&format!("from: {}\n", target.from.email));
        out.push_str(&format!("accepted recipients: {}\n", p.accepted.join(", ")));
        if !p.refused.is_empty() {
            out.push_str(&format!("refused recipients: {}\n", p.refused.join("; ")));
        }
        out.push_str(&format!("message-id: {message_id}\n"));
        out.push_str(&format!(
            "server reply: {}\n",
            p.reply.as_deref().unwrap_or("(none)")
        ));
        Ok(out)
    }

    /// Runs one SMTP transaction within the timeout, then `QUIT`.
    async fn deliver(&self, target: &Target, body: &[u8]) -> Result<Progress, SendError> {
        let credentials = self.credentials(target)?;
        let start = Instant::now();
        let deadline = start + self.inner.timeout;
        let mut progress = Progress {
            refusals_permanent: true,
            ..Progress::default()
        };
        let result = tokio::time::timeout_at(
            deadline,
            self.transaction(target, body, credentials.as_ref(), deadline, &mut progress),
        )
        .await;
        let result = match result {
            Ok(Ok(mut conn)) => {
                // The message is accepted: QUIT is a courtesy, never a reason to fail (a
                // failure here would send the email again).
                let quit_by = deadline.min(Instant::now() + Duration::from_secs(1));
                let _ = tokio::time::timeout_at(quit_by, conn.quit()).await;
                Ok(progress)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SendError::retry(
                "timeout",
                format!(
                    "send email via {}: timed out after {} during {}",
                    target.peer(),
                    net::fmt_duration(start.elapsed()),
                    if progress.step.is_empty() {
                        "connect"
                    } else {
                        progress.step
                    }
                ),
            )),
        };
        // Belt and braces: no message may carry the password, whatever a server echoes.
        // (A password of a few characters would match ordinary words: it is not scrubbed,
        // and is no secret anyway.)
        result.map_err(|mut e| {
            if let Some((_, secret)) = &credentials
                && secret.expose().chars().count() >= MIN_SCRUBBED_CHARS
            {
                e.message = e.message.replace(secret.expose(), "<secret>");
            }
            e
        })
    }

    async fn transaction(
        &self,
        target: &Target,
        body: &[u8],
        credentials: Option<&(String, Secret)>,
        deadline: Instant,
        p: &mut Progress,
    ) -> Result<AsyncSmtpConnection, SendError> {
        let peer = target.peer();
        p.step = "resolve";
        let addr = net::resolve(&target.host, target.port, IpProtocol::Ip4, true)
            .await
            .map_err(from_check)?;
        p.step = "connect";
        let tcp = net::connect(addr, deadline).await.map_err(from_check)?;
        let server_name =
            net::server_name(self.inner.server_name.as_deref().unwrap_or(&target.host))
                .map_err(|e| SendError::retry("tls", e))?;
        let wire = if target.mode == Mode::Implicit {
            p.step = "TLS handshake";
            let (tls, info) = net::tls_handshake(
                tcp,
                &peer,
                server_name.clone(),
                &self.inner.tls_client,
                deadline,
            )
            .await
            .map_err(|(e, _)| from_check(e))?;
            p.tls = Some(format!(
                "implicit TLS, {}",
                info.version.as_deref().unwrap_or("TLS")
            ));
            Wire::new(WireState::Tls(Box::new(tls)), addr)
        } else {
            Wire::new(WireState::Plain(tcp), addr)
        };

        p.step = "greeting and EHLO";
        let client_id = ClientId::Domain(self.inner.hello.clone());
        let mut conn =
            AsyncSmtpConnection::connect_with_transport(Box::new(wire.clone()), &client_id)
                .await
                .map_err(|e| smtp_error(Step::Greeting, &peer, &e))?;
        let mut info = conn.server_info().clone();
        p.server_name = info.name().to_string();

        let offers_starttls = info.supports_feature(Extension::StartTls);
        let use_starttls = match target.mode {
            Mode::StartTls if !offers_starttls => {
                return Err(SendError::retry(
                    "tls",
                    format!(
                        "send email via {peer}: the server does not offer STARTTLS, which is required \
                         (set tls: implicit for port 465, or require_tls: false to allow plain text)"
                    ),
                ));
            }
            Mode::StartTls => true,
            Mode::Opportunistic => offers_starttls,
            Mode::Implicit | Mode::Plain => false,
        };
        if use_starttls {
            p.step = "STARTTLS";
            conn.command(Starttls)
                .await
                .map_err(|e| smtp_error(Step::StartTls, &peer, &e))?;
            let version = wire
                .start_tls(&peer, server_name, &self.inner.tls_client, deadline)
                .await
                .map_err(from_check)?;
            p.tls = Some(format!("STARTTLS, {version}"));
            p.step = "EHLO after STARTTLS";
            let response = conn
                .command(Ehlo::new(client_id.clone()))
                .await
                .map_err(|e| smtp_error(Step::Greeting, &peer, &e))?;
            info = ServerInfo::from_response(&response)
                .map_err(|e| smtp_error(Step::Greeting, &peer, &e))?;
        }

        if let Some((user, secret)) = credentials {
            p.step = "AUTH";
            if !wire.is_encrypted() && !addr.ip().is_loopback() {
                return Err(SendError::retry(
                    "tls",
                    format!(
                        "send email via {peer}: refusing to send the password over an unencrypted \
                         connection: use tls: starttls or tls: implicit"
                    ),
                ));
            }
            let mechanism = authenticate(&mut conn, &info, user, secret, &peer).await?;
            p.auth = Some(format!("{user} (AUTH {mechanism})"));
        }

        p.step = "MAIL FROM";
        let mut params = Vec::new();
        let non_ascii_address = std::iter::once(&target.from)
            .chain(&target.to)
            .any(|m| !m.email.to_string().is_ascii());
        if non_ascii_address {
            if !info.supports_feature(Extension::SmtpUtfEight) {
                return Err(SendError::permanent(
                    "rejected",
                    format!(
                        "send email via {peer}: an address is not ASCII and the server does not support SMTPUTF8"
                    ),
                ));
            }
            params.push(MailParameter::SmtpUtfEight);
        }
        if !body.is_ascii() && info.supports_feature(Extension::EightBitMime) {
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        conn.command(Mail::new(Some(target.from.email.clone()), params))
            .await
            .map_err(|e| smtp_error(Step::Mail, &peer, &e))?;

        p.step = "RCPT TO";
        for rcpt in &target.to {
            match conn
                .command(Rcpt::new(rcpt.email.clone(), Vec::new()))
                .await
            {
                Ok(_) => p.accepted.push(rcpt.email.to_string()),
                Err(e) if e.status().is_some() => {
                    p.refusals_permanent &= e.is_permanent();
                    p.refused
                        .push(format!("{} ({})", rcpt.email, reply_text(&e)));
                }
                Err(e) => return Err(smtp_error(Step::Rcpt, &peer, &e)),
            }
        }
        if p.accepted.is_empty() {
            let message = format!(
                "send email via {peer}: every recipient was refused: {}",
                p.refused.join("; ")
            );
            return Err(if p.refusals_permanent {
                SendError::permanent("rejected", message)
            } else {
                SendError::retry("rejected", message)
            });
        }

        p.step = "DATA";
        conn.command(Data)
            .await
            .map_err(|e| smtp_error(Step::Data, &peer, &e))?;
        p.step = "the message transfer (end of DATA)";
        let response = conn
            .message(body)
            .await
            .map_err(|e| smtp_error(Step::Message, &peer, &e))?;
        p.reply = Some(response_text(&response));
        p.step = "QUIT";
        Ok(conn)
    }
}

/// AUTH PLAIN (or LOGIN) with the credentials; returns the mechanism used.
async fn authenticate(
    conn: &mut AsyncSmtpConnection,
    info: &ServerInfo,
    user: &str,
    secret: &Secret,
    peer: &str,
) -> Result<Mechanism, SendError> {
    let Some(mechanism) = info.get_auth_mechanism(&[Mechanism::Plain, Mechanism::Login]) else {
        return Err(SendError::retry(
            "auth",
            format!(
                "authenticate to {peer} as {user}: the server offers {}",
                if info.supports_auth_mechanism(Mechanism::Xoauth2) {
                    "no AUTH PLAIN or LOGIN"
                } else {
                    "no AUTH (does it need TLS first?)"
                }
            ),
        ));
    };
    let credentials = Credentials::new(user.to_string(), secret.expose().to_string());
    let failed = |e: &lettre::transport::smtp::Error| {
        let what = format!("authenticate to {peer} as {user}");
        match e.status() {
            Some(_) => SendError::retry("auth", format!("{what}: {}", reply_text(e))),
            None => SendError::retry("protocol", format!("{what}: {}", other_text(e))),
        }
    };
    let command = Auth::new(mechanism, credentials.clone(), None).map_err(|e| failed(&e))?;
    let mut response = conn.command(command).await.map_err(|e| failed(&e))?;
    // LOGIN asks for the user, then the password; a server that keeps asking is broken.
    let mut rounds = 0;
    while response.has_code(334) {
        rounds += 1;
        if rounds > 3 {
            return Err(SendError::retry(
                "auth",
                format!("authenticate to {peer} as {user}: too many challenges"),
            ));
        }
        let command = Auth::new_from_response(mechanism, credentials.clone(), &response)
            .map_err(|e| failed(&e))?;
        response = conn.command(command).await.map_err(|e| failed(&e))?;
    }
    Ok(mechanism)
}

/// The SMTP step an error happened in, which decides its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Greeting,
    StartTls,
    Mail,
    Rcpt,
    Data,
    Message,
}

/// Maps a lettre error in `step` to a [`SendError`].
fn smtp_error(step: Step, peer: &str, e: &lettre::transport::smtp::Error) -> SendError {
    let what = match step {
        Step::Greeting => format!("greet {peer}"),
        Step::StartTls => format!("start TLS with {peer}"),
        Step::Mail => format!("send MAIL command to {peer}"),
        Step::Rcpt => format!("send RCPT command to {peer}"),
        Step::Data => format!("send DATA command to {peer}"),
        Step::Message => format!("send the message to {peer}"),
    };
    let Some(code) = e.status() else {
        return SendError::retry("protocol", format!("{what}: {}", other_text(e)));
    };
    let message = format!("{what}: {}", reply_text(e));
    let number: u16 = code.to_string().parse().unwrap_or(0);
    match step {
        Step::Greeting => SendError::retry("protocol", message),
        Step::StartTls => SendError::retry("tls", message),
        // "Authentication required": the credentials are missing, the operator adds them.
        _ if number == 530 => SendError::retry("auth", message),
        _ if e.is_permanent() => SendError::permanent("rejected", message),
        _ => SendError::retry("rejected", message),
    }
}

/// `550 5.1.1 <x@y>: refused` from a negative reply.
fn reply_text(e: &lettre::transport::smtp::Error) -> String {
    let code = e.status().map(|c| c.to_string()).unwrap_or_default();
    let text = std::error::Error::source(e)
        .map(ToString::to_string)
        .unwrap_or_default();
    one_line(format!("{code} {text}").trim())
}

/// A lettre error that is not a reply: the connection dropped, or a reply did not parse.
fn other_text(e: &lettre::transport::smtp::Error) -> String {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return net::io_error_text(io);
        }
        source = s.source();
    }
    let text = e.to_string();
    if text.contains("incomplete response") {
        "connection closed by the server".to_string()
    } else {
        one_line(&text)
    }
}

fn response_text(r: &Response) -> String {
    let lines: Vec<&str> = r.message().collect();
    one_line(&format!("{} {}", r.code(), lines.join(" ")))
}

fn from_check(e: CheckError) -> SendError {
    let reason = match e.reason {
        Reason::Dns => "dns",
        Reason::Refused => "refused",
        Reason::Timeout => "timeout",
        Reason::Tls => "tls",
        Reason::Auth => "auth",
        _ => "protocol",
    };
    SendError::retry(reason, e.detail)
}

/// Builds the MIME message: multipart/alternative with the text and HTML bodies.
fn build_message(
    target: &Target,
    subject: &str,
    text: String,
    html: String,
    message_id: &str,
    headers: &[(String, String)],
) -> Result<Vec<u8>, SendError> {
    let bad = |e: String| SendError::permanent("template", format!("build the email: {e}"));
    let mut builder = lettre::Message::builder()
        .from(target.from.clone())
        .subject(subject)
        .message_id(Some(message_id.to_string()))
        .date(SystemTime::now());
    for to in &target.to {
        builder = builder.to(to.clone());
    }
    for (name, value) in headers {
        let name = HeaderName::new_from_ascii(name.clone())
            .map_err(|e| bad(format!("header {name:?}: {e}")))?;
        builder = builder.raw_header(HeaderValue::new(name, value.clone()));
    }
    let message = builder
        .multipart(MultiPart::alternative_plain_html(text, html))
        .map_err(|e| bad(e.to_string()))?;
    Ok(message.formatted())
}

/// The id as the local part of a `Message-ID`: characters outside `[A-Za-z0-9.-_]`
/// become `-`, so that any id gives a valid, stable header.
fn message_id_part(id: &str) -> String {
    let part: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if part.is_empty() {
        "notification".to_string()
    } else {
        part
    }
}

/// Control characters (line breaks included) become spaces: a header stays one line.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The stream under lettre's connection
// ---------------------------------------------------------------------------------------

/// The connection's stream: plain TCP, or TLS. Shared with lettre's connection, so that
/// STARTTLS can replace the TCP stream by a TLS one in place (lettre's own STARTTLS would
/// use its TLS settings, not `tls_config`).
#[derive(Clone)]
struct Wire {
    state: Arc<Mutex<WireState>>,
    peer: SocketAddr,
}

enum WireState {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Between STARTTLS and the end of the handshake (or after a failed one).
    Swapping,
}

impl fmt::Debug for Wire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Wire({}, encrypted: {})", self.peer, self.is_encrypted())
    }
}

impl Wire {
    fn new(state: WireState, peer: SocketAddr) -> Self {
        Wire {
            state: Arc::new(Mutex::new(state)),
            peer,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WireState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_encrypted(&self) -> bool {
        matches!(*self.lock(), WireState::Tls(_))
    }

    /// After the server's `220` to STARTTLS: the TLS handshake over the TCP stream.
    /// Returns the negotiated version.
    async fn start_tls(
        &self,
        peer: &str,
        server_name: rustls::pki_types::ServerName<'static>,
        config: &Arc<ClientConfig>,
        deadline: Instant,
    ) -> Result<String, CheckError> {
        let tcp = {
            let mut state = self.lock();
            match std::mem::replace(&mut *state, WireState::Swapping) {
                WireState::Plain(tcp) => tcp,
                other => {
                    *state = other;
                    return Err(CheckError::new(
                        Reason::Protocol,
                        format!("start TLS with {peer}: the connection is already encrypted"),
                    ));
                }
            }
        };
        let (tls, info) = net::tls_handshake(tcp, peer, server_name, config, deadline)
            .await
            .map_err(|(e, _)| e)?;
        *self.lock() = WireState::Tls(Box::new(tls));
        Ok(info.version.unwrap_or_else(|| "TLS".to_string()))
    }
}

fn swapping() -> io::Error {
    io::Error::other("the connection is being switched to TLS")
}

impl AsyncRead for Wire {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut *self.lock() {
            WireState::Plain(s) => Pin::new(s).poll_read(cx, buf),
            WireState::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            WireState::Swapping => Poll::Ready(Err(swapping())),
        }
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut *self.lock() {
            WireState::Plain(s) => Pin::new(s).poll_write(cx, buf),
            WireState::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            WireState::Swapping => Poll::Ready(Err(swapping())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut *self.lock() {
            WireState::Plain(s) => Pin::new(s).poll_flush(cx),
            WireState::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            WireState::Swapping => Poll::Ready(Err(swapping())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut *self.lock() {
            WireState::Plain(s) => Pin::new(s).poll_shutdown(cx),
            WireState::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            WireState::Swapping => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncTokioStream for Wire {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(v: serde_json::Value) -> EmailConfig {
        serde_json::from_value(v).unwrap()
    }

    fn base() -> serde_json::Value {
        serde_json::json!({"to": "ops@example.org", "from": "harena@example.org",
                           "smarthost": "smtp.example.org:587"})
    }

    fn with(mut v: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
        for (k, x) in extra.as_object().unwrap() {
            if x.is_null() {
                v.as_object_mut().unwrap().remove(k);
            } else {
                v[k] = x.clone();
            }
        }
        v
    }

    #[test]
    fn build_errors_name_the_field() {
        let g = SmtpGlobal::default();
        for (extra, field, needle) in [
            (
                serde_json::json!({"smarthost": null}),
                "smarthost",
                "smtp_smarthost",
            ),
            (
                serde_json::json!({"smarthost": "nohost"}),
                "smarthost",
                "host:port",
            ),
            (
                serde_json::json!({"smarthost_env": "X"}),
                "smarthost",
                "only one",
            ),
            (serde_json::json!({"from": null}), "from", "set from"),
            (
                serde_json::json!({"from": "not an address"}),
                "from",
                "invalid address",
            ),
            (serde_json::json!({"to": null}), "to", "to_env"),
            (serde_json::json!({"to": " , "}), "to", "no recipient"),
            (serde_json::json!({"to": "a@x, nope"}), "to", "\"nope\""),
            (
                serde_json::json!({"auth_username": "u"}),
                "auth_password_file",
                "auth_password",
            ),
            (
                serde_json::json!({"auth_password_env": "P"}),
                "auth_username",
                "auth_username",
            ),
            (
                serde_json::json!({"auth_username": "u", "auth_password_env": "P", "auth_password_file": "/f"}),
                "auth_password_file",
                "only one",
            ),
            (
                serde_json::json!({"tls": "none", "require_tls": true}),
                "tls",
                "contradicts",
            ),
            (
                serde_json::json!({"text_file": "/nonexistent/t.tmpl"}),
                "text_file",
                "/nonexistent/t.tmpl",
            ),
            (
                serde_json::json!({"html": "x", "html_file": "/f"}),
                "html",
                "only one",
            ),
            (
                serde_json::json!({"headers": {"From": "x@y"}}),
                "headers.From",
                "set by the exporter",
            ),
            (
                serde_json::json!({"headers": {"X-A": "a\nb"}}),
                "headers.X-A",
                "line break",
            ),
            (
                serde_json::json!({"headers": {"Bad Name": "v"}}),
                "headers.Bad Name",
                "header name",
            ),
            (
                serde_json::json!({"headers": {"Subject": "s"}, "subject": "t"}),
                "headers.Subject",
                "once",
            ),
            (
                serde_json::json!({"timeout": "0s"}),
                "timeout",
                "more than 0s",
            ),
            (serde_json::json!({"hello": "two words"}), "hello", "EHLO"),
            (
                serde_json::json!({"tls_config": {"ca_file": "/nonexistent/ca.pem"}}),
                "tls_config.ca_file",
                "/nonexistent",
            ),
        ] {
            let c = config(with(base(), extra.clone()));
            let e = c.build(&g).expect_err(&format!("{extra} should fail"));
            assert_eq!(e.field, field, "{extra}: {}", e.message);
            assert!(e.message.contains(needle), "{extra}: {}", e.message);
        }
    }

    #[test]
    fn globals_fill_in_and_modes_follow_the_port() {
        let g = SmtpGlobal {
            smtp_smarthost: Some("smtp.example.org:465".into()),
            smtp_from: Some("Harena <harena@example.org>".into()),
            smtp_auth_username: Some("harena".into()),
            smtp_auth_password_env: Some("HARENA_TEST_UNUSED_PW".into()),
            ..SmtpGlobal::default()
        };
        let e = config(serde_json::json!({"to": "a@x.org, \"Doe, J\" <b@x.org>"}))
            .build(&g)
            .unwrap();
        assert!(!e.send_resolved());
        assert_eq!(e.timeout(), Duration::from_secs(30));
        let t = e.target().unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.mode),
            ("smtp.example.org", 465, Mode::Implicit)
        );
        assert_eq!(t.to.len(), 2);
        assert_eq!(t.username.as_deref(), Some("harena"));
        for (extra, mode) in [
            (serde_json::json!({}), Mode::StartTls),
            (
                serde_json::json!({"require_tls": false}),
                Mode::Opportunistic,
            ),
            (serde_json::json!({"tls": "none"}), Mode::Plain),
            (serde_json::json!({"tls": "implicit"}), Mode::Implicit),
            (
                serde_json::json!({"smarthost": "h:465", "tls": "starttls"}),
                Mode::StartTls,
            ),
        ] {
            let e = config(with(base(), extra.clone()))
                .build(&SmtpGlobal::default())
                .unwrap();
            assert_eq!(e.target().unwrap().mode, mode, "{extra}");
        }
        let g = SmtpGlobal {
            smtp_require_tls: Some(false),
            ..SmtpGlobal::default()
        };
        let e = config(base()).build(&g).unwrap();
        assert_eq!(e.target().unwrap().mode, Mode::Opportunistic);
    }

    #[test]
    fn env_values_are_read_at_send_time() {
        let var = "HARENA_EMAIL_UNIT_SMARTHOST";
        let c = config(with(
            base(),
            serde_json::json!({"smarthost": null, "smarthost_env": var}),
        ));
        let e = c.build(&SmtpGlobal::default()).unwrap();
        assert_eq!(
            e.configured(),
            Err(format!("email is not configured: {var} is not set"))
        );
        // SAFETY: the variable is unique to this test; nothing else reads or writes it.
        unsafe { std::env::set_var(var, "bad") };
        assert!(e.configured().unwrap_err().contains("host:port"));
        // SAFETY: as above.
        unsafe { std::env::set_var(var, "smtp.example.org:25") };
        assert_eq!(e.configured(), Ok(()));
        // SAFETY: as above.
        unsafe { std::env::remove_var(var) };
    }

    #[test]
    fn addresses_split_outside_quotes() {
        assert_eq!(
            split_addresses("a@x, \"Doe, Jane\" <b@x>,, c@x "),
            vec!["a@x", "\"Doe, Jane\" <b@x>", "c@x"]
        );
    }

    #[test]
    fn message_has_stable_id_and_both_parts() {
        let e = config(base()).build(&SmtpGlobal::default()).unwrap();
        let t = e.target().unwrap();
        let id = format!("<{}@harena-exporter>", message_id_part("g 1/2"));
        assert_eq!(id, "<g-1-2@harena-exporter>");
        let headers = vec![("X-Harena-Status".to_string(), "firing".to_string())];
        let body =
            build_message(&t, "Subj", "plain".into(), "<b>x</b>".into(), &id, &headers).unwrap();
        let text = String::from_utf8(body).unwrap();
        assert!(
            text.contains("Message-ID: <g-1-2@harena-exporter>"),
            "{text}"
        );
        assert!(text.contains("X-Harena-Status: firing"), "{text}");
        assert!(text.contains("multipart/alternative"), "{text}");
        assert!(
            text.contains("text/plain") && text.contains("text/html"),
            "{text}"
        );
        assert_eq!(one_line("a\r\nb"), "a  b");
    }
}
