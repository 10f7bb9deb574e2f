"""JSON responses and content negotiation, shared by the route modules."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from jobwire.api.headers import header
from jobwire.api.problems import Problem

JSON_TYPES = ("application/json", "application/problem+json", "application/*", "*/*")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def accepts(request: Request, *media_types: str) -> bool:
    accept = header(request, b"accept")
    if not accept:
        return True
    offered = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    return bool(offered & set(media_types))


def require_json(request: Request) -> None:
    if not accepts(request, *JSON_TYPES):
        raise Problem(406, "this resource is available as application/json")
