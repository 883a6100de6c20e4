"""The playbook engine in the worker: one committed entry → ``playbooks.engine.react``.

Fed by the reactions consumer (``streams.reactions``), which reads ``crisis.log``; an entry
the engine cannot handle is logged and skipped, never allowed to kill the consumer. Entries
written by rules are ignored, so the engine never reacts to itself; like every committed entry
they reach ``crisis.log`` through the worker's log relay (publishing them here too would send
each twice). A clock re-evaluates open incidents because time-based escalation criteria (open
longer than T) need no new entry to become true.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import faust
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis.domain.organisation import Organisation
from crisis.log.models import LogEntry, LogEntryPublic
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
    timelines: engine.Timelines | None = None,
) -> int:
    """Run the engine for one entry in its own transaction; returns how many entries it wrote.
    A failure is logged, never raised."""
    try:
        if engine.written_by_playbook(value):
            return 0
        async with sessions() as session:
            written = await engine.react(
                session, entry=value, org=org, library=library, timelines=timelines
            )
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
    leader: Callable[[], bool] = lambda: True,
    lock: asyncio.Lock | None = None,
    timelines: engine.Timelines | None = None,
    full_pass_every: int = 10,
) -> None:
    """The clock: time-based escalation criteria (open longer than T) need no new entry.

    A pass evaluates the incidents whose time limits can matter now
    (``engine.incidents_due_by_time``); every ``full_pass_every``-th pass (the first
    included) evaluates every open incident, so a reaction that failed is made good within
    minutes whatever its playbook.

    It ticks only while ``leader()`` says so (the reactions: while this process reads partition
    0 of ``crisis.log``), so of several reactions processes one runs it; two at once would only
    cost time, as the engine writes nothing twice. Each evaluation holds ``lock`` (the
    reactions' own), so it never interleaves with another reaction of this process.

    A pass is spread over at most half the tick: after a storm, hundreds of open incidents
    evaluated back to back were seconds of one busy core beside the ingest, and the alarms
    arriving meanwhile waited.
    """
    interval = tick_seconds or settings.playbook_tick_seconds
    passes = 0

    @app.timer(interval=interval, name="playbooks-clock")
    async def playbooks_clock() -> None:
        """One short transaction per open incident, so ingest never waits on a long tick."""
        nonlocal passes
        if not leader():
            return
        try:
            async with sessions() as session:
                if passes % full_pass_every == 0:
                    incident_ids = await engine.open_incident_ids(session)
                else:
                    incident_ids = await engine.incidents_due_by_time(session, library=library)
            passes += 1
        except Exception:
            logger.exception("playbooks: clock could not list open incidents; will retry")
            return
        spacing = interval / 2 / max(len(incident_ids), 1)
        serial = lock or asyncio.Lock()
        for incident_id in incident_ids:
            started = time.monotonic()
            async with serial:
                await react_to(
                    sessions,
                    engine.clock_entry(incident_id),
                    org=org,
                    library=library,
                    timelines=timelines,
                )
            await asyncio.sleep(max(0.0, spacing - (time.monotonic() - started)))
