"""RFC 3339 UTC timestamps in one canonical form (millisecond precision, ``Z``).

One fixed-width form means stored times compare correctly as strings, which the projection's
time indexes rely on.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from functools import lru_cache

# RFC 3339 section 5.6, ASCII digits only; any number of fraction digits (the event schema caps
# it at 9), of which microseconds are kept. The groups are the hour and the offset's hours and
# minutes, whose ranges datetime.fromisoformat does not check the way RFC 3339 means them.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt](\d{2}):\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-](\d{2}):(\d{2}))",
    re.ASCII,
)


def format_utc(moment: datetime) -> str:
    # Not strftime: "%Y" does not pad years below 1000 on glibc, which breaks the fixed width.
    m = moment.astimezone(UTC)
    return (f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}."
            f"{m.microsecond // 1000:03d}Z")


def now_utc() -> str:
    return format_utc(datetime.now(UTC))


# The canonical form with its clock fields in range: only the date remains to be checked.
_CANONICAL = re.compile(r"(\d{4}-\d{2}-\d{2})T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{3}Z", re.ASCII)


@lru_cache(maxsize=1024)
def _real_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def check_time(text: str) -> None:
    """``ValueError`` unless ``text`` is an RFC 3339 time naming a real moment (as ``parse_utc``).

    Fast for the canonical form every jobwire writer uses: a shape match and a cached date
    check, which is what decoding millions of events at rebuild needs."""
    match = _CANONICAL.fullmatch(text)
    if match is None or not _real_date(match.group(1)):
        parse_utc(text)


def parse_utc(text: str) -> datetime:
    """Parse an RFC 3339 time (any offset, any fraction) into an aware UTC datetime.

    ``ValueError`` for anything that is not a real moment: a malformed text, an impossible date
    (month 13, February 30, hour 24, a leap second), an offset beyond ±23:59, or a moment
    that leaves the years 1 to 9999 once moved to UTC.
    """
    local = _local(text)
    try:
        return local.astimezone(UTC)
    except OverflowError as exc:  # the year leaves 1..9999 once in UTC
        raise ValueError(f"not a real time: {text.strip()[:64]!r} ({exc})") from None


def bound_utc(text: str) -> str:
    """``text`` in the canonical form, for a range bound: a real local time whose moment lies
    before year 1 or after 9999 in UTC is clamped to the first or last moment, since no stored
    time lies beyond them. ``ValueError`` for anything that is no real time."""
    local = _local(text)
    try:
        return format_utc(local.astimezone(UTC))
    except OverflowError:
        return EARLIEST if local.year == 1 else LATEST


EARLIEST = "0001-01-01T00:00:00.000Z"
LATEST = "9999-12-31T23:59:59.999Z"


def _local(text: str) -> datetime:
    """An RFC 3339 time as an aware datetime in its own offset (not yet moved to UTC)."""
    text = text.strip()
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 time with an offset: {text[:64]!r}")
    hour, offset_hours, offset_minutes = match.groups()
    # fromisoformat would take "-00:60" for "-01:00"; the hour is checked here as well, so no
    # Python version's reading of "24:00" matters.
    if int(hour) > 23 or int(offset_hours or 0) > 23 or int(offset_minutes or 0) > 59:
        raise ValueError(f"hour or offset out of range in {text[:64]!r}")
    try:
        return datetime.fromisoformat(text.upper())  # upper(): it takes no "t" or "z"
    except ValueError as exc:  # the date itself
        raise ValueError(f"not a real time: {text[:64]!r} ({exc})") from None


def is_time(value: object) -> bool:
    """Whether ``value`` is an RFC 3339 time naming a real moment (for checking records)."""
    try:
        parse_utc(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, AttributeError):
        return False
    return True


def canonical(text: str) -> str:
    """``text`` re-written in the canonical form; fast path when it already is.

    The fast path trusts the shape alone: events are checked to be real times when decoded.
    """
    if len(text) == 24 and text[-1] == "Z" and text[10] == "T" and text[19] == ".":
        return text
    return format_utc(parse_utc(text))


_AGO = re.compile(r"^([0-9]+)(s|m|h|d)$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def moment_ms(text: str, now_ms: int) -> int:
    """An RFC 3339 time, or a duration ago ("90s", "15m", "2h", "7d"), as unix milliseconds."""
    ago = _AGO.match(text)
    if ago:
        return now_ms - int(ago.group(1)) * _UNIT_MS[ago.group(2)]
    try:
        return int(parse_utc(text).timestamp() * 1000)
    except ValueError:
        raise ValueError(f"{text!r} is neither an RFC 3339 time nor a duration like 15m") from None
