//! `aws_snapshots` check: every EBS volume of an instance (or a list of volumes) has a
//! recent completed snapshot.
//!
//! ```yaml
//! - name: ebs_snapshots
//!   kind: aws_snapshots
//!   instance_id: i-0011b978b7cea66dc
//!   max_age: 26h
//!   region: eu-west-1
//! ```
//!
//! Each run makes `DescribeVolumes` (filtered on `attachment.instance-id`, or the listed
//! volume ids) and `DescribeSnapshots` (owner `self`, filtered on the volumes' ids),
//! following `NextToken` pages. Per volume it records the newest completed snapshot's
//! start time and the count of snapshots in each state. The run fails with `missing`
//! when a volume has no completed snapshot (or the instance has no volume) and with
//! `stale` when a volume's newest completed snapshot is older than `max_age`; the detail
//! names each volume and what is wrong with it.
//!
//! When AWS does not answer, the series of the last good run are recorded again
//! unchanged ([`crate::clients::aws`]).

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_ec2::types::Filter;
use serde::Deserialize;

use super::{BuildError, Check, CheckError, Reason, Recorder, RunContext};
use crate::clients::aws::{self, AwsCore, AwsRun, AwsSettings};
use crate::config::types::PromDuration;

crate::metric!(
    LAST_SUCCESS,
    gauge,
    "harena_ebs_snapshot_last_success_timestamp_seconds",
    "Start time of the volume's newest completed snapshot (Unix seconds); absent when it has none."
);
crate::metric!(
    SNAPSHOTS,
    gauge,
    "harena_ebs_snapshots",
    "Number of the volume's snapshots (owned by this account) in each state."
);
crate::metric!(
    VOLUMES,
    gauge,
    "harena_ebs_volumes",
    "Number of EBS volumes the check watches (attached to the instance, or listed)."
);

/// Every snapshot state EC2 reports; each gets a series per volume.
pub const STATES: [&str; 5] = ["pending", "completed", "error", "recoverable", "recovering"];

const DESCRIBE_VOLUMES: &str = "DescribeVolumes";
const DESCRIBE_SNAPSHOTS: &str = "DescribeSnapshots";

/// Pages followed per operation and run, at most (a runaway `NextToken` costs money).
const MAX_PAGES: usize = 20;

/// The keys of an `aws_snapshots` check: `instance_id` or `volume_ids`, not both.
///
/// ```yaml
/// - name: ebs_snapshots
///   kind: aws_snapshots
///   instance_id: i-0011b978b7cea66dc
///   max_age: 26h
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSnapshotsConfig {
    /// Watch every volume attached to this instance. One of `instance_id` and
    /// `volume_ids` is required. Example: `instance_id: i-0011b978b7cea66dc`.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// Watch these volumes. Example: `volume_ids: [vol-0123456789abcdef0]`.
    #[serde(default)]
    pub volume_ids: Option<Vec<String>>,
    /// Each volume's newest completed snapshot may be at most this old (by its start
    /// time). Default `26h` (a daily snapshot, plus slack). Example: `max_age: 8d`.
    #[serde(default = "default_max_age")]
    pub max_age: PromDuration,
    /// AWS region. Default `eu-west-1`. Example: `region: us-east-1`.
    #[serde(default = "aws::default_region")]
    pub region: String,
    /// An endpoint to call instead of AWS's (an emulator). Default: none (AWS itself,
    /// or the SDK's `AWS_ENDPOINT_URL`/`AWS_ENDPOINT_URL_EC2` variables).
    /// Example: `endpoint_url: http://127.0.0.1:5000`.
    #[serde(default)]
    pub endpoint_url: Option<String>,
}

fn default_max_age() -> PromDuration {
    PromDuration(Duration::from_secs(26 * 3600))
}

/// Which volumes to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Volumes {
    Instance(String),
    Listed(Vec<String>),
}

/// What one volume's snapshots say.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VolumeSnapshots {
    /// The volume.
    pub volume_id: String,
    /// Start time of the newest completed snapshot, Unix seconds.
    pub newest_completed: Option<f64>,
    /// Snapshots per state.
    pub counts: BTreeMap<String, u64>,
}

/// Judges the volumes at `now` (Unix seconds): `Ok` with a summary, or `missing` when
/// a volume has no completed snapshot (this wins over `stale`), or `stale` when a
/// volume's newest one is older than `max_age`. The detail names every volume at fault.
///
/// # Errors
/// The failure, as described.
pub fn judge(vols: &[VolumeSnapshots], now: f64, max_age: Duration) -> Result<String, CheckError> {
    let mut missing = Vec::new();
    let mut stale = Vec::new();
    let mut newest_age: Option<f64> = None;
    for v in vols {
        match v.newest_completed {
            None => missing.push(format!("{}: no completed snapshot", v.volume_id)),
            Some(ts) => {
                let age = (now - ts).max(0.0);
                newest_age = Some(newest_age.map_or(age, |a: f64| a.max(age)));
                if age > max_age.as_secs_f64() {
                    stale.push(format!(
                        "{}: newest completed snapshot is {} old",
                        v.volume_id,
                        age_text(age)
                    ));
                }
            }
        }
    }
    let limit = format!("(max_age {})", PromDuration(max_age));
    match (missing.is_empty(), stale.is_empty()) {
        (true, true) => Ok(format!(
            "{} volumes, every newest completed snapshot at most {} old",
            vols.len(),
            age_text(newest_age.unwrap_or(0.0))
        )),
        (false, _) => {
            let mut all = missing;
            all.extend(stale);
            Err(CheckError::new(
                Reason::Missing,
                format!("{} {limit}", all.join("; ")),
            ))
        }
        (true, false) => Err(CheckError::new(
            Reason::Stale,
            format!("{} {limit}", stale.join("; ")),
        )),
    }
}

/// An age in seconds as a Prometheus duration, to the second.
fn age_text(secs: f64) -> String {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped
    let s = secs.clamp(0.0, 1e12) as u64;
    PromDuration(Duration::from_secs(s)).to_string()
}

fn is_volume_id(id: &str) -> bool {
    id.strip_prefix("vol-")
        .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// A built `aws_snapshots` check.
#[derive(Debug)]
pub struct AwsSnapshotsCheck {
    volumes: Volumes,
    max_age: Duration,
    aws: AwsCore,
    client: OnceLock<aws_sdk_ec2::Client>,
}

impl Check for AwsSnapshotsCheck {
    type Config = AwsSnapshotsConfig;
    const KIND: &'static str = "aws_snapshots";
    const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    fn build(config: &AwsSnapshotsConfig) -> Result<Self, BuildError> {
        let settings = AwsSettings {
            region: config.region.clone(),
            endpoint_url: config.endpoint_url.clone(),
        };
        settings.validate()?;
        let volumes = match (&config.instance_id, &config.volume_ids) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(BuildError::new(
                    "instance_id",
                    "set exactly one of instance_id and volume_ids",
                ));
            }
            (Some(id), None) => {
                let ok = id
                    .strip_prefix("i-")
                    .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric()));
                if !ok {
                    return Err(BuildError::new(
                        "instance_id",
                        format!(
                            "invalid instance id {id:?}: expected i- and hex digits, like i-0011b978b7cea66dc"
                        ),
                    ));
                }
                Volumes::Instance(id.clone())
            }
            (None, Some(ids)) => {
                if ids.is_empty() {
                    return Err(BuildError::new("volume_ids", "no volume listed"));
                }
                for (i, id) in ids.iter().enumerate() {
                    if !is_volume_id(id) {
                        return Err(BuildError::new(
                            format!("volume_ids[{i}]"),
                            format!("invalid volume id {id:?}: expected vol- and hex digits"),
                        ));
                    }
                }
                let mut ids = ids.clone();
                ids.sort();
                ids.dedup();
                Volumes::Listed(ids)
            }
        };
        if config.max_age.0.is_zero() {
            return Err(BuildError::new("max_age", "must be above 0"));
        }
        Ok(AwsSnapshotsCheck {
            volumes,
            max_age: config.max_age.0,
            aws: AwsCore::new(settings, &[DESCRIBE_VOLUMES, DESCRIBE_SNAPSHOTS]),
            client: OnceLock::new(),
        })
    }

    fn target(&self) -> String {
        let what = match &self.volumes {
            Volumes::Instance(id) => format!("volumes of {id}"),
            Volumes::Listed(ids) => ids.join(", "),
        };
        format!("{what} in {}", self.aws.settings().describe())
    }

    async fn run(&self, ctx: &RunContext, rec: &mut Recorder) -> Result<(), CheckError> {
        let run = self.aws.begin(ctx).await;
        let mut fresh = Recorder::new(rec.base_labels().clone());
        let verdict = self.collect(&run, &mut fresh).await;
        run.finish(rec, fresh, verdict)
    }
}

impl AwsSnapshotsCheck {
    async fn volume_ids(
        &self,
        run: &AwsRun<'_>,
        client: &aws_sdk_ec2::Client,
    ) -> Result<Vec<String>, CheckError> {
        let mut ids = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut req = client.describe_volumes().set_next_token(token.take());
            req = match &self.volumes {
                Volumes::Instance(id) => req.filters(
                    Filter::builder()
                        .name("attachment.instance-id")
                        .values(id)
                        .build(),
                ),
                Volumes::Listed(list) => req.set_volume_ids(Some(list.clone())),
            };
            let out = run.call(DESCRIBE_VOLUMES, req.send()).await?;
            ids.extend(
                out.volumes()
                    .iter()
                    .filter_map(|v| v.volume_id())
                    .map(str::to_string),
            );
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    async fn collect(&self, run: &AwsRun<'_>, rec: &mut Recorder) -> Result<(), CheckError> {
        let client = self
            .client
            .get_or_init(|| aws_sdk_ec2::Client::new(run.config()));
        let ids = self.volume_ids(run, client).await?;
        #[allow(clippy::cast_precision_loss)] // a handful
        rec.record(&VOLUMES, &[], ids.len() as f64);
        if ids.is_empty() {
            let what = match &self.volumes {
                Volumes::Instance(id) => format!("no EBS volume attached to {id}"),
                Volumes::Listed(list) => format!("none of the volumes {} exists", list.join(", ")),
            };
            return Err(CheckError::new(Reason::Missing, what));
        }
        let mut per: BTreeMap<String, VolumeSnapshots> = ids
            .iter()
            .map(|id| {
                (
                    id.clone(),
                    VolumeSnapshots {
                        volume_id: id.clone(),
                        newest_completed: None,
                        counts: STATES.iter().map(|s| ((*s).to_string(), 0)).collect(),
                    },
                )
            })
            .collect();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let req = client
                .describe_snapshots()
                .owner_ids("self")
                .filters(
                    Filter::builder()
                        .name("volume-id")
                        .set_values(Some(ids.clone()))
                        .build(),
                )
                .set_next_token(token.take());
            let out = run.call(DESCRIBE_SNAPSHOTS, req.send()).await?;
            for s in out.snapshots() {
                let Some(v) = s.volume_id().and_then(|id| per.get_mut(id)) else {
                    continue;
                };
                let state = s.state().map_or("unknown", |st| st.as_str()).to_string();
                if state == "completed"
                    && let Some(t) = s.start_time()
                {
                    let t = t.as_secs_f64();
                    v.newest_completed = Some(v.newest_completed.map_or(t, |n| n.max(t)));
                }
                *v.counts.entry(state).or_insert(0) += 1;
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        for v in per.values() {
            let vid = v.volume_id.as_str();
            if let Some(ts) = v.newest_completed {
                rec.record(&LAST_SUCCESS, &[("volume_id", vid)], ts);
            }
            for (state, n) in &v.counts {
                #[allow(clippy::cast_precision_loss)] // exact below 2^53
                rec.record(
                    &SNAPSHOTS,
                    &[("volume_id", vid), ("state", state.as_str())],
                    *n as f64,
                );
            }
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let vols: Vec<VolumeSnapshots> = per.into_values().collect();
        let summary = judge(&vols, now, self.max_age)?;
        rec.set_detail(summary);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(id: &str, newest: Option<f64>) -> VolumeSnapshots {
        VolumeSnapshots {
            volume_id: id.into(),
            newest_completed: newest,
            counts: BTreeMap::new(),
        }
    }

    #[test]
    fn judge_table() {
        let now = 1_000_000.0;
        let day = Duration::from_secs(86_400);
        type Case = (
            &'static str,
            Vec<VolumeSnapshots>,
            Option<Reason>,
            &'static [&'static str],
        );
        let cases: Vec<Case> = vec![
            (
                "fresh",
                vec![vol("vol-a", Some(now - 3600.0))],
                None,
                &["1 volumes", "1h"],
            ),
            (
                "exactly max_age is not stale",
                vec![vol("vol-a", Some(now - 86_400.0))],
                None,
                &[],
            ),
            (
                "old",
                vec![vol("vol-a", Some(now - 86_401.0 - 3600.0))],
                Some(Reason::Stale),
                &["vol-a", "1d1h", "max_age 1d"],
            ),
            (
                "none",
                vec![vol("vol-a", None)],
                Some(Reason::Missing),
                &["vol-a: no completed snapshot"],
            ),
            (
                "missing wins over stale and both are named",
                vec![vol("vol-a", Some(now - 200_000.0)), vol("vol-b", None)],
                Some(Reason::Missing),
                &["vol-a: newest", "vol-b: no completed"],
            ),
            (
                "one fresh, one old",
                vec![
                    vol("vol-a", Some(now - 10.0)),
                    vol("vol-b", Some(now - 100_000.0)),
                ],
                Some(Reason::Stale),
                &["vol-b"],
            ),
            (
                "a clock ahead of ours is not negative age",
                vec![vol("vol-a", Some(now + 30.0))],
                None,
                &[],
            ),
        ];
        for (name, vols, want, needles) in cases {
            let got = judge(&vols, now, day);
            let text = match (&got, want) {
                (Ok(t), None) => t.clone(),
                (Err(e), Some(r)) => {
                    assert_eq!(e.reason, r, "{name}: {}", e.detail);
                    e.detail.clone()
                }
                _ => panic!("{name}: got {got:?}, want {want:?}"),
            };
            for n in needles {
                assert!(text.contains(n), "{name}: {n:?} not in {text:?}");
            }
            if name == "one fresh, one old" {
                assert!(!text.contains("vol-a"), "{text}");
            }
        }
    }

    #[test]
    fn build_validates() {
        let build = |v: serde_json::Value| {
            AwsSnapshotsCheck::build(&serde_json::from_value(v).expect("config"))
        };
        assert!(build(serde_json::json!({"instance_id": "i-0011b978b7cea66dc"})).is_ok());
        let c =
            build(serde_json::json!({"volume_ids": ["vol-b", "vol-a", "vol-b"]})).expect("listed");
        assert_eq!(c.target(), "vol-a, vol-b in eu-west-1");
        assert_eq!(c.max_age, Duration::from_secs(26 * 3600));
        for (v, field) in [
            (serde_json::json!({}), "instance_id"),
            (
                serde_json::json!({"instance_id": "i-1", "volume_ids": ["vol-1"]}),
                "instance_id",
            ),
            (serde_json::json!({"volume_ids": []}), "volume_ids"),
            (
                serde_json::json!({"volume_ids": ["vol-1", "v2"]}),
                "volume_ids[1]",
            ),
            (
                serde_json::json!({"instance_id": "i-1", "max_age": "0"}),
                "max_age",
            ),
        ] {
            assert_eq!(build(v.clone()).expect_err("invalid").field, field, "{v}");
        }
    }
}
