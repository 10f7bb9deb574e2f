"""Compiled validators for the JSON Schemas in ``schemas/`` (the single source of truth).

Errors come back as :class:`~jobwire.errors.Violation` values with JSON pointers to the field
at fault, the form problem+json responses and quarantine headers both use.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson

from jobwire.errors import Violation


def schema_dir() -> Path:
    """The schemas folder: inside the installed wheel, or at the root of a source checkout."""
    packaged = Path(__file__).with_name("schemas")
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "schemas"


@cache
def load_schema(relative: str) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads((schema_dir() / relative).read_bytes())
    return document


class SchemaValidator:
    """One compiled schema; ``violations(doc, prefix)`` lists what is wrong with ``doc``."""

    __slots__ = ("_validator", "is_valid")

    def __init__(self, schema: dict[str, Any]) -> None:
        self._validator = jsonschema_rs.validator_for(schema)
        # The compiled check itself, without a Python wrapper: it runs once per record read.
        self.is_valid: Callable[[Any], bool] = self._validator.is_valid

    def violations(self, document: Any, prefix: str = "") -> list[Violation]:
        found = []
        try:
            for error in self._validator.iter_errors(document):
                path = list(error.instance_path)
                kind = error.kind
                # Point at the field itself, not its parent, where the schema names one.
                if isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
                    path.append(kind.property)
                elif isinstance(kind, jsonschema_rs.ValidationErrorKind.AdditionalProperties) and len(kind.unexpected) == 1:
                    path.append(kind.unexpected[0])
                found.append(Violation(prefix + pointer(path), error.message))
        except ValueError as exc:
            # jsonschema-rs gives up on a document nested too deep to copy into an error, and on
            # Python values JSON has no form for (a set, an int key): still a violation, never a crash.
            found.append(Violation(prefix, f"cannot be checked: {exc}"))
        return found


def pointer(path: list[str | int]) -> str:
    """RFC 6901 JSON pointer for a path of keys and indexes."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


@cache
def validator(relative: str) -> SchemaValidator:
    return SchemaValidator(load_schema(relative))


def depth_violation(document: Any, limit: int) -> Violation | None:
    """The first container in ``document`` nested deeper than ``limit`` levels (the document
    itself is level 1); None when there is none.

    Cheap when there is none, the usual case: one compiled check walks the document in Rust.
    Only a document that fails is walked here, iteratively (no stack to exhaust), to name the place.
    """
    try:
        if _shallow_enough(limit)(document):
            return None
    except ValueError:  # deeper than the schema library goes, or not JSON data: the walk decides
        pass
    stack: list[tuple[Any, int, tuple[str | int, ...]]] = [(document, 1, ())]
    while stack:
        node, depth, path = stack.pop()
        if depth > limit:
            return Violation(pointer(list(path)), f"nested deeper than the {limit} level limit")
        children = node.items() if type(node) is dict else enumerate(node) if type(node) is list else ()
        for key, child in children:
            if type(child) is dict or type(child) is list:
                stack.append((child, depth + 1, (*path, key)))
    return None


@cache
def _shallow_enough(limit: int) -> Callable[[Any], bool]:
    """A compiled check that no container nests deeper than ``limit`` (the root is level 1).

    Level ``k`` constrains the members of a container at level ``k``; past the limit, a value
    may not be a container at all.
    """
    levels: dict[str, Any] = {f"l{limit + 1}": {"not": {"type": ["object", "array"]}}}
    for k in range(limit, 0, -1):
        deeper = {"$ref": f"#/$defs/l{k + 1}"}
        levels[f"l{k}"] = {"additionalProperties": deeper, "items": deeper}
    return SchemaValidator({"$defs": levels, "$ref": "#/$defs/l1"}).is_valid


#: Per field of a record: a check of its value, and what it must be (for the error).
FieldChecks = dict[str, tuple[Callable[[Any], bool], str]]


def checked_record(raw: bytes, fields: FieldChecks, what: str, *, max_depth: int | None = None) -> dict[str, Any]:
    """A record that must be a JSON object (no deeper than ``max_depth``) whose named fields
    pass their checks; ``ValueError`` saying what is wrong. Fields not named are not checked."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"an {what} record must be a JSON object")
    if max_depth is not None:
        too_deep = depth_violation(data, max_depth)
        if too_deep is not None:
            raise ValueError(f"{too_deep.pointer[:200]}: {too_deep.message}")
    for name, (valid, expected) in fields.items():
        if name in data and not valid(data[name]):
            raise ValueError(f"{what} field {name} must be {expected}")
    return data
