"""Files in a folder: the default store, in ``JOBWIRE_DATA_DIR/files``.

Writes land in a temporary name beside their target and are renamed into place, so a reader
sees a whole object or none, even across a crash. Disk work runs in a thread: a large file
never holds the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from jobwire.storage import CHUNK_BYTES, Blob

#: Beside each object, its content type (a folder has no metadata of its own).
TYPE_SUFFIX = ".type"


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        # Keys are built by jobwire from checked ids, but a key must never leave the root.
        if not key or any(part in ("", ".", "..") for part in parts) or "\\" in key or "\0" in key:
            raise ValueError(f"bad storage key {key!r}")
        return self.root.joinpath(*parts)

    async def start(self) -> None:
        return None

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        await asyncio.to_thread(self._put, key, path, None, content_type)

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._put, key, None, data, content_type)

    def _put(self, key: str, source: Path | None, data: bytes | None, content_type: str) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{target.name}.{secrets.token_hex(6)}.part")
        try:
            if source is not None:
                shutil.copyfile(source, staging)
            else:
                staging.write_bytes(data or b"")
            _write_atomically(target.with_name(target.name + TYPE_SUFFIX), content_type.encode())
            os.replace(staging, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                staging.unlink()

    async def get_bytes(self, key: str) -> bytes | None:
        def read() -> bytes | None:
            try:
                return self._path(key).read_bytes()
            except FileNotFoundError:
                return None
        return await asyncio.to_thread(read)

    async def open(self, key: str) -> Blob | None:
        path = self._path(key)

        def found() -> tuple[int, str] | None:
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                return None
            try:
                content_type = path.with_name(path.name + TYPE_SUFFIX).read_text() or "application/octet-stream"
            except FileNotFoundError:
                content_type = "application/octet-stream"
            return size, content_type

        described = await asyncio.to_thread(found)
        if described is None:
            return None
        # Opened when first read: a Blob never read (a HEAD, a client gone) holds no handle.
        return Blob(described[0], described[1], _chunks(path))

    async def delete(self, key: str) -> None:
        path = self._path(key)

        def remove() -> None:
            for each in (path, path.with_name(path.name + TYPE_SUFFIX)):
                with contextlib.suppress(FileNotFoundError):
                    each.unlink()
        await asyncio.to_thread(remove)

    async def keys(self, prefix: str, *, after: str | None = None, limit: int = 1000) -> list[str]:
        def listed() -> list[str]:
            found: list[str] = []
            if not self.root.is_dir():
                return found
            for folder, _, names in os.walk(self.root):
                base = Path(folder).relative_to(self.root).as_posix()
                for name in names:
                    if name.startswith(".") or name.endswith(TYPE_SUFFIX):
                        continue
                    key = name if base == "." else f"{base}/{name}"
                    if key.startswith(prefix) and (after is None or key > after):
                        found.append(key)
            return sorted(found)[:limit]
        return await asyncio.to_thread(listed)

    def presign_get(self, key: str, expires_s: int, *, filename: str, content_type: str) -> str | None:
        return None  # the API signs URLs to its own content route

    async def close(self) -> None:
        return None


def _write_atomically(path: Path, data: bytes) -> None:
    staging = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
    staging.write_bytes(data)
    os.replace(staging, path)


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        while True:
            chunk = await asyncio.to_thread(handle.read, CHUNK_BYTES)
            if not chunk:
                return
            yield chunk
    finally:
        handle.close()
