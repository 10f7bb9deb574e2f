"""Server-sent events: a job's history, then its live events until it is terminal."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from jobwire.api.limits import Slot
from jobwire.api.projection import Projection
from jobwire.positions import Position

KEEPALIVE_S = 15.0


class HeldStream(StreamingResponse):
    """A stream that gives its tenant's stream slot back however it ends. Not in the body
    generator's ``finally``: when the client leaves, Starlette cancels the stream, and a
    generator that never started never runs its ``finally``."""

    def __init__(self, slot: Slot, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()


def history_stream(request: Request, tenant: str, job_id: str) -> StreamingResponse:
    projection: Projection = request.state.projection
    slot = request.state.limits.stream(tenant)  # a 429 when the tenant has all its streams open
    resume_after = request.headers.get("last-event-id")

    async def frames() -> AsyncIterator[bytes]:
        # Resume after the last event the client saw: its id is the log position. Each round
        # reads only what came after the last frame sent, so a long stream costs no more per
        # event than a short one.
        last = _position(resume_after)
        while True:
            entries = projection.events_of(tenant, job_id, after=last)
            if entries is None:  # removed (retention) while streaming
                return
            for entry in entries:
                event = orjson.loads(entry.raw)
                frame = {"position": str(entry.position), "verdict": entry.verdict.value,
                         "reason": entry.reason, "event": event}
                yield b"id: %s\nevent: %s\ndata: %s\n\n" % (
                    str(entry.position).encode(), event["type"].encode(), orjson.dumps(frame))
                last = entry.position
            job = projection.get(tenant, job_id)
            if job is None or job.status.terminal:
                return
            if await request.is_disconnected():
                return
            if not await projection.wait_for_change(job_id, KEEPALIVE_S):
                yield b": keep-alive\n\n"

    return HeldStream(
        slot, frames(), media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _position(last_event_id: str | None) -> Position | None:
    """The position a ``Last-Event-ID`` names; None (the whole history) for anything else."""
    if last_event_id is None:
        return None
    try:
        return Position.parse(last_event_id)
    except ValueError:
        return None
