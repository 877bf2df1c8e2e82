#!/usr/bin/env bash
# Benchmark: harena-exporter's http checks against prometheus-blackbox-exporter.
#
#   ./benches/http_probes.sh [--rate 200] [--seconds 60] [--schedule-checks 1000]
#                            [--schedule-seconds 60] [--idle-seconds 600]
#                            [--only rate|schedule|idle]
#
# 1. CPU per 1,000 probes and peak RSS: N http checks at a 1 s interval (N = rate)
#    against a local target, and blackbox_exporter driven through /probe at the same
#    rate against the same target. Only the exporters' own CPU is counted (utime+stime
#    from /proc), after a 5 s warm-up.
# 2. Schedule: 1,000 checks at a 1 s interval; the share of runs started within 100 ms
#    of their slot (harena_scheduler_start_delay_seconds).
# 3. Peak RSS of the exporter on the embedded default config after --idle-seconds.
# Everything listens on 127.0.0.1 and stops at the end. Needs python3, curl and
# prometheus-blackbox-exporter (apt-get install prometheus-blackbox-exporter).
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=200 SECONDS_RUN=60 SCHED_N=1000 SCHED_SECONDS=60 IDLE_SECONDS=600 ONLY=all
while [ $# -gt 0 ]; do
    case "$1" in
        --rate) RATE=$2; shift 2 ;;
        --seconds) SECONDS_RUN=$2; shift 2 ;;
        --schedule-checks) SCHED_N=$2; shift 2 ;;
        --schedule-seconds) SCHED_SECONDS=$2; shift 2 ;;
        --idle-seconds) IDLE_SECONDS=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
command -v prometheus-blackbox-exporter >/dev/null || {
    echo "install it: apt-get install -y prometheus-blackbox-exporter" >&2; exit 1; }

cargo build --release --quiet
BIN=$PWD/target/release/harena-exporter
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
cpu_seconds() { # utime+stime of a pid, in seconds
    awk -v t="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / t }' "/proc/$1/stat"; }
peak_rss_mb() { awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
metric() { curl -s "http://$1/metrics" | awk -v n="$2" '$1 == n { print $2 }'; }
wait_http() { for _ in $(seq 100); do curl -sf "http://$1$2" >/dev/null && return 0; sleep 0.1; done; echo "no answer from $1$2" >&2; exit 1; }

# The target: a minimal asyncio HTTP server answering 200 {"status":"ok"}.
TARGET_PORT=$(free_port)
python3 - "$TARGET_PORT" <<'PY' &
import asyncio, sys
RESP = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\nConnection: close\r\n\r\n{\"status\":\"ok\"}"
async def handle(r, w):
    try:
        while (await r.readline()) not in (b"\r\n", b"\n", b""):
            pass
        w.write(RESP); await w.drain()
    except Exception:
        pass
    finally:
        w.close()
async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    async with srv: await srv.serve_forever()
asyncio.run(main())
PY
PIDS+=($!)
wait_http "127.0.0.1:$TARGET_PORT" /health

checks_config() { # n interval timeout
    echo "global: {max_concurrent_checks: 512}"; echo "checks:"
    for i in $(seq 1 "$1"); do
        printf '  - {name: t%d, kind: http, url: "http://127.0.0.1:%d/health", interval: %s, timeout: %s}\n' "$i" "$TARGET_PORT" "$2" "$3"
    done
}

want() { [ "$ONLY" = all ] || [ "$ONLY" = "$1" ]; }

if want rate; then
# --- 1a. harena-exporter at RATE probes/s ------------------------------------
checks_config "$RATE" 1s 900ms > "$WORK/rate.yml"
HP=$(free_port)
"$BIN" --config.file "$WORK/rate.yml" --web.listen-address "127.0.0.1:$HP" --log.level warn &
HPID=$!; PIDS+=($HPID)
wait_http "127.0.0.1:$HP" /-/ready
sleep 5
c0=$(cpu_seconds $HPID); n0=$(metric "127.0.0.1:$HP" harena_scheduler_start_delay_seconds_count)
sleep "$SECONDS_RUN"
c1=$(cpu_seconds $HPID); n1=$(metric "127.0.0.1:$HP" harena_scheduler_start_delay_seconds_count)
ok=$(curl -s "http://127.0.0.1:$HP/metrics" | awk '$1 ~ /^harena_probe_success\{/ { s += $2; n++ } END { print s "/" n }')
h_rss=$(peak_rss_mb $HPID)
kill $HPID; wait $HPID 2>/dev/null || true
h_probes=$(awk -v a="$n0" -v b="$n1" 'BEGIN { print b - a }')
h_ms=$(awk -v a="$c0" -v b="$c1" -v n="$h_probes" 'BEGIN { printf "%.3f", (b - a) * 1000 / n }')

# --- 1b. blackbox_exporter driven at RATE probes/s ---------------------------
cat > "$WORK/blackbox.yml" <<YML
modules:
  http_2xx:
    prober: http
    timeout: 900ms
    http:
      preferred_ip_protocol: ip4
YML
BP=$(free_port)
prometheus-blackbox-exporter --config.file "$WORK/blackbox.yml" --web.listen-address "127.0.0.1:$BP" --log.level=warn &
BPID=$!; PIDS+=($BPID)
wait_http "127.0.0.1:$BP" /metrics
python3 - "$BP" "$TARGET_PORT" "$RATE" "$((SECONDS_RUN + 5))" > "$WORK/driver.out" <<'PY' &
import asyncio, sys, time
bp, tp, rate, secs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
REQ = (f"GET /probe?module=http_2xx&target=http://127.0.0.1:{tp}/health HTTP/1.1\r\n"
       f"Host: 127.0.0.1\r\nConnection: close\r\n\r\n").encode()
ok = 0
async def one():
    global ok
    try:
        r, w = await asyncio.open_connection("127.0.0.1", bp)
        w.write(REQ); await w.drain()
        body = await r.read()
        w.close()
        if b"probe_success 1" in body: ok += 1
    except Exception:
        pass
async def main():
    start = time.monotonic(); n = 0; tasks = set()
    while time.monotonic() - start < secs:
        n += 1
        t = asyncio.create_task(one()); tasks.add(t); t.add_done_callback(tasks.discard)
        await asyncio.sleep(max(0, start + n / rate - time.monotonic()))
    await asyncio.gather(*tasks)
    print(n, ok)
asyncio.run(main())
PY
DPID=$!; PIDS+=($DPID)
sleep 5
b0=$(cpu_seconds $BPID)
sleep "$SECONDS_RUN"
b1=$(cpu_seconds $BPID)
wait $DPID || true
b_rss=$(peak_rss_mb $BPID)
kill $BPID; wait $BPID 2>/dev/null || true
read -r b_sent b_ok < "$WORK/driver.out"
b_probes=$(awk -v r="$RATE" -v s="$SECONDS_RUN" 'BEGIN { print r * s }')
b_ms=$(awk -v a="$b0" -v b="$b1" -v n="$b_probes" 'BEGIN { printf "%.3f", (b - a) * 1000 / n }')

echo
echo "== http probes at $RATE/s for ${SECONDS_RUN}s against one local target =="
printf '%-28s %18s %14s %12s\n' "" "CPU ms per probe" "CPU s/1000" "peak RSS MB"
printf '%-28s %18s %14s %12s\n' "harena-exporter" "$h_ms" "$h_ms" "$h_rss"
printf '%-28s %18s %14s %12s\n' "blackbox_exporter 0.23" "$b_ms" "$b_ms" "$b_rss"
awk -v h="$h_ms" -v b="$b_ms" -v hr="$h_rss" -v br="$b_rss" 'BEGIN { printf "ratio harena/blackbox: CPU %.2f, RSS %.2f\n", h / b, hr / br }'
echo "(harena: $h_probes probes counted, healthy $ok; blackbox: $b_sent sent, $b_ok succeeded)"

fi

if want schedule; then
# --- 2. schedule: SCHED_N checks at 1 s --------------------------------------
checks_config "$SCHED_N" 1s 900ms > "$WORK/sched.yml"
SP=$(free_port)
"$BIN" --config.file "$WORK/sched.yml" --web.listen-address "127.0.0.1:$SP" --log.level warn &
SPID=$!; PIDS+=($SPID)
wait_http "127.0.0.1:$SP" /-/ready
sleep 5
read_hist() { curl -s "http://127.0.0.1:$SP/metrics" | awk '
    $1 == "harena_scheduler_start_delay_seconds_bucket{le=\"0.1\"}" { b = $2 }
    $1 == "harena_scheduler_start_delay_seconds_count" { c = $2 }
    END { print b, c }'; }
read -r sb0 sc0 < <(read_hist)
sc_cpu0=$(cpu_seconds $SPID)
sleep "$SCHED_SECONDS"
read -r sb1 sc1 < <(read_hist)
sc_cpu1=$(cpu_seconds $SPID)
s_rss=$(peak_rss_mb $SPID)
kill $SPID; wait $SPID 2>/dev/null || true
echo
echo "== schedule: $SCHED_N checks at a 1 s interval for ${SCHED_SECONDS}s =="
awk -v b0="$sb0" -v b1="$sb1" -v c0="$sc0" -v c1="$sc1" -v n="$SCHED_N" -v s="$SCHED_SECONDS" -v cpu0="$sc_cpu0" -v cpu1="$sc_cpu1" 'BEGIN {
    printf "runs: %d of %d slots; started within 100 ms of their slot: %.2f%%; CPU %.0f%% of one core\n",
        c1 - c0, n * s, 100 * (b1 - b0) / (c1 - c0), 100 * (cpu1 - cpu0) / s }'
echo "peak RSS: $s_rss MB"

fi

if want idle; then
# --- 3. idle: embedded default config -----------------------------------------
IP=$(free_port)
AWS_EC2_METADATA_DISABLED=true "$BIN" --web.listen-address "127.0.0.1:$IP" --log.level warn &
IPID=$!; PIDS+=($IPID)
wait_http "127.0.0.1:$IP" /-/ready
for _ in $(seq 1 "$IDLE_SECONDS"); do sleep 1; curl -s "http://127.0.0.1:$IP/metrics" >/dev/null || true; done
echo
echo "== embedded default config for ${IDLE_SECONDS}s (scraped every second) =="
echo "peak RSS: $(peak_rss_mb $IPID) MB"
fi
