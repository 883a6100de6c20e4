"""The exercise runner on SQLite and PostgreSQL, with a fake ``send`` collecting the events."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis.clock import utcnow
from crisis.domain.organisation import load_organisation
from crisis.exercises import service
from crisis.log import append
from crisis.log.models import Incident, IncidentCreate
from crisis.sources.events import validate_event
from crisis.store.db import make_sessionmaker
from playbooks.exercises.runner import Runner, plans
from playbooks.exercises.scenario import load_scenario, shipped

ORG = load_organisation()


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


class Collect:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.fail = False

    async def __call__(self, events: list[dict[str, Any]]) -> None:
        if self.fail:
            raise RuntimeError("broker away")
        for event in events:
            validate_event(event, known_units=set(ORG.units))  # as POST /api/v1/events does
        self.events.extend(events)

    def ids(self) -> list[str]:
        return [e["id"] for e in self.events]


async def create_demo(
    sessions: async_sessionmaker[AsyncSession], *, speed: float, exercise_id: str = "ovelse-demo"
) -> None:
    scenario = load_scenario(shipped()["demo-kort"], org=ORG)
    async with sessions() as session:
        await service.create(
            session,
            exercise_id=exercise_id,
            scenario_id=scenario.id,
            title=scenario.title,
            scenario_yaml=scenario.text,
            speed=speed,
            duration_seconds=scenario.duration.total_seconds() if scenario.duration else None,
            injects=plans(scenario),
            actor="user:kari",
        )
        await session.commit()


async def start(sessions: async_sessionmaker[AsyncSession], at: datetime, **kw: Any) -> None:
    async with sessions() as session:
        await service.start(session, exercise_id="ovelse-demo", actor="user:kari", now=at, **kw)
        await session.commit()


async def states(sessions: async_sessionmaker[AsyncSession]) -> dict[str, str]:
    async with sessions() as session:
        rows = await service.injects(session, exercise_id="ovelse-demo")
        return {r.inject_id: r.state for r in rows}


async def test_a_high_speed_run_sends_every_inject_once_and_ends_itself(
    engine: AsyncEngine,
) -> None:
    sessions = make_sessionmaker(engine)
    await create_demo(sessions, speed=600)  # two minutes in 0.2 s
    t0 = utcnow()
    await start(sessions, t0)
    send = Collect()
    clock = Clock(t0)
    runner = Runner(sessions, org=ORG, send=send, clock=clock)
    for step in range(5):
        clock.at = t0 + timedelta(seconds=0.05 * step)
        await runner.run_once()
    assert send.ids() == ["brannalarm", "melding-royk", "ny-alarm"]  # the text inject: none
    assert {e["exercise"] for e in send.events} == {"ovelse-demo"}
    assert {e["source"] for e in send.events} == {"/exercises/ovelse-demo"}
    assert set((await states(sessions)).values()) == {"sent"}
    async with sessions() as session:
        ex = await service.get(session, exercise_id="ovelse-demo")
    assert ex.state == "ended" and ex.ended_by == service.RUNNER_ACTOR
    await runner.run_once()
    assert len(send.events) == 3


async def test_a_restart_resumes_instead_of_repeating(engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(engine)
    await create_demo(sessions, speed=1)
    t0 = utcnow()
    await start(sessions, t0)
    send = Collect()
    clock = Clock(t0 + timedelta(seconds=25))
    await Runner(sessions, org=ORG, send=send, clock=clock).run_once()
    assert send.ids() == ["brannalarm", "melding-royk"]
    restarted = Runner(sessions, org=ORG, send=send, clock=clock)
    await restarted.run_once()
    assert send.ids() == ["brannalarm", "melding-royk"]
    clock.at = t0 + timedelta(seconds=61)
    await restarted.run_once()
    assert send.ids() == ["brannalarm", "melding-royk", "ny-alarm"]
    assert (await states(sessions))["opplesning-brannvesen"] == "sent"


async def test_a_failed_send_is_retried_and_a_pause_holds_the_script(engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(engine)
    await create_demo(sessions, speed=1)
    t0 = utcnow()
    await start(sessions, t0)
    send = Collect()
    clock = Clock(t0 + timedelta(seconds=5))
    runner = Runner(sessions, org=ORG, send=send, clock=clock)
    send.fail = True
    with pytest.raises(RuntimeError):
        await runner.run_once()
    assert (await states(sessions))["brannalarm"] == "pending"
    send.fail = False
    await runner.run_once()
    assert send.ids() == ["brannalarm"]
    async with sessions() as session:
        await service.pause(session, exercise_id="ovelse-demo", actor="u", now=clock.at)
        await session.commit()
    clock.at = t0 + timedelta(minutes=30)
    await runner.run_once()
    assert send.ids() == ["brannalarm"]  # paused: scenario time stands still
    async with sessions() as session:
        await service.resume(session, exercise_id="ovelse-demo", actor="u", now=clock.at)
        await session.commit()
    clock.at += timedelta(seconds=16)  # 5 s before the pause + 16 s: the report is due
    await runner.run_once()
    assert send.ids() == ["brannalarm", "melding-royk"]


async def test_the_sweep_closes_incidents_opened_after_the_end(engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(engine)
    await create_demo(sessions, speed=1)
    t0 = utcnow()
    await start(sessions, t0)
    async with sessions() as session:
        await service.end(session, exercise_id="ovelse-demo", actor="user:kari", now=t0)
        late, _ = await append.open_incident(
            session,
            incident=IncidentCreate(
                type="fire", title="Sen", unit="agder-froland", severity=3, exercise="ovelse-demo"
            ),
            actor="system:pipeline",
        )
        await session.commit()
    runner = Runner(sessions, org=ORG, send=Collect(), clock=Clock(t0 + timedelta(seconds=1)))
    await runner.run_once()
    async with sessions() as session:
        incident = (await session.exec(select(Incident).where(Incident.id == late.id))).one()
    assert incident.status == "closed"
