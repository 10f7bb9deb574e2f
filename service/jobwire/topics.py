"""Topic names and their settings, all derived from configuration in one place."""

from __future__ import annotations

from dataclasses import dataclass

from jobwire.config import Settings

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


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
        return self._name("jobs.events.invalid")


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic jobwire needs, with partitions and configs; later parts append theirs here."""
    topics = Topics(settings.topic_prefix)
    retention_ms = str(int(settings.retention_days * DAY_MS)) if settings.retention_days else "-1"
    common = {"min.insync.replicas": str(settings.min_insync_replicas)}
    return [
        TopicSpec(topics.events, settings.events_partitions, {**common, "retention.ms": retention_ms}),
        TopicSpec(topics.events_invalid, 1, {**common, "retention.ms": retention_ms}),
    ]
