"""Job routes. Reads come from the projection; writes publish an event, then wait until the
projection has applied that very position (read-your-writes), so a GET on this replica right
after a 202 never answers 404."""

from __future__ import annotations

import base64
import binascii
import logging
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from jobwire import events
from jobwire.api.auth import tenant_of
from jobwire.api.bodies import read_json
from jobwire.api.headers import header
from jobwire.api.problems import Problem, log_unavailable, problem_body
from jobwire.api.projection import ListQuery, Projection
from jobwire.api.responses import accepts, json_response, require_json
from jobwire.api.task_view import needs_urls, public_task, shown_task, store_of, urls_of
from jobwire.api.webhooks import check_url
from jobwire.errors import InvalidEvent, LogError, Violation
from jobwire.events import HEARTBEAT, Event, new_event
from jobwire.ids import idempotent_job_id, new_id
from jobwire.lifecycle import Job, Status, Verdict, apply
from jobwire.positions import Position
from jobwire.storage.files import keep_for, new_file_id
from jobwire.storage.files import load as load_file
from jobwire.task import MAX_TASK_BYTES, task_size
from jobwire.timeutil import bound_utc
from jobwire.validation import validator

log = logging.getLogger(__name__)

WAIT_CAP_S = 60.0
READ_YOUR_WRITES_TIMEOUT_S = 5.0


def prefer_wait_s(request: Request) -> float | None:
    """``Prefer: wait=N`` (RFC 7240), capped; None when absent.

    A preference the server cannot honour is ignored, as RFC 7240 asks: other preferences, and
    a wait that is no number of seconds (``Preference-Applied`` then says nothing about it)."""
    for preference in (header(request, b"prefer") or "").split(","):
        name, _, value = preference.strip().partition("=")
        if name.strip().lower() == "wait":
            text = value.strip().strip('"')
            if text.isascii() and text.replace(".", "", 1).isdigit():
                return min(float(text), WAIT_CAP_S)
            return None
    return None


def projection_of(request: Request) -> Projection:
    projection: Projection = request.state.projection
    return projection


async def wait_for_header_position(request: Request, tenant: str) -> None:
    """A read carrying ``Jobwire-Position`` waits (bounded) until that write is visible; the
    wait holds one of the tenant's long-poll slots, like any other waiting request."""
    raw = header(request, b"jobwire-position")
    if raw is None:
        return
    try:
        position = Position.parse(raw)
    except ValueError as exc:
        raise Problem(400, str(exc)) from None
    if not projection_of(request).has_partition(position.partition):
        # Never written by this log: waiting could only end in a timeout.
        raise Problem(422, f"position {position} names a partition the log does not have",
                      violations=[Violation("/headers/Jobwire-Position", "no such partition")])
    if projection_of(request).has_applied(position):
        return
    with request.state.limits.long_poll(tenant):
        if not await projection_of(request).wait_for_position(position, READ_YOUR_WRITES_TIMEOUT_S):
            raise Problem(503, f"position {position} is not applied yet on this replica",
                          headers={"Retry-After": "1"})


def encodable(event: Event, data_at: str = "/data") -> Event:
    """``event`` if the log would take it, else 422. Checked before anything folds the event
    (a time that is no real date breaks the fold); violations point into the request body,
    where the event's ``data`` sits at ``data_at``."""
    try:
        events.encode(event)
    except InvalidEvent as exc:
        violations = [Violation(data_at + v.pointer.removeprefix("/data"), v.message)
                      if v.pointer == "/data" or v.pointer.startswith("/data/") else v for v in exc.violations]
        raise Problem(422, "the event does not match the schema", violations=violations) from None
    return event


async def publish(request: Request, event: Event) -> Position:
    """Publish, then wait until this replica's projection has applied the event."""
    try:
        position: Position = await request.state.publisher.publish(event)
    except InvalidEvent as exc:
        raise Problem(422, "the event does not match the schema", violations=exc.violations) from None
    except LogError as exc:
        raise log_unavailable(exc, f"publish job_id={event.subject} event_id={event.id}") from None
    log.info("event published job_id=%s event_id=%s type=%s position=%s", event.subject, event.id, event.type, position)
    if not await projection_of(request).wait_for_position(position, READ_YOUR_WRITES_TIMEOUT_S):
        raise Problem(
            503, "the event was written but is not visible yet; retry the read with the Jobwire-Position header",
            headers={"Retry-After": "1", "Jobwire-Position": str(position)},
        )
    return position


def verdict_at(projection: Projection, job_id: str, position: Position) -> tuple[Verdict, str | None]:
    entry = projection.history_entry(job_id, position)
    if entry is None:
        return Verdict.DUPLICATE, None  # not in history: the fold saw it as already applied
    return entry.verdict, entry.reason


def found(request: Request, tenant: str, job_id: str) -> Job:
    job = projection_of(request).get(tenant, job_id)
    if job is None:
        raise Problem(404, f"no job {job_id}")
    return job


def task_headers(job: Job, position: Position | None = None) -> dict[str, str]:
    headers = {"ETag": f'"{job.version}"', "Location": f"/v1/jobs/{job.id}"}
    if not job.status.terminal:
        headers["Retry-After"] = "2"
    if position is not None:
        headers["Jobwire-Position"] = str(position)
    return headers


async def wait_for_job(request: Request, job_id: str, wait_s: float, waiting: Callable[[Job], bool]) -> None:
    """Long-poll: return once ``waiting(job)`` is false, the job is gone, or ``wait_s`` passed."""
    clock = request.state.clock
    deadline = clock() + wait_s
    projection = projection_of(request)
    while (job := projection.job(job_id)) is not None and waiting(job):
        remaining = deadline - clock()
        if remaining <= 0 or not await projection.wait_for_change(job_id, remaining):
            return


# --- routes ---------------------------------------------------------------------------------


async def create_job(request: Request, tenant: str, body: dict[str, Any], key: str | None,
                     id_prefix: str = "job") -> tuple[Job, Position | None]:
    """The job ``body`` asks for (a valid submit body), created unless ``key`` names one
    already: the job as its creation made it (``pending``, whatever a fast worker did since;
    for a replay, as it stands now) and where its creation landed (None for a replay).
    Problems: 429 over the quota, 413 too large, 409 a key bound to another request, 503 the
    log unavailable."""
    job_id = idempotent_job_id(tenant, key, id_prefix) if key else new_id(id_prefix)
    projection = projection_of(request)
    existing = projection.get(tenant, job_id)
    position = None
    if existing is None:
        quota = request.state.settings.unfinished_jobs_per_tenant
        if projection.unfinished(tenant) >= quota:
            raise Problem(429, f"this tenant has {quota} unfinished jobs, the most it may have; submit again once "
                          "some have finished", headers={"Retry-After": "5"},
                          extra={"quota": "unfinished_jobs_per_tenant", "limit": quota})
        # The operation's default deadlines (JOBWIRE_JOB_DEADLINES) unless the request sets its own.
        data = {**request.state.settings.deadlines_for(body["operation"]), **body}
        if "input" in body:
            data["input"] = await job_input(request, tenant, body["input"])
        if "webhook_url" in body:
            data["webhook"] = job_callback(request, data.pop("webhook_url"), data.pop("webhook_events", None))
        if key:
            data["idempotency_key"] = key
        event = encodable(new_event("job.created", job_id, tenant, data, source="/api"), data_at="")
        created = apply(None, event).job
        if created is not None and (size := task_size(created)) > MAX_TASK_BYTES:
            # A task this large could never be snapshotted or sent as a webhook: refuse it
            # now, pointing at the larger of the two free-form members.
            biggest = max(("parameters", "metadata"), key=lambda name: len(orjson.dumps(body.get(name))))
            raise Problem(413, f"the task would be {size} bytes, over the {MAX_TASK_BYTES} byte limit",
                          violations=[Violation(f"/{biggest}", "makes the task object too large")])
        position = await publish(request, event)
        if created is None or projection.get(tenant, job_id) is None:  # only if the fold rejected it
            raise Problem(503, "the job was not created; try again", headers={"Retry-After": "1"})
        existing = created
    if key and (existing.operation, existing.parameters, existing.metadata) != (
        body["operation"], body["parameters"], body.get("metadata")
    ):
        # 409: the request is well-formed; it conflicts with what the key is already bound to.
        raise Problem(409, "this Idempotency-Key was already used with a different request; "
                      "operation, parameters and metadata must match the first one",
                      extra={"task": shown_task(request, existing)})
    return existing, position


def job_callback(request: Request, url: str, events: list[str] | None) -> dict[str, Any]:
    """``job.created``'s ``webhook``: the URL checked as an endpoint's is (SSRF policy, https
    outside dev mode), and a secret key to sign with, or nothing is created."""
    if not request.state.settings.secret_key:
        raise Problem(503, "job callbacks need JOBWIRE_SECRET_KEY")
    check_url(request, url, "/webhook_url", "the job's webhook URL")
    return {"url": url, "events": events}


async def job_input(request: Request, tenant: str, asked: dict[str, Any]) -> dict[str, Any]:
    """``job.created``'s ``input`` for the submit body's: a stored file (422 naming the field
    unless the tenant has it), or an upload to come, under a file id chosen now."""
    if "file_id" in asked:
        record = await load_file(store_of(request), tenant, asked["file_id"], datetime.now(UTC))
        if record is None:
            raise Problem(422, f"source file not found: no file {asked['file_id']}",
                          violations=[Violation("/input/file_id", "no such file (it may have expired or been deleted)")])
        await keep_for(store_of(request), record, datetime.now(UTC), request.state.settings.file_retention_s)
        return {"file_id": record.id, "awaiting_upload": False, "content_type": record.content_type,
                "filename": record.filename, "size": record.size, "sha256": record.sha256}
    upload = asked["upload"]
    declared = upload.get("content_type")
    if declared is not None and not request.state.settings.file_type_allowed(declared):
        raise Problem(415, f"files of type {declared.split(';')[0]} are not accepted here",
                      violations=[Violation("/input/upload/content_type", "a media type this deployment does not accept")])
    urls_of(request)  # 503 now, before a job is made whose upload URL could never be signed
    return {"file_id": new_file_id(), "awaiting_upload": True, "content_type": upload.get("content_type"),
            "filename": upload.get("filename"),
            "upload_timeout_s": upload.get("timeout_s", request.state.settings.upload_timeout_s)}


async def submit(request: Request) -> Response:
    tenant = tenant_of(request)
    require_json(request)
    body = await read_json(request, "api/job-submit.json")
    wait_s = prefer_wait_s(request)
    key = header(request, b"idempotency-key")
    if key is not None and not 1 <= len(key) <= 255:
        raise Problem(400, "Idempotency-Key must be 1 to 255 characters")
    # The long-poll slot is taken before the job is created: a 429 after that would leave a
    # job the client never heard of.
    slot = request.state.limits.long_poll(tenant) if wait_s else None
    try:
        created, position = await create_job(request, tenant, body, key)
        if wait_s:
            await wait_for_job(request, created.id, wait_s, lambda job: not job.status.terminal)
    finally:
        if slot is not None:
            slot.release()
    job = projection_of(request).get(tenant, created.id) if wait_s else created
    assert job is not None
    headers = task_headers(job, position)
    if position is None:
        headers["Idempotent-Replayed"] = "true"
    if wait_s is not None:
        headers["Preference-Applied"] = f"wait={wait_s:g}"
    status = 200 if wait_s and job.status.terminal else 202
    return json_response(shown_task(request, job), status, headers)


async def submit_batch(request: Request) -> Response:
    """Up to 100 jobs in one request (``maxItems`` in schemas/api/job-batch.json: a bounded
    request, answered within the request timeout), each with its own idempotency key. The body's
    shape is checked whole (one 422 names every item at fault); then each job is created on its
    own, and the answer lists, in order, each one's task or its problem."""
    tenant = tenant_of(request)
    require_json(request)
    body = await read_json(request, "api/job-batch.json")
    items: list[dict[str, Any]] = body["jobs"]
    violations = [v for index, item in enumerate(items)
                  for v in validator("api/job-submit.json").violations(item["job"], f"/jobs/{index}/job")]
    if violations:
        raise Problem(422, "the body does not match the schema", violations=violations)
    results: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            job, position = await create_job(request, tenant, item["job"], item.get("idempotency_key"))
        except Problem as problem:
            results.append({"index": index, "status": problem.status, "problem": problem_body(problem)})
            continue
        results.append({"index": index, "status": 202 if position is not None else 200, "task": shown_task(request, job),
                        "position": str(position) if position is not None else None})
    return json_response({"object": "list", "data": results})


async def get_job(request: Request) -> Response:
    tenant = tenant_of(request)
    require_json(request)
    await wait_for_header_position(request, tenant)
    job_id = request.path_params["job_id"]
    job = found(request, tenant, job_id)
    wait_s = prefer_wait_s(request)
    etag = header(request, b"if-none-match")
    if wait_s and not job.status.terminal:
        # Long-poll: wait until the job is newer than the version the client already has.
        known = etag.strip().strip('W/').strip('"') if etag else str(job.version)
        with request.state.limits.long_poll(tenant):
            await wait_for_job(request, job_id, wait_s,
                               lambda job: str(job.version) == known and not job.status.terminal)
        job = found(request, tenant, job_id)
    headers = task_headers(job)
    if needs_urls(job):
        # Signed URLs minted for this read: a cached copy would hand out expired ones.
        headers["Cache-Control"] = "no-store"
        return Response(orjson.dumps(shown_task(request, job)), media_type="application/json", headers=headers)
    if etag is not None and headers["ETag"] in [t.strip() for t in etag.split(",")] + ["*"]:
        return Response(status_code=304, headers=headers)
    return Response(encoded_task(job), media_type="application/json", headers=headers)


#: Encoded task objects of the jobs read most recently, by (id, version): a version names one
#: state of a job, so an entry never goes stale; polling clients read the same one many times.
_ENCODED: OrderedDict[tuple[str, int], bytes] = OrderedDict()
ENCODED_TASKS = 2_000


def encoded_task(job: Job) -> bytes:
    key = (job.id, job.version)
    body = _ENCODED.get(key)
    if body is None:
        body = _ENCODED[key] = orjson.dumps(public_task(job))  # no signed URLs: see get_job
        if len(_ENCODED) > ENCODED_TASKS:
            _ENCODED.popitem(last=False)
    return body


def _cursor(key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")


def _parse_cursor(text: str) -> tuple[str, str]:
    try:
        created_at, job_id = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(created_at, str) or not isinstance(job_id, str):
            raise ValueError
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise Problem(422, "the cursor is not one this API returned",
                      violations=[Violation("/query/cursor", "invalid cursor")]) from None
    return created_at, job_id


def _query_time(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    try:
        return bound_utc(value)  # not canonical(): its fast path trusts the shape
    except ValueError:
        raise Problem(422, f"{name} must be an RFC 3339 time",
                      violations=[Violation(f"/query/{name}", f"not an RFC 3339 time: {value!r}")]) from None


async def list_page(request: Request) -> tuple[list[Job], str | None]:
    """The page of the caller's jobs the query parameters ask for (filters, limit, cursor),
    and the cursor of the next page (None on the last)."""
    tenant = tenant_of(request)
    require_json(request)
    await wait_for_header_position(request, tenant)
    params = request.query_params
    status = params.get("status")
    if status is not None and status not in {s.value for s in Status}:
        raise Problem(422, "unknown status", violations=[Violation("/query/status", f"must be one of {[s.value for s in Status]}")])
    limit_text = params.get("limit", "50")
    if not (limit_text.isascii() and limit_text.isdigit()) or not 1 <= int(limit_text) <= 200:
        raise Problem(422, "limit must be 1 to 200", violations=[Violation("/query/limit", "must be an integer from 1 to 200")])
    cursor = params.get("cursor")
    query = ListQuery(
        tenant=tenant,
        status=Status(status) if status else None,
        operation=params.get("operation"),
        created_after=_query_time(request, "created_after"),
        created_before=_query_time(request, "created_before"),
        updated_after=_query_time(request, "updated_after"),
        limit=int(limit_text),
        after_key=_parse_cursor(cursor) if cursor is not None else None,
    )
    page, next_key = projection_of(request).list(query)
    return page, _cursor(next_key) if next_key else None


async def list_jobs(request: Request) -> Response:
    page, next_cursor = await list_page(request)
    return json_response({
        "object": "list",
        "data": [shown_task(request, job) for job in page],
        "has_more": next_cursor is not None,
        "next_cursor": next_cursor,
    })


async def cancel(request: Request) -> Response:
    tenant = tenant_of(request)
    require_json(request)
    reason = None
    if request.method == "POST" and header(request, b"content-length") not in (None, "0"):
        reason = (await read_json(request, "api/job-cancel.json")).get("reason")
    job, position = await request_cancel(request, tenant, request.path_params["job_id"], reason)
    return json_response(shown_task(request, job), 200 if job.status.terminal else 202, task_headers(job, position))


async def request_cancel(request: Request, tenant: str, job_id: str, reason: str | None
                         ) -> tuple[Job, Position | None]:
    """Cancel the job (a pending one at once; a processing one is asked to stop); the job as it
    is then, and where the cancel landed (None when it had been asked already). 404 unknown,
    409 finished or lost to a race."""
    job = found(request, tenant, job_id)
    if job.status.terminal:
        raise Problem(409, f"job {job_id} is {job.status.value}; it can no longer be canceled",
                      extra={"task": shown_task(request, job)})
    position = None
    if not job.cancel_requested or job.status is Status.PENDING:
        kind = "job.canceled" if job.status is Status.PENDING else "job.cancel_requested"
        position = await publish(request, new_event(kind, job_id, tenant, {"reason": reason}, source="/api"))
        verdict, why = verdict_at(projection_of(request), job_id, position)
        if verdict is Verdict.REJECTED:
            raise Problem(409, f"the cancel lost a race with another change: {why}",
                          extra={"task": shown_task(request, found(request, tenant, job_id))})
    return found(request, tenant, job_id), position


#: Most history entries one request returns (and the default).
HISTORY_PAGE = 1000


def history_entry(entry: Any) -> dict[str, Any]:
    return {
        "position": str(entry.position),
        "verdict": entry.verdict.value,
        "reason": entry.reason,
        "event": orjson.loads(entry.raw),
    }


async def job_events(request: Request) -> Response:
    tenant = tenant_of(request)
    await wait_for_header_position(request, tenant)
    job_id = request.path_params["job_id"]
    found(request, tenant, job_id)
    if accepts(request, "text/event-stream") and "text/event-stream" in (header(request, b"accept") or ""):
        from jobwire.api.streams import history_stream

        return history_stream(request, tenant, job_id)
    require_json(request)
    # A job's history grows with its events (up to lifecycle.MAX_EVENTS_PER_JOB accepted, and
    # any number rejected): read in pages, after the position of the last entry read.
    limit_text = request.query_params.get("limit", str(HISTORY_PAGE))
    if not (limit_text.isascii() and limit_text.isdigit()) or not 1 <= int(limit_text) <= HISTORY_PAGE:
        raise Problem(422, f"limit must be 1 to {HISTORY_PAGE}",
                      violations=[Violation("/query/limit", f"must be an integer from 1 to {HISTORY_PAGE}")])
    cursor = request.query_params.get("cursor")
    try:
        after = Position.parse(cursor) if cursor is not None else None
        if after is not None and max(after.partition, after.offset) >= 1 << 62:
            raise ValueError("out of range")
    except ValueError:
        raise Problem(422, "the cursor is not one this API returned",
                      violations=[Violation("/query/cursor", "must be the position of an entry (partition:offset)")]) \
            from None
    limit = int(limit_text)
    entries = projection_of(request).events_of(tenant, job_id, after=after, limit=limit + 1) or []
    more = len(entries) > limit
    entries = entries[:limit]
    return json_response({"object": "list", "data": [history_entry(e) for e in entries], "has_more": more,
                          "next_cursor": str(entries[-1].position) if more else None})


async def job_result(request: Request) -> Response:
    tenant = tenant_of(request)
    await wait_for_header_position(request, tenant)
    job = found(request, tenant, request.path_params["job_id"])
    if job.status is not Status.COMPLETED:
        raise Problem(409, f"job {job.id} is {job.status.value}; a result exists once it is completed",
                      headers={"Retry-After": "2"} if not job.status.terminal else None)
    if job.result_url:
        # The URL came from whoever completed the job: redirect only to an https host the
        # operator allows, or this route is an open redirect under the API's name.
        if redirect_allowed(job.result_url, request.state.settings.result_redirect_hosts):
            return RedirectResponse(job.result_url, status_code=303)
        require_json(request)
        return json_response({"object": "result_link", "result_url": job.result_url,
                              "result_url_expires_at": job.result_url_expires_at,
                              "result_checksum": job.result_checksum, "result": job.result})
    require_json(request)
    return json_response(job.result)


def redirect_allowed(url: str, hosts: tuple[str, ...]) -> bool:
    """An https URL whose host is listed (``*.example.com`` takes every subdomain)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    return parts.scheme == "https" and bool(host) and any(
        host == allowed or (allowed.startswith("*.") and host.endswith(allowed[1:])) for allowed in hosts)


async def post_event(request: Request) -> Response:
    tenant = tenant_of(request)
    require_json(request)
    body = await read_json(request, "api/job-event-post.json")
    job_id = request.path_params["job_id"]
    job = found(request, tenant, job_id)
    data = body.get("data", {})
    violations = validator(f"data/{body['type']}.json").violations(data, prefix="/data")
    if violations:
        raise Problem(422, f"data does not match the {body['type']} schema", violations=violations)
    event = encodable(new_event(body["type"], job_id, tenant, data, source=body.get("source", "/api/events"),
                                event_id=body.get("id")))
    expected = apply(job, event)
    if expected.verdict is Verdict.REJECTED:
        raise Problem(409, expected.reason or "not allowed now", extra={"task": shown_task(request, job)})
    if expected.verdict is Verdict.DUPLICATE:
        return json_response(shown_task(request, job), 200, task_headers(job))
    if expected.job is not None and (size := task_size(expected.job)) > MAX_TASK_BYTES:
        # The dispatcher sets such a job's terminal event aside: refuse it here, with the reason.
        raise Problem(413, f"the task would be {size} bytes, over the {MAX_TASK_BYTES} byte limit",
                      violations=[Violation("/data", "makes the task object too large")])
    position = await publish(request, event)
    if event.type == HEARTBEAT:  # kept out of history: ask the fold what it made of it now
        after = apply(found(request, tenant, job_id), event)
        verdict, why = after.verdict, after.reason
    else:
        verdict, why = verdict_at(projection_of(request), job_id, position)
    if verdict is Verdict.REJECTED:
        raise Problem(409, why or "not allowed now", extra={"task": shown_task(request, found(request, tenant, job_id))})
    job = found(request, tenant, job_id)
    return json_response(shown_task(request, job), 202, task_headers(job, position))
