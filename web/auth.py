"""Browser login (a server-side session named by a signed cookie) and who-am-I; API clients
use bearer tokens.

A refused login answers JSON to scripts (the login page's own fetch) and the login page with
the message to a browser posting the form itself: 401 for a wrong name or password, 429 with
``Retry-After`` while the account or address must wait, 503 with ``Retry-After`` when too
many logins are being checked at once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import JSONResponse, RedirectResponse, Response

from crisis.accounts import service as accounts
from crisis.accounts.models import UserPublic
from web.board.pages import render
from web.deps import CurrentUser, SessionDep

router = APIRouter(tags=["auth"])

WRONG = "feil brukernavn eller passord / wrong username or password"


def _safe_next(target: str) -> str:
    return target if target.startswith("/") and not target.startswith("//") else "/"


def _refused(
    request: Request,
    code: int,
    message: str,
    *,
    username: str,
    next: str,
    retry_after: int | None = None,
) -> Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    if "text/html" in request.headers.get("accept", ""):
        page = render(
            request,
            "login.html",
            status_code=code,
            next=_safe_next(next),
            error=message,
            username=username,
        )
        if headers:
            page.headers.update(headers)
        return page
    error = {"index": None, "field": "password", "message": message}
    return JSONResponse({"errors": [error], "detail": message}, code, headers=headers)


@router.post("/login", response_model=None)
async def login(
    request: Request,
    session: SessionDep,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/",
) -> Response:
    settings = request.app.state.settings
    try:
        user = await accounts.login(
            session,
            name=username,
            password=password,
            address=request.client.host if request.client else "-",
            gate=request.app.state.login_gate,
            policy=accounts.LoginPolicy.of(settings),
        )
    except accounts.LoginThrottled as exc:
        message = (
            f"for mange mislykkede innlogginger; prøv igjen om {exc.retry_after} s / "
            f"too many failed logins; try again in {exc.retry_after} s"
        )
        return _refused(
            request, 429, message, username=username, next=next, retry_after=exc.retry_after
        )
    except accounts.LoginBusy as exc:
        message = (
            f"for mange innlogginger samtidig; prøv igjen om {exc.retry_after} s / "
            f"too many logins at once; try again in {exc.retry_after} s"
        )
        return _refused(
            request, 503, message, username=username, next=next, retry_after=exc.retry_after
        )
    if user is None:
        return _refused(request, 401, WRONG, username=username, next=next)
    previous = request.session.get("sid")
    session_id = await accounts.open_session(
        session,
        user=user,
        lifetime=timedelta(seconds=settings.session_max_age_seconds),
        replaces=previous if isinstance(previous, str) else None,
    )
    await session.commit()
    request.session.clear()
    request.session["sid"] = session_id
    return RedirectResponse(_safe_next(next), status_code=status.HTTP_303_SEE_OTHER)


@router.post("/logout")
async def logout(request: Request, session: SessionDep) -> RedirectResponse:
    session_id = request.session.get("sid")
    if isinstance(session_id, str):
        await accounts.close_session(session, session_id=session_id)
        await session.commit()
    request.session.clear()
    return RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)


@router.get("/api/v1/me", response_model=UserPublic)
async def me(user: CurrentUser) -> UserPublic:
    return UserPublic.model_validate(user)
