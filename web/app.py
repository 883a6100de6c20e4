"""The web application factory: API, login, health. Nothing is built at import time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.middleware.sessions import SessionMiddleware

from crisis.accounts import service as accounts
from crisis.domain.organisation import load_organisation
from crisis.kafka import topics
from crisis.kafka.producer import OUTBOX_FILE, EventProducer, database_confirm
from crisis.settings import Settings
from crisis.sources.ratelimit import TokenBuckets
from crisis.store.db import make_engine, make_sessionmaker, migrate
from playbooks.exercises.runner import Runner, producer_send
from web import apidocs, auth, errors, limits, security
from web.api import (
    acknowledgements,
    audit,
    dlq,
    exercise_evaluation,
    exercises,
    health,
    incidents,
    ingest,
    lessons,
    notifications,
    openapi,
    replay,
    report_export,
    review_metrics,
    sitreps,
    units,
    violations,
)
from web.api.metrics import WebMetrics
from web.board import exercises as board_exercises
from web.board import history as board_history
from web.board import intake as board_intake
from web.board import lessons as board_lessons
from web.board import messages as board_messages
from web.board import pages as board
from web.board import review as board_review
from web.board import statistics as board_statistics
from web.board import ws as board_ws


def _ingest_producer(settings: Settings, engine: AsyncEngine) -> EventProducer | None:
    """The durable producer of the ingest endpoints; None (→ 503) without a Kafka bootstrap."""
    if not settings.kafka_bootstrap:
        return None
    return EventProducer(
        bootstrap=settings.kafka_bootstrap,
        outbox_path=settings.data_dir / OUTBOX_FILE,
        topic_partitions={topics.EVENTS: settings.events_partitions, topics.EVENTS_DLQ: 1},
        send_timeout=settings.ingest_send_timeout,
        max_request_size=settings.kafka_max_request_size,
        until_logged=settings.outbox_until_logged,
        confirm=database_confirm(engine),
    )


def _start_exercise_runner(
    app: FastAPI, producer: EventProducer | None, stop: asyncio.Event
) -> asyncio.Task[None] | None:
    """The exercise runner sends through the ingest's producer; without one, none runs."""
    if producer is None:
        return None
    organisation = app.state.organisation
    exercise_runner = Runner(
        app.state.sessions,
        org=organisation,
        send=producer_send(producer, known_units=organisation.units),
    )
    app.state.exercise_send = exercise_runner.send
    return asyncio.create_task(exercise_runner.run(stop), name="exercise-runner")


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
        producer = _ingest_producer(settings, engine)
        if producer is not None:
            await producer.start()
            app.state.producer = producer
            app.state.metrics.outbox_depth.set_function(producer.outbox_depth)
            app.state.metrics.unpublishable.producer = producer
        runner_stop = asyncio.Event()
        runner_task = _start_exercise_runner(app, producer, runner_stop)
        try:
            yield
        finally:
            runner_stop.set()
            if runner_task is not None:
                await runner_task
            if producer is not None:
                await producer.stop()
            feed = getattr(app.state, "board_feed", None)
            if feed is not None:
                await feed.close()
            await engine.dispose()
            app.state.login_gate.close()

    app = security.App(
        title="crisis — Kriminalomsorgen",
        description="Hendelses- og krisehåndtering: kriselogg, hendelser og varsling.",
        version="0.1.0",
        lifespan=lifespan,
        # web.apidocs serves them: behind a login in production mode, viewers fit for the CSP
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.organisation = organisation
    app.state.metrics = WebMetrics()
    app.state.producer = None  # set in the lifespan when CRISIS_KAFKA_BOOTSTRAP is set
    app.state.rate_limiter = TokenBuckets(
        rate=settings.ingest_rate_per_source, burst=settings.ingest_burst_per_source
    )
    app.state.login_gate = accounts.PasswordGate(
        concurrency=settings.login_concurrency, max_pending=settings.login_max_pending
    )
    # The cookie names a server-side session (crisis.accounts.WebSession), nothing else.
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.session_secret,
        session_cookie="crisis_session",
        same_site="strict",
        https_only=settings.cookie_secure,
        max_age=settings.session_max_age_seconds,
    )
    errors.install(app)
    limits.install(app, settings.api_max_body_bytes)

    @app.middleware("http")
    async def _draining(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        refused = health.draining_guard(request)
        return refused if refused is not None else await call_next(request)

    security.install(app, settings)  # outermost: a forged write is refused before it is read

    for module in (
        apidocs,
        health,
        auth,
        units,
        incidents,
        lessons,
        ingest,
        openapi,
        dlq,
        audit,
        violations,
        exercises,
        exercise_evaluation,
        notifications,
        acknowledgements,
        sitreps,
        review_metrics,
        report_export,
        board_exercises,
        board_history,
        board_intake,  # issue 19 overview: the report, event and CAP forms
        board_lessons,
        board,
        board_statistics,
        board_review,
        replay,
        board_ws,
    ):
        app.include_router(module.router)
    app.include_router(board_messages.router)  # notifications on the board, /inbox (notify)
    openapi.install(app)  # request bodies, the error shape and the security schemes
    return app
