"""The playbook engine in the worker: one committed entry → ``playbooks.engine.react``.

Fed by the ``reactions`` agent (``streams.reactions``), which consumes ``crisis.log``; an entry
the engine cannot handle is logged and skipped, never allowed to kill the agent. Entries
written by rules are ignored, so the engine never reacts to itself; like every committed entry
they reach ``crisis.log`` through the worker's log relay (publishing them here too would send
each twice). A clock re-evaluates open incidents because time-based escalation criteria (open
longer than T) need no new entry to become true.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import faust
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis.models import LogEntry, LogEntryPublic
from crisis.organisation import Organisation
from crisis.settings import Settings
from playbooks import engine
from playbooks.model import Library

logger = logging.getLogger(__name__)


def entry_json(entry: LogEntry) -> dict[str, Any]:
    """The ``crisis.log`` record of an entry (the public shape, JSON types)."""
    return LogEntryPublic.model_validate(entry, from_attributes=True).model_dump(mode="json")


async def react_to(
    sessions: Callable[[], AsyncSession],
    value: dict[str, Any],
    *,
    org: Organisation,
    library: Library,
) -> int:
    """Run the engine for one entry in its own transaction; returns how many entries it wrote.
    A failure is logged, never raised."""
    try:
        if engine.written_by_playbook(value):
            return 0
        async with sessions() as session:
            written = await engine.react(session, entry=value, org=org, library=library)
            await session.commit()
    except Exception:
        logger.exception(
            "playbooks: reacting to %s#%s failed; skipped",
            value.get("incident_id"),
            value.get("seq"),
        )
        return 0
    if written:
        logger.info(
            "playbooks: %s %s#%s -> %d entries",
            value.get("kind"),
            value.get("incident_id"),
            value.get("seq"),
            len(written),
        )
    return len(written)


def attach_playbook_clock(
    app: faust.App,
    settings: Settings,
    sessions: Callable[[], AsyncSession],
    *,
    org: Organisation,
    library: Library,
    tick_seconds: float | None = None,
) -> None:
    """The clock: time-based escalation criteria (open longer than T) need no new entry."""

    @app.timer(
        interval=tick_seconds or settings.playbook_tick_seconds,
        on_leader=True,
        name="playbooks-clock",
    )
    async def playbooks_clock() -> None:
        """One short transaction per open incident, so ingest never waits on a long tick."""
        try:
            async with sessions() as session:
                incident_ids = await engine.open_incident_ids(session)
        except Exception:
            logger.exception("playbooks: clock could not list open incidents; will retry")
            return
        for incident_id in incident_ids:
            await react_to(sessions, engine.clock_entry(incident_id), org=org, library=library)
