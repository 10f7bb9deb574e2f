"""The task object as the API shows it: the pure task object (jobwire.task), plus what only
the API can add because it signs URLs: a fresh download URL for a result stored as a file, and
the upload URL of a job that waits for its input. Webhooks carry the pure object."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from jobwire.api.file_urls import FileUrls
from jobwire.api.problems import Problem
from jobwire.lifecycle import Job
from jobwire.storage import BlobStore
from jobwire.storage.files import FILE_ID, FileRecord, content_key, load
from jobwire.task import task_object
from jobwire.timeutil import format_utc


def needs_urls(job: Job) -> bool:
    """Whether the job's answer carries signed URLs (and so is minted per read, never cached)."""
    return job.result_file is not None or job.awaiting_upload


def public_task(job: Job) -> dict[str, Any]:
    """The task as the API answers it, less signed URLs: the task object, and the job's own
    callback (to the tenant who set it; never in webhooks, which every endpoint gets, and its
    URL may carry a token)."""
    task = task_object(job)
    if job.webhook is not None:
        task["webhook"] = job.webhook
    return task


def shown_task(request: Request, job: Job) -> dict[str, Any]:
    task = public_task(job)
    if not needs_urls(job):
        return task
    if job.result_file is not None:
        found = job.result_file
        record = FileRecord(found["id"], job.tenant, found["filename"], found["content_type"], found["size"],
                            found["sha256"], "result", job.finished_at or job.updated_at, "", job.id)
        link = download_url(request, record)
        if link is not None:
            task["result_url"], task["result_url_expires_at"] = link
    if job.awaiting_upload and task["input"] is not None:
        task["input"].update(upload_link(request, job))
    return task


def store_of(request: Request) -> BlobStore:
    store: BlobStore = request.state.files
    return store


def urls_of(request: Request) -> FileUrls:
    urls: FileUrls | None = request.state.file_urls
    if urls is None:
        raise Problem(503, "files need JOBWIRE_SECRET_KEY to sign their URLs")
    return urls


def now() -> datetime:
    return datetime.now(UTC)


def base_url(request: Request) -> str:
    configured: str | None = request.state.settings.public_url
    return configured or str(request.base_url).rstrip("/")


async def found_file(request: Request, tenant: str, file_id: str) -> FileRecord:
    record = await load(store_of(request), tenant, file_id, now()) if FILE_ID.fullmatch(file_id) else None
    if record is None:
        raise Problem(404, f"no file {file_id}")
    return record


def download_url(request: Request, record: FileRecord) -> tuple[str, str] | None:
    """A URL anyone may download ``record`` from, for JOBWIRE_FILE_URL_TTL_S, and when it ends:
    the store's own presigned URL where it has one, else one to this API's content route
    (None without JOBWIRE_SECRET_KEY to sign it: the file is then read with an API key)."""
    expires_s: int = request.state.settings.file_url_ttl_s
    direct = store_of(request).presign_get(content_key(record.tenant, record.id, record.sha256), expires_s,
                                            filename=record.filename, content_type=record.content_type)
    if direct is not None:
        return direct, format_utc(datetime.fromtimestamp(int(now().timestamp()) + expires_s, UTC))
    urls: FileUrls | None = request.state.file_urls
    if urls is None:
        return None
    token, expires = urls.mint("download", t=record.tenant, f=record.id)
    return (f"{base_url(request)}/v1/files/{record.id}/content?token={token}",
            format_utc(datetime.fromtimestamp(expires, UTC)))


def upload_link(request: Request, job: Job) -> dict[str, Any]:
    """What a client needs to upload the input ``job`` waits for: URL, headers, expiry."""
    assert job.input is not None
    token, expires = urls_of(request).mint("upload", t=job.tenant, j=job.id, f=job.input["file_id"])
    headers = {"Content-Type": job.input["content_type"]} if job.input.get("content_type") else {}
    return {"upload_url": f"{base_url(request)}/v1/uploads/{token}", "upload_headers": headers,
            "upload_url_expires_at": format_utc(datetime.fromtimestamp(expires, UTC))}


