#!/usr/bin/env bash
# Long crash-safety run: publishers write while the server is killed with
# SIGKILL at varying moments and restarted on the same data directory,
# CYCLES times (default 100). Every acknowledged event must survive, ids must
# strictly increase across restarts, and no batch may be half-applied.
#   scripts/crash-cycles.sh [CYCLES]
set -euo pipefail
cd "$(dirname "$0")/.."
export TIDINGS_CRASH_CYCLES="${1:-100}"
exec cargo test --test suite -- --exact \
    durability::acknowledged_writes_survive_sigkill_and_batches_are_never_half_applied --nocapture
