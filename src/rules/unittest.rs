//! `harena-exporter test-rules FILE…`: promtool's rule unit-test format, run the way
//! `promtool test rules` (Prometheus 2.42) runs it, with its output and exit codes.
//!
//! For each test group: the input series (the PromQL test-script series notation,
//! `1+2x3`, `_`, `stale`, read by the same parser as `promql-test`) are loaded step by
//! step as time advances; the rule files are loaded; every rule group is evaluated at
//! every `evaluation_interval` from 0 to the largest `eval_time` of the group's tests, in
//! `group_eval_order`, alert states carried from one step to the next; after the step at
//! `t`, the alert tests with `t <= eval_time < t + evaluation_interval` compare the firing
//! alerts (labels and annotations) with `exp_alerts`. Then each `promql_expr_test` runs
//! its expression at its `eval_time` against what was loaded and recorded, and compares
//! the samples exactly (as promtool does). A rule that fails to evaluate ends the group
//! with `rule: …, time: …, err: …`.
//!
//! Output: `Unit Testing:  FILE` then `  SUCCESS`, or `  FAILED:` (on stderr) and each
//! problem; exit code 0 when every file passes, 1 otherwise (a file that does not load
//! or whose rules do not load fails).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::types::PromDuration;
use crate::config::yaml::{self, Context};
use crate::model::Labels;
use crate::rules::alerting::AlertState;
use crate::rules::files::{self, Groups};
use crate::rules::group::{EngineOptions, GroupRuntime, RuleBackend};
use crate::rules::promql::{self, EvalOptions, Value};
use crate::rules::promqltest;
use crate::rules::storage::{MemStorage, Storage};
use crate::rules::template::format_float;
use crate::store::STALE_NAN_BITS;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UnitFile {
    #[serde(default)]
    rule_files: Vec<String>,
    #[serde(default)]
    evaluation_interval: Option<PromDuration>,
    #[serde(default)]
    group_eval_order: Vec<String>,
    #[serde(default)]
    tests: Vec<TestGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestGroup {
    #[serde(default)]
    interval: Option<PromDuration>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
    #[serde(default)]
    promql_expr_test: Vec<PromqlTest>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    #[serde(default)]
    external_url: String,
    #[serde(default)]
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    #[serde(default)]
    series: String,
    #[serde(default)]
    values: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTest {
    #[serde(default)]
    eval_time: Option<PromDuration>,
    #[serde(default)]
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromqlTest {
    #[serde(default)]
    expr: String,
    #[serde(default)]
    eval_time: Option<PromDuration>,
    #[serde(default)]
    exp_samples: Vec<ExpSample>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpSample {
    #[serde(default)]
    labels: String,
    #[serde(default)]
    value: f64,
}

fn dur_ms(d: Option<PromDuration>) -> i64 {
    d.map_or(0, |d| i64::try_from(d.0.as_millis()).unwrap_or(i64::MAX))
}

/// Runs the unit-test files, printing as promtool does to `out` (results) and `err`
/// (failures); returns the exit code: 0 when all pass, 1 otherwise.
pub fn run_files<P: AsRef<Path>>(paths: &[P], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let mut failed = false;
    for p in paths {
        let p = p.as_ref();
        let _ = writeln!(out, "Unit Testing:  {}", p.display());
        let _ = out.flush();
        let errors = run_file(p);
        if errors.is_empty() {
            let _ = writeln!(out, "  SUCCESS");
        } else {
            let _ = writeln!(err, "  FAILED:");
            for e in &errors {
                let _ = writeln!(err, "{e}");
                let _ = err.flush();
                let _ = writeln!(out);
            }
            failed = true;
        }
        let _ = writeln!(out);
        let _ = out.flush();
    }
    i32::from(failed)
}

/// Runs one unit-test file; returns its problems (empty when it passes).
pub fn run_file(path: &Path) -> Vec<String> {
    let name = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return vec![format!("read {name}: {e}")],
    };
    let root = match yaml::parse(&name, &text) {
        Ok(r) => r,
        Err(d) => return vec![d.to_string()],
    };
    let mut cx = Context::new(name.as_str());
    let file = cx.deserialize::<UnitFile>(&root, "", &[]);
    if !cx.diagnostics.is_empty() {
        return cx.diagnostics.iter().map(|d| d.to_string()).collect();
    }
    let Some(file) = file else {
        return vec![format!("{name}: not a rule unit-test file")];
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let mut rule_files: Vec<PathBuf> = Vec::new();
    for pattern in &file.rule_files {
        let matched = files::glob(base, pattern);
        if matched.is_empty() {
            eprintln!(
                "  WARNING: no file match pattern {}",
                base.join(pattern).display()
            );
        }
        rule_files.extend(matched);
    }
    let eval_interval = match dur_ms(file.evaluation_interval) {
        0 => 60_000,
        ms => ms,
    };
    let mut order: HashMap<&str, usize> = HashMap::new();
    for (i, g) in file.group_eval_order.iter().enumerate() {
        if order.insert(g.as_str(), i).is_some() {
            return vec![format!("group name repeated in evaluation order: {g}")];
        }
    }
    let mut errors = Vec::new();
    let mut loaded: Option<Result<Groups, Vec<String>>> = None;
    for tg in &file.tests {
        // Rule files are loaded for each test group, as promtool does (a file with no
        // test group never loads them).
        let groups = loaded.get_or_insert_with(|| {
            Groups::load(&rule_files)
                .map_err(|e| e.diagnostics.iter().map(|d| d.to_string()).collect())
        });
        match groups {
            Err(e) => errors.extend(e.iter().cloned()),
            Ok(groups) => errors.extend(run_group(tg, groups, eval_interval, &order)),
        }
    }
    errors
}

/// Labels as Prometheus prints them: `{a="1", b="2"}`.
fn labels_string(l: &Labels) -> String {
    let parts: Vec<String> = l
        .iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Go's `strconv.Quote` (close enough for label values).
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Prometheus's `model.Duration` string: `0s`, `5m`, `1d`, `1h30m`.
pub fn model_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".to_string();
    }
    let mut ms = ms;
    let mut r = String::new();
    for (unit, mult, exact) in [
        ("y", 365 * 86_400_000i64, true),
        ("w", 7 * 86_400_000, true),
        ("d", 86_400_000, false),
        ("h", 3_600_000, false),
        ("m", 60_000, false),
        ("s", 1_000, false),
        ("ms", 1, false),
    ] {
        if exact && ms % mult != 0 {
            continue;
        }
        let v = ms / mult;
        if v > 0 {
            r.push_str(&format!("{v}{unit}"));
            ms -= v * mult;
        }
    }
    r
}

/// Go's `time.Duration` string: `0s`, `1m0s`, `2m59.999s`, `24h0m0s`, `500ms`.
pub fn go_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".to_string();
    }
    let neg = ms < 0;
    let ms = ms.unsigned_abs();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if ms < 1000 {
        out.push_str(&format!("{ms}ms"));
        return out;
    }
    let (h, rem) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rem) = (rem / 60_000, rem % 60_000);
    let (s, frac) = (rem / 1000, rem % 1000);
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&s.to_string());
    if frac > 0 {
        let f = format!("{frac:03}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out.push('s');
    out
}

/// promtool's `labelsAndAnnotations.String()`.
fn alerts_string(list: &[(Labels, Labels)]) -> String {
    if list.is_empty() {
        return "[]".to_string();
    }
    let one = |(l, a): &(Labels, Labels)| {
        indent(
            &format!(
                "\nLabels:{}\nAnnotations:{}",
                labels_string(l),
                labels_string(a)
            ),
            "  ",
        )
    };
    let mut s = format!("[\n0:{}", one(&list[0]));
    for (i, x) in list.iter().enumerate().skip(1) {
        s.push_str(&format!(",\n{i}:{}", one(x)));
    }
    s.push_str("\n]");
    s
}

/// Prefixes every line but the first with `indent`.
fn indent(text: &str, indent: &str) -> String {
    text.split('\n')
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                l.to_string()
            } else {
                format!("{indent}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The unit tests' storage: input series loaded as time advances, rule results with
/// staleness markers for series a rule stopped returning.
struct TestBackend {
    storage: MemStorage,
    group: usize,
    previous: HashMap<(usize, usize), HashSet<Labels>>,
}

impl RuleBackend for TestBackend {
    fn storage(&self) -> &dyn Storage {
        &self.storage
    }

    fn write(&mut self, rule_index: usize, ts_ms: i64, samples: Vec<(Labels, f64)>) {
        let now: HashSet<Labels> = samples.iter().map(|(l, _)| l.clone()).collect();
        for (labels, v) in samples {
            self.storage.add(labels, [(ts_ms, v)]);
        }
        let key = (self.group, rule_index);
        if let Some(before) = self.previous.get(&key) {
            for gone in before.difference(&now) {
                self.storage
                    .add(gone.clone(), [(ts_ms, f64::from_bits(STALE_NAN_BITS))]);
            }
        }
        self.previous.insert(key, now);
    }
}

fn run_group(
    tg: &TestGroup,
    groups: &Groups,
    eval_interval: i64,
    order: &HashMap<&str, usize>,
) -> Vec<String> {
    // Input series, in the PromQL test-script notation, one value per `interval`.
    let step = dur_ms(tg.interval);
    let mut inputs: Vec<(Labels, Vec<(i64, f64)>)> = Vec::new();
    for s in &tg.input_series {
        let line = format!("{} {}", s.series, s.values);
        match promqltest::parse_series(&line) {
            Ok((labels, values)) => {
                let samples = values
                    .into_iter()
                    .enumerate()
                    .filter_map(|(k, v)| {
                        let t = i64::try_from(k).ok()?.checked_mul(step)?;
                        v.map(|v| (t, v))
                    })
                    .collect();
                // As in promtool's load command, a series given twice keeps its last values.
                match inputs.iter_mut().find(|(l, _)| *l == labels) {
                    Some(slot) => slot.1 = samples,
                    None => inputs.push((labels, samples)),
                }
            }
            Err(e) => return vec![format!("load input series {:?}: {e}", s.series)],
        }
    }
    let opts = EngineOptions {
        external_labels: tg.external_labels.clone(),
        external_url: tg.external_url.clone(),
        ..EngineOptions::default()
    };
    let mut count: HashMap<&str, usize> = HashMap::new();
    for g in &groups.groups {
        *count.entry(g.name.as_str()).or_default() += 1;
    }
    let mut runtimes: Vec<GroupRuntime> = groups
        .groups
        .iter()
        .map(|g| {
            let id = if count.get(g.name.as_str()).copied().unwrap_or(0) > 1 {
                format!("{};{}", g.file, g.name)
            } else {
                g.name.clone()
            };
            GroupRuntime::new(g, &id, &opts)
        })
        .collect();
    // promtool sorts groups by their place in group_eval_order, unlisted ones as 0.
    runtimes.sort_by_key(|g| order.get(g.name()).copied().unwrap_or(0));
    let eval_opts = EvalOptions {
        default_subquery_step_ms: eval_interval,
        ..EvalOptions::default()
    };

    let max_t = tg
        .alert_rule_test
        .iter()
        .map(|a| dur_ms(a.eval_time))
        .chain(tg.promql_expr_test.iter().map(|p| dur_ms(p.eval_time)))
        .max()
        .unwrap_or(0);
    for a in &tg.alert_rule_test {
        if a.alertname.is_empty() {
            let in_group = if tg.name.is_empty() {
                String::new()
            } else {
                format!(" (in TestGroup {})", tg.name)
            };
            return vec![format!(
                "an item under alert_rule_test misses required attribute alertname at eval_time {}{in_group}",
                model_duration(dur_ms(a.eval_time))
            )];
        }
    }
    let mut alert_times: Vec<i64> = tg
        .alert_rule_test
        .iter()
        .map(|a| dur_ms(a.eval_time))
        .collect();
    alert_times.sort_unstable();
    alert_times.dedup();

    let mut backend = TestBackend {
        storage: MemStorage::new(),
        group: 0,
        previous: HashMap::new(),
    };
    let mut loaded = vec![0usize; inputs.len()];
    let mut errors = Vec::new();
    let mut curr = 0;
    let mut ts: i64 = 0;
    while ts <= max_t {
        for (i, (labels, samples)) in inputs.iter().enumerate() {
            let upto = samples.partition_point(|(t, _)| *t <= ts);
            if upto > loaded[i] {
                backend
                    .storage
                    .add(labels.clone(), samples[loaded[i]..upto].iter().copied());
                loaded[i] = upto;
            }
        }
        let mut eval_errors = Vec::new();
        for (gi, g) in runtimes.iter_mut().enumerate() {
            backend.group = gi;
            for f in g.eval(ts, &mut backend, eval_opts) {
                eval_errors.push(format!(
                    "    rule: {}, time: {}, err: {}",
                    f.rule,
                    go_duration(ts),
                    f.error
                ));
            }
        }
        if !eval_errors.is_empty() {
            errors.extend(eval_errors);
            return errors;
        }
        while curr < alert_times.len()
            && ts <= alert_times[curr]
            && alert_times[curr] < ts.saturating_add(eval_interval)
        {
            let t = alert_times[curr];
            for case in tg
                .alert_rule_test
                .iter()
                .filter(|a| dur_ms(a.eval_time) == t)
            {
                let mut got: Vec<(Labels, Labels)> = runtimes
                    .iter()
                    .flat_map(|g| g.alerting_rules())
                    .filter(|(_, r)| r.name() == case.alertname)
                    .flat_map(|(_, r)| r.active_alerts())
                    .filter(|a| a.state == AlertState::Firing)
                    .map(|a| (a.labels, a.annotations))
                    .collect();
                let mut exp: Vec<(Labels, Labels)> = case
                    .exp_alerts
                    .iter()
                    .map(|e| {
                        let mut l = Labels::from_pairs(e.exp_labels.clone());
                        l.set("alertname", case.alertname.clone());
                        (l, Labels::from_pairs(e.exp_annotations.clone()))
                    })
                    .collect();
                got.sort();
                exp.sort();
                if got != exp {
                    let name = if tg.name.is_empty() {
                        String::new()
                    } else {
                        format!("    name: {},\n", tg.name)
                    };
                    let pad = "            ";
                    errors.push(format!(
                        "{name}    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
                        case.alertname,
                        model_duration(t),
                        indent(&alerts_string(&exp), pad),
                        indent(&alerts_string(&got), pad)
                    ));
                }
            }
            curr += 1;
        }
        match ts.checked_add(eval_interval) {
            Some(next) => ts = next,
            None => break,
        }
    }

    for case in &tg.promql_expr_test {
        let t = dur_ms(case.eval_time);
        let fail = |e: &str| {
            format!(
                "    expr: {}, time: {}, err: {e}",
                go_quote(&case.expr),
                model_duration(t)
            )
        };
        let got = match promql::parse(&case.expr) {
            Err(e) => {
                errors.push(fail(&e.to_string()));
                continue;
            }
            Ok(q) => match promql::eval_instant_with(&q, t, &backend.storage, eval_opts) {
                Err(e) => {
                    errors.push(fail(&e.to_string()));
                    continue;
                }
                Ok(Value::Vector(v)) => v.into_iter().map(|s| (s.labels, s.value)).collect(),
                Ok(Value::Scalar(x)) => vec![(Labels::new(), x)],
                Ok(_) => {
                    errors.push(fail("rule result is not a vector or scalar"));
                    continue;
                }
            },
        };
        let mut exp: Vec<(Labels, f64)> = Vec::new();
        let mut bad = None;
        for s in &case.exp_samples {
            if s.labels.trim().is_empty() {
                exp.push((Labels::new(), s.value));
                continue;
            }
            match promqltest::parse_series(&s.labels) {
                Ok((labels, values)) if values.is_empty() => exp.push((labels, s.value)),
                Ok(_) => bad = Some(format!("labels {}: unexpected values", go_quote(&s.labels))),
                Err(e) => bad = Some(format!("labels {}: {e}", go_quote(&s.labels))),
            }
        }
        if let Some(b) = bad {
            errors.push(fail(&b));
            continue;
        }
        let mut got: Vec<(Labels, f64)> = got;
        exp.sort_by(|a, b| a.0.cmp(&b.0));
        got.sort_by(|a, b| a.0.cmp(&b.0));
        // Exact comparison (Go's reflect.DeepEqual: NaN never equals).
        let same =
            exp.len() == got.len() && exp.iter().zip(&got).all(|(e, g)| e.0 == g.0 && e.1 == g.1);
        if !same {
            errors.push(format!(
                "    expr: {}, time: {},\n        exp: {}\n        got: {}",
                go_quote(&case.expr),
                model_duration(t),
                samples_string(&exp),
                samples_string(&got)
            ));
        }
    }
    errors
}

fn samples_string(s: &[(Labels, f64)]) -> String {
    if s.is_empty() {
        return "nil".to_string();
    }
    s.iter()
        .map(|(l, v)| format!("{} {}", labels_string(l), format_float(*v, 'E', None)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_and_prometheus_print_them() {
        assert_eq!(model_duration(0), "0s");
        assert_eq!(model_duration(300_000), "5m");
        assert_eq!(model_duration(86_400_000), "1d");
        assert_eq!(model_duration(5_400_000), "1h30m");
        assert_eq!(model_duration(179_999), "2m59s999ms");
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(60_000), "1m0s");
        assert_eq!(go_duration(86_400_000), "24h0m0s");
        assert_eq!(go_duration(179_999), "2m59.999s");
        assert_eq!(go_duration(500), "500ms");
    }

    #[test]
    fn alert_lists_print_as_promtool_prints_them() {
        let l = Labels::from_pairs([("alertname", "A"), ("job", "x")]);
        let a = Labels::from_pairs([("summary", "s")]);
        assert_eq!(alerts_string(&[]), "[]");
        assert_eq!(
            alerts_string(&[(l.clone(), a.clone()), (l, Labels::new())]),
            "[\n0:\n  Labels:{alertname=\"A\", job=\"x\"}\n  Annotations:{summary=\"s\"},\n1:\n  Labels:{alertname=\"A\", job=\"x\"}\n  Annotations:{}\n]"
        );
        assert_eq!(
            samples_string(&[(Labels::from_pairs([("__name__", "t")]), 61.0)]),
            "{__name__=\"t\"} 6.1E+01"
        );
    }
}
