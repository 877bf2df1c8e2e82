//! Alertmanager's `time_intervals` (maintenance windows, business hours), as Alertmanager
//! 0.25 parses and evaluates them, and the time zones they name.
//!
//! ```yaml
//! time_intervals:
//!   - name: weekend-maintenance
//!     time_intervals:
//!       - weekdays: ['saturday:sunday']
//!         times: [{start_time: '02:00', end_time: '04:00'}]
//!         location: Europe/Paris
//! ```
//!
//! A named interval contains an instant when any of its entries does; an entry contains
//! it when every field it sets does (a field left out matches everything). Ranges are
//! inclusive, `end_time` is exclusive and may be `24:00`, negative `days_of_month` count
//! from the end of the month (`-1` is the last day).
//!
//! Time zones are read from the system's IANA database (`/usr/share/zoneinfo`, Debian
//! package `tzdata`) with a small TZif reader ([`Zone`]), the footer's POSIX rule
//! included, so no time zone crate is needed. `Local` is `/etc/localtime`; `UTC` and the
//! empty name are UTC, as Go's `time.LoadLocation` reads them.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike, Utc};
use serde::{Deserialize, Deserializer};

/// Where the IANA time zone database lives.
pub const ZONEINFO_DIR: &str = "/usr/share/zoneinfo";

/// One entry of `alerting.time_intervals`: a name and the intervals it covers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeIntervalConfig {
    /// Unique name that routes refer to in `mute_time_intervals` and
    /// `active_time_intervals`. Required. Example: `name: weekend-maintenance`.
    #[serde(default)]
    pub name: String,
    /// The intervals; the named interval contains an instant when any of them does.
    /// Default none (the interval never contains anything).
    /// Example: `time_intervals: [{weekdays: ['saturday:sunday']}]`.
    #[serde(default)]
    pub time_intervals: Vec<TimeSpec>,
}

/// A named time interval, ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeInterval {
    /// Its name.
    pub name: String,
    /// Its entries; any of them may contain an instant.
    pub intervals: Vec<TimeSpec>,
}

impl TimeInterval {
    /// From its config entry.
    pub fn new(config: TimeIntervalConfig) -> Self {
        TimeInterval {
            name: config.name,
            intervals: config.time_intervals,
        }
    }

    /// True when any entry contains `t`.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.intervals.iter().any(|i| i.contains(t))
    }
}

/// One entry of a named interval's `time_intervals` (Alertmanager's `TimeInterval`).
/// Every field it sets must contain the instant; a field left out matches everything, an
/// empty list matches nothing.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeSpec {
    /// Times of day, `HH:MM` from `00:00` to `24:00`, the end excluded. Default: all day.
    /// Example: `times: [{start_time: '09:00', end_time: '17:30'}]`.
    #[serde(default)]
    pub times: Option<Vec<TimeRange>>,
    /// Days of the week, names or inclusive ranges of names, any case. Default: every day.
    /// Example: `weekdays: ['monday:friday', saturday]`.
    #[serde(default)]
    pub weekdays: Option<Vec<WeekdayRange>>,
    /// Days of the month, 1 to 31 or -31 to -1 (from the end: -1 is the last day), or
    /// inclusive ranges of them. Default: every day. Example: `days_of_month: ['1:7', '-1']`.
    #[serde(default)]
    pub days_of_month: Option<Vec<DayOfMonthRange>>,
    /// Months, names or numbers (1 = January), or inclusive ranges (a range cannot wrap
    /// past December). Default: every month. Example: `months: ['january:march', december]`.
    #[serde(default)]
    pub months: Option<Vec<MonthRange>>,
    /// Years or inclusive ranges of years. Default: every year. Example: `years: ['2025:2026']`.
    #[serde(default)]
    pub years: Option<Vec<YearRange>>,
    /// IANA time zone the other fields are read in, `Local` for the host's zone. Default
    /// `UTC`. Example: `location: Europe/Paris`.
    #[serde(default)]
    pub location: Option<Zone>,
}

impl TimeSpec {
    /// True when `t` is inside every field that is set (Alertmanager's `ContainsTime`).
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        let local = match &self.location {
            Some(zone) => zone.to_local(t),
            None => t.naive_utc(),
        };
        let minute = i64::from(local.hour() * 60 + local.minute());
        let times_ok = self.times.as_ref().is_none_or(|ts| {
            ts.iter()
                .any(|r| r.start_minute <= minute && minute < r.end_minute)
        });
        let days = i64::from(days_in_month(local.year(), local.month()));
        let day = i64::from(local.day());
        let days_ok = self.days_of_month.as_ref().is_none_or(|ranges| {
            ranges.iter().any(|r| {
                let begin = if r.0.begin < 0 {
                    days + r.0.begin + 1
                } else {
                    r.0.begin
                };
                let end = if r.0.end < 0 {
                    days + r.0.end + 1
                } else {
                    r.0.end
                };
                if begin > days {
                    return false;
                }
                let (begin, end) = (begin.clamp(-days, days), end.clamp(-days, days));
                begin <= day && day <= end
            })
        });
        times_ok
            && days_ok
            && in_ranges(&self.months, i64::from(local.month()))
            && in_ranges(
                &self.weekdays,
                i64::from(local.weekday().num_days_from_sunday()),
            )
            && in_ranges(&self.years, i64::from(local.year()))
    }
}

/// True when the field is unset or one of its ranges holds `value`.
fn in_ranges<T: AsRef<InclusiveRange>>(ranges: &Option<Vec<T>>, value: i64) -> bool {
    ranges.as_ref().is_none_or(|rs| {
        rs.iter()
            .map(AsRef::as_ref)
            .any(|r| r.begin <= value && value <= r.end)
    })
}

/// Days in a month of the proleptic Gregorian calendar.
///
/// Alertmanager 0.25 measures a month as its length in hours divided by 24, which makes a
/// month with a daylight-saving change in the spring one day short (March in Paris has
/// "30" days there, so `-1` is March 30). We count calendar days.
fn days_in_month(year: i32, month: u32) -> u32 {
    let (ny, nm) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    match (
        NaiveDate::from_ymd_opt(year, month, 1),
        NaiveDate::from_ymd_opt(ny, nm, 1),
    ) {
        (Some(a), Some(b)) => u32::try_from((b - a).num_days()).unwrap_or(31),
        _ => 31,
    }
}

/// Minutes of the day, `[start_minute, end_minute)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    /// First minute inside, 0 to 1439.
    pub start_minute: i64,
    /// First minute after, 1 to 1440.
    pub end_minute: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeRange {
    /// First minute inside, `HH:MM`. Required. Example: `start_time: '09:00'`.
    #[serde(default)]
    start_time: String,
    /// First minute after, `HH:MM`, up to `24:00`. Required. Example: `end_time: '17:30'`.
    #[serde(default)]
    end_time: String,
}

impl<'de> Deserialize<'de> for TimeRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawTimeRange::deserialize(d)?;
        parse_time_range(&raw.start_time, &raw.end_time).map_err(serde::de::Error::custom)
    }
}

fn parse_time_range(start: &str, end: &str) -> Result<TimeRange, String> {
    if start.is_empty() || end.is_empty() {
        return Err("both start and end times must be provided".into());
    }
    let (start_minute, end_minute) = (parse_hhmm(start)?, parse_hhmm(end)?);
    if start_minute >= end_minute {
        return Err("start time cannot be equal or greater than end time".into());
    }
    Ok(TimeRange {
        start_minute,
        end_minute,
    })
}

/// `HH:MM` from `00:00` to `23:59`, or `24:00`, in minutes of the day.
///
/// # Errors
/// Alertmanager's message for any other text.
pub fn parse_hhmm(text: &str) -> Result<i64, String> {
    let bad = || format!("couldn't parse timestamp {text}, invalid format");
    let b = text.as_bytes();
    if b.len() != 5
        || b[2] != b':'
        || !b
            .iter()
            .enumerate()
            .all(|(i, c)| i == 2 || c.is_ascii_digit())
    {
        return Err(bad());
    }
    let num = |i: usize| i64::from(b[i] - b'0') * 10 + i64::from(b[i + 1] - b'0');
    let (h, m) = (num(0), num(3));
    match (h, m) {
        (24, 0) => Ok(1440),
        (0..=23, 0..=59) => Ok(h * 60 + m),
        _ => Err(bad()),
    }
}

/// An inclusive range of integers (weekdays 0 = Sunday to 6, days of the month, months 1
/// to 12, years).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InclusiveRange {
    /// First value inside.
    pub begin: i64,
    /// Last value inside.
    pub end: i64,
}

macro_rules! range_type {
    ($name:ident, $doc:literal, $parse:ident) => {
        #[doc = $doc]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name(pub InclusiveRange);

        impl AsRef<InclusiveRange> for $name {
            fn as_ref(&self) -> &InclusiveRange {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                $parse(&text).map($name).map_err(serde::de::Error::custom)
            }
        }
    };
}

range_type!(
    WeekdayRange,
    "`monday`, `monday:friday` (Sunday is 0).",
    parse_weekdays
);
range_type!(
    DayOfMonthRange,
    "`1`, `1:15`, `-1`, `-7:-1` (negative: from the end of the month).",
    parse_days_of_month
);
range_type!(MonthRange, "`january`, `1:3`, `march:may`.", parse_months);
range_type!(YearRange, "`2025`, `2025:2027`.", parse_years);

const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// Splits `a` or `a:b` (lowercased) and maps both ends.
fn split_range(
    text: &str,
    member: impl Fn(&str) -> Result<i64, String>,
) -> Result<InclusiveRange, String> {
    let lower = text.to_lowercase();
    let parts: Vec<&str> = lower.split(':').collect();
    match parts.as_slice() {
        [one] => {
            let v = member(one)?;
            Ok(InclusiveRange { begin: v, end: v })
        }
        [a, b] => Ok(InclusiveRange {
            begin: member(a)?,
            end: member(b)?,
        }),
        _ => Err(format!("couldn't parse range {lower}, invalid format")),
    }
}

fn atoi(s: &str) -> Result<i64, String> {
    // Go's strconv.Atoi: an optional sign and decimal digits.
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.Atoi: parsing {s:?}: invalid syntax"));
    }
    s.parse::<i64>()
        .map_err(|_| format!("strconv.Atoi: parsing {s:?}: value out of range"))
}

fn position(names: &[&str], s: &str) -> Option<i64> {
    names
        .iter()
        .position(|n| *n == s)
        .and_then(|i| i64::try_from(i).ok())
}

fn parse_weekdays(text: &str) -> Result<InclusiveRange, String> {
    let r = split_range(text, |s| {
        position(&WEEKDAYS, s).ok_or_else(|| format!("{s} is not a valid weekday"))
    })?;
    if r.begin > r.end {
        return Err("start day cannot be before end day".into());
    }
    Ok(r)
}

fn parse_days_of_month(text: &str) -> Result<InclusiveRange, String> {
    let r = split_range(text, atoi)?;
    for v in [r.begin, r.end] {
        if v == 0 || !(-31..=31).contains(&v) {
            return Err(format!("{v} is not a valid day of the month: out of range"));
        }
    }
    if r.begin < 0 && r.end > 0 {
        return Err("end day must be negative if start day is negative".into());
    }
    // Reject what is wrong in every month (taking the shortest month, 28 days).
    let check = |v: i64| if v < 0 { 28 + v } else { v };
    if check(r.begin) > check(r.end) {
        return Err(format!(
            "end day {} is always before start day {}",
            r.end, r.begin
        ));
    }
    Ok(r)
}

fn parse_months(text: &str) -> Result<InclusiveRange, String> {
    let r = split_range(text, |s| match position(&MONTHS, s) {
        Some(i) => Ok(i + 1),
        None => atoi(s).map_err(|_| format!("{s} is not a valid month")),
    })?;
    // Alertmanager 0.25 accepts month numbers out of range (they never match); refusing
    // them catches a typo.
    for v in [r.begin, r.end] {
        if !(1..=12).contains(&v) {
            return Err(format!("{v} is not a valid month: out of range"));
        }
    }
    if r.begin > r.end {
        let name = |v: i64| {
            usize::try_from(v - 1)
                .ok()
                .and_then(|i| MONTHS.get(i))
                .copied()
                .unwrap_or("?")
        };
        return Err(format!(
            "end month {} is before start month {}",
            name(r.end),
            name(r.begin)
        ));
    }
    Ok(r)
}

fn parse_years(text: &str) -> Result<InclusiveRange, String> {
    let r = split_range(text, atoi)?;
    if r.begin > r.end {
        return Err(format!(
            "end year {} is before start year {}",
            r.end, r.begin
        ));
    }
    Ok(r)
}

// ---------------------------------------------------------------------------------------------
// Time zones
// ---------------------------------------------------------------------------------------------

/// A time zone: UTC, or the rules of a TZif file of the IANA database.
#[derive(Clone)]
pub struct Zone {
    name: String,
    tz: Option<Arc<Tzif>>,
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Zone({:?})", self.name)
    }
}

impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Zone::load(&name).map_err(serde::de::Error::custom)
    }
}

impl Zone {
    /// UTC.
    pub fn utc() -> Self {
        Zone {
            name: "UTC".into(),
            tz: None,
        }
    }

    /// Loads a zone by IANA name from [`ZONEINFO_DIR`], as Go's `time.LoadLocation`:
    /// `""` and `UTC` are UTC, `Local` is `/etc/localtime` (UTC when it is missing).
    ///
    /// # Errors
    /// `unknown time zone NAME` when the database has no such zone (or cannot be read),
    /// `invalid location name` for a path that leaves the database.
    pub fn load(name: &str) -> Result<Self, String> {
        Self::load_from(Path::new(ZONEINFO_DIR), name)
    }

    /// [`Zone::load`] from another copy of the database (tests).
    ///
    /// # Errors
    /// As [`Zone::load`].
    pub fn load_from(dir: &Path, name: &str) -> Result<Self, String> {
        match name {
            "" | "UTC" => return Ok(Zone::utc()),
            "Local" => {
                return Ok(match std::fs::read("/etc/localtime") {
                    Ok(bytes) => match Tzif::parse(&bytes) {
                        Some(tz) => Zone {
                            name: "Local".into(),
                            tz: Some(Arc::new(tz)),
                        },
                        None => Zone::utc(),
                    },
                    Err(_) => Zone::utc(),
                });
            }
            _ => {}
        }
        if name.starts_with('/') || name.starts_with('\\') || name.split('/').any(|p| p == "..") {
            return Err(format!("invalid location name {name:?}"));
        }
        let unknown = || format!("unknown time zone {name}");
        let bytes = std::fs::read(dir.join(name)).map_err(|_| unknown())?;
        let tz = Tzif::parse(&bytes).ok_or_else(unknown)?;
        Ok(Zone {
            name: name.to_string(),
            tz: Some(Arc::new(tz)),
        })
    }

    /// The name it was loaded by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The offset from UTC (seconds east) at a Unix time.
    pub fn offset_at(&self, unix: i64) -> i64 {
        self.tz.as_ref().map_or(0, |tz| tz.offset_at(unix))
    }

    /// The wall-clock time in this zone at `t`.
    pub fn to_local(&self, t: DateTime<Utc>) -> NaiveDateTime {
        let offset = chrono::TimeDelta::seconds(self.offset_at(t.timestamp()));
        t.naive_utc()
            .checked_add_signed(offset)
            .unwrap_or(t.naive_utc())
    }

    /// The instant when the wall clock of this zone shows `local`. A time skipped by a
    /// daylight-saving change is moved forward by the change (02:30 becomes 03:30); a time
    /// shown twice is its first occurrence.
    pub fn from_local(&self, local: NaiveDateTime) -> DateTime<Utc> {
        let l = local.and_utc().timestamp();
        let before = self.offset_at(l - 86_400);
        let after = self.offset_at(l + 86_400);
        let valid: Vec<i64> = [before, after]
            .into_iter()
            .map(|o| l - o)
            .filter(|u| self.to_local_secs(*u) == l)
            .collect();
        let unix = valid.into_iter().min().unwrap_or(l - before);
        DateTime::from_timestamp(unix, 0).unwrap_or_default()
    }

    fn to_local_secs(&self, unix: i64) -> i64 {
        unix + self.offset_at(unix)
    }
}

/// The parts of a TZif file (RFC 8536) needed to find the offset at an instant.
#[derive(Debug)]
struct Tzif {
    /// Transition times (Unix seconds), ascending.
    transitions: Vec<i64>,
    /// For each transition, the index of its local time type.
    indices: Vec<u8>,
    /// Local time types: UTC offset in seconds.
    offsets: Vec<i64>,
    /// The footer's rule, for instants after the last transition.
    footer: Option<PosixTz>,
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i32(&mut self) -> Option<i64> {
        self.u32()
            .map(|v| i64::from(i32::from_be_bytes(v.to_be_bytes())))
    }

    fn i64(&mut self) -> Option<i64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(i64::from_be_bytes(a))
    }

    fn count(&mut self) -> Option<usize> {
        self.u32().and_then(|v| usize::try_from(v).ok())
    }
}

struct Header {
    version: u8,
    isutcnt: usize,
    isstdcnt: usize,
    leapcnt: usize,
    timecnt: usize,
    typecnt: usize,
    charcnt: usize,
}

impl Tzif {
    fn parse(bytes: &[u8]) -> Option<Tzif> {
        let mut r = Reader { bytes, pos: 0 };
        let h = Self::header(&mut r)?;
        if h.version >= b'2' {
            // Skip the 32-bit body; the 64-bit one follows with its own header.
            let v1 = h.timecnt * 5 + h.typecnt * 6 + h.charcnt + h.leapcnt * 8;
            r.take(v1 + h.isstdcnt + h.isutcnt)?;
            let h2 = Self::header(&mut r)?;
            let mut tz = Self::body(&mut r, &h2, 8)?;
            // Footer: "\n<POSIX TZ>\n".
            let rest = r.bytes.get(r.pos..)?;
            if let Some(text) = rest
                .strip_prefix(b"\n")
                .and_then(|t| t.split(|b| *b == b'\n').next())
            {
                tz.footer = std::str::from_utf8(text).ok().and_then(PosixTz::parse);
            }
            Some(tz)
        } else {
            Self::body(&mut r, &h, 4)
        }
    }

    fn header(r: &mut Reader<'_>) -> Option<Header> {
        if r.take(4)? != b"TZif" {
            return None;
        }
        let version = r.take(1)?[0];
        r.take(15)?;
        Some(Header {
            version,
            isutcnt: r.count()?,
            isstdcnt: r.count()?,
            leapcnt: r.count()?,
            timecnt: r.count()?,
            typecnt: r.count()?,
            charcnt: r.count()?,
        })
    }

    fn body(r: &mut Reader<'_>, h: &Header, time_size: usize) -> Option<Tzif> {
        let mut transitions = Vec::with_capacity(h.timecnt);
        for _ in 0..h.timecnt {
            transitions.push(if time_size == 8 { r.i64()? } else { r.i32()? });
        }
        let indices = r.take(h.timecnt)?.to_vec();
        let mut offsets = Vec::with_capacity(h.typecnt);
        for _ in 0..h.typecnt {
            offsets.push(r.i32()?);
            r.take(2)?; // isdst, desigidx
        }
        if offsets.is_empty() || indices.iter().any(|i| usize::from(*i) >= offsets.len()) {
            return None;
        }
        r.take(h.charcnt + h.leapcnt * (time_size + 4) + h.isstdcnt + h.isutcnt)?;
        Some(Tzif {
            transitions,
            indices,
            offsets,
            footer: None,
        })
    }

    fn offset_at(&self, unix: i64) -> i64 {
        // Index of the last transition at or before `unix`.
        let n = self.transitions.partition_point(|t| *t <= unix);
        if n == 0 {
            return match (&self.footer, self.transitions.is_empty()) {
                (Some(f), true) => f.offset_at(unix),
                _ => self.offsets[0],
            };
        }
        if n == self.transitions.len()
            && let Some(f) = &self.footer
        {
            return f.offset_at(unix);
        }
        let idx = usize::from(self.indices[n - 1]);
        self.offsets.get(idx).copied().unwrap_or(0)
    }
}

/// A POSIX TZ rule such as `CET-1CEST,M3.5.0,M10.5.0/3` (the TZif footer).
#[derive(Debug, Clone, PartialEq)]
struct PosixTz {
    /// Standard offset, seconds east of UTC.
    std: i64,
    /// Daylight saving: its offset and the rules for its start and end.
    dst: Option<(i64, RuleDate, RuleDate)>,
}

/// When daylight saving starts or ends: a day of the year and a local time.
#[derive(Debug, Clone, Copy, PartialEq)]
enum RuleDay {
    /// `Jn`: day 1 to 365, February 29 never counted.
    Julian1(i64),
    /// `n`: day 0 to 365, February 29 counted.
    Julian0(i64),
    /// `Mm.w.d`: weekday `d` (0 = Sunday) of week `w` (5 = last) of month `m`.
    Month(u32, i64, i64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct RuleDate {
    day: RuleDay,
    /// Seconds after local midnight (may be negative or past 24 h).
    time: i64,
}

impl PosixTz {
    fn parse(text: &str) -> Option<PosixTz> {
        let mut s = text;
        Self::name(&mut s)?;
        // POSIX offsets count west of UTC.
        let std = -Self::offset(&mut s)?;
        if s.is_empty() {
            return Some(PosixTz { std, dst: None });
        }
        Self::name(&mut s)?;
        let dst_off = if s.starts_with(',') || s.is_empty() {
            std + 3600
        } else {
            -Self::offset(&mut s)?
        };
        let (start, end) = if s.is_empty() {
            // Go's default when no rule is given: the US rule.
            (
                RuleDate {
                    day: RuleDay::Month(3, 2, 0),
                    time: 7200,
                },
                RuleDate {
                    day: RuleDay::Month(11, 1, 0),
                    time: 7200,
                },
            )
        } else {
            s = s.strip_prefix(',')?;
            let start = Self::rule(&mut s)?;
            s = s.strip_prefix(',')?;
            let end = Self::rule(&mut s)?;
            if !s.is_empty() {
                return None;
            }
            (start, end)
        };
        Some(PosixTz {
            std,
            dst: Some((dst_off, start, end)),
        })
    }

    fn name(s: &mut &str) -> Option<()> {
        if let Some(rest) = s.strip_prefix('<') {
            let end = rest.find('>')?;
            *s = &rest[end + 1..];
        } else {
            let n = s.bytes().take_while(u8::is_ascii_alphabetic).count();
            if n < 3 {
                return None;
            }
            *s = &s[n..];
        }
        Some(())
    }

    fn number(s: &mut &str) -> Option<i64> {
        let n = s.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        let v = s[..n].parse().ok()?;
        *s = &s[n..];
        Some(v)
    }

    /// `[+-]hh[:mm[:ss]]` in seconds.
    fn offset(s: &mut &str) -> Option<i64> {
        let sign = if let Some(r) = s.strip_prefix('-') {
            *s = r;
            -1
        } else {
            *s = s.strip_prefix('+').unwrap_or(s);
            1
        };
        let mut secs = Self::number(s)? * 3600;
        for unit in [60, 1] {
            match s.strip_prefix(':') {
                Some(r) => {
                    *s = r;
                    secs += Self::number(s)? * unit;
                }
                None => break,
            }
        }
        Some(sign * secs)
    }

    fn rule(s: &mut &str) -> Option<RuleDate> {
        let day = if let Some(r) = s.strip_prefix('J') {
            *s = r;
            RuleDay::Julian1(Self::number(s)?)
        } else if let Some(r) = s.strip_prefix('M') {
            *s = r;
            let m = u32::try_from(Self::number(s)?).ok()?;
            *s = s.strip_prefix('.')?;
            let w = Self::number(s)?;
            *s = s.strip_prefix('.')?;
            let d = Self::number(s)?;
            if !(1..=12).contains(&m) || !(1..=5).contains(&w) || d > 6 {
                return None;
            }
            RuleDay::Month(m, w, d)
        } else {
            RuleDay::Julian0(Self::number(s)?)
        };
        let time = match s.strip_prefix('/') {
            Some(r) => {
                *s = r;
                Self::offset(s)?
            }
            None => 7200,
        };
        Some(RuleDate { day, time })
    }

    fn offset_at(&self, unix: i64) -> i64 {
        let Some((dst, start, end)) = self.dst else {
            return self.std;
        };
        let Some(year) = DateTime::from_timestamp(unix + self.std, 0).map(|d| d.year()) else {
            return self.std;
        };
        // The start is given in standard time, the end in daylight time.
        let (Some(s), Some(e)) = (
            start.local_secs(year).map(|l| l - self.std),
            end.local_secs(year).map(|l| l - dst),
        ) else {
            return self.std;
        };
        let in_dst = if s < e {
            s <= unix && unix < e
        } else {
            !(e <= unix && unix < s)
        };
        if in_dst { dst } else { self.std }
    }
}

impl RuleDate {
    /// The rule's moment in `year`, as seconds since the epoch of local wall time.
    fn local_secs(&self, year: i32) -> Option<i64> {
        let leap = NaiveDate::from_ymd_opt(year, 2, 29).is_some();
        let date = match self.day {
            RuleDay::Julian1(n) => {
                let n = if leap && n >= 60 { n + 1 } else { n };
                NaiveDate::from_yo_opt(year, u32::try_from(n).ok()?)?
            }
            RuleDay::Julian0(n) => NaiveDate::from_yo_opt(year, u32::try_from(n + 1).ok()?)?,
            RuleDay::Month(m, w, d) => {
                let first = NaiveDate::from_ymd_opt(year, m, 1)?;
                let wd0 = i64::from(first.weekday().num_days_from_sunday());
                let mut day = 1 + (d - wd0).rem_euclid(7) + (w - 1) * 7;
                let days = i64::from(days_in_month(year, m));
                while day > days {
                    day -= 7;
                }
                NaiveDate::from_ymd_opt(year, m, u32::try_from(day).ok()?)?
            }
        };
        Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp() + self.time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn spec(text: &str) -> Result<TimeSpec, Vec<String>> {
        let node = yaml::parse("t.yml", text).unwrap();
        let mut cx = yaml::Context::new("t.yml");
        let r = cx.deserialize::<TimeSpec>(&node, "ti", &[]);
        if cx.diagnostics.is_empty() {
            Ok(r.unwrap())
        } else {
            Err(cx.diagnostics.iter().map(|d| d.message.clone()).collect())
        }
    }

    #[test]
    fn parses_like_alertmanager() {
        let s = spec(
            "times: [{start_time: '09:00', end_time: '17:00'}]\nweekdays: ['Monday:friday']\n\
             days_of_month: ['1:5', -1]\nmonths: ['january:march', 5]\nyears: ['2020:2030']\n\
             location: Europe/Paris\n",
        )
        .unwrap();
        assert_eq!(
            s.times,
            Some(vec![TimeRange {
                start_minute: 540,
                end_minute: 1020
            }])
        );
        assert_eq!(
            s.weekdays.unwrap()[0].0,
            InclusiveRange { begin: 1, end: 5 }
        );
        let dom = s.days_of_month.unwrap();
        assert_eq!(dom[1].0, InclusiveRange { begin: -1, end: -1 });
        assert_eq!(s.months.unwrap()[1].0, InclusiveRange { begin: 5, end: 5 });
        assert_eq!(s.location.unwrap().name(), "Europe/Paris");
        assert!(spec("times: [{start_time: '00:00', end_time: '24:00'}]").is_ok());
        assert!(spec("location: UTC").is_ok());
        assert!(spec("location: Local").is_ok());
        assert!(spec("days_of_month: ['5:-1']").is_ok());

        // Alertmanager 0.25's messages (amtool check-config), one per case.
        let cases = [
            ("location: Nowhere/City", "unknown time zone Nowhere/City"),
            (
                "location: ../../etc/passwd",
                r#"invalid location name "../../etc/passwd""#,
            ),
            (
                "times: [{start_time: '09:00'}]",
                "both start and end times must be provided",
            ),
            (
                "times: [{start_time: '9:00', end_time: '10:00'}]",
                "couldn't parse timestamp 9:00, invalid format",
            ),
            (
                "times: [{start_time: '10:00', end_time: '10:00'}]",
                "start time cannot be equal or greater than end time",
            ),
            (
                "times: [{start_time: '00:00', end_time: '24:01'}]",
                "couldn't parse timestamp 24:01, invalid format",
            ),
            ("weekdays: [funday]", "funday is not a valid weekday"),
            (
                "weekdays: ['friday:monday']",
                "start day cannot be before end day",
            ),
            ("weekdays: ['1']", "1 is not a valid weekday"),
            (
                "weekdays: ['monday:tuesday:friday']",
                "couldn't parse range monday:tuesday:friday, invalid format",
            ),
            (
                "days_of_month: [0]",
                "0 is not a valid day of the month: out of range",
            ),
            (
                "days_of_month: [32]",
                "32 is not a valid day of the month: out of range",
            ),
            (
                "days_of_month: ['-1:5']",
                "end day must be negative if start day is negative",
            ),
            (
                "days_of_month: ['-5:-10']",
                "end day -10 is always before start day -5",
            ),
            (
                "days_of_month: ['20:-10']",
                "end day -10 is always before start day 20",
            ),
            (
                "days_of_month: [x]",
                r#"strconv.Atoi: parsing "x": invalid syntax"#,
            ),
            (
                "months: ['march:january']",
                "end month january is before start month march",
            ),
            ("months: [foo]", "foo is not a valid month"),
            ("months: [13]", "13 is not a valid month: out of range"),
            (
                "years: ['2030:2020']",
                "end year 2020 is before start year 2030",
            ),
        ];
        for (text, message) in cases {
            assert_eq!(spec(text), Err(vec![message.to_string()]), "{text}");
        }
    }

    #[test]
    fn ranges_weekdays_and_times() {
        let s = spec(
            "times: [{start_time: '09:00', end_time: '17:00'}]\nweekdays: ['monday:friday']\n",
        )
        .unwrap();
        // 2024-06-03 is a Monday.
        assert!(s.contains(at("2024-06-03T09:00:00Z")));
        assert!(s.contains(at("2024-06-03T16:59:59Z")));
        assert!(!s.contains(at("2024-06-03T17:00:00Z")));
        assert!(!s.contains(at("2024-06-03T08:59:59Z")));
        assert!(!s.contains(at("2024-06-08T10:00:00Z"))); // Saturday
        let all_day = spec("times: [{start_time: '22:00', end_time: '24:00'}]").unwrap();
        assert!(all_day.contains(at("2024-06-03T23:59:59Z")));
        assert!(!all_day.contains(at("2024-06-04T00:00:00Z")));
        // Several entries: any of them.
        let ti = TimeInterval {
            name: "x".into(),
            intervals: vec![
                spec("weekdays: [saturday]").unwrap(),
                spec("months: [december]").unwrap(),
            ],
        };
        assert!(ti.contains(at("2024-06-08T10:00:00Z")));
        assert!(ti.contains(at("2024-12-03T10:00:00Z")));
        assert!(!ti.contains(at("2024-06-03T10:00:00Z")));
        // An empty list contains nothing; a missing field everything.
        assert!(
            !spec("weekdays: []")
                .unwrap()
                .contains(at("2024-06-03T10:00:00Z"))
        );
        assert!(spec("{}").unwrap().contains(at("2024-06-03T10:00:00Z")));
        let y = spec("years: ['2024:2025']\nmonths: ['2:3']").unwrap();
        assert!(y.contains(at("2025-03-31T10:00:00Z")));
        assert!(!y.contains(at("2026-03-01T10:00:00Z")));
        assert!(!y.contains(at("2025-04-01T00:00:00Z")));
    }

    #[test]
    fn negative_days_of_month() {
        let last = spec("days_of_month: [-1]").unwrap();
        assert!(last.contains(at("2024-02-29T12:00:00Z")));
        assert!(!last.contains(at("2024-02-28T12:00:00Z")));
        assert!(last.contains(at("2023-02-28T12:00:00Z")));
        assert!(last.contains(at("2024-04-30T00:00:00Z")));
        assert!(!last.contains(at("2024-05-30T00:00:00Z")));
        let last_week = spec("days_of_month: ['-7:-1']").unwrap();
        assert!(last_week.contains(at("2024-01-25T00:00:00Z")));
        assert!(!last_week.contains(at("2024-01-24T23:59:00Z")));
        // From the 25th to the second-to-last day.
        let mixed = spec("days_of_month: ['25:-2']").unwrap();
        assert!(mixed.contains(at("2024-01-30T00:00:00Z")));
        assert!(!mixed.contains(at("2024-01-31T00:00:00Z")));
        // A start past the end of a short month never matches there.
        let late = spec("days_of_month: ['31']").unwrap();
        assert!(!late.contains(at("2024-04-30T00:00:00Z")));
        assert!(late.contains(at("2024-05-31T00:00:00Z")));
        // Calendar days, in a zone with a spring DST change too (see `days_in_month`).
        let paris = spec("days_of_month: [-1]\nlocation: Europe/Paris").unwrap();
        assert!(paris.contains(at("2024-03-31T12:00:00Z")));
        assert!(!paris.contains(at("2024-03-30T12:00:00Z")));
    }

    #[test]
    fn zones_with_daylight_saving() {
        let paris = Zone::load("Europe/Paris").expect("tzdata (apt-get install tzdata)");
        // Winter: UTC+1; summer: UTC+2; changes on the last Sundays of March and October at
        // 01:00 UTC.
        assert_eq!(
            paris.offset_at(at("2024-01-15T12:00:00Z").timestamp()),
            3600
        );
        assert_eq!(
            paris.offset_at(at("2024-07-15T12:00:00Z").timestamp()),
            7200
        );
        assert_eq!(
            paris.offset_at(at("2024-03-31T00:59:59Z").timestamp()),
            3600
        );
        assert_eq!(
            paris.offset_at(at("2024-03-31T01:00:00Z").timestamp()),
            7200
        );
        assert_eq!(
            paris.offset_at(at("2024-10-27T00:59:59Z").timestamp()),
            7200
        );
        assert_eq!(
            paris.offset_at(at("2024-10-27T01:00:00Z").timestamp()),
            3600
        );
        // Past the file's last transition: the footer's rule (and before 1900: LMT).
        assert_eq!(
            paris.offset_at(at("2090-07-01T00:00:00Z").timestamp()),
            7200
        );
        assert_eq!(
            paris.offset_at(at("2090-03-26T00:59:59Z").timestamp()),
            3600
        );
        assert_eq!(
            paris.offset_at(at("2090-03-26T01:00:00Z").timestamp()),
            7200
        );
        assert_eq!(
            paris.offset_at(at("2090-12-01T00:00:00Z").timestamp()),
            3600
        );
        assert_eq!(paris.offset_at(at("1850-01-01T00:00:00Z").timestamp()), 561);
        // Southern hemisphere: DST over the new year.
        let sydney = Zone::load("Australia/Sydney").unwrap();
        assert_eq!(
            sydney.offset_at(at("2090-01-10T00:00:00Z").timestamp()),
            11 * 3600
        );
        assert_eq!(
            sydney.offset_at(at("2090-07-10T00:00:00Z").timestamp()),
            10 * 3600
        );
        assert_eq!(
            sydney.offset_at(at("2024-01-10T00:00:00Z").timestamp()),
            11 * 3600
        );
        let ny = Zone::load("America/New_York").unwrap();
        assert_eq!(
            ny.offset_at(at("2024-07-04T12:00:00Z").timestamp()),
            -4 * 3600
        );
        assert_eq!(
            ny.offset_at(at("2100-01-04T12:00:00Z").timestamp()),
            -5 * 3600
        );

        // Business hours in Paris: 09:00 local is 08:00 UTC in winter, 07:00 in summer.
        let s = spec("times: [{start_time: '09:00', end_time: '18:00'}]\nlocation: Europe/Paris\n")
            .unwrap();
        assert!(s.contains(at("2024-01-15T08:00:00Z")));
        assert!(!s.contains(at("2024-01-15T07:59:00Z")));
        assert!(s.contains(at("2024-07-15T07:00:00Z")));
        assert!(!s.contains(at("2024-07-15T16:00:00Z")));
        // The weekday is the local one: Monday 00:30 in Paris is Sunday 22:30 UTC.
        let monday = spec("weekdays: [monday]\nlocation: Europe/Paris").unwrap();
        assert!(monday.contains(at("2024-06-02T22:30:00Z")));
        assert!(!monday.contains(at("2024-06-02T21:30:00Z")));
    }

    #[test]
    fn local_to_utc() {
        let paris = Zone::load("Europe/Paris").unwrap();
        let local = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        assert_eq!(
            paris.from_local(local("2024-01-15 08:00")),
            at("2024-01-15T07:00:00Z")
        );
        assert_eq!(
            paris.from_local(local("2024-07-15 08:00")),
            at("2024-07-15T06:00:00Z")
        );
        // Skipped: 02:30 on 2024-03-31 does not exist; moved forward to 03:30 (01:30 UTC).
        assert_eq!(
            paris.from_local(local("2024-03-31 02:30")),
            at("2024-03-31T01:30:00Z")
        );
        // Shown twice: 02:30 on 2024-10-27, the first one (still UTC+2).
        assert_eq!(
            paris.from_local(local("2024-10-27 02:30")),
            at("2024-10-27T00:30:00Z")
        );
        assert_eq!(
            Zone::utc().from_local(local("2024-10-27 02:30")),
            at("2024-10-27T02:30:00Z")
        );
    }

    #[test]
    fn posix_rules() {
        let p = PosixTz::parse("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        assert_eq!(p.std, 3600);
        assert_eq!(p.dst.map(|d| d.0), Some(7200));
        assert_eq!(PosixTz::parse("UTC0"), Some(PosixTz { std: 0, dst: None }));
        assert_eq!(
            PosixTz::parse("<+0330>-3:30").map(|p| p.std),
            Some(3 * 3600 + 1800)
        );
        let j = PosixTz::parse("XXX3YYY,J60/0,300/0").unwrap();
        assert_eq!(
            j.offset_at(at("2024-06-01T00:00:00Z").timestamp()),
            -2 * 3600
        );
        assert_eq!(
            j.offset_at(at("2024-01-01T00:00:00Z").timestamp()),
            -3 * 3600
        );
        assert!(PosixTz::parse("A1").is_none());
        assert!(PosixTz::parse("CET-1CEST,M13.5.0,M10.5.0").is_none());
        assert!(Tzif::parse(b"TZif2garbage").is_none());
        assert!(Tzif::parse(b"").is_none());
    }
}
