"""Lessons learned across incidents: the lesson entries of the incidents a viewer's scope
admits, read in one query (the projection is :mod:`crisis.review.lessons`)."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis.domain.vocabulary import LESSON_KINDS
from crisis.log.models import Incident, LogEntry
from crisis.review.history import Narrow, exercise_filter


async def lesson_entries(
    *,
    session: AsyncSession,
    narrow: Narrow,
    unit: str | None = None,
    exercise: str | None = None,
) -> list[tuple[Incident, list[LogEntry]]]:
    """Each incident ``narrow`` admits that has lessons, with its lesson entries in order.

    Real incidents only unless ``exercise`` asks ('true', 'all' or an exercise id, as in
    the history); ``unit``: the owning unit.
    """
    incidents = select(Incident)
    if unit:
        incidents = incidents.where(Incident.unit == unit)
    incidents = narrow(exercise_filter(incidents, exercise, real_by_default=True))
    scoped = incidents.subquery()
    rows = await session.exec(
        select(LogEntry, Incident)
        .join(Incident, col(Incident.id) == col(LogEntry.incident_id))
        .where(col(LogEntry.kind).in_([k.value for k in LESSON_KINDS]))
        .where(col(LogEntry.incident_id).in_(select(scoped.c.id)))
        .order_by(col(Incident.opened_at).desc(), col(Incident.id), col(LogEntry.seq))
    )
    out: dict[str, tuple[Incident, list[LogEntry]]] = {}
    for entry, incident in rows.all():
        out.setdefault(incident.id, (incident, []))[1].append(entry)
    return list(out.values())
