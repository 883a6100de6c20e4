"""One error shape for every refusal: ``{"errors": [{"index", "field", "message"}]}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from crisis.log import IncidentNotFound, RuleViolation
from crisis.permissions import Forbidden


def _field(loc: tuple[Any, ...]) -> tuple[int | None, str]:
    parts = [p for p in loc if p not in ("body", "query", "path")]
    index = parts.pop(0) if parts and isinstance(parts[0], int) else None
    return index, ".".join(str(p) for p in parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            index, field = _field(tuple(err.get("loc", ())))
            errors.append({"index": index, "field": field, "message": err.get("msg", "")})
        return JSONResponse({"errors": errors}, status_code=422)

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
