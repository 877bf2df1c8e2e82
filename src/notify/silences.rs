//! Silences, as Alertmanager 0.25 keeps them: a set of matchers and a time range; an
//! alert whose labels match every matcher while the silence is active is muted.
//!
//! They live in the state file's `silences` table, so they survive restarts, and in an
//! in-memory copy that the dispatcher's hot path ([`Silences::silenced_by`]) reads
//! without touching SQLite. Expired silences are kept for 5 days (Alertmanager's default
//! `--data.retention`), then [`Silences::gc`] drops them.
//!
//! The JSON shape of a [`Silence`] is Alertmanager's API v2 (`GettableSilence`), which
//! `/api/v1/silences` serves; [`NewSilence`] reads Alertmanager's `PostableSilence`.
//!
//! Writes ([`Silences::add`], [`Silences::expire`], [`Silences::gc`]) and
//! [`Silences::load`] run short SQLite statements: call them on the blocking pool from
//! async code. Reads ([`Silences::list`], [`Silences::silenced_by`]) are in memory.

use std::io::Read as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use rusqlite::{Connection, params};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::matchers::{MatchOp, Matcher};
use super::{LabelSet, now_ms};
use crate::state::State;

/// How long an expired silence is kept (Alertmanager's default `--data.retention`, 120h).
pub const RETENTION_MS: i64 = 5 * 24 * 3_600_000;

/// One silence.
#[derive(Debug, Clone, PartialEq)]
pub struct Silence {
    /// A random UUID (version 4), as Alertmanager makes them.
    pub id: String,
    /// Every matcher must match for an alert to be muted.
    pub matchers: Vec<Matcher>,
    /// Start of the silence (ms since the epoch).
    pub starts_at_ms: i64,
    /// End of the silence (ms since the epoch).
    pub ends_at_ms: i64,
    /// Who made it.
    pub created_by: String,
    /// Why.
    pub comment: String,
    /// Last change (ms since the epoch).
    pub updated_at_ms: i64,
}

impl Silence {
    /// `pending` before it starts, `active` until it ends, then `expired`.
    pub fn state(&self, now_ms: i64) -> &'static str {
        if now_ms < self.starts_at_ms {
            "pending"
        } else if now_ms < self.ends_at_ms {
            "active"
        } else {
            "expired"
        }
    }

    /// True when active at `now_ms` and every matcher matches `labels`.
    pub fn mutes(&self, labels: &LabelSet, now_ms: i64) -> bool {
        self.state(now_ms) == "active" && super::matchers::matches_all(&self.matchers, labels)
    }
}

/// A silence to create, or to update when `id` names an existing one.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSilence {
    /// The silence to update; `None` creates a new one.
    pub id: Option<String>,
    /// Matchers; at least one must not match the empty string.
    pub matchers: Vec<Matcher>,
    /// Start (ms since the epoch); a start in the past becomes now.
    pub starts_at_ms: i64,
    /// End (ms since the epoch); after the start, in the future.
    pub ends_at_ms: i64,
    /// Who makes it (required).
    pub created_by: String,
    /// Why (required).
    pub comment: String,
}

/// The silences: the table and its in-memory copy.
#[derive(Debug)]
pub struct Silences {
    state: Arc<State>,
    current: RwLock<Arc<Vec<Silence>>>,
    /// Serializes writers, so that the table and the copy change together.
    write: Mutex<()>,
}

impl Silences {
    /// Creates the table when missing and reads every silence (blocking). Rows that no
    /// longer parse are logged and skipped.
    pub fn load(state: Arc<State>) -> Self {
        let loaded = state.with_conn(|c| {
            init_schema(c)?;
            read_all(c)
        });
        let list = match loaded {
            Ok(list) => list,
            Err(e) => {
                tracing::error!(error = %e, "read silences from the state file");
                Vec::new()
            }
        };
        Silences {
            state,
            current: RwLock::new(Arc::new(list)),
            write: Mutex::new(()),
        }
    }

    /// The in-memory copy (cheap: one `Arc` clone).
    pub fn snapshot(&self) -> Arc<Vec<Silence>> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Every silence kept, as Alertmanager lists them: active ones first (soonest end
    /// first), then pending (soonest start first), then expired (latest end first).
    pub fn list(&self) -> Vec<Silence> {
        let now = now_ms();
        let mut out: Vec<Silence> = self.snapshot().iter().cloned().collect();
        out.sort_by_key(|s| match s.state(now) {
            "active" => (0, s.ends_at_ms, s.id.clone()),
            "pending" => (1, s.starts_at_ms, s.id.clone()),
            _ => (2, -s.ends_at_ms, s.id.clone()),
        });
        out
    }

    /// One silence by id.
    pub fn get(&self, id: &str) -> Option<Silence> {
        self.snapshot().iter().find(|s| s.id == id).cloned()
    }

    /// The ids of the silences that are active at `now_ms` and match `labels`.
    pub fn silenced_by(&self, labels: &LabelSet, now_ms: i64) -> Vec<String> {
        self.snapshot()
            .iter()
            .filter(|s| s.mutes(labels, now_ms))
            .map(|s| s.id.clone())
            .collect()
    }

    /// Creates a silence, or updates the one `new.id` names; returns its id.
    ///
    /// Validation and updates follow Alertmanager 0.25: at least one matcher, not all
    /// of which match the empty string; `createdBy` and `comment` set; the end after the
    /// start and in the future; an unknown `id` is an error. An update keeps the id when
    /// the matchers are the same and the times allow it (a pending silence may move
    /// its start, not into the past; an active one may only change its end, not into
    /// the past). Otherwise the old silence is expired (unless it already is) and a new
    /// one, with a new id, is created. A start in the past becomes now.
    ///
    /// # Errors
    /// What is wrong with the silence, or why it could not be stored.
    pub fn add(&self, new: NewSilence) -> Result<String, String> {
        self.add_at(new, now_ms())
    }

    /// [`Silences::add`] at a given time (for tests and replays).
    ///
    /// # Errors
    /// As [`Silences::add`].
    pub fn add_at(&self, new: NewSilence, now: i64) -> Result<String, String> {
        validate(&new, now)?;
        let _w = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let mut list: Vec<Silence> = self.snapshot().iter().cloned().collect();
        let mut changed: Vec<Silence> = Vec::new();
        if let Some(id) = new.id.as_deref().filter(|id| !id.is_empty()) {
            let Some(pos) = list.iter().position(|s| s.id == id) else {
                return Err(format!("silence {id} not found"));
            };
            let prev = &list[pos];
            if can_update(prev, &new, now) {
                let updated = Silence {
                    id: id.to_string(),
                    matchers: new.matchers,
                    starts_at_ms: new.starts_at_ms,
                    ends_at_ms: new.ends_at_ms,
                    created_by: new.created_by,
                    comment: new.comment,
                    updated_at_ms: now,
                };
                self.persist(std::slice::from_ref(&updated))?;
                list[pos] = updated;
                self.publish(list);
                return Ok(id.to_string());
            }
            if prev.state(now) != "expired" {
                let mut old = prev.clone();
                expire_at(&mut old, now);
                changed.push(old.clone());
                list[pos] = old;
            }
        }
        let silence = Silence {
            id: new_uuid(),
            matchers: new.matchers,
            starts_at_ms: new.starts_at_ms.max(now),
            ends_at_ms: new.ends_at_ms,
            created_by: new.created_by,
            comment: new.comment,
            updated_at_ms: now,
        };
        let id = silence.id.clone();
        changed.push(silence.clone());
        self.persist(&changed)?;
        list.push(silence);
        self.publish(list);
        Ok(id)
    }

    /// Ends a silence now: an active one ends, a pending one never starts.
    ///
    /// # Errors
    /// An unknown id, a silence that already expired, or a failed write.
    pub fn expire(&self, id: &str) -> Result<(), String> {
        self.expire_at(id, now_ms())
    }

    /// [`Silences::expire`] at a given time.
    ///
    /// # Errors
    /// As [`Silences::expire`].
    pub fn expire_at(&self, id: &str, now: i64) -> Result<(), String> {
        let _w = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let mut list: Vec<Silence> = self.snapshot().iter().cloned().collect();
        let Some(s) = list.iter_mut().find(|s| s.id == id) else {
            return Err(format!("silence {id} not found"));
        };
        if s.state(now) == "expired" {
            return Err(format!("silence {id} already expired"));
        }
        expire_at(s, now);
        self.persist(std::slice::from_ref(s))?;
        self.publish(list);
        Ok(())
    }

    /// Drops the silences that expired more than [`RETENTION_MS`] before `now_ms`;
    /// returns how many.
    pub fn gc(&self, now_ms: i64) -> usize {
        let _w = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let cutoff = now_ms - RETENTION_MS;
        let deleted = self.state.with_conn(|c| {
            c.execute(
                "DELETE FROM silences WHERE ends_at_ms < ?1",
                params![cutoff],
            )
        });
        if let Err(e) = deleted {
            tracing::warn!(error = %e, "drop old silences from the state file");
            return 0;
        }
        let mut list: Vec<Silence> = self.snapshot().iter().cloned().collect();
        let before = list.len();
        list.retain(|s| s.ends_at_ms >= cutoff);
        let dropped = before - list.len();
        if dropped > 0 {
            self.publish(list);
        }
        dropped
    }

    fn persist(&self, silences: &[Silence]) -> Result<(), String> {
        self.state
            .with_conn(|c| {
                init_schema(c)?;
                let tx = c.unchecked_transaction()?;
                for s in silences {
                    let matchers = serde_json::to_string(&s.matchers)
                        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                    tx.execute(
                        "INSERT INTO silences (id, matchers, starts_at_ms, ends_at_ms, created_by, comment, updated_at_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                         ON CONFLICT(id) DO UPDATE SET matchers = excluded.matchers,
                           starts_at_ms = excluded.starts_at_ms, ends_at_ms = excluded.ends_at_ms,
                           created_by = excluded.created_by, comment = excluded.comment,
                           updated_at_ms = excluded.updated_at_ms",
                        params![
                            s.id,
                            matchers,
                            s.starts_at_ms,
                            s.ends_at_ms,
                            s.created_by,
                            s.comment,
                            s.updated_at_ms
                        ],
                    )?;
                }
                tx.commit()
            })
            .map_err(|e| format!("store silence: {e}"))
    }

    fn publish(&self, list: Vec<Silence>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(list);
    }
}

fn init_schema(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS silences (
            id TEXT PRIMARY KEY,
            matchers TEXT NOT NULL,
            starts_at_ms INTEGER NOT NULL,
            ends_at_ms INTEGER NOT NULL,
            created_by TEXT NOT NULL,
            comment TEXT NOT NULL,
            updated_at_ms INTEGER NOT NULL
        );",
    )
}

fn read_all(c: &Connection) -> rusqlite::Result<Vec<Silence>> {
    let mut stmt = c.prepare(
        "SELECT id, matchers, starts_at_ms, ends_at_ms, created_by, comment, updated_at_ms
         FROM silences ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, i64>(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, matchers, starts_at_ms, ends_at_ms, created_by, comment, updated_at_ms) = row?;
        match serde_json::from_str::<Vec<Matcher>>(&matchers) {
            Ok(matchers) => out.push(Silence {
                id,
                matchers,
                starts_at_ms,
                ends_at_ms,
                created_by,
                comment,
                updated_at_ms,
            }),
            Err(e) => {
                tracing::warn!(silence = %id, error = %e, "skip a stored silence that does not parse")
            }
        }
    }
    Ok(out)
}

fn validate(new: &NewSilence, now: i64) -> Result<(), String> {
    if new.matchers.is_empty() {
        return Err("at least one matcher required".into());
    }
    let empty = LabelSet::new();
    if new.matchers.iter().all(|m| m.matches(&empty)) {
        return Err("at least one matcher must not match the empty string".into());
    }
    if new.created_by.trim().is_empty() {
        return Err("createdBy is required".into());
    }
    if new.comment.trim().is_empty() {
        return Err("comment is required".into());
    }
    if new.starts_at_ms >= new.ends_at_ms {
        return Err("start time must be before end time".into());
    }
    if new.ends_at_ms < now {
        return Err("end time can't be in the past".into());
    }
    Ok(())
}

/// Alertmanager's `canUpdate`: same matchers, and times the current state allows.
fn can_update(prev: &Silence, new: &NewSilence, now: i64) -> bool {
    if prev.matchers != new.matchers {
        return false;
    }
    match prev.state(now) {
        "active" => new.starts_at_ms == prev.starts_at_ms && new.ends_at_ms >= now,
        "pending" => new.starts_at_ms >= now,
        _ => false,
    }
}

fn expire_at(s: &mut Silence, now: i64) {
    if s.state(now) == "pending" {
        s.starts_at_ms = now;
    }
    s.ends_at_ms = now;
    s.updated_at_ms = now;
}

/// A random version-4 UUID: 16 bytes from `/dev/urandom`, or, should that fail, from
/// std's randomly keyed hasher over the time, a counter and the pid.
pub fn new_uuid() -> String {
    let mut b = [0u8; 16];
    let from_os = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok();
    if !from_os {
        use std::hash::{BuildHasher, Hasher};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let keys = std::collections::hash_map::RandomState::new();
        for half in 0..2u64 {
            let mut h = keys.build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
            h.write_u32(std::process::id());
            h.write_u64(half);
            let v = h.finish().to_le_bytes();
            let start = usize::try_from(half).unwrap_or(0) * 8;
            b[start..start + 8].copy_from_slice(&v);
        }
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

// ---------------------------------------------------------------------------------------
// Alertmanager's API v2 JSON
// ---------------------------------------------------------------------------------------

/// A matcher as Alertmanager's API v2 writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct WireMatcher {
    name: String,
    value: String,
    #[serde(rename = "isRegex")]
    is_regex: bool,
    #[serde(rename = "isEqual", default = "yes")]
    is_equal: bool,
}

fn yes() -> bool {
    true
}

impl From<&Matcher> for WireMatcher {
    fn from(m: &Matcher) -> Self {
        WireMatcher {
            name: m.name.clone(),
            value: m.value.clone(),
            is_regex: matches!(m.op, MatchOp::Regex | MatchOp::NotRegex),
            is_equal: matches!(m.op, MatchOp::Equal | MatchOp::Regex),
        }
    }
}

impl TryFrom<WireMatcher> for Matcher {
    type Error = String;

    fn try_from(w: WireMatcher) -> Result<Self, String> {
        let op = match (w.is_regex, w.is_equal) {
            (false, true) => MatchOp::Equal,
            (false, false) => MatchOp::NotEqual,
            (true, true) => MatchOp::Regex,
            (true, false) => MatchOp::NotRegex,
        };
        Matcher::new(&w.name, op, &w.value)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct WireStatus {
    state: String,
}

/// `GettableSilence` of Alertmanager's API v2.
#[derive(Debug, Serialize, Deserialize)]
struct WireSilence {
    id: String,
    matchers: Vec<WireMatcher>,
    #[serde(rename = "startsAt")]
    starts_at: String,
    #[serde(rename = "endsAt")]
    ends_at: String,
    #[serde(rename = "createdBy")]
    created_by: String,
    comment: String,
    #[serde(rename = "updatedAt")]
    updated_at: String,
    status: WireStatus,
}

/// `PostableSilence` of Alertmanager's API v2.
#[derive(Debug, Deserialize)]
struct WireNewSilence {
    #[serde(default)]
    id: Option<String>,
    matchers: Vec<WireMatcher>,
    #[serde(rename = "startsAt")]
    starts_at: String,
    #[serde(rename = "endsAt")]
    ends_at: String,
    #[serde(rename = "createdBy")]
    created_by: String,
    comment: String,
}

/// Formats ms since the epoch as Alertmanager's API does (`2024-05-01T10:00:00.000Z`).
pub fn api_time(ms: i64) -> String {
    crate::telemetry::rfc3339(ms)
}

/// Parses an RFC 3339 time into ms since the epoch.
///
/// # Errors
/// A message naming the text.
pub fn parse_api_time(text: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("invalid time {text:?}: {e}"))
}

fn matchers_from_wire(wire: Vec<WireMatcher>) -> Result<Vec<Matcher>, String> {
    wire.into_iter().map(Matcher::try_from).collect()
}

impl Serialize for Silence {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        WireSilence {
            id: self.id.clone(),
            matchers: self.matchers.iter().map(WireMatcher::from).collect(),
            starts_at: api_time(self.starts_at_ms),
            ends_at: api_time(self.ends_at_ms),
            created_by: self.created_by.clone(),
            comment: self.comment.clone(),
            updated_at: api_time(self.updated_at_ms),
            status: WireStatus {
                state: self.state(now_ms()).to_string(),
            },
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Silence {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = WireSilence::deserialize(d)?;
        Ok(Silence {
            id: w.id,
            matchers: matchers_from_wire(w.matchers).map_err(D::Error::custom)?,
            starts_at_ms: parse_api_time(&w.starts_at).map_err(D::Error::custom)?,
            ends_at_ms: parse_api_time(&w.ends_at).map_err(D::Error::custom)?,
            created_by: w.created_by,
            comment: w.comment,
            updated_at_ms: parse_api_time(&w.updated_at).map_err(D::Error::custom)?,
        })
    }
}

impl<'de> Deserialize<'de> for NewSilence {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = WireNewSilence::deserialize(d)?;
        Ok(NewSilence {
            id: w.id.filter(|id| !id.is_empty()),
            matchers: matchers_from_wire(w.matchers).map_err(D::Error::custom)?,
            starts_at_ms: parse_api_time(&w.starts_at).map_err(D::Error::custom)?,
            ends_at_ms: parse_api_time(&w.ends_at).map_err(D::Error::custom)?,
            created_by: w.created_by,
            comment: w.comment,
        })
    }
}

impl Serialize for NewSilence {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            id: Option<&'a str>,
            matchers: Vec<WireMatcher>,
            #[serde(rename = "startsAt")]
            starts_at: String,
            #[serde(rename = "endsAt")]
            ends_at: String,
            #[serde(rename = "createdBy")]
            created_by: &'a str,
            comment: &'a str,
        }
        Out {
            id: self.id.as_deref(),
            matchers: self.matchers.iter().map(WireMatcher::from).collect(),
            starts_at: api_time(self.starts_at_ms),
            ends_at: api_time(self.ends_at_ms),
            created_by: &self.created_by,
            comment: &self.comment,
        }
        .serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::matchers::parse_list;

    const H: i64 = 3_600_000;
    const T0: i64 = 1_700_000_000_000;

    fn ls(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn new(matchers: &str, starts: i64, ends: i64) -> NewSilence {
        NewSilence {
            id: None,
            matchers: parse_list(matchers).unwrap(),
            starts_at_ms: starts,
            ends_at_ms: ends,
            created_by: "ops".into(),
            comment: "maintenance".into(),
        }
    }

    fn silences() -> Silences {
        Silences::load(Arc::new(State::in_memory().unwrap()))
    }

    #[test]
    fn validation_follows_alertmanager() {
        let s = silences();
        for (n, msg) in [
            (new("", T0, T0 + H), "at least one matcher required"),
            (
                new(r#"a=~".*", b="""#, T0, T0 + H),
                "at least one matcher must not match the empty string",
            ),
            (
                new("a=b", T0 + H, T0 + H),
                "start time must be before end time",
            ),
            (
                new("a=b", T0 - 2 * H, T0 - H),
                "end time can't be in the past",
            ),
            (
                NewSilence {
                    created_by: String::new(),
                    ..new("a=b", T0, T0 + H)
                },
                "createdBy is required",
            ),
            (
                NewSilence {
                    id: Some("nope".into()),
                    ..new("a=b", T0, T0 + H)
                },
                "silence nope not found",
            ),
        ] {
            assert_eq!(s.add_at(n, T0).unwrap_err(), msg);
        }
        assert!(s.list().is_empty());
    }

    #[test]
    fn states_and_matching() {
        let s = silences();
        let id = s
            .add_at(
                new(
                    r#"alertname="PostgresDown", env=~"prod|staging""#,
                    T0,
                    T0 + H,
                ),
                T0,
            )
            .unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        let firing = ls(&[("alertname", "PostgresDown"), ("env", "prod")]);
        assert_eq!(s.silenced_by(&firing, T0 + 1), vec![id.clone()]);
        assert!(
            s.silenced_by(&firing, T0 + H).is_empty(),
            "expired at its end"
        );
        assert!(
            s.silenced_by(&firing, T0 - 1).is_empty(),
            "pending before its start"
        );
        assert!(
            s.silenced_by(
                &ls(&[("alertname", "PostgresDown"), ("env", "dev")]),
                T0 + 1
            )
            .is_empty()
        );
        let sil = s.get(&id).unwrap();
        assert_eq!(sil.state(T0 - 1), "pending");
        assert_eq!(sil.state(T0), "active");
        assert_eq!(sil.state(T0 + H), "expired");
    }

    #[test]
    fn a_start_in_the_past_becomes_now() {
        let s = silences();
        let id = s.add_at(new("a=b", T0 - H, T0 + H), T0).unwrap();
        assert_eq!(s.get(&id).unwrap().starts_at_ms, T0);
    }

    #[test]
    fn updates_in_place_or_replace() {
        let s = silences();
        let id = s.add_at(new("a=b", T0, T0 + H), T0).unwrap();
        // Active, same matchers, same start: the end moves, the id stays.
        let upd = NewSilence {
            id: Some(id.clone()),
            comment: "longer".into(),
            ..new("a=b", T0, T0 + 2 * H)
        };
        assert_eq!(s.add_at(upd, T0 + 10).unwrap(), id);
        let got = s.get(&id).unwrap();
        assert_eq!(
            (got.ends_at_ms, got.comment.as_str()),
            (T0 + 2 * H, "longer")
        );
        assert_eq!(got.updated_at_ms, T0 + 10);
        // Other matchers: the old one expires, a new id takes over.
        let other = NewSilence {
            id: Some(id.clone()),
            ..new("a=c", T0, T0 + 2 * H)
        };
        let id2 = s.add_at(other, T0 + 20).unwrap();
        assert_ne!(id2, id);
        assert_eq!(s.get(&id).unwrap().state(T0 + 20), "expired");
        assert_eq!(s.get(&id2).unwrap().state(T0 + 20), "active");
        assert_eq!(s.list().len(), 2);
        // Pending silence: its start may move later.
        let p = s.add_at(new("x=y", T0 + H, T0 + 2 * H), T0).unwrap();
        let moved = NewSilence {
            id: Some(p.clone()),
            ..new("x=y", T0 + 90 * 60_000, T0 + 2 * H)
        };
        assert_eq!(s.add_at(moved, T0 + 30).unwrap(), p);
    }

    #[test]
    fn expire_and_gc() {
        let s = silences();
        let active = s.add_at(new("a=b", T0, T0 + H), T0).unwrap();
        let pending = s.add_at(new("a=c", T0 + H, T0 + 2 * H), T0).unwrap();
        s.expire_at(&active, T0 + 5).unwrap();
        s.expire_at(&pending, T0 + 5).unwrap();
        for id in [&active, &pending] {
            let sil = s.get(id).unwrap();
            assert_eq!(sil.state(T0 + 5), "expired");
            assert_eq!(sil.ends_at_ms, T0 + 5);
        }
        assert_eq!(s.get(&pending).unwrap().starts_at_ms, T0 + 5);
        assert!(
            s.expire_at(&active, T0 + 6)
                .unwrap_err()
                .contains("already expired")
        );
        assert!(s.expire_at("nope", T0).unwrap_err().contains("not found"));
        assert_eq!(s.gc(T0 + RETENTION_MS), 0);
        assert_eq!(s.gc(T0 + 6 + RETENTION_MS), 2);
        assert!(s.list().is_empty());
    }

    #[test]
    fn silences_survive_reloading() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_ms();
        let id = {
            let s = Silences::load(Arc::new(State::open(dir.path()).unwrap()));
            s.add(new(r#"check=~"pg.*", severity!="info""#, now, now + H))
                .unwrap()
        };
        let s = Silences::load(Arc::new(State::open(dir.path()).unwrap()));
        let got = s.get(&id).unwrap();
        assert_eq!(
            got.matchers,
            parse_list(r#"check=~"pg.*", severity!="info""#).unwrap()
        );
        assert_eq!(
            s.silenced_by(&ls(&[("check", "pg1"), ("severity", "critical")]), now_ms()),
            vec![id]
        );
    }

    #[test]
    fn json_is_alertmanagers_api_v2() {
        let s = silences();
        let now = now_ms();
        let id = s
            .add(new(
                r#"alertname="X", env!~"dev|test""#,
                now - 1000,
                now + H,
            ))
            .unwrap();
        let v = serde_json::to_value(s.get(&id).unwrap()).unwrap();
        assert_eq!(v["id"], id);
        assert_eq!(
            v["matchers"],
            serde_json::json!([
                {"name": "alertname", "value": "X", "isRegex": false, "isEqual": true},
                {"name": "env", "value": "dev|test", "isRegex": true, "isEqual": false},
            ])
        );
        assert_eq!(v["status"]["state"], "active");
        assert_eq!(v["createdBy"], "ops");
        assert_eq!(v["comment"], "maintenance");
        let ends = v["endsAt"].as_str().unwrap();
        assert!(ends.ends_with('Z') && ends.len() == 24, "{ends}");
        assert_eq!(parse_api_time(ends).unwrap(), now + H);
        // And back.
        let back: Silence = serde_json::from_value(v).unwrap();
        assert_eq!(back, s.get(&id).unwrap());
    }

    #[test]
    fn postable_silences_parse() {
        let n: NewSilence = serde_json::from_str(
            r#"{"matchers":[{"name":"alertname","value":"Down","isRegex":false}],
                "startsAt":"2024-05-01T10:00:00Z","endsAt":"2024-05-01T12:00:00.500+02:00",
                "createdBy":"me","comment":"why"}"#,
        )
        .unwrap();
        assert_eq!(n.id, None);
        assert_eq!(n.matchers[0].to_string(), r#"alertname="Down""#);
        assert_eq!(n.starts_at_ms, 1_714_557_600_000);
        assert_eq!(n.ends_at_ms, 1_714_557_600_500);
        let bad = serde_json::from_str::<NewSilence>(
            r#"{"matchers":[{"name":"a","value":"(","isRegex":true}],"startsAt":"2024-05-01T10:00:00Z","endsAt":"2024-05-01T12:00:00Z","createdBy":"me","comment":"c"}"#,
        );
        assert!(bad.unwrap_err().to_string().contains("regular expression"));
    }

    #[test]
    fn uuids_are_v4_and_distinct() {
        let a = new_uuid();
        let b = new_uuid();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
    }
}
