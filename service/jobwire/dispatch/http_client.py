"""The HTTP side of a delivery: one pooled aiohttp session, bounded and guarded.

No redirects are followed, the response body read is capped, connect and total timeouts are
set, and every connection goes through the SSRF guard's resolver.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Sequence
from email.utils import parsedate_to_datetime
from functools import lru_cache
from ssl import SSLContext
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from jobwire.dispatch.policy import SendResult
from jobwire.dispatch.resolver import GuardedResolver
from jobwire.webhooks.ssrf import Network, TargetRefused, check_target_url, guarded_socket

RESPONSE_EXCERPT_BYTES = 1024
#: Endpoint URLs whose SSRF check is remembered (the least recently used go first).
CHECKED_TARGETS = 4096
TARGET_REFUSED = "refused by the SSRF guard: the endpoint's host is not a public address"
CONNECT_FAILED = "could not connect to the endpoint (no address for its name, or the connection was refused)"
TLS_FAILED = "TLS error: the endpoint's certificate or handshake was refused"
DISCONNECTED = "the endpoint closed the connection before answering"

log = logging.getLogger(__name__)


def retry_after_s(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # isdigit alone takes "²", which float() refuses
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


async def proxy_networks(proxy: str) -> list[Network]:
    """The addresses of the egress proxy, each as a one-address network."""
    host = urlsplit(proxy).hostname or ""
    port = urlsplit(proxy).port or 80
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_network(info[4][0]) for info in infos]


def _refusal(exc: BaseException) -> TargetRefused | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, TargetRefused):
            return seen
        seen = getattr(seen, "os_error", None) or seen.__cause__
    return None


def _tenant_facing(exc: BaseException) -> str:
    """The kind of failure, in words that name no address, port state or resolver answer."""
    if _refusal(exc) is not None:
        return TARGET_REFUSED
    if isinstance(exc, aiohttp.ClientSSLError):  # before its base, ClientConnectorError
        return TLS_FAILED
    if isinstance(exc, aiohttp.ClientConnectorError):  # DNS failures are a kind of it
        return CONNECT_FAILED
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return DISCONNECTED
    return f"the request failed ({type(exc).__name__})"


class Sender:
    def __init__(self, allowed: Sequence[Network], *, connect_timeout_s: float = 5.0, total_timeout_s: float = 15.0,
                 max_connections: int = 256, dns: AbstractResolver | None = None, proxy: str | None = None) -> None:
        """``dns``: what the SSRF guard asks (the system's resolver unless given). ``proxy``: an
        HTTP proxy every request goes through (CONNECT for https), ``JOBWIRE_EGRESS_PROXY``."""
        self._allowed = tuple(allowed)
        self._dns = dns
        self._proxy = proxy
        self._guard = GuardedResolver(self._allowed, self._dns)
        self._timeout = aiohttp.ClientTimeout(total=total_timeout_s, sock_connect=connect_timeout_s)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        # The URL's check reads the URL alone (names are checked as they resolve, on connect),
        # and the same few endpoint URLs come back for every delivery: checked once each.
        self._checked_target = lru_cache(maxsize=CHECKED_TARGETS)(self._checked)

    def _checked(self, url: str) -> URL:
        """``url`` as the client will connect to it, once the SSRF guard allows it (else
        ``TargetRefused``, not cached: refused URLs are rare and checked again)."""
        check_target_url(url, self._allowed)
        return URL(url)

    async def start(self) -> None:
        # Through a proxy, every connection is to the proxy: it is the one address the
        # connector's guard lets through beside the allowed targets (which the proxy must not
        # widen), and the target is checked by name before each request instead.
        connected = (*self._allowed, *await proxy_networks(self._proxy)) if self._proxy else self._allowed
        connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=64,
                                         resolver=GuardedResolver(connected, self._dns), ttl_dns_cache=10,
                                         socket_factory=guarded_socket(connected))
        # No cookie jar: one session sends every tenant's webhooks, so a cookie one receiver
        # set would ride along to every later request for its host (another tenant's endpoint
        # on a shared host), and a receiver setting new ones on every answer would grow it.
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                              cookie_jar=aiohttp.DummyCookieJar(),
                                              skip_auto_headers=("User-Agent",), auto_decompress=False)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, url: str, body: bytes, headers: dict[str, str], *, delivery_id: str = "",
                   ssl: SSLContext | None = None) -> SendResult:
        assert self._session is not None, "Sender.start() first"
        started = time.perf_counter()

        def elapsed() -> float:
            return round((time.perf_counter() - started) * 1000, 2)

        try:
            target = self._checked_target(url)
            if self._proxy is not None and target.host is not None:
                # The proxy resolves the name itself and may connect to any of its addresses:
                # every one of them must pass the policy here first.
                await self._guard.check_every_address(target.host, target.port or 0)
            # The URL object the check read, so the client connects to the host it checked.
            async with self._session.post(target, data=body, headers={**headers, "user-agent": "jobwire-webhooks/1"},
                                          allow_redirects=False, proxy=self._proxy,
                                          ssl=ssl if ssl is not None else True) as response:
                excerpt = (await response.content.read(RESPONSE_EXCERPT_BYTES)).decode("utf-8", "replace")
                after = retry_after_s(response.headers.get("Retry-After")) if response.status in (429, 503) else None
                return SendResult(response.status, elapsed(), None if response.status < 300 else f"HTTP {response.status}",
                                  excerpt or None, after)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            return SendResult(None, elapsed(), "timed out")
        except Exception as exc:  # any transport failure is a failed attempt, never a crash
            # What the tenant reads (the attempt's error) says what kind of failure it was and
            # nothing of the network behind: no resolved address, and one answer for a name
            # that does not resolve and a port that refuses. The operator's log has the detail.
            error = _tenant_facing(exc)
            log.info("webhook attempt failed delivery_id=%s host=%s error=%r detail=%r", delivery_id,
                     urlsplit(url).hostname, error, f"{type(exc).__name__}: {exc}"[:500])
            return SendResult(None, elapsed(), error)
