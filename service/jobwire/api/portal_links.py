"""One-time portal links, as Svix's App Portal magic links: a tenant's server asks for a link
(``POST /v1/webhooks/portal-link``) and hands it to a person, who opens the webhook portal
signed in without ever seeing an API key.

A link is a token signed with a key derived from ``JOBWIRE_SECRET_KEY`` (tenant, expiry and a
nonce): valid for minutes, and exchanged once (``GET /portal/login``) for a session cookie that
is HttpOnly, SameSite=Strict and short-lived. A session manages webhooks only: job routes and
the minting of further links refuse it.

The nonces of redeemed links are remembered by the replica that redeemed them until the link
would have expired anyway; behind several replicas, give the portal sticky sessions or a
single replica, or a link could be redeemed once per replica within its minutes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from typing import Any

import orjson

from jobwire.errors import JobwireError

COOKIE = "jobwire_portal"
LINK_TTL_S = 600.0
SESSION_TTL_S = 3600.0
#: Redeemed nonces kept at once; minting is behind an API key (and its rate limit).
MAX_REDEEMED = 100_000


class LinkRefused(JobwireError):
    """The link is malformed, forged, expired or already used (the reason says which)."""


class PortalLinks:
    def __init__(self, secret_key: str, clock: Callable[[], float] = time.time) -> None:
        # A key of its own: a token can never be mistaken for anything else the secret key makes.
        self._key = hmac.new(secret_key.encode(), b"jobwire portal links v1", hashlib.sha256).digest()
        self._clock = clock
        self._redeemed: dict[str, float] = {}

    def mint(self, tenant: str) -> tuple[str, float]:
        """A one-time link token for ``tenant`` and when it expires (unix seconds)."""
        expires = self._clock() + LINK_TTL_S
        return self._sign({"kind": "link", "tenant": tenant, "exp": expires, "nonce": secrets.token_urlsafe(16)}), expires

    def redeem(self, token: str) -> tuple[str, str]:
        """Exchange a link token, once, for ``(tenant, session token)``."""
        claims = self._open(token, "link")
        if claims is None:
            raise LinkRefused("the link is not valid or has expired")
        now = self._clock()
        self._redeemed = {nonce: until for nonce, until in self._redeemed.items() if until > now}
        if claims["nonce"] in self._redeemed:
            raise LinkRefused("the link was used already; ask for a new one")
        if len(self._redeemed) >= MAX_REDEEMED:
            raise LinkRefused("too many links redeemed recently; try again in a few minutes")
        self._redeemed[claims["nonce"]] = claims["exp"]
        session = self._sign({"kind": "session", "tenant": claims["tenant"], "exp": now + SESSION_TTL_S})
        return claims["tenant"], session

    def session_tenant(self, session: str) -> str | None:
        """The tenant a session cookie belongs to, or None if it is forged or expired."""
        claims = self._open(session, "session")
        return None if claims is None else str(claims["tenant"])

    def _sign(self, claims: dict[str, Any]) -> str:
        body = _b64(orjson.dumps(claims))
        return f"{body}.{_b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())}"

    def _open(self, token: str, kind: str) -> dict[str, Any] | None:
        body, _, mac = token.partition(".")
        expected = _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
        if not mac or not hmac.compare_digest(mac.encode(), expected.encode()):
            return None
        try:
            claims = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (ValueError, orjson.JSONDecodeError):
            return None
        if not isinstance(claims, dict) or claims.get("kind") != kind or not isinstance(claims.get("exp"), float | int):
            return None
        return claims if claims["exp"] > self._clock() else None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
