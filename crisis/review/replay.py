"""The board as it stood at a time T, replayed from the incident's log entries up to T.

The incident row is a projection of its log (``projection.apply_entry``, which the append
service runs on every write), and the panels are projections too (``projection.tasks``,
``contacts``, ``notifications``), so replaying the entries with time <= T through the same
functions gives what the board showed then. Only counts per delivery status leave here,
never who a message went to, so the state carries no personal reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from crisis.clock import as_utc
from crisis.domain.vocabulary import EntryKind, Level, Status
from crisis.log import projection
from crisis.log.models import Incident, LogEntry


@dataclass(frozen=True)
class TaskAt:
    seq: int
    title: str
    responsible_role: str
    deadline: datetime | None
    status: str
    overdue: bool


@dataclass(frozen=True)
class GroupAt:
    update_id: str
    group: str
    counts: dict[str, int]
    worst: str
    last_at: datetime | None


@dataclass(frozen=True)
class ContactAt:
    kind: str
    name: str
    status: str
    at: datetime


@dataclass(frozen=True)
class BoardState:
    """What the incident page's head and panels showed at ``at``."""

    at: datetime
    seq: int  # the last entry replayed (0: none yet)
    entries: int
    unit: str
    accountable_role: str | None
    accountable_person: str | None
    level: str
    severity: int
    status: str
    next_update_at: datetime | None
    tasks: tuple[TaskAt, ...]
    groups: tuple[GroupAt, ...]
    contacts: tuple[ContactAt, ...]
    held: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        """Plain JSON values (times as ISO 8601 UTC)."""
        return dict(_json(asdict(self)))


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


def _opening(incident: Incident, entries: Sequence[LogEntry]) -> Incident:
    """The incident row as it was opened: the first entry's data, else the row's own."""
    first = entries[0].data if entries and entries[0].kind == EntryKind.INCIDENT_OPENED else {}

    def pick(key: str) -> Any:
        return first[key] if key in first else getattr(incident, key)

    return Incident(
        id=incident.id,
        type=incident.type,
        title=incident.title,
        exercise=incident.exercise,
        unit=pick("unit"),
        severity=pick("severity"),
        accountable_role=pick("accountable_role"),
        accountable_person=pick("accountable_person"),
        security_political=pick("security_political"),
        level=Level.UNIT.value,
        status=Status.OPEN.value,
        opened_at=incident.opened_at,
    )


def entry_times(entries: Sequence[LogEntry]) -> list[datetime]:
    """The distinct entry times in log order: the stops of the replay slider."""
    out: list[datetime] = []
    for e in entries:
        t = as_utc(e.at)
        if not out or t > out[-1]:
            out.append(t)
    return out


def state_at(*, incident: Incident, entries: Sequence[LogEntry], at: datetime) -> BoardState:
    """The board of ``incident`` at ``at``, from its ``entries`` (seq order) with time <= at."""
    at = as_utc(at)
    ordered = sorted(entries, key=lambda e: e.seq)
    upto = [e for e in ordered if as_utc(e.at) <= at]
    row = _opening(incident, ordered)
    for entry in upto:
        projection.apply_entry(row, entry)
    groups = projection.notifications(upto)
    return BoardState(
        at=at,
        seq=upto[-1].seq if upto else 0,
        entries=len(upto),
        unit=row.unit,
        accountable_role=row.accountable_role,
        accountable_person=row.accountable_person,
        level=row.level,
        severity=row.severity,
        status=row.status,
        next_update_at=row.next_update_at,
        tasks=tuple(
            TaskAt(
                seq=t.seq,
                title=t.title,
                responsible_role=t.responsible_role,
                deadline=t.deadline,
                status=t.status,
                overdue=t.deadline is not None and t.deadline < at and not t.done,
            )
            for t in projection.tasks(upto)
        ),
        groups=tuple(
            GroupAt(g.update_id, g.group, dict(sorted(g.counts.items())), g.worst, g.last_at)
            for g in groups
        ),
        contacts=tuple(
            ContactAt(c.kind, c.name, c.status, c.at) for c in projection.contacts(upto)
        ),
        held=tuple(projection.held_updates(groups)),
    )
