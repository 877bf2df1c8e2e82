//! `harena-exporter test-rules` gives the same verdict as `promtool test rules`.
//!
//! For every file: promtool's own fixtures (`../shared/conformance/promtool`, from
//! Prometheus v2.42.0, with the exit codes its README states), the unit tests of the
//! shipped rules (`rules/tests/*.yml`, all passing), and our parity suite
//! (`testdata/rules/*_test.yml`: `wrong_*` files expect what is false on purpose, so both
//! tools must exit 1; the others pass). promtool is Debian's (2.42, see TESTBED.md); a
//! machine without it fails here rather than skipping.

use std::path::{Path, PathBuf};
use std::process::Command;

const INSTALL_HINT: &str = "install it: apt-get install -y prometheus";

/// promtool's fixtures and the exit code `promtool test rules` gives on each.
const CONFORMANCE: [(&str, i32); 8] = [
    ("unittest.yml", 0),
    ("at-modifier-test.yml", 0),
    ("long-period.yml", 0),
    ("negative-offset-test.yml", 0),
    ("bad-input-series.yml", 1),
    ("bad-rules-error-test.yml", 1),
    ("bad-rules-syntax-test.yml", 1),
    ("failing.yml", 1),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(program: &str, file: &Path) -> Run {
    let dir = file.parent().unwrap_or(Path::new("."));
    let name = file.file_name().unwrap_or_default();
    let args: &[&str] = if program == "promtool" {
        &["test", "rules"]
    } else {
        &["test-rules"]
    };
    let out = match Command::new(program)
        .args(args)
        .arg(name)
        .current_dir(dir)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && program == "promtool" => {
            panic!("promtool is not on PATH; {INSTALL_HINT}")
        }
        Err(e) => panic!("run {program} on {}: {e}", file.display()),
    };
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs both tools on each file; fails with one line per disagreement (and the outputs).
fn compare(files: &[(PathBuf, Option<i32>)]) {
    assert!(!files.is_empty(), "no file to compare");
    let ours = env!("CARGO_BIN_EXE_harena-exporter");
    let mut problems = Vec::new();
    for (file, expected) in files {
        let p = run("promtool", file);
        let o = run(ours, file);
        let shown = file.display();
        if p.code != o.code {
            problems.push(format!(
                "{shown}: promtool exits {}, harena-exporter {}\n--- promtool\n{}{}\n--- harena-exporter\n{}{}",
                p.code, o.code, p.stdout, p.stderr, o.stdout, o.stderr
            ));
        } else if let Some(want) = expected
            && p.code != *want
        {
            problems.push(format!(
                "{shown}: both exit {}, expected {want}\n--- promtool\n{}{}",
                p.code, p.stdout, p.stderr
            ));
        }
        let first = o.stdout.lines().next().unwrap_or("");
        if !first.starts_with("Unit Testing:  ") {
            problems.push(format!(
                "{shown}: output does not start as promtool's: {first:?}"
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n\n"));
}

fn yml_files(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("read a directory entry").path())
        .filter(|p| {
            p.is_file()
                && p.extension().is_some_and(|e| e == "yml")
                && p.file_name().is_some_and(|n| keep(&n.to_string_lossy()))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn promtool_fixtures_get_the_same_exit_codes() {
    let dir = root().join("../shared/conformance/promtool");
    assert!(
        dir.is_dir(),
        "{} is missing: the promtool fixtures (prometheus v2.42.0 cmd/promtool/testdata) \
         live in ../shared/conformance/promtool beside the checkout",
        dir.display()
    );
    let mut files: Vec<(PathBuf, Option<i32>)> = CONFORMANCE
        .iter()
        .map(|(f, code)| (dir.join(f), Some(*code)))
        .collect();
    // Any other *-test.yml fixture added there is compared too.
    for f in yml_files(&dir, |n| n.ends_with("-test.yml")) {
        if !files.iter().any(|(p, _)| *p == f) {
            files.push((f, None));
        }
    }
    for (f, _) in &files {
        assert!(f.is_file(), "{} is missing", f.display());
    }
    compare(&files);
}

#[test]
fn the_shipped_rules_pass_their_unit_tests_in_both_tools() {
    let files: Vec<(PathBuf, Option<i32>)> = yml_files(&root().join("rules/tests"), |_| true)
        .into_iter()
        .map(|f| (f, Some(0)))
        .collect();
    compare(&files);
}

#[test]
fn the_parity_suite_gets_the_same_verdicts() {
    let files: Vec<(PathBuf, Option<i32>)> =
        yml_files(&root().join("testdata/rules"), |n| n.ends_with("_test.yml"))
            .into_iter()
            .map(|f| {
                let wrong = f
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("wrong_"));
                (f, Some(i32::from(wrong)))
            })
            .collect();
    assert!(
        files.iter().filter(|(_, c)| *c == Some(1)).count() >= 5,
        "the parity suite needs its wrong-on-purpose files"
    );
    compare(&files);
}

#[test]
fn failing_output_is_promtools_byte_for_byte() {
    // Beyond the exit code: the failure report of promtool's own failing fixture, and of
    // wrong-on-purpose files of ours (one lists every alert and sample of a 25-minute
    // timeline, one every template expansion error), is the same text.
    let ours = env!("CARGO_BIN_EXE_harena-exporter");
    for file in [
        root().join("../shared/conformance/promtool/failing.yml"),
        root().join("testdata/rules/wrong_keep_firing_test.yml"),
        root().join("testdata/rules/wrong_sample_test.yml"),
        root().join("testdata/rules/wrong_timeline_test.yml"),
        root().join("testdata/rules/wrong_template_error_test.yml"),
    ] {
        let (p, o) = (run("promtool", &file), run(ours, &file));
        assert_eq!(p.stdout, o.stdout, "stdout of {}", file.display());
        assert_eq!(p.stderr, o.stderr, "stderr of {}", file.display());
    }
}
