//! `backup_files` check: dated backup files in a folder, such as the `pg_dump` files
//! `backup_YYYYMMDD.sql` that the Harena host keeps in `/home/ec2-user`.
//!
//! ```yaml
//! - name: pg_dump_backups
//!   kind: backup_files
//!   directory: /home/ec2-user
//!   pattern: backup_%Y%m%d.sql
//!   max_age: 26h
//!   require_pg_dump_trailer: true
//! ```
//!
//! Each run lists the folder, keeps the regular files whose name matches `pattern`, and
//! judges the newest one (the greatest date in its name; the later modification time
//! breaks a tie): it must exist, be younger than `max_age`, weigh at least `min_size`
//! and, when asked, end with the line that `pg_dump` writes last. Files are never read
//! whole: the trailer check reads the first bytes (to recognise a custom-format or a
//! compressed dump) and the last 4 KiB. All file I/O runs on tokio's blocking pool,
//! bounded by the run's deadline.
//!
//! # The backup's time
//! A name holds a date at some resolution: `%Y%m%d` says "some time on that day". The
//! modification time says when the file was written, but a copy (`cp` without `-p`)
//! resets it. So the backup's time is its modification time, clamped into the period
//! its name stands for: a dump named for Nov 25 and written at 03:10 that day counts
//! from 03:10 (the name alone would say 00:00 and make it look 3 hours older than it
//! is); a dump that started at 23:55 and finished after midnight counts from the end of
//! its day; a file written before its name's period counts from the start of it. With a
//! name that carries seconds, the name's time is used as it is. Dates in names are
//! read as UTC (the EC2 host's clock and `date` run in UTC).

use std::fmt::Write as _;
use std::fs::{File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Months, NaiveDate, NaiveDateTime, TimeDelta, Utc};
use regex::Regex;
use serde::Deserialize;
use tokio::time::Instant;

use super::{BuildError, Check, CheckError, Reason, Recorder, RunContext};
use crate::config::types::PromDuration;
use crate::net;

crate::metric!(
    LAST_SUCCESS,
    gauge,
    "harena_backup_last_success_timestamp_seconds",
    "Time of the newest backup: its modification time clamped into the period its name's date stands for (Unix seconds)."
);
crate::metric!(
    LAST_MODIFIED,
    gauge,
    "harena_backup_last_modified_timestamp_seconds",
    "Modification time of the newest backup file (Unix seconds)."
);
crate::metric!(
    SIZE,
    gauge,
    "harena_backup_size_bytes",
    "Size of the newest backup file."
);
crate::metric!(
    COUNT,
    gauge,
    "harena_backup_files",
    "Number of files in the directory whose name matches the pattern."
);
crate::metric!(
    TRUNCATED,
    gauge,
    "harena_backup_truncated",
    "1 when require_pg_dump_trailer is on and the newest plain-text dump lacks pg_dump's closing line, else 0."
);
crate::metric!(
    FS_FREE,
    gauge,
    "harena_backup_filesystem_free_bytes",
    "Bytes available to unprivileged users on the backup directory's filesystem."
);
crate::metric!(
    FS_SIZE,
    gauge,
    "harena_backup_filesystem_size_bytes",
    "Total size of the backup directory's filesystem."
);

/// How much of a dump's end is read to find its closing line.
pub const TAIL_BYTES: u64 = 4096;

/// The lines `pg_dump` and `pg_dumpall` write at the very end of a plain-text dump
/// (newer versions add only a `\unrestrict` line after them).
const TRAILERS: [&str; 2] = [
    "-- PostgreSQL database dump complete",
    "-- PostgreSQL database cluster dump complete",
];

/// The keys of a `backup_files` check.
///
/// ```yaml
/// - name: pg_dump_backups
///   kind: backup_files
///   directory: /home/ec2-user
///   pattern: backup_%Y%m%d.sql
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupFilesConfig {
    /// The folder that holds the backups; it is listed, not searched recursively.
    /// Required. Example: `directory: /home/ec2-user/backups`.
    pub directory: PathBuf,
    /// The backup file name, with the date written as strftime fields: `%Y` (4 digits),
    /// `%m`, `%d`, `%H`, `%M`, `%S` (2 digits each) and `%%` for a `%`; the rest is
    /// literal. The fields present must run from `%Y` down without a gap (`%Y%m%d`,
    /// `%Y%m%d%H%M`, …). Dates are UTC. Also the value of the `backup` label. Required.
    /// Example: `pattern: backup_%Y%m%d.sql`.
    pub pattern: String,
    /// The newest backup may be at most this old (see the module docs for how its time
    /// is found). Default `26h` (a daily job, plus slack).
    /// Example: `max_age: 8d` for weekly backups.
    #[serde(default = "default_max_age")]
    pub max_age: PromDuration,
    /// The newest backup must weigh at least this many bytes. Default `1024`.
    /// Example: `min_size: 1048576`.
    #[serde(default = "default_min_size")]
    pub min_size: u64,
    /// The newest backup, when it is a plain-text `pg_dump` file, must end with
    /// `-- PostgreSQL database dump complete`: a dump cut short by a full disk or a
    /// killed job lacks it. Custom-format dumps (`pg_dump -Fc`, starting with `PGDMP`)
    /// and compressed files (gzip, zstd, bzip2, xz) are not checked. Default `false`.
    /// Example: `require_pg_dump_trailer: true`.
    #[serde(default)]
    pub require_pg_dump_trailer: bool,
}

fn default_max_age() -> PromDuration {
    PromDuration(Duration::from_secs(26 * 3600))
}

fn default_min_size() -> u64 {
    1024
}

/// A date field of a name pattern, from the largest to the smallest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Field {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
}

impl Field {
    const ALL: [Field; 6] = [
        Field::Year,
        Field::Month,
        Field::Day,
        Field::Hour,
        Field::Minute,
        Field::Second,
    ];

    fn from_conversion(c: char) -> Option<Field> {
        Some(match c {
            'Y' => Field::Year,
            'm' => Field::Month,
            'd' => Field::Day,
            'H' => Field::Hour,
            'M' => Field::Minute,
            'S' => Field::Second,
            _ => return None,
        })
    }

    fn conversion(self) -> &'static str {
        match self {
            Field::Year => "%Y",
            Field::Month => "%m",
            Field::Day => "%d",
            Field::Hour => "%H",
            Field::Minute => "%M",
            Field::Second => "%S",
        }
    }

    fn index(self) -> usize {
        match self {
            Field::Year => 0,
            Field::Month => 1,
            Field::Day => 2,
            Field::Hour => 3,
            Field::Minute => 4,
            Field::Second => 5,
        }
    }
}

/// A compiled `pattern`: a regular expression over whole names, and what its groups are.
#[derive(Debug)]
struct NamePattern {
    regex: Regex,
    /// The field of each capture group, in order.
    groups: Vec<Field>,
    /// The smallest field present: the resolution of the names' dates.
    resolution: Field,
}

impl NamePattern {
    /// Compiles a strftime-like file name.
    fn compile(pattern: &str) -> Result<NamePattern, String> {
        if pattern.is_empty() {
            return Err("pattern is empty: give a file name such as backup_%Y%m%d.sql".into());
        }
        if pattern.contains(['/', '\0']) {
            return Err(format!(
                "pattern {pattern:?} must be a file name, without '/': put the folder in directory"
            ));
        }
        let mut re = String::from("^");
        let mut literal = String::new();
        let mut groups = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                literal.push(c);
                continue;
            }
            let Some(conv) = chars.next() else {
                return Err(format!(
                    "pattern {pattern:?} ends with a lone '%': write %% for a literal '%'"
                ));
            };
            if conv == '%' {
                literal.push('%');
                continue;
            }
            let Some(field) = Field::from_conversion(conv) else {
                return Err(format!(
                    "unsupported field %{conv} in pattern {pattern:?}: use %Y, %m, %d, %H, %M, %S, or %% for a literal '%'"
                ));
            };
            if groups.contains(&field) {
                return Err(format!(
                    "{} appears twice in pattern {pattern:?}",
                    field.conversion()
                ));
            }
            re.push_str(&regex::escape(&literal));
            literal.clear();
            re.push_str(if field == Field::Year {
                r"([0-9]{4})"
            } else {
                r"([0-9]{2})"
            });
            groups.push(field);
        }
        re.push_str(&regex::escape(&literal));
        re.push('$');
        let mut present: Vec<Field> = groups.clone();
        present.sort();
        let Some(&resolution) = present.last() else {
            return Err(format!(
                "pattern {pattern:?} has no date: add at least %Y%m%d, e.g. backup_%Y%m%d.sql"
            ));
        };
        // The fields present must be Y, Y m, Y m d, …: a gap would leave the date unknown.
        for (want, got) in Field::ALL.iter().zip(&present) {
            if want != got {
                return Err(format!(
                    "pattern {pattern:?} has {} but no {}: the date fields must run from %Y down without a gap",
                    got.conversion(),
                    want.conversion()
                ));
            }
        }
        let regex = Regex::new(&re).map_err(|e| format!("compile pattern {pattern:?}: {e}"))?;
        Ok(NamePattern {
            regex,
            groups,
            resolution,
        })
    }

    /// The period `[start, end)` a matching name stands for; `None` when the name does
    /// not match or its date does not exist (month 13, Feb 30).
    fn period(&self, name: &str) -> Option<(NaiveDateTime, NaiveDateTime)> {
        let caps = self.regex.captures(name)?;
        // Missing fields take their smallest value: 1 for month and day, 0 for the rest.
        let mut v: [u32; 6] = [0, 1, 1, 0, 0, 0];
        for (i, field) in self.groups.iter().enumerate() {
            let text = caps.get(i + 1)?.as_str();
            v[field.index()] = text.parse().ok()?;
        }
        let year = i32::try_from(v[0]).ok()?;
        let start = NaiveDate::from_ymd_opt(year, v[1], v[2])?.and_hms_opt(v[3], v[4], v[5])?;
        let end = match self.resolution {
            Field::Year => start.checked_add_months(Months::new(12))?,
            Field::Month => start.checked_add_months(Months::new(1))?,
            Field::Day => start.checked_add_signed(TimeDelta::days(1))?,
            Field::Hour => start.checked_add_signed(TimeDelta::hours(1))?,
            Field::Minute => start.checked_add_signed(TimeDelta::minutes(1))?,
            Field::Second => start.checked_add_signed(TimeDelta::seconds(1))?,
        };
        Some((start, end))
    }
}

/// A runnable `backup_files` check.
#[derive(Debug)]
pub struct BackupFilesCheck {
    // Shared with the blocking task that does the file I/O.
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    directory: PathBuf,
    pattern_text: String,
    pattern: NamePattern,
    max_age: PromDuration,
    min_size: u64,
    require_trailer: bool,
}

/// What the end of the newest file says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Trailer {
    /// A plain-text dump with its closing line.
    Complete,
    /// A plain-text dump without it: cut short.
    Missing,
    /// A custom-format dump (`PGDMP`), which has no text trailer.
    CustomFormat,
    /// A compressed file (the format's name): its end cannot be read as text.
    Compressed(&'static str),
    /// The file could not be read (the error, for the detail).
    Unreadable(String),
}

/// The newest matching file.
#[derive(Debug)]
struct Newest {
    name: String,
    start: NaiveDateTime,
    end: NaiveDateTime,
    mtime: Option<SystemTime>,
    size: u64,
    /// `None` when the trailer is not required.
    trailer: Option<Trailer>,
}

impl Newest {
    fn order(&self) -> (NaiveDateTime, Option<SystemTime>, &str) {
        (self.start, self.mtime, &self.name)
    }
}

/// What one look at the directory found.
#[derive(Debug)]
struct Scan {
    count: usize,
    newest: Option<Newest>,
    /// `(available, total)` bytes, or why they are unknown.
    filesystem: Result<(u64, u64), String>,
}

impl Check for BackupFilesCheck {
    type Config = BackupFilesConfig;
    const KIND: &'static str = "backup_files";
    const DEFAULT_INTERVAL: Duration = Duration::from_secs(5 * 60);
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    fn build(config: &BackupFilesConfig) -> Result<Self, BuildError> {
        if config.directory.as_os_str().is_empty() {
            return Err(BuildError::new("directory", "directory is empty"));
        }
        let pattern =
            NamePattern::compile(&config.pattern).map_err(|e| BuildError::new("pattern", e))?;
        if config.max_age.0.is_zero() {
            return Err(BuildError::new(
                "max_age",
                "max_age must be more than 0, e.g. 26h",
            ));
        }
        Ok(BackupFilesCheck {
            inner: Arc::new(Inner {
                directory: config.directory.clone(),
                pattern_text: config.pattern.clone(),
                pattern,
                max_age: config.max_age,
                min_size: config.min_size,
                require_trailer: config.require_pg_dump_trailer,
            }),
        })
    }

    fn target(&self) -> String {
        self.inner
            .directory
            .join(&self.inner.pattern_text)
            .display()
            .to_string()
    }

    async fn run(&self, ctx: &RunContext, rec: &mut Recorder) -> Result<(), CheckError> {
        let start = Instant::now();
        let inner = Arc::clone(&self.inner);
        let task = tokio::task::spawn_blocking(move || inner.scan());
        // A hung filesystem (NFS) keeps its blocking thread, but never holds the run
        // past its deadline.
        let scan = match tokio::time::timeout_at(ctx.deadline, task).await {
            Err(_) => {
                return Err(net::timed_out(
                    &format!("scan {}", self.inner.directory.display()),
                    start,
                ));
            }
            Ok(Err(e)) => {
                return Err(CheckError::new(
                    Reason::Internal,
                    format!("scan {}: {e}", self.inner.directory.display()),
                ));
            }
            Ok(Ok(scan)) => scan?,
        };
        self.inner.judge(&scan, Utc::now(), rec)
    }
}

impl Inner {
    /// Lists the directory, finds the newest match, reads its ends, asks for free space.
    /// Blocking.
    fn scan(&self) -> Result<Scan, CheckError> {
        let dir = &self.directory;
        let unreadable = |e: io::Error| {
            CheckError::new(
                Reason::Missing,
                format!("read directory {}: {}", dir.display(), io_text(&e)),
            )
        };
        let entries = std::fs::read_dir(dir).map_err(unreadable)?;
        let mut count = 0usize;
        let mut newest: Option<Newest> = None;
        for entry in entries {
            let entry = entry.map_err(unreadable)?;
            // A name that is not UTF-8 cannot match a UTF-8 pattern.
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let Some((start, end)) = self.pattern.period(&name) else {
                continue;
            };
            // Follows symlinks; a dangling link or a folder is not a backup file.
            let Some(meta) = std::fs::metadata(entry.path())
                .ok()
                .filter(Metadata::is_file)
            else {
                continue;
            };
            count += 1;
            let found = Newest {
                name,
                start,
                end,
                mtime: meta.modified().ok(),
                size: meta.len(),
                trailer: None,
            };
            // The greatest date in the name; the later mtime (then the name) breaks a tie.
            if newest.as_ref().is_none_or(|n| found.order() > n.order()) {
                newest = Some(found);
            }
        }
        if let Some(n) = newest.as_mut().filter(|_| self.require_trailer) {
            n.trailer = Some(read_trailer(&dir.join(&n.name), n.size));
        }
        Ok(Scan {
            count,
            newest,
            filesystem: filesystem_space(dir),
        })
    }

    /// Records the samples and decides.
    fn judge(&self, scan: &Scan, now: DateTime<Utc>, rec: &mut Recorder) -> Result<(), CheckError> {
        let label = [("backup", self.pattern_text.as_str())];
        rec.record(&COUNT, &label, as_gauge(scan.count));
        if let Ok((free, size)) = scan.filesystem {
            rec.record(&FS_FREE, &label, as_gauge_u64(free));
            rec.record(&FS_SIZE, &label, as_gauge_u64(size));
        }
        let Some(newest) = &scan.newest else {
            return Err(CheckError::new(
                Reason::Missing,
                format!(
                    "find {}: no file matches {}",
                    self.directory.display(),
                    self.pattern_text
                ),
            ));
        };
        let backup_time = backup_time(newest.start, newest.end, newest.mtime);
        rec.record(&LAST_SUCCESS, &label, timestamp(backup_time));
        if let Some(mtime) = newest.mtime {
            rec.record(&LAST_MODIFIED, &label, system_timestamp(mtime));
        }
        rec.record(&SIZE, &label, as_gauge_u64(newest.size));
        let truncated = newest.trailer == Some(Trailer::Missing);
        match &newest.trailer {
            Some(Trailer::Unreadable(_)) => {}
            _ => rec.record(&TRUNCATED, &label, if truncated { 1.0 } else { 0.0 }),
        }

        let age = now.naive_utc().signed_duration_since(backup_time);
        let name = &newest.name;
        // Every problem of the newest file, worst first; the first gives the reason.
        let mut problems: Vec<(Reason, String)> = Vec::new();
        if age.to_std().is_ok_and(|a| a > self.max_age.0) {
            problems.push((
                Reason::Stale,
                format!(
                    "newest backup {name} is {} old, more than max_age {}",
                    fmt_age(age),
                    self.max_age
                ),
            ));
        }
        if let Some(Trailer::Unreadable(e)) = &newest.trailer {
            problems.push((Reason::Missing, format!("read {name}: {e}")));
        }
        // `body_mismatch`: the file exists (not `missing`) and is recent (not `stale`),
        // but what it holds is wrong, as an HTTP body that fails its expectations. An
        // empty or cut-short dump cannot restore the database, which is the point.
        if newest.size < self.min_size {
            problems.push((
                Reason::BodyMismatch,
                format!(
                    "newest backup {name} is {}, below min_size {}",
                    fmt_size(newest.size),
                    fmt_size(self.min_size)
                ),
            ));
        }
        if truncated {
            problems.push((
                Reason::BodyMismatch,
                format!(
                    "newest backup {name} does not end with \"{}\": the dump was cut short",
                    TRAILERS[0]
                ),
            ));
        }
        if let Some((reason, _)) = problems.first() {
            let detail: Vec<&str> = problems.iter().map(|(_, d)| d.as_str()).collect();
            return Err(CheckError::new(*reason, detail.join("; ")));
        }

        let mut detail = format!(
            "newest backup {name}, {}, {} old; {} matching file{}",
            fmt_size(newest.size),
            fmt_age(age),
            scan.count,
            if scan.count == 1 { "" } else { "s" }
        );
        match &newest.trailer {
            Some(Trailer::CustomFormat) => detail.push_str("; custom-format dump, no trailer"),
            Some(Trailer::Compressed(kind)) => {
                let _ = write!(detail, "; {kind}-compressed, trailer not checked");
            }
            _ => {}
        }
        if let Ok((free, _)) = scan.filesystem {
            let _ = write!(detail, "; {} free", fmt_size(free));
        }
        rec.set_detail(detail);
        Ok(())
    }
}

/// The backup's time: its modification time clamped into its name's period (see the
/// module docs). Without a modification time, the start of the period.
fn backup_time(
    start: NaiveDateTime,
    end: NaiveDateTime,
    mtime: Option<SystemTime>,
) -> NaiveDateTime {
    let Some(mtime) = mtime.map(|m| DateTime::<Utc>::from(m).naive_utc()) else {
        return start;
    };
    mtime.clamp(start, end)
}

/// Reads the first bytes and the last [`TAIL_BYTES`] of a file. Blocking.
fn read_trailer(path: &Path, size: u64) -> Trailer {
    match read_ends(path, size) {
        Ok((head, tail)) => classify(&head, &tail),
        Err(e) => Trailer::Unreadable(io_text(&e)),
    }
}

fn read_ends(path: &Path, size: u64) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let mut file = File::open(path)?;
    let mut head = Vec::with_capacity(8);
    (&mut file).take(8).read_to_end(&mut head)?;
    file.seek(SeekFrom::Start(size.saturating_sub(TAIL_BYTES)))?;
    let mut tail = Vec::with_capacity(4096);
    file.take(TAIL_BYTES).read_to_end(&mut tail)?;
    Ok((head, tail))
}

/// What a dump's first bytes and last bytes say about its completeness.
fn classify(head: &[u8], tail: &[u8]) -> Trailer {
    if head.starts_with(b"PGDMP") {
        return Trailer::CustomFormat;
    }
    for (magic, kind) in [
        (&[0x1f, 0x8b][..], "gzip"),
        (&[0x28, 0xb5, 0x2f, 0xfd][..], "zstd"),
        (&b"BZh"[..], "bzip2"),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0x00][..], "xz"),
    ] {
        if head.starts_with(magic) {
            return Trailer::Compressed(kind);
        }
    }
    let complete = tail.split(|b| *b == b'\n').any(|line| {
        let line = line.trim_ascii_end();
        TRAILERS.iter().any(|t| line == t.as_bytes())
    });
    if complete {
        Trailer::Complete
    } else {
        Trailer::Missing
    }
}

/// `(available to unprivileged users, total)` bytes of the filesystem holding `dir`.
fn filesystem_space(dir: &Path) -> Result<(u64, u64), String> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| "path holds a NUL byte".to_string())?;
    // SAFETY: an all-zero statvfs is a valid value of this plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `st` a valid, writable statvfs.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(io_text(&io::Error::last_os_error()));
    }
    // The field types differ between platforms (u32 or u64).
    #[allow(clippy::useless_conversion)]
    let (avail, blocks, frsize) = (
        u64::from(st.f_bavail),
        u64::from(st.f_blocks),
        u64::from(st.f_frsize),
    );
    Ok((avail.saturating_mul(frsize), blocks.saturating_mul(frsize)))
}

/// An I/O error as a short lowercase phrase.
fn io_text(e: &io::Error) -> String {
    net::io_error_text(e)
}

/// A count as a gauge value (exact below 2^53).
#[allow(clippy::cast_precision_loss)]
fn as_gauge(n: usize) -> f64 {
    n as f64
}

/// A byte count as a gauge value (exact below 2^53 bytes, 8 PiB).
#[allow(clippy::cast_precision_loss)]
fn as_gauge_u64(n: u64) -> f64 {
    n as f64
}

/// Unix seconds of a UTC date-time, with milliseconds.
#[allow(clippy::cast_precision_loss)]
fn timestamp(t: NaiveDateTime) -> f64 {
    t.and_utc().timestamp_millis() as f64 / 1000.0
}

/// Unix seconds of a file time (negative before 1970).
fn system_timestamp(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// An age for people, in its two largest units: `3d 2h`, `5h 12m`, `4m 10s`, `12s`;
/// `-1h 5m` for a date in the future.
fn fmt_age(age: TimeDelta) -> String {
    let secs = age.num_seconds();
    let sign = if secs < 0 { "-" } else { "" };
    let secs = secs.unsigned_abs();
    const UNITS: [(&str, u64); 4] = [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)];
    let first = UNITS
        .iter()
        .position(|(_, size)| secs >= *size)
        .unwrap_or(3);
    let mut out = String::from(sign);
    let mut units = UNITS.iter().skip(first);
    if let Some((unit, size)) = units.next() {
        let _ = write!(out, "{}{unit}", secs / size);
        if let Some((next, next_size)) = units.next() {
            let n = secs % size / next_size;
            if n > 0 {
                let _ = write!(out, " {n}{next}");
            }
        }
    }
    out
}

/// A size for people: `512 B`, `1.2 KiB`, `3.0 MiB`, `40.5 GiB`, `1.8 TiB`.
fn fmt_size(n: u64) -> String {
    // Precision loss is irrelevant for a one-decimal display.
    #[allow(clippy::cast_precision_loss)]
    let v = n as f64;
    const GIB: u64 = 1 << 30;
    if n < GIB {
        net::fmt_bytes(n)
    } else if n < GIB * 1024 {
        format!("{:.1} GiB", v / GIB as f64)
    } else {
        format!("{:.1} TiB", v / (GIB as f64 * 1024.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dt(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_opt(h, mi, s)
            .unwrap()
    }

    #[test]
    fn patterns_compile_to_periods() {
        for (pattern, name, start, end) in [
            (
                "backup_%Y%m%d.sql",
                "backup_20261125.sql",
                dt(2026, 11, 25, 0, 0, 0),
                dt(2026, 11, 26, 0, 0, 0),
            ),
            (
                "db-%Y-%m-%dT%H%M%S.dump",
                "db-2026-02-28T235959.dump",
                dt(2026, 2, 28, 23, 59, 59),
                dt(2026, 3, 1, 0, 0, 0),
            ),
            (
                "%Y%m%d%H.sql.gz",
                "2026123123.sql.gz",
                dt(2026, 12, 31, 23, 0, 0),
                dt(2027, 1, 1, 0, 0, 0),
            ),
            (
                "monthly_%Y-%m.tar",
                "monthly_2026-12.tar",
                dt(2026, 12, 1, 0, 0, 0),
                dt(2027, 1, 1, 0, 0, 0),
            ),
            (
                "y%Y",
                "y2026",
                dt(2026, 1, 1, 0, 0, 0),
                dt(2027, 1, 1, 0, 0, 0),
            ),
            // Fields in another order than the date's, and a literal '%'.
            (
                "%d.%m.%Y_100%%.sql",
                "25.11.2026_100%.sql",
                dt(2026, 11, 25, 0, 0, 0),
                dt(2026, 11, 26, 0, 0, 0),
            ),
        ] {
            let p = NamePattern::compile(pattern).unwrap();
            assert_eq!(p.period(name), Some((start, end)), "{pattern} {name}");
        }
    }

    #[test]
    fn names_that_do_not_fit_are_ignored() {
        let p = NamePattern::compile("backup_%Y%m%d.sql").unwrap();
        for name in [
            "backup_20261125.sql.bak",
            "old_backup_20261125.sql",
            "backup_2026112.sql",
            "backup_202611251.sql",
            "backup_20261325.sql", // month 13
            "backup_20260230.sql", // Feb 30
            "backup_2026112a.sql",
            "backup_20261125xsql", // '.' is literal
            "backup_２０２６1125.sql",
        ] {
            assert_eq!(p.period(name), None, "{name}");
        }
    }

    #[test]
    fn bad_patterns_are_refused() {
        for (pattern, needle) in [
            ("", "pattern is empty"),
            ("backup.sql", "has no date"),
            ("backup_%Y%m%d%", "lone '%'"),
            ("backup_%F.sql", "unsupported field %F"),
            ("backup_%y%m%d.sql", "unsupported field %y"),
            ("backup_%Y%Y.sql", "%Y appears twice"),
            ("backup_%Y%d.sql", "has %d but no %m"),
            ("backup_%m%d.sql", "has %m but no %Y"),
            ("dumps/backup_%Y%m%d.sql", "without '/'"),
        ] {
            let e = NamePattern::compile(pattern).unwrap_err();
            assert!(e.contains(needle), "{pattern:?}: {e}");
        }
    }

    #[test]
    fn build_errors_name_the_field() {
        let config =
            |v: serde_json::Value| -> BackupFilesConfig { serde_json::from_value(v).unwrap() };
        let e = BackupFilesCheck::build(&config(json!({"directory": "/x", "pattern": "b_%Q"})))
            .unwrap_err();
        assert_eq!(e.field, "pattern");
        let e = BackupFilesCheck::build(&config(
            json!({"directory": "/x", "pattern": "b_%Y%m%d", "max_age": "0"}),
        ))
        .unwrap_err();
        assert_eq!(e.field, "max_age");
        let c = config(json!({"directory": "/x", "pattern": "b_%Y%m%d"}));
        assert_eq!(c.max_age, PromDuration(Duration::from_secs(26 * 3600)));
        assert_eq!(c.min_size, 1024);
        assert!(!c.require_pg_dump_trailer);
        assert_eq!(BackupFilesCheck::build(&c).unwrap().target(), "/x/b_%Y%m%d");
        for bad in [
            json!({"pattern": "b_%Y%m%d"}),
            json!({"directory": "/x"}),
            json!({"directory": "/x", "pattern": "b_%Y", "max_age": "26"}),
            json!({"directory": "/x", "pattern": "b_%Y", "maxage": "26h"}),
        ] {
            assert!(
                serde_json::from_value::<BackupFilesConfig>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn backup_time_is_the_mtime_within_the_name_period() {
        let (start, end) = (dt(2026, 11, 25, 0, 0, 0), dt(2026, 11, 26, 0, 0, 0));
        let at = |t: NaiveDateTime| Some(SystemTime::from(t.and_utc()));
        let inside = dt(2026, 11, 25, 3, 10, 0);
        assert_eq!(backup_time(start, end, at(inside)), inside);
        assert_eq!(backup_time(start, end, at(dt(2026, 11, 26, 0, 4, 0))), end);
        assert_eq!(backup_time(start, end, at(dt(2026, 11, 29, 0, 0, 0))), end);
        assert_eq!(
            backup_time(start, end, at(dt(2026, 11, 20, 0, 0, 0))),
            start
        );
        assert_eq!(backup_time(start, end, None), start);
    }

    #[test]
    fn dumps_are_classified_by_their_ends() {
        let plain_end = b"--\n-- PostgreSQL database dump complete\n--\n\n";
        assert_eq!(classify(b"--\n-- Pos", plain_end), Trailer::Complete);
        // pg_dump since the 2025 security releases ends with \unrestrict.
        let restricted = b"-- PostgreSQL database dump complete\r\n--\n\n\\unrestrict abc\n\n";
        assert_eq!(classify(b"--\n", restricted), Trailer::Complete);
        let all = b"--\n-- PostgreSQL database cluster dump complete\n--\n\n";
        assert_eq!(classify(b"--\n", all), Trailer::Complete);
        assert_eq!(
            classify(b"--\n", b"COPY public.users (id) FROM stdin;\n1\n2\n"),
            Trailer::Missing
        );
        assert_eq!(
            classify(b"--\n", b"-- PostgreSQL database dump complete, not"),
            Trailer::Missing
        );
        assert_eq!(classify(b"", b""), Trailer::Missing);
        assert_eq!(
            classify(b"PGDMP\x01\x0f\x00", b"\x00\x01"),
            Trailer::CustomFormat
        );
        assert_eq!(
            classify(&[0x1f, 0x8b, 8, 0], b""),
            Trailer::Compressed("gzip")
        );
        assert_eq!(
            classify(&[0x28, 0xb5, 0x2f, 0xfd, 0], b""),
            Trailer::Compressed("zstd")
        );
    }

    #[test]
    fn ages_and_sizes_print_for_people() {
        for (secs, want) in [
            (0, "0s"),
            (12, "12s"),
            (250, "4m 10s"),
            (3_600, "1h"),
            (5 * 3_600 + 12 * 60 + 7, "5h 12m"),
            (3 * 86_400 + 2 * 3_600 + 59, "3d 2h"),
            (86_400 + 30, "1d"),
            (-3_900, "-1h 5m"),
        ] {
            assert_eq!(fmt_age(TimeDelta::seconds(secs)), want, "{secs}");
        }
        assert_eq!(fmt_size(0), "0 B");
        assert_eq!(fmt_size(1024), "1.0 KiB");
        assert_eq!(fmt_size(3 << 30), "3.0 GiB");
        assert_eq!(fmt_size(2 << 40), "2.0 TiB");
    }
}
