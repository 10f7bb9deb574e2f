"""``jobwire dev``: the whole stack on one machine, as one supervised process tree.

Starts the local broker (unless ``KAFKA_BOOTSTRAP_SERVERS`` names a cluster), creates the
topics, then runs each service as a child process. If a child dies the supervisor says which
and with what exit code, and stops the rest; Ctrl-C or SIGTERM stops everything, broker last.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass

from jobwire.config import Settings
from jobwire.devkafka import LocalKafka, terminate
from jobwire.log import ensure_topics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    argv: list[str]


def services(settings: Settings) -> list[Service]:
    jobwire = [sys.executable, "-m", "jobwire.cli"]
    return [Service("tail", [*jobwire, "tail", "--from-beginning"])]


def run_dev(settings: Settings, *, kafka_port: int) -> int:
    broker = None
    env = dict(os.environ)
    if not settings.kafka.external:
        broker = LocalKafka(settings.kafka_cache_dir, settings.kafka_cache_dir / f"run-{kafka_port}", port=kafka_port)
        started = time.monotonic()
        broker.start(die_with_parent=True)
        print(f"Kafka ready at {broker.bootstrap} in {time.monotonic() - started:.1f}s (log: {broker.log_file})", flush=True)
        env["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap
    children: list[tuple[Service, subprocess.Popen[bytes]]] = []
    try:
        from jobwire.config import load_settings

        asyncio.run(ensure_topics(load_settings(env)))
        for service in services(settings):
            children.append((service, subprocess.Popen(service.argv, env=env)))
            log.info("service started name=%s pid=%s", service.name, children[-1][1].pid)
        while True:
            for service, process in children:
                code = process.poll()
                if code is not None:
                    print(f"jobwire dev: {service.name} exited with code {code}; stopping the rest", file=sys.stderr)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\njobwire dev: stopping ...", file=sys.stderr, flush=True)
        return 0
    finally:
        for _, process in reversed(children):
            if process.poll() is None:
                terminate(process.pid, 15.0, process)
        if broker is not None:
            broker.stop()
