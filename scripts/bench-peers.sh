#!/usr/bin/env bash
# Usage: scripts/bench-peers.sh [tidings bench fanout flags…]
#
# Runs the same `tidings bench fanout` scenario against Pushpin and against
# Tidings, one after the other on this machine, and prints both results and
# the ratio (Tidings / Pushpin) of delivered events per second.
#
#   scripts/bench-peers.sh                                   # 1 000 SSE subscribers, 2 000 events/s, 10 s
#   scripts/bench-peers.sh --subscribers 100 --rate 200 --duration 3s
#
# Default flags: --subscribers 1000 --rate 2000 --publishers 8 --topics 1
# --size 200 --duration 10s --connect-rate 100; flags given replace all of
# them. SSE only (Pushpin frames carry no ids, so resume and gap reporting are
# not exercised). The slow connect rate is for Pushpin: opening streams at
# 500/s or more, some were refused (500 "Accept service unavailable", zhttp
# "message out of sequence" in its handler log), and any failed connection
# aborts a run.
#
# Pushpin 1.36 comes from Debian's packages (installed with apt-get when
# missing; when that is impossible the script prints SKIPPED and exits 0).
# It runs from a configuration copy in a temporary directory, never as the
# system service, bound to 127.0.0.1, in front of scripts/grip-origin.py:
#   * zurl (Pushpin's HTTP client to the origin) is started separately with
#     high-water marks of 100 000 instead of 1 000, which dropped requests
#     when 1 000 subscribers connected at once (502 from the proxy);
#   * message_rate=0 turns the handler's rate limiter off: with it on (2 500/s
#     as shipped, or any value), messages published faster than about every
#     25 ms were held until publishing paused;
#   * ulimit -n is raised to 20 000 for every process.
#
# Environment: TIDINGS (binary, default target/release/tidings, built when
# missing), KEEP=1 keeps the temporary directory with logs and JSON results.
# Ports used on 127.0.0.1: 7999 (Pushpin), 5560-5563 (Pushpin handler),
# 7998 (origin), 18080 (Tidings).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TIDINGS=${TIDINGS:-$ROOT/target/release/tidings}
FLAGS=("$@")
if [ ${#FLAGS[@]} -eq 0 ]; then
  FLAGS=(--subscribers 1000 --rate 2000 --publishers 8 --topics 1 --size 200 --duration 10s
    --connect-rate 100)
fi
PIDS=()
WORK=$(mktemp -d /tmp/bench-peers.XXXXXX)

skip() { echo "SKIPPED: $*"; exit 0; }
NAME=bench-peers
# shellcheck source=scripts/bench-common.sh
source "$ROOT/scripts/bench-common.sh"
trap cleanup EXIT

ensure_pushpin() {
  if command -v pushpin >/dev/null && command -v zurl >/dev/null && command -v condure >/dev/null; then
    return
  fi
  [ "$(id -u)" = 0 ] || skip "pushpin is not installed and installing it needs root"
  echo "installing pushpin from Debian's packages…"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pushpin zurl; } \
      >"$WORK/apt.log" 2>&1; then
    skip "apt-get install pushpin failed: $(tail -n 2 "$WORK/apt.log" | tr '\n' ' ')"
  fi
  command -v pushpin >/dev/null || skip "pushpin is still missing after apt-get install"
}

check_ports_free() {
  local port
  for port in 7999 5560 5561 5562 5563 7998 18080; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      die "port $port on 127.0.0.1 is in use; stop what listens there first"
    fi
  done
}

write_pushpin_config() {
  local dir=$WORK/pushpin
  mkdir -p "$dir/run" "$dir/log"
  sed -e "s#ipc:///var/run/zurl/zurl-#ipc://$dir/run/zurl-#" \
    /usr/lib/pushpin/internal.conf >"$dir/internal.conf"
  sed -e "s#^include=.*#include=$dir/internal.conf#" \
    -e "s#^rundir=.*#rundir=$dir/run#" \
    -e "s#^logdir=.*#logdir=$dir/log#" \
    -e "s#^services=.*#services=condure,pushpin-proxy,pushpin-handler#" \
    -e "s#^routesfile=.*#routesfile=$dir/routes#" \
    -e "s#^push_in_http_addr=.*#push_in_http_addr=127.0.0.1#" \
    -e "s#^message_rate=.*#message_rate=0#" \
    -e "s#^message_hwm=.*#message_hwm=1000000#" \
    /etc/pushpin/pushpin.conf >"$dir/pushpin.conf"
  echo "* 127.0.0.1:7998" >"$dir/routes"
  cat >"$dir/zurl.conf" <<EOF
[General]
in_spec=ipc://$dir/run/zurl-in
in_stream_spec=ipc://$dir/run/zurl-in-stream
out_spec=ipc://$dir/run/zurl-out
defpolicy=allow
max_open_requests=20000
buffer_size=200000
timeout=600
in_hwm=100000
out_hwm=100000
EOF
}

publish_answers() {
  curl -sf -o /dev/null -XPOST http://127.0.0.1:5561/publish/ -d '{"items":[]}'
}

start_pushpin() {
  local dir=$WORK/pushpin
  python3 "$ROOT/scripts/grip-origin.py" --listen 127.0.0.1:7998 >"$WORK/origin.log" 2>&1 &
  PIDS+=($!)
  zurl --config="$dir/zurl.conf" --logfile="$dir/log/zurl.log" >/dev/null 2>&1 &
  ZURL_PID=$!
  PIDS+=($ZURL_PID)
  pushpin --config "$dir/pushpin.conf" --port 127.0.0.1:7999 >"$dir/log/runner.log" 2>&1 &
  PUSHPIN_PID=$!
  PIDS+=($PUSHPIN_PID)
  wait_for publish_answers
  wait_for curl -s -o /dev/null --max-time 1 http://127.0.0.1:7998/
}

# Stops one process started here, and waits for it.
stop() {
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# CPU seconds (user + system) used so far by PID and its children still running.
cpu_seconds() {
  local total=0 pid ticks
  for pid in "$@" $(pgrep -P "$(IFS=,; echo "$*")" 2>/dev/null || true); do
    ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + ticks))
  done
  awk -v t="$total" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}

# Runs the fanout with FLAGS plus extra arguments; JSON to $1, CPU of the server pids after "--".
run_bench() {
  local out=$1; shift
  local args=() pids=()
  while [ "$1" != -- ]; do args+=("$1"); shift; done
  shift; pids=("$@")
  local before after
  before=$(cpu_seconds "${pids[@]}")
  "$TIDINGS" bench fanout "${args[@]}" "${FLAGS[@]}" --json --quiet >"$out" || true
  after=$(cpu_seconds "${pids[@]}")
  awk -v a="$after" -v b="$before" 'BEGIN { printf "%.2f\n", a - b }' >"$out.cpu"
}

bench_pushpin() {
  echo "pushpin: $(pushpin --version 2>/dev/null | head -n 1)"
  run_bench "$WORK/pushpin.json" --peer pushpin --publish-url http://127.0.0.1:5561/publish/ \
    --stream-url 'http://127.0.0.1:7999/stream/{topic}' -- \
    "$PUSHPIN_PID" "$ZURL_PID"
  stop "$PUSHPIN_PID"
}

bench_tidings() {
  local data=$WORK/tidings-data
  "$TIDINGS" serve --data-dir "$data" --listen 127.0.0.1:18080 >"$WORK/tidings.out" 2>"$WORK/tidings.log" &
  local pid=$!
  PIDS+=($pid)
  wait_for grep -q listening "$WORK/tidings.out"
  run_bench "$WORK/tidings.json" --url http://127.0.0.1:18080 --data-dir "$data" -- "$pid"
  stop "$pid"
}

summarize() {
  python3 - "$WORK/pushpin.json" "$WORK/tidings.json" "${FLAGS[*]}" <<'EOF'
import json, sys

def load(path):
    try:
        with open(path) as f:
            result = json.load(f)
        with open(path + ".cpu") as f:
            result["serverCpu"] = float(f.read().strip() or 0)
        return result
    except (OSError, ValueError) as err:
        return {"error": str(err)}

def row(name, r):
    if "error" in r or "delivery" not in r:
        return f"  {name:<8} no result ({r.get('error') or r.get('failures')})"
    d, p = r["delivery"], r["publishing"]
    lat = d["latency"]
    verdict = "PASS" if r.get("passed") else "FAIL: " + "; ".join(r.get("failures", []))
    return (f"  {name:<8} {d['deliveriesPerSecond']:>12,.0f}/s  published {p['eventsPerSecond']:>7,.0f}/s"
            f"  p50 {lat['p50Us']/1000:>7.2f} ms  p99 {lat['p99Us']/1000:>8.2f} ms"
            f"  lost {d['lost']}  dup {d['duplicated']}  server CPU {r['serverCpu']:.1f} s  {verdict}")

pushpin, tidings = load(sys.argv[1]), load(sys.argv[2])
print(f"\nfanout: {sys.argv[3]}")
print(row("pushpin", pushpin))
print(row("tidings", tidings))
try:
    ratio = tidings["delivery"]["deliveriesPerSecond"] / pushpin["delivery"]["deliveriesPerSecond"]
    print(f"  ratio    tidings / pushpin deliveries per second = {ratio:.2f}")
except (KeyError, ZeroDivisionError):
    print("  ratio    not available")
EOF
}

main() {
  ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  command -v python3 >/dev/null || skip "python3 (for the GRIP origin) is missing"
  ensure_pushpin
  check_ports_free
  if [ ! -x "$TIDINGS" ]; then
    (cd "$ROOT" && cargo build --release) || die "building tidings failed"
  fi
  write_pushpin_config
  start_pushpin
  bench_pushpin
  bench_tidings
  summarize
}

main
