#!/usr/bin/env bash
# kill -9 at random points under load, the long form (issue #16): the test
# appliance/tests/kill9_load.rs with ESIGD_KILL9_ITERATIONS (default 100) instead of CI's 10.
# Prints each iteration's line and the summary (recovery time = spawn -> `ready` banner line).
#   benches/kill9.sh [iterations]        ESIGD_KILL9_SEED=n fixes the kill points
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/esigd-target}"
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
eval "$(scripts/rocksdb-lib.sh)"
export ESIGD_KILL9_ITERATIONS="${1:-${ESIGD_KILL9_ITERATIONS:-100}}"
cargo build --workspace --bins
cargo test --workspace --test kill9_load -- --exact kill9_at_random_points_under_load_loses_and_repeats_nothing --nocapture 2>&1 \
  | grep -E '^kill9|test result|panicked|FAILED' 
