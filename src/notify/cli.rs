//! Commands of the notification side: `silence add|list|expire` (against a running
//! exporter's `/api/v1/silences`, as `amtool silence` does against Alertmanager, over
//! `http://` or `https://` and with basic auth when the exporter has a web config),
//! `routes test` (as `amtool config routes test`) and `send-test-email`.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::matchers::{Matcher, parse_list};
use crate::config::types::{SecretSource, TlsConfig};
use crate::config::{self, ConfigSource};

/// How long a CLI request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The environment variable that holds the basic-auth password when no password file is
/// given (never a flag value: flags show in `ps` and shell history).
pub const PASSWORD_ENV: &str = "HARENA_WEB_PASSWORD";

/// How the CLI reaches an exporter that runs with a `--web.config.file`: TLS trust for
/// `https://` URLs and basic-auth credentials. The default suits a plain `http://` exporter.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// PEM file of the CA that signed the exporter's certificate (`--web.ca-file`);
    /// `None` trusts the built-in WebPKI roots.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (`--web.insecure-skip-verify`): for tests and first setup.
    pub insecure_skip_verify: bool,
    /// Basic-auth user (`--web.username`).
    pub username: Option<String>,
    /// Where the basic-auth password is read, at each request (`--web.password-file`, or
    /// the variable [`PASSWORD_ENV`]).
    pub password: Option<SecretSource>,
}

impl ClientOptions {
    /// From the command-line flags: the password comes from `password_file`, else from
    /// [`PASSWORD_ENV`] when that variable is set.
    pub fn from_flags(
        ca_file: Option<PathBuf>,
        insecure_skip_verify: bool,
        username: Option<String>,
        password_file: Option<PathBuf>,
    ) -> Self {
        let password = match password_file {
            Some(f) => Some(SecretSource::File(f)),
            None => std::env::var_os(PASSWORD_ENV).map(|_| SecretSource::Env(PASSWORD_ENV.into())),
        };
        ClientOptions {
            ca_file,
            insecure_skip_verify,
            username,
            password,
        }
    }

    /// The `Authorization` header, when a user is set.
    fn authorization(&self) -> Result<Option<http::HeaderValue>, String> {
        let (user, password) = match (&self.username, &self.password) {
            (None, None) => return Ok(None),
            (Some(u), Some(p)) => (u, p.read()?),
            (Some(_), None) => {
                return Err(format!(
                    "--web.username needs a password: set --web.password-file or {PASSWORD_ENV}"
                ));
            }
            (None, Some(_)) => {
                return Err("a password is set (--web.password-file or HARENA_WEB_PASSWORD) but no --web.username".into());
            }
        };
        let token = base64(format!("{user}:{}", password.expose()).as_bytes());
        let mut value = http::HeaderValue::from_str(&format!("Basic {token}"))
            .map_err(|_| "the user name cannot go in an HTTP header".to_string())?;
        value.set_sensitive(true);
        Ok(Some(value))
    }
}

/// Standard base64 with padding (RFC 4648), for the basic-auth header.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Sends one HTTP/1.1 request to a running exporter (`http://host:port`).
///
/// # Errors
/// A message for the user.
pub async fn request(
    method: &str,
    base: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    request_with(method, base, path, body, &ClientOptions::default()).await
}

/// Sends one HTTP/1.1 request to a running exporter (`http://host:port` or
/// `https://host:port`), with the TLS trust and credentials of `client`.
///
/// # Errors
/// A message for the user (never the password).
pub async fn request_with(
    method: &str,
    base: &str,
    path: &str,
    body: Option<Value>,
    client: &ClientOptions,
) -> Result<(u16, Value), String> {
    let base_trimmed = base.trim_end_matches('/');
    let (tls, rest) = if let Some(rest) = base_trimmed.strip_prefix("http://") {
        (false, rest)
    } else if let Some(rest) = base_trimmed.strip_prefix("https://") {
        (true, rest)
    } else {
        return Err(format!("{base}: expected an http:// or https:// URL"));
    };
    let (authority, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let uri = format!(
        "/{}{path}",
        if prefix.is_empty() {
            String::new()
        } else {
            prefix.to_string()
        }
    );
    let uri = uri.replace("//", "/");
    let (host, port) = match crate::net::split_host_port(authority) {
        Ok(hp) => hp,
        Err(_) if !authority.contains(':') && !authority.is_empty() => {
            (authority.to_string(), if tls { 443 } else { 80 })
        }
        Err(e) => return Err(format!("{base}: {e}")),
    };
    let authorization = client.authorization()?;
    let connector = if tls {
        let tls_config = TlsConfig {
            ca_file: client.ca_file.clone(),
            insecure_skip_verify: client.insecure_skip_verify,
            ..TlsConfig::default()
        };
        let config = crate::net::client_config(&tls_config)
            .map_err(|e| format!("--web.ca-file: {}", e.message))?;
        let name = crate::net::server_name(&host)?;
        Some((tokio_rustls::TlsConnector::from(config), name))
    } else {
        None
    };
    let fut = async {
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("connect to {authority}: {e}"))?;
        let data = body.map(|b| b.to_string()).unwrap_or_default();
        let mut req = http::Request::builder()
            .method(method)
            .uri(&uri)
            .header(http::header::HOST, authority)
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(auth) = authorization {
            req = req.header(http::header::AUTHORIZATION, auth);
        }
        let req = req
            .body(Full::new(Bytes::from(data)))
            .map_err(|e| e.to_string())?;
        let resp = match connector {
            Some((connector, name)) => {
                let stream = connector
                    .connect(name, stream)
                    .await
                    .map_err(|e| format!("TLS handshake with {authority}: {e}"))?;
                send(TokioIo::new(stream), req, authority, method, &uri).await?
            }
            None => send(TokioIo::new(stream), req, authority, method, &uri).await?,
        };
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("read the answer: {e}"))?
            .to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok((status, value))
    };
    tokio::time::timeout(TIMEOUT, fut)
        .await
        .map_err(|_| format!("{method} {base}{path}: no answer in {TIMEOUT:?}"))?
}

async fn send<I>(
    io: I,
    req: http::Request<Full<Bytes>>,
    authority: &str,
    method: &str,
    uri: &str,
) -> Result<http::Response<hyper::body::Incoming>, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(io)
        .await
        .map_err(|e| format!("HTTP handshake with {authority}: {e}"))?;
    tokio::spawn(conn);
    sender
        .send_request(req)
        .await
        .map_err(|e| format!("{method} {uri}: {e}"))
}

fn api_error(status: u16, v: &Value) -> String {
    let msg = v
        .get("error")
        .and_then(Value::as_str)
        .map_or_else(|| v.to_string(), str::to_string);
    if status == 401 {
        // The body is plain text, not JSON.
        let msg = v.as_str().unwrap_or(&msg);
        return format!(
            "HTTP 401: {}: the exporter wants basic auth; set --web.username and the password in --web.password-file or {PASSWORD_ENV}",
            msg.trim()
        );
    }
    format!("HTTP {status}: {msg}")
}

/// `silence add`: prints the new silence's id.
///
/// # Errors
/// Bad matchers, or the exporter's refusal.
pub async fn silence_add(
    url: &str,
    matchers: &[String],
    duration: Duration,
    author: &str,
    comment: &str,
) -> Result<String, String> {
    silence_add_with(
        url,
        &ClientOptions::default(),
        matchers,
        duration,
        author,
        comment,
    )
    .await
}

/// `silence add` against an exporter with TLS or basic auth.
///
/// # Errors
/// Bad matchers, or the exporter's refusal.
pub async fn silence_add_with(
    url: &str,
    client: &ClientOptions,
    matchers: &[String],
    duration: Duration,
    author: &str,
    comment: &str,
) -> Result<String, String> {
    let mut parsed: Vec<Matcher> = Vec::new();
    for m in matchers {
        parsed.extend(parse_list(m)?);
    }
    if parsed.is_empty() {
        return Err("give at least one matcher, e.g. alertname=PostgresDown".into());
    }
    let now = chrono::Utc::now();
    let ends = now + chrono::Duration::from_std(duration).map_err(|e| e.to_string())?;
    let body = json!({
        "matchers": parsed.iter().map(|m| json!({
            "name": m.name,
            "value": m.value,
            "isRegex": matches!(m.op, super::matchers::MatchOp::Regex | super::matchers::MatchOp::NotRegex),
            "isEqual": matches!(m.op, super::matchers::MatchOp::Equal | super::matchers::MatchOp::Regex),
        })).collect::<Vec<_>>(),
        "startsAt": now.to_rfc3339(),
        "endsAt": ends.to_rfc3339(),
        "createdBy": author,
        "comment": comment,
    });
    let (status, v) = request_with("POST", url, "/api/v1/silences", Some(body), client).await?;
    if status != 200 {
        return Err(api_error(status, &v));
    }
    v.get("silenceID")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("unexpected answer: {v}"))
}

/// `silence list`: a table of the silences.
///
/// # Errors
/// The exporter cannot be reached.
pub async fn silence_list(url: &str, all: bool) -> Result<String, String> {
    silence_list_with(url, &ClientOptions::default(), all).await
}

/// `silence list` against an exporter with TLS or basic auth.
///
/// # Errors
/// The exporter cannot be reached, or refuses.
pub async fn silence_list_with(
    url: &str,
    client: &ClientOptions,
    all: bool,
) -> Result<String, String> {
    let (status, v) = request_with("GET", url, "/api/v1/silences", None, client).await?;
    if status != 200 {
        return Err(api_error(status, &v));
    }
    let items = v.as_array().cloned().unwrap_or_default();
    let mut rows = vec![[
        "ID".to_string(),
        "Matchers".to_string(),
        "Ends At".to_string(),
        "State".to_string(),
        "Created By".to_string(),
        "Comment".to_string(),
    ]];
    for s in items {
        let state = s["status"]["state"].as_str().unwrap_or("").to_string();
        if !all && state == "expired" {
            continue;
        }
        let matchers: Vec<String> = s["matchers"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .map(|m| {
                        let op = match (m["isEqual"].as_bool(), m["isRegex"].as_bool()) {
                            (Some(false), Some(true)) => "!~",
                            (Some(false), _) => "!=",
                            (_, Some(true)) => "=~",
                            _ => "=",
                        };
                        format!(
                            "{}{op}{:?}",
                            m["name"].as_str().unwrap_or(""),
                            m["value"].as_str().unwrap_or("")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        rows.push([
            s["id"].as_str().unwrap_or("").to_string(),
            matchers.join(" "),
            s["endsAt"].as_str().unwrap_or("").to_string(),
            state,
            s["createdBy"].as_str().unwrap_or("").to_string(),
            s["comment"].as_str().unwrap_or("").to_string(),
        ]);
    }
    let mut widths = [0usize; 6];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    Ok(out)
}

/// `silence expire ID…`.
///
/// # Errors
/// An unknown id, or the exporter cannot be reached.
pub async fn silence_expire(url: &str, ids: &[String]) -> Result<(), String> {
    silence_expire_with(url, &ClientOptions::default(), ids).await
}

/// `silence expire ID…` against an exporter with TLS or basic auth.
///
/// # Errors
/// An unknown id, or the exporter cannot be reached.
pub async fn silence_expire_with(
    url: &str,
    client: &ClientOptions,
    ids: &[String],
) -> Result<(), String> {
    for id in ids {
        let path = format!("/api/v1/silences/{id}");
        let (status, v) = request_with("DELETE", url, &path, None, client).await?;
        if status != 200 {
            return Err(format!("expire {id}: {}", api_error(status, &v)));
        }
    }
    Ok(())
}

/// `routes test`: prints the receivers a label set reaches; exit code 0, or 1 when the
/// config has no `alerting:` section or does not load, 2 on bad arguments.
pub fn routes_test(source: &ConfigSource, args: &[String]) -> (i32, String) {
    let labels = match super::route::parse_label_args(args) {
        Ok(l) => l,
        Err(e) => return (2, format!("{e}\n")),
    };
    let cfg = match config::load(source) {
        Ok(c) => c,
        Err(e) => return (1, format!("{e}\n")),
    };
    let Some(a) = &cfg.alerting else {
        return (
            1,
            format!("{}: no alerting section\n", source.display_name()),
        );
    };
    (0, format!("{}\n", a.route.format_routes_test(&labels)))
}

/// `send-test-email`: one test email through every email integration (or those of one
/// receiver); prints each SMTP result. Exit code 0 when all were accepted, 1 when one
/// failed, 2 on a config error or when there is no email receiver.
pub async fn send_test_email(
    source: &ConfigSource,
    to: Option<&str>,
    receiver: Option<&str>,
) -> i32 {
    let cfg = match config::load(source) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let Some(a) = &cfg.alerting else {
        eprintln!(
            "{}: no alerting section, so no email receiver",
            source.display_name()
        );
        return 2;
    };
    let mut tried = 0;
    let mut failed = 0;
    for r in &a.receivers {
        if receiver.is_some_and(|name| name != r.name) {
            continue;
        }
        for (i, int) in r.integrations.iter().enumerate() {
            let super::receivers::Integration::Email(email) = int.as_ref() else {
                continue;
            };
            tried += 1;
            let key = r.key(i);
            match email.send_test(to).await {
                Ok(transcript) => println!("{key}: accepted\n{transcript}"),
                Err(e) => {
                    failed += 1;
                    println!("{key}: FAILED ({}): {}", e.reason, e.message);
                }
            }
        }
    }
    if tried == 0 {
        eprintln!(
            "no email receiver{} in {}",
            receiver.map(|r| format!(" named {r}")).unwrap_or_default(),
            source.display_name()
        );
        return 2;
    }
    i32::from(failed > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_encodes_as_rfc4648() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("u:hunter2", "dTpodW50ZXIy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want, "{input}");
        }
    }

    #[test]
    fn credentials_need_both_parts_and_stay_hidden() {
        assert_eq!(ClientOptions::default().authorization(), Ok(None));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret-pw\n").unwrap();
        let opts = ClientOptions::from_flags(None, false, Some("alice".into()), Some(file));
        let value = opts.authorization().unwrap().unwrap();
        assert!(value.is_sensitive());
        assert_eq!(value, "Basic YWxpY2U6czNjcmV0LXB3");
        assert!(!format!("{opts:?}").contains("s3cret"));
        let user_only = ClientOptions {
            username: Some("alice".into()),
            ..ClientOptions::default()
        };
        assert!(
            user_only
                .authorization()
                .unwrap_err()
                .contains(PASSWORD_ENV)
        );
        let missing = ClientOptions {
            username: Some("alice".into()),
            password: Some(SecretSource::File("/nonexistent/pw".into())),
            ..ClientOptions::default()
        };
        assert!(
            missing
                .authorization()
                .unwrap_err()
                .contains("/nonexistent/pw")
        );
    }

    #[tokio::test]
    async fn urls_are_http_or_https() {
        let e = request("GET", "ftp://x", "/", None).await.unwrap_err();
        assert!(e.contains("expected an http:// or https:// URL"), "{e}");
        // The CA file is read before connecting.
        let opts = ClientOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..ClientOptions::default()
        };
        let e = request_with("GET", "https://127.0.0.1:1", "/", None, &opts)
            .await
            .unwrap_err();
        assert!(
            e.starts_with("--web.ca-file:") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
    }

    #[test]
    fn a_401_says_how_to_authenticate() {
        let e = api_error(401, &Value::String("Unauthorized\n".into()));
        assert!(
            e.starts_with("HTTP 401: Unauthorized: ") && e.contains("--web.username"),
            "{e}"
        );
    }
}
