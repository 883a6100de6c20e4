"""``GET /api/v1/exercises/{id}/evaluation``: an exercise's evaluation as JSON, HTML or PDF
(thin view over :mod:`playbooks.exercises.evaluation`).

Roles as the exercises API (``run_exercise``: admin, exercise-controller; others 403); 403
also when an incident of the exercise lies outside the reader's scope; 404 for an unknown
exercise, 406 for a format not offered, 422 for a language other than nb or en.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from crisis.domain.permissions import Action, require
from playbooks.exercises import evaluation
from web.deps import CurrentUser, Org, SessionDep, scope_of

router = APIRouter(prefix="/api/v1/exercises", tags=["exercises"])

HTML_CSP = (
    f"default-src 'none'; style-src {evaluation.STYLE_HASH}; img-src data:; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@router.get(
    "/{exercise_id}/evaluation",
    responses={
        200: {
            "content": {"application/json": {}, "text/html": {}, "application/pdf": {}},
            "description": "the evaluation in the asked format",
        },
        403: {"description": "a role that does not run exercises, or outside its scope"},
        404: {"description": "no such exercise"},
        406: {"description": "a format not offered"},
    },
)
async def get_evaluation(
    exercise_id: str,
    user: CurrentUser,
    org: Org,
    session: SessionDep,
    format_: Annotated[str, Query(alias="format", max_length=20)] = "json",
    lang: Literal["nb", "en"] = "nb",
) -> Response:
    require(user, Action.RUN_EXERCISE)
    if format_ not in evaluation.FORMATS:
        raise HTTPException(
            status.HTTP_406_NOT_ACCEPTABLE,
            f"formatet tilbys ikke / format not offered: {', '.join(evaluation.FORMATS)}",
        )
    fmt: evaluation.Format = format_  # type: ignore[assignment]
    incidents = await evaluation.exercise_incidents(session, exercise_id=exercise_id)
    scope = scope_of(user, org)
    if not all(scope.allows(i) for i in incidents):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "utenfor ditt ansvarsområde / out of scope")
    found = await evaluation.evaluation_of(  # an unknown exercise: 404 (ExerciseNotFound)
        session, exercise_id=exercise_id, org=org, incidents=incidents
    )
    # Rendering (WeasyPrint above all) is slow: off the event loop.
    body = await run_in_threadpool(evaluation.render, found, fmt, lang=lang)
    name = evaluation.file_name(found, fmt, lang=lang)
    disposition = "attachment" if fmt == "pdf" else "inline"
    headers = {"Content-Disposition": f'{disposition}; filename="{name}"'}
    if fmt == "html":
        headers["Content-Security-Policy"] = HTML_CSP
    return Response(body, media_type=evaluation.MEDIA_TYPES[fmt], headers=headers)
