#!/usr/bin/env python3
"""The receivers of esigd's notifications for appliance/tests/notifications.rs.

  notify_receivers.py --http-port P --smtp-port S --jwks-url URL

* an SMTP server (aiosmtpd) on 127.0.0.1:S that keeps every message (from, to, subject, body);
* on 127.0.0.1:P, HTTP:
  - POST /hook: an e-Service's webhook receiver. It verifies `X-Esigd-Signature` (a detached
    compact JWS, RFC 7515 appendix F) over the body with jwcrypto and the key of esigd's JWKS
    (fetched from URL, again when the `kid` is unknown), and records the `Idempotency-Key`. It
    answers 200 for a valid signature (a repeat of a key it has seen is acknowledged and not
    processed twice) and 401 otherwise;
  - POST /sms: an SMS gateway; records the body and the `Idempotency-Key`;
  - GET /state: everything received, as JSON.

Prints one line `ready` when both listen. Needs aiosmtpd and jwcrypto (tests/requirements.txt).
"""

import argparse
import base64
import email
import email.policy
import json
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller
from jwcrypto import jwk, jws

LOCK = threading.Lock()
STATE = {"webhook": [], "sms": [], "mail": []}
SEEN = set()


class Jwks:
    def __init__(self, url):
        self.url = url
        self.keys = None

    def fetch(self):
        with urllib.request.urlopen(self.url, timeout=5) as r:
            self.keys = jwk.JWKSet.from_json(r.read().decode())

    def key(self, kid):
        if self.keys is None or self.keys.get_key(kid) is None:
            self.fetch()
        return self.keys.get_key(kid)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def verify(jwks, detached, body):
    """The protected header of a valid detached JWS over body, or raises."""
    protected, empty, signature = detached.split(".")
    if empty:
        raise ValueError("the payload part is not empty: not a detached JWS")
    header = json.loads(base64.urlsafe_b64decode(protected + "=" * (-len(protected) % 4)))
    if header.get("alg") != "ES256":
        raise ValueError(f"alg {header.get('alg')!r}")
    key = jwks.key(header.get("kid"))
    if key is None:
        raise ValueError("unknown kid")
    token = jws.JWS()
    token.deserialize(f"{protected}.{b64url(body)}.{signature}")
    token.verify(key, alg="ES256")
    if token.payload != body:
        raise ValueError("payload differs")
    return header


class Http(BaseHTTPRequestHandler):
    jwks = None

    def log_message(self, fmt, *args):
        if self.command != "GET":
            sys.stderr.write("receivers: " + (fmt % args) + "\n")

    def reply(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path != "/state":
            return self.reply(404, {"error": "no such route"})
        with LOCK:
            return self.reply(200, STATE)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        key = self.headers.get("Idempotency-Key")
        if self.path == "/hook":
            entry = {"key": key, "verified": False}
            try:
                header = verify(self.jwks, self.headers.get("X-Esigd-Signature", ""), body)
                entry["verified"] = True
                entry["kid"] = header.get("kid")
                entry["typ"] = header.get("typ")
                entry["event"] = json.loads(body)
            except Exception as e:  # recorded, answered 401
                entry["error"] = f"{type(e).__name__}: {e}"
            with LOCK:
                entry["repeat"] = key in SEEN
                if entry["verified"]:
                    SEEN.add(key)
                STATE["webhook"].append(entry)
            return self.reply(200 if entry["verified"] else 401, {"ok": entry["verified"]})
        if self.path == "/sms":
            try:
                message = json.loads(body)
            except ValueError as e:
                return self.reply(400, {"error": str(e)})
            with LOCK:
                STATE["sms"].append({"key": key, "body": message,
                                     "content_type": self.headers.get("Content-Type")})
            return self.reply(200, {"queued": True})
        return self.reply(404, {"error": "no such route"})


class Mailbox:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        with LOCK:
            STATE["mail"].append({
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "from": str(msg["From"]),
                "to": str(msg["To"]),
                "subject": str(msg["Subject"]),
                "body": body.get_content() if body is not None else "",
            })
        return "250 Message accepted for delivery"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--smtp-port", type=int, required=True)
    p.add_argument("--jwks-url", required=True)
    a = p.parse_args()
    Http.jwks = Jwks(a.jwks_url)
    smtp = Controller(Mailbox(), hostname="127.0.0.1", port=a.smtp_port)
    smtp.start()
    http = ThreadingHTTPServer(("127.0.0.1", a.http_port), Http)
    print("ready", flush=True)
    try:
        http.serve_forever()
    finally:
        smtp.stop()


if __name__ == "__main__":
    main()
