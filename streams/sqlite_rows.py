"""The hot path's statements on SQLite as plain DB-API calls.

Why: per batch the pipeline runs about eight statements, and through SQLAlchemy Core each
one costs a compile-cache lookup, an execution context and a parameter dict per row, a large
share of a small batch's time. Here each statement is one ``sqlite3`` call with tuples.

What does not change: the values are converted by the columns' own SQLAlchemy bind and
result processors (obtained once per column), so what is stored and read back is exactly
what the ORM and the rest of the system write and read (dates, JSON, booleans). PostgreSQL
keeps the SQLAlchemy statements.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Connection

Processor = Callable[[Any], Any] | None

#: No value at all (not even None): the converted-value memo's empty slot.
_NOTHING = object()

#: Rows per multi-row statement (SQLite allows 32,766 variables since 3.32).
CHUNK = 500


class SqliteRows:
    """Statements on one table, with its columns' processors looked up once."""

    def __init__(self, table: Table, dialect: Any) -> None:
        self.table = table
        self.name = table.name
        self._bind: dict[str, Processor] = {
            c.name: c.type._cached_bind_processor(dialect) for c in table.columns
        }
        self._result: dict[str, Processor] = {
            c.name: c.type._cached_result_processor(dialect, None) for c in table.columns
        }

    def _params(
        self,
        columns: Sequence[str],
        rows: Sequence[Mapping[str, Any]],
        encoded: Collection[str],
        keys: Mapping[str, str] | None = None,
    ) -> list[Any]:
        """The rows' values in order, each converted by its column's bind processor. A value
        that is the very object of the row before is converted once: a batch's rows share
        their timestamps, and formatting a datetime was a tenth of a batch's time. ``keys``:
        where a row holds a column's value under another name."""
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
        ``returning`` columns of the rows inserted (SQLite returns them in insertion order,
        not promised by its documentation, so callers match them by key). ``encoded``:
        columns whose values are already the stored form (JSON text the caller has);
        ``keys``: the row's key for a column, where it is not the column's name."""
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
    """A cursor of the connection's own DB-API connection, inside its current transaction."""
    return conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
