"""A real 3-node KRaft cluster for the session (`make test-cluster`): the tests kill and
restart its brokers, so it is always a local one, never KAFKA_BOOTSTRAP_SERVERS's."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobwire.devtools.cluster import LocalCluster
from jobwire.errors import BrokerError
from tests.support.eventually import eventually_sync


def _cache_dir() -> Path:
    return Path(os.environ.get("JOBWIRE_KAFKA_CACHE") or Path.home() / ".cache" / "jobwire")


@pytest.fixture(scope="session")
def cluster_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(_cache_dir(), tmp_path_factory.mktemp("cluster"), brokers=3)
    try:
        cluster.start()
    except BrokerError as first:  # a port can be taken between choosing it and binding it
        print(f"local cluster failed to start, retrying once: {first}", file=sys.stderr)
        cluster = LocalCluster(_cache_dir(), tmp_path_factory.mktemp("cluster-retry"), brokers=3)
        cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def kafka_cluster(cluster_session: LocalCluster) -> LocalCluster:
    """The session's cluster with all three nodes running (a test that killed one and failed
    before restarting it leaves it down)."""
    for node_id in {1, 2, 3} - set(cluster_session.running()):
        cluster_session.restart(node_id)
    eventually_sync(lambda: cluster_session.running() == [1, 2, 3], "all three nodes running", timeout_s=60)
    return cluster_session
