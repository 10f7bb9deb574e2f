"""A server span per HTTP request (jobwire/tracing.py), continuing the caller's
``traceparent``. Installed only while tracing is on. The span is named by the route's template
(``POST /v1/jobs``), never by the path as sent: paths carry ids, and upload paths a token."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobwire import tracing


class TracedRequests:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(b"traceparent", b"").decode("latin-1")
        parent = sent if tracing.TRACEPARENT.fullmatch(sent) else None  # a malformed one starts a trace
        status: list[int | None] = [None]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        with tracing.span(f"HTTP {scope['method']}", kind=tracing.SERVER,
                          parent=parent,
                          attributes={"http.request.method": scope["method"]}):
            try:
                await self.app(scope, receive, send_status)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if route is not None:
                    tracing.rename(f"{scope['method']} {route}")
                tracing.annotate(http__route=route, http__response__status_code=status[0])
