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
