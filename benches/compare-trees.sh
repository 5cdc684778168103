#!/usr/bin/env bash
# Before/after benchmarks of two source trees, interleaved in one run (e.g. a refactoring):
#
#   benches/compare-trees.sh OLD_TREE [ROUNDS]
#
# Builds OLD_TREE (another checkout of this repository) and this tree with the bench profile in
# one shared target directory (dependencies, RocksDB included, are compiled once), keeps both
# `esigd` binaries and both `ca_issuance` bench binaries, then runs ROUNDS times each, alternating
# old and new: `tsa_http` and `onetime_api` of this tree (the same load client) against the old and
# the new `esigd` server (ESIGD_BIN), and the old and new `ca_issuance` (in-process, so the bench
# binary itself is what differs). Every run's output is kept; compare the medians of its rows.
set -euo pipefail
old=$(cd "$1" && pwd)
rounds=${2:-3}
new=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/esigd-target}"
# Both trees link the RocksDB archive built once (same librocksdb-sys version assumed).
eval "$("$new/scripts/rocksdb-lib.sh")"
export BENCH_SECS=${BENCH_SECS:-2} BENCH_ROUNDS=${BENCH_ROUNDS:-3}
out=${OUT:-$(mktemp -d)}
mkdir -p "$out/old" "$out/new"

build() { # tree side
  (cd "$1" && cargo build --profile bench --workspace --all-targets --all-features --locked >&2)
  cp "$CARGO_TARGET_DIR/release/esigd" "$out/$2/esigd"
  for b in ca_issuance tsa_http onetime_api; do
    bin=$(ls -t "$CARGO_TARGET_DIR"/release/deps/"$b"-* | grep -v '\.d$' | head -n 1)
    cp "$bin" "$out/$2/$b"
  done
}
build "$old" old
build "$new" new

run() { # side bench round
  local side=$1 bench=$2 round=$3
  echo "== $bench $side round $round" >&2
  # The benches find the validators and fixtures relative to the repository.
  local bin="$out/$side/$bench"
  [ "$bench" = ca_issuance ] || bin="$out/new/$bench"
  (cd "$new" && ESIGD_BIN="$out/$side/esigd" scripts/test-runner "$bin" --bench) \
    > "$out/$side/$bench.$round.txt" 2>"$out/$side/$bench.$round.err"
}
for round in $(seq 1 "$rounds"); do
  for bench in tsa_http onetime_api ca_issuance; do
    # Alternate which side goes first, so a slow start of the machine hits both alike.
    if [ $((round % 2)) -eq 1 ]; then run old $bench $round; run new $bench $round
    else run new $bench $round; run old $bench $round; fi
  done
done
echo "outputs: $out"
