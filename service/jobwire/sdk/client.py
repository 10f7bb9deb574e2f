"""Client SDK for the status API.

    async with Client("http://127.0.0.1:8000", api_key) as client:
        task = await client.submit("wordcount", {"text": "to be or not to be"})
        done = await client.wait(task["id"], timeout_s=30)

Reads after this client's own writes carry the write's ``Jobwire-Position``, so they see the
write even when a load balancer sends them to another API replica.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson

from jobwire.errors import JobwireError
from jobwire.positions import Position


class ApiError(JobwireError):
    """A problem+json answer; ``status`` and ``problem`` (the parsed body) say what went wrong."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{status}: {problem.get('detail') or problem.get('title')}")
        self.status = status
        self.problem = problem


class Client:
    def __init__(self, base_url: str, api_key: str, *, timeout_s: float = 90.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._job_positions: dict[str, str] = {}  # job id -> position of this client's last write to it
        self._last_position: str | None = None

    async def __aenter__(self) -> Client:
        self._session = aiohttp.ClientSession(timeout=self._timeout, json_serialize=lambda o: orjson.dumps(o).decode())
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _remember(self, header: str | None, body: Any) -> None:
        if header:
            Position.parse(header)  # refuse to echo anything that is not a position
            self._last_position = header
            if isinstance(body, dict) and isinstance(body.get("id"), str):
                self._job_positions[body["id"]] = header

    def _read_headers(self, job_id: str | None = None) -> dict[str, str]:
        # A position orders records only within its partition; a job's writes all share one
        # (key = job id), so a read of a job waits for this client's last write to that job.
        position = self._job_positions.get(job_id) if job_id else self._last_position
        return {"Jobwire-Position": position} if position else {}

    async def _request(self, method: str, path: str, *, json: Any = None, headers: dict[str, str] | None = None,
                       params: dict[str, Any] | None = None, expect: tuple[int, ...] = (200, 202)) -> tuple[int, Any, Any]:
        if self._session is None:
            raise RuntimeError("use `async with Client(...)`")
        async with self._session.request(method, self.base_url + path, json=json, params=params,
                                         headers={**self._headers, **(headers or {})},
                                         allow_redirects=False) as response:
            raw = await response.read()
            body = orjson.loads(raw) if raw else None
            if response.status not in expect:
                raise ApiError(response.status, body if isinstance(body, dict) else {"detail": str(body)})
            self._remember(response.headers.get("Jobwire-Position"), body)
            return response.status, body, response.headers

    async def submit(self, operation: str, parameters: dict[str, Any], *, metadata: dict[str, Any] | None = None,
                     idempotency_key: str | None = None, wait_s: int | None = None,
                     timeout_s: float | None = None, pending_timeout_s: float | None = None,
                     heartbeat_timeout_s: float | None = None, input: dict[str, Any] | None = None,
                     webhook_url: str | None = None, webhook_events: builtins.list[str] | None = None
                     ) -> dict[str, Any]:
        """Submit a job; the deadlines (seconds) default to the server's for the operation.
        ``input``: ``{"file_id": ...}`` (a file uploaded with ``upload``), or ``{"upload":
        {"content_type"?, "filename"?, "timeout_s"?}}`` for a job that waits for ``put_input``.
        ``webhook_url``: this job's own callback (``webhook_events``, the terminal ones by
        default), signed with ``callback_secret()``."""
        headers = {}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        if wait_s:
            headers["Prefer"] = f"wait={wait_s}"
        body: dict[str, Any] = {"operation": operation, "parameters": parameters}
        if metadata is not None:
            body["metadata"] = metadata
        deadlines = {"timeout_s": timeout_s, "pending_timeout_s": pending_timeout_s,
                     "heartbeat_timeout_s": heartbeat_timeout_s}
        body.update({name: seconds for name, seconds in deadlines.items() if seconds is not None})
        if input is not None:
            body["input"] = input
        if webhook_url is not None:
            body["webhook_url"] = webhook_url
            if webhook_events is not None:
                body["webhook_events"] = webhook_events
        _, task, _ = await self._request("POST", "/v1/jobs", json=body, headers=headers)
        return dict(task)

    async def upload(self, data: bytes, *, filename: str, content_type: str = "application/octet-stream"
                     ) -> dict[str, Any]:
        """Store ``data`` as a file of the tenant's (``POST /v1/files``); the file object."""
        headers = {**self._headers, "Content-Type": content_type, "X-Checksum-SHA256": hashlib.sha256(data).hexdigest()}
        _, file = await self._bytes("POST", self.base_url + "/v1/files?" + urlencode({"filename": filename}),
                                    data, headers, expect=(201,))
        return dict(orjson.loads(file))

    async def put_input(self, task: dict[str, Any], data: bytes) -> dict[str, Any]:
        """Upload the input a job waits for, to the URL and with the headers its task shows."""
        upload = task["input"]
        _, file = await self._bytes("PUT", upload["upload_url"], data, dict(upload["upload_headers"]))
        return dict(orjson.loads(file))

    async def download(self, url: str) -> bytes:
        """The bytes behind a signed URL (a task's ``result_url``, a file's ``url``)."""
        _, body = await self._bytes("GET", url, None, {})
        return body

    async def _bytes(self, method: str, url: str, data: bytes | None, headers: dict[str, str],
                     expect: tuple[int, ...] = (200,)) -> tuple[int, bytes]:
        # A signed URL is its own credential (and may be the store's, not ours): no API key on it.
        if self._session is None:
            raise RuntimeError("use `async with Client(...)`")
        async with self._session.request(method, url, data=data, headers=headers, allow_redirects=False) as response:
            raw = await response.read()
            if response.status not in expect:
                try:
                    problem = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    problem = {"detail": raw[:500].decode("utf-8", "replace")}
                raise ApiError(response.status, problem if isinstance(problem, dict) else {"detail": str(problem)})
            return response.status, raw

    async def submit_batch(self, jobs: builtins.list[dict[str, Any]]) -> builtins.list[dict[str, Any]]:
        """Up to 100 jobs, each ``{"job": <submit body>, "idempotency_key"?: str}``; returns,
        in order, each one's ``{index, status, task, position}`` or ``{index, status, problem}``."""
        _, answer, _ = await self._request("POST", "/v1/jobs:batch", json={"jobs": jobs})
        return builtins.list(answer["data"])

    async def get(self, job_id: str) -> dict[str, Any]:
        _, task, _ = await self._request("GET", f"/v1/jobs/{job_id}", headers=self._read_headers(job_id))
        return dict(task)

    # Annotations below this method name the builtin as builtins.list: inside the class, `list`
    # is this method.
    async def list(self, **filters: Any) -> dict[str, Any]:
        params = {k: str(v) for k, v in filters.items() if v is not None}
        _, page, _ = await self._request("GET", "/v1/jobs", params=params, headers=self._read_headers())
        return dict(page)

    async def cancel(self, job_id: str, reason: str | None = None) -> dict[str, Any]:
        _, task, _ = await self._request("POST", f"/v1/jobs/{job_id}/cancel", json={"reason": reason})
        return dict(task)

    async def events(self, job_id: str, *, max_entries: int = 100_000) -> builtins.list[dict[str, Any]]:
        """The job's whole history (page by page), up to ``max_entries``."""
        entries: builtins.list[dict[str, Any]] = []
        cursor: str | None = None
        while len(entries) < max_entries:
            query = f"?cursor={cursor}" if cursor else ""
            _, page, _ = await self._request("GET", f"/v1/jobs/{job_id}/events{query}",
                                             headers=self._read_headers(job_id))
            entries += page["data"]
            cursor = page.get("next_cursor")
            if not page.get("has_more") or not cursor:
                break
        return entries[:max_entries]

    # --- webhooks -----------------------------------------------------------------------------

    async def create_endpoint(self, url: str, *, event_types: builtins.list[str] | None = None,
                              description: str | None = None, rate_limit_per_s: float | None = None,
                              signing: str | None = None, filter: dict[str, Any] | None = None,
                              headers: dict[str, str] | None = None, auth: dict[str, str] | None = None,
                              tls_client_cert: dict[str, str] | None = None, tls_ca: str | None = None,
                              ordering: str | None = None) -> dict[str, Any]:
        """Register an endpoint; the answer carries its ``secret``, shown only here (with
        ``signing="ed25519"``, its ``public_key`` instead: ``v1a`` signatures). ``filter``:
        conditions on the task (``{"operation": {"in": [...]}, "metadata.customer": "x"}``).
        ``headers``, ``auth`` (``{"type": "bearer", "token": ...}`` or ``{"type": "basic",
        "username": ..., "password": ...}``): sent with every request; shown only by name.
        ``tls_client_cert`` (``{"cert": PEM, "key": PEM}``): presented to a receiver that asks
        for one (mTLS); ``tls_ca``: PEM certificates the receiver's certificate is checked against.
        ``ordering="job"``: a job's webhooks go one at a time, in the order of its events."""
        body: dict[str, Any] = {"url": url, "event_types": event_types, "description": description}
        if rate_limit_per_s is not None:
            body["rate_limit_per_s"] = rate_limit_per_s
        if signing is not None:
            body["signing"] = signing
        body.update({name: value for name, value in (("filter", filter), ("headers", headers), ("auth", auth),
                                                     ("tls_client_cert", tls_client_cert), ("tls_ca", tls_ca),
                                                     ("ordering", ordering))
                     if value is not None})
        _, endpoint, _ = await self._request("POST", "/v1/webhooks/endpoints", json=body, expect=(201,))
        return dict(endpoint)

    async def public_keys(self, endpoint_id: str) -> builtins.list[dict[str, Any]]:
        """An ed25519 endpoint's live ``whpk_`` public keys, current first, with ``expires_at``."""
        _, page, _ = await self._request("GET", f"/v1/webhooks/endpoints/{endpoint_id}/public-key")
        return list(page["data"])

    async def endpoints(self) -> builtins.list[dict[str, Any]]:
        _, page, _ = await self._request("GET", "/v1/webhooks/endpoints")
        return list(page["data"])

    async def endpoint(self, endpoint_id: str) -> dict[str, Any]:
        _, endpoint, _ = await self._request("GET", f"/v1/webhooks/endpoints/{endpoint_id}")
        return dict(endpoint)

    async def update_endpoint(self, endpoint_id: str, **changes: Any) -> dict[str, Any]:
        _, endpoint, _ = await self._request("PATCH", f"/v1/webhooks/endpoints/{endpoint_id}", json=changes)
        return dict(endpoint)

    async def rotate_secret(self, endpoint_id: str, grace_period_s: int | None = None) -> dict[str, Any]:
        body = {"grace_period_s": grace_period_s} if grace_period_s is not None else {}
        _, endpoint, _ = await self._request("POST", f"/v1/webhooks/endpoints/{endpoint_id}/rotate-secret", json=body)
        return dict(endpoint)

    async def send_test(self, endpoint_id: str) -> dict[str, Any]:
        _, delivery, _ = await self._request("POST", f"/v1/webhooks/endpoints/{endpoint_id}/test")
        return dict(delivery)

    async def create_webhook_link(self) -> dict[str, Any]:
        """A one-time URL (valid for minutes) that opens the webhook portal signed in for this
        tenant, for someone who should manage its endpoints without holding its API key."""
        _, link, _ = await self._request("POST", "/v1/webhooks/portal-link", expect=(201,))
        return dict(link)

    async def callback_secret(self) -> str:
        """The secret this tenant's job callbacks (``webhook_url``) are signed with."""
        _, answer, _ = await self._request("GET", "/v1/webhooks/callback-secret")
        return str(answer["secret"])

    async def job_deliveries(self, job_id: str) -> builtins.list[dict[str, Any]]:
        """A job's deliveries: to the tenant's endpoints and to its own callback, newest first."""
        _, page, _ = await self._request("GET", f"/v1/jobs/{job_id}/deliveries")
        return builtins.list(page["data"])

    async def deliveries(self, endpoint_id: str, status: str | None = None) -> builtins.list[dict[str, Any]]:
        params = {"status": status} if status else None
        _, page, _ = await self._request("GET", f"/v1/webhooks/endpoints/{endpoint_id}/deliveries", params=params)
        return list(page["data"])

    async def retry_delivery(self, delivery_id: str) -> dict[str, Any]:
        _, delivery, _ = await self._request("POST", f"/v1/webhooks/deliveries/{delivery_id}/retry")
        return dict(delivery)

    async def recover(self, endpoint_id: str, since: str) -> dict[str, Any]:
        _, result, _ = await self._request("POST", f"/v1/webhooks/endpoints/{endpoint_id}/recover", json={"since": since})
        return dict(result)

    async def wait(self, job_id: str, timeout_s: float = 60.0, *, poll_s: int = 25) -> dict[str, Any]:
        """The task once it is terminal, by long-polling (``Prefer: wait``); TimeoutError after
        ``timeout_s``. Each poll returns as soon as the job changes, so this never sleeps."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        task = await self.get(job_id)
        while task["status"] not in ("completed", "failed", "canceled"):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"job {job_id} is still {task['status']} after {timeout_s:g}s")
            wait = max(1, min(poll_s, int(remaining)))
            status, body, _ = await self._request(
                "GET", f"/v1/jobs/{job_id}",
                headers={**self._read_headers(job_id), "Prefer": f"wait={wait}", "If-None-Match": f'"{task["version"]}"'},
                expect=(200, 304),
            )
            if status == 200:  # 304: nothing changed within this poll; keep what we have
                task = body
        return task

    async def stream(self, job_id: str) -> AsyncIterator[dict[str, Any]]:
        """History entries as server-sent events, live until the job is terminal."""
        if self._session is None:
            raise RuntimeError("use `async with Client(...)`")
        headers = {**self._headers, **self._read_headers(job_id), "Accept": "text/event-stream"}
        async with self._session.get(f"{self.base_url}/v1/jobs/{job_id}/events", headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=None, sock_read=60)) as response:
            if response.status != 200:
                raise ApiError(response.status, orjson.loads(await response.read()))
            data_lines: list[bytes] = []
            async for line in response.content:
                line = line.rstrip(b"\r\n")
                if line.startswith(b"data:"):
                    data_lines.append(line[5:].lstrip())
                elif not line and data_lines:
                    yield orjson.loads(b"\n".join(data_lines))
                    data_lines = []
