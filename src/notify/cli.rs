//! Commands of the notification side: `silence add|list|expire` (against a running
//! exporter's `/api/v1/silences`, as `amtool silence` does against Alertmanager),
//! `routes test` (as `amtool config routes test`) and `send-test-email`.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::matchers::{Matcher, parse_list};
use crate::config::{self, ConfigSource};

/// How long a CLI request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

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
    let rest = base
        .trim_end_matches('/')
        .strip_prefix("http://")
        .ok_or_else(|| format!("{base}: only http:// URLs are supported"))?;
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
    let fut = async {
        let stream = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| format!("connect to {authority}: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|e| format!("HTTP handshake with {authority}: {e}"))?;
        tokio::spawn(conn);
        let data = body.map(|b| b.to_string()).unwrap_or_default();
        let req = http::Request::builder()
            .method(method)
            .uri(&uri)
            .header(http::header::HOST, authority)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(data)))
            .map_err(|e| e.to_string())?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("{method} {uri}: {e}"))?;
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

fn api_error(status: u16, v: &Value) -> String {
    let msg = v
        .get("error")
        .and_then(Value::as_str)
        .map_or_else(|| v.to_string(), str::to_string);
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
    let (status, v) = request("POST", url, "/api/v1/silences", Some(body)).await?;
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
    let (status, v) = request("GET", url, "/api/v1/silences", None).await?;
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
    for id in ids {
        let (status, v) = request("DELETE", url, &format!("/api/v1/silences/{id}"), None).await?;
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
