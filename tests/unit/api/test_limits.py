"""The limiter pieces without a server: gates, buckets on an injected clock, key reading, the
bounded problem body, the settings, and the middleware through Starlette's test client."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.testclient import TestClient

from jobwire.api.app import create_app
from jobwire.api.limits import ApiLimits, ConcurrencyGate, Slot, TokenBuckets, presented_key, retry_after
from jobwire.api.problems import MAX_LISTED_VIOLATIONS, MAX_VIOLATION_CHARS, Problem, problem_response
from jobwire.api.server import raw_problem
from jobwire.config import load_settings
from jobwire.errors import ConfigError, Violation
from tests.support.memlog import memory_components

ACME_KEY = "key_acme_0123456789"
GLOBEX_KEY = "key_globex_0123456789"
KEYS = f"acme:{ACME_KEY},globex:{GLOBEX_KEY}"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- gates -----------------------------------------------------------------------------------


def test_a_gate_admits_up_to_its_limit_per_key_and_forgets_idle_keys() -> None:
    gate = ConcurrencyGate(2)
    assert gate.acquire("acme") and gate.acquire("acme")
    assert not gate.acquire("acme"), "a third holder is refused"
    assert gate.acquire("globex"), "another key has its own allowance"
    gate.release("acme")
    assert gate.held("acme") == 1 and gate.acquire("acme")
    for _ in range(2):
        gate.release("acme")
    gate.release("globex")
    assert gate._held == {}, "keys holding nothing take no memory"


def test_a_slot_releases_once_however_often_it_is_released() -> None:
    gate = ConcurrencyGate(1)
    assert gate.acquire("acme")
    other = ConcurrencyGate(1)
    assert other.acquire("acme")
    slot = Slot(gate, "acme")
    with slot:
        pass
    slot.release()
    assert gate.held("acme") == 0
    assert gate.acquire("acme") and not gate.acquire("acme"), "the double release did not free a second unit"


# --- token buckets ---------------------------------------------------------------------------


def test_a_bucket_allows_the_burst_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate=2.0, burst=3, clock=clock)
    assert [buckets.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("k") == pytest.approx(0.5), "one token comes back in 1/rate seconds"
    clock.now += 0.25
    assert buckets.take("k") == pytest.approx(0.25)
    clock.now += 0.25
    assert buckets.take("k") == 0.0
    clock.now += 3600
    assert [buckets.take("k") for _ in range(4)][:3] == [0.0, 0.0, 0.0], "a long pause refills only the burst"
    assert buckets.take("k") > 0


def test_buckets_are_per_key_and_a_clock_going_back_adds_nothing() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate=1.0, burst=1, clock=clock)
    assert buckets.take("a") == 0.0 and buckets.take("b") == 0.0
    assert buckets.take("a") > 0
    clock.now -= 100
    assert buckets.take("a") > 0


def test_retry_after_is_whole_seconds_and_never_zero() -> None:
    assert [retry_after(s) for s in (0.001, 0.5, 1.0, 1.01, 59.2)] == ["1", "1", "1", "2", "60"]


# --- keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("headers", "key"), [
    ([(b"authorization", b"Bearer abc")], "abc"),
    ([(b"authorization", b"bearer  abc ")], "abc"),
    ([(b"x-api-key", b"abc")], "abc"),
    ([(b"authorization", b"Bearer abc"), (b"x-api-key", b"abc")], "abc"),
    ([(b"authorization", b"Bearer abc"), (b"x-api-key", b"xyz")], None),
    ([(b"authorization", b"Basic abc")], None),
    ([(b"authorization", b"Basic abc"), (b"x-api-key", b"abc")], None),
    ([], None),
])
def test_the_key_is_read_as_auth_reads_it(headers: list[tuple[bytes, bytes]], key: str | None) -> None:
    assert presented_key(headers) == key


# --- problems --------------------------------------------------------------------------------


def test_a_problem_lists_a_bounded_number_of_short_violations_and_counts_them_all() -> None:
    violations = [Violation(f"/parameters/{i}", "x" * 5000) for i in range(84_000)]
    response = problem_response(None, Problem(422, "bad", violations=violations))
    assert len(response.body) < 20_000
    document = orjson.loads(response.body)
    assert len(document["errors"]) == MAX_LISTED_VIOLATIONS and document["errors_total"] == 84_000
    assert all(len(e["detail"]) <= MAX_VIOLATION_CHARS for e in document["errors"])
    assert response.headers["x-content-type-options"] == "nosniff"


def test_a_raw_refusal_is_a_complete_problem_response() -> None:
    head, _, body = raw_problem(431, "too big", b"retry-after: 1\r\n").partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ")
    assert b"content-length: %d" % len(body) in head and b"connection: close" in head
    assert b"x-content-type-options: nosniff" in head and b"retry-after: 1" in head


# --- settings --------------------------------------------------------------------------------


def test_limit_settings_have_safe_defaults() -> None:
    settings = load_settings({})
    assert (settings.http_max_connections, settings.http_max_header_bytes, settings.http_max_headers) == (1000, 16384, 100)
    assert (settings.http_header_timeout_s, settings.http_body_timeout_s, settings.http_keepalive_s) == (10.0, 30.0, 5)
    assert (settings.long_polls_per_tenant, settings.streams_per_tenant) == (100, 20)
    assert (settings.rate_limit_per_s, settings.rate_limit_burst) == (200, 400), "on outside dev mode"
    assert load_settings({"JOBWIRE_DEV": "1"}).rate_limit_per_s == 0
    assert load_settings({"JOBWIRE_RATE_LIMIT_PER_S": "0"}).rate_limit_burst == 0, "0 turns it off"
    limited = load_settings({"JOBWIRE_RATE_LIMIT_PER_S": "2.5", "JOBWIRE_DEV": "1"})
    assert (limited.rate_limit_per_s, limited.rate_limit_burst) == (2.5, 5)


@pytest.mark.parametrize(("name", "value"), [
    ("JOBWIRE_HTTP_MAX_CONNECTIONS", "0"), ("JOBWIRE_HTTP_MAX_HEADER_BYTES", "100"),
    ("JOBWIRE_HTTP_MAX_HEADERS", "many"), ("JOBWIRE_HTTP_HEADER_TIMEOUT_S", "inf"),
    ("JOBWIRE_HTTP_BODY_TIMEOUT_S", "0"), ("JOBWIRE_HTTP_KEEPALIVE_S", "-1"),
    ("JOBWIRE_LONG_POLLS_PER_TENANT", "0"), ("JOBWIRE_STREAMS_PER_TENANT", "x"),
    ("JOBWIRE_RATE_LIMIT_PER_S", "nan"), ("JOBWIRE_RATE_LIMIT_PER_S", "-1"),
])
def test_a_bad_limit_setting_is_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value, "JOBWIRE_RATE_LIMIT_BURST": "5"} if "RATE" in name else {name: value})


def test_a_bad_burst_is_named_when_the_rate_is_on() -> None:
    with pytest.raises(ConfigError, match="JOBWIRE_RATE_LIMIT_BURST"):
        load_settings({"JOBWIRE_RATE_LIMIT_PER_S": "1", "JOBWIRE_RATE_LIMIT_BURST": "0"})


# --- the middleware and gates in the app -----------------------------------------------------


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = load_settings({"JOBWIRE_API_KEYS": KEYS, "JOBWIRE_RATE_LIMIT_PER_S": "0.001",
                              "JOBWIRE_RATE_LIMIT_BURST": "3", "JOBWIRE_LONG_POLLS_PER_TENANT": "1"})
    with TestClient(create_app(settings, memory_components()[0]), raise_server_exceptions=False) as test_client:
        yield test_client


def test_every_kind_of_response_is_nosniff(client: TestClient) -> None:
    acme = {"X-API-Key": ACME_KEY}
    answers = [
        client.post("/v1/jobs", json={"operation": "ocr", "parameters": {}}, headers=acme),
        client.get("/v1/jobs/job_nope", headers={"X-API-Key": GLOBEX_KEY}),
        client.get("/no/such/path"), client.delete("/healthz"), client.get("/healthz"),
        client.get("/metrics"), client.get("/portal"), client.get("/v1/jobs"),
    ]
    assert [a.status_code for a in answers] == [202, 404, 404, 405, 200, 401, 200, 401]
    assert all(a.headers.get("x-content-type-options") == "nosniff" for a in answers)
    assert all(a.headers.get_list("x-content-type-options") == ["nosniff"] for a in answers), "never twice"


def test_a_key_over_its_rate_gets_429_while_others_and_strangers_do_not(client: TestClient) -> None:
    acme = {"Authorization": f"Bearer {ACME_KEY}"}
    assert [client.get("/v1/jobs", headers=acme).status_code for _ in range(3)] == [200, 200, 200]
    limited = client.get("/v1/jobs", headers=acme)
    assert limited.status_code == 429 and limited.headers["content-type"] == "application/problem+json"
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["x-content-type-options"] == "nosniff"
    assert client.get("/v1/jobs", headers={"X-API-Key": GLOBEX_KEY}).status_code == 200, "a bucket per key"
    assert client.get("/v1/jobs").status_code == 401, "no key: still 401"
    assert client.get("/v1/jobs", headers={"X-API-Key": "key_wrong_0123456789"}).status_code == 401
    mixed = {"Authorization": f"Bearer {ACME_KEY}", "X-API-Key": GLOBEX_KEY}
    assert client.get("/v1/jobs", headers=mixed).status_code == 401, "two keys: auth decides"
    assert client.get("/healthz", headers=acme).status_code == 200, "probes are never rate limited"


def gates_seen(client: TestClient, requests: int = 1) -> list[ApiLimits]:
    """The gates each of ``requests`` requests found on its request state."""
    seen = []

    async def probe(request: Request) -> Response:
        seen.append(request.state.limits)
        return Response()

    client.app.add_route("/probe", probe)  # type: ignore[attr-defined]
    for _ in range(requests):
        client.get("/probe")
    return seen


def test_routes_find_the_apps_gates_on_request_state(client: TestClient) -> None:
    seen = gates_seen(client, 2)
    assert len(seen) == 2 and seen[0] is seen[1], "one set of gates per app, shared by its requests"
    slot = seen[0].long_poll("acme")
    with pytest.raises(Problem) as refused:
        seen[0].long_poll("acme")
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "1"
    slot.release()
    seen[0].long_poll("acme").release()


def test_a_wait_for_a_position_holds_a_long_poll_slot_and_a_visible_one_none() -> None:
    settings = load_settings({"JOBWIRE_API_KEYS": KEYS, "JOBWIRE_LONG_POLLS_PER_TENANT": "1"})
    with TestClient(create_app(settings, memory_components()[0]), raise_server_exceptions=False) as client:
        acme = {"X-API-Key": ACME_KEY}
        position = client.post("/v1/jobs", json={"operation": "ocr", "parameters": {}},
                               headers=acme).headers["jobwire-position"]
        slot = gates_seen(client)[0].long_poll("acme")  # acme's one long-poll is waiting
        try:
            visible = client.get("/v1/jobs", headers={**acme, "Jobwire-Position": position})
            assert visible.status_code == 200, "a position already applied waits for nothing"
            ahead = f"{position.split(':')[0]}:{int(position.split(':')[1]) + 100}"
            refused = client.get("/v1/jobs", headers={**acme, "Jobwire-Position": ahead})
            assert refused.status_code == 429 and "Prefer: wait" in refused.json()["detail"]
            other = client.get("/v1/jobs", headers={"X-API-Key": GLOBEX_KEY, "Jobwire-Position": position})
            assert other.status_code == 200
        finally:
            slot.release()
