#!/usr/bin/env bash
# Runs the whole development setup on embedded defaults, so a newcomer can sign a file in the
# browser minutes after cloning:
#   * esigd          http://127.0.0.1:8080 (public) and https://127.0.0.1:8443 (e-Service API, mTLS);
#                    SoftHSM token, CA and TSA keys created under ./data on first start, RocksDB in ./data/db
#   * Identity BB    http://127.0.0.1:9000 (tests/e2e/idp.mjs, a real OpenID provider; users mari / juri,
#                    password "test")
#   * e-Service      http://127.0.0.1:8090 (examples/eservice: pick a file, sign it, download the .p7s)
# Installs missing system and npm packages itself. Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/esigd-target}"
# Same build as the tests, linking the RocksDB library compiled once (scripts/rocksdb-lib.sh).
eval "$(scripts/rocksdb-lib.sh)"
cargo build --workspace --all-targets --all-features --locked

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

mkdir -p data/idp
node tests/e2e/idp.mjs --port 9000 --keys data/idp/keys.json 2> data/idp.log &
pids+=($!)
"$CARGO_TARGET_DIR/debug/esigd" --data-dir ./data serve "$@" &
pids+=($!)
# The example e-Service needs the demo client certificate esigd writes on its first start.
for _ in $(seq 1 120); do
  [ -f data/pki/demo-eservice.pem ] && curl -sf http://127.0.0.1:8080/readyz >/dev/null && break
  sleep 1
done
node examples/eservice/server.mjs --port 8090 --data ./data 2> data/eservice.log &
pids+=($!)
sleep 1
echo
echo "Open http://127.0.0.1:8090/ in a browser, pick a file, sign as mari / test."
wait -n "${pids[@]}"
