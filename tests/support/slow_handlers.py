"""Handlers for worker subprocesses in tests (``--handler tests.support.slow_handlers:NAME``)."""

from __future__ import annotations

import asyncio
from typing import Any

from jobwire.sdk.worker import JobContext


async def never_finishes(job: JobContext) -> dict[str, Any]:
    """Works for an hour: the job ends only when its worker dies or its deadline passes."""
    await job.progress(1, 100, stage="running")
    await asyncio.sleep(3600)
    return {}
