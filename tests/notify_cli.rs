//! The notification commands and endpoints with the real binary: `routes test` against
//! `amtool` on the shipped config, `silence add|list|expire` against a running exporter
//! (silences survive a restart), `send-test-email` through aiosmtpd, alerts with no SMTP
//! configured, and the daily report.

mod common;
#[path = "common_smtp/mod.rs"]
mod common_smtp;

use std::path::Path;
use std::time::Duration;

use common::{Exporter, command, http, require};
use common_smtp::{SmtpOptions, SmtpServer};

const PASSWORD: &str = "cli-Smtp-Secret-4417";

/// The shipped route tree as an Alertmanager config, receivers reduced to their names.
fn shipped_tree_for_amtool(dir: &Path) -> std::path::PathBuf {
    let text = harena_exporter::config::DEFAULT_CONFIG;
    let section = &text[text.find("\nalerting:").unwrap() + 1..];
    let route = &section[section.find("  route:").unwrap()..section.find("  receivers:").unwrap()];
    let route: String = route
        .lines()
        .map(|l| l.strip_prefix("  ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let am = format!(
        "{route}\nreceivers:\n  - name: team-critical\n  - name: team-digest\n  - name: blackhole\n"
    );
    common::write_file(dir, "alertmanager.yml", &am)
}

#[test]
fn routes_test_of_the_shipped_config_prints_what_amtool_prints() {
    require("amtool", "prometheus-alertmanager");
    let dir = tempfile::tempdir().unwrap();
    let am = shipped_tree_for_amtool(dir.path());
    let cases: &[&[&str]] = &[
        &[
            "alertname=PostgresDown",
            "severity=critical",
            "check=postgres",
        ],
        &["alertname=ServiceDown", "severity=warning", "check=grafana"],
        &["alertname=Watchdog", "severity=none"],
        &["alertname=BackupStale", "severity=warning"],
        &["alertname=TunnelHostnameChanged", "severity=critical"],
        &["alertname=EC2CPUCreditsLow", "severity=warning"],
        &["severity=critical"],
        &["alertname=Watchdog", "severity=critical"],
        &["alertname=Other"],
        &[],
    ];
    for labels in cases {
        let ours = command(&[&["routes", "test"], *labels].concat())
            .output()
            .unwrap();
        assert!(
            ours.status.success(),
            "{labels:?}: {}",
            String::from_utf8_lossy(&ours.stderr)
        );
        let theirs = std::process::Command::new("amtool")
            .args(["config", "routes", "test", "--config.file"])
            .arg(&am)
            .args(*labels)
            .output()
            .unwrap();
        assert!(
            theirs.status.success(),
            "amtool: {}",
            String::from_utf8_lossy(&theirs.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&ours.stdout),
            String::from_utf8_lossy(&theirs.stdout),
            "{labels:?}"
        );
    }
    let bad = command(&["routes", "test", "1x=y"]).output().unwrap();
    assert!(!bad.status.success());
}

fn failing_config(dir: &Path, alerting: &str) -> std::path::PathBuf {
    common::write_file(
        dir,
        "rules.yml",
        r#"groups:
  - name: t
    interval: 500ms
    rules:
      - alert: WebDown
        expr: harena_probe_success{check="web"} == 0
        labels: {severity: critical}
        annotations: {summary: "web is down"}
"#,
    );
    common::write_file(
        dir,
        "config.yml",
        &format!(
            "checks:
  - name: web
    kind: tcp
    address: 127.0.0.1:{}
    interval: 1s
    timeout: 500ms
rule_files: [rules.yml]
{alerting}",
            common::closed_port()
        ),
    )
}

fn run_silence(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = command(&[&["silence", "--web.url", url], args].concat())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_from_the_command_line_persist_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = failing_config(
        dir.path(),
        "alerting:\n  route: {receiver: none, group_wait: 0s}\n  receivers: [{name: none}]\n",
    );
    let storage = tempfile::tempdir().unwrap();
    let args = [
        "--config.file",
        cfg.to_str().unwrap(),
        "--storage.path",
        storage.path().to_str().unwrap(),
    ];
    let e = Exporter::start(&args, &[]);
    let url = format!("http://{}", e.addr);
    let (ok, id, err) = run_silence(
        &url,
        &[
            "add",
            "alertname=WebDown",
            "check=~\"we.*\"",
            "--duration",
            "2h",
            "--comment",
            "maintenance",
            "--author",
            "ops",
        ],
    );
    assert!(ok, "{err}");
    let id = id.trim().to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let (ok, list, _) = run_silence(&url, &["list"]);
    assert!(ok);
    assert!(
        list.contains(&id) && list.contains("maintenance") && list.contains("active"),
        "{list}"
    );
    // The firing alert shows as silenced in the API.
    let end = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, api) = http("GET", e.addr, "/api/v1/alerts").await;
        if api.contains(&id) {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "alert never silenced: {api}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A restart keeps it.
    drop(e);
    let e = Exporter::start(&args, &[]);
    let url = format!("http://{}", e.addr);
    let (_, body) = http("GET", e.addr, "/api/v1/silences").await;
    assert!(body.contains(&id), "{body}");
    let (ok, _, err) = run_silence(&url, &["expire", &id]);
    assert!(ok, "{err}");
    let (_, list, _) = run_silence(&url, &["list"]);
    assert!(!list.contains(&id), "{list}");
    let (_, list, _) = run_silence(&url, &["list", "--all"]);
    assert!(list.contains(&id) && list.contains("expired"), "{list}");
    // Errors: a bad matcher, an unknown id.
    let (ok, _, err) = run_silence(&url, &["add", "alertname=~(", "--comment", "x"]);
    assert!(!ok && err.contains("regular expression"), "{err}");
    let (ok, _, err) = run_silence(&url, &["expire", "00000000-0000-4000-8000-000000000000"]);
    assert!(!ok && err.contains("404"), "{err}");
}

fn email_alerting(smtp: &SmtpServer, password_env: &str) -> String {
    format!(
        "alerting:
  route: {{receiver: team, group_wait: 0s, group_interval: 1s}}
  receivers:
    - name: team
      email_configs:
        - to: ops@harena.example
          from: alerts@harena.example
          smarthost: {}
          auth_username: alerts
          auth_password_env: {password_env}
          tls_config: {{ca_file: {}}}
  daily_report: {{receiver: team, at: '08:00', location: UTC}}
",
        smtp.smarthost(),
        smtp.ca_file().display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_email_prints_the_smtp_result() {
    let smtp = SmtpServer::start(SmtpOptions::starttls("alerts", PASSWORD));
    let dir = tempfile::tempdir().unwrap();
    let cfg = failing_config(dir.path(), &email_alerting(&smtp, "CLI_SMTP_PASSWORD"));
    let out = command(&[
        "send-test-email",
        "--config.file",
        cfg.to_str().unwrap(),
        "--to",
        "me@harena.example",
    ])
    .env("CLI_SMTP_PASSWORD", PASSWORD)
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("accepted") && stdout.contains("250"),
        "{stdout}"
    );
    assert!(
        stdout.contains("alerts") && !stdout.contains(PASSWORD),
        "{stdout}"
    );
    let got = smtp.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].rcpt_tos, ["me@harena.example"]);
    assert!(got[0].subject.contains("test email"), "{}", got[0].subject);
    // A wrong password: exit 1 and the reason, not the password.
    let out = command(&["send-test-email", "--config.file", cfg.to_str().unwrap()])
        .env("CLI_SMTP_PASSWORD", "wrong-password-123")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAILED (auth)"), "{stdout}");
    assert!(!stdout.contains("wrong-password-123"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_smtp_alerts_still_show_and_the_status_says_email_is_not_configured() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = failing_config(
        dir.path(),
        "alerting:
  route: {receiver: team, group_wait: 0s}
  receivers:
    - name: team
      email_configs: [{to: ops@harena.example, from: a@harena.example, smarthost_env: CLI_UNSET_SMARTHOST}]
",
    );
    let e = Exporter::start(&["--config.file", cfg.to_str().unwrap()], &[]);
    let end = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, api) = http("GET", e.addr, "/api/v1/alerts").await;
        if api.contains("\"firing\"") {
            break;
        }
        assert!(std::time::Instant::now() < end, "no firing alert: {api}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, page) = http("GET", e.addr, "/").await;
    assert!(
        page.contains("WebDown") && page.contains("email is not configured"),
        "{page}"
    );
    assert!(
        page.contains("CLI_UNSET_SMARTHOST"),
        "the page names the variable"
    );
    let (_, n) = http("GET", e.addr, "/api/v1/notifications").await;
    assert!(n.contains("\"configured\":false"), "{n}");
    let end = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match e.logs.recv_timeout(Duration::from_millis(200)) {
            Ok(l) if l.contains("notification not sent") => {
                assert!(
                    l.contains("WebDown") && l.contains("CLI_UNSET_SMARTHOST"),
                    "{l}"
                );
                break;
            }
            _ => assert!(
                std::time::Instant::now() < end,
                "no log line about the unsent notification"
            ),
        }
    }
}

/// Waits for `n` accepted emails; on failure, says what the exporter logged and holds.
async fn wait_mail(smtp: &SmtpServer, e: &Exporter, n: usize) -> Vec<common_smtp::Received> {
    let end = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got = smtp.accepted();
        if got.len() >= n {
            return got;
        }
        if std::time::Instant::now() > end {
            let (_, pending) = http("GET", e.addr, "/api/v1/notifications").await;
            let logs: Vec<String> = e.logs.try_iter().collect();
            panic!(
                "{} of {n} emails after 60 s\noutbox: {pending}\nsmtp log: {}\nexporter log:\n{}",
                got.len(),
                smtp.log(),
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_report_arrives_once_a_day() {
    let smtp = SmtpServer::start(SmtpOptions::starttls("alerts", PASSWORD));
    let dir = tempfile::tempdir().unwrap();
    let cfg = failing_config(dir.path(), &email_alerting(&smtp, "CLI_SMTP_PASSWORD"));
    let e = Exporter::start(
        &["--config.file", cfg.to_str().unwrap()],
        &[("CLI_SMTP_PASSWORD", PASSWORD)],
    );
    assert!(e.wait_all_ran(Duration::from_secs(10)).await);
    // The firing alert's email first.
    wait_mail(&smtp, &e, 1).await;
    let (status, body) = http("POST", e.addr, "/api/v1/report").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"queued\":1"), "{body}");
    let got = wait_mail(&smtp, &e, 2).await;
    let report = got
        .iter()
        .find(|m| m.subject.contains("daily report"))
        .expect("a report");
    for needle in [
        "web",
        "FAIL (refused)",
        "Incidents",
        "Ports open to the internet",
        "uptime",
    ] {
        assert!(
            report.text.contains(needle),
            "{needle:?} missing:\n{}",
            report.text
        );
    }
    assert!(report.html.contains("<table"), "{}", report.html);
    // Once a day: asking again queues nothing.
    let (_, body) = http("POST", e.addr, "/api/v1/report").await;
    assert!(body.contains("\"queued\":0"), "{body}");
}

#[test]
fn a_config_error_in_alerting_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = failing_config(
        dir.path(),
        "alerting:\n  route: {receiver: nobody}\n  receivers: [{name: team}]\n",
    );
    let out = command(&["check-config", "--config.file", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("config.yml:9:") && text.contains("alerting.route.receiver"),
        "{text}"
    );
    assert!(text.contains("nobody"), "{text}");
}
