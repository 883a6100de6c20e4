"""Participants registered in the database hold at the dispatcher at once (no restart)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from crisis.clock import utcnow
from crisis.exercises import service as exercises
from crisis.store.db import make_sessionmaker
from notifiers.dispatcher import Dispatcher
from notifiers.models import MessageStatus
from notifiers.rendering import EXERCISE_PREFIX
from tests.notif_sink import Sink
from tests.notifiers.test_notif_dispatcher import (
    all_final,
    drain,
    make_config,
    messages,
    open_incident,
    request,
)


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = await Sink().start()
    yield s
    await s.stop()


async def test_a_registered_participant_is_delivered_to_and_an_unregistered_one_blocked(
    engine: AsyncEngine, sink: Sink
) -> None:
    config = make_config(sink)  # its file knows only exercise ovelse-x
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        await exercises.create(
            session,
            exercise_id="ovelse-api",
            scenario_id="demo",
            title="Demo",
            scenario_yaml="version: 1\n",
            speed=1.0,
            duration_seconds=None,
            injects=[],
            actor="user:kari",
        )
        await exercises.add_participant(
            session, exercise_id="ovelse-api", person_id="staff-2", actor="user:kari"
        )
        await session.commit()
    incident = await open_incident(engine, exercise="ovelse-api")
    dispatcher = Dispatcher(sessions, config)  # one process throughout: no restart
    try:
        first = await request(engine, config, incident, groups=["staff"])
        await drain(dispatcher, all_final(engine, first))
        assert sink.paths() == ["/staff/2"]
        assert all(h.body["message"].startswith(EXERCISE_PREFIX) for h in sink.hits)
        status = {m.recipient: m.status for m in await messages(engine, first)}
        assert status == {"staff-1": "blocked", "staff-2": "sent", "fb": "blocked"}

        async with sessions() as session:
            assert await exercises.remove_participant(
                session, exercise_id="ovelse-api", person_id="staff-2"
            )
            await session.commit()
        sink.hits.clear()
        second = await request(engine, config, incident, groups=["staff"])
        await drain(dispatcher, all_final(engine, second))
        assert sink.hits == []
        assert {m.status for m in await messages(engine, second)} == {MessageStatus.BLOCKED}
    finally:
        await dispatcher.aclose()


async def test_an_ended_exercise_stops_its_acknowledgement_escalation(
    engine: AsyncEngine, sink: Sink
) -> None:
    config = make_config(sink, ack_timeout_seconds=300)  # ovelse-x: leader-a takes part
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        await exercises.create(
            session,
            exercise_id="ovelse-x",
            scenario_id="demo",
            title="Demo",
            scenario_yaml="version: 1\n",
            speed=1.0,
            duration_seconds=None,
            injects=[],
            participants=[("person", "leader-b")],
            actor="user:kari",
        )
        await exercises.start(session, exercise_id="ovelse-x", actor="user:kari")
        await session.commit()
    incident = await open_incident(engine, exercise="ovelse-x")
    update_id = await request(engine, config, incident, groups=["leaders"], kind="alarm")
    now = [utcnow()]
    dispatcher = Dispatcher(sessions, config, clock=lambda: now[0])
    try:
        await drain(dispatcher, lambda: sink.to("/leader/a"))
        async with sessions() as session:
            await exercises.end(session, exercise_id="ovelse-x", actor="user:kari")
            await session.commit()
        now[0] += timedelta(seconds=301)
        await dispatcher.run_once()
        await dispatcher.run_once()
        assert not sink.to("/leader/b")  # a participant, but the exercise is over
        ms = await messages(engine, update_id)
        assert [m.recipient for m in ms] == ["leader-a"] and ms[0].escalated
    finally:
        await dispatcher.aclose()
