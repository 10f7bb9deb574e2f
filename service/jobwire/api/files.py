"""The Files API: upload, describe, download and delete a tenant's files; the signed URLs
that let a holder download one, or upload the input a job waits for, without an API key.

    POST   /v1/files                    multipart/form-data (part ``file``) or the raw bytes
    GET    /v1/files/{file_id}          the file object, with a fresh download URL
    GET    /v1/files/{file_id}/content  the bytes (API key, or a signed ``token``)
    DELETE /v1/files/{file_id}
    PUT    /v1/uploads/{token}          a job's input, to the URL its task object shows
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from jobwire.api.auth import tenant_of
from jobwire.api.jobs import found, projection_of, publish, verdict_at
from jobwire.api.problems import Problem
from jobwire.api.responses import json_response
from jobwire.api.task_view import download_url, found_file, now, store_of, urls_of
from jobwire.api.uploads import read_upload
from jobwire.errors import Violation
from jobwire.events import new_event
from jobwire.lifecycle import Job, Verdict
from jobwire.storage import spool_dir
from jobwire.storage.files import MAX_FILENAME, FileRecord, clean_filename, content_key, remove, save, write_record
from jobwire.storage.spool import discarding

log = logging.getLogger(__name__)

#: A media type as the event schemas take it (type/subtype, parameters after ';').
MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*(;.*)?")


def media_type(request: Request, value: str, where: str) -> str:
    """``value`` if it is a media type this deployment takes (JOBWIRE_FILE_TYPES); 400 or 415."""
    value = value.strip()
    if len(value) > 255 or not MEDIA_TYPE.fullmatch(value) or not value.isprintable():
        raise Problem(400, f"{value[:60]!r} is not a media type", violations=[Violation(where, "not a media type")])
    if not request.state.settings.file_type_allowed(value):
        raise Problem(415, f"files of type {value.split(';')[0]} are not accepted here",
                      violations=[Violation(where, "a media type this deployment does not accept")])
    return value


def file_object(request: Request, record: FileRecord) -> dict[str, Any]:
    url, expires_at = download_url(request, record) or (None, None)
    return {**record.public(), "url": url, "url_expires_at": expires_at}


async def upload_file(request: Request) -> Response:
    tenant = tenant_of(request)
    settings = request.state.settings
    named = request.query_params.get("filename")
    if named is not None and len(named) > MAX_FILENAME:
        raise Problem(422, f"a filename is at most {MAX_FILENAME} characters",
                      violations=[Violation("/query/filename", f"longer than {MAX_FILENAME} characters")])
    upload = await read_upload(request, spool_dir(settings), settings.max_file_bytes)
    with discarding(upload.spooled):
        content_type = media_type(request, upload.content_type, "/headers/content-type")
        name = named or upload.filename
        record = await save(store_of(request), upload.spooled, tenant=tenant, content_type=content_type,
                             filename=clean_filename(name, "file"), purpose="upload", now=now(),
                             retention_s=settings.file_retention_s)
    log.info("file stored file_id=%s size=%d", record.id, record.size)
    return json_response(file_object(request, record), 201, {"Location": f"/v1/files/{record.id}"})


async def get_file(request: Request) -> Response:
    record = await found_file(request, tenant_of(request), request.path_params["file_id"])
    return json_response(file_object(request, record))


async def delete_file(request: Request) -> Response:
    tenant = tenant_of(request)
    record = await found_file(request, tenant, request.path_params["file_id"])
    await remove(store_of(request), record)
    log.info("file deleted file_id=%s", record.id)
    return Response(status_code=204)


async def file_content(request: Request) -> Response:
    file_id = request.path_params["file_id"]
    token = request.query_params.get("token")
    if token is not None:
        claims = urls_of(request).open(token, "download")
        if claims is None or claims.get("f") != file_id:
            raise Problem(403, "the download URL is not valid or has expired; ask for a fresh one")
        tenant = str(claims["t"])
    else:
        tenant = tenant_of(request)
    record = await found_file(request, tenant, file_id)
    return await stream_file(request, record)


async def stream_file(request: Request, record: FileRecord) -> Response:
    """The file's bytes, as an attachment with its type, length and checksum (a HEAD: the
    headers only, from the record, without opening the bytes)."""
    headers = {
        "Content-Disposition": content_disposition(record.filename),
        "Content-Length": str(record.size),
        "ETag": f'"{record.sha256}"',
        "Repr-Digest": f"sha-256=:{_b64(record.sha256)}:",
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
    }
    if request.method == "HEAD":
        return Response(status_code=200, headers=headers, media_type=record.content_type)
    blob = await store_of(request).open(content_key(record.tenant, record.id, record.sha256))
    if blob is None:
        raise Problem(404, f"no file {record.id}")
    return StreamingResponse(blob.chunks, media_type=record.content_type, headers=headers)


def content_disposition(filename: str) -> str:
    ascii_name = "".join(c if c.isascii() and (c.isalnum() or c in "._- ") else "_" for c in filename) or "file"
    if ascii_name == filename:
        return f'attachment; filename="{ascii_name}"'
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _b64(hex_digest: str) -> str:
    import base64

    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


# --- a job's input ----------------------------------------------------------------------------


async def keep_the_accepted_input(request: Request, job: Job, ours: FileRecord) -> None:
    """After a PUT the log did not take (another PUT to the same URL was first, or the job
    ended): the file's record names the bytes the log took, and this PUT's bytes go. The log
    is the judge, so every replica's losing PUT mends the record the same way."""
    accepted = job.input if job.input is not None and not job.awaiting_upload else None
    if accepted is None or accepted["file_id"] != ours.id or accepted["sha256"] == ours.sha256:
        return
    store = store_of(request)
    await write_record(store, dataclasses.replace(
        ours, size=accepted["size"], sha256=accepted["sha256"], content_type=accepted["content_type"],
        filename=accepted["filename"]))
    await store.delete(content_key(ours.tenant, ours.id, ours.sha256))


async def put_upload(request: Request) -> Response:
    """The input file of a job created to wait for it: stored, then ``job.input_received``."""
    claims = urls_of(request).open(request.path_params["token"], "upload")
    if claims is None:
        raise Problem(403, "the upload URL is not valid or has expired; GET the job for a fresh one")
    tenant, job_id, file_id = str(claims["t"]), str(claims["j"]), str(claims["f"])
    job = found(request, tenant, job_id)
    if not job.awaiting_upload or job.input is None or job.input["file_id"] != file_id:
        raise Problem(409, f"job {job_id} is not waiting for an upload (it is {job.status.value})")
    settings = request.state.settings
    upload = await read_upload(request, spool_dir(settings), settings.max_file_bytes)
    with discarding(upload.spooled):
        content_type = media_type(request, job.input.get("content_type") or upload.content_type, "/headers/content-type")
        sent_type = upload.content_type.split(";")[0].strip().lower()
        if job.input.get("content_type") and sent_type != content_type.split(";")[0].strip().lower():
            raise Problem(400, f"send the file with Content-Type {content_type}, as upload_headers say",
                          violations=[Violation("/headers/content-type", f"must be {content_type}")])
        filename = clean_filename(job.input.get("filename") or upload.filename, job_id)
        record = await save(store_of(request), upload.spooled, tenant=tenant, content_type=content_type,
                            filename=filename, purpose="input", now=now(), file_id=file_id, job_id=job_id,
                            retention_s=settings.file_retention_s)
    event = new_event("job.input_received", job_id, tenant, {
        "file_id": file_id, "size": record.size, "sha256": record.sha256, "content_type": content_type,
        "filename": filename}, source="/api")
    position = await publish(request, event)
    verdict, why = verdict_at(projection_of(request), job_id, position)
    if verdict is Verdict.REJECTED:
        await keep_the_accepted_input(request, found(request, tenant, job_id), record)
        raise Problem(409, f"the upload was not taken: {why}")
    log.info("job input received job_id=%s file_id=%s size=%d", job_id, file_id, record.size)
    return json_response(file_object(request, record), 200)
