"""What a replay is spared: deliveries a receiver took in their own lineage."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import orjson

from jobwire.dispatch.received import Received
from jobwire.webhooks.model import Delivery

FIRST = Delivery("msg_1", "ep_1", "acme", "task.completed", "evt_1", "job_1", b"{}", "2026-01-01T00:00:00.000Z")


def test_a_delivery_taken_is_not_sent_again_in_its_lineage() -> None:
    received = Received()
    assert not received.already(FIRST)
    received.note("msg_1", 2)  # taken at its second attempt
    assert received.already(FIRST) and received.already(replace(FIRST, attempts=1))
    # A retry the API asked for after that success starts above it: it is sent.
    assert not received.already(replace(FIRST, previous_attempts=2))
    assert not received.already(replace(FIRST, id="msg_2"))


def test_the_newest_are_kept_longest() -> None:
    received = Received(capacity=2)
    received.note("msg_a", 1)
    received.note("msg_b", 1)
    received.note("msg_a", 1)  # noted again: now the newest
    received.note("msg_c", 1)
    assert len(received) == 2
    assert received.already(replace(FIRST, id="msg_a")) and not received.already(replace(FIRST, id="msg_b"))


async def test_recall_reads_successes_and_passes_over_anything_else() -> None:
    values = [orjson.dumps({"delivery_id": "msg_1", "attempt": 1, "outcome": "succeeded"}),
              orjson.dumps({"delivery_id": "msg_2", "attempt": 1, "outcome": "retrying"}),
              b"\xffnot json", None, orjson.dumps({"outcome": "succeeded"}), orjson.dumps([1, 2])]

    async def attempts() -> AsyncIterator[bytes | None]:
        for value in values:
            yield value

    received = Received()
    assert await received.recall(attempts) == len(values)
    assert received.already(FIRST) and not received.already(replace(FIRST, id="msg_2")) and len(received) == 1
