"""Exercise state: create, start, pause, resume, end; participants, observations, progress.

Keyword-only functions over the caller's session: they flush, the caller commits. The
scenario itself is parsed above the core (``playbooks.exercises.scenario``); what is stored
here is its text, the schedule of its injects (:class:`InjectPlan`) and who takes part.

Scenario time of a wall instant t is ``(t - started_at - paused(t)) * speed``
(:func:`scenario_seconds`); inject offsets and expected actions' targets are in it.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis.clock import as_utc, utcnow
from crisis.domain.vocabulary import Status
from crisis.exercises.models import (
    EXERCISE_ID_PATTERN,
    Exercise,
    ExerciseInjectState,
    ExerciseObservation,
    ExerciseParticipant,
    ExerciseState,
    InjectState,
)
from crisis.log.append import close_incident
from crisis.log.models import Incident

#: The speeds an exercise may run at (scenario seconds per wall second).
SPEED_MIN = 0.1
SPEED_MAX = 1000.0
#: The actor of what the runner does on its own (an exercise that ran its duration).
RUNNER_ACTOR = "system:exercise-runner"
PARTICIPANT_KINDS = ("person", "account")

_ID = re.compile(EXERCISE_ID_PATTERN)


class ExerciseError(Exception):
    """A refused exercise operation; ``status`` is the HTTP code that fits."""

    status = 422

    def __init__(
        self,
        field: str,
        message: str,
        *,
        status: int | None = None,
        items: list[dict[str, object]] | None = None,
    ) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message
        if status is not None:
            self.status = status
        self.items = items

    def errors(self) -> list[dict[str, object]]:
        """The project's error shape (``{"errors": [...]}`` items)."""
        return self.items or [{"index": None, "field": self.field, "message": self.message}]


class ExerciseNotFound(ExerciseError):
    status = 404


class ExerciseConflict(ExerciseError):
    status = 409


@dataclass(frozen=True)
class InjectPlan:
    """One scripted inject as stored: its id, offset (scenario seconds), type and a summary."""

    inject_id: str
    due_offset_seconds: float
    type: str
    summary: str = ""


@dataclass(frozen=True)
class Progress:
    state: str
    scenario_seconds: float
    duration_seconds: float | None
    injects_total: int
    injects_sent: int
    injects_due: int  # pending injects whose offset has passed (about to be sent)
    injects_skipped: int


# --- time -----------------------------------------------------------------------------


def pause_intervals(exercise: Exercise) -> list[tuple[datetime, datetime | None]]:
    """The pauses as wall intervals, the current one open-ended."""
    out: list[tuple[datetime, datetime | None]] = [
        (as_utc(start), as_utc(end)) for start, end in exercise.pauses or ()
    ]
    if exercise.paused_at is not None:
        out.append((as_utc(exercise.paused_at), None))
    return out


def paused_seconds(exercise: Exercise, at: datetime) -> float:
    """Wall seconds spent paused before ``at`` (the current pause included)."""
    at = as_utc(at)
    return sum(
        max(0.0, (min(end or at, at) - start).total_seconds())
        for start, end in pause_intervals(exercise)
    )


def close_pause(exercise: Exercise, now: datetime) -> None:
    """Close the current pause, if any: record its interval and the running total."""
    if exercise.paused_at is not None:
        exercise.pauses = [
            *(exercise.pauses or ()),
            [as_utc(exercise.paused_at).isoformat(), as_utc(now).isoformat()],
        ]
    exercise.paused_seconds = paused_seconds(exercise, now)
    exercise.paused_at = None


def scenario_seconds(exercise: Exercise, at: datetime | None = None) -> float:
    """The scenario time at wall instant ``at`` (0 before the start; frozen at the end)."""
    if exercise.started_at is None:
        return 0.0
    at = as_utc(at or utcnow())
    if exercise.ended_at is not None:
        at = min(at, as_utc(exercise.ended_at))
    wall = (at - as_utc(exercise.started_at)).total_seconds() - paused_seconds(exercise, at)
    return max(0.0, wall * exercise.speed)


# --- reads ----------------------------------------------------------------------------


async def get(session: AsyncSession, *, exercise_id: str, for_update: bool = False) -> Exercise:
    query = select(Exercise).where(Exercise.id == exercise_id)
    if for_update:
        query = query.with_for_update()
    found = (await session.exec(query)).first()
    if found is None:
        raise ExerciseNotFound("id", f"ingen øvelse {exercise_id!r} / no exercise {exercise_id!r}")
    return found


async def list_exercises(
    session: AsyncSession, *, states: Collection[str] | None = None
) -> list[Exercise]:
    """Exercises, newest first (``states``: only those)."""
    query = select(Exercise).order_by(col(Exercise.created_at).desc())
    if states is not None:
        query = query.where(col(Exercise.state).in_(list(states)))
    return list((await session.exec(query)).all())


async def running(session: AsyncSession) -> list[Exercise]:
    """The running exercises (what the runner schedules)."""
    return list(
        (await session.exec(select(Exercise).where(Exercise.state == ExerciseState.RUNNING))).all()
    )


async def injects(session: AsyncSession, *, exercise_id: str) -> list[ExerciseInjectState]:
    """The exercise's injects by offset (scripted and manual)."""
    return list(
        (
            await session.exec(
                select(ExerciseInjectState)
                .where(ExerciseInjectState.exercise_id == exercise_id)
                .order_by(col(ExerciseInjectState.due_offset_seconds), col(ExerciseInjectState.id))
            )
        ).all()
    )


async def participants(session: AsyncSession, *, exercise_id: str) -> list[ExerciseParticipant]:
    return list(
        (
            await session.exec(
                select(ExerciseParticipant)
                .where(ExerciseParticipant.exercise_id == exercise_id)
                .order_by(col(ExerciseParticipant.id))
            )
        ).all()
    )


async def person_participants(
    session: AsyncSession, *, exercise_ids: Collection[str]
) -> dict[str, frozenset[str]]:
    """Exercise id → the recipients-file person ids registered for it (what the dispatcher
    lets through); an account participant is no recipient."""
    if not exercise_ids:
        return {}
    rows = (
        await session.exec(
            select(ExerciseParticipant.exercise_id, ExerciseParticipant.person_id).where(
                col(ExerciseParticipant.exercise_id).in_(list(exercise_ids)),
                ExerciseParticipant.kind == "person",
            )
        )
    ).all()
    out: dict[str, set[str]] = {}
    for exercise_id, person_id in rows:
        out.setdefault(exercise_id, set()).add(person_id)
    return {k: frozenset(v) for k, v in out.items()}


async def observations(session: AsyncSession, *, exercise_id: str) -> list[ExerciseObservation]:
    return list(
        (
            await session.exec(
                select(ExerciseObservation)
                .where(ExerciseObservation.exercise_id == exercise_id)
                .order_by(col(ExerciseObservation.at), col(ExerciseObservation.id))
            )
        ).all()
    )


async def progress(
    session: AsyncSession, *, exercise: Exercise, now: datetime | None = None
) -> Progress:
    now = now or utcnow()
    at = scenario_seconds(exercise, now)
    rows = await injects(session, exercise_id=exercise.id)
    return Progress(
        state=exercise.state,
        scenario_seconds=at,
        duration_seconds=exercise.duration_seconds,
        injects_total=len(rows),
        injects_sent=sum(r.state == InjectState.SENT for r in rows),
        injects_due=sum(
            exercise.started_at is not None
            and r.state == InjectState.PENDING
            and r.due_offset_seconds <= at
            for r in rows
        ),
        injects_skipped=sum(r.state == InjectState.SKIPPED for r in rows),
    )


# --- create and the life cycle --------------------------------------------------------


def check_speed(speed: float) -> None:
    if not SPEED_MIN <= speed <= SPEED_MAX:
        raise ExerciseError(
            "speed",
            f"hastigheten må være mellom {SPEED_MIN} og {SPEED_MAX} / must be "
            f"between {SPEED_MIN} and {SPEED_MAX}, not {speed}",
        )


def check_id(exercise_id: str) -> None:
    if not _ID.match(exercise_id) or len(exercise_id) > 120:
        raise ExerciseError(
            "id", f"{exercise_id!r}: bruk a-z, 0-9 og - / use a-z, 0-9 and -, at most 120"
        )


async def create(
    session: AsyncSession,
    *,
    exercise_id: str,
    scenario_id: str,
    title: str,
    scenario_yaml: str,
    speed: float,
    duration_seconds: float | None,
    injects: Sequence[InjectPlan],
    participants: Iterable[tuple[str, str]] = (),
    actor: str,
    now: datetime | None = None,
) -> Exercise:
    """A new exercise in state ``created`` with its injects pending.

    Refuses (409) an id already used by an exercise, and one that incidents already carry
    (events posted by hand with that ``exercise`` would mix with the scripted ones).
    ``participants``: (kind, id) pairs.
    """
    check_id(exercise_id)
    check_speed(speed)
    if await session.get(Exercise, exercise_id) is not None:
        raise ExerciseConflict(
            "id", f"øvelsen {exercise_id!r} finnes allerede / exercise {exercise_id!r} exists"
        )
    used = (
        await session.exec(select(Incident.id).where(Incident.exercise == exercise_id).limit(1))
    ).first()
    if used is not None:
        raise ExerciseConflict(
            "id",
            f"øvelses-id {exercise_id!r} brukes allerede av hendelse {used} / exercise id "
            f"{exercise_id!r} overlaps incident {used}",
        )
    now = now or utcnow()
    row = Exercise(
        id=exercise_id,
        scenario_id=scenario_id,
        title=title,
        scenario_yaml=scenario_yaml,
        speed=speed,
        duration_seconds=duration_seconds,
        created_by=actor,
        created_at=now,
    )
    session.add(row)
    await session.flush()
    session.add_all(
        ExerciseInjectState(
            exercise_id=exercise_id,
            inject_id=plan.inject_id,
            due_offset_seconds=plan.due_offset_seconds,
            type=plan.type,
            summary=plan.summary,
        )
        for plan in injects
    )
    for kind, person_id in dict.fromkeys(participants):
        session.add(_participant(exercise_id, person_id, kind, actor, now))
    await session.flush()
    return row


def _participant(
    exercise_id: str, person_id: str, kind: str, actor: str, now: datetime
) -> ExerciseParticipant:
    if kind not in PARTICIPANT_KINDS:
        raise ExerciseError("kind", f"{kind!r}: person or account")
    return ExerciseParticipant(
        exercise_id=exercise_id, person_id=person_id, kind=kind, added_by=actor, added_at=now
    )


def _refuse(exercise: Exercise, verb: str) -> ExerciseConflict:
    return ExerciseConflict(
        "state",
        f"øvelsen er {exercise.state}: kan ikke {verb} / the exercise is {exercise.state}: "
        f"cannot {verb}",
    )


async def start(
    session: AsyncSession,
    *,
    exercise_id: str,
    actor: str,
    start_offset_seconds: float = 0.0,
    now: datetime | None = None,
) -> Exercise:
    """Start a created exercise; ``start_offset_seconds`` (scenario time) starts it part-way:
    the injects before that offset are skipped, not sent."""
    exercise = await get(session, exercise_id=exercise_id, for_update=True)
    if exercise.state != ExerciseState.CREATED:
        raise _refuse(exercise, "start")
    if start_offset_seconds < 0 or (
        exercise.duration_seconds is not None and start_offset_seconds > exercise.duration_seconds
    ):
        raise ExerciseError("start_at", "utenfor scenariet / outside the scenario")
    now = now or utcnow()
    exercise.started_at = now - timedelta(seconds=start_offset_seconds / exercise.speed)
    exercise.state = ExerciseState.RUNNING.value
    session.add(exercise)
    if start_offset_seconds > 0:
        await session.exec(
            update(ExerciseInjectState)
            .where(
                col(ExerciseInjectState.exercise_id) == exercise_id,
                col(ExerciseInjectState.state) == InjectState.PENDING.value,
                col(ExerciseInjectState.due_offset_seconds) < start_offset_seconds,
            )
            .values(state=InjectState.SKIPPED.value)
        )
    await session.flush()
    return exercise


async def pause(
    session: AsyncSession, *, exercise_id: str, actor: str, now: datetime | None = None
) -> Exercise:
    exercise = await get(session, exercise_id=exercise_id, for_update=True)
    if exercise.state != ExerciseState.RUNNING:
        raise _refuse(exercise, "pause")
    exercise.paused_at = now or utcnow()
    exercise.state = ExerciseState.PAUSED.value
    session.add(exercise)
    await session.flush()
    return exercise


async def resume(
    session: AsyncSession, *, exercise_id: str, actor: str, now: datetime | None = None
) -> Exercise:
    exercise = await get(session, exercise_id=exercise_id, for_update=True)
    if exercise.state != ExerciseState.PAUSED:
        raise _refuse(exercise, "resume")
    close_pause(exercise, now or utcnow())
    exercise.state = ExerciseState.RUNNING.value
    session.add(exercise)
    await session.flush()
    return exercise


async def end(
    session: AsyncSession,
    *,
    exercise_id: str,
    actor: str,
    reason: str | None = None,
    now: datetime | None = None,
) -> Exercise:
    """End the exercise and close its open incidents (their playbook timers stop with them:
    the engine does not evaluate a closed incident). Pending injects are skipped."""
    exercise = await get(session, exercise_id=exercise_id, for_update=True)
    if exercise.state == ExerciseState.ENDED:
        raise _refuse(exercise, "end")
    now = now or utcnow()
    close_pause(exercise, now)
    exercise.state = ExerciseState.ENDED.value
    exercise.ended_at = now
    exercise.ended_by = actor
    exercise.end_reason = (reason or "avsluttet / ended")[:500]
    session.add(exercise)
    await session.exec(
        update(ExerciseInjectState)
        .where(
            col(ExerciseInjectState.exercise_id) == exercise_id,
            col(ExerciseInjectState.state) == InjectState.PENDING.value,
        )
        .values(state=InjectState.SKIPPED.value)
    )
    await session.flush()
    await close_incidents(session, exercise_id=exercise_id, actor=actor)
    return exercise


async def close_incidents(session: AsyncSession, *, exercise_id: str, actor: str) -> list[str]:
    """Close every open incident of the exercise; returns their ids. Also used after the end
    for incidents that events already under way opened late."""
    open_ids = list(
        (
            await session.exec(
                select(Incident.id)
                .where(Incident.exercise == exercise_id, Incident.status == Status.OPEN.value)
                .order_by(col(Incident.id))
            )
        ).all()
    )
    for incident_id in open_ids:
        await close_incident(
            session,
            incident_id=incident_id,
            reason=f"øvelsen {exercise_id} er avsluttet / exercise {exercise_id} ended",
            final_situation="Øvelse avsluttet / exercise ended",
            actor=actor,
        )
    return open_ids


# --- injects --------------------------------------------------------------------------


async def due_injects(
    session: AsyncSession, *, exercise: Exercise, now: datetime | None = None
) -> list[ExerciseInjectState]:
    """The pending injects whose offset the exercise's scenario time has reached."""
    at = scenario_seconds(exercise, now)
    return list(
        (
            await session.exec(
                select(ExerciseInjectState)
                .where(
                    ExerciseInjectState.exercise_id == exercise.id,
                    ExerciseInjectState.state == InjectState.PENDING.value,
                    col(ExerciseInjectState.due_offset_seconds) <= at,
                )
                .order_by(col(ExerciseInjectState.due_offset_seconds), col(ExerciseInjectState.id))
            )
        ).all()
    )


async def mark_sent(
    session: AsyncSession, *, exercise_id: str, inject_ids: Collection[str], now: datetime | None
) -> int:
    """Mark pending injects sent; returns how many were still pending."""
    if not inject_ids:
        return 0
    result = await session.exec(
        update(ExerciseInjectState)
        .where(
            col(ExerciseInjectState.exercise_id) == exercise_id,
            col(ExerciseInjectState.inject_id).in_(list(inject_ids)),
            col(ExerciseInjectState.state) == InjectState.PENDING.value,
        )
        .values(state=InjectState.SENT.value, sent_at=now or utcnow())
    )
    return int(result.rowcount or 0)


async def mark_skipped(
    session: AsyncSession, *, exercise_id: str, inject_id: str, why: str
) -> None:
    """A pending inject that will not be sent (its events were refused), with the reason."""
    row = (
        await session.exec(
            select(ExerciseInjectState).where(
                ExerciseInjectState.exercise_id == exercise_id,
                ExerciseInjectState.inject_id == inject_id,
            )
        )
    ).first()
    if row is not None and row.state == InjectState.PENDING:
        row.state = InjectState.SKIPPED.value
        row.summary = f"{row.summary} — {why}"[:4000]
        session.add(row)
        await session.flush()


async def record_manual_inject(
    session: AsyncSession,
    *,
    exercise_id: str,
    inject_id: str,
    type: str,
    summary: str,
    now: datetime | None = None,
) -> ExerciseInjectState:
    """A manual inject the controller fired, recorded as sent at the current scenario time."""
    exercise = await get(session, exercise_id=exercise_id)
    if exercise.state not in (ExerciseState.RUNNING, ExerciseState.PAUSED):
        raise _refuse(exercise, "inject")
    now = now or utcnow()
    row = ExerciseInjectState(
        exercise_id=exercise_id,
        inject_id=inject_id,
        due_offset_seconds=scenario_seconds(exercise, now),
        type=type,
        state=InjectState.SENT.value,
        sent_at=now,
        manual=True,
        summary=summary,
    )
    session.add(row)
    await session.flush()
    return row


# --- participants and observations ----------------------------------------------------


async def _registered(
    session: AsyncSession, *, exercise_id: str, person_id: str
) -> ExerciseParticipant | None:
    return (
        await session.exec(
            select(ExerciseParticipant).where(
                ExerciseParticipant.exercise_id == exercise_id,
                ExerciseParticipant.person_id == person_id,
            )
        )
    ).first()


async def add_participant(
    session: AsyncSession,
    *,
    exercise_id: str,
    person_id: str,
    kind: str = "person",
    actor: str,
    now: datetime | None = None,
) -> ExerciseParticipant:
    """Register a participant (idempotent: one already registered is returned as it is)."""
    exercise = await get(session, exercise_id=exercise_id)
    if exercise.state == ExerciseState.ENDED:
        raise _refuse(exercise, "add participants")
    found = await _registered(session, exercise_id=exercise_id, person_id=person_id)
    if found is not None:
        return found
    row = _participant(exercise_id, person_id, kind, actor, now or utcnow())
    session.add(row)
    await session.flush()
    return row


async def remove_participant(session: AsyncSession, *, exercise_id: str, person_id: str) -> bool:
    """Unregister; False when they were not registered."""
    await get(session, exercise_id=exercise_id)
    found = await _registered(session, exercise_id=exercise_id, person_id=person_id)
    if found is None:
        return False
    await session.delete(found)
    await session.flush()
    return True


async def add_observation(
    session: AsyncSession,
    *,
    exercise_id: str,
    actor: str,
    text: str,
    now: datetime | None = None,
) -> ExerciseObservation:
    await get(session, exercise_id=exercise_id)
    if not text.strip():
        raise ExerciseError("text", "tom observasjon / an empty observation")
    row = ExerciseObservation(exercise_id=exercise_id, actor=actor, text=text, at=now or utcnow())
    session.add(row)
    await session.flush()
    return row
