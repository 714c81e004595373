"""Instants as clients write them: ISO 8601 with an offset, held in UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_moment(moment: datetime) -> datetime:
    """An aware datetime in UTC; a ValueError (so a 422) when UTC has no such date, as
    year 1 at +14:00 or year 9999 at -14:00, which Python and the database cannot hold."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("outside the years 1 to 9999 once converted to UTC") from None
