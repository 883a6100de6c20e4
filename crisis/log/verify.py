"""Verification: recompute every incident's chain from the stored bytes (``crisis log verify``).

Reads only; links are recomputed with the same pure builder the writer uses
(:func:`crisis.log.chain.next_head`), so what every write path stored is checked alike.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Text, cast, text
from sqlalchemy import select as core_select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis.clock import as_utc
from crisis.log.chain import Head, next_head
from crisis.log.models import Incident, LogEntry


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
    #: The last entry checked (the chain's start before any).
    head: Head = field(default_factory=Head)
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
    incident_id: str | None = None,
) -> VerifyReport:
    """Recompute every chain from the stored bytes; report the first break of each incident.
    ``incident_id`` checks that incident's chain alone (its anchored head only, if given).

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
            return await verify_log(fresh, anchored=anchored, incident_id=incident_id)
    report = VerifyReport()
    wanted = dict(anchored or {})
    if incident_id is not None:
        wanted = {k: v for k, v in wanted.items() if k == incident_id}
    report.anchored = len(wanted)
    #: incident id → whether its entry at the anchored seq carried the anchored hash
    found: dict[str, bool] = {}
    chosen = select(Incident)
    if incident_id is not None:
        chosen = chosen.where(Incident.id == incident_id)
    incidents = {
        i.id: i
        for i in (
            await session.exec(
                chosen.order_by(col(Incident.opened_at), col(Incident.id))
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
    if incident_id is not None:
        stmt = stmt.where(table.c.incident_id == incident_id)
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
        expected = walk.head.seq + 1
        if seq != expected:
            problem = (expected, f"entry seq {expected} is missing (next stored is {seq})")
        elif prev != walk.head.hash:
            problem = (
                seq,
                "prev_hash does not match the previous entry (removed, inserted or reordered)",
            )
        else:
            try:
                fields = {
                    "incident_id": incident_id,
                    "kind": kind,
                    "at": _parse_stored_time(at_raw),
                    "actor": actor,
                    "text": text_,
                    "data": json.loads(data_raw),
                    "exercise": exercise,
                    "corrects": corrects,
                }
                if next_head(walk.head, fields).hash != stored:
                    problem = (seq, "content does not match its hash (modified)")
            except (ValueError, TypeError) as exc:
                problem = (seq, f"stored value no longer parses ({exc})")
        if problem:
            report.breaks.append(
                ChainBreak(incident_id, problem[0], eid if problem[0] == seq else None, problem[1])
            )
            walk.broken = True
            continue
        walk.head = Head(seq, stored)
    for incident_id, incident in incidents.items():
        walk = walks.get(incident_id, _Walk(incident))
        if walk.broken:
            continue
        last = walk.head.seq
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
        elif incident.head_seq < last or incident.head_hash != walk.head.hash:
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


async def entry_with_hash(session: AsyncSession, *, incident_id: str, hash_: str) -> int | None:
    """The seq of the incident's entry whose stored hash is ``hash_`` (a report's head), or
    None when no entry of that incident has it."""
    table = LogEntry.__table__  # type: ignore[attr-defined]
    row = (
        await session.execute(
            core_select(table.c.seq)
            .where(table.c.incident_id == incident_id, table.c.hash == hash_.strip().lower())
            .order_by(table.c.seq)
            .limit(1)
        )
    ).first()
    return None if row is None else int(row[0])


def _parse_stored_time(raw: Any) -> datetime:
    """SQLite keeps '2026-11-22 02:41:07.123456', PostgreSQL casts to '…+00'; both parse."""
    return as_utc(raw if isinstance(raw, datetime) else str(raw))
