"""The dispatcher under random schedules (tests/sim/world.py): each seed draws a topology
(partitions, endpoints and their filters, memory bounds, senders), a workload (jobs with
duplicates, poison and events a finished job must refuse) and faults (late or failing
acknowledgements, failing and hanging receivers, rebalances at any await point, kill -9 and
restart from the committed offsets). The invariants hold after every schedule: each terminal
event reaches each endpoint subscribed to it, or has a dead letter; nothing reaches an endpoint
that was not owed it; no commit passes unfinished work; the lanes stay within their bound; an
ordered endpoint (``ordering: "job"``) never takes a job's webhook after a later one of that job.

``JOBWIRE_SIM_SCHEDULES`` sets how many (``make soak`` runs many more);
``JOBWIRE_SIM_SEED`` runs one seed again. The seed of a failure is in its message."""

from __future__ import annotations

import logging
import os
import random

import pytest

from tests.sim.world import simulate

SCHEDULES = int(os.environ.get("JOBWIRE_SIM_SCHEDULES", "400"))
#: Each run starts somewhere else, so runs together cover more schedules than one run does.
FIRST = int(os.environ["JOBWIRE_SIM_SEED"]) if "JOBWIRE_SIM_SEED" in os.environ else random.randrange(1 << 30)
BATCHES = 8


@pytest.fixture(autouse=True)
def _quiet() -> object:
    # Thousands of schedules log millions of lines; the invariants say what matters.
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


@pytest.mark.parametrize("batch", range(BATCHES))
def test_every_owed_webhook_arrives_under_random_schedules(batch: int) -> None:
    count = 1 if "JOBWIRE_SIM_SEED" in os.environ else max(1, SCHEDULES // BATCHES)
    delivered = 0
    for n in range(count):
        seed = FIRST + batch * count + n
        try:
            outcome = simulate(seed)
        except BaseException as exc:
            raise AssertionError(f"seed {seed} (rerun: JOBWIRE_SIM_SEED={seed} make sim): "
                                 f"{type(exc).__name__}: {exc}") from exc
        delivered += outcome.delivered
    assert delivered > 0, "the schedules delivered nothing: the simulation is not exercising the dispatcher"
