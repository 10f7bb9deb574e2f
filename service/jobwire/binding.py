"""The CloudEvents Kafka protocol binding (v1.0.2), both content modes, for ``jobs.events``.

- Structured mode: the whole event is the record value, and the ``content-type`` header is
  ``application/cloudevents+json``. jobwire writes this mode, with that header.
- Binary mode: the attributes are ``ce_``-prefixed headers, the data alone is the value and
  ``content-type`` is the data's media type. CloudEvents SDKs in other languages write this
  mode by default, so jobwire reads it too.

A record is binary when it has a ``ce_specversion`` header (the binding's own test) and its
``content-type`` is not the structured one; every other record is read as structured, which
includes jobwire's records from before the header existed. Either way the result is the same
validated :class:`~jobwire.events.Event`, or :class:`~jobwire.errors.InvalidEvent` saying why.
"""

from __future__ import annotations

from collections.abc import Sequence

from jobwire.errors import InvalidEvent, Violation
from jobwire.events import Event, decode, from_document, json_value

CONTENT_TYPE = "content-type"
STRUCTURED = "application/cloudevents+json"
#: The header every structured record jobwire writes carries.
STRUCTURED_HEADERS: list[tuple[str, bytes]] = [(CONTENT_TYPE, STRUCTURED.encode())]
_PREFIX = "ce_"
#: Attribute headers a binary record may bring (more than an event has, so a record made of
#: thousands of headers is refused before any work).
_MAX_ATTRIBUTES = 32
_JSON_TYPES = ("application/json",)

Headers = Sequence[tuple[str, bytes]]


def is_binary(headers: Headers) -> bool:
    has_version = False
    for name, value in headers:
        lowered = name.lower()
        if lowered == CONTENT_TYPE and _media_type(value).startswith(STRUCTURED):
            return False
        if lowered == "ce_specversion":
            has_version = True
    return has_version


def decode_record(value: bytes | None, headers: Headers) -> Event:
    """A record of ``jobs.events`` in either content mode as a validated event."""
    if not headers or not is_binary(headers):
        return decode(value)
    return _binary(value, headers)


def _binary(value: bytes | None, headers: Headers) -> Event:
    attributes: dict[str, object] = {}
    content_type = None
    for name, raw in headers:
        lowered = name.lower()
        if lowered == CONTENT_TYPE:
            content_type = _media_type(raw)
        elif lowered.startswith(_PREFIX):
            if len(attributes) >= _MAX_ATTRIBUTES:
                raise InvalidEvent([Violation("", f"binary-mode record has over {_MAX_ATTRIBUTES} ce_ headers")])
            try:
                attributes[lowered[len(_PREFIX):]] = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidEvent([Violation(f"/{lowered[len(_PREFIX):]}",
                                              f"header {name} is not UTF-8")]) from None
    if "data" in attributes or "datacontenttype" in attributes:
        # The binding carries the data in the value and its type in content-type only.
        raise InvalidEvent([Violation("", "binary-mode record has a ce_data or ce_datacontenttype header")])
    if content_type not in (*_JSON_TYPES, None):
        raise InvalidEvent([Violation("/datacontenttype", f"data must be application/json, not {content_type!r}")])
    data = json_value(value, "/data", "binary-mode record has no value (the event's data)")
    return from_document({**attributes, "datacontenttype": "application/json", "data": data})


def _media_type(raw: bytes) -> str:
    """``application/json; charset=utf-8`` -> ``application/json`` (lower case)."""
    return raw.decode("latin-1").split(";", 1)[0].strip().lower()
