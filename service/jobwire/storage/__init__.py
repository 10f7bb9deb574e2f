"""Where file bytes live: uploads, job inputs and results.

One small interface, two adapters: :class:`~jobwire.storage.local.LocalStore` (a folder in the
data dir, zero set-up) and :class:`~jobwire.storage.s3.S3Store` (any S3-compatible store).
Callers hand a store a finished local file (spooled and checksummed by whoever received the
bytes), so neither adapter deals with partial uploads, limits or checksums; reads stream.

Keys are ``<tenant>/<file id>`` for content and ``<tenant>/<file id>.json`` for the file's
record (storage/files.py): the tenant is part of every key, so one tenant's id never names
another's file, and every replica that shares the store sees the same files.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from jobwire.config import Settings

#: Bytes a read hands over at a time.
CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Blob:
    """An open object: its size and type, and its bytes as an async iterator of chunks."""

    size: int
    content_type: str
    chunks: AsyncIterator[bytes]


class BlobStore(Protocol):
    """What the Files API and the worker SDK need of a store."""

    async def start(self) -> None:
        """Open the client (and, for S3, build the presigner) before requests need it."""

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        """Store the file at ``path`` under ``key`` (replacing what was there)."""

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key``: small objects (file records)."""

    async def get_bytes(self, key: str) -> bytes | None:
        """The whole object, or None when there is none: small objects only."""

    async def open(self, key: str) -> Blob | None:
        """The object to stream, or None when there is none."""

    async def delete(self, key: str) -> None:
        """Remove the object; no error when there is none."""

    async def keys(self, prefix: str, *, after: str | None = None, limit: int = 1000) -> list[str]:
        """Up to ``limit`` keys that start with ``prefix``, in order, after ``after``."""

    def presign_get(self, key: str, expires_s: int, *, filename: str, content_type: str) -> str | None:
        """A URL anyone may GET the object from for ``expires_s`` seconds, answered with
        ``content_type`` and as an attachment named ``filename``; None when the store serves no
        such URLs (the API then mints its own, to its content route)."""

    async def close(self) -> None:
        """Release connections."""


def open_store(settings: Settings) -> BlobStore:
    """The store ``JOBWIRE_STORAGE`` names."""
    storage = settings.storage
    if storage.kind == "s3":
        from jobwire.storage.s3 import S3Store

        return S3Store(storage.bucket, storage.prefix, endpoint_url=storage.endpoint_url, region=storage.region)
    from jobwire.storage.local import LocalStore

    return LocalStore(settings.data_dir / "files")


def spool_dir(settings: Settings) -> Path:
    """Where received bytes wait until they are stored: beside the local store, so storing
    them there is a copy on one disk."""
    return settings.data_dir / "spool"
