"""The delivery policy: what happens to a delivery after an attempt, and to a record read from
a retry tier. Pure: no I/O, no clock (times come in as arguments), no Kafka.

Retry tiers are topics with one fixed delay each (``webhooks.retry.5s``, ...). Every record a
tier holds is due exactly ``delay`` after it was written, so a tier's records are in due order
and a consumer that waits for its head never hides a record that is already due. That is why
there is no random jitter on the due time: failures arrive spread out in time, and their
retries keep that spread. The requests topic is the tier of delay 0 (due at once).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

#: The longest Retry-After we honour beyond the schedule's own delay.
MAX_RETRY_AFTER_S = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class SendResult:
    """What one HTTP attempt came to (built by the sender, judged here)."""

    status_code: int | None
    latency_ms: float
    error: str | None = None
    excerpt: str | None = None
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class Outcome(str, Enum):
    """How an attempt (or a delivery that could not be attempted) ended; the attempt log's words."""

    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    FAILED = "failed"  # attempts exhausted or refused for good: a dead letter
    DISABLED = "disabled"  # the endpoint was disabled by this attempt (410, or failing too long)
    SKIPPED = "skipped"  # the endpoint is disabled: kept as a dead letter for recover
    DROPPED = "dropped"  # the endpoint was deleted


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    #: For RETRYING: the tier (delay in seconds) that carries the record, its due time, and the
    #: moment a Retry-After allows the next attempt (0 when it does not matter).
    tier_s: float = 0.0
    due_at_ms: int = 0
    not_before_ms: int = 0
    #: For DISABLED: why, in words for the endpoint's owner.
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Tiers:
    """The delays of the retry tiers in ascending order; delay 0 is the requests topic."""

    delays_s: tuple[float, ...]

    @classmethod
    def of_schedule(cls, schedule_s: Sequence[float]) -> Tiers:
        """One tier per distinct delay after the first attempt; a zero delay is served by the
        requests topic (due at once). A schedule with no positive delay still gets a 1 s tier,
        because parked deliveries need somewhere to wait."""
        positive = sorted({d for d in schedule_s[1:] if d > 0})
        return cls(tuple(positive) if positive else (1.0,))

    def covering(self, wait_s: float) -> float:
        """The shortest tier that waits at least ``wait_s`` (or the longest tier): 0 for no wait."""
        if wait_s <= 0:
            return 0.0
        index = bisect.bisect_left(self.delays_s, wait_s)
        return self.delays_s[min(index, len(self.delays_s) - 1)]

    def within(self, wait_s: float) -> float:
        """The longest tier that waits no more than ``wait_s`` (at least the shortest tier)."""
        index = bisect.bisect_right(self.delays_s, wait_s)
        return self.delays_s[max(index - 1, 0)]

    def after(self, tier_s: float) -> float:
        """The tier a record hops to from ``tier_s`` when it cannot be attempted yet."""
        index = bisect.bisect_right(self.delays_s, tier_s)
        return self.delays_s[min(index, len(self.delays_s) - 1)]


def decide(schedule_s: Sequence[float], tiers: Tiers, attempts_made: int, result: SendResult, *, now_ms: int,
           failing_since_ms: int | None, disable_after_s: float) -> Decision:
    """What follows attempt number ``attempts_made`` (1-based) that ended with ``result``.

    ``failing_since_ms`` is when the endpoint's current run of failures began (None when its
    last attempt succeeded); an endpoint failing for longer than ``disable_after_s`` is disabled.
    """
    if result.ok:
        return Decision(Outcome.SUCCEEDED)
    if result.status_code == 410:
        return Decision(Outcome.DISABLED, reason="the endpoint answered 410 Gone")
    if failing_since_ms is not None and now_ms - failing_since_ms > disable_after_s * 1000:
        return Decision(Outcome.DISABLED, reason=f"every attempt failed for {disable_after_s:.0f}s")
    if attempts_made >= len(schedule_s):
        return Decision(Outcome.FAILED)
    planned = schedule_s[attempts_made]
    asked = min(result.retry_after_s, MAX_RETRY_AFTER_S) if result.retry_after_s is not None else 0.0
    wait_s = max(planned, asked)
    tier = tiers.covering(wait_s)
    not_before = now_ms + int(asked * 1000) if asked > tier else 0
    return Decision(Outcome.RETRYING, tier, now_ms + int(tier * 1000), not_before)


class Route(str, Enum):
    WAIT = "wait"  # not due: the tier's partition waits for it (and everything after it)
    HOP = "hop"  # due, but may not be attempted yet: written onward, never held in memory
    TAKE = "take"  # attempt it now


@dataclass(frozen=True, slots=True)
class TierStep:
    route: Route
    tier_s: float = 0.0
    due_at_ms: int = 0


def on_read(tiers: Tiers, tier_s: float, due_at_ms: int, not_before_ms: int, *, now_ms: int, has_room: bool,
            drain_s: float = 0.0) -> TierStep:
    """What a tier consumer does with a record it read from the tier of ``tier_s``.

    A record held back by a long Retry-After hops through the tier that covers the rest of the
    wait; one whose endpoint has no room hops to the longest tier within the time the endpoint
    needs to drain its queue and the deliveries hopped before it (``drain_s``), at least the
    shortest: it comes back a little early rather than a whole tier late, and may hop again.
    Either way the tier's other records are never held behind it.
    """
    if due_at_ms > now_ms:
        return TierStep(Route.WAIT, due_at_ms=due_at_ms)
    if not_before_ms > now_ms:
        onward = tiers.covering((not_before_ms - now_ms) / 1000)
        return TierStep(Route.HOP, onward, now_ms + int(onward * 1000))
    if not has_room:
        onward = tiers.within(drain_s)
        return TierStep(Route.HOP, onward, now_ms + int(onward * 1000))
    return TierStep(Route.TAKE)
