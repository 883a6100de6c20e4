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
from web.api import documents
from web.deps import CurrentUser, Org, SessionDep, scope_of

router = APIRouter(prefix="/api/v1/exercises", tags=["exercises"])


@router.get(
    "/{exercise_id}/evaluation",
    responses=documents.responses(
        "evaluation",
        forbidden="a role that does not run exercises, or outside its scope",
        missing="no such exercise",
    ),
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
    fmt: evaluation.Format = documents.offered(format_, evaluation.FORMATS)  # type: ignore[assignment]
    incidents = await evaluation.exercise_incidents(session, exercise_id=exercise_id)
    scope = scope_of(user, org)
    if not all(scope.allows(i) for i in incidents):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "utenfor ditt ansvarsområde / out of scope")
    found = await evaluation.evaluation_of(  # an unknown exercise: 404 (ExerciseNotFound)
        session, exercise_id=exercise_id, org=org, incidents=incidents
    )
    # Rendering (WeasyPrint above all) is slow: off the event loop.
    body = await run_in_threadpool(evaluation.render, found, fmt, lang=lang)
    return documents.document(
        body,
        fmt=fmt,
        name=evaluation.file_name(found, fmt, lang=lang),
        media_types=evaluation.MEDIA_TYPES,
        style_hash=evaluation.STYLE_HASH,
    )
