"""Two API replicas behind a round-robin proxy, on the 3-node cluster, as a load balancer would
spread one client's requests: each write lands on one replica and the next read on the other.
Read-your-writes holds through the `Jobwire-Position` token the write answered; without it a
replica may answer from before the write. When the writes stop, the two stores agree."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from jobwire.config import load_settings
from jobwire.devtools.cluster import LocalCluster
from jobwire.kafka.admin import ensure_topics
from tests.conftest import another_replica
from tests.support.cluster import API_KEY, cluster_env
from tests.support.eventually import eventually
from tests.support.servers import running_api, serving
from tests.support.stores import store_digest

WRITES = 40
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}


@contextlib.asynccontextmanager
async def round_robin(upstreams: list[str]) -> AsyncIterator[str]:
    """A reverse proxy on loopback sending each request to the next upstream in turn; it says
    which one answered in ``Upstream``."""
    turn = itertools.cycle(upstreams)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))

    async def forward(request: web.Request) -> web.Response:
        upstream = next(turn)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with session.request(request.method, upstream + request.path_qs, headers=headers,
                                   data=await request.read(), allow_redirects=False) as answer:
            body = await answer.read()
            out = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
            return web.Response(status=answer.status, body=body, headers={**out, "Upstream": upstream})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    try:
        async with serving(app) as port:
            yield f"http://127.0.0.1:{port}"
    finally:
        await session.close()


@pytest.mark.timeout(300)
async def test_replicas_behind_a_round_robin_proxy_read_their_writes(kafka_cluster: LocalCluster,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings(cluster_env(kafka_cluster.bootstrap))
    other = another_replica(settings)
    await ensure_topics(settings)
    auth = {"Authorization": f"Bearer {API_KEY}"}
    async with running_api(settings) as a, running_api(other) as b, round_robin([a, b]) as proxy, \
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:

        async def call(method: str, path: str, **options: Any) -> tuple[int, dict[str, Any], Mapping[str, str]]:
            async with http.request(method, proxy + path, **options) as response:
                return response.status, await response.json(content_type=None), response.headers.copy()

        for index in range(WRITES):
            status, job, headers = await call("POST", "/v1/jobs", headers=auth,
                                              json={"operation": "ocr", "parameters": {"i": index}})
            assert status == 202, job
            wrote_on, position = headers["Upstream"], headers["Jobwire-Position"]
            status, read, headers = await call("GET", f"/v1/jobs/{job['id']}",
                                               headers={**auth, "Jobwire-Position": position})
            assert headers["Upstream"] != wrote_on, "the read went to the other replica"
            assert (status, read["id"], read["status"]) == (200, job["id"], "pending"), "read-your-writes"
            if index % 4 == 0:  # a cancel on one replica, seen as canceled on the other
                status, canceled, headers = await call("POST", f"/v1/jobs/{job['id']}/cancel", headers=auth)
                assert status in (200, 202), canceled
                status, read, _ = await call("GET", f"/v1/jobs/{job['id']}",
                                             headers={**auth, "Jobwire-Position": headers["Jobwire-Position"]})
                assert (status, read["status"]) == (200, "canceled")
        status, listed, _ = await call("GET", f"/v1/jobs?limit={WRITES}", headers=auth)
        assert status == 200 and len(listed["data"]) == WRITES

        def agree() -> bool:
            with contextlib.suppress(Exception):  # a store mid-write: ask again
                return store_digest(settings.data_dir) == store_digest(other.data_dir)
            return False

        await eventually(agree, "both replicas' stores hold the same jobs, history and offsets", timeout_s=60)
    with capsys.disabled():
        print(f"\nAPI replicas: {WRITES} writes through a round-robin proxy, each read on the other replica "
              f"with Jobwire-Position: all read their writes; stores agree")
