"""How routes are built: one per path, dispatching on the method, for jobwire's own routes and
the wire profiles' alike."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jobwire.api.problems import Problem

Handler = Callable[[Request], Awaitable[Response]]


def resource(path: str, name: str | None = None, **endpoints: Handler) -> Route:
    """One route per path, dispatching on the method, so a 405's ``Allow`` lists all of them.
    Starlette lets HEAD through to a GET route; none of these answers it, so it gets the 405
    every other method not listed gets."""

    async def endpoint(request: Request) -> Response:
        handler = endpoints.get(request.method)
        if handler is None:
            raise Problem(405, f"{request.method} is not allowed here", headers={"Allow": ", ".join(endpoints)})
        return await handler(request)

    return Route(path, endpoint, methods=list(endpoints), name=name)


def path_template(path: str) -> str:
    """A path's shape, whatever its parameters are called: ``/v1/jobs/{id}`` is ``/v1/jobs/{}``."""
    return re.sub(r"\{[^}]+\}", "{}", path)
