#!/usr/bin/env bash
# Keeps a shared cargo target directory from filling the disk. When the file system holding it has
# less than PRUNE_BELOW_GB free (default 30), this deletes incremental state and the test and binary
# executables under */deps that were not rebuilt in the last PRUNE_AGE_MIN minutes (default 120):
# cargo relinks them when needed. Compiled libraries (.rlib/.rmeta) stay, so nothing recompiles.
# Fails with a clear message when less than PRUNE_FAIL_GB (default 8) is still free.
set -euo pipefail
dir="${1:?usage: scripts/prune-target.sh CARGO_TARGET_DIR}"
below="${PRUNE_BELOW_GB:-30}"
age="${PRUNE_AGE_MIN:-120}"
fail="${PRUNE_FAIL_GB:-8}"
[ -d "$dir" ] || exit 0
free_gb() { df -Pk "$dir" | awk 'NR==2 { print int($4 / 1048576) }'; }
before="$(free_gb)"
if [ "$before" -lt "$below" ]; then
    for profile in "$dir"/*/; do
        rm -rf "${profile}incremental"
        [ -d "${profile}deps" ] || continue
        find "${profile}deps" -maxdepth 1 -type f -executable -mmin +"$age" \
            ! -name '*.so' ! -name '*.rlib' ! -name '*.rmeta' -delete
    done
    echo "prune-target: $before GB free was under $below GB; pruned $dir, now $(free_gb) GB free"
fi
if [ "$(free_gb)" -lt "$fail" ]; then
    echo "prune-target: only $(free_gb) GB free on the file system of $dir; a test build needs about $fail GB." >&2
    echo "prune-target: free space or point CARGO_TARGET_DIR elsewhere." >&2
    exit 1
fi
