"""Scripted exercises over HTTP: the shipped scenarios, create/start/pause/resume/end, manual
injects, participants and observations. Admins and exercise controllers only (``run_exercise``).

A scenario is named (a shipped one) or sent as YAML text; it is checked against the
organisation, the recipients file and the accounts before anything is stored, and refused
with its ``file:line: field: message`` problems (422). The runner in the web process sends
the injects (``playbooks.exercises.runner``); a manual inject goes through the same ``send``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import yaml
from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, Field, model_validator
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis.accounts.models import User
from crisis.clock import utcnow
from crisis.domain.organisation import Organisation
from crisis.domain.permissions import Action, require
from crisis.exercises import service
from crisis.exercises.models import Exercise, ExerciseState
from crisis.sources.events import EventError
from playbooks.duration import parse_duration
from playbooks.exercises import runner
from playbooks.exercises.evaluation import Evaluation, evaluation_of
from playbooks.exercises.scenario import (
    Scenario,
    ScenarioError,
    inject_events,
    load_scenario,
    shipped,
)
from web.api.incidents import actor_of
from web.api.notifications import notify_config
from web.deps import CurrentUser, Org, SessionDep

router = APIRouter(prefix="/api/v1/exercises", tags=["exercises"])

OSLO = ZoneInfo("Europe/Oslo")
#: The largest scenario text accepted (a shipped one is a few kilobytes).
MAX_SCENARIO_CHARS = 200_000


class ParticipantIn(BaseModel):
    person: str | None = Field(default=None, min_length=1, max_length=200)
    account: str | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _one(self) -> ParticipantIn:
        if (self.person is None) == (self.account is None):
            raise ValueError("give exactly one of person or account")
        return self

    @property
    def kind(self) -> Literal["person", "account"]:
        return "person" if self.person is not None else "account"

    @property
    def id(self) -> str:
        return self.person if self.person is not None else str(self.account)


class ExerciseCreate(BaseModel):
    scenario: str = Field(
        min_length=1, max_length=MAX_SCENARIO_CHARS, description="a shipped name or YAML text"
    )
    speed: float = Field(default=1.0, ge=service.SPEED_MIN, le=service.SPEED_MAX)
    id: str | None = Field(default=None, max_length=120, pattern=r"^[a-z0-9][a-z0-9-]*$")
    participants: list[ParticipantIn] = Field(default_factory=list, max_length=500)


class ExerciseStart(BaseModel):
    start_at: str | float | None = Field(
        default=None, description="scenario offset to start from: seconds or 10m, 1h30m …"
    )


class ExerciseEnd(BaseModel):
    reason: str | None = Field(default=None, max_length=500)


class InjectIn(BaseModel):
    """``{"inject": ID}`` fires a scripted inject now; else a manual inject like the file's."""

    model_config = {"extra": "allow"}

    inject: str | None = Field(default=None, max_length=120)
    type: str | None = Field(default=None, max_length=20)


class ObservationIn(BaseModel):
    text: str = Field(min_length=1, max_length=10_000)


class ExerciseCreated(BaseModel):
    id: str


class InjectPublic(BaseModel):
    inject_id: str
    due_offset_seconds: float
    type: str
    state: str
    sent_at: datetime | None
    manual: bool
    summary: str


class ParticipantPublic(BaseModel):
    person_id: str
    kind: str
    added_by: str
    added_at: datetime


class ObservationPublic(BaseModel):
    at: datetime
    actor: str
    text: str


class ProgressPublic(BaseModel):
    scenario_seconds: float
    duration_seconds: float | None
    injects: dict[str, int]
    #: met / missed / pending / total; met… are None in lists and state changes (the
    #: evaluation reads every incident's log: ``GET /{id}`` fills them).
    expected: dict[str, int | None]


class ExerciseSummary(BaseModel):
    id: str
    scenario_id: str
    title: str
    state: str
    speed: float
    created_by: str
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    progress: ProgressPublic


class ExercisePublic(ExerciseSummary):
    paused_at: datetime | None
    paused_seconds: float
    ended_by: str | None
    end_reason: str | None
    scenario_yaml: str
    #: The evaluation's expected actions so far (``met`` True / False / None), as
    #: ``GET /{id}/evaluation`` gives them.
    expected: list[dict[str, Any]]
    injects: list[InjectPublic]
    participants: list[ParticipantPublic]
    observations: list[ObservationPublic]


class ScenarioPublic(BaseModel):
    id: str
    title: str
    title_en: str
    description: str
    units: list[str]
    duration_seconds: float | None
    participants: list[dict[str, str]]
    injects: list[dict[str, Any]]
    expected: list[dict[str, Any]]


# --- helpers ---------------------------------------------------------------------------


def _scenario_refused(exc: ScenarioError) -> service.ExerciseError:
    """Every problem of the scenario, each ``file:line: field: message``, in one 422."""
    items: list[dict[str, object]] = [
        {"index": None, "field": p.field or "scenario", "message": str(p), "line": p.line}
        for p in exc.problems
    ]
    return service.ExerciseError("scenario", str(exc), items=items)


async def _accounts(session: AsyncSession) -> set[str]:
    return set((await session.exec(select(User.name))).all())


async def _load(request: Request, session: AsyncSession, org: Organisation, text: str) -> Scenario:
    """A shipped scenario by name, or YAML text; 404 for an unknown name, 422 when invalid."""
    people = [p.id for p in notify_config(request).people]
    accounts = await _accounts(session)
    found = shipped().get(text.strip())
    try:
        if found is not None:
            return load_scenario(found, org=org, people=people, accounts=accounts)
        if "\n" not in text and ":" not in text:
            raise service.ExerciseError(
                "scenario",
                f"ukjent scenario {text!r} / unknown scenario {text!r}; "
                f"shipped: {', '.join(shipped())}",
                status=404,
            )
        return load_scenario(text, org=org, people=people, accounts=accounts, name="<scenario>")
    except ScenarioError as exc:
        raise _scenario_refused(exc) from exc


async def _check_participant(request: Request, session: AsyncSession, part: ParticipantIn) -> None:
    if part.kind == "person":
        known = {p.id for p in notify_config(request).people}
        if part.id not in known:
            raise service.ExerciseError(
                "participants.person",
                f"ukjent person {part.id!r} i mottakerfilen / unknown person {part.id!r} "
                "(not in the recipients file)",
            )
    elif part.id not in await _accounts(session):
        raise service.ExerciseError(
            "participants.account", f"ukjent konto / unknown account {part.id!r}"
        )


def _seconds(value: str | float | None) -> float:
    if value is None:
        return 0.0
    if isinstance(value, int | float):
        return float(value)
    try:
        return parse_duration(value).total_seconds()
    except ValueError as exc:
        raise service.ExerciseError("start_at", str(exc)) from exc


async def _progress(
    session: AsyncSession,
    exercise: Exercise,
    expected_total: int | None = None,
    evaluation: Evaluation | None = None,
) -> ProgressPublic:
    p = await service.progress(session, exercise=exercise)
    counts: dict[str, int | None] = (
        dict(evaluation.counts)
        if evaluation is not None
        else {"met": None, "missed": None, "pending": None, "total": expected_total}
    )
    return ProgressPublic(
        scenario_seconds=round(p.scenario_seconds, 3),
        duration_seconds=p.duration_seconds,
        injects={
            "sent": p.injects_sent,
            "due": p.injects_due,
            "total": p.injects_total,
            "skipped": p.injects_skipped,
        },
        expected=counts,
    )


def _summary(exercise: Exercise, progress: ProgressPublic) -> dict[str, Any]:
    return {
        "id": exercise.id,
        "scenario_id": exercise.scenario_id,
        "title": exercise.title,
        "state": exercise.state,
        "speed": exercise.speed,
        "created_by": exercise.created_by,
        "created_at": exercise.created_at,
        "started_at": exercise.started_at,
        "ended_at": exercise.ended_at,
        "progress": progress,
    }


def _expected_total(exercise: Exercise) -> int | None:
    try:
        return len(yaml.safe_load(exercise.scenario_yaml).get("expected") or [])
    except (yaml.YAMLError, AttributeError):
        return None


def _send(request: Request) -> runner.Send:
    send: runner.Send | None = getattr(request.app.state, "exercise_send", None)
    if send is None:
        raise service.ExerciseError(
            "producer",
            "hendelser kan ikke tas imot nå (ingen Kafka) / events cannot be accepted now",
            status=503,
        )
    return send


# --- scenarios -------------------------------------------------------------------------


@router.get("/scenarios", response_model=list[ScenarioPublic])
async def list_scenarios(user: CurrentUser, org: Org) -> list[ScenarioPublic]:
    """The shipped scenarios (checked against the organisation; participants as written)."""
    require(user, Action.RUN_EXERCISE)
    out = []
    for path in shipped().values():
        s = load_scenario(path, org=org)
        out.append(
            ScenarioPublic(
                id=s.id,
                title=s.title,
                title_en=s.title_en,
                description=s.description,
                units=list(s.units),
                duration_seconds=s.duration.total_seconds() if s.duration else None,
                participants=[{p.kind: p.id} for p in s.participants],
                injects=[
                    {"id": i.id, "at_seconds": i.at.total_seconds(), "type": i.type}
                    for i in s.injects
                ],
                expected=[
                    {
                        "id": e.id,
                        "action": e.action,
                        "within_seconds": e.within.total_seconds() if e.within else None,
                        "to": e.to,
                        "card": e.card,
                    }
                    for e in s.expected
                ],
            )
        )
    return out


# --- exercises -------------------------------------------------------------------------


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ExerciseCreated)
async def create_exercise(
    body: ExerciseCreate, request: Request, user: CurrentUser, org: Org, session: SessionDep
) -> ExerciseCreated:
    """Create an exercise from a scenario (201 ``{"id"}``); it starts with ``…/start``."""
    require(user, Action.RUN_EXERCISE)
    scenario = await _load(request, session, org, body.scenario)
    for part in body.participants:
        await _check_participant(request, session, part)
    exercise_id = body.id or f"ovelse-{scenario.id}-{utcnow().astimezone(OSLO):%Y%m%d-%H%M}"
    exercise = await service.create(
        session,
        exercise_id=exercise_id,
        scenario_id=scenario.id,
        title=scenario.title,
        scenario_yaml=scenario.text,
        speed=body.speed,
        duration_seconds=scenario.duration.total_seconds() if scenario.duration else None,
        injects=runner.plans(scenario),
        participants=[
            *((p.kind, p.id) for p in scenario.participants),
            *((p.kind, p.id) for p in body.participants),
        ],
        actor=actor_of(user),
    )
    await session.commit()
    return ExerciseCreated(id=exercise.id)


@router.get("", response_model=list[ExerciseSummary])
async def list_exercises(
    user: CurrentUser, session: SessionDep, state: str | None = None
) -> list[dict[str, Any]]:
    require(user, Action.RUN_EXERCISE)
    rows = await service.list_exercises(session, states=[state] if state else None)
    return [_summary(e, await _progress(session, e, _expected_total(e))) for e in rows]


@router.get("/{exercise_id}", response_model=ExercisePublic)
async def get_exercise(
    exercise_id: str, user: CurrentUser, org: Org, session: SessionDep
) -> dict[str, Any]:
    """State and progress: injects sent/due/total, expected actions met/missed so far,
    participants, observations."""
    require(user, Action.RUN_EXERCISE)
    exercise = await service.get(session, exercise_id=exercise_id)
    try:
        evaluation: Evaluation | None = await evaluation_of(
            session, exercise_id=exercise.id, org=org, with_violations=False
        )
    except ScenarioError:  # the organisation no longer validates what was run
        evaluation = None
    progress = await _progress(session, exercise, _expected_total(exercise), evaluation)
    return {
        **_summary(exercise, progress),
        "expected": [a.as_dict() for a in evaluation.expected_actions] if evaluation else [],
        "paused_at": exercise.paused_at,
        "paused_seconds": exercise.paused_seconds,
        "ended_by": exercise.ended_by,
        "end_reason": exercise.end_reason,
        "scenario_yaml": exercise.scenario_yaml,
        "injects": [
            InjectPublic.model_validate(r, from_attributes=True)
            for r in await service.injects(session, exercise_id=exercise_id)
        ],
        "participants": [
            ParticipantPublic.model_validate(r, from_attributes=True)
            for r in await service.participants(session, exercise_id=exercise_id)
        ],
        "observations": [
            ObservationPublic.model_validate(r, from_attributes=True)
            for r in await service.observations(session, exercise_id=exercise_id)
        ],
    }


async def _state_change(session: AsyncSession, exercise: Exercise) -> dict[str, Any]:
    await session.commit()
    return _summary(exercise, await _progress(session, exercise, _expected_total(exercise)))


@router.post("/{exercise_id}/start", response_model=ExerciseSummary)
async def start_exercise(
    exercise_id: str, user: CurrentUser, session: SessionDep, body: ExerciseStart | None = None
) -> dict[str, Any]:
    require(user, Action.RUN_EXERCISE)
    offset = _seconds(body.start_at if body else None)
    exercise = await service.start(
        session, exercise_id=exercise_id, actor=actor_of(user), start_offset_seconds=offset
    )
    return await _state_change(session, exercise)


@router.post("/{exercise_id}/pause", response_model=ExerciseSummary)
async def pause_exercise(
    exercise_id: str, user: CurrentUser, session: SessionDep
) -> dict[str, Any]:
    require(user, Action.RUN_EXERCISE)
    exercise = await service.pause(session, exercise_id=exercise_id, actor=actor_of(user))
    return await _state_change(session, exercise)


@router.post("/{exercise_id}/resume", response_model=ExerciseSummary)
async def resume_exercise(
    exercise_id: str, user: CurrentUser, session: SessionDep
) -> dict[str, Any]:
    require(user, Action.RUN_EXERCISE)
    exercise = await service.resume(session, exercise_id=exercise_id, actor=actor_of(user))
    return await _state_change(session, exercise)


@router.post("/{exercise_id}/end", response_model=ExerciseSummary)
async def end_exercise(
    exercise_id: str, user: CurrentUser, session: SessionDep, body: ExerciseEnd | None = None
) -> dict[str, Any]:
    """End it: pending injects skipped, its incidents closed (nothing stays on the board)."""
    require(user, Action.RUN_EXERCISE)
    exercise = await service.end(
        session,
        exercise_id=exercise_id,
        actor=actor_of(user),
        reason=body.reason if body else None,
    )
    return await _state_change(session, exercise)


@router.post("/{exercise_id}/inject", status_code=status.HTTP_202_ACCEPTED)
async def inject(
    exercise_id: str,
    body: InjectIn,
    request: Request,
    user: CurrentUser,
    org: Org,
    session: SessionDep,
) -> dict[str, Any]:
    """Fire a scripted inject now (``{"inject": ID}``) or a manual one (``{"type": …}``)."""
    require(user, Action.RUN_EXERCISE)
    exercise = await service.get(session, exercise_id=exercise_id)
    if exercise.state not in (ExerciseState.RUNNING, ExerciseState.PAUSED):
        raise service.ExerciseConflict(
            "state", f"the exercise is {exercise.state}: no injects / ingen innspill"
        )
    scenario = load_scenario(exercise.scenario_yaml, org=org, name=f"<exercise {exercise_id}>")
    now = utcnow()
    if body.inject is not None:
        rows = {r.inject_id: r for r in await service.injects(session, exercise_id=exercise_id)}
        row = rows.get(body.inject)
        scripted = {i.id: i for i in scenario.injects}.get(body.inject)
        if row is None or scripted is None or row.manual:
            raise service.ExerciseError(
                "inject", f"ukjent innspill / no scripted inject {body.inject!r}", status=404
            )
        if row.state != "pending":
            raise service.ExerciseConflict("inject", f"{body.inject!r} is {row.state} already")
        item, inject_id = scripted, scripted.id
    else:
        inject_id = f"manuell-{now:%H%M%S%f}"
        item = _manual(scenario, inject_id, body.model_dump(exclude={"inject"}), org)
    events = inject_events(
        item, scenario=scenario, exercise_id=exercise_id, started_at=now - item.at, org=org
    )
    if events:
        try:
            await _send(request)(events)
        except EventError as exc:
            raise service.ExerciseError("inject", str(exc)) from exc
    if body.inject is not None:
        await service.mark_sent(session, exercise_id=exercise_id, inject_ids=[inject_id], now=now)
    else:
        await service.record_manual_inject(
            session,
            exercise_id=exercise_id,
            inject_id=inject_id,
            type=item.type,
            summary=runner.summary(item),
            now=now,
        )
    await session.commit()
    return {"inject": inject_id, "events": [e["id"] for e in events]}


def _manual(scenario: Scenario, inject_id: str, fields: dict[str, Any], org: Organisation) -> Any:
    """A manual inject, checked exactly as one in a scenario file would be."""
    fields = {k: v for k, v in fields.items() if v is not None}
    doc = {
        "version": 1,
        "id": scenario.id,
        "title": scenario.title,
        "title_en": scenario.title_en,
        "units": list(scenario.units),
        "injects": [{"id": inject_id, "at": "0s", **fields}],
    }
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    try:
        [item] = load_scenario(text, org=org, name="<inject>").injects
    except ScenarioError as exc:
        raise _scenario_refused(exc) from exc
    return item


# --- participants and observations -----------------------------------------------------


@router.post(
    "/{exercise_id}/participants",
    status_code=status.HTTP_201_CREATED,
    response_model=ParticipantPublic,
)
async def add_participant(
    exercise_id: str,
    body: ParticipantIn,
    request: Request,
    user: CurrentUser,
    session: SessionDep,
) -> Any:
    """Register a participant: the dispatcher lets their exercise messages through at once."""
    require(user, Action.RUN_EXERCISE)
    await _check_participant(request, session, body)
    row = await service.add_participant(
        session, exercise_id=exercise_id, person_id=body.id, kind=body.kind, actor=actor_of(user)
    )
    await session.commit()
    return ParticipantPublic.model_validate(row, from_attributes=True)


@router.delete("/{exercise_id}/participants/{person_id}", status_code=204)
async def remove_participant(
    exercise_id: str, person_id: str, user: CurrentUser, session: SessionDep
) -> Response:
    """Unregister: from the next dispatcher pass on, their exercise messages are blocked."""
    require(user, Action.RUN_EXERCISE)
    if not await service.remove_participant(session, exercise_id=exercise_id, person_id=person_id):
        raise service.ExerciseError(
            "person", f"{person_id!r} is no participant / ikke deltaker", status=404
        )
    await session.commit()
    return Response(status_code=204)


@router.post(
    "/{exercise_id}/observations",
    status_code=status.HTTP_201_CREATED,
    response_model=ObservationPublic,
)
async def add_observation(
    exercise_id: str, body: ObservationIn, user: CurrentUser, session: SessionDep
) -> Any:
    """A free-text observation by the controller (for the evaluation)."""
    require(user, Action.RUN_EXERCISE)
    row = await service.add_observation(
        session, exercise_id=exercise_id, actor=actor_of(user), text=body.text
    )
    await session.commit()
    return ObservationPublic.model_validate(row, from_attributes=True)
