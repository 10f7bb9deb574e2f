"""Dispatcher rebalancing on a 3-node cluster: three dispatcher processes share one consumer
group while finished jobs flow in steadily; one is SIGKILLed and another added mid-run.

What is lost: nothing (asserted for every (job, endpoint) pair). Duplicates: counted, each
with its original webhook-id. Pauses (printed, docs/scaling.md): per `jobs.events` partition,
the longest time without a delivery after the kill. With static membership
(JOBWIRE_INSTANCE_ID), a member restarted under its id gets its partitions back and the others
are not rebalanced at all (asserted from their logs: no revocation)."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from jobwire.config import Settings, load_settings
from jobwire.devtools.cluster import LocalCluster
from jobwire.kafka.admin import ensure_topics
from jobwire.kafka.clients import make_producer
from tests.support.cluster import cluster_env, longest_gaps
from tests.support.dispatching import check_deliveries, publish_jobs, register, start_dispatcher
from tests.support.eventually import eventually
from tests.support.receiver import Receiver, ReceiverServer

PARTITIONS = 6
MAX_WAVES = 1000  # bounded; the flow stops a few seconds after the group is whole again
WAVE_JOBS = 12
PACE_S = 0.2


async def steady_flow(settings: Settings, finishing: dict[str, str], enough: asyncio.Event) -> None:
    """A wave of jobs every PACE_S until ``enough`` (or MAX_WAVES: bounded)."""
    producer = make_producer(settings.kafka)
    await producer.start()
    try:
        for wave in range(MAX_WAVES):
            if enough.is_set():
                return
            finishing |= await publish_jobs(settings, wave * WAVE_JOBS, WAVE_JOBS, prefix="job_g", producer=producer)
            await asyncio.sleep(PACE_S)
    finally:
        await producer.stop()


def revocations(log_file: Path) -> int:
    return len(re.findall(r"partitions revoked", log_file.read_text(errors="replace")))


def restorations(log_file: Path) -> int:
    """Assignments the member took up (one log line each)."""
    return log_file.read_text(errors="replace").count("state restored partitions=")


def assigned(log_file: Path) -> bool:
    return restorations(log_file) >= 1


async def run_group(kafka_cluster: LocalCluster, tmp_path: Path, *, static: bool) -> GroupRun:
    env = cluster_env(kafka_cluster.bootstrap, JOBWIRE_EVENTS_PARTITIONS=str(PARTITIONS),
                      # Static members keep their partitions this long while away; dynamic ones
                      # are replaced after the shortest session brokers accept.
                      JOBWIRE_GROUP_SESSION_TIMEOUT_S="60" if static else "6")
    settings = load_settings(env)
    await ensure_topics(settings)
    receivers = [Receiver(), Receiver()]
    finishing: dict[str, str] = {}
    processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(name: str) -> None:
        member_env = {**env, "JOBWIRE_INSTANCE_ID": name} if static else env
        processes[name] = start_dispatcher(member_env, tmp_path / f"{name}.log")

    async with ReceiverServer(receivers[0]) as a, ReceiverServer(receivers[1]) as b:
        endpoint_ids = await register(settings, [a, b])
        try:
            for name in ("d1", "d2", "d3"):
                start(name)
            await eventually(lambda: all(assigned(tmp_path / f"{n}.log") for n in ("d1", "d2", "d3")),
                             "three members with partitions", timeout_s=120)
            enough = asyncio.Event()
            flow = asyncio.create_task(steady_flow(settings, finishing, enough))

            def more_waves(count: int) -> Callable[[], bool]:
                target = len(finishing) + count * WAVE_JOBS
                return lambda: len(finishing) >= target or flow.done()

            await eventually(lambda: len(receivers[0].received) >= 100 or flow.done(), "deliveries flowing",
                             timeout_s=120)
            before = {n: revocations(tmp_path / f"{n}.log") for n in ("d2", "d3")}
            restored = {n: restorations(tmp_path / f"{n}.log") for n in ("d2", "d3")}
            killed_at = time.monotonic()
            processes["d1"].send_signal(signal.SIGKILL)
            processes["d1"].wait()
            if static:
                start("d1")  # the same instance id: its partitions come back to it
                await eventually(lambda: restorations(tmp_path / "d1.log") >= 2, "d1 back with its partitions",
                                 timeout_s=120)
                rebalanced = {n: revocations(tmp_path / f"{n}.log") - before[n] for n in before}
            else:  # the others take d1's partitions once its session has expired
                await eventually(lambda: any(restorations(tmp_path / f"{n}.log") > restored[n] for n in restored),
                                 "d1's partitions reassigned", timeout_s=120)
                rebalanced = {}
            await eventually(more_waves(10), "jobs flowing on", timeout_s=60)
            added_at = time.monotonic()
            start("d4")
            await eventually(lambda: restorations(tmp_path / "d4.log") >= 1, "d4 in the group", timeout_s=120)
            await eventually(more_waves(10), "jobs flowing on", timeout_s=60)
            enough.set()
            await asyncio.wait_for(flow, 60)
            flow_ended = time.monotonic()
            expected = len(finishing)
            await receivers[0].wait_for(
                lambda: all(len({r.webhook_id for r in rc.received}) >= expected for rc in receivers), timeout_s=180)
        finally:
            for process in processes.values():
                if process.poll() is None:
                    process.terminate()
            for process in processes.values():
                process.wait(30)
    duplicates = check_deliveries(receivers, endpoint_ids, finishing)
    arrivals = [(r.at, r.data["id"]) for r in receivers[0].received]
    return GroupRun(jobs=expected, duplicates=duplicates, rebalanced=rebalanced,
                    gaps=longest_gaps(arrivals, PARTITIONS, killed_at, added_at),
                    join=longest_gaps([(at, "any") for at, _ in arrivals], 1, added_at, flow_ended)[0])


@dataclass(frozen=True)
class GroupRun:
    jobs: int
    duplicates: int
    #: Revocations the other members logged while the killed one was away (static runs only).
    rebalanced: dict[str, int]
    #: Per partition, the longest time without a delivery from the kill until the member was
    #: back or replaced and the flow went on.
    gaps: dict[int, float]
    #: The longest the whole group delivered nothing while a member was added.
    join: float

    def figures(self) -> str:
        pauses = ", ".join(f"{p}: {g:.2f} s" for p, g in sorted(self.gaps.items()))
        return (f"{self.jobs} jobs x 2 endpoints, lost 0, duplicates {self.duplicates}; longest pause per "
                f"partition after the kill: {pauses}; longest the group delivered nothing while a member "
                f"joined: {self.join:.2f} s")


@pytest.mark.timeout(600)
async def test_a_member_killed_and_one_added_loses_nothing(kafka_cluster: LocalCluster, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    run = await run_group(kafka_cluster, tmp_path, static=False)
    with capsys.disabled():
        print(f"\ndispatcher group (dynamic membership, session 6 s): 1 of 3 SIGKILLed, 1 added; {run.figures()}")


@pytest.mark.timeout(600)
async def test_a_static_member_restarted_keeps_the_group_running(kafka_cluster: LocalCluster, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    run = await run_group(kafka_cluster, tmp_path, static=True)
    assert run.rebalanced == {"d2": 0, "d3": 0}, "the others kept their partitions through the restart"
    with capsys.disabled():
        print(f"\ndispatcher group (static membership): 1 of 3 SIGKILLed and restarted under its id, 1 added; "
              f"the others revoked nothing during the restart; {run.figures()}")
