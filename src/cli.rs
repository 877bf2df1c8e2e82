//! The one-shot commands: `check`, `check-config`, `default-config`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{self, Config, ConfigSource};
use crate::scheduler::{Env, Outcome, base_labels, run_once};

/// Output format of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// An aligned table for people.
    Table,
    /// A JSON array for scripts.
    Json,
}

/// One row of `check`'s output.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckRow {
    /// Check name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Target.
    pub target: String,
    /// True when the check passed.
    pub ok: bool,
    /// Reason of the failure.
    pub reason: Option<&'static str>,
    /// Seconds the run took.
    pub duration_seconds: f64,
    /// Error detail or success summary.
    pub detail: String,
    /// Failing checks this one depends on.
    pub blocked_by: Vec<String>,
}

/// Dependency levels: level 0 has no dependency, level n depends on levels below n.
fn levels(cfg: &Config) -> Vec<usize> {
    let index: BTreeMap<&str, usize> = cfg
        .checks
        .iter()
        .enumerate()
        .map(|(i, d)| (d.config.name.as_str(), i))
        .collect();
    let mut level = vec![0usize; cfg.checks.len()];
    // Dependencies are acyclic (validated at load): n passes settle every level.
    for _ in 0..cfg.checks.len() {
        let mut changed = false;
        for (i, d) in cfg.checks.iter().enumerate() {
            for dep in &d.config.depends_on {
                if let Some(&j) = index.get(dep.as_str())
                    && level[i] <= level[j]
                {
                    level[i] = level[j] + 1;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    level
}

/// Runs every check once (and again, while some fail, until `wait` is over).
/// Checks run level by level along `depends_on`, so that a check reading another's
/// value (`{tunnel.hostname}`) runs after it.
pub async fn run_checks(cfg: &Config, wait: Duration, env: &Env) -> Vec<CheckRow> {
    let deadline = Instant::now() + wait;
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(
        cfg.global.max_concurrent_checks.max(1),
    ));
    let level = levels(cfg);
    let max_level = level.iter().copied().max().unwrap_or(0);
    let mut results: BTreeMap<usize, Outcome> = BTreeMap::new();
    let mut pending: Vec<usize> = (0..cfg.checks.len()).collect();
    loop {
        for current in 0..=max_level {
            let mut set = tokio::task::JoinSet::new();
            for &i in pending.iter().filter(|&&i| level[i] == current) {
                let def = cfg.checks[i].clone();
                let base = base_labels(&def, &cfg.global.labels);
                let sem = std::sync::Arc::clone(&sem);
                let env = env.clone();
                set.spawn(async move {
                    let _permit = sem.acquire_owned().await;
                    (i, run_once(&def, base, &env).await)
                });
            }
            while let Some(r) = set.join_next().await {
                if let Ok((i, o)) = r {
                    env.vars.merge(&cfg.checks[i].config.name, &o.exports);
                    results.insert(i, o);
                }
            }
        }
        pending.retain(|i| results.get(i).is_none_or(|o| !o.success));
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        let pause = Duration::from_secs(1).min(deadline - Instant::now());
        tokio::time::sleep(pause).await;
    }
    let failing: BTreeMap<&str, bool> = cfg
        .checks
        .iter()
        .enumerate()
        .map(|(i, d)| {
            (
                d.config.name.as_str(),
                results.get(&i).is_some_and(|o| !o.success),
            )
        })
        .collect();
    cfg.checks
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let o = results.get(&i);
            let ok = o.is_some_and(|o| o.success);
            CheckRow {
                name: d.config.name.clone(),
                kind: d.config.spec.kind().to_string(),
                target: d.check.target(),
                ok,
                reason: o.and_then(|o| o.error.as_ref().map(|e| e.reason.as_str())),
                duration_seconds: o.map_or(0.0, |o| o.duration.as_secs_f64()),
                detail: o
                    .and_then(|o| {
                        o.error
                            .as_ref()
                            .map(|e| e.detail.clone())
                            .or_else(|| o.detail.clone())
                    })
                    .unwrap_or_default(),
                blocked_by: if ok {
                    Vec::new()
                } else {
                    d.config
                        .depends_on
                        .iter()
                        .filter(|n| failing.get(n.as_str()).copied().unwrap_or(false))
                        .cloned()
                        .collect()
                },
            }
        })
        .collect()
}

fn human_duration(secs: f64) -> String {
    if secs < 1.0 {
        format!("{:.1}ms", secs * 1000.0)
    } else {
        format!("{secs:.2}s")
    }
}

/// Renders rows as an aligned table (name, kind, state, reason, duration, detail).
pub fn render_table(rows: &[CheckRow]) -> String {
    let header = ["NAME", "KIND", "STATE", "REASON", "DURATION", "DETAIL"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            let mut detail = r.detail.clone();
            if !r.blocked_by.is_empty() {
                detail = format!("blocked by {}: {detail}", r.blocked_by.join(", "));
            }
            [
                r.name.clone(),
                r.kind.clone(),
                if r.ok { "ok".into() } else { "FAIL".into() },
                r.reason.unwrap_or("-").to_string(),
                human_duration(r.duration_seconds),
                detail,
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for c in &cells {
        for (w, s) in widths.iter_mut().zip(c.iter()) {
            *w = (*w).max(s.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cols: [&str; 6]| {
        for (i, c) in cols.iter().enumerate() {
            if i == 5 {
                out.push_str(c);
            } else {
                let _ = write!(out, "{c:<w$}  ", w = widths[i]);
            }
        }
        out.push('\n');
    };
    line(header);
    for c in &cells {
        line([&c[0], &c[1], &c[2], &c[3], &c[4], &c[5]]);
    }
    let failed = rows.iter().filter(|r| !r.ok).count();
    let _ = writeln!(out, "{} passed, {} failed", rows.len() - failed, failed);
    out
}

/// `check`: prints the rows; returns the exit code (0 all ok, 1 some failed, 2 config error).
pub async fn check_command(source: &ConfigSource, format: OutputFormat, wait: Duration) -> i32 {
    let cfg = match config::load(source) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let env = match Env::in_memory() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let rows = run_checks(&cfg, wait, &env).await;
    match format {
        OutputFormat::Table => print!("{}", render_table(&rows)),
        OutputFormat::Json => match serde_json::to_string_pretty(&rows) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("encode json: {e}");
                return 2;
            }
        },
    }
    i32::from(rows.iter().any(|r| !r.ok))
}

/// `check-config`: 0 when valid, 1 with every error listed.
pub fn check_config_command(source: &ConfigSource) -> i32 {
    match config::load(source) {
        Ok(cfg) => {
            println!(
                "{}: ok ({} checks)",
                source.display_name(),
                cfg.checks.len()
            );
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}
