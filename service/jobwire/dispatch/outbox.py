"""Records the dispatcher writes (attempts, retries, dead letters, snapshots, quarantine copies),
sent without waiting for each acknowledgement.

Waiting for the broker on every write would put a round trip on every delivery. Instead, as
Kafka Streams does, every consumer calls ``flush`` before it commits: the offsets move only
once everything written on their behalf is acknowledged. A write the broker does not
acknowledge is fatal (``LogError``): the process exits, and a restart replays from the last
commit, which can duplicate a webhook (same webhook-id) but never lose one.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Sequence
from typing import Any, Protocol

from jobwire.errors import LogError

#: Largest record the dispatcher writes (Kafka's default max.message.bytes is 1 MiB; headers
#: and batch framing need the rest).
MAX_RECORD_BYTES = 1000 * 1024


class Producer(Protocol):
    async def send(self, topic: str, value: bytes | None = None, *, key: bytes | None = None,
                   partition: int | None = None,
                   headers: Sequence[tuple[str, bytes]] | None = None) -> asyncio.Future[Any]: ...

    async def send_and_wait(self, topic: str, value: bytes | None = None, *, key: bytes | None = None,
                            headers: Sequence[tuple[str, bytes]] | None = None) -> Any: ...


class Outbox:
    """Writes numbered as sent; ``_acked_through``: every write up to that number is acknowledged.

    A flush waits for one future, resolved when the acknowledgements reach the number sent
    before it: not for every write's own future (with thousands unacknowledged and a flush
    per consumer every commit interval, waiting on each of them was a tenth of the
    dispatcher's time)."""

    def __init__(self, producer: Producer) -> None:
        self._producer = producer
        # Once a write failed, nothing may be committed any more: the failure sticks.
        self._failed: LogError | None = None
        self._sent = 0
        self._acked_through = 0
        self._acked_early: set[int] = set()
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []  # heap of (mark, seq, future)
        self._waiter_seq = 0

    async def send(self, topic: str, key: str | bytes | None, value: bytes | None, *, partition: int | None = None,
                   headers: list[tuple[str, bytes]] | None = None) -> None:
        if value is not None and len(value) > MAX_RECORD_BYTES:
            # Callers keep records under the limit; reaching here is a bug, said plainly.
            raise LogError(f"a {len(value)} byte record for {topic} is over the {MAX_RECORD_BYTES} byte limit",
                           retriable=False)
        if self._failed is not None:
            raise self._failed
        raw_key = key.encode() if isinstance(key, str) else key
        try:
            future = await self._producer.send(topic, value, key=raw_key, partition=partition, headers=headers)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the producer's own errors, translated at this boundary
            raise LogError(f"writing to {topic} failed: {exc}", retriable=bool(getattr(exc, "retriable", False))) from exc
        self._sent += 1
        future.add_done_callback(self._make_on_done(self._sent))

    def _make_on_done(self, number: int) -> Any:
        def on_done(future: asyncio.Future[Any]) -> None:
            if future.cancelled() or future.exception() is not None:
                if self._failed is None:
                    cause = "cancelled" if future.cancelled() else repr(future.exception())
                    self._failed = LogError(f"a record was not acknowledged: {cause}", retriable=False)
                self._wake()
                return
            self._acked_early.add(number)
            while self._acked_through + 1 in self._acked_early:
                self._acked_through += 1
                self._acked_early.discard(self._acked_through)
            self._wake()
        return on_done

    def _wake(self) -> None:
        while self._waiters and (self._failed is not None or self._waiters[0][0] <= self._acked_through):
            _, _, waiter = heapq.heappop(self._waiters)
            if waiter.done():  # its flush was cancelled
                continue
            if self._failed is not None:
                waiter.set_exception(self._failed)
            else:
                waiter.set_result(None)

    def mark(self) -> int:
        """Where the writes stand now: ``acked(mark)`` tells when all of them are acknowledged."""
        return self._sent

    def acked(self, mark: int) -> bool:
        """Every write sent up to ``mark`` is acknowledged (and none failed)."""
        return self._failed is None and self._acked_through >= mark

    @property
    def pending(self) -> int:
        """Writes sent and not yet acknowledged."""
        return self._sent - self._acked_through - len(self._acked_early)

    async def flush(self) -> None:
        """Wait until every record sent so far is acknowledged; raises if any was not.

        Every record still unacknowledged is waited for, also those another consumer's flush
        is already waiting for: a commit must never pass a write made on its behalf.
        Cancelling a flush cancels only the wait, never the writes."""
        if self._failed is not None:
            raise self._failed
        mark = self._sent
        if self._acked_through >= mark:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiter_seq += 1
        heapq.heappush(self._waiters, (mark, self._waiter_seq, waiter))
        await waiter
