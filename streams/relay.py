"""The change feed: every committed ``log_entries`` row is published on ``crisis.log``.

A transactional-outbox relay: it reads the table by increasing ``id`` *after* commit, so
entries written by the web API are published as well as the worker's, and it keeps its
position in ``feed_positions`` — advanced only once Kafka has acknowledged the records.
A crash between the two republishes a few entries: at-least-once; consumers deduplicate
by ``hash`` (or ``incident_id`` + ``seq``).

Ids become visible in commit order on SQLite (one writer). On PostgreSQL a transaction
holding a lower id can commit after a higher one, so the relay stops before a gap and
waits; a gap still open after ``gap_timeout`` seconds is taken as a rolled-back id.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Text, cast, select
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis.clock import utcnow
from crisis.log.chain import HASHED_FIELDS, format_time
from crisis.log.models import LogEntry
from crisis.log.tables import recorder
from crisis.sources.models import FeedPosition

ENTRIES = LogEntry.__table__  # type: ignore[attr-defined]
POSITIONS = FeedPosition.__table__  # type: ignore[attr-defined]

#: publish([(key, value), ...]) returns once Kafka has acknowledged all of them.
Publish = Callable[[Sequence[tuple[bytes, bytes]]], Awaitable[None]]


_COLUMNS = (
    ENTRIES.c.id,
    ENTRIES.c.incident_id,
    ENTRIES.c.seq,
    ENTRIES.c.kind,
    ENTRIES.c.at,
    ENTRIES.c.actor,
    ENTRIES.c.text,
    cast(ENTRIES.c.data, Text).label("data"),
    ENTRIES.c.exercise,
    ENTRIES.c.corrects,
    ENTRIES.c.prev_hash,
    ENTRIES.c.hash,
)


def entry_json(row: Any) -> bytes:
    """The published form of an entry: the columns of ``LogEntryPublic``, hash included.

    ``data`` is spliced in as the stored JSON text (no decode and re-encode per entry).
    """
    return _record(row._mapping, row.data)


def entry_record(entry: Mapping[str, Any]) -> bytes:
    """The same record from an entry still in memory (its columns as a dict, ``id`` set;
    ``data_json``, if there, is ``data`` as stored)."""
    return _record(entry, entry.get("data_json") or json.dumps(entry["data"]))


#: The columns of a published entry besides ``data``, in their order in the record: its
#: feed position, the hashed fields and the hash.
_RECORD_HEAD = ("id", *(name for name in HASHED_FIELDS if name != "data"), "hash")


def _record(columns: Mapping[str, Any], data: str) -> bytes:
    head = {name: columns[name] for name in _RECORD_HEAD}
    head["at"] = format_time(head["at"])
    text = json.dumps(head, ensure_ascii=False)
    return f'{text[:-1]}, "data": {data}}}'.encode()


class LogRelay:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        publish: Publish,
        *,
        name: str = "crisis.log",
        batch: int = 2000,
        gap_timeout: float = 5.0,
        on_published: Callable[[int], None] | None = None,
        persist_interval: float = 0.5,
        write_lock: asyncio.Lock | None = None,
        max_ready: int = 20_000,
    ) -> None:
        self.sessions = sessions
        self.publish = publish
        self.name = name
        self.batch = batch
        self.gap_timeout = gap_timeout
        self.on_published = on_published
        self._gap: tuple[int, float] | None = None  # (the missing id, since when)
        self.persist_interval = persist_interval
        self.write_lock = write_lock or asyncio.Lock()
        self._position: int | None = None
        self._stored: int | None = None
        self._stored_at = 0.0
        self.max_ready = max_ready
        self._ready: dict[int, tuple[bytes, bytes]] = {}
        self._one_at_a_time = asyncio.Lock()

    async def position(self, session: AsyncSession) -> int:
        row = (
            await session.exec(  # type: ignore[call-overload]
                select(POSITIONS.c.position).where(POSITIONS.c.name == self.name)
            )
        ).first()
        return int(row[0]) if row else 0

    def offer(self, records: Sequence[tuple[int, bytes, bytes]]) -> None:
        """Entries this process has just committed, as (id, key, value): published from memory
        when they are next after the position, instead of being read back. Anything else (other
        writers' entries, an offer dropped because too many wait) is read from the table."""
        if len(self._ready) + len(records) <= self.max_ready:
            self._ready.update((id_, (key, value)) for id_, key, value in records)

    async def run_once(self) -> int:
        """Publish the next entries after the position; returns how many.

        The position lives in memory while running and is written at most every
        ``persist_interval`` seconds (under the worker's write lock, so SQLite's single
        writer is never fought over): a crash republishes at most that much — at-least-once.
        Calls from several tasks take turns, so entries go out once and in order.
        """
        async with self._one_at_a_time:
            return await self._run_once()

    async def drain(self) -> None:
        """Publish until nothing is left after the position."""
        while True:
            before = self._position
            published = await self.run_once()
            # Go on after a full batch, or while offered entries wait and the position moved
            # (other writers' entries, or a skipped gap, were in front of them).
            if published < self.batch and (not self._ready or self._position == before):
                return

    async def _run_once(self) -> int:
        pos = self._position
        records = self._next_offered(pos) if pos is not None else []
        last = (pos or 0) + len(records)
        if not records:
            last, records = await self._next_stored()
        if records:
            await self.publish(records)
            if self.on_published is not None:
                self.on_published(len(records))
        position = self._position = last
        if self._ready:
            for id_ in [i for i in self._ready if i <= position]:
                del self._ready[id_]
        if position != self._stored and (
            not records or time.monotonic() - self._stored_at >= self.persist_interval
        ):
            await self._store(position)
        return len(records)

    def _next_offered(self, pos: int) -> list[tuple[bytes, bytes]]:
        """The offered records that follow ``pos`` without a gap (at most a batch)."""
        out: list[tuple[bytes, bytes]] = []
        next_id = pos + 1
        while len(out) < self.batch and (record := self._ready.pop(next_id, None)) is not None:
            out.append(record)
            next_id += 1
        return out

    async def _next_stored(self) -> tuple[int, list[tuple[bytes, bytes]]]:
        """(last id, records) of the entries after the position, read from the table: only
        those before the next offered one (other writers' entries — the reactions', the web
        app's — between this process's own, which are published from memory)."""
        async with self.sessions() as session:
            if self._position is None:
                self._position = self._stored = await self.position(session)
            pos = self._position
            before = min((i for i in self._ready if i > pos), default=None)
            query = select(*_COLUMNS).where(ENTRIES.c.id > pos)
            if before is not None:
                query = query.where(ENTRIES.c.id < before)
            rows = (
                await session.exec(  # type: ignore[call-overload]
                    query.order_by(ENTRIES.c.id).limit(self.batch)
                )
            ).all()
            await session.rollback()  # end the read transaction before talking to Kafka
        last, rows = self._until_gap(pos, rows, None if len(rows) >= self.batch else before)
        return last, [(r.incident_id.encode(), entry_json(r)) for r in rows]

    def _until_gap(self, pos: int, rows: list[Any], before: int | None) -> tuple[int, list[Any]]:
        """(last id, rows) that may be published now: up to the first missing id, unless it
        has been missing for ``gap_timeout`` (PostgreSQL: the transaction that took it
        commits later, or never). ``before``: every id up to this one is expected."""
        expected = pos + 1
        for n, row in enumerate(rows):
            if row.id != expected and not self._gap_waited(expected):
                return expected - 1, rows[:n]
            expected = row.id + 1
        if before is not None and expected < before:
            if not self._gap_waited(expected):
                return expected - 1, rows
            expected = before
        return expected - 1, rows

    def _gap_waited(self, missing: int) -> bool:
        """Whether id ``missing`` has been waited for long enough; each missing id is timed
        from when it was first found missing, so skipping one never shortens the next wait."""
        now = time.monotonic()
        if self._gap is None or self._gap[0] != missing:
            self._gap = (missing, now)
        return now - self._gap[1] >= self.gap_timeout

    async def _store(self, position: int) -> None:
        async with self.write_lock, self.sessions() as session:
            conn = await session.connection()
            at = utcnow()
            await conn.run_sync(lambda c: recorder(c).save_position(c, self.name, position, at))
            await session.commit()
        self._stored = position
        self._stored_at = time.monotonic()
