//! Config loading: every error at once, with file, line, column and field.

use harena_exporter::config::{self, ConfigSource};

fn errors(yaml: &str) -> Vec<String> {
    match config::parse(ConfigSource::File("t.yml".into()), yaml) {
        Ok(_) => Vec::new(),
        Err(e) => e.diagnostics.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_embedded_config_is_valid_and_has_the_ten_harena_services() {
    let cfg = config::load(&ConfigSource::Embedded).expect("embedded config loads");
    let names: Vec<&str> = cfg.checks.iter().map(|c| c.config.name.as_str()).collect();
    for n in [
        "nginx",
        "user_service",
        "search_service",
        "metric_service",
        "sync_service",
        "enrichment_service",
        "budget_profiling_service",
        "conversation_service",
        "grafana",
        "prometheus",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
}

#[test]
fn misspelt_key_wrong_type_and_literal_password_give_three_errors() {
    let yaml = "\
checks:
  - name: api
    kind: http
    url: http://127.0.0.1:3000/health
    methd: GET
  - name: web
    kind: http
    url: http://127.0.0.1:80/health
    valid_status_codes: oops
  - name: admin
    kind: http
    url: http://127.0.0.1:4000/api/health
    basic_auth:
      username: admin
      password: hunter2
";
    let errs = errors(yaml);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(
        errs[0].starts_with(
            "t.yml:5:5: checks[0].methd: unknown field \"methd\", did you mean \"method\"?"
        ),
        "{}",
        errs[0]
    );
    assert!(
        errs[1].starts_with("t.yml:9:25: checks[1].valid_status_codes: invalid type"),
        "{}",
        errs[1]
    );
    assert!(
        errs[2].starts_with("t.yml:15:7: checks[2].basic_auth.password: "),
        "{}",
        errs[2]
    );
    assert!(
        errs[2].contains("password_file") && errs[2].contains("password_env"),
        "{}",
        errs[2]
    );
    assert!(!errs.join("\n").contains("hunter2"));
}

#[test]
fn validation_errors_name_their_field() {
    let cases: &[(&str, &str)] = &[
        (
            "checks:\n  - name: a\n    kind: http\n    url: http://127.0.0.1/\n    interval: 10s\n    timeout: 10s\n",
            "t.yml:6:14: checks[0].timeout: timeout 10s must be greater than 0 and less than interval 10s",
        ),
        (
            "checks:\n  - name: a\n    kind: http\n    url: http://127.0.0.1/\n    interval: 5x\n",
            "t.yml:5:15: checks[0].interval: invalid duration \"5x\"",
        ),
        (
            "checks:\n  - name: a\n    kind: htpp\n    url: http://127.0.0.1/\n",
            "t.yml:3:11: checks[0].kind: unknown kind \"htpp\", did you mean \"http\"?",
        ),
        (
            "checks:\n  - name: a\n    kind: http\n    url: http://127.0.0.1/\n  - name: a\n    kind: tcp\n    address: 127.0.0.1:1\n",
            "t.yml:5:11: checks[1].name: duplicate check name \"a\"",
        ),
        (
            "checks:\n  - name: a\n    kind: http\n    url: http://127.0.0.1/\n    depends_on: [postgress]\n  - name: postgres\n    kind: tcp\n    address: 127.0.0.1:5432\n",
            "t.yml:5:18: checks[0].depends_on[0]: unknown check \"postgress\", did you mean \"postgres\"?",
        ),
        (
            "checks:\n  - name: a\n    kind: http\n    url: http://127.0.0.1/\n    depends_on: [b]\n  - name: b\n    kind: http\n    url: http://127.0.0.1/\n    depends_on: [a]\n",
            "checks[0].depends_on: dependency cycle: a -> b -> a",
        ),
        (
            "checks:\n  - name: a\n    kind: http\n    url: https://u:hunter2@127.0.0.1/\n",
            "t.yml:4:10: checks[0].url: a password in a URL is not allowed",
        ),
        (
            "checks:\n  - name: a\n    kind: http\n    url: http://127.0.0.1/\n    labels: {check: x}\n",
            "checks[0].labels.check: label \"check\" is set by the exporter",
        ),
        (
            "chekcs: []\n",
            "t.yml:1:1: chekcs: unknown field \"chekcs\", did you mean \"checks\"?",
        ),
        (
            "checks:\n  - name: a\n    kind: http\n    url: [\n",
            "t.yml:",
        ),
    ];
    for (yaml, want) in cases {
        let errs = errors(yaml);
        assert!(
            errs.iter().any(|e| e.contains(want)),
            "want {want:?}\ngot {errs:#?}\nfor\n{yaml}"
        );
        assert!(!errs.join("\n").contains("hunter2"));
    }
}

#[test]
fn the_example_config_loads() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/config.yml");
    if let Err(e) = config::load(&ConfigSource::File(path.into())) {
        panic!("examples/config.yml: {e}");
    }
}
