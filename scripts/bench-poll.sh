#!/usr/bin/env bash
# Usage: scripts/bench-poll.sh
#
# Issue 12's polling benchmark on this machine, against a fresh release
# Tidings server on 127.0.0.1:18080 (its own temporary data directory):
#
#   1. tidings bench poll --mode closed -c 100 --duration 10s --peer nginx
#      (closed-interval polls with JWT, then nginx serving the same bytes);
#   2. tidings bench poll --mode live --viewers $VIEWERS --duration 10s --ingest
#      (viewers polling every interval, alone and while hearts, chats and
#      answers are written; RSS from /proc);
#   3. the wrk -t1 -c100 -d10s reference figures: nginx serving one closed
#      interval's bytes (~250 B JSON) from a file, Tidings' /api/v1/time, and
#      Tidings' closed-interval poll with a JWT.
#
# nginx (Debian package) and wrk (Debian package) are installed with apt-get
# when missing (as root; otherwise the script stops and says what to install).
# The wrk reference nginx runs from its own configuration in the temporary
# directory (2 workers, access_log off, keep-alive) on 127.0.0.1:18081, the
# same settings `bench poll --peer nginx` generates (src/bench/nginx.rs).
#
# Environment: TIDINGS (binary, default target/release/tidings, built when
# missing), TIDINGS_FLAGS (extra `serve` flags, e.g. `--access-log off`),
# VIEWERS (default 10000), PORT (Tidings, default 18080), NGINX_PORT
# (the wrk reference nginx, default 18081), KEEP=1 keeps the temporary directory.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TIDINGS=${TIDINGS:-$ROOT/target/release/tidings}
VIEWERS=${VIEWERS:-10000}
PORT=${PORT:-18080}
NGINX_PORT=${NGINX_PORT:-18081}
URL=http://127.0.0.1:$PORT
WORK=$(mktemp -d /tmp/bench-poll.XXXXXX)
# nginx workers run as www-data: they must reach the files.
chmod 755 "$WORK"
DATA=$WORK/data
PIDS=()

NAME=bench-poll
# shellcheck source=scripts/bench-common.sh
source "$ROOT/scripts/bench-common.sh"
trap cleanup EXIT

# Installs Debian package $1 when command $2 is missing.
ensure() {
  command -v "$2" >/dev/null && return
  [ "$(id -u)" = 0 ] || die "$2 is missing: apt-get install $1"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
}

json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

start_tidings() {
  # shellcheck disable=SC2086 # TIDINGS_FLAGS holds several flags
  "$TIDINGS" serve --data-dir "$DATA" --listen 127.0.0.1:$PORT ${TIDINGS_FLAGS:-} >"$WORK/tidings.out" 2>"$WORK/tidings.log" &
  TIDINGS_PID=$!
  PIDS+=($TIDINGS_PID)
  wait_for grep -q listening "$WORK/tidings.out"
}

# Creates a stream with one chat, and writes that chat's closed interval to $WORK/www/interval.json.
prepare_interval() {
  local key
  key=$(json_field '["adminKey"]' <"$DATA/config.json")
  TOKEN=$("$TIDINGS" token --data-dir "$DATA" --sub wrk-viewer --ttl 1h)
  STREAM=$(curl -sf -XPOST -H "X-API-Key: $key" -H 'Content-Type: application/json' \
    -d '{"title":"wrk reference"}' "$URL/api/v1/events-streams" | json_field '["data"]["id"]')
  INTERVAL=$(curl -sf -XPOST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"kind":"message","text":"the wrk reference chat, about as long as a real one"}' \
    "$URL/api/v1/events-streams/$STREAM/chats" | json_field '["data"]["interval"]')
  mkdir -p "$WORK/www"
  # The current interval is answered once it has closed.
  curl -sf -H "Authorization: Bearer $TOKEN" "$URL/api/v1/events-streams/$STREAM?interval=$INTERVAL" \
    >"$WORK/www/interval.json"
  echo "closed interval $INTERVAL: $(wc -c <"$WORK/www/interval.json") bytes"
}

start_reference_nginx() {
  mkdir -p "$WORK/nginx/tmp"
  cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 2;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 10000; }
http {
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout 300s;
    keepalive_requests 1000000000;
    open_file_cache max=1000 inactive=300s;
    types { }
    default_type application/json;
    client_body_temp_path $WORK/nginx/tmp;
    server { listen 127.0.0.1:$NGINX_PORT backlog=4096; root $WORK/www; }
}
CONF
  nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" &
  PIDS+=($!)
  wait_for curl -sf -o /dev/null "http://127.0.0.1:$NGINX_PORT/interval.json"
}

reference() {
  echo "== wrk -t1 -c100 -d10s: $1"
  shift
  wrk -t1 -c100 -d10s --latency "$@" | grep -E 'Requests/sec|Latency|50%|99%|Non-2xx|Socket errors' || true
}

main() {
  ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  command -v python3 >/dev/null || die "python3 is missing"
  command -v curl >/dev/null || die "curl is missing"
  ensure nginx nginx
  ensure wrk wrk
  if [ ! -x "$TIDINGS" ]; then
    (cd "$ROOT" && cargo build --release) || die "building tidings failed"
  fi
  start_tidings
  echo "== tidings bench poll --mode closed -c 100 --duration 10s --peer nginx"
  "$TIDINGS" bench poll --url "$URL" --data-dir "$DATA" --quiet \
    --mode closed -c 100 --duration 10s --peer nginx || true
  echo "== tidings bench poll --mode live --viewers $VIEWERS --duration 10s --ingest"
  "$TIDINGS" bench poll --url "$URL" --data-dir "$DATA" --quiet \
    --mode live --viewers "$VIEWERS" --duration 10s --ingest --server-pid "$TIDINGS_PID" || true
  prepare_interval
  start_reference_nginx
  reference "nginx, the interval's bytes from a file" "http://127.0.0.1:$NGINX_PORT/interval.json"
  reference "tidings /api/v1/time" "$URL/api/v1/time"
  reference "tidings closed-interval poll with JWT" -H "Authorization: Bearer $TOKEN" \
    "$URL/api/v1/events-streams/$STREAM?interval=$INTERVAL"
}

main
