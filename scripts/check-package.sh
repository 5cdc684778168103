#!/usr/bin/env bash
# Builds the Debian package of esigd and checks it:
#   1. `cargo deb --no-build`: the package is made from the dev-profile binary that
#      `cargo build --workspace --bins` makes (the profile CI builds; a release build would
#      compile everything once more). cargo-deb refuses dev profiles in the future ("dev profile
#      is not supported and will be a hard error"), so the dev binary is copied to where a
#      release build would put it, in a throw-away target directory, and packaged from there.
#      `--strip` strips it. The package is checked here, not shipped; a release is
#      `cargo deb -p esigd`.
#   2. `dpkg-deb --info` / `--contents`: the control fields and every expected file, one by one.
#   3. lintian: no error and no warning. The warnings accepted on purpose are overridden, each
#      with its reason, in packaging/debian/esigd.lintian-overrides (shipped in the package as
#      /usr/share/lintian/overrides/esigd):
#        - description-synopsis-starts-with-article: the synopsis is the crate's `description`
#          in appliance/Cargo.toml;
#        - initial-upload-closes-no-bugs: not a Debian upload, no Debian bug to close;
#        - no-manual-page: `esigd --help` and /usr/share/doc/esigd/README.md document the CLI.
#   4. the unit as installed: `systemd-analyze security --offline=true` must report an overall
#      exposure of at most 2.0, and `systemd-analyze verify` must pass. verify wants the
#      ExecStart= binaries to exist, and /usr/bin/esigd is not installed on the build machine:
#      the unit is verified as a copy whose /usr/bin/esigd is replaced by the binary extracted
#      from the package (the only difference from the packaged unit, checked with diff).
#   5. sysusers.d and tmpfiles.d: applied to a throw-away root (--root), which must end with
#      the user esigd, /etc/esigd 0750 root:esigd (esigd.toml 0640) and /var/backups/esigd 0700
#      esigd:esigd.
# A missing tool fails the script with an install hint; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/esigd-target}"

fail() {
  echo "check-package: FAIL: $*" >&2
  exit 1
}
need() {
  command -v "$1" >/dev/null 2>&1 || fail "$1 not found: $2"
}
need cargo-deb "scripts/install-deps.sh --with-test-tools (cargo install cargo-deb --locked)"
need dpkg-deb "apt-get install dpkg"
need lintian "apt-get install lintian (or scripts/install-deps.sh --with-test-tools)"
need systemd-analyze "apt-get install systemd"
need systemd-sysusers "apt-get install systemd"
need systemd-tmpfiles "apt-get install systemd"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== cargo build --workspace --bins (dev profile; nothing to do when the tests built it)"
eval "$(scripts/rocksdb-lib.sh)"
cargo build --workspace --bins --locked
echo "== cargo deb --no-build (the dev binary in place of a release one)"
mkdir -p "$tmp/target/release"
cp "$CARGO_TARGET_DIR/debug/esigd" "$tmp/target/release/esigd"
CARGO_TARGET_DIR="$tmp/target" cargo deb --no-build --strip -p esigd --fast --output "$tmp/"
deb=$(ls "$tmp"/esigd_*.deb)
echo "$deb"

echo "== dpkg-deb --info"
info=$(dpkg-deb --info "$deb")
echo "$info"
for want in \
  "Package: esigd" \
  "Architecture: amd64" \
  "Recommends: softhsm2" \
  "Suggests: opensc"; do
  grep -qxF " $want" <<<"$info" || fail "dpkg-deb --info: no line \"$want\""
done
depends=$(dpkg-deb --field "$deb" Depends)
for want in "libc6 (>= " "adduser"; do
  grep -qF "$want" <<<"$depends" || fail "Depends: \"$depends\" lacks \"$want\""
done
for script in postinst prerm postrm conffiles; do
  grep -qE "^ +[0-9]+ bytes, +[0-9]+ lines +\*? +$script( |$)" <<<"$info" ||
    fail "dpkg-deb --info: no $script in the control archive"
done
dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./conffiles | grep -qx /etc/esigd/esigd.toml ||
  fail "/etc/esigd/esigd.toml is not a conffile"

echo "== dpkg-deb --contents"
contents=$(dpkg-deb --contents "$deb")
echo "$contents"
# "mode path" of each expected file, owned by root (0/0).
while read -r mode path; do
  grep -qE "^$mode 0/0 +[0-9]+ [0-9-]+ [0-9:]+ \./${path#/}$" <<<"$contents" ||
    fail "dpkg-deb --contents: no $mode 0/0 (root) $path"
done <<'EOF'
-rwxr-xr-x /usr/bin/esigd
-rw-r--r-- /usr/lib/systemd/system/esigd.service
-rw-r--r-- /usr/lib/sysusers.d/esigd.conf
-rw-r--r-- /usr/lib/tmpfiles.d/esigd.conf
-rw-r--r-- /etc/esigd/esigd.toml
-rw-r--r-- /usr/share/doc/esigd/README.md
-rw-r--r-- /usr/share/doc/esigd/copyright
-rw-r--r-- /usr/share/doc/esigd/changelog.Debian.gz
-rw-r--r-- /usr/share/lintian/overrides/esigd
EOF
root="$tmp/root"
dpkg-deb -x "$deb" "$root"
cmp -s "$root/usr/lib/systemd/system/esigd.service" systemd/esigd.service ||
  fail "the packaged unit differs from systemd/esigd.service"
cmp -s "$root/etc/esigd/esigd.toml" config/esigd.example.toml ||
  fail "the packaged /etc/esigd/esigd.toml differs from config/esigd.example.toml"
"$root/usr/bin/esigd" --help >/dev/null || fail "the packaged esigd does not run"

echo "== lintian (errors and warnings fail; accepted ones are in the package's overrides)"
# Lintian warns that it runs as root (CI does); that line is not a finding.
lintian --fail-on error,warning --tag-display-limit 0 "$deb" ||
  fail "lintian found errors or warnings (above)"

echo "== systemd-analyze security --offline=true (overall exposure <= 2.0)"
unit="$root/usr/lib/systemd/system/esigd.service"
security=$(systemd-analyze security --offline=true --no-pager "$unit" 2>&1) ||
  fail "systemd-analyze security: $security"
exposure=$(sed -n 's/.*Overall exposure level for esigd\.service: \([0-9.]*\).*/\1/p' <<<"$security")
[ -n "$exposure" ] || fail "no overall exposure level in: $security"
echo "overall exposure: $exposure"
awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }' ||
  fail "exposure $exposure > 2.0: $(grep '✗' <<<"$security")"

echo "== systemd-analyze verify (ExecStart= pointing at the packaged binary)"
mkdir "$tmp/verify"
sed "s|/usr/bin/esigd|$root/usr/bin/esigd|g" "$unit" >"$tmp/verify/esigd.service"
# Only the binary's path may differ.
diff <(sed "s|$root||g" "$tmp/verify/esigd.service") "$unit" >/dev/null ||
  fail "the verified copy differs from the unit in more than the binary's path"
verify=$(systemd-analyze verify "$tmp/verify/esigd.service" 2>&1) || fail "systemd-analyze verify: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify printed: $verify"

echo "== sysusers.d and tmpfiles.d in a throw-away root"
mkdir -p "$tmp/sys/etc"
systemd-sysusers --root="$tmp/sys" "$root/usr/lib/sysusers.d/esigd.conf"
grep -q '^esigd:x:[0-9]*:[0-9]*:.*:/var/lib/esigd:' "$tmp/sys/etc/passwd" ||
  fail "systemd-sysusers made no user esigd with home /var/lib/esigd"
mkdir -p "$tmp/sys/etc/esigd"
cp "$root/etc/esigd/esigd.toml" "$tmp/sys/etc/esigd/"
systemd-tmpfiles --create --root="$tmp/sys" "$root/usr/lib/tmpfiles.d/esigd.conf"
gid=$(awk -F: '$1 == "esigd" { print $3 }' "$tmp/sys/etc/group")
[ "$(stat -c '%a %u %g' "$tmp/sys/etc/esigd")" = "750 0 $gid" ] ||
  fail "/etc/esigd is $(stat -c '%a %u %g' "$tmp/sys/etc/esigd"), want 750 0 $gid"
[ "$(stat -c '%a %u %g' "$tmp/sys/etc/esigd/esigd.toml")" = "640 0 $gid" ] ||
  fail "/etc/esigd/esigd.toml is $(stat -c '%a %u %g' "$tmp/sys/etc/esigd/esigd.toml"), want 640 0 $gid"
uid=$(awk -F: '$1 == "esigd" { print $3 }' "$tmp/sys/etc/passwd")
[ "$(stat -c '%a %u %g' "$tmp/sys/var/backups/esigd")" = "700 $uid $gid" ] ||
  fail "/var/backups/esigd is $(stat -c '%a %u %g' "$tmp/sys/var/backups/esigd"), want 700 $uid $gid"

echo "check-package: ok ($(basename "$deb"), exposure $exposure)"
