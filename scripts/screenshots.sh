#!/usr/bin/env bash
# Refreshes the README screenshots (docs/screenshots/*.png) from the browser tests
# (appliance/tests/browser_flow.rs, appliance/tests/browser_onboarding.rs): runs them with their artifacts in
# a temporary folder, then copies the pages of the one-time signing flow, the choice page on a phone, and the
# two sides of setting up a signing device (esigd's page with the code, the device app's page).
#
#   scripts/screenshots.sh            # run the tests, copy the screenshots
#   scripts/screenshots.sh DIR        # only copy, from an earlier run's artifacts folder DIR (the folder
#                                     # above the ones the tests printed; with ESIGD_TEST_ARTIFACTS=DIR
#                                     # both tests write there)
#
# Needs what the test needs: scripts/install-deps.sh --with-test-tools (Chromium, npm packages, nextest).
set -euo pipefail
cd "$(dirname "$0")/.."

dest=docs/screenshots
# source (under the artifacts folder) -> name in docs/screenshots
pages=(
  happy/01-eservice-start happy/02-esigd-choice happy/03-idp-login happy/04-esigd-result
  happy/05-eservice-result negative/phone/01-choice-on-a-phone
  onboarding/onboard/04-onboard-code onboarding/onboard/05-device-request
)
name() {
  case $1 in
    negative/phone/01-choice-on-a-phone) echo 06-choice-on-a-phone ;;
    onboarding/onboard/04-onboard-code) echo 07-onboard-code ;;
    onboarding/onboard/05-device-request) echo 08-device-request ;;
    *) basename "$1" ;;
  esac
}

if [ $# -ge 1 ]; then
  src=$1
else
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/esigd-target}"
  export ESIGD_VENV="${ESIGD_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/esigd-venv}"
  # Links the RocksDB library compiled once, as scripts/test.sh does.
  eval "$(scripts/rocksdb-lib.sh)"
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/esigd-screenshots.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  # The whole workspace: the onboarding test also runs esigd-remote-scd and esigd-device.
  ESIGD_TEST_ARTIFACTS="$tmp" cargo nextest run --workspace --all-features \
    -E 'binary(browser_flow) | binary(browser_onboarding)'
  src="$tmp"
fi

for p in "${pages[@]}"; do
  [ -f "$src/$p.png" ] || { echo "screenshots: $src/$p.png is missing" >&2; exit 1; }
done
mkdir -p "$dest"
for p in "${pages[@]}"; do
  cp "$src/$p.png" "$dest/$(name "$p").png"
  echo "screenshots: $dest/$(name "$p").png"
done
