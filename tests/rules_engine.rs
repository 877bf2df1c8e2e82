//! The rule engine over the real sample store and state file: alert lifecycle, recording
//! rules, templates, load errors, and alert states across a restart.
//!
//! Most tests drive evaluations at chosen timestamps with `RuleEngine::evaluate_once`
//! (loops off); one runs the real per-group loops in paused tokio time.

use std::sync::Arc;
use std::time::Duration;

use harena_exporter::model::{Labels, MetricDesc, Sample};
use harena_exporter::rules::group::{Clock, TokioClock, meta_owner};
use harena_exporter::rules::{Alert, AlertState, EngineOptions, Groups, RuleEngine};
use harena_exporter::state::State;
use harena_exporter::store::Store;
use tokio_util::sync::CancellationToken;

/// A minute-aligned wall time.
const T0: i64 = 1_700_000_040_000;
const MIN: i64 = 60_000;

fn groups(text: &str) -> Groups {
    Groups::from_sources(&[("test.yml", text)]).unwrap_or_else(|e| panic!("load rules:\n{e}"))
}

fn options(scheduled: bool) -> EngineOptions {
    EngineOptions {
        clock: Arc::new(TokioClock::starting_at(T0)),
        evaluate_on_schedule: scheduled,
        external_labels: [("env".to_string(), "prod".to_string())].into(),
        external_url: "http://harena.example:9811".to_string(),
        ..EngineOptions::default()
    }
}

fn engine(store: &Arc<Store>, state: State) -> RuleEngine {
    RuleEngine::new(
        Arc::clone(store),
        Arc::new(state),
        options(false),
        CancellationToken::new(),
    )
}

/// Publishes one input series as a check would (one owner per series).
fn publish(store: &Store, ts: i64, name: &'static str, labels: &[(&str, &str)], value: f64) {
    let labels = Labels::from_pairs(labels.iter().copied());
    let owner = format!("input/{name}{labels}");
    store.publish(
        &owner,
        ts,
        vec![Sample {
            desc: Arc::new(MetricDesc::gauge(name, "test input")),
            labels,
            value,
        }],
    );
}

fn alert<'a>(alerts: &'a [Alert], name: &str) -> &'a Alert {
    alerts
        .iter()
        .find(|a| a.labels.get("alertname") == Some(name))
        .unwrap_or_else(|| panic!("no {name} alert in {alerts:#?}"))
}

fn has_alert(alerts: &[Alert], name: &str) -> bool {
    alerts
        .iter()
        .any(|a| a.labels.get("alertname") == Some(name))
}

/// Current `ALERTS` series as (alertname, alertstate).
fn alerts_series(store: &Store) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = store
        .current()
        .into_iter()
        .filter(|s| &*s.key.name == "ALERTS")
        .map(|s| {
            let get = |k: &str| s.key.labels.get(k).unwrap_or("").to_string();
            (get("alertname"), get("alertstate"))
        })
        .collect();
    v.sort();
    v
}

const LIFECYCLE: &str = r#"
groups:
  - name: lifecycle
    interval: 1m
    rules:
      - record: job:errors:max
        expr: max by (job) (errors)
      - alert: Errors
        # Reads the series the rule above recorded in the same evaluation.
        expr: job:errors:max > 0
        for: 2m
        labels:
          severity: page
        annotations:
          summary: '{{ $labels.job }} has {{ $value }} errors'
      - alert: Sticky
        expr: errors > 5
        keep_firing_for: 3m
"#;

#[tokio::test]
async fn lifecycle_pending_firing_resolved_and_keep_firing_for() {
    let store = Arc::new(Store::new(0));
    let mut engine = engine(&store, State::in_memory().expect("state"));
    engine.apply(&groups(LIFECYCLE)).await;
    let errors = [1.0, 10.0, 10.0, 0.0, 0.0, 0.0, 0.0];
    let mut seen = Vec::new();
    for (i, v) in errors.iter().enumerate() {
        let ts = T0 + i as i64 * MIN;
        publish(
            &store,
            ts,
            "errors",
            &[("job", "api"), ("instance", "a")],
            *v,
        );
        engine.evaluate_once(ts).await;
        seen.push((engine.active_alerts(), alerts_series(&store)));
    }
    // T0: the recording rule's result is in the store (and on /metrics) and the alert on
    // it is pending.
    let job = Labels::from_pairs([("job", "api")]);
    assert_eq!(store.get("job:errors:max", &job), Some(0.0), "last value");
    let (alerts, series) = &seen[0];
    let e = alert(alerts, "Errors");
    assert_eq!(
        (e.state, e.active_at_ms, e.fired_at_ms),
        (AlertState::Pending, T0, None)
    );
    assert_eq!(e.annotations.get("summary"), Some("api has 1 errors"));
    assert_eq!(e.labels.get("severity"), Some("page"));
    assert_eq!(e.group, "lifecycle");
    assert_eq!(series, &[("Errors".to_string(), "pending".to_string())]);
    // +1m: still pending (for 2m); Sticky fires at once (no for) and the value is updated.
    let (alerts, _) = &seen[1];
    assert_eq!(alert(alerts, "Errors").state, AlertState::Pending);
    assert_eq!(
        alert(alerts, "Errors").annotations.get("summary"),
        Some("api has 10 errors")
    );
    let s = alert(alerts, "Sticky");
    assert_eq!(
        (s.state, s.fired_at_ms),
        (AlertState::Firing, Some(T0 + MIN))
    );
    // +2m: Errors fires, activeAt unchanged.
    let (alerts, series) = &seen[2];
    let e = alert(alerts, "Errors");
    assert_eq!(
        (e.state, e.active_at_ms, e.fired_at_ms),
        (AlertState::Firing, T0, Some(T0 + 2 * MIN))
    );
    assert!(series.contains(&("Errors".to_string(), "firing".to_string())));
    // +3m: Errors resolves (kept for the notifier, off ALERTS); Sticky keeps firing.
    let (alerts, series) = &seen[3];
    let e = alert(alerts, "Errors");
    assert_eq!(
        (e.state, e.resolved_at_ms),
        (AlertState::Inactive, Some(T0 + 3 * MIN))
    );
    let s = alert(alerts, "Sticky");
    assert_eq!(
        (s.state, s.keep_firing_since_ms),
        (AlertState::Firing, Some(T0 + 3 * MIN))
    );
    assert_eq!(series, &[("Sticky".to_string(), "firing".to_string())]);
    // +5m: kept firing 2m < 3m; +6m: resolved.
    assert_eq!(alert(&seen[5].0, "Sticky").state, AlertState::Firing);
    let s = alert(&seen[6].0, "Sticky");
    assert_eq!(
        (s.state, s.resolved_at_ms),
        (AlertState::Inactive, Some(T0 + 6 * MIN))
    );
    assert!(
        seen[6].1.is_empty(),
        "no ALERTS series left: {:?}",
        seen[6].1
    );
    // The group's own metrics.
    let group = Labels::from_pairs([("group", "lifecycle")]);
    assert_eq!(
        store.get(
            "harena_rule_group_last_evaluation_timestamp_seconds",
            &group
        ),
        Some((T0 + 6 * MIN) as f64 / 1000.0)
    );
    assert_eq!(
        store.get("harena_rule_evaluation_failures_total", &group),
        Some(0.0)
    );
    assert!(
        store
            .get("harena_rule_evaluation_duration_seconds", &group)
            .is_some()
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn the_store_keeps_the_history_rules_read_and_failures_are_counted() {
    let store = Arc::new(Store::new(0));
    let mut engine = engine(&store, State::in_memory().expect("state"));
    let rules = r#"
groups:
  - name: history
    rules:
      - alert: SeenInTenMinutes
        expr: max_over_time(spike[10m]) == 1
"#;
    engine.apply(&groups(rules)).await;
    for i in 0..10 {
        let ts = T0 + i * MIN;
        publish(&store, ts, "spike", &[], if i == 0 { 1.0 } else { 0.0 });
        engine.evaluate_once(ts).await;
    }
    // The spike at T0 is still read at T0+9m: the store kept 10 minutes (plus lookback).
    assert_eq!(
        alert(&engine.active_alerts(), "SeenInTenMinutes").state,
        AlertState::Firing
    );
    engine.shutdown().await;

    let mut engine = engine_with_store(&store);
    let failing = r#"
groups:
  - name: failing
    rules:
      - record: many_to_many
        expr: join_a + on(k) join_b
      - record: after
        expr: vector(4)
"#;
    // A rule that fails (many-to-many matching) counts a failure at each evaluation and
    // does not stop the rules after it.
    engine.apply(&groups(failing)).await;
    publish(&store, T0 + 20 * MIN, "join_a", &[("k", "1")], 1.0);
    publish(
        &store,
        T0 + 20 * MIN,
        "join_b",
        &[("k", "1"), ("b", "1")],
        1.0,
    );
    publish(
        &store,
        T0 + 20 * MIN,
        "join_b",
        &[("k", "1"), ("b", "2")],
        1.0,
    );
    engine.evaluate_once(T0 + 20 * MIN).await;
    engine.evaluate_once(T0 + 21 * MIN).await;
    let group = Labels::from_pairs([("group", "failing")]);
    assert_eq!(
        store.get("harena_rule_evaluation_failures_total", &group),
        Some(2.0)
    );
    assert_eq!(store.get("after", &Labels::new()), Some(4.0));
    engine.shutdown().await;
}

fn engine_with_store(store: &Arc<Store>) -> RuleEngine {
    engine(store, State::in_memory().expect("state"))
}

#[tokio::test]
async fn templates_use_every_helper() {
    let store = Arc::new(Store::new(0));
    let mut engine = engine(&store, State::in_memory().expect("state"));
    let rules = r#"
groups:
  - name: templates
    rules:
      - alert: Templated
        expr: bytes_used
        labels:
          size_class: '{{ if ge $value 1024.0 }}big{{ else }}small{{ end }}'
          upper: '{{ $labels.volume | toUpper }}'
        annotations:
          value: '{{ $value }} {{ .Value }}'
          humanize: '{{ humanize $value }} {{ $value | humanize1024 }}'
          duration: '{{ humanizeDuration 3725 }} {{ humanizeDuration 0.5 }}'
          percentage: '{{ humanizePercentage 0.256 }}'
          timestamp: '{{ humanizeTimestamp 86400.5 }}'
          printf: '{{ printf "%5.1f|%-3s|%d|%v|%.2e" $value "a" 7 true 12345.678 }}'
          strings: '{{ title "hello world" }} {{ toLower "ABC" }} {{ reReplaceAll "(.+)-(.+)" "$2" $labels.volume }}'
          external: '{{ $externalLabels.env }} {{ $externalURL }}'
          range: '{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}'
          logic: '{{ if and (ne $labels.volume "x") (lt $value 4096.0) (le 1 1) (gt 2 1) }}and{{ end }} {{ if or (eq 1 2) (not false) }}or{{ end }}'
          with: '{{ with $labels.volume }}v={{ . }}{{ else }}none{{ end }} {{ with $labels.nope }}x{{ else }}none{{ end }}'
          error: '{{ humanize "abc" }}'
"#;
    engine.apply(&groups(rules)).await;
    publish(&store, T0, "bytes_used", &[("volume", "data-eu")], 2048.0);
    engine.evaluate_once(T0).await;
    let alerts = engine.active_alerts();
    let a = alert(&alerts, "Templated");
    let ann = |k: &str| a.annotations.get(k).unwrap_or("<missing>").to_string();
    assert_eq!(a.labels.get("size_class"), Some("big"));
    assert_eq!(a.labels.get("upper"), Some("DATA-EU"));
    assert_eq!(ann("value"), "2048 2048");
    assert_eq!(ann("humanize"), "2.048k 2ki");
    assert_eq!(ann("duration"), "1h 2m 5s 500ms");
    assert_eq!(ann("percentage"), "25.6%");
    assert_eq!(ann("timestamp"), "1970-01-02 00:00:00.5 +0000 UTC");
    assert_eq!(ann("printf"), "2048.0|a  |7|true|1.23e+04");
    assert_eq!(ann("strings"), "Hello World abc eu");
    assert_eq!(ann("external"), "prod http://harena.example:9811");
    assert_eq!(ann("range"), "__name__=bytes_used;volume=data-eu;");
    assert_eq!(ann("logic"), "and or");
    assert_eq!(ann("with"), "v=data-eu none");
    assert!(
        ann("error").starts_with(
            "<error expanding template: error executing template __alert_Templated: \
             template: __alert_Templated:1:"
        ) && ann("error").contains(
            "error calling humanize: strconv.ParseFloat: parsing \"abc\": invalid syntax"
        ),
        "{}",
        ann("error")
    );
    engine.shutdown().await;
}

#[test]
fn load_errors_are_all_reported_with_positions() {
    let text = r#"groups:
  - name: broken
    rules:
      - alert: Unsupported
        expr: histogram_count(http_duration_seconds)
      - alert: BadTemplate
        expr: up == 0
        annotations:
          summary: '{{ $labels.instance'
      - record: misplaced
        expr: up
        interval: 1m
"#;
    let err = Groups::from_sources(&[("broken.yml", text)]).expect_err("three errors");
    let lines: Vec<String> = err.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_eq!(lines.len(), 3, "{}", lines.join("\n"));
    assert!(
        lines[0].starts_with("broken.yml:5:15: groups[0].rules[0].expr: group \"broken\", rule 1, \"Unsupported\": unsupported PromQL construct: function histogram_count"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("broken.yml:9:20: groups[0].rules[1].annotations.summary: group \"broken\", rule 2, \"BadTemplate\": annotation \"summary\": template: __alert_BadTemplate:1: unclosed action"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with(
            "broken.yml:12:9: groups[0].rules[2].interval: unknown field \"interval\""
        ),
        "{}",
        lines[2]
    );
    // A YAML syntax error in another file is reported beside them, with its position.
    let err = Groups::from_sources(&[("broken.yml", text), ("syntax.yml", "groups: [\n")])
        .expect_err("errors");
    assert_eq!(err.diagnostics.len(), 4);
    let last = &err.diagnostics[3];
    assert_eq!((last.file.as_str(), last.line), ("syntax.yml", 2), "{last}");
    // `query` in a template is refused at load, with a clear reason.
    let err = Groups::from_sources(&[(
        "q.yml",
        "groups:\n- name: q\n  rules:\n  - alert: Q\n    expr: up\n    annotations: {a: '{{ query \"up\" }}'}\n",
    )])
    .expect_err("query refused");
    assert!(
        err.to_string()
            .contains("function \"query\" is not supported by harena-exporter"),
        "{err}"
    );
}

const RESTART: &str = r#"
groups:
  - name: restart
    interval: 1m
    rules:
      - alert: Firing
        expr: disk_full == 1
        for: 1m
      - alert: Pending
        expr: disk_full == 1
        for: 10m
"#;

#[tokio::test]
async fn alert_states_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    // First life: Firing fires at +1m, Pending is pending since T0.
    {
        let store = Arc::new(Store::new(0));
        let mut engine = engine(&store, State::open(dir.path()).expect("open state"));
        engine.apply(&groups(RESTART)).await;
        for i in 0..3 {
            let ts = T0 + i * MIN;
            publish(&store, ts, "disk_full", &[("mount", "/")], 1.0);
            engine.evaluate_once(ts).await;
        }
        let alerts = engine.active_alerts();
        let f = alert(&alerts, "Firing");
        assert_eq!(
            (f.state, f.fired_at_ms),
            (AlertState::Firing, Some(T0 + MIN))
        );
        assert_eq!(alert(&alerts, "Pending").state, AlertState::Pending);
        engine.shutdown().await;
    }
    // Everything is dropped; the second life opens the same state file 2 minutes later.
    let store = Arc::new(Store::new(0));
    let mut engine = engine(&store, State::open(dir.path()).expect("reopen state"));
    engine.apply(&groups(RESTART)).await;
    // Restored before any evaluation: the notifier sees no gap.
    let alerts = engine.active_alerts();
    let f = alert(&alerts, "Firing");
    assert_eq!(
        (f.state, f.active_at_ms, f.fired_at_ms),
        (AlertState::Firing, T0, Some(T0 + MIN))
    );
    let mut fired_at = None;
    for i in 4..=12 {
        let ts = T0 + i * MIN;
        publish(&store, ts, "disk_full", &[("mount", "/")], 1.0);
        engine.evaluate_once(ts).await;
        let alerts = engine.active_alerts();
        // Still firing with its original activeAt and firedAt: not a new firing.
        let f = alert(&alerts, "Firing");
        assert_eq!(
            (f.state, f.active_at_ms, f.fired_at_ms),
            (AlertState::Firing, T0, Some(T0 + MIN)),
            "at +{i}m"
        );
        let p = alert(&alerts, "Pending");
        assert_eq!(p.active_at_ms, T0, "Pending keeps its activeAt at +{i}m");
        if p.state == AlertState::Firing && fired_at.is_none() {
            fired_at = p.fired_at_ms;
        }
    }
    // `for: 10m` counted from the original activeAt: fires at T0+10m, within one interval.
    let fired_at = fired_at.expect("Pending fired after the restart");
    assert!(
        (T0 + 10 * MIN..=T0 + 11 * MIN).contains(&fired_at),
        "fired at +{}ms",
        fired_at - T0
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn a_pending_alert_starts_over_after_a_long_outage() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Arc::new(Store::new(0));
        let mut engine = engine(&store, State::open(dir.path()).expect("open state"));
        engine.apply(&groups(RESTART)).await;
        for i in 0..2 {
            publish(&store, T0 + i * MIN, "disk_full", &[], 1.0);
            engine.evaluate_once(T0 + i * MIN).await;
        }
        engine.shutdown().await;
    }
    // Saved at clock time ~T0; the new engine's clock says 2 hours later.
    let store = Arc::new(Store::new(0));
    let later = EngineOptions {
        clock: Arc::new(TokioClock::starting_at(T0 + 120 * MIN)),
        evaluate_on_schedule: false,
        ..EngineOptions::default()
    };
    let mut engine = RuleEngine::new(
        Arc::clone(&store),
        Arc::new(State::open(dir.path()).expect("reopen")),
        later,
        CancellationToken::new(),
    );
    engine.apply(&groups(RESTART)).await;
    let alerts = engine.active_alerts();
    assert!(
        !has_alert(&alerts, "Pending"),
        "pending dropped: {alerts:#?}"
    );
    // A firing alert is restored whatever the outage: it was sent as firing, and a
    // second "firing" would be noise (if it no longer holds, it resolves).
    let f = alert(&alerts, "Firing");
    assert_eq!((f.state, f.active_at_ms), (AlertState::Firing, T0));
    engine.shutdown().await;
}

#[tokio::test]
async fn a_reload_keeps_alerts_and_retires_removed_groups() {
    let store = Arc::new(Store::new(0));
    let mut engine = engine(&store, State::in_memory().expect("state"));
    engine.apply(&groups(LIFECYCLE)).await;
    publish(&store, T0, "errors", &[("job", "api")], 1.0);
    engine.evaluate_once(T0).await;
    // Same rules again, with a new group: Errors keeps its activeAt.
    let more = format!(
        "{LIFECYCLE}\n  - name: extra\n    rules:\n      - record: one\n        expr: vector(1)\n"
    );
    engine.apply(&groups(&more)).await;
    publish(&store, T0 + MIN, "errors", &[("job", "api")], 1.0);
    engine.evaluate_once(T0 + MIN).await;
    assert_eq!(alert(&engine.active_alerts(), "Errors").active_at_ms, T0);
    assert_eq!(store.get("one", &Labels::new()), Some(1.0));
    // The extra group goes away: its series leave /metrics.
    engine.apply(&groups(LIFECYCLE)).await;
    assert_eq!(store.get("one", &Labels::new()), None);
    let group = Labels::from_pairs([("group", "extra")]);
    assert_eq!(
        store.get(
            "harena_rule_group_last_evaluation_timestamp_seconds",
            &group
        ),
        None,
        "{} removed",
        meta_owner("extra")
    );
    engine.shutdown().await;
}

// Real time (the crate does not enable tokio's `test-util` for paused time): a 1-second
// interval, 2.5 seconds of waiting.
#[tokio::test]
async fn groups_evaluate_on_their_interval() {
    let store = Arc::new(Store::new(0));
    let clock = Arc::new(TokioClock::starting_at(T0));
    let opts = EngineOptions {
        clock: Arc::clone(&clock) as Arc<dyn Clock>,
        ..EngineOptions::default()
    };
    let mut engine = RuleEngine::new(
        Arc::clone(&store),
        Arc::new(State::in_memory().expect("state")),
        opts,
        CancellationToken::new(),
    );
    let rules =
        "groups:\n- name: fast\n  interval: 1s\n  rules:\n  - alert: Always\n    expr: vector(1)\n";
    engine.apply(&groups(rules)).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let alerts = engine.active_alerts();
    assert_eq!(alert(&alerts, "Always").state, AlertState::Firing);
    let group = Labels::from_pairs([("group", "fast")]);
    let last = store
        .get(
            "harena_rule_group_last_evaluation_timestamp_seconds",
            &group,
        )
        .expect("evaluated");
    // Evaluations land on the group's 1-second slots.
    let last_ms = (last * 1000.0).round() as i64;
    assert!(last_ms > T0 && last_ms <= clock.now_ms(), "{last_ms}");
    let offset = harena_exporter::scheduler::jitter("fast", Duration::from_secs(1));
    let offset = i64::try_from(offset.as_millis()).expect("small");
    assert_eq!(
        (last_ms - offset).rem_euclid(1_000),
        0,
        "on a slot: {last_ms}"
    );
    engine.shutdown().await;
}
