"""What the board shows, read from the crisis log alone: tasks, contacts, notifications.

Pure functions over an incident's entries (in seq order), so the board works whatever
part of the system wrote them — the playbook engine, the notifiers, or a person — and
the situation-report draft is built from the same reading.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crisis.clock import as_utc
from crisis.domain.rules import NOTIFIER_ACTOR
from crisis.domain.vocabulary import OPENING_SEQ, EntryKind, Status, TaskStatus
from crisis.log.models import Incident, LogEntry

#: Delivery statuses the notifiers record, worst first (how a group's row is coloured).
DELIVERY_ORDER = ("failed", "timed_out", "held", "queued", "sent", "acknowledged")


def parse_time(value: Any) -> datetime | None:
    """A datetime from an entry's data, or None when absent or unreadable."""
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, str) and value.strip():
        try:
            return as_utc(value)
        except ValueError:
            return None
    return None


@dataclass
class Task:
    seq: int
    title: str
    responsible_role: str
    deadline: datetime | None
    deadline_raw: str
    checklist: list[dict[str, Any]]
    status: str = TaskStatus.NOT_STARTED.value
    updated_at: datetime | None = None
    actor: str = ""
    rule: str = ""

    @property
    def done(self) -> bool:
        return self.status == TaskStatus.DONE.value


@dataclass
class Contact:
    """A cooperation contact; ``seq`` is the entry that opened it, which updates name."""

    kind: str
    name: str
    status: str
    at: datetime
    by: str
    seq: int
    purpose: str = ""
    due: datetime | None = None
    updates: int = 0


@dataclass
class GroupDelivery:
    """One notification group of one update: the latest status per recipient."""

    update_id: str
    group: str
    recipients: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_at: datetime | None = None

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.recipients.values():
            out[r["status"]] = out.get(r["status"], 0) + 1
        return out

    @property
    def worst(self) -> str:
        statuses = {r["status"] for r in self.recipients.values()}
        for status in DELIVERY_ORDER:
            if status in statuses:
                return status
        return next(iter(statuses), "queued")


def _check_item(value: Any) -> dict[str, Any]:
    """A checklist item as ``{item, done}``: the playbooks write that, older entries text."""
    if isinstance(value, Mapping):
        text = _str(value.get("item") or value.get("title") or value.get("text"))
        return {"item": text, "done": bool(value.get("done"))}
    return {"item": _str(value), "done": False}


def _str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(_str(v) for v in value)
    if isinstance(value, Mapping):
        return str(value.get("title") or value.get("text") or value.get("name") or "")
    return str(value)


def corrected_fields(kind: str, corrects: int | None, data: Mapping[str, Any]) -> dict[str, Any]:
    """What a correction of the opening entry sets on the incident (a CAP Update raising a
    warning): ``severity`` 1-5, ``title``, ``area``, each only when present and well-formed."""
    if kind != EntryKind.CORRECTION or corrects != OPENING_SEQ:
        return {}
    out: dict[str, Any] = {}
    severity = data.get("severity")
    if isinstance(severity, int) and not isinstance(severity, bool) and 1 <= severity <= 5:
        out["severity"] = severity
    if isinstance(data.get("title"), str) and data["title"].strip():
        out["title"] = data["title"].strip()[:300]
    if isinstance(data.get("area"), str) and data["area"].strip():
        out["area"] = data["area"].strip()[:120]
    return out


def apply_entry(incident: Incident, entry: LogEntry) -> None:
    """Keep the incident row (a projection of its log) in step with the entry: level,
    owner and accountable, severity, status, the promised next update. The append service
    runs it on every write; a replay (``crisis.review.replay``) runs it over the log."""
    data = entry.data
    if entry.kind == EntryKind.ESCALATION and "to" in data:
        incident.level = str(data["to"])
    if entry.kind == EntryKind.DECISION:
        if data.get("new_owner"):
            incident.unit = str(data["new_owner"])
            incident.accountable_role = (
                data.get("new_accountable_role") or incident.accountable_role
            )
            incident.accountable_person = (
                data.get("new_accountable_person") or incident.accountable_person
            )
        if isinstance(data.get("severity"), int):
            incident.severity = data["severity"]
    for name, value in corrected_fields(entry.kind, entry.corrects, data).items():
        setattr(incident, name, value)
    if entry.kind == EntryKind.STATUS_CHANGE and data.get("status") in {s.value for s in Status}:
        incident.status = data["status"]
        incident.closed_at = entry.at if data["status"] == Status.CLOSED.value else None
    if data.get("next_update_at"):
        incident.next_update_at = as_utc(data["next_update_at"])


def tasks(entries: Iterable[LogEntry]) -> list[Task]:
    """Tasks with their current status (the last ``task_update`` naming them wins)."""
    out: dict[int, Task] = {}
    for e in entries:
        d = e.data or {}
        if e.kind == EntryKind.TASK:
            raw = d.get("deadline")
            out[e.seq] = Task(
                seq=e.seq,
                title=_str(d.get("title")) or e.text,
                responsible_role=_str(d.get("responsible_role")),
                deadline=parse_time(raw),
                deadline_raw=_str(raw),
                checklist=[_check_item(i) for i in d.get("checklist") or []],
                status=_str(d.get("status")) or TaskStatus.NOT_STARTED.value,
                updated_at=e.at,
                actor=e.actor,
                rule=_str(d.get("rule")),
            )
        elif e.kind == EntryKind.TASK_UPDATE:
            ref = d.get("task")
            task = out.get(ref) if isinstance(ref, int) else None
            if task is None:
                continue
            if d.get("status"):
                task.status = _str(d["status"])
                task.updated_at = e.at
            item = d.get("item")
            if isinstance(item, int) and not isinstance(item, bool):
                if 0 <= item < len(task.checklist):
                    task.checklist[item]["done"] = d.get("done") is not False
                    task.updated_at = e.at
    return list(out.values())


def decisions(entries: Iterable[LogEntry]) -> list[LogEntry]:
    return [e for e in entries if e.kind == EntryKind.DECISION]


def escalations(entries: Iterable[LogEntry]) -> list[LogEntry]:
    return [e for e in entries if e.kind == EntryKind.ESCALATION]


def contacts(entries: Iterable[LogEntry]) -> list[Contact]:
    """Cooperation contacts (samvirke), one row per contact with its latest status.

    An update names its contact by seq (``contact``); an entry without one updates the
    contact of the same kind and name, else opens a new one.
    """
    out: dict[int, Contact] = {}
    by_name: dict[tuple[str, str], int] = {}
    for e in entries:
        if e.kind != EntryKind.COOPERATION_CONTACT:
            continue
        d = e.data or {}
        raw_actor = d.get("actor")
        actor: Mapping[str, Any] = raw_actor if isinstance(raw_actor, Mapping) else {}
        status = _str(actor.get("status") or d.get("status")) or "planned"
        ref = d.get("contact")
        if isinstance(ref, int) and ref in out:
            contact = out[ref]
            contact.status, contact.at, contact.by = status, e.at, e.actor
            contact.updates += 1
            continue
        kind = _str(actor.get("kind") or d.get("actor_kind") or d.get("kind"))
        name = _str(actor.get("name") or d.get("actor_name") or d.get("name")) or e.text
        known = by_name.get((kind, name))
        if known is not None:
            contact = out[known]
            contact.status, contact.at, contact.by = status, e.at, e.actor
            contact.updates += 1
            continue
        by_name[(kind, name)] = e.seq
        out[e.seq] = Contact(
            kind,
            name,
            status,
            e.at,
            e.actor,
            e.seq,
            _str(d.get("purpose")),
            parse_time(d.get("due")),
        )
    return list(out.values())


def notifications(entries: Iterable[LogEntry]) -> list[GroupDelivery]:
    """Delivery attempts (``message`` entries from the notifiers) per update and group."""
    groups: dict[tuple[str, str], GroupDelivery] = {}
    for e in entries:
        d = e.data or {}
        if e.kind != EntryKind.MESSAGE or "status" not in d or e.actor != NOTIFIER_ACTOR:
            continue  # only the notifiers' receipts say what was delivered
        key = (_str(d.get("update_id")), _str(d.get("group")) or "-")
        g = groups.setdefault(key, GroupDelivery(*key))
        recipient = _str(d.get("recipient")) or f"#{e.seq}"
        g.recipients[recipient] = {
            "status": _str(d.get("status")),
            "channel": _str(d.get("channel")),
            "attempt": d.get("attempt"),
            "error": _str(d.get("error")),
            "at": e.at,
        }
        g.last_at = e.at
    return list(groups.values())


def held_updates(groups: Sequence[GroupDelivery]) -> list[str]:
    """Update ids with a message held for approval (the second person, Hawaii lesson)."""
    return sorted(
        {g.update_id for g in groups if any(r["status"] == "held" for r in g.recipients.values())}
    )
