"""Situation reports over HTTP: draft from the log, versions, approval; the ministry's view.

The ministry reads approved, real (non-exercise) reports only; for it a draft does not
exist (404). Writes need write access and the incident in scope; approval needs the
accountable role (``crisis.sitreps.can_approve``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, Field
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis import log
from crisis.accounts.models import User
from crisis.domain import rules
from crisis.domain.organisation import Organisation
from crisis.domain.permissions import Action, require
from crisis.domain.vocabulary import Role
from crisis.log import sitreps
from crisis.log.models import Incident, SitRep, SitRepFields, SitRepVersion
from notifiers import service as notify_service
from notifiers.config import NotifyConfig
from notifiers.models import NotifyUpdate
from notifiers.rendering import MissingNextUpdate
from web.api.incidents import actor_of
from web.api.notifications import notify_config
from web.deps import MAX_ID, CurrentUser, Org, RowId, SessionDep, scope_of

router = APIRouter(prefix="/api/v1", tags=["situation reports"])


class SitRepEdit(BaseModel):
    situation: str = Field(default="", max_length=20_000)
    actions: str = Field(default="", max_length=20_000)
    decisions: str = Field(default="", max_length=20_000)
    needs: str = Field(default="", max_length=20_000)
    next_update_at: datetime | None = None
    note: str = Field(default="", max_length=2_000)


class Approval(BaseModel):
    version: int = Field(ge=1, le=MAX_ID)


class VersionPublic(BaseModel):
    version: int
    author: str
    at: datetime
    note: str
    situation: str
    actions: str
    decisions: str
    needs: str
    next_update_at: datetime | None


class SitRepPublic(BaseModel):
    id: int
    incident_id: str
    number: int
    status: str
    exercise: str | None
    created_by: str
    created_at: datetime
    approved_version: int | None
    approved_by: str | None
    approved_at: datetime | None
    current: VersionPublic | None = None
    versions: list[VersionPublic] = Field(default_factory=list)


def _version(v: SitRepVersion) -> VersionPublic:
    return VersionPublic.model_validate(v, from_attributes=True)


def _public(report: SitRep, view: sitreps.SitRepView | None = None) -> SitRepPublic:
    out = SitRepPublic.model_validate(report, from_attributes=True)
    if view is not None:
        out.current = _version(view.version)
        out.versions = [_version(v) for v in view.versions]
    return out


def _refuse(exc: sitreps.SitRepError) -> log.RuleViolation:
    return log.RuleViolation([rules.Violation(exc.field, exc.message)], status=exc.status)


def ministry_only_approved(user: User) -> bool:
    return user.role == Role.MINISTRY


async def _incident_in_scope(session: Any, user: User, org: Organisation, iid: str) -> Incident:
    incident: Incident | None = await session.get(Incident, iid)
    if incident is None:
        raise log.IncidentNotFound(iid)
    if not scope_of(user, org).allows(incident):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "utenfor ditt ansvarsområde / out of scope")
    return incident


async def readable(session: Any, user: User, org: Organisation, sitrep_id: int) -> Any:
    """The report as this user may read it; a ministry user gets 404 for anything unapproved."""
    approved_only = ministry_only_approved(user)
    try:
        view = await sitreps.view(session, sitrep_id=sitrep_id, approved_only=approved_only)
    except sitreps.SitRepError as exc:
        raise _refuse(exc) from None
    if approved_only and view.report.exercise is not None:
        # Exercise material never reaches the ministry (DOMAIN.md, drills).
        raise _refuse(sitreps.SitRepError("sitrep", f"no situation report {sitrep_id}", 404))
    if not approved_only:
        await _incident_in_scope(session, user, org, view.report.incident_id)
    return view


@router.get("/sitreps", response_model=list[SitRepPublic])
async def list_all(user: CurrentUser, org: Org, session: SessionDep) -> list[SitRepPublic]:
    scope = scope_of(user, org)
    approved_only = ministry_only_approved(user)
    rows = await sitreps.list_reports(
        session,
        approved_only=approved_only,
        include_exercises=not approved_only,
        units=None if scope.all_units else scope.units,
    )
    if scope.exercises_only:
        rows = [r for r in rows if r.exercise is not None]
    return [_public(r) for r in rows]


@router.get("/incidents/{incident_id}/sitreps", response_model=list[SitRepPublic])
async def list_for_incident(
    incident_id: str, user: CurrentUser, org: Org, session: SessionDep
) -> list[SitRepPublic]:
    approved_only = ministry_only_approved(user)
    if approved_only:
        # Approved reports reach the ministry whatever the incident's level (as GET /sitreps).
        incident: Incident | None = await session.get(Incident, incident_id)
        if incident is None:
            raise log.IncidentNotFound(incident_id)
    else:
        incident = await _incident_in_scope(session, user, org, incident_id)
    if approved_only and incident.exercise is not None:
        return []
    rows = await sitreps.list_reports(session, incident_id=incident_id, approved_only=approved_only)
    return [_public(r) for r in rows]


@router.post(
    "/incidents/{incident_id}/sitreps",
    response_model=SitRepPublic,
    status_code=status.HTTP_201_CREATED,
)
async def create(
    incident_id: str,
    user: CurrentUser,
    org: Org,
    session: SessionDep,
    body: SitRepEdit | None = None,
) -> SitRepPublic:
    """A new report; without a body its first version is composed from the log."""
    require(user, Action.WRITE_ENTRY)
    await _incident_in_scope(session, user, org, incident_id)
    fields = (
        SitRepFields(**body.model_dump(exclude={"note"}))
        if body is not None and any([body.situation, body.actions, body.decisions, body.needs])
        else None
    )
    report, _ = await sitreps.create_draft(
        session,
        incident_id=incident_id,
        actor=actor_of(user),
        fields=fields,
        unit_names={u.id: u.name for u in org.units.values()},
    )
    await session.commit()
    view = await sitreps.view(session, sitrep_id=report.id or 0, approved_only=False)
    return _public(report, view)


@router.get("/sitreps/{sitrep_id}", response_model=SitRepPublic)
async def get_one(sitrep_id: RowId, user: CurrentUser, org: Org, session: SessionDep) -> Any:
    view = await readable(session, user, org, sitrep_id)
    return _public(view.report, view)


@router.post(
    "/sitreps/{sitrep_id}/versions",
    response_model=SitRepPublic,
    status_code=status.HTTP_201_CREATED,
)
async def add_version(
    sitrep_id: RowId, body: SitRepEdit, user: CurrentUser, org: Org, session: SessionDep
) -> Any:
    require(user, Action.WRITE_ENTRY)
    view = await readable(session, user, org, sitrep_id)
    try:
        await sitreps.add_version(
            session,
            sitrep_id=sitrep_id,
            actor=actor_of(user),
            fields=SitRepFields(**body.model_dump(exclude={"note"})),
            note=body.note,
        )
    except sitreps.SitRepError as exc:
        await session.rollback()
        raise _refuse(exc) from None
    await session.commit()
    view = await sitreps.view(session, sitrep_id=sitrep_id, approved_only=False)
    return _public(view.report, view)


@router.post("/sitreps/{sitrep_id}/approve", response_model=SitRepPublic)
async def approve(
    sitrep_id: RowId,
    body: Approval,
    user: CurrentUser,
    org: Org,
    session: SessionDep,
    request: Request,
) -> Any:
    require(user, Action.APPROVE)
    view = await readable(session, user, org, sitrep_id)
    incident = await _incident_in_scope(session, user, org, view.report.incident_id)
    region = org.units[incident.unit].region if incident.unit in org.units else None
    try:
        report = await sitreps.approve(
            session, sitrep_id=sitrep_id, user=user, version=body.version, region_of_owner=region
        )
    except sitreps.SitRepError as exc:
        await session.rollback()
        raise _refuse(exc) from None
    approved = await sitreps.view(session, sitrep_id=sitrep_id, approved_only=True)
    try:  # the ministry's message is queued in the approval's transaction, or nothing is
        await send_to_ministry(
            session,
            config=notify_config(request),
            incident=incident,
            report=report,
            version=approved.version,
            approver=user.name,
        )
    except (notify_service.NotifyError, MissingNextUpdate) as exc:
        await session.rollback()
        field = "next_update_at" if isinstance(exc, MissingNextUpdate) else exc.field
        message = str(exc) if isinstance(exc, MissingNextUpdate) else exc.message
        raise log.RuleViolation([rules.Violation(field, message)], status=422) from None
    await session.commit()
    view = await sitreps.view(session, sitrep_id=sitrep_id, approved_only=False)
    return _public(view.report, view)


async def send_to_ministry(
    session: AsyncSession,
    *,
    config: NotifyConfig | None = None,
    incident: Incident,
    report: SitRep,
    version: SitRepVersion,
    approver: str,
) -> NotifyUpdate:
    """The approved report goes to the ministry (JD) through the notifiers.

    Approval by someone other than the version's author is the two-person rule; when the
    author approved their own text, the ministry message waits for a second person in the
    notifier like any other message to JD. Exercise isolation is the dispatcher's. Raises
    what the notifiers refuse; the caller rolls the approval back with it.
    """
    parts = (
        ("Situasjon", version.situation),
        ("Tiltak", version.actions),
        ("Beslutninger", version.decisions),
        ("Behov", version.needs),
    )
    text = "\n\n".join(f"{label}: {value}" for label, value in parts if value.strip())
    title = f"Situasjonsrapport nr. {report.number}: {incident.title}"
    author = version.author.removeprefix("user:")
    if author != approver:
        return await notify_service.send_sitrep(
            session,
            config=config,
            incident_id=incident.id,
            title=title,
            text=text,
            author=version.author,
            approved_by=f"user:{approver}",
            next_update_at=version.next_update_at,
        )
    return await notify_service.request_update(
        session,
        config=config,
        incident_id=incident.id,
        facts={"title": title, "known": text},
        groups=["ministry"],
        template="sitrep",
        kind="sitrep",
        next_update_at=version.next_update_at,
        author=version.author,
    )
