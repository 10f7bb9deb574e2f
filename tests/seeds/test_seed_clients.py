"""Each seed's own client code against jobwire serving that seed's wire profile, on a real
broker, with SDK workers running the jobs: the samples the seed documents print (Python, and
Node where the seed has it), changed only in base URL and key, submit, wait and read results
as the seed says. The sync mode of Pulse and the document stream of Syncfusion included."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import json
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests

from jobwire.config import Settings
from jobwire.devtools.demo_ops import DEMO_OPERATIONS, DEMO_PDF
from jobwire.kafka.admin import ensure_topics
from tests.conftest import settings_for
from tests.support.servers import running_api, running_worker

KEY = "key_seeds_0123456789"
HERE = Path(__file__).parent
#: The demo worker's operations the seeds' clients ask for (jobwire/devtools/demo_ops.py).
OPERATIONS = ("extract", "parse", "docx-to-pdf", "wordcount", "fail")


@contextlib.asynccontextmanager
async def jobwire_with_workers(bootstrap: str) -> AsyncIterator[str]:
    settings: Settings = settings_for(bootstrap, JOBWIRE_API_KEYS=f"acme:{KEY}",
                                      JOBWIRE_SECRET_KEY="seeds-secret-key-0123456789")
    await ensure_topics(settings)
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(running_api(settings))
        for operation in OPERATIONS:
            await stack.enter_async_context(running_worker(settings, operation, DEMO_OPERATIONS[operation]))
        yield url


@contextlib.contextmanager
def seed_env(base_url: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in ("SEED_BASE_URL", "SEED_API_KEY")}
    os.environ.update(SEED_BASE_URL=base_url, SEED_API_KEY=KEY)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def seed_module(name: str) -> ModuleType:
    """A seed client module, imported fresh (it reads its base URL when imported)."""
    module = importlib.import_module(f"tests.seeds.{name}")
    return importlib.reload(module)


@pytest.mark.timeout(300)
async def test_each_seeds_client_code_runs_against_its_profile(kafka_bootstrap: str) -> None:
    async with jobwire_with_workers(kafka_bootstrap) as api:
        await asyncio.to_thread(docurift, api)
        await asyncio.to_thread(pulse, api)
        await asyncio.to_thread(scan_documents, api)
        await asyncio.to_thread(knowhere_python, api)
        await knowhere_node(api)
        await asyncio.to_thread(syncfusion, api)


def docurift(api: str) -> None:
    """001: its wait_for_completion reads response.json()["data"]["status"] with X-API-Key."""
    with seed_env(f"{api}/compat/docurift"):
        client = seed_module("docurift_client")
        created = requests.post(f"{api}/compat/docurift/v1/jobs", headers={"X-API-Key": KEY},
                                json={"operation": "extract", "parameters": {"file_url": "https://example.com/a.pdf"}})
        assert created.status_code == 202
        job_id = created.json()["data"]["id"]
        done = client.wait_for_completion(job_id, KEY)
        assert done["status"] == "completed" and done["result"]["page_count"] == 50
        listed = requests.get(f"{api}/compat/docurift/v1/jobs?status=completed", headers={"X-API-Key": KEY}).json()
        assert job_id in [job["id"] for job in listed["data"]]


def pulse(api: str) -> None:
    """004: async submit and the polling loop; the sync mode answers the result itself; a
    DELETE cancels."""
    with seed_env(f"{api}/compat/pulse"):
        status = seed_module("pulse_client").run()
        assert status.status == "completed" and status.result["markdown"].startswith("# Document")
        assert status.result["source"] == "https://example.com/large-report.pdf"
        synchronous = requests.post(f"{api}/compat/pulse/extract", headers={"x-api-key": KEY},
                                    json={"file_url": "https://example.com/small.pdf"})
        assert synchronous.status_code == 200 and synchronous.json()["status"] == "completed"
        assert synchronous.json()["result"]["page_count"] == 50 and "completed_at" in synchronous.json()


def scan_documents(api: str) -> None:
    """002: task_… ids, result empty until done, the output when completed, {error, details}
    when failed."""
    with seed_env(f"{api}/compat/scandocs"):
        client = seed_module("scan_documents_client")
        created, done = client.run_operation("pdf-operations", "wordcount", {"text": "to be or not to be"})
        assert done["status"] == "completed" and done["result"] == {"words": 6, "distinct": 4}
        assert done["operation"] == "wordcount" and done["parameters"] == {"text": "to be or not to be"}
        assert done["id"] == created["id"] and done["updated_at"] >= created["updated_at"]
        _, failed = client.run_operation("image-operations", "fail", {"message": "Source file not found."})
        assert failed["status"] == "failed"
        assert failed["result"] == {"error": "Source file not found.", "details": {"operation": "fail"}}
        # A file object first (POST /v1/files), then a task that names it as its input.
        file = requests.post(f"{api}/v1/files?filename=scan.pdf", data=DEMO_PDF,
                             headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/pdf"}).json()
        assert file["id"].startswith("file_") and file["object"] == "file"
        _, parsed = client.run_operation("pdf-operations", "parse", {"input": file["id"]})
        assert parsed["status"] == "completed" and parsed["result"] == {"chunks": 3}
        missing = requests.post(f"{api}/compat/scandocs/v1/pdf-operations/parse", json={"input": "file_gone"},
                                headers={"Authorization": f"Bearer {KEY}"})
        assert missing.status_code == 422 and "source file not found" in missing.json()["detail"]


def submit_parse(api: str) -> str:
    answer = requests.post(f"{api}/compat/knowhere/v1/jobs", headers={"Authorization": f"Bearer {KEY}"},
                           json={"source_type": "url", "source_url": "https://example.com/report.pdf"})
    assert answer.status_code == 202 and answer.json()["status"] == "pending"
    return str(answer.json()["job_id"])


def knowhere_python(api: str) -> None:
    """003: a file job waits in waiting-file until the file is PUT to its upload_url with its
    upload_headers; then wait_for_job with its back-off; done with a result URL (fresh on each
    read) whose download matches result_checksum."""
    knowhere_file_job(api)
    with seed_env(f"{api}/compat/knowhere"):
        job = seed_module("knowhere_client").wait_for_job(submit_parse(api), timeout=60)
    assert job["status"] == "done" and "completed_at" in job and "progress" not in job
    assert_result_matches_checksum(job)


def knowhere_file_job(api: str) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    created = requests.post(f"{api}/compat/knowhere/v1/jobs", headers=auth, json={
        "source_type": "file", "file_name": "report.pdf", "content_type": "application/pdf"}).json()
    assert created["status"] == "waiting-file" and created["upload_headers"] == {"Content-Type": "application/pdf"}
    with seed_env(f"{api}/compat/knowhere"):
        client = seed_module("knowhere_client")
        try:
            client.wait_for_job(created["job_id"], timeout=5)
            raise AssertionError("a job waiting for its file is no job to wait for")
        except Exception as exc:  # the seed's sample raises a bare Exception
            assert str(exc) == "File not uploaded. Upload file first."
        put = requests.put(created["upload_url"], data=DEMO_PDF, headers=created["upload_headers"])
        assert put.status_code == 200, put.text
        job = client.wait_for_job(created["job_id"], timeout=60)
    assert job["status"] == "done"
    chunks = assert_result_matches_checksum(job)
    assert chunks["source"]["sha256"] == hashlib.sha256(DEMO_PDF).hexdigest(), "the worker read the uploaded file"


def assert_result_matches_checksum(job: dict[str, Any]) -> dict[str, Any]:
    download = requests.get(job["result_url"])  # a presigned URL: no key
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == job["result_checksum"]["value"]
    return dict(json.loads(download.content))


async def knowhere_node(api: str) -> None:
    """003's Node sample, run by node."""
    node = shutil.which("node")
    assert node, "the Node sample needs node (make test installs it)"
    job_id = await asyncio.to_thread(submit_parse, api)
    process = await asyncio.create_subprocess_exec(
        node, str(HERE / "knowhere_client.mjs"), job_id, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "SEED_BASE_URL": f"{api}/compat/knowhere", "SEED_API_KEY": KEY})
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    job = json.loads(out.decode().strip().splitlines()[-1])
    assert job["status"] == "done" and len(job["result_checksum"]["value"]) == 64


def syncfusion(api: str) -> None:
    """000: {jobID, status: requested, createdAt}, then queued / in progress, then the document
    itself from the same URL, with Content-Type and Content-Disposition."""
    with seed_env(f"{api}/compat/syncfusion"):
        submitted, seen, document = seed_module("syncfusion_client").convert("docx-to-pdf", {"file": "file.docx"})
    assert submitted["status"] == "requested" and set(submitted) == {"jobID", "status", "createdAt"}
    assert set(seen) <= {"queued", "in progress"}
    assert document.status_code == 200 and document.content == DEMO_PDF
    assert document.headers["Content-Type"] == "application/pdf"
    assert document.headers["Content-Disposition"] == 'attachment; filename="file.pdf"'
