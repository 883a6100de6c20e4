"""The exercise runner: one loop that sends the running exercises' due injects as events.

Every ``interval`` seconds it reads the running exercises (one small query; nothing more when
none runs), turns each inject whose offset the exercise's scenario time has reached into
events (``scenario.inject_events``) and hands them to ``send`` — in the web process the same
validation and durable producer as ``POST /api/v1/events``. The inject is marked sent in the
same step, after the send: a restart resumes where it stopped, and an inject sent twice
(a crash between the two) is one event, the ingest dedupes by (source, id). An exercise whose
``duration`` has passed is ended (its incidents closed). Incidents that events still under way
open after an end are closed by a sweep over the recently ended exercises.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis.clock import utcnow
from crisis.domain.organisation import Organisation
from crisis.exercises import service
from crisis.exercises.models import Exercise, ExerciseState
from crisis.kafka.producer import EventProducer
from crisis.sources.events import EventError, validate_event
from playbooks.exercises.scenario import Inject, Scenario, inject_events, load_scenario

log = logging.getLogger("playbooks.exercises.runner")

Send = Callable[[list[dict[str, Any]]], Awaitable[Any]]

#: How long after its end an exercise's late incidents are still swept closed.
SWEEP_WINDOW = timedelta(minutes=10)


class Runner:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        org: Organisation,
        send: Send,
        interval: float = 0.5,
        sweep_every: float = 5.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.org = org
        self.send = send
        self.interval = interval
        self.sweep_every = sweep_every
        self.clock = clock
        self._scenarios: dict[str, Scenario] = {}
        self._last_sweep: datetime | None = None

    def scenario(self, exercise: Exercise) -> Scenario:
        """The exercise's scenario, parsed once (its stored text never changes)."""
        found = self._scenarios.get(exercise.id)
        if found is None:
            found = load_scenario(
                exercise.scenario_yaml, org=self.org, name=f"<exercise {exercise.id}>"
            )
            self._scenarios[exercise.id] = found
        return found

    async def run(self, stop: asyncio.Event) -> None:
        """Run passes until ``stop`` is set; a failed pass is logged and retried."""
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("exercise runner pass failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
            except TimeoutError:
                pass

    async def run_once(self) -> int:
        """One pass; returns the number of injects sent."""
        now = self.clock()
        async with self.sessions() as session:
            exercises = await service.running(session)
        sent = 0
        for exercise in exercises:
            sent += await self._exercise(exercise, now)
        if self._last_sweep is None or (now - self._last_sweep).total_seconds() >= (
            self.sweep_every
        ):
            self._last_sweep = now
            await self.sweep(now)
        return sent

    async def _exercise(self, exercise: Exercise, now: datetime) -> int:
        scenario = self.scenario(exercise)
        by_id = {inject.id: inject for inject in scenario.injects}
        sent = 0
        async with self.sessions() as session:
            due = await service.due_injects(session, exercise=exercise, now=now)
        for row in due:
            inject = by_id.get(row.inject_id)
            events: list[dict[str, Any]] = []
            if inject is not None:
                # The event's time is the wall instant it is sent: its offset ran at `speed`.
                events = inject_events(
                    inject,
                    scenario=scenario,
                    exercise_id=exercise.id,
                    started_at=now - inject.at,
                    org=self.org,
                )
            refused: EventError | None = None
            if events:
                try:
                    await self.send(events)
                except EventError as exc:  # the scenario was checked: a bug, not a retry
                    log.error("exercise %s inject %s refused: %s", exercise.id, row.inject_id, exc)
                    refused = exc
            async with self.sessions() as session:
                if refused is None:
                    sent += await service.mark_sent(
                        session, exercise_id=exercise.id, inject_ids=[row.inject_id], now=now
                    )
                else:
                    await service.mark_skipped(
                        session, exercise_id=exercise.id, inject_id=row.inject_id, why=str(refused)
                    )
                await session.commit()
        if exercise.duration_seconds is not None and (
            service.scenario_seconds(exercise, now) >= exercise.duration_seconds
        ):
            await self._end(exercise.id, now)
        return sent

    async def _end(self, exercise_id: str, now: datetime) -> None:
        async with self.sessions() as session:
            try:
                await service.end(
                    session,
                    exercise_id=exercise_id,
                    actor=service.RUNNER_ACTOR,
                    reason="scenariets varighet er omme / the scenario's duration has passed",
                    now=now,
                )
            except service.ExerciseConflict:
                return  # ended meanwhile by the controller
            await session.commit()
        self._scenarios.pop(exercise_id, None)
        log.info("exercise %s ended: its duration has passed", exercise_id)

    async def sweep(self, now: datetime) -> list[str]:
        """Close incidents that opened after their exercise's end (events under way)."""
        async with self.sessions() as session:
            ended = (
                await session.exec(
                    select(Exercise.id).where(
                        Exercise.state == ExerciseState.ENDED.value,
                        col(Exercise.ended_at) >= now - SWEEP_WINDOW,
                    )
                )
            ).all()
        closed: list[str] = []
        for exercise_id in ended:
            async with self.sessions() as session:
                closed += await service.close_incidents(
                    session, exercise_id=exercise_id, actor=service.RUNNER_ACTOR
                )
                await session.commit()
        return closed


def producer_send(producer: EventProducer, *, known_units: Collection[str]) -> Send:
    """``send`` for the web process: validated as ``POST /api/v1/events`` validates, then
    made durable by the app's producer (Kafka, or the outbox while Kafka is away)."""
    known = set(known_units)

    async def send(raws: list[dict[str, Any]]) -> list[str]:
        envelopes = [validate_event(raw, index=i, known_units=known) for i, raw in enumerate(raws)]
        return await producer.accept(envelopes)

    return send


def summary(inject: Inject) -> str:
    """A line the controller reads: what the inject is."""
    if inject.type == "text":
        return inject.text or ""
    if inject.type == "sensor":
        detail = ", ".join(f"{k}={v}" for k, v in inject.data.items())
        return f"{inject.event} @ {inject.unit or '-'}" + (f" ({detail})" if detail else "")
    if inject.type == "cap":
        return "CAP-varsel / CAP warning"
    title = inject.data.get("what") or inject.data.get("title") or ""
    return f"{inject.type}: {title}"


def plans(scenario: Scenario) -> list[service.InjectPlan]:
    """The scenario's injects as stored with a new exercise, in the order they are sent."""
    ordered = sorted(scenario.injects, key=lambda inject: inject.at)
    return [
        service.InjectPlan(
            inject_id=inject.id,
            due_offset_seconds=inject.at.total_seconds(),
            type=inject.type,
            summary=summary(inject)[:2000],
        )
        for inject in ordered
    ]
