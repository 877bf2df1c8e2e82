//! Checks: one named target of one kind, run by the scheduler.
//!
//! A kind is one file in this folder that implements [`Check`], plus one line in the
//! `checks!` registry below. The scheduler owns `harena_probe_success`,
//! `harena_probe_duration_seconds` and the deadline; a check only records its own
//! `harena_<kind>_*` samples through the [`Recorder`] and returns `Ok` or a
//! [`CheckError`] whose [`Reason`] is the only thing that becomes a label.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::model::{Labels, MetricDesc, Sample};

/// Why a check failed: a closed set, so that a label never carries a raw message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The target's host name did not resolve.
    Dns,
    /// The connection was refused (nothing listens).
    Refused,
    /// The run did not finish before its timeout.
    Timeout,
    /// The TLS handshake or certificate verification failed.
    Tls,
    /// The HTTP status code is not an expected one.
    HttpStatus,
    /// The body matched a forbidden pattern, or missed a required one.
    BodyMismatch,
    /// Credentials were missing or rejected.
    Auth,
    /// The peer answered something that is not the expected protocol.
    Protocol,
    /// An AWS API call failed.
    AwsApi,
    /// An AWS API call was throttled.
    Throttled,
    /// The data is older than allowed.
    Stale,
    /// Something that must exist does not.
    Missing,
    /// A fault of the exporter itself (for example a panic inside a check).
    Internal,
}

impl Reason {
    /// Every reason, in label order.
    pub const ALL: [Reason; 13] = [
        Reason::Dns,
        Reason::Refused,
        Reason::Timeout,
        Reason::Tls,
        Reason::HttpStatus,
        Reason::BodyMismatch,
        Reason::Auth,
        Reason::Protocol,
        Reason::AwsApi,
        Reason::Throttled,
        Reason::Stale,
        Reason::Missing,
        Reason::Internal,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Dns => "dns",
            Reason::Refused => "refused",
            Reason::Timeout => "timeout",
            Reason::Tls => "tls",
            Reason::HttpStatus => "http_status",
            Reason::BodyMismatch => "body_mismatch",
            Reason::Auth => "auth",
            Reason::Protocol => "protocol",
            Reason::AwsApi => "aws_api",
            Reason::Throttled => "throttled",
            Reason::Stale => "stale",
            Reason::Missing => "missing",
            Reason::Internal => "internal",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed run: a reason for labels and a human-readable detail for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct CheckError {
    /// The bounded reason.
    pub reason: Reason,
    /// What happened, for the status page, the `check` table and email. Never a label,
    /// never a secret.
    pub detail: String,
}

impl CheckError {
    /// A new error.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        CheckError {
            reason,
            detail: detail.into(),
        }
    }
}

/// Collects the samples of one run; adds `check`, `kind` and the check's labels.
#[derive(Debug)]
pub struct Recorder {
    base: Labels,
    samples: Vec<Sample>,
    detail: Option<String>,
    exports: BTreeMap<String, String>,
}

/// What a run left behind besides its result.
#[derive(Debug, Default, Clone)]
pub struct Recorded {
    /// The kind's samples.
    pub samples: Vec<Sample>,
    /// Success summary.
    pub detail: Option<String>,
    /// Values other checks may use as `{check.key}` (e.g. `{tunnel.hostname}`).
    pub exports: BTreeMap<String, String>,
}

impl Recorder {
    /// A recorder whose samples all carry `base` labels.
    pub fn new(base: Labels) -> Self {
        Recorder {
            base,
            samples: Vec::new(),
            detail: None,
            exports: BTreeMap::new(),
        }
    }

    /// Records one sample with extra labels on top of the base ones.
    pub fn record(&mut self, desc: &Arc<MetricDesc>, extra: &[(&str, &str)], value: f64) {
        let mut labels = self.base.clone();
        for (k, v) in extra {
            labels.set(*k, *v);
        }
        self.samples.push(Sample {
            desc: Arc::clone(desc),
            labels,
            value,
        });
    }

    /// A short human-readable summary of a successful run (shown by `check`).
    pub fn set_detail(&mut self, detail: impl Into<String>) {
        self.detail = Some(detail.into());
    }

    /// The base labels (`check`, `kind`, the check's own).
    pub fn base_labels(&self) -> &Labels {
        &self.base
    }

    /// Publishes a value that other checks can use as `{<this check>.<key>}`.
    /// A run that exports nothing keeps the check's previous values.
    pub fn export(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.exports.insert(key.into(), value.into());
    }

    /// Takes what the run recorded.
    pub fn finish(self) -> Recorded {
        Recorded {
            samples: self.samples,
            detail: self.detail,
            exports: self.exports,
        }
    }
}

/// Values that checks export for other checks: `{tunnel.hostname}` in a URL.
#[derive(Debug, Default)]
pub struct Vars {
    inner: RwLock<HashMap<String, BTreeMap<String, String>>>,
}

impl Vars {
    /// One value.
    pub fn get(&self, check: &str, key: &str) -> Option<String> {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(check)
            .and_then(|m| m.get(key))
            .cloned()
    }

    /// Merges a run's exports into the check's values.
    pub fn merge(&self, check: &str, values: &BTreeMap<String, String>) {
        if values.is_empty() {
            return;
        }
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let entry = inner.entry(check.to_string()).or_default();
        for (k, v) in values {
            entry.insert(k.clone(), v.clone());
        }
    }

    /// Forgets a check's values (it was removed by a reload).
    pub fn remove(&self, check: &str) {
        self.inner
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(check);
    }

    /// Expands every `{check.key}` in `template`.
    ///
    /// # Errors
    /// The first placeholder with no value yet, as `check.key`.
    pub fn expand(&self, template: &str) -> Result<String, String> {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                return Ok(out);
            };
            let name = &after[..end];
            match name.split_once('.') {
                Some((check, key)) => match self.get(check, key) {
                    Some(v) => out.push_str(&v),
                    None => return Err(name.to_string()),
                },
                None => return Err(name.to_string()),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// The `{check.key}` placeholders of a template, as `(check, key)`.
pub fn placeholders(template: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else { break };
        if let Some((c, k)) = after[..end].split_once('.') {
            out.push((c.to_string(), k.to_string()));
        }
        rest = &after[end + 1..];
    }
    out
}

/// Declares a static metric description as an `Arc`, built once.
#[macro_export]
macro_rules! metric {
    ($vis:vis $ident:ident, gauge, $name:literal, $help:literal) => {
        #[doc = $help]
        $vis static $ident: std::sync::LazyLock<std::sync::Arc<$crate::model::MetricDesc>> =
            std::sync::LazyLock::new(|| {
                std::sync::Arc::new($crate::model::MetricDesc::gauge($name, $help))
            });
    };
    ($vis:vis $ident:ident, counter, $name:literal, $help:literal) => {
        #[doc = $help]
        $vis static $ident: std::sync::LazyLock<std::sync::Arc<$crate::model::MetricDesc>> =
            std::sync::LazyLock::new(|| {
                std::sync::Arc::new($crate::model::MetricDesc::counter($name, $help))
            });
    };
}

/// An error from [`Check::build`]: the field (relative to the check) and the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct BuildError {
    /// Field path below the check, e.g. `tls_config.ca_file`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl BuildError {
    /// A new build error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        BuildError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// What a run may look at besides its own config.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// When the run must be over; the scheduler enforces it too.
    pub deadline: tokio::time::Instant,
    /// The check's name (for state keys and messages).
    pub check: String,
    /// Values exported by other checks (`{tunnel.hostname}`).
    pub vars: Arc<Vars>,
    /// The state file, for facts that must survive a restart.
    pub state: Arc<crate::state::State>,
}

impl RunContext {
    /// A context with no other check and in-memory state (tests, one-shot tools).
    pub fn standalone(deadline: tokio::time::Instant) -> Self {
        RunContext {
            deadline,
            check: "standalone".into(),
            vars: Arc::new(Vars::default()),
            state: Arc::new(
                crate::state::State::in_memory().expect("an in-memory SQLite database opens"),
            ),
        }
    }
}

/// One kind of check.
pub trait Check: Sized + Send + Sync + 'static {
    /// The kind-specific config (the keys beside `name`, `kind`, `interval`, …).
    type Config: DeserializeOwned + Clone + PartialEq + fmt::Debug + Send + Sync + 'static;
    /// The kind's name as written in `kind:`.
    const KIND: &'static str;
    /// Interval when the check does not set one.
    const DEFAULT_INTERVAL: Duration;
    /// Timeout when the check does not set one.
    const DEFAULT_TIMEOUT: Duration;

    /// Builds a runnable check from its config (compiles, loads files).
    ///
    /// # Errors
    /// A [`BuildError`] naming the field that cannot be used.
    fn build(config: &Self::Config) -> Result<Self, BuildError>;

    /// The target, for logs and the `check` table (no secret in it).
    fn target(&self) -> String;

    /// The `{check.key}` placeholders the config uses (checked at load: the check must
    /// exist). Default: none.
    fn placeholders(_config: &Self::Config) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Runs once, recording samples; `Ok` means the target is healthy.
    fn run(
        &self,
        ctx: &RunContext,
        rec: &mut Recorder,
    ) -> impl Future<Output = Result<(), CheckError>> + Send;
}

/// Generates the kind registry: `mod`s, the config enum, the built enum and dispatch.
macro_rules! checks {
    ($($kind:literal => $module:ident :: $ty:ident),+ $(,)?) => {
        $(pub mod $module;)+

        /// The kind-specific part of a check's config.
        #[derive(Debug, Clone, PartialEq)]
        pub enum CheckSpec {
            $(
                #[allow(missing_docs)]
                $ty(<$module::$ty as Check>::Config),
            )+
        }

        /// Every kind name, for error messages.
        pub const KINDS: &[&str] = &[$($kind),+];

        impl CheckSpec {
            /// The kind name.
            pub fn kind(&self) -> &'static str {
                match self { $(CheckSpec::$ty(_) => $kind,)+ }
            }

            /// Deserializes the kind-specific keys of a check node.
            pub fn parse(
                kind: &str,
                node: &crate::config::yaml::Node,
                cx: &mut crate::config::yaml::Context,
                path: &str,
            ) -> Option<Option<CheckSpec>> {
                match kind {
                    $($kind => Some(cx.deserialize::<<$module::$ty as Check>::Config>(
                        node, path, COMMON_KEYS).map(CheckSpec::$ty)),)+
                    _ => None,
                }
            }

            /// `(interval, timeout)` defaults of the kind.
            pub fn defaults(&self) -> (Duration, Duration) {
                match self {
                    $(CheckSpec::$ty(_) => ($module::$ty::DEFAULT_INTERVAL, $module::$ty::DEFAULT_TIMEOUT),)+
                }
            }

            /// The `{check.key}` placeholders of the config.
            pub fn placeholders(&self) -> Vec<(String, String)> {
                match self {
                    $(CheckSpec::$ty(c) => $module::$ty::placeholders(c),)+
                }
            }

            /// Builds the runnable check.
            ///
            /// # Errors
            /// The kind's [`BuildError`].
            pub fn build(&self) -> Result<BuiltCheck, BuildError> {
                match self {
                    $(CheckSpec::$ty(c) => Ok(BuiltCheck::$ty($module::$ty::build(c)?)),)+
                }
            }
        }

        /// A runnable check of any kind.
        pub enum BuiltCheck {
            $(
                #[allow(missing_docs)]
                $ty($module::$ty),
            )+
        }

        impl BuiltCheck {
            /// The target, for logs and tables.
            pub fn target(&self) -> String {
                match self { $(BuiltCheck::$ty(c) => c.target(),)+ }
            }

            /// Runs the check once.
            ///
            /// # Errors
            /// The check's failure.
            pub async fn run(&self, ctx: &RunContext, rec: &mut Recorder) -> Result<(), CheckError> {
                match self { $(BuiltCheck::$ty(c) => c.run(ctx, rec).await,)+ }
            }
        }
    };
}

/// Keys every check has, whatever its kind.
pub const COMMON_KEYS: &[&str] = &[
    "name",
    "kind",
    "interval",
    "timeout",
    "labels",
    "depends_on",
];

checks! {
    "http" => http::HttpCheck,
    "tcp" => tcp::TcpCheck,
    "postgres" => postgres::PostgresCheck,
    "redis" => redis::RedisCheck,
    "elasticsearch" => elasticsearch::ElasticsearchCheck,
    "tunnel" => tunnel::TunnelCheck,
    "backup_files" => backup_files::BackupFilesCheck,
    "docker" => docker::DockerCheck,
    "aws_security_group" => aws_security_group::AwsSecurityGroupCheck,
    "aws_instance" => aws_instance::AwsInstanceCheck,
    "aws_snapshots" => aws_snapshots::AwsSnapshotsCheck,
    "cloudwatch" => cloudwatch::CloudwatchCheck,
}
