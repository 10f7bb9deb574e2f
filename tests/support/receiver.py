"""A webhook receiver on loopback that verifies every request as a customer's server would
(``v1`` with the svix library, ``v1a`` with ``cryptography`` exactly as the Standard Webhooks
spec defines it), and can be told to fail, rate-limit or answer 410."""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from svix.webhooks import Webhook, WebhookVerificationError

from jobwire.devtools.broker import free_port

Plan = Callable[[str, int], tuple[int, dict[str, str]]]  # (webhook-id, attempt n) -> (status, headers)


@dataclass
class Received:
    webhook_id: str
    type: str
    data: dict[str, Any]
    at: float
    attempt: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def verifies_v1a(public_key: str, body: bytes, headers: dict[str, str], tolerance_s: float = 300) -> bool:
    """A ``v1a`` (ed25519) signature checked as the Standard Webhooks spec defines it: one of the
    space-separated ``webhook-signature`` entries is ``v1a,`` and the base64 ed25519 signature
    of ``{webhook-id}.{webhook-timestamp}.{body}`` by the ``whpk_`` key; the timestamp recent."""
    if abs(time.time() - int(headers["webhook-timestamp"])) > tolerance_s:
        return False
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key.removeprefix("whpk_")))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    for entry in headers["webhook-signature"].split(" "):
        version, _, signature = entry.partition(",")
        if version != "v1a":
            continue
        try:
            key.verify(base64.b64decode(signature), signed)
        except InvalidSignature:
            continue
        return True
    return False


@dataclass
class Receiver:
    secrets: list[str] = field(default_factory=list)
    plan: Plan = lambda webhook_id, n: (200, {})
    received: list[Received] = field(default_factory=list)  # verified requests that got a 2xx
    seen: dict[str, list[float]] = field(default_factory=dict)  # every verified request by webhook-id
    rejected: int = 0  # requests whose signature did not verify
    delay_s: float = 0.0  # how long each answer takes: a slow receiver

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            verified = any(self._verifies(s, body, headers) for s in self.secrets)
        except Exception:
            verified = False
        if not verified:
            self.rejected += 1
            return web.Response(status=400, text="signature did not verify")
        webhook_id = headers["webhook-id"]
        times = self.seen.setdefault(webhook_id, [])
        times.append(time.monotonic())
        status, extra = self.plan(webhook_id, len(times))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if 200 <= status < 300:
            document = orjson.loads(body)
            self.received.append(Received(webhook_id, document["type"], document["data"], time.monotonic(), len(times),
                                          body, headers))
        return web.Response(status=status, headers=extra, text="ok" if status < 300 else "no")

    @staticmethod
    def _verifies(secret: str, body: bytes, headers: dict[str, str]) -> bool:
        if secret.startswith("whpk_"):
            return verifies_v1a(secret, body, headers)
        try:
            Webhook(secret).verify(body, headers)
        except WebhookVerificationError:
            return False
        return True

    async def wait_for(self, condition: Callable[[], bool], timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver condition not met in {timeout_s}s; received={len(self.received)}")
            await asyncio.sleep(0.05)


class ReceiverServer:
    def __init__(self, receiver: Receiver, ssl_context: ssl.SSLContext | None = None) -> None:
        """``ssl_context``: serve https with it (a receiver that may require a client certificate)."""
        self.receiver = receiver
        self.port = free_port()
        self._ssl = ssl_context
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self._ssl else 'http'}://127.0.0.1:{self.port}/hooks"

    async def __aenter__(self) -> ReceiverServer:
        app = web.Application()
        app.router.add_post("/hooks", self.receiver.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self._ssl).start()
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()
