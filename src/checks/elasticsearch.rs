//! `elasticsearch` check: `GET {url}/_cluster/health`, the cluster's own verdict
//! (green, yellow, red) and the shard and node counts behind it.
//!
//! The request goes through the `http` check's client ([`HttpGet`]), so timeouts, TLS,
//! basic auth and the failure reasons are the same as for any HTTP target.

use std::fmt::Write as _;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use tokio::time::Instant;

use super::http::client::{HttpGet, validate_base_url};
use super::{BuildError, Check, CheckError, Reason, Recorder, RunContext};
use crate::config::types::{BasicAuth, SafeUrl, TlsConfig};
use crate::net;

crate::metric!(
    CLUSTER_STATUS,
    gauge,
    "harena_elasticsearch_cluster_status",
    "Cluster health as Elasticsearch reports it: 1 on the current status (green, yellow or red), 0 on the others."
);
crate::metric!(
    NUMBER_OF_NODES,
    gauge,
    "harena_elasticsearch_number_of_nodes",
    "Nodes in the cluster."
);
crate::metric!(
    UNASSIGNED_SHARDS,
    gauge,
    "harena_elasticsearch_unassigned_shards",
    "Shards that are not allocated to any node."
);
crate::metric!(
    ACTIVE_SHARDS_PERCENT,
    gauge,
    "harena_elasticsearch_active_shards_percent",
    "Active shards as a percentage of all shards (0 to 100)."
);

/// The statuses, as the `status` label of `harena_elasticsearch_cluster_status`.
const STATUSES: [&str; 3] = ["green", "yellow", "red"];

/// How much of an unexpected body a failure detail shows.
const SHOWN_CHARS: usize = 80;

/// The keys of an `elasticsearch` check.
///
/// ```yaml
/// - name: elasticsearch
///   kind: elasticsearch
///   url: http://127.0.0.1:9200
///   basic_auth: {username: monitor, password_env: HARENA_ES_PASSWORD}
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// The cluster's base URL, `http://` or `https://`, to which `/_cluster/health` is
    /// appended; no password in it (use `basic_auth`), no query. Default
    /// `http://127.0.0.1:9200`. Example: `url: https://elasticsearch:9200`.
    #[serde(default = "default_url", deserialize_with = "de_url")]
    pub url: SafeUrl,
    /// HTTP basic authentication (Elasticsearch security), with the password read from a
    /// file or an environment variable at every run. A user with the `monitor` cluster
    /// privilege is enough. Default none.
    /// Example: `basic_auth: {username: monitor, password_env: HARENA_ES_PASSWORD}`.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// TLS settings for an `https` URL (CA file, client certificate, server name,
    /// `insecure_skip_verify`). Default: the built-in WebPKI roots.
    /// Example: `tls_config: {ca_file: /etc/elasticsearch/certs/http_ca.crt}`.
    #[serde(default)]
    pub tls_config: TlsConfig,
    /// Count a yellow cluster (replicas not allocated) as a failure. Default `false`: a
    /// single-node cluster, as on the Harena host, is always yellow, so yellow is only
    /// recorded. Example: `yellow_is_failure: true`.
    #[serde(default)]
    pub yellow_is_failure: bool,
}

impl Default for ElasticsearchConfig {
    fn default() -> Self {
        ElasticsearchConfig {
            url: default_url(),
            basic_auth: None,
            tls_config: TlsConfig::default(),
            yellow_is_failure: false,
        }
    }
}

fn default_url() -> SafeUrl {
    SafeUrl("http://127.0.0.1:9200".to_string())
}

fn de_url<'de, D: Deserializer<'de>>(d: D) -> Result<SafeUrl, D::Error> {
    let text = String::deserialize(d)?;
    validate_base_url(&text).map_err(D::Error::custom)
}

/// The fields of `GET /_cluster/health` the check uses.
#[derive(Debug, Deserialize)]
struct Health {
    cluster_name: Option<String>,
    status: String,
    number_of_nodes: Option<f64>,
    unassigned_shards: Option<f64>,
    active_shards_percent_as_number: Option<f64>,
}

/// A runnable `elasticsearch` check.
#[derive(Debug)]
pub struct ElasticsearchCheck {
    /// `{url}/_cluster/health`.
    health_url: String,
    client: HttpGet,
    yellow_is_failure: bool,
}

impl Check for ElasticsearchCheck {
    type Config = ElasticsearchConfig;
    const KIND: &'static str = "elasticsearch";
    const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    fn build(config: &ElasticsearchConfig) -> Result<Self, BuildError> {
        validate_base_url(&config.url.0).map_err(|e| BuildError::new("url", e))?;
        let client = HttpGet::new(&config.tls_config, config.basic_auth.as_ref())?;
        Ok(ElasticsearchCheck {
            health_url: format!("{}/_cluster/health", config.url.0.trim_end_matches('/')),
            client,
            yellow_is_failure: config.yellow_is_failure,
        })
    }

    fn target(&self) -> String {
        self.health_url.clone()
    }

    async fn run(&self, ctx: &RunContext, rec: &mut Recorder) -> Result<(), CheckError> {
        let start = Instant::now();
        let answer = self.client.get(&self.health_url, ctx.deadline).await?;
        if !(200..300).contains(&answer.status) {
            // "The password is wrong" must not look like "the cluster is down"; 403 is a
            // user without the `monitor` privilege.
            let (reason, why) = match answer.status {
                401 => (Reason::Auth, ": credentials missing or rejected"),
                403 => (Reason::Auth, ": the user lacks the monitor privilege"),
                _ => (Reason::HttpStatus, ""),
            };
            return Err(CheckError::new(
                reason,
                format!(
                    "get {}: status {}, expected 2xx{why}",
                    self.health_url, answer.status
                ),
            ));
        }
        let text = String::from_utf8_lossy(&answer.body);
        let health: Health = serde_json::from_slice(&answer.body).map_err(|e| {
            CheckError::new(
                Reason::Protocol,
                format!(
                    "read cluster health from {}: not the expected JSON ({e}); it starts with {}",
                    self.health_url,
                    net::quote_truncated(&text, SHOWN_CHARS)
                ),
            )
        })?;
        let status = health.status.to_ascii_lowercase();
        if !STATUSES.contains(&status.as_str()) {
            return Err(CheckError::new(
                Reason::Protocol,
                format!(
                    "read cluster health from {}: unknown status {}",
                    self.health_url,
                    net::quote_truncated(&health.status, SHOWN_CHARS)
                ),
            ));
        }
        for s in STATUSES {
            let value = if s == status { 1.0 } else { 0.0 };
            rec.record(&CLUSTER_STATUS, &[("status", s)], value);
        }
        if let Some(n) = health.number_of_nodes {
            rec.record(&NUMBER_OF_NODES, &[], n);
        }
        if let Some(n) = health.unassigned_shards {
            rec.record(&UNASSIGNED_SHARDS, &[], n);
        }
        if let Some(p) = health.active_shards_percent_as_number {
            rec.record(&ACTIVE_SHARDS_PERCENT, &[], p);
        }
        let summary = summary(&health, &status);
        // Red, and yellow when asked, fail with `body_mismatch`: the request worked and
        // the answer was read, but what it says is not what a healthy cluster says. That
        // is the reason the `http` check gives to `json_expect: ['$.status != "red"']`,
        // which is what this is; `http_status` would wrongly blame the transport, and
        // `missing` or `stale` mean other things.
        let failed = status == "red" || (status == "yellow" && self.yellow_is_failure);
        if failed {
            let why = if status == "red" {
                "some primary shards are not allocated"
            } else {
                "some replica shards are not allocated, and yellow_is_failure is set"
            };
            return Err(CheckError::new(
                Reason::BodyMismatch,
                format!("{summary}: {why}"),
            ));
        }
        rec.set_detail(format!(
            "{summary} in {}",
            net::fmt_duration(start.elapsed())
        ));
        Ok(())
    }
}

/// `cluster "harena" is yellow, 1 node, 5 unassigned shards, 50% of shards active`.
fn summary(h: &Health, status: &str) -> String {
    let mut out = match &h.cluster_name {
        Some(name) => format!(
            "cluster {} is {status}",
            net::quote_truncated(name, SHOWN_CHARS)
        ),
        None => format!("cluster is {status}"),
    };
    if let Some(n) = h.number_of_nodes {
        let _ = write!(out, ", {n} node{}", if n == 1.0 { "" } else { "s" });
    }
    if let Some(n) = h.unassigned_shards {
        let _ = write!(
            out,
            ", {n} unassigned shard{}",
            if n == 1.0 { "" } else { "s" }
        );
    }
    if let Some(p) = h.active_shards_percent_as_number {
        let _ = write!(out, ", {}% of shards active", (p * 10.0).round() / 10.0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults() {
        let c: ElasticsearchConfig = serde_json::from_value(json!({})).unwrap();
        assert_eq!(c, ElasticsearchConfig::default());
        assert_eq!(c.url.0, "http://127.0.0.1:9200");
        assert!(!c.yellow_is_failure);
        let check = ElasticsearchCheck::build(&c).unwrap();
        assert_eq!(check.target(), "http://127.0.0.1:9200/_cluster/health");
        let c: ElasticsearchConfig =
            serde_json::from_value(json!({"url": "https://es.example/prefix/"})).unwrap();
        assert_eq!(
            ElasticsearchCheck::build(&c).unwrap().target(),
            "https://es.example/prefix/_cluster/health"
        );
    }

    #[test]
    fn bad_configs_are_refused() {
        for (config, needle) in [
            (json!({"url": "ftp://h"}), "scheme"),
            (json!({"url": "http://elastic:pw@h:9200"}), "password"),
            (json!({"url": "http://h:9200/?pretty"}), "no query"),
            (json!({"yellow": true}), "unknown field"),
        ] {
            let err = serde_json::from_value::<ElasticsearchConfig>(config.clone()).unwrap_err();
            assert!(err.to_string().contains(needle), "{config}: {err}");
        }
        let c: ElasticsearchConfig =
            serde_json::from_value(json!({"basic_auth": {"username": "u"}})).unwrap();
        assert_eq!(
            ElasticsearchCheck::build(&c).unwrap_err().message,
            "set password_file or password_env"
        );
    }

    #[test]
    fn summaries() {
        let h: Health = serde_json::from_value(json!({
            "cluster_name": "docker-cluster", "status": "yellow", "number_of_nodes": 1,
            "unassigned_shards": 1, "active_shards_percent_as_number": 83.33333333333334,
        }))
        .unwrap();
        assert_eq!(
            summary(&h, "yellow"),
            "cluster \"docker-cluster\" is yellow, 1 node, 1 unassigned shard, 83.3% of shards active"
        );
        let h: Health = serde_json::from_value(json!({"status": "green"})).unwrap();
        assert_eq!(summary(&h, "green"), "cluster is green");
    }
}
