"""The crisis log on both backends: chaining, rules, evidence, serialised appends, verify."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import func, select

from crisis import log
from crisis.log.append import EntrySpec, append, append_many, escalate, open_incident
from crisis.log.evidence import store_raw_event
from crisis.log.models import Incident, IncidentCreate, LogEntry, RawEvent
from crisis.log.verify import VerifyReport, verify_log
from crisis.store.db import make_engine, make_sessionmaker, migrate


def _incident(**over: Any) -> IncidentCreate:
    fields: dict[str, Any] = {
        "type": "breath_absent",
        "title": "Pust ikke registrert, celle A2-114",
        "unit": "agder-froland",
        "severity": 5,
    }
    fields.update(over)
    return IncidentCreate(**fields)


async def _seed(engine: AsyncEngine, incidents: int = 3, entries: int = 6) -> list[str]:
    ids = []
    async with make_sessionmaker(engine)() as session:
        for n in range(incidents):
            incident, _ = await open_incident(
                session, incident=_incident(title=f"Hendelse {n}"), actor="system:test"
            )
            ids.append(incident.id)
            await session.commit()
            for k in range(entries - 1):
                await append(
                    session,
                    incident_id=incident.id,
                    kind="observation",
                    actor="user:kari",
                    text=f"Observasjon {k} ÆØÅ",
                    data={"k": k, "nested": {"x": [1, 2.5, "tre"]}},
                )
                await session.commit()
    return ids


async def test_open_and_append_chain_and_verify(engine: AsyncEngine) -> None:
    ids = await _seed(engine, incidents=2, entries=4)
    async with make_sessionmaker(engine)() as session:
        entries = await log.timeline(session, ids[0])
        assert [e.seq for e in entries] == [1, 2, 3, 4]
        assert entries[0].kind == "incident_opened"
        assert entries[0].prev_hash == "0" * 64
        assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
        incident = await session.get(Incident, ids[0])
        assert incident is not None
        assert (incident.head_seq, incident.head_hash) == (4, entries[-1].hash)
        report = await verify_log(session)
    assert report.ok, report.breaks
    assert (report.incidents, report.entries) == (2, 8)


async def test_coercive_decision_without_legal_basis_writes_nothing(engine: AsyncEngine) -> None:
    [incident_id] = await _seed(engine, incidents=1, entries=1)
    async with make_sessionmaker(engine)() as session:
        with pytest.raises(log.RuleViolation) as info:
            await append(
                session,
                incident_id=incident_id,
                kind="decision",
                actor="user:leder",
                text="Innelåsing av avdeling A",
                data={"measure": "innelasing", "proportionality": "nødvendig", "alternatives": []},
            )
        await session.rollback()
        assert {v.field for v in info.value.violations} == {"legal_basis", "alternatives"}
        count = (await session.exec(select(func.count()).select_from(LogEntry))).one()
        assert count == 1
        entry = await append(
            session,
            incident_id=incident_id,
            kind="decision",
            actor="user:leder",
            text="Innelåsing av avdeling A",
            data={
                "measure": "innelasing",
                "legal_basis": "straffegjennomføringsloven § 37",
                "proportionality": "nødvendig for å avverge fare",
                "alternatives": ["økt bemanning"],
            },
        )
        await session.commit()
        assert entry.seq == 2


async def test_append_entries_chains_in_order_and_is_all_or_nothing(engine: AsyncEngine) -> None:
    [incident_id] = await _seed(engine, incidents=1, entries=2)
    sessions = make_sessionmaker(engine)
    ok_decision = EntrySpec(
        kind="decision",
        actor="rule:pb/severity",
        text="Alvorlighetsgrad 5",
        data={"severity": 5},
    )
    coercive = EntrySpec(
        kind="decision",
        actor="rule:pb/lock",
        text="Innelåsing",
        data={"measure": "innelasing", "proportionality": "nødvendig", "alternatives": []},
    )
    async with sessions() as session:
        with pytest.raises(log.RuleViolation):
            await append_many(session, incident_id=incident_id, specs=[ok_decision, coercive])
        await session.rollback()
        count = (await session.exec(select(func.count()).select_from(LogEntry))).one()
        assert count == 2, "a violation in the second spec writes not even the first"

        task = EntrySpec(
            kind="task",
            actor="rule:pb/card",
            text="Tilkall lege",
            data={"title": "Tilkall lege", "responsible_role": "vaktleder"},
        )
        written = await append_many(
            session, incident_id=incident_id, specs=[ok_decision, task, task]
        )
        await session.commit()
        assert [e.seq for e in written] == [3, 4, 5]
        incident = await session.get(Incident, incident_id)
        assert incident is not None
        assert incident.severity == 5, "each entry is applied to the incident"
        assert (incident.head_seq, incident.head_hash) == (5, written[-1].hash)
        report = await verify_log(session)
    assert report.ok, report.breaks


async def test_owner_changes_only_by_decision(engine: AsyncEngine) -> None:
    [incident_id] = await _seed(engine, incidents=1, entries=1)
    async with make_sessionmaker(engine)() as session:
        with pytest.raises(log.RuleViolation, match="ansvarsprinsippet"):
            await append(
                session,
                incident_id=incident_id,
                kind="observation",
                actor="user:x",
                data={"new_owner": "ringerike"},
            )
        await session.rollback()
        await append(
            session,
            incident_id=incident_id,
            kind="decision",
            actor="user:x",
            text="Ringerike overtar",
            data={"new_owner": "ringerike"},
            known_units={"ringerike", "agder-froland"},
        )
        await session.commit()
        incident = await session.get(Incident, incident_id)
        assert incident is not None and incident.unit == "ringerike"


async def test_escalation_one_level_at_a_time(engine: AsyncEngine) -> None:
    async with make_sessionmaker(engine)() as session:
        ordinary, _ = await open_incident(session, incident=_incident(), actor="system:t")
        political, _ = await open_incident(
            session, incident=_incident(security_political=True), actor="system:t"
        )
        ordinary_id, political_id = ordinary.id, political.id
        await session.commit()
        with pytest.raises(log.RuleViolation) as info:
            await escalate(
                session,
                incident_id=ordinary_id,
                to="kdi",
                reason="stor",
                criteria=[],
                actor="user:a",
            )
        await session.rollback()
        assert info.value.status == 409
        assert "nærhetsprinsippet" in str(info.value)
        await escalate(
            session,
            incident_id=ordinary_id,
            to="region",
            reason="kapasitet",
            criteria=["flere enheter berørt"],
            actor="user:a",
        )
        await escalate(
            session,
            incident_id=political_id,
            to="jd",
            reason="PST varslet",
            criteria=["sikkerhetspolitisk"],
            actor="user:a",
        )
        await session.commit()
        assert (await session.get(Incident, ordinary_id)).level == "region"  # type: ignore[union-attr]
        assert (await session.get(Incident, political_id)).level == "jd"  # type: ignore[union-attr]


async def test_task_needs_responsible_role_and_updates_need_a_task(engine: AsyncEngine) -> None:
    [incident_id] = await _seed(engine, incidents=1, entries=1)
    async with make_sessionmaker(engine)() as session:
        with pytest.raises(log.RuleViolation, match="responsible_role"):
            await append(
                session,
                incident_id=incident_id,
                kind="task",
                actor="user:a",
                data={"title": "Varsle AMK"},
            )
        await session.rollback()
        task = await append(
            session,
            incident_id=incident_id,
            kind="task",
            actor="user:a",
            data={"title": "Varsle AMK", "responsible_role": "on_duty"},
        )
        task_seq = task.seq
        await session.commit()
        with pytest.raises(log.RuleViolation, match="task"):
            await append(
                session,
                incident_id=incident_id,
                kind="task_update",
                actor="user:a",
                data={"task": 99, "status": "done"},
            )
        await session.rollback()
        await append(
            session,
            incident_id=incident_id,
            kind="task_update",
            actor="user:a",
            data={"task": task_seq, "status": "done"},
        )
        await session.commit()


async def test_correction_points_at_an_existing_entry(engine: AsyncEngine) -> None:
    [incident_id] = await _seed(engine, incidents=1, entries=2)
    async with make_sessionmaker(engine)() as session:
        with pytest.raises(log.RuleViolation, match="corrects"):
            await append(
                session,
                incident_id=incident_id,
                kind="correction",
                actor="user:a",
                text="feil",
                corrects=7,
            )
        await session.rollback()
        fix = await append(
            session,
            incident_id=incident_id,
            kind="correction",
            actor="user:a",
            text="Riktig celle er A2-115",
            corrects=2,
        )
        await session.commit()
        original = (await log.timeline(session, incident_id))[1]
    assert fix.corrects == 2 and original.text == "Observasjon 0 ÆØÅ"


async def test_raw_events_are_stored_once(engine: AsyncEngine) -> None:
    envelope = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "/units/agder-froland/sensors/x",
        "type": "no.kriminalomsorgen.sensor.breath_absent",
        "time": "2026-11-22T02:41:07Z",
        "unit": "agder-froland",
        "data": {"cell": "A2-114"},
    }
    async with make_sessionmaker(engine)() as session:
        assert await store_raw_event(session, envelope) is True
        assert await store_raw_event(session, dict(envelope, data={"other": 1})) is False
        assert await store_raw_event(session, dict(envelope, id="e-2")) is True
        await session.commit()
        rows = (await session.exec(select(RawEvent).order_by(RawEvent.id))).all()
    assert [(r.id, r.envelope["data"]) for r in rows] == [
        ("e-1", {"cell": "A2-114"}),
        ("e-2", {"cell": "A2-114"}),
    ]


async def test_concurrent_appends_never_fork_the_chain(engine: AsyncEngine) -> None:
    [incident_id] = await _seed(engine, incidents=1, entries=1)
    sessions = make_sessionmaker(engine)

    async def writer(n: int) -> None:
        async with sessions() as session:
            await append(
                session,
                incident_id=incident_id,
                kind="observation",
                actor=f"user:w{n}",
                text=f"skriver {n}",
            )
            await session.commit()

    await asyncio.gather(*(writer(n) for n in range(25)))
    async with sessions() as session:
        entries = await log.timeline(session, incident_id)
        report = await verify_log(session)
    assert [e.seq for e in entries] == list(range(1, 27))
    assert report.ok, report.breaks


# --- tampering (property-based) ------------------------------------------------------

COLUMNS = ("text", "actor", "kind", "hash", "prev_hash", "data")


async def _tamper_and_verify(
    engine: AsyncEngine, incident_id: str, op: str, k: int, j: int, column: str, pos: int
) -> tuple[int, str] | None:
    """Tamper inside a transaction, verify through it, roll back. Returns the expected seq."""
    async with engine.connect() as conn:
        trans = await conn.begin()
        try:
            if op == "modify":
                stored = (
                    await conn.execute(
                        text(
                            f"SELECT CAST({column} AS TEXT) FROM log_entries "
                            "WHERE incident_id = :i AND seq = :k"
                        ),
                        {"i": incident_id, "k": k},
                    )
                ).scalar_one()
                at = pos % len(stored)
                if column == "data" and not stored[at].isalnum():
                    return None
                replacement = "Z" if stored[at] != "Z" else "Y"
                changed = stored[:at] + replacement + stored[at + 1 :]
                if column == "data" and conn.dialect.name == "postgresql" and not _is_json(changed):
                    return None  # PostgreSQL refuses invalid JSON; SQLite keeps it
                value = text(
                    f"UPDATE log_entries SET {column} = :v WHERE incident_id = :i AND seq = :k"
                )
                if column == "data" and conn.dialect.name == "postgresql":
                    value = text(
                        "UPDATE log_entries SET data = CAST(:v AS json) "
                        "WHERE incident_id = :i AND seq = :k"
                    )
                await conn.execute(value, {"v": changed, "i": incident_id, "k": k})
                expected = k
            elif op == "delete":
                await conn.execute(
                    text("DELETE FROM log_entries WHERE incident_id = :i AND seq = :k"),
                    {"i": incident_id, "k": k},
                )
                expected = k
            else:
                if k == j:
                    return None
                swap = text("UPDATE log_entries SET seq = :to WHERE incident_id = :i AND seq = :fr")
                await conn.execute(swap, {"i": incident_id, "fr": k, "to": -1})
                await conn.execute(swap, {"i": incident_id, "fr": j, "to": k})
                await conn.execute(swap, {"i": incident_id, "fr": -1, "to": j})
                expected = min(k, j)
            async with make_sessionmaker(engine)(bind=conn) as session:
                report = await verify_log(session, snapshot=False)
            assert not report.ok, f"{op} of seq {k} went unnoticed"
            first = report.breaks[0]
            return (first.seq, first.incident_id) if first.seq == expected else (first.seq, "wrong")
        finally:
            await trans.rollback()


def test_tampering_is_detected_and_named(database_url: str) -> None:
    """Modified byte, deleted entry, swapped entries: verify names the first broken entry."""
    with asyncio.Runner() as runner:
        engine = make_engine(database_url)
        try:
            runner.run(migrate(engine))
            ids = runner.run(_seed(engine, incidents=3, entries=6))

            @settings(
                max_examples=60,
                deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture],
            )
            @given(
                which=st.integers(0, 2),
                op=st.sampled_from(["modify", "delete", "swap"]),
                k=st.integers(1, 6),
                j=st.integers(1, 6),
                column=st.sampled_from(COLUMNS),
                pos=st.integers(0, 10_000),
            )
            def check(which: int, op: str, k: int, j: int, column: str, pos: int) -> None:
                result = runner.run(_tamper_and_verify(engine, ids[which], op, k, j, column, pos))
                if result is not None:
                    expected = min(k, j) if op == "swap" else k
                    assert result == (expected, ids[which])

            check()
            report = runner.run(_verify(engine))
            assert report.ok, "rollbacks must leave the log intact"
        finally:
            runner.run(engine.dispose())


def _is_json(value: str) -> bool:
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


async def _verify(engine: AsyncEngine) -> VerifyReport:
    async with make_sessionmaker(engine)() as session:
        return await verify_log(session)


async def test_verify_reads_one_snapshot_while_writers_commit(engine: AsyncEngine) -> None:
    """A live log verifies clean: appends committed during the check are not false alarms."""
    ids = await _seed(engine, incidents=2, entries=3)
    sessions = make_sessionmaker(engine)
    stop = asyncio.Event()

    async def writer() -> None:
        n = 0
        while not stop.is_set():
            async with sessions() as session:
                await append(
                    session,
                    incident_id=ids[n % 2],
                    kind="observation",
                    actor="user:w",
                    text=f"live {n}",
                )
                await session.commit()
            n += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(writer())
    try:
        for n in range(16):
            async with sessions() as session:
                if n % 2:  # a session holding incidents read before: verify reads them anew
                    assert len((await session.exec(select(Incident))).all()) == 2
                report = await verify_log(session)
            assert report.ok, report.breaks
    finally:
        stop.set()
        await task


async def test_verify_reads_stored_heads_not_objects_the_session_holds(engine: AsyncEngine) -> None:
    [incident_id] = await _seed(engine, incidents=1, entries=2)
    sessions = make_sessionmaker(engine)
    async with sessions() as reader:
        held = (await reader.exec(select(Incident))).one()
        assert held.head_seq == 2
        async with sessions() as writer:
            await append(
                writer,
                incident_id=incident_id,
                kind="observation",
                actor="user:w",
                text="meanwhile",
            )
            await writer.commit()
        report = await verify_log(reader)
    assert report.ok, report.breaks
