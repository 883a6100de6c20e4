"""The board as it stood at a time: ``GET /api/v1/incidents/{id}/replay?at=ISO`` (thin view
over ``crisis.review.replay``; the review page's slider reads it)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status

from crisis import log
from crisis.log.models import Incident
from crisis.review import replay
from web.deps import CurrentUser, Org, SessionDep, scope_of

router = APIRouter(prefix="/api/v1/incidents", tags=["review"])


async def visible_incident(session: Any, user: Any, org: Any, incident_id: str) -> Incident:
    """The incident if the user's scope holds it: 404 unknown, 403 outside the scope."""
    incident: Incident | None = await session.get(Incident, incident_id)
    if incident is None:
        raise log.IncidentNotFound(incident_id)
    if not scope_of(user, org).allows(incident):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "utenfor ditt ansvarsområde / out of scope")
    return incident


@router.get("/{incident_id}/replay")
async def get_replay(
    incident_id: str,
    user: CurrentUser,
    org: Org,
    session: SessionDep,
    at: Annotated[
        datetime | None,
        Query(description="ISO 8601 time (naive: UTC); absent: the last entry's time"),
    ] = None,
) -> dict[str, Any]:
    """Owner and accountable, level, severity, status, tasks (status, overdue at T), delivery
    counts per update and group, cooperation contacts and held updates, replayed from the
    entries with time <= ``at``; ``times`` are the replay's stops (the entry times)."""
    incident = await visible_incident(session, user, org, incident_id)
    entries = await log.timeline(session, incident.id)
    times = replay.entry_times(entries)
    when = at or (times[-1] if times else incident.opened_at)
    state = replay.state_at(incident=incident, entries=entries, at=when)
    unit = org.units.get(state.unit)
    return {
        "incident_id": incident.id,
        **state.as_json(),
        "unit_name": unit.name if unit else state.unit,
        "times": [t.isoformat() for t in times],
    }
