"""What the cluster tests ask the cluster: who leads which partition, who is in sync, a topic's
configuration; and per-partition gaps between deliveries, to measure pauses."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.partitioner import murmur2

from jobwire.config import Settings
from jobwire.kafka.clients import client_options
from tests.conftest import env_for

API_KEY = "cluster-test-key-0123456789abcdef"


def cluster_env(bootstrap: str, **extra: str) -> dict[str, str]:
    """Settings for a cluster test's processes: topics of its own, 6 partitions, INFO logs."""
    return env_for(bootstrap, **{
        "JOBWIRE_SECRET_KEY": "cluster-test-secret-key-0123456789", "JOBWIRE_ALLOWED_TARGETS": "127.0.0.1/32",
        "JOBWIRE_RETRY_SCHEDULE": "0,0.5,1,2,4", "JOBWIRE_DEV": "1", "JOBWIRE_API_KEYS": f"acme:{API_KEY}",
        "JOBWIRE_EVENTS_PARTITIONS": "6", "JOBWIRE_LOG_LEVEL": "INFO", **extra})


async def describe(settings: Settings, topics: list[str]) -> dict[str, list[dict[str, Any]]]:
    """topic -> its partitions' metadata (partition, leader, replicas, isr)."""
    admin = AIOKafkaAdminClient(**client_options(settings.kafka))
    await admin.start()
    try:
        return {t["topic"]: t["partitions"] for t in await admin.describe_topics(topics)}
    finally:
        await admin.close()


async def leaders(settings: Settings, topic: str) -> dict[int, int]:
    """partition -> the node id leading it."""
    return {p["partition"]: p["leader"] for p in (await describe(settings, [topic]))[topic]}


async def fully_in_sync(settings: Settings, topics: list[str], replicas: int = 3) -> bool:
    """True when every partition of ``topics`` has all its replicas in sync again."""
    try:
        described = await describe(settings, topics)
    except Exception:  # a node still joining: not yet
        return False
    return all(len(p["isr"]) == len(p["replicas"]) == replicas for ps in described.values() for p in ps)


async def topic_config(settings: Settings, topic: str, name: str) -> str:
    admin = AIOKafkaAdminClient(**client_options(settings.kafka))
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    entries = response.resources[0][4]  # (error_code, message, type, name, config entries)
    return str(next(entry[1] for entry in entries if entry[0] == name))


def partition_of(key: str, partitions: int) -> int:
    """The partition the producer's default partitioner puts ``key`` in (murmur2, as Java's)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def longest_gaps(arrivals: list[tuple[float, str]], partitions: int, since: float, until: float) -> dict[int, float]:
    """Per partition of the job keys: the longest time between deliveries within
    [since, until], counting from ``since`` (a partition that went quiet at a kill counts)."""
    times: dict[int, list[float]] = defaultdict(list)
    for at, key in arrivals:
        if since <= at <= until:
            times[partition_of(key, partitions)].append(at)
    gaps = {}
    for partition in range(partitions):
        marks = [since, *sorted(times[partition]), until]
        gaps[partition] = max(b - a for a, b in zip(marks, marks[1:], strict=False))
    return gaps
