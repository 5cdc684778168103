#!/usr/bin/env bash
# Refreshes the README screenshots (docs/screenshots/*.png) from the happy-path browser test
# (appliance/tests/browser_flow.rs): runs it with its artifacts in a temporary folder, then copies the
# pages of the one-time signing flow.
#
#   scripts/screenshots.sh            # run the test, copy the screenshots
#   scripts/screenshots.sh DIR        # only copy, from an earlier run's artifacts folder DIR (the folder
#                                     # the test printed, e.g. .../browser-flow/happy)
#
# Needs what the test needs: scripts/install-deps.sh --with-test-tools (Chromium, npm packages, nextest).
set -euo pipefail
cd "$(dirname "$0")/.."

dest=docs/screenshots
pages=(01-eservice-start 02-esigd-choice 03-idp-login 04-esigd-result 05-eservice-result)

if [ $# -ge 1 ]; then
  src=$1
else
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/esigd-target}"
  export ESIGD_VENV="${ESIGD_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/esigd-venv}"
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/esigd-screenshots.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  ESIGD_TEST_ARTIFACTS="$tmp" cargo nextest run --workspace --all-features \
    -E 'binary(browser_flow) & test(one_time_signature_in_a_real_browser)'
  src="$tmp/happy"
fi

for p in "${pages[@]}"; do
  [ -f "$src/$p.png" ] || { echo "screenshots: $src/$p.png is missing" >&2; exit 1; }
done
mkdir -p "$dest"
for p in "${pages[@]}"; do
  cp "$src/$p.png" "$dest/$p.png"
  echo "screenshots: $dest/$p.png"
done
