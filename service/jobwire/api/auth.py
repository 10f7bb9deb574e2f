"""Who is calling: an API key (``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; each
key is one tenant's), or, on webhook routes only, a portal session opened by a one-time link
(``portal_links.py``)."""

from __future__ import annotations

from starlette.requests import Request

from jobwire.api.headers import header
from jobwire.api.portal_links import COOKIE, PortalLinks
from jobwire.api.problems import Problem
from jobwire.config import Settings

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="jobwire"'}


def webhook_tenant_of(request: Request) -> str:
    """For webhook management: an API key, or else a portal session."""
    if header(request, b"authorization") is None and header(request, b"x-api-key") is None:
        session = request.cookies.get(COOKIE)
        links: PortalLinks | None = request.state.portal_links
        if session is not None and links is not None:
            tenant = links.session_tenant(session)
            if tenant is None:
                raise Problem(401, "the portal session has expired; open a new portal link", headers=CHALLENGE)
            request.state.portal_session = True
            return tenant
    return tenant_of(request)


def tenant_of(request: Request) -> str:
    """The calling tenant by API key, or a 401 problem. Keys are compared in constant time.
    A portal session is refused here with 403: it manages webhooks only."""
    settings: Settings = request.state.settings
    header_key = header(request, b"x-api-key")
    authorization = header(request, b"authorization")
    # The cookies are parsed only when no key is sent (a key's request is the common one).
    if header_key is None and authorization is None and COOKIE in request.cookies:
        raise Problem(403, "a portal session may manage webhook endpoints only; use an API key")
    bearer = None
    if authorization is not None:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise Problem(401, "the Authorization header must be 'Bearer <key>'", headers=CHALLENGE)
        bearer = credentials.strip()
    if header_key is not None and bearer is not None and header_key != bearer:
        # Two different credentials: refuse rather than guess which one the caller meant.
        raise Problem(401, "send one API key: Authorization and X-API-Key disagree", headers=CHALLENGE)
    key = bearer or header_key
    if not key:
        raise Problem(401, "send an API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'", headers=CHALLENGE)
    tenant = settings.tenant_for_key(key)
    if tenant is None:
        raise Problem(401, "the API key is not valid", headers=CHALLENGE)
    return tenant


def is_portal_session(request: Request) -> bool:
    """The caller came in with a portal session (after ``webhook_tenant_of``), not an API key."""
    return bool(getattr(request.state, "portal_session", False))
