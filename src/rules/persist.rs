//! Alert states in the state file, so that a restart changes nothing an operator sees.
//!
//! Table `rule_alerts`: one row per alert held by an alerting rule (pending, firing, or
//! resolved within the last 15 minutes), keyed by group, rule index and label set, with
//! its state, `activeAt`, `firedAt`, `resolvedAt`, `keepFiringSince`, value and
//! annotations. A group's rows are replaced in one transaction after each evaluation that
//! changed them. These are blocking calls: the evaluation loop makes them on the blocking
//! pool.
//!
//! On start, a firing alert comes back firing with its original `activeAt` and `firedAt`
//! (no second "firing" notification); a pending one keeps counting its `for` from its
//! original `activeAt`, unless the exporter was down longer than the outage tolerance
//! (Prometheus's `for_outage_tolerance`, 1 hour by default): then nothing says the
//! condition held meanwhile, and it starts over.

use std::collections::BTreeMap;

use rusqlite::{Connection, params};

use crate::model::Labels;
use crate::rules::alerting::{Alert, AlertState};
use crate::state::State;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS rule_alerts (
    grp TEXT NOT NULL,
    rule_index INTEGER NOT NULL,
    alertname TEXT NOT NULL,
    labels TEXT NOT NULL,
    state TEXT NOT NULL,
    active_at_ms INTEGER NOT NULL,
    fired_at_ms INTEGER,
    resolved_at_ms INTEGER,
    keep_firing_since_ms INTEGER,
    value REAL,
    annotations TEXT NOT NULL,
    saved_ms INTEGER NOT NULL,
    PRIMARY KEY (grp, rule_index, labels)
);";

/// An alert read back from the state file.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedAlert {
    /// The alert as it was saved (`group` and `rule_index` say where it belongs).
    pub alert: Alert,
    /// When it was saved (ms since the epoch).
    pub saved_ms: i64,
}

fn encode(labels: &Labels) -> String {
    let map: BTreeMap<&str, &str> = labels.iter().collect();
    serde_json::to_string(&map).unwrap_or_else(|_| "{}".to_string())
}

fn decode(text: &str) -> Labels {
    let map: BTreeMap<String, String> = serde_json::from_str(text).unwrap_or_default();
    Labels::from_pairs(map)
}

fn ensure(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

/// Replaces the saved alerts of `group` by `alerts` (blocking).
///
/// # Errors
/// SQLite refused.
pub fn save_group(
    state: &State,
    group: &str,
    alerts: &[Alert],
    now_ms: i64,
) -> rusqlite::Result<()> {
    state.with_conn(|conn| {
        ensure(conn)?;
        let tx = conn.unchecked_transaction()?;
        tx.execute("DELETE FROM rule_alerts WHERE grp = ?1", params![group])?;
        {
            let mut stmt = tx.prepare(
                "INSERT OR REPLACE INTO rule_alerts (grp, rule_index, alertname, labels, state,
                 active_at_ms, fired_at_ms, resolved_at_ms, keep_firing_since_ms, value,
                 annotations, saved_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?;
            for a in alerts {
                let value = a.value.is_finite().then_some(a.value);
                stmt.execute(params![
                    group,
                    i64::try_from(a.rule_index).unwrap_or(i64::MAX),
                    a.labels.get("alertname").unwrap_or(""),
                    encode(&a.labels),
                    a.state.as_str(),
                    a.active_at_ms,
                    a.fired_at_ms,
                    a.resolved_at_ms,
                    a.keep_firing_since_ms,
                    value,
                    encode(&a.annotations),
                    now_ms,
                ])?;
            }
        }
        tx.commit()
    })
}

/// Forgets every group not in `keep` (groups removed by a reload; blocking).
///
/// # Errors
/// SQLite refused.
pub fn retain_groups(state: &State, keep: &[String]) -> rusqlite::Result<()> {
    state.with_conn(|conn| {
        ensure(conn)?;
        let mut stmt = conn.prepare("SELECT DISTINCT grp FROM rule_alerts")?;
        let groups: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<_, _>>()?;
        for g in groups {
            if !keep.contains(&g) {
                conn.execute("DELETE FROM rule_alerts WHERE grp = ?1", params![g])?;
            }
        }
        Ok(())
    })
}

/// Every saved alert (blocking).
///
/// # Errors
/// SQLite refused.
pub fn load_all(state: &State) -> rusqlite::Result<Vec<SavedAlert>> {
    state.with_conn(|conn| {
        ensure(conn)?;
        let mut stmt = conn.prepare(
            "SELECT grp, rule_index, labels, state, active_at_ms, fired_at_ms, resolved_at_ms,
             keep_firing_since_ms, value, annotations, saved_ms FROM rule_alerts
             ORDER BY grp, rule_index, labels",
        )?;
        let rows = stmt.query_map([], |r| {
            let state: String = r.get(3)?;
            let index: i64 = r.get(1)?;
            Ok((
                state,
                SavedAlert {
                    alert: Alert {
                        group: r.get(0)?,
                        rule_index: usize::try_from(index).unwrap_or(usize::MAX),
                        labels: decode(&r.get::<_, String>(2)?),
                        annotations: decode(&r.get::<_, String>(9)?),
                        state: AlertState::Inactive,
                        active_at_ms: r.get(4)?,
                        fired_at_ms: r.get(5)?,
                        resolved_at_ms: r.get(6)?,
                        keep_firing_since_ms: r.get(7)?,
                        value: r.get::<_, Option<f64>>(8)?.unwrap_or(f64::NAN),
                    },
                    saved_ms: r.get(10)?,
                },
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (state, mut saved) = row?;
            // A row whose state we do not know is skipped rather than guessed.
            let Some(s) = AlertState::parse(&state) else {
                continue;
            };
            saved.alert.state = s;
            out.push(saved);
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(state: AlertState, name: &str) -> Alert {
        Alert {
            group: "g".into(),
            rule_index: 1,
            labels: Labels::from_pairs([("alertname", name), ("job", "x")]),
            annotations: Labels::from_pairs([("summary", "s")]),
            state,
            active_at_ms: 1_000,
            fired_at_ms: (state == AlertState::Firing).then_some(61_000),
            resolved_at_ms: None,
            keep_firing_since_ms: None,
            value: 1.5,
        }
    }

    #[test]
    fn alerts_survive_reopening_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = State::open(dir.path()).expect("open");
            save_group(&s, "g", &[alert(AlertState::Firing, "A")], 5).expect("save");
            save_group(
                &s,
                "g",
                &[
                    alert(AlertState::Firing, "A"),
                    alert(AlertState::Pending, "B"),
                ],
                6,
            )
            .expect("save");
            save_group(&s, "h", &[alert(AlertState::Pending, "C")], 6).expect("save");
        }
        let s = State::open(dir.path()).expect("reopen");
        let got = load_all(&s).expect("load");
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].alert, alert(AlertState::Firing, "A"));
        assert_eq!(got[0].saved_ms, 6);
        retain_groups(&s, &["g".to_string()]).expect("retain");
        assert_eq!(load_all(&s).expect("load").len(), 2);
    }
}
