"""The delivery policy: schedule, Retry-After, 410, exhaustion, auto-disable, tiers and hops."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from jobwire.dispatch.http_client import retry_after_s
from jobwire.dispatch.policy import Outcome, Route, SendResult, Tiers, decide, on_read

SVIX = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
TIERS = Tiers.of_schedule(SVIX)
FAILED = SendResult(500, 3.0, "HTTP 500")
NOW = 1_800_000_000_000
DAY_S = 86400.0


def after(attempts: int, result: SendResult, failing_since_ms: int | None = None, schedule=SVIX):  # type: ignore[no-untyped-def]
    return decide(schedule, Tiers.of_schedule(schedule), attempts, result, now_ms=NOW,
                  failing_since_ms=failing_since_ms, disable_after_s=5 * DAY_S)


def test_success_and_gone() -> None:
    assert after(1, SendResult(204, 1.0)).outcome is Outcome.SUCCEEDED
    gone = after(1, SendResult(410, 1.0))
    assert gone.outcome is Outcome.DISABLED and "410" in (gone.reason or "")


def test_follows_the_schedule_into_matching_tiers_due_exactly_then() -> None:
    for attempts_made, expected in [(1, 5), (2, 300), (3, 1800), (7, 36000)]:
        decision = after(attempts_made, FAILED)
        assert decision.outcome is Outcome.RETRYING and decision.tier_s == expected
        assert decision.due_at_ms == NOW + expected * 1000, "a tier's records are due in write order"
        assert decision.not_before_ms == 0


def test_exhaustion_is_failed() -> None:
    assert after(len(SVIX), FAILED).outcome is Outcome.FAILED
    assert after(1, FAILED, schedule=(0,)).outcome is Outcome.FAILED


def test_zero_delays_are_served_by_the_requests_topic() -> None:
    decision = after(1, FAILED, schedule=(0, 0, 0))
    assert decision.outcome is Outcome.RETRYING and decision.tier_s == 0 and decision.due_at_ms == NOW
    assert Tiers.of_schedule((0, 0, 0)).delays_s == (1.0,), "parking still has a tier to hop to"


def test_failing_too_long_disables() -> None:
    long_ago = NOW - int(6 * DAY_S * 1000)
    decision = after(2, FAILED, failing_since_ms=long_ago)
    assert decision.outcome is Outcome.DISABLED and "failed for" in (decision.reason or "")
    assert after(2, FAILED, failing_since_ms=NOW - 1000).outcome is Outcome.RETRYING
    assert after(2, SendResult(200, 1.0), failing_since_ms=long_ago).outcome is Outcome.SUCCEEDED


def test_retry_after_is_honoured_within_bounds_and_never_undercut() -> None:
    asked = after(1, SendResult(429, 1.0, retry_after_s=120))
    assert asked.tier_s == 300 and asked.due_at_ms == NOW + 300_000
    shorter = after(2, SendResult(503, 1.0, retry_after_s=1))
    assert shorter.tier_s == 300, "a shorter Retry-After does not hurry the schedule"
    huge = after(1, SendResult(429, 1.0, retry_after_s=10**9))
    assert huge.tier_s == 36000 and huge.not_before_ms == NOW + 24 * 3600 * 1000


@given(st.integers(1, 8), st.floats(0, 10**7), st.sampled_from([429, 503]))
def test_retry_after_never_undercut(attempts: int, asked: float, status: int) -> None:
    decision = after(attempts, SendResult(status, 1.0, retry_after_s=asked))
    if decision.outcome is Outcome.RETRYING:
        earliest = max(decision.due_at_ms, decision.not_before_ms)
        assert earliest >= NOW + min(asked, 24 * 3600) * 1000 - 1


def test_tiers_cover_and_hop_onward() -> None:
    assert TIERS.delays_s == (5, 300, 1800, 7200, 18000, 36000)
    assert TIERS.covering(0) == 0 and TIERS.covering(4) == 5 and TIERS.covering(301) == 1800
    assert TIERS.covering(10**6) == 36000
    assert TIERS.within(0) == 5 and TIERS.within(299) == 5 and TIERS.within(10**6) == 36000
    assert TIERS.after(0) == 5 and TIERS.after(5) == 300 and TIERS.after(36000) == 36000


def test_a_record_read_from_a_tier() -> None:
    assert on_read(TIERS, 5, NOW + 1, 0, now_ms=NOW, has_room=True).route is Route.WAIT
    assert on_read(TIERS, 5, NOW, 0, now_ms=NOW, has_room=True).route is Route.TAKE
    full = on_read(TIERS, 0, NOW, 0, now_ms=NOW, has_room=False)
    assert full.route is Route.HOP and full.tier_s == 5 and full.due_at_ms == NOW + 5000
    slow = on_read(TIERS, 0, NOW, 0, now_ms=NOW, has_room=False, drain_s=2000)
    assert slow.tier_s == 1800, "hops about as long as the endpoint needs to drain, never longer"
    held = on_read(TIERS, 36000, NOW, NOW + 50_000_000, now_ms=NOW, has_room=True)
    assert held.route is Route.HOP and held.tier_s == 36000, "a long Retry-After hops through the last tier"
    rest = on_read(TIERS, 36000, NOW, NOW + 200_000, now_ms=NOW, has_room=True)
    assert rest.route is Route.HOP and rest.tier_s == 300


def test_retry_after_header_forms() -> None:
    assert retry_after_s("7") == 7
    assert retry_after_s(None) is None and retry_after_s("soon") is None
    assert 0 <= retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0  # type: ignore[operator]
