"""The stream worker: topics ensured, Faust app built, agents attached, run until SIGTERM."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import faust

from crisis import topics
from crisis.broker import ensure_topics
from crisis.db import make_engine, make_sessionmaker, migrate
from crisis.log import store_raw_event
from crisis.settings import Settings
from streams.app import create_faust_app
from streams.playbook_agent import attach_playbook_agent


def topic_partitions(settings: Settings) -> dict[str, int]:
    return {
        topics.EVENTS: settings.events_partitions,
        topics.EVENTS_DLQ: 1,
        topics.LOG: settings.log_partitions,
        topics.NOTIFICATIONS: settings.notifications_partitions,
    }


def build_worker(settings: Settings) -> faust.App:
    """The Faust app with the evidence-store agent attached."""
    assert settings.kafka_bootstrap
    app = create_faust_app(bootstrap=settings.kafka_bootstrap, data_dir=settings.data_dir / "faust")
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    events = app.topic(topics.EVENTS, value_serializer="json")

    @app.agent(events, concurrency=1)
    async def store_events(stream: Any) -> None:
        """Single writer (concurrency 1): at-least-once delivery plus idempotent inserts."""
        async for batch in stream.take(500, within=0.2):
            async with sessions() as session:
                for envelope in batch:
                    if isinstance(envelope, dict) and "source" in envelope and "id" in envelope:
                        await store_raw_event(session, envelope)
                await session.commit()

    attach_playbook_agent(app, settings, sessions)
    return app


async def _migrate(settings: Settings) -> None:
    engine = make_engine(settings)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


def run_worker() -> int:
    settings = Settings()
    if not settings.kafka_bootstrap:
        print(
            "crisis worker: set CRISIS_KAFKA_BOOTSTRAP (or use 'crisis up', which starts a broker)",
            file=sys.stderr,
        )
        return 2
    asyncio.run(ensure_topics(settings.kafka_bootstrap, topic_partitions(settings)))
    asyncio.run(_migrate(settings))
    app = build_worker(settings)
    sys.argv = [sys.argv[0], "worker", "-l", "info", "--without-web"]
    app.main()
    return 0
