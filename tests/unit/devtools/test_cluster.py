"""The local cluster's layout, without starting Java: one quorum, distinct ports, the same
cluster id on every node, and a layout that survives a restart of the tooling."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobwire.devtools.cluster import LocalCluster
from jobwire.errors import BrokerError
from jobwire.topics import Replication, auto_replication


def test_nodes_form_one_quorum_with_distinct_ports(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "cache", tmp_path / "run", brokers=3)
    nodes = cluster.nodes
    assert [n.node_id for n in nodes] == [1, 2, 3]
    ports = [n.port for n in nodes] + [n.controller_port for n in nodes]
    assert len(set(ports)) == 6, "six distinct ports"
    assert len({n.voters for n in nodes}) == 1 and nodes[0].voters.count("@127.0.0.1:") == 3
    assert len({n.cluster_id for n in nodes}) == 1 and nodes[0].cluster_id
    assert {(n.replication_factor, n.min_insync_replicas) for n in nodes} == {(3, 2)}
    assert cluster.bootstrap == ",".join(f"127.0.0.1:{n.port}" for n in nodes)


def test_a_cluster_comes_back_as_itself(tmp_path: Path) -> None:
    first = LocalCluster(tmp_path / "cache", tmp_path / "run", brokers=3)
    again = LocalCluster(tmp_path / "cache", tmp_path / "run", brokers=3)
    assert [(n.port, n.controller_port, n.cluster_id) for n in again.nodes] == \
        [(n.port, n.controller_port, n.cluster_id) for n in first.nodes]
    with pytest.raises(BrokerError, match="holds a cluster of 3 brokers, not 5"):
        LocalCluster(tmp_path / "cache", tmp_path / "run", brokers=5)


def test_fixed_ports_are_consecutive(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "cache", tmp_path / "run", brokers=3, first_port=19092)
    assert [n.port for n in cluster.nodes] == [19092, 19093, 19094]
    assert cluster.running() == []


def test_internal_topics_replicate_once_there_are_three() -> None:
    assert [auto_replication(n) for n in (1, 2, 3, 5)] == [Replication(1, 1), Replication(2, 1), Replication(3, 2),
                                                          Replication(3, 2)]
