"""Topic names and their settings, all derived from configuration in one place."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from jobwire.config import Settings
from jobwire.errors import ConfigError

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]
    replication_factor: int = 1


@dataclass(frozen=True, slots=True)
class Replication:
    """How many copies of each partition, and how many must acknowledge a write."""

    factor: int
    min_insync: int


def min_insync_for(factor: int) -> int:
    """Two copies must acknowledge once there are three, so a write survives losing any one."""
    return 2 if factor >= 3 else 1


def auto_replication(brokers: int) -> Replication:
    """What a cluster of ``brokers`` gets when nothing is configured: its topics (here) and
    Kafka's internal ones (the local cluster, ``devtools/cluster.py``) alike."""
    factor = min(3, brokers)
    return Replication(factor, min_insync_for(factor))


def replication_plan(settings: Settings, brokers: int) -> Replication:
    """The replication of jobwire's topics on a cluster of ``brokers``.

    Unset, it follows the cluster: 3 copies with 2 in sync from three brokers on, so a write
    acknowledged by ``acks=all`` survives losing any one broker and writes go on while one is
    down; one copy on a single broker. A configured factor the cluster cannot hold is refused
    here, naming the setting, before any topic is created with it.
    """
    factor = settings.replication_factor or auto_replication(brokers).factor
    if factor > brokers:
        raise ConfigError("JOBWIRE_REPLICATION_FACTOR", f"{factor} copies need at least {factor} brokers; "
                          f"the cluster has {brokers}")
    min_insync = settings.min_insync_replicas or min_insync_for(factor)
    if min_insync > factor:
        raise ConfigError("JOBWIRE_MIN_INSYNC_REPLICAS", f"{min_insync} is more than the replication factor "
                          f"{factor}: every write would be refused")
    return Replication(factor, min_insync)


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str = ""

    def _name(self, base: str) -> str:
        return f"{self.prefix}{base}"

    @property
    def events(self) -> str:
        return self._name("jobs.events")

    @property
    def events_invalid(self) -> str:
        return self.invalid(self.events)

    def invalid(self, topic: str) -> str:
        """Where records of ``topic`` that cannot be handled are set aside (its quarantine)."""
        return f"{topic}.invalid"

    @property
    def state(self) -> str:
        """Compacted changelog of the dispatcher's per-job state (key = job id)."""
        return self._name("jobs.state")

    @property
    def endpoints(self) -> str:
        """Compacted: the latest snapshot of every webhook endpoint (key = endpoint id)."""
        return self._name("webhooks.endpoints")

    @property
    def attempts(self) -> str:
        return self._name("webhooks.attempts")

    @property
    def dead(self) -> str:
        return self._name("webhooks.dead")

    @property
    def requests(self) -> str:
        """Deliveries the API asks for (test events, retries, recoveries), due now."""
        return self._name("webhooks.requests")

    def retry(self, delay_s: float) -> str:
        return self._name(f"webhooks.retry.{delay_label(delay_s)}")


def delay_label(delay_s: float) -> str:
    """5 -> '5s', 300 -> '5m', 7200 -> '2h', 0.5 -> '500ms'."""
    if delay_s != int(delay_s):
        return f"{round(delay_s * 1000)}ms"
    seconds = int(delay_s)
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def retry_delays(settings: Settings) -> list[float]:
    """The distinct non-zero delays of the schedule: one retry tier topic each. A schedule
    without one still gets a 1 s tier: parked deliveries hop through it (dispatch/policy.py)."""
    return sorted({d for d in settings.retry_schedule_s[1:] if d > 0}) or [1.0]


def topic_specs(settings: Settings, replication: Replication = Replication(1, 1)) -> list[TopicSpec]:
    """Every topic jobwire needs, with partitions and configs; later parts append theirs here."""
    topics = Topics(settings.topic_prefix)
    retention_ms = str(int(settings.retention_days * DAY_MS)) if settings.retention_days else "-1"
    common = {"min.insync.replicas": str(replication.min_insync)}
    compacted = {**common, "cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1",
                 "segment.ms": str(3600 * 1000)}
    # Retry tiers and requests keep records at least a day past the longest delay.
    longest_s = max(settings.retry_schedule_s, default=0)
    tier_retention = str(int((longest_s + 86400) * 1000))
    partitions = settings.events_partitions
    tiers = [topics.retry(d) for d in retry_delays(settings)]
    # One partition each: quarantined records are rare and read by people, not consumers.
    quarantines = [topics.events, topics.endpoints, topics.attempts, topics.requests, *tiers]
    specs = [
        TopicSpec(topics.events, partitions, {**common, "retention.ms": retention_ms}),
        # Same partition count as jobs.events: a job's state lives in the partition its events do.
        TopicSpec(topics.state, partitions, compacted),
        TopicSpec(topics.endpoints, 1, compacted),
        TopicSpec(topics.attempts, partitions, {**common, "retention.ms": retention_ms}),
        TopicSpec(topics.dead, partitions, {**common, "retention.ms": retention_ms}),
        TopicSpec(topics.requests, partitions, {**common, "retention.ms": tier_retention}),
        *(TopicSpec(tier, partitions, {**common, "retention.ms": tier_retention}) for tier in tiers),
        *(TopicSpec(topics.invalid(topic), 1, {**common, "retention.ms": retention_ms}) for topic in quarantines),
    ]
    return [dataclasses.replace(spec, replication_factor=replication.factor) for spec in specs]
