//! `harena-exporter demo`: a small simulated Harena on loopback, and the exporter
//! watching it with the shipped rules, so that a newcomer sees every feature in a minute
//! without the real deployment.
//!
//! What runs, all in this process and on 127.0.0.1 only:
//! - the HTTP services of the embedded config answering `/health` ([`harena`]), one of
//!   them (`search_service`) going down for 40 s every 2 minutes; Grafana's and
//!   Prometheus's health endpoints; an Elasticsearch whose cluster is yellow;
//! - a cloudflared metrics server (`/ready`, `/quicktunnel`, `/metrics`) whose quick
//!   tunnel restarts every 3 minutes with a new `<words>.trycloudflare.com` hostname, and
//!   the Cloudflare edge in front of it, which `public_site` probes through the tunnel;
//! - a backups folder whose newest `backup_YYYYMMDD.sql` is 3 days old;
//! - an SMTP server that keeps the emails it receives and shows them on a mailbox page
//!   ([`smtp`], [`mailbox`]), which also counts the heartbeat's calls;
//! - the exporter itself ([`crate::app::start`]) with a generated config: those checks
//!   every 5 s, the shipped rules (each `for:` shortened so that alerts fire within the
//!   minute), critical alerts emailed at once and warnings in a digest, a daily report
//!   (also sent once about a minute after the start) and a heartbeat.
//!
//! Everything lives in a temporary folder that is removed when the demo stops (Ctrl-C).
//! [`DemoOptions::speed`] runs every timeline faster, for tests.

pub mod harena;
pub mod mailbox;
pub mod smtp;

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::app;
use crate::config::{self, ConfigSource, types::PromDuration};

/// The exporter's default address in the demo, as for the real thing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9811";

/// The config file's name in the demo's folder.
pub const CONFIG_FILE: &str = "harena-demo.yml";

/// How the demo starts.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoOptions {
    /// The exporter's address; loopback only (`127.0.0.1:0` picks a free port).
    /// Default [`DEFAULT_LISTEN`].
    pub listen: String,
    /// Folder of the exporter's state file; `None` puts it in the demo's temporary
    /// folder, removed at the end. Default `None`.
    pub storage: Option<PathBuf>,
    /// How many times faster than real time every timeline runs: check and rule
    /// intervals, the outages, the tunnel restarts, alert `for:` durations, routing
    /// waits. Between 0.1 and 20. Default `1`.
    pub speed: f64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            listen: DEFAULT_LISTEN.to_string(),
            storage: None,
            speed: 1.0,
        }
    }
}

/// The demo's durations at a given speed; at speed 1 they are the ones the banner
/// announces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timings {
    speed: f64,
}

impl Timings {
    /// The slowest speed accepted.
    pub const MIN_SPEED: f64 = 0.1;
    /// The fastest speed accepted: beyond it, check intervals get too short for a
    /// loaded machine.
    pub const MAX_SPEED: f64 = 20.0;

    /// Timings at `speed`.
    ///
    /// # Errors
    /// A speed outside [`Self::MIN_SPEED`]..=[`Self::MAX_SPEED`].
    pub fn new(speed: f64) -> Result<Self, String> {
        if !(Self::MIN_SPEED..=Self::MAX_SPEED).contains(&speed) {
            return Err(format!(
                "demo speed {speed} is out of range: use {} to {}",
                Self::MIN_SPEED,
                Self::MAX_SPEED
            ));
        }
        Ok(Timings { speed })
    }

    /// The speed.
    pub fn speed(&self) -> f64 {
        self.speed
    }

    fn scaled(&self, secs: f64) -> Duration {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // bounded, positive
        let ms = (secs * 1000.0 / self.speed).round().max(1.0) as u64;
        Duration::from_millis(ms)
    }

    /// Interval of every check and of rule evaluation (5 s).
    pub fn check_interval(&self) -> Duration {
        self.scaled(5.0)
    }

    /// Timeout of every check (4 s).
    pub fn check_timeout(&self) -> Duration {
        self.scaled(4.0)
    }

    /// When the flapping service first goes down (20 s after the start).
    pub fn flap_first_down(&self) -> Duration {
        self.scaled(20.0)
    }

    /// How long each of its outages lasts (40 s).
    pub fn flap_down(&self) -> Duration {
        self.scaled(40.0)
    }

    /// Time between the starts of two outages (2 min).
    pub fn flap_period(&self) -> Duration {
        self.scaled(120.0)
    }

    /// When the tunnel first gets a new hostname (90 s after the start).
    pub fn tunnel_first_change(&self) -> Duration {
        self.scaled(90.0)
    }

    /// Time between two hostname changes (3 min).
    pub fn tunnel_every(&self) -> Duration {
        self.scaled(180.0)
    }

    /// How long cloudflared has no edge connection before each change (6 s).
    pub fn tunnel_restart(&self) -> Duration {
        self.scaled(6.0)
    }

    /// A shipped rule's `for:` in the demo: a tenth of it, at most 30 s, then scaled;
    /// `0` stays `0`.
    pub fn rule_for(&self, shipped: Duration) -> Duration {
        if shipped.is_zero() {
            return Duration::ZERO;
        }
        self.scaled((shipped.as_secs_f64() / 10.0).min(30.0))
    }

    /// When the demo asks for the daily report (75 s after the start).
    pub fn report_after(&self) -> Duration {
        self.scaled(75.0)
    }
}

/// A duration as config text (`5s`, `250ms`).
fn dur(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A duration for people (`40 s`, `2 min`, `1.5 s`).
fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 60.0 && d.as_millis().is_multiple_of(60_000) {
        format!("{} min", d.as_secs() / 60)
    } else if s >= 10.0 {
        format!("{s:.0} s")
    } else {
        let t = format!("{s:.1}");
        format!("{} s", t.strip_suffix(".0").unwrap_or(&t))
    }
}

/// A string as a YAML (JSON-compatible) double-quoted scalar.
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// The demo's temporary folder, removed when dropped.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn create() -> std::io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt as _;
        let base = std::env::temp_dir();
        let mut last = None;
        for attempt in 0..16u32 {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or_default();
            let path = base.join(format!(
                "harena-demo-{}-{:08x}",
                std::process::id(),
                nanos ^ attempt.wrapping_mul(0x9e37_79b9)
            ));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(TempDir(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no free temporary folder name")))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.0.display(), error = %e, "demo: remove the temporary folder");
        }
    }
}

/// The exporter's address: loopback only; port 0 is replaced by a free port now, so
/// that the config's `external_url` can name it.
fn resolve_listen(text: &str) -> anyhow::Result<SocketAddr> {
    let addr: SocketAddr = match text.parse() {
        Ok(a) => a,
        Err(_) => match text.rsplit_once(':') {
            Some(("localhost", port)) => SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                port.parse()
                    .with_context(|| format!("invalid port in {text:?}"))?,
            ),
            _ => anyhow::bail!(
                "invalid listen address {text:?}: write ip:port, like {DEFAULT_LISTEN}"
            ),
        },
    };
    anyhow::ensure!(
        addr.ip().is_loopback(),
        "the demo listens on loopback only: {text} is not a loopback address (use 127.0.0.1:PORT)"
    );
    if addr.port() != 0 {
        return Ok(addr);
    }
    let probe = std::net::TcpListener::bind(addr)
        .with_context(|| format!("find a free port on {}", addr.ip()))?;
    Ok(probe.local_addr()?)
}

/// The shipped rule files with every `for:` shortened (see [`Timings::rule_for`]),
/// written under `dir/rules/`.
fn write_rules(dir: &Path, timings: &Timings) -> anyhow::Result<()> {
    for (name, text) in config::EMBEDDED_RULES {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("create {}", parent.display()))?;
        }
        let mut out = format!(
            "# The demo's copy of the shipped {name}: every `for:` is shortened (a tenth of the\n\
             # shipped one, at most 30s, divided by the demo's speed {}) so that alerts fire\n\
             # within the demo's first minutes. The shipped value follows each one.\n",
            timings.speed
        );
        for line in text.lines() {
            let trimmed = line.trim_start();
            let indent = &line[..line.len() - trimmed.len()];
            match trimmed
                .strip_prefix("for:")
                .map(str::trim)
                .and_then(|v| PromDuration::parse(v).ok().map(|d| (v, d)))
            {
                Some((shipped, d)) => {
                    let _ = writeln!(
                        out,
                        "{indent}for: {}  # shipped: {shipped}",
                        dur(timings.rule_for(d.0))
                    );
                }
                None => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        std::fs::write(&path, out).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

/// Addresses the generated config points at.
struct Targets<'a> {
    sim: &'a harena::Simulation,
    smtp: SocketAddr,
    mailbox: SocketAddr,
    exporter: SocketAddr,
}

/// The generated config: the simulated checks, the shipped rules (shortened), and
/// alerting to the mail sink.
fn config_yaml(t: &Targets<'_>, timings: &Timings) -> String {
    let every = dur(timings.check_interval());
    let timeout = dur(timings.check_timeout());
    let common = format!("    interval: {every}\n    timeout: {timeout}\n");
    let mut y = format!(
        "# harena-exporter demo: the config the demo generated for its simulated Harena.\n\
         # Every address is on 127.0.0.1; this folder is removed when the demo stops.\n\
         global:\n  evaluation_interval: {every}\n  external_url: {}\n\n\
         rule_files:\n  - \"rules/*.yml\"\n\nchecks:\n",
        q(&format!("http://{}", t.exporter))
    );
    for s in &t.sim.services {
        let _ = write!(
            y,
            "  - name: {}\n    kind: http\n    url: {}\n{common}    labels: {{group: {}}}\n",
            s.name,
            q(&s.url()),
            s.group
        );
        if !s.depends_on.is_empty() {
            let _ = writeln!(y, "    depends_on: [{}]", s.depends_on.join(", "));
        }
    }
    let _ = write!(
        y,
        "  - name: elasticsearch\n    kind: elasticsearch\n    url: {es}\n{common}    labels: {{group: datastores}}\n\
         # The fake cloudflared's metrics server, and its log as the fallback.\n\
         \x20 - name: tunnel\n    kind: tunnel\n    metrics_address: {cf}\n    log_file: {log}\n{common}    labels: {{group: tunnel}}\n\
         # On the host: https://{{tunnel.hostname}}/health. Here the fake Cloudflare edge\n\
         # takes the hostname in the path: only the tunnel's current one gets through.\n\
         \x20 - name: public_site\n    kind: http\n    url: {edge}\n    depends_on: [tunnel, nginx]\n{common}    labels: {{group: tunnel}}\n\
         \x20 - name: pg_dump_backups\n    kind: backup_files\n    directory: {backups}\n    pattern: \"backup_%Y%m%d.sql\"\n    max_age: 26h\n    require_pg_dump_trailer: true\n{common}    labels: {{group: backups}}\n\n",
        es = q(&format!("http://{}", t.sim.elasticsearch)),
        cf = q(&t.sim.cloudflared.to_string()),
        log = q(&t.sim.tunnel_log.display().to_string()),
        edge = q(&format!("http://{}/{{tunnel.hostname}}/health", t.sim.edge)),
        backups = q(&t.sim.backups.display().to_string()),
    );
    let s = |secs: f64| dur(timings.scaled(secs));
    let _ = write!(
        y,
        "alerting:\n  global:\n    smtp_smarthost: {smtp}\n    smtp_from: \"Harena demo monitor <harena-exporter@harena.example>\"\n    smtp_require_tls: false\n\n\
         \x20 # As the shipped config: critical alerts at once, one email per alert and check;\n\
         \x20 # warnings together in a digest. The waits are shorter for the demo.\n\
         \x20 route:\n    receiver: team-digest\n    group_by: [alertname]\n    group_wait: {dw}\n    group_interval: {di}\n    repeat_interval: {dr}\n    routes:\n\
         \x20     - matchers: ['alertname=\"Watchdog\"']\n        receiver: blackhole\n\
         \x20     - matchers: ['severity=\"critical\"']\n        receiver: team-critical\n        group_by: [alertname, check]\n        group_wait: 0s\n        group_interval: {ci}\n        repeat_interval: {cr}\n\n\
         \x20 receivers:\n\
         \x20   - name: team-critical\n      email_configs:\n        - to: team@harena.example\n          tls: none\n          send_resolved: true\n\
         \x20   - name: team-digest\n      email_configs:\n        - to: team@harena.example\n          tls: none\n          send_resolved: true\n\
         \x20   - name: blackhole\n\n\
         \x20 inhibit_rules:\n\
         \x20   - source_matchers: ['alertname=\"TunnelDown\"']\n      target_matchers: ['alertname=\"PublicSiteDown\"']\n\
         \x20   - source_matchers: ['alertname=\"ServiceDown\"', 'check=\"nginx\"']\n      target_matchers: ['alertname=\"PublicSiteDown\"']\n\
         \x20   - source_matchers: ['alertname=\"ElasticsearchDown\"']\n      target_matchers: ['alertname=\"ServiceDown\"', 'check=\"enrichment_service\"']\n\
         \x20   - source_matchers: ['severity=\"critical\"']\n      target_matchers: ['severity=\"warning\"']\n      equal: [alertname, check]\n\n\
         \x20 daily_report:\n    receiver: team-digest\n    at: \"08:00\"\n\n\
         \x20 # The dead man's switch: the mailbox page counts its calls.\n\
         \x20 heartbeats:\n    - name: deadmans-switch\n      url: {hb}\n      interval: {hi}\n      timeout: {ht}\n",
        smtp = q(&t.smtp.to_string()),
        dw = s(20.0),
        di = s(120.0),
        dr = s(3600.0),
        ci = s(30.0),
        cr = s(600.0),
        hb = q(&format!("http://{}/ping/5f0c6a8e-demo", t.mailbox)),
        hi = s(15.0),
        ht = s(4.0),
    );
    y
}

/// A running demo: the simulated Harena, the mail sink and the exporter.
pub struct Demo {
    /// The exporter.
    pub exporter: app::Running,
    /// The exporter's base URL (`http://127.0.0.1:9811`).
    pub exporter_url: String,
    /// The emails received and the heartbeat's calls.
    pub mailbox: smtp::Mailbox,
    /// The mailbox page's address.
    pub mailbox_addr: SocketAddr,
    /// The SMTP sink's address.
    pub smtp_addr: SocketAddr,
    /// The demo's temporary folder (config, rules, backups, cloudflared's log).
    pub dir: PathBuf,
    /// The generated config file.
    pub config_file: PathBuf,
    /// The names of the demo's checks, in config order.
    pub checks: Vec<String>,
    /// The timings in use.
    pub timings: Timings,
    sim: harena::Simulation,
    cancel: DropGuard,
    _dir: TempDir,
}

impl Demo {
    /// The mailbox page's URL.
    pub fn mailbox_url(&self) -> String {
        format!("http://{}/", self.mailbox_addr)
    }

    /// The emails received so far, oldest first.
    pub fn emails(&self) -> Vec<smtp::ReceivedEmail> {
        self.mailbox.messages()
    }

    /// The simulated quick tunnel's current hostname.
    pub fn tunnel_hostname(&self) -> String {
        self.sim.tunnel.current_hostname()
    }

    /// What the demo prints when it has started.
    pub fn banner(&self) -> String {
        let t = &self.timings;
        let url = &self.exporter_url;
        let mut b = format!(
            "\nharena-exporter demo: a simulated Harena on 127.0.0.1, watched by the exporter.\n\n\
             \x20 Status page  {url}/\n\
             \x20 Mailbox      {mailbox}   (the emails the exporter sends)\n\
             \x20 Metrics      {url}/metrics\n\
             \x20 API          {url}/api/v1/checks   {url}/api/v1/alerts\n\
             \x20 Config       {config}\n\n\
             What to watch:\n\
             \x20 - {flap} goes down every {period} (for {down}, the first time {first} from now):\n\
             \x20   ServiceDown fires, an email goes out at once, then a \"resolved\" one.\n\
             \x20 - the tunnel URL changes every {tunnel} (first in {tfirst}): TunnelHostnameChanged\n\
             \x20   emails the new URL, and public_site is \"blocked by tunnel\" while cloudflared restarts.\n\
             \x20 - the backup is {age} days old: BackupStale (a warning) arrives in the digest email.\n\
             \x20 - Elasticsearch is yellow: ElasticsearchYellow joins the digest.\n\
             \x20 - the daily report arrives in the mailbox after about {report}; the mailbox also\n\
             \x20   counts the heartbeat (the dead man's switch) calls.\n\n\
             Alert `for:` durations are shortened for the demo (a tenth, at most 30 s",
            mailbox = self.mailbox_url(),
            config = self.config_file.display(),
            flap = harena::FLAPPING,
            period = human(t.flap_period()),
            down = human(t.flap_down()),
            first = human(t.flap_first_down()),
            tunnel = human(t.tunnel_every()),
            tfirst = human(t.tunnel_first_change()),
            age = harena::BACKUP_AGE_DAYS,
            report = human(t.report_after()),
        );
        if (t.speed - 1.0).abs() > f64::EPSILON {
            let _ = write!(b, "; and everything runs {}x faster", t.speed);
        }
        let _ = write!(
            b,
            ").\n\
             Try: harena-exporter silence add alertname=ServiceDown --web.url {url}\n\
             Ctrl-C stops everything and removes {dir}\n",
            dir = self.dir.display()
        );
        b
    }

    /// Stops the exporter, then the simulation, and removes the temporary folder.
    pub async fn stop(self) {
        let Demo {
            exporter,
            sim,
            cancel,
            _dir,
            ..
        } = self;
        exporter.stop().await;
        cancel.disarm().cancel();
        sim.join().await;
        drop(_dir);
    }

    /// Waits until the exporter stops (SIGINT or SIGTERM, which it handles), then stops
    /// the simulation and removes the temporary folder.
    pub async fn wait(self) {
        let Demo {
            exporter,
            sim,
            cancel,
            _dir,
            ..
        } = self;
        exporter.wait().await;
        cancel.disarm().cancel();
        sim.join().await;
        drop(_dir);
    }
}

/// Starts the simulated Harena, the mail sink and the exporter watching them.
///
/// # Errors
/// A speed out of range, a listen address that is not loopback or cannot be bound, or
/// a generated config that does not validate (a bug: its errors are listed).
pub async fn start(opts: DemoOptions) -> anyhow::Result<Demo> {
    let timings = Timings::new(opts.speed).map_err(anyhow::Error::msg)?;
    let listen = resolve_listen(&opts.listen)?;
    let dir = TempDir::create().context("create the demo's temporary folder")?;
    let token = CancellationToken::new();
    let cancel = token.clone().drop_guard();

    let mut sim = harena::start(&dir.0, &timings, &token)
        .await
        .context("start the simulated Harena")?;
    let mailbox = smtp::Mailbox::default();
    let smtp_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("bind the demo's SMTP server")?;
    let smtp_addr = smtp_listener.local_addr()?;
    sim.push_task(tokio::spawn(smtp::serve(
        smtp_listener,
        mailbox.clone(),
        token.clone(),
    )));
    let exporter_url = format!("http://{listen}");
    let (mailbox_addr, task) = harena::serve(
        mailbox::router(mailbox::PageState {
            mailbox: mailbox.clone(),
            exporter_url: format!("{exporter_url}/"),
        }),
        &token,
    )
    .await
    .context("start the mailbox page")?;
    sim.push_task(task);

    write_rules(&dir.0, &timings)?;
    let yaml = config_yaml(
        &Targets {
            sim: &sim,
            smtp: smtp_addr,
            mailbox: mailbox_addr,
            exporter: listen,
        },
        &timings,
    );
    let config_file = dir.0.join(CONFIG_FILE);
    std::fs::write(&config_file, &yaml)
        .with_context(|| format!("write {}", config_file.display()))?;
    let source = ConfigSource::File(config_file.clone());
    let cfg = config::parse(source.clone(), &yaml)
        .map_err(|e| anyhow::anyhow!("the demo's generated config is invalid:\n{e}"))?;
    let checks: Vec<String> = cfg.checks.iter().map(|c| c.config.name.clone()).collect();

    let storage = opts.storage.unwrap_or_else(|| dir.0.join("state"));
    let exporter = app::start(app::Options {
        config: source,
        listen: listen.to_string(),
        storage: Some(storage),
        web_config: None,
    })
    .await?;

    // The daily report once, early, so that the mailbox shows one.
    let notify = Arc::clone(&exporter.web.notify);
    let after = timings.report_after();
    let report_token = token.clone();
    sim.push_task(tokio::spawn(async move {
        tokio::select! {
            () = report_token.cancelled() => return,
            () = tokio::time::sleep(after) => {}
        }
        match tokio::task::spawn_blocking(move || notify.queue_report_now()).await {
            Ok(Ok(n)) => tracing::info!(queued = n, "demo: daily report queued"),
            Ok(Err(e)) => tracing::warn!(error = %e, "demo: queue the daily report"),
            Err(e) => tracing::warn!(error = %e, "demo: queue the daily report"),
        }
    }));

    Ok(Demo {
        exporter,
        exporter_url,
        mailbox,
        mailbox_addr,
        smtp_addr,
        dir: dir.0.clone(),
        config_file,
        checks,
        timings,
        sim,
        cancel,
        _dir: dir,
    })
}

/// `harena-exporter demo`: starts the demo, prints the banner, and runs until Ctrl-C
/// (or SIGTERM); then stops everything and removes the temporary folder.
///
/// # Errors
/// As [`start`].
pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let demo = start(opts).await?;
    println!("{}", demo.banner());
    let dir = demo.dir.clone();
    demo.wait().await;
    eprintln!("harena-exporter demo: stopped; removed {}", dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_scale() {
        let t = Timings::new(1.0).expect("speed 1");
        assert_eq!(t.check_interval(), Duration::from_secs(5));
        assert_eq!(
            t.rule_for(Duration::from_secs(120)),
            Duration::from_secs(12)
        );
        assert_eq!(
            t.rule_for(Duration::from_secs(3600)),
            Duration::from_secs(30)
        );
        assert_eq!(t.rule_for(Duration::ZERO), Duration::ZERO);
        let fast = Timings::new(4.0).expect("speed 4");
        assert_eq!(fast.check_interval(), Duration::from_millis(1250));
        assert_eq!(dur(fast.check_interval()), "1250ms");
        assert!(Timings::new(0.0).is_err() && Timings::new(f64::NAN).is_err());
        assert_eq!(human(Duration::from_secs(120)), "2 min");
        assert_eq!(human(Duration::from_secs(40)), "40 s");
        assert_eq!(human(Duration::from_millis(1500)), "1.5 s");
    }

    #[test]
    fn listen_is_loopback_only() {
        assert!(resolve_listen("0.0.0.0:9811").is_err());
        assert!(resolve_listen("192.168.1.2:9811").is_err());
        assert_eq!(
            resolve_listen("localhost:9811").expect("localhost").port(),
            9811
        );
        let picked = resolve_listen("127.0.0.1:0").expect("free port");
        assert!(picked.ip().is_loopback() && picked.port() != 0);
    }

    #[test]
    fn shortened_rules_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = Timings::new(1.0).expect("speed");
        write_rules(dir.path(), &t).expect("write");
        let text = std::fs::read_to_string(dir.path().join("rules/backups.yml")).expect("read");
        assert!(text.contains("for: 30s  # shipped: 15m"), "{text}");
        let paths: Vec<PathBuf> = config::EMBEDDED_RULES
            .iter()
            .map(|(n, _)| dir.path().join(n))
            .collect();
        crate::rules::Groups::load(&paths).expect("the shortened rules load");
    }
}
