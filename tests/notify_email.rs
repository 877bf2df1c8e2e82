//! The `email` integration against a real SMTP server (aiosmtpd, see
//! `common_smtp/mod.rs`): STARTTLS + AUTH, implicit TLS + AUTH, plain, wrong password,
//! server down, stalling server, refused recipients, settings from the environment, a
//! literal password in the config, `send-test-email`, and no password anywhere.
//!
//! Run: `cargo test --test notify_email` (needs `pip install aiosmtpd`).

#[path = "common_smtp/mod.rs"]
mod common_smtp;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common_smtp::{Received, SmtpOptions, SmtpServer};
use harena_exporter::config::yaml;
use harena_exporter::notify::receivers::email::{Email, EmailConfig, SmtpGlobal, TEST_SUBJECT};
use harena_exporter::notify::template::EmailTemplates;
use harena_exporter::notify::{
    LabelSet, Notification, NotifyAlert, ReportBody, SendError, fingerprint, now_ms,
};
use serde_json::json;

const USER: &str = "alice";
const PASSWORD: &str = "Pw-7c1f-very-secret";
const WAIT: Duration = Duration::from_secs(15);

fn labels(pairs: &[(&str, &str)]) -> LabelSet {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn notification(id: &str) -> Notification {
    let l = labels(&[
        ("alertname", "TargetDown"),
        ("check", "api"),
        ("severity", "critical"),
    ]);
    let alert = NotifyAlert {
        fingerprint: fingerprint(&l),
        labels: l,
        annotations: labels(&[("summary", "api is down")]),
        starts_at_ms: now_ms() - 60_000,
        ends_at_ms: None,
        generator_url: "http://127.0.0.1:9115/#api".into(),
        value: 0.0,
        reason: "refused".into(),
        detail: "connect to 127.0.0.1:1: connection refused".into(),
    };
    Notification {
        id: id.into(),
        receiver: "ops".into(),
        group_key: "{}/{severity=\"critical\"}:{alertname=\"TargetDown\"}".into(),
        group_labels: labels(&[("alertname", "TargetDown")]),
        alerts: vec![alert],
        external_url: "http://127.0.0.1:9115/".into(),
        created_ms: now_ms(),
        report: None,
    }
}

/// A password file holding `password` (with a trailing newline, as editors write it).
fn password_file(password: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("create the password file");
    writeln!(f, "{password}").expect("write the password file");
    f
}

/// An email config for `smtp`, merged with `extra` (a `null` removes a key).
fn config(smtp: &SmtpServer, extra: serde_json::Value) -> EmailConfig {
    let mut v = json!({
        "to": "ops@example.org",
        "from": "Harena <harena@example.org>",
        "smarthost": smtp.smarthost(),
        "timeout": "10s",
        "tls_config": {"ca_file": smtp.ca_file()},
    });
    for (k, x) in extra.as_object().expect("an object") {
        if x.is_null() {
            v.as_object_mut().expect("an object").remove(k);
        } else {
            v[k] = x.clone();
        }
    }
    serde_json::from_value(v).expect("a valid email config")
}

fn build(c: &EmailConfig) -> Email {
    c.build(&SmtpGlobal::default())
        .unwrap_or_else(|e| panic!("build: {}: {}", e.field, e.message))
}

fn auth_extra(pw: &tempfile::NamedTempFile) -> serde_json::Value {
    json!({"auth_username": USER, "auth_password_file": pw.path()})
}

fn merge(mut a: serde_json::Value, b: serde_json::Value) -> serde_json::Value {
    for (k, x) in b.as_object().expect("an object") {
        a[k] = x.clone();
    }
    a
}

fn lf(text: &str) -> String {
    text.replace("\r\n", "\n").trim_end().to_string()
}

/// Checks one delivered notification against what the templates render.
fn assert_delivered(m: &Received, n: &Notification, to: &[&str]) {
    let want = EmailTemplates::new(None, None, None)
        .and_then(|t| t.render(n))
        .expect("render");
    assert!(m.accepted, "{m:#?}");
    assert_eq!(m.subject, want.subject);
    assert_eq!(lf(&m.text), lf(&want.text), "text part");
    assert_eq!(lf(&m.html), lf(&want.html), "html part");
    assert_eq!(m.message_id, format!("<{}@harena-exporter>", n.id));
    assert_eq!(m.header("X-Harena-Status"), Some("firing"));
    assert_eq!(m.header("X-Harena-Group-Key"), Some(n.group_key.as_str()));
    assert_eq!(m.header("From"), Some("Harena <harena@example.org>"));
    assert!(m.header("Date").is_some(), "{:?}", m.headers);
    let header_to = m.header("To").unwrap_or_default();
    for r in to {
        assert!(header_to.contains(r), "To: {header_to}");
    }
    assert!(
        m.header("Content-Type")
            .is_some_and(|c| c.starts_with("multipart/alternative")),
        "{:?}",
        m.headers
    );
    assert_eq!(m.mail_from, "harena@example.org");
    let mut got = m.rcpt_tos.clone();
    got.sort();
    let mut want_to: Vec<String> = to.iter().map(|s| s.to_string()).collect();
    want_to.sort();
    assert_eq!(got, want_to);
    assert!(!m.raw.contains(PASSWORD), "the password is in the email");
}

/// Captures every log line (debug and up) of the current thread.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || logs.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("logs")).to_string()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn assert_no_password(what: &str, text: &str) {
    assert!(
        !text.contains(PASSWORD),
        "the password appears in {what}: {text}"
    );
}

fn assert_error(e: &SendError, reason: &str, retryable: bool, needle: &str) {
    assert_eq!(e.reason, reason, "{e:?}");
    assert_eq!(e.retryable, retryable, "{e:?}");
    assert!(e.message.contains(needle), "{needle:?} not in {e:?}");
    assert_no_password("an error", &format!("{e} {e:?}"));
}

#[tokio::test]
async fn starttls_with_auth_delivers_to_every_recipient() {
    let smtp = SmtpServer::start(SmtpOptions::starttls(USER, PASSWORD));
    let pw = password_file(PASSWORD);
    let c = config(
        &smtp,
        merge(
            auth_extra(&pw),
            json!({"to": "a@example.org, B <b@example.org>"}),
        ),
    );
    let email = build(&c);
    assert_eq!(email.configured(), Ok(()));
    assert!(!email.send_resolved(), "Alertmanager's default for email");
    let n = notification("n-starttls-1");
    email.send(&n).await.expect("send");
    let got = smtp.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_delivered(m, &n, &["a@example.org", "b@example.org"]);
    assert!(m.tls, "not encrypted: {m:#?}");
    assert_eq!(m.auth_user.as_deref(), Some(USER));

    // A retry of the same notification carries the same Message-ID.
    email.send(&n).await.expect("send again");
    let got = smtp.wait_for(2, WAIT).await;
    assert_eq!(got[1].message_id, got[0].message_id);
}

#[tokio::test]
async fn implicit_tls_with_auth_delivers() {
    let smtp = SmtpServer::start(SmtpOptions::implicit_tls(USER, PASSWORD));
    let pw = password_file(PASSWORD);
    let c = config(&smtp, merge(auth_extra(&pw), json!({"tls": "implicit"})));
    let n = notification("n-smtps-1");
    build(&c).send(&n).await.expect("send");
    let got = smtp.wait_for(1, WAIT).await;
    assert_delivered(&got[0], &n, &["ops@example.org"]);
    assert!(got[0].tls);
    assert_eq!(got[0].auth_user.as_deref(), Some(USER));
}

#[tokio::test]
async fn plain_smtp_without_tls_delivers() {
    let smtp = SmtpServer::start(SmtpOptions::plain());
    // Explicitly without TLS, and Alertmanager's `require_tls: false` (STARTTLS only
    // when offered, and this server does not offer it).
    for (i, extra) in [json!({"tls": "none"}), json!({"require_tls": false})]
        .into_iter()
        .enumerate()
    {
        let n = notification(&format!("n-plain-{i}"));
        build(&config(&smtp, extra)).send(&n).await.expect("send");
        let got = smtp.wait_for(i + 1, WAIT).await;
        assert_delivered(&got[i], &n, &["ops@example.org"]);
        assert!(!got[i].tls);
    }
    // The daily report comes rendered and is sent as it is.
    let mut n = notification("report-2026-01-02-x");
    n.alerts.clear();
    n.report = Some(ReportBody {
        subject: "Harena daily report 2026-01-02".into(),
        text: "all good".into(),
        html: "<p>all good</p>".into(),
    });
    build(&config(&smtp, json!({"tls": "none"})))
        .send(&n)
        .await
        .expect("send the report");
    let got = smtp.wait_for(3, WAIT).await;
    assert_eq!(got[2].subject, "Harena daily report 2026-01-02");
    assert_eq!(lf(&got[2].text), "all good");
    assert_eq!(lf(&got[2].html), "<p>all good</p>");
    assert_eq!(got[2].header("X-Harena-Status"), Some("report"));

    // The default requires STARTTLS, which this server does not offer.
    let e = build(&config(&smtp, json!({})))
        .send(&notification("n-plain-x"))
        .await
        .expect_err("STARTTLS is required by default");
    assert_error(&e, "tls", true, "STARTTLS");
}

#[tokio::test]
async fn wrong_password_is_an_auth_error_without_the_password() {
    let smtp = SmtpServer::start(SmtpOptions::starttls(USER, PASSWORD));
    let wrong = format!("{PASSWORD}-wrong");
    let pw = password_file(&wrong);
    let logs = Logs::default();
    let _guard = logs.install();
    let email = build(&config(&smtp, auth_extra(&pw)));
    let e = email
        .send(&notification("n-wrong-pw"))
        .await
        .expect_err("wrong password");
    assert_error(&e, "auth", true, "535");
    assert!(e.message.contains(USER), "{e}");
    assert!(!e.message.contains(&wrong), "{e}");
    assert_no_password("the logs", &logs.text());
    assert!(smtp.messages().is_empty());
}

#[tokio::test]
async fn untrusted_certificate_is_a_tls_error() {
    let smtp = SmtpServer::start(SmtpOptions::starttls(USER, PASSWORD));
    let pw = password_file(PASSWORD);
    let c = config(&smtp, merge(auth_extra(&pw), json!({"tls_config": null})));
    let e = build(&c)
        .send(&notification("n-untrusted"))
        .await
        .expect_err("self-signed certificate");
    assert_error(&e, "tls", true, "UnknownIssuer");
}

#[tokio::test]
async fn server_down_is_refused_and_comes_back() {
    let mut smtp = SmtpServer::start(SmtpOptions::plain());
    let email = build(&config(&smtp, json!({"tls": "none"})));
    smtp.stop();
    let e = email
        .send(&notification("n-down"))
        .await
        .expect_err("nothing listens");
    assert_error(&e, "refused", true, "connection refused");
    smtp.restart();
    email
        .send(&notification("n-down"))
        .await
        .expect("send after restart");
    let got = smtp.wait_for(1, WAIT).await;
    assert_eq!(got[0].message_id, "<n-down@harena-exporter>");
}

#[tokio::test]
async fn stalling_server_times_out_on_time() {
    let smtp = SmtpServer::start(SmtpOptions::plain().with_stall(Duration::from_secs(30)));
    let email = build(&config(&smtp, json!({"tls": "none", "timeout": "2s"})));
    let start = std::time::Instant::now();
    let e = email
        .send(&notification("n-stall"))
        .await
        .expect_err("the server stalls");
    let took = start.elapsed();
    assert_error(&e, "timeout", true, "timed out after");
    assert!(e.message.contains("greeting"), "{e}");
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(
        took < Duration::from_secs(5),
        "took {took:?} for a 2s timeout"
    );
}

#[tokio::test]
async fn slow_data_past_the_timeout_is_not_accepted() {
    // The client gives up during a slow DATA: the server records the message as not
    // accepted (its 250 could not reach the client), and the send is a timeout to retry.
    let smtp = SmtpServer::start(SmtpOptions::plain().with_data_delay(Duration::from_secs(4)));
    let email = build(&config(&smtp, json!({"tls": "none", "timeout": "1s"})));
    let e = email
        .send(&notification("n-slow-data"))
        .await
        .expect_err("the reply to DATA comes too late");
    assert_error(&e, "timeout", true, "end of DATA");
    let deadline = std::time::Instant::now() + WAIT;
    while smtp.messages().is_empty() {
        assert!(std::time::Instant::now() < deadline, "nothing recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = &smtp.messages()[0];
    assert!(!m.accepted, "{m:#?}");
    assert!(smtp.accepted().is_empty());
}

#[tokio::test]
async fn one_refused_recipient_does_not_stop_the_others() {
    let smtp = SmtpServer::start(SmtpOptions::plain().with_refused("^bob@"));
    let logs = Logs::default();
    let _guard = logs.install();
    let c = config(
        &smtp,
        json!({"tls": "none", "to": "ann@example.org, bob@example.org, cid@example.org"}),
    );
    let n = notification("n-partial");
    build(&c)
        .send(&n)
        .await
        .expect("two recipients accepted it");
    let got = smtp.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1, "one message for every recipient");
    let mut to = got[0].rcpt_tos.clone();
    to.sort();
    assert_eq!(to, ["ann@example.org", "cid@example.org"]);
    let log = logs.text();
    assert!(
        log.contains("WARN") && log.contains("bob@example.org"),
        "{log}"
    );

    // Every recipient refused: a permanent error naming each one.
    let c = config(
        &smtp,
        json!({"tls": "none", "to": "bob@example.org, bob@example.net"}),
    );
    let e = build(&c)
        .send(&notification("n-all-refused"))
        .await
        .expect_err("everyone refused");
    assert_error(&e, "rejected", false, "bob@example.org");
    assert!(
        e.message.contains("bob@example.net") && e.message.contains("550"),
        "{e}"
    );
}

#[tokio::test]
async fn rejected_message_is_permanent_and_4xx_is_retried() {
    let mut smtp = SmtpServer::start(SmtpOptions::plain().with_data_reply("554 5.6.0 no thanks"));
    let email = build(&config(&smtp, json!({"tls": "none"})));
    let e = email.send(&notification("n-554")).await.expect_err("554");
    assert_error(&e, "rejected", false, "554");
    smtp.restart_with(SmtpOptions::plain().with_data_reply("451 4.3.0 try again later"));
    let e = email.send(&notification("n-451")).await.expect_err("451");
    assert_error(&e, "rejected", true, "451");
}

#[tokio::test]
async fn settings_from_unset_variables_are_not_configured() {
    let smtp = SmtpServer::start(SmtpOptions::plain());
    let var = "HARENA_TEST_EMAIL_SMARTHOST_1";
    let c = config(
        &smtp,
        json!({"tls": "none", "smarthost": null, "smarthost_env": var}),
    );
    let email = build(&c);
    let want = format!("email is not configured: {var} is not set");
    assert_eq!(email.configured(), Err(want.clone()));
    let e = email
        .send(&notification("n-env"))
        .await
        .expect_err("not configured");
    assert_error(&e, "not_configured", true, &want);

    // Everything from the environment, through alerting.global.
    let global: SmtpGlobal = serde_json::from_value(json!({
        "smtp_smarthost_env": "HARENA_TEST_EMAIL_SMARTHOST_2",
        "smtp_from_env": "HARENA_TEST_EMAIL_FROM_2",
        "smtp_require_tls": false,
    }))
    .expect("global");
    let c: EmailConfig =
        serde_json::from_value(json!({"to_env": "HARENA_TEST_EMAIL_TO_2"})).expect("config");
    let email = c.build(&global).expect("build");
    assert!(
        email
            .configured()
            .unwrap_err()
            .contains("HARENA_TEST_EMAIL_SMARTHOST_2 is not set")
    );
    // SAFETY: these variables are unique to this test and set before any thread reads
    // them; nothing else in this binary touches them.
    unsafe {
        std::env::set_var("HARENA_TEST_EMAIL_SMARTHOST_2", smtp.smarthost());
        std::env::set_var("HARENA_TEST_EMAIL_FROM_2", "harena@example.org");
    }
    assert!(
        email
            .configured()
            .unwrap_err()
            .contains("HARENA_TEST_EMAIL_TO_2 is not set")
    );
    // SAFETY: as above.
    unsafe { std::env::set_var("HARENA_TEST_EMAIL_TO_2", "env@example.org") };
    assert_eq!(email.configured(), Ok(()));
    email.send(&notification("n-env-2")).await.expect("send");
    let got = smtp.wait_for(1, WAIT).await;
    assert_eq!(got[0].rcpt_tos, ["env@example.org"]);
}

#[test]
fn a_literal_password_is_refused() {
    let text = format!(
        "to: ops@example.org\nsmarthost: smtp.example.org:587\nfrom: a@example.org\n\
         auth_username: alice\nauth_password: {PASSWORD}\n"
    );
    let node = yaml::parse("c.yml", &text).expect("yaml");
    let mut ctx = yaml::Context::new("c.yml");
    // The loader refuses a file with any diagnostic (the value itself is recovered
    // without the key, to report further problems).
    let _: Option<EmailConfig> = ctx.deserialize(&node, "receivers[0].email_configs[0]", &[]);
    assert_eq!(ctx.diagnostics.len(), 1, "{:?}", ctx.diagnostics);
    let all: Vec<String> = ctx.diagnostics.iter().map(|d| d.to_string()).collect();
    let all = all.join("\n");
    assert!(
        all.contains("auth_password_file") && all.contains("auth_password_env"),
        "{all}"
    );
    assert!(all.contains("c.yml:5:"), "{all}");
    assert_no_password("the config error", &all);

    // The same in alerting.global.
    let text = format!("smtp_auth_username: alice\nsmtp_auth_password: {PASSWORD}\n");
    let node = yaml::parse("c.yml", &text).expect("yaml");
    let mut ctx = yaml::Context::new("c.yml");
    let _: Option<SmtpGlobal> = ctx.deserialize(&node, "alerting.global", &[]);
    assert_eq!(ctx.diagnostics.len(), 1, "{:?}", ctx.diagnostics);
    let all: Vec<String> = ctx.diagnostics.iter().map(|d| d.to_string()).collect();
    let all = all.join("\n");
    assert!(all.contains("smtp_auth_password_file"), "{all}");
    assert_no_password("the config error", &all);
}

#[tokio::test]
async fn send_test_prints_the_smtp_result() {
    let smtp = SmtpServer::start(SmtpOptions::starttls(USER, PASSWORD).with_refused("^nobody@"));
    let pw = password_file(PASSWORD);
    let email = build(&config(&smtp, auth_extra(&pw)));
    let out = email
        .send_test(Some("me@example.org, nobody@example.org"))
        .await
        .expect("send the test email");
    for needle in [
        format!("server: {} (harena-test-smtpd)", smtp.smarthost()),
        "tls: STARTTLS, TLS 1.".to_string(),
        format!("authenticated as: {USER} (AUTH PLAIN)"),
        "accepted recipients: me@example.org".to_string(),
        "refused recipients: nobody@example.org (550".to_string(),
        "server reply: 250".to_string(),
    ] {
        assert!(out.contains(&needle), "{needle:?} not in:\n{out}");
    }
    assert_no_password("the transcript", &out);
    let got = smtp.wait_for(1, WAIT).await;
    assert_eq!(got[0].subject, TEST_SUBJECT);
    assert_eq!(got[0].rcpt_tos, ["me@example.org"]);
    assert!(!got[0].text.is_empty() && !got[0].html.is_empty());
}

#[tokio::test]
async fn the_password_appears_nowhere() {
    let smtp = SmtpServer::start(SmtpOptions::starttls(USER, PASSWORD));
    let pw = password_file(PASSWORD);
    let logs = Logs::default();
    let _guard = logs.install();
    let mut seen = Vec::new();

    // Configured from the environment, too.
    let var = "HARENA_TEST_EMAIL_PASSWORD_3";
    // SAFETY: unique to this test, set before anything reads it.
    unsafe { std::env::set_var(var, PASSWORD) };
    for extra in [
        auth_extra(&pw),
        json!({"auth_username": USER, "auth_password_env": var}),
    ] {
        let c = config(&smtp, extra);
        seen.push(format!("{c:?}"));
        let email = build(&c);
        seen.push(format!("{email:?}"));
        email.send(&notification("n-scan")).await.expect("send");
        seen.push(email.send_test(None).await.expect("send_test"));
    }
    // Failures: wrong user (the server answers 535), no TLS to a server that needs it,
    // a timeout in the middle of AUTH.
    let bad_user = build(&config(
        &smtp,
        merge(auth_extra(&pw), json!({"auth_username": "mallory"})),
    ));
    seen.push(
        bad_user
            .send(&notification("n-x"))
            .await
            .unwrap_err()
            .to_string(),
    );
    seen.push(format!("{:?}", bad_user.send_test(None).await.unwrap_err()));
    let no_tls = build(&config(
        &smtp,
        merge(auth_extra(&pw), json!({"tls": "none"})),
    ));
    seen.push(format!(
        "{:?}",
        no_tls.send(&notification("n-y")).await.unwrap_err()
    ));

    for m in smtp.messages() {
        seen.push(m.raw.clone());
    }
    assert_eq!(smtp.accepted().len(), 4);
    seen.push(logs.text());
    for (i, s) in seen.iter().enumerate() {
        assert_no_password(&format!("output {i}"), s);
    }
}
