"""One-time portal links: a link opens one session, once, for minutes; the session manages
webhooks only."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from aiokafka import ConsumerRecord
from starlette.testclient import TestClient

from jobwire.api.portal_links import (
    COOKIE,
    LINK_TTL_S,
    SESSION_TTL_S,
    LinkRefused,
    PortalLinks,
)
from jobwire.webhooks.redemptions import (
    FORGET_AFTER_S,
    MAX_REDEEMED_PER_TENANT,
    Redemption,
    Redemptions,
    redemption_key,
)
from tests.support.memlog import memory_components
from tests.unit.api.test_webhook_routes import ACME, GLOBEX, make_client


@pytest.fixture
def client() -> Iterator[TestClient]:
    parts, _, _ = memory_components()
    with make_client(parts, JOBWIRE_DEV="1") as test_client:
        yield test_client


def link(client: TestClient, headers: dict[str, str] = ACME) -> Any:
    return client.post("/v1/webhooks/portal-link", headers=headers)


def open_link(client: TestClient, url: str) -> Any:
    """As a person does: the link's page, then its button (a form POST of the token)."""
    page = client.get(url)
    assert page.status_code == 200 and 'method="post"' in page.text
    token = parse_qs(urlsplit(url).query)["token"][0]
    return client.post("/portal/login", data={"token": token}, follow_redirects=False)


def test_a_link_signs_in_once_and_its_session_manages_webhooks_only(client: TestClient) -> None:
    client.post("/v1/webhooks/endpoints", json={"url": "https://hooks.example/in"}, headers=ACME)
    minted = link(client)
    assert minted.status_code == 201 and minted.json()["object"] == "portal_link"
    url = minted.json()["url"]
    assert "/portal/login?token=" in url
    for _ in range(3):  # a mail client's link scanner fetches it: that spends nothing
        assert client.get(url, follow_redirects=False).status_code == 200
    opened = open_link(client, url)
    assert opened.status_code == 303 and opened.headers["location"] == "/portal"
    cookie = opened.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and f"Max-Age={int(SESSION_TTL_S)}" in cookie
    session = {"Cookie": f"{COOKIE}={opened.cookies[COOKIE]}"}
    client.cookies.clear()

    listed = client.get("/v1/webhooks/endpoints", headers=session)
    assert listed.status_code == 200 and len(listed.json()["data"]) == 1  # acme's, and only acme's
    assert open_link(client, url).status_code == 403, "a link works once"
    assert client.get("/v1/jobs", headers=session).status_code == 403
    assert client.post("/v1/jobs", json={"operation": "x", "parameters": {}}, headers=session).status_code == 403
    assert link(client, session).status_code == 403, "a session cannot mint more links"
    forged = {"Cookie": f"{COOKIE}={opened.cookies[COOKIE][:-2]}xx"}
    assert client.get("/v1/webhooks/endpoints", headers=forged).status_code == 401


def test_another_tenants_link_shows_its_own_endpoints(client: TestClient) -> None:
    client.post("/v1/webhooks/endpoints", json={"url": "https://hooks.example/in"}, headers=ACME)
    opened = open_link(client, link(client, GLOBEX).json()["url"])
    session = {"Cookie": f"{COOKIE}={opened.cookies[COOKIE]}"}
    client.cookies.clear()
    assert client.get("/v1/webhooks/endpoints", headers=session).json()["data"] == []


def test_links_and_sessions_expire_and_forgeries_are_refused() -> None:
    now = [1_000_000.0]
    links = PortalLinks("s" * 32, clock=lambda: now[0])
    token, expires = links.mint("acme")
    assert expires == now[0] + LINK_TTL_S
    with pytest.raises(LinkRefused, match="not valid"):
        PortalLinks("t" * 32, clock=lambda: now[0]).open_link(token)  # another secret key
    with pytest.raises(LinkRefused, match="not valid"):
        links.open_link(token.replace(".", "x.", 1))
    now[0] += LINK_TTL_S + 1
    with pytest.raises(LinkRefused, match="expired"):
        links.open_link(token)
    token, _ = links.mint("acme")
    link = links.open_link(token)
    session = links.session_for(link)
    assert link.tenant == "acme" and link.expires == now[0] + LINK_TTL_S and links.session_tenant(session) == "acme"
    assert links.session_tenant(token) is None, "a link is no session"
    with pytest.raises(LinkRefused):
        links.open_link(session)  # nor a session a link
    now[0] += SESSION_TTL_S + 1
    assert links.session_tenant(session) is None


def test_a_session_ends_when_its_tenants_api_keys_change() -> None:
    keys = {"acme": ["key_one"]}
    links = PortalLinks("s" * 32, tenant_keys=lambda tenant: keys.get(tenant, []))
    token, _ = links.mint("acme")
    session = links.session_for(links.open_link(token))
    assert links.session_tenant(session) == "acme"
    keys["acme"] = ["key_two"]  # the key was replaced (the API restarted with new keys)
    assert links.session_tenant(session) is None
    unused, _ = links.mint("acme")
    keys["acme"] = []
    with pytest.raises(LinkRefused):
        links.open_link(unused)


def claim(tenant: str, nonce: str, who: str, until: float) -> tuple[str, bytes]:
    return redemption_key(tenant, nonce), Redemption(tenant, nonce, who, until).encode()


def test_the_first_claim_for_a_nonce_in_the_log_wins_until_the_link_expires() -> None:
    now = [1_000_000.0]
    redemptions = Redemptions(clock=lambda: now[0])
    until = now[0] + LINK_TTL_S
    redemptions.apply(*claim("acme", "n1", "replica-a", until))
    redemptions.apply(*claim("acme", "n1", "replica-b", until))  # a second replica, a moment later
    assert redemptions.winner("acme", "n1").claim == "replica-a"  # type: ignore[union-attr]
    assert redemptions.winner("globex", "n1") is None, "nonces are per tenant"
    assert redemptions.count("acme") == 1
    now[0] = until + FORGET_AFTER_S - 1
    assert redemptions.winner("acme", "n1") is not None, "kept past expiry, for clocks that disagree"
    assert redemptions.stale(10) == []
    now[0] = until + FORGET_AFTER_S
    assert redemptions.winner("acme", "n1") is None and redemptions.count("acme") == 0
    assert redemptions.stale(10) == [redemption_key("acme", "n1")], "its key is handed on for a tombstone"
    redemptions.apply(redemption_key("acme", "n1"), None)
    assert redemptions.stale(10) == []
    with pytest.raises(ValueError, match="another nonce"):
        redemptions.apply(redemption_key("acme", "n2"), claim("acme", "n3", "x", until)[1])
    for bad in (b"[]", b"{}", b"not json", orjson.dumps({"tenant": "acme", "nonce": "n", "claim": "", "until": 1.0})):
        with pytest.raises(ValueError):
            redemptions.apply(redemption_key("acme", "n"), bad)


def test_a_tombstone_from_a_clock_ahead_never_reopens_a_link() -> None:
    """Replica Y's clock runs ahead: it forgets a claim and writes the tombstone while the link
    is still alive on replica X's clock. X keeps refusing the link until it forgets it itself."""
    now_x = [1_000_000.0]
    x = Redemptions(clock=lambda: now_x[0])
    x.apply(*claim("acme", "n1", "y", now_x[0] + LINK_TTL_S))
    x.apply(redemption_key("acme", "n1"), None)
    assert x.winner("acme", "n1") is not None and x.count("acme") == 1


def test_a_long_expired_claim_read_at_start_up_is_tombstoned_not_kept() -> None:
    now = [1_000_000.0]
    redemptions = Redemptions(clock=lambda: now[0])
    redemptions.apply(*claim("acme", "old", "a", now[0] - FORGET_AFTER_S - 1))
    assert redemptions.winner("acme", "old") is None and redemptions.count("acme") == 0
    assert redemptions.stale(10) == [redemption_key("acme", "old")]


def test_one_tenant_redeeming_many_links_never_locks_another_out() -> None:
    now = [1_000_000.0]
    redemptions = Redemptions(clock=lambda: now[0])
    for n in range(MAX_REDEEMED_PER_TENANT):
        redemptions.apply(*claim("mallory", f"n{n}", "a", now[0] + LINK_TTL_S))
    assert redemptions.count("mallory") == MAX_REDEEMED_PER_TENANT and redemptions.count("acme") == 0
    now[0] += LINK_TTL_S + FORGET_AFTER_S  # mallory's nonces are forgotten after their links expire
    assert redemptions.count("mallory") == 0


def test_the_portal_route_refuses_more_redemptions_than_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    from jobwire.api import webhooks as routes

    monkeypatch.setattr(routes, "MAX_REDEEMED_PER_TENANT", 2)
    parts, _, _ = memory_components()
    with make_client(parts, JOBWIRE_DEV="1") as client:
        for _ in range(2):
            assert open_link(client, link(client).json()["url"]).status_code == 303
        refused = open_link(client, link(client).json()["url"])
        assert refused.status_code == 403 and "too many" in refused.text
        assert open_link(client, link(client, GLOBEX).json()["url"]).status_code == 303, "another tenant signs in"


def test_a_link_opens_once_across_replicas_and_restarts() -> None:
    """Two replicas read the same endpoints topic: a link redeemed on one is spent on the other,
    and on a replica started afterwards (its registry rebuilt from the topic)."""
    parts, _, _ = memory_components()
    with make_client(parts, JOBWIRE_DEV="1") as first, make_client(parts, JOBWIRE_DEV="1") as second:
        url = link(first).json()["url"]
        assert open_link(first, url).status_code == 303
        again = open_link(second, url)
        assert again.status_code == 403 and "used already" in again.text
    topic = parts.endpoint_writer._writer  # type: ignore[attr-defined]
    restarted, _, _ = memory_components()
    for offset, (key, value) in enumerate(topic.records):
        restarted.endpoints.apply(ConsumerRecord(topic.name, 0, offset, 0, 0, key.encode(), value, None, 0, 0, ()))
    with make_client(restarted, JOBWIRE_DEV="1") as third:
        assert open_link(third, url).status_code == 403


def test_the_link_is_built_on_the_configured_origin_and_the_cookie_is_secure_behind_tls() -> None:
    parts, _, _ = memory_components()
    with make_client(parts, JOBWIRE_DEV="1", JOBWIRE_PUBLIC_URL="https://jobs.example.com") as client:
        url = client.post("/v1/webhooks/portal-link", headers={**ACME, "Host": "evil.example"}).json()["url"]
        assert url.startswith("https://jobs.example.com/portal/login?token=")
        opened = open_link(client, "http://testserver" + url.removeprefix("https://jobs.example.com"))
        assert opened.status_code == 303 and "Secure" in opened.headers["set-cookie"]


def test_a_portal_session_reads_delivery_outcomes_but_not_the_job_data_sent() -> None:
    from aiokafka import ConsumerRecord

    from jobwire.webhooks.model import Attempt

    parts, _, _ = memory_components()
    with make_client(parts, JOBWIRE_DEV="1") as client:
        endpoint_id = client.post("/v1/webhooks/endpoints", json={"url": "https://hooks.example/in"},
                                  headers=ACME).json()["id"]
        sent = Attempt("msg_s", endpoint_id, "acme", "task.completed", "evt_s", "job_s", 1, "2026-11-23T10:00:01.000Z",
                       "succeeded", 200, request={"body": {"data": {"parameters": {"ssn": "123-45-6789"}}}})
        parts.deliveries.apply_attempt(ConsumerRecord("a", 0, 1, 0, 0, b"", sent.encode(), None, 0, 0, ()))
        opened = open_link(client, link(client).json()["url"])
        session = {"Cookie": f"{COOKIE}={opened.cookies[COOKIE]}"}
        client.cookies.clear()
        route = f"/v1/webhooks/endpoints/{endpoint_id}/deliveries"
        by_key = client.get(route, headers=ACME).json()["data"][0]["attempts"][0]
        assert by_key["request"]["body"]["data"]["parameters"]["ssn"] == "123-45-6789"
        for seen in (client.get(route, headers=session).json()["data"][0],
                     client.get("/v1/webhooks/deliveries/msg_s", headers=session).json()):
            assert seen["attempts"][0]["status_code"] == 200 and "request" not in seen["attempts"][0]
            assert "123-45-6789" not in str(seen)


def test_portal_sessions_spend_one_allowance_per_tenant() -> None:
    """The per-key rate applies to portal sessions too: all of a tenant's sessions share one
    bucket (a person cannot open more links to get more), apart from its API keys' buckets."""
    parts, _, _ = memory_components()
    with make_client(parts, JOBWIRE_RATE_LIMIT_PER_S="0.01", JOBWIRE_RATE_LIMIT_BURST="4") as client:
        sessions = []
        for _ in range(2):
            opened = open_link(client, link(client).json()["url"])
            sessions.append({"Cookie": f"{COOKIE}={opened.cookies[COOKIE]}"})
            client.cookies.clear()
        answers = [client.get("/v1/webhooks/endpoints", headers=sessions[n % 2]).status_code for n in range(5)]
        assert answers == [200, 200, 200, 200, 429]
        refused = client.get("/v1/webhooks/endpoints", headers=sessions[0])
        assert refused.headers["retry-after"] and "portal sessions" in refused.json()["detail"]
        assert client.get("/v1/webhooks/endpoints", headers=GLOBEX).status_code == 200, "another tenant's own bucket"
        globex = open_link(client, link(client, GLOBEX).json()["url"])
        client.cookies.clear()
        assert client.get("/v1/webhooks/endpoints",
                          headers={"Cookie": f"{COOKIE}={globex.cookies[COOKIE]}"}).status_code == 200
        forged = {"Cookie": f"{COOKIE}=forged"}
        assert client.get("/v1/webhooks/endpoints", headers=forged).status_code == 401, "refused by auth, not 429"


def test_a_sign_in_writes_tombstones_for_expired_redemptions() -> None:
    """The compacted topic forgets redemptions once their links expired: the next sign-in on
    any replica writes their tombstones."""
    import time

    parts, _, _ = memory_components()
    now = [time.time()]
    parts.endpoints.redemptions = Redemptions(clock=lambda: now[0])
    topic = parts.endpoint_writer._writer  # type: ignore[attr-defined]
    old = [claim("acme", f"old{n}", "a", now[0] + 1) for n in range(3)]
    for offset, (key, value) in enumerate(old):
        parts.endpoints.apply(ConsumerRecord(topic.name, 0, offset, 0, 0, key.encode(), value, None, 0, 0, ()))
    now[0] += 2 + FORGET_AFTER_S  # their links have long expired
    with make_client(parts, JOBWIRE_DEV="1") as client:
        assert open_link(client, link(client).json()["url"]).status_code == 303
    tombstones = [key for key, value in topic.records if value is None]
    assert sorted(tombstones) == sorted(key for key, _ in old)
    assert parts.endpoints.redemptions.stale(10) == [], "read back: nothing left to forget"


def test_the_sign_in_form_is_read_no_further_than_a_form_can_hold(client: TestClient) -> None:
    refused = client.post("/portal/login", content=b"token=" + b"x" * 5000,
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert refused.status_code == 413
