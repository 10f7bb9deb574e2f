"""The dispatcher's own CPU load, as lanes ask for it before judging an endpoint slow."""

from __future__ import annotations

from jobwire.dispatch.saturation import IDLE_SHARE, CpuLoad


class Clocks:
    def __init__(self) -> None:
        self.cpu = self.wall = 0.0


def test_busy_once_a_window_used_most_of_a_core_and_not_before() -> None:
    clocks = Clocks()
    load = CpuLoad(window_s=1.0, cpu=lambda: clocks.cpu, wall=lambda: clocks.wall)
    clocks.wall, clocks.cpu = 0.5, 0.5
    assert not load.busy(), "half a window says nothing yet"
    clocks.wall, clocks.cpu = 1.0, 0.95
    assert load.busy()
    clocks.wall, clocks.cpu = 1.5, 1.45
    assert load.busy(), "measured again only once the next window has passed"
    clocks.wall, clocks.cpu = 2.0, 0.95 + 0.7
    assert load.busy(), "a little quieter than busy is still busy"
    clocks.wall, clocks.cpu = 3.0, 1.65 + IDLE_SHARE - 0.05
    assert not load.busy(), "a window of mostly waiting is not busy"
    clocks.wall, clocks.cpu = 4.0, 2.2 + 0.7
    assert not load.busy(), "nor is a little busier than idle"
