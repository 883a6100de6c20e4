"""The exercise controller's pages: the exercises with a start form, and one exercise's page
(the script and each inject's state, the life-cycle buttons, fire now, a manual inject, the
expected actions, the participants and the observations). Admins and exercise controllers
only (``run_exercise``).

Every form posts JSON like the board's others. Most go straight to ``web.api.exercises``; two
are board endpoints because a form cannot say it alone: the start form (a shipped name or
pasted YAML, participants as boxes, create then start) and the manual inject (a type and the
inject's fields as YAML). Both call the API's own functions, so the checks are the same. The
page is server-rendered; ``static/exercises.js`` polls ``GET /api/v1/exercises/{id}``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import yaml
from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field, ValidationError

from crisis.accounts.models import User
from crisis.clock import as_utc, utcnow
from crisis.domain import permissions
from crisis.exercises import service
from crisis.exercises.models import ExerciseState
from playbooks.exercises.evaluation import evaluation_of
from playbooks.exercises.scenario import ScenarioError, load_scenario, shipped
from web.api import exercises as api
from web.api.notifications import notify_config
from web.board import pages
from web.board.feed import head
from web.deps import CurrentUser, Org, SessionDep

router = APIRouter(tags=["board"], include_in_schema=False)

EVALUATION_PATH = "/api/v1/exercises/{exercise_id}/evaluation"
#: What a manual inject's fields look like, per type (shown in the form, in the file's form).
INJECT_EXAMPLES = {
    "sensor": 'event: fire_alarm\ndata: {zone: "A2", detail: "Røykdetektor A2"}\n',
    "report": 'category: brann\nplace: "Avdeling A"\nwhat: "Røyk i gangen"\n',
    "media": 'title: "Brann i fengsel"\nurl: "https://example.invalid/brann"\n',
    "cap": 'xml: |\n  <alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">…</alert>\n',
    "text": 'text: "Les opp: …"\n',
}
ACTIVE = (ExerciseState.CREATED, ExerciseState.RUNNING, ExerciseState.PAUSED)


def _may(user: User) -> None:
    if not permissions.allowed(user.role, permissions.Action.RUN_EXERCISE):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "bare øvingsleder og administrator / exercise controllers and admins only",
        )


def clock(seconds: float | None) -> str:
    """Scenario seconds as ``m:ss`` (``h:mm:ss`` from an hour)."""
    if seconds is None:
        return "–"
    s = round(seconds)
    h, m, sec = s // 3600, (s % 3600) // 60, s % 60
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def _people(request: Request) -> list[tuple[str, str]]:
    return [(p.id, getattr(p, "name", "") or p.id) for p in notify_config(request).people]


def _scenarios(org: Any) -> list[dict[str, Any]]:
    out = []
    for name, path in shipped().items():
        try:
            s = load_scenario(path, org=org)
        except ScenarioError:
            continue  # a shipped file broken by a local organisation: not offered
        out.append(
            {
                "id": name,
                "title": s.title,
                "title_en": s.title_en,
                "duration": clock(s.duration.total_seconds()) if s.duration else "–",
            }
        )
    return out


@router.get("/exercises", response_class=HTMLResponse, response_model=None)
async def exercises_page(request: Request, session: SessionDep) -> Response:
    user = await pages.page_user(request, session)
    if user is None:
        return pages.to_login(request)
    _may(user)
    org = request.app.state.organisation
    rows = await service.list_exercises(session)
    listed = []
    for e in sorted(rows, key=lambda e: e.state == ExerciseState.ENDED):  # stable: newest first
        p = await service.progress(session, exercise=e)
        listed.append({"e": e, "p": p})
    return pages.render(
        request,
        "exercises.html",
        user=user,
        listed=listed,
        scenarios=_scenarios(org),
        people=_people(request),
        speed_min=service.SPEED_MIN,
        speed_max=service.SPEED_MAX,
        resume=await head(session),
        page="exercises",
    )


def _due_wall(exercise: Any, offset: float, scenario_now: float, now: datetime) -> datetime | None:
    """The Oslo wall instant a pending inject falls due at (if the exercise keeps running)."""
    if exercise.started_at is None or exercise.state == ExerciseState.ENDED:
        return None
    return now + timedelta(seconds=max(0.0, offset - scenario_now) / exercise.speed)


@router.get("/exercises/{exercise_id}", response_class=HTMLResponse, response_model=None)
async def exercise_page(exercise_id: str, request: Request, session: SessionDep) -> Response:
    user = await pages.page_user(request, session)
    if user is None:
        return pages.to_login(request)
    _may(user)
    org = request.app.state.organisation
    try:
        exercise = await service.get(session, exercise_id=exercise_id)
    except service.ExerciseNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, exc.message) from exc
    scenario = load_scenario(exercise.scenario_yaml, org=org, name=f"<exercise {exercise_id}>")
    scripted = {i.id: i for i in scenario.injects}
    now = utcnow()
    progress = await service.progress(session, exercise=exercise, now=now)
    injects = []
    for row in await service.injects(session, exercise_id=exercise_id):
        item = scripted.get(row.inject_id)
        injects.append(
            {
                "row": row,
                "text": item.text if item is not None and item.type == "text" else None,
                "due": _due_wall(exercise, row.due_offset_seconds, progress.scenario_seconds, now)
                if row.state == "pending"
                else None,
                "sent_at": as_utc(row.sent_at) if row.sent_at else None,
            }
        )
    evaluation = await evaluation_of(
        session, exercise_id=exercise.id, org=org, now=now, with_violations=False
    )
    return pages.render(
        request,
        "exercise.html",
        user=user,
        exercise=exercise,
        scenario=scenario,
        progress=progress,
        injects=injects,
        expected=scenario.expected,
        results={a.id: a for a in evaluation.expected_actions},
        counts=evaluation.counts,
        participants=await service.participants(session, exercise_id=exercise_id),
        observations=await service.observations(session, exercise_id=exercise_id),
        people=_people(request),
        inject_types=list(INJECT_EXAMPLES),
        inject_example=INJECT_EXAMPLES["report"],
        evaluation=EVALUATION_PATH.format(exercise_id=exercise_id),
        active=exercise.state in ACTIVE,
        clock=clock,
        resume=await head(session),
        page="exercise",
    )


# --- the two board endpoints -----------------------------------------------------------


class StartForm(BaseModel):
    """The start form: a shipped ``scenario`` or pasted ``yaml``, and ``participant:ID`` boxes."""

    model_config = {"extra": "allow"}

    scenario: str | None = Field(default=None, max_length=120)
    yaml: str | None = Field(default=None, max_length=api.MAX_SCENARIO_CHARS)
    speed: float = Field(default=1.0, ge=service.SPEED_MIN, le=service.SPEED_MAX)
    id: str | None = Field(default=None, max_length=120, pattern=r"^[a-z0-9][a-z0-9-]*$")
    start: bool = False


def _as_form_field(exc: service.ExerciseError, field: str) -> service.ExerciseError:
    """A scenario's ``file:line: field: message`` problems, pinned to the form's field."""
    if exc.items is not None:
        for item in exc.items:
            if "line" in item or item.get("field") == "scenario":
                item["field"] = field
    elif exc.field == "scenario":
        exc.field = field
    return exc


@router.post("/exercises/new", status_code=status.HTTP_201_CREATED)
async def start_from_board(
    body: StartForm, request: Request, user: CurrentUser, org: Org, session: SessionDep
) -> dict[str, Any]:
    """Create (and with ``start``, start) an exercise: 201 ``{"id"}``, or the API's errors."""
    _may(user)
    text = (body.yaml or "").strip()
    field = "yaml" if text else "scenario"
    source = text + "\n" if text else (body.scenario or "")
    if not source:
        raise service.ExerciseError(
            "scenario", "velg et scenario eller lim inn YAML / choose a scenario or paste YAML"
        )
    extra = body.model_extra or {}
    chosen = [k.split(":", 1)[1] for k, v in extra.items() if k.startswith("participant:") and v]
    participants = [api.ParticipantIn(person=p) for p in chosen]
    try:
        created = await api.create_exercise(
            api.ExerciseCreate(
                scenario=source, speed=body.speed, id=body.id, participants=participants
            ),
            request,
            user,
            org,
            session,
        )
    except service.ExerciseError as exc:
        raise _as_form_field(exc, field) from exc
    if body.start:
        await api.start_exercise(created.id, user, session, None)
    return {"id": created.id}


class ManualInjectForm(BaseModel):
    type: str = Field(min_length=1, max_length=20)
    fields: str = Field(default="", max_length=api.MAX_SCENARIO_CHARS)


@router.post("/exercises/{exercise_id}/manual-inject", status_code=status.HTTP_202_ACCEPTED)
async def manual_inject(
    exercise_id: str,
    body: ManualInjectForm,
    request: Request,
    user: CurrentUser,
    org: Org,
    session: SessionDep,
) -> dict[str, Any]:
    """A manual inject: its ``type`` and its fields as YAML, sent by the API's ``inject``."""
    _may(user)
    try:
        fields = yaml.safe_load(body.fields) if body.fields.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"<inject>:{mark.line + 1}" if mark is not None else "<inject>"
        raise service.ExerciseError("fields", f"{where}: fields: not valid YAML") from exc
    if not isinstance(fields, dict):
        raise service.ExerciseError("fields", "<inject>:1: fields: a mapping (key: value) lines")
    fields.pop("type", None)
    fields.pop("inject", None)
    try:
        inject = api.InjectIn(type=body.type, **fields)
    except ValidationError as exc:
        raise service.ExerciseError("fields", str(exc)) from exc
    try:
        return await api.inject(exercise_id, inject, request, user, org, session)
    except service.ExerciseError as exc:
        raise _as_form_field(exc, "fields") from exc
