"""Per-endpoint limits: how many requests may be in flight, and how many per second."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from jobwire.webhooks import Endpoint


class _Bucket:
    """A token bucket refilled at ``rate`` per second, one second of burst."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = max(rate, 1.0)
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(max(self.rate, 1.0), self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


class EndpointLimits:
    def __init__(self, in_flight: int) -> None:
        self._in_flight = in_flight
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._buckets: dict[str, _Bucket] = {}

    @contextlib.asynccontextmanager
    async def slot(self, endpoint: Endpoint) -> AsyncIterator[None]:
        semaphore = self._slots.setdefault(endpoint.id, asyncio.Semaphore(self._in_flight))
        async with semaphore:
            if endpoint.rate_limit_per_s:
                bucket = self._buckets.get(endpoint.id)
                if bucket is None or bucket.rate != endpoint.rate_limit_per_s:
                    bucket = self._buckets[endpoint.id] = _Bucket(endpoint.rate_limit_per_s)
                await bucket.take()
            yield
