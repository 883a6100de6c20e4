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
from typing import Any

from sqlalchemy import and_, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis.domain.rules import NOTIFIER_ACTOR, OpenViolation
from crisis.domain.vocabulary import EntryKind
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


@dataclass
class Deliveries:
    """The latest delivery status per (update, group) and recipient of one incident, and
    the last receipt read: the overview reads only newer receipts on its next refresh."""

    seq: int = 0
    groups: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)

    def add(self, entries: Sequence[LogEntry]) -> None:
        """Fold in receipts (``message`` entries of the notifiers), skipping those seen."""
        for e in entries:
            if e.seq <= self.seq:
                continue
            self.seq = e.seq
            d = e.data or {}
            if e.kind != EntryKind.MESSAGE or "status" not in d or e.actor != NOTIFIER_ACTOR:
                continue
            key = (str(d.get("update_id") or ""), str(d.get("group") or "-"))
            self.groups.setdefault(key, {})[str(d.get("recipient") or f"#{e.seq}")] = str(
                d["status"]
            )

    def counts(self) -> tuple[int, int]:
        """(failed deliveries, unacknowledged alarms) by the latest status per recipient.

        A group where someone acknowledged is answered: a timed-out recipient there counts not.
        """
        failed = unacked = 0
        for recipients in self.groups.values():
            statuses = list(recipients.values())
            failed += sum(s in FAILED for s in statuses)
            if "acknowledged" not in statuses:
                unacked += sum(s in UNACKNOWLEDGED for s in statuses)
        return failed, unacked


def deliveries(entries: Sequence[LogEntry]) -> tuple[int, int]:
    """(failed deliveries, unacknowledged alarms) of an incident's entries."""
    folded = Deliveries()
    folded.add(entries)
    return folded.counts()


def row(
    incident: Incident,
    entries: list[LogEntry],
    *,
    library: Library,
    now: datetime,
    delivered: Deliveries | None = None,
) -> Row:
    """``entries``: the incident's log; receipts may be left out when ``delivered`` has them."""
    overdue = [
        t
        for t in projection.tasks(entries)
        if not t.done and t.deadline is not None and t.deadline < now
    ]
    failed, unacked = delivered.counts() if delivered is not None else deliveries(entries)
    return Row(
        incident,
        overdue,
        engine.standing(incident, entries, library=library, now=now),
        failed,
        unacked,
    )


async def entries_of(
    session: AsyncSession, ids: Sequence[str], *, messages: bool = True
) -> dict[str, list[LogEntry]]:
    """Every entry of the given incidents in one read (``messages=False``: no receipts)."""
    out: dict[str, list[LogEntry]] = defaultdict(list)
    if not ids:
        return out
    stmt = select(LogEntry).where(col(LogEntry.incident_id).in_(list(ids)))
    if not messages:
        stmt = stmt.where(LogEntry.kind != EntryKind.MESSAGE.value)
    result = await session.exec(stmt.order_by(col(LogEntry.incident_id), col(LogEntry.seq)))
    for entry in result.all():
        out[entry.incident_id].append(entry)
    return out


#: Incidents whose receipts are kept folded (per app); past it the cache starts over.
CACHE_LIMIT = 5000


def cache_of(state: Any) -> dict[str, Deliveries]:
    """The app's folded receipts (``app.state``), made on first use."""
    cache: dict[str, Deliveries] | None = getattr(state, "triage_deliveries", None)
    if cache is None:
        cache = state.triage_deliveries = {}
    return cache


async def _receipts(
    session: AsyncSession, cache: dict[str, Deliveries], ids: Sequence[str]
) -> dict[str, Deliveries]:
    """Each incident's folded receipts, reading only those newer than the last refresh's.

    Per incident by ``seq``: an incident's entries are chained under its lock, so a later
    ``seq`` never commits before an earlier one.
    """
    if len(cache) > CACHE_LIMIT:
        cache.clear()
    wanted = {i: cache.setdefault(i, Deliveries()) for i in ids}
    if not wanted:
        return wanted
    newer = or_(
        *(
            and_(col(LogEntry.incident_id) == i, col(LogEntry.seq) > d.seq)
            for i, d in wanted.items()
        )
    )
    result = await session.exec(
        select(LogEntry)
        .where(LogEntry.kind == EntryKind.MESSAGE.value, newer)
        .order_by(col(LogEntry.incident_id), col(LogEntry.seq))
    )
    by_incident: dict[str, list[LogEntry]] = defaultdict(list)
    for entry in result.all():
        by_incident[entry.incident_id].append(entry)
    for incident_id, entries in by_incident.items():
        wanted[incident_id].add(entries)
    return wanted


async def rows(
    session: AsyncSession,
    *,
    incidents: Sequence[Incident],
    library: Library,
    now: datetime,
    cache: dict[str, Deliveries] | None = None,
) -> list[Row]:
    """The triage rows of ``incidents`` (in scope, open), in overview order. ``cache`` keeps
    the receipts folded between calls (the app's), so a refresh reads only new ones."""
    ids = [i.id for i in incidents]
    by_incident = await entries_of(session, ids, messages=False)
    delivered = await _receipts(session, {} if cache is None else cache, ids)
    return [
        row(i, by_incident.get(i.id, []), library=library, now=now, delivered=delivered[i.id])
        for i in sorted(incidents, key=order_key)
    ]
