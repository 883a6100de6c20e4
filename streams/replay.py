"""After the embedded broker lost everything: the reactions see again what they had not seen.

The relay publishes ``crisis.log`` from the database and keeps its position there; the
reactions consumer's offsets live in the broker. A memory-only broker that dies takes with it
every entry published but not yet reacted to, so an incident opened just before could get no
owner and no staff alarm. The reactions therefore note, in the run directory, the entry id up
to which everything has been reacted to; an ingest worker that starts against an empty
``crisis.log`` (a fresh broker) moves the relay back to it, and those entries are published
again. Reacting twice is harmless: the playbook engine evaluates the whole timeline and the
notification flow queues a plan once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import select, update

from crisis import topics
from crisis.db import make_engine
from crisis.heartbeat import read_json, write_json
from crisis.settings import Settings
from crisis.stream_models import FeedPosition

logger = logging.getLogger("crisis.streams")

POSITION_FILE = "reactions.position"
RELAY_NAME = "crisis.log"
POSITIONS = FeedPosition.__table__  # type: ignore[attr-defined]


def save_reacted(run_dir: Path, entry_id: int) -> None:
    """Everything up to ``entry_id`` has been reacted to (a lost write only means more again)."""
    with contextlib.suppress(OSError):
        write_json(run_dir / POSITION_FILE, {"reacted": entry_id})


def load_reacted(run_dir: Path) -> int | None:
    value = read_json(run_dir / POSITION_FILE)
    reacted = value.get("reacted") if value else None
    return reacted if isinstance(reacted, int) else None


async def log_topic_is_empty(bootstrap: str) -> bool:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await asyncio.wait_for(consumer.start(), 10.0)
    try:
        partitions = consumer.partitions_for_topic(topics.LOG) or set()
        if not partitions:
            return True
        ends = await consumer.end_offsets([TopicPartition(topics.LOG, p) for p in partitions])
        return all(offset == 0 for offset in ends.values())
    finally:
        await consumer.stop()


async def rewind_relay_after_broker_loss(settings: Settings) -> int | None:
    """Move the relay back to what the reactions saw when ``crisis.log`` came back empty.

    Only with a memory-only broker (``outbox_until_logged``); returns the new position or None.
    """
    if not settings.outbox_until_logged or not settings.kafka_bootstrap:
        return None
    reacted = load_reacted(settings.effective_run_dir)
    if reacted is None or not await log_topic_is_empty(settings.kafka_bootstrap):
        return None
    engine = make_engine(settings)
    try:
        async with engine.begin() as conn:
            row = (
                await conn.execute(
                    select(POSITIONS.c.position).where(POSITIONS.c.name == RELAY_NAME)
                )
            ).first()
            if row is None or row[0] <= reacted:
                return None
            await conn.execute(
                update(POSITIONS).where(POSITIONS.c.name == RELAY_NAME).values(position=reacted)
            )
    finally:
        await engine.dispose()
    logger.warning(
        "crisis.log is empty (the broker restarted): publishing again from entry %d, "
        "where the reactions had got to (the relay was at %d)",
        reacted,
        row[0],
    )
    return reacted
