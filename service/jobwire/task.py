"""The task object: how a :class:`~jobwire.lifecycle.Job` looks to API clients and webhooks."""

from __future__ import annotations

from typing import Any

from jobwire.lifecycle import Job


def task_object(job: Job) -> dict[str, Any]:
    """The public representation (schemas/task.json); never includes tenant or internals."""
    return {
        "id": job.id,
        "object": "task",
        "operation": job.operation,
        "status": job.status.value,
        "stage": job.stage,
        "parameters": job.parameters,
        "result": job.result,
        "error": job.error,
        "progress": {"total": job.progress_total, "processed": job.progress_processed},
        "metadata": job.metadata,
        "result_url": job.result_url,
        "result_url_expires_at": job.result_url_expires_at,
        "result_checksum": job.result_checksum,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "version": job.version,
        "cancel_requested": job.cancel_requested,
    }
