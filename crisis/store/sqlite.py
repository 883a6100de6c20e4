"""The SQLite adapter of the storage seam (:mod:`crisis.store.recorder`).

SQLite has one writer, so speed is time under its lock. Work runs on a plain ``sqlite3``
connection of a synchronous twin engine, in the event loop's own thread once the writer
lock is taken (tried every ~1 ms with the loop free in between), and the hot statements
are plain DB-API calls with tuples (:class:`SqliteRows`) instead of SQLAlchemy Core's
per-statement compile-cache lookup and per-row parameter dicts. The values are converted by
the columns' own SQLAlchemy type processors (public ``dialect_impl`` API), so the stored
text is what the ORM writes and reads.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Table, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import OperationalError

from crisis.store.db import checkpoint_sqlite, make_sync_sqlite_engine
from crisis.store.recorder import (
    CHUNK,
    CORRECTED_COLUMNS,
    HEAD_COLUMNS,
    HEAD_UPDATE_COLUMNS,
    Key,
    Recorder,
    Tables,
)

T = TypeVar("T")
Processor = Callable[[Any], Any] | None

#: Seconds ``run`` waits for the writer lock before raising SQLite's "database is locked"
#: (a transient error: the caller retries).
WRITER_WAIT = 30.0

#: No value at all (not even None): the converted-value memo's empty slot.
_NOTHING = object()


class SqliteRecorder(Recorder):
    """The recorder on SQLite."""

    def upsert(self, table: Table) -> Any:
        return sqlite.insert(table)

    def __init__(self, tables: Tables, engine: Any = None) -> None:
        super().__init__(tables, engine)
        self._twin: Engine | None = None
        self._rows: dict[str, SqliteRows] = {}

    @property
    def twin(self) -> Engine:
        """A synchronous engine on the same file with the same settings but no busy timeout
        (``run`` polls the writer lock instead) and no checkpoints in its commits
        (``checkpoint`` runs them beside the work)."""
        if self._twin is None:
            assert self.engine is not None, "a recorder made without its engine cannot run work"
            self._twin = make_sync_sqlite_engine(
                self.engine.url.set(drivername="sqlite"), busy_timeout_ms=0, autocheckpoint=False
            )
        return self._twin

    def _table(self, table: Table, dialect: Dialect) -> SqliteRows:
        rows = self._rows.get(table.name)
        if rows is None:
            rows = self._rows[table.name] = SqliteRows(table, dialect)
        return rows

    # -- running ---------------------------------------------------------------------------

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """``work`` on a plain sqlite3 connection in the loop's thread, once the writer lock
        is ours: a worker thread would compete with the loop for the GIL at every call. The
        loop is blocked for the work's duration only, never while waiting for the lock."""
        twin = self.twin
        deadline = time.monotonic() + WRITER_WAIT
        while True:
            with twin.connect() as conn:
                if self.take_writer(conn, wait=time.monotonic() > deadline):
                    return work(conn, *args)
            await asyncio.sleep(0.001)

    async def checkpoint(self) -> None:
        """Copy the WAL into the database in a thread, beside the work (whose commits never
        do, so no unit of work pays for it)."""
        await asyncio.to_thread(checkpoint_sqlite, self.twin)

    async def dispose(self) -> None:
        if self._twin is not None:
            self._twin.dispose()
            self._twin = None

    # -- locks -----------------------------------------------------------------------------

    def take_writer(self, conn: Connection, *, wait: bool = False) -> bool:
        """Take SQLite's single writer lock before anything is read; ``False`` if another
        connection holds it (``wait``: raise its "database is locked" error instead, after
        the connection's busy timeout). A write that writes nothing, as the transaction's
        first statement, takes it; SQLite's own busy handler backs off to 50-100 ms sleeps."""
        incidents = self.tables.incidents.name
        try:
            conn.execute(text(f"UPDATE {incidents} SET head_seq = head_seq WHERE 0"))  # noqa: S608
            return True
        except OperationalError as exc:
            if wait or "locked" not in str(exc).lower():
                raise
            conn.rollback()
            return False

    def take_locks(self, conn: Connection, keys: Sequence[int]) -> None:
        """SQLite's writer lock (it has one writer; idempotent within the transaction)."""
        self.take_writer(conn, wait=True)

    # -- reads -----------------------------------------------------------------------------

    def existing_keys(self, conn: Connection, keys: Sequence[Key]) -> set[Key]:
        """The pairs joined as a VALUES list, one primary-key lookup each: SQLite answers
        ``(source, id) IN (...)`` by scanning the whole key index."""
        raw = self.tables.raw.name
        found: set[Key] = set()
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            pairs = ", ".join(["(?, ?)"] * len(chunk))  # placeholders only
            rows = conn.exec_driver_sql(
                f"WITH wanted(source, id) AS (VALUES {pairs})"  # noqa: S608
                f" SELECT r.source, r.id FROM {raw} AS r"
                " JOIN wanted AS w ON r.source = w.source AND r.id = w.id",
                tuple(part for key in chunk for part in key),
            )
            found.update((s, i) for s, i in rows.all())
        return found

    def incident_heads(self, conn: Connection, ids: Sequence[str]) -> list[tuple[Any, ...]]:
        rows = self._table(self.tables.incidents, conn.dialect)
        return rows.select_in(conn, HEAD_COLUMNS, "id", ids)

    def load_state(self, conn: Connection, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        rows = self._table(self.tables.state, conn.dialect)
        return dict(rows.select_in(conn, ("key", "data"), "key", keys))  # each freshly decoded

    # -- writes ----------------------------------------------------------------------------

    def insert_raw_events(
        self,
        conn: Connection,
        rows: Sequence[Mapping[str, Any]],
        texts: Sequence[str] | None = None,
    ) -> set[Key]:
        table = self._table(self.tables.raw, conn.dialect)
        columns = tuple(c.name for c in self.tables.raw.columns)
        encoded: tuple[str, ...] = ()
        if texts is not None:  # the envelope's text as it arrived: no re-encoding
            rows = [{**row, "envelope": t} for row, t in zip(rows, texts, strict=True)]
            encoded = ("envelope",)
        inserted = table.insert(
            conn,
            columns,
            rows,
            tail=" ON CONFLICT (source, id) DO NOTHING",
            returning=("source", "id"),
            encoded=encoded,
        )
        return {(s, i) for s, i in inserted}

    def insert_incidents(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        table = self._table(self.tables.incidents, conn.dialect)
        table.insert(conn, tuple(c.name for c in self.tables.incidents.columns), rows)

    def insert_entries(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Each row's ``data`` is encoded once, into ``data_json`` (which the feed relay
        publishes too). SQLite returns the ids in insertion order, which its documentation
        does not promise, so they are matched to the rows by (incident, seq)."""
        table = self._table(self.tables.entries, conn.dialect)
        columns = tuple(c.name for c in self.tables.entries.columns if c.name != "id")
        for row in rows:
            row["data_json"] = json.dumps(row["data"])
        returned = table.insert(
            conn,
            columns,
            rows,
            returning=("id", "incident_id", "seq"),
            encoded=("data",),
            keys={"data": "data_json"},
        )
        ids = {(incident_id, seq): id_ for id_, incident_id, seq in returned}
        for row in rows:
            row["id"] = ids[row["incident_id"], row["seq"]]

    def update_heads(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        table = self._table(self.tables.incidents, conn.dialect)
        if rows:
            table.update(conn, HEAD_UPDATE_COLUMNS, "id", rows)
        closed = [r for r in rows if r.get("closed_at") is not None]
        if closed:
            table.update(conn, ("closed_at",), "id", closed)
        for column in CORRECTED_COLUMNS:
            corrected = [r for r in rows if r.get(column) is not None]
            if corrected:
                table.update(conn, (column,), "id", corrected)

    def save_state(self, conn: Connection, state: Mapping[str, Mapping[str, Any]]) -> None:
        if not state:
            return
        self._table(self.tables.state, conn.dialect).insert(
            conn,
            ("key", "data", "due"),
            [{"key": k, "data": v, "due": v.get("due")} for k, v in sorted(state.items())],
            tail=" ON CONFLICT (key) DO UPDATE SET data = excluded.data, due = excluded.due",
        )


class SqliteRows:
    """Plain DB-API statements on one table, with its columns' processors looked up once."""

    def __init__(self, table: Table, dialect: Dialect) -> None:
        self.table = table
        self.name = table.name
        self._bind: dict[str, Processor] = {}
        self._result: dict[str, Processor] = {}
        for c in table.columns:
            impl = c.type.dialect_impl(dialect)
            self._bind[c.name] = impl.bind_processor(dialect)
            self._result[c.name] = impl.result_processor(dialect, None)

    def _params(
        self,
        columns: Sequence[str],
        rows: Sequence[Mapping[str, Any]],
        encoded: Collection[str],
        keys: Mapping[str, str] | None = None,
    ) -> list[Any]:
        """The rows' values in order, each converted by its column's bind processor. A value
        that is the very object of the row before is converted once: a batch's rows share
        their timestamps, and formatting a datetime is costly. ``keys``: where a row holds a
        column's value under another name."""
        procs = [None if name in encoded else self._bind[name] for name in columns]
        names = [(keys or {}).get(name, name) for name in columns]
        last_in: list[Any] = [_NOTHING] * len(columns)
        last_out: list[Any] = [None] * len(columns)
        out: list[Any] = []
        append = out.append
        for row in rows:
            for i, name in enumerate(names):
                value = row[name]
                process = procs[i]
                if process is None or value is None:
                    append(value)
                elif value is last_in[i]:
                    append(last_out[i])
                else:
                    converted = process(value)
                    last_in[i], last_out[i] = value, converted
                    append(converted)
        return out

    def insert(
        self,
        conn: Connection,
        columns: Sequence[str],
        rows: Sequence[Mapping[str, Any]],
        *,
        tail: str = "",
        returning: Sequence[str] = (),
        encoded: Collection[str] = (),
        keys: Mapping[str, str] | None = None,
    ) -> list[tuple[Any, ...]]:
        """Multi-row ``INSERT``; ``tail`` is an ``ON CONFLICT`` clause; returns the
        ``returning`` columns of the rows inserted. ``encoded``: columns whose values are
        already the stored form (JSON text the caller has); ``keys``: the row's key for a
        column, where it is not the column's name."""
        cursor = _cursor(conn)
        out: list[tuple[Any, ...]] = []
        one = "(" + ", ".join(["?"] * len(columns)) + ")"
        head = f"INSERT INTO {self.name} ({', '.join(columns)}) VALUES "  # noqa: S608
        back = f" RETURNING {', '.join(returning)}" if returning else ""
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            params = self._params(columns, chunk, encoded, keys)
            cursor.execute(head + ", ".join([one] * len(chunk)) + tail + back, params)
            if returning:
                out.extend(tuple(r) for r in cursor.fetchall())
        return out

    def update(
        self, conn: Connection, columns: Sequence[str], key: str, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """``UPDATE … SET columns WHERE key = ?`` for each row (one ``executemany``)."""
        sets = ", ".join(f"{c} = ?" for c in columns)
        _cursor(conn).executemany(
            f"UPDATE {self.name} SET {sets} WHERE {key} = ?",  # noqa: S608 (column names)
            [[*self._params(columns, [row], ()), row[key]] for row in rows],
        )

    def select_in(
        self, conn: Connection, columns: Sequence[str], key: str, keys: Sequence[Any]
    ) -> list[tuple[Any, ...]]:
        """The rows whose ``key`` is one of ``keys``, values converted as SQLAlchemy would."""
        cursor = _cursor(conn)
        procs = [self._result[c] for c in columns]
        out: list[tuple[Any, ...]] = []
        for start in range(0, len(keys), CHUNK):
            chunk = list(keys[start : start + CHUNK])
            marks = ", ".join(["?"] * len(chunk))
            cursor.execute(
                f"SELECT {', '.join(columns)} FROM {self.name} WHERE {key} IN ({marks})",  # noqa: S608
                chunk,
            )
            for row in cursor.fetchall():
                out.append(
                    tuple(
                        v if p is None or v is None else p(v)
                        for p, v in zip(procs, row, strict=True)
                    )
                )
        return out


def _cursor(conn: Connection) -> Any:
    """A DB-API cursor of the connection, inside its current transaction."""
    return conn.connection.cursor()
