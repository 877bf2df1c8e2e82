//! Runner for Prometheus's PromQL test-script format (`promql/testdata/*.test`), as
//! Prometheus 2.42's `promql/test.go` reads it:
//!
//! - `load <step>` then indented series lines `metric{labels} <values>`, one value per
//!   step from time 0: `a+bxN` / `a-bxN` expand to N+1 values, `axN` repeats `a` N+1
//!   times, `_` is a missing sample and `_xN` N of them, `stale` a staleness marker;
//!   within one `load`, a series defined twice keeps its last definition;
//! - `clear` empties the storage;
//! - `eval instant at <duration> <expr>`, `eval_ordered …` and `eval_fail …`, then the
//!   expected results: `{labels} value` / `metric{labels} value` lines, or a bare number
//!   for a scalar result; values compare with Prometheus's relative tolerance (1e-6).
//!
//! `eval range` commands count as unsupported, as do cases whose expression the
//! evaluator refuses at parse.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use crate::model::Labels;
use crate::rules::promql::{self, PromqlError, Value};
use crate::rules::storage::MemStorage;
use crate::store::STALE_NAN_BITS;

/// One failed case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Script file (as given).
    pub file: String,
    /// 1-based line of the `eval` command (or of the faulty line).
    pub line: usize,
    /// The expression (or the faulty line).
    pub expr: String,
    /// What differs.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.line, self.expr, self.message
        )
    }
}

/// Counts of one script.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileCounts {
    /// Script file (as given).
    pub file: String,
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed (and script errors).
    pub failed: usize,
    /// Cases not run: refused expressions, `eval range`.
    pub unsupported: usize,
}

/// The outcome of running scripts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed (and script errors).
    pub failed: usize,
    /// Cases not run.
    pub unsupported: usize,
    /// Every failure, in script order.
    pub failures: Vec<Failure>,
    /// Counts per script.
    pub files: Vec<FileCounts>,
}

impl Summary {
    /// `N passed, N failed, N unsupported`.
    pub fn closing_line(&self) -> String {
        format!(
            "{} passed, {} failed, {} unsupported",
            self.passed, self.failed, self.unsupported
        )
    }

    fn absorb(&mut self, counts: FileCounts, failures: Vec<Failure>) {
        self.passed += counts.passed;
        self.failed += counts.failed;
        self.unsupported += counts.unsupported;
        self.failures.extend(failures);
        self.files.push(counts);
    }
}

/// Runs every script; a file that cannot be read counts as one failure.
pub fn run_files<P: AsRef<Path>>(paths: &[P]) -> Summary {
    let mut summary = Summary::default();
    for p in paths {
        let p = p.as_ref();
        let name = p.display().to_string();
        match std::fs::read_to_string(p) {
            Ok(text) => {
                let s = run_script(&name, &text);
                let counts = s.files.into_iter().next().unwrap_or_default();
                summary.absorb(counts, s.failures);
            }
            Err(e) => summary.absorb(
                FileCounts {
                    file: name.clone(),
                    failed: 1,
                    ..FileCounts::default()
                },
                vec![Failure {
                    file: name,
                    line: 0,
                    expr: String::new(),
                    message: format!("read script: {e}"),
                }],
            ),
        }
    }
    summary
}

/// Runs one script given as text; `name` labels its failures.
pub fn run_script(name: &str, text: &str) -> Summary {
    let mut runner = Runner {
        file: name.to_string(),
        storage: MemStorage::new(),
        counts: FileCounts {
            file: name.to_string(),
            ..FileCounts::default()
        },
        failures: Vec::new(),
    };
    runner.run(text);
    let mut summary = Summary::default();
    summary.absorb(runner.counts, runner.failures);
    summary
}

struct Runner {
    file: String,
    storage: MemStorage,
    counts: FileCounts,
    failures: Vec<Failure>,
}

enum Expected {
    /// A bare number: the result must be a scalar.
    Scalar(f64),
    /// Vector elements, with their 1-based position.
    Vector(HashMap<Labels, (usize, f64)>),
}

impl Runner {
    fn fail(&mut self, line: usize, expr: &str, message: impl Into<String>) {
        self.counts.failed += 1;
        self.failures.push(Failure {
            file: self.file.clone(),
            line,
            expr: expr.to_string(),
            message: message.into(),
        });
    }

    fn run(&mut self, text: &str) {
        let lines: Vec<String> = text
            .split('\n')
            .map(|l| {
                let l = l.trim();
                if l.starts_with('#') {
                    String::new()
                } else {
                    l.to_string()
                }
            })
            .collect();
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i].as_str();
            let lineno = i + 1;
            if line.is_empty() {
                i += 1;
                continue;
            }
            let body_end = block_end(&lines, i + 1);
            if line == "clear" {
                self.storage.clear();
                i += 1;
            } else if let Some(step) = line.strip_prefix("load") {
                self.load(step.trim(), &lines, i + 1, body_end, lineno);
                i = body_end;
            } else if line.starts_with("eval") {
                i = self.eval(line, &lines, i + 1, body_end, lineno);
            } else {
                self.fail(lineno, line, "unknown command");
                i += 1;
            }
        }
    }

    fn load(&mut self, step: &str, lines: &[String], from: usize, to: usize, lineno: usize) {
        let step_ms = match parse_duration_ms(step) {
            Ok(s) => s,
            Err(e) => {
                self.fail(lineno, &lines[lineno - 1], e);
                return;
            }
        };
        // Within one load, a series defined twice keeps its last definition.
        let mut defs: BTreeMap<Labels, Vec<Option<f64>>> = BTreeMap::new();
        for (j, l) in lines.iter().enumerate().take(to).skip(from) {
            match parse_series(l) {
                Ok((labels, values)) => {
                    defs.insert(labels, values);
                }
                Err(e) => self.fail(j + 1, l, format!("parse series: {e}")),
            }
        }
        for (labels, values) in defs {
            let samples = values
                .into_iter()
                .enumerate()
                .filter_map(|(k, v)| {
                    let t = i64::try_from(k).ok()?.checked_mul(step_ms)?;
                    v.map(|v| (t, v))
                })
                .collect::<Vec<_>>();
            self.storage.add(labels, samples);
        }
    }

    /// Runs one `eval` command; returns the index of the next line to read.
    fn eval(
        &mut self,
        line: &str,
        lines: &[String],
        from: usize,
        to: usize,
        lineno: usize,
    ) -> usize {
        let Some(cmd) = parse_eval_line(line) else {
            // `eval range` and other forms this runner does not run.
            self.counts.unsupported += 1;
            return to;
        };
        // Expected results: series lines until a blank line; a bare number ends them.
        let mut expected: HashMap<Labels, (usize, f64)> = HashMap::new();
        let mut scalar: Option<f64> = None;
        let mut next = to;
        for (j, l) in lines.iter().enumerate().take(to).skip(from) {
            if let Some(v) = parse_plain_number(l) {
                scalar = Some(v);
                next = j + 1;
                break;
            }
            match parse_series(l) {
                Ok((labels, values)) => match values.as_slice() {
                    [Some(v)] => {
                        let pos = expected.len() + 1;
                        expected.insert(labels, (pos, *v));
                    }
                    _ => {
                        self.fail(j + 1, l, "expected exactly one value per result line");
                        return to;
                    }
                },
                Err(e) => {
                    self.fail(j + 1, l, format!("parse expected result: {e}"));
                    return to;
                }
            }
        }
        let expected = match scalar {
            Some(v) => Expected::Scalar(v),
            None => Expected::Vector(expected),
        };
        let ts_ms = match parse_duration_ms(&cmd.at) {
            Ok(t) => t,
            Err(e) => {
                self.fail(lineno, &cmd.expr, e);
                return next;
            }
        };
        let query = match promql::parse(&cmd.expr) {
            Ok(q) => q,
            Err(PromqlError::Unsupported(_)) => {
                self.counts.unsupported += 1;
                return next;
            }
            Err(e @ PromqlError::Parse(_)) => {
                if cmd.fail {
                    self.counts.passed += 1;
                } else {
                    self.fail(lineno, &cmd.expr, e.to_string());
                }
                return next;
            }
        };
        let result = promql::eval_instant(&query, ts_ms, &self.storage);
        match (cmd.fail, result) {
            (true, Err(_)) => self.counts.passed += 1,
            (true, Ok(_)) => self.fail(lineno, &cmd.expr, "expected an error, got a result"),
            (false, Err(e)) => self.fail(lineno, &cmd.expr, format!("error: {e}")),
            (false, Ok(v)) => match compare(&expected, &v, cmd.ordered) {
                Ok(()) => self.counts.passed += 1,
                Err(msg) => self.fail(lineno, &cmd.expr, msg),
            },
        }
        next
    }
}

/// Index of the first blank line at or after `from` (or the end).
fn block_end(lines: &[String], from: usize) -> usize {
    lines
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, l)| l.is_empty())
        .map_or(lines.len(), |(i, _)| i)
}

struct EvalLine {
    fail: bool,
    ordered: bool,
    at: String,
    expr: String,
}

/// `eval[_fail|_ordered] instant at <duration> <expr>`.
fn parse_eval_line(line: &str) -> Option<EvalLine> {
    let rest = line.strip_prefix("eval")?;
    let (fail, ordered, rest) = if let Some(r) = rest.strip_prefix("_fail") {
        (true, false, r)
    } else if let Some(r) = rest.strip_prefix("_ordered") {
        (false, true, r)
    } else {
        (false, false, rest)
    };
    let mut words = rest.trim_start().splitn(2, char::is_whitespace);
    if words.next()? != "instant" {
        return None;
    }
    let rest = words.next()?.trim_start();
    let rest = rest.strip_prefix("at")?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let mut words = rest.trim_start().splitn(2, char::is_whitespace);
    let at = words.next()?.to_string();
    let expr = words.next()?.trim().to_string();
    if expr.is_empty() {
        return None;
    }
    Some(EvalLine {
        fail,
        ordered,
        at,
        expr,
    })
}

/// Prometheus's almostEqual: NaN equals NaN; otherwise a relative error under 1e-6.
pub fn almost_equal(a: f64, b: f64) -> bool {
    const EPSILON: f64 = 0.000_001;
    let min_normal = f64::from_bits(0x0010_0000_0000_0000);
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || diff < min_normal {
        return diff < EPSILON * min_normal;
    }
    diff / (a.abs() + b.abs()) < EPSILON
}

fn compare(expected: &Expected, got: &Value, ordered: bool) -> Result<(), String> {
    match (expected, got) {
        (Expected::Scalar(want), Value::Scalar(v)) => {
            if almost_equal(*want, *v) {
                Ok(())
            } else {
                Err(format!("expected scalar {want} but got {v}"))
            }
        }
        (Expected::Vector(want), Value::Scalar(v)) if want.is_empty() => {
            Err(format!("expected an empty vector but got scalar {v}"))
        }
        (Expected::Vector(_), Value::Scalar(v)) => {
            Err(format!("expected a vector but got scalar {v}"))
        }
        (Expected::Scalar(want), Value::Vector(_)) => {
            Err(format!("expected scalar {want} but got a vector"))
        }
        (_, Value::Matrix(_)) => Err("received range result on instant evaluation".to_string()),
        (_, Value::String(s)) => Err(format!("received string result {s:?}")),
        (Expected::Vector(want), Value::Vector(v)) => {
            let mut seen = 0usize;
            for (pos, s) in v.iter().enumerate() {
                let Some(&(want_pos, want_v)) = want.get(&s.labels) else {
                    return Err(format!("unexpected metric {} in result", s.labels));
                };
                if ordered && want_pos != pos + 1 {
                    return Err(format!(
                        "expected metric {} with {want_v} at position {want_pos} but was at {}",
                        s.labels,
                        pos + 1
                    ));
                }
                if !almost_equal(want_v, s.value) {
                    return Err(format!(
                        "expected {want_v} for {} but got {}",
                        s.labels, s.value
                    ));
                }
                seen += 1;
            }
            if seen < want.len() {
                let mut missing: Vec<String> = want
                    .keys()
                    .filter(|l| !v.iter().any(|s| &s.labels == *l))
                    .map(|l| l.to_string())
                    .collect();
                missing.sort();
                return Err(format!(
                    "expected metric(s) {} not found (got {} result(s))",
                    missing.join(", "),
                    v.len()
                ));
            }
            Ok(())
        }
    }
}

/// A Prometheus duration: `1h30m`, `5m`, `10s`, `1ms`, `0`.
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    if s == "0" {
        return Ok(0);
    }
    let bad = || format!("invalid duration {s:?}");
    let mut total: i64 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let ms: i64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(ms)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    Ok(total)
}

/// A line that is one number (a scalar expectation), as Go's ParseFloat reads it.
fn parse_plain_number(s: &str) -> Option<f64> {
    if s.contains(char::is_whitespace) || s.contains('{') {
        return None;
    }
    s.parse::<f64>().ok()
}

/// Parses `metric{l="v", …} values…` into labels (with `__name__`) and values.
pub fn parse_series(line: &str) -> Result<(Labels, Vec<Option<f64>>), String> {
    let mut rest = line.trim();
    let mut labels = Labels::new();
    let name_len = rest
        .char_indices()
        .take_while(|(i, c)| {
            c.is_ascii_alphabetic() || *c == '_' || *c == ':' || (*i > 0 && c.is_ascii_digit())
        })
        .count();
    if name_len > 0 {
        labels.set("__name__", &rest[..name_len]);
        rest = &rest[name_len..];
    }
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let n = rest
                .char_indices()
                .take_while(|(i, c)| {
                    c.is_ascii_alphabetic() || *c == '_' || (*i > 0 && c.is_ascii_digit())
                })
                .count();
            if n == 0 {
                return Err(format!("expected a label name at {rest:?}"));
            }
            let lname = &rest[..n];
            rest = rest[n..].trim_start();
            rest = rest
                .strip_prefix('=')
                .ok_or_else(|| format!("expected '=' after label {lname}"))?
                .trim_start();
            let (value, r) = parse_quoted(rest)?;
            if !value.is_empty() {
                labels.set(lname, value);
            }
            rest = r.trim_start();
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if !rest.starts_with('}') {
                return Err(format!("expected ',' or '}}' at {rest:?}"));
            }
        }
    }
    if labels.is_empty() && name_len == 0 && !line.trim_start().starts_with('{') {
        return Err("expected a metric name or labels".to_string());
    }
    let mut values = Vec::new();
    for tok in rest.split_whitespace() {
        values.extend(parse_value_item(tok)?);
    }
    Ok((labels, values))
}

/// A quoted string (`"…"`, `'…'` or `` `…` ``) and the rest of the input.
fn parse_quoted(s: &str) -> Result<(String, &str), String> {
    let mut chars = s.char_indices();
    let Some((_, quote)) = chars.next() else {
        return Err("expected a quoted value".to_string());
    };
    if !matches!(quote, '"' | '\'' | '`') {
        return Err(format!("expected a quoted value at {s:?}"));
    }
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            return Ok((out, &s[i + c.len_utf8()..]));
        }
        if c == '\\' && quote != '`' {
            match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, 'r')) => out.push('\r'),
                Some((_, e)) => out.push(e),
                None => break,
            }
        } else {
            out.push(c);
        }
    }
    Err("unterminated quoted value".to_string())
}

/// A number at the start of `s` (optional sign, decimal with exponent, `Inf`, `NaN`),
/// and the rest.
fn parse_number_prefix(s: &str) -> Result<(f64, &str), String> {
    let bytes = s.as_bytes();
    let mut i = 0;
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        i = 1;
    }
    let tail = &s[i..];
    let lower = tail.to_ascii_lowercase();
    let word_len = if lower.starts_with("infinity") {
        8
    } else if lower.starts_with("inf") || lower.starts_with("nan") {
        3
    } else {
        0
    };
    let end = if word_len > 0 {
        i + word_len
    } else {
        let mut j = i;
        while j < bytes.len() && (bytes[j].is_ascii_digit() || bytes[j] == b'.') {
            j += 1;
        }
        if j > i && j < bytes.len() && matches!(bytes[j], b'e' | b'E') {
            let mut k = j + 1;
            if k < bytes.len() && matches!(bytes[k], b'+' | b'-') {
                k += 1;
            }
            if k < bytes.len() && bytes[k].is_ascii_digit() {
                while k < bytes.len() && bytes[k].is_ascii_digit() {
                    k += 1;
                }
                j = k;
            }
        }
        j
    };
    let text = &s[..end];
    let v = text
        .parse::<f64>()
        .map_err(|_| format!("invalid number {s:?}"))?;
    Ok((v, &s[end..]))
}

fn parse_times(s: &str, tok: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .map_err(|_| format!("invalid repetition in {tok:?}"))
}

/// One value item of a series line, expanded.
fn parse_value_item(tok: &str) -> Result<Vec<Option<f64>>, String> {
    if tok == "_" {
        return Ok(vec![None]);
    }
    if let Some(n) = tok.strip_prefix("_x") {
        return Ok(vec![None; parse_times(n, tok)?]);
    }
    let stale = f64::from_bits(STALE_NAN_BITS);
    if tok == "stale" {
        return Ok(vec![Some(stale)]);
    }
    if let Some(n) = tok.strip_prefix("stalex") {
        return Ok(vec![Some(stale); parse_times(n, tok)? + 1]);
    }
    let (a, rest) = parse_number_prefix(tok)?;
    if rest.is_empty() {
        return Ok(vec![Some(a)]);
    }
    if let Some(n) = rest.strip_prefix('x') {
        return Ok(vec![Some(a); parse_times(n, tok)? + 1]);
    }
    if rest.starts_with(['+', '-']) {
        let (b, rest) = parse_number_prefix(rest)?;
        let n = rest
            .strip_prefix('x')
            .ok_or_else(|| format!("expected 'x' in {tok:?}"))?;
        let n = parse_times(n, tok)?;
        let mut out = Vec::with_capacity(n + 1);
        let mut cur = a;
        for _ in 0..=n {
            out.push(Some(cur));
            cur += b;
        }
        return Ok(out);
    }
    Err(format!("invalid value {tok:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_value_notation() {
        let (l, v) = parse_series(r#"m{a="b"} 1+2x2 _ _x2 stale 5-1x1 0x2 -Inf"#).expect("parses");
        assert_eq!(l.get("__name__"), Some("m"));
        assert_eq!(l.get("a"), Some("b"));
        let want = [
            Some(1.0),
            Some(3.0),
            Some(5.0),
            None,
            None,
            None,
            Some(f64::NAN),
            Some(5.0),
            Some(4.0),
            Some(0.0),
            Some(0.0),
            Some(0.0),
            Some(f64::NEG_INFINITY),
        ];
        assert_eq!(v.len(), want.len());
        for (g, w) in v.iter().zip(want) {
            match (g, w) {
                (Some(g), Some(w)) if w.is_nan() => assert!(crate::store::is_stale_marker(*g)),
                (g, w) => assert_eq!(*g, w),
            }
        }
        let (_, v) = parse_series("m 9.988465674311579e+307").expect("parses");
        assert_eq!(v, vec![Some(9.988_465_674_311_58e307)]);
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration_ms("1ms"), Ok(1));
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("0"), Ok(0));
        assert!(parse_duration_ms("5x").is_err());
    }

    #[test]
    fn almost_equal_is_relative() {
        assert!(almost_equal(3.249615, 3.249_615_361_854_384));
        assert!(!almost_equal(0.0, 1e-300));
        assert!(almost_equal(f64::NAN, f64::NAN));
        assert!(!almost_equal(1.0, 1.1));
    }
}
