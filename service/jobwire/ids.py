"""Identifiers: a prefix, then 12 hex digits of milliseconds and 16 random hex digits.

Time first, so ids sort by creation, which makes list cursors and log reading easier to follow.
"""

from __future__ import annotations

import secrets
import time


def new_id(prefix: str) -> str:
    return f"{prefix}_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(8)}"
