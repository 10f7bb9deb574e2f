"""What an endpoint adds to each webhook request: custom headers, credentials (bearer or
basic), and a TLS client certificate (mTLS), for receivers behind a gateway that wants its own
key or a certificate, as Hookdeck Outpost and Convoy offer and Svix users ask for.

All are secrets of the tenant's: they are sealed at rest with the endpoint's signing secrets
(the secret box, bound to the endpoint), shown once when set and never again (the endpoint
shows the header names, the auth type and the certificate's subject and expiry only), and
never logged. Headers the HTTP exchange
or the signature owns are refused (``REFUSED``): a tenant cannot smuggle a second
``Content-Length``, point ``Host`` elsewhere, or forge a ``webhook-signature``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import orjson

from jobwire.errors import Violation

#: Headers an endpoint may not set: hop-by-hop and framing headers (RFC 9110 §7.6.1), the
#: target and the signature's own, and Authorization (set it with ``auth``).
REFUSED = frozenset({
    "host", "content-length", "content-type", "content-encoding", "transfer-encoding", "connection", "keep-alive",
    "proxy-authenticate", "proxy-authorization", "proxy-connection", "te", "trailer", "upgrade", "expect",
    "authorization", "cookie", "user-agent", "traceparent", "tracestate",
})
REFUSED_PREFIXES = ("webhook-", "svix-", "x-forwarded-", "sec-")


def violations(headers: Mapping[str, str] | None) -> list[Violation]:
    """The headers' names an endpoint may not set (their shape the schema has checked)."""
    return [Violation(f"/headers/{name}", "this header belongs to the HTTP exchange or to the signature")
            for name in headers or {} if name.lower() in REFUSED or name.lower().startswith(REFUSED_PREFIXES)]


def seal_input(headers: Mapping[str, str] | None, auth: Mapping[str, Any] | None,
               client_cert: Mapping[str, str] | None = None) -> str | None:
    """The plaintext to seal for an endpoint (None when it sets none of them)."""
    if not headers and not auth and not client_cert:
        return None
    sealed: dict[str, Any] = {"headers": dict(headers or {}), "auth": dict(auth) if auth else None}
    if client_cert:
        sealed["tls_client_cert"] = {"cert": client_cert["cert"], "key": client_cert["key"]}
    return orjson.dumps(sealed).decode()


def opened(plaintext: str) -> tuple[dict[str, str], dict[str, Any] | None]:
    data = orjson.loads(plaintext)
    return dict(data.get("headers") or {}), data.get("auth")


def client_cert_of(plaintext: str | None) -> dict[str, str] | None:
    """The endpoint's client certificate and key (PEM), if it has one."""
    if plaintext is None:
        return None
    found = orjson.loads(plaintext).get("tls_client_cert")
    return dict(found) if found else None


def request_headers(plaintext: str | None) -> dict[str, str]:
    """The headers an endpoint's requests carry besides the signature's."""
    if plaintext is None:
        return {}
    headers, auth = opened(plaintext)
    extra = {name.lower(): value for name, value in headers.items()}
    if auth is not None and auth.get("type") == "bearer":
        extra["authorization"] = f"Bearer {auth['token']}"
    elif auth is not None and auth.get("type") == "basic":
        pair = f"{auth['username']}:{auth['password']}".encode()
        extra["authorization"] = f"Basic {base64.b64encode(pair).decode()}"
    return extra


def shown(plaintext: str | None) -> dict[str, Any]:
    """What the endpoint object shows of them: header names and the auth type, no values."""
    if plaintext is None:
        return {"headers": None, "auth": None}
    headers, auth = opened(plaintext)
    return {"headers": sorted(headers) or None, "auth": {"type": auth["type"]} if auth else None}
