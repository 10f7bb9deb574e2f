"""One real Kafka broker for the whole test session (unless KAFKA_BOOTSTRAP_SERVERS is set).

The broker is started lazily by the first test that needs it, so `pytest tests/unit` never
starts Java. It is stopped when the session ends, also when tests fail; if pytest itself is
killed, the broker gets SIGKILL from the kernel (PR_SET_PDEATHSIG), so no java is orphaned.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobwire.config import Settings, load_settings
from jobwire.devtools.broker import LocalKafka, free_port
from jobwire.errors import BrokerError

pytest_plugins = ["pytester"]


def _cache_dir() -> Path:
    return Path(os.environ.get("JOBWIRE_KAFKA_CACHE") or Path.home() / ".cache" / "jobwire")


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka | None]:
    """The session's local broker, or None when an external cluster is configured."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield None
        return
    broker = LocalKafka(_cache_dir(), tmp_path_factory.mktemp("kafka"), port=free_port())
    try:
        broker.start()
    except BrokerError as first:
        # Once more on fresh ports and a fresh data dir (a port can be taken between choosing
        # it and binding it); the first failure's log tail stays in the report.
        print(f"local broker failed to start, retrying once: {first}", file=sys.stderr)
        broker = LocalKafka(_cache_dir(), tmp_path_factory.mktemp("kafka-retry"), port=free_port())
        broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: LocalKafka | None) -> str:
    return kafka_broker.bootstrap if kafka_broker else os.environ["KAFKA_BOOTSTRAP_SERVERS"]


_DATA_ROOT = tempfile.mkdtemp(prefix="jobwire-test-data-")
atexit.register(shutil.rmtree, _DATA_ROOT, ignore_errors=True)


def env_for(bootstrap: str, **env: str) -> dict[str, str]:
    """Environment for a test's processes, with a topic prefix and an API data dir of its own."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "JOBWIRE_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:10]}.",
        "JOBWIRE_EVENTS_PARTITIONS": "3",
        "JOBWIRE_DATA_DIR": tempfile.mkdtemp(dir=_DATA_ROOT),
        # Tests send traffic no client would; the tests of the rate limit set their own.
        "JOBWIRE_RATE_LIMIT_PER_S": "0",
        **env,
    }


def another_replica(settings: Settings) -> Settings:
    """The same settings with a data dir of its own: a second API replica on the same topics."""
    return dataclasses.replace(settings, data_dir=Path(tempfile.mkdtemp(dir=_DATA_ROOT)))


def settings_for(bootstrap: str, **env: str) -> Settings:
    """Settings with a topic prefix of their own, so tests never see each other's records."""
    return load_settings(env_for(bootstrap, **env))


@pytest.fixture
def settings(kafka_bootstrap: str) -> Settings:
    return settings_for(kafka_bootstrap)
