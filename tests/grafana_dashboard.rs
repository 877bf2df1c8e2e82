//! The Grafana side (`grafana/`): the "Harena overview" dashboard and its provisioning
//! files.
//!
//! - The dashboard's JSON model is checked for what Grafana 10 needs (unique panel ids,
//!   grid positions inside the 24 columns and not overlapping, a Prometheus data source
//!   and targets on every panel, the template variables the queries use).
//! - Every metric name its queries use is in `docs/metrics.md` (the contract) or is one
//!   Prometheus writes itself (`up`, ...).
//! - Every panel query runs against a real Prometheus (Debian `prometheus` 2.42) that
//!   scrapes the exporter every second and loads the shipped `rules/*.yml`, while the
//!   exporter watches a simulated Harena (`tests/common_harena`) with the embedded
//!   config's checks: each query must parse and return data.

mod common;
mod common_harena;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::Value;
use yaml_rust2::YamlLoader;

use common::{Exporter, http};
use common_harena::{Harena, OwnedChild, free_port, require};

const DASHBOARD: &str = include_str!("../grafana/dashboards/harena-overview.json");
const DATASOURCES: &str = include_str!("../grafana/provisioning/datasources/prometheus.yml");
const PROVIDERS: &str = include_str!("../grafana/provisioning/dashboards/harena.yml");
const GRAFANA_README: &str = include_str!("../grafana/README.md");
const METRICS_DOC: &str = include_str!("../docs/metrics.md");

/// The scrape job of the test's Prometheus (the `$job` variable's value).
const JOB: &str = "harena";

/// Series Prometheus writes itself, or the rule evaluation does.
const PROMETHEUS_BUILTINS: &[&str] = &[
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
    "ALERTS",
    "ALERTS_FOR_STATE",
];

/// Variables Grafana defines itself.
const GRAFANA_BUILTINS: &[&str] = &[
    "__rate_interval",
    "__interval",
    "__interval_ms",
    "__range",
    "__range_s",
    "__range_ms",
    "__from",
    "__to",
];

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn dashboard() -> Value {
    serde_json::from_str(DASHBOARD).expect("grafana/dashboards/harena-overview.json is JSON")
}

// ---------------------------------------------------------------------------------------
// Reading the dashboard

/// Every panel, rows included, and the panels inside collapsed rows.
fn all_panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("a panels array") {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner.iter());
        }
    }
    out
}

fn is_row(p: &Value) -> bool {
    p["type"] == "row"
}

/// One query of one panel.
#[derive(Debug, Clone)]
struct Target {
    panel_id: i64,
    panel: String,
    ref_id: String,
    expr: String,
    instant: bool,
}

fn targets(d: &Value) -> Vec<Target> {
    let mut out = Vec::new();
    for p in all_panels(d).into_iter().filter(|p| !is_row(p)) {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(Target {
                panel_id: p["id"].as_i64().unwrap_or(-1),
                panel: p["title"].as_str().unwrap_or("").to_string(),
                ref_id: t["refId"].as_str().unwrap_or("").to_string(),
                expr: t["expr"].as_str().unwrap_or("").to_string(),
                instant: t["instant"].as_bool() == Some(true) && t["range"].as_bool() != Some(true),
            });
        }
    }
    out
}

/// The annotation queries (those with an `expr`).
fn annotation_exprs(d: &Value) -> Vec<(String, String)> {
    d["annotations"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            Some((
                a["name"].as_str()?.to_string(),
                a["expr"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// `(name, type, query)` of the template variables.
fn variables(d: &Value) -> Vec<(String, String, String)> {
    d["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .map(|v| {
            let query = match &v["query"] {
                Value::String(s) => s.clone(),
                Value::Object(o) => o
                    .get("query")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                _ => String::new(),
            };
            (
                v["name"].as_str().expect("variable name").to_string(),
                v["type"].as_str().expect("variable type").to_string(),
                query,
            )
        })
        .collect()
}

static VARIABLE: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"\$\{(\w+)(?::[\w]+)?\}|\[\[(\w+)\]\]|\$(\w+)").expect("valid regex")
});

/// The variable names an expression uses.
fn used_variables(expr: &str) -> BTreeSet<String> {
    VARIABLE
        .captures_iter(expr)
        .filter_map(|c| c.get(1).or(c.get(2)).or(c.get(3)))
        .map(|m| m.as_str().to_string())
        .collect()
}

/// `expr` with every variable replaced by `values[name]`.
///
/// # Panics
/// On a variable without a value.
fn substitute(expr: &str, values: &BTreeMap<&str, String>) -> String {
    VARIABLE
        .replace_all(expr, |c: &regex::Captures<'_>| {
            let name = c
                .get(1)
                .or(c.get(2))
                .or(c.get(3))
                .expect("a variable name")
                .as_str();
            values
                .get(name)
                .unwrap_or_else(|| panic!("no test value for ${name} in {expr}"))
                .clone()
        })
        .into_owned()
}

/// Values that exist in the test: the scraped job and instance, every check.
fn test_values(instance: &str) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("__rate_interval", "1m".to_string()),
        ("__interval", "15s".to_string()),
        ("__interval_ms", "15000".to_string()),
        ("__range", "10m".to_string()),
        ("__range_s", "600".to_string()),
        ("__range_ms", "600000".to_string()),
        ("job", JOB.to_string()),
        ("instance", instance.replace('.', "\\\\.")),
        ("check", ".*".to_string()),
        ("datasource", "prometheus".to_string()),
    ])
}

/// Metric names of the vector and matrix selectors of `expr`.
fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    struct Names(BTreeSet<String>);
    impl ExprVisitor for Names {
        type Error = String;
        fn pre_visit(&mut self, e: &Expr) -> Result<bool, String> {
            let vs = match e {
                Expr::VectorSelector(vs) => Some(vs),
                Expr::MatrixSelector(ms) => Some(&ms.vs),
                _ => None,
            };
            if let Some(vs) = vs {
                match &vs.name {
                    Some(n) => {
                        self.0.insert(n.clone());
                    }
                    None => return Err("a selector without a metric name".to_string()),
                }
            }
            Ok(true)
        }
    }
    let ast = parser::parse(expr)?;
    let mut names = Names(BTreeSet::new());
    walk_expr(&mut names, &ast)?;
    Ok(names.0)
}

/// `(name, type)` of every series in docs/metrics.md's tables.
fn documented_metrics() -> BTreeMap<String, String> {
    let row =
        regex::Regex::new(r"^\|\s*`([A-Za-z_:][A-Za-z0-9_:]*)(?:\{[^`]*\})?`\s*\|\s*(\w+)\s*\|")
            .expect("valid regex");
    METRICS_DOC
        .lines()
        .filter_map(|l| {
            let c = row.captures(l)?;
            Some((c[1].to_string(), c[2].to_string()))
        })
        .collect()
}

/// Whether `name` is documented, or a `_bucket`/`_count`/`_sum` of a documented histogram.
fn is_documented(name: &str, documented: &BTreeMap<String, String>) -> bool {
    if documented.contains_key(name) {
        return true;
    }
    ["_bucket", "_count", "_sum"].iter().any(|suffix| {
        name.strip_suffix(suffix)
            .and_then(|base| documented.get(base))
            .is_some_and(|kind| kind == "histogram" || kind == "summary")
    })
}

// ---------------------------------------------------------------------------------------
// The JSON model

#[test]
fn dashboard_json_is_a_grafana_10_model() {
    let d = dashboard();
    assert_eq!(d["title"], "Harena overview");
    assert_eq!(d["uid"], "harena-overview", "a stable uid for links");
    assert!(
        d["schemaVersion"].as_i64().is_some_and(|v| v >= 38),
        "schemaVersion {} is older than Grafana 10's 38",
        d["schemaVersion"]
    );
    assert!(d["id"].is_null(), "no database id in a provisioned file");

    // Template variables: a Prometheus data source variable, then job/instance/check.
    let vars = variables(&d);
    let names: Vec<&str> = vars.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["datasource", "job", "instance", "check"]);
    assert_eq!(vars[0].1, "datasource");
    assert_eq!(vars[0].2, "prometheus");
    for (name, kind, query) in &vars[1..] {
        assert_eq!(kind, "query", "${name}");
        assert!(query.starts_with("label_values("), "${name}: {query}");
    }

    let mut ids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    let mut rects: Vec<(i64, i64, i64, i64, String)> = Vec::new();
    for p in all_panels(&d) {
        let title = p["title"].as_str().unwrap_or("").to_string();
        assert!(!title.is_empty(), "a panel without a title: {p}");
        let id = p["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("{title}: no numeric id"));
        assert!(ids.insert(id), "{title}: panel id {id} is used twice");
        let g = &p["gridPos"];
        let [h, w, x, y] = ["h", "w", "x", "y"].map(|k| {
            g[k].as_i64()
                .unwrap_or_else(|| panic!("{title}: gridPos.{k} is not an integer: {g}"))
        });
        assert!(h >= 1 && (1..=24).contains(&w), "{title}: gridPos {g}");
        assert!(
            x >= 0 && y >= 0 && x + w <= 24,
            "{title}: outside 24 columns: {g}"
        );
        for (ox, oy, ow, oh, other) in &rects {
            let overlap = x < ox + ow && *ox < x + w && y < oy + oh && *oy < y + h;
            assert!(!overlap, "{title} overlaps {other}");
        }
        rects.push((x, y, w, h, title.clone()));
        if is_row(p) {
            assert_eq!(w, 24, "{title}: a row spans the width");
            continue;
        }
        assert!(
            titles.insert(title.clone()),
            "two panels are titled {title}"
        );
        assert!(
            p["description"].as_str().is_some_and(|s| s.len() > 10),
            "{title}: no description to tell the operator what it shows"
        );
        assert_eq!(
            p["datasource"]["type"], "prometheus",
            "{title}: the data source is not Prometheus"
        );
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "{title}: the data source is not the $datasource variable"
        );
        let ts = p["targets"]
            .as_array()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| panic!("{title}: no targets"));
        let mut refs = BTreeSet::new();
        for t in ts {
            let r = t["refId"].as_str().unwrap_or("");
            assert!(!r.is_empty() && refs.insert(r), "{title}: refId {r:?}");
            assert!(
                t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
                "{title}/{r}: no expr"
            );
            assert_eq!(
                t["datasource"]["uid"], "${datasource}",
                "{title}/{r}: the target's data source"
            );
        }
    }
    assert!(ids.len() >= 40, "{} panels only", ids.len());

    // Every variable a query uses is defined, or is one of Grafana's own.
    let defined: BTreeSet<String> = vars.iter().map(|(n, _, _)| n.clone()).collect();
    let mut exprs: Vec<(String, String)> = targets(&d)
        .into_iter()
        .map(|t| (format!("{}/{}", t.panel, t.ref_id), t.expr))
        .collect();
    exprs.extend(annotation_exprs(&d));
    exprs.extend(vars.iter().map(|(n, _, q)| (format!("${n}"), q.clone())));
    for (what, expr) in &exprs {
        for v in used_variables(expr) {
            assert!(
                defined.contains(&v) || GRAFANA_BUILTINS.contains(&v.as_str()),
                "{what}: ${v} is not a template variable: {expr}"
            );
        }
    }
    // Each per-check panel follows the selection.
    for t in targets(&d) {
        assert!(
            t.expr.contains("$instance") || !t.expr.contains("harena_"),
            "{}/{}: does not filter on $instance: {}",
            t.panel,
            t.ref_id,
            t.expr
        );
    }
}

#[test]
fn dashboard_covers_what_issue_8_asks() {
    let d = dashboard();
    let text: String = targets(&d)
        .iter()
        .map(|t| format!("{}\n", t.expr))
        .collect();
    for (topic, metric) in [
        ("services up", "harena_probe_success"),
        ("latency", "harena_probe_duration_seconds"),
        ("tunnel URL", "harena_tunnel_info"),
        ("ready connections", "harena_tunnel_ready_connections"),
        (
            "hostname changes",
            "harena_tunnel_hostname_changed_timestamp_seconds",
        ),
        ("PostgreSQL connections", "harena_postgres_connections"),
        ("their limit", "harena_postgres_max_connections"),
        ("Redis memory", "harena_redis_memory_used_bytes"),
        ("Redis clients", "harena_redis_connected_clients"),
        (
            "Elasticsearch health",
            "harena_elasticsearch_cluster_status",
        ),
        (
            "backup ages",
            "harena_backup_last_success_timestamp_seconds",
        ),
        (
            "snapshot ages",
            "harena_ebs_snapshot_last_success_timestamp_seconds",
        ),
        ("container restarts", "harena_container_restarts_total"),
        ("exposed ports", "harena_security_group_exposed_port"),
        ("instance state", "harena_ec2_instance_state"),
        ("CPU credits", "CPUCreditBalance"),
        ("alerts firing", "ALERTS{alertstate=\"firing\""),
        ("notification queue", "harena_notification_queue_length"),
        ("notifications", "harena_notifications_total"),
        ("reload success", "harena_config_last_reload_successful"),
        (
            "scheduler delay",
            "harena_scheduler_start_delay_seconds_bucket",
        ),
        ("process metrics", "process_resident_memory_bytes"),
    ] {
        assert!(text.contains(metric), "no panel shows {topic} ({metric})");
    }
}

#[test]
fn every_metric_the_dashboard_uses_is_documented() {
    let d = dashboard();
    let documented = documented_metrics();
    assert!(
        documented.len() > 60 && documented.contains_key("harena_probe_success"),
        "docs/metrics.md's tables were not read: {documented:?}"
    );
    let values = test_values("127.0.0.1:9");
    let mut exprs: Vec<(String, String)> = targets(&d)
        .into_iter()
        .map(|t| (format!("{}/{}", t.panel, t.ref_id), t.expr))
        .collect();
    exprs.extend(annotation_exprs(&d));
    // label_values(metric{...}, label): the metric part is a selector.
    let label_values = regex::Regex::new(r"^label_values\((.*),\s*\w+\)$").expect("valid regex");
    for (name, _, query) in variables(&d) {
        if let Some(c) = label_values.captures(&query) {
            exprs.push((format!("${name}"), c[1].to_string()));
        }
    }
    let mut used = BTreeSet::new();
    let mut problems = Vec::new();
    for (what, expr) in &exprs {
        match metric_names(&substitute(expr, &values)) {
            Ok(names) => {
                for n in names {
                    if !is_documented(&n, &documented) && !PROMETHEUS_BUILTINS.contains(&n.as_str())
                    {
                        problems.push(format!("{what}: {n} is not in docs/metrics.md"));
                    }
                    used.insert(n);
                }
            }
            Err(e) => problems.push(format!("{what}: does not parse: {e}\n  {expr}")),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(used.len() >= 50, "{} metric names used", used.len());
}

#[test]
fn provisioning_files_point_at_prometheus_and_the_dashboards_folder() {
    let ds = &YamlLoader::load_from_str(DATASOURCES).expect("datasources YAML")[0];
    assert_eq!(ds["apiVersion"].as_i64(), Some(1));
    let list = ds["datasources"].as_vec().expect("datasources list");
    assert_eq!(list.len(), 1);
    let p = &list[0];
    assert_eq!(p["type"].as_str(), Some("prometheus"));
    assert_eq!(p["url"].as_str(), Some("http://127.0.0.1:9090"));
    assert_eq!(p["access"].as_str(), Some("proxy"));
    assert_eq!(p["editable"].as_bool(), Some(true));
    assert!(p["uid"].as_str().is_some_and(|u| !u.is_empty()));

    let prov = &YamlLoader::load_from_str(PROVIDERS).expect("dashboards YAML")[0];
    assert_eq!(prov["apiVersion"].as_i64(), Some(1));
    let providers = prov["providers"].as_vec().expect("providers list");
    assert_eq!(providers.len(), 1);
    let p = &providers[0];
    assert_eq!(p["type"].as_str(), Some("file"));
    let path = p["options"]["path"].as_str().expect("options.path");
    assert!(path.starts_with('/'), "an absolute path: {path}");
    assert!(
        GRAFANA_README.contains(path),
        "grafana/README.md does not say to put the dashboards in {path}"
    );
    for needed in [
        "provisioning/datasources",
        "provisioning/dashboards",
        "harena-overview.json",
        ":4000",
    ] {
        assert!(
            GRAFANA_README.contains(needed),
            "grafana/README.md does not mention {needed}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// A real Prometheus

/// `prometheus` (Debian package `prometheus`) on a free port with its own storage,
/// scraping `target` every second and loading the shipped rules; killed when dropped.
struct Prometheus {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    _child: OwnedChild,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Prometheus {
        require("prometheus", "prometheus");
        let dir = tempfile::Builder::new()
            .prefix("harena-prometheus-")
            .tempdir()
            .expect("a folder for Prometheus");
        let rules = manifest().join("rules/*.yml");
        // The exporter evaluates the same rules and exposes ALERTS: with Prometheus
        // evaluating them too, both would write the same ALERTS series; keep
        // Prometheus's own (grafana/README.md says the same for the real scrape job).
        let config = format!(
            "global:\n\
             \x20 scrape_interval: 1s\n\
             \x20 scrape_timeout: 1s\n\
             \x20 evaluation_interval: 1s\n\
             rule_files:\n\
             \x20 - {rules}\n\
             scrape_configs:\n\
             \x20 - job_name: {JOB}\n\
             \x20   static_configs:\n\
             \x20     - targets: ['{target}']\n\
             \x20   metric_relabel_configs:\n\
             \x20     - source_labels: [__name__]\n\
             \x20       regex: 'ALERTS|ALERTS_FOR_STATE'\n\
             \x20       action: drop\n",
            rules = rules.display(),
        );
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config).expect("write prometheus.yml");
        let mut last_log = String::new();
        for attempt in 0..3 {
            let port = free_port();
            let log = dir.path().join(format!("prometheus-{attempt}.log"));
            let mut cmd = Command::new("prometheus");
            cmd.arg(format!("--config.file={}", config_file.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join(format!("data-{attempt}")).display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--storage.tsdb.retention.time=1d")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("create the Prometheus log"));
            let child = OwnedChild::spawn(cmd).expect("start prometheus");
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
            let end = Instant::now() + Duration::from_secs(60);
            while Instant::now() < end && child.try_wait().is_none() {
                if blocking_get(addr, "/-/ready").0 == 200 {
                    return Prometheus {
                        addr,
                        dir,
                        _child: child,
                    };
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            last_log = std::fs::read_to_string(&log).unwrap_or_default();
        }
        panic!("prometheus did not become ready; its log:\n{last_log}");
    }

    fn log(&self) -> String {
        let mut out = String::new();
        for attempt in 0..3 {
            let p: PathBuf = self.dir.path().join(format!("prometheus-{attempt}.log"));
            out.push_str(&std::fs::read_to_string(p).unwrap_or_default());
        }
        out
    }

    /// `/api/v1/query` (instant, now) or `/api/v1/query_range` (the last 2 minutes).
    async fn query(&self, expr: &str, instant: bool) -> Value {
        let path = if instant {
            format!("/api/v1/query?query={}", encode(expr))
        } else {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock after 1970")
                .as_secs();
            format!(
                "/api/v1/query_range?query={}&start={}&end={now}&step=2",
                encode(expr),
                now - 120
            )
        };
        let (status, body) = http("GET", self.addr, &path).await;
        serde_json::from_str(&body).unwrap_or_else(|e| {
            panic!("Prometheus answered {status} with no JSON ({e}) to {expr}: {body}")
        })
    }
}

/// One blocking GET; (status, body), status 0 when it fails.
fn blocking_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The result of a successful query: its series; panics on an error answer.
fn series_of(answer: &Value, what: &str, expr: &str) -> Vec<Value> {
    assert_eq!(
        answer["status"], "success",
        "{what}: Prometheus refused the query: {} {}\n  {expr}",
        answer["errorType"], answer["error"]
    );
    match &answer["data"]["result"] {
        Value::Array(a) => a.clone(),
        // A scalar or a string result: one value.
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

/// The one expression of a panel's target.
fn expr_of(d: &Value, panel: &str, ref_id: &str) -> String {
    targets(d)
        .into_iter()
        .find(|t| t.panel == panel && t.ref_id == ref_id)
        .unwrap_or_else(|| panic!("no panel {panel} with a target {ref_id}"))
        .expr
}

/// The value of a query that returns exactly one series.
fn scalar(answer: &Value, expr: &str) -> f64 {
    let series = series_of(answer, "a single value", expr);
    assert_eq!(series.len(), 1, "{expr} returned {series:?}");
    series[0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{expr}: no number in {}", series[0]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_query_returns_data_from_a_real_prometheus() {
    require("prometheus", "prometheus");
    let harena = Harena::start().await;

    // The bed is the embedded config with other addresses.
    let default_yaml =
        std::fs::read_to_string(common_harena::default_config_path()).expect("default config");
    assert_eq!(
        harena.checks(),
        common_harena::checks_of(&default_yaml),
        "the test bed's checks are the embedded config's"
    );

    let args: Vec<String> = harena.args().iter().map(|s| s.to_string()).collect();
    let envs: Vec<(String, String)> = harena
        .envs()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let exporter = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Exporter::start(&args, &envs)
    })
    .await
    .expect("start the exporter");
    assert!(
        exporter.wait_all_ran(Duration::from_secs(90)).await,
        "every check ran once: {}",
        http("GET", exporter.addr, "/api/v1/checks").await.1
    );

    let target = exporter.addr;
    let prometheus = tokio::task::spawn_blocking(move || Prometheus::start(target))
        .await
        .expect("start Prometheus");
    let instance = target.to_string();

    // The first scrape: about 5 s after Prometheus is ready.
    let up = format!("up{{job=\"{JOB}\", instance=\"{instance}\"}} == 1");
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let a = prometheus.query(&up, true).await;
        if !series_of(&a, "up", &up).is_empty() {
            break;
        }
        assert!(
            Instant::now() < end,
            "Prometheus did not scrape the exporter within 60 s; its log:\n{}",
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Every check of the embedded config is in Prometheus, with its own series.
    let checks_expr = format!("harena_probe_success{{job=\"{JOB}\"}}");
    let scraped: BTreeSet<String> = series_of(
        &prometheus.query(&checks_expr, true).await,
        "checks",
        &checks_expr,
    )
    .iter()
    .filter_map(|s| s["metric"]["check"].as_str().map(str::to_string))
    .collect();
    for (name, _) in common_harena::checks_of(&default_yaml) {
        assert!(scraped.contains(&name), "{name} is not in Prometheus");
    }

    // Each panel query, with the variables set to values that exist, until it returns
    // data (rates need two scrapes, AWS checks run every 10 s here) or 2 minutes pass.
    let d = dashboard();
    let values = test_values(&instance);
    let all = targets(&d);
    let mut pending: Vec<(usize, String)> = all
        .iter()
        .enumerate()
        .map(|(i, t)| (i, substitute(&t.expr, &values)))
        .collect();
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    let end = Instant::now() + Duration::from_secs(120);
    while !pending.is_empty() {
        let mut still = Vec::new();
        for (i, expr) in pending {
            let t = &all[i];
            let what = format!("{} (panel {}) / {}", t.panel, t.panel_id, t.ref_id);
            let series = series_of(&prometheus.query(&expr, t.instant).await, &what, &expr);
            if series.is_empty() {
                still.push((i, expr));
            } else {
                counts.insert(i, series.len());
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if Instant::now() > end {
            let (_, metrics) = http("GET", exporter.addr, "/metrics").await;
            let names: BTreeSet<&str> = metrics
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split(['{', ' ']).next())
                .collect();
            let empty: Vec<String> = pending
                .iter()
                .map(|(i, e)| format!("  {} / {}: {e}", all[*i].panel, all[*i].ref_id))
                .collect();
            panic!(
                "{} panel queries returned no data after 2 minutes:\n{}\nseries on /metrics: {names:?}",
                empty.len(),
                empty.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // The bed is healthy: the "Checks failing" stat says 0, and the firing alerts are
    // those of Harena's known weak points (ports open to the internet, the tunnel's
    // hostname seen for the first time) and the Watchdog.
    let failing = substitute(&expr_of(&d, "Checks failing", "A"), &values);
    let failing_now = format!("harena_probe_success{{job=\"{JOB}\"}} == 0");
    let end = Instant::now() + Duration::from_secs(60);
    while scalar(&prometheus.query(&failing, true).await, &failing) != 0.0 {
        // A run can time out on a loaded machine: the bed must be healthy again soon.
        let names: Vec<String> = series_of(
            &prometheus.query(&failing_now, true).await,
            "failing",
            &failing_now,
        )
        .iter()
        .map(|s| s["metric"]["check"].to_string())
        .collect();
        assert!(
            Instant::now() < end,
            "checks keep failing in the healthy bed: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let firing = substitute(&expr_of(&d, "Firing alerts", "A"), &values);
    let alertnames: BTreeSet<String> =
        series_of(&prometheus.query(&firing, true).await, "firing", &firing)
            .iter()
            .filter_map(|s| s["metric"]["alertname"].as_str().map(str::to_string))
            .collect();
    println!("alerts firing in Prometheus: {alertnames:?}");
    assert!(
        alertnames.contains("SecurityGroupPortExposed"),
        "the exposed ports fire: {alertnames:?}"
    );

    // One service fails and cloudflared restarts with a new hostname: the panels follow.
    let new_hostname = "another-quick-tunnel-here.localhost";
    harena.set_service_status("search_service", 503);
    harena.set_tunnel_hostname(new_hostname);
    let url = substitute(&expr_of(&d, "Public URL", "A"), &values);
    let changes = substitute(&expr_of(&d, "Hostname changes", "A"), &values);
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let failing_count = scalar(&prometheus.query(&failing, true).await, &failing);
        let hostnames: Vec<String> = series_of(&prometheus.query(&url, true).await, "url", &url)
            .iter()
            .filter_map(|s| s["metric"]["hostname"].as_str().map(str::to_string))
            .collect();
        let changed = scalar(&prometheus.query(&changes, true).await, &changes);
        if failing_count == 1.0 && hostnames == [new_hostname] && changed >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < end,
            "after a failure and a new hostname the dashboard shows {failing_count} failing \
             checks, hostnames {hostnames:?}, {changed} hostname changes"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The template variables' queries resolve to the test's values.
    for (label, matcher, want) in [
        (
            "job",
            "harena_exporter_build_info".to_string(),
            JOB.to_string(),
        ),
        (
            "instance",
            format!("harena_exporter_build_info{{job=~\"{JOB}\"}}"),
            instance.clone(),
        ),
        (
            "check",
            format!("harena_probe_success{{job=~\"{JOB}\", instance=~\"{instance}\"}}"),
            "public_site".to_string(),
        ),
    ] {
        let (status, body) = http(
            "GET",
            prometheus.addr,
            &format!("/api/v1/label/{label}/values?match[]={}", encode(&matcher)),
        )
        .await;
        let v: Value = serde_json::from_str(&body).expect("label values JSON");
        assert_eq!(status, 200, "${label}: {body}");
        let got: Vec<&str> = v["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            got.contains(&want.as_str()),
            "${label} offers {got:?}, not {want}"
        );
    }

    // Annotation queries parse (they only return data when something changes).
    for (name, expr) in annotation_exprs(&d) {
        let expr = substitute(&expr, &values);
        series_of(&prometheus.query(&expr, false).await, &name, &expr);
    }

    // The table: panel → series per query.
    println!("\n{:<4} {:<44} {:<4} {:>6}", "id", "panel", "ref", "series");
    for (i, t) in all.iter().enumerate() {
        println!(
            "{:<4} {:<44} {:<4} {:>6}",
            t.panel_id,
            t.panel,
            t.ref_id,
            counts.get(&i).copied().unwrap_or(0)
        );
    }
    println!(
        "{} queries of {} panels returned data",
        counts.len(),
        all.iter()
            .map(|t| t.panel_id)
            .collect::<BTreeSet<_>>()
            .len()
    );

    // No secret of the bed reached Prometheus (labels of every harena series).
    let (_, series) = http(
        "GET",
        prometheus.addr,
        &format!(
            "/api/v1/series?match[]={}",
            encode("{__name__=~\"harena_.+\"}")
        ),
    )
    .await;
    for secret in common_harena::SECRETS {
        assert!(
            !series.contains(secret),
            "a secret is in a label in Prometheus"
        );
    }
    drop(prometheus);
    drop(exporter);
    drop(harena);
}
