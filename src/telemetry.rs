//! The exporter's own metrics (`harena_exporter_*`, `harena_config_*`, process
//! metrics) and the log subscriber (logfmt by default, or JSON).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::proto;
use prometheus::{Encoder, Histogram, HistogramOpts, IntGaugeVec, Opts, Registry};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use crate::store::{Store, families};

/// Self metrics, registered in their own registry and rendered beside the store.
#[derive(Debug)]
pub struct Telemetry {
    registry: Registry,
    /// When a config last loaded (Unix seconds); 0 before the first.
    reload_success_ts: std::sync::Mutex<f64>,
    schedule_delay: Histogram,
}

/// `harena_config_last_reload_successful`: in the store, not the registry, so that the
/// exporter's own rules (ExporterConfigReloadFailed) see it.
static RELOAD_OK: std::sync::LazyLock<std::sync::Arc<crate::model::MetricDesc>> =
    std::sync::LazyLock::new(|| {
        std::sync::Arc::new(crate::model::MetricDesc::gauge(
            "harena_config_last_reload_successful",
            "1 when the last config (re)load succeeded, 0 when it was refused.",
        ))
    });

/// `harena_config_last_reload_success_timestamp_seconds`, in the store too.
static RELOAD_TS: std::sync::LazyLock<std::sync::Arc<crate::model::MetricDesc>> =
    std::sync::LazyLock::new(|| {
        std::sync::Arc::new(crate::model::MetricDesc::gauge(
            "harena_config_last_reload_success_timestamp_seconds",
            "When the config was last loaded successfully, as a Unix timestamp.",
        ))
    });

/// The store owner of the exporter's own series.
pub const SELF_OWNER: &str = "__harena_exporter";

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    /// Creates and registers every self metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let build = IntGaugeVec::new(
            Opts::new(
                "harena_exporter_build_info",
                "Always 1; the version of the running exporter in a label.",
            ),
            &["version"],
        )
        .expect("static metric definition is valid");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let schedule_delay = Histogram::with_opts(
            HistogramOpts::new(
                "harena_scheduler_start_delay_seconds",
                "How late check runs started after their scheduled slot, in seconds.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        )
        .expect("static metric definition is valid");
        for c in [
            Box::new(build) as Box<dyn prometheus::core::Collector>,
            Box::new(schedule_delay.clone()),
        ] {
            registry.register(c).expect("self metric names are unique");
        }
        Telemetry {
            registry,
            reload_success_ts: std::sync::Mutex::new(0.0),
            schedule_delay,
        }
    }

    /// Registers more self metrics (the notification side's).
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) {
        if let Err(e) = self.registry.register(c) {
            tracing::error!(error = %e, "register self metric");
        }
    }

    /// Records the result of a config (re)load in the store (rules and `/metrics` read
    /// it there).
    pub fn config_loaded(&self, store: &Store, ok: bool) {
        let now_ms = crate::scheduler::now_ms();
        let ts = {
            let mut ts = self
                .reload_success_ts
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if ok {
                #[allow(clippy::cast_precision_loss)]
                let now = now_ms as f64 / 1000.0;
                *ts = now;
            }
            *ts
        };
        let sample =
            |desc: &std::sync::Arc<crate::model::MetricDesc>, value| crate::model::Sample {
                desc: std::sync::Arc::clone(desc),
                labels: crate::model::Labels::new(),
                value,
            };
        store.publish(
            SELF_OWNER,
            now_ms,
            vec![
                sample(&RELOAD_OK, if ok { 1.0 } else { 0.0 }),
                sample(&RELOAD_TS, ts),
            ],
        );
    }

    /// Records how late a run started after its slot.
    pub fn observe_schedule_delay(&self, delay: Duration) {
        self.schedule_delay.observe(delay.as_secs_f64());
    }

    /// Renders `/metrics`: the store's series, self metrics and process metrics.
    pub fn render(&self, store: &Store) -> String {
        let mut fams = self.registry.gather();
        fams.extend(families(&store.current()));
        fams.extend(process_families());
        fams.sort_by(|a, b| a.name().cmp(b.name()));
        let mut buf = Vec::with_capacity(16 * 1024);
        let encoder = prometheus::TextEncoder::new();
        if let Err(e) = encoder.encode(&fams, &mut buf) {
            tracing::error!(error = %e, "encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

fn gauge_family(
    name: &str,
    help: &str,
    kind: proto::MetricType,
    value: f64,
) -> proto::MetricFamily {
    let mut mf = proto::MetricFamily::default();
    mf.set_name(name.to_string());
    mf.set_help(help.to_string());
    mf.set_field_type(kind);
    let mut m = proto::Metric::default();
    if kind == proto::MetricType::COUNTER {
        let mut c = proto::Counter::default();
        c.set_value(value);
        m.set_counter(c);
    } else {
        let mut g = proto::Gauge::default();
        g.set_value(value);
        m.set_gauge(g);
    }
    mf.mut_metric().push(m);
    mf
}

/// The standard `process_*` metrics, read from `/proc/self` (Linux only).
pub fn process_families() -> Vec<proto::MetricFamily> {
    let mut out = Vec::new();
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return out;
    };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return out;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions; it only reads system configuration.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Indices: utime 11, stime 12, starttime 19, vsize 20, rss 21 (0-based after ')').
    if ticks > 0.0 {
        out.push(gauge_family(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            proto::MetricType::COUNTER,
            (num(11) + num(12)) / ticks,
        ));
        if let Some(boot) = boot_time() {
            out.push(gauge_family(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                proto::MetricType::GAUGE,
                boot + num(19) / ticks,
            ));
        }
    }
    out.push(gauge_family(
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        proto::MetricType::GAUGE,
        num(20),
    ));
    out.push(gauge_family(
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        proto::MetricType::GAUGE,
        num(21) * page,
    ));
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        out.push(gauge_family(
            "process_open_fds",
            "Number of open file descriptors.",
            proto::MetricType::GAUGE,
            dir.count() as f64,
        ));
    }
    if let Ok(limits) = std::fs::read_to_string("/proc/self/limits")
        && let Some(line) = limits.lines().find(|l| l.starts_with("Max open files"))
        && let Some(v) = line
            .split_whitespace()
            .nth(3)
            .and_then(|v| v.parse::<f64>().ok())
    {
        out.push(gauge_family(
            "process_max_fds",
            "Maximum number of open file descriptors.",
            proto::MetricType::GAUGE,
            v,
        ));
    }
    out
}

fn boot_time() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `ts=… level=info msg="…" key=value` lines.
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// Installs the global log subscriber writing to stderr.
pub fn init_logging(level: tracing::Level, format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let res = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Logfmt => builder
            .fmt_fields(LogfmtFields)
            .event_format(Logfmt)
            .try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = res;
}

/// Formats events as logfmt: `ts=… level=… msg=… k=v`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Logfmt;

/// Formats span and event fields as logfmt pairs.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogfmtFields;

impl<'w> FormatFields<'w> for LogfmtFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: Writer<'w>,
        fields: R,
    ) -> fmt::Result {
        let mut v = LogfmtVisitor {
            out: String::new(),
            message: None,
        };
        fields.record(&mut v);
        writer.write_str(v.out.trim_start())
    }
}

struct LogfmtVisitor {
    out: String,
    message: Option<String>,
}

impl Visit for LogfmtVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_string());
        } else {
            push_pair(&mut self.out, field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

fn push_pair(out: &mut String, key: &str, value: &str) {
    out.push(' ');
    out.push_str(key);
    out.push('=');
    let needs_quotes = value.is_empty()
        || value
            .chars()
            .any(|c| c == ' ' || c == '"' || c == '=' || c == '\\' || c.is_control());
    if needs_quotes {
        out.push_str(&format!("{value:?}"));
    } else {
        out.push_str(value);
    }
}

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = String::with_capacity(160);
        line.push_str("ts=");
        line.push_str(&rfc3339_now());
        line.push_str(" level=");
        line.push_str(&meta.level().as_str().to_ascii_lowercase());
        let mut v = LogfmtVisitor {
            out: String::new(),
            message: None,
        };
        event.record(&mut v);
        if let Some(m) = &v.message {
            push_pair(&mut line, "msg", m);
        }
        line.push_str(&v.out);
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    // Span fields already logged on the event itself are not repeated.
                    for pair in fields.split(' ') {
                        let key = pair.split('=').next().unwrap_or("");
                        if !v.out.contains(&format!(" {key}=")) {
                            line.push(' ');
                            line.push_str(pair);
                        }
                    }
                }
            }
        }
        push_pair(&mut line, "target", meta.target());
        writeln!(writer, "{line}")
    }
}

/// Now as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(i64::try_from(d.as_millis()).unwrap_or(0))
}

/// A Unix time in ms as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn logfmt_quotes_when_needed() {
        let mut s = String::new();
        push_pair(&mut s, "a", "plain");
        push_pair(&mut s, "b", "two words");
        push_pair(&mut s, "c", "");
        assert_eq!(s, " a=plain b=\"two words\" c=\"\"");
    }
}
