#!/usr/bin/env bash
# Builds the WebAssembly PAdES client (client-wasm/, package esig-wasm) and turns it into an ES
# module with wasm-bindgen: $ESIG_WASM_OUT (default web/assets/pdf/) gets esig_wasm.js and
# esig_wasm_bg.wasm (generated, not committed: .gitignore), which web/assets/esig-pdf.js loads and
# the example e-Service serves at /pdf/.
#
# Installs what is missing: the Rust target wasm32-unknown-unknown (rustup) and wasm-bindgen-cli of
# exactly the version Cargo.toml pins (cargo install, from crates.io; a few minutes once). Fails
# with a message when either cannot be installed; it never skips the build.
#
#   scripts/build-wasm.sh            # CARGO_TARGET_DIR defaults to ~/.cache/esigd-wasm-target
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=wasm32-unknown-unknown
OUT="${ESIG_WASM_OUT:-web/assets/pdf}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/esigd-wasm-target}"

die() {
  echo "build-wasm: $*" >&2
  exit 1
}

# The pinned version: `wasm-bindgen = "=X.Y.Z"` in the root Cargo.toml. The CLI must match the
# crate exactly, or it refuses the module ("rust Wasm file schema version").
version="$(sed -n 's/^wasm-bindgen = "=\([0-9][0-9.]*\)"$/\1/p' Cargo.toml)"
[ -n "$version" ] || die 'no pinned `wasm-bindgen = "=X.Y.Z"` in the root Cargo.toml [workspace.dependencies]'

# 1. The Rust target.
sysroot="$(rustc --print sysroot)" || die "rustc is not installed"
if [ ! -d "$sysroot/lib/rustlib/$TARGET/lib" ]; then
  command -v rustup >/dev/null 2>&1 ||
    die "the Rust target $TARGET is not installed and there is no rustup to install it; install the Rust standard library for $TARGET"
  echo "build-wasm: rustup target add $TARGET"
  rustup target add "$TARGET" ||
    die "could not install the Rust target $TARGET (rustup target add $TARGET failed; offline?). The PAdES WebAssembly client cannot be built without it."
  [ -d "$sysroot/lib/rustlib/$TARGET/lib" ] ||
    die "rustup target add $TARGET succeeded but $sysroot/lib/rustlib/$TARGET is missing (another toolchain selected?)"
fi

# 2. wasm-bindgen-cli of the pinned version (on PATH, or in ~/.cargo/bin where cargo installs it).
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
if [ "$(wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen $version" ]; then
  echo "build-wasm: cargo install wasm-bindgen-cli --version $version --locked"
  if ! cargo install wasm-bindgen-cli --version "$version" --locked --force; then
    # The CLI's own lock file can name a dependency version the registry we reach does not have
    # (0.2.130 locks webpki-roots 1.0.11): then resolve its dependencies anew within semver.
    echo "build-wasm: --locked failed; cargo install wasm-bindgen-cli --version $version (dependencies resolved anew)"
    cargo install wasm-bindgen-cli --version "$version" --force ||
      die "could not install wasm-bindgen-cli $version (cargo install failed; offline?)"
  fi
  [ "$(wasm-bindgen --version 2>/dev/null || true)" = "wasm-bindgen $version" ] ||
    die "wasm-bindgen on PATH is $(wasm-bindgen --version 2>&1 || echo missing), not $version"
fi

# 3. Build, then generate the ES module (--target web: `init()` fetches the .wasm next to the .js
# in a browser; Node passes the bytes, see web/assets/esig-pdf.js).
echo "build-wasm: cargo build -p esig-wasm --target $TARGET --release"
cargo build -p esig-wasm --target "$TARGET" --release --locked
wasm="$CARGO_TARGET_DIR/$TARGET/release/esig_wasm.wasm"
[ -f "$wasm" ] || die "cargo did not produce $wasm"
mkdir -p "$OUT"
# The name section (function names for stack traces, ~80 kB) is left out: browsers download this.
wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section --out-dir "$OUT" "$wasm"
for f in esig_wasm.js esig_wasm_bg.wasm; do
  [ -s "$OUT/$f" ] || die "wasm-bindgen did not write $OUT/$f"
done
size="$(stat -c %s "$OUT/esig_wasm_bg.wasm")"
gz="$(gzip -9 -c "$OUT/esig_wasm_bg.wasm" | wc -c)"
echo "build-wasm: $OUT/esig_wasm_bg.wasm $size bytes ($gz gzipped), $OUT/esig_wasm.js $(stat -c %s "$OUT/esig_wasm.js") bytes"
