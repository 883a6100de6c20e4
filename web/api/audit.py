"""``GET /api/v1/audit/access``: the access audit (``data_access``) for admins (thin view).

Every read that showed personal references unmasked is one row (``crisis.privacy``): who,
their role and stated need, the incident (``""`` for the dead-letter view), the entries (or
dead letters) and references, the channel and the time. Newest first; page with ``before``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel

from crisis.domain.vocabulary import Role
from crisis.log import privacy
from crisis.log.models import DataAccess
from web.deps import BeforeId, CurrentUser, SessionDep

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


class AccessPublic(BaseModel):
    id: int
    at: datetime
    actor: str
    role: str
    need: str
    incident_id: str
    entry_ids: list[int]
    refs: list[str]
    channel: str


def _public(row: DataAccess) -> AccessPublic:
    return AccessPublic(**row.model_dump(exclude={"inmate_refs"}), refs=row.inmate_refs)


@router.get("/access", response_model=list[AccessPublic])
async def list_accesses(
    user: CurrentUser,
    session: SessionDep,
    actor: Annotated[str | None, Query(description="'kari' or 'user:kari'")] = None,
    incident_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: BeforeId = None,
) -> Any:
    if user.role != Role.ADMIN:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "bare for administrator / admin only")
    rows = await privacy.accesses(
        session,
        actor=actor,
        incident_id=incident_id,
        since=since,
        until=until,
        before=before,
        limit=limit,
    )
    return [_public(r) for r in rows]
