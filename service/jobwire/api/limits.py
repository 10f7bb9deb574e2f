"""What one client may hold or ask of a replica: concurrent long-polls and event streams per
tenant, a request rate per API key (and per tenant for portal sessions); and the middleware that applies the rate and marks every
response ``nosniff``.

The gates and buckets are pure (an injectable clock, no I/O); :class:`RequestLimits` owns one
set per app and hands it to the routes as ``request.state.limits``."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from starlette.requests import ClientDisconnect, Request, cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobwire.api.portal_links import COOKIE, PortalLinks
from jobwire.api.problems import Problem, problem_response
from jobwire.config import Settings

log = logging.getLogger(__name__)

NOSNIFF = (b"x-content-type-options", b"nosniff")


class ConcurrencyGate:
    """At most ``limit`` holders per key at once. Only keys holding something have an entry,
    so memory follows what is in use, not every key ever seen."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[str, int] = {}

    def acquire(self, key: str) -> bool:
        held = self._held.get(key, 0)
        if held >= self.limit:
            return False
        self._held[key] = held + 1
        return True

    def release(self, key: str) -> None:
        held = self._held.get(key, 0) - 1
        if held > 0:
            self._held[key] = held
        else:
            self._held.pop(key, None)

    def held(self, key: str) -> int:
        return self._held.get(key, 0)


class Slot:
    """One unit taken from a gate; releasing twice is harmless, so every way a long-poll or a
    stream can end may release it."""

    __slots__ = ("_gate", "_key")

    def __init__(self, gate: ConcurrencyGate, key: str) -> None:
        self._gate: ConcurrencyGate | None = gate
        self._key = key

    def release(self) -> None:
        if self._gate is not None:
            self._gate.release(self._key)
            self._gate = None

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class TokenBuckets:
    """A token bucket per key: ``rate`` tokens a second, up to ``burst``. The caller passes only
    configured keys, so there is at most one bucket per configured API key."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> float:
        """0 if a token was taken, else the seconds until one will be there."""
        now = self._clock()
        tokens, then = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - then) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate


def retry_after(seconds: float) -> str:
    """``Retry-After`` in whole seconds, never 0: a client told 0 comes straight back."""
    return str(max(1, math.ceil(seconds)))


class ApiLimits:
    """One app's gates and buckets."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.long_polls = ConcurrencyGate(settings.long_polls_per_tenant)
        self.streams = ConcurrencyGate(settings.streams_per_tenant)
        self.rate = (TokenBuckets(settings.rate_limit_per_s, settings.rate_limit_burst, clock)
                     if settings.rate_limit_per_s > 0 else None)
        # Keyed by tenant, and only tenants that asked have a bucket: tenants come from the
        # configured keys, so this is bounded by the configuration.
        self.resends = TokenBuckets(settings.resends_per_min / 60, settings.resends_per_min, clock)

    def long_poll(self, tenant: str) -> Slot:
        return self._slot(self.long_polls, tenant, "Prefer: wait requests")

    def stream(self, tenant: str) -> Slot:
        return self._slot(self.streams, tenant, "event streams")

    def resend(self, tenant: str) -> None:
        """Take one retry, recover or test request from the tenant's allowance, or raise 429."""
        wait_s = self.resends.take(tenant)
        if wait_s > 0:
            raise Problem(429, f"too many retry, recover and test requests: at most "
                          f"{self.settings.resends_per_min} a minute per tenant",
                          headers={"Retry-After": retry_after(wait_s)})

    @staticmethod
    def _slot(gate: ConcurrencyGate, tenant: str, what: str) -> Slot:
        if not gate.acquire(tenant):
            raise Problem(429, f"too many concurrent {what}: at most {gate.limit} per tenant; "
                          "retry when one of yours has ended", headers={"Retry-After": "1"})
        return Slot(gate, tenant)


def _session_tenant(scope: Scope) -> str | None:
    """The tenant of the portal session a request carries, when it carries no API key header."""
    cookie = None
    for name, value in scope["headers"]:
        if name in (b"authorization", b"x-api-key"):
            return None
        if name == b"cookie":
            cookie = cookie_parser(value.decode("latin-1")).get(COOKIE) or cookie
    links: PortalLinks | None = scope["state"].get("portal_links")
    return links.session_tenant(cookie) if cookie is not None and links is not None else None


def presented_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The API key the request carries, read as api/auth.py reads it; None when auth would
    refuse the request anyway, so that request gets its 401, not a 429."""
    authorization = api_key = None
    for name, value in headers:
        if name == b"authorization" and authorization is None:
            authorization = value
        elif name == b"x-api-key" and api_key is None:
            api_key = value
    bearer = None
    if authorization is not None:
        scheme, _, credentials = authorization.partition(b" ")
        if scheme.lower() != b"bearer":
            return None
        bearer = credentials.strip()
    if bearer and api_key is not None and api_key != bearer:
        return None
    key = bearer or api_key
    return key.decode("latin-1") if key else None


#: Health, readiness and metrics: a probe that gets a 429 takes a healthy replica out.
UNLIMITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class RequestLimits:
    """Raw ASGI (no body buffering): the per-key rate limit on /v1, ``nosniff`` on every
    response, and ``request.state.limits`` for the routes' gates."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.limits = ApiLimits(settings)

    def _caller(self, scope: Scope) -> tuple[str, str] | None:
        """Whose allowance a request spends, and how to name it: a valid API key's, else a valid
        portal session's (one allowance per tenant, whatever the number of its sessions);
        None for a request that auth refuses anyway, so that it gets its 401, not a 429."""
        key = presented_key(scope["headers"])
        if key is not None:
            return (key, "this API key") if self.limits.settings.tenant_for_key(key) is not None else None
        tenant = _session_tenant(scope)
        # NUL cannot occur in a header value: no API key can take a session's bucket.
        return (f"\0portal\0{tenant}", "the tenant's portal sessions") if tenant is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})["limits"] = self.limits

        async def send_nosniff(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if not any(name == NOSNIFF[0] for name, _ in headers):
                    message = {**message, "headers": [*headers, NOSNIFF]}
            await send(message)

        # Every route a caller reaches with a key or a session: /v1, and the wire profiles'
        # dialects, at their prefixes or at the root; never the probes, whatever they carry.
        if self.limits.rate is not None and scope["path"] not in UNLIMITED_PATHS:
            caller = self._caller(scope)
            if caller is not None:
                wait_s = self.limits.rate.take(caller[0])
                if wait_s > 0:
                    problem = Problem(429, f"too many requests: {caller[1]} may make "
                                      f"{self.limits.rate.rate:g} a second", headers={"Retry-After": retry_after(wait_s)})
                    await problem_response(Request(scope), problem)(scope, receive, send_nosniff)
                    return
        try:
            await self.app(scope, receive, send_nosniff)
        except ClientDisconnect:
            # The client left (or the server cut a body that stalled) while a route read the
            # body: nobody is there to answer, and it is no error of ours to log as one.
            log.info("client disconnected method=%s path=%s", scope["method"], scope["path"])
