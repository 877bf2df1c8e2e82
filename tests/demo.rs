//! `harena-exporter demo`, run five times faster: the simulated Harena and the exporter
//! watching it, seen through the exporter's status page and API and the demo's mailbox.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use harena_exporter::demo::{self, DemoOptions};
use serde_json::Value;
use tokio::time::Instant;

/// Every check the demo configures.
const CHECKS: &[&str] = &[
    "nginx",
    "user_service",
    "search_service",
    "metric_service",
    "sync_service",
    "enrichment_service",
    "budget_profiling_service",
    "conversation_service",
    "grafana",
    "prometheus",
    "elasticsearch",
    "tunnel",
    "public_site",
    "pg_dump_backups",
];

async fn get_json(addr: std::net::SocketAddr, path: &str) -> Value {
    let (status, body) = common::http("GET", addr, path).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
}

/// The tunnel check's hostname, from its detail (`… hostname X (from metrics …`).
fn tunnel_hostname(checks: &[Value]) -> Option<String> {
    let tunnel = checks.iter().find(|c| c["name"] == "tunnel")?;
    let detail = tunnel["detail"].as_str()?;
    let rest = detail.split("hostname ").nth(1)?;
    Some(rest.split_whitespace().next()?.to_string())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_shows_every_feature() {
    let demo = demo::start(DemoOptions {
        listen: "127.0.0.1:0".into(),
        storage: None,
        speed: 5.0,
    })
    .await
    .expect("start the demo");
    let addr = demo.exporter.addr;
    assert!(addr.ip().is_loopback());
    assert!(demo.banner().contains(&demo.mailbox_url()));
    assert_eq!(
        demo.checks.iter().map(String::as_str).collect::<Vec<_>>(),
        CHECKS
    );
    let dir = demo.dir.clone();
    assert!(dir.join(demo::CONFIG_FILE).is_file());

    // Every check runs once.
    let deadline = Instant::now() + Duration::from_secs(60);
    let checks = loop {
        let v = get_json(addr, "/api/v1/checks").await;
        let checks = v["data"].as_array().cloned().unwrap_or_default();
        if checks.len() == CHECKS.len() && checks.iter().all(|c| !c["success"].is_null()) {
            break checks;
        }
        assert!(Instant::now() < deadline, "not every check ran: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let names: BTreeSet<&str> = checks.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, CHECKS.iter().copied().collect());
    let stale = checks
        .iter()
        .find(|c| c["name"] == "pg_dump_backups")
        .expect("backup check");
    assert_eq!(stale["success"], false, "{stale}");
    assert_eq!(stale["reason"], "stale", "{stale}");

    // The status page lists every check.
    let (status, page) = common::http("GET", addr, "/").await;
    assert_eq!(status, 200);
    for name in CHECKS {
        assert!(page.contains(name), "the status page lacks {name}");
    }

    // Over the next minute: search_service fails and recovers, the tunnel gets a new
    // hostname, BackupStale fires, alert emails arrive (ServiceDown among them) and the
    // heartbeat calls the sink.
    let mut search_failed = false;
    let mut search_recovered = false;
    let mut first_host: Option<String> = None;
    let mut new_host: Option<String> = None;
    let mut backup_stale = false;
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let v = get_json(addr, "/api/v1/checks").await;
        let checks = v["data"].as_array().cloned().unwrap_or_default();
        if let Some(s) = checks.iter().find(|c| c["name"] == "search_service") {
            if s["success"] == false {
                assert_eq!(s["reason"], "http_status", "{s}");
                search_failed = true;
            } else if search_failed && s["success"] == true {
                search_recovered = true;
            }
        }
        if let Some(h) = tunnel_hostname(&checks) {
            assert!(h.ends_with(".trycloudflare.com"), "{h}");
            match &first_host {
                None => first_host = Some(h),
                Some(f) if *f != h => new_host = Some(h),
                Some(_) => {}
            }
        }
        let alerts = get_json(addr, "/api/v1/alerts").await;
        backup_stale |= alerts["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| {
                a["labels"]["alertname"] == "BackupStale"
                    && a["labels"]["check"] == "pg_dump_backups"
                    && a["state"] == "firing"
            });
        let emails = demo.emails();
        let service_down_mail = emails
            .iter()
            .any(|m| m.subject.contains("ServiceDown") && m.text.contains("search_service"));
        let beats = demo.mailbox.heartbeats().count;
        if search_recovered && new_host.is_some() && backup_stale && service_down_mail && beats > 0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not seen in time: search_service failed {search_failed}, recovered \
             {search_recovered}; tunnel hostnames {first_host:?} -> {new_host:?}; BackupStale \
             firing {backup_stale}; ServiceDown email {service_down_mail}; heartbeats {beats}; \
             email subjects {:?}",
            emails.iter().map(|m| &m.subject).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The mailbox page lists the emails; each opens, with its text and HTML parts.
    let emails = demo.emails();
    assert!(!emails.is_empty());
    let (status, mailbox) = common::http("GET", demo.mailbox_addr, "/").await;
    assert_eq!(status, 200);
    for m in &emails {
        assert!(
            mailbox.contains(&esc(&m.subject)),
            "the mailbox page lacks {:?}",
            m.subject
        );
        assert!(m.envelope_to.contains(&"team@harena.example".to_string()));
    }
    let first = &emails[0];
    let (status, one) =
        common::http("GET", demo.mailbox_addr, &format!("/messages/{}", first.id)).await;
    assert_eq!(status, 200);
    assert!(one.contains(&esc(&first.subject)));
    assert!(first.html.is_some(), "the alert email has an HTML part");
    let (status, html) = common::http(
        "GET",
        demo.mailbox_addr,
        &format!("/messages/{}/html", first.id),
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("<"), "{html}");
    let api = get_json(demo.mailbox_addr, "/api/messages").await;
    assert!(api["messages"].as_array().is_some_and(|m| !m.is_empty()));
    assert!(api["heartbeats"]["count"].as_u64().is_some_and(|n| n > 0));

    // Stopping removes the demo's folder.
    demo.stop().await;
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

#[tokio::test]
async fn demo_refuses_a_public_address() {
    let err = demo::start(DemoOptions {
        listen: "0.0.0.0:0".into(),
        ..DemoOptions::default()
    })
    .await
    .err()
    .expect("a non-loopback address is refused");
    assert!(err.to_string().contains("loopback"), "{err}");
    let err = demo::start(DemoOptions {
        listen: "127.0.0.1:0".into(),
        speed: 1000.0,
        storage: None,
    })
    .await
    .err()
    .expect("an absurd speed is refused");
    assert!(err.to_string().contains("speed"), "{err}");
}
