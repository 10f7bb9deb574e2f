"""Signed URLs for files: a download anyone holding the URL may make until it expires, and the
upload URL a job waiting for its input hands to its client.

A token is its claims (JSON, base64url) and an HMAC over them with a key derived from
``JOBWIRE_SECRET_KEY`` for this use alone; a token minted under an older key (the list's later
entries) still opens. Tokens are minted afresh for each read of a job or a file, so an expired
URL costs its holder one more GET, as Knowhere's clients expect.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import orjson

PURPOSE = b"jobwire file urls v1"


class FileUrls:
    def __init__(self, secret_keys: str, ttl_s: int, clock: Callable[[], float] = time.time) -> None:
        keys = [key.strip() for key in secret_keys.split(",") if key.strip()]
        self._keys = [hmac.new(key.encode(), PURPOSE, hashlib.sha256).digest() for key in keys]
        self.ttl_s = ttl_s
        self._clock = clock

    def mint(self, kind: str, **claims: Any) -> tuple[str, float]:
        """A token of ``kind`` ("download", "upload") carrying ``claims``, and its expiry (unix s)."""
        expires = float(int(self._clock()) + self.ttl_s)
        body = base64.urlsafe_b64encode(orjson.dumps({**claims, "kind": kind, "exp": expires})).rstrip(b"=")
        return f"{body.decode()}.{self._sign(self._keys[0], body)}", expires

    def open(self, token: str, kind: str) -> dict[str, Any] | None:
        """The claims of a valid, unexpired token of ``kind``; None otherwise."""
        body, _, signature = token.partition(".")
        if not body or not signature or not body.isascii() or not signature.isascii():
            return None
        raw = body.encode()
        if not any(hmac.compare_digest(self._sign(key, raw), signature) for key in self._keys):
            return None
        try:
            claims = orjson.loads(base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4)))
        except (binascii.Error, ValueError):
            return None
        if not isinstance(claims, dict) or claims.get("kind") != kind:
            return None
        expires = claims.get("exp")
        if not isinstance(expires, float | int) or expires <= self._clock():
            return None
        return claims

    @staticmethod
    def _sign(key: bytes, body: bytes) -> str:
        return base64.urlsafe_b64encode(hmac.new(key, body, hashlib.sha256).digest()).rstrip(b"=").decode()
