"""Routes against a projection fed directly (no broker): statuses, headers, problems."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from jobwire.api.app import ApiComponents, create_app
from jobwire.config import load_settings
from jobwire.events import new_event
from tests.support.memlog import MemoryLog, MemoryTopic, memory_components

ACME = {"Authorization": "Bearer key_acme_0123456789"}
GLOBEX = {"X-API-Key": "key_globex_0123456789"}


@pytest.fixture
def parts() -> tuple[ApiComponents, MemoryLog, MemoryTopic]:
    return memory_components()


@pytest.fixture
def log(parts: tuple[ApiComponents, MemoryLog, MemoryTopic]) -> MemoryLog:
    return parts[1]


@pytest.fixture
def client(parts: tuple[ApiComponents, MemoryLog, MemoryTopic]) -> Iterator[TestClient]:
    settings = load_settings({
        "JOBWIRE_API_KEYS": "acme:key_acme_0123456789,globex:key_globex_0123456789",
        "JOBWIRE_MAX_BODY_BYTES": "4096",
    })
    app = create_app(settings, parts[0])
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def submit(client: TestClient, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Any:
    return client.post("/v1/jobs", json=body or {"operation": "ocr", "parameters": {"pages": 2}},
                       headers={**ACME, **(headers or {})})


async def worker_event(log: MemoryLog, job_id: str, type: str, data: dict[str, Any] | None = None) -> None:
    await log.publish(new_event(type, job_id, "acme", data or {}))


def test_submit_then_get(client: TestClient) -> None:
    created = submit(client)
    assert created.status_code == 202
    task = created.json()
    assert task["status"] == "pending" and task["object"] == "task" and task["version"] == 1
    assert created.headers["location"] == f"/v1/jobs/{task['id']}"
    assert created.headers["jobwire-position"] == "0:0"
    got = client.get(created.headers["location"], headers=ACME)
    assert got.status_code == 200 and got.json() == task
    assert got.headers["etag"] == '"1"' and got.headers["retry-after"] == "2"


def test_etag_and_304(client: TestClient) -> None:
    job_id = submit(client).json()["id"]
    assert client.get(f"/v1/jobs/{job_id}", headers={**ACME, "If-None-Match": '"1"'}).status_code == 304
    assert client.get(f"/v1/jobs/{job_id}", headers={**ACME, "If-None-Match": '"7"'}).status_code == 200


async def test_completed_job_has_no_retry_after_and_result(client: TestClient, log: MemoryLog) -> None:
    job_id = submit(client).json()["id"]
    await worker_event(log, job_id, "job.started")
    await worker_event(log, job_id, "job.completed", {"result": {"words": 3}})
    got = client.get(f"/v1/jobs/{job_id}", headers=ACME)
    assert got.json()["status"] == "completed" and "retry-after" not in got.headers
    assert client.get(f"/v1/jobs/{job_id}/result", headers=ACME).json() == {"words": 3}


async def test_result_url_is_json_unless_its_host_may_be_redirected_to(client: TestClient, log: MemoryLog) -> None:
    job_id = submit(client).json()["id"]
    early = client.get(f"/v1/jobs/{job_id}/result", headers=ACME)
    assert early.status_code == 409 and early.headers["content-type"] == "application/problem+json"
    await worker_event(log, job_id, "job.completed", {"result": {"pages": 2}, "result_url": "https://evil.example/x"})
    done = client.get(f"/v1/jobs/{job_id}/result", headers=ACME, follow_redirects=False)
    assert done.status_code == 200, "no open redirect under the API's name"
    assert done.json() == {"object": "result_link", "result_url": "https://evil.example/x", "result_url_expires_at": None,
                           "result_checksum": None, "result": {"pages": 2}}


@pytest.mark.parametrize(("url", "redirected"), [
    ("https://files.example/out.pdf", True), ("https://eu.files.example/out.pdf", False),
    ("https://cdn.example.net/out.pdf", True), ("http://files.example/out.pdf", False),
    ("https://files.example.evil.test/out.pdf", False),
])
def test_allowed_hosts_redirect_over_https_only(url: str, redirected: bool) -> None:
    from jobwire.api.jobs import redirect_allowed

    assert redirect_allowed(url, ("files.example", "*.example.net")) is redirected


def test_idempotency_key(client: TestClient) -> None:
    first = submit(client, headers={"Idempotency-Key": "order-42"})
    again = submit(client, headers={"Idempotency-Key": "order-42"})
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = submit(client, {"operation": "ocr", "parameters": {"pages": 9}}, {"Idempotency-Key": "order-42"})
    assert other.status_code == 409 and other.json()["task"]["id"] == first.json()["id"]
    # The same key of another tenant is another job.
    theirs = client.post("/v1/jobs", json={"operation": "ocr", "parameters": {"pages": 2}},
                         headers={**GLOBEX, "Idempotency-Key": "order-42"})
    assert theirs.status_code == 202 and theirs.json()["id"] != first.json()["id"]


def test_tenants_never_see_each_other(client: TestClient, log: MemoryLog) -> None:
    job_id = submit(client).json()["id"]
    written = len(log.records)
    for method, path, body in [
        ("GET", f"/v1/jobs/{job_id}", None), ("DELETE", f"/v1/jobs/{job_id}", None),
        ("POST", f"/v1/jobs/{job_id}/cancel", None), ("GET", f"/v1/jobs/{job_id}/events", None),
        ("POST", f"/v1/jobs/{job_id}/events", {"type": "job.started", "data": {}}),
        ("POST", f"/v1/jobs/{job_id}/events", {"type": "job.completed", "data": {"result": {"stolen": True}}}),
        ("GET", f"/v1/jobs/{job_id}/result", None),
    ]:
        answer = client.request(method, path, headers=GLOBEX, json=body)
        assert answer.status_code == 404, (method, path)
        nowhere = client.request(method, path.replace(job_id, "job_nowhere"), headers=GLOBEX, json=body)
        assert answer.json()["detail"] == nowhere.json()["detail"].replace("job_nowhere", job_id), \
            "the same answer as for a job that does not exist"
    assert len(log.records) == written, "no write reached the log on another tenant's behalf"
    assert client.get("/v1/jobs", headers=GLOBEX).json()["data"] == []
    assert client.get(f"/v1/jobs/{job_id}", headers=ACME).json()["status"] == "pending"


def test_worker_events_posted_over_http_move_the_job(client: TestClient) -> None:
    job_id = submit(client).json()["id"]
    started = client.post(f"/v1/jobs/{job_id}/events", headers=ACME, json={"type": "job.started", "data": {}})
    assert started.status_code in (200, 201, 202), started.text
    position = started.headers["jobwire-position"]
    done = client.post(f"/v1/jobs/{job_id}/events", headers=ACME,
                       json={"type": "job.completed", "data": {"result": {"pages": 2}}})
    assert done.status_code in (200, 201, 202), done.text
    job = client.get(f"/v1/jobs/{job_id}", headers={**ACME, "Jobwire-Position": position}).json()
    assert (job["status"], job["result"]) == ("completed", {"pages": 2})
    unknown = client.post(f"/v1/jobs/{job_id}/events", headers=ACME, json={"type": "job.exploded", "data": {}})
    assert unknown.status_code == 422 and unknown.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(("key", "status"), [("", 400), ("k" * 256, 400), ("k" * 255, 202), ("k", 202)])
def test_idempotency_keys_are_1_to_255_characters(client: TestClient, key: str, status: int) -> None:
    answer = submit(client, headers={"Idempotency-Key": key})
    assert answer.status_code == status, answer.text
    if status == 400:
        assert "Idempotency-Key" in answer.json()["detail"]


async def test_cancel_pending_and_processing(client: TestClient, log: MemoryLog) -> None:
    pending = submit(client).json()["id"]
    canceled = client.delete(f"/v1/jobs/{pending}", headers=ACME)
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    assert client.delete(f"/v1/jobs/{pending}", headers=ACME).status_code == 409

    running = submit(client).json()["id"]
    await worker_event(log, running, "job.started")
    requested = client.post(f"/v1/jobs/{running}/cancel", json={"reason": "no longer needed"}, headers=ACME)
    assert requested.status_code == 202
    assert requested.json()["status"] == "processing" and requested.json()["cancel_requested"] is True


async def test_history_keeps_rejected_events(client: TestClient, log: MemoryLog) -> None:
    job_id = submit(client).json()["id"]
    await worker_event(log, job_id, "job.completed", {"result": {}})
    await worker_event(log, job_id, "job.failed", {"error": {"code": "late", "message": "too late"}})
    history = client.get(f"/v1/jobs/{job_id}/events", headers=ACME).json()["data"]
    assert [(h["event"]["type"], h["verdict"]) for h in history] == [
        ("job.created", "accepted"), ("job.completed", "accepted"), ("job.failed", "rejected")]
    assert history[2]["reason"] == "job is completed; terminal states never change"


async def test_a_long_history_is_read_in_pages(client: TestClient, log: MemoryLog) -> None:
    job_id = submit(client).json()["id"]
    for i in range(24):
        await worker_event(log, job_id, "job.progress", {"processed": i, "total": 100})
    seen, cursor, pages = [], None, 0
    while pages < 10:  # bounded: 25 entries in pages of 10 is 3
        params = {"limit": "10", **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/v1/jobs/{job_id}/events", headers=ACME, params=params).json()
        pages += 1
        seen += [h["position"] for h in page["data"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
        assert cursor == page["data"][-1]["position"]
    assert pages == 3 and len(seen) == len(set(seen)) == 25
    whole = client.get(f"/v1/jobs/{job_id}/events", headers=ACME).json()
    assert [h["position"] for h in whole["data"]] == seen and whole["has_more"] is False


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=x", "cursor=x", "cursor=1", "cursor=99999999999999999999:0"])
def test_history_paging_refuses_what_it_did_not_issue(client: TestClient, query: str) -> None:
    job_id = submit(client).json()["id"]
    answer = client.get(f"/v1/jobs/{job_id}/events?{query}", headers=ACME)
    assert answer.status_code == 422 and answer.headers["content-type"] == "application/problem+json"


def test_sse_replays_history_of_a_finished_job(client: TestClient) -> None:
    job_id = submit(client).json()["id"]
    client.delete(f"/v1/jobs/{job_id}", headers=ACME)
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers={**ACME, "Accept": "text/event-stream"}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        body = "".join(stream.iter_text())
    frames = [f for f in body.split("\n\n") if f.strip()]
    assert [f.splitlines()[1] for f in frames] == ["event: job.created", "event: job.canceled"]
    assert orjson.loads(frames[1].splitlines()[2].removeprefix("data: "))["event"]["type"] == "job.canceled"


def test_sse_resumes_after_last_event_id(client: TestClient) -> None:
    job_id = submit(client).json()["id"]
    client.delete(f"/v1/jobs/{job_id}", headers=ACME)
    sse = {**ACME, "Accept": "text/event-stream"}
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=sse) as stream:
        first_id = "".join(stream.iter_text()).splitlines()[0].removeprefix("id: ")
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers={**sse, "Last-Event-ID": first_id}) as stream:
        frames = [f for f in "".join(stream.iter_text()).split("\n\n") if f.strip()]
    assert [f.splitlines()[1] for f in frames] == ["event: job.canceled"]
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers={**sse, "Last-Event-ID": "not-a-position"}) as stream:
        frames = [f for f in "".join(stream.iter_text()).split("\n\n") if f.strip()]
    assert len(frames) == 2, "an id that names no position replays the whole history"


def test_worker_posts_transitions_over_http(client: TestClient) -> None:
    job_id = submit(client).json()["id"]
    started = client.post(f"/v1/jobs/{job_id}/events", json={"type": "job.started", "data": {"stage": "ocr"}}, headers=ACME)
    assert started.status_code == 202 and started.json()["stage"] == "ocr"
    progress = {"type": "job.progress", "id": "evt_p1", "data": {"total": 4, "processed": 2}}
    assert client.post(f"/v1/jobs/{job_id}/events", json=progress, headers=ACME).status_code == 202
    assert client.post(f"/v1/jobs/{job_id}/events", json=progress, headers=ACME).status_code == 200  # duplicate id
    again = client.post(f"/v1/jobs/{job_id}/events", json={"type": "job.started"}, headers=ACME)
    assert again.status_code == 409 and "not allowed while the job is processing" in again.json()["detail"]
    bad = client.post(f"/v1/jobs/{job_id}/events", json={"type": "job.progress", "data": {"total": "x"}}, headers=ACME)
    assert bad.status_code == 422
    assert {e["pointer"] for e in bad.json()["errors"]} == {"/data/total", "/data/processed"}


def test_list_filters_and_cursor(client: TestClient) -> None:
    ids = [submit(client, {"operation": "ocr" if i % 2 else "convert", "parameters": {"i": i}}).json()["id"]
           for i in range(7)]
    client.delete(f"/v1/jobs/{ids[0]}", headers=ACME)
    everything = client.get("/v1/jobs?limit=200", headers=ACME).json()
    assert [t["id"] for t in everything["data"]] == ids[::-1], "newest first"
    seen, cursor = [], None
    while True:
        page = client.get("/v1/jobs", params={"limit": 3, **({"cursor": cursor} if cursor else {})}, headers=ACME).json()
        seen += [t["id"] for t in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    assert seen == ids[::-1]
    ocr = client.get("/v1/jobs?operation=ocr", headers=ACME).json()["data"]
    assert [t["id"] for t in ocr] == [ids[5], ids[3], ids[1]]
    canceled = client.get("/v1/jobs?status=canceled&operation=convert", headers=ACME).json()["data"]
    assert [t["id"] for t in canceled] == [ids[0]]
    created_at = everything["data"][-1]["created_at"]
    after = client.get("/v1/jobs", params={"created_after": "2000-01-01T00:00:00Z", "created_before": "2100-01-01T00:00:00+02:00"}, headers=ACME)
    assert len(after.json()["data"]) == 7
    assert client.get("/v1/jobs", params={"created_before": created_at}, headers=ACME).json()["data"] == []


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/v1/jobs/job_nope", {"headers": ACME}, 404),
        ("GET", "/v1/jobs", {}, 401),
        ("GET", "/v1/jobs", {"headers": {"Authorization": "Bearer wrong_key_000000000"}}, 401),
        ("GET", "/v1/jobs", {"headers": {"Authorization": "Basic abc"}}, 401),
        ("GET", "/v1/jobs", {"headers": {"Authorization": "Bearer wrong_key_000000000", **GLOBEX}}, 401),
        ("PUT", "/v1/jobs", {"headers": ACME}, 405),
        ("GET", "/v1/nothing", {"headers": ACME}, 404),
        ("POST", "/v1/jobs", {"headers": {**ACME, "Content-Type": "application/json"}, "content": b"{oops"}, 400),
        ("POST", "/v1/jobs", {"headers": {**ACME, "Content-Type": "text/plain"}, "content": b"{}"}, 415),
        ("POST", "/v1/jobs", {"headers": ACME, "json": {"operation": "ocr", "parameters": {"x": "y" * 5000}}}, 413),
        ("POST", "/v1/jobs", {"headers": ACME, "json": {"operation": "ocr"}}, 422),
        ("POST", "/v1/jobs", {"headers": ACME, "json": [1, 2]}, 422),
        ("POST", "/v1/jobs", {"headers": {**ACME, "Accept": "text/html"}, "json": {"operation": "ocr", "parameters": {}}}, 406),
        ("GET", "/v1/jobs?status=lost", {"headers": ACME}, 422),
        ("GET", "/v1/jobs?limit=0", {"headers": ACME}, 422),
        ("GET", "/v1/jobs?limit=abc", {"headers": ACME}, 422),
        ("GET", "/v1/jobs?cursor=!!!", {"headers": ACME}, 422),
        ("GET", "/v1/jobs?cursor=", {"headers": ACME}, 422),
        ("GET", "/v1/jobs?created_after=yesterday", {"headers": ACME}, 422),
        ("GET", "/v1/jobs?created_after=2026-13-45T10:00:00.000Z", {"headers": ACME}, 422),
        ("GET", "/v1/jobs", {"headers": {**ACME, "Jobwire-Position": "soon"}}, 400),
    ],
)
def test_bad_requests(client: TestClient, method: str, path: str, kwargs: dict[str, Any], status: int) -> None:
    response = client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status and problem["title"] and problem["detail"]
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_wait_that_is_no_number_is_ignored(client: TestClient) -> None:
    # RFC 7240: a preference the server cannot honour is ignored, not an error.
    response = client.post("/v1/jobs", headers={**ACME, "Prefer": "wait=soon"}, json={"operation": "ocr", "parameters": {}})
    assert response.status_code == 202 and "preference-applied" not in response.headers


def test_schema_violation_lists_pointers(client: TestClient) -> None:
    response = submit(client, {"operation": "has spaces", "parameters": [], "extra": 1})
    assert response.status_code == 422
    assert {e["pointer"] for e in response.json()["errors"]} == {"/operation", "/parameters", "/extra"}


def test_readyz_is_503_while_behind_and_200_once_caught_up(parts: tuple[ApiComponents, MemoryLog, MemoryTopic]) -> None:
    behind = {"jobs.events:0": 120, "progress": 0.25}
    components = dataclasses.replace(parts[0], readiness=lambda: dict(behind))
    settings = load_settings({"JOBWIRE_API_KEYS": "acme:key_acme_0123456789"})
    with TestClient(create_app(settings, components), raise_server_exceptions=False) as client:
        catching_up = client.get("/readyz")
        assert catching_up.status_code == 503 and catching_up.headers["Retry-After"] == "1"
        assert catching_up.json() == {"status": "catching up", "behind": {"jobs.events:0": 120}, "progress": 0.25}
        behind.clear()
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"status": "ready"}


def test_system_routes(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    assert client.get("/metrics").status_code == 401, "no token configured, not dev mode: closed"
    assert "jobs" not in client.get("/readyz").json(), "no counts for anyone who asks"
    spec = client.get("/openapi.json").json()
    assert spec["openapi"] == "3.1.0" and "/v1/jobs/{job_id}" in spec["paths"]
    assert "Task" in spec["components"]["schemas"]
    assert "<title>jobwire API</title>" in client.get("/docs").text
    assert client.get("/asyncapi.json").json()["asyncapi"] == "3.0.0"


def nested(levels: int) -> Any:
    value: Any = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


async def test_events_the_fold_cannot_take_are_422_and_never_reach_the_log(client: TestClient, log: MemoryLog) -> None:
    job_id = submit(client).json()["id"]
    published = len(log.records)
    impossible = {"type": "job.completed", "data": {"result": {}, "result_url_expires_at": "2026-13-45T10:00:00Z"}}
    deep = {"type": "job.completed", "data": {"result": nested(80)}}
    for body, pointer in [(impossible, "/data/result_url_expires_at"), (deep, "/data/result/a/a")]:
        response = client.post(f"/v1/jobs/{job_id}/events", json=body, headers=ACME)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["errors"][0]["pointer"].startswith(pointer)
    # Clients never choose the event time; naming one is a schema violation of its own.
    timed = client.post(f"/v1/jobs/{job_id}/events", json={"type": "job.started", "time": "2026-13-45T10:00:00Z"},
                        headers=ACME)
    assert timed.status_code == 422 and timed.json()["errors"][0]["pointer"] == "/time"
    assert len(log.records) == published, "nothing was published"
    assert client.get(f"/v1/jobs/{job_id}", headers=ACME).json()["status"] == "pending"


def test_deep_parameters_are_422_pointing_into_the_body(client: TestClient, log: MemoryLog) -> None:
    response = submit(client, {"operation": "ocr", "parameters": {"x": nested(80)}})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["pointer"].startswith("/parameters/x/a/")
    assert "level limit" in response.json()["errors"][0]["detail"]
    # Deep *and* of the wrong type: the schema library gives up explaining; still a 422.
    wrong = client.post("/v1/jobs", content=b'{"operation": "ocr", "parameters": ' + b"[" * 1000 + b"]" * 1000 + b"}",
                        headers={**ACME, "Content-Type": "application/json"})
    assert wrong.status_code == 422, wrong.text
    metadata = submit(client, {"operation": "ocr", "parameters": {}, "metadata": {"m": nested(70)}})
    assert metadata.status_code == 422 and metadata.json()["errors"][0]["pointer"].startswith("/metadata/m/")
    assert log.records == []


async def test_worker_event_with_an_impossible_time_is_refused_by_the_log(log: MemoryLog) -> None:
    from jobwire.errors import InvalidEvent

    with pytest.raises(InvalidEvent, match="/time"):
        await log.publish(new_event("job.started", "job_1", "acme", {}, time="2026-13-45T10:00:00Z"))


def test_an_event_that_would_make_the_task_object_too_large_is_413(
        parts: tuple[ApiComponents, MemoryLog, MemoryTopic]) -> None:
    settings = load_settings({"JOBWIRE_API_KEYS": "acme:key_acme_0123456789", "JOBWIRE_MAX_BODY_BYTES": "1048576"})
    with TestClient(create_app(settings, parts[0]), raise_server_exceptions=False) as client:
        too_large_is_413(client)


def too_large_is_413(client: TestClient) -> None:
    job_id = submit(client, {"operation": "ocr", "parameters": {"text": "p" * 200_000}}).json()["id"]
    details = {"error": {"code": "x", "message": "m", "details": {"d": "d" * 200_000}}}
    refused = client.post(f"/v1/jobs/{job_id}/events", json={"type": "job.failed", "data": details}, headers=ACME)
    assert refused.status_code == 413 and refused.json()["errors"][0]["pointer"] == "/data"
    assert client.get(f"/v1/jobs/{job_id}", headers=ACME).json()["status"] == "pending", "nothing was published"


def test_metrics_need_their_own_token(parts: tuple[ApiComponents, MemoryLog, MemoryTopic]) -> None:
    token = "metrics-token-0123456789"
    settings = load_settings({"JOBWIRE_API_KEYS": "acme:key_acme_0123456789", "JOBWIRE_METRICS_TOKEN": token})
    with TestClient(create_app(settings, parts[0]), raise_server_exceptions=False) as client:
        assert b"jobwire_http_request_seconds" in client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).content
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer key_acme_0123456789"}).status_code == 401


def test_a_tenant_has_at_most_its_quota_of_unfinished_jobs(parts: tuple[ApiComponents, MemoryLog, MemoryTopic]) -> None:
    settings = load_settings({"JOBWIRE_API_KEYS": "acme:key_acme_0123456789,globex:key_globex_0123456789",
                              "JOBWIRE_UNFINISHED_JOBS_PER_TENANT": "2"})
    with TestClient(create_app(settings, parts[0]), raise_server_exceptions=False) as client:
        first = submit(client, headers={"Idempotency-Key": "one"}).json()
        submit(client)
        refused = submit(client)
        assert refused.status_code == 429 and refused.json()["quota"] == "unfinished_jobs_per_tenant"
        assert refused.headers["retry-after"] == "5"
        again = submit(client, headers={"Idempotency-Key": "one"})
        assert again.status_code in (200, 202) and again.json()["id"] == first["id"], "a replayed key still answers"
        assert client.post("/v1/jobs", json={"operation": "ocr", "parameters": {}}, headers=GLOBEX).status_code == 202
        # A finished job frees its place.
        assert client.post(f"/v1/jobs/{first['id']}/cancel", headers=ACME).status_code == 200
        assert submit(client).status_code == 202


@pytest.mark.parametrize("retryable", [True, False, None])
def test_a_failed_jobs_retryable_reaches_the_task_object_and_its_webhook(
        client: TestClient, parts: tuple[ApiComponents, MemoryLog, MemoryTopic], retryable: bool | None) -> None:
    from jobwire.webhooks.model import job_payload

    job_id = submit(client).json()["id"]
    assert client.get(f"/v1/jobs/{job_id}", headers=ACME).json()["retryable"] is None
    data: dict[str, Any] = {"error": {"code": "busy", "message": "the OCR farm is full"}}
    if retryable is not None:
        data["retryable"] = retryable
    failed = client.post(f"/v1/jobs/{job_id}/events", headers=ACME, json={"type": "job.failed", "data": data})
    assert failed.status_code in (200, 201, 202), failed.text
    task = client.get(f"/v1/jobs/{job_id}", headers={**ACME, "Jobwire-Position": failed.headers["jobwire-position"]}).json()
    assert task["status"] == "failed" and task["retryable"] is retryable
    job = parts[0].projection.job(job_id)
    assert job is not None
    event_type, body = job_payload(job)
    assert event_type == "task.failed" and orjson.loads(body)["data"]["retryable"] is retryable


def test_a_batch_creates_each_job_and_answers_each_ones_task_or_problem(
        parts: tuple[ApiComponents, MemoryLog, MemoryTopic]) -> None:
    settings = load_settings({"JOBWIRE_API_KEYS": "acme:key_acme_0123456789,globex:key_globex_0123456789",
                              "JOBWIRE_UNFINISHED_JOBS_PER_TENANT": "3"})
    with TestClient(create_app(settings, parts[0]), raise_server_exceptions=False) as client:
        first = submit(client, {"operation": "ocr", "parameters": {"n": 0}}, {"Idempotency-Key": "k0"}).json()
        batch = {"jobs": [
            {"job": {"operation": "ocr", "parameters": {"n": 0}}, "idempotency_key": "k0"},  # a replay
            {"job": {"operation": "ocr", "parameters": {"n": 9}}, "idempotency_key": "k0"},  # the key, another job
            {"job": {"operation": "ocr", "parameters": {"n": 1}}},
            {"job": {"operation": "ocr", "parameters": {"n": 2}, "metadata": {"m": 1}}, "idempotency_key": "k2"},
            {"job": {"operation": "ocr", "parameters": {"n": 3}}},  # over the quota of 3 unfinished
        ]}
        answer = client.post("/v1/jobs:batch", json=batch, headers=ACME)
        assert answer.status_code == 200, answer.text
        items = answer.json()["data"]
        assert [(i["index"], i["status"]) for i in items] == [(0, 200), (1, 409), (2, 202), (3, 202), (4, 429)]
        assert items[0]["task"]["id"] == first["id"] and items[0]["position"] is None
        assert items[1]["problem"]["status"] == 409 and "Idempotency-Key" in items[1]["problem"]["detail"]
        assert items[4]["problem"]["quota"] == "unfinished_jobs_per_tenant"
        created = items[3]["task"]
        got = client.get(f"/v1/jobs/{created['id']}", headers={**ACME, "Jobwire-Position": items[3]["position"]})
        assert got.json()["metadata"] == {"m": 1}
        again = client.post("/v1/jobs:batch", json={"jobs": [batch["jobs"][3]]}, headers=ACME).json()["data"]
        assert again[0]["status"] == 200 and again[0]["task"]["id"] == created["id"], "its key replays"
        assert client.get(f"/v1/jobs/{created['id']}", headers=GLOBEX).status_code == 404


@pytest.mark.parametrize(("body", "pointer"), [
    ({"jobs": []}, "/jobs"),
    ({"jobs": [{"job": {}}] * 101}, "/jobs"),
    ({"jobs": [{"job": {"operation": "ocr", "parameters": {}}}, {"job": {"operation": "ocr"}}]}, "/jobs/1/job"),
    ({"jobs": [{"job": {"operation": "o c r", "parameters": {}}}]}, "/jobs/0/job/operation"),
    ({"jobs": [{"job": {"operation": "ocr", "parameters": {}}, "idempotency_key": ""}]}, "/jobs/0/idempotency_key"),
    ({"jobs": [{"operation": "ocr", "parameters": {}}]}, "/jobs/0"),
])
def test_a_batch_of_the_wrong_shape_creates_nothing_and_names_the_item_at_fault(
        client: TestClient, log: MemoryLog, body: dict[str, Any], pointer: str) -> None:
    before = client.get("/v1/jobs", headers=ACME).json()["data"]
    refused = client.post("/v1/jobs:batch", json=body, headers=ACME)
    assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json"
    assert any(e["pointer"].startswith(pointer) for e in refused.json()["errors"]), refused.json()
    assert client.get("/v1/jobs", headers=ACME).json()["data"] == before


async def test_updated_after_lists_only_what_changed_since_a_poller_looked(client: TestClient, log: MemoryLog) -> None:
    ids = [submit(client).json()["id"] for _ in range(3)]
    listed = client.get("/v1/jobs", headers=ACME).json()["data"]
    newest_seen = max(task["updated_at"] for task in listed)
    from datetime import timedelta

    from jobwire.timeutil import format_utc, parse_utc

    later = format_utc(parse_utc(newest_seen) + timedelta(milliseconds=5))  # never the same millisecond
    await log.publish(new_event("job.started", ids[1], "acme", {}, time=later))
    changed = client.get("/v1/jobs", params={"updated_after": newest_seen}, headers=ACME).json()["data"]
    assert [task["id"] for task in changed] == [ids[1]] and changed[0]["status"] == "processing"
    assert client.get("/v1/jobs", params={"updated_after": newest_seen}, headers=GLOBEX).json()["data"] == []
    assert client.get("/v1/jobs", params={"updated_after": "soon"}, headers=ACME).status_code == 422
