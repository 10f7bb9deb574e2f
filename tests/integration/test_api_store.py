"""The API's store on disk, against the real broker: a restart resumes without replay, a SIGKILL
in the middle of a batch loses and double-applies nothing, and two replicas hold equal stores.
What a SIGKILL loses: nothing (the store equals a fresh rebuild's, asserted)."""

from __future__ import annotations

import ast
import asyncio
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from jobwire.api.app import kafka_components
from jobwire.config import load_settings
from jobwire.devtools.broker import free_port
from jobwire.kafka.admin import ensure_topics
from jobwire.topics import Topics
from tests.conftest import another_replica, env_for, settings_for
from tests.support.stores import caught_up, log_ends, publish_histories, ready, store_digest, stored_offsets

KEY = "key_acme_0123456789"


async def test_a_restart_resumes_without_replay(kafka_bootstrap: str) -> None:
    settings = settings_for(kafka_bootstrap, JOBWIRE_RETENTION_DAYS="0")
    await ensure_topics(settings)
    first = await publish_histories(settings, 0, 300)
    async with kafka_components(settings) as parts:
        await ready(parts)
        assert parts.projection.records_read == first
        jobs = parts.projection.count()
    digest = store_digest(settings.data_dir)
    async with kafka_components(settings) as parts:
        await ready(parts)
        assert parts.projection.records_read == 0, "a restart with nothing new reads nothing"
        assert parts.projection.count() == jobs
    assert store_digest(settings.data_dir) == digest
    more = await publish_histories(settings, 300, 20)
    async with kafka_components(settings) as parts:
        await ready(parts)
        assert parts.projection.records_read == more, "only the records written while it was down"
        assert parts.projection.count() == jobs + 20
        assert parts.projection.get("acme", "job_s000301") is not None


async def test_two_replicas_hold_equal_stores(kafka_bootstrap: str) -> None:
    settings = settings_for(kafka_bootstrap, JOBWIRE_RETENTION_DAYS="0")
    other = another_replica(settings)
    await ensure_topics(settings)
    await publish_histories(settings, 0, 200)
    async with kafka_components(settings) as a, kafka_components(other) as b:
        await publish_histories(settings, 200, 200)  # while both are reading
        ends = await log_ends(settings)
        await caught_up(a, ends)
        await caught_up(b, ends)
        assert a.projection.count() == b.projection.count() == 400
    assert store_digest(settings.data_dir) == store_digest(other.data_dir)


def start_api(env: dict[str, str], log_file: Path) -> subprocess.Popen[bytes]:
    with open(log_file, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "jobwire.cli", "api"], env={**os.environ, **env},
                                stdout=out, stderr=subprocess.STDOUT)


async def until(condition, timeout_s: float, what: str, log_file: Path) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}; its log ends: {log_file.read_text()[-3000:]}"
        await asyncio.sleep(0.01)


def is_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def resumed_from(log_file: Path) -> dict[int, int]:
    """The offsets the last start resumed from, as its "projection catching up" line says."""
    lines = re.findall(r"projection catching up .* from=(\{[^}]*\}) to=", log_file.read_text())
    return ast.literal_eval(lines[-1])


@pytest.mark.timeout(600)
async def test_sigkill_in_the_middle_of_a_batch_loses_and_doubles_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = env_for(kafka_bootstrap, JOBWIRE_API_KEYS=f"acme:{KEY}", JOBWIRE_RETENTION_DAYS="0",
                  JOBWIRE_PORT=str(free_port()), JOBWIRE_LOG_LEVEL="INFO")
    settings = load_settings(env)
    topic = Topics(settings.topic_prefix).events
    await ensure_topics(settings)
    port = int(env["JOBWIRE_PORT"])
    log_file = tmp_path / "api.log"
    total, kills = 0, []
    for round_ in range(2):  # bounded: two rounds of new records, a kill in the middle of each catch-up
        total += await publish_histories(settings, round_ * 6000, 6000)
        api = start_api(env, log_file)
        try:
            before = sum(stored_offsets(settings.data_dir, topic).values())
            # Kill as soon as it has committed more than it started with: mid catch-up.
            await until(lambda: sum(stored_offsets(settings.data_dir, topic).values()) > before or api.poll() is not None,
                        120, "the store to commit a batch", log_file)
            api.send_signal(signal.SIGKILL)
            api.wait(30)
        finally:
            if api.poll() is None:
                api.kill()
        at_kill = stored_offsets(settings.data_dir, topic)
        kills.append(sum(at_kill.values()))
        assert before < kills[-1] < total, f"round {round_}: the kill landed mid catch-up ({kills[-1]} of {total} records)"
        api = start_api(env, log_file)
        try:
            await until(lambda: is_ready(port) or api.poll() is not None, 180, "the restarted api to be ready", log_file)
            assert api.poll() is None, log_file.read_text()[-3000:]
            resumed = resumed_from(log_file)
            assert resumed == {p: at_kill.get(p, 0) for p in resumed}, "resumed from the offsets committed with the rows"
        finally:
            api.send_signal(signal.SIGTERM)
            api.wait(60)
    fresh = another_replica(settings)
    async with kafka_components(fresh) as parts:
        await ready(parts)
        assert parts.projection.records_read == total
    assert store_digest(settings.data_dir) == store_digest(fresh.data_dir), \
        f"the killed store differs from a fresh rebuild (killed at {kills} of {total} records)"
