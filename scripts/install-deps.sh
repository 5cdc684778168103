#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build, run and test esigd (idempotent).
# Needs root for apt. Python tools go into a venv ($ESIGD_VENV).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(softhsm2 opensc libclang-dev clang openssl curl python3-venv prometheus)
# Node runs the development Identity BB and the example e-Service (scripts/run-dev.sh) and the
# browser tests.
command -v node >/dev/null 2>&1 || APT_PACKAGES+=(nodejs npm)
if [ "${1:-}" = "--with-test-tools" ]; then
  # Browser tests drive Debian's Chromium through playwright-core (never a downloaded browser).
  APT_PACKAGES+=(chromium)
  # Independent validators of the signature formats: xmlsec1 (XAdES, ASiC-E), pdfsig and qpdf
  # (PAdES).
  APT_PACKAGES+=(xmlsec1 poppler-utils qpdf)
  # The Debian package's checks (scripts/check-package.sh).
  APT_PACKAGES+=(lintian)
fi
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The development Identity BB (tests/e2e/idp.mjs) and the browser-test tooling: npm packages
# pinned by the lock file.
if [ ! -d tests/e2e/node_modules ] || ! cmp -s tests/e2e/package-lock.json tests/e2e/node_modules/.esigd-lock; then
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix tests/e2e --no-audit --no-fund
  cp tests/e2e/package-lock.json tests/e2e/node_modules/.esigd-lock
fi

if [ "${1:-}" = "--with-test-tools" ]; then
  venv="${ESIGD_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/esigd-venv}"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  if ! cmp -s tests/requirements.txt "$venv/.esigd-requirements" 2>/dev/null; then
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q -r tests/requirements.txt
    cp tests/requirements.txt "$venv/.esigd-requirements"
  fi
  if ! command -v cargo-nextest >/dev/null 2>&1; then
    cargo install cargo-nextest --locked
  fi
  # cargo-deb builds the .deb (scripts/check-package.sh); 3.8.0 needs rustc 1.85.
  if ! cargo deb --version >/dev/null 2>&1; then
    cargo install cargo-deb --version 3.8.0 --locked
  fi
fi
