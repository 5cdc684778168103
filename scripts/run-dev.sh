#!/usr/bin/env bash
# Runs the whole development setup on embedded defaults, so a newcomer can sign a file in the
# browser, and set up a signing device, minutes after cloning:
#   * esigd          http://127.0.0.1:8080 (public) and https://127.0.0.1:8443 (e-Service API, mTLS);
#                    SoftHSM token, CA and TSA keys created under ./data on first start, RocksDB in ./data/db
#   * Identity BB    http://127.0.0.1:9000 (tests/e2e/idp.mjs, a real OpenID provider; users mari / juri,
#                    password "test")
#   * e-Service      http://127.0.0.1:8090 (examples/eservice: pick a file, sign it, download the .p7s)
#   * Remote SCD     esigd-remote-scd: relying-party API https://127.0.0.1:8600 (mutual TLS, esigd's client
#                    certificate), device API https://127.0.0.1:8601; development PKI in ./data/rscd
#                    (scripts/dev-rscd-pki.sh), journal in ./data/rscd-state
#   * a device       esigd-device, the citizen's phone: its own SoftHSM token in ./data/device, its web UI on
#                    http://127.0.0.1:8700 (workflow 9.2.1 at http://127.0.0.1:8080/v1/onboard)
# Logs: data/idp.log, data/eservice.log, data/rscd.log, data/device.log (esigd logs to this terminal).
# Installs missing system and npm packages itself. Ctrl-C stops all five.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/esigd-target}"
# Same build as the tests, linking the RocksDB library compiled once (scripts/rocksdb-lib.sh).
eval "$(scripts/rocksdb-lib.sh)"
cargo build --workspace --all-targets --all-features --locked
bin="$CARGO_TARGET_DIR/debug"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# Waits up to $2 seconds until the file $1 has a line containing $3; prints that line.
wait_for_line() {
  local file=$1 seconds=$2 needle=$3
  for _ in $(seq 1 $((seconds * 5))); do
    if grep -m1 -F -- "$needle" "$file" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "run-dev: \"$needle\" not in $file after ${seconds} s:" >&2
  tail -n 20 "$file" >&2 || true
  return 1
}

mkdir -p data/idp
# The Remote SCD service's PKI before esigd starts: esigd turns SCD onboarding on only if it finds
# data/rscd/esigd-rp.pem (its client certificate) at start. Existing files are kept.
scripts/dev-rscd-pki.sh data/rscd
node tests/e2e/idp.mjs --port 9000 --keys data/idp/keys.json 2> data/idp.log &
pids+=($!)
"$bin/esigd-remote-scd" serve \
  --rp-listen 127.0.0.1:8600 --rp-client-ca data/rscd/rscd-ca.pem \
  --device-listen 127.0.0.1:8601 \
  --cert data/rscd/rscd-server.pem --key data/rscd/rscd-server.key \
  --state data/rscd-state 2> data/rscd.log &
pids+=($!)
"$bin/esigd" --data-dir ./data serve "$@" &
pids+=($!)

# One device for the dev user: its own token (SOFTHSM2_CONF for this process only; esigd has its own).
wait_for_line data/rscd.log 30 "esigd-remote-scd serving" >/dev/null
[ -f data/device/softhsm2.conf ] || "$bin/esigd-device" init --state data/device >/dev/null
SOFTHSM2_CONF="$PWD/data/device/softhsm2.conf" "$bin/esigd-device" run --state data/device \
  --service https://127.0.0.1:8601 --service-ca data/rscd/rscd-ca.pem --ui 127.0.0.1:8700 2> data/device.log &
pids+=($!)
device_id=$(wait_for_line data/device.log 30 "device ID (SCDRemoteId): " | sed 's/.*device ID (SCDRemoteId): //')
wait_for_line data/device.log 30 "device UI: " >/dev/null

# The example e-Service needs the demo client certificate esigd writes on its first start.
for _ in $(seq 1 120); do
  [ -f data/pki/demo-eservice.pem ] && curl -sf http://127.0.0.1:8080/readyz >/dev/null && break
  sleep 1
done
node examples/eservice/server.mjs --port 8090 --data ./data 2> data/eservice.log &
pids+=($!)
sleep 1
echo
echo "Sign a file:             open http://127.0.0.1:8090/ in a browser, pick a file, sign as mari / test."
echo "Set up a signing device: open http://127.0.0.1:8080/v1/onboard, log in as mari / test, type the device ID"
echo "                         $device_id"
echo "                         then open the device (the citizen's phone) in a second tab: http://127.0.0.1:8700/"
echo "My certificates:         http://127.0.0.1:8080/v1/certs"
wait -n "${pids[@]}"
