"""Files end to end on a real broker, with the file store on a real S3-compatible server
(S3Proxy on loopback) and on the local disk: a job created to wait for its input is PUT its
file, an SDK worker reads it and stores its result, and the client downloads the result from a
presigned URL minted for that read (S3's own URL on S3), checked against result_checksum."""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from jobwire.config import Settings
from jobwire.devtools.demo_ops import DEMO_OPERATIONS
from jobwire.kafka.admin import ensure_topics
from tests.conftest import settings_for
from tests.integration.conftest import S3Endpoint
from tests.support.servers import running_api, running_worker

KEY = "key_files_0123456789"
AUTH = {"X-API-Key": KEY}
INPUT = b"%PDF-1.4 the input\n" * 5000  # 95 KB: several chunks on every hop


@contextlib.asynccontextmanager
async def api_and_parse_worker(settings: Settings) -> AsyncIterator[str]:
    await ensure_topics(settings)
    async with running_api(settings) as url, running_worker(settings, "parse", DEMO_OPERATIONS["parse"]):
        yield url


async def run_file_job(http: aiohttp.ClientSession, api: str) -> tuple[dict[str, Any], bytes]:
    async with http.post(f"{api}/v1/jobs", headers=AUTH, json={
            "operation": "parse", "parameters": {},
            "input": {"upload": {"content_type": "application/pdf", "filename": "in.pdf"}}}) as answer:
        assert answer.status == 202, await answer.text()
        task = await answer.json()
    upload = task["input"]
    async with http.put(upload["upload_url"], data=INPUT, headers=upload["upload_headers"]) as put:
        assert put.status == 200, await put.text()
    done = task
    for _ in range(60):  # bounded long-polls: each returns on the job's next change
        async with http.get(f"{api}/v1/jobs/{task['id']}", headers={**AUTH, "Prefer": "wait=5"}) as answer:
            done = await answer.json()
        if done["status"] in ("completed", "failed", "canceled"):
            break
    assert done["status"] == "completed", done
    async with http.get(done["result_url"]) as download:  # presigned: no key
        assert download.status == 200, await download.text()
        body = await download.read()
    return done, body


@pytest.mark.timeout(180)
@pytest.mark.parametrize("storage", ["local", "s3"])
async def test_an_uploaded_input_becomes_a_downloadable_result(kafka_bootstrap: str, storage: str,
                                                               request: pytest.FixtureRequest,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"JOBWIRE_API_KEYS": f"acme:{KEY}", "JOBWIRE_SECRET_KEY": "files-secret-key-0123456789"}
    if storage == "s3":
        s3: S3Endpoint = request.getfixturevalue("s3_server")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.update(JOBWIRE_STORAGE=f"s3://{s3.bucket}/t{uuid.uuid4().hex[:8]}", JOBWIRE_S3_ENDPOINT_URL=s3.endpoint_url)
    settings = settings_for(kafka_bootstrap, **env)
    async with api_and_parse_worker(settings) as api, aiohttp.ClientSession() as http:
        done, body = await run_file_job(http, api)
        assert hashlib.sha256(body).hexdigest() == done["result_checksum"]["value"]
        chunks = orjson.loads(body)
        assert chunks["source"] == {"file_id": done["input"]["file_id"], "size": len(INPUT),
                                    "sha256": hashlib.sha256(INPUT).hexdigest()}, "the worker read the upload"
        if storage == "s3":
            assert done["result_url"].startswith(settings.storage.endpoint_url or ""), "S3's own presigned URL"
        # The input is a file of the tenant's like any other, with its checksum.
        async with http.get(f"{api}/v1/files/{done['input']['file_id']}/content", headers=AUTH) as content:
            assert content.status == 200 and await content.read() == INPUT
            assert content.headers["Content-Type"] == "application/pdf"
        async with http.get(f"{api}/v1/files/{done['result_file']['id']}", headers=AUTH) as described:
            file = await described.json()
        assert file["purpose"] == "result" and file["job_id"] == done["id"] and file["size"] == len(body)
        # Uploaded through the Files API, then named as a job's input.
        form = aiohttp.FormData()
        form.add_field("file", INPUT[:1000], filename="direct.pdf", content_type="application/pdf")
        async with http.post(f"{api}/v1/files", headers=AUTH, data=form) as posted:
            assert posted.status == 201, await posted.text()
            direct = await posted.json()
        async with http.get(direct["url"]) as fetched:
            assert await fetched.read() == INPUT[:1000]


