"""Demo operations for `jobwire worker --demo` and `make run`: sleep, wordcount, fail."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import orjson

from jobwire.sdk.worker import Handler, JobContext, JobFailed, Result


async def sleep(job: JobContext) -> dict[str, Any]:
    """Sleeps ``parameters.seconds`` (default 1, at most 60) in 4 steps, reporting progress."""
    seconds = float(job.parameters.get("seconds", 1))
    if not 0 <= seconds <= 60:
        raise JobFailed("invalid_parameters", "seconds must be between 0 and 60", {"seconds": seconds})
    steps = 4
    for step in range(1, steps + 1):
        await asyncio.sleep(seconds / steps)
        await job.progress(step, steps, stage="sleeping")
    return {"slept_s": seconds}


async def wordcount(job: JobContext) -> Result:
    """Counts words of ``parameters.text``; the result carries a checksum of the text."""
    text = job.parameters.get("text")
    if not isinstance(text, str):
        raise JobFailed("invalid_parameters", "parameters.text must be a string")
    words = text.split()
    counts: dict[str, int] = {}
    for word in words:
        counts[word.lower()] = counts.get(word.lower(), 0) + 1
    digest = hashlib.sha256(orjson.dumps(text)).hexdigest()
    return Result({"words": len(words), "distinct": len(counts)}, result_checksum={"algorithm": "sha256", "value": digest})


async def fail(job: JobContext) -> dict[str, Any]:
    """Always fails, to show failure webhooks and error shapes."""
    raise JobFailed("demo_failure", str(job.parameters.get("message", "this operation always fails")),
                    {"operation": "fail"})


DEMO_OPERATIONS: dict[str, Handler] = {"sleep": sleep, "wordcount": wordcount, "fail": fail}
