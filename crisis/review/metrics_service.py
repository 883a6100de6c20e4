"""Reading the response metrics from the database: one incident, or many aggregated.

Keyword-only service functions over an ``AsyncSession``; the computation is the pure
:mod:`crisis.review.metrics`. Who may see which incidents is the caller's ``scope`` (an
object with ``narrow(select)``, as ``crisis.accounts.service.Scope``), applied in SQL.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from crisis import log
from crisis.clock import utcnow
from crisis.log.models import Incident, LogEntry
from crisis.review.metrics import IncidentMetrics, aggregate, incident_metrics


class ScopeLike(Protocol):
    def narrow(self, stmt: SelectOfScalar[Incident]) -> SelectOfScalar[Incident]: ...


async def metrics_for_incident(
    session: AsyncSession,
    *,
    incident: Incident,
    regions: Mapping[str, str],
    now: datetime | None = None,
) -> IncidentMetrics:
    """One incident's metrics (its whole log read once). ``regions``: unit id → region id."""
    entries = await log.timeline(session, incident.id)
    return incident_metrics(
        incident=incident,
        entries=entries,
        now=now or utcnow(),
        region=regions.get(incident.unit),
    )


async def incident_rows(
    session: AsyncSession,
    *,
    scope: ScopeLike,
    regions: Mapping[str, str],
    start: datetime | None = None,
    end: datetime | None = None,
    unit: str | None = None,
    region: str | None = None,
    incident_type: str | None = None,
    now: datetime | None = None,
) -> list[IncidentMetrics]:
    """The metrics of every real incident in ``scope`` opened in [start, end) that matches.

    Exercises never enter statistics. Two queries: the incidents, then their entries in one
    ordered read (only the columns the metrics need).
    """
    stmt = select(Incident).where(col(Incident.exercise).is_(None))
    if start is not None:
        stmt = stmt.where(col(Incident.opened_at) >= start)
    if end is not None:
        stmt = stmt.where(col(Incident.opened_at) < end)
    if unit is not None:
        stmt = stmt.where(Incident.unit == unit)
    if region is not None:
        stmt = stmt.where(col(Incident.unit).in_([u for u, r in regions.items() if r == region]))
    if incident_type is not None:
        stmt = stmt.where(Incident.type == incident_type)
    stmt = scope.narrow(stmt)
    incidents = list((await session.exec(stmt.order_by(col(Incident.opened_at)))).all())
    if not incidents:
        return []
    ids = stmt.with_only_columns(col(Incident.id)).order_by(None)
    rows = await session.exec(
        select(  # type: ignore[call-overload]
            LogEntry.incident_id,
            LogEntry.seq,
            LogEntry.kind,
            LogEntry.at,
            LogEntry.actor,
            LogEntry.data,
        )
        .where(col(LogEntry.incident_id).in_(ids))
        .order_by(col(LogEntry.incident_id), col(LogEntry.seq))
    )
    by_incident: dict[str, list[Any]] = {}
    for row in rows.all():
        entry: Any = row  # a Row: the columns by name, as the metrics read an entry
        by_incident.setdefault(entry.incident_id, []).append(entry)
    when = now or utcnow()
    return [
        incident_metrics(
            incident=i,
            entries=by_incident.get(i.id, []),
            now=when,
            region=regions.get(i.unit),
        )
        for i in incidents
    ]


async def response_metrics(
    session: AsyncSession,
    *,
    scope: ScopeLike,
    regions: Mapping[str, str],
    group_by: str,
    start: datetime | None = None,
    end: datetime | None = None,
    unit: str | None = None,
    region: str | None = None,
    incident_type: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The aggregate of :func:`incident_rows` grouped by ``group_by`` (``metrics.GROUP_BY``)."""
    rows = await incident_rows(
        session,
        scope=scope,
        regions=regions,
        start=start,
        end=end,
        unit=unit,
        region=region,
        incident_type=incident_type,
        now=now,
    )
    return {
        "group_by": group_by,
        "incidents": len(rows),
        "groups": aggregate(rows=rows, group_by=group_by),
    }
