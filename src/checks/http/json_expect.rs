//! `json_expect`: small assertions on a JSON response body, written as one string each.
//!
//! ```text
//! $.status == "ok"          equal to a JSON literal
//! $.checks.db != false      present and not equal
//! $.uptime > 0              numeric comparison: <, <=, >, >=
//! $.version =~ "^1\\."      regular expression (unanchored); !~ for "does not match"
//! $.status                  present and not null
//! ```
//!
//! A path starts at `$` and goes down with `.key`, `["key with.dots"]` (a JSON string)
//! and `[0]` (an array index; `[-1]` is the last element). The right side is a JSON
//! literal. Every expectation is parsed when the config is read, so a typo is a config
//! error, not a failing probe. A missing path fails every kind of expectation, `!=`
//! included: when the body's shape changed, the check should say so.

use std::fmt;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// How long an actual value may be in a failure detail.
const MAX_SHOWN: usize = 80;

/// One parsed `json_expect` entry.
#[derive(Clone)]
pub struct JsonExpect {
    text: String,
    path_text: String,
    path: Vec<Segment>,
    test: Test,
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Key(String),
    Index(i64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Ordering {
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone)]
enum Test {
    Present,
    Eq(Value),
    Ne(Value),
    Compare(Ordering, f64),
    Matches(regex::Regex),
    NotMatches(regex::Regex),
}

impl fmt::Debug for JsonExpect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl fmt::Display for JsonExpect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialEq for JsonExpect {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl<'de> Deserialize<'de> for JsonExpect {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        JsonExpect::parse(&s).map_err(serde::de::Error::custom)
    }
}

const OPERATORS: [&str; 8] = ["==", "!=", "<=", ">=", "=~", "!~", "<", ">"];

impl JsonExpect {
    /// Parses one expectation, like `$.status == "ok"`.
    ///
    /// # Errors
    /// A message saying what is wrong and where.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        let fail = |what: String| format!("invalid json_expect {text:?}: {what}");
        let rest = trimmed
            .strip_prefix('$')
            .ok_or_else(|| fail("a path starts with $, like $.status".to_string()))?;
        let (path, rest) = parse_path(rest).map_err(fail)?;
        let path_text = trimmed[..trimmed.len() - rest.len()].to_string();
        let rest = rest.trim_start();
        let test = if rest.is_empty() {
            Test::Present
        } else {
            let Some(op) = OPERATORS.iter().find(|op| rest.starts_with(**op)) else {
                return Err(fail(format!(
                    "expected an operator (==, !=, <, <=, >, >=, =~, !~) after {path_text}, \
                     found {rest:?}"
                )));
            };
            let literal = rest[op.len()..].trim();
            if literal.is_empty() {
                return Err(fail(format!("nothing after {op}")));
            }
            let value: Value = serde_json::from_str(literal).map_err(|e| {
                fail(format!(
                    "the right side {literal:?} is not a JSON literal ({e}); strings take double quotes"
                ))
            })?;
            parse_test(op, value).map_err(fail)?
        };
        Ok(JsonExpect {
            text: trimmed.to_string(),
            path_text,
            path,
            test,
        })
    }

    /// Checks a parsed body.
    ///
    /// # Errors
    /// What failed, with the actual value (shortened), like `got "degraded"`.
    pub fn check(&self, body: &Value) -> Result<(), String> {
        let mut node = body;
        for seg in &self.path {
            let next = match seg {
                Segment::Key(k) => node.as_object().and_then(|o| o.get(k)),
                Segment::Index(i) => node.as_array().and_then(|a| {
                    let idx = if *i < 0 {
                        usize::try_from(i.unsigned_abs())
                            .ok()
                            .and_then(|back| a.len().checked_sub(back))
                    } else {
                        usize::try_from(*i).ok()
                    };
                    idx.and_then(|idx| a.get(idx))
                }),
            };
            node = next.ok_or_else(|| format!("{} is missing", self.path_text))?;
        }
        let got = || format!("got {}", shown(node));
        match &self.test {
            Test::Present if node.is_null() => Err(format!("{} is null", self.path_text)),
            Test::Present => Ok(()),
            Test::Eq(want) if json_eq(node, want) => Ok(()),
            Test::Ne(want) if !json_eq(node, want) => Ok(()),
            Test::Eq(_) | Test::Ne(_) => Err(got()),
            Test::Compare(ord, want) => {
                let Some(v) = node.as_f64() else {
                    return Err(format!("{}, not a number", got()));
                };
                let ok = match ord {
                    Ordering::Lt => v < *want,
                    Ordering::Le => v <= *want,
                    Ordering::Gt => v > *want,
                    Ordering::Ge => v >= *want,
                };
                if ok { Ok(()) } else { Err(got()) }
            }
            Test::Matches(re) | Test::NotMatches(re) => {
                let text = match node {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let want = matches!(self.test, Test::Matches(_));
                if re.is_match(&text) == want {
                    Ok(())
                } else {
                    Err(got())
                }
            }
        }
    }
}

fn parse_test(op: &str, value: Value) -> Result<Test, String> {
    match op {
        "==" => Ok(Test::Eq(value)),
        "!=" => Ok(Test::Ne(value)),
        "=~" | "!~" => {
            let Value::String(pattern) = value else {
                return Err(format!("{op} takes a regular expression in a JSON string"));
            };
            let re = regex::Regex::new(&pattern)
                .map_err(|e| format!("invalid regular expression: {e}"))?;
            Ok(if op == "=~" {
                Test::Matches(re)
            } else {
                Test::NotMatches(re)
            })
        }
        _ => {
            let Some(n) = value.as_f64() else {
                return Err(format!("{op} compares with a number, not {value}"));
            };
            let ord = match op {
                "<" => Ordering::Lt,
                "<=" => Ordering::Le,
                ">" => Ordering::Gt,
                _ => Ordering::Ge,
            };
            Ok(Test::Compare(ord, n))
        }
    }
}

/// Parses the segments after `$`; returns them and the unparsed rest.
fn parse_path(mut rest: &str) -> Result<(Vec<Segment>, &str), String> {
    let mut path = Vec::new();
    loop {
        if let Some(after) = rest.strip_prefix('.') {
            let len = after
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(after.len());
            if len == 0 {
                return Err("expected a key after '.'; write other keys as [\"key\"]".to_string());
            }
            path.push(Segment::Key(after[..len].to_string()));
            rest = &after[len..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let after = after.trim_start();
            let (seg, after) = if after.starts_with('"') {
                let end = json_string_end(after)
                    .ok_or_else(|| "unterminated string in [\"...\"]".to_string())?;
                let key: String = serde_json::from_str(&after[..end])
                    .map_err(|e| format!("invalid key {}: {e}", &after[..end]))?;
                (Segment::Key(key), &after[end..])
            } else {
                let len = after
                    .find(|c: char| !(c.is_ascii_digit() || c == '-'))
                    .unwrap_or(after.len());
                let index: i64 = after[..len].parse().map_err(|_| {
                    "expected an index like [0] or a key like [\"name\"] after '['".to_string()
                })?;
                (Segment::Index(index), &after[len..])
            };
            rest = after
                .trim_start()
                .strip_prefix(']')
                .ok_or_else(|| "expected ']'".to_string())?;
            path.push(seg);
        } else {
            return Ok((path, rest));
        }
    }
}

/// The byte index just past the closing quote of the JSON string `s` starts with.
fn json_string_end(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// JSON equality where `1` equals `1.0`.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        _ => a == b,
    }
}

fn shown(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() <= MAX_SHOWN {
        text
    } else {
        let cut: String = text.chars().take(MAX_SHOWN).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_parse() {
        for (text, path, path_text) in [
            ("$", vec![], "$"),
            ("$.status", vec![Segment::Key("status".into())], "$.status"),
            (
                "$.checks.db != false",
                vec![Segment::Key("checks".into()), Segment::Key("db".into())],
                "$.checks.db",
            ),
            (
                r#"$["key with.dots"][0].a-b_c"#,
                vec![
                    Segment::Key("key with.dots".into()),
                    Segment::Index(0),
                    Segment::Key("a-b_c".into()),
                ],
                r#"$["key with.dots"][0].a-b_c"#,
            ),
            (
                r#"$[ "q\"uote]" ][-1]>1"#,
                vec![Segment::Key("q\"uote]".into()), Segment::Index(-1)],
                r#"$[ "q\"uote]" ][-1]"#,
            ),
        ] {
            let e = JsonExpect::parse(text).unwrap();
            assert_eq!(e.path, path, "{text}");
            assert_eq!(e.path_text, path_text, "{text}");
        }
    }

    #[test]
    fn bad_expectations_are_config_errors() {
        for (text, needle) in [
            ("status == 1", "starts with $"),
            ("$.", "expected a key"),
            ("$[x]", "expected an index"),
            ("$[0", "expected ']'"),
            (r#"$["a]"#, "unterminated"),
            ("$.a = 1", "expected an operator"),
            ("$.a ==", "nothing after =="),
            ("$.a == ok", "not a JSON literal"),
            ("$.a > \"1\"", "compares with a number"),
            ("$.a =~ 1", "regular expression in a JSON string"),
            ("$.a =~ \"(\"", "invalid regular expression"),
        ] {
            let err = JsonExpect::parse(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
            assert!(err.starts_with("invalid json_expect"), "{err}");
        }
    }

    #[test]
    fn expectations_evaluate() {
        let body = json!({
            "status": "ok",
            "checks": {"db": true, "cache": false, "none": null},
            "uptime": 12.5,
            "count": 3,
            "version": "1.4.2",
            "items": [{"id": 7}, {"id": 8}],
            "a.b": "dotted",
        });
        let cases: &[(&str, Result<(), &str>)] = &[
            (r#"$.status == "ok""#, Ok(())),
            (r#"$.status == "down""#, Err(r#"got "ok""#)),
            ("$.checks.db != false", Ok(())),
            ("$.checks.cache != false", Err("got false")),
            (
                "$.checks.missing != false",
                Err("$.checks.missing is missing"),
            ),
            ("$.uptime > 0", Ok(())),
            ("$.uptime >= 12.5", Ok(())),
            ("$.uptime < 10", Err("got 12.5")),
            ("$.count == 3.0", Ok(())),
            ("$.count <= 3", Ok(())),
            ("$.status > 0", Err(r#"got "ok", not a number"#)),
            (r#"$.version =~ "^1\\.""#, Ok(())),
            (r#"$.version !~ "^1\\.""#, Err(r#"got "1.4.2""#)),
            (r#"$.count =~ "^3$""#, Ok(())),
            ("$.status", Ok(())),
            ("$.checks.none", Err("$.checks.none is null")),
            ("$.nope", Err("$.nope is missing")),
            ("$.items[1].id == 8", Ok(())),
            ("$.items[-1].id == 8", Ok(())),
            ("$.items[2]", Err("$.items[2] is missing")),
            ("$.items[-3]", Err("$.items[-3] is missing")),
            (r#"$["a.b"] == "dotted""#, Ok(())),
            ("$.status.deeper", Err("$.status.deeper is missing")),
            (
                r#"$.checks == {"db": true, "cache": false, "none": null}"#,
                Ok(()),
            ),
        ];
        for (text, want) in cases {
            let got = JsonExpect::parse(text).unwrap().check(&body);
            assert_eq!(got, want.map_err(str::to_string), "{text}");
        }
    }

    #[test]
    fn long_values_are_shortened() {
        let body = json!({"s": "x".repeat(500)});
        let err = JsonExpect::parse(r#"$.s == "y""#)
            .unwrap()
            .check(&body)
            .unwrap_err();
        assert!(err.ends_with('…') && err.chars().count() < 100, "{err}");
    }

    #[test]
    fn deserializes_from_a_string() {
        let e: JsonExpect = serde_json::from_value(json!("$.uptime > 0")).unwrap();
        assert_eq!(e.to_string(), "$.uptime > 0");
        let err = serde_json::from_value::<JsonExpect>(json!("$.uptime >")).unwrap_err();
        assert!(err.to_string().contains("nothing after >"), "{err}");
    }
}
