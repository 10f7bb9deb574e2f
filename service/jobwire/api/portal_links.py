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

This module checks tokens and makes sessions; whether a link was redeemed already is the
log's to say, for every replica alike (``jobwire.webhooks.redemptions``; the route writes the
claim and waits for it to be read back).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import orjson

from jobwire.errors import JobwireError

COOKIE = "jobwire_portal"
LINK_TTL_S = 600.0
SESSION_TTL_S = 3600.0


class LinkRefused(JobwireError):
    """The link is malformed, forged, expired or already used (the reason says which)."""


class LinkClaims(NamedTuple):
    """What a valid link says: whose it is, its one-time nonce, when it expires (unix seconds),
    and the fingerprint of the tenant's API keys it was minted under."""

    tenant: str
    nonce: str
    expires: float
    keys: str


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

    def mint(self, tenant: str) -> tuple[str, float]:
        """A one-time link token for ``tenant`` and when it expires (unix seconds)."""
        expires = self._clock() + LINK_TTL_S
        return self._sign({"kind": "link", "tenant": tenant, "exp": expires, "nonce": secrets.token_urlsafe(16),
                           "keys": self._fingerprint(tenant)}), expires

    def open_link(self, token: str) -> LinkClaims:
        """The claims of a valid link token, or LinkRefused. Whether it was used is not known
        here: that is for the caller to settle, once, with the other replicas."""
        claims = self._open(token, "link")
        if claims is None or not isinstance(claims.get("nonce"), str) or not claims["nonce"]:
            raise LinkRefused("the link is not valid or has expired")
        return LinkClaims(claims["tenant"], claims["nonce"], float(claims["exp"]), claims["keys"])

    def session_for(self, link: LinkClaims) -> str:
        """A session token for the tenant of a link just redeemed."""
        return self._sign({"kind": "session", "tenant": link.tenant, "exp": self._clock() + SESSION_TTL_S,
                           "keys": link.keys})

    def session_tenant(self, session: str) -> str | None:
        """The tenant a session cookie belongs to, or None if it is forged, expired, or its
        tenant's API keys changed since."""
        claims = self._open(session, "session")
        return None if claims is None else str(claims["tenant"])

    def _fingerprint(self, tenant: str) -> str:
        return keys_fingerprint(self._tenant_keys(tenant))

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
