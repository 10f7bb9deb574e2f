"""One-time portal links, as Svix's App Portal magic links: a tenant's server asks for a link
(``POST /v1/webhooks/portal-link``) and hands it to a person, who opens the webhook portal
signed in without ever seeing an API key.

A link is a token signed with a key derived from ``JOBWIRE_SECRET_KEY`` (tenant, expiry, a
nonce and a fingerprint of the tenant's API keys): valid for minutes, shown as a page whose
button POSTs it (``GET /portal/login``: a mail client's link scanner that fetches it spends
nothing), and exchanged once (``POST /portal/login``) for a session cookie that is HttpOnly,
SameSite=Strict and short-lived. A session manages webhooks only: job routes and the minting of
further links refuse it. Links and sessions die with the API keys their tenant had when the
link was minted: removing or replacing a tenant's key ends its portal sessions.

The nonces of redeemed links are remembered per tenant (a bounded number each, so one tenant
cannot lock others out) by the replica that redeemed them, until the link would have expired
anyway; behind several replicas, give the portal sticky sessions or a single replica, or a
link could be redeemed once per replica within its minutes.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from jobwire.errors import JobwireError

COOKIE = "jobwire_portal"
LINK_TTL_S = 600.0
SESSION_TTL_S = 3600.0
#: Redeemed nonces kept at once per tenant (links live 10 minutes; minting is behind an API key).
MAX_REDEEMED_PER_TENANT = 1000


class LinkRefused(JobwireError):
    """The link is malformed, forged, expired or already used (the reason says which)."""


def keys_fingerprint(keys: Iterable[str]) -> str:
    """Names a set of API keys without revealing them: a session carries it, and dies when the
    tenant's keys change."""
    return hashlib.sha256("\0".join(sorted(keys)).encode()).hexdigest()[:16]


class PortalLinks:
    def __init__(self, secret_key: str, clock: Callable[[], float] = time.time,
                 tenant_keys: Callable[[str], Iterable[str]] = lambda tenant: ()) -> None:
        # A key of its own: a token can never be mistaken for anything else the secret key makes.
        self._key = hmac.new(secret_key.encode(), b"jobwire portal links v1", hashlib.sha256).digest()
        self._clock = clock
        self._tenant_keys = tenant_keys
        self._redeemed: dict[str, dict[str, float]] = {}  # tenant -> nonce -> until
        self._expiring: list[tuple[float, str, str]] = []  # heap of (until, tenant, nonce)

    def mint(self, tenant: str) -> tuple[str, float]:
        """A one-time link token for ``tenant`` and when it expires (unix seconds)."""
        expires = self._clock() + LINK_TTL_S
        return self._sign({"kind": "link", "tenant": tenant, "exp": expires, "nonce": secrets.token_urlsafe(16),
                           "keys": self._fingerprint(tenant)}), expires

    def redeem(self, token: str) -> tuple[str, str]:
        """Exchange a link token, once, for ``(tenant, session token)``."""
        claims = self._open(token, "link")
        if claims is None or not isinstance(claims.get("nonce"), str):
            raise LinkRefused("the link is not valid or has expired")
        now = self._clock()
        self._forget_expired(now)
        tenant, nonce = str(claims["tenant"]), claims["nonce"]
        redeemed = self._redeemed.setdefault(tenant, {})
        if nonce in redeemed:
            raise LinkRefused("the link was used already; ask for a new one")
        if len(redeemed) >= MAX_REDEEMED_PER_TENANT:
            raise LinkRefused("too many portal links redeemed recently for this account; try again in a few minutes")
        redeemed[nonce] = claims["exp"]
        heapq.heappush(self._expiring, (claims["exp"], tenant, nonce))
        session = self._sign({"kind": "session", "tenant": tenant, "exp": now + SESSION_TTL_S,
                              "keys": claims["keys"]})
        return tenant, session

    def session_tenant(self, session: str) -> str | None:
        """The tenant a session cookie belongs to, or None if it is forged, expired, or its
        tenant's API keys changed since."""
        claims = self._open(session, "session")
        return None if claims is None else str(claims["tenant"])

    def _fingerprint(self, tenant: str) -> str:
        return keys_fingerprint(self._tenant_keys(tenant))

    def _forget_expired(self, now: float) -> None:
        while self._expiring and self._expiring[0][0] <= now:
            _, tenant, nonce = heapq.heappop(self._expiring)
            redeemed = self._redeemed.get(tenant)
            if redeemed is not None:
                redeemed.pop(nonce, None)
                if not redeemed:
                    del self._redeemed[tenant]

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
        if claims["exp"] <= self._clock():
            return None
        # Minted under the tenant's API keys as they are now: a removed or replaced key ends it.
        if not isinstance(claims.get("tenant"), str) or claims.get("keys") != self._fingerprint(claims["tenant"]):
            return None
        return claims


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
