"""The endpoint registry survives any record of webhooks.endpoints and keeps only sound ones."""

from __future__ import annotations

import logging
import uuid

import orjson
import pytest

from jobwire.webhooks.model import Endpoint, SealedSecret
from jobwire.webhooks.registry import EndpointRegistry, decode_endpoint
from tests.support.poison import consumer_record, endpoint_document, invalid_count, poison_endpoints


@pytest.fixture
def topic() -> str:
    return f"t{uuid.uuid4().hex[:8]}.webhooks.endpoints"


def test_a_sound_endpoint_round_trips() -> None:
    endpoint = Endpoint("ep_1", "acme", "https://hooks.example/in", "2026-11-23T10:00:00.000Z",
                        "2026-11-23T10:00:00.000Z", (SealedSecret("new"), SealedSecret("old", "2026-11-24T10:00:00.000Z")),
                        event_types=("task.failed",), rate_limit_per_s=2.5)
    assert decode_endpoint(b"ep_1", endpoint.encode()) == endpoint


def test_malformed_records_are_skipped_counted_and_logged_once(topic: str, caplog: pytest.LogCaptureFixture) -> None:
    registry = EndpointRegistry()
    registry.apply(consumer_record(topic, 0, orjson.dumps(endpoint_document("ep_1")), key=b"ep_1"))
    good = registry.endpoints["ep_1"]
    poison = poison_endpoints("ep_1")
    with caplog.at_level(logging.WARNING):
        for offset, (what, value) in enumerate(poison.items(), start=1):
            registry.apply(consumer_record(topic, offset, value, key=b"ep_1"))
            assert registry.endpoints == {"ep_1": good}, f"{what}: the last sound snapshot stays"
    assert invalid_count(topic) == len(poison)
    lines = [r.getMessage() for r in caplog.records if "invalid record skipped" in r.getMessage()]
    assert [line.split(" position=")[1].split(" ")[0] for line in lines] == [f"0:{n}" for n in range(1, len(poison) + 1)]
    assert all(f"topic={topic}" in line and "reason=" in line and "\n" not in line for line in lines)
    # What requests do with the registry still works.
    assert registry.of_tenant("acme") == [good] and registry.subscribed("acme", "task.failed") == [good]


def test_a_record_keyed_apart_from_its_id_is_refused(topic: str) -> None:
    registry = EndpointRegistry()
    registry.apply(consumer_record(topic, 0, orjson.dumps(endpoint_document("ep_2")), key=b"ep_1"))
    assert registry.endpoints == {} and invalid_count(topic) == 1


def test_tombstones_still_delete(topic: str) -> None:
    registry = EndpointRegistry()
    registry.apply(consumer_record(topic, 0, orjson.dumps(endpoint_document("ep_1")), key=b"ep_1"))
    registry.apply(consumer_record(topic, 1, None, key=b"ep_1"))
    registry.apply(consumer_record(topic, 2, None, key=b"\xff"))  # a key that is no UTF-8
    assert registry.endpoints == {} and invalid_count(topic) == 0
