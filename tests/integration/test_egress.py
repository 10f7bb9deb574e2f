"""Deliveries to a receiver behind enterprise egress, on a real broker: a TLS receiver that
requires a client certificate (made at test time) gets signed webhooks from the endpoint that
presents one, through a CONNECT proxy, and nothing from the endpoint that does not."""

from __future__ import annotations

from typing import Any

import pytest

from jobwire.config import Settings
from jobwire.kafka.admin import ensure_topics
from jobwire.sdk.client import ApiError, Client
from tests.conftest import settings_for
from tests.integration.test_dispatch import ACME_KEY, GLOBEX_KEY, finish_a_job, running_dispatcher
from tests.support.connect_proxy import ConnectProxy
from tests.support.eventually import eventually
from tests.support.receiver import Receiver, ReceiverServer
from tests.support.servers import running_api
from tests.support.tls_material import make_material


@pytest.mark.timeout(180)
async def test_an_mtls_receiver_behind_the_egress_proxy_gets_signed_webhooks(kafka_bootstrap: str) -> None:
    material = make_material()
    receiver = Receiver()
    async with ConnectProxy() as proxy, ReceiverServer(receiver, material.server_context()) as server:
        settings: Settings = settings_for(
            kafka_bootstrap, JOBWIRE_API_KEYS=f"acme:{ACME_KEY},globex:{GLOBEX_KEY}", JOBWIRE_DEV="1",
            JOBWIRE_SECRET_KEY="egress-secret-key-0123456789", JOBWIRE_ALLOWED_TARGETS="127.0.0.1/32",
            JOBWIRE_RETRY_SCHEDULE="0,60", JOBWIRE_EGRESS_PROXY=proxy.url)
        await ensure_topics(settings)
        async with running_api(settings) as url, Client(url, ACME_KEY) as client, running_dispatcher(settings):
            with_cert = await client.create_endpoint(server.url, tls_ca=material.ca, tls_client_cert={
                "cert": material.client.cert, "key": material.client.key})
            receiver.secrets.append(with_cert["secret"])
            assert with_cert["tls_client_cert"]["subject"] == "CN=jobwire dispatcher"
            assert "PRIVATE KEY" not in str(with_cert), "the key is never shown"
            without = await client.create_endpoint(server.url, tls_ca=material.ca)
            job = await finish_a_job(client)
            await receiver.wait_for(lambda: len(receiver.received) == 1)
            assert receiver.received[0].data["id"] == job["id"] and receiver.rejected == 0
            assert proxy.targets and set(proxy.targets) == {f"127.0.0.1:{server.port}"}, "every request went via CONNECT"

            async def refused() -> list[dict[str, Any]]:
                found = await client.deliveries(without["id"])
                return [a for d in found for a in d["attempts"] if a["status_code"] is None]
            attempts = await eventually(refused, "the endpoint without a client certificate to fail its attempt")
            assert attempts[0]["error"], attempts
            assert len(receiver.received) == 1, "nothing reached the receiver without a client certificate"


async def test_a_broken_client_certificate_is_refused_naming_the_field(kafka_bootstrap: str) -> None:
    material, other = make_material(), make_material()
    settings = settings_for(kafka_bootstrap, JOBWIRE_API_KEYS=f"acme:{ACME_KEY}", JOBWIRE_DEV="1",
                            JOBWIRE_SECRET_KEY="egress-secret-key-0123456789")
    await ensure_topics(settings)
    async with running_api(settings) as url, Client(url, ACME_KEY) as client:
        for cert, pointer in (({"cert": material.client.cert, "key": other.client.key}, "/tls_client_cert/key"),
                              ({"cert": "not a certificate", "key": material.client.key}, "/tls_client_cert/cert"),
                              ({"cert": material.client.cert, "key": "nope"}, "/tls_client_cert/key")):
            with pytest.raises(ApiError) as refused:
                await client.create_endpoint("https://hooks.example.com/x", tls_client_cert=cert)
            assert refused.value.status == 422
            assert any(e["pointer"] == pointer for e in refused.value.problem["errors"]), refused.value.problem
