"""`jobwire dev` (what `make run` runs), as a user starts it: comes up, delivers a verified
webhook to its demo receiver, and leaves no process behind on SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from jobwire.devtools.broker import free_port, kafka_version, pid_alive


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
    with open(tmp_path / "dev.out", "w") as out:
        dev = subprocess.Popen([sys.executable, "-m", "jobwire.cli", "dev", "--kafka-port", str(free_port())],
                               env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    family: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        key = None
        while time.monotonic() < deadline:
            assert dev.poll() is None, (tmp_path / "dev.out").read_text()[-3000:]
            text = (tmp_path / "dev.out").read_text()
            found = re.search(r"API key\s+(\S+)", text)
            # Endpoints get the events that end after they exist: wait for the receiver's.
            if found and "demo receiver listening" in text:
                key = found.group(1)
                break
            time.sleep(0.2)
        assert key, "the banner with the dev key was printed and the receiver registered"
        family = descendants(dev.pid)
        while "webhook verified: webhook.test" not in (tmp_path / "dev.out").read_text():
            assert time.monotonic() < deadline, "the demo receiver's own test event arrived, verified"
            time.sleep(0.2)
        assert len(family) >= 5, "broker, api, dispatcher, worker and receiver are running"
        request = urllib.request.Request(
            f"http://127.0.0.1:{api_port}/v1/jobs", method="POST",
            data=json.dumps({"operation": "wordcount", "parameters": {"text": "hello dev"}}).encode(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            job_id = json.loads(response.read())["id"]
        while time.monotonic() < deadline:
            if f"webhook verified: task.completed {job_id}" in (tmp_path / "dev.out").read_text():
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"no verified webhook for {job_id} by {time.monotonic() - deadline + 120:.0f}s: " + (tmp_path / "dev.out").read_text()[-1500:])
        # A newcomer's second terminal: no flags, no key in the environment; it finds the stack.
        demo = subprocess.run([sys.executable, "-m", "jobwire.cli", "demo"], env=env, capture_output=True, text=True,
                              timeout=150)
        assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
        # A healthy start reads as one: the broker settling is no error.
        assert "level=ERROR" not in (tmp_path / "dev.out").read_text()
    finally:
        family |= descendants(dev.pid)
        dev.send_signal(signal.SIGTERM)
        dev.wait(60)
    time.sleep(1)
    assert [pid for pid in family if pid_alive(pid)] == [], "SIGTERM left processes behind"
