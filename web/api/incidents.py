"""Incidents, their timelines, new entries, escalation, closing and reopening: thin views
over crisis.log."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis import log
from crisis.accounts.models import User
from crisis.clock import utcnow
from crisis.domain.organisation import Organisation
from crisis.domain.permissions import Action, entry_action, require
from crisis.domain.vocabulary import USER_ENTRY_KINDS, Impact
from crisis.log import append, privacy, rules
from crisis.log.models import Incident, IncidentCreate, IncidentPublic, LogEntry, LogEntryPublic
from crisis.review import history
from crisis.sources import jsonlimits
from web.deps import MAX_ID, CurrentUser, Org, SessionDep, scope_of

router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"])

UserKind = Literal[tuple(sorted(k.value for k in USER_ENTRY_KINDS))]  # type: ignore[valid-type]


class EntryCreate(BaseModel):
    """A log entry from a person. Fields beyond kind/text/corrects are the entry's data."""

    model_config = ConfigDict(extra="allow")

    kind: UserKind  # type: ignore[valid-type]
    text: str = Field(default="", max_length=20_000)
    corrects: int | None = Field(default=None, ge=1, le=MAX_ID)


class Escalation(BaseModel):
    to: Literal["region", "kdi", "jd"]
    reason: str = Field(min_length=1, max_length=5_000)
    criteria: list[str] = Field(default_factory=list)


class Close(BaseModel):
    """Close by a decision; blank text is refused by the rule (422 naming the field)."""

    reason: str = Field(max_length=5_000)
    final_situation: str = Field(max_length=20_000)


class Reopen(BaseModel):
    reason: str = Field(max_length=5_000)


class IncidentOpen(BaseModel):
    type: str = Field(min_length=1, max_length=80)
    title: str = Field(min_length=1, max_length=300)
    unit: str
    severity: int = Field(ge=1, le=5)
    impact: Impact = Field(default_factory=dict)
    exercise: str | None = None
    security_political: bool = False
    area: str | None = None
    text: str = ""


def actor_of(user: User) -> str:
    return f"user:{user.name}"


async def _visible(session: Any, user: User, org: Organisation, incident_id: str) -> Incident:
    incident: Incident | None = await session.get(Incident, incident_id)
    if incident is None:
        raise log.IncidentNotFound(incident_id)
    if not scope_of(user, org).allows(incident):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "utenfor ditt ansvarsområde / out of scope")
    return incident


async def _as_read(
    session: AsyncSession, user: User, incident_id: str, entries: Iterable[LogEntry]
) -> list[dict[str, Any]]:
    """Entries as the user may read them (need-to-know); an unmasked read is audited. The
    stored hashes stay: a masked entry cannot be re-verified (``crisis log verify`` can)."""
    shown = await privacy.read_entries(
        session, user=user, incident_id=incident_id, entries=entries, channel="api"
    )
    await session.commit()
    return [{**item.entry.model_dump(), "text": item.text, "data": item.data} for item in shown]


def _echo(user: User, entry: LogEntry) -> dict[str, Any]:
    """The entry just written, masked by need-to-know like any read. Not audited: the writer
    gave these references, and the entry names its actor in the log itself."""
    item, _ = privacy.entry_for_viewer(user, entry)
    return {**entry.model_dump(), "text": item.text, "data": item.data}


async def _commit(session: SessionDep, request: Request, write: Awaitable[LogEntry]) -> LogEntry:
    """Await one decision's ``write``: roll back and re-raise a rule violation, otherwise
    commit and count the entry."""
    try:
        entry = await write
    except log.RuleViolation:
        await session.rollback()
        raise
    await session.commit()
    request.app.state.metrics.entries.labels(entry.kind).inc()
    return entry


def history_bounds(start: str | None, end: str | None) -> tuple[datetime | None, datetime | None]:
    """``from``/``to`` as UTC instants (``history.parse_bound``); 422 naming the bad one."""
    out: list[datetime | None] = []
    for name, value in (("from", start), ("to", end)):
        try:
            out.append(history.parse_bound(value, end=name == "to").at if value else None)
        except history.BadBound as exc:
            raise log.RuleViolation([rules.Violation(name, str(exc))]) from None
    if out[0] is not None and out[1] is not None and out[0] >= out[1]:
        raise log.RuleViolation([rules.Violation("to", "'to' comes after 'from'")])
    return out[0], out[1]


def page_links(request: Request, *, total: int, limit: int, offset: int) -> str:
    """The ``Link`` header's next and prev pages (RFC 8288), none at the ends."""
    links = []
    if offset + limit < total:
        url = request.url.include_query_params(limit=limit, offset=offset + limit)
        links.append(f'<{url}>; rel="next"')
    if offset > 0:
        url = request.url.include_query_params(limit=limit, offset=max(0, offset - limit))
        links.append(f'<{url}>; rel="prev"')
    return ", ".join(links)


@router.get("", response_model=list[IncidentPublic])
async def list_incidents(
    user: CurrentUser,
    org: Org,
    session: SessionDep,
    request: Request,
    response: Response,
    status_: Annotated[str | None, Query(alias="status", max_length=20)] = None,
    unit: Annotated[str | None, Query(max_length=80)] = None,
    exercise: Annotated[
        str | None,
        Query(
            max_length=120,
            description="'true', 'false', 'all', or an exercise id; unset: the closed "
            "history (status=closed) shows real incidents only, any other list both",
        ),
    ] = None,
    start: Annotated[
        str | None,
        Query(
            alias="from",
            max_length=40,
            description="ISO date (an Oslo calendar day) or date and time: incidents "
            "not closed before it",
        ),
    ] = None,
    end: Annotated[
        str | None,
        Query(
            alias="to",
            max_length=40,
            description="incidents opened before it (a date: its end)",
        ),
    ] = None,
    type: Annotated[str | None, Query(max_length=80)] = None,
    q: Annotated[
        str | None, Query(max_length=200, description="text in the id, title or type")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=history.MAX_LIMIT)] = history.DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> list[Incident]:
    """Open incidents or the history, filtered and paged; ``X-Total-Count`` is the number
    matching in all, ``Link`` the next and previous pages."""
    opened_from, opened_to = history_bounds(start, end)
    rows, total = await history.search_incidents(
        session=session,
        narrow=scope_of(user, org).narrow,
        status=status_,
        opened_from=opened_from,
        opened_to=opened_to,
        unit=unit,
        type=type,
        q=q,
        exercise=exercise,
        limit=limit,
        offset=offset,
    )
    response.headers["X-Total-Count"] = str(total)
    links = page_links(request, total=total, limit=limit, offset=offset)
    if links:
        response.headers["Link"] = links
    return rows


@router.post("", response_model=IncidentPublic, status_code=status.HTTP_201_CREATED)
async def open_incident(
    body: IncidentOpen, user: CurrentUser, org: Org, session: SessionDep, request: Request
) -> Incident:
    """Open an incident by hand; the owner's accountable role comes from the organisation."""
    require(user, Action.EXERCISE if body.exercise else Action.WRITE_ENTRY)
    if body.unit not in org.units:
        raise log.RuleViolation([rules.Violation("unit", f"unknown unit {body.unit!r}")])
    probe = Incident(
        id="",
        opened_at=utcnow(),
        unit=body.unit,
        type=body.type,
        title="",
        severity=1,
        exercise=body.exercise,
    )
    if not scope_of(user, org).allows(probe):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "utenfor ditt ansvarsområde / out of scope")
    role, person = org.accountable_person(body.unit)
    incident, _ = await append.open_incident(
        session,
        incident=IncidentCreate(
            **body.model_dump(exclude={"text"}),
            accountable_role=role,
            accountable_person=person.name,
        ),
        actor=actor_of(user),
        text=body.text,
    )
    await session.commit()
    request.app.state.metrics.incidents_opened.inc()
    return incident


@router.get("/{incident_id}", response_model=IncidentPublic)
async def get_incident(
    incident_id: str, user: CurrentUser, org: Org, session: SessionDep
) -> Incident:
    return await _visible(session, user, org, incident_id)


@router.get("/{incident_id}/timeline", response_model=list[LogEntryPublic])
async def get_timeline(
    incident_id: str, user: CurrentUser, org: Org, session: SessionDep
) -> list[Any]:
    await _visible(session, user, org, incident_id)
    return await _as_read(session, user, incident_id, await log.timeline(session, incident_id))


@router.post(
    "/{incident_id}/entries", response_model=LogEntryPublic, status_code=status.HTTP_201_CREATED
)
async def add_entry(
    incident_id: str,
    body: EntryCreate,
    user: CurrentUser,
    org: Org,
    session: SessionDep,
    request: Request,
) -> Any:
    data = dict(body.model_extra or {})
    try:
        jsonlimits.check(data)
    except jsonlimits.JsonLimitError as exc:
        raise log.RuleViolation([rules.Violation(exc.field, str(exc))]) from None
    require(user, entry_action(body.kind, data))
    await _visible(session, user, org, incident_id)
    try:
        entry = await append.append(
            session,
            incident_id=incident_id,
            kind=body.kind,
            actor=actor_of(user),
            text=body.text,
            data=data,
            corrects=body.corrects,
            known_units=org.units.keys(),
        )
    except log.RuleViolation as exc:
        await session.rollback()
        for v in exc.violations:
            request.app.state.metrics.refusals.labels(v.field).inc()
        raise
    await session.commit()
    request.app.state.metrics.entries.labels(entry.kind).inc()
    return _echo(user, entry)


@router.post(
    "/{incident_id}/escalate", response_model=LogEntryPublic, status_code=status.HTTP_201_CREATED
)
async def escalate(
    incident_id: str,
    body: Escalation,
    user: CurrentUser,
    org: Org,
    session: SessionDep,
    request: Request,
) -> Any:
    require(user, Action.ESCALATE)
    await _visible(session, user, org, incident_id)
    return await _commit(
        session,
        request,
        append.escalate(
            session,
            incident_id=incident_id,
            to=body.to,
            reason=body.reason,
            criteria=body.criteria,
            actor=actor_of(user),
        ),
    )


@router.post(
    "/{incident_id}/close", response_model=LogEntryPublic, status_code=status.HTTP_201_CREATED
)
async def close_incident(
    incident_id: str,
    body: Close,
    user: CurrentUser,
    org: Org,
    session: SessionDep,
    request: Request,
) -> Any:
    """Close the incident by a logged decision; it is read-only until reopened (409 if
    closed already)."""
    require(user, Action.DECISION)
    await _visible(session, user, org, incident_id)
    entry = await _commit(
        session,
        request,
        append.close_incident(
            session,
            incident_id=incident_id,
            reason=body.reason,
            final_situation=body.final_situation,
            actor=actor_of(user),
        ),
    )
    return _echo(user, entry)


@router.post(
    "/{incident_id}/reopen", response_model=LogEntryPublic, status_code=status.HTTP_201_CREATED
)
async def reopen_incident(
    incident_id: str,
    body: Reopen,
    user: CurrentUser,
    org: Org,
    session: SessionDep,
    request: Request,
) -> Any:
    """Reopen a closed incident by a logged decision (409 if it is open)."""
    require(user, Action.DECISION)
    await _visible(session, user, org, incident_id)
    entry = await _commit(
        session,
        request,
        append.reopen_incident(
            session, incident_id=incident_id, reason=body.reason, actor=actor_of(user)
        ),
    )
    return _echo(user, entry)
