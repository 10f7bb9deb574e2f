"""API speed and memory, each as a ratio against a ceiling measured in the same run.

    apt-get install wrk   # the load generator, same for every target
    .venv/bin/python bench/api.py [--seconds 10] [--events 1000000] [--jobs 200000]

- GET /v1/jobs/{id} requests/s vs a bare Starlette route returning the same JSON from a dict,
  same uvicorn settings (one process each), same wrk settings.
- POST /v1/jobs accepted/s (each one written to Kafka with acks=all and visible in the
  projection before the 202).
- Projection rebuild rate from the log, and resident memory per finished job.

Starts its own broker unless KAFKA_BOOTSTRAP_SERVERS is set. Not part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import orjson

from _broker import bench_broker

from jobwire.config import load_settings
from jobwire.devkafka import free_port
from jobwire.events import new_event
from jobwire.log import LogReader, ensure_topics, make_producer
from jobwire.projection import Projection
from jobwire.topics import Topics

KEY = "key_bench_0123456789"
BARE_APP = '''
import orjson
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
TASK = orjson.loads(open({path!r}, "rb").read())
async def get(request):
    return Response(orjson.dumps(TASK), media_type="application/json")
app = Starlette(routes=[Route("/v1/jobs/{{job_id}}", get)])
'''
POST_SCRIPT = '''
wrk.method = "POST"
wrk.body = '{"operation": "bench", "parameters": {"n": 1}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
'''


def wrk(url: str, seconds: int, connections: int, *extra: str) -> tuple[float, int]:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", *extra, url],
                         capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rate, int(bad.group(1)) if bad else 0


def wait_http(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def serve(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def http_figures(bootstrap: str, seconds: int) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "JOBWIRE_API_KEYS": f"bench:{KEY}",
           "JOBWIRE_TOPIC_PREFIX": f"bench{uuid.uuid4().hex[:6]}.", "JOBWIRE_LOG_LEVEL": "WARNING"}
    asyncio.run(ensure_topics(load_settings(env)))
    api_port, bare_port = free_port(), free_port()
    api = serve([sys.executable, "-m", "jobwire.cli", "api", "--port", str(api_port)], env)
    bare_dir = tempfile.mkdtemp()
    try:
        wait_http(f"http://127.0.0.1:{api_port}/healthz")
        request = urllib.request.Request(
            f"http://127.0.0.1:{api_port}/v1/jobs", method="POST",
            data=b'{"operation": "bench", "parameters": {"n": 1}}',
            headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request) as response:
            task = orjson.loads(response.read())
        Path(bare_dir, "task.json").write_bytes(orjson.dumps(task))
        Path(bare_dir, "bare.py").write_text(BARE_APP.format(path=str(Path(bare_dir, "task.json"))))
        bare = serve([sys.executable, "-m", "uvicorn", "--app-dir", bare_dir, "bare:app", "--port", str(bare_port),
                      "--no-access-log", "--log-level", "warning"], env)
        try:
            wait_http(f"http://127.0.0.1:{bare_port}/v1/jobs/{task['id']}")
            auth = ["-H", f"Authorization: Bearer {KEY}"]
            wrk(f"http://127.0.0.1:{api_port}/v1/jobs/{task['id']}", 2, 32, *auth)  # warm-up
            ours, ours_bad = wrk(f"http://127.0.0.1:{api_port}/v1/jobs/{task['id']}", seconds, 32, *auth)
            ceiling, _ = wrk(f"http://127.0.0.1:{bare_port}/v1/jobs/{task['id']}", seconds, 32, *auth)
            print(f"GET /v1/jobs/{{id}}: ours {ours:,.0f}/s ({ours_bad} non-2xx), bare Starlette route "
                  f"{ceiling:,.0f}/s, ratio {ours / ceiling:.2f} (goal >= 0.7)")
        finally:
            bare.terminate()
            bare.wait()
        script = Path(bare_dir, "post.lua")
        script.write_text(POST_SCRIPT % KEY)
        accepted, bad = wrk(f"http://127.0.0.1:{api_port}/v1/jobs", seconds, 64, "-s", str(script))
        print(f"POST /v1/jobs: {accepted:,.0f} accepted/s ({bad} non-2xx; each acks=all and read back "
              "by the projection before the 202) (goal >= 2,000/s)")
    finally:
        api.terminate()
        api.wait()
        shutil.rmtree(bare_dir, ignore_errors=True)


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def rebuild_figures(bootstrap: str, events: int, jobs: int) -> None:
    settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "JOBWIRE_TOPIC_PREFIX": f"bench{uuid.uuid4().hex[:6]}.",
                              "JOBWIRE_EVENTS_PARTITIONS": "6"})
    await ensure_topics(settings)
    topic = Topics(settings.topic_prefix).events
    per_job = events // jobs  # created, started, progress..., completed
    producer = make_producer(settings.kafka, linger_ms=20)
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for i in range(jobs):
            job_id = f"job_r{i:08d}"
            history = [new_event("job.created", job_id, "acme", {"operation": "ocr", "parameters": {"file": f"f{i}.pdf"}}),
                       new_event("job.started", job_id, "acme", {})]
            history += [new_event("job.progress", job_id, "acme", {"total": per_job, "processed": k})
                        for k in range(1, per_job - 2)]
            history.append(new_event("job.completed", job_id, "acme", {"result": {"pages": 3}}))
            for event in history:
                pending.append(await producer.send(topic, orjson.dumps(event.to_dict()), key=job_id.encode()))
            if len(pending) > 20000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    print(f"(wrote {events:,} events for {jobs:,} jobs in {time.perf_counter() - started:.0f}s)")

    gc.collect()
    before = rss_bytes()
    projection = Projection()
    async with LogReader(settings.kafka, topic) as reader:
        ends = await reader.end_offsets()
        started = time.perf_counter()
        async for batch in reader.batches(timeout_ms=500):
            for record in batch:
                projection.apply_record(record)
            if projection.caught_up(ends):
                break
        elapsed = time.perf_counter() - started
    gc.collect()
    per_job_bytes = (rss_bytes() - before) / len(projection.jobs)
    applied = sum(ends.values())
    print(f"projection rebuild: {applied / elapsed:,.0f} events/s ({applied:,} events, {len(projection.jobs):,} jobs "
          f"in {elapsed:.1f}s) (goal >= 50,000/s)")
    print(f"resident memory per finished job: {per_job_bytes:,.0f} bytes with its {per_job}-event history "
          f"(goal <= 1,536)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=200_000)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench/api.py needs wrk: apt-get install wrk")
    with bench_broker() as bootstrap:
        http_figures(bootstrap, args.seconds)
        asyncio.run(rebuild_figures(bootstrap, args.events, args.jobs))

if __name__ == "__main__":
    main()
