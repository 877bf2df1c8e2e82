//! Benchmark: one evaluation cycle of 1,000 alerting rules (one group, evaluated
//! sequentially as Prometheus does) over 20,000 series.
//!
//!   cargo bench --bench rules -- [--now-ms MS] [--minutes 60] [--ahead-minutes 10]
//!                                [--cycles 5] [--emit-openmetrics PATH]
//!                                [--emit-rules PATH] [--no-eval]
//!
//! Data: 200 metrics `bench_metric_N` x 100 instances `i-K` (label `job` = `job-{K % 5}`),
//! one sample every 15 s. `bench_metric_0..99` are counters, `bench_metric_100..199`
//! gauges; values follow a fixed formula, so every run sees the same data.
//! The first evaluation is at `--now-ms` (default: the wall clock, rounded down to the
//! second); the data starts `--minutes` before it and, in the OpenMetrics file only, goes
//! on `--ahead-minutes` after it, so that a Prometheus started a little later still
//! evaluates over full windows (`benches/rules.sh`).
//! The exporter side publishes the data into the `Store` step by step (not timed), then
//! times `RuleEngine::evaluate_once` for one warm-up and `--cycles` cycles, 15 s of data
//! apart, and prints the median.

use std::fmt::Write as _;
use std::io::{BufWriter, Write as _};
use std::sync::Arc;
use std::time::Instant;

use harena_exporter::model::{Labels, MetricDesc, MetricKind, Sample};
use harena_exporter::rules::{AlertState, EngineOptions, Groups, RuleEngine};
use harena_exporter::state::State;
use harena_exporter::store::Store;
use tokio_util::sync::CancellationToken;

const METRICS: usize = 200;
const COUNTERS: usize = 100;
const INSTANCES: usize = 100;
const JOBS: usize = 5;
const RULES: usize = 1000;
const STEP_MS: i64 = 15_000;

struct Args {
    now_ms: i64,
    minutes: i64,
    ahead_minutes: i64,
    cycles: usize,
    emit_openmetrics: Option<String>,
    emit_rules: Option<String>,
    eval: bool,
}

fn parse_args() -> Args {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    let mut a = Args {
        now_ms: wall / 1000 * 1000,
        minutes: 60,
        ahead_minutes: 10,
        cycles: 5,
        emit_openmetrics: None,
        emit_rules: None,
        eval: true,
    };
    // `cargo test --all-targets` runs this binary with no argument: a smoke run (ten
    // minutes of history, one cycle) that proves it works without taking half a minute.
    if std::env::args().len() == 1 {
        a.minutes = 10;
        a.ahead_minutes = 0;
        a.cycles = 1;
    }
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match arg.as_str() {
            "--now-ms" => a.now_ms = val("--now-ms").parse().expect("--now-ms: integer"),
            "--minutes" => a.minutes = val("--minutes").parse().expect("--minutes: integer"),
            "--ahead-minutes" => {
                a.ahead_minutes = val("--ahead-minutes")
                    .parse()
                    .expect("--ahead-minutes: integer")
            }
            "--cycles" => a.cycles = val("--cycles").parse().expect("--cycles: integer"),
            "--emit-openmetrics" => a.emit_openmetrics = Some(val("--emit-openmetrics")),
            "--emit-rules" => a.emit_rules = Some(val("--emit-rules")),
            "--no-eval" => a.eval = false,
            // `cargo bench` passes `--bench`; ignore it and any filter.
            _ => {}
        }
    }
    // Whole seconds: the OpenMetrics file carries second timestamps.
    a.now_ms = a.now_ms / 1000 * 1000;
    a
}

/// The value of series (`m`, `k`) at `ts_ms`. Counters grow by a per-series step every
/// 15 s (a rate between 1/30 and 23/30 per second); gauges follow a slow wave in [5, 95],
/// rounded to thousandths.
fn value(m: usize, k: usize, ts_ms: i64) -> f64 {
    let t = ts_ms / 1000;
    if m < COUNTERS {
        let per_step = ((m * 31 + k * 17) % 23 + 1) as f64 * 0.5;
        // Relative to a fixed epoch to keep values moderate.
        ((t - 1_600_000_000) / 15) as f64 * per_step
    } else {
        let phase = t as f64 / 600.0 + m as f64 * 0.37 + k as f64 * 0.11;
        ((50.0 + 45.0 * phase.sin()) * 1000.0).round() / 1000.0
    }
}

fn metric_name(m: usize) -> String {
    format!("bench_metric_{m}")
}

fn job(k: usize) -> String {
    format!("job-{}", k % JOBS)
}

/// The 1,000 alerting rules, one group, as YAML.
fn rules_yaml() -> String {
    let mut y = String::from("groups:\n  - name: bench\n    interval: 15s\n    rules:\n");
    for i in 0..RULES {
        let c = (i * 7) % COUNTERS; // a counter
        let g = COUNTERS + (i * 13) % (METRICS - COUNTERS); // a gauge
        let g2 = COUNTERS + (i * 13 + 41) % (METRICS - COUNTERS); // another gauge
        let k = i % INSTANCES;
        let expr = match i % 10 {
            0 => format!("rate(bench_metric_{c}[5m]) > 0.5"),
            1 => format!("avg_over_time(bench_metric_{g}[10m]) > 80"),
            2 => format!("sum by (job) (rate(bench_metric_{c}[5m])) > 8"),
            3 => format!("bench_metric_{g} / on(instance) bench_metric_{g2} > 1.5"),
            4 => format!("max_over_time(bench_metric_{g}[5m]) > 90"),
            5 if i % 20 == 5 => format!("absent(bench_missing_{i})"),
            5 => format!("absent(bench_metric_{g}{{instance=\"i-{k}\"}})"),
            6 => format!("increase(bench_metric_{c}[10m]) > 300"),
            7 => format!("count by (job) (bench_metric_{g} > 50) > 10"),
            8 => format!("bench_metric_{g} > 85 and on(instance) rate(bench_metric_{c}[5m]) > 0.3"),
            _ => format!("min_over_time(bench_metric_{g}[5m]) < 10"),
        };
        let hold = match i % 3 {
            0 => "0s",
            1 => "1m",
            _ => "5m",
        };
        let severity = if i % 4 == 0 { "critical" } else { "warning" };
        let _ = write!(
            y,
            "      - alert: BenchAlert{i}\n        expr: '{expr}'\n        for: {hold}\n        \
             labels:\n          severity: {severity}\n          team: team-{team}\n        \
             annotations:\n          summary: 'Rule {i} on {{{{ $labels.instance }}}} ({{{{ $labels.job }}}})'\n          \
             description: 'Value is {{{{ $value }}}}'\n",
            team = i % 7,
        );
    }
    y
}

/// Every series' labels (without `__name__`) and description, in (m, k) order.
fn series() -> Vec<(Arc<MetricDesc>, Vec<Labels>)> {
    (0..METRICS)
        .map(|m| {
            let desc = Arc::new(MetricDesc {
                name: metric_name(m).into(),
                help: "Benchmark series.".into(),
                kind: if m < COUNTERS {
                    MetricKind::Counter
                } else {
                    MetricKind::Gauge
                },
            });
            let labels = (0..INSTANCES)
                .map(|k| Labels::from_pairs([("instance", format!("i-{k}")), ("job", job(k))]))
                .collect();
            (desc, labels)
        })
        .collect()
}

fn emit_openmetrics(path: &str, first_ms: i64, last_ms: i64) -> std::io::Result<()> {
    let f = std::fs::File::create(path)?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    // Series by series, each in time order: families stay together and every series'
    // samples arrive in order, as promtool's backfill wants.
    for m in 0..METRICS {
        let name = metric_name(m);
        writeln!(w, "# TYPE {name} gauge")?;
        for k in 0..INSTANCES {
            let job = job(k);
            let mut ts = first_ms;
            while ts <= last_ms {
                writeln!(
                    w,
                    "{name}{{instance=\"i-{k}\",job=\"{job}\"}} {} {}",
                    value(m, k, ts),
                    ts / 1000
                )?;
                ts += STEP_MS;
            }
        }
    }
    writeln!(w, "# EOF")?;
    w.flush()
}

fn publish_step(store: &Store, all: &[(Arc<MetricDesc>, Vec<Labels>)], ts_ms: i64) {
    let mut samples = Vec::with_capacity(METRICS * INSTANCES);
    for (m, (desc, labels)) in all.iter().enumerate() {
        for (k, l) in labels.iter().enumerate() {
            samples.push(Sample {
                desc: Arc::clone(desc),
                labels: l.clone(),
                value: value(m, k, ts_ms),
            });
        }
    }
    store.publish("bench", ts_ms, samples);
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let args = parse_args();
    let first_ms = args.now_ms - args.minutes * 60_000;
    let yaml = rules_yaml();

    if let Some(p) = &args.emit_rules {
        std::fs::write(p, &yaml).expect("write rule file");
        eprintln!("wrote {RULES} rules to {p}");
    }
    if let Some(p) = &args.emit_openmetrics {
        let last = args.now_ms + args.ahead_minutes * 60_000;
        emit_openmetrics(p, first_ms, last).expect("write OpenMetrics file");
        eprintln!(
            "wrote {} series from {} to {} (s) to {p}",
            METRICS * INSTANCES,
            first_ms / 1000,
            last / 1000
        );
    }
    if !args.eval {
        return;
    }

    let groups = Groups::from_sources(&[("bench.yml", yaml.as_str())])
        .unwrap_or_else(|e| panic!("rule file does not load: {e:?}"));
    assert_eq!(groups.rule_count(), RULES);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let store = Arc::new(Store::new(0));
        let state = Arc::new(State::in_memory().expect("in-memory state"));
        let opts = EngineOptions {
            default_interval: std::time::Duration::from_secs(15),
            evaluate_on_schedule: false,
            ..EngineOptions::default()
        };
        let mut engine = RuleEngine::new(Arc::clone(&store), state, opts, CancellationToken::new());
        // Sets the store's retention to what the rules read, as the exporter does.
        engine.apply(&groups).await;

        let all = series();
        let load = Instant::now();
        let mut ts = first_ms;
        while ts <= args.now_ms {
            publish_step(&store, &all, ts);
            ts += STEP_MS;
        }
        eprintln!(
            "published {} series x {} min in {:.1} s",
            METRICS * INSTANCES,
            args.minutes,
            load.elapsed().as_secs_f64()
        );

        let mut times = Vec::with_capacity(args.cycles);
        let mut eval_ts = args.now_ms;
        for cycle in 0..=args.cycles {
            if cycle > 0 {
                // 15 s later: one more sample of every series (not timed).
                eval_ts += STEP_MS;
                publish_step(&store, &all, eval_ts);
            }
            let t = Instant::now();
            engine.evaluate_once(eval_ts).await;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            if cycle == 0 {
                eprintln!("warm-up cycle: {ms:.1} ms");
            } else {
                times.push(ms);
            }
        }
        let alerts = engine.active_alerts();
        let firing = alerts
            .iter()
            .filter(|a| a.state == AlertState::Firing)
            .count();
        eprintln!(
            "alerts after the last cycle: {} active ({firing} firing); store: {} series",
            alerts.len(),
            store.len()
        );
        let (min, max) = (
            times.iter().copied().fold(f64::INFINITY, f64::min),
            times.iter().copied().fold(0.0, f64::max),
        );
        let med = median(&mut times);
        println!(
            "harena-exporter: {med:.1} ms per cycle (median of {} cycles; min {min:.1}, max {max:.1}; {RULES} rules, {} series)",
            args.cycles,
            METRICS * INSTANCES
        );
        engine.shutdown().await;
    });
}
