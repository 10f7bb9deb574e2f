"""The queue of a job's deliveries to ordered endpoints (dispatch/ordered_queue.py), against a
plain model: whatever the sequence of webhooks made and heads ended, each endpoint's entries
stay in the order they were made, only a head is ever attempted, a head and a terminal webhook
leave only by ending, a waiting lifecycle notice gives way to a newer webhook, and a job never
holds more than two entries per endpoint."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from jobwire.dispatch.ordered_queue import Pending, Queue, enqueue, finished, head, heads, retrying
from jobwire.dispatch.state import JobState
from jobwire.events import new_event
from jobwire.lifecycle import fold
from jobwire.webhooks.model import Delivery

KINDS = ("task.started", "task.progress", "task.completed")


def pending(n: int, endpoint_id: str, kind: str) -> Pending:
    return Pending(f"msg_{n}", endpoint_id, kind, f"evt_{n}", "2026-01-01T00:00:00.000Z")


def test_a_replayed_entry_is_not_queued_twice() -> None:
    first = pending(1, "ep_a", "task.started")
    assert enqueue(enqueue((), first), first) == (first,)


def test_a_waiting_notice_gives_way_and_the_head_never_does() -> None:
    started, progress, done = pending(1, "ep_a", "task.started"), pending(2, "ep_a", "task.progress"), \
        pending(3, "ep_a", "task.completed")
    other = pending(4, "ep_b", "task.progress")
    queue = enqueue(enqueue(enqueue((), started), progress), other)
    assert enqueue(queue, done) == (started, other, done), "the waiting progress gives way, the head stays"
    assert heads(enqueue(queue, done)) == [started, other]


def test_a_retry_keeps_its_attempts_and_due_time_in_its_entry() -> None:
    entry = pending(1, "ep_a", "task.completed")
    retry = Delivery(entry.id, "ep_a", "acme", entry.event_type, entry.event_id, "job_1", b"{}", entry.created_at,
                     attempts=2, due_at_ms=5_000, not_before_ms=9_000)
    (kept,) = retrying((entry,), retry)
    assert (kept.attempts, kept.ready_at_ms) == (2, 9_000)
    assert Pending.decode(kept.encode()) == kept


operations = st.lists(st.one_of(
    st.tuples(st.just("make"), st.sampled_from(["ep_a", "ep_b"]), st.sampled_from(KINDS)),
    st.tuples(st.just("end"), st.sampled_from(["ep_a", "ep_b"]), st.just(""))), max_size=40)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_entries_keep_their_order_and_their_bound(steps: list[tuple[str, str, str]]) -> None:
    queue: Queue = ()
    made: list[Pending] = []
    ended: list[str] = []
    for n, (op, endpoint_id, kind) in enumerate(steps):
        before = queue
        if op == "make":
            entry = pending(n, endpoint_id, kind)
            made.append(entry)
            queue = enqueue(queue, entry)
            assert queue[-1] == entry
        else:
            first = head(queue, endpoint_id)
            if first is None:
                continue
            ended.append(first.id)
            queue = finished(queue, first.id)
        gone = [p for p in before if p not in queue]
        for entry in gone:
            was_head = head(before, entry.endpoint_id) == entry
            if op == "make":
                assert not was_head and entry.event_type != "task.completed", "only a waiting notice gives way"
                assert entry.endpoint_id == endpoint_id
        for endpoint_id_ in ("ep_a", "ep_b"):
            mine = [p for p in queue if p.endpoint_id == endpoint_id_]
            order = [made.index(p) for p in mine]
            assert order == sorted(order), "in the order they were made"
            assert all(p.event_type == "task.completed" for p in mine[1:-1]), \
                "at most one lifecycle notice waits, the newest (a job makes one terminal webhook: two entries)"
        assert all(p.id not in ended for p in queue)


def test_a_snapshot_with_a_queue_decodes_to_what_was_encoded() -> None:
    job = fold([new_event("job.created", "job_1", "acme", {"operation": "ocr", "parameters": {}})])
    assert job is not None
    started = Pending("msg_1", "ep_a", "task.started", "evt_1", "2026-01-01T00:00:00.000Z",
                      body=b'{"type":"task.started","data":{"version":2}}',
                      traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    state = JobState(job, 7, ordered=(started, pending(2, "ep_a", "task.completed")))
    assert JobState.decode(state.encode()) == state
    assert b"ordered" not in JobState(job, 7).encode(), "left out when empty, as before the field existed"
    assert started.delivery(job).body == started.body, "a notice is sent with the body it was made with"
    assert started.delivery(job).traceparent == started.traceparent, "and in the trace of its record"
