"""GET /api/v1/incidents/{id}/violations: the principles an incident breaks now (board)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from playbooks import engine
from playbooks.loader import load_library
from playbooks.model import Library
from web.api.incidents import _visible
from web.deps import CurrentUser, Org, SessionDep

router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"])


def get_library(request: Request) -> Library:
    """The playbook library, loaded once per app (validated against the app's organisation)."""
    library: Library | None = getattr(request.app.state, "playbooks", None)
    if library is None:
        settings = request.app.state.settings
        library = load_library(settings.playbooks, org=request.app.state.organisation)
        request.app.state.playbooks = library
    return library


LibraryDep = Annotated[Library, Depends(get_library)]


class ViolationPublic(BaseModel):
    code: str
    principle: str | None
    field: str
    message: str
    message_en: str
    seq: int | None


class ViolationsPublic(BaseModel):
    incident_id: str
    violations: list[ViolationPublic]


@router.get("/{incident_id}/violations", response_model=ViolationsPublic)
async def get_violations(
    incident_id: str, user: CurrentUser, org: Org, session: SessionDep, library: LibraryDep
) -> Any:
    await _visible(session, user, org, incident_id)
    found = await engine.violations(session, incident_id=incident_id, library=library)
    return {"incident_id": incident_id, "violations": [v.as_error() for v in found]}
