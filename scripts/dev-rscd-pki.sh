#!/usr/bin/env bash
# Development PKI of the reference Remote SCD service (esigd-remote-scd), made once with openssl:
#
#   scripts/dev-rscd-pki.sh DIR
#
# DIR/rscd-ca.pem       dev CA (EC P-256, 10 years): trust it for the service's TLS certificate
#                       (esigd's connector, `esigd-device run --service-ca`) and give it to the
#                       service as `--rp-client-ca` (it also issued esigd's client certificate)
# DIR/rscd-ca.key       its key (kept for issuing more certificates)
# DIR/rscd-server.pem   server certificate for 127.0.0.1 and localhost (SAN IP + DNS; 2 years),
# DIR/rscd-server.key   for both listeners (`--cert`, `--key`)
# DIR/esigd-rp.pem      client certificate of esigd as relying party (clientAuth; 2 years)
# DIR/esigd-rp.key
#
# Files that exist are kept (run it again: nothing changes). Keys are mode 0600.
set -euo pipefail
dir=${1:?usage: $0 DIR}
mkdir -p "$dir"
cd "$dir"
umask 077

ec_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

if [ ! -f rscd-ca.pem ] || [ ! -f rscd-ca.key ]; then
  ec_key rscd-ca.key
  openssl req -x509 -new -key rscd-ca.key -sha256 -days 3650 -subj "/CN=esigd Remote SCD dev CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" \
    -out rscd-ca.pem
  # A new CA invalidates what the old one issued.
  rm -f rscd-server.pem rscd-server.key esigd-rp.pem esigd-rp.key
fi

# issue NAME SUBJECT EXTENSIONS
issue() {
  local name=$1 subject=$2 ext=$3
  [ -f "$name.pem" ] && [ -f "$name.key" ] && return 0
  ec_key "$name.key"
  openssl req -new -key "$name.key" -subj "$subject" -out "$name.csr"
  printf '%b' "$ext" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA rscd-ca.pem -CAkey rscd-ca.key -CAcreateserial \
    -sha256 -days 730 -extfile "$name.ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

issue rscd-server "/CN=esigd Remote SCD (dev)" \
  "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nauthorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
issue esigd-rp "/CN=esigd (relying party, dev)" \
  "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nauthorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
rm -f rscd-ca.srl
chmod 0644 rscd-ca.pem rscd-server.pem esigd-rp.pem
echo "dev Remote SCD PKI in $(pwd): rscd-ca.pem rscd-server.pem rscd-server.key esigd-rp.pem esigd-rp.key"
