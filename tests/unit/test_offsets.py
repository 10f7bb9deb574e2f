from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from jobwire.offsets import OffsetTracker


def test_commit_stops_below_unfinished_work() -> None:
    tracker = OffsetTracker()
    for offset in range(5):
        tracker.start(0, offset)
    tracker.finish(0, 0)
    tracker.finish(0, 2)
    tracker.finish(0, 3)
    assert tracker.committable() == {0: 1}, "offset 1 is still running"
    tracker.finish(0, 1)
    assert tracker.committable() == {0: 4}
    tracker.finish(0, 4)
    assert tracker.committable() == {0: 5}


def test_skipped_records_move_the_mark_and_partitions_are_independent() -> None:
    tracker = OffsetTracker()
    tracker.skip(0, 0)
    tracker.start(0, 1)
    tracker.skip(0, 2)
    tracker.skip(1, 7)
    assert tracker.committable() == {0: 1, 1: 8}
    assert tracker.to_commit() == {0: 1, 1: 8}
    assert tracker.to_commit() == {0: 1, 1: 8}, "offered again until a commit succeeds"
    tracker.committed({0: 1, 1: 8})
    assert tracker.to_commit() == {}, "nothing moved"
    tracker.finish(0, 1)
    assert tracker.to_commit() == {0: 3}
    tracker.forget({1})
    assert tracker.committable() == {0: 3}


@given(st.permutations(list(range(30))), st.integers(0, 30))
def test_never_commits_past_unfinished_work(finish_order: list[int], finished_count: int) -> None:
    tracker = OffsetTracker()
    for offset in range(30):
        tracker.start(0, offset)
    done = set(finish_order[:finished_count])
    for offset in finish_order[:finished_count]:
        tracker.finish(0, offset)
    committed = tracker.committable()[0]
    assert set(range(committed)) <= done, "everything below the commit is finished"
    assert committed == 30 or committed not in done, "and the commit is as far as it can go"
