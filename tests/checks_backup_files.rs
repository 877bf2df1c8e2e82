//! The `backup_files` check against real folders: temporary directories holding dumps
//! whose names, sizes, contents and modification times each test sets.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{NaiveDate, TimeDelta, Utc};
use harena_exporter::checks::backup_files::{BackupFilesCheck, BackupFilesConfig};
use harena_exporter::checks::{Check, CheckError, Reason, Recorder, RunContext};
use harena_exporter::model::{Labels, Sample};
use serde_json::{Value, json};
use tokio::time::Instant;

const PATTERN: &str = "backup_%Y%m%d.sql";
const TRAILER: &str = "--\n-- PostgreSQL database dump complete\n--\n\n";
/// A value that sits in a dump's content and must never reach a detail or a label.
const SECRET: &str = "SCRAM-SHA-256$4096:s3cret-hash-in-the-dump";

// ---------------------------------------------------------------------------------------
// Running a check and looking at what it recorded.

struct Run {
    result: Result<(), CheckError>,
    samples: Vec<Sample>,
    detail: Option<String>,
}

impl Run {
    /// The value of the one series of `name`.
    fn value(&self, name: &str) -> Option<f64> {
        let found: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.desc.name == name)
            .map(|s| s.value)
            .collect();
        assert!(found.len() <= 1, "{name} recorded {} times", found.len());
        found.first().copied()
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

    /// Every sample carries the check's labels and the pattern as `backup`; no secret
    /// from a file's content shows anywhere.
    fn assert_baseline(&self, pattern: &str) {
        for s in &self.samples {
            assert_eq!(s.labels.get("check"), Some("test"), "{}", s.desc.name);
            assert_eq!(
                s.labels.get("kind"),
                Some("backup_files"),
                "{}",
                s.desc.name
            );
            assert_eq!(s.labels.get("backup"), Some(pattern), "{}", s.desc.name);
            assert!(s.desc.name.starts_with("harena_backup_"), "{}", s.desc.name);
            for (_, v) in s.labels.iter() {
                assert!(!v.contains(SECRET), "secret in a label of {}", s.desc.name);
            }
        }
        let texts = [
            self.detail.clone().unwrap_or_default(),
            self.result
                .as_ref()
                .err()
                .map(|e| e.detail.clone())
                .unwrap_or_default(),
        ];
        for text in texts {
            assert!(!text.contains("s3cret"), "secret in the detail: {text}");
        }
    }

    fn assert_filesystem_recorded(&self) {
        let free = self
            .value("harena_backup_filesystem_free_bytes")
            .expect("free bytes recorded");
        let size = self
            .value("harena_backup_filesystem_size_bytes")
            .expect("filesystem size recorded");
        assert!(free > 0.0 && size >= free, "free {free}, size {size}");
    }
}

fn build(config: Value) -> BackupFilesCheck {
    let config: BackupFilesConfig = serde_json::from_value(config).expect("config deserializes");
    BackupFilesCheck::build(&config).expect("check builds")
}

async fn run(config: Value) -> Run {
    let pattern = config["pattern"].as_str().unwrap_or(PATTERN).to_string();
    let check = build(config);
    let ctx = RunContext::standalone(Instant::now() + Duration::from_secs(10));
    let mut rec = Recorder::new(Labels::from_pairs([
        ("check", "test"),
        ("kind", "backup_files"),
    ]));
    let result = check.run(&ctx, &mut rec).await;
    let recorded = rec.finish();
    let run = Run {
        result,
        samples: recorded.samples,
        detail: recorded.detail,
    };
    run.assert_baseline(&pattern);
    run
}

/// The usual config for a directory, with the pg_dump trailer required.
fn config(dir: &Path) -> Value {
    json!({
        "directory": dir,
        "pattern": PATTERN,
        "require_pg_dump_trailer": true,
    })
}

// ---------------------------------------------------------------------------------------
// Files.

/// `backup_YYYYMMDD.sql` for the UTC day `days_ago` days before today.
fn name_days_ago(days_ago: i64) -> String {
    let day = Utc::now().date_naive() - TimeDelta::days(days_ago);
    day.format("backup_%Y%m%d.sql").to_string()
}

/// A plain-text dump of about `size` bytes; with pg_dump's closing lines when `complete`.
fn plain_dump(size: usize, complete: bool) -> Vec<u8> {
    let mut out = String::from(
        "--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\n\\restrict k3y\n",
    );
    while out.len() < size {
        out.push_str("INSERT INTO public.transactions VALUES (1, 'coffee', 3.5);\n");
    }
    if complete {
        out.push_str(TRAILER);
        out.push_str("\\unrestrict k3y\n\n");
    } else {
        // Cut in the middle of a row, as a killed pg_dump leaves it, right after a
        // password hash.
        out.push_str(&format!(
            "ALTER ROLE harena PASSWORD '{SECRET}';\nINSERT INTO pub"
        ));
    }
    out.into_bytes()
}

/// Writes a file and sets its modification time.
fn write(dir: &Path, name: &str, content: &[u8], mtime: SystemTime) {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

fn mtime_of(dir: &Path, name: &str) -> f64 {
    std::fs::metadata(dir.join(name))
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn at(y: i32, m: u32, d: u32, h: u32, mi: u32) -> SystemTime {
    let t = NaiveDate::from_ymd_opt(y, m, d)
        .unwrap()
        .and_hms_opt(h, mi, 0)
        .unwrap()
        .and_utc();
    UNIX_EPOCH + Duration::from_secs(u64::try_from(t.timestamp()).unwrap())
}

fn ago(d: Duration) -> SystemTime {
    SystemTime::now() - d
}

const DAY: Duration = Duration::from_secs(86_400);

/// Unix seconds of the start of today (UTC).
fn today_start() -> f64 {
    let t = Utc::now().date_naive().and_hms_opt(0, 0, 0).unwrap();
    #[allow(clippy::cast_precision_loss)]
    let secs = t.and_utc().timestamp() as f64;
    secs
}

// ---------------------------------------------------------------------------------------
// The tests.

#[tokio::test]
async fn fresh_backup_passes_and_others_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let today = name_days_ago(0);
    write(
        p,
        &today,
        &plain_dump(5000, true),
        ago(Duration::from_secs(1)),
    );
    write(p, &name_days_ago(1), &plain_dump(4000, true), ago(DAY));
    write(p, &name_days_ago(2), &plain_dump(3000, false), ago(2 * DAY));
    // Names that do not match the pattern are not backups, however new.
    let now = SystemTime::now();
    write(p, "backup_latest.sql", b"x", now);
    write(p, "notes.txt", b"x", now);
    write(p, "backup_29991231.sql.gz", &[0x1f, 0x8b, 8, 0], now);
    write(p, "old_backup_29991231.sql", b"x", now);
    write(p, "backup_29991331.sql", b"x", now); // month 13
    std::fs::create_dir(p.join("backup_29991230.sql")).unwrap(); // a folder

    let r = run(config(p)).await;
    r.assert_ok();
    r.assert_filesystem_recorded();
    assert_eq!(r.value("harena_backup_files"), Some(3.0));
    let size = std::fs::metadata(p.join(&today)).unwrap().len();
    #[allow(clippy::cast_precision_loss)]
    let size = size as f64;
    assert_eq!(r.value("harena_backup_size_bytes"), Some(size));
    assert_eq!(r.value("harena_backup_truncated"), Some(0.0));
    let mtime = mtime_of(p, &today);
    assert_eq!(
        r.value("harena_backup_last_modified_timestamp_seconds"),
        Some(mtime)
    );
    // The modification time, kept inside today's period.
    let success = r
        .value("harena_backup_last_success_timestamp_seconds")
        .unwrap();
    let want = mtime.max(today_start());
    assert!((success - want).abs() < 0.002, "{success} vs {want}");
    let detail = r.detail.unwrap();
    assert!(
        detail.starts_with(&format!("newest backup {today}, 5.0 KiB, ")),
        "{detail}"
    );
    assert!(
        detail.contains("3 matching files") && detail.contains("free"),
        "{detail}"
    );
}

#[tokio::test]
async fn newest_is_chosen_by_the_date_in_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    // Yesterday's dump was touched a moment ago; today's has an old modification time.
    write(
        p,
        &name_days_ago(1),
        &plain_dump(2000, false),
        ago(Duration::ZERO),
    );
    let today = name_days_ago(0);
    write(p, &today, &plain_dump(3000, true), ago(10 * DAY));
    let r = run(config(p)).await;
    r.assert_ok();
    assert!(
        r.detail
            .clone()
            .unwrap()
            .starts_with(&format!("newest backup {today},"))
    );
    assert_eq!(
        r.value("harena_backup_last_modified_timestamp_seconds"),
        Some(mtime_of(p, &today))
    );
    // An mtime before the name's day counts from the start of the day.
    assert_eq!(
        r.value("harena_backup_last_success_timestamp_seconds"),
        Some(today_start())
    );
}

#[tokio::test]
async fn stale_backup_fails() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let name = name_days_ago(3);
    write(p, &name, &plain_dump(3000, true), ago(3 * DAY));
    let r = run(config(p)).await;
    r.assert_fails(Reason::Stale, &format!("newest backup {name} is 3d"));
    r.assert_fails(Reason::Stale, "old, more than max_age 1d2h");
    // Everything known is still recorded.
    assert_eq!(r.value("harena_backup_files"), Some(1.0));
    assert_eq!(r.value("harena_backup_truncated"), Some(0.0));
    assert!(r.value("harena_backup_size_bytes").unwrap() > 3000.0);
    r.assert_filesystem_recorded();

    // A longer max_age accepts it.
    let mut c = config(p);
    c["max_age"] = json!("4d");
    run(c).await.assert_ok();
}

#[tokio::test]
async fn backup_time_follows_the_clamping_rule() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    // Written at 03:10 on its day: that is its time.
    write(
        p,
        "backup_20200101.sql",
        &plain_dump(2000, true),
        at(2020, 1, 1, 3, 10),
    );
    let r = run(config(p)).await;
    r.assert_fails(Reason::Stale, "newest backup backup_20200101.sql is ");
    assert_eq!(
        r.value("harena_backup_last_success_timestamp_seconds"),
        Some(1_577_848_200.0)
    );
    // Finished five minutes after midnight: the end of its day.
    write(
        p,
        "backup_20200101.sql",
        &plain_dump(2000, true),
        at(2020, 1, 2, 0, 5),
    );
    let r = run(config(p)).await;
    assert_eq!(
        r.value("harena_backup_last_success_timestamp_seconds"),
        Some(1_577_923_200.0)
    );
    assert_eq!(
        r.value("harena_backup_last_modified_timestamp_seconds"),
        Some(1_577_923_500.0)
    );
}

#[tokio::test]
async fn empty_backup_is_a_body_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let name = name_days_ago(0);
    write(p, &name, b"", ago(Duration::ZERO));
    let r = run(config(p)).await;
    r.assert_fails(
        Reason::BodyMismatch,
        &format!("newest backup {name} is 0 B, below min_size 1.0 KiB"),
    );
    // An empty file has no closing line either: both problems are told.
    r.assert_fails(Reason::BodyMismatch, "the dump was cut short");
    assert_eq!(r.value("harena_backup_size_bytes"), Some(0.0));
    assert_eq!(r.value("harena_backup_truncated"), Some(1.0));
    assert_eq!(r.value("harena_backup_files"), Some(1.0));

    // Without the trailer requirement, only the size fails.
    let mut c = config(p);
    c["require_pg_dump_trailer"] = json!(false);
    let r = run(c).await;
    r.assert_fails(Reason::BodyMismatch, "below min_size");
    assert!(!r.err().detail.contains("cut short"), "{}", r.err().detail);
    assert_eq!(r.value("harena_backup_truncated"), Some(0.0));

    let mut c = config(p);
    c["min_size"] = json!(0);
    c["require_pg_dump_trailer"] = json!(false);
    run(c).await.assert_ok();
}

#[tokio::test]
async fn truncated_dump_fails_without_showing_its_content() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let name = name_days_ago(0);
    write(p, &name, &plain_dump(200_000, false), ago(Duration::ZERO));
    let r = run(config(p)).await;
    r.assert_fails(
        Reason::BodyMismatch,
        &format!("newest backup {name} does not end with \"-- PostgreSQL database dump complete\""),
    );
    assert_eq!(r.value("harena_backup_truncated"), Some(1.0));

    // The trailer is not checked unless asked for.
    let mut c = config(p);
    c["require_pg_dump_trailer"] = json!(false);
    let r = run(c).await;
    r.assert_ok();
    assert_eq!(r.value("harena_backup_truncated"), Some(0.0));
}

#[tokio::test]
async fn trailer_must_be_at_the_end_of_a_large_dump() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let name = name_days_ago(0);
    // 2 MiB, complete: only the last 4 KiB are read, and they hold the line.
    write(p, &name, &plain_dump(2 << 20, true), ago(Duration::ZERO));
    let r = run(config(p)).await;
    r.assert_ok();
    assert_eq!(r.value("harena_backup_truncated"), Some(0.0));

    // The line near the start only (another dump concatenated and cut) does not count.
    let mut content = plain_dump(1000, true);
    content.extend(plain_dump(100_000, false));
    write(p, &name, &content, ago(Duration::ZERO));
    let r = run(config(p)).await;
    r.assert_fails(Reason::BodyMismatch, "the dump was cut short");
}

#[tokio::test]
async fn custom_format_dump_needs_no_trailer() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let name = name_days_ago(0);
    let mut content = b"PGDMP\x01\x0f\x00\x04\x08\x01\x01\x01".to_vec();
    content.resize(8000, 0x5a);
    write(p, &name, &content, ago(Duration::ZERO));
    let r = run(config(p)).await;
    r.assert_ok();
    assert_eq!(r.value("harena_backup_truncated"), Some(0.0));
    assert_eq!(r.value("harena_backup_size_bytes"), Some(8000.0));
    let detail = r.detail.unwrap();
    assert!(
        detail.contains("custom-format dump, no trailer"),
        "{detail}"
    );
}

#[tokio::test]
async fn no_matching_file_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    write(
        p,
        "backup.sql",
        &plain_dump(5000, true),
        ago(Duration::ZERO),
    );
    let r = run(config(p)).await;
    r.assert_fails(
        Reason::Missing,
        &format!("find {}: no file matches {PATTERN}", p.display()),
    );
    assert_eq!(r.value("harena_backup_files"), Some(0.0));
    assert_eq!(r.value("harena_backup_size_bytes"), None);
    assert_eq!(
        r.value("harena_backup_last_success_timestamp_seconds"),
        None
    );
    r.assert_filesystem_recorded();
}

#[tokio::test]
async fn missing_or_unreadable_directory_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("backups");
    let r = run(config(&gone)).await;
    r.assert_fails(
        Reason::Missing,
        &format!(
            "read directory {}: no such file or directory",
            gone.display()
        ),
    );
    assert!(r.samples.is_empty(), "nothing is known: {:?}", r.samples);

    // A file where the folder should be cannot be listed either.
    let file = dir.path().join("not_a_folder");
    std::fs::write(&file, b"x").unwrap();
    let r = run(config(&file)).await;
    r.assert_fails(
        Reason::Missing,
        &format!("read directory {}: not a directory", file.display()),
    );
}

#[tokio::test]
async fn symlinked_backups_count() {
    let dir = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let name = name_days_ago(0);
    write(
        store.path(),
        &name,
        &plain_dump(3000, true),
        ago(Duration::ZERO),
    );
    std::os::unix::fs::symlink(store.path().join(&name), dir.path().join(&name)).unwrap();
    // A dangling link is not a backup.
    std::os::unix::fs::symlink(
        store.path().join("gone.sql"),
        dir.path().join(name_days_ago(-1)),
    )
    .unwrap();
    let r = run(config(dir.path())).await;
    r.assert_ok();
    assert_eq!(r.value("harena_backup_files"), Some(1.0));
}

#[tokio::test]
async fn other_patterns_carry_their_own_label() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let name = Utc::now().format("harena-%Y-%m-%d_%H.dump").to_string();
    let mut content = b"PGDMP".to_vec();
    content.resize(2048, 0);
    write(p, &name, &content, ago(Duration::ZERO));
    let r = run(json!({
        "directory": p,
        "pattern": "harena-%Y-%m-%d_%H.dump",
        "max_age": "2h",
    }))
    .await;
    r.assert_ok();
    assert_eq!(r.value("harena_backup_files"), Some(1.0));
    // Not asked for: not read.
    assert!(!r.detail.unwrap().contains("custom-format"));
}

#[test]
fn bad_pattern_is_a_build_error() {
    let config: BackupFilesConfig = serde_json::from_value(json!({
        "directory": "/tmp",
        "pattern": "backup_%Y%m%e.sql",
    }))
    .unwrap();
    let e = BackupFilesCheck::build(&config).expect_err("build fails");
    assert_eq!(e.field, "pattern");
    assert!(e.message.contains("unsupported field %e"), "{}", e.message);
}
