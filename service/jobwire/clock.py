"""Time as the dispatcher's parts see it: one object to pass, so a simulation can run them on
virtual time (``monotonic`` for intervals and waits, ``time`` for wall-clock moments)."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def time(self) -> float: ...


class SystemClock:
    """The process's clocks."""

    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)


SYSTEM = SystemClock()
