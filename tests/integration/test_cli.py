"""The jobwire command against the real broker, as a user would run it."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson

from jobwire.config import Settings


def jobwire(settings: Settings, *args: str, stdin: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
           "JOBWIRE_TOPIC_PREFIX": settings.topic_prefix, **(env or {})}
    return subprocess.run([sys.executable, "-m", "jobwire.cli", *args], input=stdin, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_topics_publish_and_tail(settings: Settings) -> None:
    created = jobwire(settings, "topics", "create")
    assert created.returncode == 0, created.stderr
    assert "jobs.events" in created.stdout
    assert "already exist" in jobwire(settings, "topics", "create").stdout

    flags = jobwire(settings, "publish", "--type", "job.created", "--job", "job_cli", "--tenant", "acme",
                    "--data", '{"operation": "ocr", "parameters": {}}')
    assert flags.returncode == 0, flags.stderr
    stdin_event = {"specversion": "1.0", "id": "evt_cli2", "type": "job.started", "source": "/t",
                   "subject": "job_cli", "time": "2026-11-23T10:00:00Z", "tenant": "acme", "data": {}}
    piped = jobwire(settings, "publish", stdin=orjson.dumps(stdin_event).decode())
    assert piped.returncode == 0, piped.stderr

    bad = jobwire(settings, "publish", "--type", "job.progress", "--job", "job_cli", "--tenant", "acme",
                  "--data", '{"total": 1}')
    assert bad.returncode == 2 and "/data/processed" in bad.stderr

    tailed = jobwire(settings, "tail", "--from-beginning", "--job", "job_cli", "--limit", "2")
    assert tailed.returncode == 0, tailed.stderr
    lines = tailed.stdout.splitlines()
    assert [orjson.loads(line.split(" ", 1)[1])["type"] for line in lines] == ["job.created", "job.started"]


def test_bad_configuration_is_named() -> None:
    result = subprocess.run([sys.executable, "-m", "jobwire.cli", "topics", "create"],
                            env={**os.environ, "JOBWIRE_PORT": "eighty"}, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "JOBWIRE_PORT: must be an integer" in result.stderr


async def test_secrets_rotate_moves_every_endpoint_secret_to_the_new_key(settings: Settings) -> None:
    from jobwire.kafka.admin import ensure_topics
    from jobwire.kafka.clients import make_producer
    from jobwire.kafka.writers import KeyedWriter
    from jobwire.timeutil import now_utc
    from jobwire.topics import Topics
    from jobwire.webhooks.model import Endpoint, SealedSecret
    from jobwire.webhooks.registry import EndpointWriter, read_registry
    from jobwire.webhooks.secretbox import SecretBox, binding

    old, new = "old-secret-key-0123456789", "new-secret-key-9876543210"
    await ensure_topics(settings)
    topic = Topics(settings.topic_prefix).endpoints
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        now = now_utc()
        for index in range(3):
            endpoint_id = f"ep_reseal{index}"
            sealed = SecretBox(old).seal(f"whsec_{index}", bound_to=binding("acme", endpoint_id))
            # The last one has custom headers and auth too: sealed, so resealed with the secrets.
            options = SecretBox(old).seal(f'{{"headers": {{"x-tenant": "t{index}"}}, "auth": null}}',
                                          bound_to=binding("acme", endpoint_id)) if index == 2 else None
            await EndpointWriter(KeyedWriter(producer, topic)).put(
                Endpoint(endpoint_id, "acme", "https://hooks.example/in", now, now, (SealedSecret(sealed),),
                         sealed_request=options, header_names=("x-tenant",) if options else None))
    finally:
        await producer.stop()

    done = jobwire(settings, "secrets", "rotate", env={"JOBWIRE_SECRET_KEYS": f"{new},{old}"})
    assert done.returncode == 0, done.stderr
    assert "resealed 3 of 3" in done.stdout
    again = jobwire(settings, "secrets", "rotate", env={"JOBWIRE_SECRET_KEYS": f"{new},{old}"})
    assert "resealed 0 of 3" in again.stdout, "nothing left to do"

    registry = await read_registry(settings.kafka, topic)
    only_new = SecretBox(new)
    assert {e.id: only_new.open(e.secrets[0].sealed, bound_to=binding("acme", e.id))
            for e in registry.endpoints.values()} == {f"ep_reseal{i}": f"whsec_{i}" for i in range(3)}
    with_options = registry.endpoints["ep_reseal2"]
    assert with_options.sealed_request is not None
    assert only_new.open(with_options.sealed_request, bound_to=binding("acme", "ep_reseal2")) == \
        '{"headers": {"x-tenant": "t2"}, "auth": null}'
    assert registry.endpoints["ep_reseal0"].sealed_request is None
