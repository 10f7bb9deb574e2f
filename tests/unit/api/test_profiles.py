"""Wire profiles without a broker: the rules render a task object in each dialect, a broken
profile is refused at start with what is wrong, and the routes (under their prefixes, or a
dialect at the root) reach the same jobs as jobwire's own."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from jobwire.api.app import create_app
from jobwire.api.profiles.model import Profile, _profile, available, load_profile
from jobwire.config import load_settings
from jobwire.errors import ConfigError
from tests.support.memlog import memory_components

KEY = {"X-API-Key": "key_acme_0123456789"}
BASE = {"id": "job_1", "operation": "parse", "status": "pending", "stage": None, "parameters": {"a": 1},
        "result": None, "error": None, "progress": {"total": None, "processed": None}, "metadata": None,
        "result_url": None, "result_url_expires_at": None, "result_checksum": None,
        "created_at": "2026-01-01T00:00:00.000Z", "updated_at": "2026-01-01T00:00:00.000Z",
        "finished_at": None, "pending_deadline_at": None}


def task(**changes: Any) -> dict[str, Any]:
    return {**BASE, **changes}


def test_every_shipped_profile_loads() -> None:
    assert available() == ["docurift", "knowhere", "pulse", "scandocs", "syncfusion"]
    for name in available():
        profile = load_profile(name)
        assert profile.name == name and profile.prefix.startswith("/")


def test_knowhere_tells_apart_what_jobwire_keeps_in_one_status() -> None:
    knowhere = load_profile("knowhere")
    waiting = knowhere.render(task(input={"file_id": "file_1", "status": "awaiting_upload",
                                          "upload_url": "https://up.example/x", "upload_headers": {"A": "b"},
                                          "upload_deadline_at": "2026-01-01T01:00:00.000Z"}))
    assert waiting == {"job_id": "job_1", "status": "waiting-file", "created_at": "2026-01-01T00:00:00.000Z",
                       "upload_url": "https://up.example/x", "upload_headers": {"A": "b"},
                       "expires_at": "2026-01-01T01:00:00.000Z"}
    assert knowhere.render(task())["status"] == "pending"
    received = knowhere.render(task(input={"file_id": "file_1", "status": "received", "upload_url": None}))
    assert received["status"] == "pending" and "upload_url" not in received
    converting = knowhere.render(task(status="processing", stage="converting", progress={"total": 50, "processed": 23}))
    assert converting["status"] == "converting" and converting["progress"] == {"total_pages": 50, "processed_pages": 23}
    started = knowhere.render(task(status="processing", stage=None))
    assert started["status"] == "running" and "progress" not in started, "no progress yet: no progress object"
    failed = knowhere.render(task(status="failed", finished_at="2026-01-01T00:01:00.000Z",
                                  error={"code": "INVALID_ARGUMENT", "message": "Unsupported file format: .xyz"}))
    assert failed["error"] == {"code": "INVALID_ARGUMENT", "message": "Unsupported file format: .xyz"}
    assert failed["failed_at"] == "2026-01-01T00:01:00.000Z" and "completed_at" not in failed
    canceled = knowhere.render(task(status="canceled"))
    assert canceled["status"] == "failed" and canceled["error"]["code"] == "canceled", "Knowhere has no canceled"


def test_scan_documents_result_is_empty_until_done_then_output_or_error() -> None:
    scan = load_profile("scandocs")
    assert scan.render(task())["result"] == {} and scan.render(task(status="processing"))["result"] == {}
    assert scan.render(task(status="completed", result={"content": "x"}))["result"] == {"content": "x"}
    failed = scan.render(task(status="failed", error={"code": "E", "message": "Source file not found.",
                                                     "details": {"file_id": "f"}}))
    assert failed["result"] == {"error": "Source file not found.", "details": {"file_id": "f"}}


def test_pulse_reads_its_error_as_a_string_and_syncfusion_its_errror() -> None:
    pulse, syncfusion = load_profile("pulse"), load_profile("syncfusion")
    failed = task(status="failed", error={"code": "E", "message": "boom", "details": None})
    assert pulse.render(failed)["error"] == "boom"
    assert "error" not in pulse.render(task()) and "result" not in pulse.render(task()), "fields only when present"
    assert syncfusion.render(failed) == {"jobId": "job_1", "status": "errror", "code": "E", "message": "boom"}
    assert syncfusion.render(task(status="processing")) == {"jobId": "job_1", "status": "in progress"}
    assert syncfusion.render(task(), syncfusion.submit_fields)["status"] == "requested"


def valid() -> dict[str, Any]:
    return {"title": "t", "prefix": "/t", "status": {s: s for s in ("pending", "processing", "completed", "failed",
                                                                    "canceled")},
            "fields": {"id": "id"}, "routes": [{"method": "GET", "path": "/jobs/{id}", "action": "get"}]}


@pytest.mark.parametrize(("change", "why"), [
    ({"prefix": "t/"}, "prefix"),
    ({"status": {"pending": "p"}}, "status names no value"),
    ({"fields": {"x": {"when": ["done"], "path": "id"}}}, "no jobwire statuses"),
    ({"fields": {"x": {"nothing": 1}}}, "a field rule is"),
    ({"routes": [{"method": "GET", "path": "/jobs", "action": "get"}]}, "names the job as"),
    ({"routes": [{"method": "POST", "path": "/jobs", "action": "submit"}]}, "fixes its operation"),
    ({"routes": [{"method": "GET", "path": "/jobs/{id}", "action": "explode"}]}, "action one of"),
    ({"status": {"pending": {"by": "stage"}, "processing": "p", "completed": "c", "failed": "f", "canceled": "x"}},
     "status rule"),
])
def test_a_broken_profile_says_what_is_wrong(change: dict[str, Any], why: str) -> None:
    with pytest.raises((KeyError, TypeError, ValueError), match=why):
        _profile("t", {**valid(), **change})
    assert isinstance(_profile("t", valid()), Profile)


def test_profile_settings() -> None:
    assert load_settings({}).profiles == ("all",)
    assert load_settings({"JOBWIRE_PROFILES": "none"}).profiles == ()
    assert load_settings({"JOBWIRE_PROFILES": "pulse", "JOBWIRE_PROFILE": "knowhere"}).root_profile == "knowhere"
    with pytest.raises(ConfigError, match="JOBWIRE_PROFILES"):
        load_settings({"JOBWIRE_PROFILES": "Pulse!"})
    parts, _, _ = memory_components()
    with pytest.raises(ConfigError, match="no wire profile 'nope'"):
        create_app(load_settings({"JOBWIRE_PROFILES": "nope", "JOBWIRE_DEV": "1"}), parts)


def client_for(**env: str) -> TestClient:
    parts, _, _ = memory_components()
    return TestClient(create_app(load_settings({"JOBWIRE_API_KEYS": "acme:key_acme_0123456789", "JOBWIRE_DEV": "1",
                                                **env}), parts))


def test_a_dialect_at_the_root_and_under_its_prefix_reaches_the_same_jobs() -> None:
    with client_for(JOBWIRE_PROFILES="none", JOBWIRE_PROFILE="docurift") as client:
        created = client.post("/v1/jobs", json={"operation": "ocr", "parameters": {}}, headers=KEY)
        assert created.status_code == 202 and created.json()["data"]["status"] == "pending", "the root speaks DocuRift"
        job_id = created.json()["data"]["id"]
        assert client.get(f"/compat/docurift/v1/jobs/{job_id}", headers=KEY).json()["data"]["id"] == job_id
        assert client.get(f"/compat/pulse/job/{job_id}", headers=KEY).status_code == 404, "pulse is not mounted"
        assert client.get(f"/v1/jobs/{job_id}/events", headers=KEY).status_code == 200, "jobwire's other routes stay"
        paths = client.get("/openapi.json").json()["paths"]
        assert "/compat/docurift/v1/jobs/{id}" in paths and "/compat/pulse/job/{id}" not in paths
        assert "/v1/jobs/{id}" not in paths, "one template, whatever its parameters are called"
        get = paths["/v1/jobs/{job_id}"]["get"]
        assert get["tags"] == ["profile: docurift"] and get["parameters"][0]["name"] == "job_id"
        assert paths["/v1/jobs"]["post"]["tags"] == ["profile: docurift"] and "/v1/jobs/{job_id}/events" in paths
        ids = [op["operationId"] for item in paths.values() for op in item.values() if isinstance(op, dict)
               and "operationId" in op]
        assert len(ids) == len(set(ids)), "the root mount and the prefixed one have ids of their own"


def test_knowhere_at_the_root_keeps_jobwires_list_and_a_dialect_that_would_swallow_routes_is_refused() -> None:
    with client_for(JOBWIRE_PROFILE="knowhere") as client:
        paths = client.get("/openapi.json").json()["paths"]
        assert set(paths["/v1/jobs"]) == {"get", "post"} and paths["/v1/jobs"]["get"]["operationId"] == "listJobs"
        assert client.get("/v1/jobs", headers=KEY).json()["object"] == "list", "jobwire's list is still served"
    parts, _, _ = memory_components()
    with pytest.raises(ConfigError, match=r"/v1/\{operation\} would answer for /v1/jobs"):
        create_app(load_settings({"JOBWIRE_DEV": "1", "JOBWIRE_PROFILE": "syncfusion"}), parts)


def test_profile_routes_spend_the_rate_limit_too() -> None:
    with client_for(JOBWIRE_RATE_LIMIT_PER_S="0.01", JOBWIRE_RATE_LIMIT_BURST="2") as client:
        answers = [client.get("/compat/pulse/job/job_x", headers=KEY).status_code for _ in range(3)]
        assert answers == [404, 404, 429]
        assert client.get("/v1/jobs/job_x", headers=KEY).status_code == 429, "one bucket per key, every route"
        assert client.get("/healthz").status_code == 200, "no key, no bucket"


def test_a_tenants_metadata_cannot_break_a_status_rule() -> None:
    knowhere = load_profile("knowhere")
    assert knowhere.render(task(metadata={"upload_url": ["x"]}))["status"] == "pending", \
        "only the job's own input makes it waiting-file, never what a tenant put in metadata"
    assert knowhere.render(task(input={"status": ["x"]}))["status"] == "pending", "a value no case names"
    assert knowhere.render(task(status="processing", stage=None, metadata={"upload_url": {"a": 1}}))["status"] == "running"


def test_profile_routes_keep_jobwires_rules() -> None:
    with client_for() as client:
        assert client.post("/compat/pulse/extract", json={"async": True}).status_code == 401
        assert client.post("/compat/pulse/extract", content=b"[1]", headers={**KEY, "Content-Type": "application/json"}
                           ).status_code == 422
        bad = client.post("/compat/scandocs/v1/pdf-operations/%20x", json={}, headers=KEY)
        assert bad.status_code == 422 and bad.json()["errors"][0]["pointer"] == "/operation"
        keyed = {**KEY, "Idempotency-Key": "order-1"}
        first = client.post("/compat/pulse/extract", json={"async": True, "file_url": "u"}, headers=keyed)
        again = client.post("/compat/pulse/extract", json={"async": True, "file_url": "u"}, headers=keyed)
        assert first.json()["job_id"] == again.json()["job_id"] and again.headers["idempotent-replayed"] == "true"
        job_id = first.json()["job_id"]
        assert client.delete(f"/compat/pulse/job/{job_id}", headers=KEY).json()["status"] == "canceled"
        assert client.delete(f"/compat/pulse/job/{job_id}", headers=KEY).status_code == 409, "finished: no second cancel"
        assert client.get("/compat/syncfusion/status/job_nope", headers=KEY).status_code == 404



async def test_syncfusion_answers_the_document_itself_once_done() -> None:
    import base64

    from jobwire.events import new_event

    parts, log, _ = memory_components()
    app = create_app(load_settings({"JOBWIRE_API_KEYS": "acme:key_acme_0123456789", "JOBWIRE_DEV": "1"}), parts)
    with TestClient(app) as client:
        ids = [client.post("/compat/syncfusion/v1/docx-to-pdf", json={"file": "a.docx"}, headers=KEY).json()["jobID"]
               for _ in range(2)]
        document = {"content_base64": base64.b64encode(b"%PDF-1.4 x").decode(), "content_type": "application/pdf",
                    "filename": 'a"\r\nb.pdf'}
        for job_id, result in zip(ids, ({"document": document}, {"pages": 1}), strict=True):
            await log.publish(new_event("job.started", job_id, "acme", {}))
            await log.publish(new_event("job.completed", job_id, "acme", {"result": result}))
        streamed = client.get(f"/compat/syncfusion/status/{ids[0]}", headers=KEY)
        assert streamed.content == b"%PDF-1.4 x" and streamed.headers["content-type"] == "application/pdf"
        assert streamed.headers["content-disposition"] == 'attachment; filename="a___b.pdf"', "no header injection"
        plain = client.get(f"/compat/syncfusion/status/{ids[1]}", headers=KEY)
        assert plain.json() == {"jobId": ids[1], "status": "completed"}, "no document: the status object"


def test_a_method_a_route_does_not_answer_gets_405_there_and_in_every_dialect() -> None:
    """One dispatcher for jobwire's routes and the profiles': HEAD reaches a GET route through
    Starlette, and is answered 405 with the methods there are, not a 500."""
    with client_for() as client:
        for path in ("/v1/jobs/job_x", "/compat/pulse/job/job_x"):
            answer = client.head(path, headers=KEY)
            assert answer.status_code == 405 and "GET" in answer.headers["allow"], path
