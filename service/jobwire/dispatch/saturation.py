"""Whether the dispatcher itself is the bottleneck: its event loop's thread busy on the CPU.

A lane's pace is measured from its attempts' times, and those include the time the event loop
takes to come back to an answered request. When the process runs out of CPU, every endpoint
looks slow by the same amount although none is: parking their deliveries on the retry path
then only adds work (a write and a read back per delivery) to a process that has none to
spare. ``Lanes`` asks this before judging an endpoint slow.
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: Share of one core above which the loop's thread counts as busy: the event loop runs on one
#: thread, so one core is all the dispatcher's Python work can use. Under a CPU quota of less
#: than a core it is never reached, and lanes judge endpoints by their measured pace alone.
BUSY_SHARE = 0.85
#: Share below which a busy thread counts as idle again: a window a little quieter than the
#: last does not flip the lanes from holding their backlog to parking it.
IDLE_SHARE = 0.6
#: How long each measurement spans.
WINDOW_S = 0.5


class CpuLoad:
    """The share of one core the calling thread (the event loop's: lanes are used there, and
    no exporter or other thread counts) used since the last measurement, taken at most once per
    window (a call costs a clock read otherwise)."""

    __slots__ = ("_cpu", "_wall", "_window_s", "_at", "_used", "_busy")

    def __init__(self, *, window_s: float = WINDOW_S, cpu: Callable[[], float] = time.thread_time,
                 wall: Callable[[], float] = time.monotonic) -> None:
        self._cpu, self._wall, self._window_s = cpu, wall, window_s
        self._at, self._used = wall(), cpu()
        self._busy = False

    def busy(self) -> bool:
        now = self._wall()
        elapsed = now - self._at
        if elapsed >= self._window_s and elapsed > 0:
            used = self._cpu()
            share = (used - self._used) / elapsed
            self._busy = share >= (IDLE_SHARE if self._busy else BUSY_SHARE)
            self._at, self._used = now, used
        return self._busy
