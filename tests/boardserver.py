"""A real web server for board tests: ``create_app(settings)`` under uvicorn in a subprocess.

The test process prepares the database (migrations, users, tokens) and then talks to the
server over HTTP and websockets, as a browser does. Output goes to a file in the test's
tmp dir, shown when a test fails.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from crisis.accounts import service as accounts
from crisis.kafka.broker import free_port
from crisis.store.db import make_engine, make_sessionmaker, migrate
from notifiers import logbook

T = TypeVar("T")
PASSWORD = "correct horse"


def run_async(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion in a fresh thread: Playwright's sync API keeps an
    event loop running in the test's thread, so ``asyncio.run`` cannot be used there."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result(timeout=120)


SERVE = """
import sys, uvicorn
from crisis.settings import Settings
from web.app import create_app
uvicorn.run(create_app(Settings()), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            ws_ping_interval=None)
"""


async def _prepare(
    url: str, users: list[tuple[str, str, str | None, str | None]]
) -> dict[str, str]:
    engine = make_engine(url)
    try:
        await migrate(engine)
        tokens = {}
        async with make_sessionmaker(engine)() as session:
            for name, role, unit, region in users:
                await accounts.add_user(
                    session, name=name, role=role, password=PASSWORD, unit=unit, region=region
                )
                tokens[name] = await accounts.create_token(session, name=name)
            await session.commit()
        return tokens
    finally:
        await engine.dispose()


async def write_receipt(url: str, incident_id: str, text: str, data: dict[str, Any]) -> None:
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            await logbook.write(session, [logbook.Receipt(incident_id, text, data)])
            await session.commit()
    finally:
        await engine.dispose()


@dataclass
class BoardServer:
    base: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str]
    port: int
    tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    def api(self, method: str, path: str, name: str, **kw: Any) -> httpx.Response:
        with httpx.Client(base_url=self.base, timeout=15) as client:
            return client.request(method, path, headers=self.headers(name), **kw)

    def receipt(self, incident_id: str, text: str, **data: Any) -> None:
        """A delivery receipt as the notifiers write it (the API refuses them from people)."""
        run_async(lambda: write_receipt(self.env["CRISIS_DATABASE_URL"], incident_id, text, data))

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def start(self) -> None:
        """(Re)start on the same port and database: what a restart looks like to a browser."""
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", SERVE, str(self.port)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"web server exited:\n{self.output()}")
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=2) as r:  # noqa: S310
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"web server did not answer within 60 s:\n{self.output()}")


DEFAULT_USERS: list[tuple[str, str, str | None, str | None]] = [
    ("op", "operator", "agder-froland", None),
    ("op-ringerike", "operator", "ringerike", None),
    ("kdi", "kdi", None, None),
    ("jd", "ministry", None, None),
    ("komm", "communication", None, None),
]


def start_board_server(
    tmp_path: Path,
    database_url: str,
    users: list[tuple[str, str, str | None, str | None]] | None = None,
    **extra_env: str,
) -> BoardServer:
    tokens = run_async(lambda: _prepare(database_url, users or DEFAULT_USERS))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRISIS_")}
    env.update(
        CRISIS_DATA_DIR=str(tmp_path / "var"),
        CRISIS_DATABASE_URL=database_url,
        CRISIS_SECRET_KEY="board-test-secret",
    )
    env.update(extra_env)
    port = free_port()
    server = BoardServer(
        base=f"http://127.0.0.1:{port}",
        proc=None,  # type: ignore[arg-type]
        log_path=tmp_path / "web.log",
        env=env,
        port=port,
        tokens=tokens,
    )
    server.start()
    return server
