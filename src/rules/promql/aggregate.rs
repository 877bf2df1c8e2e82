//! Aggregation operators with `by` / `without`, as Prometheus 2.42 computes them
//! (its running mean for `avg`, Welford's method for `stddev`/`stdvar`, heaps for
//! `topk`/`bottomk`). Groups are found by hashing their label signature.

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::label::METRIC_NAME;
use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_MAX, T_MIN, T_QUANTILE, T_STDDEV,
    T_STDVAR, T_SUM, T_TOPK,
};
use promql_parser::parser::{AggregateExpr, LabelModifier};

use super::functions::quantile;
use super::{EvalError, Evaluator, S, Val, is_valid_label_name, signature, unparen};
use crate::model::Labels;

struct Group {
    labels: Arc<Labels>,
    value: f64,
    mean: f64,
    count: u64,
    /// topk/bottomk heap, or the values for quantile.
    heap: Vec<S>,
}

/// `count_values` formats values as Go's `strconv.FormatFloat(v, 'f', -1, 64)`.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{v}")
    }
}

/// Go's `container/heap` on a slice ordered by `less`.
fn heap_up(h: &mut [S], mut j: usize, less: fn(f64, f64) -> bool) {
    while j > 0 {
        let i = (j - 1) / 2;
        if i == j || !less(h[j].value, h[i].value) {
            break;
        }
        h.swap(i, j);
        j = i;
    }
}

fn heap_down(h: &mut [S], i0: usize, n: usize, less: fn(f64, f64) -> bool) {
    let mut i = i0;
    loop {
        let j1 = 2 * i + 1;
        if j1 >= n {
            break;
        }
        let mut j = j1;
        let j2 = j1 + 1;
        if j2 < n && less(h[j2].value, h[j1].value) {
            j = j2;
        }
        if !less(h[j].value, h[i].value) {
            break;
        }
        h.swap(i, j);
        i = j;
    }
}

fn heap_push(h: &mut Vec<S>, s: S, less: fn(f64, f64) -> bool) {
    h.push(s);
    let n = h.len();
    heap_up(h, n - 1, less);
}

fn heap_pop(h: &mut Vec<S>, less: fn(f64, f64) -> bool) {
    let n = h.len();
    if n == 0 {
        return;
    }
    h.swap(0, n - 1);
    heap_down(h, 0, n - 1, less);
    h.pop();
}

/// topk's heap keeps the smallest on top; NaN counts as the smallest.
fn topk_less(a: f64, b: f64) -> bool {
    a.is_nan() || a < b
}

/// bottomk's heap keeps the largest on top; NaN counts as the largest.
fn bottomk_less(a: f64, b: f64) -> bool {
    a.is_nan() || a > b
}

pub(super) fn eval(ev: &mut Evaluator<'_>, a: &AggregateExpr, ts: i64) -> Result<Val, EvalError> {
    let op = a.op.id();
    // Parameter first, as Prometheus evaluates it.
    let mut k: usize = 0;
    let mut q = 0.0;
    let mut value_label = String::new();
    if let Some(p) = &a.param {
        match op {
            T_COUNT_VALUES => {
                value_label = ev.eval(unparen(p), ts)?.into_string()?;
                if !is_valid_label_name(&value_label) {
                    return Err(EvalError::new(format!(
                        "invalid label name {value_label:?}"
                    )));
                }
            }
            T_TOPK | T_BOTTOMK => {
                let f = ev.eval(p, ts)?.into_scalar()?;
                // Go's convertibleToInt64 bounds, as floats.
                if f.is_nan()
                    || !(-9.223_372_036_854_776e18..=9.223_372_036_854_776e18).contains(&f)
                {
                    return Err(EvalError::new(format!("Scalar value {f} overflows int64")));
                }
                // Truncate like Go's int64(f); negatives give an empty result below.
                let kf = f.trunc();
                if kf < 1.0 {
                    let _ = ev.eval(&a.expr, ts)?.into_vector()?;
                    return Ok(Val::Vector(Vec::new()));
                }
                // The heap never holds more than the input anyway.
                k = if kf >= usize::MAX as f64 {
                    usize::MAX
                } else {
                    kf as usize
                };
            }
            T_QUANTILE => q = ev.eval(p, ts)?.into_scalar()?,
            _ => {}
        }
    }
    let vec = ev.eval(&a.expr, ts)?.into_vector()?;

    let (without, mut grouping): (bool, Vec<&str>) = match &a.modifier {
        Some(LabelModifier::Include(ls)) => (false, ls.labels.iter().map(String::as_str).collect()),
        Some(LabelModifier::Exclude(ls)) => (true, ls.labels.iter().map(String::as_str).collect()),
        None => (false, Vec::new()),
    };
    if op == T_COUNT_VALUES && !without {
        grouping.push(value_label.as_str());
    }
    grouping.sort_unstable();
    grouping.dedup();

    let key_of = |l: &Labels| -> u64 {
        if without {
            signature(l, |n| n != METRIC_NAME && !grouping.contains(&n))
        } else if grouping.is_empty() {
            0
        } else {
            signature(l, |n| grouping.contains(&n))
        }
    };
    let group_labels = |l: &Labels| -> Labels {
        if without {
            Labels::from_pairs(
                l.iter()
                    .filter(|(n, _)| *n != METRIC_NAME && !grouping.contains(n)),
            )
        } else {
            Labels::from_pairs(l.iter().filter(|(n, _)| grouping.contains(n)))
        }
    };

    let mut index: HashMap<u64, usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    for s in vec {
        let (labels, key) = if op == T_COUNT_VALUES {
            let mut l = Labels::clone(&s.labels);
            l.set(value_label.as_str(), format_value(s.value));
            let key = key_of(&l);
            (Arc::new(l), key)
        } else {
            let key = key_of(&s.labels);
            (s.labels, key)
        };
        let v = s.value;
        let Some(&gi) = index.get(&key) else {
            index.insert(key, groups.len());
            let mut g = Group {
                labels: Arc::new(group_labels(&labels)),
                value: v,
                mean: v,
                count: 1,
                heap: Vec::new(),
            };
            match op {
                T_STDDEV | T_STDVAR => g.value = 0.0,
                T_TOPK | T_BOTTOMK | T_QUANTILE => g.heap.push(S { labels, value: v }),
                T_GROUP => g.value = 1.0,
                _ => {}
            }
            groups.push(g);
            continue;
        };
        let g = &mut groups[gi];
        match op {
            T_SUM => g.value += v,
            T_AVG => {
                g.count += 1;
                if g.mean.is_infinite() {
                    if v.is_infinite() && (g.mean > 0.0) == (v > 0.0) {
                        continue;
                    }
                    if !v.is_infinite() && !v.is_nan() {
                        continue;
                    }
                }
                let n = g.count as f64;
                g.mean += v / n - g.mean / n;
            }
            T_GROUP => {}
            T_MAX => {
                if g.value < v || g.value.is_nan() {
                    g.value = v;
                }
            }
            T_MIN => {
                if g.value > v || g.value.is_nan() {
                    g.value = v;
                }
            }
            T_COUNT | T_COUNT_VALUES => g.count += 1,
            T_STDDEV | T_STDVAR => {
                g.count += 1;
                let delta = v - g.mean;
                g.mean += delta / g.count as f64;
                g.value += delta * (v - g.mean);
            }
            T_TOPK | T_BOTTOMK => {
                let less = if op == T_TOPK {
                    topk_less
                } else {
                    bottomk_less
                };
                let replace = g.heap.len() < k || {
                    let top = g.heap[0].value;
                    top.is_nan() || if op == T_TOPK { top < v } else { top > v }
                };
                if replace {
                    if g.heap.len() == k {
                        heap_pop(&mut g.heap, less);
                    }
                    heap_push(&mut g.heap, S { labels, value: v }, less);
                }
            }
            T_QUANTILE => g.heap.push(S { labels, value: v }),
            _ => {
                return Err(EvalError::new(format!("unsupported aggregation {}", a.op)));
            }
        }
    }

    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let value = match op {
            T_AVG => g.mean,
            T_COUNT | T_COUNT_VALUES => g.count as f64,
            T_STDVAR => g.value / g.count as f64,
            T_STDDEV => (g.value / g.count as f64).sqrt(),
            T_TOPK | T_BOTTOMK => {
                let mut h = g.heap;
                // Largest first for topk, smallest first for bottomk; NaN last.
                h.sort_by(|x, y| {
                    let (a, b) = (x.value, y.value);
                    match (a.is_nan(), b.is_nan()) {
                        (true, true) => std::cmp::Ordering::Equal,
                        (true, false) => std::cmp::Ordering::Greater,
                        (false, true) => std::cmp::Ordering::Less,
                        (false, false) if op == T_TOPK => b.total_cmp(&a),
                        (false, false) => a.total_cmp(&b),
                    }
                });
                out.extend(h);
                continue;
            }
            T_QUANTILE => {
                let mut vals: Vec<f64> = g.heap.iter().map(|s| s.value).collect();
                quantile(q, &mut vals)
            }
            _ => g.value,
        };
        out.push(S {
            labels: g.labels,
            value,
        });
    }
    // Groups have distinct label sets by construction (topk and bottomk return input
    // elements, which are distinct), so Prometheus's duplicate check cannot fire here.
    Ok(Val::Vector(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_values_formats_like_go() {
        assert_eq!(format_value(6.0), "6");
        assert_eq!(format_value(0.5), "0.5");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(1e21), "1000000000000000000000");
    }
}
