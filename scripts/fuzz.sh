#!/usr/bin/env bash
# cargo-fuzz (libFuzzer) runs of the targets in fuzz/, the parsers of outside input: TimeStampReq via
# esigd_tsa::Tsa::stamp, OCSP requests as DER and in the GET form, CSRs with proof of possession,
# PKCS#11 key URIs (lower crates); the JSON body of POST /v1/sign/onetime and the signatureId path
# parameter (sign_body), the query string of GET /v1/sign/interactive (interactive_query),
# callbackUrl matching (callback_url), X-Forwarded-For (forwarded) and the configuration file
# (config). Each target's header comment says what it asserts.
#
# Usage:
#   scripts/fuzz.sh smoke [SECONDS] [TARGET...]   short run of every target (default 30 s each)
#   scripts/fuzz.sh long  [SECONDS] [TARGET...]   long run of every target (default 3600 s each)
#   scripts/fuzz.sh build                         build the targets only
#   scripts/fuzz.sh list                          list the targets
#
# Targets run one after the other, each as a single libFuzzer process (-jobs=1 -workers=1), so one
# core stays free. Each run reads the committed seeds (fuzz/corpus/<target>, never written) and
# grows a local corpus in fuzz/corpus-work/<target> (git-ignored, kept between runs). Crash, leak,
# timeout and OOM inputs go to fuzz/artifacts/<target>/; logs to fuzz/logs/<target>/. One summary
# line per target (execs, corpus size, crashes); the exit status is 1 if any target crashed or
# failed, so `smoke` can gate CI.
#
# Reproduce a crash:  cargo +nightly fuzz run -a --fuzz-dir fuzz <target> fuzz/artifacts/<target>/crash-...
# Shrink it:          cargo +nightly fuzz tmin -a --fuzz-dir fuzz <target> fuzz/artifacts/<target>/crash-...
# Refresh the seeds:  keep fuzz/corpus/<target> small (a handful of real DER files per target).
#
# Requirements: a nightly toolchain (rustup toolchain "nightly", or FUZZ_TOOLCHAIN); the script fails
# if it is missing. cargo-fuzz is installed with `cargo install cargo-fuzz --locked` if absent.
# The targets of the upper crates link RocksDB: the C++ library is the archive scripts/rocksdb-lib.sh
# built once for the main workspace (ROCKSDB_LIB_DIR + ROCKSDB_STATIC, taken from the environment or
# from that script), never compiled again in the fuzz target directory (checked after the build).
# Environment: FUZZ_TARGET_DIR (default ~/.cache/esigd-fuzz-target; CARGO_TARGET_DIR stays the main
# workspace's, which rocksdb-lib.sh uses), CARGO_BUILD_JOBS (default 1), FUZZ_TOOLCHAIN (default
# nightly), FUZZ_TIMEOUT (per-input timeout in s, default 10), FUZZ_ARGS (extra libFuzzer flags).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ_DIR="$ROOT/fuzz"
TOOLCHAIN="${FUZZ_TOOLCHAIN:-nightly}"
FUZZ_TARGET_DIR="${FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/esigd-fuzz-target}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"

die() {
    echo "fuzz.sh: $*" >&2
    exit 1
}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

mode="${1:-}"
[ $# -gt 0 ] && shift
case "$mode" in
smoke | long)
    default_secs=30
    [ "$mode" = long ] && default_secs=3600
    secs="${1:-$default_secs}"
    [ $# -gt 0 ] && shift
    [[ "$secs" =~ ^[0-9]+$ ]] && [ "$secs" -gt 0 ] || die "SECONDS must be a positive integer, got '$secs'"
    ;;
build | list) ;;
*) usage ;;
esac

# Nightly is required (-Zsanitizer); never fall back or skip.
if ! command -v rustup >/dev/null 2>&1; then
    die "rustup not found: cargo-fuzz needs a nightly toolchain managed by rustup"
fi
if ! nightly_version="$(rustup run "$TOOLCHAIN" rustc --version 2>/dev/null)"; then
    die "toolchain '$TOOLCHAIN' is not installed (rustup toolchain install nightly, or set FUZZ_TOOLCHAIN)"
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz not found, installing (cargo install cargo-fuzz --locked)" >&2
    cargo install cargo-fuzz --locked || die "installing cargo-fuzz failed"
fi

all_targets="$(cd "$ROOT" && cargo "+$TOOLCHAIN" fuzz list --fuzz-dir "$FUZZ_DIR")" ||
    die "cargo fuzz list failed"
if [ "$mode" = list ]; then
    echo "$all_targets"
    exit 0
fi
if [ $# -gt 0 ]; then
    for t in "$@"; do
        grep -qx -- "$t" <<<"$all_targets" || die "unknown target '$t' (scripts/fuzz.sh list)"
    done
    targets="$*"
else
    targets="$(echo $all_targets)"
fi

# The prebuilt RocksDB archive (built once in the main target directory if missing).
if [ -z "${ROCKSDB_LIB_DIR:-}" ]; then
    rocksdb_env="$("$ROOT/scripts/rocksdb-lib.sh")" || die "scripts/rocksdb-lib.sh failed"
    eval "$rocksdb_env"
fi
[ -f "$ROCKSDB_LIB_DIR/librocksdb.a" ] || die "ROCKSDB_LIB_DIR=$ROCKSDB_LIB_DIR has no librocksdb.a"
export ROCKSDB_LIB_DIR ROCKSDB_STATIC="${ROCKSDB_STATIC:-1}"

echo "fuzz.sh: $nightly_version, $(cargo fuzz --version), target dir $FUZZ_TARGET_DIR, RocksDB from $ROCKSDB_LIB_DIR"
# One build of every target (sanitizer=address, debug assertions and overflow checks on), then the
# binaries are run directly, so all runs test the same sources.
build_start=$SECONDS
(cd "$ROOT" && CARGO_TARGET_DIR="$FUZZ_TARGET_DIR" \
    cargo "+$TOOLCHAIN" fuzz build --debug-assertions --fuzz-dir "$FUZZ_DIR") ||
    die "building the fuzz targets failed"
echo "fuzz.sh: build took $((SECONDS - build_start)) s"
# librocksdb-sys compiles the C++ library only when ROCKSDB_LIB_DIR is not honoured.
if compiled="$(find "$FUZZ_TARGET_DIR" -path '*librocksdb-sys-*/out/*' -name 'librocksdb.a' -print -quit)" &&
    [ -n "$compiled" ]; then
    die "RocksDB was compiled in the fuzz target directory ($compiled): ROCKSDB_LIB_DIR was not used"
fi
[ "$mode" = build ] && exit 0

host="$(rustup run "$TOOLCHAIN" rustc -vV | sed -n 's/^host: //p')"
bin_dir="$FUZZ_TARGET_DIR/$host/release"

count_artifacts() {
    find "$1" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) 2>/dev/null | wc -l
}

failed=0
passed=0
failures=0
summary=()
for t in $targets; do
    bin="$bin_dir/$t"
    [ -x "$bin" ] || die "fuzz binary $bin missing after build"
    seeds="$FUZZ_DIR/corpus/$t"
    work="$FUZZ_DIR/corpus-work/$t"
    artifacts="$FUZZ_DIR/artifacts/$t"
    logs="$FUZZ_DIR/logs/$t"
    mkdir -p "$seeds" "$work" "$artifacts" "$logs"
    rm -f "$logs"/fuzz-*.log
    before="$(count_artifacts "$artifacts")"
    log="$logs/$mode.log"
    echo "fuzz.sh: $t for $secs s (log: ${log#"$ROOT"/})"
    rc=0
    # With -jobs libFuzzer runs the fuzzing process as a child writing fuzz-0.log in the current
    # directory (and copies it to its own output when the job ends): run from the log directory.
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    (cd "$logs" && "$bin" -artifact_prefix="$artifacts/" -max_total_time="$secs" \
        -timeout="${FUZZ_TIMEOUT:-10}" -jobs=1 -workers=1 -print_final_stats=1 \
        ${FUZZ_ARGS:-} "$work" "$seeds") >"$log" 2>&1 || rc=$?
    crashes=$(($(count_artifacts "$artifacts") - before))
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)" || true
    corpus="$(sed -n 's/^#[0-9]*[[:space:]]*DONE .* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' "$log" | tail -n1)" || true
    [ -n "$corpus" ] || corpus="$(find "$work" -type f | wc -l) files"
    status=OK
    if [ "$crashes" -gt 0 ] || [ "$rc" -ne 0 ] || grep -qE 'exited with exit code [1-9]' "$log"; then
        status=FAIL
        failed=1
        failures=$((failures + 1))
        grep -E '^(panicked at|thread .* panicked)|^==[0-9]+==ERROR|^SUMMARY:' "$log" | head -n 3 >&2 || true
    else
        passed=$((passed + 1))
    fi
    summary+=("$(printf '%-18s %-4s execs=%-10s corpus=%-14s crashes=%s' "$t" "$status" "${execs:-?}" "$corpus" "$crashes")")
done

echo "fuzz.sh: summary ($mode, $secs s per target)"
printf '  %s\n' "${summary[@]}"
# The plain closing line CI reads: one test per target.
echo "fuzz: $passed passed, $failures failed"
if [ "$failed" -ne 0 ]; then
    echo "fuzz.sh: FAILED; crash inputs are in fuzz/artifacts/<target>/" >&2
    exit 1
fi
