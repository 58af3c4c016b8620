#!/usr/bin/env bash
# Usage: scripts/bench-tickets.sh
#
# The tickets module's benchmark (spec 004) on this machine, against a fresh
# release Tidings server on 127.0.0.1:18091 (its own temporary data
# directory, `--tickets-sla-unit 1s` so that SLA "minutes" are seconds), the
# modes of `tidings bench tickets`:
#
#   1. notify: 10 000 users on their notification SSE stream, an admin
#      making 500 ticket changes/s for 10 s, each a ticket created assigned
#      to the next user (`assignment`): change→notification latency,
#      deliveries/s, exact accounting (lost, duplicated, extra, unexpected);
#   2. notify-reassign: the same with reassignments (`assignment` to the new
#      assignee, `reassignment` to the previous one);
#   3. sla: an SLA policy, 100 000 tickets of which 10 000 have their
#      response deadline in the same second (300 s after creation starts:
#      long enough that the other tickets' warnings, at 80 % of their
#      targets, all fire before that second and their breaches after it),
#      1 000 agents on their streams: how late each `slaBreach` came
#      (p50/p99/max), all within 1 s or not, exactly once;
#   4. sla-restart: the same tickets due RESTART_DUE_IN (120 s) after
#      creation starts, created (`--create-only`), the server
#      stopped before the due second and started again RESTART_AFTER
#      seconds after it; then `--observe-only` reads every agent's inbox:
#      every due breach exactly once (fired at start-up, none lost);
#   5. inbox: 100 000 notifications stored over 1 000 users' inboxes (by
#      reassignments), then 50 readers asking for their count and first
#      page (limit 20) for 10 s: requests/s and latency of each.
#
# Every mode runs on its own fresh server. The file-descriptor limit is
# raised to the hard limit (each stream is one socket in the server and
# one in the bench, which holds at most 19 000 streams).
#
# Environment: TIDINGS (binary, default target/release/tidings, built when
# missing), TIDINGS_FLAGS (extra `serve` flags), USERS (notify users,
# default 10000), RATE (notify changes/s, default 500), DURATION (notify
# and inbox, default 10s), TICKETS (default 100000), DUE (default 10000),
# DUE_IN (default 300s), RESTART_DUE_IN (default 120s), INBOX_USERS (default 1000), NOTIFICATIONS
# (default 100000), READERS (default 50), RESTART_AFTER
# (seconds after the due second, default 5), SETTLE (seconds after the
# restart before reading the inboxes, default 60: every timer that fell
# due while the server was down fires first, in due order), PORT (default 18091),
# MODES (default "notify notify-reassign sla sla-restart inbox"), KEEP=1
# keeps the temporary directory.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TIDINGS=${TIDINGS:-$ROOT/target/release/tidings}
USERS=${USERS:-10000}
RATE=${RATE:-500}
DURATION=${DURATION:-10s}
INBOX_USERS=${INBOX_USERS:-1000}
NOTIFICATIONS=${NOTIFICATIONS:-100000}
READERS=${READERS:-50}
TICKETS=${TICKETS:-100000}
DUE=${DUE:-10000}
DUE_IN=${DUE_IN:-300s}
RESTART_DUE_IN=${RESTART_DUE_IN:-120s}
RESTART_AFTER=${RESTART_AFTER:-5}
SETTLE=${SETTLE:-60}
PORT=${PORT:-18091}
MODES=${MODES:-notify notify-reassign sla sla-restart inbox}
URL=http://127.0.0.1:$PORT
WORK=$(mktemp -d /tmp/bench-tickets.XXXXXX)
PIDS=()

NAME=bench-tickets
# shellcheck source=scripts/bench-common.sh
source "$ROOT/scripts/bench-common.sh"
trap cleanup EXIT

# Starts a server on the data directory $WORK/$1 (made on first use).
start_tidings() {
  local data=$WORK/$1
  # shellcheck disable=SC2086 # TIDINGS_FLAGS holds several flags
  "$TIDINGS" serve --data-dir "$data" --listen 127.0.0.1:$PORT --tickets-sla-unit 1s \
    ${TIDINGS_FLAGS:-} >"$WORK/$1.out" 2>>"$WORK/$1.log" &
  TIDINGS_PID=$!
  PIDS+=($TIDINGS_PID)
  DATA=$data
  wait_for grep -q listening "$WORK/$1.out"
}

# Stops the running server.
stop_tidings() {
  kill -TERM "$TIDINGS_PID" 2>/dev/null || true
  wait "$TIDINGS_PID" 2>/dev/null || true
}

# Runs `tidings bench tickets` with its flags against the running server.
bench() {
  echo "== tidings bench tickets $*"
  "$TIDINGS" bench tickets --url "$URL" --data-dir "$DATA" --quiet "$@" || true
}

# Runs one mode with its flags on a fresh server.
run_mode() {
  local name=$1
  shift
  start_tidings "$name"
  bench "$@"
  stop_tidings
}

# A number field of the sla state file (one JSON line).
state_field() {
  sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" "$WORK/sla-state.json"
}

# The restart variant: create, stop before the due second, start after it, count.
sla_restart() {
  start_tidings sla-restart
  bench --mode sla --tickets "$TICKETS" --due "$DUE" --due-in "$RESTART_DUE_IN" \
    --create-only --state "$WORK/sla-state.json"
  stop_tidings
  [ -s "$WORK/sla-state.json" ] || die "the sla creation wrote no state"
  local due now
  due=$(state_field dueSecondMs)
  now=$(date +%s%3N)
  if [ "$now" -ge "$due" ]; then
    echo "!! creating took past the due second: the server was not down at the deadline (raise RESTART_DUE_IN)"
  fi
  local restart_at=$((due + RESTART_AFTER * 1000))
  echo "== server down; starting it again $(((restart_at - now) / 1000)) s from now (${RESTART_AFTER} s after the due second)"
  sleep "$(awk -v ms=$((restart_at - now)) 'BEGIN { print (ms > 0 ? ms / 1000 : 0) }')"
  start_tidings sla-restart
  sleep "$SETTLE"
  bench --mode sla --observe-only --state "$WORK/sla-state.json" --grace 0s
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
      notify) run_mode notify --mode notify --users "$USERS" --rate "$RATE" \
        --duration "$DURATION" --change create ;;
      notify-reassign) run_mode notify-reassign --mode notify --users "$USERS" --rate "$RATE" \
        --duration "$DURATION" --change reassign ;;
      sla) run_mode sla --mode sla --tickets "$TICKETS" --due "$DUE" --due-in "$DUE_IN" --grace 10s ;;
      sla-restart) sla_restart ;;
      inbox) run_mode inbox --mode inbox --users "$INBOX_USERS" --notifications "$NOTIFICATIONS" \
        --readers "$READERS" --duration "$DURATION" --change reassign ;;
      *) die "unknown mode $mode (notify, notify-reassign, sla, sla-restart, inbox)" ;;
    esac
  done
}

main
