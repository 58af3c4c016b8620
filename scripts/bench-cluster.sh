#!/usr/bin/env bash
# Usage: scripts/bench-cluster.sh [tidings bench cluster flags…]
#
# Fan-out on one node versus a cluster, in one run on this machine: starts a
# JetStream nats-server, a single node, a cluster writer and two edges (each
# on its own data directory), then `tidings bench cluster`: the same load
# first on the single node, then publishing to the writer with the
# subscribers spread over the two edges. Prints both results and the
# comparison (delivered events/s, delivery p50/p99 as ratios cluster /
# single, the p99 the NATS hop adds).
#
#   scripts/bench-cluster.sh                                   # 1 000 SSE subscribers, 10 topics, 1 000 events/s, 10 s
#   scripts/bench-cluster.sh --subscribers 200 --rate 200 --duration 5s
#
# Default flags: --subscribers 1000 --topics 10 --rate 1000 --publishers 4
# --size 200 --duration 10s; flags given replace all of them. Everything
# shares this machine's cores (the cluster runs four processes where the
# single node runs one), so read the ratios, not the absolute figures.
#
# nats-server comes from Debian's packages (installed with apt-get when
# missing; when that is impossible the script prints SKIPPED and exits 0).
# Environment: TIDINGS (binary, default target/release/tidings, built when
# missing), KEEP=1 keeps the temporary directory with the logs.
# Ports used on 127.0.0.1: 18322 (NATS), 18190 (single), 18191 (writer),
# 18192-18193 (edges).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TIDINGS=${TIDINGS:-$ROOT/target/release/tidings}
FLAGS=("$@")
if [ ${#FLAGS[@]} -eq 0 ]; then
  FLAGS=(--subscribers 1000 --topics 10 --rate 1000 --publishers 4 --size 200 --duration 10s)
fi
PIDS=()
WORK=$(mktemp -d /tmp/bench-cluster.XXXXXX)
NATS_URL=nats://127.0.0.1:18322

skip() { echo "SKIPPED: $*"; exit 0; }
NAME=bench-cluster
# shellcheck source=scripts/bench-common.sh
source "$ROOT/scripts/bench-common.sh"
trap cleanup EXIT

ensure_nats() {
  command -v nats-server >/dev/null && return
  [ "$(id -u)" = 0 ] || skip "nats-server is not installed and installing it needs root"
  echo "installing nats-server from Debian's packages…"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server; } \
      >"$WORK/apt.log" 2>&1; then
    skip "apt-get install nats-server failed: $(tail -n 2 "$WORK/apt.log" | tr '\n' ' ')"
  fi
}

check_ports_free() {
  local port
  for port in 18322 18190 18191 18192 18193; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      die "port $port on 127.0.0.1 is in use; stop what listens there first"
    fi
  done
}

# Starts `tidings serve` named $1 on port $2 with the flags that follow.
serve() {
  local name=$1 port=$2
  shift 2
  "$TIDINGS" serve --data-dir "$WORK/$name" --listen "127.0.0.1:$port" "$@" \
    >"$WORK/$name.out" 2>"$WORK/$name.log" &
  PIDS+=($!)
  wait_for grep -q listening "$WORK/$name.out"
}

ready() { curl -sf -o /dev/null "http://127.0.0.1:$1/readyz"; }

start_nodes() {
  nats-server -js -a 127.0.0.1 -p 18322 -sd "$WORK/nats" >"$WORK/nats.log" 2>&1 &
  PIDS+=($!)
  wait_for bash -c '(exec 3<>/dev/tcp/127.0.0.1/18322)'
  serve single 18190
  serve writer 18191 --nats "$NATS_URL"
  local key
  key=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["adminKey"])' "$WORK/writer/config.json")
  for port in 18192 18193; do
    serve "edge-$port" "$port" --role edge --nats "$NATS_URL" \
      --writer http://127.0.0.1:18191 --writer-key "$key"
    wait_for ready "$port"
  done
}

main() {
  ulimit -n "$(ulimit -Hn)"
  ensure_nats
  check_ports_free
  if [ ! -x "$TIDINGS" ]; then
    (cd "$ROOT" && cargo build --release --quiet)
  fi
  start_nodes
  echo "== tidings bench cluster ${FLAGS[*]}"
  "$TIDINGS" bench cluster --url http://127.0.0.1:18191 --data-dir "$WORK/writer" \
    --edge http://127.0.0.1:18192 --edge http://127.0.0.1:18193 \
    --single http://127.0.0.1:18190 --single-data-dir "$WORK/single" --quiet "${FLAGS[@]}"
}

main
