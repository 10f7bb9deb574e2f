"""A webhook receiver in Python, verifying with the svix library (any Standard Webhooks
library works the same way); for an endpoint signed with ed25519, give it the endpoint's
public key instead, and it verifies the ``v1a`` signature with ``cryptography``.

    WEBHOOK_SECRET=whsec_... python receiver.py 8001
    WEBHOOK_SECRET=whpk_... python receiver.py 8001

Prints one line per request: ``verified <webhook-id> <type>`` (answered 204) or
``rejected <webhook-id>`` (answered 400).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from svix.webhooks import Webhook, WebhookVerificationError

SECRET = os.environ["WEBHOOK_SECRET"]
MAX_BODY = 1 << 20
TOLERANCE_S = 300


class PublicKeyWebhook:
    """``v1a`` as the Standard Webhooks spec defines it: an ed25519 signature of
    ``{webhook-id}.{webhook-timestamp}.{body}``, checked with the ``whpk_`` public key."""

    def __init__(self, public_key: str) -> None:
        self.key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key.removeprefix("whpk_")))

    def verify(self, body: bytes, headers: dict[str, str]) -> None:
        if abs(time.time() - int(headers["webhook-timestamp"])) > TOLERANCE_S:
            raise WebhookVerificationError("timestamp too far from now")
        signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
        for entry in headers["webhook-signature"].split(" "):
            version, _, signature = entry.partition(",")
            try:
                if version == "v1a":
                    self.key.verify(base64.b64decode(signature), signed)
                    return
            except (InvalidSignature, ValueError):
                continue
        raise WebhookVerificationError("no v1a signature verifies")


WEBHOOK = PublicKeyWebhook(SECRET) if SECRET.startswith("whpk_") else Webhook(SECRET)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - the http.server hook's name
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(min(length, MAX_BODY))
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            WEBHOOK.verify(body, headers)  # signature and timestamp; raises if either is wrong
        except (WebhookVerificationError, KeyError, ValueError):
            print(f"rejected {headers.get('webhook-id')}", flush=True)
            self.send_response(400)
        else:
            # Dedupe on webhook-id (retries and replays repeat it), then process quickly.
            print(f"verified {headers['webhook-id']} {json.loads(body)['type']}", flush=True)
            self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
