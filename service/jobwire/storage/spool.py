"""Receiving bytes: spooled to a local file, counted and hashed on the way in.

A file is stored only once it is whole, its size within the limit and its checksum the one the
sender announced: a store never holds half an upload or bytes that do not match.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from jobwire.errors import JobwireError


class TooLarge(JobwireError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the file is larger than {limit} bytes, the most accepted")
        self.limit = limit


class ChecksumMismatch(JobwireError):
    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"the file's sha256 is {actual}, not {expected} as announced")
        self.expected, self.actual = expected, actual


@dataclass(frozen=True, slots=True)
class Spooled:
    path: Path
    size: int
    sha256: str


async def spool(chunks: AsyncIterator[bytes], directory: Path, max_bytes: int,
                expected_sha256: str | None = None) -> Spooled:
    """Write ``chunks`` to a new file in ``directory``; TooLarge past ``max_bytes`` (read no
    further), ChecksumMismatch when ``expected_sha256`` is given and differs. The caller removes
    the file (``discard``) once it is stored."""
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    handle, name = tempfile.mkstemp(dir=directory, prefix=".spool-")
    path = Path(name)
    try:
        with os.fdopen(handle, "wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(max_bytes)
                digest.update(chunk)
                out.write(chunk)
        actual = digest.hexdigest()
        if expected_sha256 is not None and expected_sha256.lower() != actual:
            raise ChecksumMismatch(expected_sha256.lower(), actual)
    except BaseException:
        discard(path)
        raise
    return Spooled(path, size, actual)


def spool_bytes(data: bytes, directory: Path) -> Spooled:
    """Bytes a worker holds in memory, as a spooled file."""
    directory.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=directory, prefix=".spool-")
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    return Spooled(Path(name), len(data), hashlib.sha256(data).hexdigest())


def clear_stale(directory: Path, older_than_s: float = 3600.0) -> int:
    """Remove spool files a crashed process left (older than any upload still under way)."""
    if not directory.is_dir():
        return 0
    cutoff = time.time() - older_than_s
    removed = 0
    for path in directory.glob(".spool-*"):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed


def discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


@contextlib.contextmanager
def discarding(spooled: Spooled) -> Iterator[Spooled]:
    try:
        yield spooled
    finally:
        discard(spooled.path)
