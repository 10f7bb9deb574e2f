"""The Files API without a broker (the in-memory log, the local store in a temporary dir):
uploads raw and multipart with their limits and checksums, downloads by key and by signed URL,
tenants kept apart, and a job that waits for its input until it is PUT to its upload URL."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from jobwire.api.app import create_app
from jobwire.api.file_urls import FileUrls
from jobwire.api.files import content_disposition
from jobwire.config import load_settings
from jobwire.errors import ConfigError
from jobwire.events import new_event
from jobwire.storage.files import clean_filename
from tests.support.memlog import memory_components

ACME = {"X-API-Key": "key_acme_0123456789"}
OTHER = {"X-API-Key": "key_other_0123456789"}
PDF = b"%PDF-1.4 a small document\n" * 100


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    parts, _, _ = memory_components()
    settings = load_settings({"JOBWIRE_API_KEYS": "acme:key_acme_0123456789,other:key_other_0123456789",
                              "JOBWIRE_DEV": "1", "JOBWIRE_DATA_DIR": str(tmp_path),
                              "JOBWIRE_MAX_FILE_BYTES": "4096"})
    with TestClient(create_app(settings, parts)) as test_client:
        yield test_client


def test_a_raw_upload_is_described_and_downloaded_by_key_or_by_its_signed_url(client: TestClient) -> None:
    sent = client.post("/v1/files?filename=report.pdf", content=PDF[:2000],
                       headers={**ACME, "Content-Type": "application/pdf"})
    assert sent.status_code == 201, sent.text
    file = sent.json()
    assert file["id"].startswith("file_") and file["size"] == 2000 and file["filename"] == "report.pdf"
    assert file["checksum"] == {"algorithm": "sha256", "value": hashlib.sha256(PDF[:2000]).hexdigest()}
    assert client.get(f"/v1/files/{file['id']}", headers=ACME).json()["id"] == file["id"]
    by_key = client.get(f"/v1/files/{file['id']}/content", headers=ACME)
    assert by_key.content == PDF[:2000] and by_key.headers["content-type"] == "application/pdf"
    assert by_key.headers["content-disposition"] == 'attachment; filename="report.pdf"'
    assert by_key.headers["repr-digest"] == f"sha-256=:{base64.b64encode(hashlib.sha256(PDF[:2000]).digest()).decode()}:"
    signed = client.get(file["url"])  # no key: the URL is the credential
    assert signed.status_code == 200 and signed.content == PDF[:2000]
    forged = file["url"][:-3] + ("AAA" if not file["url"].endswith("AAA") else "BBB")
    assert client.get(forged).status_code == 403
    assert client.get(f"/v1/files/{file['id']}/content").status_code == 401, "no key, no token"


def test_tenants_never_see_each_others_files(client: TestClient) -> None:
    file = client.post("/v1/files", content=b"x", headers=ACME).json()
    assert client.get(f"/v1/files/{file['id']}", headers=OTHER).status_code == 404
    assert client.get(f"/v1/files/{file['id']}/content", headers=OTHER).status_code == 404
    assert client.delete(f"/v1/files/{file['id']}", headers=OTHER).status_code == 404
    assert client.get(f"/v1/files/{file['id']}", headers=ACME).status_code == 200
    assert client.get("/v1/files/..%2F..%2Fetc", headers=ACME).status_code == 404


def test_multipart_takes_the_file_part_with_its_name_and_type(client: TestClient) -> None:
    sent = client.post("/v1/files", headers=ACME, data={"purpose": "x"},
                       files={"file": ("scan ü.png", b"\x89PNG data", "image/png")})
    assert sent.status_code == 201, sent.text
    file = sent.json()
    assert file["filename"] == "scan ü.png" and file["content_type"] == "image/png" and file["size"] == 9
    download = client.get(f"/v1/files/{file['id']}/content", headers=ACME)
    assert download.content == b"\x89PNG data"
    assert "filename*=UTF-8''scan%20%C3%BC.png" in download.headers["content-disposition"]
    missing = client.post("/v1/files", headers=ACME, data={"purpose": "x"}, files={"other": ("a", b"b")})
    assert missing.status_code == 422 and missing.json()["errors"][0]["pointer"] == "/body/file"


def test_limits_and_checksums_are_checked_before_anything_is_stored(client: TestClient, tmp_path: Path) -> None:
    too_big = client.post("/v1/files", content=b"x" * 4097, headers=ACME)
    assert too_big.status_code == 413
    streamed = client.post("/v1/files", content=iter([b"x" * 3000, b"x" * 3000]), headers=ACME)
    assert streamed.status_code == 413, "a body without Content-Length is cut off at the limit too"
    wrong = client.post("/v1/files", content=b"abc", headers={**ACME, "X-Checksum-SHA256": "0" * 64})
    assert wrong.status_code == 400 and "sha256" in wrong.json()["detail"]
    right = client.post("/v1/files", content=b"abc", headers={**ACME, "X-Checksum-SHA256": hashlib.sha256(b"abc").hexdigest()})
    assert right.status_code == 201
    digest = base64.b64encode(hashlib.sha256(b"abc").digest()).decode()
    assert client.post("/v1/files", content=b"abc", headers={**ACME, "Content-Digest": f"sha-256=:{digest}:"}).status_code == 201
    assert client.post("/v1/files", content=b"abd", headers={**ACME, "Content-Digest": f"sha-256=:{digest}:"}).status_code == 400
    assert client.post("/v1/files", content=b"abc", headers={**ACME, "X-Checksum-SHA256": "nope"}).status_code == 400
    stored = [p for p in (tmp_path / "files").rglob("*") if p.is_file() and p.suffix == ".json"]
    assert len(stored) == 2, "only the two uploads that passed are stored"
    assert not [p for p in (tmp_path / "spool").glob("*")], "nothing is left in the spool"


def test_a_deleted_file_is_gone(client: TestClient) -> None:
    file = client.post("/v1/files", content=b"x", headers=ACME).json()
    assert client.delete(f"/v1/files/{file['id']}", headers=ACME).status_code == 204
    assert client.get(f"/v1/files/{file['id']}", headers=ACME).status_code == 404
    assert client.get(file["url"]).status_code == 404


def test_a_job_waits_for_its_input_until_it_is_put_to_its_upload_url(client: TestClient) -> None:
    created = client.post("/v1/jobs", headers=ACME, json={
        "operation": "parse", "parameters": {}, "input": {"upload": {"content_type": "application/pdf",
                                                                     "filename": "in.pdf", "timeout_s": 600}}})
    assert created.status_code == 202, created.text
    task = created.json()
    assert task["status"] == "pending" and task["input"]["status"] == "awaiting_upload"
    assert task["input"]["upload_headers"] == {"Content-Type": "application/pdf"}
    assert task["input"]["upload_deadline_at"] is not None
    url = task["input"]["upload_url"]
    started = client.post(f"/v1/jobs/{task['id']}/events", headers=ACME, json={"type": "job.started", "data": {}})
    assert started.status_code == 409, "no worker starts a job before its input is there"
    assert client.put(url, content=PDF[:100], headers={"Content-Type": "text/plain"}).status_code == 400
    put = client.put(url, content=PDF[:100], headers={"Content-Type": "application/pdf"})
    assert put.status_code == 200, put.text
    assert put.json()["checksum"]["value"] == hashlib.sha256(PDF[:100]).hexdigest()
    job = client.get(f"/v1/jobs/{task['id']}", headers=ACME).json()
    assert job["input"]["status"] == "received" and job["input"]["size"] == 100 and "upload_url" not in job["input"]
    assert client.put(url, content=b"again", headers={"Content-Type": "application/pdf"}).status_code == 409
    assert client.get(f"/v1/files/{job['input']['file_id']}/content", headers=ACME).content == PDF[:100]
    assert client.put("/v1/uploads/forged.token", content=b"x").status_code == 403


def test_an_input_named_by_id_must_be_the_tenants_file(client: TestClient) -> None:
    file = client.post("/v1/files", content=b"abc", headers={**ACME, "Content-Type": "text/plain"}).json()
    unknown = client.post("/v1/jobs", headers=ACME, json={"operation": "x", "parameters": {},
                                                          "input": {"file_id": "file_nope"}})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["pointer"] == "/input/file_id"
    theirs = client.post("/v1/jobs", headers=OTHER, json={"operation": "x", "parameters": {},
                                                          "input": {"file_id": file["id"]}})
    assert theirs.status_code == 422
    ours = client.post("/v1/jobs", headers=ACME, json={"operation": "x", "parameters": {}, "input": {"file_id": file["id"]}})
    assert ours.status_code == 202 and ours.json()["input"]["status"] == "received"
    assert ours.json()["input"]["checksum"]["value"] == hashlib.sha256(b"abc").hexdigest()


def test_knowhere_waits_in_waiting_file_then_pending(client: TestClient) -> None:
    bearer = {"Authorization": "Bearer key_acme_0123456789"}
    created = client.post("/compat/knowhere/v1/jobs", headers=bearer,
                          json={"source_type": "file", "file_name": "a.pdf", "content_type": "application/pdf"})
    job = created.json()
    assert job["status"] == "waiting-file" and job["upload_headers"] == {"Content-Type": "application/pdf"}
    assert client.put(job["upload_url"], content=b"%PDF", headers=job["upload_headers"]).status_code == 200
    assert client.get(f"/compat/knowhere/v1/jobs/{job['job_id']}", headers=bearer).json()["status"] == "pending"
    by_url = client.post("/compat/knowhere/v1/jobs", headers=bearer, json={"source_type": "url", "source_url": "u"})
    assert by_url.json()["status"] == "pending"


def test_a_result_file_gets_a_fresh_signed_url_on_every_read(client: TestClient) -> None:
    task = client.post("/v1/jobs", headers=ACME, json={"operation": "convert", "parameters": {}}).json()
    file = client.post("/v1/files", content=b"RESULT", headers={**ACME, "Content-Type": "text/plain"}).json()
    result_file = {"id": file["id"], "filename": "out.txt", "content_type": "text/plain", "size": 6,
                   "sha256": hashlib.sha256(b"RESULT").hexdigest()}
    for kind, data in (("job.started", {}), ("job.completed", {"result": {}, "result_file": result_file})):
        posted = client.post(f"/v1/jobs/{task['id']}/events", headers=ACME, json={"type": kind, "data": data})
        assert posted.status_code in (200, 202), posted.text
    done = client.get(f"/v1/jobs/{task['id']}", headers=ACME).json()
    assert done["result_file"]["id"] == file["id"] and done["result_checksum"]["value"] == result_file["sha256"]
    assert done["result_url"] and done["result_url_expires_at"]
    assert client.get(done["result_url"]).content == b"RESULT"
    again = client.get(f"/v1/jobs/{task['id']}", headers={**ACME, "If-None-Match": f'"{done["version"]}"'})
    assert again.status_code == 200 and again.headers["cache-control"] == "no-store", \
        "never a 304 for an answer whose URLs were signed for one read"
    head = client.head(f"/v1/files/{file['id']}/content", headers=ACME)
    assert head.status_code == 200 and head.headers["content-length"] == "6" and head.content == b""


def test_signed_tokens_expire_and_name_their_kind() -> None:
    now = [1000.0]
    urls = FileUrls("key-one-0123456789abcdef,key-old-0123456789abcdef", 60, clock=lambda: now[0])
    token, expires = urls.mint("download", t="acme", f="file_1")
    assert expires == 1060 and urls.open(token, "download") == {"t": "acme", "f": "file_1", "kind": "download", "exp": 1060.0}
    assert urls.open(token, "upload") is None, "a download token opens no upload"
    old = FileUrls("key-old-0123456789abcdef", 60, clock=lambda: now[0]).mint("download", t="acme", f="file_1")[0]
    assert urls.open(old, "download") is not None, "a token signed by a key still listed opens"
    now[0] = 1060.0
    assert urls.open(token, "download") is None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_filename_becomes_a_safe_name_and_header(name: str) -> None:
    cleaned = clean_filename(name, "fallback")
    assert cleaned and "/" not in cleaned and "\\" not in cleaned and len(cleaned) <= 255
    assert all(ch.isprintable() or ch == " " for ch in cleaned) or cleaned == "fallback"
    header = content_disposition(cleaned)
    header.encode("latin-1")
    assert "\n" not in header and "\r" not in header


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=80))
def test_a_tampered_token_never_opens(noise: bytes) -> None:
    urls = FileUrls("key-one-0123456789abcdef", 60, clock=time.time)
    token, _ = urls.mint("upload", t="acme", j="job_1", f="file_1")
    body, _, signature = token.partition(".")
    tampered = base64.urlsafe_b64encode(noise).decode().rstrip("=") + "." + signature
    assert tampered == token or urls.open(tampered, "upload") is None




def test_a_deployment_may_take_only_some_media_types(tmp_path: Path) -> None:
    parts, _, _ = memory_components()
    settings = load_settings({"JOBWIRE_API_KEYS": "acme:key_acme_0123456789", "JOBWIRE_DEV": "1",
                              "JOBWIRE_DATA_DIR": str(tmp_path), "JOBWIRE_FILE_TYPES": "application/pdf, image/*"})
    with TestClient(create_app(settings, parts)) as client:
        assert client.post("/v1/files", content=b"x", headers={**ACME, "Content-Type": "image/png"}).status_code == 201
        assert client.post("/v1/files", content=b"x", headers={**ACME, "Content-Type": "application/pdf; a=b"}).status_code == 201
        refused = client.post("/v1/files", content=b"x", headers={**ACME, "Content-Type": "text/html"})
        assert refused.status_code == 415 and refused.json()["errors"][0]["pointer"] == "/headers/content-type"
        submit = client.post("/v1/jobs", headers=ACME, json={"operation": "x", "parameters": {},
                                                             "input": {"upload": {"content_type": "text/html"}}})
        assert submit.status_code == 415 and submit.json()["errors"][0]["pointer"] == "/input/upload/content_type"
    with pytest.raises(ConfigError, match="JOBWIRE_FILE_TYPES"):
        load_settings({"JOBWIRE_DEV": "1", "JOBWIRE_FILE_TYPES": "pdf"})


def test_a_multipart_body_cut_before_its_closing_boundary_is_refused(client: TestClient, tmp_path: Path) -> None:
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\nsixteen bytes..!")
    cut = client.post("/v1/files", content=body, headers={**ACME, "Content-Type": "multipart/form-data; boundary=XyZ"})
    assert cut.status_code == 400 and "closing boundary" in cut.json()["detail"]
    assert not (tmp_path / "files").exists() or not list((tmp_path / "files").rglob("*.json"))


def test_upload_tokens_stay_out_of_the_access_log(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    task = client.post("/v1/jobs", headers=ACME, json={"operation": "x", "parameters": {}, "input": {"upload": {}}}).json()
    token = task["input"]["upload_url"].rsplit("/", 1)[1]
    with caplog.at_level("INFO", logger="jobwire.api.app"):
        assert client.put(task["input"]["upload_url"], content=b"data").status_code == 200
        assert client.put(f"/v1/uploads/{token}x", content=b"data").status_code == 403
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "path=/v1/uploads/{token}" in logged and token not in logged


async def test_racing_puts_keep_the_bytes_the_log_took(tmp_path: Path) -> None:
    """Two PUTs to one upload URL both pass the check and store: the log takes one; the bytes
    are kept by checksum, so the loser never replaces them, and the loser mends the record."""
    from types import SimpleNamespace

    from jobwire.api.files import keep_the_accepted_input
    from jobwire.lifecycle import apply
    from jobwire.storage.files import content_key, load, save
    from jobwire.storage.local import LocalStore
    from jobwire.storage.spool import spool_bytes

    store = LocalStore(tmp_path / "files")
    now = datetime.now(UTC)
    records = [await save(store, spool_bytes(data, tmp_path / "spool"), tenant="acme", filename="in.pdf",
                          content_type="application/pdf", purpose="input", now=now, retention_s=60,
                          file_id="file_race", job_id="job_race") for data in (b"first", b"second")]
    created = new_event("job.created", "job_race", "acme", {"operation": "x", "parameters": {}, "input": {
        "file_id": "file_race", "awaiting_upload": True, "upload_timeout_s": 600}})
    job = apply(None, created).job
    first = records[0]
    job = apply(job, new_event("job.input_received", "job_race", "acme", {
        "file_id": first.id, "size": first.size, "sha256": first.sha256, "content_type": first.content_type,
        "filename": first.filename})).job
    assert job is not None and not job.awaiting_upload
    loaded = await load(store, "acme", "file_race", now)
    assert loaded is not None and loaded.sha256 == records[1].sha256, "the loser wrote the record last"
    await keep_the_accepted_input(SimpleNamespace(state=SimpleNamespace(files=store)), job, records[1])  # type: ignore[arg-type]
    mended = await load(store, "acme", "file_race", now)
    assert mended is not None and mended.sha256 == first.sha256 and mended.size == 5
    assert await store.get_bytes(content_key("acme", "file_race", first.sha256)) == b"first"
    assert await store.get_bytes(content_key("acme", "file_race", records[1].sha256)) is None
