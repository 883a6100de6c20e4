"""``GET /api/v1/events/dlq``: refused events with the reasons and who refused them (thin view).

Every path ends in the one table: the worker writes its own dead letters with their batch and
copies ``crisis.events.dlq`` in (the bridges' rejects, the producers' reduced records of what
the broker could not take); ``origin`` says which (``worker``, ``bridge:mqtt``, …).

Operational data (:func:`crisis.privacy.has_operational_duty`): unit and region staff see
the dead letters naming their units, admin and KDI all of them (a missing or unknown unit
too); communication staff, the ministry and exercise controllers none (403). Personal
references in the raw event are masked by need-to-know; an unmasked read is audited (``dlq``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from sqlmodel import col, select

from crisis.log import privacy
from crisis.sources.models import DeadLetter, DeadLetterPublic
from web.deps import BeforeId, CurrentUser, Org, SessionDep, scope_of

router = APIRouter(prefix="/api/v1/events", tags=["events"])


@router.get("/dlq", response_model=list[DeadLetterPublic])
async def list_dead_letters(
    user: CurrentUser,
    org: Org,
    session: SessionDep,
    type_: Annotated[str | None, Query(alias="type")] = None,
    unit: str | None = None,
    origin: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: BeforeId = None,
) -> Any:
    if not privacy.has_operational_duty(user):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "døde meldinger er for roller med driftsansvar / "
            "dead letters are for roles with operational duty",
        )
    scope = scope_of(user, org)
    stmt = select(DeadLetter).order_by(col(DeadLetter.id).desc()).limit(limit)
    if type_:
        stmt = stmt.where(DeadLetter.type == type_)
    if unit:
        stmt = stmt.where(DeadLetter.unit == unit)
    if origin:
        stmt = stmt.where(DeadLetter.origin == origin)
    if before is not None:
        stmt = stmt.where(col(DeadLetter.id) < before)
    if not scope.all_units:
        stmt = stmt.where(col(DeadLetter.unit).in_(scope.units))
    letters = (await session.exec(stmt)).all()
    shown = await privacy.read_dead_letters(session, user=user, letters=letters)
    await session.commit()
    for letter in shown:
        letter["origin"] = letter.get("origin") or "worker"  # rows from before the column
    return shown
