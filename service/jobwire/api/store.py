"""The API's store on local disk: one SQLite database in WAL mode holding the read models and,
in the same transactions as their rows, the log offsets those rows reflect.

It is a cache of the log, as a Kafka Streams state store is: a restart resumes from the stored
offsets instead of replaying history, a crash can never leave rows and offsets apart (one
transaction holds both), and deleting the file only costs a rebuild. One process owns a data
dir at a time (an exclusive lock on a file beside the database), since two writers folding the
same log into one file would interleave.

Reads run on the event loop, on a connection of their own: a point read costs microseconds,
and in WAL mode it never waits for a writer. Writes (folding a batch, removing rows past
retention, and the WAL checkpoints commits bring) run on a second connection owned by one
writer thread, so a catch-up of millions of records never holds a request: the thread leaves
the GIL to the loop at least every switch interval, and SQLite releases it while it works.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

from jobwire.errors import StoreError
from jobwire.timeutil import format_utc

log = logging.getLogger(__name__)

#: Bumped when the tables change shape: a store written by another version is rebuilt.
SCHEMA_VERSION = "2"
FILE_NAME = "api.sqlite3"
#: Page cache per connection (KiB, as SQLite's negative cache_size): enough for the indexes'
#: upper levels and the hot jobs; the rest stays on disk, not in RSS.
CACHE_KIB = 32 * 1024

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS offsets (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition));
"""


class Store:
    """The database file, its lock, and the offsets of each topic folded into it.

    ``db`` is for reads on the event loop; ``writer`` for write transactions, used from the
    writer thread once the feeds run (``write``). In memory there is one connection for both,
    and writes run on the caller's thread: a second connection would open another database.
    """

    def __init__(self, data_dir: Path | None) -> None:
        """The store in ``data_dir``; with None, one in memory (unit tests, a throwaway replica)."""
        self.path = data_dir / FILE_NAME if data_dir is not None else Path(":memory:")
        self._lock = _lock(data_dir) if data_dir is not None else None
        self._executor: ThreadPoolExecutor | None = None
        try:
            self.writer = _connect(self.path)
            if self.meta_of(self.writer, "schema") not in (None, SCHEMA_VERSION):
                log.warning("store rebuilding path=%s reason=written by another version of jobwire", self.path)
                self.writer.close()
                _remove(self.path)
                self.writer = _connect(self.path)
            self.writer.executescript(_SCHEMA)
            self.writer.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            if data_dir is None:
                self.db = self.writer
            else:
                self.db = _connect(self.path)
                self.db.execute("PRAGMA query_only = ON")  # a write from a request would bypass the log
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        except sqlite3.Error as exc:
            with contextlib.suppress(AttributeError, sqlite3.Error):
                self.writer.close()
            self._release()
            raise StoreError(f"cannot open the store at {self.path}: {exc}") from exc

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)  # a write under way finishes: rows and offsets together
        with contextlib.suppress(sqlite3.Error):
            self.writer.execute("PRAGMA optimize")
        self.writer.close()
        if self.db is not self.writer:
            self.db.close()
        self._release()

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """Reads that must agree with each other (a page, then its rows' details): one read
        transaction on the read connection, so a fold committed meanwhile shows in none or all."""
        if self.db is self.writer:  # in memory: writes run on the caller's thread, never meanwhile
            yield self.db
            return
        self.db.execute("BEGIN")
        try:
            yield self.db
        finally:
            self.db.execute("COMMIT")

    def write_now(self, work: Callable[..., T], *args: Any) -> T:
        """``work(connection, *args)`` in one write transaction, on this thread."""
        with self.transaction() as db:
            return work(db, *args)

    async def write(self, work: Callable[..., T], *args: Any) -> T:
        """``work(connection, *args)`` in one write transaction on the writer thread; the loop
        goes on serving reads meanwhile. ``work`` must touch nothing the loop reads but the
        database: what it changed is published by the caller, back on the loop."""
        if self._executor is None:
            return self.write_now(work, *args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(self.write_now, work, *args))

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()

    def meta(self, key: str) -> str | None:
        return self.meta_of(self.db, key)

    @staticmethod
    def meta_of(db: sqlite3.Connection, key: str) -> str | None:
        with contextlib.suppress(sqlite3.OperationalError):  # no meta table yet: a new file
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            return row[0] if row else None
        return None

    def set_meta(self, db: sqlite3.Connection, key: str, value: str) -> None:
        db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: everything in it, offsets included, lands or nothing does."""
        self.writer.execute("BEGIN IMMEDIATE")
        try:
            yield self.writer
        except BaseException:
            self.writer.execute("ROLLBACK")
            raise
        self.writer.execute("COMMIT")

    def offsets(self, topic: str) -> dict[int, int]:
        """partition -> next offset to apply, as stored with the rows."""
        rows = self.db.execute("SELECT partition, next_offset FROM offsets WHERE topic = ?", (topic,))
        return dict(rows.fetchall())

    def save_offsets(self, db: sqlite3.Connection, topic: str, offsets: Mapping[int, int]) -> None:
        """Within a transaction: the offsets that this transaction's rows bring the topic to."""
        db.executemany("INSERT OR REPLACE INTO offsets VALUES (?, ?, ?)",
                       [(topic, partition, offset) for partition, offset in offsets.items()])

    def resume(self, model: str, topic: str, tables: tuple[str, ...],
               beginnings: Mapping[int, int], ends: Mapping[int, int]) -> tuple[dict[int, int], bool]:
        """Where the read model ``model`` (its rows in ``tables``) resumes reading ``topic``:
        partition -> next offset, and whether it was emptied to be rebuilt from the log start.

        Emptied when the stored offsets cannot be resumed from (``stale_reason``) or were
        written for another topic (another topic prefix pointed at the same data dir).
        """
        stored = self.offsets(topic)
        fed_from = self.meta(f"topic:{model}")
        reason = None
        if fed_from is not None and fed_from != topic:
            reason = f"it holds {fed_from}, not {topic}"
        elif fed_from is None and any(self.db.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone() for t in tables):
            reason = "its rows have no offsets"  # noqa: S608 above - table names come from code
        else:
            reason = stale_reason(stored, beginnings, ends)
        if reason is not None:
            log.warning("store rebuilding model=%s topic=%s path=%s reason=%s", model, topic, self.path, reason)
            with self.transaction() as db:
                for table in tables:
                    db.execute(f"DELETE FROM {table}")  # noqa: S608 - table names come from code
                db.execute("DELETE FROM offsets WHERE topic = ?", (fed_from or topic,))
            stored = {}
        with self.transaction() as db:
            self.set_meta(db, f"topic:{model}", topic)
        start = {p: max(stored.get(p, 0), beginnings.get(p, 0)) for p in ends}
        if stored and reason is None:
            log.info("store resuming model=%s topic=%s offsets=%s", model, topic, start)
        return start, reason is not None


def stale_reason(stored: Mapping[int, int], beginnings: Mapping[int, int], ends: Mapping[int, int]) -> str | None:
    """Why offsets stored for a topic cannot be resumed from, or None when they can.

    Ahead of the log's end: the topic was deleted and made again, so the rows describe records
    that no longer exist. Behind the log's start: retention removed records the store never
    applied. A partition the topic does not have: another topic of the same name.
    """
    for partition, offset in stored.items():
        if partition not in ends:
            return f"partition {partition} is not in the log (the topic was recreated)"
        if offset > ends[partition]:
            return (f"partition {partition} stored offset {offset} is past the log end {ends[partition]} "
                    "(the topic was recreated)")
        if offset < beginnings.get(partition, 0):
            return (f"partition {partition} stored offset {offset} is before the log start "
                    f"{beginnings[partition]} (retention removed records never applied)")
    return None


class ReadModel(Protocol):
    """A projection kept in the store: the jobs, the delivery log."""

    topic: str
    retention_s: float

    async def apply(self, records: Sequence[Any]) -> object: ...

    async def evict_before(self, cutoff: str) -> int: ...


#: How often a feed removes rows past retention.
EVICT_EVERY_S = 60.0


async def feed(model: ReadModel, batches: AsyncIterator[Sequence[Any]], stop: asyncio.Event) -> None:
    """Apply ``batches`` to ``model`` until ``stop`` is set, removing rows past retention now
    and then. A write the store refuses (disk full, I/O error) ends the feed rather than skip
    records: /readyz then reports it, and the replica leaves rotation."""
    last_eviction = 0.0
    loop = asyncio.get_running_loop()
    async for batch in batches:
        try:
            await model.apply(batch)
        except sqlite3.Error:
            log.exception("store write failed topic=%s", model.topic)
            raise
        if stop.is_set():
            return
        if model.retention_s and loop.time() - last_eviction > EVICT_EVERY_S:
            last_eviction = loop.time()
            cutoff = format_utc(datetime.now(UTC) - timedelta(seconds=model.retention_s))
            removed = await model.evict_before(cutoff)
            if removed:
                log.info("store removed rows past retention topic=%s count=%d cutoff=%s", model.topic, removed, cutoff)


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: transactions are explicit (``Store.transaction``), so a read never
    # opens one that would pin an old WAL snapshot.
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode = WAL")
    # NORMAL: a committed transaction survives a process crash; a power cut may lose the last
    # few, which only means re-reading them from the log (their offsets go with them).
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    db.execute("PRAGMA temp_store = MEMORY")
    return db


def _lock(data_dir: Path) -> IO[bytes]:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        handle = open(data_dir / "api.lock", "ab")  # noqa: SIM115 - held open as the lock
    except OSError as exc:
        raise StoreError(f"cannot use JOBWIRE_DATA_DIR {data_dir}: {exc}") from exc
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StoreError(f"JOBWIRE_DATA_DIR {data_dir} is in use by another jobwire api process; "
                         "give each replica a data dir of its own") from None
    return handle


def _remove(path: Path) -> None:
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path.with_name(name))
