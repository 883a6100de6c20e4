"""Response metrics (issue 17, item 4): one incident's, and aggregated over many.

Thin views over :mod:`crisis.review.metrics_service`; the definitions are in docs/review.md.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query, status

from crisis import log
from crisis.clock import as_utc
from crisis.domain import rules
from crisis.domain.organisation import Organisation
from crisis.log.models import Incident
from crisis.review import metrics_service
from web.deps import CurrentUser, Org, SessionDep, scope_of

router = APIRouter(tags=["review"])

OSLO = ZoneInfo("Europe/Oslo")
GroupByParam = Literal["all", "unit", "region", "type", "month", "week"]
_TYPE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,79}$")


def regions_of(org: Organisation) -> dict[str, str]:
    """unit id → region id."""
    return {unit.id: unit.region for unit in org.units.values()}


def _bad(field: str, message: str) -> log.RuleViolation:
    return log.RuleViolation([rules.Violation(field, message)])


def parse_bound(value: str | None, *, field: str, end: bool) -> datetime | None:
    """A date (a whole day in Europe/Oslo; ``to`` includes it) or an ISO 8601 instant."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime.combine(day + timedelta(days=1) if end else day, time(), OSLO)
            return as_utc(start)
        return as_utc(text)
    except (ValueError, OverflowError):  # malformed, or past the calendar's ends in UTC
        raise _bad(field, f"not a date or time: {value!r} (YYYY-MM-DD or ISO 8601)") from None


def filters(
    org: Organisation,
    *,
    start: str | None,
    end: str | None,
    unit: str | None,
    region: str | None,
    incident_type: str | None,
) -> dict[str, Any]:
    """The checked filters as the service takes them; a bad one raises a 422."""
    lo = parse_bound(start, field="from", end=False)
    hi = parse_bound(end, field="to", end=True)
    if lo is not None and hi is not None and lo >= hi:
        raise _bad("to", "'to' comes after 'from'")
    if unit and unit not in org.units:
        raise _bad("unit", f"unknown unit {unit!r}")
    if region and region not in org.regions:
        raise _bad("region", f"unknown region {region!r} (known: {', '.join(org.regions)})")
    if incident_type and not _TYPE.match(incident_type):
        raise _bad("type", f"not an incident type: {incident_type!r}")
    return {
        "start": lo,
        "end": hi,
        "unit": unit or None,
        "region": region or None,
        "incident_type": incident_type or None,
    }


@router.get("/api/v1/incidents/{incident_id}/metrics")
async def incident_metrics(
    incident_id: str, user: CurrentUser, org: Org, session: SessionDep
) -> dict[str, Any]:
    """The incident's response metrics (exercises too: an exercise is reviewed as well)."""
    incident = await session.get(Incident, incident_id)
    if incident is None:
        raise log.IncidentNotFound(incident_id)
    if not scope_of(user, org).allows(incident):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "utenfor ditt ansvarsområde / out of scope")
    found = await metrics_service.metrics_for_incident(
        session, incident=incident, regions=regions_of(org)
    )
    return found.as_dict()


@router.get("/api/v1/metrics/response")
async def response_metrics(
    user: CurrentUser,
    org: Org,
    session: SessionDep,
    start: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=40)] = None,
    unit: Annotated[str | None, Query(max_length=80)] = None,
    region: Annotated[str | None, Query(max_length=80)] = None,
    incident_type: Annotated[str | None, Query(alias="type", max_length=80)] = None,
    group_by: GroupByParam = "unit",
) -> dict[str, Any]:
    """Real incidents in the caller's scope opened in [from, to], grouped; see docs/review.md."""
    checked = filters(
        org, start=start, end=end, unit=unit, region=region, incident_type=incident_type
    )
    out = await metrics_service.response_metrics(
        session, scope=scope_of(user, org), regions=regions_of(org), group_by=group_by, **checked
    )
    out["filters"] = {
        "from": start or None,
        "to": end or None,
        "unit": checked["unit"],
        "region": checked["region"],
        "type": checked["incident_type"],
    }
    return out
