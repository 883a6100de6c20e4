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
from web.api import documents
from web.deps import CurrentUser, Org, SessionDep, scope_of

router = APIRouter(prefix="/api/v1/incidents", tags=["review"])


@router.get(
    "/{incident_id}/report",
    responses=documents.responses(
        "report", forbidden="outside the reader's scope", missing="no such incident"
    ),
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
    fmt: review_report.Format = documents.offered(format_, review_report.FORMATS)  # type: ignore[assignment]
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
    return documents.document(
        body,
        fmt=fmt,
        name=review_report.file_name(report, fmt),
        media_types=review_report.MEDIA_TYPES,
        style_hash=review_report.STYLE_HASH,
    )
