"""Flow: a playbook's notification plan (a ``message`` entry on ``crisis.log`` with
``data.message_type == "notification_request"``) becomes queued notifier updates.

This is where playbooks and notifiers meet, so it lives in ``streams`` (which may import
both); the ``reactions`` agent (``streams.reactions``) feeds it. It only writes the notifier's
outbox — delivery is the dispatcher's job, never done inside a consumer. Each plan item
becomes one update, keyed by its author ``rule:<playbook>/notify/<item>@<seq>`` so a
redelivered entry queues nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis.clock import as_utc, utcnow
from crisis.domain.rules import is_rule_actor
from crisis.domain.vocabulary import EntryKind
from crisis.log.models import Incident, LogEntry
from notifiers.config import NotifyConfig
from notifiers.models import NotifyUpdate
from notifiers.service import (
    NotifyError,
    db_translation_approvals,
    prepare_update,
    write_update,
)

logger = logging.getLogger(__name__)

#: A playbook's stakeholder group → the notifier's group kinds (DOMAIN.md: staff and leaders
#: include the safety and union representatives; media and public are told together).
GROUPS: dict[str, tuple[str, ...]] = {
    "staff": ("staff", "leaders", "safety"),
    "inmates": ("inmates",),
    "ministry": ("ministry",),
    "families": ("families",),
    "media": ("media", "public"),
    "unions": ("unions",),
    "cooperating_actors": ("cooperating",),
}

DEFAULT_NEXT_UPDATE = timedelta(hours=1)

#: What inmates are told from a plan: plain language and nothing internal (no task titles,
#: no cell or person); a person approves it (two-person rule) or sends better words.
INMATE_FACTS: dict[str, Any] = {
    "title": {"nb": "Beskjed fra enheten", "en": "Message from the unit"},
    "known": {
        "nb": "Det har skjedd en hendelse ved enheten. De ansatte håndterer den.",
        "en": "Something has happened at the unit. The staff are dealing with it.",
    },
    "actions": {
        "nb": "Følg beskjeder fra de ansatte. Du får vite mer når vi vet mer.",
        "en": "Follow the staff's instructions. You will hear more when we know more.",
    },
}


def is_plan(entry: Mapping[str, Any]) -> bool:
    """A playbook rule's plan; the log refuses one from anyone else, and so does this."""
    data = entry.get("data") or {}
    return (
        entry.get("kind") == EntryKind.MESSAGE.value
        and isinstance(data, Mapping)
        and is_rule_actor(str(entry.get("actor", "")), data)
        and data.get("message_type") == "notification_request"
        and isinstance(data.get("plan"), list)
    )


async def _facts(session: AsyncSession, incident: Incident) -> dict[str, str]:
    """What is known (the incident and its opening) and what is being done (its tasks)."""
    rows = (
        await session.exec(
            select(LogEntry)
            .where(LogEntry.incident_id == incident.id)
            .where(col(LogEntry.kind).in_([EntryKind.INCIDENT_OPENED.value, EntryKind.TASK.value]))
            .order_by(col(LogEntry.seq))
        )
    ).all()
    opening = next((e.text for e in rows if e.kind == EntryKind.INCIDENT_OPENED.value), "")
    tasks = [str(e.data.get("title", "")) for e in rows if e.kind == EntryKind.TASK.value]
    known = incident.title if not opening or opening.endswith(incident.title) else opening
    actions = "; ".join(t for t in tasks if t) or "Enheten håndterer hendelsen."
    return {"title": incident.title, "known": known, "actions": actions}


async def queue_plan(
    session: AsyncSession, *, entry: Mapping[str, Any], config: NotifyConfig
) -> list[NotifyUpdate]:
    """Queue one update per plan item not queued before; flush, the caller commits."""
    if not is_plan(entry):
        return []
    incident = await session.get(Incident, str(entry["incident_id"]))
    if incident is None:
        return []
    data = entry["data"]
    playbook = str(data.get("playbook", "playbook"))
    next_update = data.get("next_update_at")
    next_update_at = as_utc(next_update) if next_update else utcnow() + DEFAULT_NEXT_UPDATE
    facts = await _facts(session, incident)
    items = [
        (item, f"rule:{playbook}/notify/{item.get('id', item['group'])}@{entry.get('seq')}")
        for item in data["plan"]
        if isinstance(item, Mapping) and item.get("group") in GROUPS
    ]
    queued = set(
        (
            await session.exec(
                select(NotifyUpdate.author).where(
                    NotifyUpdate.incident_id == incident.id,
                    col(NotifyUpdate.author).in_([author for _, author in items]),
                )
            )
        ).all()
    )
    # Everything read and rendered before the first write: on SQLite that write takes the
    # database's single writer lock, and the ingest waits for it.
    approvals = await db_translation_approvals(session)
    prepared = []
    # The plan's own staff step tells the staff (the loader checks it comes no later than the
    # media's); the dispatcher holds the public until it has.
    staff_covered = any(item["group"] == "staff" for item, _ in items)
    for item, author in items:
        if author in queued:
            continue
        queued.add(author)
        send_at = as_utc(item["at"]) if item.get("at") else None
        immediate = send_at is None or send_at <= utcnow()
        alarm = item["group"] == "staff" and immediate
        try:
            prepared.append(
                await prepare_update(
                    session,
                    config=config,
                    incident_id=incident.id,
                    facts=INMATE_FACTS if item["group"] == "inmates" else facts,
                    groups=list(GROUPS[item["group"]]),
                    template="alarm" if alarm else "update",
                    kind="alarm" if alarm else "update",
                    next_update_at=max(next_update_at, send_at or next_update_at),
                    author=author,
                    exercise=incident.exercise,
                    send_at=None if immediate else send_at,
                    approvals=approvals,
                    staff_covered=staff_covered,
                )
            )
        except NotifyError as exc:
            logger.warning("notification plan of %s: %s", incident.id, exc)
    return [await write_update(session, p) for p in prepared]
