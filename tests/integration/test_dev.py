"""`jobwire dev` (what `make run` runs), as a user starts it: comes up, delivers a verified
webhook to its demo receiver, and leaves no process behind on SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from jobwire.devtools.broker import free_port, kafka_version, pid_alive
from tests.support.eventually import eventually_sync


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(proc.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


@pytest.mark.timeout(300)
def test_dev_stack_delivers_a_verified_webhook_and_stops_cleanly(kafka_broker: object, tmp_path: Path) -> None:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        pytest.skip("runs its own local broker")
    cached = Path(os.environ.get("JOBWIRE_KAFKA_CACHE") or Path.home() / ".cache" / "jobwire") / f"kafka-{kafka_version()}"
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / cached.name).symlink_to(cached)  # a clean cache that already holds the jars
    api_port = free_port()
    env = {**os.environ, "JOBWIRE_KAFKA_CACHE": str(cache), "JOBWIRE_PORT": str(api_port),
           "JOBWIRE_DATA_DIR": str(tmp_path / "data")}
    env.pop("JOBWIRE_API_KEYS", None)
    output = tmp_path / "dev.out"
    # The port next to the API's, where the demo receiver goes first, is taken (as it may be on
    # any machine): the stack must come up all the same.
    taken = socket.socket()
    with contextlib.suppress(OSError):  # already taken by someone else: the same case
        taken.bind(("127.0.0.1", api_port + 1))
        taken.listen()
    with open(output, "w") as out:
        dev = subprocess.Popen([sys.executable, "-m", "jobwire.cli", "dev", "--kafka-port", str(free_port())],
                               env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    family: set[int] = set()

    def running_and(pattern: str) -> re.Match[str] | None:
        assert dev.poll() is None, output.read_text()[-3000:]
        return re.search(pattern, output.read_text())

    try:
        # Endpoints get the events that end after they exist: wait for the receiver's registration.
        key = eventually_sync(lambda: running_and(r"API key\s+(\S+)(?s:.*)demo receiver listening"),
                              "the banner with the dev key, then the receiver registered", timeout_s=120).group(1)
        family = descendants(dev.pid)
        eventually_sync(lambda: running_and("webhook verified: webhook.test"),
                        "the demo receiver's own test event, verified", timeout_s=60)
        assert len(family) >= 5, "broker, api, dispatcher, worker and receiver are running"
        request = urllib.request.Request(
            f"http://127.0.0.1:{api_port}/v1/jobs", method="POST",
            data=json.dumps({"operation": "wordcount", "parameters": {"text": "hello dev"}}).encode(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            job_id = json.loads(response.read())["id"]
        eventually_sync(lambda: running_and(f"webhook verified: task.completed {job_id}"),
                        f"a verified task.completed webhook for {job_id}", timeout_s=60)
        # A newcomer's second terminal: no flags, no key in the environment; it finds the stack.
        demo = subprocess.run([sys.executable, "-m", "jobwire.cli", "demo"], env=env, capture_output=True, text=True,
                              timeout=150)
        assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
        if taken.getsockname()[1] == api_port + 1:
            assert f"port {api_port + 1} is taken; using a free one" in output.read_text()
        # A healthy start reads as one: the broker settling is no error.
        assert "level=ERROR" not in output.read_text()
    finally:
        taken.close()
        family |= descendants(dev.pid)
        dev.send_signal(signal.SIGTERM)
        dev.wait(60)
    eventually_sync(lambda: not [pid for pid in family if pid_alive(pid)], "every process of the stack gone",
                    timeout_s=10)
