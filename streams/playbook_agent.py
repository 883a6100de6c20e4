"""The playbook agent: every committed log entry on ``crisis.log`` → ``playbooks.engine.react``.

Concurrency 1 (one writer, entries of an incident stay in order); an entry the engine cannot
handle is logged and skipped, never allowed to kill the agent. Entries written by rules are
ignored, so the engine never reacts to itself; like every committed entry they reach
``crisis.log`` through the worker's log relay (publishing them here too would send each twice).
A clock re-evaluates open incidents because time-based
escalation criteria (open longer than T) need no new entry to become true.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import faust
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis import topics
from crisis.models import LogEntry, LogEntryPublic
from crisis.organisation import Organisation, load_organisation
from crisis.settings import Settings
from playbooks import engine
from playbooks.loader import load_library
from playbooks.model import Library

logger = logging.getLogger(__name__)


def entry_json(entry: LogEntry) -> dict[str, Any]:
    """The ``crisis.log`` record of an entry (the public shape, JSON types)."""
    return LogEntryPublic.model_validate(entry, from_attributes=True).model_dump(mode="json")


def attach_playbook_agent(
    app: faust.App,
    settings: Settings,
    sessions: Callable[[], AsyncSession],
    org: Organisation | None = None,
    library: Library | None = None,
    *,
    tick_seconds: float | None = None,
) -> None:
    """Attach the agent and its clock to ``app`` (org/library default to the settings' files)."""
    org = org or load_organisation(settings.organisation)
    library = library or load_library(settings.playbooks, org=org)
    # Raw bytes, decoded here: a record that is not JSON is logged and skipped, never fatal.
    log_topic = app.topic(topics.LOG, value_serializer="raw")

    async def handle(raw: Any) -> None:
        try:
            value = json.loads(raw)
        except (TypeError, ValueError):
            value = None
        if not isinstance(value, dict) or not value.get("incident_id"):
            logger.warning("playbooks: not a log entry, skipped: %.200r", raw)
            return
        try:
            if engine.written_by_playbook(value):
                return
            async with sessions() as session:
                written = await engine.react(session, entry=value, org=org, library=library)
                await session.commit()
        except Exception:
            logger.exception(
                "playbooks: reacting to %s#%s failed; skipped",
                value.get("incident_id"),
                value.get("seq"),
            )
            return
        if written:
            logger.info(
                "playbooks: %s %s#%s -> %d entries",
                value.get("kind"),
                value.get("incident_id"),
                value.get("seq"),
                len(written),
            )

    @app.agent(log_topic, concurrency=1, name="playbooks")
    async def playbooks(stream: Any) -> None:
        async for value in stream:
            await handle(value)

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
            await handle(json.dumps(engine.clock_entry(incident_id)).encode())
