//! Probe history in the state file: what uptime figures, the daily report and the
//! per-check page read.
//!
//! Three bounded tables:
//! - `probe_hourly`: per check and hour, runs and failures. Uptime over 24 h and 7 d
//!   sums these (the current hour included), so a window is between 24 and 25 hours
//!   long. Kept 400 days: 25 checks × 9,600 hours ≈ 240,000 rows of ~40 bytes, about
//!   10 MB a year.
//! - `probe_changes`: every change of a check's state (ok → failing and back), with the
//!   reason and detail: the incidents. At most [`MAX_CHANGES`] per check.
//! - `probe_runs`: the last [`MAX_RUNS`] runs of each check.
//!
//! Runs are buffered in memory and written every few seconds on the blocking pool, so a
//! probe never waits for the disk. A crash loses at most the buffered runs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::params;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::state::State;

/// Runs kept per check in `probe_runs`.
pub const MAX_RUNS: i64 = 100;
/// State changes kept per check in `probe_changes`.
pub const MAX_CHANGES: i64 = 1000;
/// Hours of `probe_hourly` kept.
pub const RETENTION_HOURS: i64 = 400 * 24;
/// How often buffered runs are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);

const HOUR_MS: i64 = 3_600_000;

/// One run as the history keeps it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    /// Check name.
    pub check: String,
    /// End of the run, ms since the epoch.
    pub ts_ms: i64,
    /// Whether it passed.
    pub success: bool,
    /// Failure reason (empty on success).
    pub reason: String,
    /// Detail of the failure, or the success summary.
    pub detail: String,
    /// Duration in seconds.
    pub duration_seconds: f64,
}

/// A change of a check's state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// Check name.
    pub check: String,
    /// When, ms since the epoch.
    pub ts_ms: i64,
    /// The new state.
    pub success: bool,
    /// Failure reason (empty on recovery).
    pub reason: String,
    /// Detail.
    pub detail: String,
}

/// Runs and failures in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Uptime {
    /// Runs.
    pub runs: u64,
    /// Failed runs.
    pub failures: u64,
}

impl Uptime {
    /// Share of runs that passed, 0..=1; `None` without runs.
    pub fn ratio(&self) -> Option<f64> {
        #[allow(clippy::cast_precision_loss)]
        (self.runs > 0).then(|| (self.runs - self.failures) as f64 / self.runs as f64)
    }
}

#[derive(Default)]
struct Buffer {
    runs: Vec<Run>,
    changes: Vec<Change>,
    /// Last known state per check, to detect changes.
    last: BTreeMap<String, bool>,
}

/// The probe history.
pub struct History {
    state: Arc<State>,
    buffer: Mutex<Buffer>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("History")
    }
}

impl History {
    /// Opens the history tables (creating them) and remembers each check's last state.
    pub fn new(state: Arc<State>) -> Self {
        let mut last = BTreeMap::new();
        state.with_conn(|c| {
            if let Err(e) = c.execute_batch(
                "CREATE TABLE IF NOT EXISTS probe_hourly (
                    check_name TEXT NOT NULL, hour INTEGER NOT NULL,
                    runs INTEGER NOT NULL, failures INTEGER NOT NULL,
                    PRIMARY KEY (check_name, hour)) WITHOUT ROWID;
                 CREATE TABLE IF NOT EXISTS probe_changes (
                    check_name TEXT NOT NULL, ts_ms INTEGER NOT NULL, success INTEGER NOT NULL,
                    reason TEXT NOT NULL, detail TEXT NOT NULL);
                 CREATE INDEX IF NOT EXISTS probe_changes_by_check ON probe_changes (check_name, ts_ms);
                 CREATE TABLE IF NOT EXISTS probe_runs (
                    check_name TEXT NOT NULL, ts_ms INTEGER NOT NULL, success INTEGER NOT NULL,
                    reason TEXT NOT NULL, detail TEXT NOT NULL, duration REAL NOT NULL);
                 CREATE INDEX IF NOT EXISTS probe_runs_by_check ON probe_runs (check_name, ts_ms);",
            ) {
                tracing::error!(error = %e, "create the probe history tables");
                return;
            }
            let rows = c
                .prepare(
                    "SELECT check_name, success FROM probe_changes p WHERE ts_ms =
                     (SELECT MAX(ts_ms) FROM probe_changes q WHERE q.check_name = p.check_name)",
                )
                .and_then(|mut st| {
                    st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?)))?
                        .collect::<Result<Vec<_>, _>>()
                });
            if let Ok(rows) = rows {
                last.extend(rows);
            }
        });
        History {
            state,
            buffer: Mutex::new(Buffer {
                last,
                ..Buffer::default()
            }),
        }
    }

    fn buf(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one run (in memory; written by the next flush).
    pub fn record(&self, run: Run) {
        let mut b = self.buf();
        if b.last.get(&run.check) != Some(&run.success) {
            b.last.insert(run.check.clone(), run.success);
            b.changes.push(Change {
                check: run.check.clone(),
                ts_ms: run.ts_ms,
                success: run.success,
                reason: run.reason.clone(),
                detail: run.detail.clone(),
            });
        }
        b.runs.push(run);
    }

    /// Writes the buffered runs (blocking).
    pub fn flush(&self) {
        let (runs, changes) = {
            let mut b = self.buf();
            (std::mem::take(&mut b.runs), std::mem::take(&mut b.changes))
        };
        if runs.is_empty() && changes.is_empty() {
            return;
        }
        let res = self.state.with_conn(|c| -> rusqlite::Result<()> {
            let tx = c.unchecked_transaction()?;
            let mut checks = std::collections::BTreeSet::new();
            for r in &runs {
                checks.insert(r.check.as_str());
                tx.execute(
                    "INSERT INTO probe_hourly (check_name, hour, runs, failures) VALUES (?1, ?2, 1, ?3)
                     ON CONFLICT(check_name, hour) DO UPDATE SET runs = runs + 1,
                       failures = failures + excluded.failures",
                    params![r.check, r.ts_ms.div_euclid(HOUR_MS), i64::from(!r.success)],
                )?;
                tx.execute(
                    "INSERT INTO probe_runs (check_name, ts_ms, success, reason, detail, duration)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![r.check, r.ts_ms, r.success, r.reason, r.detail, r.duration_seconds],
                )?;
            }
            for ch in &changes {
                checks.insert(ch.check.as_str());
                tx.execute(
                    "INSERT INTO probe_changes (check_name, ts_ms, success, reason, detail)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![ch.check, ch.ts_ms, ch.success, ch.reason, ch.detail],
                )?;
            }
            for name in checks {
                tx.execute(
                    "DELETE FROM probe_runs WHERE check_name = ?1 AND ts_ms <
                     (SELECT ts_ms FROM probe_runs WHERE check_name = ?1
                      ORDER BY ts_ms DESC LIMIT 1 OFFSET ?2)",
                    params![name, MAX_RUNS - 1],
                )?;
                tx.execute(
                    "DELETE FROM probe_changes WHERE check_name = ?1 AND ts_ms <
                     (SELECT ts_ms FROM probe_changes WHERE check_name = ?1
                      ORDER BY ts_ms DESC LIMIT 1 OFFSET ?2)",
                    params![name, MAX_CHANGES - 1],
                )?;
            }
            if let Some(last) = runs.last() {
                tx.execute(
                    "DELETE FROM probe_hourly WHERE hour < ?1",
                    params![last.ts_ms.div_euclid(HOUR_MS) - RETENTION_HOURS],
                )?;
            }
            tx.commit()
        });
        if let Err(e) = res {
            tracing::warn!(error = %e, runs = runs.len(), "write the probe history");
        }
    }

    /// Writes the buffer every [`FLUSH_EVERY`] until `token` is cancelled, then once more.
    pub fn spawn(self: &Arc<Self>, token: CancellationToken) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let stop = tokio::select! {
                    () = token.cancelled() => true,
                    () = tokio::time::sleep(FLUSH_EVERY) => false,
                };
                let h = Arc::clone(&me);
                let _ = tokio::task::spawn_blocking(move || h.flush()).await;
                if stop {
                    break;
                }
            }
        })
    }

    /// Runs and failures of every check since `since_ms` (hour granularity: the hour
    /// that holds `since_ms` counts whole). Blocking.
    pub fn uptime_since(&self, since_ms: i64) -> BTreeMap<String, Uptime> {
        self.flush();
        let rows = self.state.with_conn(|c| {
            c.prepare(
                "SELECT check_name, SUM(runs), SUM(failures) FROM probe_hourly
                 WHERE hour >= ?1 GROUP BY check_name",
            )
            .and_then(|mut st| {
                st.query_map(params![since_ms.div_euclid(HOUR_MS)], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        Uptime {
                            runs: r.get::<_, i64>(1)?.try_into().unwrap_or(0),
                            failures: r.get::<_, i64>(2)?.try_into().unwrap_or(0),
                        },
                    ))
                })?
                .collect::<Result<BTreeMap<_, _>, _>>()
            })
        });
        rows.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "read the probe history");
            BTreeMap::new()
        })
    }

    /// State changes since `since_ms`, oldest first; one check or all. Blocking.
    pub fn changes_since(&self, check: Option<&str>, since_ms: i64) -> Vec<Change> {
        self.flush();
        let rows = self.state.with_conn(|c| {
            c.prepare(
                "SELECT check_name, ts_ms, success, reason, detail FROM probe_changes
                 WHERE ts_ms >= ?1 AND (?2 IS NULL OR check_name = ?2) ORDER BY ts_ms, check_name",
            )
            .and_then(|mut st| {
                st.query_map(params![since_ms, check], |r| {
                    Ok(Change {
                        check: r.get(0)?,
                        ts_ms: r.get(1)?,
                        success: r.get(2)?,
                        reason: r.get(3)?,
                        detail: r.get(4)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()
            })
        });
        rows.unwrap_or_default()
    }

    /// The last `n` runs of a check, newest first. Blocking.
    pub fn recent_runs(&self, check: &str, n: i64) -> Vec<Run> {
        self.flush();
        let rows = self.state.with_conn(|c| {
            c.prepare(
                "SELECT check_name, ts_ms, success, reason, detail, duration FROM probe_runs
                 WHERE check_name = ?1 ORDER BY ts_ms DESC LIMIT ?2",
            )
            .and_then(|mut st| {
                st.query_map(params![check, n], |r| {
                    Ok(Run {
                        check: r.get(0)?,
                        ts_ms: r.get(1)?,
                        success: r.get(2)?,
                        reason: r.get(3)?,
                        detail: r.get(4)?,
                        duration_seconds: r.get(5)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()
            })
        });
        rows.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(check: &str, ts_ms: i64, success: bool) -> Run {
        Run {
            check: check.into(),
            ts_ms,
            success,
            reason: if success { "" } else { "refused" }.into(),
            detail: String::new(),
            duration_seconds: 0.01,
        }
    }

    #[test]
    fn uptime_changes_and_bounds() {
        let h = History::new(Arc::new(State::in_memory().unwrap()));
        let t0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR_MS;
        for i in 0..200 {
            h.record(run("api", t0 + i * 15_000, !(50..60).contains(&i)));
        }
        h.flush();
        let up = h.uptime_since(t0)["api"];
        assert_eq!((up.runs, up.failures), (200, 10));
        assert!((up.ratio().unwrap() - 0.95).abs() < 1e-9);
        let changes = h.changes_since(Some("api"), 0);
        let states: Vec<bool> = changes.iter().map(|c| c.success).collect();
        assert_eq!(states, [true, false, true]);
        assert_eq!(changes[1].reason, "refused");
        let recent = h.recent_runs("api", 1000);
        assert_eq!(recent.len(), MAX_RUNS as usize);
        assert_eq!(recent[0].ts_ms, t0 + 199 * 15_000);
        // A restart remembers the last state: no spurious change.
        let h2 = History {
            state: Arc::clone(&h.state),
            buffer: Mutex::new(Buffer::default()),
        };
        drop(h2);
        let again = History::new(Arc::clone(&h.state));
        again.record(run("api", t0 + 300 * 15_000, true));
        assert_eq!(again.changes_since(Some("api"), 0).len(), 3);
    }

    #[test]
    fn a_year_of_harena_checks_stays_small() {
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(State::open(dir.path()).unwrap());
        let h = History::new(Arc::clone(&state));
        // 25 checks, one run per check per hour for 400 days (the hourly table holds
        // one row per check and hour whatever the interval), a failure every 100 runs.
        let t0 = 1_700_000_000_000;
        for hour in 0..RETENTION_HOURS {
            for c in 0..25 {
                h.record(run(
                    &format!("check_{c}"),
                    t0 + hour * HOUR_MS,
                    hour % 100 != 0,
                ));
            }
            if hour % 500 == 0 {
                h.flush();
            }
        }
        h.flush();
        state.with_conn(|c| c.execute_batch("VACUUM").unwrap());
        let size = std::fs::metadata(state.path()).unwrap().len();
        println!("history of 25 checks over 400 days: {} bytes", size);
        assert!(size < 50 * 1024 * 1024, "{size} bytes");
    }
}
