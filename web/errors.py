"""One error shape for every refusal: ``{"errors": [{"index", "field", "message"}]}``.

A database that is away, restarting, locked or full (``crisis.dberrors.is_transient``) answers
503 with ``Retry-After`` on every endpoint, the ingest POSTs' token lookup included; any other
database error stays a 500.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from crisis.domain.permissions import Forbidden
from crisis.exercises.service import ExerciseError
from crisis.log import IncidentNotFound, RuleViolation
from crisis.store import errors as dberrors
from web.deps import Unauthenticated

logger = logging.getLogger("crisis.web")

#: Seconds a client is asked to wait after a 503 for an unavailable database.
RETRY_AFTER = 5

#: The exception classes a database outage surfaces as (SQLAlchemy's wrappers, the drivers'
#: own errors, a refused or reset socket, a group from a task group); each is answered 503
#: only when ``crisis.dberrors`` calls it transient, else it is raised on (a 500).
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    SQLAlchemyError,
    asyncpg.exceptions.PostgresError,
    asyncpg.exceptions.InterfaceError,
    sqlite3.Error,
    OSError,
    ExceptionGroup,
)


def unavailable() -> JSONResponse:
    """The 503 answer to a transient database error."""
    message = (
        "databasen er midlertidig utilgjengelig / the database is temporarily unavailable; "
        f"retry after {RETRY_AFTER} s"
    )
    return JSONResponse(
        {
            "errors": [{"index": None, "field": "database", "message": message}],
            "detail": message,
        },
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER)},
    )


def _field(loc: tuple[Any, ...]) -> tuple[int | None, str]:
    parts = [p for p in loc if p not in ("body", "query", "path")]
    index = parts.pop(0) if parts and isinstance(parts[0], int) else None
    return index, ".".join(str(p) for p in parts) or "body"


def install(app: FastAPI) -> None:
    async def _database(request: Request, exc: Exception) -> JSONResponse:
        if request.scope.get("type") != "http" or not dberrors.is_transient(exc):
            raise exc
        logger.warning(
            "database unavailable: %s %s answered 503: %r", request.method, request.url.path, exc
        )
        return unavailable()

    for cls in DATABASE_ERRORS:
        app.add_exception_handler(cls, _database)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            index, field = _field(tuple(err.get("loc", ())))
            errors.append({"index": index, "field": field, "message": err.get("msg", "")})
        return JSONResponse({"errors": errors}, status_code=422)

    @app.exception_handler(Unauthenticated)
    async def _unauthenticated(_: Request, exc: Unauthenticated) -> JSONResponse:
        error = {"index": None, "field": "authorization", "message": exc.detail}
        return JSONResponse(
            {"errors": [error], "detail": exc.detail},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(RuleViolation)
    async def _violation(_: Request, exc: RuleViolation) -> JSONResponse:
        errors = [{"index": None, **v.as_error()} for v in exc.violations]
        return JSONResponse({"errors": errors, "detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(IncidentNotFound)
    async def _missing(_: Request, exc: IncidentNotFound) -> JSONResponse:
        return JSONResponse(
            {"errors": [{"index": None, "field": "id", "message": f"no incident {exc}"}]},
            status_code=404,
        )

    @app.exception_handler(Forbidden)
    async def _forbidden(_: Request, exc: Forbidden) -> JSONResponse:
        error = {"index": None, "field": "role", "message": str(exc), "action": exc.action.value}
        return JSONResponse({"errors": [error], "detail": str(exc)}, status_code=403)

    @app.exception_handler(ExerciseError)
    async def _exercise(_: Request, exc: ExerciseError) -> JSONResponse:
        return JSONResponse({"errors": exc.errors(), "detail": str(exc)}, status_code=exc.status)
