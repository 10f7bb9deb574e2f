"""Waiting for an event with a time limit, cancellable.

Not ``asyncio.wait_for``: on Python 3.11 a cancellation that meets its timeout (or the awaited
thing finishing) can be swallowed, and a background loop cancelled that way runs on. The
dispatcher's simulation caught one doing so after a simulated kill -9.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout_s: float) -> None:
    """Return when ``event`` is set or ``timeout_s`` has passed, whichever comes first."""
    alarm = asyncio.get_running_loop().call_later(timeout_s, event.set)
    try:
        await event.wait()
    finally:
        alarm.cancel()
