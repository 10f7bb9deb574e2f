"""An asyncio event loop on virtual time: when nothing is ready to run, time jumps to the next
timer instead of waiting for it, so a schedule of minutes runs in milliseconds and the same
seed runs the same way. Nothing in a simulation does real I/O, so the selector never has
anything to report."""

from __future__ import annotations

import asyncio
import selectors
from typing import Any

#: Wall-clock time at virtual zero (any fixed moment will do; this one is in 2027).
EPOCH = 1_800_000_000.0


class _IdleSelector(selectors.BaseSelector):
    def __init__(self, loop: VirtualLoop) -> None:
        self._loop = loop
        self._map: dict[Any, selectors.SelectorKey] = {}

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = selectors.SelectorKey(fileobj, fileobj if isinstance(fileobj, int) else fileobj.fileno(), events, data)
        self._map[fileobj] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._map.pop(fileobj)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise RuntimeError("simulation deadlock: no task can run and no timer is set")
        self._loop.advance(timeout)
        return []

    def close(self) -> None:
        self._map.clear()

    def get_map(self) -> Any:
        return self._map


class VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._now = 0.0
        super().__init__(selector=_IdleSelector(self))

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += max(0.0, seconds)


class VirtualClock:
    """The ``jobwire.clock.Clock`` of a virtual loop."""

    def __init__(self, loop: VirtualLoop) -> None:
        self._loop = loop

    def monotonic(self) -> float:
        return self._loop.time()

    def time(self) -> float:
        return EPOCH + self._loop.time()
