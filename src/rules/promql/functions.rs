//! PromQL functions on floats, as Prometheus 2.42 computes them: the range-vector
//! functions (`rate` and its extrapolation, `*_over_time`, `holt_winters`, …) and the
//! instant-vector ones (math, dates, labels, `histogram_quantile`, …).

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::label::{METRIC_NAME, MatchOp};
use promql_parser::parser::{Call, Expr};

use super::{
    EvalError, Evaluator, S, Val, check_duplicates, drop_name, dur_ms, go_max, go_min,
    is_valid_label_name, names_uniform, set_or_remove, signature, unparen,
};
use crate::model::Labels;

pub(super) fn eval(ev: &mut Evaluator<'_>, c: &Call, ts: i64) -> Result<Val, EvalError> {
    let name = c.func.name;
    let args = &c.args.args;
    if let Some(idx) = args
        .iter()
        .position(|a| matches!(unparen(a), Expr::MatrixSelector(_) | Expr::Subquery(_)))
    {
        return eval_range_function(ev, name, args, idx, ts);
    }
    // Functions that only drop the metric name keep distinct inputs distinct when all
    // inputs share one name; the others (label_*, histogram_quantile, …) are checked.
    let mut uniform_input = false;
    let out = match name {
        "time" => return Ok(Val::Scalar(ts as f64 / 1000.0)),
        "pi" => return Ok(Val::Scalar(std::f64::consts::PI)),
        "vector" => {
            let v = scalar_arg(ev, args, 0, ts)?;
            return Ok(Val::Vector(vec![S {
                labels: Arc::new(Labels::new()),
                value: v,
            }]));
        }
        "scalar" => {
            let v = vector_arg(ev, args, 0, ts)?;
            return Ok(Val::Scalar(match v.as_slice() {
                [one] => one.value,
                _ => f64::NAN,
            }));
        }
        "timestamp" => timestamp(ev, args, ts)?,
        "absent" => {
            let v = vector_arg(ev, args, 0, ts)?;
            if v.is_empty() {
                vec![S {
                    labels: Arc::new(absent_labels(args.first().map(|a| unparen(a)))),
                    value: 1.0,
                }]
            } else {
                Vec::new()
            }
        }
        "round" => {
            let v = vector_arg(ev, args, 0, ts)?;
            let to_nearest = if args.len() >= 2 {
                scalar_arg(ev, args, 1, ts)?
            } else {
                1.0
            };
            // Prometheus divides by the inverse: fewer floating point surprises.
            let inv = 1.0 / to_nearest;
            uniform_input = uniform(&v);
            map_values(v, |x| (x * inv + 0.5).floor() / inv)
        }
        "clamp" => {
            let v = vector_arg(ev, args, 0, ts)?;
            let min = scalar_arg(ev, args, 1, ts)?;
            let max = scalar_arg(ev, args, 2, ts)?;
            uniform_input = uniform(&v);
            if max < min {
                Vec::new()
            } else {
                map_values(v, |x| go_max(min, go_min(max, x)))
            }
        }
        "clamp_min" => {
            let v = vector_arg(ev, args, 0, ts)?;
            let min = scalar_arg(ev, args, 1, ts)?;
            uniform_input = uniform(&v);
            map_values(v, |x| go_max(min, x))
        }
        "clamp_max" => {
            let v = vector_arg(ev, args, 0, ts)?;
            let max = scalar_arg(ev, args, 1, ts)?;
            uniform_input = uniform(&v);
            map_values(v, |x| go_min(max, x))
        }
        "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute"
        | "month" | "year" => {
            let f = date_function(name)?;
            if args.is_empty() {
                vec![S {
                    labels: Arc::new(Labels::new()),
                    value: date_value(ts / 1000, f),
                }]
            } else {
                let v = vector_arg(ev, args, 0, ts)?;
                uniform_input = uniform(&v);
                map_values(v, |x| date_value(go_int64(x), f))
            }
        }
        "sort" | "sort_desc" => {
            let mut v = vector_arg(ev, args, 0, ts)?;
            let desc = name == "sort_desc";
            v.sort_by(|x, y| match (x.value.is_nan(), y.value.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                (false, false) if desc => y.value.total_cmp(&x.value),
                (false, false) => x.value.total_cmp(&y.value),
            });
            // Sorting keeps the metric name and cannot create duplicates.
            return Ok(Val::Vector(v));
        }
        "label_replace" => label_replace(ev, args, ts)?,
        "label_join" => label_join(ev, args, ts)?,
        "histogram_quantile" => {
            let q = scalar_arg(ev, args, 0, ts)?;
            let v = vector_arg(ev, args, 1, ts)?;
            histogram_quantile(q, v)
        }
        _ => {
            let f = math_function(name)?;
            let v = vector_arg(ev, args, 0, ts)?;
            uniform_input = uniform(&v);
            map_values(v, f)
        }
    };
    if !uniform_input {
        check_duplicates(&out)?;
    }
    Ok(Val::Vector(out))
}

fn uniform(v: &[S]) -> bool {
    names_uniform(v.iter().map(|s| &*s.labels))
}

fn arg(args: &[Box<Expr>], i: usize) -> Result<&Expr, EvalError> {
    args.get(i)
        .map(|b| b.as_ref())
        .ok_or_else(|| EvalError::new(format!("missing argument {}", i + 1)))
}

fn scalar_arg(
    ev: &mut Evaluator<'_>,
    args: &[Box<Expr>],
    i: usize,
    ts: i64,
) -> Result<f64, EvalError> {
    ev.eval(arg(args, i)?, ts)?.into_scalar()
}

fn vector_arg(
    ev: &mut Evaluator<'_>,
    args: &[Box<Expr>],
    i: usize,
    ts: i64,
) -> Result<Vec<S>, EvalError> {
    ev.eval(arg(args, i)?, ts)?.into_vector()
}

fn string_arg(
    ev: &mut Evaluator<'_>,
    args: &[Box<Expr>],
    i: usize,
    ts: i64,
) -> Result<String, EvalError> {
    ev.eval(arg(args, i)?, ts)?.into_string()
}

/// Applies `f` to every value and drops the metric name, as Prometheus's math
/// functions do.
fn map_values(v: Vec<S>, f: impl Fn(f64) -> f64) -> Vec<S> {
    v.into_iter()
        .map(|s| S {
            labels: drop_name(&s.labels),
            value: f(s.value),
        })
        .collect()
}

fn math_function(name: &str) -> Result<fn(f64) -> f64, EvalError> {
    Ok(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "deg" => |x| x * 180.0 / std::f64::consts::PI,
        "rad" => |x| x * std::f64::consts::PI / 180.0,
        "sgn" => |x| {
            if x < 0.0 {
                -1.0
            } else if x > 0.0 {
                1.0
            } else {
                x
            }
        },
        other => return Err(EvalError::new(format!("unsupported function {other}"))),
    })
}

#[derive(Clone, Copy)]
enum DateFn {
    DayOfMonth,
    DayOfWeek,
    DayOfYear,
    DaysInMonth,
    Hour,
    Minute,
    Month,
    Year,
}

fn date_function(name: &str) -> Result<DateFn, EvalError> {
    Ok(match name {
        "day_of_month" => DateFn::DayOfMonth,
        "day_of_week" => DateFn::DayOfWeek,
        "day_of_year" => DateFn::DayOfYear,
        "days_in_month" => DateFn::DaysInMonth,
        "hour" => DateFn::Hour,
        "minute" => DateFn::Minute,
        "month" => DateFn::Month,
        "year" => DateFn::Year,
        other => return Err(EvalError::new(format!("unsupported function {other}"))),
    })
}

/// Go's `int64(f)` on amd64, which Prometheus's date functions use: NaN and values out
/// of range become the minimum `i64`; others truncate towards zero.
fn go_int64(x: f64) -> i64 {
    // -2^63 and 2^63, both exact as floats.
    let (lo, hi) = (i64::MIN as f64, -(i64::MIN as f64));
    if x.is_nan() || !(lo..hi).contains(&x) {
        i64::MIN
    } else {
        x as i64
    }
}

/// A UTC calendar date as Go's `time` package computes it from Unix seconds (wrapping
/// arithmetic included, so that even absurd inputs give Prometheus's answers).
struct GoDate {
    year: i64,
    month: u64,
    day: u64,
    yday: u64,
    weekday: u64,
    hour: u64,
    minute: u64,
}

fn go_is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn go_date(unix_secs: i64) -> GoDate {
    const SECONDS_PER_DAY: u64 = 86_400;
    const DAYS_PER_400_YEARS: u64 = 365 * 400 + 97;
    const DAYS_PER_100_YEARS: u64 = 365 * 100 + 24;
    const DAYS_PER_4_YEARS: u64 = 365 * 4 + 1;
    const ABSOLUTE_ZERO_YEAR: i64 = -292_277_022_399;
    // unixToInternal + internalToAbsolute in Go's time package.
    const UNIX_TO_ABSOLUTE: i64 = 9_223_372_028_715_321_600;
    const DAYS_BEFORE: [u64; 13] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365];
    let abs = unix_secs.wrapping_add(UNIX_TO_ABSOLUTE) as u64;
    let mut d = abs / SECONDS_PER_DAY;
    let mut n = d / DAYS_PER_400_YEARS;
    let mut y = 400 * n;
    d -= DAYS_PER_400_YEARS * n;
    n = d / DAYS_PER_100_YEARS;
    n -= n >> 2;
    y += 100 * n;
    d -= DAYS_PER_100_YEARS * n;
    n = d / DAYS_PER_4_YEARS;
    y += 4 * n;
    d -= DAYS_PER_4_YEARS * n;
    n = d / 365;
    n -= n >> 2;
    y += n;
    d -= 365 * n;
    let year = (y as i64).wrapping_add(ABSOLUTE_ZERO_YEAR);
    let yday = d;
    let mut day = yday;
    let (month, day) = 'md: {
        if go_is_leap(year) {
            if day > 31 + 29 - 1 {
                day -= 1;
            } else if day == 31 + 29 - 1 {
                break 'md (2, 29);
            }
        }
        let mut month = (day / 31) as usize;
        let end = DAYS_BEFORE[month + 1];
        let begin = if day >= end {
            month += 1;
            end
        } else {
            DAYS_BEFORE[month]
        };
        (month as u64 + 1, day - begin + 1)
    };
    // Monday is day 1 of Go's absolute calendar's week.
    let weekday = (abs.wrapping_add(SECONDS_PER_DAY) % (7 * SECONDS_PER_DAY)) / SECONDS_PER_DAY;
    GoDate {
        year,
        month,
        day,
        yday: yday + 1,
        weekday,
        hour: (abs % SECONDS_PER_DAY) / 3600,
        minute: (abs % 3600) / 60,
    }
}

fn date_value(secs: i64, f: DateFn) -> f64 {
    let t = go_date(secs);
    let v = match f {
        DateFn::DayOfMonth => t.day,
        DateFn::DayOfWeek => t.weekday,
        DateFn::DayOfYear => t.yday,
        DateFn::DaysInMonth => match t.month {
            2 if go_is_leap(t.year) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        },
        DateFn::Hour => t.hour,
        DateFn::Minute => t.minute,
        DateFn::Month => t.month,
        DateFn::Year => return t.year as f64,
    };
    v as f64
}

fn timestamp(ev: &mut Evaluator<'_>, args: &[Box<Expr>], ts: i64) -> Result<Vec<S>, EvalError> {
    let a = arg(args, 0)?;
    // Given a selector, timestamp() reports its samples' own times; given anything
    // else, the evaluation time (what Prometheus's matrix evaluation stamps).
    if let Expr::VectorSelector(vs) = unparen(a) {
        return Ok(ev
            .instant_lookup(vs, ts)
            .map(|(labels, t, _)| S {
                labels: drop_name(labels),
                value: t as f64 / 1000.0,
            })
            .collect());
    }
    let v = ev.eval(a, ts)?.into_vector()?;
    Ok(map_values(v, |_| ts as f64 / 1000.0))
}

/// The labels `absent()` and `absent_over_time()` report: the selector's equality
/// matchers, except labels matched more than once or otherwise.
fn absent_labels(e: Option<&Expr>) -> Labels {
    let matchers = match e {
        Some(Expr::VectorSelector(vs)) => &vs.matchers.matchers,
        Some(Expr::MatrixSelector(ms)) => &ms.vs.matchers.matchers,
        _ => return Labels::new(),
    };
    // In matcher order: the first equality matcher on a label sets it (even to the
    // empty value, which claims it); any other matcher on it removes it again.
    let mut out = Labels::new();
    let mut claimed: Vec<&str> = Vec::new();
    for m in matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if matches!(m.op, MatchOp::Equal) && !claimed.contains(&m.name.as_str()) {
            claimed.push(&m.name);
            set_or_remove(&mut out, &m.name, &m.value);
        } else {
            out.remove(&m.name);
        }
    }
    out
}

fn label_replace(ev: &mut Evaluator<'_>, args: &[Box<Expr>], ts: i64) -> Result<Vec<S>, EvalError> {
    let v = vector_arg(ev, args, 0, ts)?;
    let dst = string_arg(ev, args, 1, ts)?;
    let repl = string_arg(ev, args, 2, ts)?;
    let src = string_arg(ev, args, 3, ts)?;
    let re_text = string_arg(ev, args, 4, ts)?;
    let re = ev.regex(&re_text).ok_or_else(|| {
        EvalError::new(format!(
            "invalid regular expression in label_replace(): {re_text}"
        ))
    })?;
    if !is_valid_label_name(&dst) {
        return Err(EvalError::new(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let mut out = Vec::with_capacity(v.len());
    let mut expanded = String::new();
    for s in v {
        let src_val = s.labels.get(&src).unwrap_or("");
        let labels = match re.captures(src_val) {
            None => s.labels,
            Some(caps) => {
                expanded.clear();
                caps.expand(&repl, &mut expanded);
                let mut l = Labels::clone(&s.labels);
                set_or_remove(&mut l, &dst, &expanded);
                Arc::new(l)
            }
        };
        out.push(S {
            labels,
            value: s.value,
        });
    }
    Ok(out)
}

fn label_join(ev: &mut Evaluator<'_>, args: &[Box<Expr>], ts: i64) -> Result<Vec<S>, EvalError> {
    let v = vector_arg(ev, args, 0, ts)?;
    let dst = string_arg(ev, args, 1, ts)?;
    let sep = string_arg(ev, args, 2, ts)?;
    let mut srcs = Vec::with_capacity(args.len().saturating_sub(3));
    for i in 3..args.len() {
        let src = string_arg(ev, args, i, ts)?;
        if !is_valid_label_name(&src) {
            return Err(EvalError::new(format!(
                "invalid source label name in label_join(): {src}"
            )));
        }
        srcs.push(src);
    }
    if !is_valid_label_name(&dst) {
        return Err(EvalError::new(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let mut out = Vec::with_capacity(v.len());
    for s in v {
        let joined = srcs
            .iter()
            .map(|n| s.labels.get(n).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(&sep);
        let mut l = Labels::clone(&s.labels);
        set_or_remove(&mut l, &dst, &joined);
        out.push(S {
            labels: Arc::new(l),
            value: s.value,
        });
    }
    Ok(out)
}

fn histogram_quantile(q: f64, v: Vec<S>) -> Vec<S> {
    // Buckets grouped by every label but `le` (the metric name included, so that two
    // histograms differing only by name collide in the output, as in Prometheus).
    let mut index: HashMap<u64, usize> = HashMap::new();
    // (output labels, (upper bound, count) buckets)
    type Buckets = Vec<(f64, f64)>;
    let mut groups: Vec<(Arc<Labels>, Buckets)> = Vec::new();
    for s in v {
        let Some(upper) = s
            .labels
            .get("le")
            .and_then(|le| le.trim().parse::<f64>().ok())
        else {
            continue;
        };
        let key = signature(&s.labels, |n| n != "le");
        match index.get(&key) {
            Some(&i) => groups[i].1.push((upper, s.value)),
            None => {
                let mut l = Labels::clone(&s.labels);
                l.remove("le");
                l.remove(METRIC_NAME);
                index.insert(key, groups.len());
                groups.push((Arc::new(l), vec![(upper, s.value)]));
            }
        }
    }
    groups
        .into_iter()
        .map(|(labels, mut buckets)| S {
            labels,
            value: bucket_quantile(q, &mut buckets),
        })
        .collect()
}

/// Prometheus's `bucketQuantile` for classic buckets `(upper bound, cumulative count)`.
fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    match buckets.last() {
        Some((ub, _)) if *ub == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    // Coalesce buckets with the same upper bound.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(ub, c) in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == ub => last.1 += c,
            _ => merged.push((ub, c)),
        }
    }
    // Force monotonic counts.
    let mut max = f64::NEG_INFINITY;
    for b in &mut merged {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
    let n = merged.len();
    if n < 2 {
        return f64::NAN;
    }
    let observations = merged[n - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = merged[..n - 1].partition_point(|(_, c)| *c < rank);
    if b == n - 1 {
        return merged[n - 2].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let mut start = 0.0;
    let end = merged[b].0;
    let mut count = merged[b].1;
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

/// Prometheus's `quantile`: linear interpolation between the closest ranks; NaN sorts
/// first.
pub(super) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        (false, false) => a.total_cmp(b),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    let at = |i: f64| values.get(i as usize).copied().unwrap_or(f64::NAN);
    at(lower) * (1.0 - weight) + at(upper) * weight
}

// ---------------------------------------------------------------------------------------
// Range-vector functions.

/// One series' samples in the window a range function sees.
struct Window<'a> {
    points: &'a [(i64, f64)],
    ts: i64,
    start: i64,
    end: i64,
    range_ms: i64,
}

fn eval_range_function(
    ev: &mut Evaluator<'_>,
    name: &str,
    args: &[Box<Expr>],
    idx: usize,
    ts: i64,
) -> Result<Val, EvalError> {
    let mut scalars = Vec::with_capacity(args.len());
    for (i, a) in args.iter().enumerate() {
        if i != idx {
            scalars.push(ev.eval(a, ts)?.into_scalar()?);
        }
    }
    let keep_name = name == "last_over_time";
    let mut out: Vec<S> = Vec::new();
    let mut failure: Option<EvalError> = None;
    // Series from one selector are distinct; dropping the name keeps them so when they
    // all share it.
    let mut first: Option<Arc<Labels>> = None;
    let mut uniform_names = true;
    let mut apply = |labels: &Arc<Labels>, w: &Window<'_>| {
        if failure.is_some() {
            return;
        }
        match &first {
            None => first = Some(Arc::clone(labels)),
            Some(f) => {
                if uniform_names && f.get(METRIC_NAME) != labels.get(METRIC_NAME) {
                    uniform_names = false;
                }
            }
        }
        match range_value(name, w, &scalars) {
            Ok(Some(value)) => out.push(S {
                labels: if keep_name {
                    Arc::clone(labels)
                } else {
                    drop_name(labels)
                },
                value,
            }),
            Ok(None) => {}
            Err(e) => failure = Some(e),
        }
    };
    let arg_expr = unparen(arg(args, idx)?);
    match arg_expr {
        Expr::MatrixSelector(ms) => {
            let (start, end) = ev.matrix_window(ms, ts);
            let range_ms = dur_ms(ms.range);
            ev.for_each_window(ms, ts, |labels, points| {
                apply(
                    labels,
                    &Window {
                        points,
                        ts,
                        start,
                        end,
                        range_ms,
                    },
                );
            });
        }
        Expr::Subquery(sq) => {
            let series = ev.eval_subquery(sq, ts)?;
            let (start, end) = ev.subquery_window(sq, ts);
            let range_ms = dur_ms(sq.range);
            for s in &series {
                if !s.points.is_empty() {
                    apply(
                        &s.labels,
                        &Window {
                            points: &s.points,
                            ts,
                            start,
                            end,
                            range_ms,
                        },
                    );
                }
            }
        }
        _ => return Err(EvalError::new(format!("{name}: expected a range vector"))),
    }
    if let Some(e) = failure {
        return Err(e);
    }
    if name == "absent_over_time" {
        return Ok(Val::Vector(if out.is_empty() {
            vec![S {
                labels: Arc::new(absent_labels(Some(arg_expr))),
                value: 1.0,
            }]
        } else {
            Vec::new()
        }));
    }
    if !(uniform_names || keep_name) {
        check_duplicates(&out)?;
    }
    Ok(Val::Vector(out))
}

fn scalar_param(scalars: &[f64], i: usize) -> Result<f64, EvalError> {
    scalars
        .get(i)
        .copied()
        .ok_or_else(|| EvalError::new("missing scalar argument"))
}

/// The value of range function `name` over one series' window (never empty); `None`
/// when the function yields nothing for it.
fn range_value(name: &str, w: &Window<'_>, scalars: &[f64]) -> Result<Option<f64>, EvalError> {
    let p = w.points;
    let values = || p.iter().map(|(_, v)| *v);
    Ok(match name {
        "rate" => extrapolated_rate(w, true, true),
        "increase" => extrapolated_rate(w, true, false),
        "delta" => extrapolated_rate(w, false, false),
        "irate" => instant_value(p, true),
        "idelta" => instant_value(p, false),
        "changes" => {
            let mut n = 0u32;
            for pair in p.windows(2) {
                let (prev, cur) = (pair[0].1, pair[1].1);
                if cur != prev && !(cur.is_nan() && prev.is_nan()) {
                    n += 1;
                }
            }
            Some(f64::from(n))
        }
        "resets" => {
            let n = p.windows(2).filter(|pair| pair[1].1 < pair[0].1).count();
            Some(n as f64)
        }
        "deriv" => {
            if p.len() < 2 {
                None
            } else {
                Some(linear_regression(p, p[0].0).0)
            }
        }
        "predict_linear" => {
            let duration = scalar_param(scalars, 0)?;
            if p.len() < 2 {
                None
            } else {
                let (slope, intercept) = linear_regression(p, w.ts);
                Some(slope * duration + intercept)
            }
        }
        "holt_winters" => holt_winters(p, scalar_param(scalars, 0)?, scalar_param(scalars, 1)?)?,
        "avg_over_time" => Some(avg_over_time(p)),
        "count_over_time" => Some(p.len() as f64),
        "sum_over_time" => {
            let (mut sum, mut c) = (0.0, 0.0);
            for v in values() {
                (sum, c) = kahan_inc(v, sum, c);
            }
            Some(if sum.is_infinite() { sum } else { sum + c })
        }
        "min_over_time" => {
            Some(values().fold(p[0].1, |m, v| if v < m || m.is_nan() { v } else { m }))
        }
        "max_over_time" => {
            Some(values().fold(p[0].1, |m, v| if v > m || m.is_nan() { v } else { m }))
        }
        "quantile_over_time" => {
            let q = scalar_param(scalars, 0)?;
            let mut vals: Vec<f64> = values().collect();
            Some(quantile(q, &mut vals))
        }
        "stddev_over_time" => Some(variance_over_time(p).sqrt()),
        "stdvar_over_time" => Some(variance_over_time(p)),
        "last_over_time" => p.last().map(|(_, v)| *v),
        "present_over_time" | "absent_over_time" => Some(1.0),
        other => return Err(EvalError::new(format!("unsupported function {other}"))),
    })
}

/// Kahan-Neumaier summation step, as Prometheus's `kahanSumInc`.
fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

fn avg_over_time(p: &[(i64, f64)]) -> f64 {
    let (mut mean, mut count, mut c) = (0.0f64, 0.0f64, 0.0f64);
    for &(_, v) in p {
        count += 1.0;
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        (mean, c) = kahan_inc(v / count - mean / count, mean, c);
    }
    if mean.is_infinite() { mean } else { mean + c }
}

fn variance_over_time(p: &[(i64, f64)]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0f64, 0.0, 0.0, 0.0, 0.0);
    for &(_, v) in p {
        count += 1.0;
        let delta = v - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// `rate`, `increase` and `delta`: the change over the window, extrapolated towards its
/// edges as Prometheus does (at most half a sample interval beyond the data, never below
/// zero for counters).
fn extrapolated_rate(w: &Window<'_>, is_counter: bool, is_rate: bool) -> Option<f64> {
    let p = w.points;
    if p.len() < 2 {
        return None;
    }
    let (first, last) = (p[0], p[p.len() - 1]);
    let mut result = last.1 - first.1;
    if is_counter {
        let mut prev = first.1;
        for &(_, cur) in &p[1..] {
            if cur < prev {
                result += prev;
            }
            prev = cur;
        }
    }
    let mut duration_to_start = (first.0 - w.start) as f64 / 1000.0;
    let duration_to_end = (w.end - last.0) as f64 / 1000.0;
    let sampled_interval = (last.0 - first.0) as f64 / 1000.0;
    let average_between = sampled_interval / (p.len() - 1) as f64;
    if is_counter && result > 0.0 && first.1 >= 0.0 {
        let duration_to_zero = sampled_interval * (first.1 / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    let threshold = average_between * 1.1;
    let mut extrapolate_to = sampled_interval;
    extrapolate_to += if duration_to_start < threshold {
        duration_to_start
    } else {
        average_between / 2.0
    };
    extrapolate_to += if duration_to_end < threshold {
        duration_to_end
    } else {
        average_between / 2.0
    };
    let mut factor = extrapolate_to / sampled_interval;
    if is_rate {
        factor /= w.range_ms as f64 / 1000.0;
    }
    Some(result * factor)
}

/// `irate` and `idelta`: from the last two samples.
fn instant_value(p: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (prev, last) = (p[p.len() - 2], p[p.len() - 1]);
    let mut result = if is_rate && last.1 < prev.1 {
        // Counter reset.
        last.1
    } else {
        last.1 - prev.1
    };
    let interval = last.0 - prev.0;
    if interval == 0 {
        return None;
    }
    if is_rate {
        result /= interval as f64 / 1000.0;
    }
    Some(result)
}

/// Least-squares slope and intercept, x in seconds relative to `intercept_time`.
fn linear_regression(p: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
    let (mut n, mut sum_x, mut c_x, mut sum_y, mut c_y) = (0.0f64, 0.0, 0.0, 0.0, 0.0);
    let (mut sum_xy, mut c_xy, mut sum_x2, mut c_x2) = (0.0f64, 0.0, 0.0, 0.0);
    let init_y = p[0].1;
    let mut const_y = true;
    for (i, &(t, v)) in p.iter().enumerate() {
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (t - intercept_time) as f64 / 1e3;
        (sum_x, c_x) = kahan_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_inc(v, sum_y, c_y);
        (sum_xy, c_xy) = kahan_inc(x * v, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_inc(x * x, sum_x2, c_x2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (sum_x, sum_y, sum_xy, sum_x2) = (sum_x + c_x, sum_y + c_y, sum_xy + c_xy, sum_x2 + c_x2);
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

/// Double exponential smoothing with smoothing factor `sf` and trend factor `tf`.
fn holt_winters(p: &[(i64, f64)], sf: f64, tf: f64) -> Result<Option<f64>, EvalError> {
    if sf <= 0.0 || sf >= 1.0 {
        return Err(EvalError::new(format!(
            "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf}"
        )));
    }
    if tf <= 0.0 || tf >= 1.0 {
        return Err(EvalError::new(format!(
            "invalid trend factor. Expected: 0 < tf < 1, got: {tf}"
        )));
    }
    if p.len() < 2 {
        return Ok(None);
    }
    let (mut s0, mut s1) = (0.0f64, p[0].1);
    let mut b = p[1].1 - p[0].1;
    for (i, &(_, v)) in p.iter().enumerate().skip(1) {
        let x = sf * v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Ok(Some(s1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_between_ranks() {
        assert_eq!(quantile(0.5, &mut [0.0, 1.0]), 0.5);
        assert!((quantile(0.8, &mut [0.0, 1.0, 4.0]) - 2.8).abs() < 1e-12);
        assert_eq!(quantile(2.0, &mut [1.0]), f64::INFINITY);
        assert!(quantile(0.5, &mut []).is_nan());
    }

    #[test]
    fn bucket_quantile_interpolates_within_a_bucket() {
        let mut b = vec![
            (0.0, 0.0),
            (2.0, 1.0),
            (4.0, 2.0),
            (6.0, 3.0),
            (f64::INFINITY, 3.0),
        ];
        assert!((bucket_quantile(0.5, &mut b) - 3.0).abs() < 1e-9);
        let mut no_inf = vec![(1.0, 1.0)];
        assert!(bucket_quantile(0.5, &mut no_inf).is_nan());
    }

    #[test]
    fn date_values_are_utc() {
        assert_eq!(date_value(1_136_239_445, DateFn::Hour), 22.0);
        assert_eq!(date_value(0, DateFn::DayOfWeek), 4.0);
        assert_eq!(date_value(1_454_284_800, DateFn::DaysInMonth), 29.0);
        assert_eq!(date_value(1_230_767_999, DateFn::Year), 2008.0);
        assert_eq!(date_value(1_483_191_420, DateFn::DayOfYear), 366.0);
        assert_eq!(date_value(-1, DateFn::DayOfWeek), 3.0);
        // Go's answers for int64(NaN) on amd64.
        let nan = go_int64(f64::NAN);
        assert_eq!(date_value(nan, DateFn::Year), 292_277_026_596.0);
        assert_eq!(date_value(nan, DateFn::DayOfYear), 339.0);
        assert_eq!(date_value(nan, DateFn::Hour), 15.0);
        assert_eq!(date_value(nan, DateFn::Minute), 30.0);
        assert_eq!(date_value(nan, DateFn::DayOfMonth), 4.0);
    }
}
