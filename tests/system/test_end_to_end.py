"""The whole chain, one scenario per principle: events posted to the API → Kafka → the ingest
worker (correlation) → the crisis log → ``crisis.log`` → the reactions worker (the playbook
engine, notification plans) → the crisis log.

Everything is real: the embedded broker, the worker as a subprocess, the web app with its
producer, SQLite. What is asserted is what the crisis staff would see in the log.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from crisis.domain.organisation import load_organisation
from crisis.kafka import topics
from crisis.kafka.broker import EmbeddedBroker, ensure_topics
from crisis.log.models import Incident, LogEntry
from crisis.log.verify import verify_log
from crisis.store.db import make_engine, make_sessionmaker, migrate
from notifiers.models import NotifyUpdate, OutboxMessage
from tests.ingest_support import ingest_api, ingest_settings
from tests.worker_harness import envelope, log_tail, spawn_worker, stop, wait_for, worker_env

pytestmark = [pytest.mark.broker, pytest.mark.slow]

DEADLINE = 120.0
CAP = Path(__file__).resolve().parents[1] / "data" / "cap" / "met_wind_froland.xml"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(log_path=tmp_path_factory.mktemp("tansu") / "tansu.log") as b:
        yield b


async def _incidents(engine: AsyncEngine) -> list[Incident]:
    async with make_sessionmaker(engine)() as session:
        return list((await session.exec(select(Incident))).all())


async def _entries(engine: AsyncEngine, incident_id: str) -> list[LogEntry]:
    async with make_sessionmaker(engine)() as session:
        stmt = select(LogEntry).where(LogEntry.incident_id == incident_id)
        return list((await session.exec(stmt.order_by(col(LogEntry.seq)))).all())


def _kinds(entries: list[LogEntry]) -> dict[str, list[LogEntry]]:
    out: dict[str, list[LogEntry]] = {}
    for entry in entries:
        out.setdefault(entry.kind, []).append(entry)
    return out


async def test_posted_events_become_owned_incidents_with_tasks_and_contacts(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    org = load_organisation()
    settings = ingest_settings(tmp_path, broker.bootstrap)
    url = settings.effective_database_url
    engine = make_engine(url)
    await migrate(engine)
    await ensure_topics(
        broker.bootstrap,
        {topics.EVENTS: 4, topics.EVENTS_DLQ: 1, topics.LOG: 1, topics.NOTIFICATIONS: 1},
    )
    # The two worker processes, as `crisis up` and docker-compose run them.
    log_path = tmp_path / "worker.log"
    env = worker_env(broker.bootstrap, tmp_path / "var", url)
    worker = spawn_worker(env, log_path, role="ingest")
    reactions = spawn_worker(env, tmp_path / "reactions.log", role="reactions")
    try:
        async with ingest_api(settings) as api:
            headers = await api.user("kdi", "kdi")
            breath = envelope(
                "sensor.breath_absent",
                unit="agder-froland",
                cell="A2-114",
                seconds_without_breath=45,
            )
            tag = envelope(
                "sensor.ek_tamper",
                unit="oslo-friomsorg",
                tag="EK-4471",
                source="/units/oslo-friomsorg/ek/EK-4471",
            )
            drill = envelope(
                "sensor.fire_alarm", unit="ringerike", zone="B", exercise="ovelse-2026-11-brann"
            )
            posted = await api.client.post(
                "/api/v1/events", json=[breath, tag, drill], headers=headers
            )
            assert posted.status_code == 202, posted.text
            cap = await api.client.post(
                "/api/v1/cap",
                content=CAP.read_bytes(),
                headers={**headers, "content-type": "application/cap+xml"},
            )
            assert cap.status_code == 202, cap.text

            def owned(i: Incident) -> bool:
                return i.accountable_role is not None

            async def ready() -> bool:
                incidents = await _incidents(engine)
                units = {i.unit for i in incidents}
                if not {"agder-froland", "oslo-friomsorg", "ringerike"} <= units:
                    return False
                for incident in incidents:
                    kinds = _kinds(await _entries(engine, incident.id))
                    if "task" not in kinds or "cooperation_contact" not in kinds:
                        return False
                return all(owned(i) for i in incidents)

            if not await wait_for(ready, time.monotonic() + DEADLINE, worker):
                summary = [
                    (
                        i.unit,
                        i.type,
                        i.accountable_role,
                        sorted(_kinds(await _entries(engine, i.id))),
                    )
                    for i in await _incidents(engine)
                ]
                pytest.fail(f"not ready: {summary}\n{log_tail(log_path)}")
            incidents = await _incidents(engine)

            # Ansvarsprinsippet: the cell's prison owns the breath alarm, the probation office
            # the tag; the accountable person is the unit's leader from the organisation.
            by_unit: dict[str, list[Incident]] = {}
            for incident in incidents:
                by_unit.setdefault(incident.unit, []).append(incident)
            froland = [i for i in by_unit["agder-froland"] if i.severity == 5]
            assert len(froland) == 1
            role, person = org.accountable_person("agder-froland")
            assert (froland[0].accountable_role, froland[0].accountable_person) == (
                role,
                person.name,
            )
            assert [i.unit for i in incidents if i.unit == "oslo-friomsorg"] == ["oslo-friomsorg"]

            # The CAP warning opened incidents only for units inside its polygon.
            weather = [
                i
                for i in incidents
                if i.id not in {froland[0].id} and i.unit not in {"oslo-friomsorg", "ringerike"}
            ]
            assert weather, "the MET warning over Froland opened an incident"
            assert {i.unit for i in weather} <= {"agder-froland", "agder-mandal", "agder-friomsorg"}

            # Likhets- and samvirkeprinsippet: every task has a responsible daily role, every
            # cooperation contact names an actor the owning unit really works with.
            for incident in incidents:
                kinds = _kinds(await _entries(engine, incident.id))
                unit = org.unit(incident.unit)
                for task in kinds["task"]:
                    assert task.data["responsible_role"], task.data
                    assert task.actor.startswith("rule:"), task.actor
                actors = {a.name for a in unit.cooperating_actors}
                contacted = {
                    c.data.get("actor_name") or c.data.get("name")
                    for c in kinds["cooperation_contact"]
                }
                assert contacted and contacted <= actors, (contacted, actors)

            # Exercise traffic stays exercise: the incident and every entry carry the id.
            [drill_incident] = by_unit["ringerike"]
            assert drill_incident.exercise == "ovelse-2026-11-brann"
            assert {e.exercise for e in await _entries(engine, drill_incident.id)} == {
                "ovelse-2026-11-brann"
            }
            assert all(i.exercise is None for i in incidents if i.unit != "ringerike")

            # The playbook's notification plan reaches the notifier's outbox (delivery is the
            # dispatcher's): staff are alarmed at once, the exercise keeps its flag.
            async def queued() -> bool:
                async with make_sessionmaker(engine)() as session:
                    rows = (await session.exec(select(NotifyUpdate))).all()
                return {froland[0].id, drill_incident.id} <= {u.incident_id for u in rows}

            assert await wait_for(queued, time.monotonic() + DEADLINE, worker), log_tail(log_path)
            async with make_sessionmaker(engine)() as session:
                updates = (await session.exec(select(NotifyUpdate))).all()
                staff = [u for u in updates if u.incident_id == froland[0].id and u.kind == "alarm"]
                assert staff and "staff" in staff[0].groups
                assert all(
                    u.exercise == "ovelse-2026-11-brann"
                    for u in updates
                    if u.incident_id == drill_incident.id
                )
                messages = (
                    await session.exec(
                        select(OutboxMessage).where(OutboxMessage.update_id == staff[0].id)
                    )
                ).all()
                assert messages and all(m.incident_id == froland[0].id for m in messages)

            # Nærhetsprinsippet: skipping a level is refused, one level up is allowed.
            escalate = f"/api/v1/incidents/{froland[0].id}/escalate"
            skip = await api.client.post(
                escalate, json={"to": "jd", "reason": "alvorlig"}, headers=headers
            )
            assert skip.status_code == 409, skip.text
            current = (
                await api.client.get(f"/api/v1/incidents/{froland[0].id}", headers=headers)
            ).json()["level"]
            assert current in {"unit", "region"}

        async with make_sessionmaker(engine)() as session:
            report = await verify_log(session)
        assert report.ok, report.breaks
        assert reactions.poll() is None, log_tail(tmp_path / "reactions.log")
    finally:
        stop(worker)
        stop(reactions)
        await engine.dispose()


async def test_broker_down_100_posted_events_all_reach_the_crisis_log(tmp_path: Path) -> None:
    """202 means durable: with the broker dead the outbox keeps them; after it is back, the
    worker writes every one into the log (each personal alarm from its own area, so each is
    an incident of its own)."""
    import asyncio

    from crisis.log.models import RawEvent
    from tests.ingest_support import event, partitions, wait_until

    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as broker:
        settings = ingest_settings(tmp_path, broker.bootstrap, ingest_burst_per_source=500)
        url = settings.effective_database_url
        engine = make_engine(url)
        await migrate(engine)
        worker = None
        try:
            async with ingest_api(settings) as api:
                headers = await api.user("op", "operator", unit="agder-froland")
                broker.kill()
                events = [
                    event(
                        i,
                        source=f"/units/agder-froland/sensors/alarm-{i}",
                        data={"area": f"celle-{i}"},
                    )
                    for i in range(100)
                ]
                for ev in events:
                    r = await api.client.post("/api/v1/events", json=ev, headers=headers)
                    assert r.status_code == 202, r.text
                assert api.app.state.producer.outbox_depth() == 100

                await asyncio.to_thread(broker.restart)
                await ensure_topics(broker.bootstrap, {**partitions(), topics.LOG: 1})
                log_path = tmp_path / "worker.log"
                worker = spawn_worker(
                    worker_env(broker.bootstrap, tmp_path / "var-w", url), log_path
                )
                await wait_until(
                    lambda: api.app.state.producer.outbox_depth() == 0,
                    within=60,
                    what="outbox drained",
                )

                async def all_logged() -> bool:
                    async with make_sessionmaker(engine)() as session:
                        raw = (await session.exec(select(RawEvent.id))).all()
                    return len(raw) == 100

                assert await wait_for(all_logged, time.monotonic() + DEADLINE, worker), log_tail(
                    log_path
                )
            async with make_sessionmaker(engine)() as session:
                opened = (
                    await session.exec(select(LogEntry).where(LogEntry.kind == "incident_opened"))
                ).all()
                assert sorted(e.data["id"] for e in opened) == sorted(e["id"] for e in events)
                assert (await verify_log(session)).ok
        finally:
            if worker is not None:
                stop(worker)
            await engine.dispose()
