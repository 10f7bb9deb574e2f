"""docs/receiving-webhooks.md's receivers in three languages, each a real process verifying with
its language's Standard Webhooks library (Python: svix; Node: the npm `standardwebhooks`
package; Go: the Standard Webhooks Go library from the module proxy), against a running API
and dispatcher: all three verify the same webhooks, and all three refuse a tampered one."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from jobwire.devtools.broker import free_port, set_parent_death_signal
from jobwire.dispatch.signing import sign_headers
from jobwire.kafka.admin import ensure_topics
from jobwire.sdk.client import Client
from jobwire.webhooks.keys import new_signing_key
from tests.integration.test_dispatch import ACME_KEY, finish_a_job, hook_settings, running_dispatcher
from tests.support.servers import running_api

ROOT = Path(__file__).parents[2]
RECEIVERS = ROOT / "examples" / "receivers"
NODE_MODULES = ROOT / ".venv" / "node" / "node_modules"


@pytest.fixture(scope="module")
def go_receiver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go receiver, built once (its module comes through the Go module proxy)."""
    assert shutil.which("go"), "the Go toolchain is needed for the Go receiver"
    binary = tmp_path_factory.mktemp("go") / "receiver"
    subprocess.run(["go", "build", "-o", str(binary), "."], cwd=RECEIVERS / "go", check=True, timeout=300,
                   env={**os.environ, "GOFLAGS": "-mod=readonly"})
    return binary


class ReceiverProcess:
    def __init__(self, name: str, argv: list[str], secret: str, port: int, log: Path) -> None:
        self.name, self.port, self.log = name, port, log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                argv + [str(port)], env={**os.environ, "WEBHOOK_SECRET": secret, "NODE_PATH": str(NODE_MODULES)},
                stdout=out, stderr=subprocess.STDOUT, preexec_fn=set_parent_death_signal)

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)


async def listening(port: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {port}"
            await asyncio.sleep(0.1)


@pytest.fixture
def processes() -> Iterator[list[ReceiverProcess]]:
    started: list[ReceiverProcess] = []
    yield started
    for process in started:
        process.stop()


@pytest.mark.parametrize("signing", ["hmac", "ed25519"])
async def test_three_languages_verify_the_same_webhooks_and_refuse_a_tampered_one(
        kafka_bootstrap: str, tmp_path: Path, go_receiver: Path, processes: list[ReceiverProcess], signing: str) -> None:
    """``hmac``: each receiver holds its endpoint's ``whsec_`` secret (``v1``). ``ed25519``: only
    its ``whpk_`` public key (``v1a``), and what the other key signs is refused."""
    settings = hook_settings(kafka_bootstrap)
    await ensure_topics(settings)
    commands = {
        "python": [sys.executable, str(RECEIVERS / "python" / "receiver.py")],
        "node": ["node", str(RECEIVERS / "node" / "receiver.cjs")],
        "go": [str(go_receiver)],
    }
    async with running_api(settings) as url, running_dispatcher(settings), Client(url, ACME_KEY) as client:
        secrets: dict[str, str] = {}
        for name, argv in commands.items():
            port = free_port()
            endpoint = await client.create_endpoint(f"http://127.0.0.1:{port}/hooks", signing=signing)
            held = endpoint["public_key"] if signing == "ed25519" else endpoint["secret"]
            # A signer the test holds: the endpoint's own secret; for ed25519, whose private key
            # never leaves jobwire, another key, whose signatures must be refused.
            secrets[name] = new_signing_key() if signing == "ed25519" else endpoint["secret"]
            processes.append(ReceiverProcess(name, argv, held, port, tmp_path / f"{name}.log"))
        for process in processes:
            await listening(process.port)
        job = await finish_a_job(client)

        deadline = time.monotonic() + 60
        while not all(any(line.endswith(" task.canceled") for line in p.lines()) for p in processes):
            assert time.monotonic() < deadline, {p.name: p.lines() for p in processes}
            await asyncio.sleep(0.1)
        for process in processes:
            assert [line.split()[0] for line in process.lines()] == ["verified"], (process.name, process.lines())

        # A body changed after signing, sent straight to each receiver: refused by all three.
        body = b'{"type": "task.completed", "timestamp": "2026-11-24T00:00:00.000Z", "data": {"id": "%s"}}' % (
            job["id"].encode())
        async with aiohttp.ClientSession() as http:
            for process in processes:
                headers = sign_headers("msg_tampered", body, [secrets[process.name]])
                tampered = body.replace(b"task.completed", b"task.canceled")
                async with http.post(f"http://127.0.0.1:{process.port}/hooks", data=tampered,
                                     headers={**headers, "content-type": "application/json"}) as response:
                    assert response.status == 400, process.name
                async with http.post(f"http://127.0.0.1:{process.port}/hooks", data=body,
                                     headers={**headers, "content-type": "application/json"}) as response:
                    # The untouched one verifies with the endpoint's secret; another ed25519
                    # key's signature is refused whatever the body.
                    assert response.status == (400 if signing == "ed25519" else 204), process.name
        for process in processes:
            deadline = time.monotonic() + 10
            while "rejected msg_tampered" not in process.lines():
                assert time.monotonic() < deadline, (process.name, process.lines())
                await asyncio.sleep(0.05)
