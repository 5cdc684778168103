#!/usr/bin/env bash
# Checks the monitoring files in contrib/ with promtool (Debian package `prometheus`):
#   * contrib/prometheus/esigd-rules.yml: `promtool check rules` (syntax, PromQL, templates);
#   * contrib/prometheus/esigd-rules.test.yml: `promtool test rules` (each alert fires on a bad
#     series and stays silent on a healthy one);
#   * contrib/grafana/esigd.json: valid JSON, and every panel query is valid PromQL (each is put
#     into a throw-away recording rule, with Grafana's $__rate_interval / $instance replaced,
#     and checked with `promtool check rules`).
# That every esigd_* name used exists on a running daemon's /metrics is checked by the Rust test
# appliance/tests/dashboard_metrics.rs. Fails (never skips) when a tool is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need() {
  command -v "$1" >/dev/null 2>&1 || {
    echo "check-monitoring: $1 not found: $2" >&2
    exit 1
  }
}
need promtool "apt-get install prometheus (or scripts/install-deps.sh)"
need python3 "apt-get install python3"

echo "== promtool check rules contrib/prometheus/esigd-rules.yml"
promtool check rules contrib/prometheus/esigd-rules.yml
echo "== promtool test rules contrib/prometheus/esigd-rules.test.yml"
promtool test rules contrib/prometheus/esigd-rules.test.yml

echo "== contrib/grafana/esigd.json: JSON and PromQL of every query"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - contrib/grafana/esigd.json "$tmp/dashboard-queries.yml" <<'PY'
import json
import sys

with open(sys.argv[1]) as f:
    dashboard = json.load(f)
exprs = []


def walk(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                exprs.append(value)
            else:
                walk(value)
    elif isinstance(node, list):
        for value in node:
            walk(value)


walk(dashboard.get("panels", []))
if len(exprs) < 20:
    sys.exit(f"only {len(exprs)} queries found in {sys.argv[1]}: the panels are not where expected")
with open(sys.argv[2], "w") as out:
    out.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, e in enumerate(exprs):
        e = e.replace("$__rate_interval", "5m").replace("$instance", ".*")
        out.write(f"      - record: dashboard:query_{i}\n        expr: {json.dumps(e)}\n")
print(f"{len(exprs)} queries")
PY
promtool check rules "$tmp/dashboard-queries.yml"
echo "check-monitoring: ok"
