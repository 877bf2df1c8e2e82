//! PromQL evaluator: the tricky parts of Prometheus 2.42's semantics, the test-script
//! runner (including a case that must fail), and the refusal of unsupported constructs.

use std::sync::Arc;

use harena_exporter::model::{Labels, MetricDesc, Sample as StoreSample};
use harena_exporter::rules::promql::{self, EvalError, PromqlError, Value};
use harena_exporter::rules::promqltest;
use harena_exporter::rules::storage::MemStorage;
use harena_exporter::store::{STALE_NAN_BITS, Store};

const STALE: f64 = f64::from_bits(STALE_NAN_BITS);

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

/// `name{labels}` with one sample every `step_s` seconds from 0; `None` is a gap.
fn series(
    s: &mut MemStorage,
    name: &str,
    pairs: &[(&str, &str)],
    step_s: i64,
    values: &[Option<f64>],
) {
    let l = labels(pairs).with("__name__", name);
    let samples = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (i as i64 * step_s * 1000, v)));
    s.add(l, samples);
}

fn ramp(start: f64, step: f64, n: usize) -> Vec<Option<f64>> {
    (0..=n).map(|i| Some(start + step * i as f64)).collect()
}

fn eval(s: &MemStorage, expr: &str, at_s: f64) -> Result<Value, EvalError> {
    let q = promql::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    promql::eval_instant(&q, (at_s * 1000.0) as i64, s)
}

/// The vector result as sorted `(labels as text, value)` pairs.
fn vector(s: &MemStorage, expr: &str, at_s: f64) -> Vec<(String, f64)> {
    match eval(s, expr, at_s) {
        Ok(Value::Vector(v)) => {
            let mut out: Vec<(String, f64)> = v
                .into_iter()
                .map(|x| (x.labels.to_string(), x.value))
                .collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out
        }
        other => panic!("{expr}: expected a vector, got {other:?}"),
    }
}

/// `(expression, evaluation time in seconds, expected (labels, value) elements)`.
type Case<'a> = (&'a str, f64, &'a [(&'a str, f64)]);

fn close(a: f64, b: f64) -> bool {
    promqltest::almost_equal(a, b)
}

fn assert_vector(s: &MemStorage, expr: &str, at_s: f64, want: &[(&str, f64)]) {
    let got = vector(s, expr, at_s);
    let mut want: Vec<(String, f64)> = want.iter().map(|(l, v)| (l.to_string(), *v)).collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    let same = got.len() == want.len()
        && got
            .iter()
            .zip(&want)
            .all(|(g, w)| g.0 == w.0 && close(g.1, w.1));
    assert!(same, "{expr} at {at_s}s:\n got {got:?}\nwant {want:?}");
}

#[test]
fn staleness_and_lookback() {
    let mut s = MemStorage::new();
    series(
        &mut s,
        "m",
        &[],
        10,
        &[Some(0.0), Some(1.0), Some(STALE), Some(2.0)],
    );
    series(&mut s, "single", &[], 10, &[Some(7.0)]);
    let cases: &[Case] = &[
        ("m", 10.0, &[(r#"{__name__="m"}"#, 1.0)]),
        // A staleness marker ends the series at once.
        ("m", 20.0, &[]),
        ("m", 25.0, &[]),
        ("m", 30.0, &[(r#"{__name__="m"}"#, 2.0)]),
        // Five minutes of lookback, both ends included.
        ("m", 330.0, &[(r#"{__name__="m"}"#, 2.0)]),
        ("m", 331.0, &[]),
        ("single", 300.0, &[(r#"{__name__="single"}"#, 7.0)]),
        ("single", 300.001, &[]),
        // Range selectors skip the marker; their window is closed at both ends.
        ("count_over_time(m[1m])", 30.0, &[("{}", 3.0)]),
        ("count_over_time(m[10s])", 20.0, &[("{}", 1.0)]),
        ("count_over_time(m[1s])", 20.0, &[]),
    ];
    for (expr, at, want) in cases {
        assert_vector(&s, expr, *at, want);
    }
}

#[test]
fn offset_and_at_modifier() {
    let mut s = MemStorage::new();
    series(&mut s, "x", &[("job", "a")], 10, &ramp(0.0, 1.0, 1000));
    let cases: &[(&str, f64, f64)] = &[
        ("x", 100.0, 10.0),
        ("x offset 20s", 100.0, 8.0),
        // A negative offset looks ahead.
        ("x offset -20s", 100.0, 12.0),
        ("x @ 50", 100.0, 5.0),
        ("x @ 50 offset 20s", 100.0, 3.0),
        // In an instant query start() and end() are the evaluation time.
        ("x @ start()", 100.0, 10.0),
        ("x @ end()", 100.0, 10.0),
        ("sum_over_time(x[30s] @ 50)", 100.0, 14.0),
        // timestamp() of a selector reports the sample's own time.
        ("timestamp(x @ 57)", 100.0, 50.0),
        ("timestamp(x)", 105.0, 100.0),
        // …and of anything else the evaluation time.
        ("timestamp(-x)", 105.0, 105.0),
    ];
    for (expr, at, want) in cases {
        let got = vector(&s, expr, *at);
        assert_eq!(got.len(), 1, "{expr}: {got:?}");
        assert!(close(got[0].1, *want), "{expr}: got {got:?}, want {want}");
    }
}

#[test]
fn subquery_steps_are_aligned_to_the_step() {
    let mut s = MemStorage::new();
    series(&mut s, "metric1", &[], 10, &ramp(0.0, 1.0, 1000));
    let cases: &[(&str, f64, f64)] = &[
        // Steps at 980, 990, 1000: aligned to multiples of 10s.
        ("sum_over_time(metric1[30s:10s])", 1000.0, 394.0),
        ("sum_over_time(metric1[30s:10s] offset 10s)", 1010.0, 394.0),
        // Offsets of 3s…9s all land on the same aligned steps.
        ("sum_over_time(metric1[30s:10s] offset 3s)", 1010.0, 297.0),
        ("sum_over_time(metric1[30s:10s] offset 9s)", 1010.0, 297.0),
        ("sum_over_time(metric1[30s:5s])", 1000.0, 688.0),
        // Nested subqueries.
        (
            "rate(sum_over_time(metric1[30s:10s])[50s:10s])",
            1000.0,
            0.4,
        ),
        // A subquery with @ evaluates its steps relative to that time.
        ("sum_over_time(metric1[20s:10s] @ 200)", 100.0, 57.0),
    ];
    for (expr, at, want) in cases {
        let got = vector(&s, expr, *at);
        assert_eq!(got.len(), 1, "{expr}: {got:?}");
        assert!(close(got[0].1, *want), "{expr}: got {got:?}, want {want}");
    }
}

#[test]
fn vector_matching_and_its_errors() {
    let mut s = MemStorage::new();
    let five = |v: f64| vec![Some(v), Some(v)];
    series(
        &mut s,
        "node_cpu",
        &[("instance", "abc"), ("mode", "idle")],
        300,
        &five(3.0),
    );
    series(
        &mut s,
        "node_cpu",
        &[("instance", "abc"), ("mode", "user")],
        300,
        &five(1.0),
    );
    series(
        &mut s,
        "node_role",
        &[("instance", "abc"), ("role", "prometheus")],
        300,
        &five(1.0),
    );
    series(&mut s, "threshold", &[("instance", "abc")], 300, &five(2.0));
    assert_vector(
        &s,
        "node_cpu * on(instance) group_left(role) node_role",
        300.0,
        &[
            (r#"{instance="abc",mode="idle",role="prometheus"}"#, 3.0),
            (r#"{instance="abc",mode="user",role="prometheus"}"#, 1.0),
        ],
    );
    // A filtering comparison keeps the metric name; `bool` drops it.
    assert_vector(
        &s,
        "node_cpu > on(instance) group_left threshold",
        300.0,
        &[(r#"{__name__="node_cpu",instance="abc",mode="idle"}"#, 3.0)],
    );
    assert_vector(
        &s,
        "node_cpu > bool on(instance) group_left threshold",
        300.0,
        &[
            (r#"{instance="abc",mode="idle"}"#, 1.0),
            (r#"{instance="abc",mode="user"}"#, 0.0),
        ],
    );
    let errors: &[(&str, &str)] = &[
        // Two series on the "one" side of the match group.
        (
            "node_cpu * on(instance) group_right node_role",
            "many-to-many matching not allowed",
        ),
        // One-to-one matching that is really many-to-one.
        (
            "node_cpu * on(instance) node_role",
            "many-to-one matching must be explicit",
        ),
        // group_left whose result labels are not unique.
        (
            "node_cpu * on(instance) group_left node_cpu",
            "many-to-many matching not allowed",
        ),
    ];
    for (expr, want) in errors {
        let err = eval(&s, expr, 300.0).expect_err(expr);
        assert!(err.to_string().contains(want), "{expr}: {err}");
    }
    let mut dup = MemStorage::new();
    series(&mut dup, "a", &[("x", "1")], 60, &five(1.0));
    series(&mut dup, "b", &[("x", "1")], 60, &five(2.0));
    for expr in [
        r#"-{__name__=~"a|b"}"#,
        r#"abs({__name__=~"a|b"})"#,
        r#"rate({__name__=~"a|b"}[5m])"#,
        r#"{__name__=~"a|b"} > bool 0"#,
    ] {
        let err = eval(&dup, expr, 60.0).expect_err(expr);
        assert!(err.to_string().contains("same labelset"), "{expr}: {err}");
    }
    // last_over_time and filtering comparisons keep the name: no collision.
    assert_eq!(
        vector(&dup, r#"last_over_time({__name__=~"a|b"}[5m])"#, 60.0).len(),
        2
    );
}

#[test]
fn rate_extrapolation() {
    let mut s = MemStorage::new();
    // Counters starting at 0, 1m, … worth of increase: sampled every 4 minutes.
    for (start, first) in [("0m", 0.0), ("1m", 60.0), ("5m", 300.0)] {
        series(
            &mut s,
            "c",
            &[("start", start)],
            240,
            &ramp(first, 240.0, 10),
        );
    }
    series(
        &mut s,
        "reset",
        &[],
        300,
        &[
            0.0, 10.0, 20.0, 30.0, 40.0, 0.0, 10.0, 20.0, 30.0, 40.0, 50.0,
        ]
        .map(Some),
    );
    series(
        &mut s,
        "gauge",
        &[],
        300,
        &[Some(0.0), Some(50.0), Some(100.0), Some(150.0), Some(200.0)],
    );
    let cases: &[Case] = &[
        // Extrapolation towards the start stops where the counter would reach zero.
        (
            "rate(c[20m])",
            600.0,
            &[
                (r#"{start="0m"}"#, 0.5),
                (r#"{start="1m"}"#, 0.55),
                (r#"{start="5m"}"#, 0.6),
            ],
        ),
        // Otherwise by half a sample interval at most.
        (
            "rate(c[20m])",
            3000.0,
            &[
                (r#"{start="0m"}"#, 0.6),
                (r#"{start="1m"}"#, 0.6),
                (r#"{start="5m"}"#, 0.6),
            ],
        ),
        // Counter resets are added back.
        ("rate(reset[50m])", 3000.0, &[("{}", 0.03)]),
        ("increase(reset[50m])", 3000.0, &[("{}", 90.0)]),
        ("irate(reset[50m])", 1500.0, &[("{}", 0.0)]),
        ("delta(gauge[20m])", 1200.0, &[("{}", 200.0)]),
        // Fewer than two samples: no rate.
        ("rate(gauge[1m])", 1200.0, &[]),
    ];
    for (expr, at, want) in cases {
        assert_vector(&s, expr, *at, want);
    }
}

#[test]
fn label_replace_regex_is_anchored() {
    let mut s = MemStorage::new();
    series(
        &mut s,
        "t",
        &[("src", "source-value-10"), ("dst", "orig")],
        60,
        &[Some(1.0)],
    );
    let cases: &[(&str, &str)] = &[
        // Full-string match.
        (
            r#"label_replace(t, "dst", "v-$1", "src", "source-value-(.*)")"#,
            r#"{__name__="t",dst="v-10",src="source-value-10"}"#,
        ),
        // No substring match: the label stays.
        (
            r#"label_replace(t, "dst", "v-$1", "src", "value-(.*)")"#,
            r#"{__name__="t",dst="orig",src="source-value-10"}"#,
        ),
        // An empty result removes the label.
        (
            r#"label_replace(t, "dst", "", "dst", ".*")"#,
            r#"{__name__="t",src="source-value-10"}"#,
        ),
        // A missing source label is the empty string, which `(.*)` matches.
        (
            r#"label_replace(t, "dst", "x$1", "nope", "(.*)")"#,
            r#"{__name__="t",dst="x",src="source-value-10"}"#,
        ),
        // `$1x` names group "1x", which does not exist: empty, as in Go.
        (
            r#"label_replace(t, "dst", "$1x", "src", "(.*)")"#,
            r#"{__name__="t",src="source-value-10"}"#,
        ),
        (
            r#"label_replace(t, "dst", "${1}x", "src", "source-(v).*")"#,
            r#"{__name__="t",dst="vx",src="source-value-10"}"#,
        ),
    ];
    for (expr, want) in cases {
        assert_vector(&s, expr, 0.0, &[(want, 1.0)]);
    }
    for bad in [
        r#"label_replace(t, "dst", "", "src", "(.*")"#,
        r#"label_replace(t, "bad-name", "", "src", "(.*)")"#,
    ] {
        assert!(eval(&s, bad, 0.0).is_err(), "{bad}");
    }
}

#[test]
fn scalars_strings_and_matrices() {
    let mut s = MemStorage::new();
    series(&mut s, "m", &[("a", "b")], 10, &ramp(1.0, 1.0, 3));
    assert_eq!(eval(&s, "1 + 2 * 3", 0.0), Ok(Value::Scalar(7.0)));
    assert_eq!(eval(&s, "time()", 30.0), Ok(Value::Scalar(30.0)));
    assert_eq!(
        eval(&s, r#""text""#, 0.0),
        Ok(Value::String("text".to_string()))
    );
    match eval(&s, "m[25s]", 30.0) {
        Ok(Value::Matrix(m)) => {
            assert_eq!(m.len(), 1);
            assert_eq!(
                m[0].samples,
                vec![(10_000, 2.0), (20_000, 3.0), (30_000, 4.0)]
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn evaluates_over_the_sample_store() {
    let store = Store::new(3_600_000);
    let desc = Arc::new(MetricDesc::counter("req_total", "requests"));
    for i in 0..=10i64 {
        store.publish(
            "web",
            i * 15_000,
            vec![StoreSample {
                desc: Arc::clone(&desc),
                labels: labels(&[("check", "web")]),
                value: (i * 30) as f64,
            }],
        );
    }
    let q = promql::parse("rate(req_total[1m])").expect("parses");
    match promql::eval_instant(&q, 150_000, &store) {
        Ok(Value::Vector(v)) => {
            assert_eq!(v.len(), 1);
            assert_eq!(v[0].labels, labels(&[("check", "web")]));
            assert!(close(v[0].value, 2.0), "{v:?}");
        }
        other => panic!("{other:?}"),
    }
    // The owner stops publishing the series: it goes stale at once.
    store.publish("web", 165_000, vec![]);
    let q = promql::parse(r#"req_total{check="web"}"#).expect("parses");
    assert_eq!(
        promql::eval_instant(&q, 170_000, &store),
        Ok(Value::Vector(vec![]))
    );
}

#[test]
fn lookback_needed_covers_ranges_offsets_and_subqueries() {
    let cases: &[(&str, i64)] = &[
        ("up", 5),
        ("rate(x[10m])", 15),
        ("rate(x[10m] offset 1h)", 75),
        ("max_over_time(rate(x[2m])[30m:1m])", 2 + 30 + 1 + 5),
        ("avg_over_time(x[1d]) + y offset -5m", 24 * 60 + 5),
    ];
    for (expr, minutes) in cases {
        let q = promql::parse(expr).expect("parses");
        assert_eq!(q.lookback_needed_ms(), minutes * 60_000, "{expr}");
    }
}

#[test]
fn unsupported_constructs_are_refused_by_name() {
    let cases: &[(&str, &str)] = &[
        ("histogram_count(rate(x[5m]))", "histogram_count"),
        ("sort_by_label(x, \"a\")", "sort_by_label"),
        ("limitk(2, x)", "limitk"),
        ("x * fill(1) y", "fill"),
        (
            "double_exponential_smoothing(x[5m], 0.5, 0.5)",
            "double_exponential_smoothing",
        ),
    ];
    for (expr, name) in cases {
        match promql::parse(expr) {
            Err(PromqlError::Unsupported(what)) => {
                assert!(what.contains(name), "{expr}: {what}");
                assert!(
                    PromqlError::Unsupported(what.clone())
                        .to_string()
                        .starts_with("unsupported: "),
                );
            }
            other => panic!("{expr}: expected unsupported, got {other:?}"),
        }
    }
    assert!(matches!(promql::parse("sum(x"), Err(PromqlError::Parse(_))));
}

const SCRIPT: &str = r#"
# A small script in Prometheus's format.
load 5m
	http_requests{job="api", instance="0"}	0+10x10
	http_requests{job="api", instance="1"}	0+20x10
	other 1 _ stale 4

eval instant at 50m sum by (job) (http_requests)
	{job="api"} 300

eval_ordered instant at 50m sort_desc(http_requests)
	http_requests{job="api", instance="1"} 200
	http_requests{job="api", instance="0"} 100

# Deliberately wrong: the runner must report it.
eval instant at 50m http_requests{instance="0"}
	http_requests{job="api", instance="0"} 999

eval instant at 50m scalar(sum(http_requests))
	300

eval instant at 10m other

eval_fail instant at 0m http_requests + on() http_requests

eval instant at 0m histogram_count(http_requests)
	{} 1

eval range from 0 to 10m step 5m http_requests
	http_requests{job="api", instance="0"} 0 50 100

clear

eval instant at 50m http_requests
"#;

#[test]
fn the_runner_counts_and_reports_failures() {
    let summary = promqltest::run_script("embedded.test", SCRIPT);
    assert_eq!(
        (summary.passed, summary.failed, summary.unsupported),
        (6, 1, 2),
        "{:#?}",
        summary.failures
    );
    assert_eq!(summary.closing_line(), "6 passed, 1 failed, 2 unsupported");
    let f = &summary.failures[0];
    assert_eq!(f.line, 16);
    assert_eq!(
        f.to_string(),
        r#"embedded.test:16: http_requests{instance="0"}: expected 999 for {__name__="http_requests",instance="0",job="api"} but got 100"#
    );
}

#[test]
fn the_runner_checks_order_only_when_asked() {
    let script = "load 1m\n  m{a=\"1\"} 1\n  m{a=\"2\"} 2\n\neval_ordered instant at 0m sort(m)\n  m{a=\"2\"} 2\n  m{a=\"1\"} 1\n\neval instant at 0m sort(m)\n  m{a=\"2\"} 2\n  m{a=\"1\"} 1\n";
    let summary = promqltest::run_script("order.test", script);
    assert_eq!((summary.passed, summary.failed), (1, 1));
    assert!(summary.failures[0].message.contains("position"));
}

#[test]
fn the_runner_reads_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("one.test");
    std::fs::write(&path, "eval instant at 0m 1 + 1\n  2\n").expect("write");
    let missing = dir.path().join("missing.test");
    let summary = promqltest::run_files(&[path, missing]);
    assert_eq!((summary.passed, summary.failed), (1, 1));
    assert_eq!(summary.files.len(), 2);
    assert!(summary.failures[0].message.starts_with("read script"));
}

#[test]
fn queries_and_storages_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<promql::Query>();
    send_sync::<Value>();
    send_sync::<EvalError>();
    send_sync::<MemStorage>();
    send_sync::<Store>();
}
