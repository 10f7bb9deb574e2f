"""Waiting on conditions, never on time: poll a condition until it holds or a deadline passes,
and say what was waited for when it does not. Bounded in time, so in count too."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(condition: Callable[[], T | Awaitable[T]], what: str, *, timeout_s: float = 30.0,
                     interval_s: float = 0.05) -> T:
    """The first truthy value of ``condition()`` (sync or async); AssertionError naming ``what``
    and the last value seen if none came within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout_s:g} s for {what}; last seen: {value!r}")
        await asyncio.sleep(interval_s)


def eventually_sync(condition: Callable[[], T], what: str, *, timeout_s: float = 30.0, interval_s: float = 0.05) -> T:
    """``eventually`` for synchronous tests."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout_s:g} s for {what}; last seen: {value!r}")
        time.sleep(interval_s)
