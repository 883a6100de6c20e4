"""The evidence store: every raw event kept once, as it arrived, beside the log it led to."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from crisis.clock import as_utc, utcnow
from crisis.log.append import json_safe
from crisis.log.tables import recorder


async def store_raw_event(
    session: AsyncSession, envelope: Mapping[str, Any], incident_id: str | None = None
) -> bool:
    """Insert the event into the evidence store once; True when it was new."""
    values = {
        "source": str(envelope["source"]),
        "id": str(envelope["id"]),
        "type": str(envelope.get("type", "")),
        "unit": envelope.get("unit") or envelope.get("subject"),
        "exercise": envelope.get("exercise"),
        "time": _parse_time(envelope.get("time")),
        "received_at": utcnow(),
        "incident_id": incident_id,
        "envelope": json_safe(envelope),
    }
    connection = await session.connection()
    inserted = await connection.run_sync(
        lambda conn: recorder(conn).insert_raw_events(conn, [values])
    )
    return bool(inserted)


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return as_utc(value)
        except ValueError:
            return None
    return None
