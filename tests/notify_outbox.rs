//! The durable outbox against fake integrations, with the state file on disk: retries
//! with backoff and their metrics, restarts, isolation between integrations, permanent
//! errors, removed integrations, and the queue gauges.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harena_exporter::notify::outbox::{self, Deliver, Outbox, OutboxOptions};
use harena_exporter::notify::{LabelSet, Notification, NotifyAlert, SendError, now_ms};
use harena_exporter::state::State;

/// A fake integration: fails its first `failures` calls with `error`, sleeps `delay`
/// before answering, and records what it accepted and when it was called.
struct Fake {
    failures: usize,
    error: SendError,
    delay: Duration,
    calls: AtomicUsize,
    call_times: Mutex<Vec<Instant>>,
    accepted: Mutex<Vec<String>>,
}

impl Fake {
    fn new(failures: usize, error: SendError) -> Arc<Fake> {
        Arc::new(Fake {
            failures,
            error,
            delay: Duration::ZERO,
            calls: AtomicUsize::new(0),
            call_times: Mutex::new(Vec::new()),
            accepted: Mutex::new(Vec::new()),
        })
    }

    fn ok() -> Arc<Fake> {
        Fake::new(0, SendError::retry("refused", "unused"))
    }

    fn slow(delay: Duration) -> Arc<Fake> {
        Arc::new(Fake {
            delay,
            ..Arc::into_inner(Fake::ok()).unwrap()
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn accepted(&self) -> Vec<String> {
        self.accepted.lock().unwrap().clone()
    }
}

impl Deliver for Fake {
    fn send<'a>(
        &'a self,
        n: &'a Notification,
    ) -> Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>> {
        Box::pin(async move {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            self.call_times.lock().unwrap().push(Instant::now());
            tokio::time::sleep(self.delay).await;
            if call < self.failures {
                return Err(self.error.clone());
            }
            self.accepted.lock().unwrap().push(n.id.clone());
            Ok(())
        })
    }
}

fn notification(id: &str, receiver: &str, alertname: &str) -> Notification {
    let labels: LabelSet = [("alertname".to_string(), alertname.to_string())].into();
    Notification {
        id: id.into(),
        receiver: receiver.into(),
        group_key: "{}:{}".into(),
        group_labels: LabelSet::new(),
        alerts: vec![NotifyAlert {
            fingerprint: harena_exporter::notify::fingerprint(&labels),
            labels,
            annotations: LabelSet::new(),
            starts_at_ms: now_ms(),
            ends_at_ms: None,
            generator_url: String::new(),
            value: 1.0,
            reason: String::new(),
            detail: String::new(),
        }],
        external_url: String::new(),
        created_ms: now_ms(),
        report: None,
    }
}

fn quick() -> OutboxOptions {
    OutboxOptions {
        send_timeout: Duration::from_secs(30),
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_secs(2),
        jitter: 0.0,
        shutdown_grace: Duration::from_secs(2),
    }
}

fn queue(state: &State, key: &str, n: &Notification) -> i64 {
    state
        .with_conn(|c| outbox::insert(c, key, n))
        .expect("insert into the outbox")
}

fn integrations(pairs: &[(&str, &Arc<Fake>)]) -> BTreeMap<String, Arc<dyn Deliver>> {
    pairs
        .iter()
        .map(|(k, f)| (k.to_string(), Arc::clone(f) as Arc<dyn Deliver>))
        .collect()
}

fn render(o: &Outbox) -> String {
    let registry = prometheus::Registry::new();
    for c in o.collectors() {
        registry.register(c).expect("register");
    }
    let mut buf = Vec::new();
    prometheus::Encoder::encode(
        &prometheus::TextEncoder::new(),
        &registry.gather(),
        &mut buf,
    )
    .expect("encode");
    String::from_utf8(buf).expect("utf-8")
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

fn open(dir: &std::path::Path) -> Arc<State> {
    Arc::new(State::open(dir).expect("open the state file"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_with_backoff_then_delivers_once() {
    let dir = tempfile::tempdir().unwrap();
    let state = open(dir.path());
    let o = Outbox::new_with(Arc::clone(&state), quick());
    let fake = Fake::new(
        3,
        SendError::retry("timeout", "connect to 127.0.0.1:1: timed out"),
    );
    o.set_integrations(integrations(&[("team/webhook/0", &fake)]));
    queue(
        &state,
        "team/webhook/0",
        &notification("n1", "team", "Down"),
    );
    o.wake();

    assert!(
        eventually(Duration::from_secs(20), || fake.accepted() == ["n1"]).await,
        "delivered after 3 failures; calls {}",
        fake.calls()
    );
    assert!(eventually(Duration::from_secs(5), || o.pending().is_empty()).await);
    assert_eq!(fake.calls(), 4);
    // Backoff: 100 ms, 200 ms, 400 ms between the calls (no jitter here).
    let times = fake.call_times.lock().unwrap().clone();
    for (i, min_ms) in [(1, 90), (2, 180), (3, 360)] {
        let gap = times[i] - times[i - 1];
        assert!(
            gap >= Duration::from_millis(min_ms),
            "gap {i} {gap:?} < {min_ms} ms"
        );
    }
    let text = render(&o);
    assert_eq!(
        value(
            &text,
            r#"harena_notifications_total{receiver="team",result="timeout"}"#
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"harena_notifications_total{receiver="team",result="success"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        eventually(Duration::from_secs(5), || {
            value(&render(&o), "harena_notification_queue_length") == Some(0.0)
        })
        .await
    );
    let (code, problems) = common::promtool_check_metrics(&render(&o));
    assert_eq!(code, 0, "promtool check metrics: {problems}");
    // Nothing is sent twice, later either.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.accepted(), ["n1"]);
    o.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_recorded_on_the_row_and_a_hung_send_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let state = open(dir.path());
    let o = Outbox::new_with(
        Arc::clone(&state),
        OutboxOptions {
            send_timeout: Duration::from_millis(300),
            backoff_initial: Duration::from_secs(60),
            backoff_max: Duration::from_secs(600),
            ..quick()
        },
    );
    let hung = Fake::slow(Duration::from_secs(3600));
    o.set_integrations(integrations(&[("ops/email/0", &hung)]));
    let id = queue(
        &state,
        "ops/email/0",
        &notification("n1", "ops", "PostgresDown"),
    );
    o.wake();
    assert!(
        eventually(Duration::from_secs(10), || {
            o.pending().first().is_some_and(|p| p.attempts == 1)
        })
        .await
    );
    let p = &o.pending()[0];
    assert_eq!(p.id, id);
    assert_eq!(p.integration, "ops/email/0");
    assert_eq!(p.receiver, "ops");
    assert_eq!(p.alert_names, ["PostgresDown"]);
    assert_eq!(p.last_reason.as_deref(), Some("timeout"));
    assert!(
        p.last_error.as_deref().unwrap_or("").contains("300ms"),
        "{:?}",
        p.last_error
    );
    assert!(p.has_integration);
    let due_in = p.next_attempt_ms - now_ms();
    assert!(
        (50_000..=61_000).contains(&due_in),
        "next attempt in {due_in} ms"
    );
    let text = render(&o);
    assert_eq!(
        value(
            &text,
            r#"harena_notifications_total{receiver="ops",result="timeout"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(hung.calls(), 1);
    o.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_survive_a_restart_and_are_sent_in_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        let state = open(dir.path());
        let o = Outbox::new_with(Arc::clone(&state), quick());
        let down = Fake::new(
            usize::MAX,
            SendError::retry("refused", "connection refused"),
        );
        o.set_integrations(integrations(&[("team/email/0", &down)]));
        for i in 1..=3 {
            queue(
                &state,
                "team/email/0",
                &notification(&format!("n{i}"), "team", "Down"),
            );
        }
        o.wake();
        assert!(
            eventually(Duration::from_secs(10), || {
                o.pending().first().is_some_and(|p| p.attempts >= 2)
            })
            .await
        );
        o.shutdown().await;
        assert!(down.accepted().is_empty());
    }
    // The process is gone; a new one opens the same file.
    let state = open(dir.path());
    let o = Outbox::new_with(Arc::clone(&state), quick());
    let pending = o.pending();
    assert_eq!(pending.len(), 3);
    assert!(pending[0].attempts >= 2, "{pending:?}");
    assert!(!pending[0].has_integration);
    assert_eq!(
        value(&render(&o), "harena_notification_queue_length"),
        Some(3.0)
    );
    let up = Fake::ok();
    o.set_integrations(integrations(&[("team/email/0", &up)]));
    assert!(
        eventually(Duration::from_secs(10), || up.accepted().len() == 3).await,
        "sent after the restart: {:?}",
        up.accepted()
    );
    assert_eq!(up.accepted(), ["n1", "n2", "n3"]);
    assert!(eventually(Duration::from_secs(5), || o.pending().is_empty()).await);
    o.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_integration_does_not_delay_another() {
    let dir = tempfile::tempdir().unwrap();
    let state = open(dir.path());
    let o = Outbox::new_with(
        Arc::clone(&state),
        OutboxOptions {
            shutdown_grace: Duration::from_millis(200),
            ..quick()
        },
    );
    let hung = Fake::slow(Duration::from_secs(3600));
    let fine = Fake::ok();
    o.set_integrations(integrations(&[
        ("ops/email/0", &hung),
        ("ops/webhook/0", &fine),
    ]));
    // The hung one's send is in flight, for the same receiver: still independent.
    queue(&state, "ops/email/0", &notification("slow", "ops", "Down"));
    o.wake();
    assert!(eventually(Duration::from_secs(5), || hung.calls() == 1).await);
    queue(
        &state,
        "ops/webhook/0",
        &notification("fast", "ops", "Down"),
    );
    o.wake();
    let start = Instant::now();
    assert!(eventually(Duration::from_secs(5), || fine.accepted() == ["fast"]).await);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(hung.calls(), 1);
    assert!(hung.accepted().is_empty());
    assert!(eventually(Duration::from_secs(5), || o.pending().len() == 1).await);
    // Shutdown does not wait for the hung send past its grace; the row stays.
    let t = Instant::now();
    o.shutdown().await;
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let left: Vec<String> = Outbox::new_with(Arc::clone(&state), quick())
        .pending()
        .into_iter()
        .map(|p| p.integration)
        .collect();
    assert_eq!(left, ["ops/email/0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_error_drops_the_notification_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = open(dir.path());
    let o = Outbox::new_with(Arc::clone(&state), quick());
    let refusing = Fake::new(
        1,
        SendError::permanent("rejected", "POST to 127.0.0.1:1: status 400"),
    );
    o.set_integrations(integrations(&[("chat/webhook/0", &refusing)]));
    queue(
        &state,
        "chat/webhook/0",
        &notification("bad", "chat", "Down"),
    );
    queue(
        &state,
        "chat/webhook/0",
        &notification("good", "chat", "Down"),
    );
    o.wake();
    assert!(eventually(Duration::from_secs(10), || refusing.accepted() == ["good"]).await);
    assert_eq!(refusing.calls(), 2, "the refused one is not retried");
    assert!(eventually(Duration::from_secs(5), || o.pending().is_empty()).await);
    let text = render(&o);
    for (result, n) in [("rejected", 1.0), ("dropped", 1.0), ("success", 1.0)] {
        assert_eq!(
            value(
                &text,
                &format!(r#"harena_notifications_total{{receiver="chat",result="{result}"}}"#)
            ),
            Some(n),
            "{result}: {text}"
        );
    }
    o.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_integrations_rows_stay_pending_until_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let state = open(dir.path());
    let o = Outbox::new_with(Arc::clone(&state), quick());
    let first = Fake::ok();
    let other = Fake::ok();
    o.set_integrations(integrations(&[
        ("team/email/0", &first),
        ("team/webhook/0", &other),
    ]));
    // Reload without the email integration.
    o.set_integrations(integrations(&[("team/webhook/0", &other)]));
    queue(
        &state,
        "team/email/0",
        &notification("kept", "team", "Down"),
    );
    queue(
        &state,
        "team/webhook/0",
        &notification("sent", "team", "Down"),
    );
    o.wake();
    assert!(eventually(Duration::from_secs(5), || other.accepted() == ["sent"]).await);
    assert!(eventually(Duration::from_secs(5), || o.pending().len() == 1).await);
    let pending = o.pending();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].integration, "team/email/0");
    assert!(!pending[0].has_integration);
    assert_eq!(first.calls(), 0);
    // It comes back with the next reload.
    let back = Fake::ok();
    o.set_integrations(integrations(&[
        ("team/email/0", &back),
        ("team/webhook/0", &other),
    ]));
    assert!(eventually(Duration::from_secs(5), || back.accepted() == ["kept"]).await);
    assert_eq!(first.calls(), 0);
    assert!(eventually(Duration::from_secs(5), || o.pending().is_empty()).await);
    o.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wake_does_not_cut_a_backoff_short_but_starts_idle_workers() {
    let dir = tempfile::tempdir().unwrap();
    let state = open(dir.path());
    let o = Outbox::new_with(
        Arc::clone(&state),
        OutboxOptions {
            backoff_initial: Duration::from_millis(1500),
            ..quick()
        },
    );
    let failing_once = Fake::new(1, SendError::retry("refused", "connection refused"));
    let idle = Fake::ok();
    o.set_integrations(integrations(&[
        ("a/email/0", &failing_once),
        ("b/email/0", &idle),
    ]));
    queue(&state, "a/email/0", &notification("a1", "a", "Down"));
    o.wake();
    assert!(eventually(Duration::from_secs(5), || failing_once.calls() == 1).await);
    queue(&state, "a/email/0", &notification("a2", "a", "Down"));
    queue(&state, "b/email/0", &notification("b1", "b", "Down"));
    o.wake();
    assert!(eventually(Duration::from_secs(5), || idle.accepted() == ["b1"]).await);
    assert!(
        eventually(Duration::from_secs(10), || failing_once.accepted().len()
            == 2)
        .await
    );
    let times = failing_once.call_times.lock().unwrap().clone();
    // The failure was recorded after the first call started, so the retry cannot
    // come earlier than the backoff after that start.
    assert!(
        times[1] - times[0] >= Duration::from_millis(1450),
        "the retry came {:?} after the first attempt",
        times[1] - times[0]
    );
    assert_eq!(failing_once.accepted(), ["a1", "a2"]);
    o.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_gauges_count_rows_and_the_oldest_age_grows() {
    let dir = tempfile::tempdir().unwrap();
    let state = open(dir.path());
    let o = Outbox::new_with(Arc::clone(&state), quick());
    let text = render(&o);
    assert_eq!(value(&text, "harena_notification_queue_length"), Some(0.0));
    assert_eq!(
        value(&text, "harena_notification_oldest_pending_seconds"),
        Some(0.0)
    );
    // No integration: the rows wait.
    queue(&state, "gone/email/0", &notification("x", "gone", "Down"));
    queue(&state, "gone/email/0", &notification("y", "gone", "Down"));
    o.wake();
    assert!(
        eventually(Duration::from_secs(5), || {
            value(&render(&o), "harena_notification_queue_length") == Some(2.0)
        })
        .await
    );
    let first = value(&render(&o), "harena_notification_oldest_pending_seconds").unwrap();
    assert!(first < 5.0, "{first}");
    assert!(
        eventually(Duration::from_secs(5), || {
            value(&render(&o), "harena_notification_oldest_pending_seconds").unwrap() >= first + 1.0
        })
        .await,
        "the age grows at every scrape"
    );
    o.shutdown().await;
}
