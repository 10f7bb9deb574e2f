"""Endpoint management and the delivery log routes, against in-memory topics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from starlette.testclient import TestClient

from jobwire.api.app import ApiComponents, create_app
from jobwire.config import load_settings
from jobwire.webhooks.model import Attempt, Delivery, Endpoint, SealedSecret
from jobwire.webhooks.secretbox import SecretBox, binding
from tests.support.memlog import MemoryTopic, memory_components
from tests.support.ssrf_forms import ALLOW_LOOPBACK, EMBEDDING_FORMS, LOOPBACK_FORMS, UNICODE_FORMS

ACME = {"Authorization": "Bearer key_acme_0123456789"}
GLOBEX = {"Authorization": "Bearer key_globex_0123456789"}
SECRET_KEY = "routes-secret-key-0123456789"


def make_client(parts: ApiComponents, **env: str) -> TestClient:
    settings = load_settings({"JOBWIRE_API_KEYS": "acme:key_acme_0123456789,globex:key_globex_0123456789",
                              "JOBWIRE_SECRET_KEY": SECRET_KEY, **env})
    return TestClient(create_app(settings, parts), raise_server_exceptions=False)


@pytest.fixture
def setup() -> Iterator[tuple[TestClient, ApiComponents, MemoryTopic]]:
    parts, _, requests = memory_components()
    with make_client(parts, JOBWIRE_DEV="1") as client:
        yield client, parts, requests


def create(client: TestClient, **body: Any) -> Any:
    return client.post("/v1/webhooks/endpoints", json={"url": "https://hooks.example/in", **body}, headers=ACME)


def test_create_returns_the_secret_once_and_stores_it_sealed(setup: Any) -> None:
    client, parts, _ = setup
    created = create(client, event_types=["task.failed"], description="ops")
    assert created.status_code == 201
    body = created.json()
    assert body["secret"].startswith("whsec_") and body["event_types"] == ["task.failed"]
    stored: Endpoint = parts.endpoints.endpoints[body["id"]]
    assert body["secret"] not in stored.encode().decode(), "only the sealed secret is on the topic"
    assert SecretBox(SECRET_KEY).open(stored.secrets[0].sealed, bound_to=binding("acme", body["id"])) == body["secret"]
    got = client.get(f"/v1/webhooks/endpoints/{body['id']}", headers=ACME).json()
    assert "secret" not in got and got["url"] == "https://hooks.example/in"


def test_list_patch_delete_and_tenant_isolation(setup: Any) -> None:
    client, _, _ = setup
    endpoint_id = create(client).json()["id"]
    assert client.get(f"/v1/webhooks/endpoints/{endpoint_id}", headers=GLOBEX).status_code == 404
    assert client.get("/v1/webhooks/endpoints", headers=GLOBEX).json()["data"] == []
    patched = client.patch(f"/v1/webhooks/endpoints/{endpoint_id}", json={"disabled": True, "rate_limit_per_s": 5},
                           headers=ACME)
    assert patched.status_code == 200 and patched.json()["disabled"] is True
    assert patched.json()["rate_limit_per_s"] == 5
    assert client.patch(f"/v1/webhooks/endpoints/{endpoint_id}", json={"disabled": False}, headers=GLOBEX).status_code == 404
    assert [e["id"] for e in client.get("/v1/webhooks/endpoints", headers=ACME).json()["data"]] == [endpoint_id]
    assert client.delete(f"/v1/webhooks/endpoints/{endpoint_id}", headers=ACME).status_code == 204
    assert client.get(f"/v1/webhooks/endpoints/{endpoint_id}", headers=ACME).status_code == 404


def test_rotation_keeps_the_old_secret_for_the_grace_period(setup: Any) -> None:
    client, parts, _ = setup
    first = create(client).json()
    rotated = client.post(f"/v1/webhooks/endpoints/{first['id']}/rotate-secret", json={"grace_period_s": 3600},
                          headers=ACME).json()
    assert rotated["secret"] != first["secret"]
    secrets = parts.endpoints.endpoints[first["id"]].secrets
    box = SecretBox(SECRET_KEY)
    assert [box.open(s.sealed, bound_to=binding("acme", first["id"])) for s in secrets] == [
        rotated["secret"], first["secret"]]
    assert secrets[0].expires_at is None and secrets[1].expires_at is not None


def test_a_tenant_has_at_most_its_quota_of_endpoints_and_others_are_unaffected() -> None:
    parts, _, _ = memory_components()
    with make_client(parts, JOBWIRE_DEV="1", JOBWIRE_ENDPOINTS_PER_TENANT="3") as client:
        ids = [create(client).json()["id"] for _ in range(3)]
        refused = create(client)
        assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["quota"] == "endpoints_per_tenant" and refused.json()["limit"] == 3
        assert len(client.get("/v1/webhooks/endpoints", headers=ACME).json()["data"]) == 3
        other = client.post("/v1/webhooks/endpoints", json={"url": "https://hooks.example/g"}, headers=GLOBEX)
        assert other.status_code == 201, "the quota is per tenant"
        assert client.delete(f"/v1/webhooks/endpoints/{ids[0]}", headers=ACME).status_code == 204
        assert create(client).status_code == 201, "room again after a delete"


def test_rotations_keep_at_most_the_quota_of_live_secrets() -> None:
    parts, _, _ = memory_components()
    with make_client(parts, JOBWIRE_DEV="1", JOBWIRE_SECRETS_PER_ENDPOINT="3") as client:
        endpoint_id = create(client).json()["id"]
        rotate = f"/v1/webhooks/endpoints/{endpoint_id}/rotate-secret"
        for _ in range(2):
            assert client.post(rotate, json={"grace_period_s": 3600}, headers=ACME).status_code == 200
        refused = client.post(rotate, json={"grace_period_s": 3600}, headers=ACME)
        assert refused.status_code == 429 and refused.json()["quota"] == "secrets_per_endpoint"
        assert 3500 <= int(refused.headers["retry-after"]) <= 3600
        assert len(parts.endpoints.endpoints[endpoint_id].secrets) == 3, "nothing changed"
        # Without a grace period the old secrets go at once: always allowed.
        dropped = client.post(rotate, json={"grace_period_s": 0}, headers=ACME)
        assert dropped.status_code == 200 and len(parts.endpoints.endpoints[endpoint_id].secrets) == 1


@pytest.mark.parametrize(
    ("url", "status"),
    [("ftp://hooks.example/x", 422), ("https://user:pw@hooks.example/x", 422), ("https://10.0.0.7/hook", 422),
     ("https://169.254.169.254/latest", 422), ("https://[::1]/x", 422), ("not a url", 422)],
)
def test_bad_urls(setup: Any, url: str, status: int) -> None:
    client, _, _ = setup
    response = create(client, url=url)
    assert response.status_code == status
    assert response.json()["errors"][0]["pointer"] == "/url"


def test_http_urls_only_in_dev_mode() -> None:
    parts, _, _ = memory_components()
    with make_client(parts) as client:
        response = create(client, url="http://hooks.example/in")
        assert response.status_code == 422 and "https" in response.json()["errors"][0]["detail"]


def test_test_event_is_a_delivery_request(setup: Any) -> None:
    client, _, requests = setup
    endpoint_id = create(client).json()["id"]
    accepted = client.post(f"/v1/webhooks/endpoints/{endpoint_id}/test", headers=ACME)
    assert accepted.status_code == 202
    (key, value), = requests.records
    delivery = Delivery.decode(value)
    assert key == endpoint_id and delivery.event_type == "webhook.test" and delivery.id == accepted.json()["id"]


def feed_attempt(parts: ApiComponents, outcome: str, delivery: Delivery, attempt: int) -> None:
    from dataclasses import asdict

    record = Attempt(delivery.id, delivery.endpoint_id, delivery.tenant, delivery.event_type, delivery.event_id,
                     delivery.job_id, attempt, f"2026-11-23T10:00:0{attempt}.000Z", outcome,
                     500 if outcome != "succeeded" else 200,
                     dead_letter=asdict(delivery) if outcome == "failed" else None)
    parts.deliveries.apply_attempt(ConsumerRecord("a", 0, attempt, 0, 0, b"", record.encode(), None, 0, 0, ()))


def test_delivery_log_retry_and_recover(setup: Any) -> None:
    client, parts, requests = setup
    endpoint_id = create(client).json()["id"]
    failed = Delivery("msg_a", endpoint_id, "acme", "task.failed", "evt_a", "job_a", "{}", "2026-11-23T10:00:00.000Z", 3)
    fine = Delivery("msg_b", endpoint_id, "acme", "task.completed", "evt_b", "job_b", "{}", "2026-11-23T10:00:00.000Z", 1)
    for n in (1, 2, 3):
        feed_attempt(parts, "retrying" if n < 3 else "failed", failed, n)
    feed_attempt(parts, "succeeded", fine, 1)

    listed = client.get(f"/v1/webhooks/endpoints/{endpoint_id}/deliveries", headers=ACME).json()["data"]
    assert {(d["id"], d["status"], len(d["attempts"])) for d in listed} == {("msg_a", "failed", 3), ("msg_b", "succeeded", 1)}
    only_failed = client.get(f"/v1/webhooks/endpoints/{endpoint_id}/deliveries?status=failed", headers=ACME).json()["data"]
    assert [d["id"] for d in only_failed] == ["msg_a"]
    assert client.get("/v1/webhooks/deliveries/msg_a", headers=GLOBEX).status_code == 404

    assert client.post("/v1/webhooks/deliveries/msg_b/retry", headers=ACME).status_code == 409
    assert client.post("/v1/webhooks/deliveries/msg_a/retry", headers=ACME).status_code == 202
    resent = Delivery.decode(requests.records[-1][1])
    assert resent.id == "msg_a" and resent.attempts == 0 and resent.previous_attempts == 3
    again = client.post("/v1/webhooks/deliveries/msg_a/retry", headers=ACME)
    assert again.status_code == 409 and "already asked" in again.json()["detail"], "a double click sends once"
    recovered = client.post(f"/v1/webhooks/endpoints/{endpoint_id}/recover", json={"since": "2026-11-23T00:00:00Z"},
                            headers=ACME)
    assert recovered.status_code == 202 and recovered.json()["deliveries"] == [], "its request is on its way"
    assert len(requests.records) == 1


def failed_deliveries(client: TestClient, parts: ApiComponents, prefix: str, count: int) -> str:
    """A new endpoint with ``count`` failed deliveries, ``<prefix>0`` first; returns its id."""
    endpoint_id: str = create(client).json()["id"]
    for n in range(count):
        dead = Delivery(f"{prefix}{n}", endpoint_id, "acme", "task.failed", f"evt_{prefix}{n}", f"job_{n}", "{}",
                        f"2026-11-23T10:00:0{n}.000Z", 3)
        feed_attempt(parts, "failed", dead, n + 1)
    return endpoint_id


def test_recover_is_bounded_per_call_and_sends_each_delivery_once(setup: Any, monkeypatch: Any) -> None:
    from jobwire.api import webhooks as routes

    client, parts, requests = setup
    monkeypatch.setattr(routes, "MAX_RECOVER", 3)
    endpoint_id = failed_deliveries(client, parts, "msg_r", 5)
    body = {"since": "2026-11-23T00:00:00Z"}
    first = client.post(f"/v1/webhooks/endpoints/{endpoint_id}/recover", json=body, headers=ACME).json()
    assert first["deliveries"] == ["msg_r0", "msg_r1", "msg_r2"] and first["more"] is True
    second = client.post(f"/v1/webhooks/endpoints/{endpoint_id}/recover", json=body, headers=ACME).json()
    assert second["deliveries"] == ["msg_r3", "msg_r4"] and second["more"] is False, \
        "the first three are on their way: the next call passes over them"
    third = client.post(f"/v1/webhooks/endpoints/{endpoint_id}/recover", json=body, headers=ACME).json()
    assert third["deliveries"] == [] and third["more"] is False
    sent = [Delivery.decode(v).id for _, v in requests.records]
    assert sent == [f"msg_r{n}" for n in range(5)], "each once"


def test_recover_reads_only_the_payloads_it_sends_a_few_at_a_time(setup: Any, monkeypatch: Any) -> None:
    """A recover of hundreds of deliveries of up to 512 KiB each must not hold them together,
    nor decode those it passes over (already asked for again)."""
    from jobwire.api import webhooks as routes
    from jobwire.webhooks import model

    client, parts, requests = setup
    monkeypatch.setattr(routes, "RECOVER_CHUNK", 2)
    endpoint_id = failed_deliveries(client, parts, "msg_s", 7)
    assert client.post("/v1/webhooks/deliveries/msg_s1/retry", headers=ACME).status_code == 202
    decoded, batches = [], []
    real_decode, real_enqueue = model.Delivery.decode, routes.enqueue

    def counting_decode(raw: bytes) -> Delivery:
        decoded.append(raw)
        return real_decode(raw)

    async def recording_enqueue(request: Any, deliveries: list[Delivery]) -> None:
        batches.append([d.id for d in deliveries])
        await real_enqueue(request, deliveries)

    monkeypatch.setattr(model.Delivery, "decode", staticmethod(counting_decode))
    monkeypatch.setattr(routes, "enqueue", recording_enqueue)
    recovered = client.post(f"/v1/webhooks/endpoints/{endpoint_id}/recover", json={"since": "2026-11-23T00:00:00Z"},
                            headers=ACME).json()
    expected = [f"msg_s{n}" for n in (0, 2, 3, 4, 5, 6)]
    assert recovered["deliveries"] == expected
    assert batches == [expected[0:2], expected[2:4], expected[4:6]], "at most RECOVER_CHUNK payloads at once"
    assert len(decoded) == 6, "msg_s1, already on its way, is passed over without reading its payload"
    assert [Delivery.decode(v).id for _, v in requests.records] == ["msg_s1", *expected]


def test_retry_recover_and_test_requests_are_rate_limited_per_tenant(setup: Any) -> None:
    parts, _, requests = memory_components()
    with make_client(parts, JOBWIRE_DEV="1", JOBWIRE_RESENDS_PER_MIN="2") as client:
        endpoint_id = create(client).json()["id"]
        other = client.post("/v1/webhooks/endpoints", json={"url": "https://hooks.example/g"}, headers=GLOBEX).json()
        test_url = f"/v1/webhooks/endpoints/{endpoint_id}/test"
        assert client.post(test_url, headers=ACME).status_code == 202
        recover = client.post(f"/v1/webhooks/endpoints/{endpoint_id}/recover", json={"since": "2026-11-23T00:00:00Z"},
                              headers=ACME)
        assert recover.status_code == 202
        refused = client.post(test_url, headers=ACME)
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "30"
        assert "2 a minute" in refused.json()["detail"]
        assert client.post(f"/v1/webhooks/endpoints/{endpoint_id}/recover", json={"since": "2026-11-23T00:00:00Z"},
                           headers=ACME).status_code == 429
        assert client.post(f"/v1/webhooks/endpoints/{other['id']}/test", headers=GLOBEX).status_code == 202, \
            "another tenant's allowance is its own"
        assert len(requests.records) == 2, "one test event each for acme and globex, nothing for the refused ones"


def test_a_resend_may_be_asked_for_again_after_the_window() -> None:
    from jobwire.api.resends import RecentResends

    now = [0.0]
    resends = RecentResends(window_s=60, clock=lambda: now[0], capacity=2)
    assert resends.claim("msg_1") and not resends.claim("msg_1")
    now[0] = 61
    assert resends.claim("msg_1"), "a request lost on its way can be made again"
    assert resends.claim("msg_2") and resends.claim("msg_3"), "bounded: the oldest is forgotten first"
    assert resends.claim("msg_1"), "msg_1 was the oldest of three in a capacity of two"


def test_recover_since_an_impossible_time_is_422(setup: Any) -> None:
    client, _, _ = setup
    endpoint_id = create(client).json()["id"]
    response = client.post(f"/v1/webhooks/endpoints/{endpoint_id}/recover", json={"since": "2026-13-45T00:00:00Z"},
                           headers=ACME)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["pointer"] == "/since"


def test_a_rate_limit_below_the_floor_is_refused(setup: Any) -> None:
    client = setup[0]
    refused = create(client, rate_limit_per_s=1e-9)
    assert refused.status_code == 422 and refused.json()["errors"][0]["pointer"] == "/rate_limit_per_s"
    assert create(client, rate_limit_per_s=0.1).status_code == 201


@pytest.mark.parametrize("url", ["https://9\U000f24f3oo[", "https://[::1", "https://hooks.example:99999/in",
                                 "https://hooks.example:port/in"])
def test_an_unparseable_url_is_422_not_500(setup: Any, url: str) -> None:
    refused = create(setup[0], url=url)
    assert refused.status_code == 422 and refused.json()["errors"][0]["pointer"] == "/url"


def test_a_limit_in_other_digits_is_422(setup: Any) -> None:
    client = setup[0]
    endpoint_id = create(client).json()["id"]
    for path in ("/v1/jobs?limit=²", f"/v1/webhooks/endpoints/{endpoint_id}/deliveries?limit=²"):
        assert client.get(path, headers=ACME).status_code == 422, path


def test_health_counts_attempts_per_hour_over_a_day(setup: Any) -> None:
    from dataclasses import asdict
    from datetime import UTC, datetime, timedelta

    from jobwire.timeutil import format_utc

    client, parts, _ = setup
    endpoint_id = create(client).json()["id"]
    now = datetime.now(UTC)
    plan = [(2, "retrying"), (2, "retrying"), (2, "failed"), (1, "succeeded"), (30, "succeeded")]  # hours ago
    for offset, (hours_ago, outcome) in enumerate(plan):
        delivery = Delivery(f"msg_h{offset}", endpoint_id, "acme", "task.completed", f"evt_h{offset}", None, "{}",
                            format_utc(now - timedelta(hours=hours_ago)))
        record = Attempt(delivery.id, endpoint_id, "acme", delivery.event_type, delivery.event_id, None, 1,
                         format_utc(now - timedelta(hours=hours_ago)), outcome,
                         dead_letter=asdict(delivery) if outcome == "failed" else None)
        parts.deliveries.apply_attempt(ConsumerRecord("a", 0, 100 + offset, 0, 0, b"", record.encode(), None, 0, 0, ()))
    health = client.get(f"/v1/webhooks/endpoints/{endpoint_id}/health", headers=ACME)
    assert health.status_code == 200
    hours = health.json()["hours"]
    assert len(hours) == 24 and hours[-1]["hour"] <= format_utc(now)
    counted = {h["hour"][:13]: (h["succeeded"], h["retrying"], h["failed"]) for h in hours if any(
        h[k] for k in ("succeeded", "retrying", "failed"))}
    assert counted == {format_utc(now - timedelta(hours=2))[:13]: (0, 2, 1),
                       format_utc(now - timedelta(hours=1))[:13]: (1, 0, 0)}, "a day ago and older is left out"
    assert client.get(f"/v1/webhooks/endpoints/{endpoint_id}/health", headers=GLOBEX).status_code == 404


@pytest.mark.parametrize("host", LOOPBACK_FORMS + EMBEDDING_FORMS + UNICODE_FORMS)
def test_every_refused_form_is_refused_at_create_and_patch(host: str) -> None:
    parts, _, _ = memory_components()
    with make_client(parts, JOBWIRE_DEV="1", JOBWIRE_ALLOWED_TARGETS=ALLOW_LOOPBACK) as client:
        allowed = client.post("/v1/webhooks/endpoints", json={"url": "http://127.0.0.1:9/in"}, headers=ACME)
        assert allowed.status_code == 201, "the control: the canonical address of the allowed range is accepted"
        refused = client.post("/v1/webhooks/endpoints", json={"url": f"http://{host}:9/in"}, headers=ACME)
        assert refused.status_code == 422 and refused.json()["errors"][0]["pointer"] == "/url", refused.text
        patched = client.patch(f"/v1/webhooks/endpoints/{allowed.json()['id']}", json={"url": f"https://{host}/in"},
                               headers=ACME)
        assert patched.status_code == 422 and patched.json()["errors"][0]["pointer"] == "/url", patched.text


def test_an_ed25519_endpoint_shows_its_public_key_never_the_private_one(setup: Any) -> None:
    from jobwire.webhooks.keys import public_key

    client, parts, _ = setup
    created = create(client, signing="ed25519")
    body = created.json()
    assert created.status_code == 201 and body["signing"] == "ed25519" and "secret" not in body
    assert body["public_key"].startswith("whpk_")
    stored: Endpoint = parts.endpoints.endpoints[body["id"]]
    opened = SecretBox(SECRET_KEY).open(stored.secrets[0].sealed, bound_to=binding("acme", body["id"]))
    assert opened.startswith("whsk_") and public_key(opened) == body["public_key"]
    keys = client.get(f"/v1/webhooks/endpoints/{body['id']}/public-key", headers=ACME).json()
    assert keys["data"] == [{"public_key": body["public_key"], "expires_at": None}]
    rotated = client.post(f"/v1/webhooks/endpoints/{body['id']}/rotate-secret", headers=ACME).json()
    assert rotated["public_key"] != body["public_key"] and "secret" not in rotated
    keys = client.get(f"/v1/webhooks/endpoints/{body['id']}/public-key", headers=ACME).json()["data"]
    assert [k["public_key"] for k in keys] == [rotated["public_key"], body["public_key"]]
    assert keys[0]["expires_at"] is None and keys[1]["expires_at"] is not None, "the old key signs in its grace"
    assert client.get(f"/v1/webhooks/endpoints/{body['id']}/public-key", headers=GLOBEX).status_code == 404
    shared = create(client).json()
    assert shared["signing"] == "hmac" and shared["secret"].startswith("whsec_")
    assert client.get(f"/v1/webhooks/endpoints/{shared['id']}/public-key", headers=ACME).status_code == 409
    assert create(client, signing="rsa").status_code == 422


def test_an_hmac_endpoint_is_written_as_before_signing_existed() -> None:
    """A dispatcher of the previous version reads every HMAC endpoint during a rolling upgrade."""
    import orjson

    endpoint = Endpoint("ep_1", "acme", "https://h.example/x", "2026-01-01T00:00:00.000Z",
                        "2026-01-01T00:00:00.000Z", (SealedSecret("v3.k.x"),))
    assert "signing" not in orjson.loads(endpoint.encode()) and Endpoint.decode(endpoint.encode()) == endpoint
    signed = endpoint.with_changes(signing="ed25519")
    assert orjson.loads(signed.encode())["signing"] == "ed25519" and Endpoint.decode(signed.encode()) == signed


def test_an_endpoint_may_order_each_jobs_webhooks(setup: Any) -> None:
    client, parts, _ = setup
    body = create(client, ordering="job").json()
    assert body["ordering"] == "job" and parts.endpoints.endpoints[body["id"]].ordering == "job"
    assert create(client).json()["ordering"] == "none", "concurrent unless asked"
    patched = client.patch(f"/v1/webhooks/endpoints/{body['id']}", json={"ordering": "none"}, headers=ACME)
    assert patched.status_code == 200 and patched.json()["ordering"] == "none"
    assert parts.endpoints.endpoints[body["id"]].ordering is None, "stored as before the option existed"
    refused = create(client, ordering="fifo")
    assert refused.status_code == 422 and "/ordering" in refused.text


def test_signing_takes_the_standard_webhooks_version_names(setup: Any) -> None:
    client, _, _ = setup
    asymmetric = create(client, signing="v1a").json()
    assert asymmetric["signing"] == "ed25519" and asymmetric["public_key"].startswith("whpk_")
    assert create(client, signing="v1").json()["signing"] == "hmac"
