"""The count of each tenant's unfinished jobs that a submit checks its quota against: kept by
each folded batch, each eviction and a rebuild, it must equal what the store holds, whatever
the events (transitions the fold refuses, duplicates, heartbeats), the batches they come in,
the evictions (in chunks) between them, a rebuild, and a restart on the same store."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobwire.api import projection as projection_module
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

#: Creations drawn more often than the rest: most other events need a job to apply to.
event = st.tuples(st.sampled_from([*DATA, "job.created", "job.created"]), st.sampled_from(JOBS),
                  st.sampled_from(TENANTS), st.integers(1, 28))
#: A batch of new events, and which earlier records come back in it (read again, as after a
#: replay: duplicates), by their index among the records sent before.
step = st.one_of(
    st.tuples(st.just("batch"), st.lists(event, min_size=1, max_size=8), st.lists(st.integers(0, 10_000), max_size=2)),
    st.tuples(st.just("evict"), st.integers(1, 28)),
    st.tuples(st.just("rebuild")),
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
                events, replayed = args
                batch = [consumer_record(TOPIC, offset + n, sent[index % len(sent)].value)
                         for n, index in enumerate(replayed if sent else [])]
                offset += len(batch)
                for event_type, job_id, tenant, day in events:
                    batch.append(raw_record(offset, event_type, job_id, DATA[event_type],
                                            f"2026-01-{day:02d}T00:00:00Z", tenant))
                    offset += 1
                sent.extend(batch)
                await projection.apply(batch)
            elif kind == "evict":
                await projection.evict_before(f"2026-01-{args[0]:02d}T00:00:00.000Z")
            elif kind == "rebuild":
                projection.resume({0: offset + 1}, {0: offset + 1})  # the log moved past the store: emptied
                offset += 1
            else:
                projection.store.close()
                projection = Projection(Store(data_dir))
            for tenant in TENANTS:
                assert projection.unfinished(tenant) == stored_unfinished(projection, tenant), (kind, tenant)
    finally:
        projection.store.close()


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(step, min_size=1, max_size=12))
def test_the_unfinished_count_follows_the_store(tmp_path_factory: pytest.TempPathFactory,
                                                steps: list[tuple[Any, ...]]) -> None:
    # Chunks of one: an eviction of a few jobs takes several transactions, each bringing its change.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(projection_module, "_EVICT_CHUNK", 1)
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
