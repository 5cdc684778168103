#!/usr/bin/env bash
# Runs esigd on the embedded development defaults: a SoftHSM token, CA and TSA keys created
# under ./data on first start, RocksDB in ./data/db. Installs missing system packages itself.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/esigd-target}"
# Same build as the tests (one RocksDB compile serves both).
cargo build --workspace --all-targets --all-features --locked
exec "$CARGO_TARGET_DIR/debug/esigd" --data-dir ./data serve "$@"
