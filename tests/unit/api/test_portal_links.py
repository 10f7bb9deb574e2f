"""One-time portal links: a link opens one session, once, for minutes; the session manages
webhooks only."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from jobwire.api.portal_links import COOKIE, LINK_TTL_S, SESSION_TTL_S, LinkRefused, PortalLinks
from tests.support.memlog import memory_components
from tests.unit.api.test_webhook_routes import ACME, GLOBEX, make_client


@pytest.fixture
def client() -> Iterator[TestClient]:
    parts, _, _ = memory_components()
    with make_client(parts, JOBWIRE_DEV="1") as test_client:
        yield test_client


def link(client: TestClient, headers: dict[str, str] = ACME) -> Any:
    return client.post("/v1/webhooks/portal-link", headers=headers)


def test_a_link_signs_in_once_and_its_session_manages_webhooks_only(client: TestClient) -> None:
    client.post("/v1/webhooks/endpoints", json={"url": "https://hooks.example/in"}, headers=ACME)
    minted = link(client)
    assert minted.status_code == 201 and minted.json()["object"] == "portal_link"
    url = minted.json()["url"]
    assert "/portal/login?token=" in url
    opened = client.get(url, follow_redirects=False)
    assert opened.status_code == 303 and opened.headers["location"] == "/portal"
    cookie = opened.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and f"Max-Age={int(SESSION_TTL_S)}" in cookie
    session = {"Cookie": f"{COOKIE}={opened.cookies[COOKIE]}"}
    client.cookies.clear()

    listed = client.get("/v1/webhooks/endpoints", headers=session)
    assert listed.status_code == 200 and len(listed.json()["data"]) == 1  # acme's, and only acme's
    assert client.get(url, follow_redirects=False).status_code == 403, "a link works once"
    assert client.get("/v1/jobs", headers=session).status_code == 403
    assert client.post("/v1/jobs", json={"operation": "x", "parameters": {}}, headers=session).status_code == 403
    assert link(client, session).status_code == 403, "a session cannot mint more links"
    forged = {"Cookie": f"{COOKIE}={opened.cookies[COOKIE][:-2]}xx"}
    assert client.get("/v1/webhooks/endpoints", headers=forged).status_code == 401


def test_another_tenants_link_shows_its_own_endpoints(client: TestClient) -> None:
    client.post("/v1/webhooks/endpoints", json={"url": "https://hooks.example/in"}, headers=ACME)
    opened = client.get(link(client, GLOBEX).json()["url"], follow_redirects=False)
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
