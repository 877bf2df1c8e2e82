//! The Harena alert rules pass Prometheus's own tools.
//!
//! `rules/*.yml` must load in Prometheus as they are: `promtool check rules` (with its
//! linter, lint problems fatal) accepts them, and their unit tests
//! `rules/tests/*_test.yml` pass under `promtool test rules`. promtool is the one of
//! Debian's `prometheus` package (2.42, see TESTBED.md); a machine without it fails
//! here rather than skipping, so that a green run always means the rules were checked.
//! A third test keeps `docs/alerts.md` in step with the rules: every alert has a row
//! there, and every `runbook` annotation points at an anchor that exists.

use std::path::{Path, PathBuf};
use std::process::Command;

const INSTALL_HINT: &str = "install it: apt-get install -y prometheus";

/// The rule files that must exist, each with `rules/tests/<name>_test.yml`.
const RULE_FILES: [&str; 7] = [
    "aws",
    "services",
    "datastores",
    "tunnel",
    "backups",
    "containers",
    "exporter",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `*.yml` directly in `dir` (relative to the crate root), sorted, as promtool's
/// shell glob `dir/*.yml` would list them.
fn yml_files(dir: &str) -> Vec<String> {
    let path = root().join(dir);
    let mut files: Vec<String> = std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .map(|entry| entry.expect("read a directory entry").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yml"))
        .map(|p| {
            let name = p.file_name().expect("a file has a name").to_string_lossy();
            format!("{dir}/{name}")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.yml file in {}", path.display());
    files
}

/// Runs promtool from the crate root; fails the test with its whole output unless it
/// exits 0.
fn promtool(args: &[&str], files: &[String]) {
    let shown = format!("promtool {} {}", args.join(" "), files.join(" "));
    let out = match Command::new("promtool")
        .args(args)
        .args(files)
        .current_dir(root())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("promtool is not on PATH; {INSTALL_HINT}")
        }
        Err(e) => panic!("run `{shown}`: {e}; {INSTALL_HINT}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "`{shown}` exited with {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
}

#[test]
fn every_rule_file_has_its_unit_tests() {
    for name in RULE_FILES {
        for file in [
            format!("rules/{name}.yml"),
            format!("rules/tests/{name}_test.yml"),
        ] {
            assert!(root().join(&file).is_file(), "{file} is missing");
        }
    }
    for file in yml_files("rules") {
        let stem = Path::new(&file)
            .file_stem()
            .expect("a file has a stem")
            .to_string_lossy()
            .into_owned();
        let test = format!("rules/tests/{stem}_test.yml");
        assert!(root().join(&test).is_file(), "{file} has no {test}");
    }
}

#[test]
fn rule_files_pass_promtool_check_rules() {
    promtool(
        &["check", "rules", "--lint=all", "--lint-fatal"],
        &yml_files("rules"),
    );
}

#[test]
fn rule_unit_tests_pass_promtool_test_rules() {
    promtool(&["test", "rules"], &yml_files("rules/tests"));
}

#[test]
fn every_alert_has_a_row_and_an_anchor_in_docs_alerts_md() {
    let doc_path = root().join("docs/alerts.md");
    let doc = std::fs::read_to_string(&doc_path)
        .unwrap_or_else(|e| panic!("read {}: {e}", doc_path.display()));
    let mut problems = Vec::new();
    for file in yml_files("rules") {
        let text = std::fs::read_to_string(root().join(&file)).expect("read a rule file");
        // (alert name, runbook link) in file order.
        let mut alerts: Vec<(String, Option<String>)> = Vec::new();
        for line in text.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix("- alert:") {
                alerts.push((name.trim().to_string(), None));
            } else if let Some(link) = line.strip_prefix("runbook:")
                && let Some(last) = alerts.last_mut()
            {
                last.1 = Some(link.trim().trim_matches('"').to_string());
            }
        }
        for (name, runbook) in alerts {
            let anchor = name.to_lowercase();
            if !doc.contains(&format!("<a id=\"{anchor}\"></a>{name}")) {
                problems.push(format!("{file}: {name} has no row in docs/alerts.md"));
            }
            let want = format!("docs/alerts.md#{anchor}");
            if runbook.as_deref() != Some(want.as_str()) {
                problems.push(format!("{file}: {name}: runbook {runbook:?}, want {want}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
