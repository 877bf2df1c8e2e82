//! The dispatcher's Alertmanager semantics, with virtual time: group_wait,
//! group_interval, repeat_interval, send_resolved, inhibition (the shipped config's),
//! silences, time intervals, and no repeat after a restart. Notifications are read from
//! the outbox table; the webhook integrations point at a closed port so nothing leaves.

use std::sync::{Arc, Mutex};

use harena_exporter::config::{self, ConfigSource};
use harena_exporter::model::Labels;
use harena_exporter::notify::dispatcher::{AlertSource, Deps, Dispatcher, Settings};
use harena_exporter::notify::outbox::Outbox;
use harena_exporter::notify::silences::{NewSilence, Silences};
use harena_exporter::notify::{Notification, matchers::Matcher};
use harena_exporter::rules::{Alert, AlertState};
use harena_exporter::scheduler::StatusBoard;
use harena_exporter::state::State;

#[derive(Default)]
struct FakeAlerts(Mutex<Vec<Alert>>);

impl AlertSource for FakeAlerts {
    fn alerts(&self) -> Vec<Alert> {
        self.0.lock().unwrap().clone()
    }
}

impl FakeAlerts {
    fn set(&self, alerts: Vec<Alert>) {
        *self.0.lock().unwrap() = alerts;
    }
}

const T0: i64 = 1_780_000_000_000;
const S: i64 = 1000;

fn firing(pairs: &[(&str, &str)], since: i64) -> Alert {
    Alert {
        group: "g".into(),
        rule_index: 0,
        labels: Labels::from_pairs(pairs.iter().copied()),
        annotations: Labels::from_pairs([("summary", "something broke")]),
        state: AlertState::Firing,
        active_at_ms: since,
        fired_at_ms: Some(since),
        resolved_at_ms: None,
        keep_firing_since_ms: None,
        value: 1.0,
    }
}

fn resolved(mut a: Alert, at: i64) -> Alert {
    a.state = AlertState::Inactive;
    a.resolved_at_ms = Some(at);
    a
}

struct Bed {
    state: Arc<State>,
    alerts: Arc<FakeAlerts>,
    silences: Arc<Silences>,
    dispatcher: Dispatcher,
    _dir: tempfile::TempDir,
}

/// The alerting section under test: every receiver is a webhook on a closed port.
fn config_text(alerting: &str) -> String {
    format!("checks: []\n{alerting}")
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Bed {
    fn new(alerting: &str) -> Bed {
        let dir = tempfile::tempdir().unwrap();
        Bed::on(dir, alerting)
    }

    fn on(dir: tempfile::TempDir, alerting: &str) -> Bed {
        let path = dir.path().join("config.yml");
        std::fs::write(&path, config_text(alerting)).unwrap();
        let cfg = config::load(&ConfigSource::File(path)).unwrap_or_else(|e| panic!("{e}"));
        let state = Arc::new(State::open(dir.path()).unwrap());
        let alerts = Arc::new(FakeAlerts::default());
        let silences = Arc::new(Silences::load(Arc::clone(&state)));
        let outbox = Arc::new(Outbox::new(Arc::clone(&state)));
        let dispatcher = Dispatcher::new(Deps {
            state: Arc::clone(&state),
            outbox,
            silences: Arc::clone(&silences),
            board: Arc::new(StatusBoard::default()),
            alerts: alerts.clone() as Arc<dyn AlertSource>,
        });
        dispatcher.apply(
            cfg.alerting.clone(),
            Settings {
                external_url: "http://harena.example:9811".into(),
                ..Settings::default()
            },
        );
        Bed {
            state,
            alerts,
            silences,
            dispatcher,
            _dir: dir,
        }
    }

    /// Every notification queued so far, oldest first: (integration, notification).
    fn queued(&self) -> Vec<(String, Notification)> {
        self.state.with_conn(|c| {
            let mut st = c
                .prepare("SELECT integration, notification FROM outbox ORDER BY id")
                .unwrap();
            st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .unwrap()
                .map(|r| {
                    let (k, n) = r.unwrap();
                    (k, serde_json::from_str(&n).unwrap())
                })
                .collect()
        })
    }

    /// Alert names of each queued notification, as `receiver:Name1,Name2`.
    fn summary(&self) -> Vec<String> {
        self.queued()
            .into_iter()
            .map(|(_, n)| {
                let names: Vec<String> = n
                    .alerts
                    .iter()
                    .map(|a| {
                        let name = a.labels.get("alertname").cloned().unwrap_or_default();
                        let check = a
                            .labels
                            .get("check")
                            .map(|c| format!("/{c}"))
                            .unwrap_or_default();
                        let st = if a.resolved() { "(resolved)" } else { "" };
                        format!("{name}{check}{st}")
                    })
                    .collect();
                format!("{}:{}", n.receiver, names.join(","))
            })
            .collect()
    }
}

fn webhook(name: &str) -> String {
    format!(
        "    - name: {name}\n      webhook_configs: [{{url: 'http://127.0.0.1:{}/hook'}}]\n",
        closed_port()
    )
}

fn simple_tree() -> String {
    format!(
        "alerting:
  route:
    receiver: team
    group_by: [alertname]
    group_wait: 30s
    group_interval: 5m
    repeat_interval: 4h
  receivers:
{}",
        webhook("team")
    )
}

#[tokio::test]
async fn group_wait_interval_and_repeat_follow_alertmanager() {
    let bed = Bed::new(&simple_tree());
    let a = firing(
        &[("alertname", "ServiceDown"), ("check", "user_service")],
        T0,
    );
    bed.alerts.set(vec![a.clone()]);
    bed.dispatcher.tick(T0);
    bed.dispatcher.tick(T0 + 29 * S);
    assert!(bed.summary().is_empty(), "nothing before group_wait");
    bed.dispatcher.tick(T0 + 30 * S);
    assert_eq!(bed.summary(), ["team:ServiceDown/user_service"]);
    // Same alerts: nothing more at the next group_interval.
    bed.dispatcher.tick(T0 + 330 * S);
    assert_eq!(bed.queued().len(), 1);
    // A second alert joins the group: it waits for the group_interval.
    let b = firing(
        &[("alertname", "ServiceDown"), ("check", "search_service")],
        T0 + 340 * S,
    );
    bed.alerts.set(vec![a.clone(), b.clone()]);
    bed.dispatcher.tick(T0 + 340 * S);
    bed.dispatcher.tick(T0 + 629 * S);
    assert_eq!(bed.queued().len(), 1);
    bed.dispatcher.tick(T0 + 630 * S);
    assert_eq!(
        bed.summary()[1],
        "team:ServiceDown/search_service,ServiceDown/user_service"
    );
    // repeat_interval: the same two again after 4 h, not before.
    bed.dispatcher.tick(T0 + 630 * S + 4 * 3600 * S - 300 * S);
    assert_eq!(bed.queued().len(), 2);
    bed.dispatcher.tick(T0 + 630 * S + 4 * 3600 * S);
    assert_eq!(bed.queued().len(), 3);
    // Resolved: webhooks send resolved by default.
    let now = T0 + 630 * S + 4 * 3600 * S + 10 * S;
    bed.alerts.set(vec![resolved(a, now), resolved(b, now)]);
    bed.dispatcher.tick(now);
    bed.dispatcher.tick(now + 300 * S);
    let last = bed.queued().pop().unwrap().1;
    assert_eq!(last.status(), "resolved");
    assert_eq!(last.alerts.len(), 2);
    assert_eq!(bed.queued().len(), 4);
    // Nothing after everything resolved was sent.
    bed.dispatcher.tick(now + 5 * 3600 * S);
    assert_eq!(bed.queued().len(), 4);
}

#[tokio::test]
async fn an_old_alert_in_a_new_group_goes_out_at_once_and_a_restart_does_not_repeat_it() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().to_path_buf();
    let bed = Bed::on(dir, &simple_tree());
    let a = firing(&[("alertname", "PostgresDown"), ("check", "postgres")], T0);
    bed.alerts.set(vec![a.clone()]);
    bed.dispatcher.tick(T0 + 30 * S);
    assert_eq!(bed.queued().len(), 1);
    // "Restart": a new dispatcher on the same state file sees the same firing alert.
    let Bed { _dir, .. } = bed;
    let bed2 = Bed::on(_dir, &simple_tree());
    assert_eq!(bed2.state.path().parent().unwrap(), keep);
    bed2.alerts.set(vec![a]);
    bed2.dispatcher.tick(T0 + 60 * S);
    bed2.dispatcher.tick(T0 + 90 * S);
    assert_eq!(
        bed2.queued().len(),
        1,
        "no second firing notification after a restart"
    );
}

#[tokio::test]
async fn the_shipped_inhibitions_leave_one_root_cause() {
    // The embedded config's alerting section, with its receivers made webhooks.
    let shipped = config::DEFAULT_CONFIG;
    let start = shipped.find("\nalerting:").unwrap();
    let section = &shipped[start + 1..];
    let receivers_at = section.find("  receivers:").unwrap();
    let inhibit_at = section.find("  # One root cause").unwrap();
    let daily_at = section.find("  # Every morning").unwrap();
    let alerting = format!(
        "alerting:\n{}  receivers:\n{}{}{}{}",
        &section[section.find("  route:").unwrap()..receivers_at],
        webhook("team-critical"),
        webhook("team-digest"),
        "    - name: blackhole\n",
        &section[inhibit_at..daily_at]
    );
    let bed = Bed::new(&alerting);
    let t = T0;
    bed.alerts.set(vec![
        firing(
            &[
                ("alertname", "PostgresDown"),
                ("check", "postgres"),
                ("severity", "critical"),
            ],
            t,
        ),
        firing(
            &[
                ("alertname", "ServiceDown"),
                ("check", "user_service"),
                ("severity", "critical"),
            ],
            t,
        ),
        firing(
            &[
                ("alertname", "ServiceDown"),
                ("check", "nginx"),
                ("severity", "critical"),
            ],
            t,
        ),
        firing(
            &[
                ("alertname", "TunnelDown"),
                ("check", "tunnel"),
                ("severity", "critical"),
            ],
            t,
        ),
        firing(
            &[
                ("alertname", "PublicSiteDown"),
                ("check", "public_site"),
                ("severity", "critical"),
            ],
            t,
        ),
        firing(&[("alertname", "Watchdog"), ("severity", "none")], t),
    ]);
    bed.dispatcher.tick(t);
    let mut got = bed.summary();
    got.sort();
    assert_eq!(
        got,
        [
            "team-critical:PostgresDown/postgres",
            "team-critical:ServiceDown/nginx",
            "team-critical:TunnelDown/tunnel",
        ],
        "user_service is explained by PostgreSQL, the public site by the tunnel and nginx; Watchdog goes nowhere"
    );
    let muted = bed.dispatcher.suppression(
        &[
            ("alertname", "PublicSiteDown"),
            ("check", "public_site"),
            ("severity", "critical"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    );
    assert_eq!(muted.inhibited_by.len(), 2, "{muted:?}");
}

#[tokio::test]
async fn silences_mute_and_expire() {
    let bed = Bed::new(&simple_tree());
    let now_ms = harena_exporter::notify::now_ms();
    let id = bed
        .silences
        .add(NewSilence {
            id: None,
            matchers: vec![Matcher::parse("alertname=BackupStale").unwrap()],
            starts_at_ms: now_ms - 1000,
            ends_at_ms: now_ms + 3_600_000,
            created_by: "test".into(),
            comment: "disk swap".into(),
        })
        .unwrap();
    bed.alerts.set(vec![
        firing(
            &[("alertname", "BackupStale"), ("check", "pg_dump_backups")],
            now_ms - 60_000,
        ),
        firing(
            &[("alertname", "RedisDown"), ("check", "redis")],
            now_ms - 60_000,
        ),
    ]);
    // A start in the past becomes the moment of `add`: look a second later.
    bed.dispatcher.tick(now_ms + 1000);
    assert_eq!(bed.summary(), ["team:RedisDown/redis"]);
    bed.silences.expire(&id).unwrap();
    bed.dispatcher.tick(now_ms + 301_000);
    // Its group (group_by alertname) flushed while muted; the next flush sends it.
    assert_eq!(bed.summary()[1], "team:BackupStale/pg_dump_backups");
}

#[tokio::test]
async fn mute_time_intervals_hold_notifications() {
    // Muted all day every day in UTC: nothing leaves; active_time_intervals inverse.
    let tree = format!(
        "alerting:
  route:
    receiver: team
    group_wait: 0s
    routes:
      - matchers: ['alertname=\"A\"']
        receiver: team
        mute_time_intervals: [always]
      - matchers: ['alertname=\"B\"']
        receiver: team
        active_time_intervals: [always]
      - matchers: ['alertname=\"C\"']
        receiver: team
        active_time_intervals: [never]
  time_intervals:
    - name: always
      time_intervals: [{{times: [{{start_time: '00:00', end_time: '24:00'}}]}}]
    - name: never
      time_intervals: [{{years: ['1999']}}]
  receivers:
{}",
        webhook("team")
    );
    let bed = Bed::new(&tree);
    bed.alerts.set(vec![
        firing(&[("alertname", "A")], T0),
        firing(&[("alertname", "B")], T0),
        firing(&[("alertname", "C")], T0),
    ]);
    bed.dispatcher.tick(T0);
    assert_eq!(bed.summary(), ["team:B"]);
}
