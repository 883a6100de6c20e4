"""The stream worker: topics ensured, Faust app built, agents attached, run until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sys
from collections.abc import Callable

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from crisis.domain.correlation import CorrelationConfig, Correlator
from crisis.domain.organisation import load_organisation
from crisis.kafka import topics
from crisis.kafka.broker import ensure_topics
from crisis.runtime.heartbeat import beat
from crisis.runtime.metrics import serve_metrics, with_process_metrics
from crisis.settings import WORKER_ROLES, Settings
from crisis.store.db import make_engine, make_sessionmaker, migrate
from streams.agents import attach_agents
from streams.app import CrisisFaustApp, create_faust_app
from streams.metrics import WorkerMetrics
from streams.pipeline import Pipeline, incident_id_factory
from streams.reactions import attach_reactions
from streams.relay import LogRelay, Publish
from streams.replay import rewind_relay_after_broker_loss

#: Allocations between two young-generation collections in a worker process (Python: 700).
GC_YOUNG_THRESHOLD = 10_000


def topic_partitions(settings: Settings) -> dict[str, int]:
    return {
        topics.EVENTS: settings.events_partitions,
        topics.EVENTS_DLQ: 1,
        topics.LOG: settings.log_partitions,
        topics.NOTIFICATIONS: settings.notifications_partitions,
    }


def correlation_config(settings: Settings) -> CorrelationConfig:
    return CorrelationConfig(
        window_seconds=settings.correlation_window_seconds,
        storm_window_seconds=settings.storm_window_seconds,
        storm_max_events=settings.storm_max_events,
        heartbeat_factor=settings.heartbeat_factor,
        media_window_seconds=settings.media_window_seconds,
        media_threshold=settings.media_threshold,
        media_key_weight=settings.media_key_weight,
    )


def build_pipeline(
    settings: Settings,
    metrics: WorkerMetrics | None = None,
    *,
    engine: AsyncEngine | None = None,
) -> tuple[Pipeline, Callable[[Publish], LogRelay]]:
    """The pipeline and a relay factory on one engine (shared by the worker and the bench)."""
    organisation = load_organisation(settings.organisation)
    # In the loop's thread (SQLite): the relay's reads and position writes skip aiosqlite's
    # thread hops; the batches themselves run on the pipeline's own sync connection. The
    # pipeline's timer checkpoints the WAL in a thread, so these commits never do.
    engine = engine or make_engine(settings, in_loop=True, autocheckpoint=False)
    sessions = make_sessionmaker(engine)

    def accountable(unit: str) -> tuple[str | None, str | None]:
        try:
            role, person = organisation.accountable_person(unit)
        except (KeyError, LookupError):
            return None, None
        return role, person.name

    correlator = Correlator(
        correlation_config(settings),
        unit_names={u.id: u.name for u in organisation.units.values()},
        new_id=incident_id_factory(),
    )
    pipeline = Pipeline(
        engine,
        correlator=correlator,
        known_units=set(organisation.units),
        accountable=accountable,
        metrics=metrics,
    )

    def relay_factory(publish: Publish) -> LogRelay:
        def published(n: int) -> None:
            if metrics is not None:
                metrics.published.inc(n)

        return LogRelay(sessions, publish, on_published=published)

    return pipeline, relay_factory


def build_worker(settings: Settings, role: str = "all") -> CrisisFaustApp:
    """The Faust app of one worker role.

    ``crisis up`` runs ``ingest`` and ``reactions`` as two processes, so the playbook engine's
    work (a timeline read per evaluation) never delays the next alarm's way into the log, and
    the two use both cores. They are separate consumer groups (Faust app ids) because each
    subscribes to different topics.
    """
    if role not in WORKER_ROLES:
        raise ValueError(f"unknown worker role {role!r}; one of {', '.join(WORKER_ROLES)}")
    assert settings.kafka_bootstrap
    app_id = "crisis-reactions" if role == "reactions" else "crisis-worker"
    app = create_faust_app(
        bootstrap=settings.kafka_bootstrap,
        app_id=app_id,
        data_dir=settings.data_dir / ("faust" if role != "reactions" else "faust-reactions"),
    )
    # No Faust agent subscribes to anything (the topics are read by streams.batches), so Faust's
    # own consumer would only join an empty group and poll it from its thread, taking the GIL
    # from the batches. Its timers, tasks and producer run without it.
    app.boot_strategy.enable_kafka_consumer = False
    metrics = WorkerMetrics()
    # A reactions worker has no counters of its own yet: only the process's CPU and memory.
    registry = metrics.registry if role != "reactions" else CollectorRegistry()
    with_process_metrics(registry)
    if role in ("all", "ingest"):
        pipeline, relay_factory = build_pipeline(settings, metrics)
        attach_agents(
            app,
            bootstrap=settings.kafka_bootstrap,
            pipeline=pipeline,
            relay_factory=relay_factory,
            metrics=metrics,
            batch_size=settings.worker_batch_size,
        )
    reactions_only = role == "reactions"
    serve_metrics(
        registry,
        port=settings.reactions_metrics_port if reactions_only else settings.worker_metrics_port,
        host=settings.worker_metrics_host,
        role=f"worker {role}",
        setting="CRISIS_REACTIONS_METRICS_PORT" if reactions_only else "CRISIS_WORKER_METRICS_PORT",
    )
    run_dir = settings.effective_run_dir
    beats = ("ingest", "reactions") if role == "all" else (role,)

    @app.timer(interval=1.0)
    async def _heartbeat() -> None:  # /healthz tells a live worker from a stuck or dead one
        for part in beats:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(beat, run_dir, part)

    if role in ("all", "reactions"):
        # In the loop's thread: a reaction's writes hold SQLite's one writer lock, and the
        # ingest waits on it (crisis.sqlite_inloop).
        engine = make_engine(settings, in_loop=True)
        attach_reactions(app, settings, make_sessionmaker(engine))
    return app


async def _migrate(settings: Settings) -> None:
    engine = make_engine(settings)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


def run_worker(role: str = "all") -> int:
    settings = Settings()
    if not settings.kafka_bootstrap:
        print(
            "crisis worker: set CRISIS_KAFKA_BOOTSTRAP (or use 'crisis up', which starts a broker)",
            file=sys.stderr,
        )
        return 2
    asyncio.run(ensure_topics(settings.kafka_bootstrap, topic_partitions(settings)))
    asyncio.run(_migrate(settings))
    if role in ("all", "ingest"):
        asyncio.run(rewind_relay_after_broker_loss(settings))
    logging.getLogger("crisis.streams").setLevel(logging.INFO)
    if role == "reactions" and settings.reactions_nice:
        # For operators who want the ingest first on a busy machine. Off by default: on
        # SQLite a niced reactions process is preempted while it holds the single writer,
        # and the ingest waits for it (docs/performance.md).
        os.nice(settings.reactions_nice)
    app = build_worker(settings, role)
    # Exempt what start-up built (Faust, SQLAlchemy, the organisation, the playbooks) from
    # garbage collection: it lives as long as the process, yet every full collection walked
    # it again, a pause in the middle of some batch.
    gc.collect()
    gc.freeze()
    # A batch allocates tens of thousands of short-lived objects, all reachable until it ends:
    # at the default 700 allocations a young collection ran dozens of times per batch, finding
    # nothing.
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    sys.argv = [sys.argv[0], "worker", "-l", "info", "--without-web"]
    app.main()
    return 0
