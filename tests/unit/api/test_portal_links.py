"""One-time portal links: a link opens one session, once, for minutes; the session manages
webhooks only."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.testclient import TestClient

from jobwire.api.portal_links import (
    COOKIE,
    LINK_TTL_S,
    MAX_REDEEMED_PER_TENANT,
    SESSION_TTL_S,
    LinkRefused,
    PortalLinks,
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
        PortalLinks("t" * 32, clock=lambda: now[0]).redeem(token)  # another secret key
    with pytest.raises(LinkRefused, match="not valid"):
        links.redeem(token.replace(".", "x.", 1))
    now[0] += LINK_TTL_S + 1
    with pytest.raises(LinkRefused, match="expired"):
        links.redeem(token)
    token, _ = links.mint("acme")
    tenant, session = links.redeem(token)
    assert tenant == "acme" and links.session_tenant(session) == "acme"
    assert links.session_tenant(token) is None, "a link is no session"
    now[0] += SESSION_TTL_S + 1
    assert links.session_tenant(session) is None



def test_a_session_ends_when_its_tenants_api_keys_change() -> None:
    keys = {"acme": ["key_one"]}
    links = PortalLinks("s" * 32, tenant_keys=lambda tenant: keys.get(tenant, []))
    token, _ = links.mint("acme")
    _, session = links.redeem(token)
    assert links.session_tenant(session) == "acme"
    keys["acme"] = ["key_two"]  # the key was replaced (the API restarted with new keys)
    assert links.session_tenant(session) is None
    unused, _ = links.mint("acme")
    keys["acme"] = []
    with pytest.raises(LinkRefused):
        links.redeem(unused)


def test_one_tenant_redeeming_many_links_never_locks_another_out() -> None:
    now = [1_000_000.0]
    links = PortalLinks("s" * 32, clock=lambda: now[0])
    for _ in range(MAX_REDEEMED_PER_TENANT):
        links.redeem(links.mint("mallory")[0])
    with pytest.raises(LinkRefused, match="too many"):
        links.redeem(links.mint("mallory")[0])
    assert links.redeem(links.mint("acme")[0])[0] == "acme"
    now[0] += LINK_TTL_S + 1  # mallory's nonces expire with their links
    assert links.redeem(links.mint("mallory")[0])[0] == "mallory"


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
