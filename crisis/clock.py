"""Time as the system stores it: aware UTC datetimes (shown in Europe/Oslo by the board)."""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(value: datetime | str) -> datetime:
    """An aware UTC datetime from a datetime or ISO 8601 text; naive values are taken as UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def utcnow() -> datetime:
    """Now, in UTC, at the microsecond precision both backends keep."""
    return datetime.now(UTC)
