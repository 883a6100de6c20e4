"""The crisis log: open incidents, append chained entries, store evidence, verify.

Plain keyword-only functions over an ``AsyncSession`` (Dispatch's ``service`` style). They
flush but never commit: the caller owns the transaction, so a rule violation anywhere
leaves the log untouched. Appends to one incident are serialised — an advisory lock on
PostgreSQL, SQLite's single writer lock elsewhere — so a chain can never fork; the unique
(incident_id, seq) constraint is the last line of defence.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Text, cast, text, update
from sqlalchemy import select as core_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis import rules
from crisis.chain import GENESIS, entry_digest
from crisis.models import (
    EntryKind,
    Incident,
    IncidentCreate,
    LogEntry,
    RawEvent,
    Status,
)
from crisis.sqltypes import as_utc, utcnow


class RuleViolation(Exception):
    """A principle or rule refused the write. ``status`` is the HTTP code that fits."""

    def __init__(self, violations: list[rules.Violation], status: int = 422) -> None:
        super().__init__("; ".join(f"{v.field}: {v.message}" for v in violations))
        self.violations = violations
        self.status = status


class IncidentNotFound(LookupError):
    pass


def new_incident_id(now: datetime | None = None) -> str:
    now = now or utcnow()
    return f"{now:%Y%m%d}-{secrets.token_hex(4)}"


def _json_safe(data: Mapping[str, Any] | None) -> dict[str, Any]:
    """What is hashed must be exactly what the JSON column gives back."""
    if not data:
        return {}
    return dict(json.loads(json.dumps(data, default=_default)))


def _default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        from crisis.chain import format_time

        return format_time(obj)
    raise TypeError(f"not serialisable in the crisis log: {type(obj).__name__}")


async def _lock_incident(session: AsyncSession, incident_id: str) -> Incident:
    """Take the per-incident write lock, then read the incident's current head."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(incident_id.encode()).digest()[:8], "big", signed=True)
        await session.exec(text("SELECT pg_advisory_xact_lock(:key)").bindparams(key=key))  # type: ignore[call-overload]
    else:
        # A write as the first statement makes SQLite take its writer lock now, so the
        # head we read next cannot change before we commit.
        await session.exec(
            update(Incident)
            .where(col(Incident.id) == incident_id)
            .values(head_seq=Incident.head_seq)
        )
    result = await session.exec(
        select(Incident).where(Incident.id == incident_id).execution_options(populate_existing=True)
    )
    incident = result.first()
    if incident is None:
        raise IncidentNotFound(incident_id)
    return incident


def _chain(
    incident: Incident,
    *,
    kind: str,
    actor: str,
    text_: str,
    data: dict[str, Any],
    corrects: int | None,
    at: datetime,
) -> LogEntry:
    entry = LogEntry(
        incident_id=incident.id,
        seq=incident.head_seq + 1,
        kind=kind,
        at=at,
        actor=actor,
        text=text_,
        data=data,
        exercise=incident.exercise,
        corrects=corrects,
        prev_hash=incident.head_hash,
        hash="",
    )
    entry.hash = entry_digest(entry.hashed_fields())
    incident.head_seq = entry.seq
    incident.head_hash = entry.hash
    return entry


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
    payload = _json_safe(
        {
            **incident.model_dump(),
            **(dict(data) if data else {}),
        }
    )
    entry = _chain(
        row,
        kind=EntryKind.INCIDENT_OPENED.value,
        actor=actor,
        text_=text or f"Hendelse opprettet: {incident.title}",
        data=payload,
        corrects=None,
        at=at,
    )
    session.add(row)
    await session.flush()
    session.add(entry)
    await session.flush()
    return row, entry


def _apply(incident: Incident, entry: LogEntry) -> None:
    """Keep the incident row (a projection of its log) in step with the new entry."""
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
    if entry.kind == EntryKind.STATUS_CHANGE and data.get("status") in {s.value for s in Status}:
        incident.status = data["status"]
        incident.closed_at = entry.at if data["status"] == Status.CLOSED.value else None
    if data.get("next_update_at"):
        incident.next_update_at = as_utc(data["next_update_at"])


async def append_entry(
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
    [entry] = await append_entries(
        session, incident_id=incident_id, specs=[spec], at=at, known_units=known_units
    )
    return entry


@dataclass(frozen=True)
class EntrySpec:
    """One entry to append (``append_entries``): what ``append_entry`` takes, minus the incident."""

    kind: str
    actor: str
    text: str = ""
    data: Mapping[str, Any] | None = None
    corrects: int | None = None


async def append_entries(
    session: AsyncSession,
    *,
    incident_id: str,
    specs: Sequence[EntrySpec],
    at: datetime | None = None,
    known_units: Iterable[str] | None = None,
) -> list[LogEntry]:
    """Check and chain several entries onto one incident under one lock and one flush.

    The same rules and chain as ``append_entry`` called once per spec, in order (each entry
    is checked against the incident as the entries before it left it), but the incident's
    write lock is taken once and the rows go out in one INSERT: a rule engine writing a dozen
    entries holds the log's write lock — SQLite has one writer — for a few statements, not
    for dozens. All or nothing: the first violation raises before anything is flushed.
    """
    if not specs:
        return []
    incident = await _lock_incident(session, incident_id)
    when = at or utcnow()
    entries: list[LogEntry] = []
    for spec in specs:
        payload = _json_safe(spec.data)
        violations = rules.check_message_origin(spec.kind, spec.actor, payload)
        violations += await _check(
            session, incident, spec.kind, payload, spec.corrects, known_units
        )
        if violations:
            status = 409 if any(v.principle == "nærhetsprinsippet" for v in violations) else 422
            raise RuleViolation(violations, status=status)
        entry = _chain(
            incident,
            kind=spec.kind,
            actor=spec.actor,
            text_=spec.text,
            data=payload,
            corrects=spec.corrects,
            at=when,
        )
        _apply(incident, entry)
        entries.append(entry)
    session.add_all(entries)
    session.add(incident)
    await session.flush()
    return entries


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
    elif kind == EntryKind.STATUS_CHANGE and data.get("status") not in {s.value for s in Status}:
        out.append(rules.Violation("status", "status must be 'open' or 'closed'"))
    return out


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
    return await append_entry(
        session,
        incident_id=incident_id,
        kind=EntryKind.ESCALATION.value,
        actor=actor,
        text=f"Eskalert fra {incident.level} til {to}: {reason}",
        data={"from": incident.level, "to": to, "reason": reason, "criteria": list(criteria)},
    )


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
        "envelope": _json_safe(envelope),
    }
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(RawEvent).values(**values).on_conflict_do_nothing(index_elements=["source", "id"])
    result = await session.exec(stmt)
    return bool(result.rowcount)


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return as_utc(value)
        except ValueError:
            return None
    return None


async def timeline(session: AsyncSession, incident_id: str) -> list[LogEntry]:
    result = await session.exec(
        select(LogEntry).where(LogEntry.incident_id == incident_id).order_by(col(LogEntry.seq))
    )
    return list(result.all())


# --- verification ---------------------------------------------------------------------


@dataclass(frozen=True)
class ChainBreak:
    incident_id: str
    seq: int
    entry_id: int | None
    reason: str

    def __str__(self) -> str:
        where = f"entry id {self.entry_id}" if self.entry_id is not None else "no stored entry"
        return f"incident {self.incident_id}, entry seq {self.seq} ({where}): {self.reason}"


def heads_root(heads: Mapping[str, tuple[int, str]]) -> str:
    """The log-wide root: SHA-256 over every incident's head, sorted by incident id.

    One line ``<incident_id> <seq> <hash>\n`` per incident; two databases holding the same
    chains have the same root (``crisis log verify`` prints it, backups record it).
    """
    digest = hashlib.sha256()
    for incident_id in sorted(heads):
        seq, hash_ = heads[incident_id]
        digest.update(f"{incident_id} {seq} {hash_}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class AnchoredHead:
    """An incident's head as a checkpoint outside the database recorded it (``crisis.anchor``)."""

    seq: int
    hash: str
    at: str = ""


@dataclass(frozen=True)
class AnchorBreak:
    """An anchored head the database no longer holds: a deletion or a rewind."""

    incident_id: str
    seq: int
    reason: str

    def __str__(self) -> str:
        return f"incident {self.incident_id}: {self.reason}"


@dataclass
class VerifyReport:
    incidents: int = 0
    entries: int = 0
    breaks: list[ChainBreak] = field(default_factory=list)
    #: ``heads_root`` over the heads recorded on the incidents (what two copies compare).
    heads_root: str = ""
    #: How many anchored heads were checked (0 when no anchor was given).
    anchored: int = 0
    anchor_breaks: list[AnchorBreak] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaks and not self.anchor_breaks


@dataclass
class _Walk:
    incident: Incident | None
    expected: int = 1
    prev: str = GENESIS
    broken: bool = False


async def _read_snapshot(session: AsyncSession) -> bool:
    """Start one consistent view for every read that follows; False if the session cannot.

    Without it an entry committed between reading the incidents and reading the entries
    looks like a chain whose end does not match its head (a false alarm on a live system).
    A session already inside a transaction has its view fixed already (PostgreSQL: read
    committed; SQLite: after a write), so it cannot start one.
    """
    if session.get_bind().dialect.name == "postgresql":
        if session.in_transaction():
            return False
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        return True
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    if getattr(raw.driver_connection, "in_transaction", True):
        return False
    # pysqlite opens no transaction for SELECTs; an explicit one pins one WAL snapshot.
    await session.exec(text("BEGIN"))  # type: ignore[call-overload]
    return True


async def verify_log(
    session: AsyncSession,
    *,
    snapshot: bool = True,
    anchored: Mapping[str, AnchoredHead] | None = None,
) -> VerifyReport:
    """Recompute every chain from the stored bytes; report the first break of each incident.

    Columns are read raw (JSON as text, times unparsed), so a tampered value that no longer
    parses is reported as a break instead of crashing the check. ``snapshot`` reads in one
    consistent view (pass False when the session is already inside a transaction).

    ``anchored`` (the newest anchored head of each incident, ``crisis.anchor``): every one
    must still be there — the incident exists and its entry at the anchored seq has the
    anchored hash; the chain walk then vouches for everything below it. Read the anchor
    before calling: a head is anchored only after it was committed, so a snapshot taken
    after reading the anchor holds every anchored head.
    """
    if snapshot and not await _read_snapshot(session):
        if not isinstance(session.bind, AsyncEngine):
            raise RuntimeError("verify_log(snapshot=True) needs a session bound to an engine")
        async with AsyncSession(session.bind) as fresh:
            return await verify_log(fresh, anchored=anchored)
    report = VerifyReport()
    wanted = dict(anchored or {})
    report.anchored = len(wanted)
    #: incident id → whether its entry at the anchored seq carried the anchored hash
    found: dict[str, bool] = {}
    incidents = {
        i.id: i
        for i in (
            await session.exec(
                select(Incident)
                .order_by(col(Incident.opened_at), col(Incident.id))
                # the stored rows, not objects this session may hold from before
                .execution_options(populate_existing=True)
            )
        ).all()
    }
    report.incidents = len(incidents)
    walks: dict[str, _Walk] = {}
    table = LogEntry.__table__  # type: ignore[attr-defined]
    stmt = core_select(
        table.c.id,
        table.c.incident_id,
        table.c.seq,
        table.c.kind,
        cast(table.c.at, Text),
        table.c.actor,
        table.c.text,
        cast(table.c.data, Text),
        table.c.exercise,
        table.c.corrects,
        table.c.prev_hash,
        table.c.hash,
    ).order_by(table.c.incident_id, table.c.seq, table.c.id)
    rows = await session.stream(stmt.execution_options(yield_per=2000))
    async for row in rows:
        report.entries += 1
        (
            eid,
            incident_id,
            seq,
            kind,
            at_raw,
            actor,
            text_,
            data_raw,
            exercise,
            corrects,
            prev,
            stored,
        ) = row
        anchor = wanted.get(incident_id)
        if anchor is not None and seq == anchor.seq:
            found[incident_id] = stored == anchor.hash
        walk = walks.get(incident_id)
        if walk is None:
            walk = walks[incident_id] = _Walk(incidents.get(incident_id))
            if walk.incident is None:
                report.breaks.append(
                    ChainBreak(incident_id, seq, eid, "entry belongs to no incident")
                )
                walk.broken = True
        if walk.broken:
            continue
        problem: tuple[int, str] | None = None
        if seq != walk.expected:
            problem = (
                walk.expected,
                f"entry seq {walk.expected} is missing (next stored is {seq})",
            )
        elif prev != walk.prev:
            problem = (
                seq,
                "prev_hash does not match the previous entry (removed, inserted or reordered)",
            )
        else:
            try:
                fields = {
                    "incident_id": incident_id,
                    "seq": seq,
                    "kind": kind,
                    "at": _parse_stored_time(at_raw),
                    "actor": actor,
                    "text": text_,
                    "data": json.loads(data_raw),
                    "exercise": exercise,
                    "corrects": corrects,
                    "prev_hash": prev,
                }
                if entry_digest(fields) != stored:
                    problem = (seq, "content does not match its hash (modified)")
            except (ValueError, TypeError) as exc:
                problem = (seq, f"stored value no longer parses ({exc})")
        if problem:
            report.breaks.append(
                ChainBreak(incident_id, problem[0], eid if problem[0] == seq else None, problem[1])
            )
            walk.broken = True
            continue
        walk.expected = seq + 1
        walk.prev = stored
    for incident_id, incident in incidents.items():
        walk = walks.get(incident_id, _Walk(incident))
        if walk.broken:
            continue
        last = walk.expected - 1
        if incident.head_seq > last:
            report.breaks.append(
                ChainBreak(
                    incident_id,
                    last + 1,
                    None,
                    f"entry seq {last + 1} is missing "
                    f"(the incident's head records seq {incident.head_seq})",
                )
            )
        elif incident.head_seq < last or incident.head_hash != walk.prev:
            report.breaks.append(
                ChainBreak(
                    incident_id,
                    last,
                    None,
                    "the chain's end does not match the head recorded on the incident",
                )
            )
    order = {iid: n for n, iid in enumerate(incidents)}
    report.breaks.sort(key=lambda b: (order.get(b.incident_id, -1), b.seq))
    report.heads_root = heads_root({i.id: (i.head_seq, i.head_hash) for i in incidents.values()})
    for incident_id in sorted(wanted):
        anchor = wanted[incident_id]
        where = f"anchored at seq {anchor.seq} (hash {anchor.hash[:16]}…, checkpoint {anchor.at})"
        if incident_id not in incidents:
            remains = " (the incident row is gone, entries remain)" if incident_id in walks else ""
            report.anchor_breaks.append(
                AnchorBreak(incident_id, anchor.seq, f"deleted{remains}; {where}")
            )
        elif not found.get(incident_id, False):
            report.anchor_breaks.append(
                AnchorBreak(
                    incident_id,
                    anchor.seq,
                    f"entry seq {anchor.seq} missing or changed ({where})",
                )
            )
    return report


def _parse_stored_time(raw: Any) -> datetime:
    """SQLite keeps '2026-11-22 02:41:07.123456', PostgreSQL casts to '…+00'; both parse."""
    return as_utc(raw if isinstance(raw, datetime) else str(raw))
