"""The retry decision: schedule, Retry-After, 410, exhaustion, tiers."""

from __future__ import annotations

import random

from jobwire.dispatch.delivery import SendResult, retry_after_s
from jobwire.dispatch.retry import next_step

SVIX = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
FAILED = SendResult(500, 3.0, "HTTP 500")


def test_success_and_gone() -> None:
    assert next_step(SVIX, 1, SendResult(204, 1.0)).kind == "succeeded"
    assert next_step(SVIX, 1, SendResult(410, 1.0)).kind == "disabled"


def test_follows_the_schedule_into_matching_tiers() -> None:
    rng = random.Random(7)
    for attempts_made, expected in [(1, 5), (2, 300), (3, 1800), (7, 36000)]:
        step = next_step(SVIX, attempts_made, FAILED, rng=rng)
        assert step.kind == "retry" and step.tier_s == expected
        assert 0.9 * expected <= step.delay_s <= 1.1 * expected, "jitter stays within 10%"


def test_exhaustion_is_dead() -> None:
    assert next_step(SVIX, len(SVIX), FAILED).kind == "dead"
    assert next_step((0,), 1, FAILED).kind == "dead"


def test_retry_after_is_honoured_within_bounds_and_never_undercut() -> None:
    asked = next_step(SVIX, 1, SendResult(429, 1.0, retry_after_s=120))
    assert asked.delay_s == 120 and asked.tier_s == 300
    shorter = next_step(SVIX, 2, SendResult(503, 1.0, retry_after_s=1), jitter=0)
    assert shorter.delay_s == 300, "a shorter Retry-After does not hurry the schedule"
    huge = next_step(SVIX, 1, SendResult(429, 1.0, retry_after_s=10**9))
    assert huge.delay_s == 24 * 3600 and huge.tier_s == 36000
    for seed in range(50):
        step = next_step((0, 2, 2), 1, SendResult(429, 1.0, retry_after_s=2), rng=random.Random(seed))
        assert step.delay_s >= 2


def test_retry_after_header_forms() -> None:
    assert retry_after_s("7") == 7
    assert retry_after_s(None) is None and retry_after_s("soon") is None
    assert 0 <= retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0  # type: ignore[operator]
