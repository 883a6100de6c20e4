"""Incident history: one query for open and closed incidents, filtered, scoped and paged in
SQL, so that a page and its total are right for any viewer's scope.

Scope comes in as ``narrow`` (``crisis.accounts.Scope.narrow`` fits): review sits beside the
accounts layer and does not import it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from crisis.clock import as_utc
from crisis.domain.vocabulary import EntryKind, Status
from crisis.log.models import Incident, LogEntry

OSLO = ZoneInfo("Europe/Oslo")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
#: ``exercise=all``: real incidents and exercises alike.
ALL_EXERCISES = "all"

Narrow = Callable[[SelectOfScalar[Incident]], SelectOfScalar[Incident]]


class BadBound(ValueError):
    """A ``from``/``to`` bound that is neither an ISO date nor an ISO date and time."""


@dataclass(frozen=True)
class Bound:
    """A parsed ``from``/``to``: the UTC instant, and whether it was a bare date."""

    at: datetime
    whole_day: bool


def parse_bound(value: str, *, end: bool) -> Bound:
    """``from``/``to`` as a UTC instant. A bare date is an Oslo calendar day: ``from`` its
    start, ``to`` its end (the next day's start, exclusive); a date and time without a zone
    is Oslo time. Raises :class:`BadBound`."""
    text = value.strip()
    try:
        day = date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        day = None
    if day is not None:
        start = datetime.combine(day + timedelta(days=1) if end else day, time(), tzinfo=OSLO)
        return Bound(as_utc(start), True)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadBound(
            f"{value!r} is not an ISO date (YYYY-MM-DD) or date and time "
            "(YYYY-MM-DDTHH:MM[:SS][±HH:MM])"
        ) from None
    return Bound(as_utc(moment if moment.tzinfo else moment.replace(tzinfo=OSLO)), False)


def exercise_filter(stmt: Any, exercise: str | None, *, real_by_default: bool) -> Any:
    """'true': exercises only; 'false': real only; 'all': both; an id: that exercise;
    unset: real incidents only if ``real_by_default``, else both."""
    if exercise == ALL_EXERCISES:
        return stmt
    if exercise == "true":
        return stmt.where(col(Incident.exercise).is_not(None))
    if exercise == "false" or (not exercise and real_by_default):
        return stmt.where(col(Incident.exercise).is_(None))
    if exercise:
        return stmt.where(Incident.exercise == exercise)
    return stmt


async def search_incidents(
    *,
    session: AsyncSession,
    narrow: Narrow,
    status: str | None = None,
    opened_from: datetime | None = None,
    opened_to: datetime | None = None,
    unit: str | None = None,
    type: str | None = None,
    q: str | None = None,
    exercise: str | None = None,
    limit: int = DEFAULT_LIMIT,
    offset: int = 0,
) -> tuple[list[Incident], int]:
    """One page of the incidents ``narrow`` admits, and how many match in all.

    ``opened_from``/``opened_to`` select the incidents active in ``[from, to)``: opened
    before ``to`` and not closed before ``from``. ``q`` matches the id, title or type,
    case-insensitively. Closed incidents come latest closed first; otherwise worst first,
    then latest opened (the open board's order); the id breaks ties so pages do not overlap.
    """
    stmt = select(Incident)
    if status:
        stmt = stmt.where(Incident.status == status)
    if unit:
        stmt = stmt.where(Incident.unit == unit)
    if type:
        stmt = stmt.where(Incident.type == type)
    if opened_to is not None:
        stmt = stmt.where(col(Incident.opened_at) < opened_to)
    if opened_from is not None:
        stmt = stmt.where(
            or_(col(Incident.closed_at).is_(None), col(Incident.closed_at) >= opened_from)
        )
    if q and q.strip():
        needle = q.strip().lower()
        stmt = stmt.where(
            or_(
                *(
                    func.lower(column).contains(needle, autoescape=True)
                    for column in (col(Incident.title), col(Incident.type), col(Incident.id))
                )
            )
        )
    # The open list shows exercises as ever; the closed history real incidents only.
    stmt = narrow(exercise_filter(stmt, exercise, real_by_default=status == Status.CLOSED))
    total = (await session.exec(select(func.count()).select_from(stmt.subquery()))).one()
    order: tuple[Any, ...] = (
        (col(Incident.closed_at).desc(), col(Incident.id).desc())
        if status == Status.CLOSED
        else (
            col(Incident.severity).desc(),
            col(Incident.opened_at).desc(),
            col(Incident.id).desc(),
        )
    )
    rows = (await session.exec(stmt.order_by(*order).limit(limit).offset(offset))).all()
    return list(rows), int(total)


async def closing_entries(
    *, session: AsyncSession, incident_ids: Iterable[str]
) -> dict[str, LogEntry]:
    """The status change that last closed each of these incidents (closed ones only)."""
    ids = list(incident_ids)
    if not ids:
        return {}
    rows = await session.exec(
        select(LogEntry)
        .where(col(LogEntry.incident_id).in_(ids))
        .where(LogEntry.kind == EntryKind.STATUS_CHANGE.value)
        .order_by(col(LogEntry.incident_id), col(LogEntry.seq))
    )
    out: dict[str, LogEntry] = {}
    for entry in rows.all():
        if entry.data.get("status") == Status.CLOSED.value:
            out[entry.incident_id] = entry
        else:
            out.pop(entry.incident_id, None)
    return out


def duration(start: datetime, end: datetime) -> timedelta:
    """How long an incident lasted (or has lasted): never negative."""
    return max(as_utc(end) - as_utc(start), timedelta(0))
