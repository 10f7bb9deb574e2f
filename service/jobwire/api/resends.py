"""Deliveries this replica asked the dispatcher to send again, remembered for a while.

A retry or a recover puts a delivery request on ``webhooks.requests``; until the dispatcher
has attempted it, the delivery log still shows it failed. Without this, asking again (a double
click, a script in a loop, five recovers of the same range) would queue the same delivery
again each time. Per replica, bounded, and forgotten after ``window_s``: a request that was
lost can be made again then.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

WINDOW_S = 120.0
CAPACITY = 100_000


class RecentResends:
    def __init__(self, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic,
                 capacity: int = CAPACITY) -> None:
        self._window_s = window_s
        self._clock = clock
        self._capacity = capacity
        self._requested: OrderedDict[str, float] = OrderedDict()

    def claim(self, delivery_id: str) -> bool:
        """True the first time within the window (the caller sends it); False after."""
        now = self._clock()
        while self._requested and next(iter(self._requested.values())) <= now - self._window_s:
            self._requested.popitem(last=False)
        if delivery_id in self._requested:
            return False
        if len(self._requested) >= self._capacity:
            self._requested.popitem(last=False)
        self._requested[delivery_id] = now
        return True
