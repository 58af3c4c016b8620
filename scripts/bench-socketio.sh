#!/usr/bin/env bash
# Usage: scripts/bench-socketio.sh
#
# `tidings bench socketio` against Tidings' Socket.IO surface (spec 003,
# channels) and the Node.js socket.io reference (scripts/socketio-reference.cjs,
# socket.io 4.8.4 installed under target/sio-reference) in one run: each
# mode measures Tidings first, then the reference the same way, and prints
# both side by side.
#
#   1. broadcast, 1 000 clients joined to one channel, 100 posts/s for 10 s;
#   2. broadcast, 10 000 clients, 100 posts/s for 10 s;
#   (saturate-1000, not in the default modes: 1 000 clients, 500 posts/s
#   asked, more than either server delivers here: the most each can do);
#   3. idle, 10 000 clients connected and joined: server RSS (from /proc)
#      per connection;
#   4. reconnect, 5 000 clients, 10 posts/s for 10 s: 3 s into posting all
#      drop, reconnect, rejoin and sync from their last event id (100 per
#      page): time until all caught up, lost and duplicate posts (up to 60 s
#      to catch up).
#
# A server that delivers fewer posts than asked falls behind: the posts are
# still all sent (late), and the report shows the achieved rate beside the
# target (the Node reference delivers about 35-50k posts/s in all on this
# 2-core machine, so 10 000 clients at 100 posts/s take minutes on it).
#
# Both servers are started fresh for every mode (Tidings: release build on
# 127.0.0.1:$PORT with its own temporary data directory; the reference on
# 127.0.0.1:$REF_PORT). The file-descriptor limit is raised to the hard limit
# (each client is one socket in a server and one in the bench).
#
# Environment: TIDINGS (binary, default target/release/tidings, built when
# missing), TIDINGS_FLAGS (extra `serve` flags), PORT (default 18091),
# REF_PORT (default 3030), MODES (default "broadcast-1000 broadcast-10000
# idle reconnect"), SIDES (default "tidings reference"; "reference" alone
# measures only the reference), KEEP=1 keeps the temporary directory.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TIDINGS=${TIDINGS:-$ROOT/target/release/tidings}
PORT=${PORT:-18091}
REF_PORT=${REF_PORT:-3030}
MODES=${MODES:-broadcast-1000 broadcast-10000 idle reconnect}
SIDES=${SIDES:-tidings reference}
SIO_PREFIX=$ROOT/target/sio-reference
WORK=$(mktemp -d /tmp/bench-socketio.XXXXXX)
PIDS=()

NAME=bench-socketio
# shellcheck source=scripts/bench-common.sh
source "$ROOT/scripts/bench-common.sh"
trap cleanup EXIT

# Starts a fresh Tidings on its own data directory $WORK/$1.
start_tidings() {
  DATA=$WORK/$1
  # shellcheck disable=SC2086 # TIDINGS_FLAGS holds several flags
  "$TIDINGS" serve --data-dir "$DATA" --listen 127.0.0.1:$PORT ${TIDINGS_FLAGS:-} \
    >"$WORK/$1.out" 2>"$WORK/$1.log" &
  TIDINGS_PID=$!
  PIDS+=("$TIDINGS_PID")
  wait_for grep -q listening "$WORK/$1.out"
}

# Starts a fresh reference server.
start_reference() {
  PORT=$REF_PORT SIO_PREFIX=$SIO_PREFIX node "$ROOT/scripts/socketio-reference.cjs" \
    >"$WORK/reference-$1.out" 2>&1 &
  REF_PID=$!
  PIDS+=("$REF_PID")
  wait_for grep -q listening "$WORK/reference-$1.out"
}

# Stops a server started for one mode.
stop() {
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# Runs one mode with its flags against the servers of $SIDES.
run_mode() {
  local label=$1
  shift
  local args=() started=()
  for side in $SIDES; do
    case $side in
      tidings) start_tidings "$label"
        started+=("$TIDINGS_PID")
        args+=(--data-dir "$DATA")
        if [ ${#started[@]} -eq 1 ]; then
          args+=(--target "http://127.0.0.1:$PORT" --target-kind tidings --server-pid "$TIDINGS_PID")
        else
          args+=(--peer "http://127.0.0.1:$PORT" --peer-kind tidings --peer-pid "$TIDINGS_PID")
        fi ;;
      reference) start_reference "$label"
        started+=("$REF_PID")
        if [ ${#started[@]} -eq 1 ]; then
          args+=(--target "http://127.0.0.1:$REF_PORT" --target-kind reference --server-pid "$REF_PID")
        else
          args+=(--peer "http://127.0.0.1:$REF_PORT" --peer-kind reference --peer-pid "$REF_PID")
        fi ;;
      *) die "unknown side $side (tidings, reference)" ;;
    esac
  done
  echo "== tidings bench socketio $* ($SIDES)"
  "$TIDINGS" bench socketio --quiet "${args[@]}" "$@" || true
  local pid
  for pid in "${started[@]}"; do stop "$pid"; done
}

main() {
  ulimit -n "$(ulimit -Hn)"
  [ "$(ulimit -n)" -ge 12000 ] ||
    die "ulimit -n is $(ulimit -n): 10 000 clients need 12 000 descriptors in each server and in the bench"
  command -v node >/dev/null || die "node is not installed"
  if [ ! -f "$SIO_PREFIX/node_modules/socket.io/package.json" ]; then
    npm --prefix "$SIO_PREFIX" install --no-audit --no-fund --silent socket.io@4.8.4 ||
      die "installing socket.io@4.8.4 under $SIO_PREFIX failed"
  fi
  if [ ! -x "$TIDINGS" ]; then
    (cd "$ROOT" && cargo build --release) || die "building tidings failed"
  fi
  local mode
  for mode in $MODES; do
    case $mode in
      broadcast-1000) run_mode "$mode" --mode broadcast --clients 1000 --rate 100 --duration 10s ;;
      saturate-1000) run_mode "$mode" --mode broadcast --clients 1000 --rate 500 --duration 10s \
        --drain-timeout 60s ;;
      broadcast-10000) run_mode "$mode" --mode broadcast --clients 10000 --rate 100 --duration 10s \
        --drain-timeout 60s ;;
      idle) run_mode "$mode" --mode idle --clients 10000 --hold 5s ;;
      reconnect) run_mode "$mode" --mode reconnect --clients 5000 --rate 10 --duration 10s \
        --drop-after 3s --drain-timeout 60s ;;
      *) die "unknown mode $mode (broadcast-1000, saturate-1000, broadcast-10000, idle, reconnect)" ;;
    esac
  done
}

main
