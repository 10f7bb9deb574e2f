"""Topic names and specs: every topic a consumer may quarantine from has its companion."""

from __future__ import annotations

import pytest

from jobwire.config import load_settings
from jobwire.errors import ConfigError
from jobwire.topics import Replication, Topics, replication_plan, topic_specs


def test_invalid_companions() -> None:
    settings = load_settings({"JOBWIRE_TOPIC_PREFIX": "p.", "JOBWIRE_RETRY_SCHEDULE": "0,5,300"})
    topics = Topics(settings.topic_prefix)
    assert topics.invalid(topics.events) == topics.events_invalid == "p.jobs.events.invalid"
    specs = {spec.name: spec for spec in topic_specs(settings)}
    assert len(specs) == len(topic_specs(settings)), "no topic twice"
    sources = [topics.events, topics.endpoints, topics.attempts, topics.requests, topics.retry(5), topics.retry(300)]
    for source in sources:
        companion = specs[topics.invalid(source)]
        assert companion.partitions == 1
        assert companion.config == specs[topics.events_invalid].config
    assert not any(name.endswith(".invalid.invalid") for name in specs)


@pytest.mark.parametrize(("brokers", "env", "expected"), [
    (1, {}, Replication(1, 1)),
    (2, {}, Replication(2, 1)),
    (3, {}, Replication(3, 2)),
    (5, {}, Replication(3, 2)),
    (5, {"JOBWIRE_REPLICATION_FACTOR": "5"}, Replication(5, 2)),
    (5, {"JOBWIRE_REPLICATION_FACTOR": "auto", "JOBWIRE_MIN_INSYNC_REPLICAS": "3"}, Replication(3, 3)),
    (3, {"JOBWIRE_REPLICATION_FACTOR": "1"}, Replication(1, 1)),
])
def test_replication_follows_the_cluster_unless_set(brokers: int, env: dict[str, str], expected: Replication) -> None:
    assert replication_plan(load_settings(env), brokers) == expected


@pytest.mark.parametrize(("brokers", "env", "variable"), [
    (1, {"JOBWIRE_REPLICATION_FACTOR": "3"}, "JOBWIRE_REPLICATION_FACTOR"),
    (2, {"JOBWIRE_REPLICATION_FACTOR": "3"}, "JOBWIRE_REPLICATION_FACTOR"),
    (1, {"JOBWIRE_MIN_INSYNC_REPLICAS": "2"}, "JOBWIRE_MIN_INSYNC_REPLICAS"),
])
def test_a_plan_the_cluster_cannot_hold_names_the_setting(brokers: int, env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        replication_plan(load_settings(env), brokers)
    assert caught.value.variable == variable


def test_every_topic_gets_the_plan() -> None:
    specs = topic_specs(load_settings({}), Replication(3, 2))
    assert {(s.replication_factor, s.config["min.insync.replicas"]) for s in specs} == {(3, "2")}
