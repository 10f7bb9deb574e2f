"""Each step of a delivery has its own identity; copies of one step share it."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from jobwire.dispatch.copies import LINEAGE_HEADER, MOVES_HEADER, Claims, Step
from jobwire.webhooks.model import Delivery

FRESH = Delivery("msg_1", "ep_1", "acme", "task.completed", "evt_1", "job_1", b"{}", "2026-01-01T00:00:00.000Z")


def test_a_request_the_api_wrote_starts_a_lineage_named_by_its_position() -> None:
    step = Step.read((), FRESH, "webhooks.requests:0:41")
    assert step.origin and step.lineage == "webhooks.requests:0:41"
    # Two requests for the same delivery (two recovers) are two lineages, never copies.
    assert step.identity(FRESH) != Step.read((), FRESH, "webhooks.requests:0:97").identity(FRESH)


def test_the_next_steps_carry_the_lineage_in_headers() -> None:
    origin = Step.read((), FRESH, "webhooks.requests:0:41")
    hopped = Step.read(origin.moved().headers(), FRESH, "webhooks.retry.5s:1:7")
    assert hopped == Step("webhooks.requests:0:41", 1)
    retried = replace(FRESH, attempts=1)
    after_attempt = Step.read(hopped.attempted().headers(), retried, "webhooks.retry.5s:1:9")
    assert after_attempt == Step("webhooks.requests:0:41", 0)


def test_records_of_older_writers_are_read() -> None:
    retried = replace(FRESH, attempts=2)
    assert Step.read((), retried, "webhooks.retry.5s:0:1") == Step("", 0)
    assert Step.read([(MOVES_HEADER, b"not a number")], retried, "x:0:1") == Step("", 0)
    assert Step.read([(LINEAGE_HEADER, b"\xff")], retried, "x:0:1").lineage == "\ufffd"


@given(st.lists(st.sampled_from(["hop", "park", "attempt"]), max_size=30))
def test_every_step_of_a_lineage_has_an_identity_of_its_own(path: list[str]) -> None:
    step, delivery = Step.read((), FRESH, "webhooks.requests:0:1"), FRESH
    seen = {step.identity(delivery)}
    for action in path:
        if action == "attempt":
            delivery, step = replace(delivery, attempts=delivery.attempts + 1), step.attempted()
        else:
            step = step.moved()
        step = Step.read(step.headers(), delivery, "elsewhere:0:0")  # as the next reader sees it
        assert step.identity(delivery) not in seen
        seen.add(step.identity(delivery))


def test_claims_are_per_partition_bounded_and_forgotten_on_revocation() -> None:
    claims = Claims(per_partition=2)
    first, second, third = (Step("", n).identity(FRESH) for n in (1, 2, 3))
    claims.claim(0, first)
    assert claims.is_copy(0, first) and not claims.is_copy(1, first)
    claims.claim(0, second)
    claims.claim(0, third)
    assert not claims.is_copy(0, first) and claims.is_copy(0, third)  # the oldest made room
    claims.forget({0})
    assert not claims.is_copy(0, third)
