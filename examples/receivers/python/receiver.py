"""A webhook receiver in Python, verifying with the svix library (any Standard Webhooks
library works the same way).

    WEBHOOK_SECRET=whsec_... python receiver.py 8001

Prints one line per request: ``verified <webhook-id> <type>`` (answered 204) or
``rejected <webhook-id>`` (answered 400).
"""

from __future__ import annotations

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from svix.webhooks import Webhook, WebhookVerificationError

WEBHOOK = Webhook(os.environ["WEBHOOK_SECRET"])
MAX_BODY = 1 << 20


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - the http.server hook's name
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(min(length, MAX_BODY))
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            WEBHOOK.verify(body, headers)  # signature and timestamp; raises if either is wrong
        except WebhookVerificationError:
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
