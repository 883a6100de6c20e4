"""The organisation's units, as the contract names them."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from web.deps import CurrentUser, Org

router = APIRouter(prefix="/api/v1", tags=["organisation"])


class UnitPublic(BaseModel):
    id: str
    name: str
    kind: str
    region: str
    lat: float
    lon: float
    county: str | None = None
    municipality: str | None = None


@router.get("/units", response_model=list[UnitPublic])
async def list_units(_: CurrentUser, org: Org) -> list[UnitPublic]:
    return [
        UnitPublic(
            id=u.id,
            name=u.name,
            kind=u.kind,
            region=u.region,
            lat=u.lat,
            lon=u.lon,
            county=u.county,
            municipality=u.municipality,
        )
        for u in org.units.values()
    ]
