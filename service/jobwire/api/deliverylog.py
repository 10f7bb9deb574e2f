"""The API's view of webhook deliveries, projected from ``webhooks.attempts`` into the store.
The attempt that ends a delivery unsent carries the delivery, so retry and recover can replay it.

Like the jobs projection: each batch of records lands in one transaction with the offsets it
brings the topic to, so a restart resumes without replay and a crash loses nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import orjson

from jobwire.api.store import Store
from jobwire.events import MAX_DEPTH
from jobwire.positions import AppliedPositions, Position
from jobwire.records import RawRecord, skipped
from jobwire.timeutil import is_time
from jobwire.validation import FieldChecks, checked_record
from jobwire.webhooks.model import Attempt, Delivery

#: An attempt's fields as its entry in a delivery's list of attempts shows them.
ENTRY_FIELDS = tuple(f.name for f in fields(Attempt) if f.name not in {
    "delivery_id", "endpoint_id", "tenant", "event_type", "event_id", "job_id", "dead_letter"})
#: Deepest nesting of an attempt record: a dead letter carries a webhook body, which carries a
#: task object, which carries the job's parameters, themselves up to an event's depth.
ATTEMPT_MAX_DEPTH = MAX_DEPTH + 8


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _optional_text(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _optional_number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _optional_count(value: Any) -> bool:
    return value is None or _count(value)


def _optional_time(value: Any) -> bool:
    return value is None or is_time(value)


def _object(value: Any) -> bool:
    return isinstance(value, dict)


def _optional_object(value: Any) -> bool:
    return value is None or isinstance(value, dict)


#: What each field of an attempt record must be, so that one that decodes cannot break a later
#: request (ids used as keys, times compared as strings, numbers in responses).
ATTEMPT_FIELDS: FieldChecks = {
    "delivery_id": (_text, "a string"), "endpoint_id": (_text, "a string"), "tenant": (_text, "a string"),
    "event_type": (_text, "a string"), "event_id": (_text, "a string"), "job_id": (_optional_text, "null or a string"),
    "attempt": (_count, "a non-negative integer"), "at": (is_time, "an RFC 3339 time"), "outcome": (_text, "a string"),
    "status_code": (_optional_count, "null or a non-negative integer"),
    "latency_ms": (_optional_number, "null or a number"), "error": (_optional_text, "null or a string"),
    "response_excerpt": (_optional_text, "null or a string"),
    "next_attempt_at": (_optional_time, "null or an RFC 3339 time"), "extra": (_object, "an object"),
    "dead_letter": (_optional_object, "null or an object"),
    "request": (_optional_object, "null or an object"),
}


def decode_attempt(raw: bytes) -> Attempt:
    """An attempt record, checked field by field; ``ValueError`` saying what is wrong."""
    data = checked_record(raw, ATTEMPT_FIELDS, "attempt", max_depth=ATTEMPT_MAX_DEPTH)
    try:
        return Attempt(**data)
    except TypeError as exc:  # a required field missing, an unknown one present
        raise ValueError(f"not an attempt: {exc}") from None


STATUS_FOR_OUTCOME = {
    "succeeded": "succeeded", "retrying": "retrying", "failed": "failed", "disabled": "failed",
    "skipped": "skipped", "dropped": "dropped", "refused": "failed",
}
REPLAYABLE = frozenset({"failed", "skipped"})

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY, endpoint_id TEXT NOT NULL, tenant TEXT NOT NULL, event_type TEXT NOT NULL,
    event_id TEXT NOT NULL, job_id TEXT, status TEXT NOT NULL, created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL, dead BLOB);
CREATE INDEX IF NOT EXISTS deliveries_by_endpoint ON deliveries (endpoint_id);
CREATE INDEX IF NOT EXISTS deliveries_by_updated ON deliveries (updated_at);
CREATE INDEX IF NOT EXISTS deliveries_by_job ON deliveries (job_id);
CREATE TABLE IF NOT EXISTS attempts (
    delivery_id TEXT NOT NULL, log_partition INTEGER NOT NULL, log_offset INTEGER NOT NULL, entry BLOB NOT NULL,
    PRIMARY KEY (delivery_id, log_partition, log_offset)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS endpoint_health (
    endpoint_id TEXT NOT NULL, hour TEXT NOT NULL, outcome TEXT NOT NULL, attempts INTEGER NOT NULL,
    PRIMARY KEY (endpoint_id, hour, outcome)) WITHOUT ROWID;
"""
TABLES = ("attempts", "deliveries", "endpoint_health")
# Attempts per endpoint, hour and outcome, counted as they are folded: the health chart reads a
# few dozen rows instead of every attempt of the last day. Each record is folded once (its
# offset is saved in the same transaction), so counting up is exact.
_COUNT_ATTEMPT = """INSERT INTO endpoint_health VALUES (?, ?, ?, 1) ON CONFLICT (endpoint_id, hour, outcome)
    DO UPDATE SET attempts = attempts + 1"""
# A delivery keeps the time of its first attempt; its status and payload follow the latest.
_UPSERT_DELIVERY = """INSERT INTO deliveries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET
    status = excluded.status, updated_at = excluded.updated_at, dead = excluded.dead"""
_INSERT_ATTEMPT = "INSERT OR REPLACE INTO attempts VALUES (?, ?, ?, ?)"
_VIEW_COLUMNS = "id, endpoint_id, tenant, event_type, event_id, job_id, status, created_at, updated_at"
_EVICT_CHUNK = 2000


@dataclass
class DeliveryView:
    id: str
    endpoint_id: str
    tenant: str
    event_type: str
    event_id: str
    job_id: str | None
    status: str
    created_at: str
    updated_at: str
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def public(self, with_attempts: bool = True, with_bodies: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id, "object": "webhook_delivery", "endpoint_id": self.endpoint_id,
            "event_type": self.event_type, "event_id": self.event_id, "job_id": self.job_id,
            "status": self.status, "created_at": self.created_at, "updated_at": self.updated_at,
            "attempt_count": len(self.attempts),
        }
        if with_attempts:
            # Without bodies (a portal session): what was sent is the task object, job data the
            # person holding a portal link need not read; outcomes, codes and timings stay.
            body["attempts"] = self.attempts if with_bodies else [
                {k: v for k, v in attempt.items() if k != "request"} for attempt in self.attempts]
        return body


class DeadLetters:
    """Payloads of deliveries that ended failed or skipped, by delivery id: what retry resends."""

    def __init__(self, store: Store) -> None:
        self._db = store.db

    def get(self, delivery_id: str) -> Delivery | None:
        row = self._db.execute("SELECT dead FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
        return Delivery.decode(row[0]) if row and row[0] is not None else None

    def __contains__(self, delivery_id: object) -> bool:
        return isinstance(delivery_id, str) and self.get(delivery_id) is not None

    def __getitem__(self, delivery_id: str) -> Delivery:
        dead = self.get(delivery_id)
        if dead is None:
            raise KeyError(delivery_id)
        return dead


class DeliveryLog:
    def __init__(self, store: Store, topic: str = "webhooks.attempts", retention_s: float = 30 * 86400.0) -> None:
        self.store = store
        self.topic = topic
        #: Deliveries not updated for this long are removed (0: kept for ever).
        self.retention_s = retention_s
        self.positions = AppliedPositions()  # of webhooks.attempts
        self.dead = DeadLetters(store)
        store.writer.executescript(SCHEMA)

    def resume(self, beginnings: Mapping[int, int], ends: Mapping[int, int]) -> dict[int, int]:
        start, _ = self.store.resume("deliveries", self.topic, TABLES, beginnings, ends)
        self.positions.applied = dict(start)
        return start

    def apply_batch(self, records: Sequence[RawRecord]) -> None:
        """Apply records of ``webhooks.attempts`` in one transaction with their offsets, on this
        thread. A malformed one is skipped (counted and logged) before it changes anything."""
        if records:
            self._publish(self.store.write_now(self._write_batch, records))

    async def apply(self, records: Sequence[RawRecord]) -> None:
        """As ``apply_batch``, with the decoding and the write on the store's writer thread."""
        if records:
            self._publish(await self.store.write(self._write_batch, records))

    def _write_batch(self, db: sqlite3.Connection, records: Sequence[RawRecord]) -> dict[int, int]:
        deliveries, attempts, counted = [], [], []
        offsets: dict[int, int] = {}
        for record in records:
            offsets[record.partition] = record.offset + 1
            row = self._rows(record)
            if row is not None:
                deliveries.append(row[0])
                attempts.append(row[1])
                counted.append(row[2])
        db.executemany(_UPSERT_DELIVERY, deliveries)
        db.executemany(_INSERT_ATTEMPT, attempts)
        db.executemany(_COUNT_ATTEMPT, counted)
        self.store.save_offsets(db, self.topic, offsets)
        return offsets

    def _publish(self, offsets: dict[int, int]) -> None:
        self.positions.applied.update(offsets)
        self.positions.wake()

    def apply_attempt(self, record: RawRecord) -> None:
        self.apply_batch([record])

    @staticmethod
    def _rows(record: RawRecord) -> tuple[tuple[Any, ...], tuple[Any, ...], tuple[str, str, str]] | None:
        if record.value is None:
            return None
        try:
            attempt = decode_attempt(record.value)
            status = STATUS_FOR_OUTCOME.get(attempt.outcome, attempt.outcome)
            replayable = status in REPLAYABLE and attempt.dead_letter is not None
            dead = Delivery.from_dict(attempt.dead_letter).encode() if replayable else None
            entry = orjson.dumps({name: getattr(attempt, name) for name in ENTRY_FIELDS})
        except Exception as exc:  # ValueError from the checks; anything the model itself raises
            skipped(record.topic, Position(record.partition, record.offset), f"{type(exc).__name__}: {exc}")
            return None
        return ((attempt.delivery_id, attempt.endpoint_id, attempt.tenant, attempt.event_type, attempt.event_id,
                 attempt.job_id, status, attempt.at, attempt.at, dead),
                (attempt.delivery_id, record.partition, record.offset, entry),
                (attempt.endpoint_id, attempt.at[:13], attempt.outcome))

    def get(self, tenant: str, delivery_id: str) -> DeliveryView | None:
        with self.store.snapshot() as db:  # the delivery and its attempts as of one commit
            row = db.execute(f"SELECT {_VIEW_COLUMNS} FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
            return self._view(row) if row is not None and row[2] == tenant else None

    def health(self, endpoint_id: str, since: str) -> dict[tuple[str, str], int]:
        """Attempts of the endpoint from the hour of ``since`` on, counted by (hour, outcome):
        the hour as ``YYYY-MM-DDTHH``. Read from the counts kept as attempts are folded."""
        rows = self.store.db.execute(
            "SELECT hour, outcome, attempts FROM endpoint_health WHERE endpoint_id = ? AND hour >= ?",
            (endpoint_id, since[:13]))
        return {(hour, outcome): count for hour, outcome, count in rows}

    def of_endpoint(self, endpoint_id: str, status: str | None = None, limit: int = 50,
                    before: int | None = None) -> tuple[list[DeliveryView], int | None]:
        """The endpoint's deliveries, newest first, at most ``limit``, older than the position
        ``before`` when given; with the position to ask for the next page from (None at the
        end). Two queries whatever the page size: the deliveries, then all their attempts."""
        return self._page("endpoint_id = ?", [endpoint_id], status, limit, before)

    def of_job(self, tenant: str, job_id: str, limit: int = 50,
               before: int | None = None) -> tuple[list[DeliveryView], int | None]:
        """A job's deliveries to every endpoint and to its own callback, paged as ``of_endpoint``."""
        return self._page("job_id = ? AND tenant = ?", [job_id, tenant], None, limit, before)

    def _page(self, where: str, args: list[Any], status: str | None, limit: int,
              before: int | None) -> tuple[list[DeliveryView], int | None]:
        sql = f"SELECT rowid, {_VIEW_COLUMNS} FROM deliveries WHERE {where}"  # noqa: S608 - fixed clauses
        if status is not None:
            sql += " AND status = ?"
            args = [*args, status]
        if before is not None:
            sql += " AND rowid < ?"
            args = [*args, before]
        with self.store.snapshot() as db:  # the page and its attempts as of one commit
            rows = db.execute(sql + " ORDER BY rowid DESC LIMIT ?", [*args, limit + 1]).fetchall()
            more = len(rows) > limit
            rows = rows[:limit]
            attempts: dict[str, list[dict[str, Any]]] = {row[1]: [] for row in rows}
            if rows:
                marks = ",".join("?" * len(rows))
                for delivery_id, entry in db.execute(
                        f"SELECT delivery_id, entry FROM attempts WHERE delivery_id IN ({marks}) "  # noqa: S608 - only marks
                        "ORDER BY log_partition, log_offset", list(attempts)):
                    attempts[delivery_id].append(orjson.loads(entry))
        views = [self._view(row[1:], attempts[row[1]]) for row in rows]
        return views, (rows[-1][0] if more else None)

    def replayable(self, endpoint_id: str, since: str, *, after: int = 0, limit: int = 1000) -> list[tuple[int, str]]:
        """Ids of the endpoint's failed or skipped deliveries first attempted at or after
        ``since``, oldest first, at most ``limit``, each with the position to page on from
        (``after``). Ids only: the payloads are read (``dead``) for those sent again."""
        rows = self.store.db.execute(
            "SELECT rowid, id FROM deliveries WHERE endpoint_id = ? AND dead IS NOT NULL AND created_at >= ? "
            "AND rowid > ? ORDER BY rowid LIMIT ?", (endpoint_id, since, after, limit))
        return rows.fetchall()

    def _view(self, row: tuple[Any, ...], attempts: list[dict[str, Any]] | None = None) -> DeliveryView:
        if attempts is None:
            attempts = [orjson.loads(entry) for (entry,) in self.store.db.execute(
                "SELECT entry FROM attempts WHERE delivery_id = ? ORDER BY log_partition, log_offset", (row[0],))]
        id_, endpoint_id, tenant, event_type, event_id, job_id, status, created_at, updated_at = row
        return DeliveryView(id_, endpoint_id, tenant, event_type, event_id, job_id, status, created_at, updated_at,
                            attempts=attempts)

    async def evict_before(self, cutoff: str) -> int:
        """Remove deliveries last updated before ``cutoff`` with their attempts; returns how many."""
        evicted = 0
        while True:
            removed = await self.store.write(_evict_deliveries, cutoff)
            evicted += removed
            if removed < _EVICT_CHUNK:
                await self.store.write(_evict_health, cutoff)
                return evicted


def _evict_deliveries(db: sqlite3.Connection, cutoff: str) -> int:
    ids = [row[:1] for row in db.execute("SELECT id FROM deliveries WHERE updated_at < ? LIMIT ?", (cutoff, _EVICT_CHUNK))]
    db.executemany("DELETE FROM attempts WHERE delivery_id = ?", ids)
    db.executemany("DELETE FROM deliveries WHERE id = ?", ids)
    return len(ids)


def _evict_health(db: sqlite3.Connection, cutoff: str) -> None:
    db.execute("DELETE FROM endpoint_health WHERE hour < ?", (cutoff[:13],))
