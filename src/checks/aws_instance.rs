//! `aws_instance` check: one EC2 instance's state, status checks and public IP.
//!
//! ```yaml
//! - name: ec2_instance
//!   kind: aws_instance
//!   instance_id: i-0011b978b7cea66dc
//!   expected_public_ip: 63.35.52.216
//!   region: eu-west-1
//! ```
//!
//! Each run makes three calls: `DescribeInstances` (state, type, zone, public IP),
//! `DescribeInstanceStatus` with `IncludeAllInstances` (the system and instance status
//! checks, also for a stopped instance) and `DescribeAddresses` filtered by the
//! instance id (is its public IP an Elastic IP, which survives a stop and start, or an
//! automatic one, which does not). A stopped instance is data: the state series say
//! so and the run succeeds; only an instance that does not exist fails it (`missing`).
//!
//! When AWS does not answer, the series of the last good run are recorded again
//! unchanged ([`crate::clients::aws`]): a throttled call never reads as a stopped
//! instance.

use std::net::Ipv4Addr;
use std::sync::OnceLock;
use std::time::Duration;

use aws_sdk_ec2::types::{Filter, Instance, InstanceStatus};
use serde::Deserialize;

use super::{BuildError, Check, CheckError, Reason, Recorder, RunContext};
use crate::clients::aws::{self, AwsCore, AwsRun, AwsSettings};

crate::metric!(
    STATE,
    gauge,
    "harena_ec2_instance_state",
    "1 for the instance's current state, 0 for the others (pending, running, shutting-down, terminated, stopping, stopped)."
);
crate::metric!(
    STATUS_OK,
    gauge,
    "harena_ec2_status_check_ok",
    "1 when the instance's status check of this type (system, instance) is ok; 0 when impaired, initializing, insufficient-data or not-applicable."
);
crate::metric!(
    INFO,
    gauge,
    "harena_ec2_instance_info",
    "1, with the instance's type, architecture and availability zone as labels."
);
crate::metric!(
    PUBLIC_IP,
    gauge,
    "harena_ec2_public_ip_info",
    "1, with the instance's public IPv4 address as label; absent when it has none."
);
crate::metric!(
    IP_MATCHES,
    gauge,
    "harena_ec2_public_ip_matches",
    "1 when the instance's public IP is expected_public_ip, else 0; only when expected_public_ip is set."
);
crate::metric!(
    EIP,
    gauge,
    "harena_ec2_elastic_ip_associated",
    "1 when the instance's public IP is an Elastic IP associated with it (it survives a stop and start), else 0."
);

/// Every EC2 instance state, in lifecycle order.
pub const STATES: [&str; 6] = [
    "pending",
    "running",
    "shutting-down",
    "terminated",
    "stopping",
    "stopped",
];

const DESCRIBE_INSTANCES: &str = "DescribeInstances";
const DESCRIBE_STATUS: &str = "DescribeInstanceStatus";
const DESCRIBE_ADDRESSES: &str = "DescribeAddresses";

/// The keys of an `aws_instance` check.
///
/// ```yaml
/// - name: ec2_instance
///   kind: aws_instance
///   instance_id: i-0011b978b7cea66dc
///   expected_public_ip: 63.35.52.216
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsInstanceConfig {
    /// The instance's id. Required. Example: `instance_id: i-0011b978b7cea66dc`.
    pub instance_id: String,
    /// The public IPv4 address the instance must have (what DNS records and
    /// bookmarks point at); `harena_ec2_public_ip_matches` compares. Default: none (no
    /// comparison). Example: `expected_public_ip: 63.35.52.216`.
    #[serde(default)]
    pub expected_public_ip: Option<String>,
    /// AWS region. Default `eu-west-1`. Example: `region: us-east-1`.
    #[serde(default = "aws::default_region")]
    pub region: String,
    /// An endpoint to call instead of AWS's (an emulator). Default: none (AWS itself,
    /// or the SDK's `AWS_ENDPOINT_URL`/`AWS_ENDPOINT_URL_EC2` variables).
    /// Example: `endpoint_url: http://127.0.0.1:5000`.
    #[serde(default)]
    pub endpoint_url: Option<String>,
}

/// A built `aws_instance` check.
#[derive(Debug)]
pub struct AwsInstanceCheck {
    instance_id: String,
    expected_ip: Option<Ipv4Addr>,
    aws: AwsCore,
    client: OnceLock<aws_sdk_ec2::Client>,
}

/// The status of one status check: `ok`, `impaired`, `initializing`,
/// `insufficient-data`, `not-applicable`, or `unknown` when AWS gave none.
fn summary_status(s: Option<&aws_sdk_ec2::types::InstanceStatusSummary>) -> String {
    s.and_then(|s| s.status())
        .map_or_else(|| "unknown".to_string(), |st| st.as_str().to_string())
}

impl Check for AwsInstanceCheck {
    type Config = AwsInstanceConfig;
    const KIND: &'static str = "aws_instance";
    const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    fn build(config: &AwsInstanceConfig) -> Result<Self, BuildError> {
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
        let expected_ip = match &config.expected_public_ip {
            None => None,
            Some(text) => Some(text.parse::<Ipv4Addr>().map_err(|_| {
                BuildError::new(
                    "expected_public_ip",
                    format!("invalid IPv4 address {text:?}"),
                )
            })?),
        };
        Ok(AwsInstanceCheck {
            instance_id: config.instance_id.clone(),
            expected_ip,
            aws: AwsCore::new(
                settings,
                &[DESCRIBE_INSTANCES, DESCRIBE_STATUS, DESCRIBE_ADDRESSES],
            ),
            client: OnceLock::new(),
        })
    }

    fn target(&self) -> String {
        format!("{} in {}", self.instance_id, self.aws.settings().describe())
    }

    async fn run(&self, ctx: &RunContext, rec: &mut Recorder) -> Result<(), CheckError> {
        let run = self.aws.begin(ctx).await;
        let mut fresh = Recorder::new(rec.base_labels().clone());
        let verdict = self.collect(&run, &mut fresh).await;
        run.finish(rec, fresh, verdict)
    }
}

impl AwsInstanceCheck {
    async fn collect(&self, run: &AwsRun<'_>, rec: &mut Recorder) -> Result<(), CheckError> {
        let client = self
            .client
            .get_or_init(|| aws_sdk_ec2::Client::new(run.config()));
        let id = self.instance_id.as_str();
        let described = run
            .call(
                DESCRIBE_INSTANCES,
                client.describe_instances().instance_ids(id).send(),
            )
            .await?;
        let instance: Option<Instance> = described
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(id))
            .cloned();
        let Some(instance) = instance else {
            return Err(CheckError::new(
                Reason::Missing,
                format!("instance {id} not found"),
            ));
        };
        let status = run
            .call(
                DESCRIBE_STATUS,
                client
                    .describe_instance_status()
                    .instance_ids(id)
                    .include_all_instances(true)
                    .send(),
            )
            .await?;
        let status: Option<InstanceStatus> = status
            .instance_statuses()
            .iter()
            .find(|s| s.instance_id() == Some(id))
            .cloned();
        let addresses = run
            .call(
                DESCRIBE_ADDRESSES,
                client
                    .describe_addresses()
                    .filters(Filter::builder().name("instance-id").values(id).build())
                    .send(),
            )
            .await?;

        let state = instance
            .state()
            .and_then(|s| s.name())
            .map_or_else(|| "unknown".to_string(), |n| n.as_str().to_string());
        for s in STATES {
            rec.record(&STATE, &[("state", s)], if s == state { 1.0 } else { 0.0 });
        }

        let checks = [
            (
                "system",
                summary_status(status.as_ref().and_then(|s| s.system_status())),
            ),
            (
                "instance",
                summary_status(status.as_ref().and_then(|s| s.instance_status())),
            ),
        ];
        for (kind, st) in &checks {
            rec.record(
                &STATUS_OK,
                &[("type", kind)],
                if st == "ok" { 1.0 } else { 0.0 },
            );
        }

        let itype = instance
            .instance_type()
            .map_or("unknown", |t| t.as_str())
            .to_string();
        let arch = instance
            .architecture()
            .map_or("unknown", |a| a.as_str())
            .to_string();
        let zone = instance
            .placement()
            .and_then(|p| p.availability_zone())
            .unwrap_or("unknown")
            .to_string();
        rec.record(
            &INFO,
            &[
                ("instance_type", itype.as_str()),
                ("architecture", arch.as_str()),
                ("availability_zone", zone.as_str()),
            ],
            1.0,
        );

        let ip = instance.public_ip_address().map(str::to_string);
        if let Some(ip) = &ip {
            rec.record(&PUBLIC_IP, &[("ip", ip.as_str())], 1.0);
        }
        let elastic = ip.as_deref().is_some_and(|ip| {
            addresses
                .addresses()
                .iter()
                .any(|a| a.public_ip() == Some(ip) && a.instance_id() == Some(id))
        });
        rec.record(&EIP, &[], if elastic { 1.0 } else { 0.0 });
        let mut notes = Vec::new();
        if let Some(want) = self.expected_ip {
            let matches = ip.as_deref().and_then(|i| i.parse::<Ipv4Addr>().ok()) == Some(want);
            rec.record(&IP_MATCHES, &[], if matches { 1.0 } else { 0.0 });
            if !matches {
                notes.push(format!("public IP is not the expected {want}"));
            }
        }
        for (kind, st) in &checks {
            if st != "ok" {
                notes.push(format!("{kind} status check {st}"));
            }
        }
        let ip_text = match (&ip, elastic) {
            (Some(ip), true) => format!("public IP {ip} (Elastic IP)"),
            (Some(ip), false) => {
                format!("public IP {ip} (not an Elastic IP: it changes on stop and start)")
            }
            (None, _) => "no public IP".to_string(),
        };
        let mut detail = format!("{state}, {itype} in {zone}, {ip_text}");
        if !notes.is_empty() {
            detail.push_str("; ");
            detail.push_str(&notes.join(", "));
        }
        rec.set_detail(detail);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(v: serde_json::Value) -> Result<AwsInstanceCheck, BuildError> {
        AwsInstanceCheck::build(&serde_json::from_value(v).expect("config"))
    }

    #[test]
    fn build_validates() {
        let c = build(serde_json::json!({
            "instance_id": "i-0011b978b7cea66dc", "expected_public_ip": "63.35.52.216"
        }))
        .expect("valid");
        assert_eq!(c.target(), "i-0011b978b7cea66dc in eu-west-1");
        assert_eq!(
            build(serde_json::json!({"instance_id": "sg-1"}))
                .expect_err("bad id")
                .field,
            "instance_id"
        );
        assert_eq!(
            build(serde_json::json!({"instance_id": "i-1", "expected_public_ip": "1.2.3"}))
                .expect_err("bad ip")
                .field,
            "expected_public_ip"
        );
        assert!(
            serde_json::from_value::<AwsInstanceConfig>(
                serde_json::json!({"instance_id": "i-1", "expected_ip": "1.2.3.4"})
            )
            .is_err(),
            "unknown keys are refused"
        );
    }
}
