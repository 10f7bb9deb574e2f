"""Content filters on an endpoint: which jobs' webhooks it wants, beyond their event type.

A filter is a mapping of a field of the task to a condition, all of which must hold:

    {"operation": {"in": ["ocr", "parse"]}, "metadata.customer": "acme", "error.code": "timeout"}

A condition is a value (equality) or ``{"in": [values]}``. The fields are the task's
``operation``, ``status``, ``error.code`` and ``metadata.<key>``; values are strings, numbers,
booleans or null (a job without that metadata key, or without an error, has null there).
Pure: the API checks a filter's shape against the endpoint schemas (schemas/api/endpoint-*.json)
when an endpoint is created or changed, and the dispatcher (and ``jobwire audit``) ask
``matches`` before a delivery is made, so a filtered-out job costs no delivery, no attempt and
no record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobwire.lifecycle import Job

METADATA = "metadata."


def field_of(job: Job, field: str) -> Any:
    if field == "operation":
        return job.operation
    if field == "status":
        return job.status.value
    if field == "error.code":
        return (job.error or {}).get("code")
    return (job.metadata or {}).get(field[len(METADATA):])


def matches(filter: Mapping[str, Any] | None, job: Job) -> bool:
    """Whether ``job`` meets every condition of ``filter`` (no filter: every job does)."""
    if not filter:
        return True
    for field, condition in filter.items():
        value = field_of(job, field)
        if isinstance(condition, Mapping):
            if not any(_same(value, option) for option in condition["in"]):
                return False
        elif not _same(value, condition):
            return False
    return True


def _same(value: Any, wanted: Any) -> bool:
    if isinstance(value, bool) or isinstance(wanted, bool):
        return value is wanted  # true is not 1 in JSON: a filter on a flag never matches a count
    return bool(value == wanted)
