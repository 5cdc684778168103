#!/usr/bin/env bash
# Builds the bundled RocksDB C++ library once and prints the environment that makes every cargo
# build link that one archive instead of compiling it again:
#
#   eval "$(scripts/rocksdb-lib.sh)"
#
# Why: librocksdb-sys compiles ~20 minutes of C++ (2 cores) in its build script, and cargo runs
# that build script again for each kind of build: `cargo check`/`clippy` and `cargo build`/`test`
# do not share it (measured: two `out/librocksdb.a` per target directory), nor do the dev and bench
# profiles. With ROCKSDB_LIB_DIR + ROCKSDB_STATIC set, the build script only generates the bindings
# and links the archive built here (librocksdb-sys's own switch; see its build.rs).
#
# The archive is the crate's own bundled build (same sources, flags and zstd/lz4 support), made
# by building `esigd-store` without the switch, and kept under
# ${ESIGD_ROCKSDB_CACHE:-~/.cache/esigd-rocksdb}/<librocksdb-sys version>/ (outside the work tree).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/esigd-target}"
version=$(awk '/^name = "librocksdb-sys"$/ {getline; gsub(/[" ]/, "", $0); sub(/^version=/, "", $0); print; exit}' Cargo.lock)
if [ -z "$version" ]; then
  echo "rocksdb-lib: librocksdb-sys is not in Cargo.lock" >&2
  exit 1
fi
dir="${ESIGD_ROCKSDB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/esigd-rocksdb}/librocksdb-sys-$version"
if [ ! -f "$dir/librocksdb.a" ]; then
  echo "rocksdb-lib: building RocksDB $version once (about 20 minutes on 2 cores)" >&2
  # The crate's own build, in this repository's target directory; its build script reports where
  # it put the archive.
  out=$(env -u ROCKSDB_LIB_DIR -u ROCKSDB_STATIC \
    cargo build -p esigd-store --lib --locked --message-format json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "build-script-executed" and m["package_id"].find("librocksdb-sys") >= 0:
        print(m["out_dir"])
')
  if [ -z "$out" ] || [ ! -f "$out/librocksdb.a" ]; then
    echo "rocksdb-lib: the bundled build did not produce librocksdb.a (run: cargo build -p esigd-store)" >&2
    exit 1
  fi
  mkdir -p "$dir"
  cp "$out/librocksdb.a" "$dir/librocksdb.a.tmp"
  mv "$dir/librocksdb.a.tmp" "$dir/librocksdb.a"
  echo "rocksdb-lib: $dir/librocksdb.a" >&2
fi
echo "export ROCKSDB_LIB_DIR='$dir' ROCKSDB_STATIC=1"
