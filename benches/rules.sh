#!/usr/bin/env bash
# Benchmark: one evaluation cycle of 1,000 alerting rules over 20,000 series,
# harena-exporter against Prometheus (Debian's 2.42) on the same rules and data.
#
#   ./benches/rules.sh [--minutes 60] [--cycles 5] [--evaluations 6]
#
# 1. Builds `benches/rules.rs` (release) and runs it once: it writes the rule file and
#    the series as OpenMetrics text (data from --minutes before "now" to 10 minutes
#    after), then times --cycles evaluations of the group in the exporter's rule engine
#    (after one warm-up) and prints the median.
# 2. Backfills a Prometheus TSDB from the same OpenMetrics file
#    (promtool tsdb create-blocks-from openmetrics), starts prometheus on 127.0.0.1 with
#    only that rule file (no scrape job, evaluation_interval 15s), and reads
#    prometheus_rule_group_last_duration_seconds after each of --evaluations
#    evaluations; the first is dropped (cold), the median of the rest is reported.
# 3. Prints both numbers and the ratio harena/prometheus.
# Needs prometheus and promtool (apt-get install prometheus), curl and python3.
# Uses ~1.5 GB in a temporary directory (removed at exit).
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES=60 CYCLES=5 EVALS=6
while [ $# -gt 0 ]; do
    case "$1" in
        --minutes) MINUTES=$2; shift 2 ;;
        --cycles) CYCLES=$2; shift 2 ;;
        --evaluations) EVALS=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
AHEAD_MINUTES=10
PROMETHEUS=${PROMETHEUS:-/usr/bin/prometheus}
PROMTOOL=${PROMTOOL:-/usr/bin/promtool}
for bin in "$PROMETHEUS" "$PROMTOOL" curl python3; do
    command -v "$bin" >/dev/null || { echo "missing $bin" >&2; exit 1; }
done

TMP=$(mktemp -d)
PROM_PID=
cleanup() {
    if [ -n "$PROM_PID" ] && kill -0 "$PROM_PID" 2>/dev/null; then
        kill "$PROM_PID" 2>/dev/null || true
        wait "$PROM_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

echo "== building the benchmark (release)" >&2
cargo bench --bench rules --no-run >&2

NOW_MS=$(( $(date +%s) * 1000 ))
echo "== harena-exporter: $CYCLES cycles at $NOW_MS ms and after" >&2
HARENA_OUT=$(cargo bench --bench rules -- --now-ms "$NOW_MS" --minutes "$MINUTES" \
    --ahead-minutes "$AHEAD_MINUTES" --cycles "$CYCLES" \
    --emit-openmetrics "$TMP/series.om" --emit-rules "$TMP/bench.yml")
echo "$HARENA_OUT" >&2
HARENA_MS=$(sed -n 's/^harena-exporter: \([0-9.]*\) ms per cycle.*/\1/p' <<<"$HARENA_OUT")
[ -n "$HARENA_MS" ] || { echo "no result from the benchmark" >&2; exit 1; }

echo "== promtool: backfilling $(du -h "$TMP/series.om" | cut -f1) of OpenMetrics" >&2
"$PROMTOOL" check rules "$TMP/bench.yml" >/dev/null
mkdir "$TMP/tsdb"
t0=$(date +%s)
"$PROMTOOL" tsdb create-blocks-from openmetrics "$TMP/series.om" "$TMP/tsdb" >"$TMP/promtool.log" 2>&1 \
    || { tail -20 "$TMP/promtool.log" >&2; exit 1; }
echo "   backfill took $(( $(date +%s) - t0 )) s" >&2
rm -f "$TMP/series.om"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$TMP/prometheus.yml" <<EOF
global:
  evaluation_interval: 15s
rule_files:
  - $TMP/bench.yml
EOF
"$PROMETHEUS" --config.file "$TMP/prometheus.yml" --storage.tsdb.path "$TMP/tsdb" \
    --web.listen-address "127.0.0.1:$PORT" >"$TMP/prometheus.log" 2>&1 &
PROM_PID=$!
URL="http://127.0.0.1:$PORT"
for _ in $(seq 1 120); do
    curl -fsS "$URL/-/ready" >/dev/null 2>&1 && break
    kill -0 "$PROM_PID" 2>/dev/null || { tail -20 "$TMP/prometheus.log" >&2; exit 1; }
    sleep 1
done
curl -fsS "$URL/-/ready" >/dev/null || { echo "prometheus not ready" >&2; exit 1; }
echo "== prometheus $("$PROMETHEUS" --version 2>&1 | head -1 | awk '{print $3}') on $URL: waiting for $EVALS evaluations" >&2

# Prints "<last evaluation timestamp> <last duration>" of our group.
group_eval() {
    local body
    body=$(curl -fsS "$URL/metrics") || return 0
    awk '$1 ~ /^prometheus_rule_group_last_evaluation_timestamp_seconds\{/ { t = $2 }
         $1 ~ /^prometheus_rule_group_last_duration_seconds\{/ { d = $2 }
         END { if (t != "" && t + 0 > 0) print t, d }' <<<"$body"
}
READINGS=()
last_ts=
deadline=$(( $(date +%s) + 15 * EVALS + 120 ))
while [ ${#READINGS[@]} -lt "$EVALS" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "timed out waiting for evaluations" >&2; exit 1; }
    sleep 1
    read -r ts d <<<"$(group_eval)" || true
    # The timestamp is set when an evaluation ends, together with its duration.
    if [ -n "${ts:-}" ] && [ "$ts" != "$last_ts" ]; then
        last_ts=$ts
        READINGS+=("$d")
        echo "   evaluation ${#READINGS[@]} (at $ts): $d s" >&2
    fi
done
FAILURES=$(curl -fsS "$URL/metrics" >"$TMP/metrics.txt" && awk '$1 ~ /^prometheus_rule_evaluation_failures_total/ { s += $2 } END { print s + 0 }' "$TMP/metrics.txt")
ALERTS=$(curl -fsS "$URL/api/v1/alerts" | python3 -c 'import json,sys; a=json.load(sys.stdin)["data"]["alerts"]; print(len(a), "active (%d firing)" % sum(x["state"]=="firing" for x in a))')
echo "   rule evaluation failures: $FAILURES; alerts: $ALERTS" >&2
if [ $(( $(date +%s) * 1000 )) -gt $(( NOW_MS + AHEAD_MINUTES * 60000 )) ]; then
    echo "warning: prometheus evaluated past the end of the backfilled data" >&2
fi

PROM_MS=$(printf '%s\n' "${READINGS[@]:1}" | python3 -c '
import statistics, sys
print("%.1f" % (statistics.median(float(x) for x in sys.stdin.read().split()) * 1000))')
echo
echo "harena-exporter: $HARENA_MS ms per cycle"
echo "prometheus 2.42: $PROM_MS ms per cycle"
python3 -c "print('ratio harena/prometheus: %.2f' % ($HARENA_MS / $PROM_MS))"
