"""The SQLite adapter: plain statements write and read exactly what SQLAlchemy's column
types do."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from crisis.log.models import Incident, RawEvent
from crisis.log.tables import TABLES
from crisis.store.db import make_engine, make_sessionmaker, migrate
from crisis.store.sqlite import SqliteRecorder, SqliteRows

INCIDENTS = Incident.__table__  # type: ignore[attr-defined]
RAW = RawEvent.__table__  # type: ignore[attr-defined]
T = datetime(2026, 12, 2, 5, 3, 8, 123456, tzinfo=UTC)


def _incident(id_: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": id_,
        "type": "fire",
        "title": "Brann i kjøkken – «test»",
        "unit": "ila",
        "severity": 3,
        "exercise": None,
        "accountable_role": "leader",
        "accountable_person": "Åse Ødegård",
        "impact": {"liv": "høy", "n": [1, 2.5, None]},
        "status": "open",
        "level": "unit",
        "security_political": True,
        "area": "A",
        "opened_at": T,
        "closed_at": None,
        "next_update_at": None,
        "head_seq": 0,
        "head_hash": "0" * 64,
        **extra,
    }


async def test_rows_written_plainly_read_back_as_the_orm_writes_them(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'rows.db'}")
    await migrate(engine)
    twin = SqliteRecorder(TABLES, engine).twin
    incidents = SqliteRows(INCIDENTS, twin.dialect)
    raw = SqliteRows(RAW, twin.dialect)
    columns = [c.name for c in INCIDENTS.columns]
    with twin.connect() as conn:
        incidents.insert(conn, columns, [_incident("plain")])
        conn.execute(insert(INCIDENTS), [_incident("orm")])
        envelope = {"id": "e1", "data": {"tekst": "æøå", "x": 1.5}}
        inserted = raw.insert(
            conn,
            ("source", "id", "type", "received_at", "envelope"),
            [{"source": "/s", "id": "e1", "type": "t", "received_at": T, "envelope": envelope}] * 2,
            tail=" ON CONFLICT (source, id) DO NOTHING",
            returning=("source", "id"),
        )
        assert inserted == [("/s", "e1")], "the conflicting row is not inserted, not returned"
        incidents.update(
            conn, ("head_seq", "closed_at"), "id", [{"id": "plain", "head_seq": 4, "closed_at": T}]
        )
        conn.commit()
        stored = {
            row[0]: row[1:]
            for row in conn.exec_driver_sql(
                "SELECT id, opened_at, impact, security_political FROM incidents"
            )
        }
        assert stored["plain"] == stored["orm"], "the same text in the database"
        plain = incidents.select_in(conn, columns, "id", ["plain", "orm", "missing"])
        by_orm = [tuple(r) for r in conn.execute(select(*INCIDENTS.c).order_by(INCIDENTS.c.id))]
    assert sorted(plain, key=lambda r: r[columns.index("id")]) == by_orm
    async with make_sessionmaker(engine)() as session:
        read = await session.get(Incident, "plain")
        assert read is not None
        assert read.opened_at == T and read.opened_at.tzinfo is not None
        assert read.closed_at == T and read.head_seq == 4
        assert read.impact == {"liv": "høy", "n": [1, 2.5, None]}
        assert read.security_political is True
        event = await session.get(RawEvent, ("/s", "e1"))
        assert event is not None and event.envelope == envelope and event.received_at == T
    twin.dispose()
    await engine.dispose()


async def test_a_value_shared_by_rows_is_converted_once_and_others_each_time(
    tmp_path: Path,
) -> None:
    """The per-statement memo reuses a conversion only for the very same object."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'memo.db'}")
    await migrate(engine)
    twin = SqliteRecorder(TABLES, engine).twin
    raw = SqliteRows(RAW, twin.dialect)
    later = datetime(2026, 12, 2, 6, 0, 0, 1, tzinfo=UTC)
    times = [T, T, later, datetime(2026, 12, 2, 5, 3, 8, 123456, tzinfo=UTC), T]
    rows = [
        {"source": "/s", "id": f"e{i}", "type": "t", "received_at": t, "envelope": {"i": i}}
        for i, t in enumerate(times)
    ]
    calls: list[Any] = []
    process = raw._bind["received_at"]
    assert process is not None
    raw._bind["received_at"] = lambda value: calls.append(value) or process(value)
    with twin.begin() as conn:
        raw.insert(conn, ("source", "id", "type", "received_at", "envelope"), rows)
    assert len(calls) == 4, "T twice in a row is converted once; equal but other objects again"
    async with make_sessionmaker(engine)() as session:
        for i, t in enumerate(times):
            event = await session.get(RawEvent, ("/s", f"e{i}"))
            assert event is not None and event.received_at == t and event.envelope == {"i": i}
    twin.dispose()
    await engine.dispose()
