"""What every bridge shares: its durable producer, its run loop and the logging set-up."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable

from crisis.kafka import topics
from crisis.kafka.producer import EventProducer, database_confirm
from crisis.settings import Settings
from crisis.store.db import make_engine


def bridge_producer(settings: Settings, name: str) -> EventProducer:
    """A producer with the outbox ``outbox-bridge-<name>.db`` in the data dir.

    With CRISIS_OUTBOX_UNTIL_LOGGED an event stays there until the crisis log's database holds it.
    """
    if not settings.kafka_bootstrap:
        raise SystemExit(f"crisis bridge {name}: set CRISIS_KAFKA_BOOTSTRAP (host:port of Kafka)")
    engine = make_engine(settings) if settings.outbox_until_logged else None
    return EventProducer(
        bootstrap=settings.kafka_bootstrap,
        outbox_path=settings.data_dir / f"outbox-bridge-{name}.db",
        topic_partitions={topics.EVENTS: settings.events_partitions, topics.EVENTS_DLQ: 1},
        send_timeout=settings.ingest_send_timeout,
        client_id=f"crisis-bridge-{name}",
        origin=f"bridge:{name}",
        max_request_size=settings.kafka_max_request_size,
        until_logged=settings.outbox_until_logged,
        confirm=database_confirm(engine) if engine is not None else None,
        on_stop=engine.dispose if engine is not None else None,
    )


async def serve(producer: EventProducer, run: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    """Start ``producer``, await ``run(stop)`` until SIGINT/SIGTERM sets ``stop``, then stop
    the producer (its outbox keeps what Kafka has not confirmed)."""
    await producer.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await run(stop)
    finally:
        await producer.stop()
    return 0


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
