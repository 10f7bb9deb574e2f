"""What a failed attempt tells the tenant: the kind of failure, nothing of the network behind
the endpoint (no resolved address; one answer for a name that does not resolve and a port
that refuses). Real aiohttp sessions against loopback."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Sequence

import pytest
from aiohttp import web

from jobwire.devtools.broker import free_port
from jobwire.dispatch.http_client import CONNECT_FAILED, RESPONSE_EXCERPT_BYTES, TARGET_REFUSED, Sender
from jobwire.dispatch.policy import SendResult
from jobwire.webhooks.ssrf import Network
from tests.support.dns import FakeDNS
from tests.support.servers import serving
from tests.support.ssrf_forms import ALLOW_LOOPBACK, EMBEDDING_FORMS, LOOPBACK_FORMS, UNICODE_FORMS

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]


async def post(allowed: Sequence[Network], url: str) -> str | None:
    sender = Sender(allowed, connect_timeout_s=2, total_timeout_s=5)
    await sender.start()
    try:
        return (await sender.post(url, b"{}", {})).error
    finally:
        await sender.stop()


async def test_a_refused_target_names_no_address() -> None:
    port = free_port()
    for url in (f"http://127.0.0.1:{port}/", f"http://localhost:{port}/", f"http://2130706433:{port}/",
                f"http://[::ffff:127.0.0.1]:{port}/"):
        error = await post([], url)
        assert error == TARGET_REFUSED, url
        assert "127.0.0.1" not in error and "loopback" not in error


async def test_no_such_name_and_a_closed_port_read_the_same() -> None:
    closed = await post(LOOPBACK, f"http://127.0.0.1:{free_port()}/")
    unknown = await post(LOOPBACK, "http://no-such-host.invalid/")
    assert closed == unknown == CONNECT_FAILED


@pytest.fixture
async def listener() -> AsyncIterator[tuple[int, list[str]]]:
    """A real HTTP server on 127.0.0.1 that records the requests that reach it."""
    reached: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        reached.append(request.host)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/", hook)
    async with serving(app) as port:
        yield port, reached


async def test_the_canonical_address_of_an_allowed_range_is_reached(listener: tuple[int, list[str]]) -> None:
    port, reached = listener
    sender = Sender([ipaddress.ip_network(ALLOW_LOOPBACK)], connect_timeout_s=2, total_timeout_s=5)
    await sender.start()
    try:
        result = await sender.post(f"http://127.0.0.1:{port}/", b"{}", {})
    finally:
        await sender.stop()
    assert result.status_code == 200 and len(reached) == 1, "the control: the listener answers when allowed"


async def test_a_url_checked_once_stays_as_the_check_found_it(listener: tuple[int, list[str]]) -> None:
    """The check is remembered per URL: an allowed URL is reached again without a new check,
    and a refused one is refused every time (a refusal is never remembered as a pass)."""
    port, reached = listener
    sender = Sender([ipaddress.ip_network(ALLOW_LOOPBACK)], connect_timeout_s=2, total_timeout_s=5)
    await sender.start()
    try:
        refused = f"http://{LOOPBACK_FORMS[0]}:{port}/"
        allowed = f"http://127.0.0.1:{port}/"
        results = [await sender.post(url, b"{}", {}) for url in (refused, allowed, refused, allowed, refused)]
    finally:
        await sender.stop()
    assert [r.status_code or r.error for r in results] == [TARGET_REFUSED, 200, TARGET_REFUSED, 200, TARGET_REFUSED]
    assert len(reached) == 2


@pytest.mark.parametrize("host", LOOPBACK_FORMS + EMBEDDING_FORMS + UNICODE_FORMS)
async def test_every_refused_form_is_refused_at_send_and_never_connects(host: str, listener: tuple[int, list[str]]) -> None:
    port, reached = listener
    # 127.0.0.0/8 is allowed, so what refuses these is how the host is written (or the
    # IPv4 address an IPv6 one carries), not the loopback rule; and whatever the installed
    # aiohttp would make of the host, our check runs first.
    error = await post([ipaddress.ip_network(ALLOW_LOOPBACK)], f"http://{host}:{port}/")
    assert error == TARGET_REFUSED
    assert reached == []


async def test_a_name_rebound_to_loopback_never_connects(listener: tuple[int, list[str]]) -> None:
    """The attacker's name passed the check at create time (a public address); by send time it
    answers 127.0.0.1, where something listens. The guard checks the address the connection
    would go to, so the listener is never reached."""
    port, reached = listener
    dns = FakeDNS({"rebind.example": [["93.184.215.14"], ["127.0.0.1"]]})
    assert [r["host"] for r in await dns.resolve("rebind.example", port)] == ["93.184.215.14"]  # at create
    sender = Sender([], connect_timeout_s=2, total_timeout_s=5, dns=dns)
    await sender.start()
    try:
        result = await sender.post(f"http://rebind.example:{port}/", b"{}", {})
    finally:
        await sender.stop()
    assert (result.status_code, result.error) == (None, TARGET_REFUSED)
    assert reached == [], "no request reached the loopback listener"


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[str]]]:
    """A loopback receiver with one route per behaviour; records the paths requested."""
    requested: list[str] = []
    never = asyncio.Event()

    async def record(request: web.Request) -> None:
        requested.append(request.path)
        await request.read()

    async def redirect(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=307, headers={"Location": "/target"})

    async def target(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(text="should never be reached by a webhook")

    async def huge(request: web.Request) -> web.StreamResponse:
        await record(request)
        response = web.StreamResponse(status=500)
        await response.prepare(request)
        for _ in range(64):  # 64 MiB on offer; the sender must take 1 KiB and hang up
            await response.write(b"x" * (1 << 20))
        return response

    async def silent(request: web.Request) -> web.Response:
        await record(request)
        await never.wait()  # answers nothing; the client's timeout ends it
        return web.Response()

    app = web.Application()
    for path, handler in [("/redirect", redirect), ("/target", target), ("/huge", huge), ("/silent", silent)]:
        app.router.add_post(path, handler)
    async with serving(app, shutdown_timeout=0.1) as port:
        try:
            yield f"http://127.0.0.1:{port}", requested
        finally:
            never.set()  # before the runner's cleanup, which waits for the silent handler


async def send(url: str, *, total_timeout_s: float = 5) -> SendResult:
    sender = Sender(LOOPBACK, connect_timeout_s=2, total_timeout_s=total_timeout_s)
    await sender.start()
    try:
        return await sender.post(url, b"{}", {})
    finally:
        await sender.stop()


async def test_a_redirect_is_an_answer_not_followed(receiver: tuple[str, list[str]]) -> None:
    base, requested = receiver
    result = await send(f"{base}/redirect")
    assert (result.status_code, result.error) == (307, "HTTP 307")
    assert requested == ["/redirect"], "the Location was never requested: a webhook goes where it was told only"


async def test_only_an_excerpt_of_a_large_answer_is_read(receiver: tuple[str, list[str]]) -> None:
    base, _ = receiver
    result = await send(f"{base}/huge")
    assert result.status_code == 500
    assert result.excerpt is not None and len(result.excerpt.encode()) <= RESPONSE_EXCERPT_BYTES


async def test_a_receiver_that_never_answers_is_a_timeout(receiver: tuple[str, list[str]]) -> None:
    base, requested = receiver
    result = await send(f"{base}/silent", total_timeout_s=0.5)
    assert (result.status_code, result.error) == (None, "timed out")
    assert requested == ["/silent"], "the request was sent; the answer never came"


def test_every_connection_goes_through_the_policy_literals_included() -> None:
    """The connector's socket factory sees the address each connection is made to: the one
    place that holds for literals too (aiohttp resolves no literal)."""
    import socket

    from jobwire.webhooks.ssrf import TargetRefused, guarded_socket

    make = guarded_socket(LOOPBACK)
    with pytest.raises(TargetRefused):
        make((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 443)))
    with pytest.raises(TargetRefused):
        make((socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::ffff:10.0.0.5", 443, 0, 0)))
    allowed = make((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 443)))
    allowed.close()


@pytest.mark.parametrize("url", ["https://１６９.２５４.１６９.２５４/x", "https://１０。０。０。５:8443/x"])
def test_the_reported_unicode_hosts_are_refused_whatever_is_allowed(url: str) -> None:
    from jobwire.webhooks.ssrf import TargetRefused, check_target_url

    with pytest.raises(TargetRefused, match="non-ASCII"):
        check_target_url(url, [ipaddress.ip_network("0.0.0.0/0")])


async def test_through_the_egress_proxy_the_target_is_still_checked_and_the_proxy_never_asked() -> None:
    """With JOBWIRE_EGRESS_PROXY the dispatcher connects to the proxy only; the target's name is
    resolved and checked first, so a name answering a private address never reaches the proxy."""
    from tests.support.connect_proxy import ConnectProxy

    dns = FakeDNS({"internal.example": [["10.0.0.5"]],
                   # One public address beside private ones (IPv6 too): the proxy may pick any.
                   "mixed.example": [["93.184.216.34", "169.254.169.254", "fd00::1"]]})
    async with ConnectProxy() as proxy:
        sender = Sender([], connect_timeout_s=2, total_timeout_s=5, dns=dns, proxy=proxy.url)
        await sender.start()
        try:
            results = [await sender.post(f"https://{host}:8443/hook", b"{}", {})
                       for host in ("internal.example", "mixed.example")]
        finally:
            await sender.stop()
    assert [(r.status_code, r.error) for r in results] == [(None, TARGET_REFUSED)] * 2
    assert proxy.targets == [], "the proxy was never asked to connect"


async def test_a_receivers_cookies_are_never_kept_or_sent_on() -> None:
    """One session sends every tenant's webhooks: a cookie one receiver sets (new ones on every
    answer) must not ride along to the next request for that host, another endpoint's, maybe
    another tenant's. Reached by name, not address: a cookie jar keeps nothing for an IP
    address anyway."""
    cookies_seen: list[str | None] = []

    async def hook(request: web.Request) -> web.Response:
        cookies_seen.append(request.headers.get("Cookie"))
        response = web.Response(text="ok")
        for n in range(20):
            response.set_cookie(f"c{len(cookies_seen)}_{n}", "a-secret-of-tenant-a", path="/")
        return response

    app = web.Application()
    app.router.add_post("/{endpoint}", hook)
    sender = Sender(LOOPBACK, connect_timeout_s=2, total_timeout_s=5,
                    dns=FakeDNS({"hooks.example": ["127.0.0.1"]}))
    async with serving(app) as port:
        await sender.start()
        try:
            for endpoint in ("tenant-a", "tenant-b", "tenant-b"):
                result = await sender.post(f"http://hooks.example:{port}/{endpoint}", b"{}", {})
                assert result.status_code == 200, result
        finally:
            await sender.stop()
    assert cookies_seen == [None, None, None]
