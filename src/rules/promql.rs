//! PromQL: parse and check an expression at load, evaluate it at one instant.
//!
//! Expressions are parsed with `promql-parser`, then walked: every construct the
//! evaluator does not implement (native-histogram functions, Prometheus 3 additions such
//! as `fill()` or `limitk`, …) is refused with an error that names it, so nothing is
//! silently misread. The evaluator follows Prometheus 2.42 for float samples: closed
//! range windows `[t - range, t]`, a 5-minute lookback for instant selectors, staleness
//! markers ending a series, `offset` (also negative), `@` (with `start()`/`end()`, both
//! the evaluation time of an instant query), subqueries with Prometheus's step alignment,
//! vector matching with its errors, every aggregation and every float function.
//!
//! Evaluation first plans which time window each selector needs (through subqueries,
//! offsets and `@`), reads each selector once from the [`Storage`], then evaluates the
//! tree; subqueries evaluate their inner expression at each of their steps. Label sets
//! are shared (`Arc`) between the data read and the results that keep them.

mod aggregate;
mod binary;
mod functions;

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use promql_parser::label::{METRIC_NAME, MatchOp, Matcher};
use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_MAX, T_MIN, T_QUANTILE, T_STDDEV,
    T_STDVAR, T_SUM, T_TOPK,
};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{
    AtModifier, Expr, Function, MatrixSelector, Offset, SubqueryExpr, VectorSelector,
};

use crate::model::Labels;
pub use crate::rules::storage::Series;
use crate::rules::storage::Storage;
use crate::store::is_stale_marker;

/// Prometheus's default lookback for instant vector selectors: 5 minutes.
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// Step of a subquery written without one (`x[5m:]`): Prometheus uses the global
/// evaluation interval, 1 minute by default (and in its test scripts).
pub const DEFAULT_SUBQUERY_STEP_MS: i64 = 60 * 1000;

/// Most steps one subquery may evaluate (a guard against `x[1y:1s]`).
const MAX_SUBQUERY_STEPS: i64 = 1_000_000;

/// Functions of Prometheus 2.42 that this evaluator implements (floats only).
const SUPPORTED_FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "deg",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_quantile",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "vector",
    "year",
];

/// Why an expression was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromqlError {
    /// Not valid PromQL.
    #[error("parse expression: {0}")]
    Parse(String),
    /// Valid PromQL, but a construct this evaluator does not implement.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// Why an evaluation failed (Prometheus raises the same errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

impl EvalError {
    pub(crate) fn new(msg: impl Into<String>) -> Self {
        EvalError(msg.into())
    }
}

/// The result type of an expression, known at parse time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// A number.
    Scalar,
    /// A string literal.
    String,
    /// An instant vector.
    Vector,
    /// A range vector.
    Matrix,
}

/// A parsed and checked expression.
#[derive(Debug, Clone)]
pub struct Query {
    expr: Expr,
    text: String,
    /// `label_replace` regexes, compiled once at parse.
    regexes: HashMap<String, regex::Regex>,
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Labels, including `__name__` where Prometheus keeps it.
    pub labels: Labels,
    /// Value.
    pub value: f64,
}

/// The result of an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number.
    Scalar(f64),
    /// A string.
    String(String),
    /// An instant vector, in Prometheus's order.
    Vector(Vec<Sample>),
    /// A range vector (a matrix selector or subquery at the top).
    Matrix(Vec<Series>),
}

/// Evaluation settings; [`EvalOptions::default`] is Prometheus's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalOptions {
    /// Lookback of instant vector selectors (5 minutes).
    pub lookback_ms: i64,
    /// Step of subqueries written without one (1 minute; a rule group's interval in
    /// Prometheus).
    pub default_subquery_step_ms: i64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            lookback_ms: LOOKBACK_MS,
            default_subquery_step_ms: DEFAULT_SUBQUERY_STEP_MS,
        }
    }
}

fn register_functions() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // Prometheus 2.42 calls it holt_winters; promql-parser only knows its Prometheus 3
        // name. Registration fails only on a clash with a built-in, which would mean the
        // parser knows the function already.
        let _ = promql_parser::parser::register_extra_functions(vec![Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        )]);
    });
}

/// Parses `text` and refuses the constructs the evaluator does not implement.
///
/// # Errors
/// [`PromqlError::Parse`] for invalid PromQL, [`PromqlError::Unsupported`] naming the
/// first construct not implemented.
pub fn parse(text: &str) -> Result<Query, PromqlError> {
    register_functions();
    let expr = promql_parser::parser::parse(text).map_err(PromqlError::Parse)?;
    check(&expr)?;
    let mut regexes = HashMap::new();
    collect_regexes(&expr, &mut regexes);
    Ok(Query {
        expr,
        text: text.to_string(),
        regexes,
    })
}

/// Prometheus anchors `label_replace` regexes at both ends.
pub(crate) fn compile_anchored(re: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{re})$"))
}

fn collect_regexes(e: &Expr, out: &mut HashMap<String, regex::Regex>) {
    match e {
        Expr::Call(c) => {
            if c.func.name == "label_replace"
                && let Some(Expr::StringLiteral(s)) = c.args.args.get(4).map(|a| unparen(a))
                && let Ok(re) = compile_anchored(&s.val)
            {
                out.insert(s.val.clone(), re);
            }
            for a in &c.args.args {
                collect_regexes(a, out);
            }
        }
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                collect_regexes(p, out);
            }
            collect_regexes(&a.expr, out);
        }
        Expr::Unary(u) => collect_regexes(&u.expr, out),
        Expr::Binary(b) => {
            collect_regexes(&b.lhs, out);
            collect_regexes(&b.rhs, out);
        }
        Expr::Paren(p) => collect_regexes(&p.expr, out),
        Expr::Subquery(s) => collect_regexes(&s.expr, out),
        _ => {}
    }
}

fn check(e: &Expr) -> Result<(), PromqlError> {
    let unsupported = |what: String| Err(PromqlError::Unsupported(what));
    match e {
        Expr::Aggregate(a) => {
            let id = a.op.id();
            if !matches!(
                id,
                T_SUM
                    | T_AVG
                    | T_COUNT
                    | T_MIN
                    | T_MAX
                    | T_GROUP
                    | T_STDDEV
                    | T_STDVAR
                    | T_TOPK
                    | T_BOTTOMK
                    | T_COUNT_VALUES
                    | T_QUANTILE
            ) {
                return unsupported(format!("aggregation {}", a.op));
            }
            if let Some(p) = &a.param {
                check(p)?;
            }
            check(&a.expr)
        }
        Expr::Unary(u) => check(&u.expr),
        Expr::Binary(b) => {
            if let Some(m) = &b.modifier
                && (m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some())
            {
                return unsupported("fill modifier".to_string());
            }
            check(&b.lhs)?;
            check(&b.rhs)
        }
        Expr::Paren(p) => check(&p.expr),
        Expr::Subquery(s) => check(&s.expr),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        Expr::VectorSelector(vs) => check_selector(vs),
        Expr::MatrixSelector(ms) => check_selector(&ms.vs),
        Expr::Call(c) => {
            let name = c.func.name;
            if !SUPPORTED_FUNCTIONS.contains(&name) {
                return if name.starts_with("histogram_") {
                    unsupported(format!("function {name} (native histograms)"))
                } else {
                    unsupported(format!("function {name}"))
                };
            }
            for a in &c.args.args {
                check(a)?;
            }
            Ok(())
        }
        Expr::Extension(x) => unsupported(format!("extension {}", x.expr.name())),
    }
}

fn check_selector(vs: &VectorSelector) -> Result<(), PromqlError> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(PromqlError::Unsupported(
            "`or` between label matchers".to_string(),
        ));
    }
    Ok(())
}

impl Query {
    /// The expression as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The parsed expression.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// The result type (an alerting or recording rule needs a vector or scalar).
    pub fn kind(&self) -> ValueKind {
        match self.expr.value_type() {
            ValueType::Scalar => ValueKind::Scalar,
            ValueType::String => ValueKind::String,
            ValueType::Vector => ValueKind::Vector,
            ValueType::Matrix => ValueKind::Matrix,
        }
    }

    /// How much history the store must keep for this expression: its longest range plus
    /// offset plus enclosing subquery windows, plus the 5-minute lookback. (`@` with a
    /// fixed time can reach further back; that is not counted.)
    pub fn lookback_needed_ms(&self) -> i64 {
        history_needed(&self.expr, 0).saturating_add(LOOKBACK_MS)
    }
}

fn history_needed(e: &Expr, outer: i64) -> i64 {
    match e {
        Expr::Aggregate(a) => {
            let p = a.param.as_ref().map_or(0, |p| history_needed(p, outer));
            p.max(history_needed(&a.expr, outer))
        }
        Expr::Unary(u) => history_needed(&u.expr, outer),
        Expr::Binary(b) => history_needed(&b.lhs, outer).max(history_needed(&b.rhs, outer)),
        Expr::Paren(p) => history_needed(&p.expr, outer),
        Expr::Subquery(s) => {
            let step = s.step.map_or(DEFAULT_SUBQUERY_STEP_MS, dur_ms);
            let here = outer
                .saturating_add(offset_ms(s.offset.as_ref()).max(0))
                .saturating_add(dur_ms(s.range))
                .saturating_add(step);
            history_needed(&s.expr, here)
        }
        Expr::VectorSelector(vs) => outer.saturating_add(offset_ms(vs.offset.as_ref()).max(0)),
        Expr::MatrixSelector(ms) => outer
            .saturating_add(offset_ms(ms.vs.offset.as_ref()).max(0))
            .saturating_add(dur_ms(ms.range)),
        Expr::Call(c) => c
            .args
            .args
            .iter()
            .map(|a| history_needed(a, outer))
            .max()
            .unwrap_or(outer),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => outer,
    }
}

/// Evaluates `q` at `ts_ms` with Prometheus's defaults (5-minute lookback).
///
/// # Errors
/// The errors Prometheus raises at evaluation: many-to-many matching, duplicate output
/// series, invalid function arguments.
pub fn eval_instant(q: &Query, ts_ms: i64, storage: &dyn Storage) -> Result<Value, EvalError> {
    eval_instant_with(q, ts_ms, storage, EvalOptions::default())
}

/// Evaluates `q` at `ts_ms` with explicit [`EvalOptions`].
///
/// # Errors
/// As [`eval_instant`].
pub fn eval_instant_with(
    q: &Query,
    ts_ms: i64,
    storage: &dyn Storage,
    opts: EvalOptions,
) -> Result<Value, EvalError> {
    let mut ev = Evaluator {
        query: q,
        query_ts: ts_ms,
        opts,
        data: HashMap::new(),
        regex_cache: HashMap::new(),
    };
    let mut plans: HashMap<usize, Plan<'_>> = HashMap::new();
    ev.plan(&q.expr, ts_ms, ts_ms, &mut plans);
    for (addr, p) in plans {
        let mut matchers = p.vs.matchers.clone();
        if let Some(name) = &p.vs.name {
            matchers
                .matchers
                .insert(0, Matcher::new(MatchOp::Equal, METRIC_NAME, name));
        }
        let series = storage
            .select(&matchers, p.lo, p.hi)
            .into_iter()
            .map(|s| SelSeries {
                labels: Arc::new(s.labels),
                samples: s.samples,
            })
            .collect();
        ev.data.insert(addr, series);
    }
    Ok(match ev.eval(&q.expr, ts_ms)? {
        Val::Scalar(v) => Value::Scalar(v),
        Val::Str(s) => Value::String(s),
        Val::Vector(v) => Value::Vector(
            v.into_iter()
                .map(|s| Sample {
                    labels: Arc::unwrap_or_clone(s.labels),
                    value: s.value,
                })
                .collect(),
        ),
        Val::Matrix(m) => Value::Matrix(
            m.into_iter()
                .map(|s| Series {
                    labels: Arc::unwrap_or_clone(s.labels),
                    samples: s.points,
                })
                .collect(),
        ),
    })
}

// ---------------------------------------------------------------------------------------
// Evaluator internals, shared with the submodules.

/// An instant-vector element inside the evaluator (labels shared, not cloned).
#[derive(Debug, Clone)]
pub(crate) struct S {
    pub(crate) labels: Arc<Labels>,
    pub(crate) value: f64,
}

/// A range-vector series inside the evaluator.
#[derive(Debug, Clone)]
pub(crate) struct RSeries {
    pub(crate) labels: Arc<Labels>,
    pub(crate) points: Vec<(i64, f64)>,
}

/// An intermediate value.
#[derive(Debug, Clone)]
pub(crate) enum Val {
    Scalar(f64),
    Str(String),
    Vector(Vec<S>),
    Matrix(Vec<RSeries>),
}

impl Val {
    fn type_name(&self) -> &'static str {
        match self {
            Val::Scalar(_) => "scalar",
            Val::Str(_) => "string",
            Val::Vector(_) => "instant vector",
            Val::Matrix(_) => "range vector",
        }
    }

    pub(crate) fn into_vector(self) -> Result<Vec<S>, EvalError> {
        match self {
            Val::Vector(v) => Ok(v),
            other => Err(EvalError::new(format!(
                "expected instant vector, got {}",
                other.type_name()
            ))),
        }
    }

    pub(crate) fn into_scalar(self) -> Result<f64, EvalError> {
        match self {
            Val::Scalar(v) => Ok(v),
            other => Err(EvalError::new(format!(
                "expected scalar, got {}",
                other.type_name()
            ))),
        }
    }

    pub(crate) fn into_string(self) -> Result<String, EvalError> {
        match self {
            Val::Str(v) => Ok(v),
            other => Err(EvalError::new(format!(
                "expected string, got {}",
                other.type_name()
            ))),
        }
    }
}

struct SelSeries {
    labels: Arc<Labels>,
    samples: Vec<(i64, f64)>,
}

struct Plan<'q> {
    vs: &'q VectorSelector,
    lo: i64,
    hi: i64,
}

pub(crate) struct Evaluator<'q> {
    query: &'q Query,
    /// Regexes compiled during this evaluation (those not known at parse).
    regex_cache: HashMap<String, Option<regex::Regex>>,
    /// `start()` and `end()` of the query (both its evaluation time).
    query_ts: i64,
    opts: EvalOptions,
    /// Series read for each selector node, keyed by the node's address.
    data: HashMap<usize, Vec<SelSeries>>,
}

pub(crate) fn dur_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn offset_ms(o: Option<&Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => dur_ms(*d),
        Some(Offset::Neg(d)) => -dur_ms(*d),
    }
}

fn system_time_ms(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => dur_ms(d),
        Err(e) => -dur_ms(e.duration()),
    }
}

/// Strips any number of parentheses.
pub(crate) fn unparen(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

fn selector_key(vs: &VectorSelector) -> usize {
    std::ptr::from_ref(vs) as usize
}

impl Evaluator<'_> {
    /// The anchored regex for `text`, `None` when it does not compile.
    pub(crate) fn regex(&mut self, text: &str) -> Option<regex::Regex> {
        if let Some(r) = self.query.regexes.get(text) {
            return Some(r.clone());
        }
        if let Some(r) = self.regex_cache.get(text) {
            return r.clone();
        }
        let r = compile_anchored(text).ok();
        self.regex_cache.insert(text.to_string(), r.clone());
        r
    }

    fn base_time(&self, at: Option<&AtModifier>, ts: i64) -> i64 {
        match at {
            None => ts,
            Some(AtModifier::At(t)) => system_time_ms(*t),
            Some(AtModifier::Start | AtModifier::End) => self.query_ts,
        }
    }

    /// The time an instant selector looks at (or a range selector's window ends at).
    fn ref_time(&self, vs: &VectorSelector, ts: i64) -> i64 {
        self.base_time(vs.at.as_ref(), ts)
            .saturating_sub(offset_ms(vs.offset.as_ref()))
    }

    fn subquery_step(&self, sq: &SubqueryExpr) -> i64 {
        match sq.step.map(dur_ms) {
            Some(s) if s > 0 => s,
            _ => self.opts.default_subquery_step_ms.max(1),
        }
    }

    /// First step, last step and step of a subquery evaluated at `ts`: steps are
    /// multiples of the step, from the first one at or after `end - range`.
    fn subquery_times(&self, sq: &SubqueryExpr, ts: i64) -> (i64, i64, i64) {
        let step = self.subquery_step(sq);
        let end = self
            .base_time(sq.at.as_ref(), ts)
            .saturating_sub(offset_ms(sq.offset.as_ref()));
        let raw = end.saturating_sub(dur_ms(sq.range));
        // Go's integer division truncates towards zero, as Rust's does.
        let mut start = step.saturating_mul(raw / step);
        if start < raw {
            start = start.saturating_add(step);
        }
        (start, end, step)
    }

    /// Records, for every selector, the window of samples an evaluation at every time in
    /// `[lo, hi]` needs.
    fn plan<'q>(&self, e: &'q Expr, lo: i64, hi: i64, plans: &mut HashMap<usize, Plan<'q>>) {
        let mut need = |vs: &'q VectorSelector, back: i64| {
            let (a, b) = (self.ref_time(vs, lo), self.ref_time(vs, hi));
            let (from, to) = (a.min(b).saturating_sub(back), a.max(b));
            plans
                .entry(selector_key(vs))
                .and_modify(|p| {
                    p.lo = p.lo.min(from);
                    p.hi = p.hi.max(to);
                })
                .or_insert(Plan {
                    vs,
                    lo: from,
                    hi: to,
                });
        };
        match e {
            Expr::VectorSelector(vs) => need(vs, self.opts.lookback_ms),
            Expr::MatrixSelector(ms) => need(&ms.vs, dur_ms(ms.range)),
            Expr::Subquery(sq) => {
                let (start, _, _) = self.subquery_times(sq, lo);
                let (_, end, _) = self.subquery_times(sq, hi);
                self.plan(&sq.expr, start, end, plans);
            }
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    self.plan(p, lo, hi, plans);
                }
                self.plan(&a.expr, lo, hi, plans);
            }
            Expr::Unary(u) => self.plan(&u.expr, lo, hi, plans),
            Expr::Binary(b) => {
                self.plan(&b.lhs, lo, hi, plans);
                self.plan(&b.rhs, lo, hi, plans);
            }
            Expr::Paren(p) => self.plan(&p.expr, lo, hi, plans),
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.plan(a, lo, hi, plans);
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }

    pub(crate) fn eval(&mut self, e: &Expr, ts: i64) -> Result<Val, EvalError> {
        match e {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, ts),
            Expr::Unary(u) => match self.eval(&u.expr, ts)? {
                Val::Scalar(v) => Ok(Val::Scalar(-v)),
                Val::Vector(v) => {
                    let uniform = names_uniform(v.iter().map(|s| &*s.labels));
                    let out: Vec<S> = v
                        .into_iter()
                        .map(|s| S {
                            labels: drop_name(&s.labels),
                            value: -s.value,
                        })
                        .collect();
                    if !uniform {
                        check_duplicates(&out)?;
                    }
                    Ok(Val::Vector(out))
                }
                other => Err(EvalError::new(format!(
                    "unary minus on {}",
                    other.type_name()
                ))),
            },
            Expr::VectorSelector(vs) => Ok(Val::Vector(
                self.instant_lookup(vs, ts)
                    .map(|(labels, _, v)| S {
                        labels: Arc::clone(labels),
                        value: v,
                    })
                    .collect(),
            )),
            Expr::MatrixSelector(ms) => {
                let mut out = Vec::new();
                self.for_each_window(ms, ts, |labels, points| {
                    out.push(RSeries {
                        labels: Arc::clone(labels),
                        points: points.to_vec(),
                    });
                });
                Ok(Val::Matrix(out))
            }
            Expr::Subquery(sq) => Ok(Val::Matrix(self.eval_subquery(sq, ts)?)),
            Expr::Aggregate(a) => aggregate::eval(self, a, ts),
            Expr::Binary(b) => binary::eval(self, b, ts),
            Expr::Call(c) => functions::eval(self, c, ts),
            Expr::Extension(x) => Err(EvalError::new(format!(
                "unsupported extension {}",
                x.expr.name()
            ))),
        }
    }

    /// The latest sample of each selected series at or before the selector's reference
    /// time, within the lookback, unless that sample is a staleness marker.
    pub(crate) fn instant_lookup<'a>(
        &'a self,
        vs: &VectorSelector,
        ts: i64,
    ) -> impl Iterator<Item = (&'a Arc<Labels>, i64, f64)> + 'a {
        let reft = self.ref_time(vs, ts);
        let floor = reft.saturating_sub(self.opts.lookback_ms);
        self.data
            .get(&selector_key(vs))
            .map(|v| v.as_slice())
            .unwrap_or(&[])
            .iter()
            .filter_map(move |s| {
                let i = s.samples.partition_point(|(t, _)| *t <= reft);
                let (t, v) = *s.samples.get(i.checked_sub(1)?)?;
                (t >= floor && !is_stale_marker(v)).then_some((&s.labels, t, v))
            })
    }

    /// Calls `f` with each selected series' samples in the closed window
    /// `[ref - range, ref]`, staleness markers left out; series with no sample are skipped.
    pub(crate) fn for_each_window(
        &self,
        ms: &MatrixSelector,
        ts: i64,
        mut f: impl FnMut(&Arc<Labels>, &[(i64, f64)]),
    ) {
        let reft = self.ref_time(&ms.vs, ts);
        let start = reft.saturating_sub(dur_ms(ms.range));
        let Some(series) = self.data.get(&selector_key(&ms.vs)) else {
            return;
        };
        let mut buf: Vec<(i64, f64)> = Vec::new();
        for s in series {
            let from = s.samples.partition_point(|(t, _)| *t < start);
            let to = s.samples.partition_point(|(t, _)| *t <= reft);
            let window = s.samples.get(from..to).unwrap_or(&[]);
            if window.iter().any(|(_, v)| is_stale_marker(*v)) {
                buf.clear();
                buf.extend(window.iter().filter(|(_, v)| !is_stale_marker(*v)));
                if !buf.is_empty() {
                    f(&s.labels, &buf);
                }
            } else if !window.is_empty() {
                f(&s.labels, window);
            }
        }
    }

    /// The window `(start, end)` a matrix selector covers at `ts`, for extrapolation.
    pub(crate) fn matrix_window(&self, ms: &MatrixSelector, ts: i64) -> (i64, i64) {
        let end = self.ref_time(&ms.vs, ts);
        (end.saturating_sub(dur_ms(ms.range)), end)
    }

    /// Evaluates a subquery's inner expression at each of its steps.
    pub(crate) fn eval_subquery(
        &mut self,
        sq: &SubqueryExpr,
        ts: i64,
    ) -> Result<Vec<RSeries>, EvalError> {
        let (start, end, step) = self.subquery_times(sq, ts);
        if end >= start && (end - start) / step >= MAX_SUBQUERY_STEPS {
            return Err(EvalError::new(format!(
                "subquery {} evaluates more than {MAX_SUBQUERY_STEPS} steps",
                Expr::Subquery(sq.clone())
            )));
        }
        let mut out: Vec<RSeries> = Vec::new();
        let mut index: HashMap<Arc<Labels>, usize> = HashMap::new();
        let mut t = start;
        while t <= end {
            match self.eval(&sq.expr, t)? {
                Val::Vector(v) => {
                    for s in v {
                        match index.get(&s.labels) {
                            Some(&i) => out[i].points.push((t, s.value)),
                            None => {
                                index.insert(Arc::clone(&s.labels), out.len());
                                out.push(RSeries {
                                    labels: s.labels,
                                    points: vec![(t, s.value)],
                                });
                            }
                        }
                    }
                }
                Val::Scalar(v) => match out.first_mut() {
                    Some(s) => s.points.push((t, v)),
                    None => out.push(RSeries {
                        labels: Arc::new(Labels::new()),
                        points: vec![(t, v)],
                    }),
                },
                other => {
                    return Err(EvalError::new(format!(
                        "subquery over {}",
                        other.type_name()
                    )));
                }
            }
            t = t.saturating_add(step);
        }
        Ok(out)
    }

    /// The window `(start, end)` a subquery covers at `ts`, for extrapolation.
    pub(crate) fn subquery_window(&self, sq: &SubqueryExpr, ts: i64) -> (i64, i64) {
        let end = self
            .base_time(sq.at.as_ref(), ts)
            .saturating_sub(offset_ms(sq.offset.as_ref()));
        (end.saturating_sub(dur_ms(sq.range)), end)
    }
}

/// The label set without `__name__` (shared, not copied, when there is none).
pub(crate) fn drop_name(labels: &Arc<Labels>) -> Arc<Labels> {
    if labels.get(METRIC_NAME).is_some() {
        let mut l = Labels::clone(labels);
        l.remove(METRIC_NAME);
        Arc::new(l)
    } else {
        Arc::clone(labels)
    }
}

/// A fast, non-cryptographic hasher (the rustc "Fx" scheme) for sets whose keys are
/// compared for equality anyway: hash quality only affects speed there.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type FxBuild = std::hash::BuildHasherDefault<FxHasher>;

/// True when every element carries the same metric name (or none does): dropping the
/// name then cannot make two of them equal.
pub(crate) fn names_uniform<'a>(mut labels: impl Iterator<Item = &'a Labels>) -> bool {
    let Some(first) = labels.next() else {
        return true;
    };
    let name = first.get(METRIC_NAME);
    labels.all(|l| l.get(METRIC_NAME) == name)
}

/// Prometheus's "vector cannot contain metrics with the same labelset".
pub(crate) fn check_duplicates(v: &[S]) -> Result<(), EvalError> {
    if v.len() < 2 {
        return Ok(());
    }
    let mut seen: HashSet<&Labels, FxBuild> =
        HashSet::with_capacity_and_hasher(v.len(), FxBuild::default());
    for s in v {
        if !seen.insert(&s.labels) {
            return Err(EvalError::new(
                "vector cannot contain metrics with the same labelset",
            ));
        }
    }
    Ok(())
}

/// Sets `name` to `value`, or removes it when `value` is empty (Prometheus has no
/// empty-valued labels).
pub(crate) fn set_or_remove(labels: &mut Labels, name: &str, value: &str) {
    if value.is_empty() {
        labels.remove(name);
    } else {
        labels.set(name, value);
    }
}

/// A hash of the label pairs that `keep` accepts (a grouping or matching signature).
pub(crate) fn signature(labels: &Labels, mut keep: impl FnMut(&str) -> bool) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (k, v) in labels.iter() {
        if keep(k) {
            k.hash(&mut h);
            0xffu8.hash(&mut h);
            v.hash(&mut h);
            0xffu8.hash(&mut h);
        }
    }
    h.finish()
}

/// Go's `math.Max`: NaN when either is NaN.
pub(crate) fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == b {
        // +0 wins over -0.
        if a.is_sign_negative() { b } else { a }
    } else if a > b {
        a
    } else {
        b
    }
}

/// Go's `math.Min`: NaN when either is NaN.
pub(crate) fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == b {
        // -0 wins over +0.
        if a.is_sign_negative() { a } else { b }
    } else if a < b {
        a
    } else {
        b
    }
}

/// True when `s` is a valid label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub(crate) fn is_valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_unsupported_constructs_by_name() {
        let cases = [
            ("histogram_count(x)", "function histogram_count"),
            ("limitk(1, x)", "aggregation limitk"),
            ("first_over_time(x[5m])", "function first_over_time"),
            ("x + fill(0) y", "fill modifier"),
        ];
        for (q, want) in cases {
            match parse(q) {
                Err(PromqlError::Unsupported(msg)) => {
                    assert!(msg.contains(want), "{q}: {msg}");
                }
                other => panic!("{q}: {other:?}"),
            }
        }
        assert!(matches!(parse("x +"), Err(PromqlError::Parse(_))));
        assert!(parse("holt_winters(x[5m], 0.5, 0.5)").is_ok());
    }

    #[test]
    fn lookback_counts_ranges_offsets_and_subqueries() {
        let q = parse("rate(x[10m] offset 5m)").expect("parses");
        assert_eq!(q.lookback_needed_ms(), (15 + 5) * 60_000);
        let q = parse("max_over_time(rate(x[1m])[30m:1m])").expect("parses");
        assert_eq!(q.lookback_needed_ms(), (1 + 30 + 1 + 5) * 60_000);
        let q = parse("up").expect("parses");
        assert_eq!(q.lookback_needed_ms(), 5 * 60_000);
    }

    #[test]
    fn go_min_max_propagate_nan() {
        assert!(go_max(f64::NAN, 1.0).is_nan());
        assert!(go_min(1.0, f64::NAN).is_nan());
        assert_eq!(go_max(1.0, 2.0), 2.0);
        assert_eq!(go_min(1.0, 2.0), 1.0);
    }
}
