"""The count of each tenant's unfinished jobs that a submit checks its quota against: kept by
each folded batch and each eviction, it must equal what the store holds, whatever the events
(transitions the fold refuses, duplicates, heartbeats), the batches they come in, the
evictions between them, and a restart on the same store."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobwire.api.projection import Projection
from jobwire.api.store import Store
from tests.support.poison import consumer_record
from tests.unit.api.test_store import TOPIC, raw_record

JOBS = [f"job_{n}" for n in range(5)]
TENANTS = ["acme", "globex"]
DATA: dict[str, dict[str, Any]] = {
    "job.created": {"operation": "ocr", "parameters": {}}, "job.started": {}, "job.progress": {"processed": 1, "total": 2},
    "job.heartbeat": {}, "job.completed": {"result": {}}, "job.failed": {"error": {"code": "E", "message": "m"}},
    "job.canceled": {},
}

event = st.tuples(st.sampled_from(list(DATA)), st.sampled_from(JOBS), st.sampled_from(TENANTS),
                  st.integers(1, 28))
step = st.one_of(
    st.tuples(st.just("batch"), st.lists(event, min_size=1, max_size=6), st.booleans()),
    st.tuples(st.just("evict"), st.integers(1, 28)),
    st.tuples(st.just("restart")),
)


def stored_unfinished(projection: Projection, tenant: str) -> int:
    return int(projection.store.db.execute(
        "SELECT count(*) FROM jobs WHERE tenant = ? AND status IN ('pending', 'processing')", (tenant,)).fetchone()[0])


async def play(data_dir: Path, steps: list[tuple[Any, ...]]) -> None:
    projection = Projection(Store(data_dir))
    offset = 0
    sent: list[Any] = []
    try:
        for kind, *args in steps:
            if kind == "batch":
                events, replay = args
                batch = []
                for event_type, job_id, tenant, day in events:
                    batch.append(raw_record(offset, event_type, job_id, DATA[event_type],
                                            f"2026-01-{day:02d}T00:00:00Z", tenant))
                    offset += 1
                if replay and sent:  # an event already applied, read again further on
                    batch.append(consumer_record(TOPIC, offset, sent[len(sent) // 2].value))
                    offset += 1
                sent.extend(batch)
                await projection.apply(batch)
            elif kind == "evict":
                await projection.evict_before(f"2026-01-{args[0]:02d}T00:00:00.000Z")
            else:
                projection.store.close()
                projection = Projection(Store(data_dir))
            for tenant in TENANTS:
                assert projection.unfinished(tenant) == stored_unfinished(projection, tenant), (kind, tenant)
    finally:
        projection.store.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=12))
def test_the_unfinished_count_follows_the_store(tmp_path_factory: Any, steps: list[tuple[Any, ...]]) -> None:
    asyncio.run(play(tmp_path_factory.mktemp("store"), steps))


async def test_a_rebuilt_store_counts_from_nothing(tmp_path: Path) -> None:
    projection = Projection(Store(tmp_path))
    try:
        await projection.apply([raw_record(0, "job.created", "job_0", DATA["job.created"], "2026-01-01T00:00:00Z")])
        assert projection.unfinished("acme") == 1
        projection.resume({0: 5}, {0: 9})  # the log now starts past what the store applied: rebuilt
        assert projection.unfinished("acme") == 0 == stored_unfinished(projection, "acme")
    finally:
        projection.store.close()
