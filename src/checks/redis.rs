//! `redis` check: is Redis up, does it demand a password, and how close is it to its
//! client and memory limits.
//!
//! ```yaml
//! - name: redis
//!   kind: redis
//!   address: 127.0.0.1:6379
//!   password_env: HARENA_REDIS_PASSWORD
//! ```
//!
//! One run: resolve → connect → TLS handshake (with `tls: true`) → `PING` *without*
//! credentials → `AUTH` (only when the server answered `-NOAUTH`) → `INFO` → `QUIT`.
//! The first `PING` tells whether the server lets anyone in: `+PONG` records
//! `harena_redis_auth_required 0`. That is still a successful run; an alert rule on
//! the gauge reports it, because a Redis without a password on a public port is the
//! worst case of the Harena security group.
//!
//! The client is a small RESP2 implementation of our own: it sends only the commands
//! above, reads at most [`MAX_REPLY_BYTES`] per reply, and every read and write is
//! bounded by the run's deadline. A least-privilege ACL user needs only `+info`:
//! `AUTH` and `QUIT` are always allowed, and the first `PING` runs before
//! authentication. Example: `ACL SETUSER monitor on >PASSWORD -@all +info`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::{BuildError, Check, CheckError, Reason, Recorder, RunContext};
use crate::config::types::{Secret, SecretSource, TlsConfig};
use crate::net::{self, IpProtocol, TLS_CERT_EXPIRY};

crate::metric!(
    CONNECTED_CLIENTS,
    gauge,
    "harena_redis_connected_clients",
    "Client connections open on the Redis server (INFO connected_clients), the check's own included."
);
crate::metric!(
    MAXCLIENTS,
    gauge,
    "harena_redis_maxclients",
    "Most client connections the Redis server accepts (INFO maxclients)."
);
crate::metric!(
    MEMORY_USED,
    gauge,
    "harena_redis_memory_used_bytes",
    "Memory allocated by Redis for its data (INFO used_memory)."
);
crate::metric!(
    MAXMEMORY,
    gauge,
    "harena_redis_maxmemory_bytes",
    "Redis memory limit (INFO maxmemory); 0 means no limit."
);
crate::metric!(
    REJECTED_CONNECTIONS,
    counter,
    "harena_redis_rejected_connections_total",
    "Connections Redis refused because maxclients was reached, since the server started (INFO rejected_connections)."
);
crate::metric!(
    EVICTED_KEYS,
    counter,
    "harena_redis_evicted_keys_total",
    "Keys Redis evicted because of maxmemory, since the server started (INFO evicted_keys)."
);
crate::metric!(
    AUTH_REQUIRED,
    gauge,
    "harena_redis_auth_required",
    "1 when Redis answered PING without credentials with NOAUTH, 0 when it let an unauthenticated client in."
);
crate::metric!(
    UPTIME,
    gauge,
    "harena_redis_uptime_seconds",
    "Seconds since the Redis server started (INFO uptime_in_seconds)."
);
crate::metric!(
    VERSION_INFO,
    gauge,
    "harena_redis_version_info",
    "Always 1; the version label is the Redis server's version (INFO redis_version)."
);

/// The address used when the config sets none.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:6379";

/// The most bytes of one reply read before the check fails with `protocol`.
pub const MAX_REPLY_BYTES: usize = 1024 * 1024;

/// Deepest nesting of arrays accepted in a reply (the commands sent get none).
const MAX_DEPTH: usize = 8;

/// How much of a reply a failure detail shows.
const SHOWN_CHARS: usize = 100;

/// How long `QUIT` may wait for its `+OK`, within the deadline.
const QUIT_WAIT: Duration = Duration::from_millis(200);

/// The longest `harena_redis_version_info{version}` label value kept.
const MAX_VERSION_CHARS: usize = 32;

/// The keys of a `redis` check.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// Where Redis listens, `host:port` (an IPv6 address in brackets).
    /// Default `127.0.0.1:6379`. Example: `address: redis.internal:6379`.
    #[serde(default = "default_address", deserialize_with = "de_address")]
    pub address: String,
    /// The ACL user to authenticate as (Redis 6 and later); needs `password_file` or
    /// `password_env`. Default: none, which authenticates as the `default` user (the
    /// `requirepass` password). Example: `username: monitor`.
    #[serde(default)]
    pub username: Option<String>,
    /// File that holds the password, read at every run (a trailing newline is
    /// ignored). Sent only when the server demands a password. Default: none.
    /// Example: `password_file: /run/secrets/redis_password`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Environment variable that holds the password, read at every run. Sent only when
    /// the server demands a password; when it demands one and the variable is not set,
    /// the run fails with reason `auth`. Default: none.
    /// Example: `password_env: HARENA_REDIS_PASSWORD`.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Speak TLS (Redis's `tls-port`). Default `false`. Example: `tls: true`.
    #[serde(default)]
    pub tls: bool,
    /// TLS settings when `tls` is on (CA file, client certificate, server name,
    /// `insecure_skip_verify`). Default: the built-in WebPKI roots, and the host of
    /// `address` as server name. Example: `tls_config: {ca_file: /etc/harena/redis-ca.pem}`.
    #[serde(default)]
    pub tls_config: TlsConfig,
}

fn default_address() -> String {
    DEFAULT_ADDRESS.to_string()
}

fn de_address<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    net::split_host_port(&text).map_err(D::Error::custom)?;
    Ok(text)
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            address: default_address(),
            username: None,
            password_file: None,
            password_env: None,
            tls: false,
            tls_config: TlsConfig::default(),
        }
    }
}

/// A runnable `redis` check.
#[derive(Debug)]
pub struct RedisCheck {
    // Boxed: the registry's enum of built checks stays small whatever the kind.
    inner: Box<Inner>,
}

#[derive(Debug)]
struct Inner {
    address: String,
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<SecretSource>,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
}

/// What a run learnt, recorded whether it succeeded or not.
#[derive(Debug, Default)]
struct Facts {
    auth_required: Option<bool>,
    cert_not_after: Option<i64>,
    tls_version: Option<String>,
    info: Option<Info>,
    /// The address connected to.
    peer: Option<String>,
    /// The password, when it was read: kept to scrub it from any text shown.
    secret: Option<Secret>,
}

impl Check for RedisCheck {
    type Config = RedisConfig;
    const KIND: &'static str = "redis";
    const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    fn build(config: &RedisConfig) -> Result<Self, BuildError> {
        let (host, port) =
            net::split_host_port(&config.address).map_err(|e| BuildError::new("address", e))?;
        if config.password_env.as_deref() == Some("") {
            return Err(BuildError::new(
                "password_env",
                "empty variable name: name the environment variable that holds the password",
            ));
        }
        let password = SecretSource::from_pair(
            config.password_file.as_ref(),
            config.password_env.as_ref(),
            "password",
        )
        .map_err(|e| BuildError::new("password_file", e))?;
        match &config.username {
            Some(u) if u.is_empty() => {
                return Err(BuildError::new(
                    "username",
                    "empty user name: remove the key to use the default user",
                ));
            }
            Some(_) if password.is_none() => {
                return Err(BuildError::new(
                    "username",
                    "a username needs a password: set password_file or password_env",
                ));
            }
            _ => {}
        }
        let tls = if config.tls {
            let client = net::client_config(&config.tls_config)?;
            let name = match &config.tls_config.server_name {
                Some(name) => net::server_name(name)
                    .map_err(|e| BuildError::new("tls_config.server_name", e))?,
                None => net::server_name(&host).map_err(|e| BuildError::new("address", e))?,
            };
            Some((client, name))
        } else {
            if config.tls_config != TlsConfig::default() {
                return Err(BuildError::new(
                    "tls_config",
                    "tls_config is set but tls is false: set tls: true",
                ));
            }
            None
        };
        Ok(RedisCheck {
            inner: Box::new(Inner {
                address: config.address.clone(),
                host,
                port,
                username: config.username.clone(),
                password,
                tls,
            }),
        })
    }

    fn target(&self) -> String {
        let scheme = if self.inner.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://{}", self.inner.address)
    }

    async fn run(&self, ctx: &RunContext, rec: &mut Recorder) -> Result<(), CheckError> {
        let start = Instant::now();
        let mut facts = Facts::default();
        let result = self.inner.probe(ctx.deadline, &mut facts).await;
        if let Some(required) = facts.auth_required {
            rec.record(&AUTH_REQUIRED, &[], if required { 1.0 } else { 0.0 });
        }
        if let Some(not_after) = facts.cert_not_after {
            // Unix seconds are exact in an f64 for the next few million years.
            #[allow(clippy::cast_precision_loss)]
            rec.record(&TLS_CERT_EXPIRY, &[], not_after as f64);
        }
        if let Some(info) = &facts.info {
            info.record(rec);
        }
        let scrub = |text: String| match &facts.secret {
            Some(secret) => redact(&text, secret),
            None => text,
        };
        match result {
            Ok(how) => {
                let tls = facts
                    .tls_version
                    .as_ref()
                    .map(|v| format!(" over {v}"))
                    .unwrap_or_default();
                let elapsed = net::fmt_duration(start.elapsed());
                let peer = facts.peer.as_deref().unwrap_or(&self.inner.address);
                let server = facts
                    .info
                    .as_ref()
                    .map(|info| info.summary(&format!("{peer}{tls} in {elapsed}")))
                    .unwrap_or_default();
                rec.set_detail(scrub(format!("{how}; {server}")));
                Ok(())
            }
            Err(e) => Err(CheckError::new(e.reason, scrub(e.detail))),
        }
    }
}

impl Inner {
    /// Runs the phases; on success returns how the check got in, for the detail.
    async fn probe(&self, deadline: Instant, f: &mut Facts) -> Result<String, CheckError> {
        let t = Instant::now();
        let resolved = tokio::time::timeout_at(
            deadline,
            net::resolve(&self.host, self.port, IpProtocol::Ip4, true),
        )
        .await;
        let addr = resolved.map_err(|_| net::timed_out(&format!("resolve {}", self.host), t))??;
        let peer = addr.to_string();
        f.peer = Some(peer.clone());
        let stream = net::connect(addr, deadline).await?;
        let Some((config, name)) = &self.tls else {
            return self.session(stream, &peer, deadline, f).await;
        };
        let handshake = net::tls_handshake(stream, &peer, name.clone(), config, deadline).await;
        let (stream, info) = handshake.map_err(|(e, info)| {
            f.cert_not_after = info.cert_not_after;
            e
        })?;
        f.cert_not_after = info.cert_not_after;
        f.tls_version = info.version;
        self.session(stream, &peer, deadline, f).await
    }

    /// The conversation over an open connection, closed with a best-effort `QUIT`.
    async fn session<S>(
        &self,
        stream: S,
        peer: &str,
        deadline: Instant,
        f: &mut Facts,
    ) -> Result<String, CheckError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut conn = Conn::new(stream, peer, deadline);
        let result = self.converse(&mut conn, f).await;
        conn.quit().await;
        result
    }

    async fn converse<S>(&self, conn: &mut Conn<S>, f: &mut Facts) -> Result<String, CheckError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let peer = conn.peer.clone();
        let required = match conn.call(&[b"PING"], "PING").await? {
            Reply::Simple(s) if s == "PONG" => false,
            Reply::Error(e) if error_code(&e) == "NOAUTH" => true,
            // Protected mode: no password is set, and clients from other addresses are
            // turned away. No password can help; it is still "credentials refused".
            Reply::Error(e) if error_code(&e) == "DENIED" => {
                return Err(CheckError::new(
                    Reason::Auth,
                    format!(
                        "{peer} denied the connection: {}",
                        net::quote_truncated(&e, SHOWN_CHARS)
                    ),
                ));
            }
            other => return Err(unexpected(&peer, "PING", &other)),
        };
        f.auth_required = Some(required);

        let user = self.username.as_deref().unwrap_or("default");
        let how = if required {
            let Some(source) = &self.password else {
                return Err(CheckError::new(
                    Reason::Auth,
                    format!(
                        "{peer} requires a password and none is configured: set password_env or password_file"
                    ),
                ));
            };
            let secret = source.read().map_err(|e| {
                CheckError::new(Reason::Auth, format!("{peer} requires a password, but {e}"))
            })?;
            f.secret = Some(secret.clone());
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(name) = &self.username {
                args.push(name.as_bytes());
            }
            args.push(secret.expose().as_bytes());
            match conn.call(&args, "AUTH").await? {
                Reply::Simple(s) if s == "OK" => {}
                Reply::Error(e) => {
                    // Scrubbed before it is cut: a cut could keep part of an echo.
                    let e = redact(&format!("-{e}"), &secret);
                    return Err(CheckError::new(
                        Reason::Auth,
                        format!(
                            "authenticate as {user} to {peer}: {}",
                            net::quote_truncated(&e, SHOWN_CHARS)
                        ),
                    ));
                }
                other => return Err(unexpected(&peer, "AUTH", &other)),
            }
            format!("authenticated as {user}")
        } else if self.password.is_some() {
            "no password required (the configured one was not sent)".to_string()
        } else {
            "no password required".to_string()
        };

        let text = match conn.call(&[b"INFO"], "INFO").await? {
            Reply::Bulk(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Reply::Error(e) if error_code(&e) == "NOPERM" => {
                return Err(CheckError::new(
                    Reason::Auth,
                    format!(
                        "user {user} may not run INFO on {peer}: grant it with `ACL SETUSER {user} +info` ({})",
                        net::quote_truncated(&format!("-{e}"), SHOWN_CHARS)
                    ),
                ));
            }
            other => return Err(unexpected(&peer, "INFO", &other)),
        };
        let info = Info::parse(&text);
        if info.is_empty() {
            return Err(CheckError::new(
                Reason::Protocol,
                format!(
                    "INFO reply from {peer} has none of the expected fields; it begins {}",
                    net::quote_truncated(&text, SHOWN_CHARS)
                ),
            ));
        }
        f.info = Some(info);
        Ok(how)
    }
}

/// The first word of an error reply: `NOAUTH`, `WRONGPASS`, `ERR`, ….
fn error_code(text: &str) -> &str {
    text.split_whitespace().next().unwrap_or_default()
}

/// A reply that is valid RESP but not one the command can get.
fn unexpected(peer: &str, command: &str, reply: &Reply) -> CheckError {
    CheckError::new(
        Reason::Protocol,
        format!(
            "unexpected reply to {command} from {peer}: {}",
            reply.describe()
        ),
    )
}

/// `text` with every occurrence of the secret replaced.
fn redact(text: &str, secret: &Secret) -> String {
    let value = secret.expose();
    if value.is_empty() {
        return text.to_string();
    }
    text.replace(value, "<secret>")
}

// ---------------------------------------------------------------------------------------
// INFO

/// The INFO fields the check records; `None` for a field the server did not report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Info {
    version: Option<String>,
    uptime_seconds: Option<u64>,
    connected_clients: Option<u64>,
    maxclients: Option<u64>,
    used_memory: Option<u64>,
    maxmemory: Option<u64>,
    rejected_connections: Option<u64>,
    evicted_keys: Option<u64>,
}

impl Info {
    /// Reads `key:value` lines; `# Section` headers, blank lines, other keys and values
    /// that are not whole numbers are skipped.
    fn parse(text: &str) -> Info {
        let mut info = Info::default();
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let number = || value.trim().parse::<u64>().ok();
            match key {
                "redis_version" => info.version = version_label(value),
                "uptime_in_seconds" => info.uptime_seconds = number(),
                "connected_clients" => info.connected_clients = number(),
                "maxclients" => info.maxclients = number(),
                "used_memory" => info.used_memory = number(),
                "maxmemory" => info.maxmemory = number(),
                "rejected_connections" => info.rejected_connections = number(),
                "evicted_keys" => info.evicted_keys = number(),
                _ => {}
            }
        }
        info
    }

    fn is_empty(&self) -> bool {
        *self == Info::default()
    }

    /// The numeric fields with their metric, in a fixed order.
    fn numbers(&self) -> [(&'static str, &Arc<crate::model::MetricDesc>, Option<u64>); 7] {
        [
            (
                "connected_clients",
                &CONNECTED_CLIENTS,
                self.connected_clients,
            ),
            ("maxclients", &MAXCLIENTS, self.maxclients),
            ("used_memory", &MEMORY_USED, self.used_memory),
            ("maxmemory", &MAXMEMORY, self.maxmemory),
            (
                "rejected_connections",
                &REJECTED_CONNECTIONS,
                self.rejected_connections,
            ),
            ("evicted_keys", &EVICTED_KEYS, self.evicted_keys),
            ("uptime_in_seconds", &UPTIME, self.uptime_seconds),
        ]
    }

    fn record(&self, rec: &mut Recorder) {
        for (_, desc, value) in self.numbers() {
            if let Some(v) = value {
                rec.record(desc, &[], as_f64(v));
            }
        }
        if let Some(version) = &self.version {
            rec.record(&VERSION_INFO, &[("version", version)], 1.0);
        }
    }

    /// `redis 7.0.15 at {at}: 3 of 10000 clients, 1.1 MiB used, no maxmemory`.
    fn summary(&self, at: &str) -> String {
        let mut out = match &self.version {
            Some(v) => format!("redis {v} at {at}"),
            None => format!("redis at {at}"),
        };
        let mut facts = Vec::new();
        match (self.connected_clients, self.maxclients) {
            (Some(c), Some(m)) => facts.push(format!("{c} of {m} clients")),
            (Some(c), None) => facts.push(format!("{c} clients")),
            _ => {}
        }
        if let Some(used) = self.used_memory {
            facts.push(format!("{} used", net::fmt_bytes(used)));
        }
        match self.maxmemory {
            Some(0) => facts.push("no maxmemory".to_string()),
            Some(max) => facts.push(format!("maxmemory {}", net::fmt_bytes(max))),
            None => {}
        }
        let missing: Vec<&str> = self
            .numbers()
            .iter()
            .filter(|(_, _, v)| v.is_none())
            .map(|(name, _, _)| *name)
            .chain(self.version.is_none().then_some("redis_version"))
            .collect();
        if !missing.is_empty() {
            facts.push(format!("INFO lacks {}", missing.join(", ")));
        }
        if !facts.is_empty() {
            out.push_str(": ");
            out.push_str(&facts.join(", "));
        }
        out
    }
}

/// A counter or size as a sample value: exact below 2^53, far above any count here.
#[allow(clippy::cast_precision_loss)]
fn as_f64(v: u64) -> f64 {
    v as f64
}

/// The version as a label value: the characters a version uses, at most 32 of them.
fn version_label(text: &str) -> Option<String> {
    let v: String = text
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'))
        .take(MAX_VERSION_CHARS)
        .collect();
    (!v.is_empty()).then_some(v)
}

// ---------------------------------------------------------------------------------------
// RESP2

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    /// `+text`
    Simple(String),
    /// `-CODE text`, without the `-`.
    Error(String),
    /// `:n`
    Integer(i64),
    /// `$n` and n bytes.
    Bulk(Vec<u8>),
    /// `$-1` or `*-1`.
    Nil,
    /// `*n` and n replies.
    Array(Vec<Reply>),
}

impl Reply {
    /// A short description for a failure detail.
    fn describe(&self) -> String {
        match self {
            Reply::Simple(s) => net::quote_truncated(&format!("+{s}"), SHOWN_CHARS),
            Reply::Error(e) => net::quote_truncated(&format!("-{e}"), SHOWN_CHARS),
            Reply::Integer(n) => format!("integer {n}"),
            Reply::Bulk(b) => format!(
                "bulk string {}",
                net::quote_truncated(&String::from_utf8_lossy(b), SHOWN_CHARS)
            ),
            Reply::Nil => "nil".to_string(),
            Reply::Array(items) => format!("array of {} elements", items.len()),
        }
    }
}

/// Why bytes are not a RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ParseError {
    /// Not RESP: what is wrong.
    Malformed(&'static str),
    /// A length beyond [`MAX_REPLY_BYTES`].
    TooLarge,
}

/// A command as a RESP array of bulk strings.
fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Parses the reply at the start of `buf`: `Ok(None)` while more bytes are needed,
/// else the reply and the number of bytes it took.
fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, ParseError> {
    parse_at(buf, 0, 0)
}

fn parse_at(buf: &[u8], pos: usize, depth: usize) -> Result<Option<(Reply, usize)>, ParseError> {
    let Some(&tag) = buf.get(pos) else {
        return Ok(None);
    };
    if !matches!(tag, b'+' | b'-' | b':' | b'$' | b'*') {
        return Err(ParseError::Malformed(
            "a reply starts with one of + - : $ *",
        ));
    }
    let rest = buf.get(pos + 1..).unwrap_or_default();
    let Some(len) = rest.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = rest.get(..len).unwrap_or_default();
    let next = pos + 1 + len + 2;
    let text = || String::from_utf8_lossy(line).into_owned();
    match tag {
        b'+' => Ok(Some((Reply::Simple(text()), next))),
        b'-' => Ok(Some((Reply::Error(text()), next))),
        b':' => Ok(Some((Reply::Integer(parse_int(line)?), next))),
        b'$' => {
            let n = parse_int(line)?;
            if n == -1 {
                return Ok(Some((Reply::Nil, next)));
            }
            let n = usize::try_from(n).map_err(|_| ParseError::Malformed("negative length"))?;
            if n > MAX_REPLY_BYTES {
                return Err(ParseError::TooLarge);
            }
            let Some(data) = buf.get(next..next + n) else {
                return Ok(None);
            };
            match buf.get(next + n..next + n + 2) {
                None => Ok(None),
                Some(b"\r\n") => Ok(Some((Reply::Bulk(data.to_vec()), next + n + 2))),
                Some(_) => Err(ParseError::Malformed("bulk string longer than its length")),
            }
        }
        _ => {
            let n = parse_int(line)?;
            if n == -1 {
                return Ok(Some((Reply::Nil, next)));
            }
            let n = usize::try_from(n).map_err(|_| ParseError::Malformed("negative length"))?;
            // Each element takes at least 3 bytes ("+\r\n").
            if n > MAX_REPLY_BYTES / 3 {
                return Err(ParseError::TooLarge);
            }
            if depth >= MAX_DEPTH {
                return Err(ParseError::Malformed("arrays nested too deep"));
            }
            let mut items = Vec::with_capacity(n.min(64));
            let mut at = next;
            for _ in 0..n {
                let Some((item, end)) = parse_at(buf, at, depth + 1)? else {
                    return Ok(None);
                };
                items.push(item);
                at = end;
            }
            Ok(Some((Reply::Array(items), at)))
        }
    }
}

/// A RESP integer: an optional `-` and decimal digits, in i64.
fn parse_int(line: &[u8]) -> Result<i64, ParseError> {
    let digits = line.strip_prefix(b"-").unwrap_or(line);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::Malformed("bad number"));
    }
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(ParseError::Malformed("number out of range"))
}

/// A connection that sends commands and reads one reply each, before the deadline.
struct Conn<S> {
    stream: S,
    buf: Vec<u8>,
    peer: String,
    deadline: Instant,
    /// Set after a failed read or write, or a reply that is not RESP: no `QUIT` then.
    broken: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(stream: S, peer: &str, deadline: Instant) -> Self {
        Conn {
            stream,
            buf: Vec::new(),
            peer: peer.to_string(),
            deadline,
            broken: false,
        }
    }

    /// Sends one command and reads its reply. `name` names the command in details: the
    /// arguments never appear in one (AUTH's carry the password).
    async fn call(&mut self, args: &[&[u8]], name: &str) -> Result<Reply, CheckError> {
        let result = self.exchange(args, name).await;
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    async fn exchange(&mut self, args: &[&[u8]], name: &str) -> Result<Reply, CheckError> {
        let t = Instant::now();
        let peer = self.peer.clone();
        let what = format!("send {name} to {peer}");
        let data = encode(args);
        let write = async {
            self.stream.write_all(&data).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout_at(self.deadline, write).await {
            Err(_) => return Err(net::timed_out(&what, t)),
            Ok(Err(e)) => {
                return Err(CheckError::new(
                    Reason::Protocol,
                    format!("{what}: {}", net::io_error_text(&e)),
                ));
            }
            Ok(Ok(())) => {}
        }
        loop {
            match parse(&self.buf) {
                Ok(Some((reply, used))) => {
                    self.buf.drain(..used);
                    return Ok(reply);
                }
                Ok(None) if self.buf.len() >= MAX_REPLY_BYTES => {
                    return Err(too_large(name, &peer));
                }
                Ok(None) => {}
                Err(ParseError::TooLarge) => return Err(too_large(name, &peer)),
                Err(ParseError::Malformed(why)) => {
                    return Err(CheckError::new(
                        Reason::Protocol,
                        format!(
                            "{peer} does not speak RESP ({why}): it answered {name} with {}",
                            self.first_line()
                        ),
                    ));
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let room = (MAX_REPLY_BYTES - self.buf.len()).min(chunk.len());
            let into = chunk.get_mut(..room).unwrap_or_default();
            match tokio::time::timeout_at(self.deadline, self.stream.read(into)).await {
                Err(_) => {
                    let what = format!("wait for the reply to {name} from {peer}");
                    return Err(net::timed_out(&what, t));
                }
                Ok(Ok(0)) => return Err(self.closed(name)),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(self.closed(name));
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    // What Redis does to bytes it cannot read on a TLS port.
                    return Err(self.closed(name));
                }
                Ok(Err(e)) => {
                    return Err(CheckError::new(
                        Reason::Protocol,
                        format!(
                            "read the reply to {name} from {peer}: {}",
                            net::io_error_text(&e)
                        ),
                    ));
                }
                Ok(Ok(n)) => self
                    .buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default()),
            }
        }
    }

    /// The start of what was received, quoted, for a detail.
    fn first_line(&self) -> String {
        let end = self
            .buf
            .iter()
            .position(|b| *b == b'\n')
            .unwrap_or(self.buf.len());
        let line = self.buf.get(..end).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        net::quote_truncated(&String::from_utf8_lossy(line), SHOWN_CHARS)
    }

    fn closed(&self, name: &str) -> CheckError {
        let got = if self.buf.is_empty() {
            "nothing received".to_string()
        } else {
            format!("received {}", self.first_line())
        };
        CheckError::new(
            Reason::Protocol,
            format!(
                "{} closed the connection before answering {name} ({got})",
                self.peer
            ),
        )
    }

    /// Best effort: `QUIT`, a short wait for its `+OK`, then the close (TLS
    /// close_notify). Never fails the run and never outlives the deadline.
    async fn quit(&mut self) {
        if self.broken {
            return;
        }
        let until = self.deadline.min(Instant::now() + QUIT_WAIT);
        let data = encode(&[b"QUIT"]);
        let bye = async {
            self.stream.write_all(&data).await?;
            self.stream.flush().await?;
            let mut chunk = [0u8; 64];
            // The +OK, or the close that follows it; what it says does not matter.
            let _ = self.stream.read(&mut chunk).await?;
            self.stream.shutdown().await
        };
        if let Ok(Err(e)) = tokio::time::timeout_at(until, bye).await {
            tracing::debug!(peer = %self.peer, error = %e, "redis QUIT");
        }
    }
}

fn too_large(name: &str, peer: &str) -> CheckError {
    CheckError::new(
        Reason::Protocol,
        format!(
            "the reply to {name} from {peer} is larger than {}",
            net::fmt_bytes(MAX_REPLY_BYTES as u64)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn simple(s: &str) -> Reply {
        Reply::Simple(s.to_string())
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        assert_eq!(encode(&[b"PING"]), b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(
            encode(&[b"AUTH", b"monitor", b"p w\r\n"]),
            b"*3\r\n$4\r\nAUTH\r\n$7\r\nmonitor\r\n$5\r\np w\r\n\r\n"
        );
        assert_eq!(encode(&[b"X", b""]), b"*2\r\n$1\r\nX\r\n$0\r\n\r\n");
    }

    #[test]
    fn replies_parse() {
        let cases: Vec<(&[u8], Reply, usize)> = vec![
            (b"+PONG\r\n", simple("PONG"), 7),
            (b"+OK\r\n+PONG\r\n", simple("OK"), 5),
            (b"+\r\n", simple(""), 3),
            (
                b"-NOAUTH Authentication required.\r\n",
                Reply::Error("NOAUTH Authentication required.".into()),
                34,
            ),
            (b":0\r\n", Reply::Integer(0), 4),
            (b":-42\r\n", Reply::Integer(-42), 6),
            (b":9223372036854775807\r\n", Reply::Integer(i64::MAX), 22),
            (b"$5\r\nhello\r\n", Reply::Bulk(b"hello".to_vec()), 11),
            (b"$0\r\n\r\n", Reply::Bulk(Vec::new()), 6),
            (b"$4\r\na\r\nb\r\n", Reply::Bulk(b"a\r\nb".to_vec()), 10),
            (b"$-1\r\n", Reply::Nil, 5),
            (b"*-1\r\n", Reply::Nil, 5),
            (b"*0\r\n", Reply::Array(Vec::new()), 4),
            (
                b"*2\r\n$10\r\nmaxclients\r\n$5\r\n10000\r\n",
                Reply::Array(vec![
                    Reply::Bulk(b"maxclients".to_vec()),
                    Reply::Bulk(b"10000".to_vec()),
                ]),
                32,
            ),
            (
                b"*2\r\n*1\r\n:1\r\n-ERR x\r\n",
                Reply::Array(vec![
                    Reply::Array(vec![Reply::Integer(1)]),
                    Reply::Error("ERR x".into()),
                ]),
                20,
            ),
        ];
        for (input, want, used) in cases {
            let got = parse(input);
            assert_eq!(
                got,
                Ok(Some((want, used))),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn incomplete_replies_wait_for_more() {
        for input in [
            &b""[..],
            b"+PON",
            b"+PONG\r",
            b":12",
            b"$5\r\nhel",
            b"$5\r\nhello",
            b"$5\r\nhello\r",
            b"*2\r\n:1\r\n",
            b"*2\r\n:1\r\n$3\r\nab",
            b"*1\r\n*1\r\n",
        ] {
            assert_eq!(parse(input), Ok(None), "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn malformed_replies_are_errors() {
        let big = format!("${}\r\n", MAX_REPLY_BYTES + 1);
        let wide = format!("*{}\r\n", MAX_REPLY_BYTES);
        let deep = "*1\r\n".repeat(MAX_DEPTH + 1);
        let cases: Vec<(&[u8], ParseError)> = vec![
            (b"HTTP/1.1 400 Bad Request\r\n", ParseError::Malformed("")),
            (b"SSH-2.0-OpenSSH_9.2\r\n", ParseError::Malformed("")),
            (b"\x16\x03\x01\x00", ParseError::Malformed("")),
            (b"_\r\n", ParseError::Malformed("")),
            (b":\r\n", ParseError::Malformed("")),
            (b":1x\r\n", ParseError::Malformed("")),
            (b":+1\r\n", ParseError::Malformed("")),
            (b":-\r\n", ParseError::Malformed("")),
            (b":99999999999999999999\r\n", ParseError::Malformed("")),
            (b"$-2\r\n", ParseError::Malformed("")),
            (b"$abc\r\n", ParseError::Malformed("")),
            (b"$2\r\nabc\r\n", ParseError::Malformed("")),
            (b"*-5\r\n", ParseError::Malformed("")),
            (b"*1\r\nHTTP\r\n", ParseError::Malformed("")),
            (big.as_bytes(), ParseError::TooLarge),
            (wide.as_bytes(), ParseError::TooLarge),
            (deep.as_bytes(), ParseError::Malformed("")),
        ];
        for (input, want) in cases {
            let got = parse(input);
            let same = match (&got, &want) {
                (Err(ParseError::Malformed(_)), ParseError::Malformed(_)) => true,
                (Err(a), b) => a == b,
                _ => false,
            };
            assert!(
                same,
                "{}: got {got:?}, want {want:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn no_input_makes_the_parser_panic() {
        // Every prefix of valid and invalid replies, then pseudo-random bytes drawn from
        // the characters RESP uses (a fixed xorshift, so that failures reproduce).
        let samples: [&[u8]; 5] = [
            b"*3\r\n$3\r\nfoo\r\n:-12\r\n*2\r\n+OK\r\n-ERR x\r\n",
            b"$-1\r\n*-1\r\n$0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\n\r\n",
            b"*9223372036854775807\r\n",
            b"$9223372036854775807\r\nx\r\n",
        ];
        for s in samples {
            for end in 0..=s.len() {
                let _ = parse(&s[..end]);
            }
        }
        let alphabet = b"+-:$*\r\n0123456789-x";
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            let mut input = Vec::new();
            for _ in 0..(state % 24) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let i = usize::try_from(state % alphabet.len() as u64).unwrap();
                input.push(alphabet[i]);
            }
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if let Ok(Some((_, used))) = parse(&input) {
                assert!(used <= input.len());
            }
        }
    }

    const INFO: &str = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\nuptime_in_seconds:42\r\n\r\n# Clients\r\nconnected_clients:3\r\nmaxclients:10000\r\n\r\n# Memory\r\nused_memory:917120\r\nused_memory_human:895.62K\r\nmaxmemory:0\r\n\r\n# Stats\r\nrejected_connections:7\r\nevicted_keys:1\r\n# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n";

    #[test]
    fn info_fields_are_read() {
        let info = Info::parse(INFO);
        assert_eq!(
            info,
            Info {
                version: Some("7.0.15".into()),
                uptime_seconds: Some(42),
                connected_clients: Some(3),
                maxclients: Some(10000),
                used_memory: Some(917_120),
                maxmemory: Some(0),
                rejected_connections: Some(7),
                evicted_keys: Some(1),
            }
        );
        assert_eq!(
            info.summary("127.0.0.1:6379"),
            "redis 7.0.15 at 127.0.0.1:6379: 3 of 10000 clients, 895.6 KiB used, no maxmemory"
        );
        let partial = Info::parse("connected_clients:2\nmaxmemory:1048576\nevicted_keys:x\n");
        assert_eq!(
            partial.summary("h:1"),
            "redis at h:1: 2 clients, maxmemory 1.0 MiB, INFO lacks maxclients, used_memory, rejected_connections, evicted_keys, uptime_in_seconds, redis_version"
        );
        assert!(Info::parse("<html>\r\nnot: info\r\n").is_empty());
        assert_eq!(version_label(" 7.2.4\"}{bad ").as_deref(), Some("7.2.4bad"));
        assert_eq!(version_label("\"{}"), None);
    }

    #[test]
    fn config_defaults_and_errors() {
        let c: RedisConfig = serde_json::from_value(json!({})).unwrap();
        assert_eq!(c, RedisConfig::default());
        assert_eq!(c.address, "127.0.0.1:6379");
        for (config, needle) in [
            (json!({"address": "redis"}), "expected host:port"),
            (json!({"address": "::1:6379"}), "brackets"),
            (json!({"password": "x"}), "unknown field"),
        ] {
            let err = serde_json::from_value::<RedisConfig>(config.clone()).unwrap_err();
            assert!(err.to_string().contains(needle), "{config}: {err}");
        }
    }

    #[test]
    fn build_errors_name_the_field() {
        for (config, field) in [
            (
                json!({"password_env": "A", "password_file": "/run/secrets/a"}),
                "password_file",
            ),
            (json!({"password_env": ""}), "password_env"),
            (json!({"username": "monitor"}), "username"),
            (json!({"username": "", "password_env": "A"}), "username"),
            (
                json!({"tls_config": {"insecure_skip_verify": true}}),
                "tls_config",
            ),
            (
                json!({"tls": true, "tls_config": {"ca_file": "/nonexistent/ca.pem"}}),
                "tls_config.ca_file",
            ),
        ] {
            let c: RedisConfig = serde_json::from_value(config.clone()).unwrap();
            let err = RedisCheck::build(&c).unwrap_err();
            assert_eq!(err.field, field, "{config}: {err}");
        }
    }

    #[test]
    fn targets_carry_no_secret() {
        let c: RedisConfig = serde_json::from_value(json!({
            "address": "redis:6379",
            "username": "monitor",
            "password_env": "HARENA_REDIS_PASSWORD",
        }))
        .unwrap();
        assert_eq!(
            RedisCheck::build(&c).unwrap().target(),
            "redis://redis:6379"
        );
        let c: RedisConfig =
            serde_json::from_value(json!({"address": "127.0.0.1:6380", "tls": true})).unwrap();
        assert_eq!(
            RedisCheck::build(&c).unwrap().target(),
            "rediss://127.0.0.1:6380"
        );
    }

    #[test]
    fn secrets_are_scrubbed() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "hunter2\n").unwrap();
        let secret = SecretSource::File(file.path().to_path_buf())
            .read()
            .unwrap();
        assert_eq!(
            redact("-ERR bad password hunter2", &secret),
            "-ERR bad password <secret>"
        );
        assert_eq!(error_code("WRONGPASS invalid username"), "WRONGPASS");
        assert_eq!(error_code(""), "");
    }
}
