"""Identifiers: a prefix, 12 hex digits of milliseconds, 4 of a per-process sequence and 12
random ones.

Time first, so ids sort by creation; the sequence keeps ids made in the same millisecond by
one process in order too (list pages break created_at ties by id).
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
import time

_sequence = itertools.count()


def new_id(prefix: str) -> str:
    return f"{prefix}_{time.time_ns() // 1_000_000:012x}{next(_sequence) & 0xFFFF:04x}{secrets.token_hex(6)}"


def derived_id(prefix: str, name: str) -> str:
    """An id that is a function of ``name``: everyone who derives it for the same thing agrees."""
    return f"{prefix}_x{hashlib.sha256(name.encode()).hexdigest()[:27]}"


def idempotent_job_id(tenant: str, key: str, prefix: str = "job") -> str:
    """The job id for a tenant's ``Idempotency-Key``: the same request always names the same job.

    Because the id is derived, repeats land on the same partition and the fold rejects the
    second ``job.created``; API replicas need no coordination to honour the key.
    """
    digest = hashlib.sha256(f"{tenant}\0{key}".encode()).hexdigest()
    return f"{prefix}_k{digest[:27]}"
