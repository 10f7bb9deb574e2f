"""API keys: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; each key is one tenant's."""

from __future__ import annotations

from starlette.requests import Request

from jobwire.api.headers import header

from jobwire.api.problems import Problem
from jobwire.config import Settings

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="jobwire"'}


def tenant_of(request: Request) -> str:
    """The calling tenant, or a 401 problem. Keys are compared in constant time."""
    settings: Settings = request.state.settings
    header_key = header(request, b"x-api-key")
    bearer = None
    authorization = header(request, b"authorization")
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
