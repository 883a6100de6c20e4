"""An aiosqlite stand-in that runs each SQLite statement at once, in the event loop's thread.

Why: aiosqlite hands every statement to a thread of its own and back through the event loop.
For a writer, each of those round trips happens while it holds SQLite's single writer lock:
a playbook setup (a dozen statements through the async ORM) held it mostly while waiting for
its turn on a busy loop, and the ingest's alarms waited behind it. Run in the
loop's thread, a statement costs what SQLite needs for it, and a transaction's statements
follow each other without the loop running anything in between.

What it costs: the loop is blocked for each statement's own time (short for what the
reactions run; a worker thread gave the loop nothing back anyway, as the rows are converted
in the loop's thread). SQLite must never wait inside a statement, so the busy timeout is 0
and a statement that finds the writer lock taken is retried every millisecond with the loop
free in between — only when no transaction of ours is open yet, the one case SQLite allows
a retry (a refused first write leaves nothing behind once rolled back). Like
``crisis.store.sqlite.SqliteRecorder.take_writer``, polling also keeps a waiting writer's
delay close to the other's transaction, where SQLite's own busy handler sleeps up to 100 ms.

Used through ``crisis.db.make_engine(..., in_loop=True)``: SQLAlchemy's aiosqlite dialect
takes this connection from ``async_creator_fn`` and drives it as it drives aiosqlite's.

The retry covers the way this code writes: Python's sqlite3 opens a transaction just before
the first INSERT/UPDATE/DELETE, so that write is where the lock is taken. A transaction
opened earlier on purpose (``BEGIN``, a SAVEPOINT) and then refused its first write gets
"database is locked" at once; no worker path does that.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")

#: How often a statement refused by another writer's lock is tried again (seconds).
RETRY_EVERY = 0.001


class InLoopCursor:
    """aiosqlite's ``Cursor`` interface over a ``sqlite3.Cursor``, run at once."""

    def __init__(self, connection: InLoopConnection, cursor: sqlite3.Cursor) -> None:
        self._connection = connection
        self._cursor = cursor

    async def __aenter__(self) -> InLoopCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Any = ()) -> InLoopCursor:
        await self._connection._run(self._cursor.execute, sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> InLoopCursor:
        rows = list(parameters)  # a retry must see them all again
        await self._connection._run(self._cursor.executemany, sql, rows)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._rows()

    async def _rows(self) -> AsyncIterator[Any]:
        while rows := self._cursor.fetchmany(self._cursor.arraysize):
            for row in rows:
                yield row

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _CursorContext:
    """What ``aiosqlite.Connection.cursor()`` returns: entered (awaited) to get the cursor."""

    def __init__(self, connection: InLoopConnection) -> None:
        self._connection = connection

    async def __aenter__(self) -> InLoopCursor:
        return InLoopCursor(self._connection, self._connection._conn.cursor())

    async def __aexit__(self, *_exc: object) -> None:
        return None


class _Immediate:
    """aiosqlite's request queue (SQLAlchemy puts its isolation-level setter there): runs
    the function at once and settles its future."""

    def put_nowait(self, item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as exc:
            future.set_exception(exc)


class InLoopConnection:
    """aiosqlite's ``Connection`` interface over a ``sqlite3.Connection``, run at once."""

    def __init__(self, conn: sqlite3.Connection, *, wait: float = 30.0) -> None:
        self._conn = conn
        self._open = True
        self.wait = wait
        self._tx = _Immediate()

    @property
    def _connection(self) -> sqlite3.Connection | None:
        """The sqlite3 connection while open (SQLAlchemy's adapter checks it)."""
        return self._conn if self._open else None

    async def _run(self, call: Callable[..., T], *args: Any) -> T:
        deadline: float | None = None
        while True:
            fresh = not self._conn.in_transaction
            try:
                return call(*args)
            except sqlite3.OperationalError as exc:
                if not fresh or "database is locked" not in str(exc):
                    raise
                if self._conn.in_transaction:  # the refused write's implicit BEGIN
                    self._conn.rollback()
                now = time.monotonic()
                deadline = deadline if deadline is not None else now + self.wait
                if now >= deadline:
                    raise
            await asyncio.sleep(RETRY_EVERY)

    def cursor(self) -> _CursorContext:
        return _CursorContext(self)

    async def execute(self, sql: str, parameters: Any = ()) -> InLoopCursor:
        cursor = InLoopCursor(self, self._conn.cursor())
        return await cursor.execute(sql, parameters)

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        """Close at once (also SQLAlchemy's forced termination); again is a no-op."""
        if self._open:
            self._open = False
            self._conn.close()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self._conn.isolation_level = value  # type: ignore[assignment]


async def connect(database: str, *, wait: float = 30.0, **kwargs: Any) -> InLoopConnection:
    """Open ``database`` for ``InLoopConnection`` (SQLAlchemy's ``async_creator_fn``; the
    dialect's other connect arguments pass through, with SQLite's busy timeout 0)."""
    kwargs["timeout"] = 0  # SQLite's busy handler off from the start (crisis.db sets it too)
    kwargs["check_same_thread"] = False
    return InLoopConnection(sqlite3.connect(database, **kwargs), wait=wait)
