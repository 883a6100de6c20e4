"""The review page of one incident, ``/incidents/{id}/review``: the timeline with filters
(a GET form), the course chart (inline SVG from ``crisis.review.chart``) and the board as it
stood at a time (a GET form with a slider over the entry times; ``static/review.js`` updates
the panel from ``/api/v1/incidents/{id}/replay`` without a reload).

Entries are shown as the viewer may read them (``privacy.read_entries``: an unmasked read is
recorded, channel ``review``). The response metrics and the report export are other parts of
the review: the metrics (``crisis.review.metrics``, from the same entries) fill
``_metrics.html``; the report link points at the export.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from crisis import log
from crisis.clock import as_utc, utcnow
from crisis.log import privacy
from crisis.review import chart, metrics, replay, timeline
from web.api.review_metrics import regions_of
from web.board import i18n
from web.board.feed import head
from web.board.pages import _incident_for, page_user, render, to_login
from web.deps import SessionDep

router = APIRouter(tags=["board"], include_in_schema=False)

#: The audit channel of an unmasked read on this page.
CHANNEL = "review"
LABEL_PREFIXES = ("level", "status", "task", "delivery", "group", "role")


def _when(at: str | None, n: int | None, times: list[datetime]) -> datetime | None:
    """The replay time: ``at`` (ISO) wins, then the slider's stop ``n`` (1-based), else the
    last entry's time. An unreadable ``at`` falls back as if absent."""
    if at:
        try:
            return as_utc(at)
        except ValueError:
            pass
    if not times:
        return None
    if n is not None:
        return times[min(max(n, 1), len(times)) - 1]
    return times[-1]


def _stop(times: list[datetime], when: datetime) -> int:
    """The slider's stop for ``when``: the last entry time at or before it (1-based)."""
    return max(1, sum(1 for t in times if t <= when))


@router.get("/incidents/{incident_id}/review", response_class=HTMLResponse, response_model=None)
async def review_page(
    incident_id: str,
    request: Request,
    session: SessionDep,
    kind: Annotated[list[str] | None, Query()] = None,
    actor: str = "",
    group: str = "",
    unit: str = "",
    events: str = "show",
    at: str = "",
    n: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> Response:
    user = await page_user(request, session)
    if user is None:
        return to_login(request)
    incident = await _incident_for(request, session, user, incident_id)
    entries = await log.timeline(session, incident.id)
    shown = await privacy.read_entries(
        session, user=user, incident_id=incident.id, entries=entries, channel=CHANNEL
    )
    await session.commit()
    kinds = [k for k in kind or [] if k]
    rows = timeline.rows(
        entries=shown,
        kinds=kinds or None,
        actor=actor or None,
        group=group or None,
        unit=unit or None,
        source_events=events != "hide",
    )
    lang = i18n.pick_lang(request)
    org = request.app.state.organisation
    times = replay.entry_times(entries)
    when = _when(at, n, times) or incident.opened_at
    state = replay.state_at(incident=incident, entries=entries, at=when)
    labels = {p: i18n.labels(lang, p) for p in LABEL_PREFIXES}
    return render(
        request,
        "review.html",
        user=user,
        incident=incident,
        page="review",
        resume=await head(session),
        rows=rows,
        total=len(timeline.fold(shown)),
        options=timeline.options(entries=shown),
        filters={"kinds": kinds, "actor": actor, "group": group, "unit": unit, "events": events},
        chart=Markup(chart.course_svg(entries=shown, lang=lang)),  # noqa: S704 - escaped there
        state=state,
        times=[t.isoformat() for t in times],
        stop=_stop(times, when),
        unit_names={u.id: u.name for u in org.units.values()},
        replay_labels=labels,
        kind_labels=i18n.labels(lang, "kind"),
        metrics=metrics.incident_metrics(
            incident=incident,
            entries=entries,
            now=utcnow(),
            region=regions_of(org).get(incident.unit),
        ).as_dict(),
        report_href=f"/api/v1/incidents/{incident.id}/report?format=pdf",
    )
