//! The demo's mail sink: a minimal SMTP server (greeting, `EHLO`/`HELO`, `MAIL`, `RCPT`,
//! `DATA`, `RSET`, `NOOP`, `QUIT`; no TLS, no AUTH) that keeps every message it accepts
//! in memory, decoded enough to be read on the mailbox page (headers, RFC 2047 words,
//! multipart bodies, quoted-printable and base64).
//!
//! It listens on loopback only and accepts any sender and recipient: it stands in for
//! the team's mail server so that the exporter's notifications can be read without one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The longest command line accepted (RFC 5321 allows 512 bytes; we are lenient).
const MAX_LINE: u64 = 4096;

/// The largest message accepted, in bytes.
const MAX_MESSAGE: usize = 10 * 1024 * 1024;

/// How long a client may stay silent before the session is dropped.
const IDLE: Duration = Duration::from_secs(300);

/// The most messages kept; older ones are dropped first.
const MAX_KEPT: usize = 500;

/// One message the sink accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceivedEmail {
    /// 1 for the first message, then 2, 3, …
    pub id: u64,
    /// When the message was accepted, ms since the epoch.
    pub received_ms: i64,
    /// The envelope sender (`MAIL FROM`).
    pub envelope_from: String,
    /// The envelope recipients (`RCPT TO`).
    pub envelope_to: Vec<String>,
    /// The `Subject` header, decoded.
    pub subject: String,
    /// The `From` header, decoded.
    pub from: String,
    /// The `To` header, decoded.
    pub to: String,
    /// The `Date` header.
    pub date: String,
    /// The plain-text part, decoded (the whole body when there is no text part).
    pub text: String,
    /// The HTML part, decoded, when there is one.
    pub html: Option<String>,
    /// The message as received, after dot-unstuffing.
    pub raw: String,
}

/// What the heartbeat sink has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HeartbeatLog {
    /// Calls received.
    pub count: u64,
    /// The last call, ms since the epoch.
    pub last_ms: Option<i64>,
}

/// The messages received (and the heartbeats), shared by the SMTP server, the mailbox
/// page and tests.
#[derive(Debug, Clone, Default)]
pub struct Mailbox {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    messages: Vec<ReceivedEmail>,
    heartbeats: HeartbeatLog,
}

impl Mailbox {
    /// Every message kept, oldest first.
    pub fn messages(&self) -> Vec<ReceivedEmail> {
        self.lock().messages.clone()
    }

    /// The message with this id.
    pub fn message(&self, id: u64) -> Option<ReceivedEmail> {
        self.lock().messages.iter().find(|m| m.id == id).cloned()
    }

    /// How many messages were received so far (also those no longer kept).
    pub fn received(&self) -> u64 {
        self.lock().next_id
    }

    /// The heartbeat calls seen so far.
    pub fn heartbeats(&self) -> HeartbeatLog {
        self.lock().heartbeats
    }

    /// Records one heartbeat call.
    pub fn record_heartbeat(&self) {
        let mut inner = self.lock();
        inner.heartbeats.count += 1;
        inner.heartbeats.last_ms = Some(crate::scheduler::now_ms());
    }

    /// Stores a message as received (after dot-unstuffing); returns its id.
    pub fn store(&self, envelope_from: &str, envelope_to: &[String], raw: &str) -> u64 {
        let parsed = parse_message(raw);
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        inner.messages.push(ReceivedEmail {
            id,
            received_ms: crate::scheduler::now_ms(),
            envelope_from: envelope_from.to_string(),
            envelope_to: envelope_to.to_vec(),
            subject: parsed
                .header("subject")
                .map(decode_words)
                .unwrap_or_default(),
            from: parsed.header("from").map(decode_words).unwrap_or_default(),
            to: parsed.header("to").map(decode_words).unwrap_or_default(),
            date: parsed.header("date").unwrap_or_default().to_string(),
            text: parsed.text.clone().unwrap_or_else(|| parsed.body.clone()),
            html: parsed.html.clone(),
            raw: raw.to_string(),
        });
        if inner.messages.len() > MAX_KEPT {
            inner.messages.remove(0);
        }
        id
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Accepts SMTP sessions on `listener` until `token` is cancelled.
pub async fn serve(listener: TcpListener, mailbox: Mailbox, token: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = token.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let mailbox = mailbox.clone();
                let token = token.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = token.cancelled() => {}
                        res = session(stream, &mailbox) => {
                            if let Err(e) = res {
                                tracing::debug!(peer = %peer, error = %e, "demo mail sink: session ended");
                            }
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "demo mail sink: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One line from the client without its line ending; `None` at the end of the stream.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<String>> {
    buf.clear();
    let n = tokio::time::timeout(IDLE, r.take(MAX_LINE).read_until(b'\n', buf))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "client idle"))??;
    if n == 0 {
        return Ok(None);
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(buf).into_owned()))
}

/// The address inside `<…>` after `FROM:` / `TO:`, parameters dropped.
fn path_arg(arg: &str, prefix: &str) -> Option<String> {
    let head = arg.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = arg[prefix.len()..].trim_start();
    if let Some(inner) = rest.strip_prefix('<') {
        let end = inner.find('>')?;
        Some(inner[..end].to_string())
    } else {
        rest.split_whitespace().next().map(str::to_string)
    }
}

async fn session(stream: TcpStream, mailbox: &Mailbox) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut buf = Vec::new();
    w.write_all(b"220 harena-demo ESMTP demo mail sink (messages are kept in memory)\r\n")
        .await?;
    let mut from: Option<String> = None;
    let mut rcpts: Vec<String> = Vec::new();
    while let Some(line) = read_line(&mut r, &mut buf).await? {
        let (verb, arg) = match line.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.trim().to_string()),
            None => (line.trim().to_ascii_uppercase(), String::new()),
        };
        let reply: String = match verb.as_str() {
            "EHLO" => {
                from = None;
                rcpts.clear();
                format!(
                    "250-harena-demo greets {}\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE {MAX_MESSAGE}\r\n",
                    if arg.is_empty() { "you" } else { &arg }
                )
            }
            "HELO" => {
                from = None;
                rcpts.clear();
                "250 harena-demo\r\n".into()
            }
            "MAIL" => match path_arg(&arg, "FROM:") {
                Some(addr) => {
                    from = Some(addr);
                    rcpts.clear();
                    "250 2.1.0 OK\r\n".into()
                }
                None => "501 5.5.4 syntax: MAIL FROM:<address>\r\n".into(),
            },
            "RCPT" => match (&from, path_arg(&arg, "TO:")) {
                (None, _) => "503 5.5.1 MAIL first\r\n".into(),
                (Some(_), Some(addr)) if !addr.is_empty() => {
                    rcpts.push(addr);
                    "250 2.1.5 OK\r\n".into()
                }
                (Some(_), _) => "501 5.5.4 syntax: RCPT TO:<address>\r\n".into(),
            },
            "DATA" => {
                if from.is_none() || rcpts.is_empty() {
                    "503 5.5.1 MAIL and RCPT first\r\n".into()
                } else {
                    w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                        .await?;
                    let (message, too_big) = read_data(&mut r, &mut buf).await?;
                    let sender = from.take().unwrap_or_default();
                    let to = std::mem::take(&mut rcpts);
                    if too_big {
                        "552 5.3.4 message too big\r\n".into()
                    } else {
                        let id = mailbox.store(&sender, &to, &message);
                        tracing::debug!(id, from = %sender, "demo mail sink: message received");
                        format!("250 2.0.0 OK: queued as {id}\r\n")
                    }
                }
            }
            "RSET" => {
                from = None;
                rcpts.clear();
                "250 2.0.0 OK\r\n".into()
            }
            "NOOP" => "250 2.0.0 OK\r\n".into(),
            "QUIT" => {
                w.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            }
            "STARTTLS" | "AUTH" => "502 5.5.1 not supported by the demo mail sink\r\n".into(),
            _ => "500 5.5.2 unknown command\r\n".into(),
        };
        w.write_all(reply.as_bytes()).await?;
    }
    Ok(())
}

/// The message after `DATA`, up to the lone `.`, dot-unstuffed, with CRLF line endings;
/// and whether it exceeded [`MAX_MESSAGE`] (then it is not kept).
async fn read_data<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<(String, bool)> {
    let mut message = String::new();
    let mut too_big = false;
    loop {
        let Some(line) = read_line(r, buf).await? else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed during DATA",
            ));
        };
        if line == "." {
            return Ok((message, too_big));
        }
        let line = line.strip_prefix('.').unwrap_or(&line);
        if message.len() + line.len() + 2 > MAX_MESSAGE {
            too_big = true;
            continue;
        }
        message.push_str(line);
        message.push_str("\r\n");
    }
}

/// A message split into headers and its readable parts.
#[derive(Debug, Default)]
struct Parsed {
    headers: Vec<(String, String)>,
    body: String,
    text: Option<String>,
    html: Option<String>,
}

impl Parsed {
    fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Headers (unfolded) and body of an entity; line endings become `\n`.
fn split_entity(raw: &str) -> (Vec<(String, String)>, String) {
    let text = raw.replace("\r\n", "\n");
    let (head, body) = match text.find("\n\n") {
        Some(i) => (&text[..i], text[i + 2..].to_string()),
        None if text.starts_with('\n') => ("", text[1..].to_string()),
        None => (text.as_str(), String::new()),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = headers.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    (headers, body)
}

fn parse_message(raw: &str) -> Parsed {
    let (headers, body) = split_entity(raw);
    let mut parsed = Parsed {
        headers,
        body: String::new(),
        text: None,
        html: None,
    };
    let (mut text, mut html) = (None, None);
    walk(&parsed.headers, &body, &mut text, &mut html, 0);
    parsed.body = body;
    parsed.text = text;
    parsed.html = html;
    parsed
}

/// The media type (lowercase) and parameters of a `Content-Type` value.
fn content_type(value: &str) -> (String, Vec<(String, String)>) {
    let mut parts = value.split(';');
    let mime = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let params = parts
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_string(),
            )
        })
        .collect();
    (mime, params)
}

/// Finds the first `text/plain` and `text/html` leaves of an entity.
fn walk(
    headers: &[(String, String)],
    body: &str,
    text: &mut Option<String>,
    html: &mut Option<String>,
    depth: usize,
) {
    let (mime, params) = content_type(header(headers, "content-type").unwrap_or("text/plain"));
    if mime.starts_with("multipart/") {
        let Some((_, boundary)) = params.iter().find(|(k, _)| k == "boundary") else {
            return;
        };
        if depth > 8 {
            return;
        }
        for part in split_multipart(body, boundary) {
            let (h, b) = split_entity(&part);
            walk(&h, &b, text, html, depth + 1);
        }
        return;
    }
    let cte = header(headers, "content-transfer-encoding")
        .unwrap_or("7bit")
        .trim()
        .to_ascii_lowercase();
    let bytes = match cte.as_str() {
        "quoted-printable" => decode_qp(body),
        "base64" => decode_base64(body),
        _ => body.as_bytes().to_vec(),
    };
    let decoded = String::from_utf8_lossy(&bytes).into_owned();
    match mime.as_str() {
        "text/plain" if text.is_none() => *text = Some(decoded),
        "text/html" if html.is_none() => *html = Some(decoded),
        _ => {}
    }
}

/// The parts of a multipart body (each with its headers), between the boundaries.
fn split_multipart(body: &str, boundary: &str) -> Vec<String> {
    let delimiter = format!("--{boundary}");
    let close = format!("--{boundary}--");
    let mut parts = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in body.split('\n') {
        let trimmed = line.trim_end();
        if trimmed == close {
            if let Some(p) = current.take() {
                parts.push(p.join("\n"));
            }
            break;
        }
        if trimmed == delimiter {
            if let Some(p) = current.take() {
                parts.push(p.join("\n"));
            }
            current = Some(Vec::new());
            continue;
        }
        if let Some(p) = current.as_mut() {
            p.push(line);
        }
    }
    if let Some(p) = current {
        parts.push(p.join("\n"));
    }
    parts
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Quoted-printable (RFC 2045): `=XX` escapes and `=` soft line breaks.
fn decode_qp(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let lines: Vec<&str> = text.split('\n').collect();
    for (i, line) in lines.iter().enumerate() {
        let line = line.trim_end_matches([' ', '\t', '\r']);
        let (line, soft) = match line.strip_suffix('=') {
            Some(l) => (l, true),
            None => (line, false),
        };
        let b = line.as_bytes();
        let mut j = 0;
        while j < b.len() {
            if b[j] == b'='
                && let (Some(h), Some(l)) = (
                    b.get(j + 1).copied().and_then(hex),
                    b.get(j + 2).copied().and_then(hex),
                )
            {
                out.push(h * 16 + l);
                j += 3;
                continue;
            }
            out.push(b[j]);
            j += 1;
        }
        if !soft && i + 1 < lines.len() {
            out.push(b'\n');
        }
    }
    out
}

/// Standard base64 (RFC 4648), ignoring whitespace and anything after the padding.
pub(crate) fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' | b'-' => Some(62),
            b'/' | b'_' => Some(63),
            _ => None,
        }
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        if c == b'=' {
            break;
        }
        let Some(v) = value(c) else { continue };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).unwrap_or(0));
        }
    }
    out
}

/// Decodes RFC 2047 encoded words (`=?utf-8?B?…?=`, `=?utf-8?Q?…?=`) in a header value;
/// whitespace between two encoded words is dropped, as the RFC says.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, after) = rest.split_at(start);
        let decoded = after[2..].split_once('?').and_then(|(_charset, tail)| {
            let (enc, tail) = tail.split_once('?')?;
            let end = tail.find("?=")?;
            let payload = &tail[..end];
            let bytes = match enc.to_ascii_lowercase().as_str() {
                "b" => decode_base64(payload),
                "q" => decode_qp(&payload.replace('_', " ")),
                _ => return None,
            };
            let consumed = 2 + (after[2..].len() - tail.len()) + end + 2;
            Some((String::from_utf8_lossy(&bytes).into_owned(), consumed))
        });
        match decoded {
            Some((text, consumed)) => {
                if !(last_was_word && before.trim().is_empty()) {
                    out.push_str(before);
                }
                out.push_str(&text);
                rest = &after[consumed..];
                last_was_word = true;
            }
            None => {
                out.push_str(before);
                out.push_str("=?");
                rest = &after[2..];
                last_was_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_words() {
        assert_eq!(decode_words("plain"), "plain");
        assert_eq!(
            decode_words("=?utf-8?b?W0ZJUklOR10gw6l0w6k=?= =?utf-8?q?_and_more?="),
            "[FIRING] été and more"
        );
        assert_eq!(decode_words("a =?utf-8?q?x=3Dy?= b"), "a x=y b");
        assert_eq!(decode_words("broken =?utf-8"), "broken =?utf-8");
    }

    #[test]
    fn base64_and_qp() {
        assert_eq!(decode_base64("aGVsbG8gd29ybGQ=\r\n"), b"hello world");
        assert_eq!(decode_base64("aGk"), b"hi");
        assert_eq!(
            decode_qp("caf=C3=A9 soft=\nbreak\nnext"),
            "café softbreak\nnext".as_bytes()
        );
    }

    #[test]
    fn multipart_message() {
        let raw = "Subject: =?utf-8?q?Hello?=\r\nFrom: a@b.example\r\nContent-Type: multipart/alternative;\r\n boundary=\"XYZ\"\r\n\r\n--XYZ\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nline =C3=A9\r\n--XYZ\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nPGI+aGk8L2I+\r\n--XYZ--\r\n";
        let m = Mailbox::default();
        let id = m.store("a@b.example", &["c@d.example".into()], raw);
        let got = m.message(id).expect("stored");
        assert_eq!(got.subject, "Hello");
        assert_eq!(got.from, "a@b.example");
        assert_eq!(got.text.trim_end(), "line é");
        assert_eq!(got.html.as_deref(), Some("<b>hi</b>"));
    }

    #[tokio::test]
    async fn smtp_session() {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let m = Mailbox::default();
        let token = CancellationToken::new();
        tokio::spawn(serve(l, m.clone(), token.clone()));
        let s = TcpStream::connect(addr).await.expect("connect");
        let (r, mut w) = s.into_split();
        let mut r = BufReader::new(r);
        let mut line = String::new();
        let mut expect = async |code: &str, r: &mut BufReader<_>| loop {
            line.clear();
            r.read_line(&mut line).await.expect("read");
            assert!(line.starts_with(code), "expected {code}, got {line:?}");
            if line.as_bytes().get(3) == Some(&b' ') {
                break;
            }
        };
        expect("220", &mut r).await;
        for (cmd, code) in [
            ("EHLO test", "250"),
            ("RCPT TO:<x@y.example>", "503"),
            ("MAIL FROM:<a@b.example> BODY=8BITMIME", "250"),
            ("RCPT TO:<x@y.example>", "250"),
            ("DATA", "354"),
            ("Subject: hi\r\n\r\n..dotted\r\nbody\r\n.", "250"),
            ("QUIT", "221"),
        ] {
            w.write_all(format!("{cmd}\r\n").as_bytes())
                .await
                .expect("write");
            expect(code, &mut r).await;
        }
        let got = m.messages();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].envelope_to, vec!["x@y.example".to_string()]);
        assert_eq!(got[0].subject, "hi");
        assert_eq!(got[0].text, ".dotted\nbody\n");
        token.cancel();
    }
}
