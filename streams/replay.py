"""After the embedded broker lost everything: the reactions see again what they had not seen.

The relay publishes ``crisis.log`` from the database and keeps its position there; the
reactions consumer's offsets live in the broker. A memory-only broker that dies takes with it
every entry published but not yet reacted to, so an incident opened just before could get no
owner and no staff alarm. So the reactions note, in the run directory, the entry id up to which
everything has been reacted to and which broker they read it from (the incarnation ``crisis up``
writes at each broker start, ``crisis.heartbeat.BROKER_FILE``). An ingest worker that starts
against another broker moves the relay back to that id, and those entries are published again.
Reacting twice is harmless: the playbook engine evaluates the whole timeline and the
notification flow queues a plan once.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from sqlalchemy import select, update

from crisis.runtime.heartbeat import BROKER_FILE, read_json, write_json
from crisis.settings import Settings
from crisis.sources.models import FeedPosition
from crisis.store.db import make_engine

logger = logging.getLogger("crisis.streams")

POSITION_FILE = "reactions.position"
RELAY_NAME = "crisis.log"
POSITIONS = FeedPosition.__table__  # type: ignore[attr-defined]


def broker_incarnation(run_dir: Path) -> str | None:
    value = read_json(run_dir / BROKER_FILE)
    incarnation = value.get("incarnation") if value else None
    return incarnation if isinstance(incarnation, str) else None


def save_reacted(run_dir: Path, entry_id: int, incarnation: str | None) -> None:
    """Everything up to ``entry_id`` is reacted to (a lost write only means more again)."""
    with contextlib.suppress(OSError):
        write_json(run_dir / POSITION_FILE, {"reacted": entry_id, "broker": incarnation})


def load_reacted(run_dir: Path) -> tuple[int, str | None] | None:
    value = read_json(run_dir / POSITION_FILE)
    reacted = value.get("reacted") if value else None
    if not isinstance(reacted, int) or value is None:
        return None
    broker = value.get("broker")
    return reacted, broker if isinstance(broker, str) else None


def keeps_position(settings: Settings) -> bool:
    """Only for a memory-only broker, and one ``crisis.log`` partition (ids then arrive in
    order, so "everything up to" is one number)."""
    return settings.outbox_until_logged and settings.log_partitions == 1


async def rewind_relay_after_broker_loss(settings: Settings) -> int | None:
    """Move the relay back to what the reactions saw if they saw it on another broker.

    Returns the new position, or None when nothing moved.
    """
    if not keeps_position(settings):
        return None
    run_dir = settings.effective_run_dir
    saved = load_reacted(run_dir)
    if saved is None or saved[1] == broker_incarnation(run_dir):
        return None
    reacted = saved[0]
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
        "a new broker: publishing crisis.log again from entry %d, where the reactions had got"
        " to on the last one (the relay was at %d)",
        reacted,
        row[0],
    )
    return reacted
