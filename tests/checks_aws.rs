//! The AWS checks (`aws_security_group`, `aws_instance`, `aws_snapshots`) against a
//! moto server that this binary starts, seeded with the Rust SDK itself; faults
//! (throttling, 5xx, rejected credentials, slowness) come from a proxy of our own
//! between the SDK and moto. One moto serves every test; each test makes its own
//! resources, so that tests run in parallel.

mod common;
mod common_aws;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_ec2::types::{Filter, InstanceType, IpPermission, IpRange, Ipv6Range};
use common_aws::{CountingListener, FaultProxy, Mode, SECRET_ACCESS_KEY, ec2, init_env, moto};
use harena_exporter::checks::aws_instance::AwsInstanceCheck;
use harena_exporter::checks::aws_security_group::AwsSecurityGroupCheck;
use harena_exporter::checks::aws_snapshots::AwsSnapshotsCheck;
use harena_exporter::checks::{Check, CheckError, Reason, Recorder, RunContext, Vars};
use harena_exporter::clients::aws::MAX_ATTEMPTS;
use harena_exporter::model::{Labels, Sample};
use harena_exporter::state::State;
use serde_json::{Value, json};
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------
// Running a check and looking at what it recorded.

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

    /// Every series of `name`, as (labels without check/kind, value).
    fn series(&self, name: &str) -> Vec<(Vec<(String, String)>, f64)> {
        let mut out: Vec<_> = self
            .samples
            .iter()
            .filter(|s| s.desc.name == name)
            .map(|s| {
                let l: Vec<(String, String)> = s
                    .labels
                    .iter()
                    .filter(|(k, _)| *k != "check" && *k != "kind")
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                (l, s.value)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The values of one label over the series of `name`.
    fn label_values(&self, name: &str, label: &str) -> BTreeSet<String> {
        self.samples
            .iter()
            .filter(|s| s.desc.name == name)
            .filter_map(|s| s.labels.get(label).map(str::to_string))
            .collect()
    }

    /// Every sample except the AWS bookkeeping ones (call counters, data age): what
    /// the kind itself says about the target, as text for exact comparison.
    fn data(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .samples
            .iter()
            .filter(|s| !s.desc.name.starts_with("harena_aws_"))
            .map(|s| format!("{}{} {}", s.desc.name, s.labels, s.value))
            .collect();
        out.sort();
        out
    }

    fn err(&self) -> &CheckError {
        match &self.result {
            Err(e) => e,
            Ok(()) => panic!("expected a failure, got success: {:?}", self.detail),
        }
    }

    /// Fails with the reason, and a detail containing `needle`.
    fn assert_fails(&self, reason: Reason, needle: &str) {
        let e = self.err();
        assert_eq!(e.reason, reason, "detail: {}", e.detail);
        assert!(
            e.detail.contains(needle),
            "{:?} does not contain {needle:?}",
            e.detail
        );
    }

    fn assert_ok(&self) {
        if let Err(e) = &self.result {
            panic!("expected success, got {}: {}", e.reason, e.detail);
        }
        assert!(self.detail.is_some(), "a successful run sets a detail");
    }

    fn calls(&self, op: &str, result: &str) -> f64 {
        self.value(
            "harena_aws_api_calls_total",
            &[("operation", op), ("result", result)],
        )
        .unwrap_or_else(|| panic!("no call counter for {op} {result}"))
    }

    fn last_success(&self) -> Option<f64> {
        self.value("harena_aws_last_success_timestamp_seconds", &[])
    }
}

/// What every run must satisfy: base labels, the call counters, no secret anywhere.
fn assert_baseline(run: &Run, kind: &str) {
    for s in &run.samples {
        assert_eq!(s.labels.get("check"), Some("test"), "{}", s.desc.name);
        assert_eq!(s.labels.get("kind"), Some(kind), "{}", s.desc.name);
        assert!(s.desc.name.starts_with("harena_"), "{}", s.desc.name);
        for (k, v) in s.labels.iter() {
            assert!(
                !v.contains(SECRET_ACCESS_KEY),
                "the secret key is in label {k} of {}",
                s.desc.name
            );
        }
    }
    assert!(
        run.samples
            .iter()
            .any(|s| s.desc.name == "harena_aws_api_calls_total"),
        "no call counter recorded"
    );
    let text = match &run.result {
        Ok(()) => run.detail.clone().unwrap_or_default(),
        Err(e) => e.detail.clone(),
    };
    assert!(
        !text.contains(SECRET_ACCESS_KEY),
        "the secret key is in {text:?}"
    );
}

async fn run_in<C: Check>(check: &C, kind: &str, ctx: RunContext) -> Run {
    let start = Instant::now();
    let mut rec = Recorder::new(Labels::from_pairs([("check", "test"), ("kind", kind)]));
    let result = check.run(&ctx, &mut rec).await;
    let elapsed = start.elapsed();
    let recorded = rec.finish();
    let run = Run {
        result,
        samples: recorded.samples,
        detail: recorded.detail,
        elapsed,
    };
    assert_baseline(&run, kind);
    run
}

async fn run_with<C: Check>(check: &C, timeout: Duration) -> Run {
    run_in(
        check,
        C::KIND,
        RunContext::standalone(Instant::now() + timeout),
    )
    .await
}

fn build<C: Check>(config: Value) -> C {
    let config: C::Config = serde_json::from_value(config).expect("config deserializes");
    C::build(&config).expect("check builds")
}

fn sg(group_id: &str, endpoint: &str) -> AwsSecurityGroupCheck {
    build(json!({"group_id": group_id, "endpoint_url": endpoint, "region": "eu-west-1"}))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------
// Seeding moto through the SDK.

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    format!("{prefix}-{}-{n}", std::process::id())
}

fn tcp(from: i32, to: i32, v4: &[&str], v6: &[&str]) -> IpPermission {
    perm("tcp", from, to, v4, v6)
}

fn perm(proto: &str, from: i32, to: i32, v4: &[&str], v6: &[&str]) -> IpPermission {
    let mut b = IpPermission::builder()
        .ip_protocol(proto)
        .from_port(from)
        .to_port(to);
    for c in v4 {
        b = b.ip_ranges(IpRange::builder().cidr_ip(*c).build());
    }
    for c in v6 {
        b = b.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(*c).build());
    }
    b.build()
}

async fn create_group(c: &aws_sdk_ec2::Client, perms: Vec<IpPermission>) -> String {
    let id = c
        .create_security_group()
        .group_name(unique("sg"))
        .description("harena test group")
        .send()
        .await
        .expect("create security group")
        .group_id()
        .expect("group id")
        .to_string();
    if !perms.is_empty() {
        c.authorize_security_group_ingress()
            .group_id(&id)
            .set_ip_permissions(Some(perms))
            .send()
            .await
            .expect("authorize ingress");
    }
    id
}

/// Starts an instance; returns its id and public IP.
async fn run_instance(c: &aws_sdk_ec2::Client) -> (String, String) {
    let out = c
        .run_instances()
        .image_id("ami-12345678")
        .instance_type(InstanceType::T3Small)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .expect("run instance");
    let i = &out.instances()[0];
    (
        i.instance_id().expect("instance id").to_string(),
        i.public_ip_address()
            .expect("moto gives a public IP")
            .to_string(),
    )
}

async fn public_ip(c: &aws_sdk_ec2::Client, id: &str) -> Option<String> {
    let out = c
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .expect("describe instance");
    out.reservations()[0].instances()[0]
        .public_ip_address()
        .map(str::to_string)
}

async fn create_volume(c: &aws_sdk_ec2::Client) -> String {
    c.create_volume()
        .availability_zone("eu-west-1a")
        .size(8)
        .send()
        .await
        .expect("create volume")
        .volume_id()
        .expect("volume id")
        .to_string()
}

async fn snapshot(c: &aws_sdk_ec2::Client, volume: &str) {
    c.create_snapshot()
        .volume_id(volume)
        .description("harena test snapshot")
        .send()
        .await
        .expect("create snapshot");
}

// ---------------------------------------------------------------------------------------
// aws_security_group

#[tokio::test]
async fn security_groups_report_every_rule_and_each_exposed_port() {
    init_env();
    let m = moto();
    let c = ec2(&m.url()).await;
    let world = &["0.0.0.0/0"];

    // 5432 and 6379 open to the internet.
    let db = create_group(
        &c,
        vec![tcp(5432, 5432, world, &[]), tcp(6379, 6379, world, &[])],
    )
    .await;
    let run = run_with(&sg(&db, &m.url()), TIMEOUT).await;
    run.assert_ok();
    assert_eq!(
        run.series("harena_security_group_exposed_port"),
        vec![
            (
                labels(&[("group_id", &db), ("port", "5432"), ("source", "0.0.0.0/0")]),
                1.0
            ),
            (
                labels(&[("group_id", &db), ("port", "6379"), ("source", "0.0.0.0/0")]),
                1.0
            ),
        ]
    );
    assert_eq!(
        run.value("harena_security_group_exposed_ports", &[("group_id", &db)]),
        Some(2.0)
    );
    assert_eq!(
        run.value(
            "harena_security_group_ingress_rule",
            &[
                ("group_id", &db),
                ("protocol", "tcp"),
                ("from_port", "5432"),
                ("to_port", "5432"),
                ("source", "0.0.0.0/0"),
            ]
        ),
        Some(1.0)
    );
    assert_eq!(run.series("harena_security_group_ingress_rule").len(), 2);
    let detail = run.detail.as_deref().unwrap_or("");
    assert!(detail.contains("5432 (0.0.0.0/0)"), "{detail}");
    let changed = run
        .value(
            "harena_security_group_changed_timestamp_seconds",
            &[("group_id", &db)],
        )
        .expect("changed timestamp");
    assert!((unix_now() - changed).abs() < 60.0, "{changed}");
    assert_eq!(run.calls("DescribeSecurityGroups", "success"), 1.0);
    assert_eq!(run.calls("DescribeSecurityGroups", "throttled"), 0.0);
    assert_eq!(run.calls("DescribeSecurityGroups", "error"), 0.0);
    assert!(run.last_success().is_some());

    // A port range open to ::/0: nine exposed ports.
    let v6 = create_group(&c, vec![tcp(3000, 3008, &[], &["::/0"])]).await;
    let run = run_with(&sg(&v6, &m.url()), TIMEOUT).await;
    run.assert_ok();
    assert_eq!(
        run.value("harena_security_group_exposed_ports", &[("group_id", &v6)]),
        Some(9.0)
    );
    let ports = run.label_values("harena_security_group_exposed_port", "port");
    let want: BTreeSet<String> = (3000..=3008).map(|p| p.to_string()).collect();
    assert_eq!(ports, want);
    assert_eq!(
        run.label_values("harena_security_group_exposed_port", "source"),
        BTreeSet::from(["::/0".to_string()])
    );
    assert_eq!(
        run.value(
            "harena_security_group_ingress_rule",
            &[
                ("from_port", "3000"),
                ("to_port", "3008"),
                ("source", "::/0")
            ]
        ),
        Some(1.0)
    );

    // An "all traffic" rule: every sensitive port, and the rule as protocol "all".
    let all = create_group(&c, vec![perm("-1", -1, -1, world, &[])]).await;
    let run = run_with(&sg(&all, &m.url()), TIMEOUT).await;
    run.assert_ok();
    assert_eq!(
        run.value("harena_security_group_exposed_ports", &[("group_id", &all)]),
        Some(15.0)
    );
    assert_eq!(
        run.series("harena_security_group_ingress_rule"),
        vec![(
            labels(&[
                ("group_id", &all),
                ("protocol", "all"),
                ("from_port", "0"),
                ("to_port", "65535"),
                ("source", "0.0.0.0/0"),
            ]),
            1.0
        )]
    );

    // A clean group: only 80/443 public, 22 from a private range.
    let clean = create_group(
        &c,
        vec![
            tcp(80, 80, world, &["::/0"]),
            tcp(443, 443, world, &["::/0"]),
            tcp(22, 22, &["10.0.0.0/8"], &[]),
        ],
    )
    .await;
    let run = run_with(&sg(&clean, &m.url()), TIMEOUT).await;
    run.assert_ok();
    assert!(run.series("harena_security_group_exposed_port").is_empty());
    assert_eq!(
        run.value(
            "harena_security_group_exposed_ports",
            &[("group_id", &clean)]
        ),
        Some(0.0)
    );
    assert_eq!(
        run.label_values("harena_security_group_ingress_rule", "source"),
        BTreeSet::from([
            "0.0.0.0/0".to_string(),
            "::/0".to_string(),
            "10.0.0.0/8".to_string()
        ])
    );
    assert_eq!(run.series("harena_security_group_ingress_rule").len(), 5);
    assert!(
        run.detail
            .as_deref()
            .unwrap_or("")
            .contains("no sensitive port open"),
        "{:?}",
        run.detail
    );

    // Custom sensitive ports.
    let custom: AwsSecurityGroupCheck = build(json!({
        "group_id": clean, "endpoint_url": m.url(), "sensitive_ports": [443, "80-81"]
    }));
    let run = run_with(&custom, TIMEOUT).await;
    assert_eq!(
        run.label_values("harena_security_group_exposed_port", "port"),
        BTreeSet::from(["80".to_string(), "443".to_string()])
    );
}

#[tokio::test]
async fn a_rule_change_moves_the_changed_time_which_survives_a_restart() {
    init_env();
    let m = moto();
    let c = ec2(&m.url()).await;
    let id = create_group(&c, vec![tcp(80, 80, &["0.0.0.0/0"], &[])]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = |state: &Arc<State>| RunContext {
        deadline: Instant::now() + TIMEOUT,
        check: "security_group".into(),
        vars: Arc::new(Vars::default()),
        state: Arc::clone(state),
    };
    let changed = |run: &Run| {
        run.value(
            "harena_security_group_changed_timestamp_seconds",
            &[("group_id", &id)],
        )
        .expect("changed timestamp")
    };

    let state = Arc::new(State::open(dir.path()).expect("open state"));
    let check = sg(&id, &m.url());
    let first = changed(&run_in(&check, "aws_security_group", ctx(&state)).await);
    tokio::time::sleep(Duration::from_millis(30)).await;
    let again = changed(&run_in(&check, "aws_security_group", ctx(&state)).await);
    assert_eq!(first, again, "same rules, same time");
    drop(check);
    drop(state);

    // A restart: a new state handle on the same folder, a new check.
    let state = Arc::new(State::open(dir.path()).expect("reopen state"));
    let check = sg(&id, &m.url());
    let after_restart = changed(&run_in(&check, "aws_security_group", ctx(&state)).await);
    assert_eq!(first, after_restart, "the change time survives a restart");

    c.authorize_security_group_ingress()
        .group_id(&id)
        .set_ip_permissions(Some(vec![tcp(5432, 5432, &["0.0.0.0/0"], &[])]))
        .send()
        .await
        .expect("open 5432");
    let run = run_in(&check, "aws_security_group", ctx(&state)).await;
    run.assert_ok();
    assert!(changed(&run) > first, "a new rule moves the change time");
    assert_eq!(
        run.value("harena_security_group_exposed_ports", &[("group_id", &id)]),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_group_that_does_not_exist_is_missing() {
    init_env();
    let m = moto();
    let run = run_with(&sg("sg-0123456789abcdef0", &m.url()), TIMEOUT).await;
    run.assert_fails(Reason::Missing, "InvalidGroup.NotFound");
    assert!(run.series("harena_security_group_exposed_port").is_empty());
    assert!(run.series("harena_security_group_exposed_ports").is_empty());
    assert_eq!(run.calls("DescribeSecurityGroups", "error"), 1.0);
    assert_eq!(run.last_success(), None, "no call succeeded yet");
}

// ---------------------------------------------------------------------------------------
// aws_instance

fn instance(id: &str, endpoint: &str, expected_ip: Option<&str>) -> AwsInstanceCheck {
    let mut cfg = json!({"instance_id": id, "endpoint_url": endpoint});
    if let Some(ip) = expected_ip {
        cfg["expected_public_ip"] = json!(ip);
    }
    build(cfg)
}

fn assert_state(run: &Run, want: &str) {
    for s in [
        "pending",
        "running",
        "shutting-down",
        "terminated",
        "stopping",
        "stopped",
    ] {
        let v = run.value("harena_ec2_instance_state", &[("state", s)]);
        assert_eq!(v, Some(if s == want { 1.0 } else { 0.0 }), "state {s}");
    }
}

#[tokio::test]
async fn instance_state_status_checks_and_public_ip() {
    init_env();
    let m = moto();
    let c = ec2(&m.url()).await;
    let (id, ip) = run_instance(&c).await;

    let run = run_with(&instance(&id, &m.url(), Some(&ip)), TIMEOUT).await;
    run.assert_ok();
    assert_state(&run, "running");
    assert_eq!(
        run.value("harena_ec2_status_check_ok", &[("type", "system")]),
        Some(1.0)
    );
    assert_eq!(
        run.value("harena_ec2_status_check_ok", &[("type", "instance")]),
        Some(1.0)
    );
    assert_eq!(
        run.series("harena_ec2_instance_info"),
        vec![(
            labels(&[
                ("instance_type", "t3.small"),
                ("architecture", "x86_64"),
                ("availability_zone", "eu-west-1a"),
            ]),
            1.0
        )]
    );
    assert_eq!(
        run.series("harena_ec2_public_ip_info"),
        vec![(labels(&[("ip", &ip)]), 1.0)]
    );
    assert_eq!(run.value("harena_ec2_public_ip_matches", &[]), Some(1.0));
    assert_eq!(
        run.value("harena_ec2_elastic_ip_associated", &[]),
        Some(0.0)
    );
    assert!(
        run.detail
            .as_deref()
            .unwrap_or("")
            .contains("not an Elastic IP")
    );
    for op in [
        "DescribeInstances",
        "DescribeInstanceStatus",
        "DescribeAddresses",
    ] {
        assert_eq!(run.calls(op, "success"), 1.0, "{op}");
    }

    // Another expected IP: the series says so, the run still succeeds.
    let run = run_with(&instance(&id, &m.url(), Some("198.51.100.7")), TIMEOUT).await;
    run.assert_ok();
    assert_eq!(run.value("harena_ec2_public_ip_matches", &[]), Some(0.0));
    assert!(run.detail.as_deref().unwrap_or("").contains("198.51.100.7"));
    // Without expected_public_ip, no comparison series.
    let run = run_with(&instance(&id, &m.url(), None), TIMEOUT).await;
    assert_eq!(run.value("harena_ec2_public_ip_matches", &[]), None);

    // Stopped: data, not a failure; status checks not applicable; the public IP is gone.
    c.stop_instances()
        .instance_ids(&id)
        .send()
        .await
        .expect("stop");
    let check = instance(&id, &m.url(), Some(&ip));
    let run = run_with(&check, TIMEOUT).await;
    run.assert_ok();
    assert_state(&run, "stopped");
    assert_eq!(
        run.value("harena_ec2_status_check_ok", &[("type", "system")]),
        Some(0.0)
    );
    assert_eq!(
        run.value("harena_ec2_status_check_ok", &[("type", "instance")]),
        Some(0.0)
    );
    let detail = run.detail.clone().unwrap_or_default();
    assert!(
        detail.contains("system status check not-applicable"),
        "{detail}"
    );
    assert!(run.series("harena_ec2_public_ip_info").is_empty());
    assert_eq!(run.value("harena_ec2_public_ip_matches", &[]), Some(0.0));

    // Started again: running, with whatever public IP it got now.
    c.start_instances()
        .instance_ids(&id)
        .send()
        .await
        .expect("start");
    let run = run_with(&check, TIMEOUT).await;
    run.assert_ok();
    assert_state(&run, "running");
    let now_ip = public_ip(&c, &id).await.expect("a public IP after start");
    assert_eq!(
        run.series("harena_ec2_public_ip_info"),
        vec![(labels(&[("ip", &now_ip)]), 1.0)]
    );
    assert_eq!(
        run.calls("DescribeInstances", "success"),
        2.0,
        "counters live in the check"
    );

    // An Elastic IP associated with it.
    let eip = c
        .allocate_address()
        .domain(aws_sdk_ec2::types::DomainType::Vpc)
        .send()
        .await
        .expect("allocate address");
    let (eip_ip, alloc) = (
        eip.public_ip().expect("eip").to_string(),
        eip.allocation_id().expect("allocation id").to_string(),
    );
    c.associate_address()
        .instance_id(&id)
        .allocation_id(&alloc)
        .send()
        .await
        .expect("associate address");
    let run = run_with(&instance(&id, &m.url(), Some(&eip_ip)), TIMEOUT).await;
    run.assert_ok();
    assert_eq!(
        run.series("harena_ec2_public_ip_info"),
        vec![(labels(&[("ip", &eip_ip)]), 1.0)]
    );
    assert_eq!(
        run.value("harena_ec2_elastic_ip_associated", &[]),
        Some(1.0)
    );
    assert_eq!(run.value("harena_ec2_public_ip_matches", &[]), Some(1.0));
    assert!(run.detail.as_deref().unwrap_or("").contains("(Elastic IP)"));
}

#[tokio::test]
async fn an_instance_that_does_not_exist_is_missing() {
    init_env();
    let m = moto();
    let run = run_with(&instance("i-0123456789abcdef0", &m.url(), None), TIMEOUT).await;
    run.assert_fails(Reason::Missing, "InvalidInstanceID.NotFound");
    assert!(run.series("harena_ec2_instance_state").is_empty());
}

// ---------------------------------------------------------------------------------------
// aws_snapshots

fn snapshots(cfg: Value, endpoint: &str) -> AwsSnapshotsCheck {
    let mut cfg = cfg;
    cfg["endpoint_url"] = json!(endpoint);
    build(cfg)
}

#[tokio::test]
async fn snapshots_fresh_old_and_none() {
    init_env();
    let m = moto();
    let c = ec2(&m.url()).await;
    let (fresh, none, old) = (
        create_volume(&c).await,
        create_volume(&c).await,
        create_volume(&c).await,
    );
    snapshot(&c, &fresh).await;
    snapshot(&c, &old).await;
    let old_taken = std::time::Instant::now();

    let run = run_with(
        &snapshots(json!({"volume_ids": [fresh]}), &m.url()),
        TIMEOUT,
    )
    .await;
    run.assert_ok();
    let ts = run
        .value(
            "harena_ebs_snapshot_last_success_timestamp_seconds",
            &[("volume_id", &fresh)],
        )
        .expect("a completed snapshot");
    assert!((unix_now() - ts).abs() < 120.0, "{ts}");
    assert_eq!(
        run.value(
            "harena_ebs_snapshots",
            &[("volume_id", &fresh), ("state", "completed")]
        ),
        Some(1.0)
    );
    for state in ["pending", "error"] {
        assert_eq!(
            run.value(
                "harena_ebs_snapshots",
                &[("volume_id", &fresh), ("state", state)]
            ),
            Some(0.0),
            "{state}"
        );
    }
    assert_eq!(run.value("harena_ebs_volumes", &[]), Some(1.0));
    assert_eq!(run.calls("DescribeVolumes", "success"), 1.0);
    assert_eq!(run.calls("DescribeSnapshots", "success"), 1.0);

    // No snapshot at all: missing, and no timestamp series.
    let run = run_with(&snapshots(json!({"volume_ids": [none]}), &m.url()), TIMEOUT).await;
    run.assert_fails(Reason::Missing, &format!("{none}: no completed snapshot"));
    assert_eq!(
        run.value(
            "harena_ebs_snapshot_last_success_timestamp_seconds",
            &[("volume_id", &none)]
        ),
        None
    );
    assert_eq!(
        run.value(
            "harena_ebs_snapshots",
            &[("volume_id", &none), ("state", "completed")]
        ),
        Some(0.0)
    );

    // Two volumes, one without: the detail names only that one.
    let run = run_with(
        &snapshots(json!({"volume_ids": [fresh, none]}), &m.url()),
        TIMEOUT,
    )
    .await;
    run.assert_fails(Reason::Missing, &none);
    assert!(!run.err().detail.contains(&fresh), "{}", run.err().detail);
    assert_eq!(run.value("harena_ebs_volumes", &[]), Some(2.0));

    // Older than max_age (1s): stale.
    let wait = Duration::from_millis(1500).saturating_sub(old_taken.elapsed());
    tokio::time::sleep(wait).await;
    let run = run_with(
        &snapshots(json!({"volume_ids": [old], "max_age": "1s"}), &m.url()),
        TIMEOUT,
    )
    .await;
    run.assert_fails(Reason::Stale, &old);
    assert!(
        run.err().detail.contains("max_age 1s"),
        "{}",
        run.err().detail
    );
    assert!(
        run.value(
            "harena_ebs_snapshot_last_success_timestamp_seconds",
            &[("volume_id", &old)]
        )
        .is_some()
    );

    // A volume id that does not exist.
    let run = run_with(
        &snapshots(json!({"volume_ids": ["vol-0123456789abcdef0"]}), &m.url()),
        TIMEOUT,
    )
    .await;
    run.assert_fails(Reason::Missing, "InvalidVolume.NotFound");
}

#[tokio::test]
async fn snapshots_of_every_volume_attached_to_an_instance() {
    init_env();
    let m = moto();
    let c = ec2(&m.url()).await;
    let (id, _) = run_instance(&c).await;
    let data = create_volume(&c).await;
    c.attach_volume()
        .instance_id(&id)
        .volume_id(&data)
        .device("/dev/sdf")
        .send()
        .await
        .expect("attach volume");
    let attached = c
        .describe_volumes()
        .filters(
            Filter::builder()
                .name("attachment.instance-id")
                .values(&id)
                .build(),
        )
        .send()
        .await
        .expect("describe volumes");
    let ids: Vec<String> = attached
        .volumes()
        .iter()
        .filter_map(|v| v.volume_id().map(str::to_string))
        .collect();
    assert_eq!(ids.len(), 2, "root and data volumes: {ids:?}");
    let root = ids
        .iter()
        .find(|v| **v != data)
        .expect("root volume")
        .clone();

    let check = snapshots(json!({"instance_id": id}), &m.url());
    snapshot(&c, &data).await;
    let run = run_with(&check, TIMEOUT).await;
    run.assert_fails(Reason::Missing, &format!("{root}: no completed snapshot"));
    assert_eq!(run.value("harena_ebs_volumes", &[]), Some(2.0));

    snapshot(&c, &root).await;
    let run = run_with(&check, TIMEOUT).await;
    run.assert_ok();
    assert_eq!(
        run.label_values(
            "harena_ebs_snapshot_last_success_timestamp_seconds",
            "volume_id"
        ),
        ids.iter().cloned().collect::<BTreeSet<_>>()
    );

    // An instance with no volume (it does not exist).
    let run = run_with(
        &snapshots(json!({"instance_id": "i-0123456789abcdef0"}), &m.url()),
        TIMEOUT,
    )
    .await;
    run.assert_fails(Reason::Missing, "no EBS volume attached");
    assert_eq!(run.value("harena_ebs_volumes", &[]), Some(0.0));
}

// ---------------------------------------------------------------------------------------
// Faults: AWS throttles, fails, refuses the credentials, or is slow.

#[tokio::test]
async fn a_throttled_run_keeps_every_exposure_and_state_value() {
    init_env();
    let m = moto();
    let c = ec2(&m.url()).await;
    let group = create_group(&c, vec![tcp(5432, 5432, &["0.0.0.0/0"], &[])]).await;
    let (id, ip) = run_instance(&c).await;
    let proxy = FaultProxy::start(m.addr).await;
    let sg_check = sg(&group, &proxy.url());
    let inst_check = instance(&id, &proxy.url(), Some(&ip));

    let good_sg = run_with(&sg_check, TIMEOUT).await;
    good_sg.assert_ok();
    let good_inst = run_with(&inst_check, TIMEOUT).await;
    good_inst.assert_ok();
    assert_eq!(
        good_sg.value(
            "harena_security_group_exposed_ports",
            &[("group_id", &group)]
        ),
        Some(1.0)
    );

    // Meanwhile the port gets closed and the instance stopped: a throttled run must
    // not say so, nor say anything else new.
    c.revoke_security_group_ingress()
        .group_id(&group)
        .set_ip_permissions(Some(vec![tcp(5432, 5432, &["0.0.0.0/0"], &[])]))
        .send()
        .await
        .expect("revoke");
    c.stop_instances()
        .instance_ids(&id)
        .send()
        .await
        .expect("stop");
    proxy.set(Mode::Throttle);
    let before = proxy.requests();
    let run = run_with(&sg_check, TIMEOUT).await;
    run.assert_fails(Reason::Throttled, "RequestLimitExceeded");
    assert!(
        run.err().detail.contains("last good run"),
        "{}",
        run.err().detail
    );
    assert_eq!(run.data(), good_sg.data(), "exposure series unchanged");
    assert_eq!(
        run.last_success(),
        good_sg.last_success(),
        "data age unchanged"
    );
    assert_eq!(run.calls("DescribeSecurityGroups", "throttled"), 1.0);
    assert_eq!(run.calls("DescribeSecurityGroups", "success"), 1.0);
    let attempts = proxy.requests() - before;
    assert_eq!(
        attempts,
        usize::try_from(MAX_ATTEMPTS).expect("small"),
        "the SDK retried, within bounds"
    );

    let run = run_with(&inst_check, TIMEOUT).await;
    run.assert_fails(Reason::Throttled, "DescribeInstances");
    assert_eq!(run.data(), good_inst.data(), "state series unchanged");
    assert_state(&run, "running");
    assert_eq!(run.last_success(), good_inst.last_success());
    assert_eq!(run.calls("DescribeInstances", "throttled"), 1.0);

    // AWS answers again: fresh values, a newer success time.
    proxy.set(Mode::Pass);
    let run = run_with(&sg_check, TIMEOUT).await;
    run.assert_ok();
    assert_eq!(
        run.value(
            "harena_security_group_exposed_ports",
            &[("group_id", &group)]
        ),
        Some(0.0)
    );
    assert!(run.last_success() > good_sg.last_success());
    let run = run_with(&inst_check, TIMEOUT).await;
    assert_state(&run, "stopped");
}

#[tokio::test]
async fn server_errors_and_rejected_credentials_keep_the_last_good_values() {
    init_env();
    let m = moto();
    let c = ec2(&m.url()).await;
    let group = create_group(&c, vec![tcp(22, 22, &["0.0.0.0/0"], &[])]).await;
    let proxy = FaultProxy::start(m.addr).await;
    let check = sg(&group, &proxy.url());
    let good = run_with(&check, TIMEOUT).await;
    good.assert_ok();

    for (mode, reason, needle) in [
        (Mode::Status(503), Reason::AwsApi, "503"),
        (Mode::Status(500), Reason::AwsApi, "500"),
        (
            Mode::Ec2Error(500, "InternalError"),
            Reason::AwsApi,
            "InternalError",
        ),
        (
            Mode::Ec2Error(401, "AuthFailure"),
            Reason::Auth,
            "AWS_ACCESS_KEY_ID",
        ),
        (
            Mode::Ec2Error(403, "UnauthorizedOperation"),
            Reason::Auth,
            "UnauthorizedOperation",
        ),
    ] {
        proxy.set(mode);
        let run = run_with(&check, TIMEOUT).await;
        run.assert_fails(reason, needle);
        assert_eq!(run.data(), good.data(), "{mode:?}: values kept");
        assert_eq!(run.last_success(), good.last_success(), "{mode:?}");
    }
    proxy.set(Mode::Pass);
    let run = run_with(&check, TIMEOUT).await;
    run.assert_ok();
    assert_eq!(run.calls("DescribeSecurityGroups", "error"), 5.0);
    assert_eq!(run.calls("DescribeSecurityGroups", "success"), 2.0);
}

#[tokio::test]
async fn a_slow_aws_ends_at_the_timeout_with_the_values_kept() {
    init_env();
    let m = moto();
    let c = ec2(&m.url()).await;
    let group = create_group(&c, vec![tcp(6379, 6379, &["0.0.0.0/0"], &[])]).await;
    let proxy = FaultProxy::start(m.addr).await;
    let check = sg(&group, &proxy.url());
    let timeout = Duration::from_secs(2);
    // The first run builds the SDK config, with an operation timeout of 2 s.
    let good = run_with(&check, timeout).await;
    good.assert_ok();

    proxy.set(Mode::Delay(Duration::from_secs(10)));
    let before = proxy.requests();
    let run = run_with(&check, timeout).await;
    run.assert_fails(Reason::Timeout, "no answer from AWS");
    assert!(
        run.elapsed <= timeout + Duration::from_millis(100),
        "took {:?}",
        run.elapsed
    );
    assert!(
        run.elapsed >= timeout - Duration::from_millis(300),
        "gave up early: {:?}",
        run.elapsed
    );
    assert_eq!(run.data(), good.data());
    assert_eq!(run.last_success(), good.last_success());
    assert_eq!(run.calls("DescribeSecurityGroups", "error"), 1.0);
    let attempts = proxy.requests() - before;
    assert!(
        (1..=usize::try_from(MAX_ATTEMPTS).expect("small")).contains(&attempts),
        "{attempts} attempts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_checks_keep_their_schedule_while_aws_is_slow() {
    use harena_exporter::config::{self, ConfigSource};
    use harena_exporter::scheduler::{Env, Scheduler, StatusBoard};
    use harena_exporter::store::Store;
    use harena_exporter::telemetry::Telemetry;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    init_env();
    let m = moto();
    let c = ec2(&m.url()).await;
    let group = create_group(&c, vec![]).await;
    let proxy = FaultProxy::start(m.addr).await;
    proxy.set(Mode::Delay(Duration::from_secs(10)));

    // A tiny HTTP target that always answers 200.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let target = l.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });

    let yaml = format!(
        "checks:\n\
         \x20 - name: web\n\
         \x20   kind: http\n\
         \x20   url: http://{target}/health\n\
         \x20   interval: 1s\n\
         \x20   timeout: 500ms\n\
         \x20 - name: security_group\n\
         \x20   kind: aws_security_group\n\
         \x20   group_id: {group}\n\
         \x20   endpoint_url: {}\n\
         \x20   interval: 3s\n\
         \x20   timeout: 2s\n",
        proxy.url()
    );
    let cfg = config::parse(ConfigSource::File("schedule-test.yml".into()), &yaml)
        .unwrap_or_else(|e| panic!("config: {e}"));
    let board = Arc::new(StatusBoard::default());
    let token = tokio_util::sync::CancellationToken::new();
    let mut scheduler = Scheduler::new(
        Arc::new(Store::new(0)),
        Arc::clone(&board),
        Arc::new(Telemetry::new()),
        Env::in_memory().expect("env"),
        token.clone(),
    );
    scheduler.apply(&cfg);

    let mut runs: Vec<i64> = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(6500) {
        if let Some(ts) = board.get("web").and_then(|s| s.last_run_ms)
            && runs.last() != Some(&ts)
        {
            runs.push(ts);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let aws = board.get("security_group").expect("aws check status");
    scheduler.shutdown().await;
    server.abort();

    assert_eq!(aws.reason, Some("timeout"), "{:?}", aws.detail);
    assert!(aws.runs >= 2, "the AWS check ran {} times", aws.runs);
    assert!(
        aws.duration_seconds < 2.2,
        "the AWS run took {}s",
        aws.duration_seconds
    );
    let web = board.get("web").expect("web status");
    assert_eq!(web.success, Some(true), "{:?}", web.detail);
    assert!(
        runs.len() >= 5,
        "the http check ran {} times: {runs:?}",
        runs.len()
    );
    for w in runs.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            (700..=1300).contains(&gap),
            "the http check's runs drifted while AWS was slow: {runs:?}"
        );
    }
}

#[tokio::test]
async fn without_credentials_the_check_fails_with_auth_and_sends_nothing() {
    let listener = CountingListener::start().await;
    let home = tempfile::tempdir().expect("empty HOME");
    let file = home.path().join("config.yml");
    std::fs::write(
        &file,
        format!(
            "checks:\n  - name: ec2_instance\n    kind: aws_instance\n    instance_id: i-0011b978b7cea66dc\n    region: eu-west-1\n    endpoint_url: http://{}\n    timeout: 10s\n",
            listener.addr
        ),
    )
    .expect("write config");
    let bin = env!("CARGO_BIN_EXE_harena-exporter");
    let home_path = home.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .args(["check", "--output", "json", "--config.file"])
            .arg(&file)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home_path)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .expect("run harena-exporter check")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    let rows: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let row = &rows[0];
    assert_eq!(row["reason"], "auth", "{row}");
    let detail = row["detail"].as_str().expect("detail");
    for needle in [
        "no AWS credentials found",
        "AWS_ACCESS_KEY_ID not set",
        "AWS_SECRET_ACCESS_KEY not set",
        "shared profile \"default\"",
        ".aws/credentials not found",
        "AWS_WEB_IDENTITY_TOKEN_FILE not set",
        "IMDS (disabled by AWS_EC2_METADATA_DISABLED=true)",
    ] {
        assert!(detail.contains(needle), "{needle:?} not in {detail:?}");
    }
    assert!(
        row["duration_seconds"].as_f64().expect("duration") < 5.0,
        "{row}"
    );
    assert_eq!(
        listener.connections(),
        0,
        "a request left without credentials"
    );
}

// ---------------------------------------------------------------------------------------
// The series on /metrics.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_series_on_metrics_pass_promtool() {
    use harena_exporter::app::{self, Options};
    use harena_exporter::config::ConfigSource;

    init_env();
    let m = moto();
    let c = ec2(&m.url()).await;
    let group = create_group(
        &c,
        vec![
            tcp(5432, 5432, &["0.0.0.0/0"], &["::/0"]),
            perm("icmp", -1, -1, &["0.0.0.0/0"], &[]),
        ],
    )
    .await;
    let (id, ip) = run_instance(&c).await;
    let volume = create_volume(&c).await;
    snapshot(&c, &volume).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = m.url();
    let file = common::write_file(
        dir.path(),
        "aws.yml",
        &format!(
            "checks:\n\
             \x20 - name: security_group\n\
             \x20   kind: aws_security_group\n\
             \x20   group_id: {group}\n\
             \x20   endpoint_url: {url}\n\
             \x20 - name: ec2_instance\n\
             \x20   kind: aws_instance\n\
             \x20   instance_id: {id}\n\
             \x20   expected_public_ip: {ip}\n\
             \x20   endpoint_url: {url}\n\
             \x20 - name: ebs_snapshots\n\
             \x20   kind: aws_snapshots\n\
             \x20   volume_ids: [{volume}]\n\
             \x20   max_age: 26h\n\
             \x20   endpoint_url: {url}\n"
        ),
    );
    let file_path = file.clone();
    let running = app::start(Options {
        config: ConfigSource::File(file),
        listen: "127.0.0.1:0".into(),
        storage: None,
        web_config: None,
    })
    .await
    .expect("start the exporter");
    let mut text = String::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        text = common::http("GET", running.addr, "/metrics").await.1;
        if ["security_group", "ec2_instance", "ebs_snapshots"]
            .iter()
            .all(|c| {
                common::metric_value(
                    &text,
                    "harena_aws_last_success_timestamp_seconds",
                    &[("check", c)],
                )
                .is_some()
            })
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.stop().await;

    // The deploy checklist's command against the same test bed: one row per check,
    // naming the exposed ports with their sources, the state and the snapshot age.
    let cfg = file_path.to_string_lossy().to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_harena-exporter"))
            .args(["check", "--config.file", &cfg])
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .expect("run check")
    })
    .await
    .expect("join");
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{table}");
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row for {name}:\n{table}"))
            .to_string()
    };
    assert!(
        row("security_group").contains("5432 (0.0.0.0/0, ::/0)"),
        "{table}"
    );
    assert!(row("ec2_instance").contains("running"), "{table}");
    assert!(row("ebs_snapshots").contains("snapshot at most"), "{table}");

    for check in ["security_group", "ec2_instance", "ebs_snapshots"] {
        assert_eq!(
            common::metric_value(&text, "harena_probe_success", &[("check", check)]),
            Some(1.0),
            "{check}:\n{text}"
        );
    }
    assert_eq!(
        common::metric_value(
            &text,
            "harena_security_group_exposed_port",
            &[("port", "5432"), ("source", "::/0")]
        ),
        Some(1.0)
    );
    assert_eq!(
        common::metric_value(
            &text,
            "harena_ec2_instance_state",
            &[("check", "ec2_instance"), ("state", "running")]
        ),
        Some(1.0)
    );
    assert_eq!(
        common::metric_value(
            &text,
            "harena_aws_api_calls_total",
            &[("operation", "DescribeSnapshots"), ("result", "success")]
        ),
        Some(1.0)
    );
    assert!(!text.contains(SECRET_ACCESS_KEY));
    let (code, out) = common::promtool_check_metrics(&text);
    assert_eq!(code, 0, "promtool check metrics: {out}");
}
