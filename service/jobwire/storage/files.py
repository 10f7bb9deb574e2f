"""Files as the API shows them: a record beside the bytes, kept in the store itself.

The record (``<tenant>/<file id>.json``) is written after the bytes, so a record always means a
whole file; every replica sharing the store sees the same files without a table of their own.
A file expires ``retention`` after it was stored: reads treat it as gone at once, and a sweep
removes expired files (``sweep``).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from jobwire.ids import new_id
from jobwire.storage import BlobStore
from jobwire.storage.spool import Spooled
from jobwire.timeutil import format_utc, parse_utc

FILE_ID = re.compile(r"file_[A-Za-z0-9_-]{1,64}")
RECORD_SUFFIX = ".json"
#: What a file is for: sent by a client, the input a job waited for, or a worker's result.
PURPOSES = ("upload", "input", "result")
MAX_FILENAME = 255


@dataclass(frozen=True, slots=True)
class FileRecord:
    id: str
    tenant: str
    filename: str
    content_type: str
    size: int
    sha256: str
    purpose: str
    created_at: str
    expires_at: str
    job_id: str | None = None

    def public(self) -> dict[str, Any]:
        """The file object (schemas/file.json): no tenant."""
        return {"id": self.id, "object": "file", "filename": self.filename, "content_type": self.content_type,
                "size": self.size, "checksum": {"algorithm": "sha256", "value": self.sha256},
                "purpose": self.purpose, "job_id": self.job_id, "created_at": self.created_at,
                "expires_at": self.expires_at}


def new_file_id() -> str:
    return new_id("file")


def content_key(tenant: str, file_id: str, sha256: str) -> str:
    """Where a file's bytes are: named by their checksum too, so bytes once accepted are never
    replaced by a later write to the same file id (two PUTs racing to one upload URL)."""
    return f"{tenant}/{file_id}/{sha256}"


def record_key(tenant: str, file_id: str) -> str:
    return f"{tenant}/{file_id}{RECORD_SUFFIX}"


def clean_filename(name: str | None, fallback: str) -> str:
    """A name safe to show and to put in Content-Disposition: no path, no control characters."""
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    # Control and format characters, line and paragraph separators go; other spaces become " ".
    name = "".join(" " if unicodedata.category(ch) == "Zs" else ch for ch in name
                   if unicodedata.category(ch)[0] != "C" and unicodedata.category(ch) not in ("Zl", "Zp"))
    name = name.strip().strip(".")
    return name[:MAX_FILENAME] or fallback


async def save(store: BlobStore, spooled: Spooled, *, tenant: str, filename: str, content_type: str,
               purpose: str, now: datetime, retention_s: float, file_id: str | None = None,
               job_id: str | None = None) -> FileRecord:
    """Store the spooled bytes, then their record; the record."""
    record = FileRecord(
        id=file_id or new_file_id(), tenant=tenant, filename=filename, content_type=content_type,
        size=spooled.size, sha256=spooled.sha256, purpose=purpose, created_at=format_utc(now),
        expires_at=format_utc(now + timedelta(seconds=retention_s)), job_id=job_id,
    )
    await store.put_file(content_key(tenant, record.id, record.sha256), spooled.path, content_type)
    await write_record(store, record)
    return record


async def load(store: BlobStore, tenant: str, file_id: str, now: datetime) -> FileRecord | None:
    """The tenant's file, or None: unknown, another tenant's, or expired."""
    if not FILE_ID.fullmatch(file_id):
        return None
    raw = await store.get_bytes(record_key(tenant, file_id))
    if raw is None:
        return None
    record = FileRecord(**orjson.loads(raw))
    return None if parse_utc(record.expires_at) <= now else record


async def write_record(store: BlobStore, record: FileRecord) -> None:
    await store.put_bytes(record_key(record.tenant, record.id), orjson.dumps(asdict(record)), "application/json")


async def keep_for(store: BlobStore, record: FileRecord, now: datetime, retention_s: float) -> FileRecord:
    """The file kept at least ``retention_s`` from ``now``: a job that names a file as its
    input must not see it swept while it waits or runs."""
    until = format_utc(now + timedelta(seconds=retention_s))
    if parse_utc(record.expires_at) >= parse_utc(until):
        return record
    kept = FileRecord(**{**asdict(record), "expires_at": until})
    await write_record(store, kept)
    return kept


async def remove(store: BlobStore, record: FileRecord) -> None:
    # The record first: from then on the file is gone for readers, whatever happens next.
    await store.delete(record_key(record.tenant, record.id))
    await store.delete(content_key(record.tenant, record.id, record.sha256))


async def sweep(store: BlobStore, now: datetime, *, after: str | None = None, limit: int = 500
                ) -> tuple[int, str | None]:
    """Remove expired files among the next ``limit`` keys after ``after``: how many were
    removed, and where the next sweep goes on (None: the listing ended, start over)."""
    keys = await store.keys("", after=after, limit=limit)
    removed = 0
    for key in keys:
        if not key.endswith(RECORD_SUFFIX):
            continue
        raw = await store.get_bytes(key)
        if raw is None:
            continue
        try:
            record = FileRecord(**orjson.loads(raw))
            expired = parse_utc(record.expires_at) <= now
        except (TypeError, ValueError, orjson.JSONDecodeError):
            continue  # not ours to judge: leave it
        if expired:
            await remove(store, record)
            removed += 1
    return removed, (keys[-1] if len(keys) == limit else None)
