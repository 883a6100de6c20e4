"""The statistics page: response metrics of real incidents, per unit, region, type or period.

The filter form is a GET of this page with the query ``GET /api/v1/metrics/response`` takes,
read by the same service function, so the page and the API give the same figures.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from crisis import log
from crisis.domain import rules
from crisis.review import metrics, metrics_service
from crisis.sources.incident_types import INCIDENT_TYPE_LABELS
from web.api.review_metrics import filters, regions_of
from web.board import i18n
from web.board.feed import head
from web.board.pages import page_user, render, to_login, type_label
from web.deps import SessionDep, scope_of

router = APIRouter(tags=["board"], include_in_schema=False)

FIELDS = ("from", "to", "unit", "region", "type", "group_by")


def _label(key: str, group_by: str, org: Any, lang: str) -> str:
    if group_by == "unit" and key in org.units:
        return str(org.units[key].name)
    if group_by == "region" and key in org.regions:
        return str(org.regions[key].name)
    if group_by == "type":
        return type_label(key, lang)
    return key


@router.get("/statistics", response_model=None)
async def statistics_page(request: Request, session: SessionDep) -> Response:
    user = await page_user(request, session)
    if user is None:
        return to_login(request)
    org = request.app.state.organisation
    query = {name: request.query_params.get(name, "").strip() for name in FIELDS}
    group_by = query["group_by"] or "unit"
    context: dict[str, Any] = {
        "user": user,
        "query": {**query, "group_by": group_by},
        "units": list(org.units.values()),
        "regions": list(org.regions.values()),
        "types": sorted(INCIDENT_TYPE_LABELS),
        "group_bys": metrics.GROUP_BY,
        "durations": metrics.DURATIONS,
        "resume": await head(session),
        "page": "statistics",
        "errors": [],
        "result": None,
    }
    try:
        if group_by not in metrics.GROUP_BY:
            raise log.RuleViolation([rules.Violation("group_by", f"unknown grouping {group_by!r}")])
        checked = filters(
            org,
            start=query["from"],
            end=query["to"],
            unit=query["unit"],
            region=query["region"],
            incident_type=query["type"],
        )
    except log.RuleViolation as exc:
        context["errors"] = [f"{v.field}: {v.message}" for v in exc.violations]
        return render(request, "statistics.html", status_code=422, **context)
    result = await metrics_service.response_metrics(
        session, scope=scope_of(user, org), regions=regions_of(org), group_by=group_by, **checked
    )
    lang = i18n.pick_lang(request)
    for group in result["groups"]:
        group["label"] = _label(group["key"], group_by, org, lang)
    context["result"] = result
    return render(request, "statistics.html", **context)
