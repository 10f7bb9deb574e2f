"""API speed and memory, each as a ratio against a ceiling measured in the same run.

    apt-get install wrk   # the load generator, same for every target
    .venv/bin/python bench/api.py [--seconds 10] [--events 5000000] [--jobs 1000000] [--skip-http]
        [--deliveries 1000000] [--only-health]

- GET /v1/jobs/{id} requests/s vs a bare Starlette route returning the same JSON from a dict,
  same uvicorn settings (one process each), same wrk settings.
- POST /v1/jobs accepted/s (each one written to Kafka with acks=all and visible in the
  projection before the 202).
- The store: a cold rebuild's rate against the rate of reading and decoding the same log; a
  replica restarted on the built store: time to ready, resident memory, filtered list latency;
  a fresh replica catching up on the whole log: GET latency meanwhile against once it is ready.
- The endpoint health query with a million deliveries in the store, against a point read of
  one delivery in the same store (``--only-health`` runs this one alone, without a broker).

Starts its own broker unless KAFKA_BOOTSTRAP_SERVERS is set. Not part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import http.client
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
from typing import Any, NamedTuple

import orjson
from _broker import bench_broker
from _processes import stop_process

from jobwire.api.deliverylog import DeliveryLog
from jobwire.api.projection import Projection
from jobwire.api.store import Store
from jobwire.config import Settings, load_settings
from jobwire.devtools.broker import free_port
from jobwire.events import new_event
from jobwire.kafka.admin import ensure_topics
from jobwire.kafka.clients import make_producer
from jobwire.kafka.readers import LogReader
from jobwire.topics import Topics

KEY = "key_bench_0123456789"
BARE_APP = '''
import orjson
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
TASK = orjson.loads(open({path!r}, "rb").read())
HEADERS = {headers!r}
async def get(request):
    return Response(orjson.dumps(TASK), media_type="application/json")
async def get_with_headers(request):
    return Response(orjson.dumps(TASK), media_type="application/json", headers=HEADERS)
app = Starlette(routes=[Route("/v1/jobs/{{job_id}}", get), Route("/with-headers/v1/jobs/{{job_id}}", get_with_headers)])
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


def route_headers(port: int, job_id: str) -> dict[str, str]:
    """The headers our GET answers with, but those both responses carry anyway and the
    hop-by-hop ``connection`` (urllib asks for close)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/jobs/{job_id}",
                                     headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(request) as response:
        return {name: value for name, value in response.headers.items()
                if name.lower() not in ("date", "server", "content-length", "content-type", "connection")}


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
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "JOBWIRE_API_KEYS": f"bench:{KEY}", "JOBWIRE_RATE_LIMIT_PER_S": "0",
           "JOBWIRE_TOPIC_PREFIX": f"bench{uuid.uuid4().hex[:6]}.", "JOBWIRE_LOG_LEVEL": "WARNING"}
    bare_dir = tempfile.mkdtemp()
    env["JOBWIRE_DATA_DIR"] = str(Path(bare_dir, "data"))
    asyncio.run(ensure_topics(load_settings(env)))
    api_port, bare_port = free_port(), free_port()
    # BENCH_API_WRAP, e.g. "py-spy record -f raw -o /tmp/api.txt --": profile the API.
    api = serve([*os.environ.get("BENCH_API_WRAP", "").split(), sys.executable, "-m", "jobwire.cli", "api",
                 "--port", str(api_port)], env)
    try:
        wait_http(f"http://127.0.0.1:{api_port}/healthz")
        request = urllib.request.Request(
            f"http://127.0.0.1:{api_port}/v1/jobs", method="POST",
            data=b'{"operation": "bench", "parameters": {"n": 1}}',
            headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request) as response:
            task = orjson.loads(response.read())
        Path(bare_dir, "task.json").write_bytes(orjson.dumps(task))
        Path(bare_dir, "bare.py").write_text(BARE_APP.format(path=str(Path(bare_dir, "task.json")),
                                                             headers=route_headers(api_port, task["id"])))
        bare = serve([sys.executable, "-m", "uvicorn", "--app-dir", bare_dir, "bare:app", "--port", str(bare_port),
                      "--no-access-log", "--log-level", "warning"], env)
        try:
            wait_http(f"http://127.0.0.1:{bare_port}/v1/jobs/{task['id']}")
            auth = ["-H", f"Authorization: Bearer {KEY}"]
            wrk(f"http://127.0.0.1:{api_port}/v1/jobs/{task['id']}", 2, 32, *auth)  # warm-up
            ours, ours_bad = wrk(f"http://127.0.0.1:{api_port}/v1/jobs/{task['id']}", seconds, 32, *auth)
            ceiling, _ = wrk(f"http://127.0.0.1:{bare_port}/v1/jobs/{task['id']}", seconds, 32, *auth)
            with_headers, _ = wrk(f"http://127.0.0.1:{bare_port}/with-headers/v1/jobs/{task['id']}", seconds, 32,
                                  *auth)
            print(f"GET /v1/jobs/{{id}}: ours {ours:,.0f}/s ({ours_bad} non-2xx), bare Starlette route "
                  f"{ceiling:,.0f}/s, ratio {ours / ceiling:.2f} (goal >= 0.7); the bare route sending our "
                  f"response's headers too {with_headers:,.0f}/s ({with_headers / ceiling:.2f} of it), "
                  f"ratio to that {ours / with_headers:.2f}")
        finally:
            bare.terminate()
            bare.wait()
        script = Path(bare_dir, "post.lua")
        script.write_text(POST_SCRIPT % KEY)
        accepted, bad = wrk(f"http://127.0.0.1:{api_port}/v1/jobs", seconds, 64, "-s", str(script))
        print(f"POST /v1/jobs: {accepted:,.0f} accepted/s ({bad} non-2xx; each acks=all and read back "
              "by the projection before the 202) (goal >= 2,000/s)")
    finally:
        stop_process(api)
        shutil.rmtree(bare_dir, ignore_errors=True)


def rss_bytes(pid: int | str = "self") -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def write_histories(settings: Settings, events: int, jobs: int) -> None:
    """``jobs`` finished jobs of ``events // jobs`` events each, spread over 3 tenants and 4 operations."""
    topic = Topics(settings.topic_prefix).events
    per_job = events // jobs  # created, started, progress..., completed
    producer = make_producer(settings.kafka, linger_ms=20)
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for i in range(jobs):
            job_id = f"job_r{i:08d}"
            tenant = ("acme", "globex", "initech")[i % 3]
            history = [new_event("job.created", job_id, tenant, {"operation": f"op{i % 4}", "parameters": {"file": f"f{i}.pdf"}}),
                       new_event("job.started", job_id, tenant, {})]
            history += [new_event("job.progress", job_id, tenant, {"total": per_job, "processed": k})
                        for k in range(1, per_job - 2)]
            history.append(new_event("job.completed", job_id, tenant, {"result": {"pages": 3}}) if i % 10
                           else new_event("job.failed", job_id, tenant, {"error": {"code": "E", "message": "m"}}))
            for event in history:
                pending.append(await producer.send(topic, orjson.dumps(event.to_dict()), key=job_id.encode()))
            if len(pending) > 20000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    print(f"(wrote {events:,} events for {jobs:,} jobs in {time.perf_counter() - started:.0f}s)", flush=True)


async def read_rate(settings: Settings) -> float:
    """The ceiling: records/s a reader fetches and decodes from this log, applying nothing."""
    async with LogReader(settings.kafka, Topics(settings.topic_prefix).events) as reader:
        ends = await reader.end_offsets()
        total, started = sum(ends.values()), time.perf_counter()
        seen = 0
        async for batch in reader.batches(timeout_ms=500):
            seen += len(batch)
            if seen >= total:
                break
        return seen / (time.perf_counter() - started)


async def rebuild_figures(settings: Settings) -> None:
    """A cold rebuild into an empty data dir, the way a fresh replica does it."""
    ceiling = await read_rate(settings)
    gc.collect()
    before = rss_bytes()
    store = Store(settings.data_dir)
    projection = Projection(store, Topics(settings.topic_prefix).events, retention_s=0)
    async with LogReader(settings.kafka, projection.topic) as reader:
        ends = await reader.end_offsets()
        reader.seek(projection.resume(await reader.beginning_offsets(), ends))
        started = time.perf_counter()
        async for batch in reader.raw_batches(timeout_ms=500):
            await projection.apply(batch)
            if projection.caught_up(ends):
                break
        elapsed = time.perf_counter() - started
    applied, jobs = sum(ends.values()), projection.count()
    grown = rss_bytes() - before
    store.close()
    rate = applied / elapsed
    print(f"cold rebuild into the store: {rate:,.0f} events/s ({applied:,} events, {jobs:,} jobs in {elapsed:.1f}s); "
          f"reading and decoding alone {ceiling:,.0f}/s, ratio {rate / ceiling:.2f} (goal >= 100,000/s)")
    print(f"rebuilding process grew by {grown / 2**20:,.0f} MiB while folding {jobs:,} jobs; "
          f"store on disk {sum(f.stat().st_size for f in settings.data_dir.iterdir()) / 2**20:,.0f} MiB")


def restart_figures(settings: Settings, env: dict[str, str], jobs: int) -> None:
    """A replica restarted on the store just built: time to ready, memory, list latency."""
    port = free_port()
    started = time.perf_counter()
    api = serve([sys.executable, "-m", "jobwire.cli", "api", "--port", str(port)], env)
    try:
        deadline = started + 600
        while time.perf_counter() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                    break
            except OSError:
                time.sleep(0.02)
        ready_s = time.perf_counter() - started
        print(f"restart to ready with {jobs:,} jobs in the store: {ready_s:.2f}s, process start included (goal <= 5 s)")
        auth = {"Authorization": f"Bearer {KEY}"}
        latencies = []
        queries = ["status=completed&operation=op1", "operation=op2", "status=failed", "", "status=completed"]
        for i in range(1000):  # bounded: 1000 sequential list requests, following cursors
            url = f"http://127.0.0.1:{port}/v1/jobs?limit=50&{queries[i % len(queries)]}"
            t = time.perf_counter()
            with urllib.request.urlopen(urllib.request.Request(url, headers=auth), timeout=10) as response:
                page = orjson.loads(response.read())
            latencies.append(time.perf_counter() - t)
            if page["next_cursor"] and i % 2:
                url += f"&cursor={page['next_cursor']}"
                with urllib.request.urlopen(urllib.request.Request(url, headers=auth), timeout=10) as response:
                    response.read()
        latencies.sort()
        p50, p99 = latencies[len(latencies) // 2] * 1000, latencies[int(len(latencies) * 0.99)] * 1000
        print(f"filtered list at {jobs:,} jobs over HTTP: p50 {p50:.2f} ms, p99 {p99:.2f} ms (goal p99 <= 5 ms)")
        print(f"API replica resident memory with {jobs:,} jobs in its store: {rss_bytes(api.pid) / 2**20:,.0f} MiB "
              "(goal <= 300 MiB)")
    finally:
        api.terminate()
        api.wait()


def catch_up_figures(env: dict[str, str], events: int) -> None:
    """A fresh replica (empty data dir) folding the whole log, as a new pod does: GET latency
    for a job while the catch-up runs, against the same GET once the replica is ready."""
    data_dir = tempfile.mkdtemp(prefix="jobwire-bench-fresh-")
    port = free_port()
    started = time.perf_counter()
    api = serve([sys.executable, "-m", "jobwire.cli", "api", "--port", str(port)], {**env, "JOBWIRE_DATA_DIR": data_dir})
    headers = {"Authorization": f"Bearer {KEY}"}
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

        def timed_get(path: str) -> tuple[float, int]:
            t = time.perf_counter()
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            response.read()
            return time.perf_counter() - t, response.status

        during: list[float] = []
        ready_at = None
        for i in range(300_000):  # bounded in count, and by the 600 s below
            if i % 100 == 0:
                if timed_get("/readyz")[1] == 200:
                    ready_at = time.perf_counter()
                    break
                if time.perf_counter() - started > 600:
                    break
            during.append(timed_get("/v1/jobs/job_r00000000")[0])
        if ready_at is None:
            print("fresh replica: not ready within 600 s")
            return
        after = sorted(timed_get("/v1/jobs/job_r00000000")[0] for _ in range(5000))
        during.sort()

        def p(values: list[float], q: float) -> float:
            return values[min(len(values) - 1, int(len(values) * q))] * 1000

        print(f"fresh replica folded {events:,} events to ready in {ready_at - started:.1f}s, process start included "
              f"({events / (ready_at - started):,.0f} events/s)")
        print(f"GET /v1/jobs/{{id}} during that catch-up: p50 {p(during, 0.5):.2f} ms, p99 {p(during, 0.99):.2f} ms, "
              f"max {during[-1] * 1000:.1f} ms over {len(during):,} requests; once ready: p50 {p(after, 0.5):.2f} ms, "
              f"p99 {p(after, 0.99):.2f} ms; ratio of p99s {p(during, 0.99) / p(after, 0.99):.1f} "
              "(goal: p99 during catch-up < 5 ms)")
    finally:
        api.terminate()
        api.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


class AttemptRecord(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[()] = ()


def health_figures(deliveries_count: int) -> None:
    """The endpoint health query (attempts per hour and outcome over 30 days) on a store holding
    ``deliveries_count`` deliveries over 100 endpoints, against a point read of one delivery."""
    data_dir = Path(tempfile.mkdtemp(prefix="jobwire-bench-health-"))
    store = Store(data_dir)
    try:
        deliveries = DeliveryLog(store)
        started = time.perf_counter()
        outcomes = ("succeeded",) * 8 + ("retrying", "failed")
        for first in range(0, deliveries_count, 5000):
            batch = []
            for n in range(first, min(first + 5000, deliveries_count)):
                at = f"2026-11-{1 + n * 30 // deliveries_count:02d}T{n % 24:02d}:{n % 60:02d}:00.000Z"
                document = {"delivery_id": f"msg_{n:08d}", "endpoint_id": f"ep_{n % 100:03d}", "tenant": "acme",
                            "event_type": "task.completed", "event_id": f"evt_{n}", "job_id": f"job_{n}",
                            "attempt": 1, "at": at, "outcome": outcomes[n % 10], "status_code": 200}
                batch.append(AttemptRecord("webhooks.attempts", 0, n, None, orjson.dumps(document)))
            deliveries.apply_batch(batch)
        print(f"(folded {deliveries_count:,} deliveries into the store in {time.perf_counter() - started:.0f}s)")

        def timed(call: Any, rounds: int = 2000) -> tuple[float, float]:
            spent = []
            for i in range(rounds):
                t = time.perf_counter()
                call(i)
                spent.append(time.perf_counter() - t)
            spent.sort()
            return spent[rounds // 2] * 1000, spent[int(rounds * 0.99)] * 1000

        since = "2026-11-01T00:00:00.000Z"
        counted = sum(deliveries.health("ep_007", since).values())
        p50, p99 = timed(lambda i: deliveries.health(f"ep_{i % 100:03d}", since))
        c50, c99 = timed(lambda i: deliveries.get("acme", f"msg_{i * 397 % deliveries_count:08d}"))
        print(f"endpoint health over 30 days with {deliveries_count:,} deliveries in the store ({counted:,} attempts "
              f"counted for one endpoint): p50 {p50:.3f} ms, p99 {p99:.3f} ms; a point read of one delivery p50 "
              f"{c50:.3f} ms, p99 {c99:.3f} ms; ratio of p99s {p99 / c99:.1f} (goal: health <= 5 ms)")
    finally:
        store.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--skip-http", action="store_true", help="only the store figures")
    parser.add_argument("--deliveries", type=int, default=1_000_000, help="deliveries in the store for the health query")
    parser.add_argument("--only-health", action="store_true", help="only the endpoint health figure (no broker)")
    parser.add_argument("--only-http", action="store_true", help="only the HTTP figures")
    args = parser.parse_args()
    if args.only_health:
        health_figures(args.deliveries)
        return
    if shutil.which("wrk") is None and not args.skip_http:
        raise SystemExit("bench/api.py needs wrk: apt-get install wrk")
    with bench_broker() as bootstrap:
        if not args.skip_http:
            http_figures(bootstrap, args.seconds)
        if args.only_http:
            return
        data_dir = tempfile.mkdtemp(prefix="jobwire-bench-")
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "JOBWIRE_API_KEYS": f"acme:{KEY}", "JOBWIRE_RATE_LIMIT_PER_S": "0",
               "JOBWIRE_TOPIC_PREFIX": f"bench{uuid.uuid4().hex[:6]}.", "JOBWIRE_EVENTS_PARTITIONS": "6",
               "JOBWIRE_LOG_LEVEL": "WARNING", "JOBWIRE_DATA_DIR": data_dir, "JOBWIRE_RETENTION_DAYS": "0"}
        settings = load_settings(env)
        try:
            asyncio.run(ensure_topics(settings))
            asyncio.run(write_histories(settings, args.events, args.jobs))
            asyncio.run(rebuild_figures(settings))
            restart_figures(settings, env, args.jobs)
            catch_up_figures(env, args.events)
            health_figures(args.deliveries)
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
