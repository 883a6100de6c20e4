"""The in-loop SQLite connection: the ORM's statements run in the loop's thread, a writer
that finds the lock taken waits without blocking the loop, and gives up after its wait."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from crisis import log
from crisis.domain.vocabulary import EntryKind
from crisis.log.append import append, open_incident
from crisis.log.models import Incident, IncidentCreate
from crisis.log.verify import verify_log
from crisis.store import sqlite_inloop
from crisis.store.db import make_engine, make_sessionmaker, migrate


async def _database(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'inloop.db'}"
    engine = make_engine(url)
    await migrate(engine)
    await engine.dispose()
    return url


async def _opened(sessions: Any) -> Incident:
    async with sessions() as session:
        incident, _ = await open_incident(
            session,
            incident=IncidentCreate(type="fire", title="Brann – «A»", unit="ila", severity=3),
            actor="test",
        )
        await session.commit()
    return incident


async def test_statements_run_in_the_loops_thread_and_the_log_reads_back(tmp_path: Path) -> None:
    url = await _database(tmp_path)
    engine = make_engine(url, in_loop=True)
    sessions = make_sessionmaker(engine)
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        raw.driver_connection._conn.create_function(  # type: ignore[union-attr]
            "thread_id", 0, threading.get_ident
        )
        ran_in = (await conn.execute(text("SELECT thread_id()"))).scalar_one()
    assert ran_in == threading.get_ident(), "not handed to another thread"

    incident = await _opened(sessions)
    async with sessions() as session:
        await append(
            session,
            incident_id=incident.id,
            kind=EntryKind.OBSERVATION.value,
            actor="Åse",
            text="Røyk i gangen",
            data={"rom": "A2-114"},
        )
        await session.commit()
    # Read back through the default (aiosqlite) engine: the same rows, a sound chain.
    default = make_engine(url)
    async with make_sessionmaker(default)() as session:
        entries = await log.timeline(session, incident.id)
        report = await verify_log(session)
    assert [e.kind for e in entries] == ["incident_opened", "observation"]
    assert entries[1].data == {"rom": "A2-114"} and entries[1].at.tzinfo is not None
    assert report.ok, report
    await default.dispose()
    await engine.dispose()


async def test_a_writer_waits_for_the_lock_with_the_loop_free(tmp_path: Path) -> None:
    url = await _database(tmp_path)
    engine = make_engine(url, in_loop=True)
    sessions = make_sessionmaker(engine)
    incident = await _opened(sessions)

    other = sqlite3.connect(tmp_path / "inloop.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process's writer holds the lock
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    async def release() -> None:
        await asyncio.sleep(0.3)
        other.execute("COMMIT")

    ticking = asyncio.create_task(ticker())
    releasing = asyncio.create_task(release())
    started = time.monotonic()
    async with sessions() as session:
        await append(session, incident_id=incident.id, kind=EntryKind.OBSERVATION.value, actor="x")
        await session.commit()
    waited = time.monotonic() - started
    ticking.cancel()
    await releasing
    other.close()
    assert waited >= 0.25, "it waited for the other writer"
    assert ticks >= 10, "the loop ran other tasks meanwhile"
    async with sessions() as session:
        assert len(await log.timeline(session, incident.id)) == 2
    await engine.dispose()


async def test_a_writer_gives_up_after_its_wait_and_leaves_no_transaction(tmp_path: Path) -> None:
    await _database(tmp_path)
    path = str(tmp_path / "inloop.db")
    conn = await sqlite_inloop.connect(path, wait=0.05)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        await conn.execute("UPDATE feed_positions SET position = position")
    assert 0.05 <= time.monotonic() - started < 1.0
    assert not conn.in_transaction
    other.execute("COMMIT")
    await conn.execute("UPDATE feed_positions SET position = position")
    assert conn.in_transaction, "the lock is free again: the write went through"
    await conn.rollback()
    await conn.close()
    other.close()


async def test_results_can_be_streamed(tmp_path: Path) -> None:
    """A server-side cursor (``stream``) walks the rows without reading them all first."""
    url = await _database(tmp_path)
    engine = make_engine(url, in_loop=True)
    async with engine.connect() as conn:
        result = await conn.stream(
            text(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2500)"
                " SELECT i FROM n"
            )
        )
        seen = [row[0] async for row in result]
    assert seen == list(range(1, 2501))
    await engine.dispose()
