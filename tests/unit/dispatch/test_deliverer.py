"""One attempt and its durable next step, against in-memory fakes of the log and of HTTP."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import orjson
import pytest

from jobwire.dispatch.copies import Step
from jobwire.dispatch.deliverer import Deliverer
from jobwire.dispatch.outbox import Outbox
from jobwire.dispatch.policy import Outcome, SendResult, Tiers
from jobwire.errors import LogError
from jobwire.topics import Topics
from jobwire.webhooks.model import Attempt, Delivery, Endpoint, SealedSecret
from jobwire.webhooks.registry import EndpointRegistry, Health
from jobwire.webhooks.secretbox import SecretBox, binding, new_webhook_secret

BOX = SecretBox("unit-secret-key-0123456789")
SCHEDULE = (0, 5, 300)


class FakeProducer:
    def __init__(self, fail: bool = False) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None]] = []
        self.headed: list[tuple[str, bytes | None, bytes | None, Any]] = []
        self.fail = fail

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   partition: int | None = None, headers: Any = None) -> asyncio.Future[Any]:
        self.records.append((topic, key, value))
        self.headed.append((topic, key, value, headers))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.fail:
            future.set_exception(RuntimeError("broker gone"))
        else:
            future.set_result(None)
        return future

    def on(self, topic: str) -> list[bytes | None]:
        return [value for t, _, value in self.records if t == topic]


class FakeSender:
    def __init__(self, result: SendResult) -> None:
        self.result = result
        self.posts: list[tuple[str, bytes, dict[str, str]]] = []

    async def post(self, url: str, body: bytes, headers: dict[str, str], *, delivery_id: str = "") -> SendResult:
        self.posts.append((url, body, headers))
        return self.result


def endpoint(tenant: str = "acme", sealed: str | None = None) -> Endpoint:
    sealed = sealed or BOX.seal(new_webhook_secret(), bound_to=binding(tenant, "ep_1"))
    return Endpoint("ep_1", tenant, "https://hooks.example/in", "2026-01-01T00:00:00.000Z",
                    "2026-01-01T00:00:00.000Z", (SealedSecret(sealed),))


def delivery(tenant: str = "acme") -> Delivery:
    return Delivery("msg_1", "ep_1", tenant, "task.completed", "evt_1", "job_1", b'{"type":"task.completed"}',
                    "2026-01-01T00:00:00.000Z")


def deliverer(result: SendResult, target: Endpoint | None = None,
              schedule: tuple[float, ...] = SCHEDULE) -> tuple[Deliverer, FakeProducer, FakeSender]:
    producer, sender, registry = FakeProducer(), FakeSender(result), EndpointRegistry()
    if target is not None:
        registry.put(target)
    subject = Deliverer(schedule_s=schedule, tiers=Tiers.of_schedule(schedule), disable_after_s=3600,
                        topics=Topics(), registry=registry, sender=sender, box=BOX, outbox=Outbox(producer))
    return subject, producer, sender


async def test_success_writes_one_attempt_record() -> None:
    subject, producer, sender = deliverer(SendResult(200, 3.0), endpoint())
    assert await subject.attempt(delivery()) is Outcome.SUCCEEDED
    assert len(sender.posts) == 1 and sender.posts[0][2]["webhook-id"] == "msg_1"
    [record] = producer.on("webhooks.attempts")
    assert record is not None and Attempt.decode(record).outcome == "succeeded"


async def test_a_delivery_taken_before_is_not_posted_again_but_a_resend_the_api_asked_for_is() -> None:
    subject, producer, sender = deliverer(SendResult(200, 3.0), endpoint())
    await subject.attempt(delivery())
    assert await subject.attempt(delivery()) is Outcome.SUCCEEDED  # read again after a crash
    assert len(sender.posts) == 1 and len(producer.on("webhooks.attempts")) == 1
    await subject.attempt(replace(delivery(), previous_attempts=1))  # a retry from the API
    assert len(sender.posts) == 2


async def test_a_retry_record_names_its_step() -> None:
    subject, producer, _ = deliverer(SendResult(500, 3.0, "HTTP 500"), endpoint())
    await subject.attempt(delivery(), Step("webhooks.requests:0:7", 3))
    [(_, _, _, headers)] = [r for r in producer.headed if r[0] == "webhooks.retry.5s"]
    assert Step.read(headers, replace(delivery(), attempts=1), "x") == Step("webhooks.requests:0:7", 0)


async def test_failure_goes_to_its_tier_with_the_body_as_json_and_marks_the_endpoint_failing() -> None:
    subject, producer, _ = deliverer(SendResult(500, 3.0, "HTTP 500"), endpoint())
    assert await subject.attempt(delivery()) is Outcome.RETRYING
    [raw] = producer.on("webhooks.retry.5s")
    assert raw is not None and orjson.loads(raw)["body"] == {"type": "task.completed"}, "embedded, not escaped"
    retry = Delivery.decode(raw)
    assert retry.attempts == 1 and retry.body == b'{"type":"task.completed"}'
    [health] = producer.on("webhooks.endpoints")
    assert health is not None and Health.decode(health).failing_since is not None
    assert [key for topic, key, _ in producer.records if topic == "webhooks.endpoints"] == [b"ep_1#health"], \
        "the dispatcher writes its own record, never the API's snapshot"
    await subject.attempt(delivery())
    assert len(producer.on("webhooks.endpoints")) == 1, "the failing clock is written once, not per attempt"


async def test_an_undecryptable_secret_is_a_failed_attempt_not_a_crash() -> None:
    foreign = SecretBox("another-secret-key-0123456789").seal(new_webhook_secret(), bound_to=binding("acme", "ep_1"))
    subject, producer, sender = deliverer(SendResult(200, 3.0), endpoint(sealed=foreign))
    assert await subject.attempt(delivery()) is Outcome.RETRYING
    assert not sender.posts
    [record] = producer.on("webhooks.attempts")
    assert record is not None and "cannot be opened" in (Attempt.decode(record).error or "")


async def test_a_delivery_for_another_tenants_endpoint_is_refused() -> None:
    subject, producer, sender = deliverer(SendResult(200, 3.0), endpoint(tenant="globex"))
    assert await subject.attempt(delivery()) is Outcome.FAILED
    assert not sender.posts and producer.on("webhooks.dead")


async def test_deleted_and_disabled_endpoints() -> None:
    subject, producer, _ = deliverer(SendResult(200, 3.0))
    assert await subject.attempt(delivery()) is Outcome.DROPPED
    disabled = endpoint().with_changes(disabled=True)
    subject, producer, sender = deliverer(SendResult(200, 3.0), disabled)
    assert await subject.attempt(delivery()) is Outcome.SKIPPED
    assert not sender.posts and producer.on("webhooks.dead")


async def test_an_unacknowledged_write_fails_the_flush() -> None:
    outbox = Outbox(FakeProducer(fail=True))
    await outbox.send("webhooks.attempts", "k", b"{}")
    with pytest.raises(LogError):
        await outbox.flush()


async def test_an_oversized_record_is_refused_before_the_broker() -> None:
    outbox = Outbox(FakeProducer())
    with pytest.raises(LogError, match="over the"):
        await outbox.send("webhooks.attempts", "k", b"x" * (2 << 20))


# --- operational events -----------------------------------------------------------------------

OPERATIONAL = ("endpoint.disabled", "endpoint.enabled", "delivery.exhausted", "delivery.failing", "delivery.recovered")


def watcher(tenant: str = "acme", event_types: tuple[str, ...] = OPERATIONAL) -> Endpoint:
    return endpoint(tenant).with_changes(id=f"ep_watch_{tenant}", event_types=event_types)


def operational_on(producer: FakeProducer) -> list[Delivery]:
    found = [Delivery.decode(raw) for raw in producer.on("webhooks.requests") if raw is not None]
    return [d for d in found if d.event_type in OPERATIONAL]


LONG_SCHEDULE = (0, 5, 300, 1800, 7200, 18000, 36000)


def with_watchers(result: SendResult, target: Endpoint, *watchers: Endpoint) -> tuple[Deliverer, FakeProducer]:
    subject, producer, _ = deliverer(result, target, LONG_SCHEDULE)
    for extra in watchers:
        subject.registry.put(extra)
    return subject, producer


async def test_failing_exhausted_and_recovered_reach_the_tenants_subscribers_only() -> None:
    subject, producer = with_watchers(SendResult(500, 3.0, "HTTP 500"), endpoint(), watcher(),
                                      watcher("globex"), endpoint().with_changes(id="ep_plain"))
    failing = Delivery(**{**delivery().to_dict(), "body": b"{}", "attempts": 3})
    assert await subject.attempt(failing) is Outcome.RETRYING  # the 4th attempt in a row
    [raised] = operational_on(producer)
    assert (raised.event_type, raised.endpoint_id, raised.job_id) == ("delivery.failing", "ep_watch_acme", None)
    data = orjson.loads(raised.body)["data"]
    assert data["delivery_id"] == "msg_1" and data["attempts"] == 4 and data["last_attempt"]["status_code"] == 500

    last = Delivery(**{**delivery().to_dict(), "body": b"{}", "attempts": len(LONG_SCHEDULE) - 1})
    assert await subject.attempt(last) is Outcome.FAILED
    assert [d.event_type for d in operational_on(producer)] == ["delivery.failing", "delivery.exhausted"]

    subject, producer = with_watchers(SendResult(200, 3.0), endpoint(), watcher())
    assert await subject.attempt(Delivery(**{**delivery().to_dict(), "body": b"{}", "attempts": 5})) is Outcome.SUCCEEDED
    assert [d.event_type for d in operational_on(producer)] == ["delivery.recovered"]


async def test_the_same_happening_has_the_same_webhook_id() -> None:
    first, again = (with_watchers(SendResult(500, 3.0), endpoint(), watcher()) for _ in range(2))
    for subject, _ in (first, again):
        await subject.attempt(Delivery(**{**delivery().to_dict(), "body": b"{}", "attempts": 3}))
    assert operational_on(first[1])[0].id == operational_on(again[1])[0].id


async def test_an_endpoint_disabled_by_its_failures_is_told_to_the_others_never_to_itself() -> None:
    gone = endpoint().with_changes(event_types=OPERATIONAL)  # it subscribes to its own news
    subject, producer = with_watchers(SendResult(410, 3.0, "HTTP 410"), gone, watcher())
    assert await subject.attempt(delivery()) is Outcome.DISABLED
    raised = operational_on(producer)
    assert [(d.event_type, d.endpoint_id) for d in raised] == [("endpoint.disabled", "ep_watch_acme")]
    assert orjson.loads(raised[0].body)["data"]["reason"]


async def test_operational_deliveries_raise_no_operational_events() -> None:
    subject, producer = with_watchers(SendResult(500, 3.0), endpoint(), watcher())
    about_itself = Delivery(**{**delivery().to_dict(), "body": b"{}", "attempts": len(LONG_SCHEDULE) - 1,
                               "event_type": "delivery.exhausted"})
    assert await subject.attempt(about_itself) is Outcome.FAILED
    assert operational_on(producer) == []


def test_a_null_filter_means_task_events_only() -> None:
    plain = endpoint()
    assert plain.wants("task.failed") and plain.wants("webhook.test") and not plain.wants("endpoint.disabled")
    assert watcher().wants("delivery.failing") and not watcher().wants("task.failed")


async def test_the_first_attempt_carries_the_payload_and_later_ones_do_not() -> None:
    subject, producer, _ = deliverer(SendResult(500, 3.0), endpoint())
    await subject.attempt(delivery())
    await subject.attempt(Delivery(**{**delivery().to_dict(), "body": b'{"type":"task.completed"}', "attempts": 1}))
    first, second = (Attempt.decode(raw) for raw in producer.on("webhooks.attempts") if raw is not None)
    assert first.request == {"body": {"type": "task.completed"}} and second.request is None


def test_a_rotated_out_secret_signs_until_its_grace_ends_then_never() -> None:
    bound_to = binding("acme", "ep_1")
    old, new = new_webhook_secret(), new_webhook_secret()

    def rotated(expires_at: str) -> Endpoint:
        return Endpoint("ep_1", "acme", "https://hooks.example/in", "2026-01-01T00:00:00.000Z",
                        "2026-01-01T00:00:00.000Z",
                        (SealedSecret(BOX.seal(new, bound_to=bound_to)),
                         SealedSecret(BOX.seal(old, bound_to=bound_to), expires_at)))

    subject, _, _ = deliverer(SendResult(200, 1.0))
    assert subject.secrets_of(rotated("2999-01-01T00:00:00.000Z")) == [new, old], "within the grace: both sign"
    assert subject.secrets_of(rotated("2020-01-01T00:00:00.000Z")) == [new], "after it: only the new one"
