"""API keys: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; each key is one tenant's."""

from __future__ import annotations

from starlette.requests import Request

from jobwire.api.problems import Problem
from jobwire.config import Settings

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="jobwire"'}


def tenant_of(request: Request) -> str:
    """The calling tenant, or a 401 problem. Keys are compared in constant time."""
    settings: Settings = request.state.settings
    key = request.headers.get("x-api-key")
    if key is None:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            key = credentials.strip()
    if not key:
        raise Problem(401, "send an API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'", headers=CHALLENGE)
    tenant = settings.tenant_for_key(key)
    if tenant is None:
        raise Problem(401, "the API key is not valid", headers=CHALLENGE)
    return tenant
