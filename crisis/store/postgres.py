"""The PostgreSQL adapter of the storage seam (:mod:`crisis.store.recorder`).

SQLAlchemy Core statements on the caller's connection (asyncpg under ``run_sync``): ``IN``
lists and executemany, which SQLAlchemy batches into multi-row statements from one cached
compilation; incident locks are transaction-scoped advisory locks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Table, bindparam, insert, select, text, tuple_, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from crisis.store.recorder import (
    CHUNK,
    CORRECTED_COLUMNS,
    HEAD_COLUMNS,
    HEAD_UPDATE_COLUMNS,
    Key,
    Recorder,
)

T = TypeVar("T")

_LOCK = text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k")


class PostgresRecorder(Recorder):
    """The recorder on PostgreSQL."""

    def upsert(self, table: Table) -> Any:
        return postgresql.insert(table)

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        assert self.engine is not None, "a recorder made without its engine cannot run work"
        async with self.engine.connect() as conn:
            return await conn.run_sync(work, *args)

    def take_locks(self, conn: Connection, keys: Sequence[int]) -> None:
        """One transaction-scoped advisory lock per key, in the order given."""
        if keys:
            conn.execute(_LOCK, parameters={"keys": list(keys)})

    def existing_keys(self, conn: Connection, keys: Sequence[Key]) -> set[Key]:
        raw = self.tables.raw.c
        found: set[Key] = set()
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            rows = conn.execute(
                select(raw.source, raw.id).where(tuple_(raw.source, raw.id).in_(chunk))
            )
            found.update((s, i) for s, i in rows.all())
        return found

    def incident_heads(self, conn: Connection, ids: Sequence[str]) -> list[tuple[Any, ...]]:
        cols = self.tables.incidents.c
        found: list[tuple[Any, ...]] = []
        for start in range(0, len(ids), CHUNK):
            result = conn.execute(
                select(*(cols[c] for c in HEAD_COLUMNS)).where(
                    cols.id.in_(ids[start : start + CHUNK])
                )
            )
            found += [tuple(row) for row in result.all()]
        return found

    def load_state(self, conn: Connection, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        cols = self.tables.state.c
        state: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            rows = conn.execute(select(cols.key, cols.data).where(cols.key.in_(chunk)))
            state.update({k: dict(d) for k, d in rows.all()})
        return state

    def insert_raw_events(
        self,
        conn: Connection,
        rows: Sequence[Mapping[str, Any]],
        texts: Sequence[str] | None = None,
    ) -> set[Key]:
        raw = self.tables.raw
        stmt = (
            postgresql.insert(raw)
            .on_conflict_do_nothing(index_elements=["source", "id"])
            .returning(raw.c.source, raw.c.id)
        )
        result = conn.execute(stmt, parameters=list(rows))
        return {(s, i) for s, i in result.all()}

    def insert_incidents(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        conn.execute(insert(self.tables.incidents), parameters=list(rows))

    def insert_entries(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        entries = self.tables.entries
        result = conn.execute(
            insert(entries).returning(entries.c.id, sort_by_parameter_order=True),
            parameters=list(rows),
        )
        for row, id_ in zip(rows, result.scalars(), strict=True):
            row["id"] = id_

    def update_heads(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        incidents = self.tables.incidents
        if not rows:
            return
        conn.execute(
            update(incidents)
            .where(incidents.c.id == bindparam("b_id"))
            .values({c: bindparam(c) for c in HEAD_UPDATE_COLUMNS}),
            parameters=[{"b_id": r["id"], **{c: r[c] for c in HEAD_UPDATE_COLUMNS}} for r in rows],
        )
        closed = [
            {"b_id": r["id"], "closed_at": r["closed_at"]}
            for r in rows
            if r.get("closed_at") is not None
        ]
        if closed:
            conn.execute(
                update(incidents)
                .where(incidents.c.id == bindparam("b_id"))
                .values(closed_at=bindparam("closed_at")),
                parameters=closed,
            )
        for column in CORRECTED_COLUMNS:
            corrected = [
                {"b_id": r["id"], column: r[column]} for r in rows if r.get(column) is not None
            ]
            if corrected:
                conn.execute(
                    update(incidents)
                    .where(incidents.c.id == bindparam("b_id"))
                    .values({column: bindparam(column)}),
                    parameters=corrected,
                )

    def save_state(self, conn: Connection, state: Mapping[str, Mapping[str, Any]]) -> None:
        if not state:
            return
        stmt = postgresql.insert(self.tables.state)
        stmt = stmt.on_conflict_do_update(
            index_elements=["key"], set_={"data": stmt.excluded.data, "due": stmt.excluded.due}
        )
        rows = [{"key": k, "data": v, "due": v.get("due")} for k, v in sorted(state.items())]
        conn.execute(stmt, parameters=rows)
