"""Schedules drawn on purpose: the cases an operator reported, each through the simulation's
invariants (every owed webhook arrives or is dead-lettered; no commit passes unfinished work)."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from tests.sim.world import draw_plan, endpoint, simulate


@pytest.fixture(autouse=True)
def _quiet() -> object:
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


def test_the_tightest_bound_with_fan_out_over_six_partitions_skips_nothing() -> None:
    """The smallest memory bound, 8 endpoints of one tenant, 6 partitions: a fetch that fills the
    lanes in its first partition must leave the other partitions' records to be read again
    (they were dropped, their offsets committed past)."""
    plan = replace(draw_plan(11), endpoints=[endpoint(n, "acme") for n in range(8)], partitions=6, jobs=300,
                   max_deliveries=8, queue_per_endpoint=50, in_flight=4, senders=16, crashes=0, rebalances=0,
                   ack_fail_p=0.0, busy_p=0.0)
    outcome = simulate(plan.seed, plan)
    assert outcome.delivered == len(outcome.expected) > 600


def test_a_job_of_thirty_thousand_progress_events_gets_its_webhook() -> None:
    """Its state stays small (a bounded window of event ids), so no snapshot outgrows the
    record limit and sets the job's last events aside; and it survives crashes."""
    plan = replace(draw_plan(5), jobs=3, long_job_progress=30_000, crashes=2, rebalances=1, ack_fail_p=0.0,
                   busy_p=0.0)
    outcome = simulate(plan.seed, plan)
    assert outcome.delivered == len(outcome.expected)
    assert any(job == "job_0000" for job in outcome.expected.values())


def test_a_seed_replays_exactly() -> None:
    """Ids, times and faults all come from the seed and the virtual clock: a failing seed named
    in a message reproduces."""
    first, second = simulate(748770827), simulate(748770827)
    assert (first.delivered, first.duplicates, first.restarts, first.virtual_s) == \
        (second.delivered, second.duplicates, second.restarts, second.virtual_s)


def test_replays_do_not_multiply_the_deliveries_waiting_for_a_slow_endpoint() -> None:
    """One sender, queues of three, hanging receivers and four crashes: every delivery waits in
    the retry tiers, hopping each second. Each replay writes the hops read since the last commit
    a second time; unless the copies are recognised, they double at every crash (this schedule
    once wrote 730,000 retry records for 111 webhooks and sent 764 duplicates)."""
    plan = replace(draw_plan(748770827), busy_p=0.0)  # as it was found: lanes judged by pace alone
    outcome = simulate(plan.seed, plan)
    assert outcome.restarts >= 4 and outcome.delivered == len(outcome.expected) > 100
    assert outcome.duplicates < outcome.delivered / 2



def test_a_backlog_at_the_dispatchers_own_pace_is_held_not_parked() -> None:
    """Every endpoint answers in the same time and the lanes hold more than 5 s of work but less
    than 30 s: an idle dispatcher parks the excess (each endpoint looks slow), a busy one holds
    it under the global bound (the pace is its own); both deliver everything."""
    plan = replace(draw_plan(11), endpoints=[endpoint(n, "acme") for n in range(3)], partitions=2, jobs=400,
                   max_deliveries=1500, queue_per_endpoint=1000, in_flight=1, senders=4, crashes=0, rebalances=0,
                   ack_fail_p=0.0, uniform_latency_s=0.2)
    idle, busy = (simulate(plan.seed, replace(plan, busy_p=p)) for p in (0.0, 1.0))
    assert idle.delivered == len(idle.expected) > 500 and busy.delivered == len(busy.expected) > 500
    assert idle.parked > 100, "idle, a lane holding more than 5 s of work parks the rest"
    assert busy.parked < idle.parked / 5, "busy, a lane whose pace is typical holds its backlog"
