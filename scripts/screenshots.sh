#!/usr/bin/env bash
# Refreshes the README screenshots (docs/screenshots/*.png) from the browser tests
# (appliance/tests/browser_flow.rs, appliance/tests/browser_onboarding.rs, appliance/tests/browser_scd_signing.rs):
# runs them with their artifacts in a temporary folder, then copies the pages of the one-time signing flow, the
# choice page on a phone, the two sides of setting up a signing device (esigd's page with the code, the device
# app's page), and the two sides of signing with it (esigd's page with the code, the device app's signing page).
#
#   scripts/screenshots.sh            # run the tests, copy the screenshots
#   scripts/screenshots.sh DIR        # only copy, from an earlier run's artifacts folder DIR (the folder
#                                     # above the ones the tests printed; with ESIGD_TEST_ARTIFACTS=DIR
#                                     # the tests write there)
#   ONLY="09-scd-code 10-device-sign" scripts/screenshots.sh [DIR]
#                                     # only these screenshots (names in docs/screenshots, without .png):
#                                     # only the tests that take them are run
#
# Needs what the tests need: scripts/install-deps.sh --with-test-tools (Chromium, npm packages, nextest).
set -euo pipefail
cd "$(dirname "$0")/.."

dest=docs/screenshots
# source (under the artifacts folder), name in docs/screenshots, the test binary that takes it
pages=(
  "happy/01-eservice-start 01-eservice-start browser_flow"
  "happy/02-esigd-choice 02-esigd-choice browser_flow"
  "happy/03-idp-login 03-idp-login browser_flow"
  "happy/04-esigd-result 04-esigd-result browser_flow"
  "happy/05-eservice-result 05-eservice-result browser_flow"
  "negative/phone/01-choice-on-a-phone 06-choice-on-a-phone browser_flow"
  "onboarding/onboard/04-onboard-code 07-onboard-code browser_onboarding"
  "onboarding/onboard/05-device-request 08-device-request browser_onboarding"
  "scd-signing/sign/04-scd-code 09-scd-code browser_scd_signing"
  "scd-signing/sign/05-device-sign 10-device-sign browser_scd_signing"
)

# The pages asked for (all unless ONLY names some), and the test binaries that take them.
selected=()
binaries=()
for entry in "${pages[@]}"; do
  read -r _ name binary <<<"$entry"
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then continue; fi
  selected+=("$entry")
  [[ " ${binaries[*]:-} " == *" $binary "* ]] || binaries+=("$binary")
done
if [ ${#selected[@]} -eq 0 ]; then
  echo "screenshots: ONLY=\"$ONLY\" names no screenshot" >&2
  exit 2
fi

if [ $# -ge 1 ]; then
  src=$1
else
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/esigd-target}"
  export ESIGD_VENV="${ESIGD_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/esigd-venv}"
  # Links the RocksDB library compiled once, as scripts/test.sh does.
  eval "$(scripts/rocksdb-lib.sh)"
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/esigd-screenshots.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  filter=""
  for b in "${binaries[@]}"; do filter="${filter:+$filter | }binary($b)"; done
  # The whole workspace: the device tests also run esigd-remote-scd and esigd-device.
  ESIGD_TEST_ARTIFACTS="$tmp" cargo nextest run --workspace --all-features -E "$filter"
  src="$tmp"
fi

for entry in "${selected[@]}"; do
  read -r p _ _ <<<"$entry"
  [ -f "$src/$p.png" ] || { echo "screenshots: $src/$p.png is missing" >&2; exit 1; }
done
mkdir -p "$dest"
for entry in "${selected[@]}"; do
  read -r p name _ <<<"$entry"
  cp "$src/$p.png" "$dest/$name.png"
  echo "screenshots: $dest/$name.png"
done
