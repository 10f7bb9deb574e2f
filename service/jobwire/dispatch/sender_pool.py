"""A fixed pool of senders: each takes the next delivery the lanes offer, attempts it, and
gives its slot back. There is no task per delivery, so memory does not grow with a backlog."""

from __future__ import annotations

import asyncio
import logging

from jobwire.dispatch.deliverer import Deliverer
from jobwire.dispatch.lanes import Lanes, Work
from jobwire.dispatch.policy import Outcome
from jobwire.errors import LogError
from jobwire.metrics import PARKED

log = logging.getLogger(__name__)


class SenderPool:
    def __init__(self, lanes: Lanes, deliverer: Deliverer, size: int) -> None:
        self.lanes = lanes
        self.deliverer = deliverer
        self.size = size

    async def run(self) -> None:
        """Runs the senders until cancelled; a failing event log (``LogError``) ends it, fatal."""
        async with asyncio.TaskGroup() as group:
            for _ in range(self.size):
                group.create_task(self._sender())

    async def _sender(self) -> None:
        while True:
            lane, work = await self.lanes.take()
            try:
                await self._attempt(work)
            finally:
                self.lanes.release(lane, work)
            for spilled in self.lanes.overflow(lane):
                if spilled.turn is not None:  # an ordered head is never parked: it keeps its place
                    spilled.turn.put_back()
                    continue
                assert spilled.source is not None
                await self.deliverer.park(spilled.delivery, spilled.step)
                PARKED.inc()
                spilled.source.settle(spilled.delivery)

    async def _attempt(self, work: Work) -> None:
        delivery = work.delivery
        outcome = Outcome.FAILED
        try:
            outcome = await self.deliverer.attempt(delivery, work.step,
                                                   on_retry=work.turn.retrying if work.turn else None)
        except LogError:
            raise  # the log is unusable: unsettled, so a restart replays it
        except Exception as exc:  # noqa: BLE001 - a bug in one delivery ends that delivery, not the process
            log.exception("delivery failed unexpectedly delivery_id=%s endpoint_id=%s event_id=%s",
                          delivery.id, delivery.endpoint_id, delivery.event_id)
            try:
                await self.deliverer.bury(delivery, Outcome.FAILED, "internal_error",
                                          error=f"the dispatcher could not attempt it: {type(exc).__name__}")
            except LogError:
                raise
            except Exception as second:  # noqa: BLE001
                # Not even its dead letter could be made. Left unsettled, its offset would hold
                # the partition's commit for good; a restart replays it instead, so this ends
                # the run like a failing log does.
                raise LogError(f"delivery {delivery.id} could neither be attempted nor set aside: "
                               f"{type(second).__name__}: {second}", retriable=False) from second
        if work.turn is not None:
            work.turn.ended(outcome)
        else:
            assert work.source is not None
            work.source.settle(delivery)

    async def drain(self, timeout_s: float) -> None:
        """Wait (bounded) for attempts under way to end, e.g. before a final commit."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.lanes.in_flight and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
