//! The `docker` check against a fake Docker Engine API: an axum server on a unix socket
//! in a temporary folder, answering `/version`, `/containers/json` and
//! `/containers/{id}/json` with the field layout of the real Engine API (Docker 24 and
//! 29), its headers and its error answers.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use harena_exporter::checks::docker::{DockerCheck, DockerConfig};
use harena_exporter::checks::{Check, CheckError, Reason, Recorder, RunContext};
use harena_exporter::model::{Labels, Sample};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_secs(5);
/// In every container's environment and health log: must never reach a detail or label.
const SECRET: &str = "s3cret-postgres-password";

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

    fn containers(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .samples
            .iter()
            .filter_map(|s| s.labels.get("container").map(str::to_string))
            .collect();
        names.sort();
        names.dedup();
        names
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

    /// The series of one container: every one of them, with these values.
    fn assert_container(&self, name: &str, running: f64, health: &str, restarts: f64) {
        let c = [("container", name)];
        assert_eq!(
            self.value("harena_container_running", &c),
            Some(running),
            "{name}"
        );
        for status in ["healthy", "unhealthy", "starting", "none"] {
            let want = if status == health { 1.0 } else { 0.0 };
            assert_eq!(
                self.value(
                    "harena_container_health",
                    &[("container", name), ("status", status)]
                ),
                Some(want),
                "{name} {status}"
            );
        }
        assert_eq!(
            self.value("harena_container_restarts_total", &c),
            Some(restarts),
            "{name}"
        );
        assert!(self.value("harena_container_oom_killed", &c).is_some());
        assert!(self.value("harena_container_exit_code", &c).is_some());
    }

    /// Labels and names as the contract says; no secret anywhere.
    fn assert_baseline(&self) {
        for s in &self.samples {
            assert_eq!(s.labels.get("check"), Some("test"), "{}", s.desc.name);
            assert_eq!(s.labels.get("kind"), Some("docker"), "{}", s.desc.name);
            assert!(
                s.desc.name.starts_with("harena_container"),
                "{}",
                s.desc.name
            );
            for (_, v) in s.labels.iter() {
                assert!(!v.contains(SECRET), "secret in a label");
            }
        }
        let mut texts = vec![self.detail.clone().unwrap_or_default()];
        if let Err(e) = &self.result {
            texts.push(e.detail.clone());
        }
        for t in texts {
            assert!(!t.contains(SECRET), "secret in the detail: {t}");
        }
    }
}

fn build(config: Value) -> DockerCheck {
    let config: DockerConfig = serde_json::from_value(config).expect("config deserializes");
    DockerCheck::build(&config).expect("check builds")
}

async fn run_with(check: &DockerCheck, timeout: Duration) -> Run {
    let start = Instant::now();
    let ctx = RunContext::standalone(start + timeout);
    let mut rec = Recorder::new(Labels::from_pairs([("check", "test"), ("kind", "docker")]));
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

async fn run(check: &DockerCheck) -> Run {
    run_with(check, TIMEOUT).await
}

fn check_for(socket: &Path) -> DockerCheck {
    build(json!({"socket": socket}))
}

// ---------------------------------------------------------------------------------------
// The fake Engine API.

#[derive(Debug, Clone)]
struct Container {
    id: String,
    name: String,
    image: &'static str,
    /// `State.Status`: running, exited, restarting, paused, created, dead.
    status: &'static str,
    /// `State.Health`: status and failing streak; `None` without a healthcheck.
    health: Option<(&'static str, u64)>,
    restarts: u64,
    exit_code: i64,
    oom_killed: bool,
    started_at: &'static str,
    /// Listed, but removed before it is inspected.
    vanished: bool,
}

const STARTED: &str = "2025-11-20T10:00:00.123456789Z";
const STARTED_SECS: f64 = 1_763_632_800.123;

fn container(name: &str, image: &'static str) -> Container {
    // A 64-hex id derived from the name, as Docker's.
    let mut id = String::new();
    for b in name.bytes().cycle().take(32) {
        id.push_str(&format!("{b:02x}"));
    }
    Container {
        id,
        name: name.to_string(),
        image,
        status: "running",
        health: Some(("healthy", 0)),
        restarts: 0,
        exit_code: 0,
        oom_killed: false,
        started_at: STARTED,
        vanished: false,
    }
}

impl Container {
    fn running(&self) -> bool {
        matches!(self.status, "running" | "restarting" | "paused")
    }

    /// One entry of `GET /containers/json`.
    fn summary(&self) -> Value {
        let status_text = match (self.status, self.health) {
            ("running", Some((h, _))) => format!("Up 2 hours ({h})"),
            ("running", None) => "Up 2 hours".to_string(),
            ("restarting", _) => format!("Restarting ({}) 3 seconds ago", self.exit_code),
            ("exited", _) => format!("Exited ({}) 5 minutes ago", self.exit_code),
            (other, _) => other.to_string(),
        };
        json!({
            "Id": self.id,
            "Names": [format!("/{}", self.name)],
            "Image": self.image,
            "ImageID": "sha256:4f9e4b5ec8e1b8c8a1e0d7a7d0b4f6f0a3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8",
            "Command": "/docker-entrypoint.sh",
            "Created": 1_763_632_798,
            "Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 80, "Type": "tcp"}],
            "Labels": {
                "com.docker.compose.project": "harena",
                "com.docker.compose.service": self.name.trim_start_matches("harena_"),
            },
            "State": self.status,
            "Status": status_text,
            "HostConfig": {"NetworkMode": "harena_default"},
            "NetworkSettings": {"Networks": {"harena_default": {
                "NetworkID": "0b4d1c7e", "IPAddress": "172.18.0.5", "Gateway": "172.18.0.1",
            }}},
            "Mounts": [],
        })
    }

    /// `GET /containers/{id}/json`.
    fn inspect(&self) -> Value {
        let mut state = json!({
            "Status": self.status,
            "Running": self.running(),
            "Paused": self.status == "paused",
            "Restarting": self.status == "restarting",
            "OOMKilled": self.oom_killed,
            "Dead": self.status == "dead",
            "Pid": if self.running() { 4242 } else { 0 },
            "ExitCode": self.exit_code,
            "Error": "",
            "StartedAt": self.started_at,
            "FinishedAt": if self.status == "running" { "0001-01-01T00:00:00Z" } else { "2025-11-20T12:00:00.5Z" },
        });
        if let Some((status, streak)) = self.health {
            state["Health"] = json!({
                "Status": status,
                "FailingStreak": streak,
                "Log": [{
                    "Start": "2025-11-20T12:00:00.1Z",
                    "End": "2025-11-20T12:00:00.2Z",
                    "ExitCode": if status == "unhealthy" { 1 } else { 0 },
                    "Output": format!("connect to postgres://harena:{SECRET}@postgres:5432 failed"),
                }],
            });
        }
        json!({
            "Id": self.id,
            "Created": "2025-11-20T09:59:58.1Z",
            "Path": "/docker-entrypoint.sh",
            "Args": ["nginx", "-g", "daemon off;"],
            "State": state,
            "Image": "sha256:4f9e4b5ec8e1b8c8a1e0d7a7d0b4f6f0a3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8",
            "ResolvConfPath": format!("/var/lib/docker/containers/{}/resolv.conf", self.id),
            "Name": format!("/{}", self.name),
            "RestartCount": self.restarts,
            "Driver": "overlay2",
            "Platform": "linux",
            "HostConfig": {"RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0}},
            "Config": {
                "Hostname": &self.id[..12],
                "Env": [
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    format!("DATABASE_URL=postgresql://harena:{SECRET}@postgres:5432/harena"),
                ],
                "Image": self.image,
                "Labels": {"com.docker.compose.project": "harena"},
            },
            "NetworkSettings": {"Networks": {"harena_default": {"IPAddress": "172.18.0.5"}}},
        })
    }
}

/// What the fake daemon serves.
#[derive(Debug, Clone)]
struct Daemon {
    /// `MinAPIVersion` (absent in old daemons), and the API versions it refuses below.
    min_api: Option<(u32, u32)>,
    /// Versions below this are refused with 400 even if `/version` does not say so.
    refuse_below: (u32, u32),
    max_api: (u32, u32),
    containers: Vec<Container>,
}

impl Daemon {
    /// A Docker 24-like daemon: API 1.12 to 1.43.
    fn docker24(containers: Vec<Container>) -> Self {
        Daemon {
            min_api: Some((1, 12)),
            refuse_below: (1, 12),
            max_api: (1, 43),
            containers,
        }
    }
}

#[derive(Clone)]
struct Shared {
    daemon: Arc<Mutex<Daemon>>,
    /// Every request's path and query, in order.
    seen: Arc<Mutex<Vec<String>>>,
}

/// A fake daemon on a unix socket in its own temporary folder, stopped when dropped.
struct FakeDocker {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    shared: Shared,
    task: JoinHandle<()>,
}

impl Drop for FakeDocker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeDocker {
    async fn start(daemon: Daemon) -> FakeDocker {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let shared = Shared {
            daemon: Arc::new(Mutex::new(daemon)),
            seen: Arc::new(Mutex::new(Vec::new())),
        };
        let app = Router::new()
            .fallback(engine_api)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeDocker {
            _dir: dir,
            socket,
            shared,
            task,
        }
    }

    fn update(&self, f: impl FnOnce(&mut Daemon)) {
        f(&mut self.shared.daemon.lock().unwrap());
    }

    fn requests(&self) -> Vec<String> {
        self.shared.seen.lock().unwrap().clone()
    }
}

fn version_text(v: (u32, u32)) -> String {
    format!("{}.{}", v.0, v.1)
}

/// A JSON answer with the headers the Engine API sends.
fn answer(daemon: &Daemon, status: StatusCode, body: Value) -> Response {
    (
        status,
        [
            ("Api-Version", version_text(daemon.max_api)),
            ("Server", "Docker/29.0.0 (linux)".to_string()),
            ("Docker-Experimental", "false".to_string()),
            ("Ostype", "linux".to_string()),
            ("Content-Type", "application/json".to_string()),
        ],
        format!("{body}\n"),
    )
        .into_response()
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let (a, b) = text.strip_prefix('v')?.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

async fn engine_api(State(shared): State<Shared>, uri: Uri) -> Response {
    shared.seen.lock().unwrap().push(uri.to_string());
    let d = shared.daemon.lock().unwrap().clone();
    let not_found = |what: &str| answer(&d, StatusCode::NOT_FOUND, json!({"message": what}));
    let path = uri.path();
    if path == "/version" {
        let mut body = json!({
            "Platform": {"Name": "Docker Engine - Community"},
            "Version": "29.0.0",
            "ApiVersion": version_text(d.max_api),
            "GitCommit": "d105562",
            "GoVersion": "go1.25.4",
            "Os": "linux",
            "Arch": "arm64",
            "KernelVersion": "6.1.158-180.294.amzn2023.aarch64",
            "BuildTime": "2025-11-10T21:46:03.000000000+00:00",
        });
        if let Some(min) = d.min_api {
            body["MinAPIVersion"] = json!(version_text(min));
        }
        return answer(&d, StatusCode::OK, body);
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let Some(version) = parts.first().and_then(|v| parse_version(v)) else {
        return not_found("page not found");
    };
    if version < d.refuse_below {
        let min = version_text(d.refuse_below);
        return answer(
            &d,
            StatusCode::BAD_REQUEST,
            json!({"message": format!(
                "client version {} is too old. Minimum supported API version is {min}, please upgrade your client to a newer version",
                version_text(version)
            )}),
        );
    }
    match parts.get(1..) {
        Some(["containers", "json"]) => {
            let all = uri.query().is_some_and(|q| q.contains("all=true"));
            let list: Vec<Value> = d
                .containers
                .iter()
                .filter(|c| all || c.status == "running")
                .map(Container::summary)
                .collect();
            answer(&d, StatusCode::OK, Value::Array(list))
        }
        Some(["containers", id, "json"]) => {
            match d.containers.iter().find(|c| c.id == *id && !c.vanished) {
                Some(c) => answer(&d, StatusCode::OK, c.inspect()),
                None => not_found(&format!("No such container: {id}")),
            }
        }
        _ => not_found("page not found"),
    }
}

/// The Harena stack, healthy, plus a container of someone else's.
fn harena() -> Vec<Container> {
    let mut user = container("harena_user_service", "harena/user-service:latest");
    user.health = None;
    let mut portainer = container("portainer", "portainer/portainer-ce:2.21.4");
    portainer.status = "exited";
    portainer.exit_code = 2;
    portainer.health = None;
    vec![
        container("harena_nginx", "nginx:1.27"),
        container("harena_postgres", "postgres:16"),
        user,
        portainer,
    ]
}

/// A unix socket in a temporary folder that runs `serve` on each connection.
struct RawSocket {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    task: JoinHandle<()>,
}

impl Drop for RawSocket {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn raw_socket(reply: Option<&'static [u8]>) -> RawSocket {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            match reply {
                Some(bytes) => {
                    // Read the request head first, as any server does.
                    let mut got = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = stream.write_all(bytes).await;
                    let _ = stream.shutdown().await;
                }
                None => held.push(stream), // accepted, never answered
            }
        }
    });
    RawSocket {
        _dir: dir,
        socket,
        task,
    }
}

// ---------------------------------------------------------------------------------------
// The tests.

#[tokio::test]
async fn all_running_and_healthy() {
    let fake = FakeDocker::start(Daemon::docker24(harena())).await;
    let check = check_for(&fake.socket);
    let r = run(&check).await;
    r.assert_ok();
    assert_eq!(
        r.detail.as_deref(),
        Some("3 containers running (2 healthy, 1 without healthcheck)")
    );
    assert_eq!(r.value("harena_containers_matched", &[]), Some(3.0));
    assert_eq!(
        r.containers(),
        ["harena_nginx", "harena_postgres", "harena_user_service"]
    );
    r.assert_container("harena_nginx", 1.0, "healthy", 0.0);
    r.assert_container("harena_postgres", 1.0, "healthy", 0.0);
    r.assert_container("harena_user_service", 1.0, "none", 0.0);
    let c = [("container", "harena_nginx")];
    assert_eq!(r.value("harena_container_exit_code", &c), Some(0.0));
    assert_eq!(r.value("harena_container_oom_killed", &c), Some(0.0));
    assert_eq!(
        r.value("harena_container_started_at_timestamp_seconds", &c),
        Some(STARTED_SECS)
    );
    // The versioned paths use api_version, within the daemon's 1.12–1.43; the exited
    // container of someone else is listed (all=true) but never inspected.
    let reqs = fake.requests();
    assert_eq!(reqs[0], "/version");
    assert_eq!(reqs[1], "/v1.41/containers/json?all=true");
    assert_eq!(reqs.len(), 5, "{reqs:?}");
    assert!(
        reqs[2..]
            .iter()
            .all(|p| p.starts_with("/v1.41/containers/"))
    );
}

#[tokio::test]
async fn an_exited_container_fails_the_check() {
    let mut containers = harena();
    containers[1].status = "exited";
    containers[1].exit_code = 137;
    containers[1].oom_killed = true;
    containers[1].health = Some(("unhealthy", 3));
    let fake = FakeDocker::start(Daemon::docker24(containers)).await;
    let r = run(&check_for(&fake.socket)).await;
    r.assert_fails(
        Reason::Missing,
        "harena_postgres has exited (exit code 137, killed for lack of memory)",
    );
    // Only the bad container is in the detail.
    assert!(
        !r.err().detail.contains("harena_nginx"),
        "{}",
        r.err().detail
    );
    let c = [("container", "harena_postgres")];
    r.assert_container("harena_postgres", 0.0, "unhealthy", 0.0);
    assert_eq!(r.value("harena_container_oom_killed", &c), Some(1.0));
    assert_eq!(r.value("harena_container_exit_code", &c), Some(137.0));
    // The others are still recorded.
    r.assert_container("harena_nginx", 1.0, "healthy", 0.0);
    assert_eq!(r.value("harena_containers_matched", &[]), Some(3.0));
}

#[tokio::test]
async fn an_unhealthy_container_fails_and_starting_does_not() {
    let mut containers = harena();
    containers[0].health = Some(("unhealthy", 5));
    let fake = FakeDocker::start(Daemon::docker24(containers)).await;
    let check = check_for(&fake.socket);
    let r = run(&check).await;
    r.assert_fails(
        Reason::Missing,
        "harena_nginx is unhealthy (5 failed health checks in a row)",
    );
    r.assert_container("harena_nginx", 1.0, "unhealthy", 0.0);

    fake.update(|d| d.containers[0].health = Some(("starting", 0)));
    let r = run(&check).await;
    r.assert_ok();
    r.assert_container("harena_nginx", 1.0, "starting", 0.0);
    assert_eq!(
        r.detail.as_deref(),
        Some("3 containers running (1 healthy, 1 starting, 1 without healthcheck)")
    );
}

#[tokio::test]
async fn a_crash_loop_shows_as_a_climbing_restart_count() {
    let mut loki = container("harena_loki", "grafana/loki:3.2.1");
    loki.status = "restarting";
    loki.health = None;
    loki.exit_code = 1;
    loki.restarts = 14;
    let mut containers = harena();
    containers.push(loki);
    let fake = FakeDocker::start(Daemon::docker24(containers)).await;
    let check = check_for(&fake.socket);

    let r = run(&check).await;
    r.assert_fails(
        Reason::Missing,
        "harena_loki is restarting (exit code 1, 14 restarts)",
    );
    r.assert_container("harena_loki", 0.0, "none", 14.0);

    // Caught between two crashes, running: the count has climbed, and the check says so.
    fake.update(|d| {
        let loki = d.containers.last_mut().unwrap();
        loki.status = "running";
        loki.exit_code = 0; // reset by Docker at each start
        loki.restarts = 16;
    });
    let r = run(&check).await;
    r.assert_fails(
        Reason::Missing,
        "harena_loki was restarted 2 times since the last run (16 restarts in all)",
    );
    r.assert_container("harena_loki", 1.0, "none", 16.0);

    // Stable again: the check passes, the counter stays.
    let r = run(&check).await;
    r.assert_ok();
    r.assert_container("harena_loki", 1.0, "none", 16.0);
    assert_eq!(r.value("harena_containers_matched", &[]), Some(4.0));
}

#[tokio::test]
async fn containers_not_matching_the_pattern_are_ignored() {
    let mut containers = harena();
    containers[2].status = "exited"; // harena_user_service, not watched below
    let fake = FakeDocker::start(Daemon::docker24(containers)).await;
    let check = build(json!({
        "socket": fake.socket,
        "name_pattern": "^harena_(nginx|postgres)$",
    }));
    let r = run(&check).await;
    r.assert_ok();
    assert_eq!(r.value("harena_containers_matched", &[]), Some(2.0));
    assert_eq!(r.containers(), ["harena_nginx", "harena_postgres"]);

    let check = build(json!({"socket": fake.socket, "name_pattern": "^harena_grafana$"}));
    let r = run(&check).await;
    r.assert_fails(
        Reason::Missing,
        "find containers: none of 4 matches ^harena_grafana$",
    );
    assert_eq!(r.value("harena_containers_matched", &[]), Some(0.0));
    assert!(r.containers().is_empty());
}

#[tokio::test]
async fn docker_29_gets_its_minimum_api_version() {
    let daemon = Daemon {
        min_api: Some((1, 44)),
        refuse_below: (1, 44),
        max_api: (1, 52),
        containers: harena(),
    };
    let fake = FakeDocker::start(daemon).await;
    let r = run(&check_for(&fake.socket)).await;
    r.assert_ok();
    assert_eq!(fake.requests()[1], "/v1.44/containers/json?all=true");

    // A daemon that does not say its minimum and refuses the version asked for.
    fake.update(|d| d.min_api = None);
    let r = run(&check_for(&fake.socket)).await;
    r.assert_fails(
        Reason::HttpStatus,
        "GET /v1.41/containers/json?all=true: status 400: \"client version 1.41 is too old. Minimum supported API version is 1.44",
    );
    let r = run(&build(
        json!({"socket": fake.socket, "api_version": "v1.45"}),
    ))
    .await;
    r.assert_ok();
}

#[tokio::test]
async fn a_container_removed_during_the_run_is_reported() {
    let mut containers = harena();
    containers[0].vanished = true;
    let fake = FakeDocker::start(Daemon::docker24(containers)).await;
    let r = run(&check_for(&fake.socket)).await;
    r.assert_fails(
        Reason::Missing,
        "harena_nginx disappeared (no such container)",
    );
    assert_eq!(
        r.value("harena_container_running", &[("container", "harena_nginx")]),
        Some(0.0)
    );
    r.assert_container("harena_postgres", 1.0, "healthy", 0.0);
}

#[tokio::test]
async fn a_missing_socket_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    let r = run(&check_for(&socket)).await;
    r.assert_fails(
        Reason::Refused,
        &format!(
            "connect to {}: no such file or directory: is Docker running",
            socket.display()
        ),
    );
    assert!(r.samples.is_empty());

    // A socket file nobody listens on any more.
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    drop(listener);
    let r = run(&check_for(&socket)).await;
    r.assert_fails(
        Reason::Refused,
        &format!("connect to {}: connection refused", socket.display()),
    );
}

#[tokio::test]
async fn a_socket_answering_garbage_is_a_protocol_error() {
    let raw = raw_socket(Some(b"garbage, not HTTP at all\r\n\r\n")).await;
    let r = run(&check_for(&raw.socket)).await;
    r.assert_fails(Reason::Protocol, "GET /version on ");
    r.assert_fails(
        Reason::Protocol,
        "not a Docker Engine API answer: invalid HTTP response",
    );

    // HTTP, but not the Engine API: a web page, and a 404 without Docker's headers.
    let html = raw_socket(Some(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 15\r\n\r\n<html>hi</html>",
    ))
    .await;
    let r = run(&check_for(&html.socket)).await;
    r.assert_fails(
        Reason::Protocol,
        "GET /version: not a Docker Engine API answer: invalid JSON at line 1 column 1",
    );
    let nginx = raw_socket(Some(
        b"HTTP/1.1 404 Not Found\r\nServer: nginx\r\nContent-Length: 9\r\n\r\nnot found",
    ))
    .await;
    let r = run(&check_for(&nginx.socket)).await;
    r.assert_fails(
        Reason::Protocol,
        "GET /version: status 404 without an Api-Version header: not a Docker Engine API",
    );
    // JSON of the wrong shape.
    let shape = raw_socket(Some(
        b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n{\"Version\":1}",
    ))
    .await;
    let r = run(&check_for(&shape.socket)).await;
    r.assert_fails(
        Reason::Protocol,
        "GET /version: not a Docker Engine API answer: unexpected JSON fields",
    );
}

#[tokio::test]
async fn a_silent_socket_times_out_at_the_deadline() {
    let raw = raw_socket(None).await;
    let timeout = Duration::from_secs(1);
    let r = run_with(&check_for(&raw.socket), timeout).await;
    r.assert_fails(Reason::Timeout, "GET /version on ");
    r.assert_fails(Reason::Timeout, ": timed out after");
    let off = r.elapsed.abs_diff(timeout);
    assert!(
        off < Duration::from_millis(300),
        "ended after {:?}",
        r.elapsed
    );
}

#[tokio::test]
async fn a_proxy_that_forbids_the_call_is_auth() {
    // docker-socket-proxy (HAProxy) answers 403 for an endpoint it does not allow.
    let proxy = raw_socket(Some(
        b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/html\r\nContent-Length: 13\r\n\r\n403 Forbidden",
    ))
    .await;
    let r = run(&check_for(&proxy.socket)).await;
    r.assert_fails(
        Reason::Auth,
        "GET /version: status 403: access to this endpoint is denied",
    );
}
