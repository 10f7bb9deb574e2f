from __future__ import annotations

import pytest

from jobwire.timeutil import canonical, parse_utc


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-23T10:00:05.123Z", "2026-11-23T10:00:05.123Z"),
        ("2026-11-23T10:00:05Z", "2026-11-23T10:00:05.000Z"),
        ("2026-11-23t10:00:05.1z", "2026-11-23T10:00:05.100Z"),
        ("2026-11-23T12:00:05.123456789+02:00", "2026-11-23T10:00:05.123Z"),
    ],
)
def test_canonical(text: str, expected: str) -> None:
    assert canonical(text) == expected


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_utc("2026-11-23T10:00:05")


@pytest.mark.parametrize(
    "text",
    [
        "2026-13-45T10:00:00Z",  # month 13
        "2026-02-29T10:00:00Z",  # not a leap year
        "2026-11-23T24:00:00Z",
        "2026-11-23T23:59:60Z",  # a leap second: datetime has no room for it
        "0000-01-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",  # year 0 once in UTC
        "9999-12-31T23:59:59-01:00",  # year 10000 once in UTC
        "2026-11-23T10:00:00+24:00",
        "2026-11-23T10:00:00-00:60",
        "2026-13-45T10:00:00.000Z",  # the canonical shape is no excuse
        "２０２６-11-23T10:00:00Z",  # digits, but not ASCII ones
        "2026-11-23 10:00:00Z",
        "2026-W47-1T10:00:05.123Z",  # ISO 8601 week date: not RFC 3339
    ],
)
def test_impossible_times_are_value_errors(text: str) -> None:
    with pytest.raises(ValueError):
        parse_utc(text)


def test_years_below_1000_keep_the_fixed_width() -> None:
    assert canonical("0005-01-01T00:00:00Z") == "0005-01-01T00:00:00.000Z"
    assert canonical("9999-12-31T23:59:59.999999+00:00") == "9999-12-31T23:59:59.999Z"
