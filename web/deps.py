"""Annotated dependencies: ``SessionDep``, ``CurrentUser``, ``Org``; ``RowId``, ``BeforeId``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request, status
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis import accounts
from crisis.models import User
from crisis.organisation import Organisation

#: The largest row id or seq: the tables' ids are INTEGER, a 32-bit integer on PostgreSQL
#: (SQLite's reach 2**63 - 1). A larger id in a path or query is a 422, not a driver's 500.
MAX_ID = 2**31 - 1

#: An integer row id in a path, within what the database can hold.
RowId = Annotated[int, Path(ge=1, le=MAX_ID)]
#: The ``before`` cursor of a paged list: a row id to page backwards from.
BeforeId = Annotated[int | None, Query(ge=1, le=MAX_ID, description="id to page backwards from")]


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


def get_organisation(request: Request) -> Organisation:
    org: Organisation = request.app.state.organisation
    return org


Org = Annotated[Organisation, Depends(get_organisation)]


async def get_current_user(request: Request, session: SessionDep) -> User:
    """Bearer token for machines, the signed session cookie for the browser; else 401."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        user = await accounts.user_for_token(session, header[7:].strip())
    else:
        user_id = request.session.get("user_id") if "session" in request.scope else None
        user = await session.get(User, user_id) if isinstance(user_id, int) else None
        if user is not None and not user.active:
            user = None
    if user is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="innlogging kreves / authentication required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def scope_of(user: User, org: Organisation) -> accounts.Scope:
    by_region: dict[str, list[str]] = {}
    for unit in org.units.values():
        by_region.setdefault(unit.region, []).append(unit.id)
    return accounts.scope_for(user, by_region)


async def read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None once it grows past ``limit`` bytes (read no further)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)
