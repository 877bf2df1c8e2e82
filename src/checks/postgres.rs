//! `postgres` check: logs in to PostgreSQL, reads how many connections are used and how
//! many are allowed, and runs the user's own queries as gauges.
//!
//! Each run opens exactly one connection and always closes it, also when it fails or is
//! cancelled: the name is resolved with [`net::resolve`] (so `*.invalid` fails as `dns`
//! without a query), the TCP connection is made with [`net::connect`], and tokio-postgres
//! speaks the protocol over that socket (TLS, when `sslmode` asks for it, through
//! tokio-rustls with [`net::client_config`]). The connection is driven in the run's own
//! task rather than a spawned one, so it cannot outlive the run: after the queries the
//! client is dropped, tokio-postgres sends `Terminate` and closes the socket, and a run
//! that is cut short drops the socket with it. A monitoring exporter that leaks a
//! connection per scrape would cause the very saturation it is meant to warn about.
//!
//! One simple-protocol round trip sets the session up (`statement_timeout`, read-only
//! transactions) and reads the settings and `pg_stat_activity`; each configured query is
//! one more round trip (extended protocol, unnamed statement).

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error as StdError;
use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, SimpleQueryMessage, SimpleQueryRow};

use super::{BuildError, Check, CheckError, Reason, Recorder, RunContext};
use crate::config::types::{PromDuration, SecretSource, TlsConfig};
use crate::net::{self, IpProtocol, TLS_CERT_EXPIRY};

/// The `application_name` of the exporter's sessions, as `pg_stat_activity` shows it.
pub const APPLICATION_NAME: &str = "harena-exporter";

/// The most rows a configured query may return (one series each).
pub const MAX_QUERY_ROWS: usize = 1_000;

/// How long a finished run waits for the server to acknowledge the end of the session
/// before it just drops the socket.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Connection states always exported, at 0 when no connection is in them.
const USUAL_STATES: [&str; 3] = ["active", "idle", "idle_in_transaction"];

/// Server settings: version, `max_connections` and the reserved slots.
/// `reserved_connections` exists from PostgreSQL 16 on; `current_setting(.., true)`
/// gives NULL before.
const SETTINGS_SQL: &str = "SELECT current_setting('server_version'), \
     current_setting('max_connections'), \
     current_setting('superuser_reserved_connections'), \
     coalesce(current_setting('reserved_connections', true), '0')";

/// Client connections by state. Background workers have `backend_type` other than
/// `client backend` (and a NULL state): they do not use `max_connections` slots.
const STATES_SQL: &str = "SELECT coalesce(state, 'unknown'), count(*) \
     FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1";

crate::metric!(
    CONNECTIONS,
    gauge,
    "harena_postgres_connections",
    "Client connections by state (pg_stat_activity, client backends only, the exporter's own included)."
);
crate::metric!(
    MAX_CONNECTIONS,
    gauge,
    "harena_postgres_max_connections",
    "The server's max_connections setting."
);
crate::metric!(
    RESERVED_CONNECTIONS,
    gauge,
    "harena_postgres_reserved_connections",
    "Connection slots only superusers (or, from PostgreSQL 16, pg_use_reserved_connections members) may use."
);
crate::metric!(
    VERSION_INFO,
    gauge,
    "harena_postgres_server_version_info",
    "Always 1; the server's version is in the version label."
);
crate::metric!(
    QUERY_VALUE,
    gauge,
    "harena_postgres_query_value",
    "Value of a configured query: one series per row, labelled by the query's name and its label columns."
);

/// How to use TLS: `sslmode`, as libpq names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SslMode {
    /// Never use TLS (the default).
    #[default]
    Disable,
    /// Use TLS when the server offers it, plain text otherwise.
    Prefer,
    /// Use TLS, and fail when the server does not offer it.
    Require,
}

/// A query whose result becomes `harena_postgres_query_value{query="<name>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryConfig {
    /// The value of the `query` label; unique within the check. Required.
    /// Example: `name: pending_syncs`.
    pub name: String,
    /// One SQL statement, run read-only. It returns one row per series: exactly one
    /// numeric column (`smallint`, `integer`, `bigint`, `real`, `double precision`,
    /// `numeric`, `oid`, or `boolean` as 0/1) plus the text columns listed in `labels`.
    /// A row whose value is NULL is skipped. Required.
    /// Example: `sql: SELECT status, count(*) FROM sync_jobs GROUP BY status`.
    pub sql: String,
    /// Columns whose (text) values become labels of the same name; NULL becomes an
    /// empty value. Default none. Example: `labels: [status]`.
    #[serde(default)]
    pub labels: Vec<String>,
}

/// The keys of a `postgres` check.
///
/// ```yaml
/// - name: postgres
///   kind: postgres
///   host: 127.0.0.1
///   database: harena
///   user: monitor
///   password_env: HARENA_POSTGRES_PASSWORD
///   queries:
///     - name: waiting_locks
///       sql: SELECT count(*) FROM pg_locks WHERE NOT granted
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// Host name or IP address of the server; names are resolved at every run
    /// (IPv4 first). Unix socket paths are not supported. Default `127.0.0.1`.
    /// Example: `host: postgres`.
    #[serde(default = "default_host")]
    pub host: String,
    /// TCP port. Default `5432`. Example: `port: 6432`.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Database to connect to. Default `postgres`. Example: `database: harena`.
    #[serde(default = "default_database")]
    pub database: String,
    /// Role to log in as. Required. A role in `pg_monitor` sees the state of every
    /// session; another role sees other roles' sessions as state `unknown`.
    /// Example: `user: monitor`.
    pub user: String,
    /// File that holds the password, read at every run (trailing newline removed).
    /// Default none. Example: `password_file: /run/secrets/postgres_monitor`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Environment variable that holds the password, read at every run; when it is not
    /// set the check fails with reason `auth`. Default none.
    /// Example: `password_env: HARENA_POSTGRES_PASSWORD`.
    #[serde(default)]
    pub password_env: Option<String>,
    /// TLS: `disable`, `prefer` (TLS when the server offers it) or `require`. Unlike
    /// libpq, `prefer` and `require` verify the certificate (against
    /// `tls_config.ca_file`, else the built-in roots) and the host name; set
    /// `tls_config: {insecure_skip_verify: true}` for libpq's unverified behaviour.
    /// Default `disable`. Example: `sslmode: require`.
    #[serde(default)]
    pub sslmode: SslMode,
    /// TLS settings when `sslmode` is not `disable` (CA file, client certificate,
    /// `server_name`, `insecure_skip_verify`). Default: the built-in WebPKI roots, and
    /// `host` as the server name. Example: `tls_config: {ca_file: /etc/harena/pg-ca.pem}`.
    #[serde(default)]
    pub tls_config: TlsConfig,
    /// The session's `statement_timeout`, capped by the time left before the check's
    /// timeout; `0` means only that cap. Default `5s`. Example: `statement_timeout: 2s`.
    #[serde(default = "default_statement_timeout")]
    pub statement_timeout: PromDuration,
    /// Queries whose results become `harena_postgres_query_value` series. A failing
    /// query fails the check (reason `protocol`, or `timeout` past `statement_timeout`),
    /// while the other queries' series are still recorded. Default none.
    /// Example: `queries: [{name: waiting_locks, sql: "SELECT count(*) FROM pg_locks WHERE NOT granted"}]`.
    #[serde(default)]
    pub queries: Vec<QueryConfig>,
}

fn default_host() -> String {
    "127.0.0.1".to_string()
}

fn default_port() -> u16 {
    5432
}

fn default_database() -> String {
    "postgres".to_string()
}

fn default_statement_timeout() -> PromDuration {
    PromDuration(Duration::from_secs(5))
}

/// A runnable `postgres` check.
#[derive(Debug)]
pub struct PostgresCheck {
    // Boxed: the registry's enum of built checks stays small whatever the kind.
    inner: Box<Inner>,
}

#[derive(Debug)]
struct Inner {
    host: String,
    port: u16,
    database: String,
    user: String,
    password: Option<SecretSource>,
    sslmode: SslMode,
    /// The TLS client and the name to verify, unless `sslmode` is `disable`.
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    /// `None`: no limit but the deadline.
    statement_timeout: Option<Duration>,
    queries: Vec<QueryConfig>,
}

/// What the server told about itself.
#[derive(Debug, Clone, PartialEq)]
struct ServerFacts {
    version: String,
    max_connections: f64,
    reserved_connections: f64,
    /// Normalised state → count; always has [`USUAL_STATES`].
    states: BTreeMap<String, f64>,
}

/// One row of a configured query.
#[derive(Debug, Clone, PartialEq)]
struct QuerySample {
    query: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// What a run saw, recorded whether it succeeded or not.
#[derive(Debug, Default)]
struct Progress {
    server: Option<ServerFacts>,
    samples: Vec<QuerySample>,
    queries_ok: usize,
    cert_not_after: Option<i64>,
}

impl Check for PostgresCheck {
    type Config = PostgresConfig;
    const KIND: &'static str = "postgres";
    const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    fn build(config: &PostgresConfig) -> Result<Self, BuildError> {
        let host = config.host.trim();
        if host.is_empty() {
            return Err(BuildError::new("host", "set a host name or IP address"));
        }
        if host.starts_with('/') {
            return Err(BuildError::new(
                "host",
                "unix socket paths are not supported: use the server's TCP address, like 127.0.0.1",
            ));
        }
        if host.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(BuildError::new(
                "host",
                format!("invalid host {host:?}: expected a host name or IP address"),
            ));
        }
        if config.port == 0 {
            return Err(BuildError::new("port", "port 0 is not a valid port"));
        }
        if config.user.trim().is_empty() {
            return Err(BuildError::new("user", "set the role to log in as"));
        }
        if config.database.trim().is_empty() {
            return Err(BuildError::new(
                "database",
                "set the database to connect to",
            ));
        }
        let password = SecretSource::from_pair(
            config.password_file.as_ref(),
            config.password_env.as_ref(),
            "password",
        )
        .map_err(|e| BuildError::new("password_file", e))?;
        let tls = match config.sslmode {
            SslMode::Disable => {
                if config.tls_config != TlsConfig::default() {
                    return Err(BuildError::new(
                        "tls_config",
                        "tls_config is set but sslmode is disable: set sslmode: require (or prefer)",
                    ));
                }
                None
            }
            SslMode::Prefer | SslMode::Require => {
                let client = net::client_config(&config.tls_config)?;
                let name = match &config.tls_config.server_name {
                    Some(name) => net::server_name(name)
                        .map_err(|e| BuildError::new("tls_config.server_name", e))?,
                    None => net::server_name(host).map_err(|e| BuildError::new("host", e))?,
                };
                Some((client, name))
            }
        };
        let mut names = BTreeSet::new();
        for (i, q) in config.queries.iter().enumerate() {
            let field = |key: &str| format!("queries[{i}].{key}");
            if q.name.trim().is_empty() {
                return Err(BuildError::new(field("name"), "set a name for the query"));
            }
            if !names.insert(q.name.as_str()) {
                return Err(BuildError::new(
                    field("name"),
                    format!("duplicate query name {:?}", q.name),
                ));
            }
            if q.sql.trim().is_empty() {
                return Err(BuildError::new(field("sql"), "set the SQL to run"));
            }
            let mut labels = BTreeSet::new();
            for (j, label) in q.labels.iter().enumerate() {
                let field = format!("queries[{i}].labels[{j}]");
                check_label_name(label).map_err(|e| BuildError::new(&field, e))?;
                if !labels.insert(label.as_str()) {
                    return Err(BuildError::new(field, format!("duplicate label {label:?}")));
                }
            }
        }
        let statement_timeout = Some(config.statement_timeout.0).filter(|d| !d.is_zero());
        Ok(PostgresCheck {
            inner: Box::new(Inner {
                host: host.to_string(),
                port: config.port,
                database: config.database.clone(),
                user: config.user.clone(),
                password,
                sslmode: config.sslmode,
                tls,
                statement_timeout,
                queries: config.queries.clone(),
            }),
        })
    }

    fn target(&self) -> String {
        let i = &self.inner;
        let host = if i.host.contains(':') && !i.host.starts_with('[') {
            format!("[{}]", i.host)
        } else {
            i.host.clone()
        };
        format!("postgres://{}@{host}:{}/{}", i.user, i.port, i.database)
    }

    async fn run(&self, ctx: &RunContext, rec: &mut Recorder) -> Result<(), CheckError> {
        let start = Instant::now();
        let mut p = Progress::default();
        let result = self.inner.probe(ctx.deadline, &mut p).await;
        if let Some(server) = &p.server {
            for (state, n) in &server.states {
                rec.record(&CONNECTIONS, &[("state", state)], *n);
            }
            rec.record(&MAX_CONNECTIONS, &[], server.max_connections);
            rec.record(&RESERVED_CONNECTIONS, &[], server.reserved_connections);
            rec.record(&VERSION_INFO, &[("version", &server.version)], 1.0);
        }
        for s in &p.samples {
            let mut labels: Vec<(&str, &str)> = vec![("query", &s.query)];
            labels.extend(s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            rec.record(&QUERY_VALUE, &labels, s.value);
        }
        if let Some(not_after) = p.cert_not_after {
            // Unix seconds are exact in an f64 for the next few million years.
            #[allow(clippy::cast_precision_loss)]
            rec.record(&TLS_CERT_EXPIRY, &[], not_after as f64);
        }
        if result.is_ok() {
            rec.set_detail(success_detail(&p, start.elapsed()));
        }
        result
    }
}

/// A label name a query may add: Prometheus syntax, and none the exporter sets itself.
fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "invalid label name {name:?}: use letters, digits and '_', not starting with a digit"
        ));
    }
    if name.starts_with("__") {
        return Err(format!(
            "invalid label name {name:?}: names starting with __ are reserved"
        ));
    }
    if matches!(name, "check" | "kind" | "query") {
        return Err(format!(
            "label name {name:?} is set by the exporter: rename the column (SELECT x AS other_name)"
        ));
    }
    Ok(())
}

fn success_detail(p: &Progress, elapsed: Duration) -> String {
    let mut out = String::new();
    if let Some(s) = &p.server {
        let used: f64 = s.states.values().sum();
        let _ = write!(
            out,
            "PostgreSQL {}, {used} of {} connections",
            s.version, s.max_connections
        );
    }
    match p.queries_ok {
        0 => {}
        1 => out.push_str(", 1 query"),
        n => {
            let _ = write!(out, ", {n} queries");
        }
    }
    let _ = write!(out, " in {}", net::fmt_duration(elapsed));
    out
}

impl Inner {
    async fn probe(&self, deadline: Instant, p: &mut Progress) -> Result<(), CheckError> {
        // Read first: without it nothing is sent to the server.
        let password = match &self.password {
            None => None,
            Some(source) => Some(
                source
                    .read()
                    .map_err(|e| CheckError::new(Reason::Auth, format!("read password: {e}")))?,
            ),
        };

        let t = Instant::now();
        let addr = tokio::time::timeout_at(
            deadline,
            net::resolve(&self.host, self.port, IpProtocol::Ip4, true),
        )
        .await
        .map_err(|_| net::timed_out(&format!("resolve {}", self.host), t))??;
        let stream = net::connect(addr, deadline).await?;
        let peer = addr.to_string();

        let mut config = tokio_postgres::Config::new();
        config
            .user(&self.user)
            .dbname(&self.database)
            .application_name(APPLICATION_NAME)
            .ssl_mode(match self.sslmode {
                SslMode::Disable => tokio_postgres::config::SslMode::Disable,
                SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                SslMode::Require => tokio_postgres::config::SslMode::Require,
            });
        if let Some(password) = &password {
            config.password(password.expose());
        }
        let cert = Arc::new(Mutex::new(None));
        let tls = RustlsConnect {
            tls: self.tls.clone(),
            peer: peer.clone(),
            deadline,
            cert_not_after: Arc::clone(&cert),
        };
        let login = format!("log in to {peer} as {}", self.user);
        let t = Instant::now();
        let connected = tokio::time::timeout_at(deadline, config.connect_raw(stream, tls)).await;
        drop(config);
        p.cert_not_after = *cert.lock().unwrap_or_else(PoisonError::into_inner);
        let (client, connection) = connected
            .map_err(|_| net::timed_out(&login, t))?
            .map_err(|e| classify(&login, &e, Phase::Login, password.is_some()))?;
        drop(password);

        let work = async move {
            let result = self.converse(&client, deadline, p).await;
            // Dropping the client (and so its request channel) makes the connection
            // send Terminate and close the socket.
            drop(client);
            result
        };
        drive(work, connection, deadline).await
    }

    /// Sets the session up, reads the server's facts, runs the configured queries.
    async fn converse(
        &self,
        client: &Client,
        deadline: Instant,
        p: &mut Progress,
    ) -> Result<(), CheckError> {
        let left = deadline.saturating_duration_since(Instant::now());
        let limit = self.statement_timeout.map_or(left, |d| d.min(left));
        let limit_ms = limit.as_millis().max(1);
        let batch = format!(
            "SET statement_timeout = {limit_ms}; SET default_transaction_read_only = on; \
             {SETTINGS_SQL}; {STATES_SQL}"
        );
        let what = "read settings and pg_stat_activity";
        let t = Instant::now();
        let messages = tokio::time::timeout_at(deadline, client.simple_query(&batch))
            .await
            .map_err(|_| net::timed_out(what, t))?
            .map_err(|e| classify(what, &e, Phase::Query, true))?;
        let facts = server_facts(&messages)
            .map_err(|e| CheckError::new(Reason::Protocol, format!("{what}: {e}")))?;
        p.server = Some(facts);

        let mut first_error = None;
        for q in &self.queries {
            if Instant::now() >= deadline {
                break;
            }
            match run_query(client, q, deadline).await {
                Ok(samples) => {
                    p.samples.extend(samples);
                    p.queries_ok += 1;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Drives the connection and `work` together in this task, then lets the connection
/// close: the connection never outlives the run, also when the run is cancelled.
async fn drive<W, C>(work: W, connection: C, deadline: Instant) -> Result<(), CheckError>
where
    W: Future<Output = Result<(), CheckError>>,
    C: Future<Output = Result<(), tokio_postgres::Error>>,
{
    let mut work = pin!(work);
    let mut connection = pin!(connection);
    let mut closed = false;
    let result = tokio::select! {
        result = &mut work => result,
        end = &mut connection => {
            closed = true;
            if let Err(e) = end {
                tracing::debug!(error = %e, "postgres connection ended");
            }
            // The client's requests fail at once now that the connection is gone.
            work.await
        }
    };
    if !closed {
        let grace = (Instant::now() + CLOSE_GRACE).min(deadline);
        match tokio::time::timeout_at(grace, connection).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "close postgres connection"),
            Err(_) => tracing::debug!("close postgres connection: no answer, dropping the socket"),
        }
    }
    result
}

/// Parses the answer to the setup batch: two `SET`s, the settings row, the state rows.
fn server_facts(messages: &[SimpleQueryMessage]) -> Result<ServerFacts, String> {
    let mut groups: Vec<Vec<&SimpleQueryRow>> = vec![Vec::new()];
    for m in messages {
        match m {
            SimpleQueryMessage::Row(row) => {
                if let Some(g) = groups.last_mut() {
                    g.push(row);
                }
            }
            SimpleQueryMessage::CommandComplete(_) => groups.push(Vec::new()),
            _ => {}
        }
    }
    let (Some(settings), Some(states)) = (groups.get(2), groups.get(3)) else {
        return Err(format!(
            "expected 4 statement results, got {}",
            groups.len().saturating_sub(1)
        ));
    };
    let [settings] = settings.as_slice() else {
        return Err(format!("expected 1 settings row, got {}", settings.len()));
    };
    let text = |row: &SimpleQueryRow, i: usize| -> Result<String, String> {
        row.try_get(i)
            .map_err(|e| e.to_string())?
            .map(str::to_string)
            .ok_or_else(|| format!("column {i} is NULL"))
    };
    let number = |row: &SimpleQueryRow, i: usize| -> Result<f64, String> {
        let t = text(row, i)?;
        t.trim().parse::<f64>().map_err(|_| {
            format!(
                "column {i}: {} is not a number",
                net::quote_truncated(&t, 40)
            )
        })
    };
    let full_version = text(settings, 0)?;
    let version = full_version
        .split_whitespace()
        .next()
        .unwrap_or("unknown")
        .to_string();
    let max_connections = number(settings, 1)?;
    let reserved_connections = number(settings, 2)? + number(settings, 3)?;
    let mut counts: BTreeMap<String, f64> = USUAL_STATES
        .iter()
        .map(|s| ((*s).to_string(), 0.0))
        .collect();
    for row in states {
        let state = normalise_state(&text(row, 0)?);
        *counts.entry(state).or_insert(0.0) += number(row, 1)?;
    }
    Ok(ServerFacts {
        version,
        max_connections,
        reserved_connections,
        states: counts,
    })
}

/// `idle in transaction (aborted)` → `idle_in_transaction_aborted`.
fn normalise_state(state: &str) -> String {
    let mut out = String::with_capacity(state.len());
    for c in state.trim().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    if out.is_empty() {
        "unknown".to_string()
    } else {
        out
    }
}

/// Runs one configured query and turns its rows into samples.
async fn run_query(
    client: &Client,
    q: &QueryConfig,
    deadline: Instant,
) -> Result<Vec<QuerySample>, CheckError> {
    let what = format!("run query {:?}", q.name);
    let bad = |detail: String| CheckError::new(Reason::Protocol, format!("{what}: {detail}"));
    let t = Instant::now();
    let rows = tokio::time::timeout_at(deadline, client.query_typed(&q.sql, &[]))
        .await
        .map_err(|_| net::timed_out(&what, t))?
        .map_err(|e| classify(&what, &e, Phase::Query, true))?;
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    if rows.len() > MAX_QUERY_ROWS {
        return Err(bad(format!(
            "{} rows, more than {MAX_QUERY_ROWS}: aggregate, or add a LIMIT",
            rows.len()
        )));
    }
    let columns = first.columns();
    let names = || {
        columns
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut label_columns = Vec::with_capacity(q.labels.len());
    for label in &q.labels {
        let Some(i) = columns.iter().position(|c| c.name() == label) else {
            return Err(bad(format!(
                "no column named {label:?} for the label (columns: {})",
                names()
            )));
        };
        let ty = columns[i].type_();
        if !<String as FromSql>::accepts(ty) {
            return Err(bad(format!(
                "label column {label:?} is {ty}, not text: cast it ({label}::text)"
            )));
        }
        label_columns.push((label.as_str(), i));
    }
    let values: Vec<usize> = (0..columns.len())
        .filter(|i| !label_columns.iter().any(|(_, l)| l == i))
        .collect();
    let [value_column] = values.as_slice() else {
        return Err(bad(format!(
            "expected exactly one value column besides the labels, got {} (columns: {})",
            values.len(),
            names()
        )));
    };
    let value_column = *value_column;
    let ty = columns[value_column].type_();
    if !Number::accepts(ty) {
        return Err(bad(format!(
            "value column {:?} is {ty}, not a number",
            columns[value_column].name()
        )));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let value: Option<Number> = row
            .try_get(value_column)
            .map_err(|e| bad(format!("read value: {}", error_chain(&e))))?;
        let Some(Number(value)) = value else {
            continue;
        };
        let mut labels = Vec::with_capacity(label_columns.len());
        for (name, i) in &label_columns {
            let text: Option<String> = row
                .try_get(*i)
                .map_err(|e| bad(format!("read label {name:?}: {}", error_chain(&e))))?;
            labels.push(((*name).to_string(), text.unwrap_or_default()));
        }
        if !seen.insert(labels.clone()) {
            let shown: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            return Err(bad(format!(
                "two rows with the same labels {{{}}}: add a label column, or aggregate",
                shown.join(", ")
            )));
        }
        out.push(QuerySample {
            query: q.name.clone(),
            labels,
            value,
        });
    }
    Ok(out)
}

/// A numeric column's value as a gauge value.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Number(f64);

impl<'a> FromSql<'a> for Number {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        fn bytes<const N: usize>(raw: &[u8]) -> Result<[u8; N], String> {
            raw.try_into()
                .map_err(|_| format!("expected {N} bytes, got {}", raw.len()))
        }
        let value = if *ty == Type::BOOL {
            f64::from(u8::from(bytes::<1>(raw)?[0] != 0))
        } else if *ty == Type::INT2 {
            f64::from(i16::from_be_bytes(bytes(raw)?))
        } else if *ty == Type::INT4 {
            f64::from(i32::from_be_bytes(bytes(raw)?))
        } else if *ty == Type::INT8 {
            // Exact below 2^53, which counters and sizes stay under.
            #[allow(clippy::cast_precision_loss)]
            let v = i64::from_be_bytes(bytes(raw)?) as f64;
            v
        } else if *ty == Type::OID {
            f64::from(u32::from_be_bytes(bytes(raw)?))
        } else if *ty == Type::FLOAT4 {
            f64::from(f32::from_be_bytes(bytes(raw)?))
        } else if *ty == Type::FLOAT8 {
            f64::from_be_bytes(bytes(raw)?)
        } else if *ty == Type::NUMERIC {
            numeric_to_f64(raw)?
        } else {
            return Err(format!("{ty} is not a number").into());
        };
        Ok(Number(value))
    }

    fn accepts(ty: &Type) -> bool {
        [
            Type::BOOL,
            Type::INT2,
            Type::INT4,
            Type::INT8,
            Type::OID,
            Type::FLOAT4,
            Type::FLOAT8,
            Type::NUMERIC,
        ]
        .contains(ty)
    }
}

/// Decodes PostgreSQL's binary `numeric`: digit count, weight, sign, display scale,
/// then base-10000 digits, the first one weighted 10000^weight.
fn numeric_to_f64(raw: &[u8]) -> Result<f64, String> {
    let word = |i: usize| -> Result<u16, String> {
        raw.get(2 * i..2 * i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "numeric value cut short".to_string())
    };
    let ndigits = usize::from(word(0)?);
    let weight = i32::from(i16::from_be_bytes(word(1)?.to_be_bytes()));
    let sign = word(2)?;
    match sign {
        0xC000 => return Ok(f64::NAN),
        0xD000 => return Ok(f64::INFINITY),
        0xF000 => return Ok(f64::NEG_INFINITY),
        0x0000 | 0x4000 => {}
        other => return Err(format!("invalid numeric sign {other:#06x}")),
    }
    let mut value = 0.0f64;
    for i in 0..ndigits {
        value = value * 10_000.0 + f64::from(word(4 + i)?);
    }
    // The last digit is weighted 10000^(weight - ndigits + 1).
    let last_weight = weight - i32::try_from(ndigits).map_err(|_| "numeric too long")? + 1;
    value *= 10_000f64.powi(last_weight);
    Ok(if sign == 0x4000 { -value } else { value })
}

/// Where an error happened, for the reason it maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Login,
    Query,
}

/// Maps a tokio-postgres error to a reason and a detail starting with `what`.
fn classify(what: &str, e: &tokio_postgres::Error, phase: Phase, has_password: bool) -> CheckError {
    // A TLS failure of ours, passed through tokio-postgres with its reason.
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(ours) = s.downcast_ref::<CheckError>() {
            return ours.clone();
        }
        source = s.source();
    }
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let reason = match (phase, code) {
            // invalid_authorization_specification, invalid_password, and a missing
            // CONNECT privilege.
            (Phase::Login, c) if c.starts_with("28") || c == "42501" => Reason::Auth,
            // invalid_catalog_name: the database does not exist.
            (Phase::Login, "3D000") => Reason::Missing,
            // too_many_connections ("sorry, too many clients already"), and a server
            // that is starting up or shutting down: no session for us.
            (Phase::Login, "53300" | "57P03") => Reason::Refused,
            // query_canceled: statement_timeout.
            (Phase::Query, "57014") => Reason::Timeout,
            _ => Reason::Protocol,
        };
        return CheckError::new(
            reason,
            format!("{what}: {} (SQLSTATE {code})", db.message()),
        );
    }
    let kind = e.to_string();
    let cause = e.source().map(error_chain).unwrap_or_default();
    let (reason, detail) = match kind.as_str() {
        "error performing TLS handshake" => (Reason::Tls, format!("tls: {cause}")),
        "invalid configuration" if cause == "password missing" && !has_password => (
            Reason::Auth,
            "the server asks for a password: set password_file or password_env".to_string(),
        ),
        "authentication error" => (Reason::Auth, format!("authentication failed: {cause}")),
        "connection closed" => (
            Reason::Protocol,
            "connection closed by the server".to_string(),
        ),
        // tokio-postgres's words for a stream that ends inside a message.
        "error communicating with the server" if cause == "bytes remaining on stream" => (
            Reason::Protocol,
            "connection closed in the middle of a message".to_string(),
        ),
        _ if cause.is_empty() => (Reason::Protocol, kind),
        _ => (Reason::Protocol, format!("{kind}: {cause}")),
    };
    let hint = match (phase, reason) {
        // What a login that is neither refused nor rejected most often means.
        (Phase::Login, Reason::Protocol) => ": is it a PostgreSQL server?",
        _ => "",
    };
    CheckError::new(reason, format!("{what}: {detail}{hint}"))
}

/// An error and its sources, joined with `: `; I/O errors as short phrases.
fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let text = |e: &(dyn StdError + 'static)| match e.downcast_ref::<io::Error>() {
        Some(io) => net::io_error_text(io),
        None => e.to_string(),
    };
    let mut out = text(e);
    let mut source = e.source();
    while let Some(s) = source {
        let t = text(s);
        if !out.ends_with(&t) {
            let _ = write!(out, ": {t}");
        }
        source = s.source();
    }
    out
}

/// tokio-postgres's TLS hook over tokio-rustls: the handshake is [`net::tls_handshake`],
/// bounded by the run's deadline, and its failure keeps its [`CheckError`].
struct RustlsConnect {
    /// `None` when `sslmode` is `disable` (tokio-postgres then never asks for TLS).
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    peer: String,
    deadline: Instant,
    /// The earliest `notAfter` of the chain the server presented.
    cert_not_after: Arc<Mutex<Option<i64>>>,
}

impl tokio_postgres::tls::TlsConnect<TcpStream> for RustlsConnect {
    type Stream = PgTlsStream;
    type Error = CheckError;
    type Future = Pin<Box<dyn Future<Output = Result<PgTlsStream, CheckError>> + Send>>;

    fn connect(self, stream: TcpStream) -> Self::Future {
        Box::pin(async move {
            let Some((config, name)) = self.tls else {
                return Err(CheckError::new(
                    Reason::Internal,
                    "tls requested while sslmode is disable",
                ));
            };
            let result = net::tls_handshake(stream, &self.peer, name, &config, self.deadline).await;
            let (result, info) = match result {
                Ok((tls, info)) => (Ok(PgTlsStream(tls)), info),
                Err((e, info)) => (Err(e), info),
            };
            *self
                .cert_not_after
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = info.cert_not_after;
            result
        })
    }
}

/// A TLS connection to the server, as tokio-postgres wants it.
///
/// Channel binding (`SCRAM-SHA-256-PLUS`) is not offered: the certificate is verified
/// instead, and tokio-postgres then uses plain `SCRAM-SHA-256`.
struct PgTlsStream(tokio_rustls::client::TlsStream<TcpStream>);

impl tokio_postgres::tls::TlsStream for PgTlsStream {
    fn channel_binding(&self) -> tokio_postgres::tls::ChannelBinding {
        tokio_postgres::tls::ChannelBinding::none()
    }
}

impl AsyncRead for PgTlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for PgTlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(value: serde_json::Value) -> PostgresConfig {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn defaults() {
        let c = config(json!({"user": "monitor"}));
        assert_eq!(c.host, "127.0.0.1");
        assert_eq!(c.port, 5432);
        assert_eq!(c.database, "postgres");
        assert_eq!(c.sslmode, SslMode::Disable);
        assert_eq!(c.statement_timeout, PromDuration(Duration::from_secs(5)));
        assert!(c.queries.is_empty() && c.password_env.is_none() && c.password_file.is_none());
        let check = PostgresCheck::build(&c).unwrap();
        assert_eq!(check.target(), "postgres://monitor@127.0.0.1:5432/postgres");
        assert_eq!(PostgresCheck::DEFAULT_INTERVAL, Duration::from_secs(30));
        assert_eq!(PostgresCheck::DEFAULT_TIMEOUT, Duration::from_secs(10));
    }

    #[test]
    fn bad_configs_are_refused() {
        for (value, needle) in [
            (json!({}), "missing field `user`"),
            (
                json!({"user": "u", "sslmode": "verify-full"}),
                "unknown variant",
            ),
            (json!({"user": "u", "port": 70000}), "invalid value"),
            (json!({"user": "u", "password": "x"}), "unknown field"),
            (
                json!({"user": "u", "queries": [{"name": "a", "sql": "SELECT 1", "label": []}]}),
                "unknown field",
            ),
        ] {
            let e = serde_json::from_value::<PostgresConfig>(value.clone()).unwrap_err();
            assert!(e.to_string().contains(needle), "{value}: {e}");
        }
    }

    #[test]
    fn build_errors_name_the_field() {
        let q = |name: &str, labels: serde_json::Value| json!({"name": name, "sql": "SELECT 1", "labels": labels});
        for (value, field, needle) in [
            (json!({"user": ""}), "user", "set the role"),
            (json!({"user": "u", "host": ""}), "host", "set a host"),
            (
                json!({"user": "u", "host": "/var/run/postgresql"}),
                "host",
                "unix socket",
            ),
            (json!({"user": "u", "host": "a b"}), "host", "invalid host"),
            (json!({"user": "u", "port": 0}), "port", "port 0"),
            (
                json!({"user": "u", "password_env": "A", "password_file": "/x"}),
                "password_file",
                "set only one of password_file and password_env",
            ),
            (
                json!({"user": "u", "tls_config": {"insecure_skip_verify": true}}),
                "tls_config",
                "sslmode",
            ),
            (
                json!({"user": "u", "sslmode": "require", "tls_config": {"ca_file": "/nonexistent.pem"}}),
                "tls_config.ca_file",
                "/nonexistent.pem",
            ),
            (
                json!({"user": "u", "queries": [q("a", json!([])), q("a", json!([]))]}),
                "queries[1].name",
                "duplicate query name",
            ),
            (
                json!({"user": "u", "queries": [q("a", json!(["1x"]))]}),
                "queries[0].labels[0]",
                "invalid label name",
            ),
            (
                json!({"user": "u", "queries": [q("a", json!(["query"]))]}),
                "queries[0].labels[0]",
                "set by the exporter",
            ),
            (
                json!({"user": "u", "queries": [q("a", json!(["x", "x"]))]}),
                "queries[0].labels[1]",
                "duplicate label",
            ),
            (
                json!({"user": "u", "queries": [{"name": "a", "sql": " "}]}),
                "queries[0].sql",
                "set the SQL",
            ),
        ] {
            let e = PostgresCheck::build(&config(value.clone())).unwrap_err();
            assert_eq!(e.field, field, "{value}: {e}");
            assert!(e.message.contains(needle), "{value}: {e}");
        }
    }

    #[test]
    fn targets_never_show_a_password() {
        let c = config(json!({
            "user": "monitor", "host": "::1", "port": 6432, "database": "harena",
            "password_env": "PGPASS_NEVER_SET", "sslmode": "require",
            "tls_config": {"insecure_skip_verify": true},
        }));
        assert_eq!(
            PostgresCheck::build(&c).unwrap().target(),
            "postgres://monitor@[::1]:6432/harena"
        );
    }

    #[test]
    fn states_normalise_to_snake_case() {
        for (raw, want) in [
            ("active", "active"),
            ("idle", "idle"),
            ("idle in transaction", "idle_in_transaction"),
            (
                "idle in transaction (aborted)",
                "idle_in_transaction_aborted",
            ),
            ("fastpath function call", "fastpath_function_call"),
            ("disabled", "disabled"),
            ("unknown", "unknown"),
            ("", "unknown"),
            (" Weird--State ", "weird_state"),
        ] {
            assert_eq!(normalise_state(raw), want, "{raw:?}");
        }
    }

    fn numeric(ndigits: u16, weight: i16, sign: u16, scale: u16, digits: &[u16]) -> Vec<u8> {
        let mut out = Vec::new();
        for w in [ndigits, weight.cast_unsigned(), sign, scale] {
            out.extend_from_slice(&w.to_be_bytes());
        }
        for d in digits {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out
    }

    #[test]
    fn numerics_decode() {
        for (raw, want) in [
            (numeric(0, 0, 0, 0, &[]), 0.0),
            (numeric(1, 0, 0, 0, &[42]), 42.0),
            (numeric(2, 1, 0, 0, &[1, 2345]), 12_345.0),
            (numeric(2, 0, 0, 1, &[1, 5000]), 1.5),
            (numeric(1, -1, 0x4000, 2, &[2500]), -0.25),
            (numeric(1, 2, 0, 0, &[7]), 700_000_000.0),
        ] {
            assert_eq!(numeric_to_f64(&raw), Ok(want), "{raw:?}");
        }
        assert!(
            numeric_to_f64(&numeric(0, 0, 0xC000, 0, &[]))
                .unwrap()
                .is_nan()
        );
        assert_eq!(
            numeric_to_f64(&numeric(0, 0, 0xF000, 0, &[])),
            Ok(f64::NEG_INFINITY)
        );
        assert!(numeric_to_f64(&numeric(2, 0, 0, 0, &[1])).is_err());
        assert!(numeric_to_f64(&[0, 1]).is_err());
    }

    #[test]
    fn numbers_decode_from_every_numeric_type() {
        let n = |ty: &Type, raw: &[u8]| Number::from_sql(ty, raw).unwrap().0;
        assert_eq!(n(&Type::BOOL, &[1]), 1.0);
        assert_eq!(n(&Type::INT2, &(-3i16).to_be_bytes()), -3.0);
        assert_eq!(n(&Type::INT4, &70_000i32.to_be_bytes()), 70_000.0);
        assert_eq!(
            n(&Type::INT8, &(1i64 << 40).to_be_bytes()),
            1_099_511_627_776.0
        );
        assert_eq!(n(&Type::OID, &4_000_000_000u32.to_be_bytes()), 4e9);
        assert_eq!(n(&Type::FLOAT4, &0.5f32.to_be_bytes()), 0.5);
        assert_eq!(n(&Type::FLOAT8, &2.25f64.to_be_bytes()), 2.25);
        assert!(Number::from_sql(&Type::INT4, &[0, 1]).is_err());
        assert!(!Number::accepts(&Type::TEXT));
    }

    #[test]
    fn label_names() {
        for ok in ["status", "_x", "db_name2"] {
            assert!(check_label_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "2x", "a-b", "__x", "check", "kind", "query", "é"] {
            assert!(check_label_name(bad).is_err(), "{bad}");
        }
    }
}
