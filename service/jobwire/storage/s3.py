"""Objects in an S3-compatible store (AWS S3, MinIO, Ceph, R2, ...): every replica, on any host,
sees the same files, and clients can fetch large ones straight from the store.

aiobotocore: botocore signs, retries and presigns (the reference implementation, which every
S3-compatible server is tested against) on the aiohttp jobwire already runs. Credentials come
the standard way (``AWS_*`` variables, profiles, instance roles): jobwire holds none of its own.

With an ``endpoint_url`` the store is some S3-compatible server: path-style addressing, as such
servers on loopback or a private name have no DNS name per bucket; and checksums only where
S3 requires them, as botocore's default (checksum trailers) is refused by many of them.

``BlobStore.presign_get`` is synchronous and aiobotocore's presigner is a coroutine, so a plain
botocore client presigns: local computation, no request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any
from urllib.parse import quote

import botocore.config  # type: ignore[import-untyped]
import botocore.session  # type: ignore[import-untyped]
from aiobotocore.config import AioConfig  # type: ignore[import-untyped]
from aiobotocore.session import get_session  # type: ignore[import-untyped]
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from jobwire.storage import CHUNK_BYTES, Blob

#: Error codes that mean "no such object" (HEAD answers a bare 404); NoSuchBucket is not one:
#: a wrong bucket must fail loudly, not look like an empty store.
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
#: The most keys S3 returns for one listing request.
_MAX_PAGE = 1000


class S3Store:
    def __init__(self, bucket: str, prefix: str, *, endpoint_url: str | None = None,
                 region: str | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.region = region
        self._root = f"{self.prefix}/" if self.prefix else ""
        self._client: Any = None
        self._stack: AsyncExitStack | None = None
        self._opening = asyncio.Lock()
        self._presigner: Any = None

    def _key(self, key: str) -> str:
        return self._root + key

    def _config(self, kind: type[Any]) -> Any:
        if self.endpoint_url is None:
            # On AWS, virtual-hosted: botocore's default presigns to the global endpoint, which
            # newer regions refuse (boto/boto3#3015); a dotted bucket name matches no certificate.
            style = "path" if "." in self.bucket else "virtual"
            return kind(signature_version="s3v4", s3={"addressing_style": style})
        return kind(signature_version="s3v4", s3={"addressing_style": "path"},
                    request_checksum_calculation="when_required", response_checksum_validation="when_required")

    async def _s3(self) -> Any:
        if self._client is None:
            async with self._opening:
                if self._client is None:
                    stack = AsyncExitStack()
                    self._client = await stack.enter_async_context(get_session().create_client(
                        "s3", region_name=self.region, endpoint_url=self.endpoint_url,
                        config=self._config(AioConfig)))
                    self._stack = stack
                    if self._presigner is None:
                        # Off the loop, before a request handler presigns: building a client reads
                        # botocore's models (~0.1 s) and may fetch role credentials.
                        self._presigner = await asyncio.to_thread(self._new_presigner)
        return self._client

    async def start(self) -> None:
        await self._s3()

    def _new_presigner(self) -> Any:
        return botocore.session.get_session().create_client(
            "s3", region_name=self.region, endpoint_url=self.endpoint_url, config=self._config(botocore.config.Config))

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        s3 = await self._s3()
        with path.open("rb") as body:
            await s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=body, ContentType=content_type)

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        s3 = await self._s3()
        await s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type)

    async def _get(self, key: str) -> dict[str, Any] | None:
        s3 = await self._s3()
        try:
            response: dict[str, Any] = await s3.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return response

    async def get_bytes(self, key: str) -> bytes | None:
        response = await self._get(key)
        if response is None:
            return None
        async with response["Body"] as body:
            data: bytes = await body.read()
        return data

    async def open(self, key: str) -> Blob | None:
        response = await self._get(key)
        if response is None:
            return None
        return Blob(size=int(response["ContentLength"]),
                    content_type=response.get("ContentType") or "application/octet-stream",
                    chunks=_chunks(response["Body"]))

    async def delete(self, key: str) -> None:
        s3 = await self._s3()
        try:
            await s3.delete_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if not _missing(exc):
                raise

    async def keys(self, prefix: str, *, after: str | None = None, limit: int = 1000) -> list[str]:
        s3 = await self._s3()
        found: list[str] = []
        # S3 ends a page at 1000 keys: page on, as a short answer means "no more" to callers.
        request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._key(prefix)}
        if after is not None:
            request["StartAfter"] = self._key(after)
        while len(found) < limit:
            page = await s3.list_objects_v2(**request, MaxKeys=min(limit - len(found), _MAX_PAGE))
            found.extend(item["Key"][len(self._root):] for item in page.get("Contents", ()))
            if not page.get("IsTruncated"):
                break
            request["ContinuationToken"] = page["NextContinuationToken"]
        return found[:limit]

    def presign_get(self, key: str, expires_s: int, *, filename: str, content_type: str) -> str | None:
        if self._presigner is None:
            self._presigner = self._new_presigner()
        url: str = self._presigner.generate_presigned_url("get_object", ExpiresIn=expires_s, Params={
            "Bucket": self.bucket, "Key": self._key(key), "ResponseContentType": content_type,
            "ResponseContentDisposition": attachment(filename)})
        return url

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()
        presigner, self._presigner = self._presigner, None
        if presigner is not None:
            presigner.close()


def attachment(filename: str) -> str:
    """A Content-Disposition naming ``filename``: quoted, with what no quoted string can hold
    replaced, and the exact name in RFC 5987 form beside it when that changed anything."""
    plain = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename)
    if plain == filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in _MISSING


async def _chunks(body: Any) -> AsyncIterator[bytes]:
    # Leaving the block (the end, an error, or the reader closing the iterator) releases the
    # connection; one closed mid-body is dropped rather than pooled.
    async with body:
        while chunk := await body.read(CHUNK_BYTES):
            yield chunk
