"""Security headers on every answer, and the origin check of cookie-authenticated writes.

:class:`SecurityHeaders` wraps the whole application, the 500 page included: a strict
Content-Security-Policy (scripts and styles from this origin only, no inline script), no MIME
sniffing, no framing, no referrer to other sites. A route may set its own policy (the
acknowledgement page, the API docs); the middleware then leaves that header as it is.

:class:`OriginCheck` refuses a POST, PUT, PATCH or DELETE that carries cookies but no bearer
token, and every ``/login``, unless its ``Origin`` (or, without one, its ``Referer``) is this
site or one of ``CRISIS_ALLOWED_ORIGINS``: a browser attaches the session cookie to a form
another page makes it send, never a bearer token. A websocket opened with cookies is held to
the same check. Machine endpoints authenticated by what the request carries are exempt.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crisis.settings import Settings
from web.deps import bearer_token

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Paths that always need a matching origin, cookie or not (a forged login is a login CSRF).
ALWAYS_CHECKED = frozenset({"/login"})
#: Authenticated by the request itself (the acknowledgement code, the gateway's signature),
#: never by the session: a cross-site post gains nothing a direct one would not.
EXEMPT_PREFIXES = ("/api/v1/notifications/ack/", "/api/v1/notifications/inbound")
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def content_security_policy(settings: Settings) -> str:
    """The board's policy: everything from this origin, map tiles from the tile server."""
    img = ["'self'", "data:"]  # data: the empty favicon of base.html
    tile_origin = origin_of(settings.map_tile_url) if settings.map_tile_url else None
    if tile_origin:
        img.append(tile_origin)
    directives = {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": " ".join(img),
        "connect-src": "'self'",  # CSP 3: 'self' includes ws:/wss: to this host
        "object-src": "'none'",
        "base-uri": "'none'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def response_headers(settings: Settings) -> list[tuple[str, str]]:
    return [
        ("Content-Security-Policy", content_security_policy(settings)),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        # same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" on
        # its own forms, which the origin check could not tell from a forged one.
        ("Referrer-Policy", "same-origin"),
    ]


class SecurityHeaders:
    """ASGI middleware: adds ``headers`` to every HTTP answer that does not set them itself."""

    def __init__(self, app: ASGIApp, headers: Iterable[tuple[str, str]]) -> None:
        self.app = app
        self.headers = list(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers:
                    headers.setdefault(name, value)
                if scope.get("scheme") == "https":
                    headers.setdefault("Strict-Transport-Security", "max-age=31536000")
            await send(message)

        await self.app(scope, receive, send_with_headers)


class App(FastAPI):
    """FastAPI whose every answer carries the security headers, the 500 page included
    (that page is made outside the middleware ``add_middleware`` installs)."""

    security_headers: tuple[tuple[str, str], ...] = ()

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack(), self.security_headers)


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of a URL, lower case, default port left out; None if none."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in DEFAULT_PORTS or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}" + (f":{port}" if port and port != DEFAULT_PORTS[scheme] else "")


def own_origin(scope: Scope) -> str | None:
    """The origin the request was sent to: its scheme and its ``Host`` header."""
    host = Headers(scope=scope).get("host")
    if not host:
        return None
    scheme = {"ws": "http", "wss": "https"}.get(scope.get("scheme", ""), scope.get("scheme"))
    return origin_of(f"{scheme}://{host}")


def _refusal(message: str) -> JSONResponse:
    text = f"opphav avvist / origin check failed: {message}"
    return JSONResponse(
        {"errors": [{"index": None, "field": "origin", "message": text}], "detail": text},
        status_code=403,
    )


class OriginCheck:
    """ASGI middleware: cookie-authenticated writes only from this site (see the module)."""

    def __init__(self, app: ASGIApp, *, allowed: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed = frozenset(o for o in map(origin_of, allowed) if o)

    def _checked(self, scope: Scope, headers: Headers) -> bool:
        path = scope["path"]
        if path.startswith(EXEMPT_PREFIXES):
            return False
        if scope["type"] == "websocket":  # read with the cookie unless it names a token
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            return "cookie" in headers and not query.get("token")
        if scope["method"] not in WRITE_METHODS:
            return False
        if path.rstrip("/") in ALWAYS_CHECKED:
            return True
        return "cookie" in headers and bearer_token(headers) is None

    def refusal(self, scope: Scope, headers: Headers) -> str | None:
        """Why the request is refused, or None when it may go on."""
        own = own_origin(scope)
        trusted = self.allowed | {own} if own else self.allowed
        origin = headers.get("origin")
        if origin is not None:
            if origin_of(origin) in trusted:
                return None
            return f"Origin {origin[:100]!r} is not this site"
        referer = headers.get("referer")
        if referer is None:
            return "neither Origin nor Referer names this site"
        if origin_of(referer) in trusted:
            return None
        return "the Referer is not this site"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        reason = self.refusal(scope, headers) if self._checked(scope, headers) else None
        if reason is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "origin"})
        else:
            await _refusal(reason)(scope, receive, send)


def install(app: App, settings: Settings) -> None:
    """The origin check as middleware; the headers through :class:`App`."""
    app.security_headers = tuple(response_headers(settings))
    app.add_middleware(OriginCheck, allowed=settings.allowed_origins)
