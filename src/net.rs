//! Network building blocks shared by the checks: name resolution, TCP connect and the
//! TLS client, each bounded by the run's deadline and each failing with a [`CheckError`]
//! whose [`Reason`] tells which phase broke.
//!
//! Checks time every phase themselves, the way blackbox_exporter does, so these
//! functions do one phase each instead of hiding them behind a client library.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

use crate::checks::{BuildError, CheckError, Reason};
use crate::config::types::TlsConfig;

crate::metric!(
    pub(crate) TLS_CERT_EXPIRY,
    gauge,
    "harena_tls_cert_expiry_timestamp_seconds",
    "Earliest notAfter of the certificate chain the server presented, in Unix seconds."
);

/// Which IP version to connect over: `ip_protocol` in a check's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IpProtocol {
    /// IPv4 (`ip4`), the default.
    #[default]
    Ip4,
    /// IPv6 (`ip6`).
    Ip6,
}

impl IpProtocol {
    /// The IP version of an address.
    pub fn of(addr: &SocketAddr) -> Self {
        if addr.is_ipv4() {
            IpProtocol::Ip4
        } else {
            IpProtocol::Ip6
        }
    }

    /// 4 or 6, the value of the `*_ip_protocol` gauges.
    pub fn number(self) -> u8 {
        match self {
            IpProtocol::Ip4 => 4,
            IpProtocol::Ip6 => 6,
        }
    }

    fn other(self) -> Self {
        match self {
            IpProtocol::Ip4 => IpProtocol::Ip6,
            IpProtocol::Ip6 => IpProtocol::Ip4,
        }
    }

    fn matches(self, ip: &IpAddr) -> bool {
        match self {
            IpProtocol::Ip4 => ip.is_ipv4(),
            IpProtocol::Ip6 => ip.is_ipv6(),
        }
    }
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IpProtocol::Ip4 => "IPv4",
            IpProtocol::Ip6 => "IPv6",
        })
    }
}

/// Splits `host:port` (or `[v6]:port`) into the host, without brackets, and the port.
///
/// # Errors
/// A message saying what is wrong, for a config error.
pub fn split_host_port(text: &str) -> Result<(String, u16), String> {
    let bad =
        || format!("invalid address {text:?}: expected host:port, like redis:6379 or [::1]:6379");
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = after.strip_prefix(':').ok_or_else(bad)?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(format!(
                "invalid address {text:?}: {host:?} is not an IPv6 address"
            ));
        }
        (host, port)
    } else {
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        if host.contains(':') {
            return Err(format!(
                "invalid address {text:?}: write an IPv6 address in brackets, like [::1]:6379"
            ));
        }
        (host, port)
    };
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(bad());
    }
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(format!("invalid address {text:?}: port 0"));
    }
    Ok((host.to_string(), port))
}

/// Resolves a host to one address of the preferred IP version.
///
/// IP literals (also `[::1]`) are used as they are. `localhost` and `*.localhost` are the
/// loopback address of the preferred version, and `invalid` and `*.invalid` never
/// resolve; neither sends a query (RFC 6761). Other names go through the system
/// resolver; when it has no address of the preferred version, the other version is used
/// if `fallback` is set.
///
/// # Errors
/// [`Reason::Dns`] with the resolver's answer.
pub async fn resolve(
    host: &str,
    port: u16,
    preferred: IpProtocol,
    fallback: bool,
) -> Result<SocketAddr, CheckError> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let dns = |what: &str| CheckError::new(Reason::Dns, format!("resolve {bare}: {what}"));
    let name = bare.trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() {
        return Err(CheckError::new(Reason::Dns, "resolve: empty host name"));
    }
    if name == "localhost" || name.ends_with(".localhost") {
        let ip = match preferred {
            IpProtocol::Ip4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpProtocol::Ip6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        return Ok(SocketAddr::new(ip, port));
    }
    if name == "invalid" || name.ends_with(".invalid") {
        return Err(dns("no such host"));
    }
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((bare, port)).await {
        Ok(addrs) => addrs.collect(),
        Err(e) => {
            let text = io_error_text(&e);
            let text = text
                .strip_prefix("failed to lookup address information: ")
                .unwrap_or(&text)
                .to_string();
            return Err(dns(&lowercase_first(&text)));
        }
    };
    if let Some(addr) = addrs.iter().find(|a| preferred.matches(&a.ip())) {
        return Ok(*addr);
    }
    let other = preferred.other();
    match addrs.iter().find(|a| other.matches(&a.ip())) {
        Some(addr) if fallback => Ok(*addr),
        Some(_) => Err(dns(&format!(
            "no {preferred} address (only {other}, and ip_protocol_fallback is off)"
        ))),
        None => Err(dns("no address")),
    }
}

/// Opens a TCP connection, with `TCP_NODELAY`, before `deadline`.
///
/// # Errors
/// [`Reason::Timeout`] when the deadline passes, [`Reason::Refused`] when the connection
/// is refused or cannot be made (unreachable network or host, …).
pub async fn connect(addr: SocketAddr, deadline: Instant) -> Result<TcpStream, CheckError> {
    let start = Instant::now();
    let what = format!("connect to {addr}");
    match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Err(_) => Err(timed_out(&what, start)),
        Ok(Err(e)) if e.kind() == io::ErrorKind::TimedOut => Err(CheckError::new(
            Reason::Timeout,
            format!("{what}: {}", io_error_text(&e)),
        )),
        Ok(Err(e)) => Err(CheckError::new(
            Reason::Refused,
            format!("{what}: {}", io_error_text(&e)),
        )),
        Ok(Ok(stream)) => {
            if let Err(e) = stream.set_nodelay(true) {
                // Only costs latency; the probe itself still works.
                tracing::debug!(%addr, error = %e, "set TCP_NODELAY");
            }
            Ok(stream)
        }
    }
}

/// A [`Reason::Timeout`] error for a phase that started at `start`:
/// `connect to 127.0.0.1:9: timed out after 2s`.
pub fn timed_out(what: &str, start: Instant) -> CheckError {
    CheckError::new(
        Reason::Timeout,
        format!("{what}: timed out after {}", fmt_duration(start.elapsed())),
    )
}

/// An I/O error as a short lowercase phrase, without the `(os error N)` suffix.
pub fn io_error_text(e: &io::Error) -> String {
    let text = match e.kind() {
        io::ErrorKind::ConnectionRefused => return "connection refused".to_string(),
        io::ErrorKind::ConnectionReset => return "connection reset by peer".to_string(),
        io::ErrorKind::UnexpectedEof => return "connection closed by peer".to_string(),
        _ => e.to_string(),
    };
    let text = match text.find(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_string(),
        _ => text,
    };
    lowercase_first(&text)
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        // Keep acronyms ("TLS …") as they are.
        Some(c) if !chars.next().is_some_and(char::is_uppercase) => {
            c.to_lowercase().chain(text.chars().skip(1)).collect()
        }
        _ => text.to_string(),
    }
}

/// A duration for people: `2s`, `1.5s`, `3.4ms`, `250µs`.
pub fn fmt_duration(d: Duration) -> String {
    fn trim(v: f64, unit: &str) -> String {
        let s = format!("{v:.1}");
        let s = s.strip_suffix(".0").unwrap_or(&s);
        format!("{s}{unit}")
    }
    let secs = d.as_secs_f64();
    if secs >= 1.0 {
        trim(secs, "s")
    } else if secs >= 0.001 {
        trim(secs * 1_000.0, "ms")
    } else {
        format!("{}µs", d.as_micros())
    }
}

/// A byte count for people: `512 B`, `1.2 KiB`, `3.0 MiB`.
pub fn fmt_bytes(n: u64) -> String {
    // Precision loss is irrelevant for a one-decimal display.
    #[allow(clippy::cast_precision_loss)]
    let v = n as f64;
    if n < 1024 {
        format!("{n} B")
    } else if n < 1024 * 1024 {
        format!("{:.1} KiB", v / 1024.0)
    } else {
        format!("{:.1} MiB", v / (1024.0 * 1024.0))
    }
}

/// Text from the network for a failure detail: quoted, control characters escaped, cut
/// after `max_chars` characters.
pub fn quote_truncated(text: &str, max_chars: usize) -> String {
    let mut cut: String = text.chars().take(max_chars).collect();
    let more = text.chars().nth(max_chars).is_some();
    if more {
        cut.push('…');
    }
    format!("{cut:?}")
}

tokio::task_local! {
    /// The chain the server presented in the handshake that the current task is doing.
    static PRESENTED: Arc<Mutex<Vec<CertificateDer<'static>>>>;
}

/// Verifies as rustls's WebPKI verifier does (or accepts anything when verification is
/// off), and first copies the presented chain into the task's [`PRESENTED`] slot, so
/// that the expiry of a certificate that fails verification can still be reported.
///
/// The copy goes through a task-local rather than the verifier itself because one
/// `ClientConfig` (and so one verifier) serves every run of a check, concurrently.
#[derive(Debug)]
struct CapturingVerifier {
    /// `None` when `insecure_skip_verify` is set.
    inner: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for CapturingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Outside `tls_handshake` there is no slot, and nothing to capture for.
        let _outside_handshake = PRESENTED.try_with(|slot| {
            let mut chain = slot.lock().unwrap_or_else(PoisonError::into_inner);
            chain.clear();
            chain.push(end_entity.clone().into_owned());
            chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        });
        match &self.inner {
            Some(inner) => {
                inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Checked even when verification is off: the server must hold the key of the
        // certificate whose expiry we report.
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Builds the TLS client of a check from its `tls_config`, once, at build time.
///
/// Trusts the built-in WebPKI roots, or only the certificates of `ca_file` when it is set;
/// presents `cert_file`/`key_file` when both are set; accepts any certificate when
/// `insecure_skip_verify` is set. Session resumption is off, so that every run does a full
/// handshake and sees the certificate. The crypto provider is ring, chosen here rather
/// than through a process-wide default.
///
/// # Errors
/// A [`BuildError`] naming the `tls_config.*` field whose file cannot be used.
pub fn client_config(tls: &TlsConfig) -> Result<Arc<ClientConfig>, BuildError> {
    // Most checks use the default settings: share one config (and one parsed copy of
    // the built-in roots, ~150 certificates) instead of building one per check.
    static DEFAULT: std::sync::OnceLock<Arc<ClientConfig>> = std::sync::OnceLock::new();
    if *tls == TlsConfig::default() {
        if let Some(c) = DEFAULT.get() {
            return Ok(Arc::clone(c));
        }
        let c = build_client_config(tls)?;
        return Ok(Arc::clone(DEFAULT.get_or_init(|| c)));
    }
    build_client_config(tls)
}

fn build_client_config(tls: &TlsConfig) -> Result<Arc<ClientConfig>, BuildError> {
    let provider: Arc<CryptoProvider> = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match &tls.ca_file {
        Some(path) => Some(load_roots(path)?),
        None => None,
    };
    let inner = if tls.insecure_skip_verify {
        None
    } else {
        let roots = roots.unwrap_or_else(|| RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .build()
                .map_err(|e| {
                    BuildError::new("tls_config.ca_file", format!("use CA certificates: {e}"))
                })?;
        Some(verifier)
    };
    let verifier = CapturingVerifier {
        inner,
        algorithms: provider.signature_verification_algorithms,
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BuildError::new("tls_config", format!("set up TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match (&tls.cert_file, &tls.key_file) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let certs = load_certs(cert, "tls_config.cert_file")?;
            let key = load_key(key)?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                BuildError::new(
                    "tls_config.key_file",
                    format!("use client certificate: {e}"),
                )
            })?
        }
        (Some(_), None) => {
            return Err(BuildError::new(
                "tls_config.key_file",
                "set key_file too: cert_file needs its private key",
            ));
        }
        (None, Some(_)) => {
            return Err(BuildError::new(
                "tls_config.cert_file",
                "set cert_file too: key_file needs its certificate",
            ));
        }
    };
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

fn read_pem(path: &Path, field: &str) -> Result<Vec<u8>, BuildError> {
    std::fs::read(path).map_err(|e| {
        BuildError::new(
            field,
            format!("read {}: {}", path.display(), io_error_text(&e)),
        )
    })
}

fn load_certs(path: &Path, field: &str) -> Result<Vec<CertificateDer<'static>>, BuildError> {
    let pem = read_pem(path, field)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            BuildError::new(
                field,
                format!("parse {}: {}", path.display(), io_error_text(&e)),
            )
        })?;
    if certs.is_empty() {
        return Err(BuildError::new(
            field,
            format!("no PEM certificate found in {}", path.display()),
        ));
    }
    Ok(certs)
}

fn load_roots(path: &Path) -> Result<RootCertStore, BuildError> {
    const FIELD: &str = "tls_config.ca_file";
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path, FIELD)? {
        roots.add(cert).map_err(|e| {
            BuildError::new(
                FIELD,
                format!("parse certificate in {}: {e}", path.display()),
            )
        })?;
    }
    Ok(roots)
}

fn load_key(path: &Path) -> Result<rustls::pki_types::PrivateKeyDer<'static>, BuildError> {
    const FIELD: &str = "tls_config.key_file";
    let pem = read_pem(path, FIELD)?;
    match rustls_pemfile::private_key(&mut pem.as_slice()) {
        Ok(Some(key)) => Ok(key),
        Ok(None) => Err(BuildError::new(
            FIELD,
            format!("no PEM private key found in {}", path.display()),
        )),
        Err(e) => Err(BuildError::new(
            FIELD,
            format!("parse {}: {}", path.display(), io_error_text(&e)),
        )),
    }
}

/// The server name to send in SNI and verify the certificate against: a DNS name or an
/// IP address (without brackets).
///
/// # Errors
/// A message when the text is neither.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(bare.to_string()).map_err(|_| format!("invalid TLS server name {host:?}"))
}

/// What a TLS handshake showed, also when it failed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// The earliest `notAfter` of the chain the server presented, in Unix seconds; `None`
    /// when no certificate was presented (or none could be parsed).
    pub cert_not_after: Option<i64>,
    /// The negotiated version, like `TLS 1.3`; `None` when the handshake failed.
    pub version: Option<String>,
}

/// Does a TLS handshake over `stream`, before `deadline`.
///
/// `peer` only names the server in error details. The config must come from
/// [`client_config`] for the presented chain to be captured.
///
/// # Errors
/// [`Reason::Tls`] (or [`Reason::Timeout`]) with what went wrong, together with the
/// [`TlsInfo`] gathered so far: the expiry of a certificate that failed verification.
pub async fn tls_handshake<S>(
    stream: S,
    peer: &str,
    server_name: ServerName<'static>,
    config: &Arc<ClientConfig>,
    deadline: Instant,
) -> Result<(TlsStream<S>, TlsInfo), (CheckError, TlsInfo)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let what = format!("tls handshake with {peer}");
    let slot = Arc::new(Mutex::new(Vec::new()));
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
    let handshake = PRESENTED.scope(
        Arc::clone(&slot),
        tokio::time::timeout_at(deadline, connector.connect(server_name, stream)),
    );
    let result = handshake.await;
    let chain = std::mem::take(&mut *slot.lock().unwrap_or_else(PoisonError::into_inner));
    let mut info = TlsInfo {
        cert_not_after: earliest_not_after(&chain),
        version: None,
    };
    match result {
        Err(_) => Err((timed_out(&what, start), info)),
        Ok(Err(e)) => Err((
            CheckError::new(Reason::Tls, format!("{what}: {}", tls_error_text(&e))),
            info,
        )),
        Ok(Ok(tls)) => {
            info.version = tls.get_ref().1.protocol_version().map(|v| match v {
                rustls::ProtocolVersion::TLSv1_2 => "TLS 1.2".to_string(),
                rustls::ProtocolVersion::TLSv1_3 => "TLS 1.3".to_string(),
                other => format!("{other:?}"),
            });
            Ok((tls, info))
        }
    }
}

/// The earliest `notAfter` among the certificates, in Unix seconds.
pub fn earliest_not_after(chain: &[CertificateDer<'_>]) -> Option<i64> {
    chain
        .iter()
        .filter_map(|der| x509_parser::parse_x509_certificate(der).ok())
        .map(|(_, cert)| cert.validity().not_after.timestamp())
        .min()
}

fn tls_error_text(e: &io::Error) -> String {
    let Some(err) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return match e.kind() {
            io::ErrorKind::UnexpectedEof => "connection closed by peer".to_string(),
            _ => io_error_text(e),
        };
    };
    match err {
        rustls::Error::InvalidCertificate(cert) => {
            format!("invalid peer certificate: {}", certificate_error_text(cert))
        }
        other => other.to_string(),
    }
}

fn certificate_error_text(e: &CertificateError) -> String {
    match e {
        CertificateError::ExpiredContext { time, not_after } => format!(
            "Expired (not valid after {}, {} ago)",
            fmt_unix_utc(not_after.as_secs()),
            fmt_age(time.as_secs().saturating_sub(not_after.as_secs()))
        ),
        CertificateError::NotValidYetContext { not_before, .. } => format!(
            "NotValidYet (not valid before {})",
            fmt_unix_utc(not_before.as_secs())
        ),
        CertificateError::UnknownIssuer => {
            "UnknownIssuer (self-signed, or signed by an untrusted CA: set tls_config.ca_file)"
                .to_string()
        }
        other => other.to_string(),
    }
}

fn fmt_age(secs: u64) -> String {
    match secs {
        0..120 => format!("{secs}s"),
        120..7_200 => format!("{}m", secs / 60),
        7_200..172_800 => format!("{}h", secs / 3_600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// `2021-01-01 00:00:00 UTC` from Unix seconds (proleptic Gregorian calendar).
fn fmt_unix_utc(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil-from-days, after Howard Hinnant's algorithm, for days since 1970-01-01 >= 0.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_splits() {
        assert_eq!(split_host_port("redis:6379"), Ok(("redis".into(), 6379)));
        assert_eq!(
            split_host_port("127.0.0.1:80"),
            Ok(("127.0.0.1".into(), 80))
        );
        assert_eq!(split_host_port("[::1]:443"), Ok(("::1".into(), 443)));
        for bad in [
            "redis",
            ":80",
            "redis:",
            "redis:x",
            "redis:70000",
            "::1:80",
            "[::1]",
            "[x]:1",
            "a b:1",
            "h:0",
        ] {
            assert!(split_host_port(bad).is_err(), "{bad} should fail");
        }
    }

    #[tokio::test]
    async fn special_names_resolve_without_lookup() {
        let v4 = resolve("localhost", 80, IpProtocol::Ip4, true).await;
        assert_eq!(v4, Ok("127.0.0.1:80".parse().unwrap()));
        let v6 = resolve("api.localhost.", 80, IpProtocol::Ip6, false).await;
        assert_eq!(v6, Ok("[::1]:80".parse().unwrap()));
        let lit = resolve("[::1]", 8080, IpProtocol::Ip4, false).await;
        assert_eq!(lit, Ok("[::1]:8080".parse().unwrap()));
        let e = resolve("foo.invalid", 80, IpProtocol::Ip4, true)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            CheckError::new(Reason::Dns, "resolve foo.invalid: no such host")
        );
        let e = resolve("INVALID", 80, IpProtocol::Ip4, true)
            .await
            .unwrap_err();
        assert_eq!(e.reason, Reason::Dns);
    }

    #[test]
    fn durations_and_sizes_print_for_people() {
        assert_eq!(fmt_duration(Duration::from_secs(2)), "2s");
        assert_eq!(fmt_duration(Duration::from_millis(1_500)), "1.5s");
        assert_eq!(fmt_duration(Duration::from_micros(3_400)), "3.4ms");
        assert_eq!(fmt_duration(Duration::from_micros(250)), "250µs");
        assert_eq!(fmt_bytes(512), "512 B");
        assert_eq!(fmt_bytes(1_229), "1.2 KiB");
        assert_eq!(fmt_bytes(3 * 1024 * 1024), "3.0 MiB");
    }

    #[test]
    fn unix_times_print_as_utc() {
        assert_eq!(fmt_unix_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(fmt_unix_utc(1_609_459_200), "2021-01-01 00:00:00 UTC");
        assert_eq!(fmt_unix_utc(951_827_696), "2000-02-29 12:34:56 UTC");
    }

    #[test]
    fn network_text_is_quoted_and_cut() {
        assert_eq!(quote_truncated("-ERR x\r", 80), "\"-ERR x\\r\"");
        assert_eq!(quote_truncated("abcdef", 3), "\"abc…\"");
    }

    #[test]
    fn io_errors_read_as_phrases() {
        let e = io::Error::from_raw_os_error(libc::ENETUNREACH);
        assert_eq!(io_error_text(&e), "network is unreachable");
        let e = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(io_error_text(&e), "connection refused");
    }

    #[test]
    fn bad_tls_files_are_config_errors() {
        let tls = TlsConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsConfig::default()
        };
        let e = client_config(&tls).unwrap_err();
        assert_eq!(e.field, "tls_config.ca_file");
        assert!(e.message.contains("/nonexistent/ca.pem"), "{e}");
        let tls = TlsConfig {
            cert_file: Some("/x.pem".into()),
            ..TlsConfig::default()
        };
        assert_eq!(
            client_config(&tls).unwrap_err().field,
            "tls_config.key_file"
        );
        assert!(client_config(&TlsConfig::default()).is_ok());
    }
}
