"""The append service: the one way entries get into the crisis log.

Every writer goes through here: the web and situation reports (``append``,
``open_incident``, ``escalate``, ``close_incident``, ``reopen_incident``), the playbook
engine (``lock_incidents``, ``append_many``), the notifiers' delivery receipts
(``append_bulk``) and the stream pipeline's bulk insert (``take_incident_locks``,
``chain_rows``; correlation joins events to open incidents only). No other module takes an
incident's write lock or chains an entry.

Invariants:
- Appends to one incident are serialised — an advisory lock per incident on PostgreSQL
  (taken in key order, so writers of several incidents never deadlock), SQLite's single
  writer lock elsewhere, each supplied by its storage adapter — and the head is read under
  that lock, so a chain never forks; the unique (incident_id, seq) constraint is the last
  line of defence.
- An entry's hashed data is exactly what its JSON column gives back (``json_safe``).
- A closed incident is read-only until a status change reopens it (``rules.check_closed``;
  the notifiers' delivery receipts are the one exception).
- Functions over an ``AsyncSession`` flush but never commit: the caller owns the
  transaction, so a rule violation anywhere leaves the log untouched.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import insert
from sqlalchemy.engine import Connection
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis.clock import utcnow
from crisis.domain import rules
from crisis.domain.vocabulary import EntryKind, Status
from crisis.log import IncidentNotFound, RuleViolation
from crisis.log.chain import Head, format_time, next_head
from crisis.log.models import Incident, IncidentCreate, LogEntry
from crisis.log.projection import apply_entry
from crisis.log.tables import recorder

# --- locks ------------------------------------------------------------------------------


def lock_key(incident_id: str) -> int:
    """The incident's PostgreSQL advisory-lock key (every writer uses this one)."""
    return int.from_bytes(hashlib.sha256(incident_id.encode()).digest()[:8], "big", signed=True)


def take_incident_locks(conn: Connection, *, incident_ids: Iterable[str]) -> None:
    """Take these incidents' write locks until the transaction ends (a sync connection).

    The storage adapter supplies the lock: on PostgreSQL one transaction-scoped advisory
    lock per incident, taken here in key order; on SQLite its writer lock (it has one
    writer), idempotent within the transaction. Read the heads after this.
    """
    keys = sorted({lock_key(i) for i in incident_ids})
    recorder(conn).take_locks(conn, keys)


async def lock_incidents(
    session: AsyncSession, *, incident_ids: Iterable[str]
) -> dict[str, Incident]:
    """Take the incidents' write locks, then read their rows (heads included) afresh.

    Raises ``IncidentNotFound`` (the first missing id in order) if any does not exist.
    """
    ids = sorted(set(incident_ids))
    connection = await session.connection()
    await connection.run_sync(lambda conn: take_incident_locks(conn, incident_ids=ids))
    result = await session.exec(
        select(Incident).where(col(Incident.id).in_(ids)).execution_options(populate_existing=True)
    )
    found = {incident.id: incident for incident in result.all()}
    for incident_id in ids:
        if incident_id not in found:
            raise IncidentNotFound(incident_id)
    return found


# --- rows -------------------------------------------------------------------------------

_PLAIN = (str, int, float, bool, type(None))


def json_safe(data: Mapping[str, Any] | None) -> dict[str, Any]:
    """``data`` as a JSON column gives it back: what is hashed must be exactly that.

    Flat data of plain values (str keys; str, int, finite float, bool or None values, no
    subclasses) is that already and is copied; anything else takes a JSON round trip, in
    which datetimes become canonical UTC strings and anything else JSON cannot hold raises
    ``TypeError``.
    """
    if not data:
        return {}
    for key, value in data.items():
        if type(key) is not str or type(value) not in _PLAIN:
            return dict(json.loads(json.dumps(data, default=_default)))
        if type(value) is float and not math.isfinite(value):
            return dict(json.loads(json.dumps(data, default=_default)))
    return dict(data)


def _default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return format_time(obj)
    raise TypeError(f"not serialisable in the crisis log: {type(obj).__name__}")


class EntrySpec(NamedTuple):
    """One entry to append, without its incident and its place in the chain."""

    kind: str
    actor: str
    text: str = ""
    data: Mapping[str, Any] | None = None
    corrects: int | None = None


def chain_rows(
    *,
    heads: Mapping[str, Head],
    exercise: Mapping[str, str | None],
    entries: Iterable[tuple[str, EntrySpec]],
    at: datetime,
) -> tuple[list[dict[str, Any]], dict[str, Head]]:
    """Chain ``(incident_id, spec)`` entries, in order, onto their incidents' heads.

    ``heads`` were read under the incidents' write locks (a new incident's is ``Head()``);
    ``exercise`` is each incident's, copied onto its entries. A spec's data must be
    JSON-native already (``json_safe``): it is hashed as it is. Pure: no I/O, the arguments
    are not changed. Returns the rows (the hashed fields and ``hash``) in entry order, and the
    new head of each incident that got entries.
    """
    moved: dict[str, Head] = {}
    rows: list[dict[str, Any]] = []
    for incident_id, spec in entries:
        head = moved.get(incident_id) or heads[incident_id]
        row: dict[str, Any] = {
            "incident_id": incident_id,
            "kind": spec.kind,
            "at": at,
            "actor": spec.actor,
            "text": spec.text,
            "data": dict(spec.data) if spec.data else {},
            "exercise": exercise[incident_id],
            "corrects": spec.corrects,
        }
        new = moved[incident_id] = next_head(head, row)
        row["seq"], row["prev_hash"], row["hash"] = new.seq, head.hash, new.hash
        rows.append(row)
    return rows, moved


def _chain_one(incident: Incident, spec: EntrySpec, at: datetime) -> LogEntry:
    """``spec`` (JSON-safe data) as the next entry of ``incident``, whose head moves on."""
    [row], _ = chain_rows(
        heads={incident.id: Head(incident.head_seq, incident.head_hash)},
        exercise={incident.id: incident.exercise},
        entries=[(incident.id, spec)],
        at=at,
    )
    incident.head_seq, incident.head_hash = row["seq"], row["hash"]
    return LogEntry(**row)


# --- appends ----------------------------------------------------------------------------


def new_incident_id(now: datetime | None = None) -> str:
    now = now or utcnow()
    return f"{now:%Y%m%d}-{secrets.token_hex(4)}"


async def open_incident(
    session: AsyncSession,
    *,
    incident: IncidentCreate,
    actor: str,
    text: str = "",
    data: Mapping[str, Any] | None = None,
    at: datetime | None = None,
    incident_id: str | None = None,
) -> tuple[Incident, LogEntry]:
    """Create an incident and its first entry (``incident_opened``) in the caller's transaction."""
    at = at or utcnow()
    row = Incident(
        id=incident_id or new_incident_id(at),
        opened_at=at,
        status=Status.OPEN.value,
        **incident.model_dump(),
    )
    payload = json_safe(
        {
            **incident.model_dump(),
            **(dict(data) if data else {}),
        }
    )
    spec = EntrySpec(
        kind=EntryKind.INCIDENT_OPENED.value,
        actor=actor,
        text=text or f"Hendelse opprettet: {incident.title}",
        data=payload,
    )
    entry = _chain_one(row, spec, at)
    session.add(row)
    await session.flush()
    session.add(entry)
    await session.flush()
    return row, entry


async def append(
    session: AsyncSession,
    *,
    incident_id: str,
    kind: str,
    actor: str,
    text: str = "",
    data: Mapping[str, Any] | None = None,
    corrects: int | None = None,
    at: datetime | None = None,
    known_units: Iterable[str] | None = None,
) -> LogEntry:
    """Check the rules, then chain one entry onto the incident. Raises RuleViolation."""
    spec = EntrySpec(kind=kind, actor=actor, text=text, data=data, corrects=corrects)
    [entry] = await append_many(
        session, incident_id=incident_id, specs=[spec], at=at, known_units=known_units
    )
    return entry


async def append_many(
    session: AsyncSession,
    *,
    incident_id: str,
    specs: Sequence[EntrySpec],
    at: datetime | None = None,
    known_units: Iterable[str] | None = None,
) -> list[LogEntry]:
    """Check and chain several entries onto one incident under one lock and one flush.

    The same rules and chain as ``append`` called once per spec, in order (each entry is
    checked against the incident as the entries before it left it), but the incident's write
    lock is taken once and the rows go out in one INSERT, so the lock (SQLite: the whole
    database's) is held for a few statements. All or nothing: the first violation raises
    before anything is flushed.
    """
    if not specs:
        return []
    incident = (await lock_incidents(session, incident_ids=[incident_id]))[incident_id]
    when = at or utcnow()
    entries: list[LogEntry] = []
    for spec in specs:
        payload = json_safe(spec.data)
        closed = rules.check_closed(
            status=incident.status, kind=spec.kind, actor=spec.actor, data=payload
        )
        if closed:
            raise RuleViolation(closed, status=409)
        violations = rules.check_message_origin(spec.kind, spec.actor, payload)
        violations += await _check(
            session, incident, spec.kind, payload, spec.corrects, known_units
        )
        if violations:
            conflict = any(v.conflict or v.principle == "nærhetsprinsippet" for v in violations)
            raise RuleViolation(violations, status=409 if conflict else 422)
        safe = EntrySpec(spec.kind, spec.actor, spec.text, payload, spec.corrects)
        entry = _chain_one(incident, safe, when)
        apply_entry(incident, entry)
        entries.append(entry)
    session.add_all(entries)
    session.add(incident)
    await session.flush()
    return entries


async def append_bulk(
    session: AsyncSession,
    *,
    entries: Iterable[tuple[str, EntrySpec]],
    at: datetime | None = None,
) -> int:
    """Chain entries no rule governs (delivery receipts) onto their incidents, in bulk.

    Receipts land on closed incidents too (``rules.check_closed`` allows them): a message
    sent before the close is still delivered or acknowledged after it.

    All incidents' locks are taken first, then every row goes out in one executemany; the
    incident rows' heads move with them. Entries keep their order within each incident.
    Flushes (also when there is nothing to write); returns the number written.
    """
    safe = [
        (incident_id, EntrySpec(s.kind, s.actor, s.text, json_safe(s.data), s.corrects))
        for incident_id, s in entries
    ]
    if not safe:
        await session.flush()
        return 0
    incidents = await lock_incidents(session, incident_ids={i for i, _ in safe})
    rows, moved = chain_rows(
        heads={i: Head(row.head_seq, row.head_hash) for i, row in incidents.items()},
        exercise={i: row.exercise for i, row in incidents.items()},
        entries=safe,
        at=at or utcnow(),
    )
    await session.exec(insert(LogEntry.__table__), params=rows)  # type: ignore[attr-defined]
    for incident_id, head in moved.items():
        incident = incidents[incident_id]
        incident.head_seq, incident.head_hash = head.seq, head.hash
        session.add(incident)
    await session.flush()
    return len(rows)


async def escalate(
    session: AsyncSession,
    *,
    incident_id: str,
    to: str,
    reason: str,
    criteria: list[str],
    actor: str,
) -> LogEntry:
    """Escalate one level (nærhetsprinsippet); a logged decision with its reason and criteria."""
    if not reason.strip():
        raise RuleViolation([rules.Violation("reason", "an escalation states its reason")])
    incident = await session.get(Incident, incident_id)
    if incident is None:
        raise IncidentNotFound(incident_id)
    return await append(
        session,
        incident_id=incident_id,
        kind=EntryKind.ESCALATION.value,
        actor=actor,
        text=f"Eskalert fra {incident.level} til {to}: {reason}",
        data={"from": incident.level, "to": to, "reason": reason, "criteria": list(criteria)},
    )


async def close_incident(
    session: AsyncSession, *, incident_id: str, reason: str, final_situation: str, actor: str
) -> LogEntry:
    """Close the incident by a logged decision (who, why, the final situation).

    Raises ``IncidentNotFound``, or ``RuleViolation`` (422 for a blank reason or final
    situation, 409 if it is closed already). Until reopened it takes no entries but
    delivery receipts (``rules.check_closed``).
    """
    return await append(
        session,
        incident_id=incident_id,
        kind=EntryKind.STATUS_CHANGE.value,
        actor=actor,
        text=f"Hendelsen er lukket: {reason}",
        data={
            "status": Status.CLOSED.value,
            "reason": reason,
            "final_situation": final_situation,
        },
    )


async def reopen_incident(
    session: AsyncSession, *, incident_id: str, reason: str, actor: str
) -> LogEntry:
    """Reopen a closed incident by a logged decision with its reason.

    Raises ``IncidentNotFound``, or ``RuleViolation`` (422 for a blank reason, 409 if it
    is open already).
    """
    return await append(
        session,
        incident_id=incident_id,
        kind=EntryKind.STATUS_CHANGE.value,
        actor=actor,
        text=f"Hendelsen er gjenåpnet: {reason}",
        data={"status": Status.OPEN.value, "reason": reason},
    )


# --- rules and projection ---------------------------------------------------------------


async def _check(
    session: AsyncSession,
    incident: Incident,
    kind: str,
    data: dict[str, Any],
    corrects: int | None,
    known_units: Iterable[str] | None,
) -> list[rules.Violation]:
    try:
        EntryKind(kind)
    except ValueError:
        return [rules.Violation("kind", f"unknown entry kind {kind!r}")]
    out = rules.check_owner_change(kind, data)
    if kind == EntryKind.DECISION:
        out += rules.check_decision(data)
        owner = data.get("new_owner")
        if owner is not None and known_units is not None and owner not in set(known_units):
            out.append(rules.Violation("new_owner", f"unknown unit {owner!r}"))
    elif kind == EntryKind.TASK:
        out += rules.check_task(data)
    elif kind == EntryKind.TASK_UPDATE:
        tasks = await session.exec(
            select(LogEntry.seq).where(
                LogEntry.incident_id == incident.id, LogEntry.kind == EntryKind.TASK.value
            )
        )
        out += rules.check_task_update(data, set(tasks.all()))
    elif kind == EntryKind.CORRECTION:
        out += rules.check_correction(corrects, incident.head_seq)
    elif kind == EntryKind.ESCALATION:
        out += rules.check_escalation(
            current=incident.level,
            target=str(data.get("to")),
            security_political=incident.security_political,
        )
    elif kind == EntryKind.STATUS_CHANGE:
        out += rules.check_status_change(current=incident.status, data=data)
    elif kind == EntryKind.FINDING:
        out += rules.check_finding(data)
    elif kind == EntryKind.FOLLOW_UP:
        out += rules.check_follow_up(data, await _seqs(session, incident, EntryKind.FINDING))
    elif kind == EntryKind.FOLLOW_UP_UPDATE:
        out += rules.check_follow_up_update(
            data, await _seqs(session, incident, EntryKind.FOLLOW_UP)
        )
    return out


async def _seqs(session: AsyncSession, incident: Incident, kind: EntryKind) -> set[int]:
    """The seqs of the incident's entries of ``kind``."""
    found = await session.exec(
        select(LogEntry.seq).where(LogEntry.incident_id == incident.id, LogEntry.kind == kind.value)
    )
    return set(found.all())
