//! `aws_security_group` check: the ingress rules of one EC2 security group, and which
//! sensitive ports they open to the whole internet.
//!
//! ```yaml
//! - name: security_group
//!   kind: aws_security_group
//!   group_id: sg-0aa65b430c3e93bad
//!   region: eu-west-1
//! ```
//!
//! Each run makes one `DescribeSecurityGroups` call. Every ingress rule becomes a
//! `harena_security_group_ingress_rule` series (one per source: IPv4 CIDR, IPv6 CIDR,
//! prefix list or referenced group), and every sensitive port that a rule opens to
//! `0.0.0.0/0` or `::/0` (single ports, port ranges and "all traffic" rules alike; ICMP
//! has no ports) a `harena_security_group_exposed_port` series. Exposure is data, not a
//! failure: the run succeeds when AWS answers, and alert rules judge the series. A
//! change of the rule set (a stable hash of the sorted rules, kept in the state file)
//! moves `harena_security_group_changed_timestamp_seconds`, across restarts too.
//!
//! When AWS does not answer, the series of the last good run are recorded again
//! unchanged ([`crate::clients::aws`]): a throttled call never reads as a closed port.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use aws_sdk_ec2::types::IpPermission;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::{BuildError, Check, CheckError, Reason, Recorder, RunContext};
use crate::clients::aws::{self, AwsCore, AwsRun, AwsSettings};

crate::metric!(
    RULE,
    gauge,
    "harena_security_group_ingress_rule",
    "1 for each ingress rule of the security group and each of its sources (protocol all: ports 0 to 65535; ICMP: type and code)."
);
crate::metric!(
    EXPOSED_PORT,
    gauge,
    "harena_security_group_exposed_port",
    "1 for each sensitive port that the security group opens to 0.0.0.0/0 or ::/0, by source."
);
crate::metric!(
    EXPOSED_PORTS,
    gauge,
    "harena_security_group_exposed_ports",
    "Number of sensitive ports that the security group opens to 0.0.0.0/0 or ::/0."
);
crate::metric!(
    CHANGED,
    gauge,
    "harena_security_group_changed_timestamp_seconds",
    "When the check last saw the group's ingress rules change (Unix seconds; the first sighting counts as a change)."
);

/// The one AWS operation this kind calls.
const OPERATION: &str = "DescribeSecurityGroups";

/// Sources that mean "the whole internet".
const WORLD: [&str; 2] = ["0.0.0.0/0", "::/0"];

/// A port or an inclusive range of ports, written `22` or `"3000-3008"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortRange {
    /// First port.
    pub from: u16,
    /// Last port (inclusive).
    pub to: u16,
}

impl PortRange {
    /// One port.
    pub const fn single(port: u16) -> Self {
        PortRange {
            from: port,
            to: port,
        }
    }

    /// Parses `22` or `3000-3008`.
    ///
    /// # Errors
    /// A message naming the text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!("invalid port {text:?}: expected a number like 22 or a range like 3000-3008")
        };
        let port = |t: &str| t.trim().parse::<u16>().map_err(|_| bad());
        let range = match text.split_once('-') {
            Some((a, b)) => PortRange {
                from: port(a)?,
                to: port(b)?,
            },
            None => PortRange::single(port(text)?),
        };
        if range.from > range.to {
            return Err(format!(
                "invalid port range {text:?}: the first port is above the last"
            ));
        }
        Ok(range)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.from == self.to {
            write!(f, "{}", self.from)
        } else {
            write!(f, "{}-{}", self.from, self.to)
        }
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PortRange;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number or a range like \"3000-3008\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortRange, E> {
                u16::try_from(v)
                    .map(PortRange::single)
                    .map_err(|_| E::custom(format!("invalid port {v}: ports go from 0 to 65535")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortRange, E> {
                u16::try_from(v)
                    .map(PortRange::single)
                    .map_err(|_| E::custom(format!("invalid port {v}: ports go from 0 to 65535")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortRange, E> {
                PortRange::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// The keys of an `aws_security_group` check.
///
/// ```yaml
/// - name: security_group
///   kind: aws_security_group
///   group_id: sg-0aa65b430c3e93bad
///   sensitive_ports: [22, 5432, 6379, "3000-3008"]
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSecurityGroupConfig {
    /// The security group's id. Required. Example: `group_id: sg-0aa65b430c3e93bad`.
    pub group_id: String,
    /// Ports that must not be open to the internet (`0.0.0.0/0` or `::/0`): numbers or
    /// `"from-to"` ranges. Default `[22, 5432, 6379, "3000-3008", 4000, 9090, 9200]`
    /// (SSH, PostgreSQL, Redis, the Harena services, Grafana, Prometheus,
    /// Elasticsearch). Example: `sensitive_ports: [22, "8000-8099"]`.
    #[serde(default = "default_sensitive_ports")]
    pub sensitive_ports: Vec<PortRange>,
    /// AWS region. Default `eu-west-1`. Example: `region: us-east-1`.
    #[serde(default = "aws::default_region")]
    pub region: String,
    /// An endpoint to call instead of AWS's (an emulator). Default: none (AWS itself,
    /// or the SDK's `AWS_ENDPOINT_URL`/`AWS_ENDPOINT_URL_EC2` variables).
    /// Example: `endpoint_url: http://127.0.0.1:5000`.
    #[serde(default)]
    pub endpoint_url: Option<String>,
}

/// The default sensitive ports.
pub fn default_sensitive_ports() -> Vec<PortRange> {
    vec![
        PortRange::single(22),
        PortRange::single(5432),
        PortRange::single(6379),
        PortRange {
            from: 3000,
            to: 3008,
        },
        PortRange::single(4000),
        PortRange::single(9090),
        PortRange::single(9200),
    ]
}

/// One ingress rule with one source, as the series labels show it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `all`, or a protocol number.
    pub protocol: String,
    /// First port (ICMP: the type; -1 for all).
    pub from_port: i32,
    /// Last port (ICMP: the code; -1 for all).
    pub to_port: i32,
    /// An IPv4 or IPv6 CIDR, a prefix list id, or a group id.
    pub source: String,
}

impl Rule {
    /// True when the rule lets `port` in over TCP or UDP.
    pub fn opens(&self, port: u16) -> bool {
        match self.protocol.as_str() {
            "all" => true,
            "tcp" | "udp" => (self.from_port..=self.to_port).contains(&i32::from(port)),
            _ => false,
        }
    }
}

/// EC2's protocol names: `-1` is `all`, IANA numbers of the common ones become names.
fn protocol_name(p: Option<&str>) -> String {
    match p.unwrap_or("-1").to_ascii_lowercase().as_str() {
        "-1" | "all" => "all".to_string(),
        "6" | "tcp" => "tcp".to_string(),
        "17" | "udp" => "udp".to_string(),
        "1" | "icmp" => "icmp".to_string(),
        "58" | "icmpv6" => "icmpv6".to_string(),
        other => other.to_string(),
    }
}

/// Flattens EC2's permissions into one [`Rule`] per source, sorted and deduplicated.
pub fn rules_of(perms: &[IpPermission]) -> Vec<Rule> {
    let mut out = BTreeSet::new();
    for p in perms {
        let protocol = protocol_name(p.ip_protocol());
        let (from_port, to_port) = if protocol == "all" {
            (0, 65535)
        } else {
            (p.from_port().unwrap_or(-1), p.to_port().unwrap_or(-1))
        };
        let (from_port, to_port) = match protocol.as_str() {
            // EC2 writes -1 for "every port" of TCP/UDP in some answers.
            "tcp" | "udp" if from_port < 0 || to_port < 0 => (0, 65535),
            _ => (from_port, to_port),
        };
        let sources = p
            .ip_ranges()
            .iter()
            .filter_map(|r| r.cidr_ip())
            .chain(p.ipv6_ranges().iter().filter_map(|r| r.cidr_ipv6()))
            .chain(
                p.prefix_list_ids()
                    .iter()
                    .filter_map(|r| r.prefix_list_id()),
            )
            .chain(p.user_id_group_pairs().iter().filter_map(|r| r.group_id()));
        for source in sources {
            out.insert(Rule {
                protocol: protocol.clone(),
                from_port,
                to_port,
                source: source.to_string(),
            });
        }
    }
    out.into_iter().collect()
}

/// Every `(port, source)` pair where a sensitive port is open to the internet.
pub fn exposures(rules: &[Rule], sensitive: &[PortRange]) -> BTreeSet<(u16, String)> {
    let mut out = BTreeSet::new();
    for r in rules.iter().filter(|r| WORLD.contains(&r.source.as_str())) {
        for range in sensitive {
            for port in range.from..=range.to {
                if r.opens(port) {
                    out.insert((port, r.source.clone()));
                }
            }
        }
    }
    out
}

/// A stable hash of a sorted rule set (FNV-1a, 64 bits, as hex).
pub fn rules_hash(rules: &[Rule]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for r in rules {
        let line = format!(
            "{} {} {} {}\n",
            r.protocol, r.from_port, r.to_port, r.source
        );
        for b in line.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// A built `aws_security_group` check.
#[derive(Debug)]
pub struct AwsSecurityGroupCheck {
    group_id: String,
    sensitive: Vec<PortRange>,
    aws: AwsCore,
    client: OnceLock<aws_sdk_ec2::Client>,
}

impl Check for AwsSecurityGroupCheck {
    type Config = AwsSecurityGroupConfig;
    const KIND: &'static str = "aws_security_group";
    const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    fn build(config: &AwsSecurityGroupConfig) -> Result<Self, BuildError> {
        let settings = AwsSettings {
            region: config.region.clone(),
            endpoint_url: config.endpoint_url.clone(),
        };
        settings.validate()?;
        let id_ok = config
            .group_id
            .strip_prefix("sg-")
            .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric()));
        if !id_ok {
            return Err(BuildError::new(
                "group_id",
                format!(
                    "invalid security group id {:?}: expected sg- and hex digits, like sg-0aa65b430c3e93bad",
                    config.group_id
                ),
            ));
        }
        if config.sensitive_ports.is_empty() {
            return Err(BuildError::new(
                "sensitive_ports",
                "no port listed: leave the key out for the defaults",
            ));
        }
        Ok(AwsSecurityGroupCheck {
            group_id: config.group_id.clone(),
            sensitive: config.sensitive_ports.clone(),
            aws: AwsCore::new(settings, &[OPERATION]),
            client: OnceLock::new(),
        })
    }

    fn target(&self) -> String {
        format!("{} in {}", self.group_id, self.aws.settings().describe())
    }

    async fn run(&self, ctx: &RunContext, rec: &mut Recorder) -> Result<(), CheckError> {
        let run = self.aws.begin(ctx).await;
        let mut fresh = Recorder::new(rec.base_labels().clone());
        let verdict = self.collect(ctx, &run, &mut fresh).await;
        run.finish(rec, fresh, verdict)
    }
}

impl AwsSecurityGroupCheck {
    async fn collect(
        &self,
        ctx: &RunContext,
        run: &AwsRun<'_>,
        rec: &mut Recorder,
    ) -> Result<(), CheckError> {
        let client = self
            .client
            .get_or_init(|| aws_sdk_ec2::Client::new(run.config()));
        let out = run
            .call(
                OPERATION,
                client
                    .describe_security_groups()
                    .group_ids(&self.group_id)
                    .send(),
            )
            .await?;
        let Some(group) = out
            .security_groups()
            .iter()
            .find(|g| g.group_id() == Some(self.group_id.as_str()))
        else {
            return Err(CheckError::new(
                Reason::Missing,
                format!("security group {} not found", self.group_id),
            ));
        };
        let rules = rules_of(group.ip_permissions());
        let g = self.group_id.as_str();
        for r in &rules {
            let (from, to) = (r.from_port.to_string(), r.to_port.to_string());
            rec.record(
                &RULE,
                &[
                    ("group_id", g),
                    ("protocol", r.protocol.as_str()),
                    ("from_port", from.as_str()),
                    ("to_port", to.as_str()),
                    ("source", r.source.as_str()),
                ],
                1.0,
            );
        }
        let exposed = exposures(&rules, &self.sensitive);
        for (port, source) in &exposed {
            let port = port.to_string();
            rec.record(
                &EXPOSED_PORT,
                &[
                    ("group_id", g),
                    ("port", port.as_str()),
                    ("source", source.as_str()),
                ],
                1.0,
            );
        }
        let ports: BTreeSet<u16> = exposed.iter().map(|(p, _)| *p).collect();
        #[allow(clippy::cast_precision_loss)] // at most 65536
        rec.record(&EXPOSED_PORTS, &[("group_id", g)], ports.len() as f64);
        let changed_ms = self.note_hash(ctx, &rules).await;
        #[allow(clippy::cast_precision_loss)] // exact for the next 280,000 years
        rec.record(&CHANGED, &[("group_id", g)], changed_ms as f64 / 1000.0);
        rec.set_detail(summary(&rules, &exposed));
        Ok(())
    }

    /// Compares the rule set's hash with the one in the state file; returns when the
    /// rules last changed (ms since the epoch).
    async fn note_hash(&self, ctx: &RunContext, rules: &[Rule]) -> i64 {
        let hash_key = format!("aws_sg/{}/hash", ctx.check);
        let changed_key = format!("aws_sg/{}/changed_ms", ctx.check);
        let hash = rules_hash(rules);
        let previous = ctx.state.get(&hash_key).await;
        let stored = ctx
            .state
            .get(&changed_key)
            .await
            .and_then(|t| t.parse::<i64>().ok());
        match (previous, stored) {
            (Some(p), Some(ms)) if p == hash => ms,
            (previous, _) => {
                let now = crate::scheduler::now_ms();
                if previous.is_some() {
                    tracing::info!(check = %ctx.check, group_id = %self.group_id, "security group rules changed");
                }
                // The time first, so that a crash in between makes the next run see the
                // change again rather than keep a stale time.
                ctx.state.set(&changed_key, &now.to_string()).await;
                ctx.state.set(&hash_key, &hash).await;
                now
            }
        }
    }
}

/// The success detail: rule count and the exposed ports.
fn summary(rules: &[Rule], exposed: &BTreeSet<(u16, String)>) -> String {
    if exposed.is_empty() {
        return format!(
            "{} ingress rules, no sensitive port open to the internet",
            rules.len()
        );
    }
    let mut by_port: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
    for (p, s) in exposed {
        by_port.entry(*p).or_default().push(s);
    }
    let mut list: Vec<String> = by_port
        .iter()
        .take(12)
        .map(|(p, s)| format!("{p} ({})", s.join(", ")))
        .collect();
    if by_port.len() > 12 {
        list.push(format!("{} more", by_port.len() - 12));
    }
    format!(
        "{} ingress rules, {} sensitive ports open to the internet: {}",
        rules.len(),
        by_port.len(),
        list.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{IpRange, Ipv6Range, PrefixListId, UserIdGroupPair};

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

    fn exposed_ports(perms: &[IpPermission]) -> Vec<(u16, String)> {
        exposures(&rules_of(perms), &default_sensitive_ports())
            .into_iter()
            .collect()
    }

    #[test]
    fn exposure_table() {
        let w4 = "0.0.0.0/0".to_string();
        let w6 = "::/0".to_string();
        type Case = (&'static str, Vec<IpPermission>, Vec<(u16, String)>);
        let cases: Vec<Case> = vec![
            (
                "single ports",
                vec![
                    perm("tcp", 5432, 5432, &["0.0.0.0/0"], &[]),
                    perm("tcp", 6379, 6379, &["0.0.0.0/0"], &[]),
                ],
                vec![(5432, w4.clone()), (6379, w4.clone())],
            ),
            (
                "a range covering some sensitive ports",
                vec![perm("tcp", 3005, 4000, &[], &["::/0"])],
                vec![
                    (3005, w6.clone()),
                    (3006, w6.clone()),
                    (3007, w6.clone()),
                    (3008, w6.clone()),
                    (4000, w6.clone()),
                ],
            ),
            (
                "udp counts too",
                vec![perm("udp", 9200, 9200, &["0.0.0.0/0"], &[])],
                vec![(9200, w4.clone())],
            ),
            (
                "numeric protocol 6 is tcp",
                vec![perm("6", 22, 22, &["0.0.0.0/0"], &[])],
                vec![(22, w4.clone())],
            ),
            (
                "icmp has no ports",
                vec![perm("icmp", -1, -1, &["0.0.0.0/0"], &["::/0"])],
                vec![],
            ),
            (
                "private sources are not the internet",
                vec![
                    perm("tcp", 22, 22, &["10.0.0.0/8"], &["fd00::/8"]),
                    perm("tcp", 80, 80, &["0.0.0.0/0"], &[]),
                    perm("tcp", 443, 443, &["0.0.0.0/0"], &["::/0"]),
                ],
                vec![],
            ),
            (
                "a wide CIDR that is not /0",
                vec![perm("tcp", 0, 65535, &["0.0.0.0/1"], &[])],
                vec![],
            ),
        ];
        for (name, perms, want) in cases {
            assert_eq!(exposed_ports(&perms), want, "{name}");
        }
    }

    #[test]
    fn all_traffic_exposes_every_sensitive_port() {
        let all = IpPermission::builder()
            .ip_protocol("-1")
            .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
            .build();
        let rules = rules_of(std::slice::from_ref(&all));
        assert_eq!(
            rules,
            vec![Rule {
                protocol: "all".into(),
                from_port: 0,
                to_port: 65535,
                source: "0.0.0.0/0".into()
            }]
        );
        let got = exposed_ports(&[all]);
        let ports: Vec<u16> = got.iter().map(|(p, _)| *p).collect();
        let mut want = vec![22, 5432, 6379, 4000, 9090, 9200];
        want.extend(3000..=3008);
        want.sort_unstable();
        assert_eq!(ports, want);
    }

    #[test]
    fn every_kind_of_source_is_a_rule() {
        let p = IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(5432)
            .to_port(5432)
            .ip_ranges(IpRange::builder().cidr_ip("10.0.0.0/8").build())
            .ipv6_ranges(Ipv6Range::builder().cidr_ipv6("::/0").build())
            .prefix_list_ids(PrefixListId::builder().prefix_list_id("pl-123").build())
            .user_id_group_pairs(UserIdGroupPair::builder().group_id("sg-1").build())
            .build();
        let sources: Vec<String> = rules_of(&[p]).into_iter().map(|r| r.source).collect();
        assert_eq!(sources, vec!["10.0.0.0/8", "::/0", "pl-123", "sg-1"]);
    }

    #[test]
    fn hash_is_stable_and_order_free() {
        let a = perm("tcp", 22, 22, &["10.0.0.0/8"], &[]);
        let b = perm("tcp", 80, 80, &["0.0.0.0/0"], &[]);
        let h1 = rules_hash(&rules_of(&[a.clone(), b.clone()]));
        let h2 = rules_hash(&rules_of(&[b, a.clone()]));
        assert_eq!(h1, h2);
        assert_ne!(h1, rules_hash(&rules_of(&[a])));
        assert_eq!(h1.len(), 16);
    }

    #[test]
    fn ports_parse() {
        assert_eq!(PortRange::parse("22"), Ok(PortRange::single(22)));
        assert_eq!(
            PortRange::parse("3000-3008"),
            Ok(PortRange {
                from: 3000,
                to: 3008
            })
        );
        for bad in ["", "x", "70000", "10-5", "1-2-3"] {
            assert!(PortRange::parse(bad).is_err(), "{bad}");
        }
        let c: AwsSecurityGroupConfig = serde_json::from_value(serde_json::json!({
            "group_id": "sg-1", "sensitive_ports": [22, "3000-3002"]
        }))
        .expect("config");
        assert_eq!(c.sensitive_ports[1].to, 3002);
        assert_eq!(c.region, "eu-west-1");
        assert!(
            serde_json::from_value::<AwsSecurityGroupConfig>(
                serde_json::json!({"group_id": "sg-1", "sensitive_ports": [70000]})
            )
            .is_err()
        );
    }

    #[test]
    fn yaml_config_with_defaults_and_port_ranges() {
        use crate::checks::CheckSpec;
        use crate::config::{ConfigSource, parse};
        let text = "checks:\n  - name: security_group\n    kind: aws_security_group\n    group_id: sg-0aa65b430c3e93bad\n    sensitive_ports: [22, 3000-3008, \"9200\"]\n";
        let cfg = parse(ConfigSource::File("t.yml".into()), text).expect("valid config");
        let c = &cfg.checks[0].config;
        assert_eq!(c.interval, Duration::from_secs(300));
        assert_eq!(c.timeout, Duration::from_secs(30));
        let CheckSpec::AwsSecurityGroupCheck(sg) = &c.spec else {
            panic!("kind {}", c.spec.kind());
        };
        assert_eq!(
            sg.sensitive_ports,
            vec![
                PortRange::single(22),
                PortRange {
                    from: 3000,
                    to: 3008
                },
                PortRange::single(9200)
            ]
        );
        assert_eq!(sg.region, "eu-west-1");
        assert_eq!(sg.endpoint_url, None);

        let bad = "checks:\n  - name: sg\n    kind: aws_security_group\n    group_id: sg-1\n    sensitive_ports: [22, 9-1]\n    access_key: x\n";
        let err = parse(ConfigSource::File("t.yml".into()), bad)
            .expect_err("invalid")
            .to_string();
        assert!(err.contains("the first port is above the last"), "{err}");
        assert!(err.contains("access_key"), "{err}");
    }

    #[test]
    fn build_validates() {
        let build = |v: serde_json::Value| {
            AwsSecurityGroupCheck::build(&serde_json::from_value(v).expect("config"))
        };
        assert!(build(serde_json::json!({"group_id": "sg-0aa65b430c3e93bad"})).is_ok());
        assert_eq!(
            build(serde_json::json!({"group_id": "i-1"}))
                .expect_err("bad id")
                .field,
            "group_id"
        );
        assert_eq!(
            build(serde_json::json!({"group_id": "sg-1", "sensitive_ports": []}))
                .expect_err("empty")
                .field,
            "sensitive_ports"
        );
        assert_eq!(
            build(serde_json::json!({"group_id": "sg-1", "endpoint_url": "nope"}))
                .expect_err("bad url")
                .field,
            "endpoint_url"
        );
    }
}
