"""One contract for every BlobStore: the folder store and the S3 store, the latter against a real
S3-compatible server (S3Proxy, tests/integration/conftest.py), so signing, listing and streaming
are what a real server answers. Presigned URLs are fetched with plain aiohttp, no credentials."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote

import aiohttp
import pytest

from jobwire.storage import CHUNK_BYTES, BlobStore
from jobwire.storage.local import LocalStore
from jobwire.storage.s3 import S3Store, attachment
from tests.integration.conftest import S3Endpoint
from tests.support.eventually import eventually


def s3_store_on(server: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> S3Store:
    """A store on the test server, credentials the standard way (the environment), under a prefix
    of its own: the session's one bucket never shows a test another test's keys."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return S3Store(server.bucket, f"t-{uuid.uuid4().hex[:10]}/files", endpoint_url=server.endpoint_url, region=None)


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                ) -> AsyncIterator[BlobStore]:
    made: BlobStore
    if request.param == "local":
        made = LocalStore(tmp_path / "files")
    else:  # the server is started for the first S3 test only: `-k local` needs no Java
        made = s3_store_on(request.getfixturevalue("s3_server"), monkeypatch)
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
async def s3_store(s3_server: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[S3Store]:
    made = s3_store_on(s3_server, monkeypatch)
    try:
        yield made
    finally:
        await made.close()


async def read_all(store: BlobStore, key: str) -> tuple[int, str, list[bytes]] | None:
    blob = await store.open(key)
    if blob is None:
        return None
    return blob.size, blob.content_type, [chunk async for chunk in blob.chunks]


async def test_put_file_then_open_streams_the_same_bytes(store: BlobStore, tmp_path: Path) -> None:
    data = os.urandom(300 * 1024)  # more than 3 chunks
    source = tmp_path / "upload.bin"
    source.write_bytes(data)
    await store.put_file("acme/file_1", source, "application/pdf")

    opened = await read_all(store, "acme/file_1")

    assert opened is not None
    size, content_type, chunks = opened
    assert (size, content_type) == (len(data), "application/pdf")
    assert b"".join(chunks) == data
    assert len(chunks) >= 4 and all(0 < len(chunk) <= CHUNK_BYTES for chunk in chunks)


async def test_a_stream_closed_early_is_released(store: BlobStore) -> None:
    await store.put_bytes("acme/file_1", os.urandom(4 * CHUNK_BYTES), "application/octet-stream")
    blob = await store.open("acme/file_1")
    assert blob is not None

    first = await anext(blob.chunks)
    await blob.chunks.aclose()  # type: ignore[attr-defined]

    assert 0 < len(first) <= CHUNK_BYTES
    assert await store.get_bytes("acme/file_1") is not None  # the store still answers after it


async def test_put_bytes_then_get_bytes(store: BlobStore) -> None:
    await store.put_bytes("acme/file_1.json", b'{"id": "file_1"}', "application/json")

    assert await store.get_bytes("acme/file_1.json") == b'{"id": "file_1"}'
    assert await read_all(store, "acme/file_1.json") == (16, "application/json", [b'{"id": "file_1"}'])


async def test_missing_keys_are_none(store: BlobStore) -> None:
    assert await store.get_bytes("acme/nothing") is None
    assert await store.open("acme/nothing") is None
    assert await store.keys("acme/") == []


async def test_delete_removes_and_a_missing_key_is_fine(store: BlobStore) -> None:
    await store.put_bytes("acme/file_1", b"bytes", "text/plain")

    await store.delete("acme/file_1")

    assert await store.get_bytes("acme/file_1") is None
    assert await store.open("acme/file_1") is None
    await store.delete("acme/file_1")
    await store.delete("acme/never")


async def test_overwriting_replaces_bytes_and_type(store: BlobStore, tmp_path: Path) -> None:
    await store.put_bytes("acme/file_1", b"first version, longer", "text/plain")
    source = tmp_path / "second"
    source.write_bytes(b"second")

    await store.put_file("acme/file_1", source, "application/pdf")

    assert await read_all(store, "acme/file_1") == (6, "application/pdf", [b"second"])
    assert await store.keys("acme/") == ["acme/file_1"]


async def test_keys_page_through_a_prefix_in_order(store: BlobStore) -> None:
    expected = [f"acme/file_{n:02d}" for n in range(25)]
    for key in reversed(expected):
        await store.put_bytes(key, key.encode(), "text/plain")
    await store.put_bytes("acme2/file_00", b"another tenant", "text/plain")
    await store.put_bytes("zeta/file_00", b"another tenant", "text/plain")

    pages: list[list[str]] = []
    after: str | None = None
    for _ in range(5):  # bounded: 25 keys in pages of 10 end at the fourth
        page = await store.keys("acme/", after=after, limit=10)
        pages.append(page)
        if not page:
            break
        after = page[-1]

    assert [len(page) for page in pages] == [10, 10, 5, 0]
    assert [key for page in pages for key in page] == expected
    assert await store.keys("acme", limit=100) == [*expected, "acme2/file_00"]
    assert await store.keys("", after="acme2/file_00") == ["zeta/file_00"]


async def test_s3_keys_page_on_past_a_short_server_page(s3_store: S3Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("jobwire.storage.s3._MAX_PAGE", 3)  # S3 pages at 1000: the same, smaller
    expected = [f"acme/file_{n:02d}" for n in range(10)]
    for key in expected:
        await s3_store.put_bytes(key, b"x", "text/plain")

    assert await s3_store.keys("acme/", limit=7) == expected[:7]
    assert await s3_store.keys("acme/", after=expected[6]) == expected[7:]


@pytest.mark.parametrize("key", ["../escape", "acme/../../escape", "acme//file", "/acme/file", "acme/", "",
                                 "acme/./file", "acme\\file"])
async def test_local_store_refuses_keys_that_leave_or_blur_its_root(tmp_path: Path, key: str) -> None:
    store = LocalStore(tmp_path / "files")

    with pytest.raises(ValueError, match="bad storage key"):
        await store.put_bytes(key, b"x", "text/plain")
    with pytest.raises(ValueError, match="bad storage key"):
        await store.get_bytes(key)
    with pytest.raises(ValueError, match="bad storage key"):
        await store.open(key)
    assert not (tmp_path / "escape").exists()


def test_local_store_presigns_nothing(tmp_path: Path) -> None:
    assert LocalStore(tmp_path).presign_get("acme/file_1", 60, filename="a.pdf", content_type="application/pdf") is None


@pytest.mark.parametrize("filename", ["report.pdf", 'quarterly "Q1" report.pdf', "Größe – 報告.pdf"])
async def test_a_presigned_url_serves_the_object_to_anyone(s3_store: S3Store, filename: str) -> None:
    data = os.urandom(100 * 1024)
    await s3_store.put_bytes("acme/file_1", data, "application/octet-stream")

    url = s3_store.presign_get("acme/file_1", 60, filename=filename, content_type="application/pdf")

    assert url is not None and url.startswith(s3_store.endpoint_url or "")
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200, await response.text()
        assert await response.read() == data
        assert response.headers["Content-Type"] == "application/pdf"
        disposition = response.headers["Content-Disposition"]
    assert disposition == attachment(filename)
    assert disposition.startswith("attachment; ")
    if filename.isascii() and '"' not in filename:
        assert f'filename="{filename}"' in disposition
    else:
        assert unquote(disposition.split("filename*=UTF-8''", 1)[1]) == filename


async def test_a_presigned_url_is_refused_once_it_expired(s3_store: S3Store) -> None:
    await s3_store.put_bytes("acme/file_1", b"bytes", "text/plain")
    url = s3_store.presign_get("acme/file_1", 1, filename="a.txt", content_type="text/plain")
    assert url is not None

    async with aiohttp.ClientSession() as http:
        async def refused() -> tuple[int, str] | None:
            async with http.get(url) as response:
                body = await response.text()
                return None if response.status == 200 else (response.status, body)

        status, body = await eventually(refused, "the expired URL to be refused", timeout_s=15, interval_s=0.25)
    assert status == 403 and "expired" in body, body


async def test_a_presigned_url_needs_its_signature(s3_store: S3Store) -> None:
    await s3_store.put_bytes("acme/file_1", b"bytes", "text/plain")
    url = s3_store.presign_get("acme/file_1", 60, filename="a.txt", content_type="text/plain")
    assert url is not None

    async with aiohttp.ClientSession() as http, http.get(url.replace("acme/file_1", "acme/file_2")) as response:
        assert response.status == 403


@pytest.mark.parametrize(("filename", "expected"), [
    ("a.pdf", 'attachment; filename="a.pdf"'),
    ('a "b".pdf', "attachment; filename=\"a _b_.pdf\"; filename*=UTF-8''a%20%22b%22.pdf"),
    ("x\r\nSet-Cookie: a=b", "attachment; filename=\"x__Set-Cookie: a=b\"; filename*=UTF-8''x%0D%0ASet-Cookie%3A%20a%3Db"),
    ("é.txt", "attachment; filename=\"_.txt\"; filename*=UTF-8''%C3%A9.txt"),
])
def test_attachment_quotes_any_filename_safely(filename: str, expected: str) -> None:
    assert attachment(filename) == expected


@pytest.mark.parametrize(("bucket", "region", "expected"), [
    ("files", "eu-north-1", "https://files.s3.eu-north-1.amazonaws.com/tenant/acme/file_1?"),
    ("files", None, "https://files.s3.amazonaws.com/tenant/acme/file_1?"),
    ("my.files", "eu-north-1", "https://s3.eu-north-1.amazonaws.com/my.files/tenant/acme/file_1?"),
])
async def test_on_aws_presigned_urls_name_the_bucket_s_region(monkeypatch: pytest.MonkeyPatch, bucket: str,
                                                              region: str | None, expected: str) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)  # no region from a developer's ~/.aws
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    store = S3Store(bucket, "tenant/", region=region)

    url = store.presign_get("acme/file_1", 60, filename="a.pdf", content_type="application/pdf")  # no request
    await store.close()

    assert url is not None and url.startswith(expected)
    assert "X-Amz-Expires=60" in url and "X-Amz-Signature=" in url
