"""A real Apache Kafka (KRaft) node for development and tests: alone, a single-node cluster;
three of them make a cluster that survives losing one (``devtools/cluster.py``).

The broker jars come from Maven Central through ``deploy/kafka/pom.xml``, fetched once into a
cache outside the repository (``~/.cache/jobwire/kafka-<version>/lib`` by default). The broker
binds to 127.0.0.1 only. Nothing here is used when ``KAFKA_BOOTSTRAP_SERVERS`` names a cluster.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from jobwire.devtools.maven import fetch_jars
from jobwire.errors import BrokerError

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def recipe_dir() -> Path:
    """pom.xml, server.properties and log4j2.xml: in the wheel, or in the source checkout."""
    packaged = Path(__file__).parent.parent / "kafka_recipe"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[3] / "deploy" / "kafka"


def kafka_version(recipe: Path | None = None) -> str:
    pom = ((recipe or recipe_dir()) / "pom.xml").read_text()
    found = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    if not found:
        raise BrokerError("deploy/kafka/pom.xml does not set <kafka.version>")
    return found.group(1)


def ensure_jars(cache_dir: Path, *, quiet: bool = False) -> Path:
    """The folder of broker jars, fetching them with Maven the first time (locked, resumable)."""
    recipe = recipe_dir()
    version = kafka_version(recipe)
    return fetch_jars(recipe, cache_dir / f"kafka-{version}" / "lib", f"Apache Kafka {version}", BrokerError,
                      quiet=quiet)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_taken(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def set_parent_death_signal() -> None:
    """In the child before exec: get SIGKILL when the parent dies, so no broker is orphaned.

    "Parent" is the thread that started the child: start brokers from a thread that lives as
    long as they should (not from ``asyncio.to_thread``, whose worker thread ends with its pool).
    """
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class LocalKafka:
    """One node, broker and controller in one process: ``start()``, ``stop()``, and
    ``bootstrap`` for clients.

    ``run_dir`` holds ``data/``, ``logs/``, ``server.properties`` and ``broker.pid``; reusing it
    keeps topics across restarts (the tests restart a broker mid-run that way). Alone, it is
    its own controller quorum; in a cluster, ``voters`` names every node's controller and the
    cluster gives each node the same ``cluster_id`` and its ``controller_port``.
    """

    cache_dir: Path
    run_dir: Path
    port: int = 9092
    heap: str = "1g"
    node_id: int = 1
    controller_port: int = 0  # 0: a free port, remembered in run_dir for restarts
    voters: str = ""  # controller.quorum.voters; empty: this node alone
    cluster_id: str = ""  # empty: a new one when the data dir is formatted
    #: Replication of Kafka's internal topics (consumer offsets, transactions).
    replication_factor: int = 1
    min_insync_replicas: int = 1

    def __post_init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "logs" / "server.log"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "broker.pid"

    def log_tail(self, lines: int = 25) -> str:
        chunks = []
        for path in (self.log_file, self.run_dir / "logs" / "stdout.log"):
            if path.exists():
                chunks.extend(path.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(chunks[-lines:])

    def _configure(self) -> Path:
        data = self.run_dir / "data"
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        data.mkdir(parents=True, exist_ok=True)
        controller_port = self.controller_port or self._remembered_controller_port()
        values = {
            "node_id": str(self.node_id),
            "voters": self.voters or f"{self.node_id}@127.0.0.1:{controller_port}",
            "port": str(self.port),
            "controller_port": str(controller_port),
            "data_dir": str(data),
            "replication_factor": str(self.replication_factor),
            "min_insync_replicas": str(self.min_insync_replicas),
        }
        config = re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], (recipe_dir() / "server.properties").read_text())
        path = self.run_dir / "server.properties"
        path.write_text(config)
        return path

    def _remembered_controller_port(self) -> int:
        controller_file = self.run_dir / "controller.port"
        if controller_file.exists():
            return int(controller_file.read_text())
        port = free_port()
        controller_file.write_text(str(port))
        return port

    def _java(self, lib: Path, *args: str) -> list[str]:
        return [
            "java", f"-Xmx{self.heap}", "-Xms256m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={recipe_dir() / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={self.run_dir / 'logs'}",
            "-cp", f"{lib}/*", *args,
        ]

    def start(self, *, timeout_s: float = 90.0, die_with_parent: bool = True) -> None:
        """Fetch jars if needed, format once, start, and wait until a metadata request answers."""
        started_at = time.monotonic()
        self.launch(die_with_parent=die_with_parent)
        self.wait_ready(started_at, timeout_s)

    def launch(self, *, die_with_parent: bool = True) -> None:
        """Fetch jars if needed, format once, and start the process without waiting for it."""
        require_java()
        if port_taken(self.port):
            raise BrokerError(
                f"port {self.port} on 127.0.0.1 is taken; stop what uses it, or choose another port "
                "(jobwire kafka start --port N, or set KAFKA_BOOTSTRAP_SERVERS to use a running cluster)"
            )
        lib = ensure_jars(self.cache_dir)
        properties = self._configure()
        if not (self.run_dir / "data" / "meta.properties").exists():
            cluster_id = self.cluster_id or new_cluster_id()
            formatted = subprocess.run(
                # "--cluster-id=": a base64url id starts with "-" one time in 64, and the tool's
                # argument parser would read it as an option.
                self._java(lib, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c",
                           str(properties)),
                capture_output=True, text=True, check=False,
            )
            if formatted.returncode != 0:
                raise BrokerError(f"formatting the KRaft data dir failed: {formatted.stderr.strip()[-1500:]}")
        stdout = open(self.run_dir / "logs" / "stdout.log", "ab")
        self._process = subprocess.Popen(
            self._java(lib, "kafka.Kafka", str(properties)),
            stdout=stdout, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=set_parent_death_signal if die_with_parent else None,
            # Its own session: a terminal's Ctrl-C reaches the supervisor only, which stops the
            # broker last, after the services that still need it.
            start_new_session=True,
        )
        stdout.close()
        self.pid_file.write_text(f"{self._process.pid} {self.port}\n")

    def wait_ready(self, started_at: float, timeout_s: float, *, brokers: int = 1) -> None:
        """Wait until this node answers a metadata request naming ``brokers`` live brokers."""
        from jobwire.kafka.admin import answers_metadata  # late: `jobwire kafka` should start fast

        assert self._process is not None, "launch() first"
        while time.monotonic() - started_at < timeout_s:
            code = self._process.poll()
            if code is not None:
                raise BrokerError(f"the Kafka broker exited with code {code} while starting; its log ends:\n{self.log_tail()}")
            if answers_metadata(self.bootstrap, timeout_s=2.0, brokers=brokers):
                log.info("kafka broker ready bootstrap=%s node=%s pid=%s start_s=%.1f",
                         self.bootstrap, self.node_id, self._process.pid, time.monotonic() - started_at)
                return
            time.sleep(0.25)
        self.stop()
        raise BrokerError(f"the Kafka broker did not answer within {timeout_s:.0f}s; its log ends:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (a controlled shutdown), then SIGKILL if it has not exited in ``timeout_s``."""
        pid = self._process.pid if self._process else read_pid(self.pid_file)
        if pid is not None:
            terminate(pid, timeout_s, self._process)
        self._process = None
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL, as a crash would; the data dir stays for a restart."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None
        self.pid_file.unlink(missing_ok=True)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else read_pid(self.pid_file)


def require_java() -> None:
    if shutil.which("java") is None:
        raise BrokerError("Java 17+ is needed to run the local Kafka broker: `java` is not on PATH")


def new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def read_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is not running.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def terminate(pid: int, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return
        if process is None and not pid_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if process is not None:
        process.wait()
