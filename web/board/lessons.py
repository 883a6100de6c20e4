"""The board's lessons learned: an incident's findings and follow-ups with their forms (a
closed incident's too, whose main page stays read-only), and the follow-ups across
incidents. The forms post JSON to ``web.api.lessons`` like every board form."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, Response

from crisis import log
from crisis.clock import utcnow
from crisis.domain import permissions
from crisis.domain.vocabulary import LESSON_KINDS, FollowUpStatus, Role, Status
from web.api.lessons import follow_ups_across, readable_lessons
from web.board import pages
from web.board.feed import head
from web.deps import SessionDep, scope_of

router = APIRouter(tags=["board"], include_in_schema=False)

STATES = [s.value for s in FollowUpStatus]


@router.get("/incidents/{incident_id}/lessons", response_class=HTMLResponse, response_model=None)
async def incident_lessons_page(
    incident_id: str, request: Request, session: SessionDep
) -> Response:
    user = await pages.page_user(request, session)
    if user is None:
        return pages.to_login(request)
    incident = await pages._incident_for(request, session, user, incident_id)
    entries = [e for e in await log.timeline(session, incident.id) if e.kind in LESSON_KINDS]
    lessons = await readable_lessons(session, user, incident.id, entries)
    await session.commit()
    now = utcnow()
    return pages.render(
        request,
        "lessons.html",
        user=user,
        incident=incident,
        closed=incident.status == Status.CLOSED.value,
        lessons=lessons,
        overdue={f.seq for f in lessons.overdue(now)},
        states=STATES,
        can_record=permissions.allowed(user.role, permissions.Action.RECORD_LESSON),
        resume=await head(session),
        page="lessons",
    )


@router.get("/lessons", response_class=HTMLResponse, response_model=None)
async def lessons_page(request: Request, session: SessionDep) -> Response:
    user = await pages.page_user(request, session)
    if user is None:
        return pages.to_login(request)
    if user.role == Role.MINISTRY:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "utenfor ditt ansvarsområde / out of scope")
    org = request.app.state.organisation
    q = request.query_params
    params = {k: q.get(k, "").strip() for k in ("status", "overdue", "unit", "owner", "exercise")}
    follow_ups = await follow_ups_across(
        session=session,
        user=user,
        org=org,
        status_=params["status"] if params["status"] in STATES else None,
        overdue=True if params["overdue"] == "true" else None,
        unit=params["unit"] or None,
        owner=params["owner"] or None,
        exercise=params["exercise"] or None,
    )
    scope = scope_of(user, org)
    return pages.render(
        request,
        "lessons_list.html",
        user=user,
        params=params,
        follow_ups=follow_ups,
        states=STATES,
        units=[u for u in org.units.values() if scope.all_units or u.id in scope.units],
        unit_names={u.id: u.name for u in org.units.values()},
        resume=await head(session),
        page="lessons-list",
    )
