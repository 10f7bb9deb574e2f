"""Topic administration: create jobwire's topics with their configuration, and wait until the
cluster serves them."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any

from aiokafka import AIOKafkaClient
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from jobwire.config import Settings
from jobwire.errors import LogError
from jobwire.kafka.clients import client_options
from jobwire.topics import Replication, TopicSpec, replication_plan, topic_specs

log = logging.getLogger(__name__)


#: How long ``ensure_topics`` waits for the topics to show in the cluster's metadata.
TOPICS_VISIBLE_TIMEOUT_S = 30.0


async def ensure_topics(settings: Settings, *, visible_within_s: float = TOPICS_VISIBLE_TIMEOUT_S) -> list[str]:
    """Create every missing topic with its configuration; returns the names this call created.

    The replication follows the cluster (``topics.replication_plan``): a factor the cluster
    cannot hold raises :class:`ConfigError` before anything is created. Existing topics are
    left as they are; one with fewer copies than the plan is named in a warning (Kafka changes
    a replication factor only by partition reassignment, an operator's decision). Safe to run
    concurrently: a topic another creator made first counts as existing. Returns only once
    every topic is in the cluster metadata with a leader for each partition, so readers and
    writers started next find them. A topic the broker refuses raises :class:`LogError`.
    """
    admin = AIOKafkaAdminClient(**client_options(settings.kafka))
    try:
        await admin.start()
        brokers = len((await admin.describe_cluster())["brokers"])
        replication = replication_plan(settings, brokers)
        if settings.replication_factor is None and brokers < 3 and not settings.dev:
            # auto counts the brokers alive now: during an outage it would plan fewer copies.
            log.warning("replication follows the %d broker(s) alive now: replication_factor=%d; set "
                        "JOBWIRE_REPLICATION_FACTOR to pin it on a cluster meant to have more", brokers,
                        replication.factor)
        specs = topic_specs(settings, replication)
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        created = await _create_topics(admin, missing) if missing else []
        described = await _wait_until_visible(admin, [spec.name for spec in specs], visible_within_s)
        _warn_underreplicated(described, replication)
    except KafkaError as exc:
        raise LogError(f"could not create topics on {settings.kafka.bootstrap_servers}: {exc}",
                       retriable=exc.retriable) from exc
    finally:
        await admin.close()
    return created


async def replication_of(settings: Settings) -> tuple[int, Replication]:
    """(brokers in the cluster, the replication jobwire's topics get there)."""
    admin = AIOKafkaAdminClient(**client_options(settings.kafka))
    try:
        await admin.start()
        brokers = len((await admin.describe_cluster())["brokers"])
    except KafkaError as exc:
        raise LogError(f"could not describe the cluster at {settings.kafka.bootstrap_servers}: {exc}",
                       retriable=exc.retriable) from exc
    finally:
        await admin.close()
    return brokers, replication_plan(settings, brokers)


def _warn_underreplicated(described: dict[str, dict[str, Any]], replication: Replication) -> None:
    for name, topic in sorted(described.items()):
        copies = min((len(p["replicas"]) for p in topic["partitions"]), default=replication.factor)
        if copies < replication.factor:
            log.warning("topic has fewer copies than planned topic=%s replication_factor=%s planned=%s "
                        "(reassign its partitions to add replicas)", name, copies, replication.factor)


async def _create_topics(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> list[str]:
    """One CreateTopics request for all of ``specs``; returns the names it created.

    The broker answers with an error code per topic instead of failing the request, so each
    is checked here: 36 (already exists) means someone else won the race, which is fine.
    """
    response = await admin.create_topics(
        [NewTopic(spec.name, spec.partitions, spec.replication_factor, topic_configs=spec.config) for spec in specs]
    )
    created, refused = [], []
    for entry in response.topic_errors:  # (topic, error_code) and, from v1 on, error_message
        name, code = entry[0], entry[1]
        if code == 0:
            created.append(name)
            log.info("topic created topic=%s", name)
        elif code == TopicAlreadyExistsError.errno:
            log.info("topic created concurrently by another client topic=%s", name)
        else:
            message = entry[2] if len(entry) > 2 and entry[2] else ""
            refused.append((name, for_code(code), code, message))
    if refused:
        reasons = "; ".join(f"{name}: {error.__name__} (error {code}) {message}".rstrip()
                            for name, error, code, message in refused)
        raise LogError(f"the broker refused to create topics: {reasons}",
                       retriable=all(error.retriable for _, error, _, _ in refused))
    return created


async def _wait_until_visible(admin: AIOKafkaAdminClient, names: list[str],
                              timeout_s: float) -> dict[str, dict[str, Any]]:
    """Poll the metadata until every topic in ``names`` has a leader for each partition;
    returns their metadata entries."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    pause = 0.05
    while True:
        # All topics, not just ours: naming topics in a metadata request can auto-create them
        # with broker defaults on clusters where auto.create.topics.enable is on.
        described = {t["topic"]: t for t in await admin.describe_topics()}
        waiting = {name: _not_ready(described.get(name)) for name in names}
        waiting = {name: why for name, why in waiting.items() if why}
        if not waiting:
            return {name: described[name] for name in names}
        if loop.time() + pause > deadline:
            details = ", ".join(f"{name} ({why})" for name, why in sorted(waiting.items()))
            raise LogError(f"topics not ready in the cluster metadata after {timeout_s:g} s: {details}")
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)


def _not_ready(topic: dict[str, Any] | None) -> str | None:
    """Why a topic's metadata entry is not usable yet; None when it is."""
    if topic is None:
        return "missing"
    if topic["error_code"]:
        return for_code(topic["error_code"]).__name__
    partitions = topic["partitions"]
    if not partitions:
        return "no partitions"
    leaderless = [p["partition"] for p in partitions if p["error_code"] or p["leader"] < 0]
    return f"no leader for partitions {leaderless[:10]}" if leaderless else None


def answers_metadata(bootstrap: str, timeout_s: float = 3.0, *, brokers: int = 1) -> bool:
    """True when the broker at ``bootstrap`` answers a metadata request naming at least
    ``brokers`` live brokers (a cluster's node answers before its peers have joined).

    Runs aiokafka on a private thread and loop, so it works from sync and async callers alike.
    """
    host, _, port = bootstrap.rpartition(":")
    try:  # a plain connect first: aiokafka logs an ERROR line for every refused connection
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError:
        return False
    outcome = [False]

    async def probe() -> None:
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
        try:
            await asyncio.wait_for(client.bootstrap(), timeout_s)
            metadata = await asyncio.wait_for(client.fetch_all_metadata(), timeout_s)
            outcome[0] = len(metadata.brokers()) >= brokers
        except Exception:  # any failure means "not ready yet"
            outcome[0] = False
        finally:
            await client.close()

    thread = threading.Thread(target=lambda: asyncio.run(probe()), daemon=True)
    thread.start()
    thread.join(timeout_s * 3)
    return outcome[0]
