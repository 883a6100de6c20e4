"""The body limit of every write outside ingest, and JSON bodies no deeper than the limit.

Ingest (``/api/v1/events``, ``/reports``, ``/cap``) reads its own bodies against
``CRISIS_INGEST_MAX_BODY_BYTES`` (:mod:`web.ingest`). Every other POST, PUT, PATCH and DELETE
is read here first, up to ``CRISIS_API_MAX_BODY_BYTES``: a declared Content-Length past it, or
a body that streams past it, is answered 413 before any route runs, so nothing is stored. A
JSON body nested deeper than :data:`crisis.jsonlimits.MAX_DEPTH` is answered 422 the same way
(the parser would otherwise recurse into a 500, and the serialisers fail on a stored value).
The body read is handed on to the route unchanged. A NUL character (U+0000) is refused with
422 in a path, a query and any body read here (:data:`crisis.jsonlimits.NUL_MESSAGE`).
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crisis.sources import jsonlimits

#: The paths that enforce their own (larger) limit: the ingest endpoints.
INGEST_PATHS = frozenset({"/api/v1/events", "/api/v1/reports", "/api/v1/cap"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _refusal(status: int, message: str, field: str = "body") -> JSONResponse:
    return JSONResponse(
        {"errors": [{"index": None, "field": field, "message": message}]}, status_code=status
    )


def _media(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return str(value.decode("latin-1").split(";")[0].strip().lower())
    return ""


def _is_json(scope: Scope) -> bool:
    media = _media(scope)
    return media == "application/json" or media.endswith("+json")


def _has_nul(data: bytes) -> bool:
    """A NUL as it arrives in a query string or a form body: raw or percent-encoded."""
    return b"\x00" in data or b"%00" in data


class NulRefusal:
    """ASGI middleware: 422 for a NUL character in the path or the query of any request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            jsonlimits.NUL in scope["path"] or _has_nul(scope.get("query_string", b""))
        ):
            field = "path" if jsonlimits.NUL in scope["path"] else "query"
            response = _refusal(422, jsonlimits.NUL_MESSAGE, field)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class BodyLimit:
    """ASGI middleware: the write body limit and the JSON depth limit (see the module)."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in WRITE_METHODS
            or scope["path"].rstrip("/") in INGEST_PATHS
        ):
            await self.app(scope, receive, send)
            return
        too_big = _refusal(413, f"the body is larger than the limit of {self.limit} bytes")
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await too_big(scope, receive, send)
                return
        body = bytearray()
        messages: list[Message] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # a disconnect: the route sees it as it would have
            body += message.get("body", b"")
            if len(body) > self.limit:
                await too_big(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        if body and _is_json(scope):
            try:
                jsonlimits.loads(bytes(body))
            except jsonlimits.JsonLimitError as exc:
                await _refusal(422, str(exc))(scope, receive, send)
                return
            except ValueError:
                pass  # not JSON: the route answers that in its own words
        if _media(scope) == "application/x-www-form-urlencoded" and _has_nul(bytes(body)):
            await _refusal(422, jsonlimits.NUL_MESSAGE)(scope, receive, send)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def install(app: Any, limit: int) -> None:
    app.add_middleware(BodyLimit, limit=limit)
    app.add_middleware(NulRefusal)
