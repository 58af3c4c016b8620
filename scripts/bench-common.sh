# Helpers shared by the benchmark scripts (sourced, not run). The sourcing
# script sets NAME (its name in messages), WORK (its temporary directory)
# and PIDS (the processes it started, stopped on exit).

die() { echo "$NAME: $*" >&2; exit 1; }

# Stops every process started here and removes $WORK (KEEP=1 keeps it).
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}

# Waits until COMMAND succeeds (at most 15 s).
wait_for() {
  local i
  for i in $(seq 150); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  die "timed out waiting for: $*"
}
