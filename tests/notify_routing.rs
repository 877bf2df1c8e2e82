//! Routing parity with the real Alertmanager 0.25 (Debian `prometheus-alertmanager`:
//! `amtool`, `prometheus-alertmanager`).
//!
//! - For a route tree shaped like the one Harena ships (continue, nested routes, regex
//!   matchers, legacy `match`/`match_re`, `group_by: ['...']`) and a table of label sets,
//!   our router picks the receivers `amtool config routes test` prints, and
//!   `format_routes_test` prints exactly what amtool prints. The same YAML file is read by
//!   both: `alerting:` has Alertmanager's shapes.
//! - A real Alertmanager with webhook receivers sends one notification per aggregation
//!   group: its `groupKey`, `receiver` and `groupLabels` equal ours.
//! - Every validation of `notify::config::parse` is reported at its position, and the
//!   configs that Alertmanager also reads are refused by `amtool check-config` too.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use harena_exporter::config::yaml;
use harena_exporter::notify::LabelSet;
use harena_exporter::notify::config::{self, AlertingConfig};
use harena_exporter::notify::route;

/// The route tree, shaped like Harena's: everything is forwarded to a central
/// Alertmanager; critical alerts go out at once (data stores also to the DBAs), warnings
/// in digests.
const ROUTE: &str = r#"
route:
  receiver: team-digest
  group_by: [alertname, check]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
  routes:
    - receiver: alertmanager-forward
      group_by: ['...']
      group_wait: 0s
      continue: true
    - matchers: ['alertname="Watchdog"']
      receiver: blackhole
    - matchers: ['severity="critical"']
      receiver: team-critical
      group_wait: 0s
      repeat_interval: 1h
      continue: true
      routes:
        - matchers: ['check=~"postgres|redis|elasticsearch"']
          receiver: dba-critical
          continue: true
        - match: {component: tunnel}
          group_by: [alertname]
        - match_re: {check: 'aws_.*'}
          receiver: cloud-critical
          active_time_intervals: [office-hours]
    - match_re: {severity: 'warning|info'}
      group_wait: 5m
      routes:
        - matchers: ['check=~"aws_.*"', 'env!="dev"']
          receiver: cloud-digest
        - matchers: ['check="backup_files"']
          receiver: dba-digest
          continue: true
        - matchers: ['alertname=~"Backup.*"']
          receiver: team-digest
          mute_time_intervals: [maintenance]
        - matchers: ['team="dba", severity!="info"']
          receiver: dba-digest
    - matchers: [team = dba]
      receiver: dba-digest
"#;

const TIME_INTERVALS: &str = r#"
time_intervals:
  - name: office-hours
    time_intervals:
      - weekdays: ['monday:friday']
        times: [{start_time: '08:00', end_time: '19:00'}]
        location: Europe/Paris
  - name: maintenance
    time_intervals:
      - weekdays: [sunday]
        times: [{start_time: '02:00', end_time: '04:00'}]
        days_of_month: ['-7:-1']
"#;

const INHIBIT_RULES: &str = r#"
inhibit_rules:
  - source_matchers: ['alertname="TunnelDown"']
    target_matchers: ['alertname="PublicSiteDown"']
  - source_match: {check: postgres, severity: critical}
    target_match_re: {check: 'user_service|billing'}
    equal: [env]
"#;

const RECEIVERS: [&str; 7] = [
    "team-digest",
    "alertmanager-forward",
    "blackhole",
    "team-critical",
    "dba-critical",
    "cloud-critical",
    "cloud-digest",
];

fn receiver_names() -> Vec<&'static str> {
    let mut all = RECEIVERS.to_vec();
    all.push("dba-digest");
    all
}

/// `routes test` arguments and the receivers amtool 0.25 prints for them (checked below
/// against amtool itself, so a mistake here shows up as a disagreement with amtool).
const CASES: &[(&[&str], &str)] = &[
    (&["alertname=Watchdog"], "alertmanager-forward,blackhole"),
    (
        &["severity=critical", "check=postgres"],
        "alertmanager-forward,dba-critical",
    ),
    (
        &["severity=critical", "check=user_service"],
        "alertmanager-forward,team-critical",
    ),
    (
        &["severity=critical", "component=tunnel"],
        "alertmanager-forward,team-critical",
    ),
    (
        &["severity=critical", "check=aws_instance"],
        "alertmanager-forward,cloud-critical",
    ),
    (
        &["severity=critical", "check=redis", "component=tunnel"],
        "alertmanager-forward,dba-critical,team-critical",
    ),
    (
        &["severity=critical", "team=dba"],
        "alertmanager-forward,team-critical,dba-digest",
    ),
    (
        &["severity=warning", "check=aws_snapshots", "env=prod"],
        "alertmanager-forward,cloud-digest",
    ),
    (
        &["severity=warning", "check=aws_snapshots", "env=dev"],
        "alertmanager-forward,team-digest",
    ),
    (
        &[
            "severity=warning",
            "check=backup_files",
            "alertname=BackupTooOld",
        ],
        "alertmanager-forward,dba-digest,team-digest",
    ),
    (
        &["severity=info", "alertname=BackupMissing"],
        "alertmanager-forward,team-digest",
    ),
    (
        &["severity=warning", "team=dba"],
        "alertmanager-forward,dba-digest",
    ),
    (
        &["severity=info", "team=dba"],
        "alertmanager-forward,team-digest",
    ),
    (&["team=dba"], "alertmanager-forward,dba-digest"),
    (&[], "alertmanager-forward"),
    (&["severity=Critical"], "alertmanager-forward"),
    (&["severity=warninginfo"], "alertmanager-forward"),
    (
        &["alertname=Watchdog", "severity=critical"],
        "alertmanager-forward,blackhole",
    ),
    (
        &["severity=critical", "check=elasticsearch"],
        "alertmanager-forward,dba-critical",
    ),
    (
        &["severity=critical", "check=postgresql"],
        "alertmanager-forward,team-critical",
    ),
    (
        &[
            "severity=critical",
            "check=aws_instance",
            "component=tunnel",
        ],
        "alertmanager-forward,team-critical",
    ),
    (
        &["severity=info", "check=backup_files"],
        "alertmanager-forward,dba-digest",
    ),
    (
        &["instance=\"db 1\"", "severity=critical", "check=redis"],
        "alertmanager-forward,dba-critical",
    ),
    // The same receiver twice: amtool lists it twice.
    (
        &["severity=warning", "team=dba", "check=backup_files"],
        "alertmanager-forward,dba-digest,dba-digest",
    ),
    (
        &["severity=critical", "check=postgres", "team=dba"],
        "alertmanager-forward,dba-critical,dba-digest",
    ),
    (&["env=dev"], "alertmanager-forward"),
    (
        &["severity=critical", "alertname=Watchdog", "check=postgres"],
        "alertmanager-forward,blackhole",
    ),
    // A later label of the same name wins.
    (
        &["severity=critical", "severity=warning", "team=dba"],
        "alertmanager-forward,dba-digest",
    ),
];

fn names_only_receivers() -> String {
    let mut s = String::from("receivers:\n");
    for r in receiver_names() {
        s.push_str(&format!("  - name: {r}\n"));
    }
    s
}

/// Parses an Alertmanager-shaped file as our `alerting:` section.
fn ours(file: &str, text: &str) -> Result<AlertingConfig, Vec<String>> {
    let node = yaml::parse(file, text).map_err(|d| vec![d.to_string()])?;
    let mut cx = yaml::Context::new(file);
    config::parse(&mut cx, &node, "alerting").ok_or_else(|| {
        let mut d = cx.diagnostics.clone();
        d.sort_by_key(|d| (d.line, d.column));
        d.iter().map(ToString::to_string).collect()
    })
}

fn amtool(args: &[&str]) -> std::process::Output {
    common::require("amtool", "prometheus-alertmanager");
    Command::new("amtool")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run amtool")
}

#[test]
fn routes_test_matches_amtool() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!(
        "{ROUTE}{}{TIME_INTERVALS}{INHIBIT_RULES}",
        names_only_receivers()
    );
    let path = dir.path().join("alertmanager.yml");
    std::fs::write(&path, &text).expect("write alertmanager.yml");
    let file = path.to_str().expect("utf-8 path");

    let check = amtool(&["check-config", file]);
    assert!(
        check.status.success(),
        "amtool check-config refuses the tree:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let alerting = ours(file, &text).unwrap_or_else(|e| panic!("we refuse the tree:\n{e:#?}"));
    let route = &alerting.route;

    assert!(CASES.len() >= 25);
    let mut problems = Vec::new();
    for (args, expected) in CASES {
        let mut cmd = vec!["config", "routes", "test", "--config.file", file];
        cmd.extend(args.iter().copied());
        let out = amtool(&cmd);
        let theirs = String::from_utf8_lossy(&out.stdout).to_string();
        let labels: LabelSet = route::parse_label_args(args).expect("labels parse");
        // amtool prints the line and a newline, as `harena-exporter routes test` does.
        let mine = format!("{}\n", route.format_routes_test(&labels));
        let list = route.routes_test(&labels);
        if !out.status.success()
            || theirs != mine
            || list.join(",") != *expected
            || mine != format!("{expected}\n")
        {
            problems.push(format!(
                "{args:?}: amtool {:?} (exit {:?}), ours {mine:?}, table {expected:?}",
                theirs,
                out.status.code()
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "disagreements:\n{}",
        problems.join("\n")
    );
}

#[test]
fn label_arguments_like_amtool() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!("{ROUTE}{}{TIME_INTERVALS}", names_only_receivers());
    let path = dir.path().join("alertmanager.yml");
    std::fs::write(&path, &text).expect("write alertmanager.yml");
    let file = path.to_str().expect("utf-8 path");
    // amtool refuses anything but `name=value`, and so do we.
    for bad in ["severity=~crit", "severity!=x", "sev erity=x"] {
        let out = amtool(&["config", "routes", "test", "--config.file", file, bad]);
        assert!(!out.status.success(), "amtool accepts {bad}");
        assert!(route::parse_label_args(&[bad]).is_err(), "we accept {bad}");
    }
}

// ---------------------------------------------------------------------------------------------
// Group keys against a real Alertmanager
// ---------------------------------------------------------------------------------------------

/// A webhook sink on 127.0.0.1: every POST body, with its path, goes to the channel.
fn webhook_sink() -> (u16, mpsc::Receiver<(String, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind webhook sink");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let tx = tx.clone();
            std::thread::spawn(move || serve_webhook(conn, tx));
        }
    });
    (port, rx)
}

fn serve_webhook(conn: TcpStream, tx: mpsc::Sender<(String, String)>) {
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let _ = tx.send((path, String::from_utf8_lossy(&body).to_string()));
        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        if writer.write_all(ok.as_bytes()).is_err() {
            return;
        }
    }
}

/// A running Alertmanager, killed on drop.
struct Alertmanager {
    child: Child,
    port: u16,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Alertmanager {
    fn start(config: &str) -> Alertmanager {
        common::require("prometheus-alertmanager", "prometheus-alertmanager");
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = dir.path().join("alertmanager.yml");
        std::fs::write(&cfg, config).expect("write config");
        let storage = dir.path().join("data");
        let log = std::fs::File::create(dir.path().join("log")).expect("log file");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let port = common::closed_port();
            let child = Command::new("prometheus-alertmanager")
                .arg(format!("--config.file={}", cfg.display()))
                .arg(format!("--storage.path={}", storage.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--cluster.listen-address=")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log.try_clone().expect("log"))
                .spawn()
                .expect("start prometheus-alertmanager");
            let mut am = Alertmanager {
                child,
                port,
                _dir: None,
            };
            // Ready, or exited (the port was taken meanwhile: try another).
            loop {
                if http(port, "GET", "/-/ready", "").is_some_and(|(s, _)| s == 200) {
                    am._dir = Some(dir);
                    return am;
                }
                if am.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "Alertmanager not ready in 60 s: {}",
                    read_log(&dir.path().join("log"))
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            assert!(
                Instant::now() < deadline,
                "Alertmanager does not start: {}",
                read_log(&dir.path().join("log"))
            );
        }
    }
}

fn read_log(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// One HTTP/1.1 request on 127.0.0.1; (status, body).
fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

#[test]
fn group_keys_match_a_real_alertmanager() {
    let (sink, webhooks) = webhook_sink();
    // The same tree, waiting 0 s before the first notification of every group; muting
    // time intervals left out (the test must not depend on the time of day).
    let tree = ROUTE
        .replace("group_wait: 30s", "group_wait: 0s")
        .replace("group_wait: 5m", "group_wait: 0s")
        .replace("          active_time_intervals: [office-hours]\n", "")
        .replace("          mute_time_intervals: [maintenance]\n", "");
    let mut receivers = String::from("receivers:\n");
    for r in receiver_names() {
        receivers.push_str(&format!(
            "  - name: {r}\n    webhook_configs: [{{url: 'http://127.0.0.1:{sink}/{r}'}}]\n"
        ));
    }
    // Our side reads the same tree; its receivers need no integrations here.
    let ours = ours("am.yml", &format!("{tree}{}", names_only_receivers()))
        .unwrap_or_else(|e| panic!("we refuse the tree:\n{e:#?}"));
    let am = Alertmanager::start(&format!("{tree}{receivers}"));

    let alerts: Vec<LabelSet> = [
        vec![
            ("alertname", "PostgresDown"),
            ("severity", "critical"),
            ("check", "postgres"),
        ],
        vec![
            ("alertname", "TunnelDown"),
            ("severity", "critical"),
            ("component", "tunnel"),
            ("check", "tunnel"),
        ],
        vec![
            ("alertname", "RedisDown"),
            ("severity", "critical"),
            ("check", "redis"),
            ("component", "tunnel"),
        ],
        vec![("alertname", "Watchdog")],
        vec![
            ("alertname", "BackupTooOld"),
            ("severity", "warning"),
            ("check", "backup_files"),
        ],
        vec![
            ("alertname", "SnapshotsOld"),
            ("severity", "warning"),
            ("check", "aws_snapshots"),
            ("env", "prod"),
        ],
        vec![
            ("alertname", "DiskFull"),
            ("severity", "info"),
            ("team", "dba"),
        ],
        vec![
            ("alertname", "Quoted"),
            ("severity", "critical"),
            ("team", "dba"),
            ("detail", "a \"q\" é\\ b\tc"),
        ],
        vec![("alertname", "Plain"), ("a0", "x"), ("a", "y")],
    ]
    .into_iter()
    .map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    })
    .collect();

    let body = serde_json::to_string(
        &alerts
            .iter()
            .map(|l| serde_json::json!({"labels": l}))
            .collect::<Vec<_>>(),
    )
    .expect("json");
    let posted = http(am.port, "POST", "/api/v2/alerts", &body);
    assert_eq!(
        posted.as_ref().map(|p| p.0),
        Some(200),
        "post alerts: {posted:?}"
    );

    // (receiver, group key, group labels) of every notification we expect.
    let mut expected: BTreeSet<(String, String, LabelSet)> = BTreeSet::new();
    for labels in &alerts {
        for node in ours.route.match_routes(labels) {
            expected.insert((
                node.receiver.clone(),
                node.group_key(labels),
                node.group_labels(labels),
            ));
        }
    }
    let mut got: BTreeSet<(String, String, LabelSet)> = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !expected.is_subset(&got) && Instant::now() < deadline {
        let Ok((path, body)) = webhooks.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&body).expect("webhook JSON");
        let receiver = v["receiver"].as_str().unwrap_or("").to_string();
        assert_eq!(path, format!("/{receiver}"));
        let group_labels: LabelSet = v["groupLabels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let key = v["groupKey"].as_str().unwrap_or("").to_string();
        got.insert((receiver, key, group_labels));
    }
    let missing: Vec<_> = expected.difference(&got).collect();
    let unexpected: Vec<_> = got.difference(&expected).collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "missing (ours, not Alertmanager's):\n{missing:#?}\nunexpected (Alertmanager's, not ours):\n{unexpected:#?}"
    );
    let count: BTreeMap<&str, usize> = expected.iter().fold(BTreeMap::new(), |mut m, (r, _, _)| {
        *m.entry(r.as_str()).or_default() += 1;
        m
    });
    assert!(
        count.len() >= 6,
        "the alerts reach too few receivers: {count:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Config errors
// ---------------------------------------------------------------------------------------------

/// A config that is wrong in one way; our diagnostics (prefixes, in file order); the
/// message `amtool check-config` gives (None: our own keys, which Alertmanager lacks, or
/// a check Alertmanager does not make).
struct Bad {
    text: &'static str,
    ours: &'static [&'static str],
    amtool: Option<&'static str>,
}

const BAD: &[Bad] = &[
    Bad {
        text: "route: {receiver: nope}\nreceivers: [{name: r0}]\n",
        ours: &[r#"f.yml:1:19: alerting.route.receiver: undefined receiver "nope" used in route"#],
        amtool: Some(r#"undefined receiver "nope" used in route"#),
    },
    Bad {
        text: "route:\n  receiver: r0\n  routes:\n    - receiver: r1\n    - receiver: rO\nreceivers: [{name: r0}]\n",
        ours: &[
            r#"f.yml:4:17: alerting.route.routes[0].receiver: undefined receiver "r1" used in route, did you mean "r0"?"#,
            r#"f.yml:5:17: alerting.route.routes[1].receiver: undefined receiver "rO" used in route, did you mean "r0"?"#,
        ],
        amtool: Some(r#"undefined receiver "r1" used in route"#),
    },
    Bad {
        text: "route: {receiver: r0}\nreceivers:\n  - name: r0\n  - name: r0\n",
        ours: &[
            r#"f.yml:4:11: alerting.receivers[1].name: receiver name "r0" is not unique (first defined at line 3)"#,
        ],
        amtool: Some(r#"notification config name "r0" is not unique"#),
    },
    Bad {
        text: "route: {receiver: r0}\nreceivers: [{name: r0}]\ntime_intervals:\n  - name: a\n  - name: a\n",
        ours: &[
            r#"f.yml:5:11: alerting.time_intervals[1].name: time interval "a" is not unique (first defined at line 4)"#,
        ],
        amtool: Some(r#"time interval "a" is not unique"#),
    },
    Bad {
        text: "route:\n  receiver: r0\n  routes:\n    - mute_time_intervals: [nigt]\n      active_time_intervals: [x]\nreceivers: [{name: r0}]\ntime_intervals: [{name: night}]\n",
        ours: &[
            r#"f.yml:4:29: alerting.route.routes[0].mute_time_intervals[0]: undefined time interval "nigt" used in route, did you mean "night"?"#,
            r#"f.yml:5:31: alerting.route.routes[0].active_time_intervals[0]: undefined time interval "x" used in route"#,
        ],
        amtool: Some("undefined time interval"),
    },
    Bad {
        text: "route:\n  receiver: r0\n  routes: [{matchers: ['severity=~(crit']}]\nreceivers: [{name: r0}]\n",
        ours: &[
            r#"f.yml:3:24: alerting.route.routes[0].matchers[0]: "severity=~(crit": invalid regular expression"#,
        ],
        amtool: Some("error parsing regexp"),
    },
    Bad {
        text: "route:\n  receiver: r0\n  routes: [{matchers: ['sev-erity=crit']}]\nreceivers: [{name: r0}]\n",
        ours: &[
            r#"f.yml:3:24: alerting.route.routes[0].matchers[0]: "sev-erity=crit": expected one of = != =~ !~ after "sev""#,
        ],
        amtool: Some("bad matcher format"),
    },
    Bad {
        text: "route:\n  receiver: r0\n  routes: [{match_re: {check: 'aws_(.*'}}]\nreceivers: [{name: r0}]\n",
        ours: &[
            r#"f.yml:3:31: alerting.route.routes[0].match_re.check: invalid regular expression "aws_(.*""#,
        ],
        amtool: Some("error parsing regexp"),
    },
    Bad {
        text: "route:\n  receiver: r0\n  routes: [{match: {sev-erity: x}}]\nreceivers: [{name: r0}]\n",
        ours: &[
            r#"f.yml:3:21: alerting.route.routes[0].match.sev-erity: invalid label name "sev-erity""#,
        ],
        amtool: Some(r#"invalid label name "sev-erity""#),
    },
    Bad {
        text: "route:\n  group_by: [alertname]\nreceivers: [{name: r0}]\n",
        ours: &["f.yml:2:3: alerting.route: root route must specify a default receiver"],
        amtool: Some("root route must specify a default receiver"),
    },
    Bad {
        text: "route:\n  receiver: r0\n  matchers: [severity=critical]\nreceivers: [{name: r0}]\n",
        ours: &["f.yml:3:13: alerting.route.matchers: root route must not have any matchers"],
        amtool: Some("root route must not have any matchers"),
    },
    Bad {
        text: "route:\n  receiver: r0\n  match: {severity: critical}\nreceivers: [{name: r0}]\n",
        ours: &["f.yml:3:10: alerting.route.match: root route must not have any matchers"],
        amtool: Some("root route must not have any matchers"),
    },
    Bad {
        text: "route:\n  receiver: r0\n  routes: [{group_by: ['...', check]}]\nreceivers: [{name: r0}]\n",
        ours: &[
            "f.yml:3:23: alerting.route.routes[0].group_by: cannot have wildcard group_by (`...`) and other labels at the same time",
        ],
        amtool: Some("cannot have wildcard group_by"),
    },
    Bad {
        text: "route:\n  receiver: r0\n  group_interval: 0s\nreceivers: [{name: r0}]\n",
        ours: &["f.yml:3:19: alerting.route.group_interval: group_interval cannot be zero"],
        amtool: Some("group_interval cannot be zero"),
    },
    Bad {
        text: "route:\n  receiver: r0\n  routes: [{repeat_interval: 0s}]\nreceivers: [{name: r0}]\n",
        ours: &[
            "f.yml:3:30: alerting.route.routes[0].repeat_interval: repeat_interval cannot be zero",
        ],
        amtool: Some("repeat_interval cannot be zero"),
    },
    Bad {
        text: "route:\n  receiver: r0\n  group_by: [alertname, check-name]\nreceivers: [{name: r0}]\n",
        ours: &[
            r#"f.yml:3:25: alerting.route.group_by[1]: invalid label name "check-name" in group_by list"#,
        ],
        amtool: Some(r#"invalid label name "check-name" in group_by list"#),
    },
    Bad {
        text: "route: {receiver: r0}\nreceivers: [{name: r0}]\ninhibit_rules:\n  - equal: [env, host-name]\n",
        ours: &[
            r#"f.yml:4:18: alerting.inhibit_rules[0].equal[1]: invalid label name "host-name" in equal list"#,
        ],
        amtool: Some(r#""host-name" is not a valid label name"#),
    },
    Bad {
        text: "route: {receiver: r0}\nreceivers: [{name: r0}]\ninhibit_rules:\n  - source_match_re: {check: '('}\n    target_matchers: ['a=~)']\n",
        ours: &[
            r#"f.yml:4:30: alerting.inhibit_rules[0].source_match_re.check: invalid regular expression "(""#,
            r#"f.yml:5:23: alerting.inhibit_rules[0].target_matchers[0]: "a=~)": invalid regular expression ")""#,
        ],
        amtool: Some("error parsing regexp"),
    },
    Bad {
        text: "route: {receiver: r0}\nreceivers: [{name: r0}]\ntime_intervals:\n  - name: t\n    time_intervals: [{days_of_month: ['-1:5']}]\n",
        ours: &[
            r#"f.yml:5:39: alerting.time_intervals[0].time_intervals[0].days_of_month[0]: end day must be negative if start day is negative"#,
        ],
        amtool: Some("end day must be negative if start day is negative"),
    },
    Bad {
        text: "route: {receiver: r0}\nreceivers: [{name: r0}]\ndaily_report: {receiver: r1, at: '8h', location: Europe/Pariss}\n",
        ours: &[
            r#"f.yml:3:26: alerting.daily_report.receiver: undefined receiver "r1", did you mean "r0"?"#,
            r#"f.yml:3:34: alerting.daily_report.at: invalid time of day "8h": expected HH:MM from 00:00 to 23:59"#,
            r#"f.yml:3:50: alerting.daily_report.location: unknown time zone Europe/Pariss"#,
        ],
        amtool: None,
    },
];

#[test]
fn config_errors_have_positions_and_match_alertmanager() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut problems = Vec::new();
    for (i, bad) in BAD.iter().enumerate() {
        let got = match ours("f.yml", bad.text) {
            Ok(_) => vec!["<accepted>".to_string()],
            Err(d) => d,
        };
        let same =
            got.len() == bad.ours.len() && got.iter().zip(bad.ours).all(|(g, e)| g.starts_with(e));
        if !same {
            problems.push(format!(
                "#{i} ours:\n  got  {got:#?}\n  want {:#?}",
                bad.ours
            ));
        }
        if let Some(message) = bad.amtool {
            let path = dir.path().join(format!("bad{i}.yml"));
            std::fs::write(&path, bad.text).expect("write");
            let out = amtool(&["check-config", path.to_str().expect("utf-8")]);
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            if out.status.success() || !text.contains(message) {
                problems.push(format!("#{i} amtool: want {message:?}, got {text}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_problem_is_reported_at_once() {
    // All the problems of BAD in one file: each is reported, none hides another.
    let text = "route:\n  group_by: ['...', a]\n  group_interval: 0s\n  matchers: [a=b]\n  routes:\n    - receiver: x\n      matchers: ['a=~(']\n      mute_time_intervals: [y]\nreceivers:\n  - name: r0\n  - name: r0\n";
    let got = ours("f.yml", text).expect_err("invalid");
    let want = [
        "f.yml:2:3: alerting.route: root route must specify a default receiver",
        "f.yml:2:13: alerting.route.group_by: cannot have wildcard",
        "f.yml:3:19: alerting.route.group_interval: group_interval cannot be zero",
        "f.yml:4:13: alerting.route.matchers: root route must not have any matchers",
        r#"f.yml:6:17: alerting.route.routes[0].receiver: undefined receiver "x""#,
        r#"f.yml:7:18: alerting.route.routes[0].matchers[0]: "a=~(": invalid regular expression"#,
        r#"f.yml:8:29: alerting.route.routes[0].mute_time_intervals[0]: undefined time interval "y""#,
        r#"f.yml:11:11: alerting.receivers[1].name: receiver name "r0" is not unique"#,
    ];
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for (g, w) in got.iter().zip(want) {
        assert!(g.starts_with(w), "got {g}\nwant {w}");
    }
}
