"""The outbox: a flush returns once every write sent before it is acknowledged, never earlier;
a write the broker refuses makes every flush, present and later, fail."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from jobwire.dispatch.outbox import Outbox
from jobwire.errors import LogError


class HeldProducer:
    """Every write's acknowledgement is a future the test resolves, in any order."""

    def __init__(self) -> None:
        self.acks: list[asyncio.Future[Any]] = []

    async def send(self, topic: str, value: bytes | None = None, *, key: bytes | None = None,
                   partition: int | None = None,
                   headers: Sequence[tuple[str, bytes]] | None = None) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.acks.append(future)
        return future

    async def send_and_wait(self, topic: str, value: bytes | None = None, *, key: bytes | None = None,
                            headers: Sequence[tuple[str, bytes]] | None = None) -> Any:
        raise NotImplementedError


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_flush_waits_for_every_write_before_it_whatever_order_they_are_acknowledged_in() -> None:
    producer = HeldProducer()
    outbox = Outbox(producer)
    for n in range(3):
        await outbox.send("t", "k", b"%d" % n)
    first = asyncio.create_task(outbox.flush())
    await settle()  # the flush has begun: it waits for the three writes
    await outbox.send("t", "k", b"3")
    second = asyncio.create_task(outbox.flush())
    producer.acks[2].set_result(None)
    producer.acks[0].set_result(None)
    await settle()
    assert not first.done() and outbox.pending == 2
    producer.acks[1].set_result(None)
    await settle()
    assert first.done() and not second.done(), "the first flush never waits for a write sent after it"
    producer.acks[3].set_result(None)
    await settle()
    assert second.done() and outbox.pending == 0
    await outbox.flush()  # nothing unacknowledged: returns at once


async def test_a_cancelled_flush_leaves_the_writes_and_other_flushes_alone() -> None:
    producer = HeldProducer()
    outbox = Outbox(producer)
    await outbox.send("t", "k", b"0")
    cancelled, waiting = asyncio.create_task(outbox.flush()), asyncio.create_task(outbox.flush())
    await settle()
    cancelled.cancel()
    await settle()
    assert not producer.acks[0].cancelled()
    producer.acks[0].set_result(None)
    await settle()
    assert waiting.done() and waiting.exception() is None
    assert outbox.acked(outbox.mark())


async def test_a_refused_write_fails_every_flush_and_every_later_write() -> None:
    producer = HeldProducer()
    outbox = Outbox(producer)
    await outbox.send("t", "k", b"0")
    await outbox.send("t", "k", b"1")
    mark = outbox.mark()
    flush = asyncio.create_task(outbox.flush())
    producer.acks[1].set_result(None)
    producer.acks[0].set_exception(RuntimeError("NotEnoughReplicas"))
    await settle()
    with pytest.raises(LogError, match="not acknowledged"):
        await flush
    assert not outbox.acked(mark)
    with pytest.raises(LogError):
        await outbox.flush()
    with pytest.raises(LogError):
        await outbox.send("t", "k", b"2")
