#!/usr/bin/env bash
# Recovery time vs store size (issue #16): benches/recovery.rs prints the table
# (esigd serve spawn -> ready at 0, 1 M, 10 M records; ESIGD_RECOVERY_SIZES, ESIGD_RECOVERY_RUNS).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/esigd-target}"
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
eval "$(scripts/rocksdb-lib.sh)"
cargo build --release --workspace --bins
cargo bench --workspace --bench recovery
