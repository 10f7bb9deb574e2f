"""``jobwire dev``: the whole stack on one machine, as one supervised process tree.

Starts the local broker (unless ``KAFKA_BOOTSTRAP_SERVERS`` names a cluster), creates the
topics, then runs each service as a child process. If a child dies the supervisor says which
and with what exit code, and stops the rest; Ctrl-C or SIGTERM stops everything, broker last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import orjson

from jobwire.config import DEV_TENANT, Settings
from jobwire.devtools.broker import LocalKafka, set_parent_death_signal, terminate
from jobwire.kafka.admin import ensure_topics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    argv: list[str]


def services() -> list[Service]:
    jobwire = [sys.executable, "-m", "jobwire.cli"]
    return [
        Service("api", [*jobwire, "api"]),
        Service("dispatcher", [*jobwire, "dispatcher"]),
        Service("worker", [*jobwire, "worker", "--demo"]),
    ]


def after_ready(url: str) -> list[Service]:
    """Started once the API answers: the demo receiver registers itself through it."""
    jobwire = [sys.executable, "-m", "jobwire.cli"]
    port = int(url.rsplit(":", 1)[1]) + 1  # next to the API's port
    return [Service("receiver", [*jobwire, "receiver", "--api", url, "--port", str(port)])]


#: Where ``jobwire dev`` tells the other commands (demo, submit, receiver) its URL and API key.
STACK_FILE = "dev-stack.json"


@dataclass(frozen=True, slots=True)
class RunningStack:
    url: str
    api_key: str


def stack_file(settings: Settings) -> Path:
    return settings.data_dir / STACK_FILE


def write_stack(settings: Settings, stack: RunningStack) -> Path:
    """Readable by this user only: it holds an API key."""
    path = stack_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(orjson.dumps({"url": stack.url, "api_key": stack.api_key, "pid": os.getpid()}))
    return path


def running_stack(settings: Settings) -> RunningStack | None:
    """The dev stack ``jobwire dev`` runs on this machine, if its file is there and its
    supervisor still alive."""
    try:
        found = orjson.loads(stack_file(settings).read_bytes())
        os.kill(int(found["pid"]), 0)
        return RunningStack(str(found["url"]), str(found["api_key"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def dev_environment(base: dict[str, str]) -> dict[str, str]:
    """Dev mode for every child, with one API key and secret key shared by all of them."""
    env = {**base, "JOBWIRE_DEV": "1"}
    if not env.get("JOBWIRE_API_KEYS"):
        env["JOBWIRE_API_KEYS"] = f"{DEV_TENANT}:dev_{secrets.token_urlsafe(18)}"
    if not env.get("JOBWIRE_SECRET_KEY"):
        env["JOBWIRE_SECRET_KEY"] = secrets.token_urlsafe(32)
    env.setdefault("JOBWIRE_ALLOWED_TARGETS", "127.0.0.1/32,::1/128")
    return env


def spawn(service: Service, env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Its own session: a terminal's Ctrl-C reaches only the supervisor, which stops children
    # in order; PR_SET_PDEATHSIG still ends the child if the supervisor dies.
    process = subprocess.Popen(service.argv, env=env, start_new_session=True, preexec_fn=set_parent_death_signal)
    log.info("service started name=%s pid=%s", service.name, process.pid)
    return process


def wait_ready(url: str, timeout_s: float, children: list[tuple[Service, subprocess.Popen[bytes]]]) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(process.poll() is not None for _, process in children):
            return False
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def banner(url: str, key: str, ready_s: float) -> str:
    auth = f"Authorization: Bearer {key}"
    return f"""
jobwire is running (ready in {ready_s:.1f} s).
  API        {url}   (docs: {url}/docs)
  portal     {url}/portal   (webhook endpoints and deliveries)
  API key    {key}   (tenant '{DEV_TENANT}')

Try it:
  curl -s -X POST {url}/v1/jobs -H '{auth}' -H 'Content-Type: application/json' \\
       -H 'Prefer: wait=10' -d '{{"operation": "wordcount", "parameters": {{"text": "to be or not to be"}}}}'
  curl -s '{url}/v1/jobs?limit=5' -H '{auth}'
  curl -s {url}/v1/jobs/<job id>/events -H '{auth}'
  .venv/bin/jobwire demo      (in another terminal: a few jobs, live, with their webhooks)

The seed APIs' dialects, over the same jobs (docs/seed-apis.md):
  curl -s -X POST {url}/compat/pulse/extract -H 'X-API-Key: {key}' -H 'Content-Type: application/json' \
       -d '{{"file_url": "https://example.com/a.pdf"}}'
  also {url}/compat/syncfusion/..., /compat/docurift/..., /compat/scandocs/..., /compat/knowhere/...

Files: a Knowhere job that waits for its upload, then the file PUT to the URL it gives:
  curl -s -X POST {url}/compat/knowhere/v1/jobs -H '{auth}' -H 'Content-Type: application/json' \
       -d '{{"source_type": "file", "file_name": "a.pdf", "content_type": "application/pdf"}}'
  curl -s -X PUT '<upload_url>' -H 'Content-Type: application/pdf' --data-binary @a.pdf
  curl -s -X POST '{url}/v1/files?filename=a.pdf' -H '{auth}' --data-binary @a.pdf   (then "input": {{"file_id": ...}})

The demo receiver (API port + 1, or a free one) verifies every webhook with svix and prints it here.
Ctrl-C stops everything.
"""


def run_dev(settings: Settings, *, kafka_port: int) -> int:
    broker = None
    started = time.monotonic()
    env = dev_environment(dict(os.environ))
    if not settings.kafka.external:
        broker = LocalKafka(settings.kafka_cache_dir, settings.kafka_cache_dir / f"run-{kafka_port}", port=kafka_port)
        broker.start(die_with_parent=True)
        print(f"Kafka ready at {broker.bootstrap} in {time.monotonic() - started:.1f}s (log: {broker.log_file})", flush=True)
        env["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap
    children: list[tuple[Service, subprocess.Popen[bytes]]] = []
    written: Path | None = None
    try:
        from jobwire.config import load_settings

        child_settings = load_settings(env)
        asyncio.run(ensure_topics(child_settings))
        for service in services():
            children.append((service, spawn(service, env)))
        url = f"http://{child_settings.host}:{child_settings.port}"
        if wait_ready(url, 60, children):
            for service in after_ready(url):
                children.append((service, spawn(service, env)))
            written = write_stack(child_settings, RunningStack(url, child_settings.api_keys[0][1]))
            print(banner(url, child_settings.api_keys[0][1], time.monotonic() - started), flush=True)
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
        if written is not None:
            with contextlib.suppress(OSError):
                written.unlink(missing_ok=True)
        for _, process in reversed(children):
            if process.poll() is None:
                terminate(process.pid, 15.0, process)
        if broker is not None:
            broker.stop()
