#!/usr/bin/env bash
# The test command: installs what is missing, then format check, clippy, and every test
# (unit, SoftHSM, RocksDB, TLS, openssl/pkilint validators, schemathesis) under cargo-nextest, one
# process per test, each with its own SoftHSM token directory (see scripts/test-runner), the
# monitoring files and the Debian package (scripts/check-monitoring.sh, scripts/check-package.sh),
# then a short run of every fuzz target (scripts/fuzz.sh smoke; nightly toolchain).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --with-test-tools
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/esigd-target}"
export ESIGD_VENV="${ESIGD_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/esigd-venv}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# No incremental state: a test run builds once, and incremental directories grew to 13 GB.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# The target directory is shared between runs and clones; stale test executables pile up.
scripts/prune-target.sh "$CARGO_TARGET_DIR"
# RocksDB's C++ is compiled once and linked by every build below (check, clippy, test).
eval "$(scripts/rocksdb-lib.sh)"
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
# The WebAssembly PAdES client (client-wasm/) that web/assets/esig-pdf.test.mjs loads; installs the
# wasm32 target and the pinned wasm-bindgen-cli when missing, and fails (never skips) without them.
echo "== scripts/build-wasm.sh"
scripts/build-wasm.sh
echo "== node --test (esig.js, example e-Service, development Identity BB)"
node --test web/assets/ examples/eservice/ tests/e2e/
echo "== cargo nextest"
cargo nextest run --workspace --all-features --locked --no-fail-fast "$@"
# The monitoring files in contrib/ (promtool: alert rules, their unit tests, dashboard queries)
# and the Debian package (dpkg-deb, lintian, systemd-analyze security/verify).
echo "== scripts/check-monitoring.sh"
scripts/check-monitoring.sh
echo "== scripts/check-package.sh"
scripts/check-package.sh
# Every fuzz target for FUZZ_SMOKE_SECONDS (default 30 s) each on its committed seeds and grown
# corpus; a crash fails the run (inputs in fuzz/artifacts/<target>/). Both cores build the targets.
echo "== fuzz smoke (scripts/fuzz.sh smoke)"
CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}" scripts/fuzz.sh smoke "${FUZZ_SMOKE_SECONDS:-30}"
