//! The `harena-exporter` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use harena_exporter::app;
use harena_exporter::cli::{self, OutputFormat};
use harena_exporter::config::{self, ConfigSource, types::PromDuration};
use harena_exporter::notify::cli as notify_cli;
use harena_exporter::telemetry::{self, LogFormat};

/// Default listen address: loopback only (the Harena security group opens every port).
const DEFAULT_LISTEN: &str = "127.0.0.1:9811";

#[derive(Parser, Debug)]
#[command(
    name = "harena-exporter",
    version,
    about = "Probes the Harena deployment, exposes Prometheus metrics and evaluates alert rules."
)]
struct Cli {
    /// Config file (YAML). Without it, the embedded Harena config runs.
    #[arg(long = "config.file", global = true, value_name = "FILE")]
    config_file: Option<PathBuf>,
    /// Address of the web server (/metrics, status page, API).
    #[arg(long = "web.listen-address", default_value = DEFAULT_LISTEN, value_name = "ADDR")]
    listen: String,
    /// TLS and basic auth of the web server, in the format of Prometheus's
    /// exporter-toolkit (tls_server_config, http_server_config, basic_auth_users).
    #[arg(long = "web.config.file", value_name = "FILE")]
    web_config: Option<PathBuf>,
    /// Folder of the state file (tunnel hostname; later alert states and the outbox).
    #[arg(long = "storage.path", default_value = "data", value_name = "DIR")]
    storage: PathBuf,
    /// Log level: error, warn, info, debug, trace.
    #[arg(
        long = "log.level",
        default_value = "info",
        global = true,
        value_name = "LEVEL"
    )]
    log_level: tracing::Level,
    /// Log format.
    #[arg(
        long = "log.format",
        value_enum,
        default_value = "logfmt",
        global = true
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run every check once, print a row per check; exit 0 when all pass, 1 when any
    /// fails, 2 on a config error.
    Check {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        output: OutputFormat,
        /// Retry the failing checks until they pass or this time is over (e.g. 2m).
        #[arg(long, value_parser = parse_duration, default_value = "0")]
        wait: Duration,
    },
    /// Validate the config; exit 0, or 1 with every error as file:line:column: field: message.
    CheckConfig,
    /// Print the embedded default config.
    DefaultConfig,
    /// Run rule unit tests in promtool's format; exit 0 when all pass, 1 otherwise.
    TestRules {
        /// Unit-test files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Send a test email through every email receiver of the config (or one) and print
    /// the SMTP server's answer; exit 0 when every one was accepted.
    SendTestEmail {
        /// Send to this address instead of the receivers' `to`.
        #[arg(long, value_name = "ADDR")]
        to: Option<String>,
        /// Only this receiver.
        #[arg(long, value_name = "NAME")]
        receiver: Option<String>,
    },
    /// Routing tree commands, as `amtool config routes`.
    Routes {
        #[command(subcommand)]
        action: RoutesCmd,
    },
    /// Manage the silences of a running exporter, as `amtool silence` does.
    Silence {
        /// The running exporter.
        #[arg(
            long = "web.url",
            default_value = "http://127.0.0.1:9811",
            global = true
        )]
        url: String,
        /// PEM file of the CA that signed the exporter's certificate (https:// URLs);
        /// without it, the built-in WebPKI roots are trusted.
        #[arg(long = "web.ca-file", global = true, value_name = "FILE")]
        ca_file: Option<PathBuf>,
        /// Accept any certificate of the exporter (testing only).
        #[arg(long = "web.insecure-skip-verify", global = true)]
        insecure_skip_verify: bool,
        /// Basic-auth user name (a `basic_auth_users` entry of the exporter's web config).
        #[arg(long = "web.username", global = true, value_name = "USER")]
        username: Option<String>,
        /// File holding the basic-auth password; without it, the password is read from
        /// the environment variable HARENA_WEB_PASSWORD.
        #[arg(long = "web.password-file", global = true, value_name = "FILE")]
        password_file: Option<PathBuf>,
        #[command(subcommand)]
        action: SilenceCmd,
    },
    /// Start a simulated Harena on loopback and the exporter watching it: services that
    /// answer /health (one flapping), a quick tunnel whose URL changes, a stale backup, and
    /// a mailbox page with the alert emails. Ctrl-C stops it and removes its files.
    Demo {
        /// Address of the exporter's web server; loopback only.
        #[arg(long = "web.listen-address", default_value = DEFAULT_LISTEN, value_name = "ADDR")]
        listen: String,
        /// Folder of the exporter's state file. Default: inside the demo's temporary
        /// folder, removed at the end.
        #[arg(long = "storage.path", value_name = "DIR")]
        storage: Option<PathBuf>,
    },
    /// Run Prometheus PromQL test scripts (`load`, `clear`, `eval instant at`, `eval_fail`,
    /// `eval_ordered`); print one line per failure, then `N passed, N failed, N unsupported`.
    PromqlTest {
        /// Test scripts.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum RoutesCmd {
    /// Print the receivers that a label set reaches (`amtool config routes test`).
    Test {
        /// Labels, as `label=value`.
        #[arg(value_name = "LABEL=VALUE")]
        labels: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
enum SilenceCmd {
    /// Add a silence; prints its id.
    Add {
        /// Matchers, e.g. `alertname=ServiceDown` `check=~"user_.*"`.
        #[arg(required = true, value_name = "MATCHER")]
        matchers: Vec<String>,
        /// How long it lasts.
        #[arg(long, value_parser = parse_duration, default_value = "1h")]
        duration: Duration,
        /// Who adds it.
        #[arg(long, default_value_t = std::env::var("USER").unwrap_or_else(|_| "harena-exporter".into()))]
        author: String,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// List the silences (active and pending; `--all` adds expired ones).
    List {
        /// Also show expired silences.
        #[arg(long)]
        all: bool,
    },
    /// Expire silences now.
    Expire {
        /// Silence ids.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    PromDuration::parse(s).map(|d| d.0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let source = ConfigSource::from_flag(cli.config_file.as_deref());
    match cli.command {
        Some(Command::DefaultConfig) => {
            print!("{}", config::DEFAULT_CONFIG);
            ExitCode::SUCCESS
        }
        Some(Command::PromqlTest { files }) => {
            let summary = harena_exporter::rules::promqltest::run_files(&files);
            for f in &summary.failures {
                println!("{f}");
            }
            for c in &summary.files {
                eprintln!(
                    "{}: {} passed, {} failed, {} unsupported",
                    c.file, c.passed, c.failed, c.unsupported
                );
            }
            println!("{}", summary.closing_line());
            if summary.failed > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Some(Command::TestRules { files }) => {
            let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
            code(harena_exporter::rules::unittest::run_files(
                &files, &mut out, &mut err,
            ))
        }
        Some(Command::Demo { listen, storage }) => {
            telemetry::init_logging(cli.log_level, cli.log_format);
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("start runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let opts = harena_exporter::demo::DemoOptions {
                listen,
                storage,
                ..Default::default()
            };
            match rt.block_on(harena_exporter::demo::run(opts)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("harena-exporter demo: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::CheckConfig) => code(cli::check_config_command(&source)),
        Some(Command::Routes {
            action: RoutesCmd::Test { labels },
        }) => {
            let (c, out) = notify_cli::routes_test(&source, &labels);
            if c == 0 {
                print!("{out}");
            } else {
                eprint!("{out}");
            }
            code(c)
        }
        Some(Command::Silence {
            url,
            ca_file,
            insecure_skip_verify,
            username,
            password_file,
            action,
        }) => {
            let client = notify_cli::ClientOptions::from_flags(
                ca_file,
                insecure_skip_verify,
                username,
                password_file,
            );
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("start runtime: {e}");
                    return ExitCode::from(2);
                }
            };
            let res = rt.block_on(async {
                match action {
                    SilenceCmd::Add {
                        matchers,
                        duration,
                        author,
                        comment,
                    } => notify_cli::silence_add_with(
                        &url, &client, &matchers, duration, &author, &comment,
                    )
                    .await
                    .map(|id| format!("{id}\n")),
                    SilenceCmd::List { all } => {
                        notify_cli::silence_list_with(&url, &client, all).await
                    }
                    SilenceCmd::Expire { ids } => {
                        notify_cli::silence_expire_with(&url, &client, &ids)
                            .await
                            .map(|()| String::new())
                    }
                }
            });
            match res {
                Ok(out) => {
                    print!("{out}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("harena-exporter silence: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::SendTestEmail { to, receiver }) => {
            telemetry::init_logging(tracing::Level::WARN.min(cli.log_level), cli.log_format);
            match runtime() {
                Ok(rt) => code(rt.block_on(notify_cli::send_test_email(
                    &source,
                    to.as_deref(),
                    receiver.as_deref(),
                ))),
                Err(e) => {
                    eprintln!("start runtime: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Some(Command::Check { output, wait }) => {
            telemetry::init_logging(tracing::Level::WARN.min(cli.log_level), cli.log_format);
            match runtime() {
                Ok(rt) => code(rt.block_on(cli::check_command(&source, output, wait))),
                Err(e) => {
                    eprintln!("start runtime: {e}");
                    ExitCode::from(2)
                }
            }
        }
        None => {
            telemetry::init_logging(cli.log_level, cli.log_format);
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("start runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            rt.block_on(async {
                let opts = app::Options {
                    config: source,
                    listen: cli.listen,
                    storage: Some(cli.storage),
                    web_config: cli.web_config,
                };
                match app::start(opts).await {
                    Ok(running) => {
                        running.wait().await;
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("harena-exporter: {e:#}");
                        ExitCode::FAILURE
                    }
                }
            })
        }
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

fn code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c).unwrap_or(2))
}
