//! Shared AWS SDK setup for the AWS check kinds (`aws_security_group`, `aws_instance`,
//! `aws_snapshots`, `cloudwatch`).
//!
//! - **Configuration**: [`sdk_config`] builds an `SdkConfig` for one region, with the
//!   SDK's default credentials chain (environment, shared profile, web identity, ECS,
//!   instance role through IMDS), an optional `endpoint_url` (emulators such as moto;
//!   the SDK's own `AWS_ENDPOINT_URL*` variables work too), an HTTPS client on rustls
//!   with ring, an operation timeout equal to the check's timeout and at most
//!   [`MAX_ATTEMPTS`] attempts in the standard retry mode, so that every retry fits in
//!   the check's timeout. No key is ever read from the config file.
//! - **Errors**: [`classify`] turns an `SdkError` into a [`CheckError`] with a bounded
//!   [`Reason`]: `throttled`, `auth` (missing or rejected credentials; the detail says
//!   what the chain tried), `timeout`, `missing` (`*.NotFound`) or `aws_api`.
//! - **Cost and failure discipline**: an [`AwsCore`] lives in each check. It builds the
//!   `SdkConfig` once, on the first run (building it is async, `build()` is not), counts
//!   every call in `harena_aws_api_calls_total{operation,result}`, and keeps the
//!   samples of the last run in which AWS answered. When AWS does not answer (throttled,
//!   5xx, timeout, credentials) a run re-records those samples unchanged, so that "AWS
//!   was throttled" never reads as "the port is closed" or "the instance is stopped";
//!   `harena_aws_last_success_timestamp_seconds` tells their age.
//!
//! A check's run goes:
//!
//! ```ignore
//! let run = self.aws.begin(ctx).await;
//! let client = aws_sdk_ec2::Client::new(run.config());
//! let mut fresh = Recorder::new(rec.base_labels().clone());
//! let verdict = async {
//!     let out = run.call("DescribeInstances", client.describe_instances().send()).await?;
//!     fresh.record(&STATE, &[("state", "running")], 1.0);
//!     Ok(())
//! }
//! .await;
//! run.finish(rec, fresh, verdict)
//! ```

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::checks::{BuildError, CheckError, Reason, Recorder, RunContext};
use crate::config::types::PromDuration;
use crate::model::Sample;

crate::metric!(
    pub API_CALLS,
    counter,
    "harena_aws_api_calls_total",
    "AWS API calls made by the check since the exporter started, by operation and result (success, throttled, error)."
);
crate::metric!(
    pub LAST_SUCCESS,
    gauge,
    "harena_aws_last_success_timestamp_seconds",
    "When every AWS call of one of the check's runs last succeeded (Unix seconds); the age of the values the check shows while AWS does not answer. Absent before the first success."
);

/// The region an AWS check uses when its config names none.
pub const DEFAULT_REGION: &str = "eu-west-1";

/// Attempts per call in the SDK's standard retry mode (the first one included); the
/// operation timeout bounds them all.
pub const MAX_ATTEMPTS: u32 = 3;

/// The SDK's own connect timeout; shorter when the check's timeout is.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);

/// How much before the scheduler's deadline a run stops waiting for AWS, so that it
/// still has the time to re-record its last good values (at most).
const DEADLINE_MARGIN: Duration = Duration::from_millis(100);

/// Error codes that mean "slow down" (AWS's own list for its SDKs, plus EC2's).
const THROTTLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "RequestThrottled",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "BandwidthLimitExceeded",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Error codes that mean "these credentials are not valid".
const AUTH_CODES: &[&str] = &[
    "AuthFailure",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "InvalidAccessKeyId",
    "IncompleteSignature",
    "MissingAuthenticationToken",
];

/// Error codes that mean "valid credentials, but not allowed to make this call".
const PERMISSION_CODES: &[&str] = &[
    "UnauthorizedOperation",
    "AccessDenied",
    "AccessDeniedException",
    "OptInRequired",
];

/// The region used when a check's config has no `region` key (serde default).
pub fn default_region() -> String {
    DEFAULT_REGION.to_string()
}

/// Where an AWS check sends its calls: the `region` and `endpoint_url` keys that every
/// AWS check config has (the YAML loader does not flatten, so each kind repeats them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    /// AWS region, e.g. `eu-west-1`.
    pub region: String,
    /// An endpoint to use instead of AWS's own (an emulator such as moto), e.g.
    /// `http://127.0.0.1:5000`.
    pub endpoint_url: Option<String>,
}

impl AwsSettings {
    /// Checks the region's spelling and the endpoint URL's shape.
    ///
    /// # Errors
    /// A [`BuildError`] naming `region` or `endpoint_url`.
    pub fn validate(&self) -> Result<(), BuildError> {
        let region_ok = !self.region.is_empty()
            && self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            return Err(BuildError::new(
                "region",
                format!(
                    "invalid region {:?}: expected a name like eu-west-1",
                    self.region
                ),
            ));
        }
        if let Some(url) = &self.endpoint_url {
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"));
            let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
            match host {
                Some(h)
                    if !h.is_empty() && !h.contains('@') && !url.contains(char::is_whitespace) => {}
                _ => {
                    return Err(BuildError::new(
                        "endpoint_url",
                        "invalid endpoint URL: expected http:// or https:// followed by a host, without user info",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Where calls go, for targets and messages: the endpoint URL, else the region.
    pub fn describe(&self) -> String {
        match &self.endpoint_url {
            Some(url) => format!("{} via {url}", self.region),
            None => self.region.clone(),
        }
    }
}

/// The SDK's HTTP client: hyper with rustls on ring, the system's trusted roots.
fn http_client() -> aws_sdk_ec2::config::SharedHttpClient {
    // One client for every AWS check: each build parses the system's root certificates
    // and keeps its own connection pool, which cost ~2 MB per check when built per check.
    static CLIENT: std::sync::OnceLock<aws_sdk_ec2::config::SharedHttpClient> =
        std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            aws_smithy_http_client::Builder::new()
                .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
                .build_https()
        })
        .clone()
}

/// The SDK configuration for one check: `region`, the default credentials chain, the
/// optional `endpoint_url`, an operation timeout of `timeout` (all attempts of a call
/// together) and [`MAX_ATTEMPTS`] attempts in the standard retry mode.
///
/// Credentials are not resolved here: the first call does it (and a missing one
/// becomes reason `auth` in [`classify`]). Nothing is sent over the network by this
/// function.
pub async fn sdk_config(region: &str, endpoint_url: Option<&str>, timeout: Duration) -> SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .operation_timeout(timeout)
        .connect_timeout(CONNECT_TIMEOUT.min(timeout))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .http_client(http_client())
        .timeout_config(timeouts)
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS));
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

/// Maps an SDK error to a failure reason and a detail (without the operation's name).
///
/// Throttling codes and HTTP 429 give `throttled`; rejected credentials (`AuthFailure`,
/// `InvalidClientTokenId`, `ExpiredToken`, `SignatureDoesNotMatch`, …), credentials
/// without the permission (`UnauthorizedOperation`, `AccessDenied`) and missing ones
/// give `auth`; a call that ran out of
/// time gives `timeout`; `*.NotFound` codes give `missing`; 5xx, other service errors,
/// unreadable answers and connection failures give `aws_api`.
pub fn classify<E>(err: &SdkError<E, HttpResponse>) -> CheckError
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    match err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            classify_service(se.err().code(), se.err().message(), status)
        }
        SdkError::TimeoutError(_) => CheckError::new(
            Reason::Timeout,
            "no answer from AWS within the timeout (retries included)",
        ),
        SdkError::DispatchFailure(df) => {
            if let Some(detail) = credentials_failure(err) {
                return CheckError::new(Reason::Auth, detail);
            }
            if df.is_timeout() {
                return CheckError::new(
                    Reason::Timeout,
                    format!("no answer from AWS within the timeout: {}", chain_text(err)),
                );
            }
            CheckError::new(
                Reason::AwsApi,
                format!("send the request: {}", chain_text(err)),
            )
        }
        SdkError::ConstructionFailure(_) => match credentials_failure(err) {
            Some(detail) => CheckError::new(Reason::Auth, detail),
            None => CheckError::new(
                Reason::AwsApi,
                format!("build the request: {}", chain_text(err)),
            ),
        },
        SdkError::ResponseError(re) => CheckError::new(
            Reason::AwsApi,
            format!(
                "read the answer (HTTP {}): {}",
                re.raw().status().as_u16(),
                chain_text(err)
            ),
        ),
        _ => CheckError::new(Reason::AwsApi, chain_text(err)),
    }
}

/// The part of [`classify`] that looks at a service error's code and HTTP status.
fn classify_service(code: Option<&str>, message: Option<&str>, status: u16) -> CheckError {
    let what = match (code, message) {
        (Some(c), Some(m)) if !m.is_empty() => format!(" ({c}: {m})"),
        (Some(c), _) => format!(" ({c})"),
        (None, Some(m)) if !m.is_empty() => format!(" ({m})"),
        (None, _) => String::new(),
    };
    let code = code.unwrap_or("");
    let (reason, detail) = if THROTTLE_CODES.contains(&code) || status == 429 {
        (
            Reason::Throttled,
            format!("throttled by AWS: HTTP {status}{what}"),
        )
    } else if PERMISSION_CODES.contains(&code) {
        (
            Reason::Auth,
            format!(
                "the credentials are not allowed to make this call: HTTP {status}{what}; \
                 attach the read-only policy of docs/aws-iam-policy.json (ec2:Describe*, \
                 cloudwatch:GetMetricData, cloudwatch:DescribeAlarms) to their IAM user or role"
            ),
        )
    } else if AUTH_CODES.contains(&code) {
        (
            Reason::Auth,
            format!(
                "AWS rejected the credentials: HTTP {status}{what}; they come from the SDK's \
                 default chain: the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, \
                 AWS_SESSION_TOKEN), then the shared profile, web identity, the ECS container \
                 endpoint, then the instance role through IMDS"
            ),
        )
    } else if code.ends_with(".NotFound") {
        (Reason::Missing, format!("not found: HTTP {status}{what}"))
    } else if status >= 500 {
        (Reason::AwsApi, format!("AWS answered HTTP {status}{what}"))
    } else {
        (
            Reason::AwsApi,
            format!("AWS refused the call: HTTP {status}{what}"),
        )
    };
    CheckError::new(reason, detail)
}

/// The error's messages from the outside in, joined by `: `, repeats left out.
fn chain_text(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = e.source();
    }
    parts.join(": ")
}

/// When the error comes from the credentials chain: a detail that says what it tried.
fn credentials_failure(err: &(dyn StdError + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(ce) = e.downcast_ref::<CredentialsError>() {
            let sdk = chain_text(ce);
            let what = match ce {
                CredentialsError::ProviderTimedOut(_) => "loading AWS credentials timed out",
                CredentialsError::InvalidConfiguration(_) => "the AWS credentials setup is invalid",
                CredentialsError::ProviderError(_) => "loading AWS credentials failed",
                _ => "no AWS credentials found",
            };
            return Some(format!(
                "{what}; the SDK's default chain tried {} (the SDK said: {sdk})",
                chain_report()
            ));
        }
        cur = e.source();
    }
    None
}

/// What the SDK's default credentials chain looks at, in its order, and what it found
/// there. Says only whether a variable is set, never its value.
pub fn chain_report() -> String {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    let state = |name: &str| {
        if set(name) {
            format!("{name} set")
        } else {
            format!("{name} not set")
        }
    };
    let env = format!(
        "the environment ({}, {})",
        state("AWS_ACCESS_KEY_ID"),
        state("AWS_SECRET_ACCESS_KEY")
    );
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let file = |var: &str, default: &str| -> String {
        let path = std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)));
        match path {
            Some(p) if p.exists() => format!("{} present", p.display()),
            Some(p) => format!("{} not found", p.display()),
            None => format!("no {var} and no HOME"),
        }
    };
    let profile = std::env::var("AWS_PROFILE")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "default".to_string());
    let profile = format!(
        "the shared profile {profile:?} ({}, {})",
        file("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
        file("AWS_CONFIG_FILE", "config")
    );
    let web = format!("web identity ({})", state("AWS_WEB_IDENTITY_TOKEN_FILE"));
    let ecs = if set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        || set("AWS_CONTAINER_CREDENTIALS_FULL_URI")
    {
        "the ECS container endpoint (set, no credentials from it)".to_string()
    } else {
        "the ECS container endpoint (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and _FULL_URI not set)"
            .to_string()
    };
    let imds_disabled = std::env::var("AWS_EC2_METADATA_DISABLED")
        .is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let imds = if imds_disabled {
        "the instance role through IMDS (disabled by AWS_EC2_METADATA_DISABLED=true)"
    } else {
        "the instance role through IMDS (no role credentials from the instance metadata service)"
    };
    format!("{env}, {profile}, {web}, {ecs}, {imds}")
}

/// The `result` label of `harena_aws_api_calls_total`.
fn result_label(res: &Result<(), &CheckError>) -> &'static str {
    match res {
        Ok(()) => "success",
        Err(e) if e.reason == Reason::Throttled => "throttled",
        Err(_) => "error",
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What a check keeps between runs; see the module docs.
#[derive(Debug)]
pub struct AwsCore {
    settings: AwsSettings,
    config: OnceCell<SdkConfig>,
    calls: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    last_good: Mutex<Option<Vec<Sample>>>,
    last_success: Mutex<Option<f64>>,
}

impl AwsCore {
    /// A core for a check that calls `operations` (their counters start at 0, so that
    /// `rate()` sees the first call).
    pub fn new(settings: AwsSettings, operations: &[&'static str]) -> Self {
        let mut calls = BTreeMap::new();
        for op in operations {
            for result in ["success", "throttled", "error"] {
                calls.insert((*op, result), 0);
            }
        }
        AwsCore {
            settings,
            config: OnceCell::new(),
            calls: Mutex::new(calls),
            last_good: Mutex::new(None),
            last_success: Mutex::new(None),
        }
    }

    /// The region and endpoint.
    pub fn settings(&self) -> &AwsSettings {
        &self.settings
    }

    /// Starts a run: the SDK config (built on the first run, with an operation timeout
    /// that ends a little before `ctx.deadline`) and the run's own deadline.
    pub async fn begin(&self, ctx: &RunContext) -> AwsRun<'_> {
        let remaining = ctx.deadline.saturating_duration_since(Instant::now());
        let margin = DEADLINE_MARGIN.min(remaining / 10);
        let deadline = ctx.deadline.checked_sub(margin).unwrap_or(ctx.deadline);
        let budget = remaining
            .saturating_sub(margin)
            .max(Duration::from_millis(1));
        let config = self
            .config
            .get_or_init(|| {
                sdk_config(
                    &self.settings.region,
                    self.settings.endpoint_url.as_deref(),
                    budget,
                )
            })
            .await;
        AwsRun {
            core: self,
            config,
            deadline,
            budget,
            failed: AtomicBool::new(false),
        }
    }

    fn count(&self, operation: &'static str, result: &'static str) {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        for r in ["success", "throttled", "error"] {
            calls.entry((operation, r)).or_insert(0);
        }
        *calls.entry((operation, result)).or_insert(0) += 1;
    }

    fn record_own(&self, rec: &mut Recorder) {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for ((op, result), n) in calls {
            #[allow(clippy::cast_precision_loss)] // exact below 2^53 calls
            rec.record(
                &API_CALLS,
                &[("operation", op), ("result", result)],
                n as f64,
            );
        }
        if let Some(ts) = *self.last_success.lock().unwrap_or_else(|e| e.into_inner()) {
            rec.record(&LAST_SUCCESS, &[], ts);
        }
    }
}

/// One run of an AWS check: see [`AwsCore::begin`].
#[derive(Debug)]
pub struct AwsRun<'a> {
    core: &'a AwsCore,
    config: &'a SdkConfig,
    deadline: Instant,
    budget: Duration,
    failed: AtomicBool,
}

impl AwsRun<'_> {
    /// The SDK configuration to build a service client from
    /// (`aws_sdk_ec2::Client::new(run.config())`).
    pub fn config(&self) -> &SdkConfig {
        self.config
    }

    /// When the run stops waiting for AWS: a little before the scheduler's deadline.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Awaits one SDK call (`client.op().send()`), bounded by the run's deadline,
    /// counts it in `harena_aws_api_calls_total` and maps its error with [`classify`].
    ///
    /// # Errors
    /// The classified failure, its detail starting with `operation` and the endpoint.
    pub async fn call<T, E, F>(&self, operation: &'static str, fut: F) -> Result<T, CheckError>
    where
        F: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + StdError + 'static,
    {
        let out = match tokio::time::timeout_at(self.deadline, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(classify(&e)),
            Err(_) => Err(CheckError::new(
                Reason::Timeout,
                format!(
                    "no answer from AWS within {} (retries included)",
                    PromDuration(Duration::from_millis(
                        u64::try_from(self.budget.as_millis()).unwrap_or(u64::MAX)
                    ))
                ),
            )),
        };
        self.core
            .count(operation, result_label(&out.as_ref().map(|_| ())));
        out.map_err(|e| {
            self.failed.store(true, Ordering::Relaxed);
            CheckError::new(
                e.reason,
                format!(
                    "{operation} in {}: {}",
                    self.core.settings.describe(),
                    e.detail
                ),
            )
        })
    }

    /// Ends the run. `fresh` holds what this run recorded and `verdict` its result.
    ///
    /// When AWS answered (the verdict is `Ok`, `missing` or `stale`), the fresh samples
    /// go to `rec` and become the last good ones; when every call succeeded,
    /// `harena_aws_last_success_timestamp_seconds` moves to now. When AWS did not
    /// answer (any other reason), the fresh samples are dropped and those of the last
    /// good run are recorded again, unchanged. Either way the call counters and the
    /// last-success time are recorded.
    ///
    /// # Errors
    /// `verdict`'s error, its detail noting the age of the values kept.
    pub fn finish(
        self,
        rec: &mut Recorder,
        fresh: Recorder,
        verdict: Result<(), CheckError>,
    ) -> Result<(), CheckError> {
        let answered = match &verdict {
            Ok(()) => true,
            Err(e) => matches!(e.reason, Reason::Missing | Reason::Stale),
        };
        let fresh = fresh.finish();
        let mut last_good = self
            .core
            .last_good
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut verdict = verdict;
        if answered {
            replay(rec, &fresh.samples);
            if let Some(d) = fresh.detail {
                rec.set_detail(d);
            }
            *last_good = Some(fresh.samples);
            if !self.failed.load(Ordering::Relaxed) {
                *self
                    .core
                    .last_success
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(unix_now());
            }
        } else if let Some(good) = last_good.as_ref() {
            replay(rec, good);
            let since = *self
                .core
                .last_success
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let (Err(e), Some(ts)) = (&mut verdict, since) {
                let age = (unix_now() - ts).max(0.0);
                e.detail.push_str(&format!(
                    "; showing the values of the last good run, {age:.0}s old"
                ));
            }
        }
        drop(last_good);
        self.core.record_own(rec);
        verdict
    }
}

/// Records `samples` again into `rec` (their labels already hold the base ones).
fn replay(rec: &mut Recorder, samples: &[Sample]) {
    for s in samples {
        let pairs: Vec<(&str, &str)> = s.labels.iter().collect();
        rec.record(&s.desc, &pairs, s.value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::error::{ConnectorError, ErrorMetadata};
    use aws_sdk_ec2::operation::describe_instances::DescribeInstancesError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    fn service(code: &str, status: u16) -> SdkError<DescribeInstancesError, HttpResponse> {
        let meta = ErrorMetadata::builder()
            .code(code)
            .message("what AWS said")
            .build();
        let raw = HttpResponse::new(
            StatusCode::try_from(status).expect("valid status"),
            SdkBody::empty(),
        );
        SdkError::service_error(DescribeInstancesError::generic(meta), raw)
    }

    #[test]
    fn service_errors_map_to_bounded_reasons() {
        let cases: &[(&str, u16, Reason)] = &[
            ("Throttling", 400, Reason::Throttled),
            ("ThrottlingException", 400, Reason::Throttled),
            ("RequestLimitExceeded", 503, Reason::Throttled),
            ("TooManyRequestsException", 400, Reason::Throttled),
            ("Whatever", 429, Reason::Throttled),
            ("AuthFailure", 401, Reason::Auth),
            ("UnauthorizedOperation", 403, Reason::Auth),
            ("InvalidClientTokenId", 403, Reason::Auth),
            ("ExpiredToken", 400, Reason::Auth),
            ("SignatureDoesNotMatch", 403, Reason::Auth),
            ("InvalidGroup.NotFound", 400, Reason::Missing),
            ("InvalidInstanceID.NotFound", 400, Reason::Missing),
            ("InternalError", 500, Reason::AwsApi),
            ("Unavailable", 503, Reason::AwsApi),
            ("InvalidParameterValue", 400, Reason::AwsApi),
        ];
        for (code, status, want) in cases {
            let e = classify(&service(code, *status));
            assert_eq!(e.reason, *want, "{code} {status}: {}", e.detail);
            assert!(e.detail.contains(code), "{code}: {}", e.detail);
            assert!(e.detail.contains("what AWS said"), "{}", e.detail);
        }
        let e = classify(&service("InternalError", 500));
        assert!(e.detail.contains("HTTP 500"), "{}", e.detail);
        let e = classify(&service("AuthFailure", 401));
        assert!(e.detail.contains("AWS_ACCESS_KEY_ID"), "{}", e.detail);
        let e = classify(&service("UnauthorizedOperation", 403));
        assert!(e.detail.contains("not allowed"), "{}", e.detail);
        // A 5xx whose body is no EC2 error has neither code nor message.
        let raw = HttpResponse::new(StatusCode::try_from(503).expect("status"), SdkBody::empty());
        let bare: SdkError<DescribeInstancesError, HttpResponse> = SdkError::service_error(
            DescribeInstancesError::generic(ErrorMetadata::builder().build()),
            raw,
        );
        let e = classify(&bare);
        assert_eq!(e.reason, Reason::AwsApi);
        assert_eq!(e.detail, "AWS answered HTTP 503");
    }

    #[test]
    fn missing_credentials_are_auth_and_say_what_the_chain_tried() {
        let source = CredentialsError::not_loaded("no providers in chain provided credentials");
        let e: SdkError<DescribeInstancesError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::other(Box::new(source), None));
        let c = classify(&e);
        assert_eq!(c.reason, Reason::Auth, "{}", c.detail);
        for needle in [
            "no AWS credentials found",
            "AWS_ACCESS_KEY_ID",
            "shared profile",
            "IMDS",
            "no providers in chain provided credentials",
        ] {
            assert!(c.detail.contains(needle), "{needle:?} not in {}", c.detail);
        }
    }

    #[test]
    fn transport_failures() {
        let e: SdkError<DescribeInstancesError, HttpResponse> =
            SdkError::timeout_error("operation timeout");
        assert_eq!(classify(&e).reason, Reason::Timeout);
        let e: SdkError<DescribeInstancesError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::timeout("connect timed out".into()));
        assert_eq!(classify(&e).reason, Reason::Timeout);
        let e: SdkError<DescribeInstancesError, HttpResponse> = SdkError::dispatch_failure(
            ConnectorError::io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into()),
        );
        let c = classify(&e);
        assert_eq!(c.reason, Reason::AwsApi);
        assert!(c.detail.contains("refused"), "{}", c.detail);
        let raw = HttpResponse::new(StatusCode::try_from(502).expect("status"), SdkBody::empty());
        let e: SdkError<DescribeInstancesError, HttpResponse> =
            SdkError::response_error("unexpected body", raw);
        let c = classify(&e);
        assert_eq!(c.reason, Reason::AwsApi);
        assert!(c.detail.contains("HTTP 502"), "{}", c.detail);
    }

    #[test]
    fn settings_are_validated() {
        let ok = |region: &str, url: Option<&str>| {
            AwsSettings {
                region: region.into(),
                endpoint_url: url.map(Into::into),
            }
            .validate()
        };
        assert!(ok("eu-west-1", None).is_ok());
        assert!(ok("eu-west-1", Some("http://127.0.0.1:5000")).is_ok());
        assert!(ok("eu-west-1", Some("https://ec2.eu-west-1.amazonaws.com/")).is_ok());
        assert_eq!(ok("", None).expect_err("empty").field, "region");
        assert_eq!(ok("EU West", None).expect_err("spaces").field, "region");
        for bad in [
            "127.0.0.1:5000",
            "ftp://x",
            "http://",
            "http://user:pw@host",
        ] {
            let e = ok("eu-west-1", Some(bad)).expect_err(bad);
            assert_eq!(e.field, "endpoint_url");
            assert!(!e.message.contains("pw@"), "{}", e.message);
        }
    }
}
