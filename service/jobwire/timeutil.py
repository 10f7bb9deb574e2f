"""RFC 3339 UTC timestamps in one canonical form (millisecond precision, ``Z``).

One fixed-width form means stored times compare correctly as strings, which the projection's
time indexes rely on.
"""

from __future__ import annotations

from datetime import UTC, datetime


def format_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def now_utc() -> str:
    return format_utc(datetime.now(UTC))


def parse_utc(text: str) -> datetime:
    """Parse an RFC 3339 time (any offset, any fraction) into an aware UTC datetime."""
    cleaned = text.strip().replace("z", "Z").replace("t", "T")
    if cleaned.endswith("Z"):
        cleaned = cleaned[:-1] + "+00:00"
    date_part, sep, rest = cleaned.partition(".")
    if sep:
        # datetime.fromisoformat accepts at most 6 fraction digits; events may carry 9.
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        cleaned = f"{date_part}.{(digits + '000000')[:6]}{rest}"
    moment = datetime.fromisoformat(cleaned)
    if moment.tzinfo is None:
        raise ValueError(f"time without an offset: {text!r}")
    return moment.astimezone(UTC)


def canonical(text: str) -> str:
    """``text`` re-written in the canonical form; fast path when it already is."""
    if len(text) == 24 and text[-1] == "Z" and text[10] == "T" and text[19] == ".":
        return text
    return format_utc(parse_utc(text))
