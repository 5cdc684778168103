#!/usr/bin/env bash
# Soak (issue #16): benches/soak.rs, the mixed load at half the probed maximum for N minutes
# (default 30), a sample every 10 s, and the trend verdict (exit status 1 on a failed check).
#   benches/soak.sh [minutes]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/esigd-target}"
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
eval "$(scripts/rocksdb-lib.sh)"
export ESIGD_SOAK_MINUTES="${1:-${ESIGD_SOAK_MINUTES:-30}}"
cargo build --release --workspace --bins
cargo bench --workspace --bench soak
