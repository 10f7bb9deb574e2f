"""Server-sent events: a job's history, then its live events until it is terminal."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import StreamingResponse

from jobwire.projection import Projection

KEEPALIVE_S = 15.0


def history_stream(request: Request, tenant: str, job_id: str) -> StreamingResponse:
    projection: Projection = request.state.projection
    resume_after = request.headers.get("last-event-id")

    async def frames() -> AsyncIterator[bytes]:
        sent = 0
        entries = projection.events_of(tenant, job_id) or []
        if resume_after is not None:
            # Resume after the last event the client saw (its id is the log position).
            for index, entry in enumerate(entries):
                if str(entry.position) == resume_after:
                    sent = index + 1
        while True:
            entries = projection.events_of(tenant, job_id)
            if entries is None:  # evicted while streaming
                return
            for entry in entries[sent:]:
                event = orjson.loads(entry.raw)
                frame = {"position": str(entry.position), "verdict": entry.verdict.value,
                         "reason": entry.reason, "event": event}
                yield b"id: %s\nevent: %s\ndata: %s\n\n" % (
                    str(entry.position).encode(), event["type"].encode(), orjson.dumps(frame))
            sent = len(entries)
            job = projection.get(tenant, job_id)
            if job is None or job.status.terminal:
                return
            if await request.is_disconnected():
                return
            if not await projection.wait_for_change(job_id, KEEPALIVE_S):
                yield b": keep-alive\n\n"

    return StreamingResponse(
        frames(), media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
