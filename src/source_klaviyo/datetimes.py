"""Parsing and formatting of Klaviyo and legacy cursor values.

Klaviyo writes `2024-01-01T00:00:00+00:00`; older connector versions saved cursors as
`...Z`, with a space separator, without a zone, with fractional seconds, or as epoch seconds.
Everything is normalised to aware UTC datetimes, and written back in Klaviyo's own form.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_EPOCH_DIGITS = re.compile(r"^-?\d{9,11}(\.\d+)?$")
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_datetime(value: str | int | float) -> datetime:
    """Parse any cursor value we may meet into an aware UTC datetime; ValueError if it is none.

    >>> format_datetime(parse_datetime("2120-10-10 00:00:00"))
    '2120-10-10T00:00:00+00:00'
    >>> format_datetime(parse_datetime(1650000000))
    '2022-04-15T05:20:00+00:00'
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a datetime")
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, tz=UTC)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a datetime")
    text = value.strip()
    if _EPOCH_DIGITS.match(text):
        return datetime.fromtimestamp(float(text), tz=UTC)
    if _DATE_ONLY.match(text):
        text += "T00:00:00"
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 datetime") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_datetime(moment: datetime) -> str:
    """Klaviyo's own form at second precision: `2024-01-01T00:00:00+00:00`."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def utc_now() -> datetime:
    return datetime.now(UTC)


def floor_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


ONE_SECOND = timedelta(seconds=1)
