"""Time as the dispatcher's parts see it: one object to pass, so a simulation can run them on
virtual time (``monotonic`` for intervals and waits, ``time`` for wall-clock moments)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

from jobwire.timeutil import format_utc


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def time(self) -> float: ...


class SystemClock:
    """The process's clocks."""

    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)


SYSTEM = SystemClock()


def utc_now(clock: Clock) -> str:
    """The clock's wall-clock moment in the canonical RFC 3339 form (``timeutil``)."""
    return format_utc(datetime.fromtimestamp(clock.time(), UTC))
