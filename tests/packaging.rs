//! Packaging (`docker/`, `/.dockerignore`, `docs/install.md`), checked with what runs here
//! (no Docker engine): the systemd unit passes `systemd-analyze verify` and a security
//! threshold; the compose service mounts read-only what the embedded config reads and
//! never listens on all interfaces; the Dockerfile builds a binary and a profile that
//! exist, from a context that holds every file cargo reads, and runs as non-root; the
//! Prometheus snippet loads in promtool with the shipped rules; the env example names
//! exactly the variables the embedded config reads; every command line of the install
//! guide, unit, compose file and image is accepted by the binary.

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use harena_exporter::config::DEFAULT_CONFIG;
use harena_exporter::config::yaml::{self, Node, NodeValue};
use regex::Regex;

const UNIT: &str = "docker/harena-exporter.service";
const COMPOSE: &str = "docker/docker-compose.harena.yml";
const DOCKERFILE: &str = "docker/Dockerfile";
const DOCKERIGNORE: &str = ".dockerignore";
const SCRAPE: &str = "docker/prometheus-scrape.yml";
const ENV_EXAMPLE: &str = "docker/harena-exporter.env.example";
const INSTALL: &str = "docs/install.md";
/// Where the binary goes on the host and in the image.
const INSTALLED_BIN: &str = "/usr/local/bin/harena-exporter";
const PORT: u16 = 9811;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

fn parse_yaml(name: &str, text: &str) -> Node {
    yaml::parse(name, text).unwrap_or_else(|d| panic!("{d}"))
}

fn str_of<'a>(node: &'a Node, what: &str) -> &'a str {
    node.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string"))
}

fn seq_of<'a>(node: &'a Node, what: &str) -> &'a [Node] {
    node.as_seq()
        .unwrap_or_else(|| panic!("{what}: expected a list"))
}

/// Every scalar of a YAML tree, keys included.
fn scalars(node: &Node, out: &mut Vec<String>) {
    match &node.value {
        NodeValue::Null => {}
        NodeValue::Scalar { value, .. } => out.push(value.clone()),
        NodeValue::Seq(items) => items.iter().for_each(|n| scalars(n, out)),
        NodeValue::Map(entries) => entries.iter().for_each(|(k, v)| {
            scalars(k, out);
            scalars(v, out);
        }),
    }
}

// --- the embedded config: what the packaging must give the exporter -----------------------

/// Paths the embedded config reads on the host: the Docker socket, the backups folder, the
/// tunnel's log.
fn embedded_paths() -> Vec<(String, String)> {
    let root = parse_yaml("default.yml", DEFAULT_CONFIG);
    let mut paths = Vec::new();
    for check in seq_of(root.get("checks").expect("checks"), "checks") {
        let name = str_of(check.get("name").expect("name"), "name").to_string();
        let key = match check.get("kind").and_then(Node::as_str) {
            Some("docker") => "socket",
            Some("backup_files") => "directory",
            Some("tunnel") => "log_file",
            _ => continue,
        };
        if let Some(path) = check.get(key).and_then(Node::as_str) {
            paths.push((format!("{name}.{key}"), path.to_string()));
        }
    }
    let kinds: BTreeSet<&str> = paths
        .iter()
        .map(|(k, _)| k.split_once('.').map_or("", |(_, key)| key))
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["directory", "log_file", "socket"]),
        "the embedded config no longer reads a socket, a backups folder and a log: {paths:?}"
    );
    paths
}

/// Names of the environment variables the embedded config reads: every `*_env: NAME`.
fn embedded_env_names() -> BTreeSet<String> {
    fn walk(node: &Node, out: &mut BTreeSet<String>) {
        match &node.value {
            NodeValue::Map(entries) => {
                for (k, v) in entries {
                    match (k.as_str(), v.as_str()) {
                        (Some(key), Some(name)) if key.ends_with("_env") => {
                            out.insert(name.to_string());
                        }
                        _ => walk(v, out),
                    }
                }
            }
            NodeValue::Seq(items) => items.iter().for_each(|n| walk(n, out)),
            _ => {}
        }
    }
    let mut names = BTreeSet::new();
    walk(&parse_yaml("default.yml", DEFAULT_CONFIG), &mut names);
    assert!(!names.is_empty(), "no `_env:` key in the embedded config");
    names
}

// --- command lines --------------------------------------------------------------------------

/// Runs the binary with `args` plus `--help`: clap rejects an unknown flag or subcommand
/// before it prints the help, so exit 0 means the command line is valid.
fn assert_cli_accepts(args: &[String], origin: &str) {
    let mut with_help = args.to_vec();
    with_help.push("--help".into());
    let out = common::command(&with_help.iter().map(String::as_str).collect::<Vec<_>>())
        .output()
        .expect("run harena-exporter");
    assert!(
        out.status.success(),
        "{origin}: harena-exporter rejects `{}`:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of `--flag=value` or `--flag value` in `args`.
fn flag_value(args: &[String], flag: &str) -> Option<String> {
    let prefix = format!("{flag}=");
    args.iter().enumerate().find_map(|(i, a)| {
        if a == flag {
            args.get(i + 1).cloned()
        } else {
            a.strip_prefix(&prefix).map(str::to_string)
        }
    })
}

/// A listen address must be loopback or a Docker bridge address (172.16.0.0/12) on port
/// 9811: never all interfaces, since Harena's security group opens every port.
fn assert_safe_listen(addr: &str, origin: &str) -> IpAddr {
    let sa: SocketAddr = addr
        .parse()
        .unwrap_or_else(|e| panic!("{origin}: listen address {addr:?}: {e}"));
    let ip = sa.ip();
    let bridge = matches!(ip, IpAddr::V4(v4) if v4.octets()[0] == 172 && (16..=31).contains(&v4.octets()[1]));
    assert!(
        !ip.is_unspecified() && (ip.is_loopback() || bridge),
        "{origin}: listens on {addr}: only loopback or the docker0 bridge address, never all interfaces"
    );
    assert_eq!(sa.port(), PORT, "{origin}: port");
    ip
}

// --- the systemd unit -----------------------------------------------------------------------

/// `Key=value` lines of a unit file, in order (comments and section headers left out).
fn unit_entries(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter(|l| !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn unit_value(entries: &[(String, String)], key: &str) -> String {
    let values: Vec<&String> = entries
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        values.len(),
        1,
        "{UNIT}: expected one {key}=, got {values:?}"
    );
    values[0].clone()
}

fn unit_exec_args() -> Vec<String> {
    let entries = unit_entries(&read(UNIT));
    let exec = unit_value(&entries, "ExecStart");
    let mut words = exec.split_whitespace().map(str::to_string);
    assert_eq!(
        words.next().as_deref(),
        Some(INSTALLED_BIN),
        "{UNIT}: ExecStart"
    );
    words.collect()
}

fn unit_listen() -> IpAddr {
    let args = unit_exec_args();
    let addr = flag_value(&args, "--web.listen-address")
        .unwrap_or_else(|| panic!("{UNIT}: ExecStart has no --web.listen-address"));
    assert_safe_listen(&addr, UNIT)
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify_and_security() {
    common::require("systemd-analyze", "systemd");
    let dir = tempfile::tempdir().expect("tempdir");
    // The same unit, started from the binary cargo built (the path must exist).
    let text = read(UNIT).replace(INSTALLED_BIN, common::bin());
    assert_ne!(text, read(UNIT), "{UNIT}: ExecStart is not {INSTALLED_BIN}");
    let unit = dir.path().join("harena-exporter.service");
    std::fs::write(&unit, text).expect("write unit");

    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("run systemd-analyze verify");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Unknown keys and bad values are only warnings: any line about our unit fails.
    let about_unit: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("harena-exporter"))
        .collect();
    assert!(
        out.status.success() && about_unit.is_empty(),
        "systemd-analyze verify {UNIT}:\n{report}"
    );

    // Overall exposure at most 2.0 ("OK"); it is 1.5 today. The threshold is in tenths.
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("run systemd-analyze security");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "systemd-analyze security {UNIT}: exposure above 2.0:\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn systemd_unit_is_hardened_and_gives_the_exporter_what_it_reads() {
    let entries = unit_entries(&read(UNIT));
    let v = |k: &str| unit_value(&entries, k);
    for (key, want) in [
        ("ProtectSystem", "strict"),
        // Read-only, not `yes`: the backups and the tunnel log are in /home/ec2-user.
        ("ProtectHome", "read-only"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("EnvironmentFile", "-/etc/harena-exporter/env"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("Restart", "on-failure"),
        ("StateDirectory", "harena-exporter"),
    ] {
        assert_eq!(v(key), want, "{UNIT}: {key}");
    }
    let user = v("User");
    assert!(
        !user.is_empty() && user != "root" && user != "0",
        "{UNIT}: runs as {user:?}"
    );
    let groups = v("SupplementaryGroups");
    assert!(
        groups.split_whitespace().any(|g| g == "docker"),
        "{UNIT}: the docker group reads the Engine API socket: {groups:?}"
    );
    assert!(v("MemoryMax").ends_with('M'), "{UNIT}: MemoryMax");
    let filters: Vec<&String> = entries
        .iter()
        .filter(|(k, _)| k == "SystemCallFilter")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(filters.first().map(|s| s.as_str()), Some("@system-service"));

    let args = unit_exec_args();
    assert_eq!(
        flag_value(&args, "--storage.path").as_deref(),
        Some("/var/lib/harena-exporter"),
        "{UNIT}: --storage.path must be the StateDirectory"
    );
    unit_listen();
    assert_cli_accepts(&args, UNIT);
    // What the embedded config reads stays visible: /home read-only, /run untouched.
    for (what, path) in embedded_paths() {
        assert!(
            path.starts_with("/home/")
                || path.starts_with("/var/run/")
                || path.starts_with("/run/"),
            "{what} = {path}: the unit only opens /home (read-only) and /run to the exporter"
        );
    }
}

// --- the compose service --------------------------------------------------------------------

fn compose_service() -> (Node, Node) {
    let root = parse_yaml(COMPOSE, &read(COMPOSE));
    let svc = root
        .get("services")
        .and_then(|s| s.get("harena-exporter"))
        .unwrap_or_else(|| panic!("{COMPOSE}: no services.harena-exporter"))
        .clone();
    (root, svc)
}

fn compose_args(svc: &Node) -> Vec<String> {
    seq_of(svc.get("command").expect("command"), "command")
        .iter()
        .map(|n| str_of(n, "command").to_string())
        .collect()
}

#[test]
fn compose_service_mounts_what_the_embedded_config_reads_read_only() {
    let (root, svc) = compose_service();
    let get = |k: &str| {
        svc.get(k)
            .and_then(Node::as_str)
            .unwrap_or_else(|| panic!("{COMPOSE}: {k}"))
    };
    assert_eq!(get("network_mode"), "host");
    assert_eq!(get("restart"), "unless-stopped");
    assert!(
        svc.get("ports").is_none(),
        "{COMPOSE}: no ports with host networking (a published port binds 0.0.0.0)"
    );
    let user = get("user");
    let uid = user.split(':').next().unwrap_or("");
    assert!(
        !uid.is_empty() && uid != "0" && uid != "root",
        "{COMPOSE}: user {user:?}"
    );
    assert!(
        !seq_of(svc.get("group_add").expect("group_add"), "group_add").is_empty(),
        "{COMPOSE}: group_add gives the non-root user the docker group's id"
    );
    assert!(
        svc.get("env_file").is_some(),
        "{COMPOSE}: secrets come from an env file"
    );

    // Volumes, short syntax SOURCE:TARGET[:MODE].
    let mut binds = Vec::new();
    let mut named = Vec::new();
    for v in seq_of(svc.get("volumes").expect("volumes"), "volumes") {
        let spec = str_of(v, "volumes");
        let parts: Vec<&str> = spec.split(':').collect();
        assert!((2..=3).contains(&parts.len()), "{COMPOSE}: volume {spec:?}");
        let mode = parts.get(2).copied().unwrap_or("rw");
        if parts[0].starts_with('/') {
            binds.push((parts[0], parts[1], mode));
        } else {
            named.push((parts[0], parts[1], mode));
        }
    }
    for (what, path) in embedded_paths() {
        let covering = binds
            .iter()
            .find(|(_, target, _)| path == *target || path.starts_with(&format!("{target}/")));
        let Some((source, target, mode)) = covering else {
            panic!("{COMPOSE}: nothing mounts {path} ({what} in the embedded config)");
        };
        assert_eq!(source, target, "{COMPOSE}: {path} must be at the same path");
        assert_eq!(*mode, "ro", "{COMPOSE}: {source} must be read-only");
    }
    for (source, _, mode) in &binds {
        assert_eq!(
            *mode, "ro",
            "{COMPOSE}: host path {source} must be read-only"
        );
    }

    let args = compose_args(&svc);
    let storage = flag_value(&args, "--storage.path").expect("--storage.path in command");
    let volume = named
        .iter()
        .find(|(_, target, _)| *target == storage)
        .unwrap_or_else(|| panic!("{COMPOSE}: no named volume at {storage}"));
    assert_eq!(volume.2, "rw", "{COMPOSE}: the state volume is writable");
    assert!(
        root.get("volumes").and_then(|v| v.get(volume.0)).is_some(),
        "{COMPOSE}: volume {} is not declared at the top level",
        volume.0
    );

    let listen = flag_value(&args, "--web.listen-address").expect("--web.listen-address");
    assert_eq!(
        assert_safe_listen(&listen, COMPOSE),
        unit_listen(),
        "{COMPOSE} and {UNIT} listen on the same address (Prometheus scrapes one)"
    );
    assert_cli_accepts(&args, COMPOSE);

    let mut all = Vec::new();
    scalars(&root, &mut all);
    for s in all {
        assert!(
            !s.contains("0.0.0.0") && !s.contains("[::]"),
            "{COMPOSE}: {s:?} would listen on every interface"
        );
    }

    let image = get("image");
    let version = cargo_value("package", "version");
    assert_eq!(
        image,
        format!("harena-exporter:{version}"),
        "{COMPOSE}: the image tag that docs/install.md builds"
    );
}

// --- the Dockerfile -------------------------------------------------------------------------

/// `(INSTRUCTION, arguments)` with continuation lines joined and comments dropped.
fn dockerfile_instructions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in read(DOCKERFILE).lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(body) = t.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
            continue;
        }
        current.push_str(t);
        let (ins, rest) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        out.push((ins.to_uppercase(), rest.trim().to_string()));
        current.clear();
    }
    out
}

/// A value of Cargo.toml: `key = "value"` in the first `[section]` or `[[section]]` that
/// has it.
fn cargo_value(section: &str, key: &str) -> String {
    let text = read("Cargo.toml");
    let mut in_section = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_section = line.trim_matches(['[', ']']) == section;
            continue;
        }
        if !in_section {
            continue;
        }
        if let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            return v.trim().trim_matches('"').to_string();
        }
    }
    panic!("Cargo.toml: no {key} in [{section}]")
}

fn cargo_has_section(section: &str) -> bool {
    read("Cargo.toml")
        .lines()
        .any(|l| l.trim() == format!("[{section}]"))
}

fn exec_form(args: &str, what: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("{DOCKERFILE}: {what} {args}: {e}"))
}

#[test]
fn dockerfile_builds_the_binary_and_profile_of_cargo_toml_and_runs_as_non_root() {
    let ins = dockerfile_instructions();
    let arg_default = |name: &str| {
        ins.iter()
            .filter(|(i, _)| i == "ARG")
            .find_map(|(_, a)| a.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{DOCKERFILE}: no ARG {name}=default"))
            .to_string()
    };

    // The profile and the binary exist in Cargo.toml.
    let profile = arg_default("PROFILE");
    assert!(
        profile == "release" || cargo_has_section(&format!("profile.{profile}")),
        "{DOCKERFILE}: profile {profile} is not in Cargo.toml"
    );
    assert_eq!(cargo_value("bin", "name"), "harena-exporter");
    let build = ins
        .iter()
        .find(|(i, a)| i == "RUN" && a.contains("cargo build"))
        .map(|(_, a)| a.clone())
        .expect("a RUN with cargo build");
    for needed in [
        "--locked",
        "--profile \"$PROFILE\"",
        "--bin harena-exporter",
        "target/$triple/$PROFILE/harena-exporter",
        "type=cache",
    ] {
        assert!(
            build.contains(needed),
            "{DOCKERFILE}: the build step lacks {needed}"
        );
    }
    // The Rust image is at least the crate's rust-version.
    let parse = |v: &str| -> (u32, u32) {
        let mut it = v.split('.').map(|p| p.parse().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    };
    let rust = arg_default("RUST_VERSION");
    let msrv = cargo_value("package", "rust-version");
    assert!(
        parse(&rust) >= parse(&msrv),
        "{DOCKERFILE}: Rust {rust} is older than rust-version {msrv}"
    );

    // Stages: a cross-compiling builder on the build machine, then the runtime last.
    let froms: Vec<&String> = ins
        .iter()
        .filter(|(i, _)| i == "FROM")
        .map(|(_, a)| a)
        .collect();
    let first = froms.first().expect("FROM");
    assert!(
        first.starts_with("--platform=$BUILDPLATFORM rust:"),
        "{DOCKERFILE}: the builder runs on $BUILDPLATFORM and cross-compiles: {first}"
    );
    assert!(
        first.contains("bullseye"),
        "{DOCKERFILE}: the builder's glibc (Debian 11: 2.31) must not be newer than Amazon Linux 2023's (2.34): {first}"
    );
    for arch in ["arm64)", "amd64)"] {
        assert!(
            ins.iter().any(|(i, a)| i == "RUN" && a.contains(arch)),
            "{DOCKERFILE}: no case for {arch}"
        );
    }
    let last = froms.last().expect("FROM");
    assert!(
        last.starts_with("gcr.io/distroless/cc-"),
        "{DOCKERFILE}: the runtime has glibc and CA certificates (distroless cc): {last}"
    );
    let runtime_start = ins
        .iter()
        .rposition(|(i, _)| i == "FROM")
        .expect("runtime FROM");
    let runtime = &ins[runtime_start..];
    let user = runtime
        .iter()
        .rev()
        .find(|(i, _)| i == "USER")
        .map(|(_, a)| a.clone())
        .expect("USER in the runtime stage");
    let uid = user.split(':').next().unwrap_or("");
    assert!(
        !uid.is_empty() && uid != "0" && uid != "root",
        "{DOCKERFILE}: runs as {user}"
    );
    assert!(
        runtime
            .iter()
            .any(|(i, a)| i == "EXPOSE" && a == &PORT.to_string()),
        "{DOCKERFILE}: EXPOSE {PORT}"
    );
    let entry = runtime
        .iter()
        .find(|(i, _)| i == "ENTRYPOINT")
        .map(|(_, a)| exec_form(a, "ENTRYPOINT"))
        .expect("ENTRYPOINT");
    assert_eq!(entry, vec![INSTALLED_BIN.to_string()]);
    let cmd = runtime
        .iter()
        .find(|(i, _)| i == "CMD")
        .map(|(_, a)| exec_form(a, "CMD"))
        .expect("CMD");
    let listen = flag_value(&cmd, "--web.listen-address").expect("CMD --web.listen-address");
    assert_safe_listen(&listen, DOCKERFILE);
    let storage = flag_value(&cmd, "--storage.path").expect("CMD --storage.path");
    let volumes = runtime
        .iter()
        .find(|(i, _)| i == "VOLUME")
        .map(|(_, a)| exec_form(a, "VOLUME"))
        .expect("VOLUME");
    assert_eq!(volumes, vec![storage.clone()], "{DOCKERFILE}: VOLUME");
    assert!(
        runtime.iter().any(|(i, a)| i == "COPY"
            && a.contains("--chown=65532:65532")
            && a.ends_with(&storage)),
        "{DOCKERFILE}: the storage folder belongs to the runtime user"
    );
    assert_cli_accepts(&cmd, DOCKERFILE);

    // Every RUN script is valid sh (the builder's /bin/sh is dash, like Debian's here).
    for (_, args) in ins.iter().filter(|(i, _)| i == "RUN") {
        let mut script = args.as_str();
        while let Some(rest) = script.strip_prefix("--") {
            script = rest
                .split_once(char::is_whitespace)
                .map_or("", |(_, r)| r)
                .trim_start();
        }
        let out = Command::new("sh")
            .args(["-n", "-c", script])
            .output()
            .expect("run sh -n");
        assert!(
            out.status.success(),
            "{DOCKERFILE}: RUN is not valid sh: {}\n{script}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// First path component, relative to the repository, of `path` (already normalised).
fn top_level(path: &Path) -> String {
    let rel = path.strip_prefix(repo()).unwrap_or(path);
    rel.components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .unwrap_or_default()
}

fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn docker_build_context_holds_every_file_cargo_reads() {
    let text = read(DOCKERIGNORE);
    let rules: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        rules.first(),
        Some(&"*"),
        "{DOCKERIGNORE}: starts by excluding everything"
    );
    let allowed: BTreeSet<String> = rules
        .iter()
        .filter_map(|r| r.strip_prefix('!'))
        .map(|r| r.trim_end_matches('/').to_string())
        .collect();

    // What the Dockerfile copies from the context is let through, and vice versa.
    let mut copied = BTreeSet::new();
    for (_, args) in dockerfile_instructions()
        .iter()
        .filter(|(i, a)| i == "COPY" && !a.starts_with("--from"))
    {
        let words: Vec<&str> = args.split_whitespace().collect();
        for src in &words[..words.len() - 1] {
            copied.insert(src.trim_end_matches('/').to_string());
        }
    }
    assert_eq!(
        copied, allowed,
        "{DOCKERFILE} copies exactly what {DOCKERIGNORE} lets through"
    );

    // Targets of Cargo.toml and every include_str!/include_bytes! are in the context.
    let mut needed: Vec<(String, PathBuf)> = Vec::new();
    for line in read("Cargo.toml").lines() {
        if let Some(p) = line.trim().strip_prefix("path = ") {
            needed.push(("Cargo.toml".into(), repo().join(p.trim_matches('"'))));
        }
    }
    assert!(
        !repo().join("build.rs").exists() || allowed.contains("build.rs"),
        "build.rs is not in the build context"
    );
    // cargo looks for each declared bench at benches/<name>.rs, even to build the binary.
    if cargo_has_section("[bench]") {
        let name = cargo_value("bench", "name");
        needed.push((
            "Cargo.toml [[bench]]".into(),
            repo().join("benches").join(format!("{name}.rs")),
        ));
    }
    let include = Regex::new(r#"include_(?:str|bytes)!\(\s*"([^"]+)"\s*\)"#).expect("regex");
    let mut files = Vec::new();
    rust_files(&repo().join("src"), &mut files);
    rust_files(&repo().join("benches"), &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read source");
        for cap in include.captures_iter(&text) {
            let dir = file.parent().expect("parent");
            needed.push((file.display().to_string(), dir.join(&cap[1])));
        }
    }
    assert!(needed.len() > 5, "found too few inputs: {needed:?}");
    for (from, path) in needed {
        let path = normalise(&path);
        assert!(path.exists(), "{from}: {} does not exist", path.display());
        assert!(
            allowed.contains(&top_level(&path)),
            "{from} reads {}, which {DOCKERIGNORE} keeps out of the build context",
            path.display()
        );
    }
}

// --- Prometheus -----------------------------------------------------------------------------

#[test]
fn prometheus_snippet_scrapes_port_9811_and_loads_every_shipped_rule_file_in_promtool() {
    let text = read(SCRAPE);
    let root = parse_yaml(SCRAPE, &text);
    let jobs = seq_of(
        root.get("scrape_configs").expect("scrape_configs"),
        "scrape_configs",
    );
    let job = jobs
        .iter()
        .find(|j| j.get("job_name").and_then(Node::as_str) == Some("harena-exporter"))
        .unwrap_or_else(|| panic!("{SCRAPE}: no job harena-exporter"));
    assert_eq!(
        job.get("scrape_interval").and_then(Node::as_str),
        Some("15s")
    );
    let mut targets = Vec::new();
    for sc in seq_of(
        job.get("static_configs").expect("static_configs"),
        "static_configs",
    ) {
        for t in seq_of(sc.get("targets").expect("targets"), "targets") {
            targets.push(str_of(t, "targets").to_string());
        }
    }
    assert!(!targets.is_empty(), "{SCRAPE}: no target");
    for t in &targets {
        let ip = assert_safe_listen(t, SCRAPE);
        assert_eq!(
            ip,
            unit_listen(),
            "{SCRAPE}: scrapes where the exporter listens"
        );
    }

    // rule_files: globs on file names; together they load exactly rules/*.yml.
    let mut shipped: BTreeSet<String> = BTreeSet::new();
    for e in std::fs::read_dir(repo().join("rules")).expect("read rules/") {
        let p = e.expect("entry").path();
        if p.is_file() && p.extension().is_some_and(|x| x == "yml") {
            shipped.insert(p.file_name().expect("name").to_string_lossy().to_string());
        }
    }
    let globs: Vec<String> = seq_of(root.get("rule_files").expect("rule_files"), "rule_files")
        .iter()
        .map(|n| str_of(n, "rule_files").to_string())
        .collect();
    let mut loaded = BTreeSet::new();
    let mut folder = None;
    for g in &globs {
        let (dir, pattern) = g.rsplit_once('/').expect("an absolute glob");
        folder.get_or_insert(dir.to_string());
        let (pre, post) = pattern.split_once('*').unwrap_or((pattern, ""));
        let matched: Vec<&String> = shipped
            .iter()
            .filter(|n| {
                if pattern.contains('*') {
                    n.starts_with(pre) && n.ends_with(post) && n.len() >= pre.len() + post.len()
                } else {
                    *n == pattern
                }
            })
            .collect();
        assert!(
            !matched.is_empty(),
            "{SCRAPE}: {g} matches no file of rules/"
        );
        loaded.extend(matched.into_iter().cloned());
    }
    assert_eq!(
        loaded, shipped,
        "{SCRAPE}: every shipped rule file is loaded"
    );
    // Prometheus evaluates the rules too: the exporter's own ALERTS series are dropped.
    let drops_alerts = job
        .get("metric_relabel_configs")
        .and_then(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .any(|r| {
            r.get("action").and_then(Node::as_str) == Some("drop")
                && r.get("regex").and_then(Node::as_str) == Some("ALERTS|ALERTS_FOR_STATE")
        });
    assert!(
        drops_alerts,
        "{SCRAPE}: with rule_files, drop the scraped ALERTS|ALERTS_FOR_STATE"
    );

    // The snippet as a whole Prometheus config, the rule folder pointing at rules/.
    common::require("promtool", "prometheus");
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = folder.expect("a rule folder");
    let config = text.replace(
        &format!("{folder}/"),
        &format!("{}/", repo().join("rules").display()),
    );
    let file = common::write_file(dir.path(), "prometheus.yml", &config);
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(&file)
        .output()
        .expect("run promtool");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.contains("SUCCESS"),
        "promtool check config ({SCRAPE} with rules/):\n{report}"
    );
}

// --- the env file ---------------------------------------------------------------------------

#[test]
fn env_example_names_exactly_the_variables_of_the_embedded_config() {
    let line_re = Regex::new(r"^([A-Z][A-Z0-9_]*)='([^']*)'$").expect("regex");
    let mut names = BTreeSet::new();
    for (i, line) in read(ENV_EXAMPLE).lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        // NAME='value': the one form systemd, Docker Compose and sh read alike.
        let cap = line_re
            .captures(line)
            .unwrap_or_else(|| panic!("{ENV_EXAMPLE}:{}: not NAME='value': {line}", i + 1));
        assert!(
            names.insert(cap[1].to_string()),
            "{ENV_EXAMPLE}:{}: {} twice",
            i + 1,
            &cap[1]
        );
        assert_eq!(&cap[2], "", "{ENV_EXAMPLE}: example values stay empty");
    }
    let embedded = embedded_env_names();
    assert_eq!(
        names, embedded,
        "{ENV_EXAMPLE} vs the `_env:` keys of the embedded config"
    );
    let install = read(INSTALL);
    for name in &embedded {
        assert!(
            install.contains(&format!("`{name}`")),
            "{INSTALL} does not explain {name}"
        );
    }
}

// --- the install guide ------------------------------------------------------------------------

/// The `harena-exporter …` command lines of the guide: lines of code blocks and inline code
/// that start with the command (or run the installed or built binary), cut at the first
/// shell operator or comment.
fn guide_command_lines(text: &str) -> Vec<Vec<String>> {
    let mut candidates = Vec::new();
    let mut in_block = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            candidates.push(line.trim().to_string());
        }
    }
    let inline = Regex::new(r"`([^`]+)`").expect("regex");
    for line in text.lines() {
        for cap in inline.captures_iter(line) {
            candidates.push(cap[1].trim().to_string());
        }
    }
    let starts = ["harena-exporter ", "./dist/harena-exporter "];
    let mut lines = Vec::new();
    for c in candidates {
        if c.contains("\"$@\"") {
            continue; // the shell functions pass their arguments through
        }
        let rest = if let Some(i) = c.find(&format!("{INSTALLED_BIN} ")) {
            &c[i + INSTALLED_BIN.len() + 1..]
        } else if let Some(s) = starts.iter().find(|s| c.starts_with(**s)) {
            &c[s.len()..]
        } else {
            continue;
        };
        let args: Vec<String> = rest
            .split_whitespace()
            .take_while(|w| {
                !matches!(*w, "|" | "||" | "&&" | "\\" | ";" | ">" | ">>") && !w.starts_with('#')
            })
            .map(str::to_string)
            .collect();
        // Prose such as `harena-exporter ...` stands for any command.
        if args.iter().any(|a| a == "..." || a == "…") {
            continue;
        }
        lines.push(args);
    }
    lines
}

#[test]
fn install_guide_commands_files_and_addresses_are_real() {
    let text = read(INSTALL);

    // Every command line of the guide is one the binary accepts.
    let lines = guide_command_lines(&text);
    let subcommands: BTreeSet<&str> = lines
        .iter()
        .filter_map(|l| l.first().map(String::as_str))
        .filter(|w| !w.starts_with('-'))
        .collect();
    for needed in ["check", "send-test-email", "default-config", "check-config"] {
        assert!(
            subcommands.contains(needed),
            "{INSTALL}: no `harena-exporter {needed}`"
        );
    }
    for args in &lines {
        assert_cli_accepts(args, INSTALL);
    }

    // Every address the guide gives the exporter or the port forward is the unit's.
    let listen = unit_listen().to_string();
    let flag = Regex::new(r"--web\.listen-address=([0-9.:]+)").expect("regex");
    for cap in flag.captures_iter(&text) {
        assert_eq!(
            assert_safe_listen(&cap[1], INSTALL).to_string(),
            listen,
            "{INSTALL}: {}",
            &cap[0]
        );
    }
    assert!(
        text.contains(&format!(
            "\"host\":[\"{listen}\"],\"portNumber\":[\"{PORT}\"]"
        )),
        "{INSTALL}: the status page's port forward goes to {listen}:{PORT}"
    );
    assert!(
        !text.contains("--web.listen-address=0.0.0.0"),
        "{INSTALL}: never all interfaces"
    );

    // Links and docker/ paths point at files that exist.
    let link = Regex::new(r"\]\(([^)#]+)(?:#[^)]*)?\)").expect("regex");
    for cap in link.captures_iter(&text) {
        let target = &cap[1];
        if target.starts_with("http://") || target.starts_with("https://") {
            continue;
        }
        let path = normalise(&repo().join("docs").join(target));
        assert!(path.exists(), "{INSTALL}: link to {target}: no such file");
    }
    let docker_path = Regex::new(r"(?:^|[\s`(\[])(docker/[A-Za-z0-9._-]+)").expect("regex");
    for cap in docker_path.captures_iter(&text) {
        assert!(
            repo().join(&cap[1]).exists(),
            "{INSTALL}: {} does not exist",
            &cap[1]
        );
    }
    // The image tag it builds is the one the compose service runs.
    let (_, svc) = compose_service();
    let image = str_of(svc.get("image").expect("image"), "image");
    assert!(
        text.contains(&format!("-t {image} --load")),
        "{INSTALL}: builds {image}"
    );
}
