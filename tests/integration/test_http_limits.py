"""What a hostile or careless client cannot do to a real API replica (real broker, uvicorn on
loopback): oversized or endless request heads, stalled bodies, too many connections, too many
long-polls, streams or requests per tenant; and what every answer carries.

Raw-socket tests talk to the server through asyncio streams, since the server runs on the same
event loop. Every wait is bounded; none depends on how fast the machine is."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from jobwire.api import jobs
from jobwire.kafka.admin import ensure_topics
from tests.conftest import settings_for
from tests.support.servers import running_api

ACME_KEY = "key_acme_0123456789"
GLOBEX_KEY = "key_globex_0123456789"
ACME = {"X-API-Key": ACME_KEY}
GLOBEX = {"X-API-Key": GLOBEX_KEY}
BOUND_S = 20.0  # the most any one wait below may take; the limits under test are far shorter


@contextlib.asynccontextmanager
async def api(kafka_bootstrap: str, **env: str) -> AsyncIterator[tuple[str, int]]:
    settings = settings_for(kafka_bootstrap, JOBWIRE_API_KEYS=f"acme:{ACME_KEY},globex:{GLOBEX_KEY}", **env)
    await ensure_topics(settings)
    async with running_api(settings) as url:
        yield url, int(url.rsplit(":", 1)[1])


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def until_closed(reader: asyncio.StreamReader, limit_s: float = BOUND_S) -> bytes:
    """All the server sends until it closes the connection; fails if it is still open after
    ``limit_s``. A reset counts as closed."""
    received = b""
    async with asyncio.timeout(limit_s):
        with contextlib.suppress(ConnectionResetError):
            while chunk := await reader.read(65536):
                received += chunk
    return received


async def send(writer: asyncio.StreamWriter, data: bytes) -> bool:
    """False once the server has closed its end (it may, mid-way through a hostile request)."""
    try:
        writer.write(data)
        await writer.drain()
    except (ConnectionResetError, BrokenPipeError):
        return False
    return True


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


async def healthy(url: str) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as response:
        assert response.status == 200


async def create_job(http: aiohttp.ClientSession, url: str, headers: dict[str, str] = ACME) -> dict[str, Any]:
    async with http.post(f"{url}/v1/jobs", json={"operation": "manual", "parameters": {}}, headers=headers) as response:
        assert response.status == 202, await response.text()
        task: dict[str, Any] = await response.json()
        return task


# --- request heads ---------------------------------------------------------------------------


async def test_a_head_with_too_many_headers_is_431_and_closed(kafka_bootstrap: str) -> None:
    async with api(kafka_bootstrap) as (url, port):
        reader, writer = await connect(port)
        fields = b"".join(b"X-F%d: v\r\n" % i for i in range(20_000))
        await send(writer, b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + fields + b"\r\n")
        response = await until_closed(reader)
        writer.close()
        # The refusal is written before the close; a reset may still swallow it when the
        # kernel holds unread request bytes, and then the close alone is the answer.
        if response:
            assert status_of(response) == 431 and b"over 100 header fields" in response
            assert b"x-content-type-options: nosniff" in response
        small = b"".join(b"X-F%d: v\r\n" % i for i in range(101))
        reader, writer = await connect(port)
        await send(writer, b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + small + b"\r\n")
        assert status_of(await until_closed(reader)) == 431, "101 short fields fit one read: the 431 arrives"
        writer.close()
        await healthy(url)


async def test_an_endless_header_is_cut_off_long_before_8_mib(kafka_bootstrap: str) -> None:
    async with api(kafka_bootstrap) as (url, port):
        reader, writer = await connect(port)
        closed = asyncio.create_task(until_closed(reader))
        await send(writer, b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ")
        sent = 0
        chunk = b"a" * 65536
        while sent < 8 << 20 and not closed.done() and await send(writer, chunk):
            sent += len(chunk)
        response = await closed
        writer.close()
        assert not response or status_of(response) == 431
        await healthy(url)


async def test_a_head_just_over_the_byte_limit_is_431(kafka_bootstrap: str) -> None:
    async with api(kafka_bootstrap, JOBWIRE_HTTP_MAX_HEADER_BYTES="4096") as (url, port):
        reader, writer = await connect(port)
        await send(writer, b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
        response = await until_closed(reader)
        writer.close()
        assert status_of(response) == 431 and b"over 4096 bytes" in response
        reader, writer = await connect(port)
        await send(writer, b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 3000 + b"\r\n\r\n")
        assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200"), "under the limit is fine"
        writer.close()


async def test_a_half_sent_head_without_a_key_gets_408_and_is_closed(kafka_bootstrap: str) -> None:
    async with api(kafka_bootstrap, JOBWIRE_HTTP_HEADER_TIMEOUT_S="1") as (url, port):
        reader, writer = await connect(port)
        await send(writer, b"POST /v1/jobs HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n")
        response = await until_closed(reader)
        writer.close()
        assert status_of(response) == 408 and b"application/problem+json" in response


async def test_a_trickled_head_does_not_hold_the_connection(kafka_bootstrap: str) -> None:
    async with api(kafka_bootstrap, JOBWIRE_HTTP_HEADER_TIMEOUT_S="1") as (url, port):
        reader, writer = await connect(port)
        closed = asyncio.create_task(until_closed(reader))
        head = b"GET /v1/jobs HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(100))
        started = time.monotonic()
        # A slowloris: a byte every 50 ms, for far longer than the 1 s the head may take.
        for byte in head[:400]:
            if closed.done() or time.monotonic() - started > BOUND_S or not await send(writer, bytes([byte])):
                break
            await asyncio.sleep(0.05)
        response = await closed
        writer.close()
        assert closed.done() and (not response or status_of(response) == 408)
        assert time.monotonic() - started < BOUND_S


async def test_a_connection_that_sends_nothing_is_closed(kafka_bootstrap: str) -> None:
    async with api(kafka_bootstrap, JOBWIRE_HTTP_HEADER_TIMEOUT_S="1") as (url, port):
        reader, writer = await connect(port)
        assert await until_closed(reader) == b"", "closed without a word: no request was begun"
        writer.close()
        # Blank lines begin no request, and do not hold the connection open either.
        reader, writer = await connect(port)
        closed = asyncio.create_task(until_closed(reader))
        for _ in range(400):
            if closed.done() or not await send(writer, b"\r\n"):
                break
            await asyncio.sleep(0.05)
        assert await closed == b""
        writer.close()


async def test_a_keep_alive_connection_gets_the_same_deadline_for_its_next_head(kafka_bootstrap: str) -> None:
    async with api(kafka_bootstrap, JOBWIRE_HTTP_HEADER_TIMEOUT_S="1", JOBWIRE_HTTP_KEEPALIVE_S="60") as (url, port):
        reader, writer = await connect(port)
        await send(writer, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
        await send(writer, b"GET /healthz HTTP/1.1\r\n")
        response = await until_closed(reader)
        writer.close()
        assert b"HTTP/1.1 408" in response, "a half-sent second request is cut off too"


async def test_pipelined_requests_are_still_served(kafka_bootstrap: str) -> None:
    async with api(kafka_bootstrap, JOBWIRE_HTTP_HEADER_TIMEOUT_S="1") as (url, port):
        reader, writer = await connect(port)
        body = b'{"operation": "ocr", "parameters": {}}'
        await send(writer, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
                   b"POST /v1/jobs HTTP/1.1\r\nHost: t\r\nX-API-Key: " + ACME_KEY.encode()
                   + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
                   + b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        response = await until_closed(reader)
        writer.close()
        assert re.findall(rb"HTTP/1\.1 (\d{3}) ", response) == [b"200", b"202", b"200"]


# --- bodies ----------------------------------------------------------------------------------


async def test_a_stalled_body_gets_408_and_is_closed(kafka_bootstrap: str) -> None:
    async with api(kafka_bootstrap, JOBWIRE_HTTP_BODY_TIMEOUT_S="1") as (url, port):
        reader, writer = await connect(port)
        await send(writer, b"POST /v1/jobs HTTP/1.1\r\nHost: t\r\nX-API-Key: " + ACME_KEY.encode()
                   + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"operation\"")
        response = await until_closed(reader)
        writer.close()
        assert status_of(response) == 408 and b"body did not arrive" in response
        async with aiohttp.ClientSession() as http, http.get(f"{url}/v1/jobs", headers=ACME) as listed:
            assert (await listed.json())["data"] == [], "nothing was created"


# --- connections -----------------------------------------------------------------------------


async def test_connections_over_the_limit_are_refused_until_one_closes(kafka_bootstrap: str) -> None:
    async with api(kafka_bootstrap, JOBWIRE_HTTP_MAX_CONNECTIONS="4", JOBWIRE_HTTP_HEADER_TIMEOUT_S="60") as (url, port):
        held = [await connect(port) for _ in range(4)]
        reader, writer = await connect(port)
        response = await until_closed(reader)
        writer.close()
        assert status_of(response) == 503 and b"retry-after: 1" in response
        held.pop()[1].close()
        # The server sees the close asynchronously: retry, boundedly, until a slot is free.
        deadline = time.monotonic() + BOUND_S
        status = None
        while status != 200 and time.monotonic() < deadline:
            reader, writer = await connect(port)
            await send(writer, b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            response = await until_closed(reader)
            writer.close()
            status = status_of(response) if response else None
            if status != 200:
                await asyncio.sleep(0.05)
        assert status == 200
        for _, held_writer in held:
            held_writer.close()


# --- per tenant ------------------------------------------------------------------------------


async def test_long_polls_over_the_tenant_cap_are_429_before_anything_is_done(kafka_bootstrap: str) -> None:
    async with api(kafka_bootstrap, JOBWIRE_LONG_POLLS_PER_TENANT="2") as (url, _), \
            aiohttp.ClientSession() as http:
        task = await create_job(http, url)
        waiting = {**ACME, "Prefer": "wait=60"}

        async def long_poll() -> int:
            # A probe below may hold a slot for a moment: until this poll has one, retry.
            deadline = time.monotonic() + BOUND_S
            while True:
                async with http.get(f"{url}/v1/jobs/{task['id']}", headers=waiting) as response:
                    if response.status != 429 or time.monotonic() > deadline:
                        return response.status
                await asyncio.sleep(0.02)

        polls = [asyncio.create_task(long_poll()) for _ in range(2)]
        # Short polls take a slot too; once both long ones hold theirs, a short one is refused.
        deadline = time.monotonic() + BOUND_S
        refused = None
        while refused is None and time.monotonic() < deadline:
            async with http.get(f"{url}/v1/jobs/{task['id']}", headers={**ACME, "Prefer": "wait=0.05"}) as response:
                if response.status == 429:
                    refused = response
                    problem = await response.json(content_type=None)
                    continue
            await asyncio.sleep(0.1)  # a pause between probes, in which a long poll can take its slot
        assert refused is not None and refused.headers["Retry-After"] == "1"
        assert refused.headers["Content-Type"] == "application/problem+json" and "at most 2" in problem["detail"]
        async with http.post(f"{url}/v1/jobs", json={"operation": "manual", "parameters": {}},
                             headers={**ACME, "Prefer": "wait=5"}) as submitted:
            assert submitted.status == 429, "a waiting submit is refused too"
        async with http.get(f"{url}/v1/jobs", headers=ACME) as listed:
            assert [t["id"] for t in (await listed.json())["data"]] == [task["id"]], "and it created no job"
        async with http.get(f"{url}/v1/jobs/{task['id']}", headers=ACME) as plain:
            assert plain.status == 200, "a request that does not wait needs no slot"
        other = await create_job(http, url, GLOBEX)
        async with http.get(f"{url}/v1/jobs/{other['id']}", headers={**GLOBEX, "Prefer": "wait=0.05"}) as response:
            assert response.status == 200, "another tenant has its own allowance"
        # A change ends both long-polls; their slots come back.
        async with http.post(f"{url}/v1/jobs/{task['id']}/events", json={"type": "job.started"}, headers=ACME) as started:
            assert started.status == 202
        async with asyncio.timeout(BOUND_S):
            assert await asyncio.gather(*polls) == [200, 200]
        async with http.post(f"{url}/v1/jobs", json={"operation": "manual", "parameters": {}},
                             headers={**ACME, "Prefer": "wait=0.05"}) as submitted:
            assert submitted.status == 202


async def test_streams_over_the_tenant_cap_are_429_and_a_closed_stream_frees_its_slot(kafka_bootstrap: str) -> None:
    async with api(kafka_bootstrap, JOBWIRE_STREAMS_PER_TENANT="1") as (url, _), aiohttp.ClientSession() as http:
        task = await create_job(http, url)
        events_url = f"{url}/v1/jobs/{task['id']}/events"
        sse = {**ACME, "Accept": "text/event-stream"}
        first = await http.get(events_url, headers=sse)
        assert first.status == 200 and first.headers["X-Content-Type-Options"] == "nosniff"
        async with asyncio.timeout(BOUND_S):
            assert (await first.content.readline()).startswith(b"id: "), "the stream is live"
        async with http.get(events_url, headers=sse) as second:
            assert second.status == 429 and second.headers["Retry-After"] == "1"
        async with http.get(events_url, headers=ACME) as history:
            assert history.status == 200, "the plain history is no stream"
        first.close()  # the client goes away mid-stream
        async with aiohttp.ClientSession() as fresh:  # a new connection, not the one just closed
            deadline = time.monotonic() + BOUND_S
            status = None
            while status != 200 and time.monotonic() < deadline:
                again = await fresh.get(events_url, headers=sse)
                status = again.status
                again.close()
                if status != 200:
                    await asyncio.sleep(0.05)
            assert status == 200, "the closed stream's slot came back"


async def test_a_key_over_its_rate_gets_429_with_retry_after(kafka_bootstrap: str) -> None:
    # A rate so low that no token comes back during the test, however slow the machine.
    async with api(kafka_bootstrap, JOBWIRE_RATE_LIMIT_PER_S="0.001", JOBWIRE_RATE_LIMIT_BURST="3") as (url, _), \
            aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(4):
            async with http.get(f"{url}/v1/jobs", headers=ACME) as response:
                statuses.append(response.status)
                retry = response.headers.get("Retry-After")
        assert statuses == [200, 200, 200, 429] and retry is not None and int(retry) >= 1
        async with http.get(f"{url}/v1/jobs") as anonymous:
            assert anonymous.status == 401, "without a key: 401, never 429"
        async with http.get(f"{url}/v1/jobs", headers=GLOBEX) as other:
            assert other.status == 200


# --- what every answer carries, and what submit refuses --------------------------------------


async def test_every_answer_is_nosniff(kafka_bootstrap: str) -> None:
    async with api(kafka_bootstrap) as (url, _), aiohttp.ClientSession() as http:
        task = await create_job(http, url)
        requests = [("GET", f"/v1/jobs/{task['id']}", ACME), ("GET", "/v1/jobs/job_none", ACME),
                    ("GET", "/v1/jobs", {}), ("GET", "/nowhere", {}), ("PUT", "/v1/jobs", ACME),
                    ("GET", "/metrics", {}), ("GET", "/portal", {}), ("GET", "/healthz", {}),
                    ("GET", "/openapi.json", {})]
        for method, path, headers in requests:
            async with http.request(method, f"{url}{path}", headers=headers) as response:
                assert response.headers.getall("X-Content-Type-Options") == ["nosniff"], (method, path)


async def test_submit_refuses_nesting_past_the_depth_limit(kafka_bootstrap: str) -> None:
    from jobwire.events import MAX_DEPTH

    deep: Any = {}
    for _ in range(MAX_DEPTH + 5):
        deep = {"a": deep}
    async with api(kafka_bootstrap) as (url, _), aiohttp.ClientSession() as http:
        async with http.post(f"{url}/v1/jobs", json={"operation": "ocr", "parameters": deep}, headers=ACME) as response:
            assert response.status == 422
            problem = await response.json(content_type=None)
        assert problem["errors"][0]["pointer"].startswith("/parameters/a/a/")
        async with http.get(f"{url}/v1/jobs", headers=ACME) as listed:
            assert (await listed.json())["data"] == []


async def test_submit_refuses_a_task_over_the_size_limit_with_413(kafka_bootstrap: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # With today's limits an event that fits the log makes a task that fits too; a smaller task
    # limit shows the check that stands guard should either limit move.
    monkeypatch.setattr(jobs, "MAX_TASK_BYTES", 64 * 1024)
    async with api(kafka_bootstrap) as (url, _), aiohttp.ClientSession() as http:
        body = {"operation": "ocr", "parameters": {"pages": [{}] * 30_000}, "metadata": {"m": "x"}}
        async with http.post(f"{url}/v1/jobs", data=orjson.dumps(body),
                             headers={**ACME, "Content-Type": "application/json"}) as response:
            assert response.status == 413
            problem = await response.json(content_type=None)
        assert problem["errors"] == [{"pointer": "/parameters", "detail": "makes the task object too large"}]
        async with http.get(f"{url}/v1/jobs", headers=ACME) as listed:
            assert (await listed.json())["data"] == [], "nothing was published"
