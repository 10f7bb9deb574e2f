"""RFC 9457 problem details: the one way an error leaves the API."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from jobwire.errors import JobwireError, Violation

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
TITLES = {
    400: "Malformed request", 401: "Unauthorized", 404: "Not found", 405: "Method not allowed",
    406: "Not acceptable", 408: "Request timeout", 409: "Conflict", 412: "Precondition failed",
    413: "Request body too large", 415: "Unsupported media type", 422: "Invalid request",
    429: "Too many requests", 431: "Request header fields too large", 500: "Internal error", 503: "Unavailable",
}
#: Violations listed in one problem; ``errors_total`` says how many there were. A body can hold
#: tens of thousands of them (one per array item), and the answer need not repeat them all.
MAX_LISTED_VIOLATIONS = 20
#: A schema message can quote the offending value whole (a non-unique array is printed in
#: full), so one violation could echo most of the body back.
MAX_VIOLATION_CHARS = 300


def _shortened(message: str) -> str:
    return message if len(message) <= MAX_VIOLATION_CHARS else message[:MAX_VIOLATION_CHARS - 1] + "…"


class Problem(JobwireError):
    """Raised anywhere in a route; the handler turns it into an ``application/problem+json``."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        violations: list[Violation] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.violations = violations or []
        self.headers = headers or {}
        self.extra = extra or {}


def log_unavailable(exc: Exception, what: str) -> Problem:
    """The 503 for a write the event log refused; the cause goes to our log, not the client."""
    log.error("write to the event log failed what=%s error=%s", what, exc)
    return Problem(503, "the event log is unavailable; try again", headers={"Retry-After": "2"})


def problem_response(request: Request | None, problem: Problem) -> Response:
    body = problem_body(problem)
    if request is not None:
        body["instance"] = request.url.path
    # Also here, not only in the middleware: a 500 is answered outside the middleware stack.
    headers = {**problem.headers, "X-Content-Type-Options": "nosniff"}
    return Response(orjson.dumps(body), status_code=problem.status, media_type=MEDIA_TYPE, headers=headers)


def problem_body(problem: Problem) -> dict[str, Any]:
    """The problem details document (RFC 9457) for ``problem``, without an ``instance``."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": TITLES.get(problem.status, "Error"),
        "status": problem.status,
        "detail": problem.detail,
        **problem.extra,
    }
    if problem.violations:
        listed = problem.violations[:MAX_LISTED_VIOLATIONS]
        body["errors"] = [{"pointer": v.pointer, "detail": _shortened(v.message)} for v in listed]
        body["errors_total"] = len(problem.violations)
    return body


async def on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(request, exc)


async def on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    default_phrase = HTTPStatus(exc.status_code).phrase if exc.status_code in HTTPStatus._value2member_map_ else ""
    detail = exc.detail if exc.detail and exc.detail != default_phrase else {
        404: f"no route {request.url.path}",
        405: f"{request.method} is not allowed on {request.url.path}",
    }.get(exc.status_code, str(exc.detail))
    return problem_response(request, Problem(exc.status_code, detail, headers=headers))


async def on_unexpected(request: Request, exc: Exception) -> Response:
    # The traceback goes to our log, never to the client.
    log.exception("unhandled error method=%s path=%s", request.method, request.url.path)
    return problem_response(request, Problem(500, "internal error; it has been logged"))
