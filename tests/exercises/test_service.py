"""Exercise state on SQLite and PostgreSQL: the life cycle, scenario time, participants."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from crisis.clock import utcnow
from crisis.exercises import service
from crisis.exercises.models import Exercise, ExerciseState, InjectState
from crisis.log import append
from crisis.log.models import Incident, IncidentCreate
from crisis.store.db import make_sessionmaker

PLANS = [
    service.InjectPlan("alarm", 0.0, "sensor", "fire_alarm"),
    service.InjectPlan("melding", 60.0, "report", "report: røyk"),
    service.InjectPlan("les", 120.0, "text", "Les opp"),
]


async def make(engine: AsyncEngine, exercise_id: str = "ovelse-a", **kw: object) -> Exercise:
    args: dict[str, object] = {
        "exercise_id": exercise_id,
        "scenario_id": "demo",
        "title": "Demo",
        "scenario_yaml": "version: 1\n",
        "speed": 10.0,
        "duration_seconds": 300.0,
        "injects": PLANS,
        "participants": [("person", "ola")],
        "actor": "user:kari",
        **kw,
    }
    async with make_sessionmaker(engine)() as session:
        row = await service.create(session, **args)  # type: ignore[arg-type]
        await session.commit()
        return row


async def test_create_refuses_a_duplicate_and_an_id_incidents_carry(engine: AsyncEngine) -> None:
    await make(engine)
    with pytest.raises(service.ExerciseConflict):
        await make(engine)
    async with make_sessionmaker(engine)() as session:
        await append.open_incident(
            session,
            incident=IncidentCreate(
                type="fire", title="Brann", unit="agder-froland", severity=3, exercise="ovelse-b"
            ),
            actor="user:kari",
        )
        await session.commit()
    with pytest.raises(service.ExerciseConflict) as refused:
        await make(engine, "ovelse-b")
    assert refused.value.status == 409
    with pytest.raises(service.ExerciseError) as bad:
        await make(engine, "ovelse-c", speed=5000.0)
    assert bad.value.status == 422 and bad.value.field == "speed"
    with pytest.raises(service.ExerciseError):
        await make(engine, "Ugyldig id")


async def test_scenario_time_runs_at_speed_and_stops_while_paused(engine: AsyncEngine) -> None:
    await make(engine)
    t0 = utcnow()
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        ex = await service.start(session, exercise_id="ovelse-a", actor="user:kari", now=t0)
        await session.commit()
        assert service.scenario_seconds(ex, t0 + timedelta(seconds=3)) == pytest.approx(30)
        due = await service.due_injects(session, exercise=ex, now=t0 + timedelta(seconds=7))
        assert [d.inject_id for d in due] == ["alarm", "melding"]
        ex = await service.pause(
            session, exercise_id="ovelse-a", actor="user:kari", now=t0 + timedelta(seconds=4)
        )
        assert service.scenario_seconds(ex, t0 + timedelta(seconds=100)) == pytest.approx(40)
        ex = await service.resume(
            session, exercise_id="ovelse-a", actor="user:kari", now=t0 + timedelta(seconds=10)
        )
        assert service.scenario_seconds(ex, t0 + timedelta(seconds=11)) == pytest.approx(50)
        # an instant before the pause keeps its scenario time once the pause is over
        assert service.scenario_seconds(ex, t0 + timedelta(seconds=2)) == pytest.approx(20)
        await session.commit()
    async with sessions() as session:  # the intervals survive a reload
        ex = await service.get(session, exercise_id="ovelse-a")
        assert service.scenario_seconds(ex, t0 + timedelta(seconds=2)) == pytest.approx(20)
        assert service.scenario_seconds(ex, t0 + timedelta(seconds=11)) == pytest.approx(50)
        with pytest.raises(service.ExerciseConflict):
            await service.resume(session, exercise_id="ovelse-a", actor="user:kari")
        await session.commit()


async def test_start_part_way_skips_the_earlier_injects(engine: AsyncEngine) -> None:
    await make(engine)
    async with make_sessionmaker(engine)() as session:
        ex = await service.start(
            session, exercise_id="ovelse-a", actor="user:kari", start_offset_seconds=90
        )
        await session.commit()
        assert service.scenario_seconds(ex) == pytest.approx(90, abs=1)
        states = {r.inject_id: r.state for r in await service.injects(session, exercise_id=ex.id)}
    assert states == {"alarm": "skipped", "melding": "skipped", "les": "pending"}


async def test_end_closes_the_exercises_incidents_only(engine: AsyncEngine) -> None:
    await make(engine)
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        await service.start(session, exercise_id="ovelse-a", actor="user:kari")
        ids = []
        for exercise in ("ovelse-a", "ovelse-a", None):
            incident, _ = await append.open_incident(
                session,
                incident=IncidentCreate(
                    type="fire", title="Brann", unit="agder-froland", severity=3, exercise=exercise
                ),
                actor="user:kari",
            )
            ids.append(incident.id)
        await session.commit()
    async with sessions() as session:
        ex = await service.end(session, exercise_id="ovelse-a", actor="user:kari")
        await session.commit()
        assert ex.state == ExerciseState.ENDED
        status = {
            i.id: i.status
            for i in (await session.exec(select(Incident).where(Incident.id.in_(ids)))).all()  # type: ignore[attr-defined]
        }
        assert [status[i] for i in ids] == ["closed", "closed", "open"]
        assert {r.state for r in await service.injects(session, exercise_id="ovelse-a")} == {
            InjectState.SKIPPED
        }
        with pytest.raises(service.ExerciseConflict):
            await service.end(session, exercise_id="ovelse-a", actor="user:kari")


async def test_participants_and_observations(engine: AsyncEngine) -> None:
    await make(engine)
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        await service.add_participant(
            session, exercise_id="ovelse-a", person_id="kari", actor="user:kari"
        )
        await service.add_participant(
            session, exercise_id="ovelse-a", person_id="kari", actor="user:kari"
        )
        await service.add_participant(
            session, exercise_id="ovelse-a", person_id="per", kind="account", actor="user:kari"
        )
        await service.add_observation(
            session, exercise_id="ovelse-a", actor="user:kari", text="Eier satt raskt"
        )
        await session.commit()
        got = await service.person_participants(session, exercise_ids=["ovelse-a", "x"])
        assert got == {"ovelse-a": frozenset({"ola", "kari"})}
        assert await service.remove_participant(session, exercise_id="ovelse-a", person_id="ola")
        assert not await service.remove_participant(
            session, exercise_id="ovelse-a", person_id="ola"
        )
        await session.commit()
        got = await service.person_participants(session, exercise_ids=["ovelse-a"])
        assert got == {"ovelse-a": frozenset({"kari"})}
        [obs] = await service.observations(session, exercise_id="ovelse-a")
        assert obs.text == "Eier satt raskt"
        with pytest.raises(service.ExerciseNotFound):
            await service.add_observation(session, exercise_id="nope", actor="a", text="x")


_steps = st.lists(
    st.tuples(st.sampled_from(["pause", "resume", "wait"]), st.floats(0.0, 50.0)),
    max_size=12,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=_steps, speed=st.floats(0.1, 100.0))
def test_scenario_time_never_runs_while_paused_and_never_backwards(
    steps: list[tuple[str, float]], speed: float
) -> None:
    """Over any sequence of pauses, resumes and waits, scenario time is monotonic and equals
    speed × the wall time spent running."""
    t = utcnow()
    ex = Exercise(
        id="x",
        scenario_id="x",
        title="x",
        scenario_yaml="",
        speed=speed,
        created_by="a",
        started_at=t,
        state="running",
    )
    running_wall = 0.0
    last = 0.0
    history: list[tuple[datetime, float]] = []
    for action, seconds in steps:
        if action == "pause" and ex.state == "running":
            ex.paused_at, ex.state = t, "paused"
        elif action == "resume" and ex.state == "paused":
            service.close_pause(ex, t)
            ex.state = "running"
        elif action == "wait":
            t += timedelta(seconds=seconds)
            if ex.state == "running":
                running_wall += seconds
        now = service.scenario_seconds(ex, t)
        history.append((t, now))
        assert now >= last - 1e-6
        assert now == pytest.approx(running_wall * speed, rel=1e-6, abs=1e-4)
        last = now
    # and afterwards, every instant seen keeps the scenario time it had then
    for at, seen in history:
        assert service.scenario_seconds(ex, at) == pytest.approx(seen, rel=1e-6, abs=1e-4)
