//! `tcp` check: connect (optionally with TLS), optionally send a line and wait for a line
//! matching a regular expression. Redis `PING` → `+PONG` is the classic use:
//!
//! ```yaml
//! - name: redis
//!   kind: tcp
//!   address: 127.0.0.1:6379
//!   send: PING
//!   expect: "^\\+PONG"
//! ```
//!
//! Phases, as `harena_tcp_duration_seconds{phase}`: `dns`, `connect`, `tls` and
//! `exchange` (from the connection being ready until the expected line arrived).

use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::{BuildError, Check, CheckError, Reason, Recorder, RunContext};
use crate::config::types::{ConfigRegex, TlsConfig};
use crate::net::{self, IpProtocol, TLS_CERT_EXPIRY};

crate::metric!(
    DURATION,
    gauge,
    "harena_tcp_duration_seconds",
    "Duration of each phase of the TCP probe (dns, connect, tls, exchange)."
);

const PHASES: [&str; 4] = ["dns", "connect", "tls", "exchange"];
const DNS: usize = 0;
const CONNECT: usize = 1;
const TLS: usize = 2;
const EXCHANGE: usize = 3;

/// How much of a received line a failure detail shows.
const SHOWN_CHARS: usize = 80;

/// The keys of a `tcp` check.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    /// Where to connect, `host:port` (an IPv6 address in brackets). Required.
    /// Example: `address: 127.0.0.1:6379`.
    #[serde(deserialize_with = "de_address")]
    pub address: String,
    /// Do a TLS handshake after connecting. Default `false`. Example: `tls: true`.
    #[serde(default)]
    pub tls: bool,
    /// TLS settings when `tls` is on (CA file, client certificate, server name,
    /// `insecure_skip_verify`). Default: the built-in WebPKI roots, and the host of
    /// `address` as server name. Example: `tls_config: {ca_file: /etc/harena/ca.pem}`.
    #[serde(default)]
    pub tls_config: TlsConfig,
    /// Text to send once connected, as is; `\r\n` is appended unless it ends in `\n`.
    /// Default: send nothing. Example: `send: PING`.
    #[serde(default)]
    pub send: Option<String>,
    /// Read lines until one matches this regular expression; the check fails when the
    /// connection closes, `max_response_bytes` are read or the timeout passes first.
    /// Default: read nothing. Example: `expect: "^\\+PONG"`.
    #[serde(default)]
    pub expect: Option<ConfigRegex>,
    /// The most bytes read while waiting for `expect`. Default `65536` (64 KiB).
    /// Example: `max_response_bytes: 4096`.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
    /// The IP version to connect over, `ip4` or `ip6`. Default `ip4`.
    /// Example: `ip_protocol: ip6`.
    #[serde(default)]
    pub ip_protocol: IpProtocol,
    /// Use the other IP version when the name has no address of `ip_protocol`.
    /// Default `true`. Example: `ip_protocol_fallback: false`.
    #[serde(default = "yes")]
    pub ip_protocol_fallback: bool,
}

fn yes() -> bool {
    true
}

fn default_max_response_bytes() -> u64 {
    64 * 1024
}

fn de_address<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    net::split_host_port(&text).map_err(D::Error::custom)?;
    Ok(text)
}

/// A runnable `tcp` check.
#[derive(Debug)]
pub struct TcpCheck {
    // Boxed: the registry's enum of built checks stays small whatever the kind.
    inner: Box<Inner>,
}

#[derive(Debug)]
struct Inner {
    address: String,
    host: String,
    port: u16,
    tls: Option<(
        std::sync::Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
    send: Option<Vec<u8>>,
    expect: Option<regex::Regex>,
    max_response_bytes: usize,
    ip_protocol: IpProtocol,
    ip_protocol_fallback: bool,
}

/// What a run saw, recorded as samples whether it succeeded or not.
#[derive(Debug, Default)]
struct Progress {
    phases: [Duration; 4],
    cert_not_after: Option<i64>,
    tls_version: Option<String>,
}

impl Check for TcpCheck {
    type Config = TcpConfig;
    const KIND: &'static str = "tcp";
    const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    fn build(config: &TcpConfig) -> Result<Self, BuildError> {
        let (host, port) =
            net::split_host_port(&config.address).map_err(|e| BuildError::new("address", e))?;
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
        let send = config.send.as_ref().map(|s| {
            let mut bytes = s.clone().into_bytes();
            if !s.ends_with('\n') {
                bytes.extend_from_slice(b"\r\n");
            }
            bytes
        });
        Ok(TcpCheck {
            inner: Box::new(Inner {
                address: config.address.clone(),
                host,
                port,
                tls,
                send,
                expect: config.expect.as_ref().map(|r| r.0.clone()),
                max_response_bytes: usize::try_from(config.max_response_bytes)
                    .unwrap_or(usize::MAX),
                ip_protocol: config.ip_protocol,
                ip_protocol_fallback: config.ip_protocol_fallback,
            }),
        })
    }

    fn target(&self) -> String {
        self.inner.address.clone()
    }

    async fn run(&self, ctx: &RunContext, rec: &mut Recorder) -> Result<(), CheckError> {
        let start = Instant::now();
        let mut p = Progress::default();
        let result = self.inner.probe(ctx.deadline, &mut p).await;
        for (phase, d) in PHASES.iter().zip(p.phases) {
            rec.record(&DURATION, &[("phase", phase)], d.as_secs_f64());
        }
        if let Some(not_after) = p.cert_not_after {
            // Unix seconds are exact in an f64 for the next few million years.
            #[allow(clippy::cast_precision_loss)]
            rec.record(&TLS_CERT_EXPIRY, &[], not_after as f64);
        }
        let elapsed = net::fmt_duration(start.elapsed());
        match result {
            Ok(summary) => {
                let tls = p.tls_version.map(|v| format!(" ({v})")).unwrap_or_default();
                rec.set_detail(format!("{summary}{tls} in {elapsed}"));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

impl Inner {
    /// Runs the phases; on success returns a summary for the detail.
    async fn probe(&self, deadline: Instant, p: &mut Progress) -> Result<String, CheckError> {
        let t = Instant::now();
        let resolved = tokio::time::timeout_at(
            deadline,
            net::resolve(
                &self.host,
                self.port,
                self.ip_protocol,
                self.ip_protocol_fallback,
            ),
        )
        .await;
        p.phases[DNS] = t.elapsed();
        let addr = resolved.map_err(|_| net::timed_out(&format!("resolve {}", self.host), t))??;
        let peer = addr.to_string();

        let t = Instant::now();
        let stream = net::connect(addr, deadline).await;
        p.phases[CONNECT] = t.elapsed();
        let stream = stream?;

        let Some((config, name)) = &self.tls else {
            return self.exchange(stream, &peer, deadline, p).await;
        };
        let t = Instant::now();
        let handshake = net::tls_handshake(stream, &peer, name.clone(), config, deadline).await;
        p.phases[TLS] = t.elapsed();
        let (stream, info) = handshake.map_err(|(e, info)| {
            p.cert_not_after = info.cert_not_after;
            e
        })?;
        p.cert_not_after = info.cert_not_after;
        p.tls_version = info.version;
        self.exchange(stream, &peer, deadline, p).await
    }

    async fn exchange<S>(
        &self,
        stream: S,
        peer: &str,
        deadline: Instant,
        p: &mut Progress,
    ) -> Result<String, CheckError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let t = Instant::now();
        let result = self.talk(stream, peer, deadline, t).await;
        p.phases[EXCHANGE] = t.elapsed();
        result
    }

    async fn talk<S>(
        &self,
        mut stream: S,
        peer: &str,
        deadline: Instant,
        t: Instant,
    ) -> Result<String, CheckError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if let Some(data) = &self.send {
            let what = format!("send to {peer}");
            let write = async {
                stream.write_all(data).await?;
                stream.flush().await
            };
            match tokio::time::timeout_at(deadline, write).await {
                Err(_) => return Err(net::timed_out(&what, t)),
                Ok(Err(e)) => {
                    return Err(CheckError::new(
                        Reason::Protocol,
                        format!("{what}: {}", net::io_error_text(&e)),
                    ));
                }
                Ok(Ok(())) => {}
            }
        }
        let Some(re) = &self.expect else {
            return Ok(match self.send {
                Some(_) => format!("connected to {peer} and sent"),
                None => format!("connected to {peer}"),
            });
        };
        let mut lines = LineReader::new(self.max_response_bytes);
        let not_matched = |first: Option<&String>, why: &str| {
            let first = match first {
                Some(line) => format!("; first line {}", net::quote_truncated(line, SHOWN_CHARS)),
                None => "; nothing received".to_string(),
            };
            format!(
                "no line from {peer} matches \"{}\" ({why}){first}",
                re.as_str()
            )
        };
        loop {
            while let Some(line) = lines.next_line() {
                if re.is_match(&line) {
                    return Ok(format!(
                        "{} from {peer}",
                        net::quote_truncated(&line, SHOWN_CHARS)
                    ));
                }
            }
            if lines.full() {
                let why = format!(
                    "read max_response_bytes, {}",
                    net::fmt_bytes(u64::try_from(lines.limit).unwrap_or(u64::MAX))
                );
                return Err(CheckError::new(
                    Reason::Protocol,
                    not_matched(lines.first.as_ref(), &why),
                ));
            }
            let mut chunk = [0u8; 4096];
            let room = lines.room().min(chunk.len());
            let buf = chunk.get_mut(..room).unwrap_or_default();
            let read = tokio::time::timeout_at(deadline, stream.read(buf)).await;
            if read.is_err() {
                lines.note_partial();
            }
            match read {
                // The peer answered, just not what was expected (Redis's -NOAUTH keeps
                // the connection open): that is the failure, not the wait.
                Err(_) if lines.first.is_some() => {
                    let why = format!("timed out after {}", net::fmt_duration(t.elapsed()));
                    return Err(CheckError::new(
                        Reason::Protocol,
                        not_matched(lines.first.as_ref(), &why),
                    ));
                }
                Err(_) => {
                    let what = format!("wait for a line matching \"{}\" from {peer}", re.as_str());
                    return Err(net::timed_out(&what, t));
                }
                // A TLS peer that closes without close_notify reads as UnexpectedEof.
                Ok(Ok(0)) | Ok(Err(_)) if lines.finish_on_eof(re) => {
                    return Ok(format!(
                        "{} from {peer}",
                        net::quote_truncated(
                            lines.last_matched.as_deref().unwrap_or_default(),
                            SHOWN_CHARS,
                        )
                    ));
                }
                Ok(Ok(0)) => {
                    return Err(CheckError::new(
                        Reason::Protocol,
                        not_matched(lines.first.as_ref(), "connection closed"),
                    ));
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(CheckError::new(
                        Reason::Protocol,
                        not_matched(lines.first.as_ref(), "connection closed"),
                    ));
                }
                Ok(Err(e)) => {
                    return Err(CheckError::new(
                        Reason::Protocol,
                        format!("read from {peer}: {}", net::io_error_text(&e)),
                    ));
                }
                Ok(Ok(n)) => lines.push(chunk.get(..n).unwrap_or_default()),
            }
        }
    }
}

/// Splits received bytes into lines (without `\r\n`), up to a byte limit.
#[derive(Debug)]
struct LineReader {
    buf: Vec<u8>,
    /// Where the next line starts in `buf`.
    start: usize,
    limit: usize,
    first: Option<String>,
    last_matched: Option<String>,
}

impl LineReader {
    fn new(limit: usize) -> Self {
        LineReader {
            buf: Vec::new(),
            start: 0,
            limit,
            first: None,
            last_matched: None,
        }
    }

    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    fn room(&self) -> usize {
        self.limit.saturating_sub(self.buf.len())
    }

    fn full(&self) -> bool {
        self.room() == 0
    }

    fn take_line(&mut self, end: usize) -> String {
        let raw = self.buf.get(self.start..end).unwrap_or_default();
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = String::from_utf8_lossy(raw).into_owned();
        if self.first.is_none() {
            self.first = Some(line.clone());
        }
        line
    }

    /// The next complete line, if one has arrived.
    fn next_line(&mut self) -> Option<String> {
        let rest = self.buf.get(self.start..)?;
        let nl = rest.iter().position(|b| *b == b'\n')?;
        let end = self.start + nl;
        let line = self.take_line(end);
        self.start = end + 1;
        Some(line)
    }

    /// Counts an unfinished line as the first line if none came, for the detail.
    fn note_partial(&mut self) {
        if self.first.is_none() && self.start < self.buf.len() {
            self.take_line(self.buf.len());
        }
    }

    /// At the end of the stream, tests the last line even without its newline.
    fn finish_on_eof(&mut self, re: &regex::Regex) -> bool {
        if self.start >= self.buf.len() {
            return false;
        }
        let line = self.take_line(self.buf.len());
        self.start = self.buf.len();
        let matched = re.is_match(&line);
        if matched {
            self.last_matched = Some(line);
        }
        matched
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lines_split_and_the_last_one_counts_at_eof() {
        let mut r = LineReader::new(64);
        r.push(b"+PO");
        assert_eq!(r.next_line(), None);
        r.push(b"NG\r\nsecond\nthi");
        assert_eq!(r.next_line().as_deref(), Some("+PONG"));
        assert_eq!(r.next_line().as_deref(), Some("second"));
        assert_eq!(r.next_line(), None);
        let re = regex::Regex::new("^thi").unwrap();
        assert!(r.finish_on_eof(&re));
        assert_eq!(r.first.as_deref(), Some("+PONG"));
        assert!(!r.finish_on_eof(&re), "nothing left");

        let mut r = LineReader::new(64);
        r.push(b"-ERR no newline");
        r.note_partial();
        assert_eq!(r.first.as_deref(), Some("-ERR no newline"));
    }

    #[test]
    fn config_defaults_and_errors() {
        let c: TcpConfig = serde_json::from_value(json!({"address": "127.0.0.1:6379"})).unwrap();
        assert!(!c.tls && c.ip_protocol_fallback && c.send.is_none());
        assert_eq!(c.max_response_bytes, 65536);
        for (config, needle) in [
            (json!({"address": "redis"}), "expected host:port"),
            (json!({"address": "::1:6379"}), "brackets"),
            (
                json!({"address": "h:1", "expect": "("}),
                "invalid regular expression",
            ),
            (json!({"address": "h:1", "sned": "PING"}), "unknown field"),
        ] {
            let err = serde_json::from_value::<TcpConfig>(config.clone()).unwrap_err();
            assert!(err.to_string().contains(needle), "{config}: {err}");
        }
    }

    #[test]
    fn build_appends_crlf_and_refuses_unused_tls_config() {
        let c: TcpConfig =
            serde_json::from_value(json!({"address": "h:1", "send": "PING"})).unwrap();
        assert_eq!(
            TcpCheck::build(&c).unwrap().inner.send.as_deref(),
            Some(&b"PING\r\n"[..])
        );
        let c: TcpConfig =
            serde_json::from_value(json!({"address": "h:1", "send": "QUIT\n"})).unwrap();
        assert_eq!(
            TcpCheck::build(&c).unwrap().inner.send.as_deref(),
            Some(&b"QUIT\n"[..])
        );
        let c: TcpConfig = serde_json::from_value(json!({
            "address": "h:1",
            "tls_config": {"insecure_skip_verify": true},
        }))
        .unwrap();
        assert_eq!(TcpCheck::build(&c).unwrap_err().field, "tls_config");
    }
}
