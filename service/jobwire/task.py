"""The task object: how a :class:`~jobwire.lifecycle.Job` looks to API clients and webhooks."""

from __future__ import annotations

from typing import Any

import orjson

from jobwire.deadlines import deadline_at, pending_deadline_at, upload_deadline_at
from jobwire.lifecycle import Job, Status

#: Largest task object (as JSON) a job may grow to; the dispatcher sets a job that would be
#: larger aside rather than write records Kafka would refuse.
MAX_TASK_BYTES = 512 * 1024


def task_object(job: Job) -> dict[str, Any]:
    """The public representation (schemas/task.json); never includes tenant or internals."""
    return {
        "id": job.id,
        "object": "task",
        "operation": job.operation,
        "status": job.status.value,
        "stage": job.stage,
        "parameters": job.parameters,
        "result": _result(job),
        "error": job.error,
        # Whether the worker said submitting the job again could succeed (null when it did
        # not say, and for jobs that did not fail).
        "retryable": job.retryable if job.status is Status.FAILED else None,
        "progress": {"total": job.progress_total, "processed": job.progress_processed},
        "metadata": job.metadata,
        "result_url": job.result_url,
        "result_url_expires_at": job.result_url_expires_at,
        "result_checksum": job.result_checksum,
        "result_file": _result_file(job.result_file),
        "input": _input(job),
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "version": job.version,
        "cancel_requested": job.cancel_requested,
        "timeout_s": job.timeout_s,
        "pending_timeout_s": job.pending_timeout_s,
        "heartbeat_timeout_s": job.heartbeat_timeout_s,
        "deadline_at": deadline_at(job),
        "pending_deadline_at": pending_deadline_at(job),
    }


def _result_file(found: dict[str, Any] | None) -> dict[str, Any] | None:
    if found is None:
        return None
    return {"id": found["id"], "filename": found["filename"], "content_type": found["content_type"],
            "size": found["size"]}


def _input(job: Job) -> dict[str, Any] | None:
    """The input file: ``awaiting_upload`` with when that ends, or ``received`` with its
    checksum. The upload URL is not here: the API mints it for each read."""
    if job.input is None:
        return None
    data = job.input
    shown: dict[str, Any] = {"file_id": data["file_id"],
                             "status": "awaiting_upload" if job.awaiting_upload else "received",
                             "filename": data.get("filename"), "content_type": data.get("content_type"),
                             "size": data.get("size"), "received_at": job.input_received_at}
    shown["checksum"] = {"algorithm": "sha256", "value": data["sha256"]} if data.get("sha256") else None
    shown["upload_deadline_at"] = upload_deadline_at(job)
    return shown


def task_size(job: Job) -> int:
    """Bytes of the task object as JSON (what a webhook body and a snapshot carry)."""
    return len(orjson.dumps(task_object(job)))


def _result(job: Job) -> dict[str, Any] | None:
    """A failed job's result is its error in the other seed shape: ``{error, details}``."""
    if job.status is Status.FAILED and job.error is not None:
        return {"error": job.error["message"], "details": job.error["details"]}
    return job.result
