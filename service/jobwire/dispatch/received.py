"""Deliveries a receiver has taken, remembered so that a replay does not send them again.

A crash replays everything read since the last commit, most of it delivered already. Each
success is noted here as it happens, and a dispatcher starting up reads the tail of
``webhooks.attempts`` (``RECALL_PER_PARTITION`` records of each partition: the successes of the
last moments before a crash) into it. A delivery is not sent again when a success is known for
an attempt of its own lineage: a number above its ``previous_attempts`` (a retry or recover the
API asked for after that success starts above it, and is sent).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import orjson

from jobwire.webhooks.model import Delivery

log = logging.getLogger(__name__)

#: Records of each ``webhooks.attempts`` partition read at start-up.
RECALL_PER_PARTITION = 10_000
#: Deliveries remembered (about 100 bytes each), the oldest forgotten first.
CAPACITY = 200_000

RecentAttempts = Callable[[], AsyncIterator[bytes | None]]


class Received:
    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._through: dict[str, int] = {}  # delivery id -> highest attempt number that succeeded

    def __len__(self) -> int:
        return len(self._through)

    def note(self, delivery_id: str, attempt: int) -> None:
        known = self._through.pop(delivery_id, 0)  # re-inserted: the newest are kept longest
        if len(self._through) >= self.capacity:
            del self._through[next(iter(self._through))]
        self._through[delivery_id] = max(known, attempt)

    def already(self, delivery: Delivery) -> bool:
        """A receiver took this delivery in its own lineage already."""
        return self._through.get(delivery.id, 0) > delivery.previous_attempts

    async def recall(self, attempts: RecentAttempts) -> int:
        """Note the successes among recent attempt records; returns how many were read."""
        read = 0
        async for value in attempts():
            read += 1
            try:
                record = orjson.loads(value or b"null")
                if record["outcome"] == "succeeded":
                    self.note(str(record["delivery_id"]), int(record["attempt"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # not ours to judge here: the API's log reader sets such records aside
        return read
