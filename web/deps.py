"""Annotated dependencies: ``SessionDep``, ``CurrentUser``, ``Org``; ``RowId``, ``BeforeId``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request, Security, status
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import HTTPConnection

from crisis.accounts import service as accounts
from crisis.accounts.models import User
from crisis.domain.organisation import Organisation

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


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer …`` header ('' when empty), else None."""
    header = headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


async def user_of(conn: HTTPConnection, session: AsyncSession, *, token: str | None) -> User | None:
    """The user of a bearer ``token`` if one is given, else of the session cookie; None when
    it is unknown, revoked, expired, logged out or disabled. A recorded use is committed."""
    if token is not None:
        user = await accounts.user_for_token(session, token)
    else:
        session_id = conn.session.get("sid") if "session" in conn.scope else None
        settings = conn.app.state.settings
        user = (
            await accounts.user_for_session(
                session,
                session_id=session_id,
                lifetime=timedelta(seconds=settings.session_max_age_seconds),
            )
            if isinstance(session_id, str)
            else None
        )
    if session.dirty:
        await session.commit()
    return user


class Unauthenticated(HTTPException):
    """No valid token or session: answered 401 in the API's error shape (``web.errors``)."""


#: The two ways in, as OpenAPI security schemes (declared only: ``user_of`` reads them).
BEARER_SCHEME = HTTPBearer(
    scheme_name="bearerAuth",
    description="An API token: crisis token create",
    auto_error=False,
)
COOKIE_SCHEME = APIKeyCookie(
    name="crisis_session",
    scheme_name="sessionCookie",
    description="The browser's session after POST /login",
    auto_error=False,
)


async def get_current_user(
    request: Request,
    session: SessionDep,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER_SCHEME)] = None,
    _cookie: Annotated[str | None, Security(COOKIE_SCHEME)] = None,
) -> User:
    """Bearer token for machines, the session cookie for the browser; else 401."""
    user = await user_of(request, session, token=bearer_token(request.headers))
    if user is None:
        raise Unauthenticated(
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
