"""The web application factory: API, login, health. Nothing is built at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.sessions import SessionMiddleware

from crisis.db import make_engine, make_sessionmaker, migrate
from crisis.organisation import load_organisation
from crisis.settings import Settings
from web import auth, board, board_ws, errors, health, incidents, sitreps, units
from web.metrics import WebMetrics


def create_app(settings: Settings | None = None, *, run_migrations: bool = True) -> FastAPI:
    settings = settings or Settings()
    organisation = load_organisation(settings.organisation)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings)
        if run_migrations:
            await migrate(engine)
        app.state.engine = engine
        app.state.sessions = make_sessionmaker(engine)
        try:
            yield
        finally:
            feed = getattr(app.state, "board_feed", None)
            if feed is not None:
                await feed.close()
            await engine.dispose()

    app = FastAPI(
        title="crisis — Kriminalomsorgen",
        description="Hendelses- og krisehåndtering: kriselogg, hendelser og varsling.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.organisation = organisation
    app.state.metrics = WebMetrics()
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.session_secret,
        session_cookie="crisis_session",
        same_site="strict",
        https_only=False,
        max_age=12 * 3600,
    )
    errors.install(app)
    for module in (health, auth, units, incidents, sitreps, board, board_ws):
        app.include_router(module.router)
    return app
