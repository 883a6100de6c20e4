"""Shared fixtures: a fresh database per test on SQLite and (when configured) PostgreSQL.

PostgreSQL runs when ``CRISIS_TEST_DATABASE_URL`` names a server (``.ci/run`` sets it where one
answers); otherwise those tests are skipped with that reason.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from crisis.accounts import service as accounts
from crisis.settings import Settings
from crisis.store.db import make_engine, migrate

PG_ENV = "CRISIS_TEST_DATABASE_URL"
#: The test clients' base URL, and the Origin a browser on it sends with each write: cookie
#: writes without it are refused (web/security.py).
BASE_URL = "http://testserver"


def _pg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://").replace(
        "postgres://", "postgresql://"
    )


def _with_database(url: str, name: str) -> str:
    base, _, _ = _pg_dsn(url).rpartition("/")
    return f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1)


async def _pg_admin(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_pg_dsn(url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database of the parametrised backend."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'crisis.db'}"
        return
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"{PG_ENV} is not set: PostgreSQL tests need a server")
    name = f"crisis_test_{secrets.token_hex(6)}"
    asyncio.run(_pg_admin(url, f'CREATE DATABASE "{name}"'))
    try:
        yield _with_database(url, name)
    finally:
        asyncio.run(_pg_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url)
    await migrate(eng)
    yield eng
    await eng.dispose()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(data_dir=tmp_path / "var", database_url=database_url, secret_key="test-secret")


def browser_client(app: Any) -> httpx.AsyncClient:
    """An httpx client on the app that sends the Origin header as a browser does."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=BASE_URL, headers={"Origin": BASE_URL}
    )


class ApiHarness:
    """An httpx client on the app plus helpers to make users with tokens."""

    def __init__(self, app: Any, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client
        self._scraper: dict[str, str] | None = None

    async def user(
        self, name: str, role: str, *, unit: str | None = None, region: str | None = None
    ) -> dict[str, str]:
        async with self.app.state.sessions() as session:
            await accounts.add_user(
                session, name=name, role=role, password="correct horse", unit=unit, region=region
            )
            token = await accounts.create_token(session, name=name)
            await session.commit()
        return {"Authorization": f"Bearer {token}"}

    @asynccontextmanager
    async def login(self, name: str) -> AsyncIterator[httpx.AsyncClient]:
        """A new browser-like client logged in as ``name`` (made by :meth:`user`)."""
        async with browser_client(self.app) as client:
            r = await client.post("/login", data={"username": name, "password": "correct horse"})
            assert r.status_code == 303, r.text
            yield client

    async def metrics(self) -> str:
        """The ``/metrics`` text, read as an admin (made on first use)."""
        if self._scraper is None:
            self._scraper = await self.user("metrics-admin", "admin")
        r = await self.client.get("/metrics", headers=self._scraper)
        assert r.status_code == 200, r.text
        return r.text


@asynccontextmanager
async def api_for(settings: Settings) -> AsyncIterator[ApiHarness]:
    """The web app of ``settings``, started, with a browser-like client on it."""
    from web.app import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app), browser_client(app) as client:
        yield ApiHarness(app, client)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[ApiHarness]:
    async with api_for(settings) as harness:
        yield harness
