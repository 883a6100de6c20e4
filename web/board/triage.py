"""The overview as a triage list: what needs the duty officer now, per open incident.

Read from the crisis log (``crisis.log.projection``) and the playbook engine's standing
violations, the same reading ``GET /api/v1/incidents/{id}/violations`` answers with: overdue
tasks, principles broken, alarms that failed or went unacknowledged. Real incidents sort
above exercises of the same severity.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis.domain.rules import OpenViolation
from crisis.log import projection
from crisis.log.models import Incident, LogEntry
from playbooks import engine
from playbooks.model import Library

#: Delivery statuses that count as a failed delivery, and as an alarm nobody confirmed.
FAILED = frozenset({"failed"})
UNACKNOWLEDGED = frozenset({"timed_out"})


@dataclass
class Row:
    """One incident of the overview and what is wrong with it now."""

    incident: Incident
    overdue_tasks: list[projection.Task] = field(default_factory=list)
    violations: list[OpenViolation] = field(default_factory=list)
    failed: int = 0
    unacknowledged: int = 0

    @property
    def exercise(self) -> bool:
        return self.incident.exercise is not None

    @property
    def attention(self) -> int:
        """How many things need acting on (0: nothing flagged)."""
        return len(self.overdue_tasks) + len(self.violations) + self.failed + self.unacknowledged


def order_key(incident: Incident) -> tuple[int, bool, float]:
    """Worst first; at one severity real before exercise, then newest first."""
    opened = incident.opened_at.timestamp() if incident.opened_at else 0.0
    return (-int(incident.severity or 0), incident.exercise is not None, -opened)


def deliveries(entries: Sequence[LogEntry]) -> tuple[int, int]:
    """(failed deliveries, unacknowledged alarms) by the latest status per recipient.

    A group where someone acknowledged is answered: a timed-out recipient there counts not.
    """
    failed = unacked = 0
    for group in projection.notifications(entries):
        statuses = [r["status"] for r in group.recipients.values()]
        failed += sum(s in FAILED for s in statuses)
        if "acknowledged" not in statuses:
            unacked += sum(s in UNACKNOWLEDGED for s in statuses)
    return failed, unacked


def row(incident: Incident, entries: list[LogEntry], *, library: Library, now: datetime) -> Row:
    overdue = [
        t
        for t in projection.tasks(entries)
        if not t.done and t.deadline is not None and t.deadline < now
    ]
    failed, unacked = deliveries(entries)
    return Row(
        incident,
        overdue,
        engine.standing(incident, entries, library=library, now=now),
        failed,
        unacked,
    )


async def entries_of(session: AsyncSession, ids: Sequence[str]) -> dict[str, list[LogEntry]]:
    """Every entry of the given incidents in one read, each incident's in seq order."""
    out: dict[str, list[LogEntry]] = defaultdict(list)
    if not ids:
        return out
    result = await session.exec(
        select(LogEntry)
        .where(col(LogEntry.incident_id).in_(list(ids)))
        .order_by(col(LogEntry.incident_id), col(LogEntry.seq))
    )
    for entry in result.all():
        out[entry.incident_id].append(entry)
    return out


async def rows(
    session: AsyncSession, *, incidents: Sequence[Incident], library: Library, now: datetime
) -> list[Row]:
    """The triage rows of ``incidents`` (in scope, open), in overview order."""
    by_incident = await entries_of(session, [i.id for i in incidents])
    return [
        row(i, by_incident.get(i.id, []), library=library, now=now)
        for i in sorted(incidents, key=order_key)
    ]
