//! Alertmanager label matchers: `name="value"`, `name!="value"`, `name=~"regex"`,
//! `name!~"regex"`, values quoted or bare, and lists in braces (`{a="1", b=~"x|y"}`),
//! as Alertmanager 0.25 parses them in `matchers:`, `source_matchers:`, silences and
//! `amtool`. Regular expressions are anchored at both ends, as in Prometheus.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::LabelSet;

/// The comparison of a matcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MatchOp {
    /// `=`
    #[serde(rename = "=")]
    Equal,
    /// `!=`
    #[serde(rename = "!=")]
    NotEqual,
    /// `=~`
    #[serde(rename = "=~")]
    Regex,
    /// `!~`
    #[serde(rename = "!~")]
    NotRegex,
}

impl MatchOp {
    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

/// One label matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Comparison.
    pub op: MatchOp,
    /// Value or regular expression as written.
    pub value: String,
    re: Option<regex::Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, self.op, &self.value) == (&other.name, other.op, &other.value)
    }
}

impl Eq for Matcher {}

impl Matcher {
    /// Builds a matcher; regular expressions are compiled (anchored) here.
    ///
    /// # Errors
    /// An invalid label name or regular expression.
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Self, String> {
        if !valid_label_name(name) {
            return Err(format!("invalid label name {name:?}"));
        }
        let re = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                regex::Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("invalid regular expression {value:?}: {e}"))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            re,
        })
    }

    /// True when the label set satisfies the matcher (a missing label is the empty value).
    pub fn matches(&self, labels: &LabelSet) -> bool {
        let v = labels.get(&self.name).map_or("", String::as_str);
        match (&self.op, &self.re) {
            (MatchOp::Equal, _) => v == self.value,
            (MatchOp::NotEqual, _) => v != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(v),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(v),
            _ => false,
        }
    }

    /// Parses one matcher, `name op value` (value quoted or bare).
    ///
    /// # Errors
    /// A message that says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut all = parse_list(text)?;
        match all.len() {
            1 => Ok(all.remove(0)),
            0 => Err(format!("{text:?}: no matcher")),
            _ => Err(format!(
                "{text:?}: expected one matcher, found {}",
                all.len()
            )),
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.name, self.op.as_str(), quote(&self.value))
    }
}

impl Serialize for Matcher {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Matcher::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// True when all matchers match.
pub fn matches_all(matchers: &[Matcher], labels: &LabelSet) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

/// Prints `{a="1", b=~"x"}`.
pub fn format_list(matchers: &[Matcher]) -> String {
    let parts: Vec<String> = matchers.iter().map(ToString::to_string).collect();
    format!("{{{}}}", parts.join(", "))
}

/// A Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn quote(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Parses a comma-separated list of matchers, optionally in braces.
///
/// # Errors
/// A message naming the problem and the text.
pub fn parse_list(text: &str) -> Result<Vec<Matcher>, String> {
    let t = text.trim();
    let inner = match (t.starts_with('{'), t.ends_with('}')) {
        (true, true) if t.len() >= 2 => &t[1..t.len() - 1],
        (false, false) => t,
        _ => return Err(format!("{text:?}: unbalanced braces")),
    };
    let chars: Vec<char> = inner.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= chars.len() {
            break;
        }
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
        let name: String = chars[start..i].iter().collect();
        if name.is_empty() {
            return Err(format!(
                "{text:?}: expected a label name at {:?}",
                rest(&chars, i)
            ));
        }
        skip_ws(&mut i);
        let op = match (chars.get(i), chars.get(i + 1)) {
            (Some('='), Some('~')) => MatchOp::Regex,
            (Some('!'), Some('~')) => MatchOp::NotRegex,
            (Some('!'), Some('=')) => MatchOp::NotEqual,
            (Some('='), _) => MatchOp::Equal,
            _ => {
                return Err(format!(
                    "{text:?}: expected one of = != =~ !~ after {name:?}"
                ));
            }
        };
        i += if op == MatchOp::Equal { 1 } else { 2 };
        skip_ws(&mut i);
        let value = if chars.get(i) == Some(&'"') {
            i += 1;
            let mut v = String::new();
            loop {
                match chars.get(i) {
                    None => return Err(format!("{text:?}: unterminated quoted value")),
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        match chars.get(i + 1) {
                            Some('n') => v.push('\n'),
                            Some(c) => v.push(*c),
                            None => return Err(format!("{text:?}: unterminated quoted value")),
                        }
                        i += 2;
                    }
                    Some(c) => {
                        v.push(*c);
                        i += 1;
                    }
                }
            }
            v
        } else {
            let s = i;
            while i < chars.len() && chars[i] != ',' {
                i += 1;
            }
            chars[s..i].iter().collect::<String>().trim().to_string()
        };
        out.push(Matcher::new(&name, op, &value).map_err(|e| format!("{text:?}: {e}"))?);
        skip_ws(&mut i);
        match chars.get(i) {
            None => break,
            Some(',') => i += 1,
            Some(c) => return Err(format!("{text:?}: unexpected {c:?} after a matcher")),
        }
    }
    Ok(out)
}

fn rest(chars: &[char], i: usize) -> String {
    chars[i.min(chars.len())..].iter().take(20).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_the_forms_alertmanager_accepts() {
        let m = parse_list(r#"{alertname="PostgresDown", severity=~"crit.*",check!=x}"#).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].to_string(), r#"alertname="PostgresDown""#);
        assert_eq!(m[1].op, MatchOp::Regex);
        assert_eq!(m[2].value, "x");
        assert_eq!(Matcher::parse("foo = bar").unwrap().value, "bar");
        assert_eq!(Matcher::parse(r#"a!~"b\"c""#).unwrap().value, "b\"c");
        assert!(Matcher::parse("1a=b").is_err());
        assert!(Matcher::parse("a=~(").is_err());
        assert!(Matcher::parse("a==").is_ok()); // value "=" as Alertmanager reads it
        assert!(parse_list("{a=b").is_err());
        assert!(Matcher::parse("a=b,c=d").is_err());
    }

    #[test]
    fn matches_like_alertmanager() {
        let l = ls(&[("severity", "critical"), ("check", "postgres")]);
        assert!(Matcher::parse("severity=critical").unwrap().matches(&l));
        assert!(!Matcher::parse("severity=~crit").unwrap().matches(&l));
        assert!(Matcher::parse("severity=~crit.*").unwrap().matches(&l));
        assert!(Matcher::parse("missing=\"\"").unwrap().matches(&l));
        assert!(Matcher::parse("missing!~.+").unwrap().matches(&l));
        assert!(Matcher::parse("check!=redis").unwrap().matches(&l));
    }
}
