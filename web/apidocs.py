"""The API's schema and its two viewers: ``/openapi.json``, ``/docs`` and ``/redoc``.

Open in development; with ``CRISIS_PRODUCTION=true`` each needs a login (cookie or bearer
token; the viewers send a browser to the login page). The viewers load from the CDN FastAPI
uses and start from a file, not an inline script, so each page has its own policy: the site's
own sources plus that CDN (ReDoc also needs inline styles and a worker from a blob).
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlmodel.ext.asyncio.session import AsyncSession

from web.board.pages import to_login
from web.deps import SessionDep, get_current_user

router = APIRouter(include_in_schema=False)

CDN = "https://cdn.jsdelivr.net"
SWAGGER = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>crisis API</title>
<link rel="stylesheet" href="{CDN}/npm/swagger-ui-dist@5/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-url="/openapi.json"></div>
<script src="{CDN}/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script src="/static/apidocs.js"></script>
</body>
</html>
"""
REDOC = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>crisis API</title>
</head>
<body>
<redoc spec-url="/openapi.json"></redoc>
<script src="{CDN}/npm/redoc@2/bundles/redoc.standalone.js"></script>
</body>
</html>
"""
_COMMON = "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
SWAGGER_CSP = (
    f"default-src 'self'; script-src 'self' {CDN}; style-src 'self' {CDN}; "
    f"img-src 'self' data: {CDN}; connect-src 'self'; {_COMMON}"
)
REDOC_CSP = (
    f"default-src 'self'; script-src 'self' {CDN}; style-src 'self' 'unsafe-inline'; "
    f"img-src 'self' data:; connect-src 'self'; worker-src blob:; {_COMMON}"
)


async def _may_read(request: Request, session: AsyncSession) -> None:
    """In production mode the schema and its viewers need a login (401 otherwise)."""
    if request.app.state.settings.production:
        await get_current_user(request, session)


@router.get("/openapi.json")
async def openapi(request: Request, session: SessionDep) -> JSONResponse:
    await _may_read(request, session)
    return JSONResponse(request.app.openapi())


async def _viewer(request: Request, session: AsyncSession, html: str, csp: str) -> Response:
    try:
        await _may_read(request, session)
    except HTTPException:
        return to_login(request)
    return HTMLResponse(html, headers={"Content-Security-Policy": csp})


@router.get("/docs")
async def swagger(request: Request, session: SessionDep) -> Response:
    return await _viewer(request, session, SWAGGER, SWAGGER_CSP)


@router.get("/redoc")
async def redoc(request: Request, session: SessionDep) -> Response:
    return await _viewer(request, session, REDOC, REDOC_CSP)
