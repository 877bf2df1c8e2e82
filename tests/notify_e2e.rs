//! Notifications end to end, with the real binary and a real SMTP server (aiosmtpd):
//! a target goes down, the alert fires, the email arrives in time with the right
//! content; it comes back, the resolved email arrives. Then the failure cases: a wrong
//! SMTP password, SMTP down for several group intervals, SIGKILL of the exporter before
//! a send, during a slow DATA and after acceptance, and an SMTP server that stalls every
//! command while probes and another receiver carry on. Every output is scanned for the
//! SMTP password.

mod common;
#[path = "common_smtp/mod.rs"]
mod common_smtp;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Exporter, http, metric_value};
use common_smtp::{Received, SmtpOptions, SmtpServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PASSWORD: &str = "e2e-Smtp-Secret-7781";
const USER: &str = "alerts";
/// The check's interval, the rule's `for` and the route's `group_wait`.
const INTERVAL: Duration = Duration::from_secs(1);
const FOR: Duration = Duration::from_secs(2);
const GROUP_WAIT: Duration = Duration::from_secs(1);
/// The rule group's evaluation interval: `for` is counted in evaluations.
const EVAL: Duration = Duration::from_millis(500);

/// An HTTP target whose status the test sets; counts the requests it answers.
struct Target {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    hits: Arc<AtomicUsize>,
}

impl Target {
    async fn start() -> Target {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let status = Arc::new(AtomicU16::new(200));
        let hits = Arc::new(AtomicUsize::new(0));
        let (st, h) = (Arc::clone(&status), Arc::clone(&hits));
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                let (st, h) = (Arc::clone(&st), Arc::clone(&h));
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    let _ = s.read(&mut buf).await;
                    h.fetch_add(1, Ordering::Relaxed);
                    let code = st.load(Ordering::Relaxed);
                    let resp = format!(
                        "HTTP/1.1 {code} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        Target { addr, status, hits }
    }

    fn set(&self, code: u16) {
        self.status.store(code, Ordering::Relaxed);
    }
}

/// A webhook receiver that records each POST body.
async fn webhook_sink() -> (SocketAddr, Arc<std::sync::Mutex<Vec<(Instant, String)>>>) {
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = Arc::clone(&got);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let g = Arc::clone(&g);
            async move {
                g.lock().unwrap().push((Instant::now(), body));
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (addr, got)
}

fn rules_file(dir: &Path) {
    common::write_file(
        dir,
        "rules.yml",
        r#"groups:
  - name: e2e
    interval: 500ms
    rules:
      - alert: WebDown
        expr: harena_probe_success{check="web"} == 0
        for: 2s
        labels:
          severity: critical
        annotations:
          summary: "{{ $labels.check }} is down"
          description: "The web service answers errors."
          runbook_url: https://runbooks.example/webdown
"#,
    );
}

/// How the email integration reaches the test SMTP server.
fn email_entry(smtp: &SmtpServer, tls: &str) -> String {
    format!(
        "      email_configs:
        - to: ops@harena.example, dev@harena.example
          from: alerts@harena.example
          smarthost: {}
          auth_username: {USER}
          auth_password_env: E2E_SMTP_PASSWORD
          tls: {tls}
          tls_config: {{ca_file: {}}}
          send_resolved: true
          timeout: 5s
",
        smtp.smarthost(),
        smtp.ca_file().display()
    )
}

fn config(dir: &Path, target: &Target, receivers: &str) -> std::path::PathBuf {
    rules_file(dir);
    common::write_file(
        dir,
        "config.yml",
        &format!(
            "global:
  external_url: http://harena.example:9811
checks:
  - name: web
    kind: http
    url: http://{}/health
    interval: 1s
    timeout: 500ms
rule_files: [rules.yml]
alerting:
  route:
    receiver: team
    group_by: [alertname, check]
    group_wait: 1s
    group_interval: 2s
    repeat_interval: 1h
  receivers:
    - name: team
{receivers}",
            target.addr
        ),
    )
}

fn start(config: &Path, storage: &Path, password: &str) -> Exporter {
    Exporter::start(
        &[
            "--config.file",
            config.to_str().unwrap(),
            "--storage.path",
            storage.to_str().unwrap(),
            "--log.level",
            "debug",
        ],
        &[("E2E_SMTP_PASSWORD", password)],
    )
}

async fn metrics(e: &Exporter) -> String {
    http("GET", e.addr, "/metrics").await.1
}

async fn metric(e: &Exporter, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_value(&metrics(e).await, name, labels).unwrap_or(0.0)
}

async fn wait_metric(
    e: &Exporter,
    name: &str,
    labels: &[(&str, &str)],
    min: f64,
    within: Duration,
) {
    let end = Instant::now() + within;
    loop {
        let v = metric(e, name, labels).await;
        if v >= min {
            return;
        }
        assert!(
            Instant::now() < end,
            "{name}{labels:?} stayed at {v}, expected >= {min}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn drain_logs(e: &Exporter) -> String {
    let mut out = String::new();
    while let Ok(l) = e.logs.try_recv() {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// The password is nowhere: logs, metrics, every API answer, the status page, emails.
async fn assert_no_secret(e: &Exporter, logs: &str, mails: &[Received]) {
    let mut outputs = vec![("log".to_string(), logs.to_string())];
    for path in [
        "/metrics",
        "/",
        "/api/v1/checks",
        "/api/v1/alerts",
        "/api/v1/notifications",
        "/api/v1/silences",
    ] {
        outputs.push((path.to_string(), http("GET", e.addr, path).await.1));
    }
    for m in mails {
        outputs.push((format!("email {}", m.message_id), m.raw.clone()));
    }
    for (what, text) in outputs {
        assert!(
            !text.contains(PASSWORD),
            "the SMTP password leaked into {what}"
        );
    }
}

async fn run_delivery(smtp_opts: SmtpOptions, tls: &str) {
    let smtp = SmtpServer::start(smtp_opts);
    let target = Target::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &target, &email_entry(&smtp, tls));
    let storage = tempfile::tempdir().unwrap();
    let e = start(&cfg, storage.path(), PASSWORD);
    assert!(e.wait_all_ran(Duration::from_secs(10)).await);
    let down_at = Instant::now();
    target.set(503);
    let bound = INTERVAL + EVAL + FOR + GROUP_WAIT + Duration::from_secs(2);
    let mails = smtp.wait_for(1, bound + Duration::from_secs(20)).await;
    let took = down_at.elapsed();
    println!("firing email after {took:?} (bound {bound:?})");
    assert!(
        took <= bound,
        "firing email took {took:?}, more than {bound:?}"
    );
    let m = &mails[0];
    assert!(m.accepted && m.tls, "{m:?}");
    assert_eq!(m.auth_user.as_deref(), Some(USER));
    let mut rcpts = m.rcpt_tos.clone();
    rcpts.sort();
    assert_eq!(rcpts, ["dev@harena.example", "ops@harena.example"]);
    assert!(m.subject.contains("WebDown"), "subject: {}", m.subject);
    assert!(
        m.subject.to_uppercase().contains("FIRING"),
        "subject: {}",
        m.subject
    );
    for body in [&m.text, &m.html] {
        for needle in [
            "web",
            "http_status",
            "503",
            "runbooks.example/webdown",
            "harena.example:9811",
        ] {
            assert!(
                body.contains(needle),
                "{needle:?} missing from body:\n{body}"
            );
        }
    }
    assert!(
        m.message_id.ends_with("@harena-exporter>"),
        "{}",
        m.message_id
    );
    assert_eq!(m.header("X-Harena-Status"), Some("firing"));
    // Back up: the resolved email.
    target.set(200);
    let mails = smtp.wait_for(2, Duration::from_secs(30)).await;
    let r = &mails[1];
    assert_eq!(r.header("X-Harena-Status"), Some("resolved"), "{r:?}");
    assert!(
        r.subject.to_uppercase().contains("RESOLVED"),
        "{}",
        r.subject
    );
    assert_ne!(r.message_id, m.message_id);
    wait_metric(
        &e,
        "harena_notifications_total",
        &[("receiver", "team"), ("result", "success")],
        2.0,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        metric(&e, "harena_notification_queue_length", &[]).await,
        0.0
    );
    let logs = drain_logs(&e);
    assert_no_secret(&e, &logs, &smtp.messages()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_email_arrives_in_time_and_then_resolves() {
    run_delivery(SmtpOptions::starttls(USER, PASSWORD), "starttls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_email_arrives_in_time_and_then_resolves() {
    run_delivery(SmtpOptions::implicit_tls(USER, PASSWORD), "implicit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_keeps_the_notification_and_says_why() {
    let smtp = SmtpServer::start(SmtpOptions::starttls(USER, PASSWORD));
    let target = Target::start().await;
    target.set(503);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &target, &email_entry(&smtp, "starttls"));
    let storage = tempfile::tempdir().unwrap();
    let e = start(&cfg, storage.path(), "not-the-password");
    wait_metric(
        &e,
        "harena_notifications_total",
        &[("result", "auth")],
        1.0,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        metric(&e, "harena_notification_queue_length", &[]).await,
        1.0
    );
    let (_, api) = http("GET", e.addr, "/api/v1/notifications").await;
    assert!(api.contains("\"auth\""), "{api}");
    assert!(smtp.accepted().is_empty());
    let logs = drain_logs(&e);
    assert!(
        !logs.contains("not-the-password"),
        "wrong password in the log"
    );
    assert_no_secret(&e, &logs, &[]).await;
    // The operator fixes the password and restarts: the kept notification goes out once.
    drop(e);
    let e = start(&cfg, storage.path(), PASSWORD);
    let mails = smtp.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(mails.iter().filter(|m| m.accepted).count(), 1);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(smtp.accepted().len(), 1, "sent once");
    drop(e);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_down_for_several_group_intervals_then_every_notification_arrives_once() {
    let mut smtp = SmtpServer::start(SmtpOptions::starttls(USER, PASSWORD));
    smtp.stop();
    let target = Target::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &target, &email_entry(&smtp, "starttls"));
    let storage = tempfile::tempdir().unwrap();
    let e = start(&cfg, storage.path(), PASSWORD);
    assert!(e.wait_all_ran(Duration::from_secs(10)).await);
    // Down, up, down: firing, resolved, firing, each after at least one group interval.
    for code in [503, 200, 503] {
        target.set(code);
        let queued = metric(&e, "harena_notification_queue_length", &[]).await;
        wait_metric(
            &e,
            "harena_notification_queue_length",
            &[],
            queued + 1.0,
            Duration::from_secs(30),
        )
        .await;
    }
    let queued = metric(&e, "harena_notification_queue_length", &[]).await;
    assert!(queued >= 3.0, "{queued}");
    assert!(metric(&e, "harena_notification_oldest_pending_seconds", &[]).await > 0.0);
    smtp.restart();
    let end = Instant::now() + Duration::from_secs(60);
    while metric(&e, "harena_notification_queue_length", &[]).await > 0.0 {
        assert!(Instant::now() < end, "the outbox did not drain");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let accepted = smtp.accepted();
    let mut ids: Vec<&str> = accepted.iter().map(|m| m.message_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), accepted.len(), "a notification arrived twice");
    let statuses: Vec<&str> = accepted
        .iter()
        .map(|m| m.header("X-Harena-Status").unwrap_or(""))
        .collect();
    assert_eq!(&statuses[..3], ["firing", "resolved", "firing"], "in order");
    let success = metric(&e, "harena_notifications_total", &[("result", "success")]).await;
    #[allow(clippy::cast_precision_loss)]
    let n = accepted.len() as f64;
    assert_eq!(success, n);
}

/// Kills the exporter at one point of a send, restarts it, and checks that the
/// notification was accepted exactly once.
async fn kill_and_restart(point: &str) {
    let opts = SmtpOptions::starttls(USER, PASSWORD);
    let mut smtp = SmtpServer::start(match point {
        "during DATA" => opts.clone().with_data_delay(Duration::from_secs(5)),
        _ => opts.clone(),
    });
    if point == "before send" {
        smtp.stop();
    }
    let target = Target::start().await;
    target.set(503);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &target, &email_entry(&smtp, "starttls"));
    let storage = tempfile::tempdir().unwrap();
    let mut e = start(&cfg, storage.path(), PASSWORD);
    let end = Instant::now() + Duration::from_secs(30);
    match point {
        "before send" => {
            wait_metric(
                &e,
                "harena_notification_queue_length",
                &[],
                1.0,
                Duration::from_secs(30),
            )
            .await;
        }
        "during DATA" => {
            while !smtp.log().contains("DATA-START") {
                assert!(Instant::now() < end, "no DATA: {}", smtp.log());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        _ => {
            smtp.wait_for(1, Duration::from_secs(30)).await;
            wait_metric(
                &e,
                "harena_notifications_total",
                &[("result", "success")],
                1.0,
                Duration::from_secs(10),
            )
            .await;
        }
    }
    e.signal(libc::SIGKILL);
    let _ = e.child.wait();
    if point != "after acceptance" {
        smtp.restart_with(opts.clone());
    }
    e = start(&cfg, storage.path(), PASSWORD);
    let end = Instant::now() + Duration::from_secs(30);
    while smtp.accepted().is_empty() {
        assert!(
            Instant::now() < end,
            "{point}: nothing accepted after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Long enough for a wrong second copy to show up: several group intervals.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let accepted = smtp.accepted();
    assert_eq!(
        accepted.len(),
        1,
        "{point}: accepted {} times: {accepted:#?}",
        accepted.len()
    );
    assert_eq!(accepted[0].header("X-Harena-Status"), Some("firing"));
    drop(e);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_before_the_send_loses_nothing() {
    kill_and_restart("before send").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_slow_data_loses_nothing() {
    kill_and_restart("during DATA").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_after_acceptance_sends_nothing_twice() {
    kill_and_restart("after acceptance").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalling_smtp_server_delays_neither_probes_nor_another_receiver() {
    let smtp = SmtpServer::start(
        SmtpOptions::starttls(USER, PASSWORD).with_stall(Duration::from_secs(30)),
    );
    let (hook, got) = webhook_sink().await;
    let target = Target::start().await;
    let dir = tempfile::tempdir().unwrap();
    let receivers = format!(
        "{}      webhook_configs:\n        - url: http://{hook}/hook\n",
        email_entry(&smtp, "starttls")
    );
    let cfg = config(dir.path(), &target, &receivers);
    let storage = tempfile::tempdir().unwrap();
    let e = start(&cfg, storage.path(), PASSWORD);
    assert!(e.wait_all_ran(Duration::from_secs(10)).await);
    let down_at = Instant::now();
    let hits_before = target.hits.load(Ordering::Relaxed);
    target.set(503);
    let bound = INTERVAL + EVAL + FOR + GROUP_WAIT + Duration::from_secs(2);
    let end = Instant::now() + bound + Duration::from_secs(20);
    while got.lock().unwrap().is_empty() {
        assert!(Instant::now() < end, "the webhook got nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = got.lock().unwrap()[0].0 - down_at;
    println!("webhook notified after {took:?} while SMTP stalls");
    assert!(took <= bound, "webhook took {took:?}");
    // Probes kept their 1 s schedule meanwhile: about one run per second.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let secs = down_at.elapsed().as_secs_f64();
    let runs = target.hits.load(Ordering::Relaxed) - hits_before;
    #[allow(clippy::cast_precision_loss)]
    let rate = runs as f64 / secs;
    assert!(rate > 0.8, "{runs} runs in {secs:.1} s");
    let m = metrics(&e).await;
    let on_time = metric_value(
        &m,
        "harena_scheduler_start_delay_seconds_bucket",
        &[("le", "0.1")],
    )
    .unwrap();
    let all = metric_value(&m, "harena_scheduler_start_delay_seconds_count", &[]).unwrap();
    assert!(on_time / all > 0.95, "{on_time} of {all} runs on time");
    assert!(
        smtp.accepted().is_empty(),
        "the stalled server accepted nothing yet"
    );
    assert_eq!(
        metric(&e, "harena_notification_queue_length", &[]).await,
        1.0
    );
}
