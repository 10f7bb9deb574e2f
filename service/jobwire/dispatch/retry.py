"""Retry decisions (pure) and the retry tier consumers.

Each distinct delay of the schedule has a topic, ``webhooks.retry.<delay>``. A tier consumer
pauses a partition until its head record is due, so records wait in Kafka, not in memory,
and a crash loses nothing: the offset is committed only after the next step is durable.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from jobwire.dispatch.delivery import SendResult

#: The longest Retry-After we honour beyond the schedule's own delay.
MAX_RETRY_AFTER_S = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Step:
    #: succeeded | disabled | retry | dead
    kind: str
    delay_s: float = 0.0
    tier_s: float = 0.0


def next_step(schedule_s: Sequence[float], attempts_made: int, result: SendResult, *, jitter: float = 0.1,
              rng: random.Random | None = None) -> Step:
    """What to do after attempt number ``attempts_made`` (1-based) ended with ``result``."""
    if result.ok:
        return Step("succeeded")
    if result.status_code == 410:
        return Step("disabled")
    if attempts_made >= len(schedule_s):
        return Step("dead")
    planned = schedule_s[attempts_made]
    asked = min(result.retry_after_s, MAX_RETRY_AFTER_S) if result.retry_after_s is not None else 0.0
    delay = planned
    if jitter and delay >= 1:
        delay *= 1 + (rng or random).uniform(-jitter, jitter)
    delay = max(delay, asked)  # after the jitter: never earlier than the receiver asked
    # The tier comes from the un-jittered delay; the record's due time carries the exact moment.
    basis = max(planned, asked)
    tiers = sorted({d for d in schedule_s[1:] if d > 0})
    tier = next((t for t in tiers if t >= basis), tiers[-1] if tiers else 0.0)
    return Step("retry", delay, tier)
