//! The simulated Harena: HTTP services that answer `/health` (one of them flapping),
//! Grafana's and Prometheus's health endpoints, a yellow Elasticsearch, a cloudflared
//! metrics server whose quick tunnel restarts with a new hostname now and then, the
//! Cloudflare edge in front of it, and a folder of stale `pg_dump` backups.
//!
//! Everything listens on 127.0.0.1, on ports the system picks.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Timings;

/// One simulated HTTP service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The check name (as in the embedded config).
    pub name: &'static str,
    /// The status page group (`services` or `monitoring`).
    pub group: &'static str,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its health path.
    pub path: &'static str,
    /// Checks it depends on in the demo config.
    pub depends_on: &'static [&'static str],
}

impl Service {
    /// The URL its check probes.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.path)
    }
}

/// The services of the embedded config that the demo simulates: name, group, health
/// path, dependencies. `search_service` is the one that flaps.
const SERVICES: &[(&str, &str, &str, &[&str])] = &[
    ("nginx", "services", "/health", &[]),
    ("user_service", "services", "/health", &[]),
    ("search_service", "services", "/health", &[]),
    ("metric_service", "services", "/health", &[]),
    ("sync_service", "services", "/health", &[]),
    (
        "enrichment_service",
        "services",
        "/health",
        &["elasticsearch"],
    ),
    ("budget_profiling_service", "services", "/health", &[]),
    ("conversation_service", "services", "/health", &[]),
    ("grafana", "monitoring", "/api/health", &[]),
    ("prometheus", "monitoring", "/-/healthy", &[]),
];

/// The service that goes down now and then.
pub const FLAPPING: &str = "search_service";

/// The running simulation.
pub struct Simulation {
    /// The HTTP services, in the embedded config's order.
    pub services: Vec<Service>,
    /// The fake Elasticsearch (base URL `http://{addr}`).
    pub elasticsearch: SocketAddr,
    /// The fake cloudflared metrics server.
    pub cloudflared: SocketAddr,
    /// The fake Cloudflare edge: `GET /{hostname}/health` reaches nginx through the
    /// tunnel while `hostname` is the tunnel's current one.
    pub edge: SocketAddr,
    /// The backups folder.
    pub backups: PathBuf,
    /// The cloudflared log file the tunnel check falls back to.
    pub tunnel_log: PathBuf,
    /// The quick tunnel's timeline.
    pub tunnel: Arc<Tunnel>,
    /// The flapping service's timeline.
    pub flap: Flap,
    tasks: Vec<JoinHandle<()>>,
}

impl Simulation {
    /// Adds a task that ends with the simulation.
    pub fn push_task(&mut self, task: JoinHandle<()>) {
        self.tasks.push(task);
    }

    /// Waits for the servers and tasks to end (after the token was cancelled), at most
    /// a few seconds each; the rest is aborted.
    pub async fn join(self) {
        for mut t in self.tasks {
            if tokio::time::timeout(Duration::from_secs(3), &mut t)
                .await
                .is_err()
            {
                t.abort();
            }
        }
    }
}

/// Serves `router` on a free loopback port until `token` is cancelled.
pub async fn serve(
    router: Router,
    token: &CancellationToken,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let token = token.clone();
    let task = tokio::spawn(async move {
        let res = axum::serve(listener, router)
            .with_graceful_shutdown(token.cancelled_owned())
            .await;
        if let Err(e) = res {
            tracing::warn!(error = %e, address = %addr, "demo server stopped");
        }
    });
    Ok((addr, task))
}

/// Starts every simulated part; `dir` is the demo's folder.
///
/// # Errors
/// A port that cannot be bound, or the backups folder that cannot be written.
pub async fn start(
    dir: &Path,
    timings: &Timings,
    token: &CancellationToken,
) -> std::io::Result<Simulation> {
    let start = Instant::now();
    let seed = seed();
    let flap = Flap {
        start,
        first_down: timings.flap_first_down(),
        down: timings.flap_down(),
        period: timings.flap_period(),
    };
    let mut tasks = Vec::new();
    let mut services = Vec::new();
    for &(name, group, path, depends_on) in SERVICES {
        let svc = ServiceState {
            name,
            flap: (name == FLAPPING).then_some(flap),
        };
        let router = Router::new()
            .route(path, get(health))
            .with_state(Arc::new(svc));
        let (addr, task) = serve(router, token).await?;
        tasks.push(task);
        services.push(Service {
            name,
            group,
            addr,
            path,
            depends_on,
        });
    }

    let es = Router::new()
        .route("/", get(es_root))
        .route("/_cluster/health", get(es_health));
    let (elasticsearch, task) = serve(es, token).await?;
    tasks.push(task);

    let tunnel_log = dir.join("cloudflare-tunnel.log");
    let tunnel = Arc::new(Tunnel {
        start,
        first_change: timings.tunnel_first_change(),
        every: timings.tunnel_every(),
        restart: timings.tunnel_restart(),
        seed,
        counters: Mutex::new(Counters::default()),
    });
    let cf = Router::new()
        .route("/ready", get(cf_ready))
        .route("/quicktunnel", get(cf_quicktunnel))
        .route("/metrics", get(cf_metrics))
        .with_state(Arc::clone(&tunnel));
    let (cloudflared, task) = serve(cf, token).await?;
    tasks.push(task);
    let edge_router = Router::new()
        .route("/{host}/health", get(edge))
        .with_state(Arc::clone(&tunnel));
    let (edge, task) = serve(edge_router, token).await?;
    tasks.push(task);

    let backups = dir.join("backups");
    write_backups(&backups)?;

    tasks.push(tokio::spawn(narrate(
        Arc::clone(&tunnel),
        flap,
        tunnel_log.clone(),
        cloudflared,
        token.clone(),
    )));

    Ok(Simulation {
        services,
        elasticsearch,
        cloudflared,
        edge,
        backups,
        tunnel_log,
        tunnel,
        flap,
        tasks,
    })
}

// ------------------------------------------------------------------ randomness

/// A seed from the clock and the process id: a new set of hostnames per run.
fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    #[allow(clippy::cast_possible_truncation)] // mixing bits, truncation is fine
    let n = nanos as u64;
    n ^ u64::from(std::process::id()).rotate_left(32)
}

/// SplitMix64: a small, good-enough generator for names.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

const WORDS: &[&str] = &[
    "amber", "atlas", "bakery", "basin", "beacon", "bridge", "canyon", "cedar", "charter",
    "cobalt", "copper", "delta", "desk", "ember", "falcon", "fjord", "garden", "glacier", "harbor",
    "hollow", "island", "juniper", "lantern", "ledger", "maple", "meadow", "nickel", "orchard",
    "pioneer", "quartz", "raven", "saffron", "signal", "summit", "timber", "tundra", "valley",
    "willow", "yonder", "zephyr",
];

fn pick(x: u64) -> &'static str {
    let i = usize::try_from(x % WORDS.len() as u64).unwrap_or(0);
    WORDS.get(i).copied().unwrap_or("harena")
}

// ------------------------------------------------------------------ services

/// When the flapping service is down: first at `first_down`, then every `period`, for
/// `down` each time.
#[derive(Debug, Clone, Copy)]
pub struct Flap {
    start: Instant,
    first_down: Duration,
    down: Duration,
    period: Duration,
}

impl Flap {
    /// True while the service is down.
    pub fn is_down(&self, now: Instant) -> bool {
        let t = now.saturating_duration_since(self.start);
        if t < self.first_down || self.period.is_zero() {
            return false;
        }
        let into = (t - self.first_down).as_nanos() % self.period.as_nanos();
        into < self.down.as_nanos()
    }
}

struct ServiceState {
    name: &'static str,
    flap: Option<Flap>,
}

async fn health(State(svc): State<Arc<ServiceState>>) -> Response {
    let json = [(header::CONTENT_TYPE, "application/json")];
    if svc.flap.is_some_and(|f| f.is_down(Instant::now())) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            json,
            format!(
                r#"{{"status":"unhealthy","service":"{}","error":"database connection pool exhausted (pool_size=20, max_overflow=30)"}}"#,
                svc.name
            ),
        )
            .into_response();
    }
    match svc.name {
        "grafana" => (
            json,
            r#"{"commit":"demo","database":"ok","version":"11.3.0"}"#.to_string(),
        )
            .into_response(),
        "prometheus" => "Prometheus Server is Healthy.\n".into_response(),
        "nginx" => "OK\n".into_response(),
        name => (
            json,
            format!(r#"{{"status":"healthy","service":"{name}","version":"demo"}}"#),
        )
            .into_response(),
    }
}

async fn es_root() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"name":"harena-es","cluster_name":"harena","version":{"number":"8.15.0"},"tagline":"You Know, for Search"}"#,
    )
        .into_response()
}

/// A single-node cluster whose indices ask for a replica: yellow, as on the Harena host.
async fn es_health() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"cluster_name":"harena","status":"yellow","timed_out":false,"number_of_nodes":1,"number_of_data_nodes":1,"active_primary_shards":6,"active_shards":6,"relocating_shards":0,"initializing_shards":0,"unassigned_shards":6,"delayed_unassigned_shards":0,"number_of_pending_tasks":0,"number_of_in_flight_fetch":0,"task_max_waiting_in_queue_millis":0,"active_shards_percent_as_number":50.0}"#,
    )
        .into_response()
}

// ------------------------------------------------------------------ tunnel

/// The quick tunnel's timeline: cloudflared restarts at `first_change`, then every
/// `every`; each restart takes `restart` (no edge connection) and ends with a new random
/// `<words>.trycloudflare.com` hostname.
pub struct Tunnel {
    start: Instant,
    first_change: Duration,
    every: Duration,
    restart: Duration,
    seed: u64,
    counters: Mutex<Counters>,
}

/// Request counters since cloudflared (re)started.
#[derive(Debug, Default)]
struct Counters {
    epoch: u64,
    total: u64,
    errors: u64,
    by_code: BTreeMap<u16, u64>,
    ticks: u64,
}

/// Where the tunnel is in its timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phase {
    /// How many restarts have completed (the hostname's index).
    pub epoch: u64,
    /// cloudflared is restarting: no edge connection.
    pub restarting: bool,
}

impl Tunnel {
    /// The phase at `now`.
    pub fn phase(&self, now: Instant) -> Phase {
        let t = now.saturating_duration_since(self.start);
        let epoch = if t < self.first_change || self.every.is_zero() {
            0
        } else {
            1 + u64::try_from((t - self.first_change).as_nanos() / self.every.as_nanos())
                .unwrap_or(u64::MAX - 1)
        };
        let next = self.first_change
            + self
                .every
                .saturating_mul(u32::try_from(epoch).unwrap_or(u32::MAX));
        let restarting = next.saturating_sub(t) <= self.restart;
        Phase { epoch, restarting }
    }

    /// The hostname of the `epoch`-th tunnel.
    pub fn hostname(&self, epoch: u64) -> String {
        let mut x = mix(self.seed ^ epoch.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let mut words: Vec<&str> = Vec::with_capacity(4);
        while words.len() < 4 {
            x = mix(x);
            let w = pick(x);
            if !words.contains(&w) {
                words.push(w);
            }
        }
        format!("{}.trycloudflare.com", words.join("-"))
    }

    /// The current hostname.
    pub fn current_hostname(&self) -> String {
        self.hostname(self.phase(Instant::now()).epoch)
    }

    fn connector_id(&self, epoch: u64) -> String {
        let a = mix(self.seed.wrapping_add(epoch) ^ 0x0c0f_fee0);
        let b = mix(a);
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            (b >> 48) & 0x3fff | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }

    /// The counters of the current cloudflared process (reset at each restart).
    fn counters(&self, epoch: u64) -> std::sync::MutexGuard<'_, Counters> {
        let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        if c.epoch != epoch {
            *c = Counters {
                epoch,
                ..Counters::default()
            };
        }
        c
    }
}

async fn cf_ready(State(t): State<Arc<Tunnel>>) -> Response {
    let phase = t.phase(Instant::now());
    let (status, n) = if phase.restarting { (503, 0) } else { (200, 4) };
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        [(header::CONTENT_TYPE, "application/json")],
        format!(
            r#"{{"status":{status},"readyConnections":{n},"connectorId":"{}"}}"#,
            t.connector_id(phase.epoch)
        ),
    )
        .into_response()
}

async fn cf_quicktunnel(State(t): State<Arc<Tunnel>>) -> Response {
    let phase = t.phase(Instant::now());
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!(r#"{{"hostname":"{}"}}"#, t.hostname(phase.epoch)),
    )
        .into_response()
}

async fn cf_metrics(State(t): State<Arc<Tunnel>>) -> Response {
    let phase = t.phase(Instant::now());
    let ha = if phase.restarting { 0 } else { 4 };
    let c = t.counters(phase.epoch);
    let mut out = format!(
        "# HELP build_info Build and version information\n# TYPE build_info gauge\n\
build_info{{goversion=\"go1.22.5\",revision=\"demo\",type=\"\",version=\"2024.11.1\"}} 1\n\
# HELP cloudflared_tunnel_ha_connections Number of active ha connections\n\
# TYPE cloudflared_tunnel_ha_connections gauge\ncloudflared_tunnel_ha_connections {ha}\n\
# HELP cloudflared_tunnel_total_requests Amount of requests proxied through all the tunnels\n\
# TYPE cloudflared_tunnel_total_requests counter\ncloudflared_tunnel_total_requests {}\n\
# HELP cloudflared_tunnel_request_errors Amount of errors due to proxying\n\
# TYPE cloudflared_tunnel_request_errors counter\ncloudflared_tunnel_request_errors {}\n\
# HELP cloudflared_tunnel_response_by_code Count of responses by HTTP status code\n\
# TYPE cloudflared_tunnel_response_by_code counter\n",
        c.total, c.errors
    );
    for (code, n) in &c.by_code {
        out.push_str(&format!(
            "cloudflared_tunnel_response_by_code{{status_code=\"{code}\"}} {n}\n"
        ));
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// The Cloudflare edge: the current hostname reaches nginx's `/health` through the
/// tunnel; an old one, or any while cloudflared restarts, gets Cloudflare's 530.
async fn edge(State(t): State<Arc<Tunnel>>, UrlPath(host): UrlPath<String>) -> Response {
    let phase = t.phase(Instant::now());
    if phase.restarting || !host.eq_ignore_ascii_case(&t.hostname(phase.epoch)) {
        return (
            StatusCode::from_u16(530).unwrap_or(StatusCode::BAD_GATEWAY),
            "error code: 1033\n",
        )
            .into_response();
    }
    let mut c = t.counters(phase.epoch);
    c.total += 1;
    *c.by_code.entry(200).or_default() += 1;
    "OK\n".into_response()
}

// ------------------------------------------------------------------ narration

fn log_line(path: &Path, lines: &[String]) {
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ");
    let res = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| {
            for l in lines {
                writeln!(f, "{now} {l}")?;
            }
            Ok(())
        });
    if let Err(e) = res {
        tracing::debug!(error = %e, "demo: write the cloudflared log");
    }
}

/// Follows the timelines: logs each outage and tunnel restart, writes cloudflared's log
/// as cloudflared would, and adds a trickle of visitor traffic through the tunnel.
async fn narrate(
    tunnel: Arc<Tunnel>,
    flap: Flap,
    log: PathBuf,
    metrics: SocketAddr,
    token: CancellationToken,
) {
    let created = |host: &str| {
        vec![
            "INF Requesting new quick Tunnel on trycloudflare.com...".to_string(),
            "INF +--------------------------------------------------------------------------------------------+".to_string(),
            "INF |  Your quick Tunnel has been created! Visit it at (it may take some time to be reachable):  |".to_string(),
            format!("INF |  https://{host:<88}|"),
            "INF +--------------------------------------------------------------------------------------------+".to_string(),
            format!("INF Starting metrics server on {metrics}/metrics"),
            "INF Registered tunnel connection connIndex=0 location=cdg08 protocol=quic".to_string(),
        ]
    };
    let first = tunnel.phase(Instant::now());
    log_line(&log, &created(&tunnel.hostname(first.epoch)));
    let mut last = first;
    let mut was_down = false;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let down = flap.is_down(now);
        if down != was_down {
            if down {
                tracing::info!(
                    service = FLAPPING,
                    "demo: {FLAPPING} goes down (its /health answers 503)"
                );
            } else {
                tracing::info!(service = FLAPPING, "demo: {FLAPPING} is back");
            }
            was_down = down;
        }
        let phase = tunnel.phase(now);
        if phase.restarting && !last.restarting {
            tracing::info!("demo: cloudflared restarts; the quick tunnel will get a new URL");
            log_line(
                &log,
                &["INF Initiating graceful shutdown due to signal terminated ...".to_string()],
            );
        }
        if phase.epoch != last.epoch {
            let host = tunnel.hostname(phase.epoch);
            tracing::info!(hostname = %host, "demo: the quick tunnel has a new URL");
            log_line(&log, &created(&host));
        }
        last = phase;
        // Visitors: a few requests a second while the tunnel is up, now and then a 404.
        if !phase.restarting {
            let mut c = tunnel.counters(phase.epoch);
            c.ticks += 1;
            if c.ticks.is_multiple_of(10) {
                let r = mix(tunnel.seed ^ c.ticks);
                let n = r % 4;
                c.total += n;
                *c.by_code.entry(200).or_default() += n;
                if r.is_multiple_of(17) {
                    c.total += 1;
                    *c.by_code.entry(404).or_default() += 1;
                }
                if r.is_multiple_of(53) {
                    c.total += 1;
                    c.errors += 1;
                    *c.by_code.entry(502).or_default() += 1;
                }
            }
        }
    }
}

// ------------------------------------------------------------------ backups

/// How old the newest backup is, in days.
pub const BACKUP_AGE_DAYS: i64 = 3;

/// A week of nightly `pg_dump` files, the newest [`BACKUP_AGE_DAYS`] days old: the cron
/// job stopped. Each is a complete plain-text dump (it ends with pg_dump's closing
/// line) written at 03:00 UTC on its day.
fn write_backups(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let today = chrono::Utc::now().date_naive();
    for age in BACKUP_AGE_DAYS..BACKUP_AGE_DAYS + 7 {
        let day = today - chrono::TimeDelta::days(age);
        let path = dir.join(format!("backup_{}.sql", day.format("%Y%m%d")));
        let mut body = String::from(
            "--\n-- PostgreSQL database dump\n--\n\n-- Dumped from database version 16.4\n\
-- Dumped by pg_dump version 16.4\n\nSET statement_timeout = 0;\nSET client_encoding = 'UTF8';\n\n\
CREATE TABLE public.users (\n    id integer NOT NULL,\n    email character varying(255) NOT NULL\n);\n\n\
CREATE TABLE public.transactions (\n    id bigint NOT NULL,\n    user_id integer NOT NULL,\n    amount numeric(12,2),\n    label text\n);\n\n\
COPY public.transactions (id, user_id, amount, label) FROM stdin;\n",
        );
        for i in 0..40 {
            body.push_str(&format!(
                "{}\t{}\t{}.{:02}\tdemo transaction {i}\n",
                1000 + i,
                1 + i % 7,
                12 + i * 3,
                i % 100
            ));
        }
        body.push_str("\\.\n\n--\n-- PostgreSQL database dump complete\n--\n\n");
        std::fs::write(&path, body)?;
        let written = day
            .and_hms_opt(3, 0, 0)
            .map(|t| t.and_utc().timestamp())
            .and_then(|s| u64::try_from(s).ok())
            .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        if let Some(t) = written {
            std::fs::File::options()
                .write(true)
                .open(&path)?
                .set_modified(t)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flap_and_tunnel_timelines() {
        let start = Instant::now();
        let s = Duration::from_secs;
        let flap = Flap {
            start,
            first_down: s(20),
            down: s(40),
            period: s(120),
        };
        assert!(!flap.is_down(start + s(10)));
        assert!(flap.is_down(start + s(21)));
        assert!(!flap.is_down(start + s(61)));
        assert!(flap.is_down(start + s(141)));
        let t = Tunnel {
            start,
            first_change: s(90),
            every: s(180),
            restart: s(6),
            seed: 7,
            counters: Mutex::new(Counters::default()),
        };
        assert_eq!(
            t.phase(start + s(10)),
            Phase {
                epoch: 0,
                restarting: false
            }
        );
        assert!(t.phase(start + s(86)).restarting);
        assert_eq!(
            t.phase(start + s(91)),
            Phase {
                epoch: 1,
                restarting: false
            }
        );
        assert!(t.phase(start + s(268)).restarting);
        assert_eq!(t.phase(start + s(271)).epoch, 2);
        let (a, b) = (t.hostname(0), t.hostname(1));
        assert_ne!(a, b);
        assert!(a.ends_with(".trycloudflare.com") && a.matches('-').count() == 3);
        assert_eq!(t.connector_id(0).len(), 36);
    }

    #[test]
    fn backups_are_stale_and_complete() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_backups(dir.path()).expect("write");
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        assert_eq!(names.len(), 7);
        let newest = dir.path().join(names.last().expect("one"));
        let age = SystemTime::now()
            .duration_since(
                std::fs::metadata(&newest)
                    .expect("meta")
                    .modified()
                    .expect("mtime"),
            )
            .expect("in the past");
        assert!(age > Duration::from_secs(2 * 86_400) && age < Duration::from_secs(4 * 86_400));
        let text = std::fs::read_to_string(newest).expect("read");
        assert!(text.len() > 1024 && text.contains("-- PostgreSQL database dump complete"));
    }
}
