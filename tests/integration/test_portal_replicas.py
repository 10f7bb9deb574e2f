"""Portal links behind several API replicas, on a real broker: a link opens one session,
whichever replica it reaches, also when two replicas get it at the same moment, and also on a
replica started after it was spent."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import aiohttp

from jobwire.kafka.admin import ensure_topics
from tests.conftest import another_replica, settings_for
from tests.support.servers import running_api

KEY = "key_portal_0123456789"


async def mint(http: aiohttp.ClientSession, api: str) -> str:
    async with http.post(f"{api}/v1/webhooks/portal-link", headers={"Authorization": f"Bearer {KEY}"}) as response:
        assert response.status == 201
        url = (await response.json())["url"]
    return parse_qs(urlsplit(url).query)["token"][0]


async def redeem(http: aiohttp.ClientSession, api: str, token: str) -> int:
    """The POST of the link page's button: 303 to the portal with a session, or 403."""
    async with http.post(f"{api}/portal/login", data={"token": token}, allow_redirects=False) as response:
        if response.status == 303:
            assert "jobwire_portal=" in response.headers["Set-Cookie"]
        return response.status


async def test_a_link_opens_one_session_across_replicas_and_restarts(kafka_bootstrap: str) -> None:
    settings = settings_for(kafka_bootstrap, JOBWIRE_API_KEYS=f"acme:{KEY}",
                            JOBWIRE_SECRET_KEY="portal-secret-key-0123456789")
    await ensure_topics(settings)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        async with running_api(settings) as first, running_api(another_replica(settings)) as second:
            token = await mint(http, first)
            assert await redeem(http, first, token) == 303
            assert await redeem(http, second, token) == 403, "spent on the other replica"
            assert await redeem(http, first, token) == 403
            for _ in range(5):  # the same link at both replicas at once: one session between them
                token = await mint(http, second)
                answers = await asyncio.gather(redeem(http, first, token), redeem(http, second, token))
                assert sorted(answers) == [303, 403]
        async with running_api(another_replica(settings)) as restarted:  # its registry read from the topic
            assert await redeem(http, restarted, token) == 403
            assert await redeem(http, restarted, await mint(http, restarted)) == 303
