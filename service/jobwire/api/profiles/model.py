"""Wire profiles: another job API's dialect, as data, over the same jobs.

A profile (one YAML file beside this module) says where its routes are and what each does
(submit, get, list, cancel, the result), and how a task object looks in that dialect: the
status vocabulary, which fields under which names, an envelope. Rendering is pure: a task
object in, the dialect's object out. Nothing here knows any one seed; adding a dialect is
adding a file.

Field rules, the value of each output field:
- ``"a.b"``: the task object's field at that dotted path (``$status``: the mapped status,
  ``$task``: the whole task object);
- ``{path: "a.b", default: …}``, ``{const: …}``, ``{fields: {…}}`` (a nested object of rules);
- any of those with ``when: [statuses]`` (jobwire statuses): the field only in those;
- a list of rules: the first whose ``when`` holds.

Status rules, the dialect's name for each jobwire status: a string, or
``{by: "a.b", cases: {value: name}, present: name, default: name}`` to tell apart what jobwire
keeps in one status (Knowhere's ``waiting-file`` is a pending job with an upload URL;
``converting`` and ``running`` are stages of a processing one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from jobwire.errors import ConfigError
from jobwire.lifecycle import Status
from jobwire.validation import schema_dir

PROFILE_DIR = schema_dir() / "profiles"
STATUSES = tuple(status.value for status in Status)
ACTIONS = ("submit", "get", "list", "cancel", "batch")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_MISSING = object()


@dataclass(frozen=True, slots=True)
class ProfileRoute:
    """One route of a dialect: ``path`` under the profile's prefix, what it does, and for a
    submit where the operation comes from (fixed, or the ``{operation}`` path parameter) and
    what the body is (the job's parameters, or a jobwire submit body)."""

    method: str
    path: str
    action: str
    operation: str | None = None
    body: str = "parameters"
    #: Body members that are the dialect's switches, not the job's parameters.
    drop: tuple[str, ...] = ()
    #: A body member that asks for the asynchronous answer; when it is not true, the submit
    #: waits for the job to finish (up to the long-poll cap) and answers the full object.
    wait_unless: str | None = None
    #: For a get: a finished job's result document is the answer itself (a stream).
    stream_result: bool = False
    #: For a submit: when the body has these members with these values, the job waits for its
    #: input file, uploaded to the URL its answer shows (``{when: {...}, content_type: <member>,
    #: filename: <member>}``).
    upload: Mapping[str, Any] | None = None
    #: For a submit: the body member that names a stored file as the job's input.
    input_file: str | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    title: str
    prefix: str
    routes: tuple[ProfileRoute, ...]
    status: Mapping[str, Any]
    fields: Any
    submit_fields: Any = None
    envelope: str | None = None
    omit_null: bool = False
    id_prefix: str = "job"
    #: Where a finished job's result document is, for a route with ``stream_result``.
    document: Mapping[str, str] = field(default_factory=dict)

    # --- rendering --------------------------------------------------------------------------

    def status_of(self, task: Mapping[str, Any]) -> Any:
        rule = self.status[task["status"]]
        if isinstance(rule, str):
            return rule
        value = lookup(task, rule["by"])
        # Only a scalar can name a case: the value may come from the tenant (metadata).
        if isinstance(value, str | int | float) and value in rule.get("cases", {}):
            return rule["cases"][value]
        if value is not None and "present" in rule:
            return rule["present"]
        return rule["default"]

    def render(self, task: Mapping[str, Any], fields: Any = None) -> Any:
        """The task object in this dialect (``fields``: another set of field rules, such as
        the submit answer's)."""
        rendered = self._value(task, self.fields if fields is None else fields)
        return None if rendered is _MISSING else rendered

    def wrap(self, body: Any) -> Any:
        return {self.envelope: body} if self.envelope else body

    def _value(self, task: Mapping[str, Any], rule: Any) -> Any:
        if isinstance(rule, str):
            if rule == "$status":
                return self.status_of(task)
            if rule == "$task":
                return dict(task)
            return lookup(task, rule)
        if isinstance(rule, list):
            for alternative in rule:
                value = self._value(task, alternative)
                if value is not _MISSING:
                    return value
            return _MISSING
        if "when" in rule and task["status"] not in rule["when"]:
            return _MISSING
        if "const" in rule:
            return rule["const"]
        if "fields" in rule:
            nested = {name: self._value(task, sub) for name, sub in rule["fields"].items()}
            kept = {name: value for name, value in nested.items()
                    if value is not _MISSING and not (self.omit_null and value is None)}
            # A dialect that leaves out what is unknown leaves out an object with nothing in it
            # (Knowhere shows `progress` only once there is some): a client that finds the key
            # reads its members.
            return _MISSING if self.omit_null and not kept else kept
        value = self._value(task, rule["path"])
        return rule.get("default", value) if value is None else value


def lookup(task: Mapping[str, Any], path: str) -> Any:
    value: Any = task
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


# --- loading -------------------------------------------------------------------------------


def available() -> list[str]:
    return sorted(path.stem for path in PROFILE_DIR.glob("*.yaml"))


def load_profile(name: str) -> Profile:
    """The profile ``name`` from its file, checked; a ConfigError names what is wrong."""
    path = PROFILE_DIR / f"{name}.yaml"
    if name not in available():
        raise ConfigError("JOBWIRE_PROFILES", f"no wire profile {name!r}; there are {', '.join(available())}")
    data = yaml.safe_load(path.read_text())
    where = f"wire profile {name} ({path.name})"
    try:
        return _profile(name, data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError("JOBWIRE_PROFILES", f"{where}: {exc}") from None


def _profile(name: str, data: Mapping[str, Any]) -> Profile:
    prefix = str(data["prefix"])
    if not prefix.startswith("/") or prefix.endswith("/"):
        raise ValueError(f"prefix {prefix!r} must start with '/' and not end with one")
    status = data["status"]
    missing = set(STATUSES) - set(status)
    if missing:
        raise ValueError(f"status names no value for {sorted(missing)}")
    for rule in status.values():
        _check_status_rule(rule)
    fields = _object_rule(data["fields"], "fields")
    submit_fields = _object_rule(data["submit_fields"], "submit_fields") if data.get("submit_fields") else None
    routes = tuple(_route(route) for route in data["routes"])
    if not any(route.action == "get" for route in routes):
        raise ValueError("a profile needs a get route")
    return Profile(name, str(data["title"]), prefix, routes, status, fields, submit_fields,
                   data.get("envelope"), bool(data.get("omit_null", False)), str(data.get("id_prefix", "job")),
                   dict(data.get("document") or {}))


def _route(data: Mapping[str, Any]) -> ProfileRoute:
    method, action, path = str(data["method"]).upper(), str(data["action"]), str(data["path"])
    if method not in METHODS or action not in ACTIONS or not path.startswith("/"):
        raise ValueError(f"route {data!r}: method one of {METHODS}, action one of {ACTIONS}, a path from '/'")
    if action in ("get", "cancel") and "{id}" not in path:
        raise ValueError(f"route {path}: a {action} route names the job as {{id}}")
    operation = data.get("operation")
    body = str(data.get("body", "parameters"))
    if action == "submit" and body == "parameters" and operation is None and "{operation}" not in path:
        raise ValueError(f"route {path}: a submit route fixes its operation or takes it from {{operation}}")
    if body not in ("parameters", "jobwire"):
        raise ValueError(f"route {path}: body is 'parameters' or 'jobwire'")
    upload = data.get("upload")
    if upload is not None and (not isinstance(upload, Mapping) or not isinstance(upload.get("when"), Mapping)):
        raise ValueError(f"route {path}: upload is {{when: {{member: value}}, content_type: member, filename: member}}")
    return ProfileRoute(method, path, action, operation, body, tuple(data.get("drop", ())), data.get("wait_unless"),
                        bool(data.get("stream_result", False)), upload, data.get("input_file"))


def _object_rule(value: Any, where: str) -> Any:
    """A profile's ``fields``: ``$task``, or the dialect's object as a mapping of field rules."""
    if value == "$task":
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: '$task' or a mapping of field names to rules")
    rule = {"fields": dict(value)}
    _check_rule(rule, where)
    return rule


def _check_status_rule(rule: Any) -> None:
    if isinstance(rule, str):
        return
    if not isinstance(rule, Mapping) or not isinstance(rule.get("by"), str) or "default" not in rule:
        raise ValueError(f"status rule {rule!r}: a name, or {{by, cases?, present?, default}}")


def _check_rule(rule: Any, where: str) -> None:
    if isinstance(rule, str):
        return
    if isinstance(rule, list):
        for index, alternative in enumerate(rule):
            _check_rule(alternative, f"{where}[{index}]")
        return
    if not isinstance(rule, Mapping) or not ({"path", "const", "fields"} & set(rule)):
        raise ValueError(f"{where}: a field rule is a path, or an object with path, const or fields")
    if not isinstance(rule.get("when", []), list):
        raise ValueError(f"{where}: when is a list of jobwire statuses")
    unknown = set(rule.get("when", ())) - set(STATUSES)
    if unknown:
        raise ValueError(f"{where}: when names {sorted(unknown)}, which are no jobwire statuses")
    for name, sub in (rule.get("fields") or {}).items():
        _check_rule(sub, f"{where}.{name}")


def load_profiles(names: Sequence[str]) -> tuple[Profile, ...]:
    profiles = tuple(load_profile(name) for name in names)
    prefixes = [profile.prefix for profile in profiles]
    if len(set(prefixes)) != len(prefixes):
        raise ConfigError("JOBWIRE_PROFILES", "two profiles share one prefix")
    return profiles
