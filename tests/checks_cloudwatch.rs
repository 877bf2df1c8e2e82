//! The `cloudwatch` check against a fake CloudWatch on 127.0.0.1 that speaks the Smithy
//! RPC v2 CBOR protocol of the current SDK (moto does not: TESTBED.md). The SDK signs
//! with static test credentials from the environment; IMDS is disabled, and the only
//! address ever called is the fake's.

mod common_cloudwatch;

use std::sync::Once;
use std::time::Duration;

use common_cloudwatch::{Alarm, Cbor, FakeCloudWatch, Mode, OPERATION_PATH, now_secs};
use harena_exporter::checks::cloudwatch::{CloudwatchCheck, CloudwatchConfig};
use harena_exporter::checks::{Check, CheckError, Reason, Recorder, RunContext};
use harena_exporter::model::{Labels, Sample};
use serde_json::{Value, json};
use tokio::time::Instant;

const INSTANCE: &str = "i-0011b978b7cea66dc";
const REGION: &str = "eu-west-1";
const ACCESS_KEY_ID: &str = "HARENATESTKEY0000002";
/// Tests scan every sample and detail for it.
const SECRET_ACCESS_KEY: &str = "harena-cw-secret-8Hq2Lm5Vx0Tz";
/// Room for the SDK's retries (3 attempts, backoff up to 1 s then 2 s) on a busy machine.
const TIMEOUT: Duration = Duration::from_secs(15);

static ENV: Once = Once::new();

/// Static test credentials for the SDK's default chain, IMDS off, no endpoint override
/// from the environment: set once per process, before any test starts the SDK.
fn init_env() {
    ENV.call_once(|| {
        // SAFETY: `set_var` races with threads that read the environment at the same
        // time. This runs once per process, first thing in every test (the others wait
        // on the `Once`), before the test starts anything; all tests want the same
        // values, and libtest's own threads do not read these variables.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID);
            std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY);
            std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
            for var in [
                "AWS_SESSION_TOKEN",
                "AWS_PROFILE",
                "AWS_ENDPOINT_URL",
                "AWS_ENDPOINT_URL_CLOUDWATCH",
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            ] {
                std::env::remove_var(var);
            }
        }
    });
}

// ---------------------------------------------------------------------------------------
// Running the check and looking at what it recorded.

struct Run {
    result: Result<(), CheckError>,
    samples: Vec<Sample>,
    detail: Option<String>,
    elapsed: Duration,
}

impl Run {
    /// The value of the one series of `name` with these extra labels.
    fn value(&self, name: &str, extra: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.desc.name == name)
            .filter(|s| extra.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| s.value)
            .collect();
        assert!(
            found.len() <= 1,
            "{name}{extra:?} recorded {} times",
            found.len()
        );
        found.first().copied()
    }

    fn metric(&self, name: &str, statistic: &str) -> Option<f64> {
        self.value(
            "harena_cloudwatch_metric_value",
            &[
                ("namespace", "AWS/EC2"),
                ("metric", name),
                ("statistic", statistic),
            ],
        )
    }

    fn count(&self, name: &str) -> usize {
        self.samples.iter().filter(|s| s.desc.name == name).count()
    }

    /// The check's own series (`harena_cloudwatch_*`), as comparable text.
    fn own_series(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .samples
            .iter()
            .filter(|s| s.desc.name.starts_with("harena_cloudwatch_"))
            .map(|s| format!("{}{} {}", s.desc.name, s.labels, s.value))
            .collect();
        out.sort();
        out
    }

    fn assert_ok(&self) {
        if let Err(e) = &self.result {
            panic!("expected success, got {}: {}", e.reason, e.detail);
        }
    }

    fn assert_fails(&self, reason: Reason, needle: &str) {
        let e = match &self.result {
            Err(e) => e,
            Ok(()) => panic!("expected {reason}, got success: {:?}", self.detail),
        };
        assert_eq!(e.reason, reason, "detail: {}", e.detail);
        assert!(
            e.detail.contains(needle),
            "{:?} does not contain {needle:?}",
            e.detail
        );
    }

    fn detail(&self) -> String {
        self.detail.clone().unwrap_or_default()
    }

    /// What every run must hold: the base labels, our namespace, no secret anywhere.
    fn assert_baseline(&self) {
        for s in &self.samples {
            assert_eq!(s.labels.get("check"), Some("cw"), "{}", s.desc.name);
            assert_eq!(s.labels.get("kind"), Some("cloudwatch"), "{}", s.desc.name);
            assert!(s.desc.name.starts_with("harena_"), "{}", s.desc.name);
            let text = format!("{}{}", s.desc.name, s.labels);
            assert!(!text.contains(SECRET_ACCESS_KEY), "secret in {text}");
        }
        let mut texts = vec![self.detail()];
        if let Err(e) = &self.result {
            texts.push(e.detail.clone());
        }
        for t in texts {
            assert!(!t.contains(SECRET_ACCESS_KEY), "secret in {t:?}");
        }
        // The call counters are recorded whatever happened.
        assert!(
            self.count("harena_aws_api_calls_total") > 0,
            "no harena_aws_api_calls_total"
        );
    }
}

fn build(fake: &FakeCloudWatch, extra: Value) -> CloudwatchCheck {
    let mut config = json!({
        "instance_id": INSTANCE,
        "region": REGION,
        "endpoint_url": fake.endpoint(),
    });
    for (k, v) in extra.as_object().expect("an object") {
        config[k] = v.clone();
    }
    let config: CloudwatchConfig = serde_json::from_value(config).expect("config deserializes");
    CloudwatchCheck::build(&config).expect("check builds")
}

async fn run_with(check: &CloudwatchCheck, timeout: Duration) -> Run {
    let ctx = RunContext::standalone(Instant::now() + timeout);
    let start = Instant::now();
    let mut rec = Recorder::new(Labels::from_pairs([
        ("check", "cw"),
        ("kind", "cloudwatch"),
    ]));
    let result = check.run(&ctx, &mut rec).await;
    let elapsed = start.elapsed();
    let recorded = rec.finish();
    let run = Run {
        result,
        samples: recorded.samples,
        detail: recorded.detail,
        elapsed,
    };
    run.assert_baseline();
    run
}

async fn run(check: &CloudwatchCheck) -> Run {
    run_with(check, TIMEOUT).await
}

/// A fake with the Harena instance's usual numbers: CPUUtilization 12.5 (newest of
/// three, one of them outside the window), CPUCreditBalance 144, StatusCheckFailed 0.
async fn fake_with_data() -> FakeCloudWatch {
    init_env();
    let fake = FakeCloudWatch::start(INSTANCE, REGION).await;
    let now = now_secs();
    fake.set_datapoints(
        "AWS/EC2",
        "CPUUtilization",
        "Average",
        &[
            (now - 3600.0, 99.0),
            (now - 600.0, 30.0),
            (now - 300.0, 12.5),
        ],
    );
    fake.set_datapoints(
        "AWS/EC2",
        "CPUCreditBalance",
        "Average",
        &[(now - 300.0, 144.0), (now - 600.0, 150.0)],
    );
    fake.set_datapoints(
        "AWS/EC2",
        "StatusCheckFailed",
        "Maximum",
        &[(now - 300.0, 0.0)],
    );
    fake
}

fn status_check_alarm() -> Alarm {
    Alarm::ec2("harena-status-check", "StatusCheckFailed", INSTANCE, "OK")
}

fn cpu_alarm(state: &str) -> Alarm {
    Alarm::ec2("harena-cpu-high", "CPUUtilization", INSTANCE, state)
}

// ---------------------------------------------------------------------------------------
// Data

#[tokio::test]
async fn metric_values_and_alarms_are_recorded() {
    let fake = fake_with_data().await;
    fake.set_alarms(vec![status_check_alarm(), cpu_alarm("ALARM")]);
    let check = build(&fake, json!({}));
    let r = run(&check).await;
    r.assert_ok();

    assert_eq!(r.metric("CPUUtilization", "Average"), Some(12.5));
    assert_eq!(r.metric("CPUCreditBalance", "Average"), Some(144.0));
    assert_eq!(r.metric("StatusCheckFailed", "Maximum"), Some(0.0));
    let ts = r
        .value(
            "harena_cloudwatch_metric_timestamp_seconds",
            &[("metric", "CPUUtilization")],
        )
        .expect("datapoint time");
    // The fake's timestamps go through CBOR tag 1; the SDK keeps milliseconds.
    assert!((now_secs() - 300.0 - ts).abs() < 30.0, "timestamp {ts}");

    assert_eq!(
        r.value("harena_cloudwatch_status_check_alarm", &[]),
        Some(1.0)
    );
    let state = |alarm: &str, state: &str| {
        r.value(
            "harena_cloudwatch_alarm_state",
            &[("alarm", alarm), ("state", state)],
        )
    };
    assert_eq!(state("harena-status-check", "OK"), Some(1.0));
    assert_eq!(state("harena-status-check", "ALARM"), Some(0.0));
    assert_eq!(state("harena-status-check", "INSUFFICIENT_DATA"), Some(0.0));
    assert_eq!(state("harena-cpu-high", "ALARM"), Some(1.0));
    assert_eq!(state("harena-cpu-high", "OK"), Some(0.0));
    assert_eq!(r.count("harena_cloudwatch_alarm_state"), 6);

    let detail = r.detail();
    for needle in [
        "CPUUtilization 12.5",
        "CPUCreditBalance 144",
        "StatusCheckFailed 0",
        "2 metric alarms",
        "in ALARM: harena-cpu-high",
        "status checks watched by harena-status-check",
    ] {
        assert!(detail.contains(needle), "{needle:?} not in {detail:?}");
    }

    // The AWS bookkeeping of the shared client.
    for (op, result, want) in [
        ("GetMetricData", "success", 1.0),
        ("GetMetricData", "throttled", 0.0),
        ("DescribeAlarms", "success", 1.0),
        ("DescribeAlarms", "error", 0.0),
    ] {
        assert_eq!(
            r.value(
                "harena_aws_api_calls_total",
                &[("operation", op), ("result", result)]
            ),
            Some(want),
            "{op} {result}"
        );
    }
    let last = r
        .value("harena_aws_last_success_timestamp_seconds", &[])
        .expect("last success");
    assert!((now_secs() - last).abs() < 60.0);
}

#[tokio::test]
async fn requests_speak_rpc_v2_cbor_and_ask_for_the_instance() {
    let fake = fake_with_data().await;
    fake.set_alarms(vec![status_check_alarm()]);
    let check = build(&fake, json!({}));
    let before = now_secs();
    run(&check).await.assert_ok();

    let all = fake.requests();
    assert_eq!(all.len(), 2, "one call of each operation: {all:?}");
    for r in &all {
        assert_eq!(r.method, "POST");
        assert!(r.path.starts_with(OPERATION_PATH), "{}", r.path);
        assert_eq!(r.header("smithy-protocol"), Some("rpc-v2-cbor"));
        assert_eq!(r.header("content-type"), Some("application/cbor"));
        assert_eq!(r.header("accept"), Some("application/cbor"));
        let auth = r.header("authorization").expect("signed request");
        let scope = format!("Credential={ACCESS_KEY_ID}/");
        assert!(auth.starts_with("AWS4-HMAC-SHA256 "), "{auth}");
        assert!(auth.contains(&scope), "{auth}");
        assert!(
            auth.contains(&format!("/{REGION}/monitoring/aws4_request")),
            "{auth}"
        );
        assert!(!auth.contains(SECRET_ACCESS_KEY));
    }

    let gmd = &fake.requests_for("GetMetricData")[0];
    let body = &gmd.body;
    let start = body
        .get("StartTime")
        .and_then(Cbor::as_timestamp)
        .expect("StartTime");
    let end = body
        .get("EndTime")
        .and_then(Cbor::as_timestamp)
        .expect("EndTime");
    assert!(
        (end - start - 900.0).abs() < 1.0,
        "window 3 × 5m: {start} {end}"
    );
    assert!(
        end >= before - 1.0 && end <= now_secs() + 1.0,
        "ends now: {end}"
    );
    let queries = body
        .get("MetricDataQueries")
        .map(Cbor::as_array)
        .expect("queries");
    let mut seen = Vec::new();
    for q in queries {
        let stat = q.get("MetricStat").expect("MetricStat");
        let metric = stat.get("Metric").expect("Metric");
        let dims = metric.get("Dimensions").map(Cbor::as_array).expect("dims");
        assert_eq!(dims.len(), 1, "{q:?}");
        assert_eq!(
            dims[0].get("Name").and_then(Cbor::as_str),
            Some("InstanceId")
        );
        assert_eq!(dims[0].get("Value").and_then(Cbor::as_str), Some(INSTANCE));
        assert_eq!(stat.get("Period").and_then(Cbor::as_f64), Some(300.0));
        seen.push((
            q.get("Id").and_then(Cbor::as_str).unwrap_or("").to_string(),
            metric
                .get("Namespace")
                .and_then(Cbor::as_str)
                .unwrap_or("")
                .to_string(),
            metric
                .get("MetricName")
                .and_then(Cbor::as_str)
                .unwrap_or("")
                .to_string(),
            stat.get("Stat")
                .and_then(Cbor::as_str)
                .unwrap_or("")
                .to_string(),
        ));
    }
    let want = [
        ("m0", "AWS/EC2", "CPUUtilization", "Average"),
        ("m1", "AWS/EC2", "CPUCreditBalance", "Average"),
        ("m2", "AWS/EC2", "StatusCheckFailed", "Maximum"),
    ]
    .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()));
    assert_eq!(seen, want);

    let da = &fake.requests_for("DescribeAlarms")[0];
    let types: Vec<&str> = da
        .body
        .get("AlarmTypes")
        .map(Cbor::as_array)
        .unwrap_or_default()
        .iter()
        .filter_map(Cbor::as_str)
        .collect();
    assert_eq!(types, ["MetricAlarm"]);
    assert_eq!(
        da.body.get("MaxRecords").and_then(Cbor::as_f64),
        Some(100.0)
    );
}

#[tokio::test]
async fn a_metric_without_datapoints_has_no_series() {
    init_env();
    let fake = FakeCloudWatch::start(INSTANCE, REGION).await;
    let now = now_secs();
    fake.set_datapoints(
        "AWS/EC2",
        "CPUUtilization",
        "Average",
        &[(now - 300.0, 7.25)],
    );
    // Only an hour-old datapoint: outside the 15-minute window.
    fake.set_datapoints(
        "AWS/EC2",
        "StatusCheckFailed",
        "Maximum",
        &[(now - 3600.0, 1.0)],
    );
    let check = build(&fake, json!({"alarms": false}));
    let r = run(&check).await;
    r.assert_ok();
    assert_eq!(r.metric("CPUUtilization", "Average"), Some(7.25));
    assert_eq!(r.metric("CPUCreditBalance", "Average"), None);
    assert_eq!(r.metric("StatusCheckFailed", "Maximum"), None);
    assert_eq!(r.count("harena_cloudwatch_metric_value"), 1);
    assert_eq!(r.count("harena_cloudwatch_metric_timestamp_seconds"), 1);
    let detail = r.detail();
    assert!(
        detail.contains("no datapoint in the last 15m for CPUCreditBalance, StatusCheckFailed"),
        "{detail}"
    );
    // alarms: false: no DescribeAlarms call, no alarm series.
    assert!(fake.requests_for("DescribeAlarms").is_empty());
    assert_eq!(r.count("harena_cloudwatch_alarm_state"), 0);
    assert_eq!(r.value("harena_cloudwatch_status_check_alarm", &[]), None);
}

#[tokio::test]
async fn custom_metrics_are_asked_as_configured() {
    init_env();
    let fake = FakeCloudWatch::start(INSTANCE, REGION).await;
    let now = now_secs();
    fake.set_datapoints(
        "CWAgent",
        "mem_used_percent",
        "Maximum",
        &[(now - 90.0, 61.0)],
    );
    let check = build(
        &fake,
        json!({"metrics": [
            {"namespace": "CWAgent", "name": "mem_used_percent", "statistic": "Maximum", "period": "1m"}
        ], "alarms": false}),
    );
    let r = run(&check).await;
    r.assert_ok();
    assert_eq!(
        r.value(
            "harena_cloudwatch_metric_value",
            &[
                ("namespace", "CWAgent"),
                ("metric", "mem_used_percent"),
                ("statistic", "Maximum")
            ]
        ),
        Some(61.0)
    );
    let body = &fake.requests_for("GetMetricData")[0].body;
    let start = body.get("StartTime").and_then(Cbor::as_timestamp).unwrap();
    let end = body.get("EndTime").and_then(Cbor::as_timestamp).unwrap();
    assert!((end - start - 180.0).abs() < 1.0, "window 3 × 1m");
}

// ---------------------------------------------------------------------------------------
// Alarms

#[tokio::test]
async fn only_a_cpu_alarm_means_no_status_check_watchdog() {
    let fake = fake_with_data().await;
    fake.set_alarms(vec![
        cpu_alarm("OK"),
        // A status check alarm, but of another instance.
        Alarm::ec2(
            "other-status-check",
            "StatusCheckFailed_System",
            "i-0aaaaaaaaaaaaaaaa",
            "INSUFFICIENT_DATA",
        ),
    ]);
    let check = build(&fake, json!({}));
    let r = run(&check).await;
    r.assert_ok();
    assert_eq!(
        r.value("harena_cloudwatch_status_check_alarm", &[]),
        Some(0.0)
    );
    assert_eq!(
        r.value(
            "harena_cloudwatch_alarm_state",
            &[("alarm", "harena-cpu-high"), ("state", "OK")]
        ),
        Some(1.0)
    );
    // Few alarms: every one is shown, the other instance's too.
    assert_eq!(
        r.value(
            "harena_cloudwatch_alarm_state",
            &[
                ("alarm", "other-status-check"),
                ("state", "INSUFFICIENT_DATA")
            ]
        ),
        Some(1.0)
    );
    assert!(
        r.detail().contains("none on the instance's status checks"),
        "{}",
        r.detail()
    );
}

#[tokio::test]
async fn status_check_alarms_of_each_kind_count() {
    for metric in [
        "StatusCheckFailed",
        "StatusCheckFailed_System",
        "StatusCheckFailed_Instance",
    ] {
        let fake = fake_with_data().await;
        fake.set_alarms(vec![Alarm::ec2("watchdog", metric, INSTANCE, "ALARM")]);
        let r = run(&build(&fake, json!({}))).await;
        r.assert_ok();
        assert_eq!(
            r.value("harena_cloudwatch_status_check_alarm", &[]),
            Some(1.0),
            "{metric}"
        );
    }
}

#[tokio::test]
async fn many_alarms_are_paged_and_only_the_instance_ones_kept() {
    let fake = fake_with_data().await;
    let mut alarms: Vec<Alarm> = (0..130)
        .map(|i| {
            Alarm::ec2(
                &format!("fleet-{i:03}"),
                "CPUUtilization",
                &format!("i-{i:017x}"),
                "OK",
            )
        })
        .collect();
    alarms.push(status_check_alarm());
    fake.set_alarms(alarms);
    let r = run(&build(&fake, json!({}))).await;
    r.assert_ok();
    let pages = fake.requests_for("DescribeAlarms");
    assert_eq!(pages.len(), 2, "131 alarms at 100 a page");
    assert_eq!(
        pages[1].body.get("NextToken").and_then(Cbor::as_str),
        Some("page-100")
    );
    assert_eq!(
        r.value("harena_cloudwatch_status_check_alarm", &[]),
        Some(1.0)
    );
    assert_eq!(
        r.count("harena_cloudwatch_alarm_state"),
        3,
        "only the instance's"
    );
    assert!(
        r.detail().contains("131 metric alarms (1 on the instance)"),
        "{}",
        r.detail()
    );
}

// ---------------------------------------------------------------------------------------
// Failures

#[tokio::test]
async fn throttling_after_a_good_run_keeps_the_values() {
    for mode in [Mode::Throttling, Mode::ThrottlingBare] {
        let fake = fake_with_data().await;
        fake.set_alarms(vec![status_check_alarm(), cpu_alarm("OK")]);
        let check = build(&fake, json!({}));
        let good = run(&check).await;
        good.assert_ok();
        let good_last = good.value("harena_aws_last_success_timestamp_seconds", &[]);

        fake.set_mode(mode);
        let r = run(&check).await;
        r.assert_fails(Reason::Throttled, "GetMetricData");
        assert!(
            r.result
                .as_ref()
                .unwrap_err()
                .detail
                .contains("last good run"),
            "{:?}",
            r.result
        );
        assert_eq!(r.own_series(), good.own_series(), "{mode:?}");
        assert_eq!(
            r.value("harena_aws_last_success_timestamp_seconds", &[]),
            good_last,
            "the age of the values keeps growing"
        );
        assert!(
            r.value(
                "harena_aws_api_calls_total",
                &[("operation", "GetMetricData"), ("result", "throttled")]
            )
            .is_some_and(|n| n >= 1.0)
        );

        // Back to normal: fresh values again.
        fake.set_mode(Mode::Normal);
        fake.set_datapoints(
            "AWS/EC2",
            "CPUUtilization",
            "Average",
            &[(now_secs() - 60.0, 55.0)],
        );
        let r = run(&check).await;
        r.assert_ok();
        assert_eq!(r.metric("CPUUtilization", "Average"), Some(55.0));
    }
}

#[tokio::test]
async fn throttled_alarms_call_keeps_the_values_too() {
    // The first call succeeds, the second is throttled: the run keeps the previous
    // run's values whole, not half of this one.
    let fake = fake_with_data().await;
    fake.set_alarms(vec![status_check_alarm()]);
    let check = build(&fake, json!({}));
    let good = run(&check).await;
    good.assert_ok();
    fake.set_datapoints(
        "AWS/EC2",
        "CPUUtilization",
        "Average",
        &[(now_secs() - 60.0, 99.0)],
    );
    fake.set_mode(Mode::Throttling);
    // Throttle only DescribeAlarms: let GetMetricData through by answering it first.
    fake.set_mode_for("GetMetricData", Mode::Normal);
    let r = run(&check).await;
    r.assert_fails(Reason::Throttled, "DescribeAlarms");
    assert_eq!(r.own_series(), good.own_series());
    assert_eq!(r.metric("CPUUtilization", "Average"), Some(12.5));
}

#[tokio::test]
async fn a_server_error_is_aws_api() {
    let fake = fake_with_data().await;
    let check = build(&fake, json!({}));
    let good = run(&check).await;
    good.assert_ok();
    fake.set_mode(Mode::InternalError);
    let r = run(&check).await;
    r.assert_fails(Reason::AwsApi, "HTTP 500");
    assert_eq!(r.own_series(), good.own_series());
    // The SDK retried (standard mode, 3 attempts).
    assert!(fake.requests_for("GetMetricData").len() >= 2);
}

#[tokio::test]
async fn a_server_error_on_the_first_run_records_no_value() {
    let fake = fake_with_data().await;
    fake.set_mode(Mode::InternalError);
    let r = run(&build(&fake, json!({}))).await;
    r.assert_fails(Reason::AwsApi, "InternalServiceError");
    assert!(r.own_series().is_empty(), "{:?}", r.own_series());
    assert_eq!(
        r.value("harena_aws_last_success_timestamp_seconds", &[]),
        None
    );
}

#[tokio::test]
async fn access_denied_is_auth() {
    let fake = fake_with_data().await;
    fake.set_mode(Mode::AccessDenied);
    let r = run(&build(&fake, json!({}))).await;
    r.assert_fails(Reason::Auth, "AccessDenied");
    let detail = &r.result.as_ref().unwrap_err().detail;
    assert!(
        detail.contains("cloudwatch:GetMetricData"),
        "the hint names the CloudWatch permissions: {detail}"
    );
}

#[tokio::test]
async fn a_delay_beyond_the_timeout_is_timeout() {
    let fake = fake_with_data().await;
    let check = build(&fake, json!({}));
    run(&check).await.assert_ok();
    fake.set_mode(Mode::Delay(Duration::from_secs(10)));
    let timeout = Duration::from_millis(1500);
    let r = run_with(&check, timeout).await;
    r.assert_fails(Reason::Timeout, "GetMetricData");
    assert!(
        r.elapsed <= timeout + Duration::from_millis(100),
        "took {:?}",
        r.elapsed
    );
    assert!(
        r.elapsed >= timeout - Duration::from_millis(300),
        "took {:?}",
        r.elapsed
    );
    assert_eq!(r.metric("CPUUtilization", "Average"), Some(12.5), "kept");
}

#[tokio::test]
async fn a_delay_within_the_timeout_is_fine() {
    let fake = fake_with_data().await;
    fake.set_mode(Mode::Delay(Duration::from_millis(300)));
    let r = run(&build(&fake, json!({}))).await;
    r.assert_ok();
    assert_eq!(r.metric("CPUUtilization", "Average"), Some(12.5));
}
