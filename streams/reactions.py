"""One consumer of ``crisis.log`` for everything that reacts to committed entries.

Two reactions share it: the playbook engine (tasks, contacts, escalation) and the notification
flow (a playbook's plan → queued notifier updates). Reading the change feed once instead of
once per reaction halves the per-record cost (read in fetched batches, as the ingest reads
``crisis.events``: ``streams.batches`` says why), and batching lets the playbook engine be
*coalesced*: it re-evaluates an incident from its whole timeline, so reacting once to the last
entry of an incident has exactly the effect of reacting to each of its entries in turn — and
costs one timeline read instead of hundreds while alarms storm in. An incident is therefore
re-evaluated at once when it is new here (its opening: owner, tasks and notifications cannot
wait) and whenever an entry other than one more source event or notifier message arrives (a
decision, a status change); those are coalesced: re-evaluated after ``reaction_min_interval``
(1 s), and while evaluations keep finding nothing to do the interval doubles up to
``reaction_max_interval`` (5 s) — more of the same rarely changes anything, and an
evaluation reads the whole timeline. What arrives meanwhile is kept as pending and a timer
flushes it. The playbook clock re-evaluates every open incident regardless.

Bad records are logged and skipped; a reaction that fails is logged and skipped (the clock
re-evaluates open incidents, so a transient failure of the playbook engine heals itself).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from crisis.domain.organisation import Organisation, load_organisation
from crisis.domain.vocabulary import EntryKind
from crisis.kafka import topics
from crisis.settings import Settings
from notifiers.config import NotifyConfig, load_notify_config
from playbooks import engine
from playbooks.loader import load_library
from playbooks.model import Library
from streams.app import CrisisFaustApp
from streams.batches import BatchConsumer
from streams.notification_flow import is_plan, queue_plan
from streams.playbook_agent import attach_playbook_clock, react_to
from streams.replay import broker_incarnation, keeps_position, save_reacted

logger = logging.getLogger(__name__)

#: The reactions' consumer group on ``crisis.log`` (not the Faust app id: see streams.batches).
REACTIONS_GROUP = "crisis-reactions-feed"

#: More of these rarely changes what a playbook does: coalesced (source events, and the
#: notifier's messages — queued, sent, failed — which arrive by the hundred per update).
COALESCED_KINDS = frozenset({EntryKind.SOURCE_EVENT.value, EntryKind.MESSAGE.value})


def decode_entries(raws: Iterable[Any]) -> list[dict[str, Any]]:
    """The log entries among raw ``crisis.log`` records; anything else is logged and dropped."""
    out = []
    for raw in raws:
        try:
            value = json.loads(raw)
        except (TypeError, ValueError):
            value = None
        if not isinstance(value, dict) or not value.get("incident_id"):
            logger.warning("crisis.log: not a log entry, skipped: %.200r", raw)
            continue
        out.append(value)
    return out


def plan_batch(
    entries: Iterable[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(notification plans in log order, one entry per incident for the playbook engine).

    The engine gets the *last* entry of each incident it should react to (entries written by
    playbook rules are skipped so the engine never feeds itself), incidents in the order their
    first entry appeared in the batch.
    """
    plans: list[dict[str, Any]] = []
    latest: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if is_plan(entry):
            plans.append(entry)
        if engine.written_by_playbook(entry):
            continue
        incident_id = str(entry["incident_id"])
        latest[incident_id] = entry  # keeps first-seen order, last entry wins
    return plans, list(latest.values())


class Reactions:
    """The two reactions over decoded batches, each in its own short transaction."""

    def __init__(
        self,
        sessions: Callable[[], AsyncSession],
        *,
        org: Organisation,
        library: Library,
        notify: NotifyConfig,
        min_interval: float = 1.0,
        max_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions = sessions
        self.org = org
        self.library = library
        self.notify = notify
        self.min_interval = min_interval
        self.max_interval = max(max_interval, min_interval)
        self.clock = clock
        self.pending: dict[str, dict[str, Any]] = {}
        self.urgent: set[str] = set()
        self.reacted_at: dict[str, float] = {}
        self.interval: dict[str, float] = {}
        self.reactions = 0  # playbook evaluations run (observable in tests)
        #: One reaction at a time in this process (plans, coalesced reactions and the
        #: clock's): a reaction that has taken SQLite's single writer lock must not wait on
        #: the event loop for another reaction's timeline read, because the ingest waits on
        #: it.
        self.lock = asyncio.Lock()
        self.timelines = engine.Timelines()

    async def handle(self, entries: list[dict[str, Any]]) -> None:
        plans, triggers = plan_batch(entries)
        # Plans first: a staff alarm queued for the dispatcher is the most urgent work here.
        for plan in plans:
            await self._queue(plan)
        for trigger in triggers:
            incident_id = str(trigger["incident_id"])
            self.pending[incident_id] = trigger
            if trigger.get("kind") not in COALESCED_KINDS:
                self.urgent.add(incident_id)
        await self.flush()

    def reacted_up_to(self, last_id: int) -> int:
        """The entry id up to which everything is reacted to: before any still pending."""
        waiting = [int(t["id"]) for t in self.pending.values() if "id" in t]
        return min([last_id, *(i - 1 for i in waiting)])

    async def flush(self) -> int:
        """React to every pending incident whose interval has passed; returns how many."""
        async with self.lock:
            now = self.clock()
            due = [
                incident_id
                for incident_id in self.pending
                if incident_id in self.urgent
                or now - self.reacted_at.get(incident_id, -1e18)
                >= self.interval.get(incident_id, self.min_interval)
            ]
            for incident_id in due:
                trigger = self.pending.pop(incident_id)
                self.urgent.discard(incident_id)
                self.reacted_at[incident_id] = self.clock()
                self.reactions += 1
                written = await react_to(
                    self.sessions,
                    trigger,
                    org=self.org,
                    library=self.library,
                    timelines=self.timelines,
                )
                self.interval[incident_id] = (
                    self.min_interval
                    if written
                    else min(
                        2 * self.interval.get(incident_id, self.min_interval / 2),
                        self.max_interval,
                    )
                )
            horizon = self.clock() - 2 * self.max_interval
            for incident_id in [i for i, t in self.reacted_at.items() if t < horizon]:
                del self.reacted_at[incident_id]  # bounded: only the recently evaluated
                self.interval.pop(incident_id, None)
            return len(due)

    async def _queue(self, entry: dict[str, Any]) -> None:
        try:
            async with self.lock, self.sessions() as session:
                updates = await queue_plan(session, entry=entry, config=self.notify)
                await session.commit()
        except Exception:
            logger.exception(
                "notification plan %s#%s failed; skipped",
                entry.get("incident_id"),
                entry.get("seq"),
            )
            return
        if updates:
            logger.info(
                "notification plan %s#%s -> %d updates queued",
                entry.get("incident_id"),
                entry.get("seq"),
                len(updates),
            )


def attach_reactions(
    app: CrisisFaustApp,
    settings: Settings,
    sessions: Callable[[], AsyncSession],
    org: Organisation | None = None,
    library: Library | None = None,
    *,
    batch_size: int = 1000,
    tick_seconds: float | None = None,
) -> Reactions:
    """Attach the ``reactions`` consumer (one: an incident's entries stay in order), the
    timer that flushes coalesced reactions, and the playbook clock to ``app``."""
    org = org or load_organisation(settings.organisation)
    library = library or load_library(settings.playbooks, org=org)
    reactions = Reactions(
        sessions,
        org=org,
        library=library,
        notify=load_notify_config(settings.notify_config),
        min_interval=settings.reaction_min_interval,
        max_interval=settings.reaction_max_interval,
    )

    run_dir = settings.effective_run_dir
    keep = keeps_position(settings)
    incarnation = broker_incarnation(run_dir)  # the broker this process reads (streams.replay)

    async def handle(records: Sequence[Any]) -> None:
        # Raw bytes, decoded here: a record that is not JSON is logged and skipped, never fatal.
        entries = decode_entries(r.value for r in records)
        await reactions.handle(entries)
        if keep and entries:
            reacted = reactions.reacted_up_to(max(int(e["id"]) for e in entries))
            await asyncio.to_thread(save_reacted, run_dir, reacted, incarnation)

    assert settings.kafka_bootstrap
    consumer = BatchConsumer.in_app(
        app,
        bootstrap=settings.kafka_bootstrap,
        topic=topics.LOG,
        group_id=REACTIONS_GROUP,
        handle=handle,
        max_records=batch_size,
    )

    @app.early_task
    async def react() -> None:
        await consumer.run()

    @app.timer(interval=max(settings.reaction_min_interval / 2, 0.05), name="reactions-flush")
    async def flush_reactions() -> None:
        await reactions.flush()

    attach_playbook_clock(
        app,
        settings,
        sessions,
        org=org,
        library=library,
        tick_seconds=tick_seconds,
        leader=lambda: consumer.owns(0),
        lock=reactions.lock,
        timelines=reactions.timelines,
    )
    return reactions
