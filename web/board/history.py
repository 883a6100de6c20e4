"""The board's incident history: a filter form over ``crisis.review.history``, the same
query ``GET /api/v1/incidents`` answers, with closing reason, duration and paging."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from crisis import log
from crisis.clock import utcnow
from crisis.domain.vocabulary import Role, Status
from crisis.log import privacy
from crisis.review import history
from crisis.sources.incident_types import INCIDENT_TYPE_LABELS
from web.api.incidents import history_bounds
from web.board import i18n, pages
from web.board.feed import head
from web.deps import SessionDep, scope_of

router = APIRouter(tags=["board"], include_in_schema=False)

PAGE_SIZE = history.DEFAULT_LIMIT
FIELDS = ("status", "from", "to", "unit", "type", "q", "exercise")


def span(value: timedelta, lang: str) -> str:
    """A duration as staff read it: days, hours and minutes."""
    minutes = int(value.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    h = "t" if lang != "en" else "h"
    d = "d"
    if days:
        return f"{days} {d} {hours} {h}"
    if hours:
        return f"{hours} {h} {mins} min"
    return f"{mins} min"


@router.get("/history", response_class=HTMLResponse, response_model=None)
async def history_page(request: Request, session: SessionDep) -> Response:
    user = await pages.page_user(request, session)
    if user is None:
        return pages.to_login(request)
    if user.role == Role.MINISTRY:
        return pages.render(request, "error.html", user=user, status_code=403, message="403")
    org = request.app.state.organisation
    params = {k: request.query_params.get(k, "").strip() for k in FIELDS}
    if "status" not in request.query_params:
        params["status"] = Status.CLOSED.value  # the history's default: closed incidents
    try:
        offset = max(0, int(request.query_params.get("offset", "0") or 0))
    except ValueError:
        offset = 0
    error = None
    rows: list[Any] = []
    total = 0
    try:
        start, end = history_bounds(params["from"] or None, params["to"] or None)
    except log.RuleViolation as exc:
        error, start, end = str(exc), None, None
    if error is None:
        rows, total = await history.search_incidents(
            session=session,
            narrow=scope_of(user, org).narrow,
            status=params["status"] or None,
            opened_from=start,
            opened_to=end,
            unit=params["unit"] or None,
            type=params["type"] or None,
            q=params["q"] or None,
            exercise=params["exercise"] or None,
            limit=PAGE_SIZE,
            offset=offset,
        )
    closings = await history.closing_entries(
        session=session, incident_ids=[i.id for i in rows if i.status == Status.CLOSED]
    )
    lang = i18n.pick_lang(request)
    now = utcnow()
    results = []
    for incident in rows:
        closing = closings.get(incident.id)
        shown = privacy.entry_for_viewer(user, closing)[0] if closing else None
        results.append(
            {
                "i": incident,
                "duration": span(
                    history.duration(incident.opened_at, incident.closed_at or now), lang
                ),
                "reason": shown.data.get("reason") if shown else None,
                "final_situation": shown.data.get("final_situation") if shown else None,
            }
        )
    kept = {k: v for k, v in params.items() if v}

    def page_url(at: int) -> str:
        return "/history?" + urlencode({**kept, "offset": at})

    scope = scope_of(user, org)
    return pages.render(
        request,
        "history.html",
        status_code=422 if error else 200,
        user=user,
        params=params,
        error=error,
        results=results,
        total=total,
        offset=offset,
        shown_to=offset + len(rows),
        prev_url=page_url(max(0, offset - PAGE_SIZE)) if offset > 0 else None,
        next_url=page_url(offset + PAGE_SIZE) if offset + PAGE_SIZE < total else None,
        api_url="/api/v1/incidents?" + urlencode({**kept, "offset": offset}),
        units=[u for u in org.units.values() if scope.all_units or u.id in scope.units],
        unit_names={u.id: u.name for u in org.units.values()},
        types=sorted(INCIDENT_TYPE_LABELS),
        resume=await head(session),
        page="history",
    )
