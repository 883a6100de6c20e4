"""The batch pipeline and the log relay on a real database (SQLite, and PostgreSQL when set)."""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import sqlite3
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import create_engine, func, text
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    ResourceClosedError,
)
from sqlalchemy.exc import TimeoutError as SATimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import select

from crisis import log
from crisis.domain.vocabulary import EntryKind
from crisis.log.append import append, open_incident
from crisis.log.models import Incident, IncidentCreate, LogEntry, RawEvent
from crisis.log.verify import verify_log
from crisis.settings import Settings
from crisis.sources.models import DeadLetter
from crisis.store.db import make_sessionmaker
from crisis.store.sqlite import SqliteRecorder
from streams.metrics import WorkerMetrics
from streams.pipeline import Pipeline, Record, is_transient
from streams.relay import LogRelay
from streams.worker import build_pipeline


def event(type_: str, unit: str = "agder-froland", **data: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": f"/units/{unit}/sensors/s1",
        "type": f"no.kriminalomsorgen.{type_}",
        "time": "2026-11-22T02:41:07Z",
        "unit": unit,
        "data": data,
    }


def rec(value: Any, ts: float | None = None) -> Record:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return Record(value=raw, timestamp=ts, topic="crisis.events", partition=0, offset=0)


@pytest.fixture
def pipeline_settings(tmp_path: Any, database_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "var", database_url=database_url, secret_key="x")


async def _count(engine: AsyncEngine, model: Any, *where: Any) -> int:
    async with make_sessionmaker(engine)() as session:
        stmt = select(func.count()).select_from(model)
        for w in where:
            stmt = stmt.where(w)
        return int((await session.exec(stmt)).one())


async def test_batch_stores_correlates_dead_letters_and_is_idempotent(
    engine: AsyncEngine, pipeline_settings: Settings
) -> None:
    metrics = WorkerMetrics()
    pipeline, _ = build_pipeline(pipeline_settings, metrics, engine=engine)
    alarm1 = event("sensor.personal_alarm", area="A-blokk")
    alarm2 = event("sensor.personal_alarm", area="A-blokk")
    breath = event("sensor.breath_absent", cell="A2-114", seconds_without_breath=45)
    bad_type = {**event("sensor.personal_alarm"), "type": "no.kriminalomsorgen.sensor.nope"}
    bad_unit = event("sensor.personal_alarm", unit="atlantis")
    batch = [
        rec(alarm1, 1.0),
        rec(alarm2, 1.0),
        rec(alarm1, 1.0),  # duplicate inside the batch
        rec(breath, 1.0),
        rec(b"{not json", 1.0),
        rec(bad_type, 1.0),
        rec(bad_unit, 1.0),
    ]
    result = await pipeline.process(batch)
    assert result.new == 3 and result.duplicates == 1 and len(result.dead) == 3
    assert sorted(result.opened) == ["breath_motion_absent", "violence_threat"]

    async with make_sessionmaker(engine)() as session:
        incidents = (await session.exec(select(Incident).order_by(Incident.severity))).all()
        assert [(i.type, i.severity) for i in incidents] == [
            ("violence_threat", 4),
            ("breath_motion_absent", 5),
        ]
        assert incidents[0].accountable_person and incidents[0].head_seq == 2
        entries = await log.timeline(session, incidents[0].id)
        assert [e.kind for e in entries] == ["incident_opened", "source_event"]
        assert entries[1].data["id"] == alarm2["id"]
        raw = await session.get(RawEvent, (alarm1["source"], alarm1["id"]))
        assert raw is not None and raw.incident_id == incidents[0].id
        dead = (await session.exec(select(DeadLetter).order_by(DeadLetter.id))).all()
        assert dead[0].reason.startswith("unreadable event")
        assert "unknown event type" in dead[1].reason and dead[1].event_id == bad_type["id"]
        assert "unknown unit" in dead[2].reason and dead[2].unit == "atlantis"
        assert dead[1].errors[0]["field"] == "type"

    before = (
        await _count(engine, LogEntry),
        await _count(engine, Incident),
        await _count(engine, RawEvent),
    )
    again = await pipeline.process(batch)  # a redelivered batch changes nothing
    assert again.new == 0 and again.entries == 0
    assert await _count(engine, DeadLetter) == 3
    after = (
        await _count(engine, LogEntry),
        await _count(engine, Incident),
        await _count(engine, RawEvent),
    )
    assert after == before == (3, 2, 3)
    async with make_sessionmaker(engine)() as session:
        assert (await verify_log(session)).ok
    # the counter counts deliveries: the redelivered batch dead-lettered it a second time
    assert metrics.dead_lettered.labels("no.kriminalomsorgen.sensor.nope")._value.get() == 2


async def test_exercise_is_carried_onto_incident_and_every_entry(
    engine: AsyncEngine, pipeline_settings: Settings
) -> None:
    pipeline, _ = build_pipeline(pipeline_settings, engine=engine)
    events = [
        {**event("sensor.fire_alarm", zone="Z1"), "exercise": "ovelse-brann"},
        {**event("sensor.fire_alarm", zone="Z1"), "exercise": "ovelse-brann"},
        event("sensor.fire_alarm", zone="Z1"),
    ]
    await pipeline.process([rec(e) for e in events])
    async with make_sessionmaker(engine)() as session:
        incidents = (await session.exec(select(Incident))).all()
        assert sorted(str(i.exercise) for i in incidents) == ["None", "ovelse-brann"]
        entries = (await session.exec(select(LogEntry))).all()
        by_incident = {i.id: i.exercise for i in incidents}
        assert all(e.exercise == by_incident[e.incident_id] for e in entries)
        assert sum(1 for e in entries if e.exercise == "ovelse-brann") == 2


async def test_worker_appends_after_api_entries_keep_the_chain(
    engine: AsyncEngine, pipeline_settings: Settings
) -> None:
    pipeline, _ = build_pipeline(pipeline_settings, engine=engine)
    first = event("sensor.personal_alarm", area="B")
    await pipeline.process([rec(first)])
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        (incident,) = (await session.exec(select(Incident))).all()
        await append(
            session, incident_id=incident.id, kind="observation", actor="user:kari", text="Ser på"
        )
        await session.commit()
    await pipeline.process([rec(event("sensor.personal_alarm", area="B"))])
    async with sessions() as session:
        entries = await log.timeline(session, incident.id)
        assert [e.kind for e in entries] == ["incident_opened", "observation", "source_event"]
        assert (await verify_log(session)).ok


async def test_incident_closed_by_a_person_is_not_joined(
    engine: AsyncEngine, pipeline_settings: Settings
) -> None:
    pipeline, _ = build_pipeline(pipeline_settings, engine=engine)
    await pipeline.process([rec(event("sensor.door_forced", door="D1"))])
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        (incident,) = (await session.exec(select(Incident))).all()
        await append(
            session,
            incident_id=incident.id,
            kind="status_change",
            actor="user:kari",
            data={"status": "closed", "reason": "over", "final_situation": "normal drift"},
        )
        await session.commit()
    await pipeline.process([rec(event("sensor.door_forced", door="D1"))])
    assert await _count(engine, Incident) == 2


async def test_heartbeat_silence_opens_and_resume_closes(
    engine: AsyncEngine, pipeline_settings: Settings
) -> None:
    pipeline, _ = build_pipeline(pipeline_settings, engine=engine)
    beat = event("sensor.heartbeat", gateway="gw-froland-1", interval_seconds=10)
    now = time.time()
    await pipeline.process([rec(beat)])
    assert await pipeline.tick(now) == []
    (opened,) = await pipeline.tick(now + 31)
    assert await pipeline.tick(now + 60) == []
    async with make_sessionmaker(engine)() as session:
        incident = await session.get(Incident, opened)
        assert incident is not None and incident.type == "infrastructure_outage"
    await pipeline.process([rec(event("sensor.heartbeat", gateway="gw-froland-1"))])
    async with make_sessionmaker(engine)() as session:
        incident = await session.get(Incident, opened)
        assert incident is not None and incident.status == "closed"
        assert incident.closed_at is not None
        assert (await verify_log(session)).ok


async def test_relay_publishes_every_committed_entry_once_in_order(
    engine: AsyncEngine, pipeline_settings: Settings
) -> None:
    pipeline, _ = build_pipeline(pipeline_settings, engine=engine)
    sessions = make_sessionmaker(engine)
    published: list[tuple[bytes, dict[str, Any]]] = []

    async def publish(records: Sequence[tuple[bytes, bytes]]) -> None:
        published.extend((key, json.loads(value)) for key, value in records)

    relay = LogRelay(sessions, publish, batch=3)
    await pipeline.process([rec(event("sensor.door_forced", door=f"D{i}")) for i in range(4)])
    async with sessions() as session:
        await open_incident(
            session,
            incident=IncidentCreate(type="fire", title="Manuell", unit="ringerike", severity=2),
            actor="user:kari",
        )
        await session.commit()
    while await relay.run_once():
        pass
    assert [p["id"] for _, p in published] == [1, 2, 3, 4, 5]
    async with sessions() as session:
        stored = await log.timeline(session, published[0][1]["incident_id"])
        assert published[0][1]["data"] == stored[0].data
        assert published[0][1]["hash"] == stored[0].hash
    assert all(k.decode() == p["incident_id"] and len(p["hash"]) == 64 for k, p in published)
    assert published[-1][1]["actor"] == "user:kari"
    assert await relay.run_once() == 0  # position kept durably
    fresh = LogRelay(sessions, publish)
    assert await fresh.run_once() == 0
    await pipeline.process([rec(event("sensor.door_forced", door="D0"))])
    assert await fresh.run_once() == 1
    assert published[-1][1]["kind"] == EntryKind.SOURCE_EVENT.value


async def _opened_by_hand(sessions: Any) -> LogEntry:
    """An incident opened through the log service (another writer than the pipeline)."""
    async with sessions() as session:
        _, entry = await open_incident(
            session,
            incident=IncidentCreate(type="fire", title="Manuell", unit="ringerike", severity=2),
            actor="user:kari",
        )
        await session.commit()
    return entry


async def test_relay_publishes_offered_entries_from_memory_as_stored(
    engine: AsyncEngine, pipeline_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ingest hands the relay the entries it committed: they go out without being read
    back, byte for byte the record a read would make, in id order with another writer's
    entries (read from the table) between them, each once."""
    pipeline, _ = build_pipeline(pipeline_settings, engine=engine)
    sessions = make_sessionmaker(engine)
    published: list[tuple[bytes, bytes]] = []

    async def publish(records: Sequence[tuple[bytes, bytes]]) -> None:
        published.extend(records)

    relay = LogRelay(sessions, publish, name="memory", batch=4)
    assert await relay.run_once() == 0  # the position, read once
    reads = 0
    read = relay._next_stored

    async def counted() -> Any:
        nonlocal reads
        reads += 1
        return await read()

    monkeypatch.setattr(relay, "_next_stored", counted)
    first = await pipeline.process(
        [rec(event("sensor.door_forced", door=f"D{i}")) for i in range(6)]
    )
    relay.offer(first.log_records)
    n = len(first.log_records)
    assert [id_ for id_, _, _ in first.log_records] == list(range(1, n + 1))
    assert n > relay.batch
    while len(published) < n:
        assert await relay.run_once() > 0
    assert len(published) == n
    assert reads == 0, "published from memory"
    await _opened_by_hand(sessions)  # another writer: not offered
    second = await pipeline.process([rec(event("sensor.door_forced", door="D0"))])
    relay.offer(second.log_records)
    while await relay.run_once():
        pass
    assert reads >= 1, "the other writer's entry was read from the table"
    ids = [json.loads(value)["id"] for _, value in published]
    assert ids == list(range(1, n + 2 + len(second.log_records)))
    stored: list[tuple[bytes, bytes]] = []

    async def keep(records: Sequence[tuple[bytes, bytes]]) -> None:
        stored.extend(records)

    reader = LogRelay(sessions, keep, name="reader")
    while await reader.run_once():
        pass
    assert [k for k, _ in published] == [k for k, _ in stored]
    assert [json.loads(v) for _, v in published] == [json.loads(v) for _, v in stored]


async def test_relay_reads_from_the_table_only_the_entries_it_was_not_offered(
    engine: AsyncEngine, pipeline_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer's entry between two offered batches: the drain reads that one entry
    from the table, and publishes everything in id order, each once."""
    import streams.relay

    pipeline, _ = build_pipeline(pipeline_settings, engine=engine)
    sessions = make_sessionmaker(engine)
    published: list[bytes] = []

    async def publish(records: Sequence[tuple[bytes, bytes]]) -> None:
        published.extend(value for _, value in records)

    relay = LogRelay(sessions, publish, name="between")
    assert await relay.run_once() == 0  # the position, read once
    from_table: list[Any] = []
    encode = streams.relay.entry_json

    def counted(row: Any) -> bytes:
        from_table.append(row.id)
        return encode(row)

    monkeypatch.setattr(streams.relay, "entry_json", counted)
    first = await pipeline.process(
        [rec(event("sensor.door_forced", door=f"D{i}")) for i in range(3)]
    )
    other = await _opened_by_hand(sessions)
    second = await pipeline.process([rec(event("sensor.door_forced", door="D9"))])
    relay.offer(first.log_records)
    relay.offer(second.log_records)
    await relay.drain()
    assert from_table == [other.id], "only the other writer's entry is read back"
    ids = [json.loads(value)["id"] for value in published]
    assert ids == sorted(ids) == list(range(1, len(ids) + 1))
    assert len(ids) == len(first.log_records) + 1 + len(second.log_records)


async def test_relay_waits_for_a_missing_id_before_an_offered_entry_then_goes_on(
    engine: AsyncEngine,
) -> None:
    """An id before the next offered entry that is not in the table (PostgreSQL: taken by a
    transaction not yet committed, or rolled back) holds the relay for ``gap_timeout``, then
    is skipped: order is kept while it may still come, and nothing stalls for good."""
    published: list[bytes] = []

    async def publish(records: Sequence[tuple[bytes, bytes]]) -> None:
        published.extend(value for _, value in records)

    relay = LogRelay(make_sessionmaker(engine), publish, name="hole", gap_timeout=0.2)
    assert await relay.run_once() == 0
    relay.offer([(2, b"k", b"two"), (4, b"k", b"four")])  # ids 1 and 3 are nowhere
    await relay.drain()
    assert published == [], "id 1 may still be committed"
    await asyncio.sleep(0.25)
    await relay.drain()
    assert published == [b"two"], "id 1 skipped; id 3 gets a wait of its own"
    await asyncio.sleep(0.25)
    await relay.drain()
    assert published == [b"two", b"four"]


async def test_relay_times_each_missing_id_in_the_table_on_its_own(
    engine: AsyncEngine, pipeline_settings: Settings
) -> None:
    """Two ids missing among the rows read: skipping the first after its wait does not
    skip the second at once."""
    pipeline, _ = build_pipeline(pipeline_settings, engine=engine)
    result = await pipeline.process([rec(event("sensor.door_forced", door="D1")) for _ in range(6)])
    ids = [id_ for id_, _, _ in result.log_records]
    assert ids == list(range(1, len(ids) + 1)) and len(ids) >= 5
    async with engine.begin() as conn:  # as if two transactions had taken ids 2 and 4
        await conn.execute(text("DELETE FROM log_entries WHERE id IN (2, 4)"))
    published: list[int] = []

    async def publish(records: Sequence[tuple[bytes, bytes]]) -> None:
        published.extend(json.loads(value)["id"] for _, value in records)

    relay = LogRelay(make_sessionmaker(engine), publish, name="holes", gap_timeout=0.2)
    await relay.drain()
    assert published == [1]
    await asyncio.sleep(0.25)
    await relay.drain()
    assert published == [1, 3], "id 2 skipped after its wait; id 4 waited for anew"
    await asyncio.sleep(0.25)
    await relay.drain()
    assert published == [1, 3, *ids[4:]]


async def test_the_envelope_is_kept_as_it_arrived(
    engine: AsyncEngine, pipeline_settings: Settings
) -> None:
    """The evidence is the event's own text (on SQLite byte for byte); it reads back as the
    envelope, non-ASCII, key order and spacing included."""
    pipeline, _ = build_pipeline(pipeline_settings, engine=engine)
    sent = event("sensor.door_forced", door="Dør ØST")
    fields = [f'"{k}": {json.dumps(sent[k], ensure_ascii=False)}' for k in reversed(list(sent))]
    raw = "{ " + ",\n ".join(fields) + "}"
    await pipeline.process([rec(raw.encode())])
    async with make_sessionmaker(engine)() as session:
        stored = await session.get(RawEvent, (sent["source"], sent["id"]))
        assert stored is not None and stored.envelope == sent
    if engine.dialect.name == "sqlite":
        async with engine.connect() as conn:
            text_ = (
                await conn.exec_driver_sql(
                    "SELECT envelope FROM raw_events WHERE id = ?", (sent["id"],)
                )
            ).scalar()
        assert text_ == raw


async def test_an_envelope_with_a_byte_order_mark_is_stored_readably(
    engine: AsyncEngine, pipeline_settings: Settings
) -> None:
    """JSON with a UTF-8 byte-order mark is accepted; its text cannot be kept as it is (a
    reader would refuse it), so the decoded envelope is stored: nothing lost."""
    pipeline, _ = build_pipeline(pipeline_settings, engine=engine)
    sent = event("sensor.door_forced", door="D9")
    result = await pipeline.process([rec("\ufeff".encode() + json.dumps(sent).encode())])
    assert result.new == 1 and not result.dead
    async with make_sessionmaker(engine)() as session:
        stored = await session.get(RawEvent, (sent["source"], sent["id"]))
        assert stored is not None and stored.envelope == sent


async def test_a_rule_error_dead_letters_the_event_and_the_batch_goes_on(
    engine: AsyncEngine, pipeline_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline: Pipeline
    pipeline, _ = build_pipeline(pipeline_settings, engine=engine)
    original = pipeline.correlator.handle

    def flaky(ev: Any, state: Any, incidents: Any) -> Any:
        if ev.data.get("door") == "boom":
            raise RuntimeError("rule exploded")
        return original(ev, state, incidents)

    monkeypatch.setattr(pipeline.correlator, "handle", flaky)
    result = await pipeline.process(
        [rec(event("sensor.door_forced", door="boom")), rec(event("sensor.door_forced", door="ok"))]
    )
    assert result.opened == ["escape"]
    async with make_sessionmaker(engine)() as session:
        (dead,) = (await session.exec(select(DeadLetter))).all()
        assert "rule exploded" in dead.reason


async def test_sqlite_batches_leave_checkpoints_to_the_checkpointer(
    engine: AsyncEngine, pipeline_settings: Settings
) -> None:
    """On SQLite no batch commit copies the WAL back (that commit stalled a batch by ~10 ms);
    ``Pipeline.checkpoint`` does, beside the batches."""
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's write-ahead log only")
    pipeline, _ = build_pipeline(pipeline_settings, engine=engine)
    await pipeline.process(
        [rec(event("sensor.personal_alarm", area=f"A{i}"), 1.0) for i in range(50)]
    )
    assert isinstance(pipeline.store, SqliteRecorder)
    twin = pipeline.store.twin
    with twin.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 0
    database = engine.url.database
    assert database is not None
    wal_size = Path(database + "-wal").stat().st_size  # noqa: ASYNC240 (a local file, once)
    assert wal_size > 0
    await pipeline.checkpoint()
    with twin.connect() as conn:
        busy, frames, done = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
    assert (busy, frames) != (0, 0) and done == frames, "everything in the WAL is checkpointed"


async def test_stored_pairs_are_found_by_primary_key_lookups(
    engine: AsyncEngine, pipeline_settings: Settings
) -> None:
    """Which (source, id) pairs are stored: right on both databases, and on SQLite one index
    search per pair — ``(source, id) IN (...)`` there scanned the whole key index per batch."""
    pipeline, _ = build_pipeline(pipeline_settings, engine=engine)
    stored = [event("sensor.personal_alarm", area=f"A{i}") for i in range(30)]
    await pipeline.process([rec(e, 1.0) for e in stored])
    asked = [(e["source"], e["id"]) for e in stored[::3]] + [("/units/x/sensors/s1", "nope")]
    statements: list[tuple[str, Any]] = []

    def work(conn: Any) -> set[tuple[str, str]]:
        sqlalchemy_event.listen(
            conn, "before_cursor_execute", lambda *a: statements.append((a[2], a[3]))
        )
        return pipeline.store.existing_keys(conn, asked)

    assert await pipeline.run(work) == set(asked[:-1])
    if engine.dialect.name == "sqlite":
        (sql, params), *_ = statements
        assert isinstance(pipeline.store, SqliteRecorder)
        twin = pipeline.store.twin
        with twin.connect() as conn:
            plan = " | ".join(
                r[-1] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params)
            )
        assert "SEARCH r USING COVERING INDEX" in plan and "SCAN r" not in plan, plan


# -- which database errors are transient (retry the batch) ---------------------------------


def _raised(make: Any) -> BaseException:
    """The exception ``make()`` raises (a real one, with its real chain)."""
    try:
        make()
    except BaseException as exc:
        return exc
    raise AssertionError("nothing raised")


def _sqlite_locked(tmp: Path) -> None:
    holder = sqlite3.connect(tmp / "locked.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(tmp / "locked.db", timeout=0)
    try:
        other.execute("CREATE TABLE t (x)")
    finally:
        other.close()
        holder.execute("ROLLBACK")
        holder.close()


def _sqlite_full() -> None:
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("PRAGMA max_page_count = 2")
        conn.execute("CREATE TABLE t (x)")
        conn.executemany("INSERT INTO t VALUES (?)", [("x" * 5000,)] * 10)
    finally:
        conn.close()


def _wrapped(orig: BaseException, cls: Any = OperationalError, **kw: Any) -> Any:
    def make() -> None:
        try:
            raise orig
        except BaseException as exc:
            raise cls("SELECT 1", {}, exc, **kw) from exc

    return make


def _refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _asyncpg_refused() -> None:
    asyncio.run(asyncpg.connect(f"postgresql://x@127.0.0.1:{_refused_port()}/x", timeout=5))


def _sqlalchemy_asyncpg_refused() -> None:
    async def run() -> None:
        engine = create_async_engine(f"postgresql+asyncpg://x@127.0.0.1:{_refused_port()}/x")
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        finally:
            await engine.dispose()

    asyncio.run(run())


def _sqlalchemy_sqlite_locked(tmp: Path) -> None:
    holder = sqlite3.connect(tmp / "sa-locked.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    engine = create_engine(f"sqlite:///{tmp / 'sa-locked.db'}", connect_args={"timeout": 0})
    try:
        with engine.connect() as conn:
            conn.execute(text("CREATE TABLE t (x)"))
    finally:
        engine.dispose()
        holder.execute("ROLLBACK")
        holder.close()


def _during(first: BaseException, then: BaseException) -> Any:
    def make() -> None:
        try:
            raise first
        except BaseException:
            raise then  # noqa: B904 (the implicit __context__ is the point)

    return make


def _raise(exc: BaseException) -> Any:
    def make() -> None:
        raise exc

    return make


TRANSIENT_CASES: list[tuple[str, Any]] = [
    ("sqlite3 database is locked", lambda tmp: _raised(lambda: _sqlite_locked(tmp))),
    ("sqlite3 database or disk is full", lambda tmp: _raised(_sqlite_full)),
    ("sqlite3 disk I/O error", lambda tmp: sqlite3.OperationalError("disk I/O error")),
    (
        "SQLAlchemy + sqlite database is locked",
        lambda tmp: _raised(lambda: _sqlalchemy_sqlite_locked(tmp)),
    ),
    ("SQLAlchemy + sqlite full", lambda tmp: _raised(_wrapped(_raised(_sqlite_full)))),
    ("asyncpg connect refused", lambda tmp: _raised(_asyncpg_refused)),
    ("SQLAlchemy + asyncpg connect refused", lambda tmp: _raised(_sqlalchemy_asyncpg_refused)),
    ("ConnectionResetError", lambda tmp: ConnectionResetError(104, "Connection reset by peer")),
    ("TimeoutError", lambda tmp: TimeoutError()),
    ("BrokenPipeError", lambda tmp: BrokenPipeError(32, "Broken pipe")),
    ("OSError ENETUNREACH", lambda tmp: OSError(errno.ENETUNREACH, "Network is unreachable")),
    (
        "asyncpg ConnectionDoesNotExistError",
        lambda tmp: asyncpg.exceptions.ConnectionDoesNotExistError(
            "connection was closed in the middle of operation"
        ),
    ),
    (
        "asyncpg InterfaceError connection is closed",
        lambda tmp: asyncpg.exceptions.InterfaceError("connection is closed"),
    ),
    (
        "asyncpg CannotConnectNowError",
        lambda tmp: asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    ),
    (
        "asyncpg AdminShutdownError",
        lambda tmp: asyncpg.exceptions.AdminShutdownError("terminating connection"),
    ),
    (
        "asyncpg TooManyConnectionsError",
        lambda tmp: asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
    ),
    (
        "asyncpg DeadlockDetectedError",
        lambda tmp: asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
    ),
    (
        "SQLAlchemy InterfaceError (asyncpg closed)",
        lambda tmp: _raised(
            _wrapped(asyncpg.exceptions.InterfaceError("connection is closed"), InterfaceError)
        ),
    ),
    (
        "SQLAlchemy DBAPIError (asyncpg mid-operation)",
        lambda tmp: _raised(
            _wrapped(
                asyncpg.exceptions.ConnectionDoesNotExistError(
                    "connection was closed in the middle of operation"
                ),
                DBAPIError,
            )
        ),
    ),
    (
        "SQLAlchemy DBAPIError connection_invalidated",
        lambda tmp: DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True),
    ),
    ("SQLAlchemy DisconnectionError", lambda tmp: DisconnectionError("ping failed")),
    ("SQLAlchemy pool TimeoutError", lambda tmp: SATimeoutError("QueuePool limit reached")),
    (
        "RuntimeError from ConnectionRefusedError",
        lambda tmp: _raised(_wrapped(ConnectionRefusedError(111, "refused"), RuntimeError)),
    ),
    (
        "ResourceClosedError raised while handling a reset",
        lambda tmp: _raised(
            _during(
                ConnectionResetError(104, "reset"), ResourceClosedError("This Connection is closed")
            )
        ),
    ),
    (
        "ExceptionGroup with a refused connect",
        lambda tmp: ExceptionGroup("tasks", [ConnectionRefusedError(111, "refused")]),
    ),
]

NOT_TRANSIENT_CASES: list[tuple[str, Any]] = [
    ("ValueError", lambda tmp: ValueError("bad")),
    ("KeyError", lambda tmp: KeyError("x")),
    ("FileNotFoundError", lambda tmp: FileNotFoundError(2, "No such file")),
    (
        "sqlite3 IntegrityError in SQLAlchemy",
        lambda tmp: _raised(
            _wrapped(sqlite3.IntegrityError("UNIQUE constraint failed"), IntegrityError)
        ),
    ),
    (
        "asyncpg UniqueViolationError in SQLAlchemy",
        lambda tmp: _raised(
            _wrapped(asyncpg.exceptions.UniqueViolationError("duplicate key"), IntegrityError)
        ),
    ),
    (
        "asyncpg bad query argument (DataError) in SQLAlchemy InterfaceError",
        lambda tmp: _raised(
            _wrapped(
                asyncpg.exceptions.DataError("invalid input for query argument $1"), InterfaceError
            )
        ),
    ),
    (
        "asyncpg query cancelled (statement timeout) in SQLAlchemy DBAPIError",
        lambda tmp: _raised(
            _wrapped(
                asyncpg.exceptions.QueryCanceledError(
                    "canceling statement due to statement timeout"
                ),
                DBAPIError,
            )
        ),
    ),
    (
        "asyncpg syntax error in SQLAlchemy DBAPIError",
        lambda tmp: _raised(
            _wrapped(asyncpg.exceptions.PostgresSyntaxError("syntax error"), DBAPIError)
        ),
    ),
    (
        "RuntimeError raised from ConnectionRefusedError with from None",
        lambda tmp: _raised(_suppressed(ConnectionRefusedError(111, "refused"))),
    ),
]


def _suppressed(first: BaseException) -> Any:
    def make() -> None:
        try:
            raise first
        except BaseException:
            raise RuntimeError("not about the database") from None

    return make


@pytest.mark.parametrize(("name", "make"), TRANSIENT_CASES, ids=[c[0] for c in TRANSIENT_CASES])
def test_connection_level_errors_are_transient(name: str, make: Any, tmp_path: Path) -> None:
    exc = make(tmp_path)
    assert is_transient(exc), f"{name}: {exc!r}"


@pytest.mark.parametrize(
    ("name", "make"), NOT_TRANSIENT_CASES, ids=[c[0] for c in NOT_TRANSIENT_CASES]
)
def test_errors_of_the_data_are_not_transient(name: str, make: Any, tmp_path: Path) -> None:
    exc = make(tmp_path)
    assert not is_transient(exc), f"{name}: {exc!r}"


def test_real_outage_errors_are_what_the_table_says(tmp_path: Path) -> None:
    """The table's real-world rows are what the drivers raise here (not made-up classes)."""
    assert isinstance(_raised(_asyncpg_refused), ConnectionRefusedError)
    locked = _raised(lambda: _sqlalchemy_sqlite_locked(tmp_path))
    assert isinstance(locked, OperationalError) and "database is locked" in str(locked)
    assert "database or disk is full" in str(_raised(_sqlite_full))
