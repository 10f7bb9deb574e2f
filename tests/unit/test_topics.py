"""Topic names and specs: every topic a consumer may quarantine from has its companion."""

from __future__ import annotations

from jobwire.config import load_settings
from jobwire.topics import Topics, topic_specs


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
