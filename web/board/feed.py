"""The board's change feed: one poller per app reads new log entries, fans out to clients.

The database is the system of record and entries are written by other processes (the
stream worker, playbooks, notifiers), so the feed polls ``log_entries`` by id — the global,
monotonically increasing sequence — every ``interval`` seconds. One poller serves all
clients; each client has a bounded queue, and a client that falls behind is marked for
resync (its queue is dropped and it re-reads what it missed from the database), so a slow
browser never slows the others or the writers.

On PostgreSQL ids are assigned at insert and transactions may commit out of id order, so
an id below the newest one seen can appear later. The poller keeps such gaps open for
``gap_grace`` seconds and re-checks them; every message carries ``resume`` — the id below
which everything has been delivered — which is what a reconnecting client sends back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, or_
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis.domain.vocabulary import EntryKind
from crisis.log.models import Incident, LogEntry
from crisis.log.privacy import Shown

log = logging.getLogger("crisis.web.board_feed")

TASK_KINDS = frozenset({EntryKind.TASK.value, EntryKind.TASK_UPDATE.value})
INCIDENT_KINDS = frozenset(
    {
        EntryKind.INCIDENT_OPENED.value,
        EntryKind.ESCALATION.value,
        EntryKind.STATUS_CHANGE.value,
        EntryKind.DECISION.value,
        EntryKind.SITUATION_REPORT.value,
    }
)


def topic_of(kind: str) -> str:
    """Which part of the board an entry changes: incident, task, notification or the log."""
    if kind in TASK_KINDS:
        return "task"
    if kind == EntryKind.MESSAGE:
        return "notification"
    if kind in INCIDENT_KINDS:
        return "incident"
    return "entry"


def incident_json(i: Incident) -> dict[str, Any]:
    return {
        "id": i.id,
        "type": i.type,
        "title": i.title,
        "unit": i.unit,
        "severity": i.severity,
        "level": i.level,
        "status": i.status,
        "exercise": i.exercise,
        "next_update_at": i.next_update_at.isoformat() if i.next_update_at else None,
    }


def entry_json(item: Shown) -> dict[str, Any]:
    """An entry as one reader may see it (:func:`crisis.privacy.entry_for_viewer`), as JSON."""
    e = item.entry
    return {
        "id": e.id,
        "incident_id": e.incident_id,
        "seq": e.seq,
        "kind": e.kind,
        "at": e.at.isoformat(),
        "actor": e.actor,
        "text": item.text,
        "data": item.data,
        "exercise": e.exercise,
        "corrects": e.corrects,
    }


@dataclass(frozen=True)
class Change:
    """One new entry with its incident as it stands now; ``resume`` as in the module doc."""

    entry: LogEntry
    incident: Incident
    resume: int


RESYNC = object()
#: Ids a poll may skip and still wait for (concurrent writers' transactions in flight).
MAX_GAP = 1000


@dataclass(eq=False)
class Subscriber:
    queue: asyncio.Queue[Any]
    overflowed: bool = False
    dropped: int = 0

    def offer(self, change: Change) -> None:
        """Never blocks: a full queue is emptied and the client told to re-read (resync)."""
        if self.overflowed:
            self.dropped += 1
            return
        try:
            self.queue.put_nowait(change)
        except asyncio.QueueFull:
            self.overflowed = True
            self.dropped += self.queue.qsize() + 1
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(RESYNC)


async def fetch(
    session: AsyncSession, *, after: int, gaps: Sequence[int] = (), limit: int = 500
) -> list[tuple[LogEntry, Incident]]:
    """Entries with id > ``after`` (or in ``gaps``), oldest first, with their incidents."""
    cond = col(LogEntry.id) > after
    if gaps:
        cond = or_(cond, col(LogEntry.id).in_(list(gaps)))
    stmt = (
        select(LogEntry, Incident)
        .join(Incident, Incident.id == LogEntry.incident_id)  # type: ignore[arg-type]
        .where(cond)
        .order_by(col(LogEntry.id))
        .limit(limit)
        .execution_options(populate_existing=True)
    )
    return [(e, i) for e, i in (await session.exec(stmt)).all()]


async def head(session: AsyncSession) -> int:
    value = (await session.exec(select(func.max(LogEntry.id)))).one()
    return int(value or 0)


@dataclass
class BoardFeed:
    sessions: async_sessionmaker[AsyncSession]
    interval: float = 0.2
    queue_size: int = 1000
    gap_grace: float = 10.0
    clients: set[Subscriber] = field(default_factory=set)
    last: int = -1
    gaps: dict[int, float] = field(default_factory=dict)
    polls: int = 0
    _task: asyncio.Task[None] | None = None

    @property
    def resume(self) -> int:
        """Everything up to here has been delivered (no open gap below it)."""
        return min(self.gaps) - 1 if self.gaps else self.last

    async def subscribe(self) -> Subscriber:
        if self.last < 0:
            async with self.sessions() as session:
                self.last = await head(session)
        sub = Subscriber(asyncio.Queue(maxsize=self.queue_size))
        self.clients.add(sub)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="board-feed-poller")
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.clients.discard(sub)

    async def close(self) -> None:
        self.clients.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def poll_once(self) -> int:
        now = time.monotonic()
        for gid in [g for g, deadline in self.gaps.items() if deadline < now]:
            del self.gaps[gid]  # rolled back or never coming: stop waiting for it
        async with self.sessions() as session:
            rows = await fetch(session, after=self.last, gaps=sorted(self.gaps))
        for entry, incident in rows:
            assert entry.id is not None
            if entry.id in self.gaps:
                del self.gaps[entry.id]
            elif entry.id > self.last:
                if entry.id - self.last <= MAX_GAP:  # a bigger jump is a sequence reset, not races
                    for missing in range(self.last + 1, entry.id):
                        self.gaps[missing] = now + self.gap_grace
                self.last = entry.id
            change = Change(entry, incident, self.resume)
            for sub in list(self.clients):
                sub.offer(change)
        self.polls += 1
        return len(rows)

    async def _run(self) -> None:
        while self.clients:
            try:
                got = await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup must not end the feed
                log.exception("board feed poll failed; retrying")
                got = 0
            if got < 500:
                await asyncio.sleep(self.interval)
