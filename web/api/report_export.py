"""``GET /api/v1/incidents/{id}/report``: the incident's report as JSON, HTML or PDF (thin
view over :mod:`crisis.review.report`).

404 for an unknown incident, 403 outside the reader's scope, 406 for a format not offered
(``format`` other than html, pdf, json), 422 for a language other than nb or en. The PDF is
an attachment; the HTML carries its own policy allowing its one inline stylesheet. Every
export is recorded in the access audit with its format (``report-pdf`` …).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from crisis import log
from crisis.domain.permissions import Action, require
from crisis.log.models import Incident
from crisis.review import report as review_report
from web.deps import CurrentUser, Org, SessionDep, scope_of

router = APIRouter(prefix="/api/v1/incidents", tags=["review"])

HTML_CSP = (
    f"default-src 'none'; style-src {review_report.STYLE_HASH}; img-src data:; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@router.get(
    "/{incident_id}/report",
    responses={
        200: {
            "content": {
                "application/json": {},
                "text/html": {},
                "application/pdf": {},
            },
            "description": "the report in the asked format",
        },
        403: {"description": "outside the reader's scope"},
        404: {"description": "no such incident"},
        406: {"description": "a format not offered"},
    },
)
async def export(
    incident_id: str,
    user: CurrentUser,
    org: Org,
    session: SessionDep,
    format_: Annotated[str, Query(alias="format", max_length=20)] = "json",
    lang: Literal["nb", "en"] = "nb",
) -> Response:
    require(user, Action.READ)
    if format_ not in review_report.FORMATS:
        raise HTTPException(
            status.HTTP_406_NOT_ACCEPTABLE,
            f"formatet tilbys ikke / format not offered: {', '.join(review_report.FORMATS)}",
        )
    fmt: review_report.Format = format_  # type: ignore[assignment]
    incident = await session.get(Incident, incident_id)
    if incident is None:
        raise log.IncidentNotFound(incident_id)
    if not scope_of(user, org).allows(incident):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "utenfor ditt ansvarsområde / out of scope")
    report = await review_report.prepare_report(
        session, incident_id=incident_id, viewer=user, fmt=fmt, lang=lang
    )
    await session.commit()
    # Rendering a long log is slow (WeasyPrint above all): off the event loop.
    body = await run_in_threadpool(review_report.render, report, fmt)
    name = review_report.file_name(report, fmt)
    disposition = "attachment" if fmt == "pdf" else "inline"
    headers = {"Content-Disposition": f'{disposition}; filename="{name}"'}
    if fmt == "html":
        headers["Content-Security-Policy"] = HTML_CSP
    return Response(body, media_type=review_report.MEDIA_TYPES[fmt], headers=headers)
