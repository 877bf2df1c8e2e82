//! Config value types: Prometheus durations, secrets, compiled regexes, safe URLs.
//!
//! Each type validates itself while it is deserialized, so that a bad value is
//! reported with the position of the value in the file.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration written as Prometheus writes it: `30s`, `5m`, `1h30m`, `250ms`, `2d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PromDuration(pub Duration);

impl PromDuration {
    /// Parses `[0-9]+(ms|s|m|h|d|w|y)` repeated, units in decreasing order, as Prometheus.
    ///
    /// # Errors
    /// A message saying what is wrong with the text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid duration {text:?}: expected a number and a unit, like 30s, 5m or 1h30m (units: ms, s, m, h, d, w, y)"
            )
        };
        if text.is_empty() {
            return Err(bad());
        }
        if text == "0" {
            return Ok(PromDuration(Duration::ZERO));
        }
        const UNITS: [(&str, u64); 7] = [
            ("y", 365 * 24 * 3_600_000),
            ("w", 7 * 24 * 3_600_000),
            ("d", 24 * 3_600_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ];
        let mut total_ms: u64 = 0;
        let mut rest = text;
        let mut last_unit = 0usize;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            // "ms" must be tried before "m".
            let (idx, unit) = if rest.starts_with("ms") {
                (6, "ms")
            } else {
                let Some(i) = UNITS[..6].iter().position(|(u, _)| rest.starts_with(u)) else {
                    return Err(bad());
                };
                (i, UNITS[i].0)
            };
            if idx < last_unit || (total_ms > 0 && idx == last_unit) {
                return Err(format!(
                    "invalid duration {text:?}: units must go from largest to smallest, each once"
                ));
            }
            last_unit = idx;
            total_ms = n
                .checked_mul(UNITS[idx].1)
                .and_then(|v| total_ms.checked_add(v))
                .ok_or_else(|| format!("invalid duration {text:?}: too large"))?;
            rest = &rest[unit.len()..];
        }
        Ok(PromDuration(Duration::from_millis(total_ms)))
    }
}

impl fmt::Display for PromDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX);
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("d", 24 * 3_600_000u64),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for PromDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PromDuration::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A regular expression compiled when the config is read.
#[derive(Clone)]
pub struct ConfigRegex(pub regex::Regex);

impl fmt::Debug for ConfigRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0.as_str())
    }
}

impl PartialEq for ConfigRegex {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl<'de> Deserialize<'de> for ConfigRegex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        regex::Regex::new(&s)
            .map(ConfigRegex)
            .map_err(|e| serde::de::Error::custom(format!("invalid regular expression: {e}")))
    }
}

/// A URL that carries no password: secrets go in `*_file` or `*_env` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeUrl(pub String);

impl SafeUrl {
    /// Checks the scheme and refuses a password in the user-info part.
    ///
    /// # Errors
    /// A message that shows how to pass the password instead.
    pub fn parse(text: &str, schemes: &[&str]) -> Result<Self, String> {
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(format!(
                "invalid URL {text:?}: expected {}://host[:port]/path",
                schemes.first().copied().unwrap_or("http")
            ));
        };
        if !schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
            return Err(format!(
                "invalid URL {text:?}: scheme must be one of {}",
                schemes.join(", ")
            ));
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if let Some((userinfo, _)) = authority.rsplit_once('@')
            && userinfo.contains(':')
        {
            return Err("a password in a URL is not allowed in the config file: remove it from the URL and use `basic_auth: {username: ..., password_file: /run/secrets/name}` or `password_env: HARENA_..._PASSWORD`".to_string());
        }
        if authority.is_empty() || authority.ends_with('@') {
            return Err(format!("invalid URL {text:?}: no host"));
        }
        Ok(SafeUrl(text.to_string()))
    }
}

impl fmt::Display for SafeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a secret comes from: a file or an environment variable, never the config itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Read from this file (trailing newline trimmed) at every use.
    File(PathBuf),
    /// Read from this environment variable at every use.
    Env(String),
}

impl SecretSource {
    /// Builds the source from a `*_file` / `*_env` pair of keys; both set is an error.
    ///
    /// # Errors
    /// When both are set.
    pub fn from_pair(
        file: Option<&PathBuf>,
        env: Option<&String>,
        key: &str,
    ) -> Result<Option<SecretSource>, String> {
        match (file, env) {
            (Some(_), Some(_)) => Err(format!("set only one of {key}_file and {key}_env")),
            (Some(f), None) => Ok(Some(SecretSource::File(f.clone()))),
            (None, Some(e)) => Ok(Some(SecretSource::Env(e.clone()))),
            (None, None) => Ok(None),
        }
    }

    /// Reads the secret now.
    ///
    /// # Errors
    /// A message naming the variable or file (never the value).
    pub fn read(&self) -> Result<Secret, String> {
        match self {
            SecretSource::Env(name) => match std::env::var(name) {
                Ok(v) if !v.is_empty() => Ok(Secret(v)),
                _ => Err(format!("environment variable {name} is not set")),
            },
            SecretSource::File(path) => match std::fs::read_to_string(path) {
                Ok(v) => Ok(Secret(v.trim_end_matches(['\r', '\n']).to_string())),
                Err(e) => Err(format!("read secret file {}: {e}", path.display())),
            },
        }
    }
}

/// A secret value: its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// `basic_auth:` as Prometheus writes it, with the password from a file or the environment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// User name. Example: `username: monitor`.
    pub username: String,
    /// File that holds the password. Example: `password_file: /run/secrets/health`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Environment variable that holds the password. Example: `password_env: HEALTH_PASSWORD`.
    #[serde(default)]
    pub password_env: Option<String>,
}

impl BasicAuth {
    /// The password's source.
    ///
    /// # Errors
    /// Both or neither of the keys set.
    pub fn source(&self) -> Result<SecretSource, String> {
        SecretSource::from_pair(
            self.password_file.as_ref(),
            self.password_env.as_ref(),
            "password",
        )?
        .ok_or_else(|| "set password_file or password_env".to_string())
    }
}

/// `tls_config:` as Prometheus and blackbox_exporter write it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Skip certificate verification (the expiry is still read). Default `false`.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// PEM file of CA certificates to trust instead of the built-in roots.
    /// Example: `ca_file: /etc/harena/ca.pem`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for mutual TLS. Example: `cert_file: /etc/harena/client.pem`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate. Example: `key_file: /etc/harena/client.key`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Name to send in SNI and verify against, when it differs from the URL's host.
    /// Example: `server_name: harena.example`.
    #[serde(default)]
    pub server_name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_prometheus() {
        for (text, ms) in [
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("250ms", 250),
            ("1m500ms", 60_500),
            ("2d", 172_800_000),
            ("1w", 604_800_000),
            ("0", 0),
        ] {
            assert_eq!(
                PromDuration::parse(text),
                Ok(PromDuration(Duration::from_millis(ms))),
                "{text}"
            );
        }
        for bad in ["", "5", "5x", "m", "1m1h", "1s1s", "-1s", "1.5s", " 1s"] {
            assert!(PromDuration::parse(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn durations_print_compactly() {
        assert_eq!(
            PromDuration(Duration::from_millis(5_400_000)).to_string(),
            "1h30m"
        );
        assert_eq!(
            PromDuration(Duration::from_millis(1_500)).to_string(),
            "1s500ms"
        );
    }

    #[test]
    fn urls_refuse_passwords() {
        assert!(SafeUrl::parse("http://127.0.0.1:80/health", &["http", "https"]).is_ok());
        assert!(SafeUrl::parse("http://user@h/x", &["http"]).is_ok());
        let e = SafeUrl::parse("https://u:hunter2@h/x", &["http", "https"]).unwrap_err();
        assert!(e.contains("password_file") && !e.contains("hunter2"), "{e}");
        assert!(SafeUrl::parse("ftp://h/", &["http", "https"]).is_err());
        assert!(SafeUrl::parse("h:80", &["http"]).is_err());
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret("hunter2".into());
        assert_eq!(format!("{s} {s:?}"), "<secret> <secret>");
    }
}
