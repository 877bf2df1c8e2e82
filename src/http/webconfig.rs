//! `--web.config.file`: TLS, basic auth, extra response headers and a rate limit for the
//! web server, in the format of Prometheus's exporter-toolkit
//! (<https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md>),
//! so that a file written for node_exporter or Prometheus works here unchanged.
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt        # relative paths start at this file's folder
//!   key_file: server.key
//! http_server_config:
//!   headers:
//!     X-Frame-Options: deny
//! basic_auth_users:              # user: bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\n')
//!   prometheus: $2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG
//! ```
//!
//! The file is parsed strictly, like the main config: every problem is reported as
//! `file:line:column: field: message`, and the exporter refuses to start with a broken
//! file. exporter-toolkit re-reads the file at every request; the cheap equivalent here is
//! a `stat` of the file and of the certificate, key and CA files it names at every new
//! connection and request, and a re-read only when one of them changed. So a rotated
//! certificate is used from the next connection on, without a restart; a file that no
//! longer loads is logged and the last good one stays in force.
//!
//! Differences from exporter-toolkit, each refused with a clear error rather than silently
//! ignored: the inline `key` (a secret: use `key_file`), `cipher_suites` and
//! `curve_preferences` (rustls's safe defaults are used), `client_allowed_sans`, the
//! client-auth types that do not verify the certificate (`RequestClientCert`,
//! `RequireAnyClientCert`), and TLS 1.0 and 1.1 (rustls speaks 1.2 and 1.3). `http2` is
//! accepted and ignored: the server speaks HTTP/1.1. As in exporter-toolkit, turning TLS on
//! or off takes a restart.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, HeaderValue, header};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{WebPkiClientVerifier, danger::ClientCertVerifier};
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use serde::Deserialize;

use crate::config::types::PromDuration;
use crate::config::yaml::{self, Context, Node, NodeValue};
use crate::net::io_error_text;

/// How long a verified (or refused) user and password pair is remembered, so that a
/// scraper sending the same credentials every 15 s costs one bcrypt check a minute.
const AUTH_CACHE_TTL: Duration = Duration::from_secs(60);
/// Most pairs remembered (a flood of wrong passwords must not grow memory without bound).
const AUTH_CACHE_MAX: usize = 1024;
/// The headers that may be set, with their allowed values (none listed: any value), as
/// in exporter-toolkit: the same file must mean the same thing across the ecosystem.
const HEADERS: [(&str, &[&str]); 5] = [
    ("Content-Security-Policy", &[]),
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
];
/// Keys of exporter-toolkit's `tls_server_config` that are refused, with why.
const UNSUPPORTED_TLS_KEYS: [(&str, &str); 4] = [
    (
        "key",
        "a literal key is not allowed in the web config file: put the private key in a file and set key_file",
    ),
    (
        "cipher_suites",
        "not supported: rustls's cipher suites are used (the TLS 1.3 suites and the ECDHE AEAD suites of TLS 1.2); remove it",
    ),
    (
        "curve_preferences",
        "not supported: rustls's key-exchange groups are used (X25519, P-256, P-384); remove it",
    ),
    (
        "client_allowed_sans",
        "not supported: use a client CA (client_ca_file) that signs only the allowed clients; remove it",
    ),
];

fn yes() -> bool {
    true
}

/// The web config file as written (exporter-toolkit's format).
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfigFile {
    /// TLS of the web server. Default: none (plain HTTP; also when it sets none of
    /// `cert_file`, `cert`, `key_file`, `client_ca_file`, `client_ca`, `client_auth_type`).
    /// Example: `tls_server_config: {cert_file: server.crt, key_file: server.key}`.
    #[serde(default)]
    pub tls_server_config: Option<TlsServerConfig>,
    /// HTTP settings. Default: no extra header.
    /// Example: `http_server_config: {headers: {X-Frame-Options: deny}}`.
    #[serde(default)]
    pub http_server_config: HttpServerConfig,
    /// Users let in by HTTP basic auth, each with the bcrypt hash of its password (never
    /// the password). Default: none, so no authentication. Every endpoint is protected
    /// when one is set. Example: `basic_auth_users: {prometheus: $2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG}`.
    #[serde(default)]
    pub basic_auth_users: BTreeMap<String, String>,
    /// A token bucket over all requests; over the limit, requests get 429. Default: none.
    /// Example: `rate_limit: {interval: 1s, burst: 20}`.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
}

/// `tls_server_config:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    /// PEM certificate chain of the server, leaf first; relative to the web config file's
    /// folder. Re-read when it changes. Required with TLS (or `cert`).
    /// Example: `cert_file: /etc/harena-exporter/tls/server.crt`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// The certificate chain written inline (PEM), instead of `cert_file`. Default: none.
    /// Example: `cert: "-----BEGIN CERTIFICATE-----\n…"`.
    #[serde(default)]
    pub cert: Option<String>,
    /// PEM private key of the certificate (PKCS#8, PKCS#1 or SEC1); relative to the web
    /// config file's folder. Re-read when it changes. Required with TLS.
    /// Example: `key_file: /etc/harena-exporter/tls/server.key`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Client certificates: `NoClientCert` (default), `VerifyClientCertIfGiven` or
    /// `RequireAndVerifyClientCert` (both need `client_ca_file`).
    /// Example: `client_auth_type: RequireAndVerifyClientCert`.
    #[serde(default)]
    pub client_auth_type: Option<ClientAuthType>,
    /// PEM CA certificates that client certificates must chain to. Default: none.
    /// Example: `client_ca_file: /etc/harena-exporter/tls/clients-ca.crt`.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// The client CA certificates inline (PEM), instead of `client_ca_file`. Default: none.
    /// Example: `client_ca: "-----BEGIN CERTIFICATE-----\n…"`.
    #[serde(default)]
    pub client_ca: Option<String>,
    /// Lowest TLS version accepted: `TLS12` (default) or `TLS13`. Example: `min_version: TLS13`.
    #[serde(default)]
    pub min_version: Option<TlsVersion>,
    /// Highest TLS version accepted: `TLS13` (default) or `TLS12`. Example: `max_version: TLS13`.
    #[serde(default)]
    pub max_version: Option<TlsVersion>,
    /// Whether the server's cipher-suite order wins over the client's. Default `true`.
    /// Example: `prefer_server_cipher_suites: false`.
    #[serde(default = "yes")]
    pub prefer_server_cipher_suites: bool,
}

/// `client_auth_type:`, named as Go's `tls.ClientAuthType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ClientAuthType {
    /// No client certificate is asked for (the default).
    NoClientCert,
    /// A client certificate is asked for and verified when one is sent.
    VerifyClientCertIfGiven,
    /// A client certificate that chains to the client CA is required.
    RequireAndVerifyClientCert,
    /// Refused: asks for a certificate without verifying it.
    RequestClientCert,
    /// Refused: requires a certificate without verifying it.
    RequireAnyClientCert,
    /// Refused: the old name of `RequireAnyClientCert`.
    RequireClientCert,
}

/// A TLS version as exporter-toolkit writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum TlsVersion {
    /// TLS 1.0: refused.
    #[serde(rename = "TLS10")]
    Tls10,
    /// TLS 1.1: refused.
    #[serde(rename = "TLS11")]
    Tls11,
    /// TLS 1.2.
    #[serde(rename = "TLS12")]
    Tls12,
    /// TLS 1.3.
    #[serde(rename = "TLS13")]
    Tls13,
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls10 => "TLS10",
            TlsVersion::Tls11 => "TLS11",
            TlsVersion::Tls12 => "TLS12",
            TlsVersion::Tls13 => "TLS13",
        })
    }
}

/// `http_server_config:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServerConfig {
    /// Accepted for compatibility and ignored: the server speaks HTTP/1.1. Default `true`.
    /// Example: `http2: false`.
    #[serde(default = "yes")]
    pub http2: bool,
    /// Headers added to every response (also to 401 and 429 answers); an empty value adds
    /// nothing. Only `Content-Security-Policy`, `Strict-Transport-Security`,
    /// `X-Content-Type-Options` (`nosniff`), `X-Frame-Options` (`deny` or `sameorigin`)
    /// and `X-XSS-Protection`, as in exporter-toolkit. Default: none.
    /// Example: `headers: {X-Content-Type-Options: nosniff, X-Frame-Options: deny}`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl Default for HttpServerConfig {
    fn default() -> Self {
        HttpServerConfig {
            http2: true,
            headers: BTreeMap::new(),
        }
    }
}

/// `rate_limit:`: a token bucket over all requests (before authentication).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Time to earn one more request; `0s` turns the limit off. Example: `interval: 1s`.
    pub interval: PromDuration,
    /// Requests allowed at once after a quiet time (the bucket size); at least 1.
    /// Example: `burst: 20`.
    pub burst: u32,
}

/// A loaded web config, ready to serve with.
#[derive(Clone)]
pub struct WebConfig {
    /// The TLS server settings; `None` serves plain HTTP.
    pub tls: Option<Arc<ServerConfig>>,
    /// Headers added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `(interval, burst)` of the rate limit.
    pub rate_limit: Option<(Duration, u32)>,
    /// User name → bcrypt hash; empty: no authentication.
    users: BTreeMap<String, String>,
    /// A hash checked for an unknown user, with the users' usual cost, so that an unknown
    /// user takes as long as a known one (no user enumeration by timing).
    decoy: String,
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hashes stay out of debug output too.
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("headers", &self.headers)
            .field("rate_limit", &self.rate_limit)
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl WebConfig {
    /// Whether requests need basic-auth credentials.
    pub fn requires_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// The names of the basic-auth users.
    pub fn user_names(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }
}

/// Loads and checks a web config file, and the certificate, key and CA files it names.
///
/// # Errors
/// Every problem, one per line, as `file:line:column: field: message` (never the value
/// of a key or of a hash).
pub fn load(path: &Path) -> Result<WebConfig, String> {
    load_watched(path).0
}

/// Identity of a file's content: a change of any part means "read it again".
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: (i64, i64),
    changed: (i64, i64),
    len: u64,
    ino: u64,
    dev: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    // `metadata` follows symlinks: a Kubernetes-style swap of the `..data` link shows.
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: (m.mtime(), m.mtime_nsec()),
        changed: (m.ctime(), m.ctime_nsec()),
        len: m.len(),
        ino: m.ino(),
        dev: m.dev(),
    })
}

/// Reads files, stamping each just before reading it: a change after the stamp shows as
/// a different stamp at the next check, so it is never missed.
#[derive(Default)]
struct Reader {
    stamps: Vec<(PathBuf, Option<FileStamp>)>,
}

impl Reader {
    fn read(&mut self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.stamps.push((path.to_path_buf(), stamp(path)));
        std::fs::read(path)
    }
}

type Stamps = Vec<(PathBuf, Option<FileStamp>)>;

fn load_watched(path: &Path) -> (Result<WebConfig, String>, Stamps) {
    let mut reader = Reader::default();
    let name = path.display().to_string();
    let text = match reader.read(path) {
        Ok(bytes) => bytes,
        Err(e) => {
            let msg = format!("{name}: read web config file: {}", io_error_text(&e));
            return (Err(msg), reader.stamps);
        }
    };
    let Ok(text) = String::from_utf8(text) else {
        return (
            Err(format!("{name}: the web config file is not UTF-8")),
            reader.stamps,
        );
    };
    let dir = path.parent().unwrap_or(Path::new(""));
    let result = parse(&name, &text, dir, &mut reader);
    (result, reader.stamps)
}

fn parse(name: &str, text: &str, dir: &Path, reader: &mut Reader) -> Result<WebConfig, String> {
    let root = yaml::parse(name, text).map_err(|d| d.to_string())?;
    let mut cx = Context::new(name);
    let built = if matches!(root.value, NodeValue::Null) {
        // An empty file: plain HTTP, no authentication (as exporter-toolkit).
        build(&mut cx, &root, WebConfigFile::default(), dir, reader)
    } else {
        let root = strip_unsupported(&mut cx, &root);
        match cx.deserialize::<WebConfigFile>(&root, "", &[]) {
            Some(file) => build(&mut cx, &root, file, dir, reader),
            None => None,
        }
    };
    match built {
        Some(config) if cx.diagnostics.is_empty() => Ok(config),
        _ if cx.diagnostics.is_empty() => Err(format!("{name}: invalid web config")),
        _ => {
            cx.diagnostics.sort_by_key(|d| (d.line, d.column));
            let lines: Vec<String> = cx.diagnostics.iter().map(ToString::to_string).collect();
            Err(lines.join("\n"))
        }
    }
}

/// Reports the `tls_server_config` keys we refuse and returns the tree without them.
fn strip_unsupported(cx: &mut Context, root: &Node) -> Node {
    let Some(entries) = root.as_map() else {
        return root.clone();
    };
    let keys: Vec<&str> = UNSUPPORTED_TLS_KEYS.iter().map(|(k, _)| *k).collect();
    let mut out = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        if k.as_str() != Some("tls_server_config") {
            out.push((k.clone(), v.clone()));
            continue;
        }
        for (key, _) in v.as_map().unwrap_or_default() {
            let Some(text) = key.as_str() else { continue };
            if let Some((_, why)) = UNSUPPORTED_TLS_KEYS.iter().find(|(u, _)| *u == text) {
                cx.error(key, &format!("tls_server_config.{text}"), *why);
            }
        }
        out.push((k.clone(), v.without_keys(&keys)));
    }
    Node {
        mark: root.mark,
        value: NodeValue::Map(out),
    }
}

/// The deepest node along `keys` (a missing one stops the walk), for error positions.
fn node_at<'a>(root: &'a Node, keys: &[&str]) -> &'a Node {
    let mut node = root;
    for k in keys {
        match node.get(k) {
            Some(n) => node = n,
            None => break,
        }
    }
    node
}

fn resolve(dir: &Path, file: &Path) -> PathBuf {
    if file.is_absolute() || dir.as_os_str().is_empty() {
        file.to_path_buf()
    } else {
        dir.join(file)
    }
}

fn build(
    cx: &mut Context,
    root: &Node,
    file: WebConfigFile,
    dir: &Path,
    reader: &mut Reader,
) -> Option<WebConfig> {
    let before = cx.diagnostics.len();
    let headers = build_headers(cx, root, &file.http_server_config.headers);
    let decoy = check_users(cx, root, &file.basic_auth_users);
    let rate_limit = match &file.rate_limit {
        Some(r) if r.interval.0.is_zero() => None,
        Some(r) if r.burst == 0 => {
            let at = node_at(root, &["rate_limit", "burst"]);
            cx.error(
                at,
                "rate_limit.burst",
                "must be at least 1 (0 would refuse every request); set interval: 0s to turn the limit off",
            );
            None
        }
        Some(r) => Some((r.interval.0, r.burst)),
        None => None,
    };
    let tls = match &file.tls_server_config {
        Some(t) if tls_enabled(t) => build_tls(cx, root, t, dir, reader),
        _ => None,
    };
    (cx.diagnostics.len() == before).then(|| WebConfig {
        tls,
        headers,
        rate_limit,
        users: file.basic_auth_users,
        decoy,
    })
}

fn build_headers(
    cx: &mut Context,
    root: &Node,
    headers: &BTreeMap<String, String>,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    for (name, value) in headers {
        let at = node_at(root, &["http_server_config", "headers", name]);
        let path = format!("http_server_config.headers.{name}");
        let Some((canonical, allowed)) = HEADERS.iter().find(|(h, _)| h.eq_ignore_ascii_case(name))
        else {
            let names: Vec<&str> = HEADERS.iter().map(|(h, _)| *h).collect();
            cx.error(
                at,
                &path,
                format!(
                    "header {name:?} cannot be set; these can: {}",
                    names.join(", ")
                ),
            );
            continue;
        };
        if value.is_empty() {
            continue;
        }
        if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
            cx.error(
                at,
                &path,
                format!(
                    "invalid value {value:?}, expected one of: {}",
                    allowed.join(", ")
                ),
            );
            continue;
        }
        match HeaderValue::from_str(value) {
            Ok(v) => out.push((HeaderName::from_static(lower(canonical)), v)),
            Err(_) => cx.error(at, &path, "invalid header value (control characters?)"),
        }
    }
    out
}

/// `HeaderName::from_static` wants lowercase names.
fn lower(name: &'static str) -> &'static str {
    match name {
        "Content-Security-Policy" => "content-security-policy",
        "Strict-Transport-Security" => "strict-transport-security",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-Frame-Options" => "x-frame-options",
        _ => "x-xss-protection",
    }
}

/// Checks every user's hash; returns the decoy hash for unknown users.
fn check_users(cx: &mut Context, root: &Node, users: &BTreeMap<String, String>) -> String {
    let mut costs: BTreeMap<u32, usize> = BTreeMap::new();
    for (user, hash) in users {
        let at = node_at(root, &["basic_auth_users", user]);
        let path = format!("basic_auth_users.{user}");
        if user.is_empty() || user.contains(':') {
            cx.error(
                at,
                &path,
                "a user name must be non-empty and without ':' (basic auth puts a ':' between user and password)",
            );
            continue;
        }
        // Messages never quote the value: someone may have pasted a password here.
        match hash.parse::<bcrypt::HashParts>() {
            Ok(p) if (4..=31).contains(&p.get_cost()) => {
                *costs.entry(p.get_cost()).or_default() += 1;
            }
            Ok(p) => cx.error(
                at,
                &path,
                format!("bcrypt cost {} is out of the range 4-31", p.get_cost()),
            ),
            Err(e) => {
                let why = match e {
                    bcrypt::BcryptError::InvalidHash(why) => why.to_string(),
                    other => other.to_string(),
                };
                cx.error(
                    at,
                    &path,
                    format!(
                        "not a bcrypt hash ({why}): write the hash of the password, never the password; make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"
                    ),
                );
            }
        }
    }
    // The most common cost: an unknown user then takes as long as most known ones.
    let cost = costs
        .iter()
        .max_by_key(|(_, n)| **n)
        .map_or(10, |(c, _)| *c);
    // 53 characters of bcrypt base64 (salt and hash, all zero bits): a valid hash that
    // no password matches in practice.
    format!("$2b${cost:02}${}", ".".repeat(53))
}

fn tls_enabled(t: &TlsServerConfig) -> bool {
    t.cert_file.is_some()
        || t.cert.is_some()
        || t.key_file.is_some()
        || t.client_ca_file.is_some()
        || t.client_ca.is_some()
        || t.client_auth_type.is_some()
}

/// A PEM source: a file (read now, relative to the web config's folder) or inline text.
fn read_pem(
    cx: &mut Context,
    root: &Node,
    reader: &mut Reader,
    dir: &Path,
    (file_key, file): (&str, Option<&PathBuf>),
    (inline_key, inline): (&str, Option<&String>),
) -> Option<(Vec<u8>, String)> {
    let at = |k: &str| node_at(root, &["tls_server_config", k]).clone();
    match (file, inline) {
        (Some(_), Some(_)) => {
            cx.error(
                &at(inline_key),
                &format!("tls_server_config.{inline_key}"),
                format!("set only one of {inline_key} and {file_key}"),
            );
            None
        }
        (Some(f), None) => {
            let path = resolve(dir, f);
            match reader.read(&path) {
                Ok(bytes) => Some((bytes, path.display().to_string())),
                Err(e) => {
                    cx.error(
                        &at(file_key),
                        &format!("tls_server_config.{file_key}"),
                        format!("read {}: {}", path.display(), io_error_text(&e)),
                    );
                    None
                }
            }
        }
        (None, Some(text)) => Some((text.clone().into_bytes(), format!("inline {inline_key}"))),
        (None, None) => None,
    }
}

/// Whether a misspelt key was already reported with `did you mean "<field>"?`: then
/// "missing <field>" would only repeat it.
fn suggested(cx: &Context, field: &str) -> bool {
    let hint = format!("did you mean \"{field}\"?");
    cx.diagnostics.iter().any(|d| d.message.ends_with(&hint))
}

fn parse_certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("parse {what}: {}", io_error_text(&e)))?;
    if certs.is_empty() {
        return Err(format!("no PEM certificate found in {what}"));
    }
    Ok(certs)
}

fn build_tls(
    cx: &mut Context,
    root: &Node,
    t: &TlsServerConfig,
    dir: &Path,
    reader: &mut Reader,
) -> Option<Arc<ServerConfig>> {
    const P: &str = "tls_server_config";
    let before = cx.diagnostics.len();
    let at = |k: &str| node_at(root, &[P, k]).clone();
    let provider = Arc::new(rustls::crypto::ring::default_provider());

    let cert_src = read_pem(
        cx,
        root,
        reader,
        dir,
        ("cert_file", t.cert_file.as_ref()),
        ("cert", t.cert.as_ref()),
    );
    let certs = match cert_src {
        Some((pem, what)) => match parse_certs(&pem, &what) {
            Ok(c) => Some(c),
            Err(e) => {
                let k = if t.cert_file.is_some() {
                    "cert_file"
                } else {
                    "cert"
                };
                cx.error(&at(k), &format!("{P}.{k}"), e);
                None
            }
        },
        None => {
            if t.cert_file.is_none() && t.cert.is_none() && !suggested(cx, "cert_file") {
                cx.error(
                    &at(P),
                    P,
                    "missing cert_file: TLS needs the server's certificate (or remove tls_server_config for plain HTTP)",
                );
            }
            None
        }
    };

    let key: Option<PrivateKeyDer<'static>> = match &t.key_file {
        None if suggested(cx, "key_file") => None,
        None => {
            cx.error(
                &at(P),
                P,
                "missing key_file: TLS needs the private key of the certificate",
            );
            None
        }
        Some(f) => {
            let path = resolve(dir, f);
            let field = format!("{P}.key_file");
            match reader.read(&path) {
                Err(e) => {
                    let msg = format!("read {}: {}", path.display(), io_error_text(&e));
                    cx.error(&at("key_file"), &field, msg);
                    None
                }
                // Errors name the file, never its content.
                Ok(pem) => match rustls_pemfile::private_key(&mut &pem[..]) {
                    Ok(Some(k)) => Some(k),
                    Ok(None) => {
                        let msg = format!("no PEM private key found in {}", path.display());
                        cx.error(&at("key_file"), &field, msg);
                        None
                    }
                    Err(e) => {
                        let msg = format!("parse {}: {}", path.display(), io_error_text(&e));
                        cx.error(&at("key_file"), &field, msg);
                        None
                    }
                },
            }
        }
    };

    let ca_src = read_pem(
        cx,
        root,
        reader,
        dir,
        ("client_ca_file", t.client_ca_file.as_ref()),
        ("client_ca", t.client_ca.as_ref()),
    );
    let ca_key = if t.client_ca_file.is_some() {
        "client_ca_file"
    } else {
        "client_ca"
    };
    let roots = ca_src.and_then(|(pem, what)| {
        let built = parse_certs(&pem, &what).and_then(|certs| {
            let mut roots = RootCertStore::empty();
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| format!("use a CA certificate of {what}: {e}"))?;
            }
            Ok(roots)
        });
        built
            .map_err(|e| cx.error(&at(ca_key), &format!("{P}.{ca_key}"), e))
            .ok()
    });
    let has_ca = t.client_ca_file.is_some() || t.client_ca.is_some();

    let auth = t.client_auth_type.unwrap_or(ClientAuthType::NoClientCert);
    let auth_field = format!("{P}.client_auth_type");
    let verifier: Option<Arc<dyn ClientCertVerifier>> = match auth {
        ClientAuthType::NoClientCert => {
            if has_ca {
                cx.error(
                    &at(ca_key),
                    &format!("{P}.{ca_key}"),
                    "client CA certificates are set but client_auth_type is NoClientCert: set client_auth_type: RequireAndVerifyClientCert",
                );
            }
            Some(WebPkiClientVerifier::no_client_auth())
        }
        ClientAuthType::VerifyClientCertIfGiven | ClientAuthType::RequireAndVerifyClientCert => {
            match roots {
                Some(roots) => {
                    let builder = WebPkiClientVerifier::builder_with_provider(
                        Arc::new(roots),
                        Arc::clone(&provider),
                    );
                    let builder = if auth == ClientAuthType::VerifyClientCertIfGiven {
                        builder.allow_unauthenticated()
                    } else {
                        builder
                    };
                    match builder.build() {
                        Ok(v) => Some(v),
                        Err(e) => {
                            let msg = format!("use the client CA certificates: {e}");
                            cx.error(&at(ca_key), &format!("{P}.{ca_key}"), msg);
                            None
                        }
                    }
                }
                None => {
                    if !has_ca {
                        cx.error(
                            &at("client_auth_type"),
                            &auth_field,
                            format!("{auth:?} needs client_ca_file: the CA that signs client certificates"),
                        );
                    }
                    None
                }
            }
        }
        ClientAuthType::RequestClientCert
        | ClientAuthType::RequireAnyClientCert
        | ClientAuthType::RequireClientCert => {
            cx.error(
                &at("client_auth_type"),
                &auth_field,
                format!(
                    "{auth:?} is not supported: a client certificate that is not verified proves nothing; use RequireAndVerifyClientCert with client_ca_file"
                ),
            );
            None
        }
    };

    let min = t.min_version.unwrap_or(TlsVersion::Tls12);
    let max = t.max_version.unwrap_or(TlsVersion::Tls13);
    for (key, v) in [
        ("min_version", t.min_version),
        ("max_version", t.max_version),
    ] {
        if let Some(v) = v.filter(|v| *v < TlsVersion::Tls12) {
            cx.error(
                &at(key),
                &format!("{P}.{key}"),
                format!("{v} is not supported: TLS12 and TLS13 are"),
            );
        }
    }
    if min > max && min >= TlsVersion::Tls12 {
        cx.error(
            &at("min_version"),
            &format!("{P}.min_version"),
            format!("min_version {min} is above max_version {max}"),
        );
    }
    let mut versions: Vec<&'static SupportedProtocolVersion> = Vec::new();
    if (min..=max).contains(&TlsVersion::Tls12) {
        versions.push(&rustls::version::TLS12);
    }
    if (min..=max).contains(&TlsVersion::Tls13) {
        versions.push(&rustls::version::TLS13);
    }

    let (Some(certs), Some(key), Some(verifier)) = (certs, key, verifier) else {
        return None;
    };
    if cx.diagnostics.len() != before {
        return None;
    }
    let builder =
        match ServerConfig::builder_with_provider(provider).with_protocol_versions(&versions) {
            Ok(b) => b,
            Err(e) => {
                cx.error(&at(P), P, format!("set up TLS: {e}"));
                return None;
            }
        };
    let config = builder
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key);
    let mut config = match config {
        Ok(c) => c,
        Err(e) => {
            cx.error(
                &at("key_file"),
                &format!("{P}.key_file"),
                format!("use the certificate and its key: {e}"),
            );
            return None;
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ignore_client_order = t.prefer_server_cipher_suites;
    Some(Arc::new(config))
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Serve it.
    Allow,
    /// 401 with `WWW-Authenticate: Basic`.
    Unauthorized,
    /// 429: over the rate limit.
    TooManyRequests,
}

struct Bucket {
    interval: Duration,
    burst: u32,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(interval: Duration, burst: u32, now: Instant) -> Self {
        Bucket {
            interval,
            burst,
            tokens: f64::from(burst),
            last: now,
        }
    }

    fn allow(&mut self, now: Instant) -> bool {
        let earned =
            now.saturating_duration_since(self.last).as_secs_f64() / self.interval.as_secs_f64();
        self.tokens = (self.tokens + earned).min(f64::from(self.burst));
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The web config in force, re-read when one of its files changes, and what outlives a
/// reload: the cache of bcrypt checks and the rate limiter.
pub struct WebSecurity {
    path: PathBuf,
    current: RwLock<Arc<WebConfig>>,
    /// Stamps of the files read by the last load attempt (good or bad).
    stamps: Mutex<Stamps>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    /// Salted SHA-256 of (user, hash, password) → (when, accepted).
    cache: Mutex<HashMap<[u8; 32], (Instant, bool)>>,
    /// `None` when no random salt could be drawn: then nothing is cached.
    salt: Option<[u8; 32]>,
    /// One bcrypt check at a time (each takes ~50-100 ms of CPU): a flood of wrong
    /// passwords takes one core at most.
    bcrypt: tokio::sync::Semaphore,
    bucket: Mutex<Option<Bucket>>,
}

impl fmt::Debug for WebSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSecurity")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl WebSecurity {
    /// Loads the web config file.
    ///
    /// # Errors
    /// As [`load`].
    pub fn new(path: &Path) -> Result<Self, String> {
        let (config, stamps) = load_watched(path);
        let mut salt = [0u8; 32];
        let salt = rustls::crypto::ring::default_provider()
            .secure_random
            .fill(&mut salt)
            .ok()
            .map(|()| salt);
        Ok(WebSecurity {
            path: path.to_path_buf(),
            current: RwLock::new(Arc::new(config?)),
            stamps: Mutex::new(stamps),
            reloading: tokio::sync::Mutex::new(()),
            cache: Mutex::new(HashMap::new()),
            salt,
            bcrypt: tokio::sync::Semaphore::new(1),
            bucket: Mutex::new(None),
        })
    }

    /// The web config file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The config in force, without looking at the files (see [`WebSecurity::current`]).
    pub fn snapshot(&self) -> Arc<WebConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether a file read by the last load changed since (a `stat` per file: a few
    /// microseconds, cheap enough for every connection and request).
    fn changed(&self) -> bool {
        lock(&self.stamps)
            .iter()
            .any(|(path, seen)| stamp(path) != *seen)
    }

    /// The config in force, re-read first when one of its files changed. A file that no
    /// longer loads is logged (once per change) and the last good config is kept.
    pub async fn current(&self) -> Arc<WebConfig> {
        if !self.changed() {
            return self.snapshot();
        }
        let _one = self.reloading.lock().await;
        if !self.changed() {
            // Another task reloaded while this one waited.
            return self.snapshot();
        }
        let path = self.path.clone();
        let (result, stamps) = match tokio::task::spawn_blocking(move || load_watched(&path)).await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "reload the web config");
                return self.snapshot();
            }
        };
        *lock(&self.stamps) = stamps;
        let file = self.path.display().to_string();
        match result {
            Ok(new) => {
                let old = self.snapshot();
                if new.tls.is_some() != old.tls.is_some() {
                    tracing::error!(
                        file,
                        "web config reload refused: turning TLS on or off takes a restart; keeping the running web config"
                    );
                } else {
                    tracing::info!(
                        file,
                        tls = new.tls.is_some(),
                        basic_auth_users = new.users.len(),
                        "web config reloaded"
                    );
                    *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(new);
                }
            }
            Err(e) => {
                for line in e.lines() {
                    tracing::error!(
                        error = line,
                        "web config reload refused; keeping the running web config"
                    );
                }
            }
        }
        self.snapshot()
    }

    /// Decides on a request from its headers: the rate limit first, then basic auth.
    pub async fn authorize(&self, config: &WebConfig, headers: &HeaderMap) -> Verdict {
        if let Some((interval, burst)) = config.rate_limit {
            let now = Instant::now();
            let mut bucket = lock(&self.bucket);
            let b = match bucket.as_mut() {
                Some(b) if b.interval == interval && b.burst == burst => b,
                _ => bucket.insert(Bucket::new(interval, burst, now)),
            };
            if !b.allow(now) {
                return Verdict::TooManyRequests;
            }
        }
        if config.users.is_empty() {
            return Verdict::Allow;
        }
        let Some((user, password)) = basic_credentials(headers) else {
            return Verdict::Unauthorized;
        };
        let (hash, known) = match config.users.get(&user) {
            Some(h) => (h.as_str(), true),
            None => (config.decoy.as_str(), false),
        };
        let ok = self.verify(&user, hash, password).await;
        if ok && known {
            Verdict::Allow
        } else {
            // An unknown name is not logged: it may be a password typed in the wrong field.
            let user = if known { user.as_str() } else { "(unknown)" };
            tracing::debug!(user, "basic auth refused");
            Verdict::Unauthorized
        }
    }

    async fn verify(&self, user: &str, hash: &str, password: Vec<u8>) -> bool {
        let key = self.cache_key(user, hash, &password);
        if let Some(ok) = key.and_then(|k| self.cached(&k)) {
            return ok;
        }
        let Ok(_permit) = self.bcrypt.acquire().await else {
            return false;
        };
        // The same pair may have been checked while this request waited.
        if let Some(ok) = key.and_then(|k| self.cached(&k)) {
            return ok;
        }
        let hash = hash.to_string();
        let ok = tokio::task::spawn_blocking(move || {
            // Constant time: bcrypt compares its output with `subtle`.
            bcrypt::verify(&password, &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if let Some(k) = key {
            let now = Instant::now();
            let mut cache = lock(&self.cache);
            if cache.len() >= AUTH_CACHE_MAX {
                cache.retain(|_, (at, _)| now.duration_since(*at) < AUTH_CACHE_TTL);
                if cache.len() >= AUTH_CACHE_MAX {
                    cache.clear();
                }
            }
            cache.insert(k, (now, ok));
        }
        ok
    }

    fn cached(&self, key: &[u8; 32]) -> Option<bool> {
        let cache = lock(&self.cache);
        let (at, ok) = cache.get(key)?;
        (at.elapsed() < AUTH_CACHE_TTL).then_some(*ok)
    }

    /// Salted SHA-256 of the pair and the hash it is checked against: the cache holds no
    /// password, and a changed hash (a new password in the file) misses the cache.
    fn cache_key(&self, user: &str, hash: &str, password: &[u8]) -> Option<[u8; 32]> {
        let salt = self.salt?;
        let sha256 = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
            .tls13()?
            .common
            .hash_provider;
        let mut ctx = sha256.start();
        ctx.update(&salt);
        for part in [user.as_bytes(), hash.as_bytes(), password] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        ctx.finish().as_ref().try_into().ok()
    }
}

/// `Authorization: Basic …` as (user, password).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, Vec<u8>)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64_decode(token.trim())?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

/// Standard base64 (RFC 4648), padding optional.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let body = text.trim_end_matches('=');
    if text.len() - body.len() > 2 || body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in body.bytes() {
        acc = (acc << 6) | value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn self_signed(dir: &Path) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        write(dir, "server.crt", &cert.pem());
        write(dir, "server.key", &key.serialize_pem());
    }

    fn load_text(text: &str) -> Result<WebConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        self_signed(dir.path());
        let p = write(dir.path(), "web.yml", text);
        load(&p).map_err(|e| e.replace(&format!("{}/", dir.path().display()), ""))
    }

    #[test]
    fn a_full_file_loads_with_relative_paths() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let c = load_text(&format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS13\nhttp_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n    Content-Security-Policy: \"\"\nbasic_auth_users:\n  alice: {hash}\nrate_limit: {{interval: 1s, burst: 5}}\n"
        ))
        .unwrap();
        assert!(c.tls.is_some());
        assert_eq!(c.headers.len(), 1);
        assert_eq!(c.headers[0].0, "x-frame-options");
        assert_eq!(c.user_names().collect::<Vec<_>>(), ["alice"]);
        assert_eq!(c.rate_limit, Some((Duration::from_secs(1), 5)));
        assert!(!format!("{c:?}").contains(&hash));
    }

    #[test]
    fn empty_and_auth_only_files_serve_plain_http() {
        let c = load_text("").unwrap();
        assert!(c.tls.is_none() && !c.requires_auth());
        let c = load_text("tls_server_config: {min_version: TLS13}\n").unwrap();
        assert!(c.tls.is_none());
    }

    #[test]
    fn errors_name_file_line_column_and_field() {
        let cases: &[(&str, &str)] = &[
            (
                "tls_server_config:\n  cert_file: server.crt\n",
                "web.yml:2:3: tls_server_config: missing key_file",
            ),
            (
                "tls_server_config:\n  cert_file: nope.crt\n  key_file: server.key\n",
                "web.yml:2:14: tls_server_config.cert_file: read nope.crt: no such file or directory",
            ),
            (
                "tls_server_config:\n  cert_file: server.crt\n  key_file: server.crt\n",
                "web.yml:3:13: tls_server_config.key_file: no PEM private key found in server.crt",
            ),
            (
                "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  key: x\n",
                "web.yml:4:3: tls_server_config.key: a literal key is not allowed",
            ),
            (
                "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
                "web.yml:4:3: tls_server_config.cipher_suites: not supported",
            ),
            (
                "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n",
                "web.yml:4:21: tls_server_config.client_auth_type: RequireAndVerifyClientCert needs client_ca_file",
            ),
            (
                "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAnyClientCert\n",
                "RequireAnyClientCert is not supported",
            ),
            (
                "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: server.crt\n",
                "tls_server_config.client_ca_file: client CA certificates are set but client_auth_type is NoClientCert",
            ),
            (
                "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: Sometimes\n",
                "web.yml:4:21: tls_server_config.client_auth_type: unknown variant \"Sometimes\"",
            ),
            (
                "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS11\n",
                "tls_server_config.min_version: TLS11 is not supported",
            ),
            (
                "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS13\n  max_version: TLS12\n",
                "min_version TLS13 is above max_version TLS12",
            ),
            (
                "tls_server_config:\n  cert_fil: server.crt\n",
                "web.yml:2:3: tls_server_config.cert_fil: unknown field \"cert_fil\", did you mean \"cert_file\"?",
            ),
            (
                "http_server_config:\n  headers:\n    X-Powered-By: me\n",
                "web.yml:3:19: http_server_config.headers.X-Powered-By: header \"X-Powered-By\" cannot be set",
            ),
            (
                "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
                "invalid value \"allow\", expected one of: deny, sameorigin",
            ),
            (
                "basic_auth_users:\n  alice: hunter2\n",
                "web.yml:2:10: basic_auth_users.alice: not a bcrypt hash",
            ),
            (
                "rate_limit: {interval: 1s, burst: 0}\n",
                "rate_limit.burst: must be at least 1",
            ),
            (
                "basic_auth_users: [a]\n",
                "web.yml:1:19: basic_auth_users: invalid type",
            ),
            ("tls_server_config: {\n", "web.yml:"),
        ];
        let mut wrong = Vec::new();
        for (text, want) in cases {
            let e = load_text(text).unwrap_err();
            if !e.contains(want) {
                wrong.push(format!("{text}\n→ {e}\nwant {want}"));
            }
            assert!(!e.contains("hunter2"), "{e}");
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        self_signed(dir.path());
        let other = rcgen::KeyPair::generate().unwrap();
        write(dir.path(), "other.key", &other.serialize_pem());
        let p = write(
            dir.path(),
            "web.yml",
            "tls_server_config: {cert_file: server.crt, key_file: other.key}\n",
        );
        let e = load(&p).unwrap_err();
        assert!(
            e.contains("tls_server_config.key_file: use the certificate and its key"),
            "{e}"
        );
    }

    #[test]
    fn basic_credentials_decode() {
        let mut h = HeaderMap::new();
        assert_eq!(basic_credentials(&h), None);
        h.insert(header::AUTHORIZATION, "Basic YWxpY2U6cDpx".parse().unwrap());
        assert_eq!(
            basic_credentials(&h),
            Some(("alice".to_string(), b"p:q".to_vec()))
        );
        h.insert(header::AUTHORIZATION, "basic YTpi".parse().unwrap());
        assert_eq!(basic_credentials(&h), Some(("a".into(), b"b".to_vec())));
        h.insert(header::AUTHORIZATION, "Bearer YTpi".parse().unwrap());
        assert_eq!(basic_credentials(&h), None);
        h.insert(header::AUTHORIZATION, "Basic !!".parse().unwrap());
        assert_eq!(basic_credentials(&h), None);
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert_eq!(base64_decode("YWI").unwrap(), b"ab");
        assert_eq!(base64_decode("Y"), None);
    }

    fn auth(user: &str, password: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let token = {
            // Test-only encoder.
            const A: &[u8; 64] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let input = format!("{user}:{password}").into_bytes();
            let mut out = String::new();
            for chunk in input.chunks(3) {
                let b = [
                    chunk[0],
                    *chunk.get(1).unwrap_or(&0),
                    *chunk.get(2).unwrap_or(&0),
                ];
                let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
                for i in 0..4 {
                    if i <= chunk.len() {
                        out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
                    } else {
                        out.push('=');
                    }
                }
            }
            out
        };
        h.insert(
            header::AUTHORIZATION,
            format!("Basic {token}").parse().unwrap(),
        );
        h
    }

    #[tokio::test]
    async fn basic_auth_verifies_caches_and_hides_unknown_users() {
        let dir = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash("right", 4).unwrap();
        let p = write(
            dir.path(),
            "web.yml",
            &format!("basic_auth_users:\n  alice: {hash}\n"),
        );
        let sec = WebSecurity::new(&p).unwrap();
        let c = sec.current().await;
        assert!(c.decoy.starts_with("$2b$04$"));
        assert!(!bcrypt::verify("", &c.decoy).unwrap());
        assert_eq!(
            sec.authorize(&c, &HeaderMap::new()).await,
            Verdict::Unauthorized
        );
        assert_eq!(
            sec.authorize(&c, &auth("alice", "right")).await,
            Verdict::Allow
        );
        assert_eq!(
            sec.authorize(&c, &auth("alice", "wrong")).await,
            Verdict::Unauthorized
        );
        assert_eq!(
            sec.authorize(&c, &auth("bob", "right")).await,
            Verdict::Unauthorized
        );
        // Both answers are cached, keyed by a salted hash.
        assert_eq!(lock(&sec.cache).len(), 3);
        assert_eq!(
            sec.authorize(&c, &auth("alice", "right")).await,
            Verdict::Allow
        );
        assert_eq!(lock(&sec.cache).len(), 3);
        // A new hash in the file: the old password no longer works, with no restart.
        let hash2 = bcrypt::hash("new", 4).unwrap();
        std::fs::write(&p, format!("basic_auth_users:\n  alice: {hash2}\n")).unwrap();
        let c = sec.current().await;
        assert_eq!(
            sec.authorize(&c, &auth("alice", "right")).await,
            Verdict::Unauthorized
        );
        assert_eq!(
            sec.authorize(&c, &auth("alice", "new")).await,
            Verdict::Allow
        );
        // A broken file keeps the last good config.
        std::fs::write(&p, "basic_auth_users: [\n").unwrap();
        let c = sec.current().await;
        assert_eq!(
            sec.authorize(&c, &auth("alice", "new")).await,
            Verdict::Allow
        );
    }

    #[tokio::test]
    async fn the_rate_limit_is_a_token_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "web.yml",
            "rate_limit: {interval: 1h, burst: 2}\n",
        );
        let sec = WebSecurity::new(&p).unwrap();
        let c = sec.current().await;
        let h = HeaderMap::new();
        assert_eq!(sec.authorize(&c, &h).await, Verdict::Allow);
        assert_eq!(sec.authorize(&c, &h).await, Verdict::Allow);
        assert_eq!(sec.authorize(&c, &h).await, Verdict::TooManyRequests);
        let now = Instant::now();
        let mut b = Bucket::new(Duration::from_millis(100), 1, now);
        assert!(b.allow(now));
        assert!(!b.allow(now + Duration::from_millis(50)));
        assert!(b.allow(now + Duration::from_millis(150)));
    }
}
