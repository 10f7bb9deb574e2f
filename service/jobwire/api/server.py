"""The HTTP server around the app: uvicorn with httptools, bounded by jobwire's own settings.

uvicorn leaves these open: httptools takes request heads of any size and header count, and
no timer runs while a request head arrives (its keep-alive timer runs only between requests,
and any byte stops it), so a client trickling a head, or sending nothing at all after
connecting, holds a connection for ever. :class:`BoundedHttpTools` adds, per connection: a
cap on open connections, on head bytes and header count (431), a deadline for a complete
head from the moment the server waits for one (408), and one for the body after it.

Everything that serves the API (``jobwire api``, ``jobwire dev`` through it, the tests) builds
its server with :func:`server_config`."""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from jobwire.api.problems import MEDIA_TYPE, TITLES
from jobwire.config import Settings
from jobwire.errors import JobwireError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_connections: int
    max_header_bytes: int
    max_headers: int
    header_timeout_s: float
    body_timeout_s: float

    @classmethod
    def of(cls, settings: Settings) -> HttpLimits:
        return cls(settings.http_max_connections, settings.http_max_header_bytes, settings.http_max_headers,
                   settings.http_header_timeout_s, settings.http_body_timeout_s)


def raw_problem(status: int, detail: str, *extra: bytes) -> bytes:
    """A whole problem+json response, written before or instead of the app: the connection
    closes after it."""
    body = orjson.dumps({"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status,
                         "detail": detail})
    return b"".join([
        STATUS_LINE[status], b"content-type: ", MEDIA_TYPE.encode(), b"\r\n",
        b"content-length: %d\r\n" % len(body), b"connection: close\r\n",
        b"x-content-type-options: nosniff\r\n", *extra, b"\r\n", body,
    ])


class _Refused(JobwireError):
    """Raised in a parser callback to stop parsing; the refusal itself is in ``_refusal``."""


class BoundedHttpTools(HttpToolsProtocol):
    limits: ClassVar[HttpLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._in_head = False
        self._received_in_head = 0  # bytes read while the head was incomplete (unparsed ones too)
        self._parsed_in_head = 0
        self._headers_seen = 0
        self._refusal: tuple[int, str] | None = None

    # --- connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Requests whose client has gone still run to their end (a long-poll up to its wait):
        # they count against the bound too.
        if len(self.connections) > self.limits.max_connections or len(self.tasks) >= self.limits.max_connections:
            log.warning("connection refused: at the limit of %d connections", self.limits.max_connections)
            self._answer_and_close(503, "the server is at its connection limit; retry shortly", b"retry-after: 1\r\n")
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_timer = self._cancel(self._head_timer)
        self._body_timer = self._cancel(self._body_timer)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            # httptools buffers a header until it ends: count what arrives, not only what it
            # has handed over, or one endless header grows without bound.
            self._received_in_head += len(data)
            if self._received_in_head > self.limits.max_header_bytes:
                self._answer_and_close(431, f"the request head is over {self.limits.max_header_bytes} bytes")

    def send_400_response(self, msg: str) -> None:
        # uvicorn calls this for any parser error, including the one _Refused causes.
        status, detail = self._refusal or (400, "the request is not valid HTTP/1.1")
        self._answer_and_close(status, detail)

    # --- parser callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._received_in_head = self._parsed_in_head = self._headers_seen = 0

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers_seen += 1
        if self._headers_seen > self.limits.max_headers:
            self._refuse(431, f"the request has over {self.limits.max_headers} header fields")
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_timer = self._cancel(self._head_timer)
        self._body_timer = self._cancel(self._body_timer)
        if self._has_body():  # most requests (GET) have none: no timer to make and cancel
            self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_timed_out)
        super().on_headers_complete()

    def _has_body(self) -> bool:
        for name, value in self.headers:
            if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
                return True
        return False

    def on_message_complete(self) -> None:
        self._body_timer = self._cancel(self._body_timer)
        super().on_message_complete()

    def on_response_complete(self) -> None:
        idle = not self.pipeline
        super().on_response_complete()
        if idle and not self.transport.is_closing():
            self._arm_head_timer()

    # --- bounds ----------------------------------------------------------------------------

    def _count_head(self, size: int) -> None:
        self._parsed_in_head += size
        if self._parsed_in_head > self.limits.max_header_bytes:
            self._refuse(431, f"the request head is over {self.limits.max_header_bytes} bytes")

    def _refuse(self, status: int, detail: str) -> None:
        self._refusal = (status, detail)
        raise _Refused(detail)

    def _arm_head_timer(self) -> None:
        # From the moment the server waits for a request, not from its first byte: bytes that
        # trickle in (even blank lines between requests, which begin no message) never extend it.
        self._cancel(self._head_timer)
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._in_head:
            self._answer_and_close(408, f"the request head did not arrive within {self.limits.header_timeout_s:g} s")
        else:
            self.transport.close()

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self.transport.is_closing():
            return
        if self.pipeline:
            # Queued behind a response still running, with reading paused: the stall is ours.
            self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_timed_out)
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            # The app is still reading: it sees a disconnect, and the client our answer.
            cycle.disconnected = True
            cycle.message_event.set()
            self._answer_and_close(408, f"the request body did not arrive within {self.limits.body_timeout_s:g} s")
        else:
            log.info("request body stalled after the response began; closing client=%s", self.client)
            self.transport.close()

    def _answer_and_close(self, status: int, detail: str, *extra: bytes) -> None:
        if status != 503:
            log.info("request refused status=%d client=%s detail=%s", status, self.client, detail)
        self.transport.write(raw_problem(status, detail, *extra))
        self.transport.close()

    @staticmethod
    def _cancel(timer: asyncio.TimerHandle | None) -> None:
        if timer is not None:
            timer.cancel()
        return None


def server_config(app: Any, settings: Settings, host: str | None = None, port: int | None = None) -> uvicorn.Config:
    """The one uvicorn configuration the API is served with."""
    limits = HttpLimits.of(settings)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < limits.max_connections + 100:
        # Past the descriptor limit accept() fails instead of our bound answering 503.
        log.warning("the open file limit (%d) is below JOBWIRE_HTTP_MAX_CONNECTIONS=%d plus headroom; "
                    "raise it (ulimit -n) or lower the setting", soft, limits.max_connections)
    protocol = type("BoundedHttpTools", (BoundedHttpTools,), {"limits": limits})
    return uvicorn.Config(
        app, host=host or settings.host, port=port or settings.port,
        http=protocol, ws="none", lifespan="on",
        timeout_keep_alive=settings.http_keepalive_s, timeout_graceful_shutdown=10,
        log_config=None, access_log=False,
    )
