"""Request headers by dict lookup.

Starlette's ``request.headers.get`` scans the header list and re-encodes the name on every
call; a GET asks for half a dozen headers, which showed in profiles of the hot path. The
table is built once per request, keeping the first value of a repeated name, as Starlette does.
"""

from __future__ import annotations

from starlette.requests import Request

_TABLE = "jobwire.headers"


def header(request: Request, name: bytes) -> str | None:
    """The first value of the request header ``name`` (lower-case bytes), or None."""
    scope = request.scope
    table: dict[bytes, bytes] | None = scope.get(_TABLE)
    if table is None:
        table = scope[_TABLE] = {}
        for key, value in reversed(scope["headers"]):
            table[key] = value
    raw = table.get(name)
    return None if raw is None else raw.decode("latin-1")
