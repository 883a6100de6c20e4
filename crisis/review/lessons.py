"""Lessons learned as a pure projection of an incident's log: findings, follow-up actions
with their current owner, due date and status, and which of them are overdue.

``lessons_of`` reads entries of any incident-ordered sequence with ``seq``, ``kind``, ``at``,
``actor``, ``text`` and ``data`` (``LogEntry`` rows, or entries masked for a viewer); it does
no I/O, so the API, the board and the report export all see the same lessons.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from crisis.clock import as_utc
from crisis.domain.rules import parse_due
from crisis.domain.vocabulary import SETTLED_FOLLOW_UPS, EntryKind, FollowUpStatus

OSLO = ZoneInfo("Europe/Oslo")


def format_time(value: datetime) -> str:
    return as_utc(value).isoformat()


class EntryLike(Protocol):
    @property
    def seq(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def at(self) -> datetime: ...
    @property
    def actor(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def data(self) -> dict[str, Any]: ...


def due_instant(due: str) -> datetime | None:
    """When a due date has passed: a bare date at the end of that Oslo day, a date and time
    at that instant (Oslo time when it names no zone)."""
    parsed = parse_due(due)
    if parsed is None:
        return None
    if isinstance(parsed, datetime):
        return as_utc(parsed if parsed.tzinfo else parsed.replace(tzinfo=OSLO))
    assert isinstance(parsed, date)
    return as_utc(datetime.combine(parsed, time.max, tzinfo=OSLO))


@dataclass(frozen=True)
class Finding:
    seq: int
    at: datetime
    actor: str
    finding: str
    category: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": format_time(self.at),
            "actor": self.actor,
            "finding": self.finding,
            "category": self.category,
        }


@dataclass
class FollowUp:
    """A follow-up action as its latest updates left it."""

    seq: int
    at: datetime
    actor: str
    title: str
    owner: str
    due: str
    status: str
    finding: int | None = None
    updated_at: datetime | None = None
    updates: list[int] = field(default_factory=list)

    @property
    def due_at(self) -> datetime | None:
        return due_instant(self.due)

    def overdue(self, now: datetime) -> bool:
        """Past its due date and neither done nor dropped."""
        due_at = self.due_at
        return self.status not in SETTLED_FOLLOW_UPS and due_at is not None and due_at < as_utc(now)

    def as_dict(self, now: datetime | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "seq": self.seq,
            "at": format_time(self.at),
            "actor": self.actor,
            "title": self.title,
            "owner": self.owner,
            "due": self.due,
            "status": self.status,
            "finding": self.finding,
            "updated_at": format_time(self.updated_at) if self.updated_at else None,
            "updates": list(self.updates),
        }
        if now is not None:
            out["overdue"] = self.overdue(now)
        return out


@dataclass
class Lessons:
    findings: list[Finding] = field(default_factory=list)
    follow_ups: list[FollowUp] = field(default_factory=list)

    def overdue(self, now: datetime) -> list[FollowUp]:
        return [f for f in self.follow_ups if f.overdue(now)]

    def as_dict(self, now: datetime | None = None) -> dict[str, Any]:
        """JSON-ready; with ``now``, each follow-up says whether it is overdue and the
        overdue ones' seqs are listed."""
        out: dict[str, Any] = {
            "findings": [f.as_dict() for f in self.findings],
            "follow_ups": [f.as_dict(now) for f in self.follow_ups],
        }
        if now is not None:
            out["overdue"] = [f.seq for f in self.overdue(now)]
        return out


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def lessons_of(entries: Iterable[EntryLike]) -> Lessons:
    """The incident's findings and follow-ups, in log order, each follow-up as its updates
    left it (an update naming an unknown follow-up is ignored: the append rules refuse it)."""
    out = Lessons()
    by_seq: dict[int, FollowUp] = {}
    for entry in entries:
        data = entry.data
        if entry.kind == EntryKind.FINDING:
            category = data.get("category")
            out.findings.append(
                Finding(
                    entry.seq,
                    entry.at,
                    entry.actor,
                    _str(data.get("finding")) or entry.text,
                    category if isinstance(category, str) else None,
                )
            )
        elif entry.kind == EntryKind.FOLLOW_UP:
            finding = data.get("finding")
            item = FollowUp(
                seq=entry.seq,
                at=entry.at,
                actor=entry.actor,
                title=_str(data.get("title")),
                owner=_str(data.get("owner")),
                due=_str(data.get("due")),
                status=_str(data.get("status")) or FollowUpStatus.OPEN.value,
                finding=finding if isinstance(finding, int) else None,
            )
            by_seq[entry.seq] = item
            out.follow_ups.append(item)
        elif entry.kind == EntryKind.FOLLOW_UP_UPDATE:
            target = by_seq.get(data.get("follow_up"))  # type: ignore[arg-type]
            if target is None:
                continue
            for name in ("status", "owner", "due"):
                value = data.get(name)
                if isinstance(value, str) and value:
                    setattr(target, name, value)
            target.updated_at = entry.at
            target.updates.append(entry.seq)
    return out
