"""Browser login (a signed session cookie) and who-am-I; API clients use bearer tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import RedirectResponse

from crisis import accounts
from crisis.models import UserPublic
from web.deps import CurrentUser, SessionDep

router = APIRouter(tags=["auth"])


@router.post("/login", response_model=None)
async def login(
    request: Request,
    session: SessionDep,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/",
) -> RedirectResponse:
    user = await accounts.authenticate(session, name=username, password=password)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "feil brukernavn eller passord")
    request.session.clear()
    request.session["user_id"] = user.id
    target = next if next.startswith("/") and not next.startswith("//") else "/"
    return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)


@router.post("/logout")
async def logout(request: Request) -> RedirectResponse:
    request.session.clear()
    return RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)


@router.get("/api/v1/me", response_model=UserPublic)
async def me(user: CurrentUser) -> UserPublic:
    return UserPublic.model_validate(user)
