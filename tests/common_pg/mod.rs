//! A real PostgreSQL server for tests: a throw-away cluster on a free 127.0.0.1 port,
//! with TLS on (a self-signed certificate for 127.0.0.1 and localhost), started with
//! `initdb` + `pg_ctl` and stopped with `pg_ctl -m immediate stop`.
//!
//! ```ignore
//! mod common_pg;
//! let pg = common_pg::shared(); // one server per test binary, stopped at exit
//! pg.psql("CREATE ROLE monitor LOGIN PASSWORD 'x' IN ROLE pg_monitor");
//! ```
//!
//! As root, `initdb` and `pg_ctl` run as the `postgres` user (`runuser`), and the
//! cluster's folder is given to that user. A missing PostgreSQL fails with the
//! `apt-get install` command; it never skips.
#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The superuser's name.
pub const SUPERUSER: &str = "postgres";

/// A running cluster; stopped (and its folder removed) when dropped.
pub struct PgServer {
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    /// The superuser's password.
    pub superuser_password: String,
    /// PEM file of the server's self-signed certificate, to trust as a CA.
    pub ca_file: PathBuf,
    /// Folder of the cluster: `data/`, the socket, the log, the files above.
    pub dir: PathBuf,
    bin: PathBuf,
    /// Some((uid, gid)) when the server runs as the `postgres` user.
    run_as: Option<(u32, u32)>,
    stopped: std::sync::atomic::AtomicBool,
    // Kept last: removed after the server is stopped.
    _tmp: Option<tempfile::TempDir>,
}

/// The folder holding `initdb`, `pg_ctl` and `psql`: from `PATH`, else the newest
/// `/usr/lib/postgresql/*/bin`.
///
/// # Panics
/// When PostgreSQL is not installed, with the command that installs it.
pub fn bin_dir() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("initdb"))
            .find(|p| p.is_file())
    });
    if let Some(initdb) = on_path {
        let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        if let Some(dir) = real.parent()
            && dir.join("pg_ctl").is_file()
        {
            return dir.to_path_buf();
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL (initdb, pg_ctl) is not installed: install it: apt-get install -y postgresql"
        ),
    }
}

fn id_of(flag: &str) -> u32 {
    let out = Command::new("id")
        .args([flag, "postgres"])
        .output()
        .expect("run id");
    assert!(
        out.status.success(),
        "running as root, PostgreSQL must run as the `postgres` user, which does not exist: \
         install it: apt-get install -y postgresql"
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("numeric id")
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

impl PgServer {
    /// Creates and starts a cluster (about 1 s). Every role logs in with
    /// `scram-sha-256`, except as `hba` rules (`pg_hba.conf` lines, put first) say.
    /// `extra` is added to the server's command line options (`-c name=value …`).
    ///
    /// # Panics
    /// When PostgreSQL is missing or does not start (the server log is in the message).
    pub fn start(hba: &[&str], extra: &str) -> PgServer {
        let bin = bin_dir();
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let run_as = root.then(|| (id_of("-u"), id_of("-g")));
        let tmp = tempfile::Builder::new()
            .prefix("harena-pg-")
            .tempdir()
            .expect("create a temporary folder");
        let dir = tmp.path().to_path_buf();
        let superuser_password = format!("Su-{}-pw", std::process::id());
        let pwfile = dir.join("superuser.pw");
        std::fs::write(&pwfile, &superuser_password).expect("write the password file");

        // TLS: a self-signed certificate the tests trust through ca_file.
        let key = rcgen::KeyPair::generate().expect("generate a key");
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("certificate parameters");
        let cert = params.self_signed(&key).expect("self-sign");
        let ca_file = dir.join("server.crt");
        std::fs::write(&ca_file, cert.pem()).expect("write the certificate");
        let key_file = dir.join("server.key");
        std::fs::write(&key_file, key.serialize_pem()).expect("write the key");
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))
            .expect("chmod the key");

        let mut server = PgServer {
            port: 0,
            superuser_password,
            ca_file,
            dir: dir.clone(),
            bin,
            run_as,
            stopped: std::sync::atomic::AtomicBool::new(false),
            _tmp: Some(tmp),
        };
        if let Some((uid, gid)) = run_as {
            for p in [&dir, &pwfile, &server.ca_file, &key_file] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid)).expect("chown to postgres");
            }
        }
        let data = dir.join("data");
        server.pg(
            "initdb",
            &[
                "--auth=scram-sha-256",
                &format!("--pwfile={}", pwfile.display()),
                "--no-sync",
                "--no-instructions",
                "--encoding=UTF8",
                "--locale=C",
                "-U",
                SUPERUSER,
                "-D",
                &data.display().to_string(),
            ],
        );
        if !hba.is_empty() {
            let file = data.join("pg_hba.conf");
            let rest = std::fs::read_to_string(&file).expect("read pg_hba.conf");
            let mut text = hba.join("\n");
            text.push('\n');
            text.push_str(&rest);
            std::fs::write(&file, text).expect("write pg_hba.conf");
        }
        // The port is free when picked; another process may take it before the
        // server binds it: try a few.
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let options = format!(
                "-c listen_addresses=127.0.0.1 -p {port} -k {dir} -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off \
                 -c ssl=on -c ssl_cert_file={cert} -c ssl_key_file={key} {extra}",
                dir = dir.display(),
                cert = server.ca_file.display(),
                key = key_file.display(),
            );
            let log = dir.join("server.log");
            let out = server.try_pg(
                "pg_ctl",
                &[
                    "-w",
                    "-t",
                    "30",
                    "-D",
                    &data.display().to_string(),
                    "-l",
                    &log.display().to_string(),
                    "-o",
                    &options,
                    "start",
                ],
            );
            if out.status.success() {
                server.port = port;
                return server;
            }
            last = format!(
                "{}{}\nserver log:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        panic!("pg_ctl start failed three times:\n{last}");
    }

    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        match self.run_as {
            Some(_) => {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    fn try_pg(&self, tool: &str, args: &[&str]) -> Output {
        self.command(tool)
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {tool}: {e}"))
    }

    fn pg(&self, tool: &str, args: &[&str]) {
        let out = self.try_pg(tool, args);
        assert!(
            out.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs SQL as the superuser with `psql` (over TCP), in database `postgres`;
    /// returns the unaligned, tuples-only output.
    ///
    /// # Panics
    /// When the SQL fails.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in("postgres", sql)
    }

    /// Like [`PgServer::psql`], in another database.
    pub fn psql_in(&self, database: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                database,
            ])
            .args(["-c", sql])
            .env("PGPASSWORD", &self.superuser_password)
            .env("PGSSLMODE", "disable")
            .stdin(Stdio::null())
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Writes a file readable by the test (for `password_file`), in the cluster's folder.
    pub fn write_file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).expect("write test file");
        p
    }

    /// The server log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Stops the server now (`pg_ctl -m immediate stop`); later calls do nothing.
    pub fn stop(&self) {
        if self.port == 0 || self.stopped.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        // Never panics: this also runs at process exit.
        let _ = self
            .command("pg_ctl")
            .args(["-w", "-m", "immediate", "stop", "-D"])
            .arg(self.dir.join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

static SHARED: OnceLock<PgServer> = OnceLock::new();

extern "C" fn stop_shared() {
    if let Some(pg) = SHARED.get() {
        pg.stop();
        let _ = std::fs::remove_dir_all(pg.path());
    }
}

/// One server for the whole test binary, started on first use (with the `hba` rules of
/// [`PgServer::start`]) and set up by `init(&server)`, and stopped when the process
/// exits. The first call's arguments are the ones used.
pub fn shared(hba: &[&str], init: fn(&PgServer)) -> &'static PgServer {
    SHARED.get_or_init(|| {
        let server = PgServer::start(hba, "");
        // Statics are never dropped: stop the server at exit instead.
        // SAFETY: `stop_shared` is a plain function that does not unwind.
        let registered = unsafe { libc::atexit(stop_shared) };
        if registered != 0 {
            server.stop();
            panic!("register the PostgreSQL stop at exit");
        }
        init(&server);
        server
    })
}
