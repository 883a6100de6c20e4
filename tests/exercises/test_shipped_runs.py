"""Every shipped scenario runs at high speed to an evaluation: the runner sends its injects
through the real ingest pipeline (validation, correlation, the crisis log) on the database,
the exercise ends itself, and the evaluation judges every expected action."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from crisis.clock import utcnow
from crisis.domain.organisation import load_organisation
from crisis.exercises import service
from crisis.log import verify
from crisis.log.models import Incident
from crisis.settings import Settings
from crisis.sources.models import DeadLetter
from crisis.store.db import make_sessionmaker
from playbooks.exercises.evaluation import evaluation_of
from playbooks.exercises.runner import Runner, plans
from playbooks.exercises.scenario import load_scenario, shipped
from streams.pipeline import Record
from streams.worker import build_pipeline

ORG = load_organisation()


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.mark.parametrize("name", sorted(shipped()))
async def test_a_shipped_scenario_runs_to_an_evaluation(
    name: str, engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    scenario = load_scenario(shipped()[name], org=ORG)
    settings = Settings(data_dir=tmp_path / "var", database_url=database_url, secret_key="x")
    pipeline, _ = build_pipeline(settings, engine=engine)
    sent: list[dict[str, Any]] = []

    async def send(events: list[dict[str, Any]]) -> None:
        sent.extend(events)
        records = [Record(value=json.dumps(e).encode(), topic="crisis.events") for e in events]
        await pipeline.process(records)

    sessions = make_sessionmaker(engine)
    exercise_id = f"ovelse-{name}"
    assert scenario.duration is not None
    async with sessions() as session:
        await service.create(
            session,
            exercise_id=exercise_id,
            scenario_id=scenario.id,
            title=scenario.title,
            scenario_yaml=scenario.text,
            speed=1000.0,
            duration_seconds=scenario.duration.total_seconds(),
            injects=plans(scenario),
            actor="user:ovingsleder",
        )
        t0 = utcnow()
        await service.start(session, exercise_id=exercise_id, actor="user:ovingsleder", now=t0)
        await session.commit()

    clock = Clock(t0)
    runner = Runner(sessions, org=ORG, send=send, clock=clock)
    wall = scenario.duration.total_seconds() / 1000.0
    for step in range(12):  # across the whole scenario and past its end, in scenario order
        clock.at = t0 + timedelta(seconds=wall * step / 10)
        await runner.run_once()

    scripted = {i.id for i in scenario.injects if i.type != "text"}
    assert {
        re.sub(r"-\d+$", "", e["id"]) if e["id"] not in scripted else e["id"] for e in sent
    } == (scripted)
    assert len({e["id"] for e in sent}) == len(sent)  # each event once
    assert {e["exercise"] for e in sent} == {exercise_id}
    async with sessions() as session:
        exercise = await service.get(session, exercise_id=exercise_id)
        assert exercise.state == "ended"
        assert {r.state for r in await service.injects(session, exercise_id=exercise_id)} == {
            "sent"
        }
        dead = (await session.exec(select(DeadLetter))).all()
        assert not dead, [d.reason for d in dead]
        incidents = (await session.exec(select(Incident))).all()
        assert incidents and {i.exercise for i in incidents} == {exercise_id}
        assert {i.status for i in incidents} == {"closed"}  # ending closed them
        evaluation = await evaluation_of(
            session, exercise_id=exercise_id, org=ORG, now=clock.at, with_violations=False
        )
        assert (await verify.verify_log(session)).ok
    assert [a.id for a in evaluation.expected_actions] == [x.id for x in scenario.expected]
    # Nobody answered: the exercise has ended, so every action is decided.
    assert all(a.met is not None for a in evaluation.expected_actions)
    opened = [a for a in evaluation.expected_actions if a.action == "incident_opened"]
    assert all(a.met for a in opened)
