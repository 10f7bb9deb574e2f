"""The broker a benchmark runs against: KAFKA_BOOTSTRAP_SERVERS if set, else a fresh local one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from jobwire.devtools.broker import LocalKafka, free_port


def cache_dir() -> Path:
    return Path(os.environ.get("JOBWIRE_KAFKA_CACHE") or Path.home() / ".cache" / "jobwire")


_started: LocalKafka | None = None


@contextlib.contextmanager
def bench_broker() -> Iterator[str]:
    """Yields a bootstrap address; a broker started here is stopped on the way out."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    global _started
    broker = LocalKafka(cache_dir(), Path(tempfile.mkdtemp(prefix="jobwire-bench-")), port=free_port())
    broker.start()
    _started = broker
    try:
        yield broker.bootstrap
    finally:
        _started = None
        broker.stop()


def bench_broker_pid() -> int | None:
    """The process id of the broker ``bench_broker`` started (None for an external one)."""
    if _started is None:
        return None
    return int(_started.pid_file.read_text().split()[0])
