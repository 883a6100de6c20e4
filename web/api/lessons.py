"""Lessons learned: findings and follow-up actions as log entries of an incident, open or
closed, and the follow-ups across incidents. Thin views over crisis.review."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, NamedTuple

from fastapi import APIRouter, Query, Request, status
from pydantic import BaseModel, Field

from crisis import log
from crisis.accounts.models import User
from crisis.clock import utcnow
from crisis.domain.permissions import Action, require
from crisis.domain.vocabulary import LESSON_KINDS, EntryKind, FollowUpStatus
from crisis.log import append, privacy
from crisis.log.models import LogEntry, LogEntryPublic
from crisis.review import lessons_store
from crisis.review.lessons import Lessons, due_instant, lessons_of
from web.api.incidents import _commit, _echo, _visible, actor_of
from web.deps import MAX_ID, CurrentUser, Org, RowId, SessionDep, scope_of

router = APIRouter(tags=["lessons"])

FollowUpState = Literal[tuple(s.value for s in FollowUpStatus)]  # type: ignore[valid-type]


class FindingCreate(BaseModel):
    finding: str = Field(max_length=20_000)
    category: Literal["worked_well", "improve"] | None = None


class FollowUpCreate(BaseModel):
    """Blank title, owner or due date are refused by the rule (422 naming the field)."""

    title: str = Field(max_length=300)
    owner: str = Field(max_length=200)
    due: str = Field(max_length=40, description="ISO date (an Oslo day) or date and time")
    status: FollowUpState = FollowUpStatus.OPEN.value  # type: ignore[valid-type]
    finding: int | None = Field(default=None, ge=1, le=MAX_ID)
    text: str = Field(default="", max_length=20_000)


class FollowUpChange(BaseModel):
    status: FollowUpState | None = None  # type: ignore[valid-type]
    owner: str | None = Field(default=None, max_length=200)
    due: str | None = Field(default=None, max_length=40)
    note: str = Field(default="", max_length=20_000)


class Shown(NamedTuple):
    """An entry as the viewer may read it, in the shape ``lessons_of`` reads."""

    seq: int
    kind: str
    at: datetime
    actor: str
    text: str
    data: dict[str, Any]


async def readable_lessons(
    session: Any, user: User, incident_id: str, entries: list[LogEntry]
) -> Lessons:
    """The lessons of ``entries`` masked by need-to-know; an unmasked read is audited."""
    shown = await privacy.read_entries(
        session, user=user, incident_id=incident_id, entries=entries, channel="api"
    )
    return lessons_of(
        Shown(i.entry.seq, i.entry.kind, i.entry.at, i.entry.actor, i.text, i.data) for i in shown
    )


async def _record(
    incident_id: str,
    kind: EntryKind,
    text: str,
    data: dict[str, Any],
    user: User,
    org: Any,
    session: Any,
    request: Request,
) -> Any:
    require(user, Action.RECORD_LESSON)
    await _visible(session, user, org, incident_id)
    entry = await _commit(
        session,
        request,
        append.append(
            session,
            incident_id=incident_id,
            kind=kind.value,
            actor=actor_of(user),
            text=text,
            data=data,
        ),
    )
    return _echo(user, entry)


@router.post(
    "/api/v1/incidents/{incident_id}/lessons/findings",
    response_model=LogEntryPublic,
    status_code=status.HTTP_201_CREATED,
)
async def add_finding(
    incident_id: str,
    body: FindingCreate,
    user: CurrentUser,
    org: Org,
    session: SessionDep,
    request: Request,
) -> Any:
    """Record a finding of the review (also on a closed incident)."""
    data = body.model_dump(exclude_none=True)
    return await _record(
        incident_id, EntryKind.FINDING, body.finding, data, user, org, session, request
    )


@router.post(
    "/api/v1/incidents/{incident_id}/lessons/follow-ups",
    response_model=LogEntryPublic,
    status_code=status.HTTP_201_CREATED,
)
async def add_follow_up(
    incident_id: str,
    body: FollowUpCreate,
    user: CurrentUser,
    org: Org,
    session: SessionDep,
    request: Request,
) -> Any:
    """Record a follow-up action: title, owner, due date, status (default open), and the
    finding it answers, if any."""
    data = body.model_dump(exclude_none=True, exclude={"text"})
    text = body.text or f"Oppfølging: {body.title} (ansvar: {body.owner}, frist: {body.due})"
    return await _record(incident_id, EntryKind.FOLLOW_UP, text, data, user, org, session, request)


@router.post(
    "/api/v1/incidents/{incident_id}/lessons/follow-ups/{seq}",
    response_model=LogEntryPublic,
    status_code=status.HTTP_201_CREATED,
)
async def change_follow_up(
    incident_id: str,
    seq: RowId,
    body: FollowUpChange,
    user: CurrentUser,
    org: Org,
    session: SessionDep,
    request: Request,
) -> Any:
    """Change a follow-up's status, owner or due date (a ``follow_up_update`` entry naming
    it); 422 if ``seq`` is no follow-up of the incident or nothing changes."""
    data: dict[str, Any] = {"follow_up": seq, **body.model_dump(exclude_none=True)}
    note = data.pop("note", "")
    changes = ", ".join(f"{k}: {data[k]}" for k in ("status", "owner", "due") if k in data)
    text = note or f"Oppfølging #{seq} endret ({changes})"
    return await _record(
        incident_id, EntryKind.FOLLOW_UP_UPDATE, text, data, user, org, session, request
    )


@router.get("/api/v1/incidents/{incident_id}/lessons")
async def get_lessons(
    incident_id: str, user: CurrentUser, org: Org, session: SessionDep
) -> dict[str, Any]:
    """The incident's findings and follow-ups (current status, owner, due; ``overdue``)."""
    await _visible(session, user, org, incident_id)
    entries = [e for e in await log.timeline(session, incident_id) if e.kind in LESSON_KINDS]
    lessons = await readable_lessons(session, user, incident_id, entries)
    await session.commit()
    return {"incident_id": incident_id, **lessons.as_dict(utcnow())}


async def follow_ups_across(
    *,
    session: Any,
    user: User,
    org: Any,
    status_: str | None = None,
    overdue: bool | None = None,
    unit: str | None = None,
    owner: str | None = None,
    exercise: str | None = None,
) -> list[dict[str, Any]]:
    """Follow-ups of the incidents in the user's scope, filtered, earliest due first; each
    with its incident's id, title, unit, status and exercise."""
    now = utcnow()
    out = []
    found = await lessons_store.lesson_entries(
        session=session, narrow=scope_of(user, org).narrow, unit=unit, exercise=exercise
    )
    for incident, entries in found:
        lessons = await readable_lessons(session, user, incident.id, entries)
        for item in lessons.follow_ups:
            if status_ and item.status != status_:
                continue
            if overdue is not None and item.overdue(now) != overdue:
                continue
            if owner and owner.strip().lower() not in item.owner.lower():
                continue
            out.append(
                {
                    "incident_id": incident.id,
                    "incident_title": incident.title,
                    "unit": incident.unit,
                    "incident_status": incident.status,
                    "exercise": incident.exercise,
                    **item.as_dict(now),
                }
            )
    await session.commit()
    far = datetime.max.replace(tzinfo=now.tzinfo)
    out.sort(key=lambda f: (due_instant(f["due"]) or far, f["incident_id"], f["seq"]))
    return out


@router.get("/api/v1/lessons")
async def list_follow_ups(
    user: CurrentUser,
    org: Org,
    session: SessionDep,
    status_: Annotated[FollowUpState | None, Query(alias="status")] = None,  # type: ignore[valid-type]
    overdue: bool | None = None,
    unit: Annotated[str | None, Query(max_length=80)] = None,
    owner: Annotated[str | None, Query(max_length=200, description="text in the owner")] = None,
    exercise: Annotated[
        str | None,
        Query(max_length=120, description="unset: real incidents only; 'true', 'all' or an id"),
    ] = None,
) -> list[dict[str, Any]]:
    """Follow-up actions across the incidents in scope, earliest due first."""
    return await follow_ups_across(
        session=session,
        user=user,
        org=org,
        status_=status_,
        overdue=overdue,
        unit=unit,
        owner=owner,
        exercise=exercise,
    )
