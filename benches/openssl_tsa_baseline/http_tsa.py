#!/usr/bin/env python3
"""Baseline RFC 3161 TSA for benches/tsa_http.rs: one `openssl ts -reply` process per HTTP request.

Usage: http_tsa.py DIR [PORT]   (PORT 0 or absent: any free port)

Creates, if missing, an EC P-256 test CA and TSA (software keys, EKU timeStamping critical) and
`tsa.cnf` in DIR, then serves POST (any path) with Content-Type application/timestamp-query on
127.0.0.1 (HTTP/1.1 keep-alive, one thread per connection) and prints `listening PORT` when ready.
Each request gets its own serial file (random 48-bit start): `openssl ts -reply` does not lock it.
Python standard library only.
"""
import os
import secrets
import subprocess
import sys
import tempfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

POLICY = "1.3.6.1.4.1.99999.1.1"
MAX_BODY = 64 * 1024

TSA_CNF = """\
[ tsa ]
default_tsa = tsa_config1

[ tsa_config1 ]
dir = {dir}
serial = $ENV::TSA_SERIAL
crypto_device = builtin
signer_cert = $dir/tsa.pem
certs = $dir/tsa.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = {policy}
digests = sha256, sha384, sha512
accuracy = secs:1
clock_precision_digits = 3
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""

EXT_CNF = """\
[ v3_tsa ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,nonRepudiation
extendedKeyUsage = critical,timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def run(*args, cwd):
    subprocess.run(args, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_pki(d):
    if os.path.exists(os.path.join(d, "tsa.cnf")):
        return
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write(EXT_CNF)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run("openssl", "req", "-x509", "-new", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "30",
        "-subj", "/CN=Baseline Root CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    run("openssl", "req", "-new", *ec, "-keyout", "tsa.key", "-out", "tsa.csr", "-subj", "/CN=Baseline TSA", cwd=d)
    run("openssl", "x509", "-req", "-in", "tsa.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "tsa.pem", "-days", "30", "-extfile", "ext.cnf", "-extensions", "v3_tsa", cwd=d)
    with open(os.path.join(d, "tsa.cnf"), "w") as f:
        f.write(TSA_CNF.format(dir=d, policy=POLICY))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    dir = None

    def log_message(self, *args):
        pass

    def send(self, code, ctype, body):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length) if 0 < length <= MAX_BODY else b""
        if not self.headers.get("Content-Type", "").startswith("application/timestamp-query"):
            return self.send(415, "text/plain", b"Content-Type must be application/timestamp-query\n")
        if not body:
            return self.send(400, "text/plain", b"empty or oversized body\n")
        with tempfile.TemporaryDirectory() as t:
            q, r, s = (os.path.join(t, n) for n in ("q.tsq", "r.tsr", "serial"))
            with open(q, "wb") as f:
                f.write(body)
            with open(s, "w") as f:
                f.write("%012x\n" % secrets.randbits(48))
            env = dict(os.environ, TSA_SERIAL=s)
            p = subprocess.run(["openssl", "ts", "-reply", "-config", os.path.join(self.dir, "tsa.cnf"),
                                "-queryfile", q, "-out", r], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
            if p.returncode != 0:
                return self.send(500, "text/plain", p.stderr)
            with open(r, "rb") as f:
                self.send(200, "application/timestamp-reply", f.read())


def main():
    d = os.path.abspath(sys.argv[1])
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    os.makedirs(d, exist_ok=True)
    make_pki(d)
    Handler.dir = d
    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    srv.daemon_threads = True
    print("listening", srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
