//! A simulated Harena on loopback, for tests that run the exporter against the whole
//! deployment at once (the Grafana dashboard's queries, the status page in a browser).
//!
//! The config it writes is the embedded default config (`src/config/default.yml`) with
//! only the addresses changed: the same check names, kinds, labels and `depends_on`, the
//! shipped rules (`rule_files: [<crate>/rules/*.yml]`) and the same `alerting:` section.
//! Behind it, on 127.0.0.1 only:
//!
//! | check | what answers |
//! |---|---|
//! | `nginx`, the seven app services, `grafana`, `prometheus` | one small HTTP server each, answering the check's path (`/health`, `/api/health`, `/-/healthy`) |
//! | `postgres` | a real PostgreSQL (`tests/common_pg`), role `harena_admin`, database `harena` |
//! | `redis` | a real `redis-server` with `requirepass` |
//! | `elasticsearch` | a fake serving Elasticsearch's `GET /_cluster/health` JSON |
//! | `tunnel` | a fake of cloudflared's metrics server (`/ready`, `/quicktunnel`, `/metrics`) |
//! | `public_site` | `http://{tunnel.hostname}:<nginx port>/health`: the quick tunnel's hostname is a `*.localhost` name, which the exporter resolves to loopback without DNS |
//! | `pg_dump_backups` | three fresh `backup_YYYYMMDD.sql` files with pg_dump's trailer, in a temporary folder |
//! | `containers` | a fake Docker Engine API on a unix socket, listing the `harena_*` containers |
//! | `security_group`, `ec2_instance`, `ebs_snapshots` | moto (`tests/common_aws`): a group open to the internet as Harena's is (22, 5432, 6379, 3000-3008, 4000, 9090), a running instance, a snapshot of each of its volumes |
//! | `ec2_cloudwatch` | the CloudWatch CBOR fake (`tests/common_cloudwatch`): CPU, CPU credits, a status-check alarm |
//!
//! ```ignore
//! mod common;
//! mod common_harena;
//! let harena = common_harena::Harena::start().await;
//! let exporter = common::Exporter::start(&harena.args(), &harena.envs());
//! harena.set_service_status("user_service", 503); // one service fails
//! harena.set_tunnel_hostname("another-quick-tunnel.localhost"); // cloudflared restarted
//! ```
//!
//! Everything is stopped when the [`Harena`] is dropped; the child processes (Redis) are
//! also killed if the test binary dies (`PR_SET_PDEATHSIG`). A missing tool fails with
//! the package that installs it; nothing is skipped.
#![allow(dead_code)]

#[path = "../common_aws/mod.rs"]
mod common_aws;
#[path = "../common_cloudwatch/mod.rs"]
mod common_cloudwatch;
#[path = "../common_pg/mod.rs"]
mod common_pg;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlEmitter, YamlLoader};

pub use common_cloudwatch::{Alarm, FakeCloudWatch};

/// `HARENA_POSTGRES_PASSWORD` of the test bed: tests scan their outputs for it.
pub const PG_PASSWORD: &str = "Harena-Bed-Pg-Secret-6174";
/// `HARENA_REDIS_PASSWORD` of the test bed: tests scan their outputs for it.
pub const REDIS_PASSWORD: &str = "Harena-Bed-Redis-Secret-2718";
/// The AWS access key id the exporter gets (moto and the fake accept any).
pub const AWS_ACCESS_KEY_ID: &str = "HARENABEDKEY00000001";
/// The AWS secret key the exporter gets: tests scan their outputs for it.
pub const AWS_SECRET_ACCESS_KEY: &str = "harena-bed-aws-secret-Qx81Lw0Pz";
/// Every secret above, for scans.
pub const SECRETS: &[&str] = &[PG_PASSWORD, REDIS_PASSWORD, AWS_SECRET_ACCESS_KEY];

/// Interval of the local checks (services, data stores, tunnel, backups, containers);
/// their timeout is [`CHECK_TIMEOUT`].
pub const CHECK_INTERVAL: &str = "3s";
/// Timeout of the local checks.
pub const CHECK_TIMEOUT: &str = "2500ms";
/// Interval of the AWS checks (5 minutes in the embedded config); timeout [`AWS_TIMEOUT`].
pub const AWS_INTERVAL: &str = "10s";
/// Timeout of the AWS checks.
pub const AWS_TIMEOUT: &str = "8s";
/// `global.evaluation_interval` of the rules (1 minute by default).
pub const EVALUATION_INTERVAL: &str = "2s";

/// The quick tunnel's first hostname. The real ones end in `.trycloudflare.com`; a
/// `*.localhost` name reaches loopback without any DNS query.
pub const FIRST_HOSTNAME: &str = "seasonal-deck-organisms-sf.localhost";

/// The path of the embedded default config.
pub fn default_config_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config/default.yml")
}

/// `(name, kind)` of every check of a config file's text, in order.
///
/// # Panics
/// When the text is not YAML with a `checks` list.
pub fn checks_of(yaml: &str) -> Vec<(String, String)> {
    let docs = YamlLoader::load_from_str(yaml).expect("config is YAML");
    docs[0]["checks"]
        .as_vec()
        .expect("a checks list")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().expect("check name").to_string(),
                c["kind"].as_str().expect("check kind").to_string(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Child processes owned by a thread, so that PR_SET_PDEATHSIG kills them with the test.

/// A child process killed (SIGKILL) when dropped, and by the kernel when the test
/// process dies: it is spawned by a thread of its own that lives until the drop, since
/// `PR_SET_PDEATHSIG` fires when the spawning *thread* ends.
pub struct OwnedChild {
    child: Arc<Mutex<Child>>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OwnedChild {
    /// Spawns `cmd` from a new owner thread.
    ///
    /// # Errors
    /// When the process cannot be started.
    pub fn spawn(mut cmd: Command) -> std::io::Result<OwnedChild> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("child-owner".into())
            .spawn(move || {
                // SAFETY: prctl is async-signal-safe; it asks the kernel to kill the child
                // when this thread ends.
                unsafe {
                    cmd.pre_exec(|| {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                        Ok(())
                    });
                }
                match cmd.spawn() {
                    Ok(child) => {
                        let child = Arc::new(Mutex::new(child));
                        let _ = tx.send(Ok(Arc::clone(&child)));
                        // Until the handle is dropped (its sender with it).
                        let _ = stop_rx.recv();
                        let mut c = child.lock().unwrap_or_else(|e| e.into_inner());
                        let _ = c.kill();
                        let _ = c.wait();
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })?;
        let child = rx
            .recv()
            .map_err(|_| std::io::Error::other("the owner thread ended"))??;
        Ok(OwnedChild {
            child,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The exit status, if the process ended.
    pub fn try_wait(&self) -> Option<std::process::ExitStatus> {
        self.child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_wait()
            .ok()
            .flatten()
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.lock().unwrap_or_else(|e| e.into_inner()).id()
    }
}

impl Drop for OwnedChild {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Fails with the install command when `tool` is not on `PATH` (tests never skip).
#[track_caller]
pub fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed: run `apt-get install -y {package}` (./scripts/test.sh does it)"
    );
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

// ---------------------------------------------------------------------------------------
// Redis

/// Starts `redis-server` with `requirepass` [`REDIS_PASSWORD`] on a free port; waits
/// until it accepts connections.
fn start_redis(dir: &Path) -> (OwnedChild, u16) {
    require("redis-server", "redis-server");
    let mut last_log = String::new();
    for attempt in 0..5 {
        let port = free_port();
        let data = dir.join(format!("redis-{attempt}"));
        std::fs::create_dir_all(&data).expect("create the Redis folder");
        let log = data.join("redis.log");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--requirepass", REDIS_PASSWORD])
            .arg("--dir")
            .arg(&data)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = OwnedChild::spawn(cmd).expect("start redis-server");
        let end = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < end {
            if child.try_wait().is_some() {
                break; // the port was taken, most likely
            }
            if std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("Ready to accept connections")
            {
                return (child, port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        last_log = std::fs::read_to_string(&log).unwrap_or_default();
    }
    panic!("redis-server did not start; its last log:\n{last_log}");
}

// ---------------------------------------------------------------------------------------
// PostgreSQL: the shared server of the test binary, with Harena's role and database.

fn init_pg(pg: &common_pg::PgServer) {
    pg.psql(&format!(
        "CREATE ROLE harena_admin LOGIN PASSWORD '{PG_PASSWORD}'"
    ));
    pg.psql("CREATE DATABASE harena OWNER harena_admin");
}

// ---------------------------------------------------------------------------------------
// Small servers on loopback.

/// Serves `router` on a free port of 127.0.0.1; the task is aborted with the bed.
async fn serve(router: Router, tasks: &mut Vec<JoinHandle<()>>) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a fake server");
    let addr = l.local_addr().expect("local addr");
    tasks.push(tokio::spawn(async move {
        let _ = axum::serve(l, router).await;
    }));
    addr
}

/// The `/health` answer of the HTTP services: the status each check's server answers.
type Health = Arc<Mutex<BTreeMap<String, u16>>>;

#[derive(Clone)]
struct ServiceState {
    check: String,
    path: String,
    health: Health,
}

async fn service(State(s): State<ServiceState>, uri: Uri) -> Response {
    if uri.path() != s.path {
        return (StatusCode::NOT_FOUND, "404 page not found\n").into_response();
    }
    let code = s
        .health
        .lock()
        .unwrap()
        .get(&s.check)
        .copied()
        .unwrap_or(200);
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = if status.is_success() {
        json!({"status": "ok", "service": s.check})
    } else {
        json!({"status": "error", "service": s.check, "detail": "database: connection refused"})
    };
    (
        status,
        [(CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// What the fake cloudflared serves.
#[derive(Debug, Clone)]
struct Cloudflared {
    ready_connections: u64,
    hostname: String,
    total_requests: u64,
}

type Tunnel = Arc<Mutex<Cloudflared>>;

async fn tunnel_ready(State(t): State<Tunnel>) -> Response {
    let n = t.lock().unwrap().ready_connections;
    let status = if n > 0 {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    // As cloudflared writes it (no JSON content type).
    let body = format!(
        r#"{{"status":{},"readyConnections":{n},"connectorId":"4a7b3c1e-0f5d-4e8a-9b2c-6d1e7f8a9b0c"}}"#,
        status.as_u16()
    );
    (status, [(CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

async fn tunnel_quicktunnel(State(t): State<Tunnel>) -> Response {
    let hostname = t.lock().unwrap().hostname.clone();
    (
        [(CONTENT_TYPE, "text/plain; charset=utf-8")],
        json!({ "hostname": hostname }).to_string(),
    )
        .into_response()
}

async fn tunnel_metrics(State(t): State<Tunnel>) -> Response {
    let total = {
        let mut s = t.lock().unwrap();
        s.total_requests += 3;
        s.total_requests
    };
    let ok = total - total / 10;
    let not_found = total / 10;
    let text = format!(
        "# HELP cloudflared_tunnel_ha_connections Number of active ha connections\n\
         # TYPE cloudflared_tunnel_ha_connections gauge\n\
         cloudflared_tunnel_ha_connections 4\n\
         # HELP cloudflared_tunnel_request_errors Amount of errors due to proxying\n\
         # TYPE cloudflared_tunnel_request_errors counter\n\
         cloudflared_tunnel_request_errors 0\n\
         # HELP cloudflared_tunnel_response_by_code Count of responses by HTTP status code\n\
         # TYPE cloudflared_tunnel_response_by_code counter\n\
         cloudflared_tunnel_response_by_code{{status_code=\"200\"}} {ok}\n\
         cloudflared_tunnel_response_by_code{{status_code=\"404\"}} {not_found}\n\
         # HELP cloudflared_tunnel_total_requests Amount of requests proxied through all the tunnels\n\
         # TYPE cloudflared_tunnel_total_requests counter\n\
         cloudflared_tunnel_total_requests {total}\n"
    );
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}

/// `GET /_cluster/health` of a single-node cluster in `status`.
fn cluster_health(status: &str) -> Value {
    let (unassigned, percent) = match status {
        "green" => (0, 100.0),
        "yellow" => (5, 50.0),
        _ => (7, 30.0),
    };
    json!({
        "cluster_name": "harena",
        "status": status,
        "timed_out": false,
        "number_of_nodes": 1,
        "number_of_data_nodes": 1,
        "active_primary_shards": 5,
        "active_shards": 5,
        "relocating_shards": 0,
        "initializing_shards": 0,
        "unassigned_shards": unassigned,
        "unassigned_primary_shards": 0,
        "delayed_unassigned_shards": 0,
        "number_of_pending_tasks": 0,
        "number_of_in_flight_fetch": 0,
        "task_max_waiting_in_queue_millis": 0,
        "active_shards_percent_as_number": percent
    })
}

type EsStatus = Arc<Mutex<String>>;

async fn es_health(State(s): State<EsStatus>, uri: Uri) -> Response {
    if uri.path() != "/_cluster/health" {
        return (StatusCode::NOT_FOUND, "{}").into_response();
    }
    let status = s.lock().unwrap().clone();
    (
        [(CONTENT_TYPE, "application/json; charset=UTF-8")],
        cluster_health(&status).to_string(),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------
// The fake Docker Engine API (the fields the `docker` check reads, in the real layout).

/// One container of the fake daemon.
#[derive(Debug, Clone)]
pub struct Container {
    /// Its name, without the leading `/`.
    pub name: String,
    /// `State.Status`: `running`, `restarting`, `exited`, …
    pub status: String,
    /// `State.Health.Status` (`healthy`, `unhealthy`, `starting`); `None` without a
    /// healthcheck.
    pub health: Option<String>,
    /// `RestartCount`.
    pub restarts: u64,
    /// `State.ExitCode`.
    pub exit_code: i64,
}

impl Container {
    fn id(&self) -> String {
        let mut id = String::new();
        for b in self.name.bytes().cycle().take(32) {
            id.push_str(&format!("{b:02x}"));
        }
        id
    }

    fn running(&self) -> bool {
        matches!(self.status.as_str(), "running" | "restarting" | "paused")
    }

    fn summary(&self) -> Value {
        json!({
            "Id": self.id(),
            "Names": [format!("/{}", self.name)],
            "Image": format!("harena/{}:latest", self.name.trim_start_matches("harena_")),
            "Command": "/docker-entrypoint.sh",
            "Created": 1_763_632_798,
            "State": self.status,
            "Status": if self.running() { "Up 2 hours" } else { "Exited (1) 5 minutes ago" },
            "Labels": {"com.docker.compose.project": "harena"},
        })
    }

    fn inspect(&self) -> Value {
        let mut state = json!({
            "Status": self.status,
            "Running": self.running(),
            "Paused": self.status == "paused",
            "Restarting": self.status == "restarting",
            "OOMKilled": false,
            "Dead": false,
            "Pid": if self.running() { 4242 } else { 0 },
            "ExitCode": self.exit_code,
            "Error": "",
            "StartedAt": "2025-11-20T10:00:00.123456789Z",
            "FinishedAt": "0001-01-01T00:00:00Z",
        });
        if let Some(h) = &self.health {
            state["Health"] = json!({"Status": h, "FailingStreak": 0, "Log": []});
        }
        json!({
            "Id": self.id(),
            "Created": "2025-11-20T09:59:58.1Z",
            "Name": format!("/{}", self.name),
            "RestartCount": self.restarts,
            "State": state,
            "Config": {"Image": format!("harena/{}:latest", self.name.trim_start_matches("harena_"))},
        })
    }
}

/// The Harena containers (HARENA.md): every service healthy, Loki running after the
/// crash loop of the incident (a few restarts).
fn harena_containers() -> Vec<Container> {
    let c = |name: &str, health: Option<&str>, restarts: u64| Container {
        name: name.to_string(),
        status: "running".to_string(),
        health: health.map(str::to_string),
        restarts,
        exit_code: 0,
    };
    vec![
        c("harena_nginx", Some("healthy"), 0),
        c("harena_user_service", Some("healthy"), 0),
        c("harena_search_service", Some("healthy"), 0),
        c("harena_metric_service", Some("healthy"), 0),
        c("harena_sync_service", Some("healthy"), 0),
        c("harena_enrichment_service", Some("healthy"), 0),
        c("harena_budget_profiling_service", Some("healthy"), 0),
        c("harena_conversation_v3", Some("healthy"), 0),
        c("harena_postgres", Some("healthy"), 0),
        c("harena_redis", None, 0),
        c("harena_elasticsearch", Some("healthy"), 0),
        c("harena_grafana", None, 0),
        c("harena_prometheus", None, 0),
        c("harena_loki", None, 3),
    ]
}

type Docker = Arc<Mutex<Vec<Container>>>;

fn engine_answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [
            ("Api-Version", "1.43"),
            ("Server", "Docker/24.0.7 (linux)"),
            ("Content-Type", "application/json"),
        ],
        format!("{body}\n"),
    )
        .into_response()
}

async fn engine_api(State(d): State<Docker>, uri: Uri) -> Response {
    let path = uri.path();
    if path == "/version" {
        return engine_answer(
            StatusCode::OK,
            json!({"Version": "24.0.7", "ApiVersion": "1.43", "MinAPIVersion": "1.12",
                   "Os": "linux", "Arch": "arm64", "KernelVersion": "6.1.158-180.294.amzn2023.aarch64"}),
        );
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let versioned = parts.first().is_some_and(|v| v.starts_with("v1."));
    let containers = d.lock().unwrap().clone();
    match (versioned, parts.get(1..)) {
        (true, Some(["containers", "json"])) => {
            let all = uri.query().is_some_and(|q| q.contains("all=true"));
            let list: Vec<Value> = containers
                .iter()
                .filter(|c| all || c.status == "running")
                .map(Container::summary)
                .collect();
            engine_answer(StatusCode::OK, Value::Array(list))
        }
        (true, Some(["containers", id, "json"])) => {
            match containers.iter().find(|c| c.id() == *id) {
                Some(c) => engine_answer(StatusCode::OK, c.inspect()),
                None => engine_answer(
                    StatusCode::NOT_FOUND,
                    json!({"message": format!("No such container: {id}")}),
                ),
            }
        }
        _ => engine_answer(StatusCode::NOT_FOUND, json!({"message": "page not found"})),
    }
}

// ---------------------------------------------------------------------------------------
// AWS: moto for EC2, seeded as the Harena account looks.

/// What the bed created in moto.
#[derive(Debug, Clone)]
pub struct AwsIds {
    /// The security group (open to the internet on Harena's ports).
    pub group_id: String,
    /// The instance.
    pub instance_id: String,
    /// Its public IP (the check's `expected_public_ip`).
    pub public_ip: String,
    /// Its volumes, each with one completed snapshot.
    pub volume_ids: Vec<String>,
}

/// An EC2 client for moto with explicit test credentials: the process environment is
/// neither read for credentials nor changed.
async fn ec2_client(endpoint: &str) -> aws_sdk_ec2::Client {
    let cfg = harena_exporter::clients::aws::sdk_config(
        common_aws::REGION,
        Some(endpoint),
        Duration::from_secs(30),
    )
    .await;
    let conf = aws_sdk_ec2::config::Builder::from(&cfg)
        .credentials_provider(aws_credential_types::Credentials::new(
            AWS_ACCESS_KEY_ID,
            AWS_SECRET_ACCESS_KEY,
            None,
            None,
            "harena-test-bed",
        ))
        .build();
    aws_sdk_ec2::Client::from_conf(conf)
}

async fn seed_aws(endpoint: &str) -> AwsIds {
    use aws_sdk_ec2::types::{Filter, InstanceType, IpPermission, IpRange, Ipv6Range};
    let c = ec2_client(endpoint).await;
    let unique = format!(
        "harena-allinone-sg-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let group_id = c
        .create_security_group()
        .group_name(unique)
        .description("harena all-in-one (test bed)")
        .send()
        .await
        .expect("create the security group in moto")
        .group_id()
        .expect("group id")
        .to_string();
    // As HARENA.md describes the real group: everything open to the internet.
    let open = |from: i32, to: i32| {
        IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(from)
            .to_port(to)
            .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
            .build()
    };
    let mut perms: Vec<IpPermission> = [
        (80, 80),
        (443, 443),
        (22, 22),
        (5432, 5432),
        (6379, 6379),
        (3000, 3008),
        (4000, 4000),
        (9090, 9090),
    ]
    .into_iter()
    .map(|(a, b)| open(a, b))
    .collect();
    perms.push(
        IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(443)
            .to_port(443)
            .ipv6_ranges(Ipv6Range::builder().cidr_ipv6("::/0").build())
            .build(),
    );
    c.authorize_security_group_ingress()
        .group_id(&group_id)
        .set_ip_permissions(Some(perms))
        .send()
        .await
        .expect("authorize ingress in moto");
    let out = c
        .run_instances()
        .image_id("ami-12345678")
        .instance_type(InstanceType::T4gSmall)
        .min_count(1)
        .max_count(1)
        .security_group_ids(&group_id)
        .send()
        .await
        .expect("run an instance in moto");
    let instance = &out.instances()[0];
    let instance_id = instance.instance_id().expect("instance id").to_string();
    let public_ip = instance
        .public_ip_address()
        .expect("moto gives a public IP")
        .to_string();
    let volumes = c
        .describe_volumes()
        .filters(
            Filter::builder()
                .name("attachment.instance-id")
                .values(&instance_id)
                .build(),
        )
        .send()
        .await
        .expect("describe the instance's volumes");
    let volume_ids: Vec<String> = volumes
        .volumes()
        .iter()
        .filter_map(|v| v.volume_id().map(str::to_string))
        .collect();
    assert!(!volume_ids.is_empty(), "moto attached no root volume");
    for v in &volume_ids {
        c.create_snapshot()
            .volume_id(v)
            .description("harena daily (test bed)")
            .send()
            .await
            .expect("snapshot a volume in moto");
    }
    AwsIds {
        group_id,
        instance_id,
        public_ip,
        volume_ids,
    }
}

/// The CloudWatch fake with the instance's usual numbers and a status-check alarm.
async fn start_cloudwatch(instance_id: &str) -> FakeCloudWatch {
    let fake = FakeCloudWatch::start(instance_id, common_aws::REGION).await;
    let now = common_cloudwatch::now_secs();
    fake.set_datapoints(
        "AWS/EC2",
        "CPUUtilization",
        "Average",
        &[(now - 600.0, 18.0), (now - 300.0, 12.5)],
    );
    fake.set_datapoints(
        "AWS/EC2",
        "CPUCreditBalance",
        "Average",
        &[(now - 600.0, 150.0), (now - 300.0, 144.0)],
    );
    fake.set_datapoints(
        "AWS/EC2",
        "StatusCheckFailed",
        "Maximum",
        &[(now - 300.0, 0.0)],
    );
    fake.set_alarms(vec![Alarm::ec2(
        "harena-status-check-failed",
        "StatusCheckFailed",
        instance_id,
        "OK",
    )]);
    fake
}

// ---------------------------------------------------------------------------------------
// Backups

/// A plain-text pg_dump of a few KiB with its closing lines.
fn plain_dump() -> String {
    let mut s = String::from(
        "--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\n\
         CREATE TABLE public.users (id integer NOT NULL, email text);\n\
         COPY public.users (id, email) FROM stdin;\n",
    );
    for i in 0..200 {
        s.push_str(&format!("{i}\tuser{i}@harena.example\n"));
    }
    s.push_str("\\.\n\n--\n-- PostgreSQL database dump complete\n--\n\n");
    s
}

/// Today's, yesterday's and the day before's dumps, each written at 03:10 UTC of its day
/// (today's at most now).
fn write_backups(dir: &Path) {
    let now = chrono::Utc::now();
    for days in 0..3 {
        let day = now - chrono::TimeDelta::days(days);
        let name = day.format("backup_%Y%m%d.sql").to_string();
        let path = dir.join(&name);
        std::fs::write(&path, plain_dump()).expect("write a backup");
        let at = day
            .date_naive()
            .and_hms_opt(3, 10, 0)
            .expect("a valid time")
            .and_utc()
            .min(now);
        let f = std::fs::File::options()
            .write(true)
            .open(&path)
            .expect("open the backup");
        f.set_modified(SystemTime::from(at))
            .expect("set the backup's mtime");
    }
}

// ---------------------------------------------------------------------------------------
// The config: the embedded one, re-addressed.

fn key(k: &str) -> Yaml {
    Yaml::String(k.to_string())
}

fn set(h: &mut Hash, k: &str, v: impl Into<String>) {
    h.insert(key(k), Yaml::String(v.into()));
}

/// The path of a URL (`http://host:port/path` → `/path`), placeholders kept.
fn url_path(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    match rest.find('/') {
        Some(i) => rest[i..].to_string(),
        None => "/".to_string(),
    }
}

/// Addresses of the simulated services, by check name.
struct Addresses {
    http: BTreeMap<String, SocketAddr>,
    nginx: SocketAddr,
    pg_port: u16,
    redis_port: u16,
    es: SocketAddr,
    tunnel: SocketAddr,
    tunnel_log: PathBuf,
    backups: PathBuf,
    docker: PathBuf,
    moto: String,
    cloudwatch: String,
    aws: AwsIds,
}

/// The embedded config with every address pointing into the bed, shorter intervals, the
/// shipped rule files and the same `alerting:` section.
fn bed_config(default_yaml: &str, a: &Addresses) -> String {
    let mut docs = YamlLoader::load_from_str(default_yaml).expect("the default config is YAML");
    let mut root = match docs.remove(0) {
        Yaml::Hash(h) => h,
        other => panic!("the default config is not a mapping: {other:?}"),
    };
    let global = root
        .entry(key("global"))
        .or_insert_with(|| Yaml::Hash(Hash::new()));
    if let Yaml::Hash(g) = global {
        set(g, "evaluation_interval", EVALUATION_INTERVAL);
    }
    let checks = match root.get_mut(&key("checks")) {
        Some(Yaml::Array(c)) => c,
        _ => panic!("the default config has no checks list"),
    };
    for check in checks.iter_mut() {
        let Yaml::Hash(h) = check else {
            panic!("a check is not a mapping: {check:?}")
        };
        let name = h[&key("name")].as_str().expect("name").to_string();
        let kind = h[&key("kind")].as_str().expect("kind").to_string();
        let aws = kind.starts_with("aws_") || kind == "cloudwatch";
        set(
            h,
            "interval",
            if aws { AWS_INTERVAL } else { CHECK_INTERVAL },
        );
        set(h, "timeout", if aws { AWS_TIMEOUT } else { CHECK_TIMEOUT });
        match kind.as_str() {
            "http" => {
                let url = h[&key("url")].as_str().expect("url").to_string();
                let path = url_path(&url);
                let new = if url.contains('{') {
                    // public_site: through the "tunnel" to nginx, by the tunnel's hostname.
                    format!("http://{{tunnel.hostname}}:{}{path}", a.nginx.port())
                } else {
                    let addr = a
                        .http
                        .get(&name)
                        .unwrap_or_else(|| panic!("no simulated service for {name}"));
                    format!("http://{addr}{path}")
                };
                set(h, "url", new);
            }
            "postgres" => {
                set(h, "host", "127.0.0.1");
                h.insert(key("port"), Yaml::Integer(i64::from(a.pg_port)));
            }
            "redis" => set(h, "address", format!("127.0.0.1:{}", a.redis_port)),
            "elasticsearch" => set(h, "url", format!("http://{}", a.es)),
            "tunnel" => {
                set(h, "metrics_address", a.tunnel.to_string());
                set(h, "log_file", a.tunnel_log.display().to_string());
            }
            "backup_files" => set(h, "directory", a.backups.display().to_string()),
            "docker" => set(h, "socket", a.docker.display().to_string()),
            "aws_security_group" => {
                set(h, "group_id", a.aws.group_id.clone());
                set(h, "endpoint_url", a.moto.clone());
            }
            "aws_instance" => {
                set(h, "instance_id", a.aws.instance_id.clone());
                set(h, "expected_public_ip", a.aws.public_ip.clone());
                set(h, "endpoint_url", a.moto.clone());
            }
            "aws_snapshots" => {
                set(h, "instance_id", a.aws.instance_id.clone());
                set(h, "endpoint_url", a.moto.clone());
            }
            "cloudwatch" => {
                set(h, "instance_id", a.aws.instance_id.clone());
                set(h, "endpoint_url", a.cloudwatch.clone());
            }
            other => panic!(
                "the test bed does not simulate check kind {other:?} ({name}): add it to \
                 tests/common_harena/mod.rs"
            ),
        }
    }
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/*.yml");
    root.insert(
        key("rule_files"),
        Yaml::Array(vec![Yaml::String(rules.display().to_string())]),
    );
    let mut out = String::from(
        "# The embedded default config, re-addressed to a simulated Harena on loopback\n\
         # (tests/common_harena/mod.rs).\n",
    );
    YamlEmitter::new(&mut out)
        .dump(&Yaml::Hash(root))
        .expect("emit the config");
    out.push('\n');
    out
}

// ---------------------------------------------------------------------------------------
// The bed

/// A simulated Harena; everything stops when it is dropped.
pub struct Harena {
    config: PathBuf,
    envs: Vec<(String, String)>,
    health: Health,
    tunnel: Tunnel,
    es: EsStatus,
    docker: Docker,
    services: BTreeMap<String, SocketAddr>,
    nginx: SocketAddr,
    /// The PostgreSQL port (role `harena_admin`, password [`PG_PASSWORD`]).
    pub pg_port: u16,
    /// The Redis port (password [`REDIS_PASSWORD`]).
    pub redis_port: u16,
    /// moto's URL.
    pub moto_url: String,
    /// What was created in moto.
    pub aws: AwsIds,
    /// The CloudWatch fake (datapoints and alarms can be changed).
    pub cloudwatch: FakeCloudWatch,
    /// The backups folder.
    pub backups: PathBuf,
    tasks: Vec<JoinHandle<()>>,
    _redis: OwnedChild,
    // Last: removed after everything above stopped.
    dir: tempfile::TempDir,
}

impl Drop for Harena {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Harena {
    /// Starts every simulated part and writes the config. Takes a few seconds (moto's
    /// first EC2 call, PostgreSQL's initdb on the binary's first use).
    ///
    /// Needs a multi-thread tokio runtime while the exporter runs, or at least a runtime
    /// that keeps running: the fakes are tasks of the caller's runtime.
    ///
    /// # Panics
    /// When a tool is missing (with the package that installs it) or a part does not
    /// start.
    pub async fn start() -> Harena {
        let dir = tempfile::Builder::new()
            .prefix("harena-bed-")
            .tempdir()
            .expect("create the test bed folder");
        let default_yaml =
            std::fs::read_to_string(default_config_path()).expect("read the default config");
        let mut tasks = Vec::new();

        // The blocking parts first, off the runtime's worker threads.
        let data = dir.path().to_path_buf();
        let (pg_port, redis, moto_url) = tokio::task::spawn_blocking(move || {
            let pg = common_pg::shared(&[], init_pg);
            let redis = start_redis(&data);
            let moto = common_aws::moto();
            (pg.port, redis, moto.url())
        })
        .await
        .expect("start PostgreSQL, Redis and moto");
        let (redis, redis_port) = redis;

        // HTTP services: one server per http check with a fixed URL.
        let health: Health = Arc::new(Mutex::new(BTreeMap::new()));
        let mut services = BTreeMap::new();
        for (name, kind) in checks_of(&default_yaml) {
            if kind != "http" {
                continue;
            }
            let docs = YamlLoader::load_from_str(&default_yaml).expect("YAML");
            let url = docs[0]["checks"]
                .as_vec()
                .expect("checks")
                .iter()
                .find(|c| c["name"].as_str() == Some(&name))
                .and_then(|c| c["url"].as_str())
                .expect("an http check has a url")
                .to_string();
            if url.contains('{') {
                continue; // public_site: served by nginx's server
            }
            let state = ServiceState {
                check: name.clone(),
                path: url_path(&url),
                health: Arc::clone(&health),
            };
            let addr = serve(
                Router::new().fallback(service).with_state(state),
                &mut tasks,
            )
            .await;
            services.insert(name, addr);
        }
        let nginx = *services
            .get("nginx")
            .expect("the default config has an nginx check");

        let es: EsStatus = Arc::new(Mutex::new("green".to_string()));
        let es_addr = serve(
            Router::new()
                .fallback(es_health)
                .with_state(Arc::clone(&es)),
            &mut tasks,
        )
        .await;

        let tunnel: Tunnel = Arc::new(Mutex::new(Cloudflared {
            ready_connections: 4,
            hostname: FIRST_HOSTNAME.to_string(),
            total_requests: 120,
        }));
        let tunnel_addr = serve(
            Router::new()
                .route("/ready", axum::routing::get(tunnel_ready))
                .route("/quicktunnel", axum::routing::get(tunnel_quicktunnel))
                .route("/metrics", axum::routing::get(tunnel_metrics))
                .with_state(Arc::clone(&tunnel)),
            &mut tasks,
        )
        .await;
        // cloudflared's log, without a quick tunnel URL: while the metrics server answers
        // the log is not read, and a trycloudflare.com name would leave loopback.
        let tunnel_log = dir.path().join("cloudflare-tunnel.log");
        std::fs::write(
            &tunnel_log,
            "2025-11-20T10:00:00Z INF Starting metrics server on 127.0.0.1:20241/metrics\n",
        )
        .expect("write the tunnel log");

        let backups = dir.path().join("backups");
        std::fs::create_dir_all(&backups).expect("create the backups folder");
        write_backups(&backups);

        let docker: Docker = Arc::new(Mutex::new(harena_containers()));
        let socket = dir.path().join("docker.sock");
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind the Docker socket");
        let app = Router::new()
            .fallback(engine_api)
            .with_state(Arc::clone(&docker));
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));

        let aws = seed_aws(&moto_url).await;
        let cloudwatch = start_cloudwatch(&aws.instance_id).await;

        let addresses = Addresses {
            http: services.clone(),
            nginx,
            pg_port,
            redis_port,
            es: es_addr,
            tunnel: tunnel_addr,
            tunnel_log,
            backups: backups.clone(),
            docker: socket,
            moto: moto_url.clone(),
            cloudwatch: cloudwatch.endpoint(),
            aws: aws.clone(),
        };
        let config = dir.path().join("harena.yml");
        std::fs::write(&config, bed_config(&default_yaml, &addresses)).expect("write the config");

        let envs = vec![
            (
                "HARENA_POSTGRES_PASSWORD".to_string(),
                PG_PASSWORD.to_string(),
            ),
            (
                "HARENA_REDIS_PASSWORD".to_string(),
                REDIS_PASSWORD.to_string(),
            ),
            (
                "AWS_ACCESS_KEY_ID".to_string(),
                AWS_ACCESS_KEY_ID.to_string(),
            ),
            (
                "AWS_SECRET_ACCESS_KEY".to_string(),
                AWS_SECRET_ACCESS_KEY.to_string(),
            ),
            ("AWS_ENDPOINT_URL".to_string(), moto_url.clone()),
            ("AWS_EC2_METADATA_DISABLED".to_string(), "true".to_string()),
        ];
        Harena {
            config,
            envs,
            health,
            tunnel,
            es,
            docker,
            services,
            nginx,
            pg_port,
            redis_port,
            moto_url,
            aws,
            cloudwatch,
            backups,
            tasks,
            _redis: redis,
            dir,
        }
    }

    /// The config file to give the exporter (`--config.file`).
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// `["--config.file", <config_path>]`, for `common::Exporter::start`.
    pub fn args(&self) -> Vec<&str> {
        vec![
            "--config.file",
            self.config.to_str().expect("a UTF-8 temporary path"),
        ]
    }

    /// The environment the exporter needs: the PostgreSQL and Redis passwords, AWS test
    /// credentials, `AWS_ENDPOINT_URL` (moto) and IMDS off.
    pub fn envs(&self) -> Vec<(&str, &str)> {
        self.envs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// The bed's folder (config, backups, Docker socket, Redis data).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `(name, kind)` of the bed's checks: those of the embedded config.
    pub fn checks(&self) -> Vec<(String, String)> {
        checks_of(&std::fs::read_to_string(&self.config).expect("read the bed's config"))
    }

    /// Makes the service behind an http check answer `status` on its health path from
    /// now on (200: healthy again). `nginx` also carries `public_site`.
    ///
    /// # Panics
    /// When no simulated service has that check name.
    pub fn set_service_status(&self, check: &str, status: u16) {
        assert!(
            self.services.contains_key(check),
            "no simulated service {check}; there are {:?}",
            self.services.keys().collect::<Vec<_>>()
        );
        self.health
            .lock()
            .unwrap()
            .insert(check.to_string(), status);
    }

    /// Where the service of an http check listens.
    pub fn service_addr(&self, check: &str) -> Option<SocketAddr> {
        self.services.get(check).copied()
    }

    /// The quick tunnel's hostname, as `/quicktunnel` answers it now.
    pub fn tunnel_hostname(&self) -> String {
        self.tunnel.lock().unwrap().hostname.clone()
    }

    /// Changes the quick tunnel's hostname, as a cloudflared restart does. Use a
    /// `*.localhost` name so that `public_site` stays on loopback.
    pub fn set_tunnel_hostname(&self, hostname: &str) {
        self.tunnel.lock().unwrap().hostname = hostname.to_string();
    }

    /// Sets the tunnel's ready edge connections (0: `/ready` answers 503).
    pub fn set_tunnel_ready_connections(&self, n: u64) {
        self.tunnel.lock().unwrap().ready_connections = n;
    }

    /// The public site's URL as `public_site` reaches it now.
    pub fn public_url(&self) -> String {
        format!(
            "http://{}:{}/health",
            self.tunnel_hostname(),
            self.nginx.port()
        )
    }

    /// Sets the Elasticsearch cluster status: `green`, `yellow` or `red`.
    pub fn set_elasticsearch_status(&self, status: &str) {
        *self.es.lock().unwrap() = status.to_string();
    }

    /// Changes a container of the fake Docker daemon (added when unknown).
    pub fn set_container(&self, name: &str, status: &str, health: Option<&str>, restarts: u64) {
        let mut list = self.docker.lock().unwrap();
        let c = Container {
            name: name.to_string(),
            status: status.to_string(),
            health: health.map(str::to_string),
            restarts,
            exit_code: if status == "running" { 0 } else { 1 },
        };
        match list.iter_mut().find(|c| c.name == name) {
            Some(existing) => *existing = c,
            None => list.push(c),
        }
    }

    /// The containers the fake Docker daemon lists now.
    pub fn containers(&self) -> Vec<Container> {
        self.docker.lock().unwrap().clone()
    }
}
