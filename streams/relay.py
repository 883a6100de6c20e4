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
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import Text, cast, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis.chain import format_time
from crisis.models import LogEntry
from crisis.sqltypes import utcnow
from crisis.stream_models import FeedPosition

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
    head = json.dumps(
        {
            "id": row.id,
            "incident_id": row.incident_id,
            "seq": row.seq,
            "kind": row.kind,
            "at": format_time(row.at),
            "actor": row.actor,
            "text": row.text,
            "exercise": row.exercise,
            "corrects": row.corrects,
            "prev_hash": row.prev_hash,
            "hash": row.hash,
        },
        ensure_ascii=False,
    )
    return f'{head[:-1]}, "data": {row.data}}}'.encode()


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
    ) -> None:
        self.sessions = sessions
        self.publish = publish
        self.name = name
        self.batch = batch
        self.gap_timeout = gap_timeout
        self.on_published = on_published
        self._gap_since: float | None = None
        self.persist_interval = persist_interval
        self.write_lock = write_lock or asyncio.Lock()
        self._position: int | None = None
        self._stored: int | None = None
        self._stored_at = 0.0

    async def position(self, session: AsyncSession) -> int:
        row = (
            await session.exec(  # type: ignore[call-overload]
                select(POSITIONS.c.position).where(POSITIONS.c.name == self.name)
            )
        ).first()
        return int(row[0]) if row else 0

    async def run_once(self) -> int:
        """Publish the next entries after the position; returns how many.

        The position lives in memory while running and is written at most every
        ``persist_interval`` seconds (under the worker's write lock, so SQLite's single
        writer is never fought over): a crash republishes at most that much — at-least-once.
        """
        async with self.sessions() as session:
            if self._position is None:
                self._position = self._stored = await self.position(session)
            pos = self._position
            rows = (
                await session.exec(  # type: ignore[call-overload]
                    select(*_COLUMNS)
                    .where(ENTRIES.c.id > pos)
                    .order_by(ENTRIES.c.id)
                    .limit(self.batch)
                )
            ).all()
            await session.rollback()  # end the read transaction before talking to Kafka
        rows = self._until_gap(pos, rows)
        if rows:
            await self.publish([(r.incident_id.encode(), entry_json(r)) for r in rows])
            self._position = int(rows[-1].id)
            if self.on_published is not None:
                self.on_published(len(rows))
        if self._position != self._stored and (
            not rows or time.monotonic() - self._stored_at >= self.persist_interval
        ):
            await self._store(self._position)
        return len(rows)

    def _until_gap(self, pos: int, rows: list[Any]) -> list[Any]:
        expected = pos + 1
        for n, row in enumerate(rows):
            if row.id != expected:
                now = time.monotonic()
                if self._gap_since is None:
                    self._gap_since = now
                if now - self._gap_since < self.gap_timeout:
                    return rows[:n]
            expected = row.id + 1
        self._gap_since = None
        return rows

    async def _store(self, position: int) -> None:
        async with self.write_lock, self.sessions() as session:
            dialect = session.get_bind().dialect.name
            ins = postgresql.insert if dialect == "postgresql" else sqlite.insert
            stmt = ins(POSITIONS).values(name=self.name, position=position, updated_at=utcnow())
            stmt = stmt.on_conflict_do_update(
                index_elements=["name"],
                set_={"position": stmt.excluded.position, "updated_at": stmt.excluded.updated_at},
            )
            await session.exec(stmt)
            await session.commit()
        self._stored = position
        self._stored_at = time.monotonic()
