//! Binary operators: arithmetic, comparisons (with `bool`), `atan2`, and the set
//! operators, with Prometheus 2.42's vector matching (`on`, `ignoring`, `group_left`,
//! `group_right`) and its errors. Matching is hash-based.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use promql_parser::label::METRIC_NAME;
use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD,
    T_MUL, T_NEQ, T_POW, T_SUB, TokenId,
};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::{
    EvalError, Evaluator, S, Val, check_duplicates, drop_name, names_uniform, set_or_remove,
    signature,
};
use crate::model::Labels;

/// How two vectors are matched.
struct Matching<'a> {
    /// `on(...)` when true, `ignoring(...)` (or nothing) when false.
    on: bool,
    names: Vec<&'a str>,
    card: &'a VectorMatchCardinality,
}

impl Matching<'_> {
    fn sig(&self, labels: &Labels) -> u64 {
        if self.on {
            signature(labels, |k| self.names.contains(&k))
        } else {
            signature(labels, |k| k != METRIC_NAME && !self.names.contains(&k))
        }
    }

    /// The labels that identify a match group, for error messages.
    fn group_labels(&self, labels: &Labels) -> Labels {
        Labels::from_pairs(labels.iter().filter(|(k, _)| {
            if self.on {
                self.names.contains(k)
            } else {
                *k != METRIC_NAME && !self.names.contains(k)
            }
        }))
    }
}

fn is_comparison(op: TokenId) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// Arithmetic drops the metric name; comparisons (without `bool`) and, in Prometheus
/// 2.42, `atan2` keep it.
fn drops_name(op: TokenId) -> bool {
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_POW | T_MOD)
}

/// Go's `math.Mod`: the result has the sign of `x`.
fn go_mod(x: f64, y: f64) -> f64 {
    if y == 0.0 || x.is_infinite() || x.is_nan() || y.is_nan() {
        return f64::NAN;
    }
    x % y
}

/// `(value, keep)`: arithmetic always keeps; a comparison keeps `lhs` when it holds.
fn elem(op: TokenId, l: f64, r: f64) -> Result<(f64, bool), EvalError> {
    Ok(match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_POW => (l.powf(r), true),
        T_MOD => (go_mod(l, r), true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => return Err(EvalError::new(format!("operator {op} not allowed here"))),
    })
}

pub(super) fn eval(ev: &mut Evaluator<'_>, b: &BinaryExpr, ts: i64) -> Result<Val, EvalError> {
    let op = b.op.id();
    let lhs = ev.eval(&b.lhs, ts)?;
    let rhs = ev.eval(&b.rhs, ts)?;
    let return_bool = b.return_bool();
    match (lhs, rhs) {
        (Val::Scalar(l), Val::Scalar(r)) => {
            let (v, keep) = elem(op, l, r)?;
            if is_comparison(op) {
                // The parser demands `bool` between scalars.
                Ok(Val::Scalar(if keep { 1.0 } else { 0.0 }))
            } else {
                Ok(Val::Scalar(v))
            }
        }
        (Val::Vector(v), Val::Scalar(s)) => vector_scalar(op, v, s, false, return_bool),
        (Val::Scalar(s), Val::Vector(v)) => vector_scalar(op, v, s, true, return_bool),
        (Val::Vector(l), Val::Vector(r)) => {
            let (on, names) = match b.modifier.as_ref().and_then(|m| m.matching.as_ref()) {
                Some(LabelModifier::Include(ls)) => (true, &ls.labels[..]),
                Some(LabelModifier::Exclude(ls)) => (false, &ls.labels[..]),
                None => (false, &[][..]),
            };
            let default_card = VectorMatchCardinality::OneToOne;
            let card = b.modifier.as_ref().map_or(&default_card, |m| &m.card);
            let matching = Matching {
                on,
                names: names.iter().map(String::as_str).collect(),
                card,
            };
            let out = match op {
                T_LAND => and(l, r, &matching),
                T_LOR => or(l, r, &matching),
                T_LUNLESS => unless(l, r, &matching),
                _ => vector_vector(op, l, r, &matching, return_bool)?,
            };
            check_duplicates(&out)?;
            Ok(Val::Vector(out))
        }
        (l, r) => Err(EvalError::new(format!(
            "binary operator between {} and {}",
            l.type_name(),
            r.type_name()
        ))),
    }
}

fn vector_scalar(
    op: TokenId,
    v: Vec<S>,
    s: f64,
    swap: bool,
    return_bool: bool,
) -> Result<Val, EvalError> {
    let dropping = drops_name(op) || return_bool;
    // Without a name to drop, labels stay as they were: distinct.
    let check = dropping && !names_uniform(v.iter().map(|s| &*s.labels));
    let mut out = Vec::with_capacity(v.len());
    for mut x in v {
        let (l, r) = if swap { (s, x.value) } else { (x.value, s) };
        let (mut value, mut keep) = elem(op, l, r)?;
        // The vector element's value is kept even when the scalar is on the left.
        if is_comparison(op) && swap {
            value = r;
        }
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
            keep = true;
        }
        if keep {
            x.value = value;
            if dropping {
                x.labels = drop_name(&x.labels);
            }
            out.push(x);
        }
    }
    if check {
        check_duplicates(&out)?;
    }
    Ok(Val::Vector(out))
}

fn vector_vector(
    op: TokenId,
    lhs: Vec<S>,
    rhs: Vec<S>,
    m: &Matching<'_>,
    return_bool: bool,
) -> Result<Vec<S>, EvalError> {
    let (include, one_to_many) = match m.card {
        VectorMatchCardinality::OneToOne => (&[][..], false),
        VectorMatchCardinality::ManyToOne(ls) => (&ls.labels[..], false),
        VectorMatchCardinality::OneToMany(ls) => (&ls.labels[..], true),
        VectorMatchCardinality::ManyToMany => {
            return Err(EvalError::new(
                "many-to-many only allowed for set operators",
            ));
        }
    };
    if lhs.is_empty() || rhs.is_empty() {
        // Nothing can match; Prometheus returns before looking for duplicates.
        return Ok(Vec::new());
    }
    // The "one" side goes right; values are swapped back when computing.
    let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    let mut one_by_sig: HashMap<u64, &S> = HashMap::with_capacity(one.len());
    for s in &one {
        let sig = m.sig(&s.labels);
        if let Some(dup) = one_by_sig.insert(sig, s) {
            let side = if one_to_many { "left" } else { "right" };
            return Err(EvalError::new(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                m.group_labels(&s.labels),
                s.labels,
                dup.labels
            )));
        }
    }
    let one_to_one = matches!(m.card, VectorMatchCardinality::OneToOne);
    // One-to-one: match groups seen. Many-to-one: output label sets per match group.
    let mut matched: HashMap<u64, HashSet<Arc<Labels>>> = HashMap::new();
    let mut cache: HashMap<(usize, usize), Arc<Labels>> = HashMap::new();
    let mut out = Vec::new();
    for ls in &many {
        let sig = m.sig(&ls.labels);
        let Some(rs) = one_by_sig.get(&sig) else {
            continue;
        };
        let (vl, vr) = if one_to_many {
            (rs.value, ls.value)
        } else {
            (ls.value, rs.value)
        };
        let (mut value, keep) = elem(op, vl, vr)?;
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        let key = (
            Arc::as_ptr(&ls.labels) as usize,
            Arc::as_ptr(&rs.labels) as usize,
        );
        let metric = match cache.get(&key) {
            Some(l) => Arc::clone(l),
            None => {
                let l = result_labels(&ls.labels, &rs.labels, op, m, include, return_bool);
                cache.insert(key, Arc::clone(&l));
                l
            }
        };
        let seen = matched.entry(sig).or_default();
        if one_to_one {
            if !seen.is_empty() {
                return Err(EvalError::new(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                ));
            }
        } else if seen.contains(&metric) {
            return Err(EvalError::new(
                "multiple matches for labels: grouping labels must ensure unique matches",
            ));
        }
        seen.insert(Arc::clone(&metric));
        out.push(S {
            labels: metric,
            value,
        });
    }
    Ok(out)
}

fn result_labels(
    many: &Arc<Labels>,
    one: &Labels,
    op: TokenId,
    m: &Matching<'_>,
    include: &[String],
    return_bool: bool,
) -> Arc<Labels> {
    let one_to_one = matches!(m.card, VectorMatchCardinality::OneToOne);
    let drop = drops_name(op) || return_bool;
    if !drop && !one_to_one && include.is_empty() {
        return Arc::clone(many);
    }
    let mut l = Labels::clone(many);
    if drop {
        l.remove(METRIC_NAME);
    }
    if one_to_one {
        if m.on {
            l = Labels::from_pairs(l.iter().filter(|(k, _)| m.names.contains(k)));
        } else {
            for n in &m.names {
                l.remove(n);
            }
        }
    }
    for n in include {
        set_or_remove(&mut l, n, one.get(n).unwrap_or(""));
    }
    Arc::new(l)
}

fn and(lhs: Vec<S>, rhs: Vec<S>, m: &Matching<'_>) -> Vec<S> {
    if lhs.is_empty() || rhs.is_empty() {
        return Vec::new();
    }
    let right: HashSet<u64> = rhs.iter().map(|s| m.sig(&s.labels)).collect();
    lhs.into_iter()
        .filter(|s| right.contains(&m.sig(&s.labels)))
        .collect()
}

fn or(lhs: Vec<S>, rhs: Vec<S>, m: &Matching<'_>) -> Vec<S> {
    if lhs.is_empty() {
        return rhs;
    }
    if rhs.is_empty() {
        return lhs;
    }
    let left: HashSet<u64> = lhs.iter().map(|s| m.sig(&s.labels)).collect();
    let mut out = lhs;
    out.extend(
        rhs.into_iter()
            .filter(|s| !left.contains(&m.sig(&s.labels))),
    );
    out
}

fn unless(lhs: Vec<S>, rhs: Vec<S>, m: &Matching<'_>) -> Vec<S> {
    if lhs.is_empty() || rhs.is_empty() {
        return lhs;
    }
    let right: HashSet<u64> = rhs.iter().map(|s| m.sig(&s.labels)).collect();
    lhs.into_iter()
        .filter(|s| !right.contains(&m.sig(&s.labels)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_mod_keeps_the_sign_of_the_dividend() {
        assert_eq!(go_mod(-7.0, 3.0), -1.0);
        assert_eq!(go_mod(7.0, -3.0), 1.0);
        assert!(go_mod(1.0, 0.0).is_nan());
    }
}
