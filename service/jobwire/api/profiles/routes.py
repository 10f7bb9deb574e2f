"""A wire profile's routes: the same handlers for every dialect, shaped by its profile.

Each route does what its jobwire counterpart does (the same auth, limits, idempotency, quotas
and log writes, through the same helpers); only the request it reads and the object it answers
change. Errors stay problem+json: the seeds' clients read status codes, not error bodies.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jobwire.api.auth import tenant_of
from jobwire.api.bodies import read_json
from jobwire.api.files import stream_file
from jobwire.api.headers import header
from jobwire.api.jobs import (
    WAIT_CAP_S,
    create_job,
    found,
    list_page,
    request_cancel,
    submit_batch,
    task_headers,
    wait_for_job,
)
from jobwire.api.problems import Problem
from jobwire.api.profiles.model import Profile, ProfileRoute, lookup
from jobwire.api.responses import json_response, require_json
from jobwire.api.routing import Handler, path_template, resource
from jobwire.api.task_view import found_file, shown_task
from jobwire.lifecycle import Job, Status
from jobwire.task import task_object
from jobwire.validation import validator


def profile_routes(profile: Profile, prefix: str | None = None) -> list[Route]:
    """The profile's routes under ``prefix`` (its own by default; "" at the root)."""
    base = profile.prefix if prefix is None else prefix
    by_path: dict[str, dict[str, Handler]] = {}
    for route in profile.routes:
        by_path.setdefault(route.path, {})[route.method] = _handler(profile, route)
    return [resource(base + path, name=f"{profile.name} {path}", **methods) for path, methods in by_path.items()]


def root_conflicts(profile: Profile, own: list[Route]) -> list[str]:
    """The routes of jobwire's own (``own``) that ``profile``, mounted at the root, would take
    over without meaning to: a path of another template that one of its paths matches (a
    ``/v1/{operation}`` would swallow ``/v1/jobs``). Its own templates replacing jobwire's of
    the same shape (``/v1/jobs/{id}``) are what a dialect at the root is for."""
    conflicts = []
    for route in profile_routes(profile, ""):
        for other in own:
            sample = re.sub(r"\{[^}]+\}", "x", other.path)
            if route.path_regex.match(sample) and path_template(route.path) != path_template(other.path):
                conflicts.append(f"{route.path} would answer for {other.path}")
    return conflicts


def _handler(profile: Profile, route: ProfileRoute) -> Handler:
    if route.action == "submit":
        return lambda request: submit(profile, route, request)
    if route.action == "get":
        return lambda request: get(profile, route, request)
    if route.action == "cancel":
        return lambda request: cancel(profile, request)
    if route.action == "list":
        return lambda request: list_jobs(profile, request)
    return submit_batch


def _location(profile: Profile, job: Job) -> str:
    get = next(route for route in profile.routes if route.action == "get")
    return profile.prefix + get.path.replace("{id}", job.id)


def _input(route: ProfileRoute, raw: dict[str, Any]) -> dict[str, Any]:
    """The job's ``input`` as the dialect asks for it: an upload to come, or a stored file."""
    if route.upload is not None and all(raw.get(k) == v for k, v in route.upload["when"].items()):
        upload = {name: raw[member] for name in ("content_type", "filename")
                  if isinstance(member := route.upload.get(name), str) and isinstance(raw.get(member), str)}
        return {"input": {"upload": upload}}
    if route.input_file is not None and isinstance(raw.get(route.input_file), str):
        return {"input": {"file_id": raw[route.input_file]}}
    return {}


def _answer(request: Request, profile: Profile, job: Job, status: int, fields: Any = None, **extra: str) -> Response:
    headers = {**task_headers(job), "Location": _location(profile, job), **extra}
    return json_response(profile.wrap(profile.render(shown_task(request, job), fields)), status, headers)


async def submit(profile: Profile, route: ProfileRoute, request: Request) -> Response:
    tenant = tenant_of(request)
    require_json(request)
    if route.body == "jobwire":
        raw = body = await read_json(request, "api/job-submit.json")
    else:
        raw = await read_json(request, "api/profile-body.json")
        operation = route.operation or request.path_params["operation"]
        body = {"operation": operation, "parameters": {k: v for k, v in raw.items() if k not in route.drop}}
        body.update(_input(route, raw))
        violations = validator("api/job-submit.json").violations(body)
        if violations:
            raise Problem(422, "the job this asks for is not valid", violations=violations)
    key = header(request, b"idempotency-key")
    if key is not None and not 1 <= len(key) <= 255:
        raise Problem(400, "Idempotency-Key must be 1 to 255 characters")
    wait = route.wait_unless is not None and raw.get(route.wait_unless) is not True
    slot = request.state.limits.long_poll(tenant) if wait else None
    try:
        job, position = await create_job(request, tenant, body, key, profile.id_prefix)
        if wait:
            await wait_for_job(request, job.id, WAIT_CAP_S, lambda current: not current.status.terminal)
            job = found(request, tenant, job.id)
    finally:
        if slot is not None:
            slot.release()
    extra = {"Jobwire-Position": str(position)} if position is not None else {"Idempotent-Replayed": "true"}
    if wait and job.status.terminal:
        return _answer(request, profile, job, 200, **extra)  # the synchronous answer: the whole object
    return _answer(request, profile, job, 202, profile.submit_fields, **extra)


async def get(profile: Profile, route: ProfileRoute, request: Request) -> Response:
    tenant = tenant_of(request)
    job = found(request, tenant, request.path_params["id"])
    if route.stream_result and job.status is Status.COMPLETED and job.result_file is not None:
        return await stream_file(request, await found_file(request, tenant, job.result_file["id"]))
    if route.stream_result and job.status is Status.COMPLETED:
        document = _document(profile, job)
        if document is not None:
            return document
    require_json(request)
    return _answer(request, profile, job, 200)


def _document(profile: Profile, job: Job) -> Response | None:
    """A finished job's result document as the answer itself (Syncfusion's "the generated
    document from the same endpoint"), from where the profile says the worker put it; None
    when the result holds none (the job is then answered as an object, status completed)."""
    task = task_object(job)
    content = lookup(task, profile.document.get("content", ""))
    if not isinstance(content, str):
        return None
    try:
        data = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        raise Problem(502, f"the result document of job {job.id} is not base64") from None
    media_type = lookup(task, profile.document.get("content_type", "")) or "application/octet-stream"
    filename = str(lookup(task, profile.document.get("filename", "")) or f"{job.id}")
    safe = "".join(c if c.isalnum() or c in "._- " else "_" for c in filename)[:200] or job.id
    return Response(data, media_type=str(media_type), headers={
        "Content-Disposition": f'attachment; filename="{safe}"', "ETag": f'"{job.version}"'})


async def cancel(profile: Profile, request: Request) -> Response:
    tenant = tenant_of(request)
    require_json(request)
    job, position = await request_cancel(request, tenant, request.path_params["id"], None)
    extra = {"Jobwire-Position": str(position)} if position is not None else {}
    return _answer(request, profile, job, 200 if job.status.terminal else 202, **extra)


async def list_jobs(profile: Profile, request: Request) -> Response:
    page, next_cursor = await list_page(request)
    views = [profile.render(shown_task(request, job)) for job in page]
    body = {profile.envelope or "data": views, "has_more": next_cursor is not None, "next_cursor": next_cursor}
    return json_response(body)
