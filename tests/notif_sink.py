"""A real local HTTP sink for apprise ``json://`` targets (and the simulated SMS gateway).

It records every request (path, JSON body, arrival and answer time) and can answer a path
with an error status or after a delay. The real SMS gateway cannot run here; this sink
speaks its (JSON) API instead — that is the only simulated part.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Hit:
    path: str
    body: dict[str, Any]
    arrived: float
    answered: float = 0.0
    status: int = 200


@dataclass
class Sink:
    hits: list[Hit] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)  # path prefix → HTTP status
    delay: dict[str, float] = field(default_factory=dict)  # path prefix → seconds
    port: int = 0
    _runner: web.AppRunner | None = None

    async def start(self) -> Sink:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def _match(self, table: dict[str, Any], path: str) -> Any:
        for prefix, value in table.items():
            if path.startswith(prefix):
                return value
        return None

    async def _handle(self, request: web.Request) -> web.Response:
        hit = Hit(request.path, await request.json(), time.monotonic())
        self.hits.append(hit)
        delay = self._match(self.delay, request.path)
        if delay:
            await asyncio.sleep(delay)
        hit.status = self._match(self.status, request.path) or 200
        hit.answered = time.monotonic()
        return web.Response(status=hit.status, text="ok" if hit.status < 300 else "error")

    def paths(self) -> list[str]:
        return [h.path for h in self.hits]

    def to(self, prefix: str) -> list[Hit]:
        return [h for h in self.hits if h.path.startswith(prefix)]
