"""Reading request bodies: size limit, media type, JSON, schema, each with its own status."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from jobwire.api.problems import Problem
from jobwire.validation import validator


async def read_json(request: Request, schema: str) -> dict[str, Any]:
    """The body as a JSON object valid against ``schemas/<schema>``; 413, 415, 400 or 422 if not."""
    limit: int = request.state.settings.max_body_bytes
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise Problem(415, f"send the body as application/json, not {media_type or 'no content type'}")
    declared = request.headers.get("content-length")
    if declared is not None and (declared.isascii() and declared.isdigit()) and int(declared) > limit:
        raise Problem(413, f"the body is {declared} bytes; the limit is {limit}")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem(413, f"the body is over the {limit} byte limit")
        chunks.append(chunk)
    try:
        document = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise Problem(400, f"the body is not valid JSON: {exc}") from None
    violations = validator(schema).violations(document)
    if violations:
        raise Problem(422, "the body does not match the schema", violations=violations)
    assert isinstance(document, dict)
    return document
