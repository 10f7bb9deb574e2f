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
        for error in self._validator.iter_errors(document):
            path = list(error.instance_path)
            kind = error.kind
            # Point at the field itself, not its parent, where the schema names one.
            if isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
                path.append(kind.property)
            elif isinstance(kind, jsonschema_rs.ValidationErrorKind.AdditionalProperties) and len(kind.unexpected) == 1:
                path.append(kind.unexpected[0])
            found.append(Violation(prefix + pointer(path), error.message))
        return found


def pointer(path: list[str | int]) -> str:
    """RFC 6901 JSON pointer for a path of keys and indexes."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


@cache
def validator(relative: str) -> SchemaValidator:
    return SchemaValidator(load_schema(relative))
