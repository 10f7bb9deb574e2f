"""A real multi-node Kafka (KRaft) cluster on loopback, for development and the cluster tests.

Each node is a :class:`LocalKafka` that is broker and controller at once; together they form
one controller quorum (``controller.quorum.voters``), formatted with one cluster id. Kafka's
internal topics get replication factor 3 and ``min.insync.replicas`` 2 once there are three
nodes, so the cluster keeps serving, consumer groups included, with any one node down. Ports
and the cluster id are remembered in ``run_dir/cluster.json``, so a node restarts as itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from jobwire.devtools.broker import LocalKafka, ensure_jars, free_port, new_cluster_id, require_java
from jobwire.errors import BrokerError
from jobwire.topics import auto_replication

log = logging.getLogger(__name__)

#: Small heaps, so three nodes and the services fit a 2-core development machine.
NODE_HEAP = "512m"


@dataclass(frozen=True, slots=True)
class ClusterLayout:
    """What a cluster's nodes must keep across restarts."""

    cluster_id: str
    ports: list[int]
    controller_ports: list[int]


@dataclass
class LocalCluster:
    """``brokers`` nodes: ``start()``, ``stop()``, ``kill(node_id)``, ``restart(node_id)`` and
    ``bootstrap`` for clients. ``first_port`` 0 takes free ports; N gives nodes N, N+1, ..."""

    cache_dir: Path
    run_dir: Path
    brokers: int = 3
    first_port: int = 0
    heap: str = NODE_HEAP
    nodes: list[LocalKafka] = field(init=False)

    def __post_init__(self) -> None:
        if self.brokers < 1:
            raise BrokerError("a cluster needs at least one broker")
        layout = self._layout()
        voters = ",".join(f"{i + 1}@127.0.0.1:{port}" for i, port in enumerate(layout.controller_ports))
        replication = auto_replication(self.brokers)
        self.nodes = [
            LocalKafka(self.cache_dir, self.run_dir / f"node-{i + 1}", port=port, heap=self.heap, node_id=i + 1,
                       controller_port=layout.controller_ports[i], voters=voters, cluster_id=layout.cluster_id,
                       replication_factor=replication.factor, min_insync_replicas=replication.min_insync)
            for i, port in enumerate(layout.ports)
        ]

    def _layout(self) -> ClusterLayout:
        path = self.run_dir / "cluster.json"
        if path.exists():
            layout = ClusterLayout(**json.loads(path.read_text()))
            if len(layout.ports) != self.brokers:
                raise BrokerError(f"{self.run_dir} holds a cluster of {len(layout.ports)} brokers, not "
                                  f"{self.brokers}; stop it and remove the directory, or use the same --brokers")
            return layout
        ports = ([self.first_port + i for i in range(self.brokers)] if self.first_port
                 else _distinct_free_ports(self.brokers))
        layout = ClusterLayout(new_cluster_id(), ports, _distinct_free_ports(self.brokers, avoid=set(ports)))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dataclasses.asdict(layout)))
        return layout

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    def node(self, node_id: int) -> LocalKafka:
        return self.nodes[node_id - 1]

    def start(self, *, timeout_s: float = 180.0, die_with_parent: bool = True) -> None:
        """Start every node at once (a quorum needs a majority to elect a controller) and wait
        until each answers a metadata request naming all of them."""
        require_java()
        ensure_jars(self.cache_dir)  # once, before the nodes race to fetch them
        started_at = time.monotonic()
        try:
            launched = [node for node in self.nodes if node.pid is None]
            for node in launched:
                node.launch(die_with_parent=die_with_parent)
            for node in launched:
                node.wait_ready(started_at, timeout_s, brokers=self.brokers)
        except BaseException:
            self.stop()
            raise
        log.info("kafka cluster ready bootstrap=%s brokers=%s start_s=%.1f",
                 self.bootstrap, self.brokers, time.monotonic() - started_at)

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM to every node at once (one by one, the last ones would wait for a quorum
        that is already gone), then SIGKILL what is left after ``timeout_s``."""
        for node in self.nodes:
            if (pid := node.pid) is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for node in self.nodes:
            node.stop(max(0.1, deadline - time.monotonic()))

    def kill(self, node_id: int) -> None:
        """SIGKILL one node, as a crash would; its data stays for :meth:`restart`."""
        self.node(node_id).kill()

    def restart(self, node_id: int, *, timeout_s: float = 120.0) -> None:
        node = self.node(node_id)
        node.start(timeout_s=timeout_s)

    def running(self) -> list[int]:
        return [node.node_id for node in self.nodes if node.pid is not None]


def _distinct_free_ports(count: int, avoid: set[int] | None = None) -> list[int]:
    ports: list[int] = []
    taken = set(avoid or ())
    while len(ports) < count:
        port = free_port()
        if port not in taken:
            taken.add(port)
            ports.append(port)
    return ports
