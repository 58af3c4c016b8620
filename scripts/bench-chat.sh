#!/usr/bin/env bash
# Usage: scripts/bench-chat.sh
#
# Issue 13's chat benchmark on this machine, against a fresh release Tidings
# server on 127.0.0.1:18090 (its own temporary data directory), the four
# modes of `tidings bench chat` at the issue's shapes:
#
#   1. --mode fanout: 10 000 users on /api/v1/events, 2 000 rooms, 10 rooms
#      per user, 5 rooms of 1 000 members, 1 000 messages/s for 10 s:
#      post→delivery latency, deliveries/s, exact accounting per member;
#   2. --mode big-room: one room of 5 000 members, 100 messages/s (16
#      posting connections: an acknowledgement takes tens of ms while the
#      server delivers 5 000 copies of each): deliveries/s, frames/s
#      (messages grouped per frame), latency;
#   3. --mode reconnect: 2 000 users in 10 rooms each, all drop 3 s into
#      posting and resume with ?lastEventId=: time until all caught up;
#   4. --mode idle: 5 000 users with 1 room each, then 5 000 others with 10
#      rooms each beside them (10 000 streams open), held idle: server RSS
#      (from /proc) per connection and per membership.
#
# Every mode runs on its own fresh server (so one mode's rooms and memory do
# not weigh on the next); each prints its set-up time apart from its figures.
# The file-descriptor limit is raised to the hard limit for the server and
# the bench (a user stream is one socket in each; the bench spreads its
# sockets over worker processes above --sockets-per-process, 19 000).
#
# Environment: TIDINGS (binary, default target/release/tidings, built when
# missing), TIDINGS_FLAGS (extra `serve` flags, e.g. `--access-log off`),
# USERS (fanout users, default 10000; idle uses half per population), PORT (default 18090),
# MODES (default "fanout big-room reconnect idle"), KEEP=1 keeps the
# temporary directory.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TIDINGS=${TIDINGS:-$ROOT/target/release/tidings}
USERS=${USERS:-10000}
PORT=${PORT:-18090}
MODES=${MODES:-fanout big-room reconnect idle}
URL=http://127.0.0.1:$PORT
WORK=$(mktemp -d /tmp/bench-chat.XXXXXX)
PIDS=()

NAME=bench-chat
# shellcheck source=scripts/bench-common.sh
source "$ROOT/scripts/bench-common.sh"
trap cleanup EXIT

# Starts a fresh server on its own data directory $WORK/$1.
start_tidings() {
  local data=$WORK/$1
  # shellcheck disable=SC2086 # TIDINGS_FLAGS holds several flags
  "$TIDINGS" serve --data-dir "$data" --listen 127.0.0.1:$PORT ${TIDINGS_FLAGS:-} \
    >"$WORK/$1.out" 2>"$WORK/$1.log" &
  TIDINGS_PID=$!
  PIDS+=($TIDINGS_PID)
  DATA=$data
  wait_for grep -q listening "$WORK/$1.out"
}

# Stops the server of the last mode.
stop_tidings() {
  kill -TERM "$TIDINGS_PID" 2>/dev/null || true
  wait "$TIDINGS_PID" 2>/dev/null || true
}

# Runs one mode with its flags on a fresh server.
run_mode() {
  local mode=$1
  shift
  start_tidings "$mode"
  echo "== tidings bench chat --mode $mode $*"
  "$TIDINGS" bench chat --url "$URL" --data-dir "$DATA" --quiet --mode "$mode" "$@" || true
  stop_tidings
}

main() {
  ulimit -n "$(ulimit -Hn)"
  [ "$(ulimit -n)" -ge $((USERS + 2000)) ] ||
    die "ulimit -n is $(ulimit -n): $USERS users need $((USERS + 2000)) descriptors in the server and in the bench"
  if [ ! -x "$TIDINGS" ]; then
    (cd "$ROOT" && cargo build --release) || die "building tidings failed"
  fi
  local mode
  for mode in $MODES; do
    case $mode in
      fanout) run_mode fanout --users "$USERS" --rooms 2000 --rooms-per-user 10 \
        --big-rooms 5 --big-room-size 1000 --rate 1000 --duration 10s ;;
      big-room) run_mode big-room --users 5000 --rate 100 --duration 10s --publishers 16 ;;
      reconnect) run_mode reconnect --users 2000 --rooms 400 --rooms-per-user 10 \
        --rate 200 --duration 10s --drop-after 3s ;;
      idle) start_tidings idle
        echo "== tidings bench chat --mode idle --users $((USERS / 2)) --rooms 2000 --rooms-per-user 10"
        "$TIDINGS" bench chat --url "$URL" --data-dir "$DATA" --quiet --mode idle \
          --users $((USERS / 2)) --rooms 2000 --rooms-per-user 10 --hold 5s \
          --server-pid "$TIDINGS_PID" || true
        stop_tidings ;;
      *) die "unknown mode $mode (fanout, big-room, reconnect, idle)" ;;
    esac
  done
}

main
