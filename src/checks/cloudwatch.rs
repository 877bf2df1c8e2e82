//! `cloudwatch` check: the instance's CloudWatch metrics (CPU, CPU credits, status
//! checks) and the alarms that watch it.
//!
//! ```yaml
//! - name: ec2_cloudwatch
//!   kind: cloudwatch
//!   instance_id: i-0011b978b7cea66dc
//!   region: eu-west-1
//! ```
//!
//! Each run makes one `GetMetricData` call with one query per configured metric (all
//! with the dimension `InstanceId=<instance_id>`), over the window `now - 3 × period`
//! to now (the longest period when they differ), and keeps the newest datapoint of
//! each: `harena_cloudwatch_metric_value`. A metric without a datapoint in the window
//! has no series (CloudWatch had nothing to say: the detail names it). Then, unless
//! `alarms: false`, `DescribeAlarms` (every page) lists the metric alarms: the state of
//! each alarm on the instance (of every alarm when the account has at most
//! [`ALL_ALARMS_UP_TO`]) becomes `harena_cloudwatch_alarm_state`, and
//! `harena_cloudwatch_status_check_alarm` says whether some alarm watches the
//! instance's `StatusCheckFailed*` metrics: that alarm is the one watchdog that still
//! works when the host, and this exporter with it, is dead.
//!
//! Values are data, not verdicts: a run succeeds when AWS answers, and alert rules judge
//! the series. When AWS does not answer (throttled, 5xx, timeout, credentials), the
//! series of the last good run are recorded again unchanged, through
//! [`crate::clients::aws`], with `harena_aws_last_success_timestamp_seconds` for their
//! age. `GetMetricData` is billed per metric requested: the default 3 metrics every
//! 5 minutes make about 26,000 metrics a month.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    AlarmType, Dimension, Metric, MetricAlarm, MetricDataQuery, MetricDataResult, MetricStat,
    ScanBy, StateValue,
};
use serde::Deserialize;

use super::{BuildError, Check, CheckError, Recorder, RunContext};
use crate::clients::aws::{self, AwsCore, AwsRun, AwsSettings};
use crate::config::types::PromDuration;

crate::metric!(
    METRIC_VALUE,
    gauge,
    "harena_cloudwatch_metric_value",
    "Newest datapoint of each configured CloudWatch metric of the instance, within 3 periods; absent when CloudWatch has none."
);
crate::metric!(
    METRIC_TIMESTAMP,
    gauge,
    "harena_cloudwatch_metric_timestamp_seconds",
    "Time of the datapoint in harena_cloudwatch_metric_value (Unix seconds, the start of its period)."
);
crate::metric!(
    ALARM_STATE,
    gauge,
    "harena_cloudwatch_alarm_state",
    "State of each CloudWatch metric alarm on the instance (of every alarm when the account has at most 100): one series per state (OK, ALARM, INSUFFICIENT_DATA), 1 on the current one."
);
crate::metric!(
    STATUS_CHECK_ALARM,
    gauge,
    "harena_cloudwatch_status_check_alarm",
    "1 when some CloudWatch alarm watches the instance's StatusCheckFailed, StatusCheckFailed_System or StatusCheckFailed_Instance metric (the watchdog that works when the host is dead), else 0."
);

const GET_METRIC_DATA: &str = "GetMetricData";
const DESCRIBE_ALARMS: &str = "DescribeAlarms";

/// Up to this many alarms in the account, every one gets its state series; above it,
/// only the alarms on the instance (bounded label cardinality).
pub const ALL_ALARMS_UP_TO: usize = 100;

/// `DescribeAlarms` pages read at most (100 alarms each).
const MAX_ALARM_PAGES: usize = 100;

/// `GetMetricData` pages read at most (a page holds up to 100,800 datapoints; a run
/// asks for 3 periods per metric, so one page is the rule).
const MAX_DATA_PAGES: usize = 10;

/// `GetMetricData` takes at most this many queries in one call.
const MAX_METRICS: usize = 500;

/// The states of a metric alarm, as the `state` label.
const STATES: [&str; 3] = ["OK", "ALARM", "INSUFFICIENT_DATA"];

/// The dimension every query has.
const INSTANCE_DIMENSION: &str = "InstanceId";

/// The EC2 status check metrics an alarm may watch.
const STATUS_CHECK_METRIC: &str = "StatusCheckFailed";

/// A CloudWatch statistic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Statistic {
    /// The mean over the period.
    #[default]
    Average,
    /// The highest value in the period.
    Maximum,
    /// The lowest value in the period.
    Minimum,
    /// The sum over the period.
    Sum,
    /// The number of datapoints in the period.
    SampleCount,
}

impl Statistic {
    /// The name CloudWatch and the `statistic` label use.
    pub fn as_str(self) -> &'static str {
        match self {
            Statistic::Average => "Average",
            Statistic::Maximum => "Maximum",
            Statistic::Minimum => "Minimum",
            Statistic::Sum => "Sum",
            Statistic::SampleCount => "SampleCount",
        }
    }
}

/// One metric of the instance to read.
///
/// ```yaml
/// metrics:
///   - name: CPUUtilization
///   - {name: StatusCheckFailed, statistic: Maximum, period: 1m}
///   - {namespace: CWAgent, name: mem_used_percent}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricConfig {
    /// The metric's namespace. Default `AWS/EC2`. Example: `namespace: CWAgent`.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The metric's name. Required. Example: `name: CPUCreditBalance`.
    pub name: String,
    /// The statistic: `Average`, `Maximum`, `Minimum`, `Sum` or `SampleCount`. Default
    /// `Average`. Example: `statistic: Maximum`.
    #[serde(default)]
    pub statistic: Statistic,
    /// The period each datapoint covers: whole seconds, 1s, 5s, 10s, 20s, 30s or a
    /// multiple of 1m (EC2's basic monitoring has one datapoint every 5m). The run reads
    /// the last 3 periods. Default `5m`. Example: `period: 1m`.
    #[serde(default = "default_period")]
    pub period: PromDuration,
}

fn default_namespace() -> String {
    "AWS/EC2".to_string()
}

fn default_period() -> PromDuration {
    PromDuration(Duration::from_secs(300))
}

fn yes() -> bool {
    true
}

/// The default metrics: CPU use, CPU credits (burstable instances) and status checks.
pub fn default_metrics() -> Vec<MetricConfig> {
    let metric = |name: &str, statistic| MetricConfig {
        namespace: default_namespace(),
        name: name.to_string(),
        statistic,
        period: default_period(),
    };
    vec![
        metric("CPUUtilization", Statistic::Average),
        metric("CPUCreditBalance", Statistic::Average),
        metric("StatusCheckFailed", Statistic::Maximum),
    ]
}

/// The keys of a `cloudwatch` check.
///
/// ```yaml
/// - name: ec2_cloudwatch
///   kind: cloudwatch
///   instance_id: i-0011b978b7cea66dc
///   metrics:
///     - {name: CPUUtilization}
///     - {name: StatusCheckFailed, statistic: Maximum}
///   alarms: true
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudwatchConfig {
    /// The EC2 instance whose metrics and alarms are read: every metric query has the
    /// dimension `InstanceId=<instance_id>`. Required.
    /// Example: `instance_id: i-0011b978b7cea66dc`.
    pub instance_id: String,
    /// The metrics to read, each `{namespace, name, statistic, period}`. Default:
    /// `CPUUtilization` `Average`, `CPUCreditBalance` `Average` and `StatusCheckFailed`
    /// `Maximum`, all in `AWS/EC2` over `5m`. An empty list reads no metric (alarms
    /// only). Example: `metrics: [{name: CPUUtilization, period: 1m}]`.
    #[serde(default = "default_metrics")]
    pub metrics: Vec<MetricConfig>,
    /// Read the metric alarms (`DescribeAlarms`): their states, and whether one watches
    /// the instance's status checks. Default `true`. Example: `alarms: false`.
    #[serde(default = "yes")]
    pub alarms: bool,
    /// AWS region. Default `eu-west-1`. Example: `region: us-east-1`.
    #[serde(default = "aws::default_region")]
    pub region: String,
    /// An endpoint to call instead of AWS's (an emulator or a test fake). Default: none
    /// (AWS itself, or the SDK's `AWS_ENDPOINT_URL`/`AWS_ENDPOINT_URL_CLOUDWATCH`
    /// variables). Example: `endpoint_url: http://127.0.0.1:4566`.
    #[serde(default)]
    pub endpoint_url: Option<String>,
}

/// One metric query, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Query {
    /// `m0`, `m1`, …: GetMetricData ids start with a lowercase letter.
    id: String,
    namespace: String,
    name: String,
    statistic: Statistic,
    /// Whole seconds.
    period: i32,
}

/// A built `cloudwatch` check.
#[derive(Debug)]
pub struct CloudwatchCheck {
    // Boxed: the registry's enum of built checks stays small whatever the kind.
    inner: Box<Inner>,
}

#[derive(Debug)]
struct Inner {
    instance_id: String,
    queries: Vec<Query>,
    /// 3 × the longest period.
    window: Duration,
    alarms: bool,
    aws: AwsCore,
    client: OnceLock<aws_sdk_cloudwatch::Client>,
}

/// A CloudWatch period in whole seconds: 1, 5, 10, 20, 30 or a multiple of 60.
fn period_seconds(p: PromDuration) -> Result<i32, String> {
    let d = p.0;
    let text = p.to_string();
    if d.subsec_nanos() != 0 || d.is_zero() {
        return Err(format!(
            "invalid period {text}: expected whole seconds, like 1m or 5m"
        ));
    }
    let secs = d.as_secs();
    if secs < 60 && ![1, 5, 10, 20, 30].contains(&secs) || secs >= 60 && !secs.is_multiple_of(60) {
        return Err(format!(
            "invalid period {text}: CloudWatch takes 1s, 5s, 10s, 20s, 30s or a multiple of 1m"
        ));
    }
    // A year is far more than CloudWatch keeps at any period.
    if secs > 365 * 86_400 {
        return Err(format!("invalid period {text}: at most 1 year"));
    }
    i32::try_from(secs).map_err(|_| format!("invalid period {text}"))
}

impl Check for CloudwatchCheck {
    type Config = CloudwatchConfig;
    const KIND: &'static str = "cloudwatch";
    const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    fn build(config: &CloudwatchConfig) -> Result<Self, BuildError> {
        let settings = AwsSettings {
            region: config.region.clone(),
            endpoint_url: config.endpoint_url.clone(),
        };
        settings.validate()?;
        let id_ok = config
            .instance_id
            .strip_prefix("i-")
            .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric()));
        if !id_ok {
            return Err(BuildError::new(
                "instance_id",
                format!(
                    "invalid instance id {:?}: expected i- and hex digits, like i-0011b978b7cea66dc",
                    config.instance_id
                ),
            ));
        }
        if config.metrics.is_empty() && !config.alarms {
            return Err(BuildError::new(
                "metrics",
                "no metric listed and alarms: false: the check would read nothing",
            ));
        }
        if config.metrics.len() > MAX_METRICS {
            return Err(BuildError::new(
                "metrics",
                format!(
                    "{} metrics listed: GetMetricData takes at most {MAX_METRICS}",
                    config.metrics.len()
                ),
            ));
        }
        let mut queries = Vec::with_capacity(config.metrics.len());
        let mut seen = BTreeSet::new();
        let mut longest = 0;
        for (i, m) in config.metrics.iter().enumerate() {
            let field = |key: &str| format!("metrics[{i}].{key}");
            if m.name.trim().is_empty() || m.name.len() > 255 {
                return Err(BuildError::new(
                    field("name"),
                    "expected a metric name of 1 to 255 characters, like CPUUtilization",
                ));
            }
            if m.namespace.trim().is_empty() || m.namespace.len() > 255 {
                return Err(BuildError::new(
                    field("namespace"),
                    "expected a namespace of 1 to 255 characters, like AWS/EC2",
                ));
            }
            let period =
                period_seconds(m.period).map_err(|e| BuildError::new(field("period"), e))?;
            if !seen.insert((m.namespace.as_str(), m.name.as_str(), m.statistic)) {
                return Err(BuildError::new(
                    format!("metrics[{i}]"),
                    format!(
                        "{} {} {} is listed twice: its series would clash",
                        m.namespace,
                        m.name,
                        m.statistic.as_str()
                    ),
                ));
            }
            longest = longest.max(period);
            queries.push(Query {
                id: format!("m{i}"),
                namespace: m.namespace.clone(),
                name: m.name.clone(),
                statistic: m.statistic,
                period,
            });
        }
        let window = Duration::from_secs(3 * u64::try_from(longest).unwrap_or(0));
        let mut operations = Vec::new();
        if !queries.is_empty() {
            operations.push(GET_METRIC_DATA);
        }
        if config.alarms {
            operations.push(DESCRIBE_ALARMS);
        }
        Ok(CloudwatchCheck {
            inner: Box::new(Inner {
                instance_id: config.instance_id.clone(),
                queries,
                window,
                alarms: config.alarms,
                aws: AwsCore::new(settings, &operations),
                client: OnceLock::new(),
            }),
        })
    }

    fn target(&self) -> String {
        format!(
            "{} in {}",
            self.inner.instance_id,
            self.inner.aws.settings().describe()
        )
    }

    async fn run(&self, ctx: &RunContext, rec: &mut Recorder) -> Result<(), CheckError> {
        let run = self.inner.aws.begin(ctx).await;
        let mut fresh = Recorder::new(rec.base_labels().clone());
        let verdict = self.inner.collect(&run, &mut fresh).await;
        run.finish(rec, fresh, verdict)
    }
}

/// What the alarms said, for the samples and the detail.
#[derive(Debug, Default, PartialEq)]
struct AlarmSummary {
    /// Every metric alarm listed.
    total: usize,
    /// (name, state) of the alarms recorded.
    recorded: Vec<(String, String)>,
    /// Alarms on the instance's status check metrics.
    status_check: Vec<String>,
}

impl Inner {
    async fn collect(&self, run: &AwsRun<'_>, rec: &mut Recorder) -> Result<(), CheckError> {
        let client = self
            .client
            .get_or_init(|| aws_sdk_cloudwatch::Client::new(run.config()));
        let mut detail = String::new();
        if !self.queries.is_empty() {
            let newest = self.metric_data(client, run).await?;
            let mut missing = Vec::new();
            let mut values = Vec::new();
            for q in &self.queries {
                let labels = [
                    ("namespace", q.namespace.as_str()),
                    ("metric", q.name.as_str()),
                    ("statistic", q.statistic.as_str()),
                ];
                match newest.get(&q.id) {
                    Some(&(ts, value)) => {
                        rec.record(&METRIC_VALUE, &labels, value);
                        rec.record(&METRIC_TIMESTAMP, &labels, ts);
                        values.push(format!("{} {}", q.name, fmt_value(value)));
                    }
                    None => missing.push(q.name.as_str()),
                }
            }
            detail = values.join(", ");
            if !missing.is_empty() {
                if !detail.is_empty() {
                    detail.push_str("; ");
                }
                let _ = write!(
                    detail,
                    "no datapoint in the last {} for {}",
                    PromDuration(self.window),
                    missing.join(", ")
                );
            }
        }
        if self.alarms {
            let alarms = self.describe_alarms(client, run).await?;
            let summary = summarize_alarms(&alarms, &self.instance_id);
            for (name, state) in &summary.recorded {
                for s in STATES {
                    let v = if s == state { 1.0 } else { 0.0 };
                    rec.record(&ALARM_STATE, &[("alarm", name.as_str()), ("state", s)], v);
                }
            }
            let watched = if summary.status_check.is_empty() {
                0.0
            } else {
                1.0
            };
            rec.record(&STATUS_CHECK_ALARM, &[], watched);
            if !detail.is_empty() {
                detail.push_str("; ");
            }
            detail.push_str(&alarm_detail(&summary));
        }
        rec.set_detail(detail);
        Ok(())
    }

    /// One `GetMetricData` call (more only when CloudWatch pages the answer); the newest
    /// datapoint of each query id, as (epoch seconds, value).
    async fn metric_data(
        &self,
        client: &aws_sdk_cloudwatch::Client,
        run: &AwsRun<'_>,
    ) -> Result<BTreeMap<String, (f64, f64)>, CheckError> {
        let now = SystemTime::now();
        let start = now
            .checked_sub(self.window)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut newest: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_DATA_PAGES {
            let mut req = client
                .get_metric_data()
                .start_time(DateTime::from(start))
                .end_time(DateTime::from(now))
                .scan_by(ScanBy::TimestampDescending)
                .set_next_token(token.take());
            for q in &self.queries {
                req = req.metric_data_queries(self.query(q));
            }
            let out = run.call(GET_METRIC_DATA, req.send()).await?;
            for result in out.metric_data_results() {
                let (Some(id), Some(point)) = (result.id(), newest_point(result)) else {
                    continue;
                };
                let entry = newest.entry(id.to_string()).or_insert(point);
                if point.0 > entry.0 {
                    *entry = point;
                }
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(newest)
    }

    fn query(&self, q: &Query) -> MetricDataQuery {
        let metric = Metric::builder()
            .namespace(&q.namespace)
            .metric_name(&q.name)
            .dimensions(
                Dimension::builder()
                    .name(INSTANCE_DIMENSION)
                    .value(&self.instance_id)
                    .build(),
            )
            .build();
        MetricDataQuery::builder()
            .id(&q.id)
            .label(&q.name)
            .return_data(true)
            .metric_stat(
                MetricStat::builder()
                    .metric(metric)
                    .period(q.period)
                    .stat(q.statistic.as_str())
                    .build(),
            )
            .build()
    }

    /// Every metric alarm, all pages.
    async fn describe_alarms(
        &self,
        client: &aws_sdk_cloudwatch::Client,
        run: &AwsRun<'_>,
    ) -> Result<Vec<MetricAlarm>, CheckError> {
        let mut alarms = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_ALARM_PAGES {
            let out = run
                .call(
                    DESCRIBE_ALARMS,
                    client
                        .describe_alarms()
                        .alarm_types(AlarmType::MetricAlarm)
                        .max_records(100)
                        .set_next_token(token.take())
                        .send(),
                )
                .await?;
            alarms.extend_from_slice(out.metric_alarms());
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(alarms)
    }
}

/// The newest (epoch seconds, value) of a result, whatever the order CloudWatch used.
fn newest_point(result: &MetricDataResult) -> Option<(f64, f64)> {
    result
        .timestamps()
        .iter()
        .zip(result.values())
        .map(|(t, v)| (t.as_secs_f64(), *v))
        .filter(|(_, v)| v.is_finite())
        .max_by(|a, b| a.0.total_cmp(&b.0))
}

/// The (metric name, dimensions) an alarm watches: its own metric, or the metrics of
/// its metric math expression.
fn watched_metrics(alarm: &MetricAlarm) -> Vec<(Option<&str>, &[Dimension])> {
    let mut out = vec![(alarm.metric_name(), alarm.dimensions())];
    for q in alarm.metrics() {
        if let Some(m) = q.metric_stat().and_then(MetricStat::metric) {
            out.push((m.metric_name(), m.dimensions()));
        }
    }
    out
}

fn names_instance(dims: &[Dimension], instance_id: &str) -> bool {
    dims.iter().any(|d| d.value() == Some(instance_id))
}

/// Which alarms to record, and which watch the instance's status checks.
fn summarize_alarms(alarms: &[MetricAlarm], instance_id: &str) -> AlarmSummary {
    let every = alarms.len() <= ALL_ALARMS_UP_TO;
    let mut summary = AlarmSummary {
        total: alarms.len(),
        ..AlarmSummary::default()
    };
    let mut names = BTreeSet::new();
    for alarm in alarms {
        let Some(name) = alarm.alarm_name() else {
            continue;
        };
        let watched = watched_metrics(alarm);
        let on_instance = watched
            .iter()
            .any(|(_, dims)| names_instance(dims, instance_id));
        let status_check = watched.iter().any(|(metric, dims)| {
            metric.is_some_and(|m| m.starts_with(STATUS_CHECK_METRIC))
                && names_instance(dims, instance_id)
        });
        if status_check {
            summary.status_check.push(name.to_string());
        }
        // Alarm names are unique in a region; a repeat (a page boundary moving under
        // an edit) would be a duplicate series.
        if (every || on_instance) && names.insert(name.to_string()) {
            let state = alarm
                .state_value()
                .map(StateValue::as_str)
                .unwrap_or("INSUFFICIENT_DATA");
            summary.recorded.push((name.to_string(), state.to_string()));
        }
    }
    summary
}

fn alarm_detail(s: &AlarmSummary) -> String {
    let firing: Vec<&str> = s
        .recorded
        .iter()
        .filter(|(_, state)| state == "ALARM")
        .map(|(name, _)| name.as_str())
        .collect();
    let mut out = match s.total {
        0 => "no metric alarm".to_string(),
        1 => "1 metric alarm".to_string(),
        n => format!("{n} metric alarms"),
    };
    if s.total > ALL_ALARMS_UP_TO {
        let _ = write!(out, " ({} on the instance)", s.recorded.len());
    }
    if !firing.is_empty() {
        let _ = write!(out, ", in ALARM: {}", firing.join(", "));
    }
    if s.status_check.is_empty() {
        out.push_str(", none on the instance's status checks");
    } else {
        let _ = write!(
            out,
            ", status checks watched by {}",
            s.status_check.join(", ")
        );
    }
    out
}

/// A value for the detail: integers without decimals, others with at most 3.
fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(v: serde_json::Value) -> CloudwatchConfig {
        serde_json::from_value(v).expect("config deserializes")
    }

    #[test]
    fn defaults() {
        let c = config(json!({"instance_id": "i-0011b978b7cea66dc"}));
        assert_eq!(c.region, "eu-west-1");
        assert!(c.alarms);
        assert_eq!(c.endpoint_url, None);
        assert_eq!(c.metrics, default_metrics());
        let check = CloudwatchCheck::build(&c).expect("builds");
        let q: Vec<(&str, &str, &str, i32)> = check
            .inner
            .queries
            .iter()
            .map(|q| {
                (
                    q.id.as_str(),
                    q.name.as_str(),
                    q.statistic.as_str(),
                    q.period,
                )
            })
            .collect();
        assert_eq!(
            q,
            [
                ("m0", "CPUUtilization", "Average", 300),
                ("m1", "CPUCreditBalance", "Average", 300),
                ("m2", "StatusCheckFailed", "Maximum", 300),
            ]
        );
        assert_eq!(check.inner.window, Duration::from_secs(900));
        assert_eq!(check.target(), "i-0011b978b7cea66dc in eu-west-1");
        let m: MetricConfig = serde_json::from_value(json!({"name": "X"})).expect("metric");
        assert_eq!(m.namespace, "AWS/EC2");
        assert_eq!(m.statistic, Statistic::Average);
        assert_eq!(m.period, PromDuration(Duration::from_secs(300)));
    }

    #[test]
    fn config_errors() {
        let unknown =
            serde_json::from_value::<CloudwatchConfig>(json!({"instance_id": "i-1", "metric": []}));
        assert!(unknown.is_err(), "unknown keys are refused");
        let bad_stat = serde_json::from_value::<CloudwatchConfig>(
            json!({"instance_id": "i-1", "metrics": [{"name": "X", "statistic": "p99"}]}),
        );
        assert!(bad_stat.is_err());
        let cases = [
            (json!({"instance_id": "0011b978"}), "instance_id", "i-"),
            (json!({"instance_id": "i-"}), "instance_id", "i-"),
            (
                json!({"instance_id": "i-1", "region": "Europe"}),
                "region",
                "eu-west-1",
            ),
            (
                json!({"instance_id": "i-1", "endpoint_url": "127.0.0.1:1"}),
                "endpoint_url",
                "http",
            ),
            (
                json!({"instance_id": "i-1", "metrics": [], "alarms": false}),
                "metrics",
                "nothing",
            ),
            (
                json!({"instance_id": "i-1", "metrics": [{"name": ""}]}),
                "metrics[0].name",
                "metric name",
            ),
            (
                json!({"instance_id": "i-1", "metrics": [{"name": "X", "namespace": ""}]}),
                "metrics[0].namespace",
                "namespace",
            ),
            (
                json!({"instance_id": "i-1", "metrics": [{"name": "X", "period": "90s"}]}),
                "metrics[0].period",
                "multiple of 1m",
            ),
            (
                json!({"instance_id": "i-1", "metrics": [{"name": "X", "period": "7s"}]}),
                "metrics[0].period",
                "30s",
            ),
            (
                json!({"instance_id": "i-1", "metrics": [{"name": "X", "period": "1500ms"}]}),
                "metrics[0].period",
                "whole seconds",
            ),
            (
                json!({"instance_id": "i-1", "metrics": [{"name": "X", "period": "0"}]}),
                "metrics[0].period",
                "whole seconds",
            ),
            (
                json!({"instance_id": "i-1", "metrics": [{"name": "X"}, {"name": "Y"}, {"name": "X", "period": "1m"}]}),
                "metrics[2]",
                "twice",
            ),
        ];
        for (c, field, needle) in cases {
            let e = CloudwatchCheck::build(&config(c.clone())).expect_err(&c.to_string());
            assert_eq!(e.field, field, "{c}: {e}");
            assert!(e.message.contains(needle), "{c}: {e}");
        }
    }

    #[test]
    fn periods() {
        for (secs, ok) in [
            (1, true),
            (5, true),
            (30, true),
            (60, true),
            (300, true),
            (3600, true),
            (2, false),
            (45, false),
            (61, false),
            (150, false),
        ] {
            let r = period_seconds(PromDuration(Duration::from_secs(secs)));
            assert_eq!(r.is_ok(), ok, "{secs}: {r:?}");
        }
        let c = config(json!({"instance_id": "i-1", "metrics": [
            {"name": "A", "period": "1m"}, {"name": "B", "period": "1h"}
        ]}));
        let check = CloudwatchCheck::build(&c).expect("builds");
        assert_eq!(check.inner.window, Duration::from_secs(3 * 3600));
        let c = config(json!({"instance_id": "i-1", "metrics": []}));
        let check = CloudwatchCheck::build(&c).expect("alarms only");
        assert!(check.inner.queries.is_empty());
    }

    fn result(points: &[(i64, f64)]) -> MetricDataResult {
        let mut b = MetricDataResult::builder().id("m0");
        for (t, v) in points {
            b = b.timestamps(DateTime::from_secs(*t)).values(*v);
        }
        b.build()
    }

    #[test]
    fn newest_datapoint_wins_whatever_the_order() {
        assert_eq!(newest_point(&result(&[])), None);
        assert_eq!(
            newest_point(&result(&[(100, 1.0), (300, 3.0), (200, 2.0)])),
            Some((300.0, 3.0))
        );
        assert_eq!(
            newest_point(&result(&[(300, 3.0), (100, 1.0)])),
            Some((300.0, 3.0))
        );
        assert_eq!(
            newest_point(&result(&[(300, f64::NAN), (100, 1.0)])),
            Some((100.0, 1.0))
        );
    }

    fn dim(name: &str, value: &str) -> Dimension {
        Dimension::builder().name(name).value(value).build()
    }

    fn alarm(name: &str, metric: &str, dims: &[(&str, &str)], state: &str) -> MetricAlarm {
        let mut b = MetricAlarm::builder()
            .alarm_name(name)
            .metric_name(metric)
            .namespace("AWS/EC2")
            .state_value(StateValue::from(state));
        for (n, v) in dims {
            b = b.dimensions(dim(n, v));
        }
        b.build()
    }

    const ME: &str = "i-0011b978b7cea66dc";

    #[test]
    fn alarms_on_the_instance_and_status_checks() {
        let alarms = vec![
            alarm("cpu-high", "CPUUtilization", &[("InstanceId", ME)], "OK"),
            alarm(
                "system-check",
                "StatusCheckFailed_System",
                &[("InstanceId", ME)],
                "ALARM",
            ),
            alarm(
                "other-check",
                "StatusCheckFailed",
                &[("InstanceId", "i-other")],
                "OK",
            ),
            alarm(
                "billing",
                "EstimatedCharges",
                &[("Currency", "USD")],
                "INSUFFICIENT_DATA",
            ),
        ];
        let s = summarize_alarms(&alarms, ME);
        assert_eq!(s.total, 4);
        assert_eq!(s.recorded.len(), 4, "few alarms: every one is recorded");
        assert_eq!(s.status_check, ["system-check"]);
        let detail = alarm_detail(&s);
        assert!(detail.contains("4 metric alarms"), "{detail}");
        assert!(detail.contains("in ALARM: system-check"), "{detail}");
        assert!(
            detail.contains("status checks watched by system-check"),
            "{detail}"
        );

        let only_cpu = summarize_alarms(&alarms[..1], ME);
        assert!(only_cpu.status_check.is_empty());
        assert!(alarm_detail(&only_cpu).contains("none on the instance's status checks"));

        // A metric math alarm over the instance's status check.
        let math = MetricAlarm::builder()
            .alarm_name("math")
            .state_value(StateValue::Ok)
            .metrics(
                MetricDataQuery::builder()
                    .id("m1")
                    .metric_stat(
                        MetricStat::builder()
                            .metric(
                                Metric::builder()
                                    .namespace("AWS/EC2")
                                    .metric_name("StatusCheckFailed_Instance")
                                    .dimensions(dim("InstanceId", ME))
                                    .build(),
                            )
                            .period(60)
                            .stat("Maximum")
                            .build(),
                    )
                    .build(),
            )
            .build();
        assert_eq!(summarize_alarms(&[math], ME).status_check, ["math"]);
    }

    #[test]
    fn many_alarms_keep_only_the_instance_ones() {
        let mut alarms: Vec<MetricAlarm> = (0..150)
            .map(|i| {
                alarm(
                    &format!("other-{i}"),
                    "CPUUtilization",
                    &[("InstanceId", "i-other")],
                    "OK",
                )
            })
            .collect();
        alarms.push(alarm(
            "mine",
            "CPUUtilization",
            &[("InstanceId", ME)],
            "ALARM",
        ));
        let s = summarize_alarms(&alarms, ME);
        assert_eq!(s.total, 151);
        assert_eq!(s.recorded, [("mine".to_string(), "ALARM".to_string())]);
        assert!(alarm_detail(&s).contains("151 metric alarms (1 on the instance)"));
    }

    #[test]
    fn values_read_well() {
        assert_eq!(fmt_value(144.0), "144");
        assert_eq!(fmt_value(12.5), "12.5");
        assert_eq!(fmt_value(0.0), "0");
        assert_eq!(fmt_value(1.0 / 3.0), "0.333");
    }
}
