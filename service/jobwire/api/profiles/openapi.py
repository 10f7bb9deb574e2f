"""The OpenAPI paths of mounted wire profiles, made from the profiles themselves, so the served
document describes every route the API answers. A dialect's objects are described as objects
(their shape is the profile's, see docs/seed-apis.md); the errors are jobwire's problems."""

from __future__ import annotations

from typing import Any

from jobwire.api.profiles.model import Profile

PROBLEM = {"$ref": "#/components/responses/Problem"}
OBJECT = {"type": "object"}
#: An operation named in a path: as job-submit.json's, less "/" (it would end the segment).
OPERATION = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"}


def profile_paths(profiles: tuple[Profile, ...], root: Profile | None, batch_body: Any) -> dict[str, Any]:
    """Paths for the profiles mounted; a batch route takes ``batch_body``, jobwire's own."""
    paths: dict[str, Any] = {}
    mounts = [(profile, profile.prefix) for profile in profiles] + ([(root, "")] if root is not None else [])
    for profile, prefix in mounts:
        for route in profile.routes:
            path = prefix + route.path
            operation_id = f"{profile.name}{'' if prefix else '_root'}_{route.action}_{route.method.lower()}_{route.path}"
            operation = _operation(profile, route, prefix, operation_id)
            if route.action == "batch":
                operation["requestBody"] = batch_body
            paths.setdefault(path, {})[route.method.lower()] = operation
    return paths


def _operation(profile: Profile, route: Any, prefix: str, operation_id: str) -> dict[str, Any]:
    parameters = []
    if "{id}" in route.path:
        parameters.append({"name": "id", "in": "path", "required": True, "schema": {"type": "string"}})
    if "{operation}" in route.path:
        parameters.append({"name": "operation", "in": "path", "required": True, "schema": OPERATION})
    ok: dict[str, Any] = {"description": f"The job in the {profile.name} dialect",
                          "content": {"application/json": {"schema": OBJECT}}}
    operation: dict[str, Any] = {
        "operationId": "".join(c if c.isalnum() else "_" for c in operation_id),
        "tags": [f"profile: {profile.name}"],
        "summary": f"{profile.title}: {route.action}" + (f" ({prefix or 'at the root'})" if prefix != profile.prefix
                                                          else ""),
        "parameters": parameters,
        "responses": {"200": ok, **{code: PROBLEM for code in ("400", "401", "404", "406", "409", "422", "429", "503")}},
    }
    if route.action in ("submit", "batch"):
        schema = {"$ref": "api/job-submit.json"} if route.body == "jobwire" else {"$ref": "api/profile-body.json"}
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
        if route.action == "submit":  # a batch's items carry their own keys
            operation["parameters"].append({"name": "Idempotency-Key", "in": "header", "required": False,
                                            "schema": {"type": "string", "minLength": 1, "maxLength": 255}})
        operation["responses"].update({"202": ok, "413": PROBLEM, "415": PROBLEM})
        if route.wait_unless:
            operation["x-jobwire-waits-unless"] = route.wait_unless
            operation["description"] = (f"Waits for the job to finish (up to 60 s) unless the body's "
                                        f"`{route.wait_unless}` is true.")
    if route.action == "cancel":
        operation["responses"]["202"] = ok
    if route.stream_result:
        ok["content"]["*/*"] = {"schema": {"type": "string", "format": "binary"}}
        operation["description"] = "A completed job's answer is its result document itself."
    return operation
