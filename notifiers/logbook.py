"""Delivery receipts into the crisis log: ``message`` entries, many per lock.

The board renders delivery status per group from the log alone, so every attempt becomes an
entry of kind ``message`` with data ``{update_id, facts_hash, group, recipient, channel,
status, attempt, error, …}``; ``status`` is one of queued, sent, failed, timed_out, held,
acknowledged, blocked (exercise isolation). Delivering one update to 10,000 people writes
20,000 entries, so they are chained under one lock per incident and transaction (the same
chain and lock as :func:`crisis.log.append_entry`, whose rule checks do not apply to
``message`` entries).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from crisis import log
from crisis.models import EntryKind, LogEntry
from crisis.sqltypes import utcnow


@dataclass
class Receipt:
    incident_id: str
    text: str
    data: dict[str, Any]
    actor: str = "system:notifiers"
    extra: dict[str, Any] = field(default_factory=dict)


async def write(session: AsyncSession, receipts: Iterable[Receipt]) -> list[LogEntry]:
    """Chain the receipts onto their incidents in the caller's transaction."""
    by_incident: dict[str, list[Receipt]] = defaultdict(list)
    for receipt in receipts:
        by_incident[receipt.incident_id].append(receipt)
    out: list[LogEntry] = []
    for incident_id in sorted(by_incident):
        incident = await log._lock_incident(session, incident_id)
        now = utcnow()
        for receipt in by_incident[incident_id]:
            entry = log._chain(
                incident,
                kind=EntryKind.MESSAGE.value,
                actor=receipt.actor,
                text_=receipt.text,
                data=log._json_safe(receipt.data),
                corrects=None,
                at=now,
            )
            out.append(entry)
        session.add(incident)
        session.add_all(out[-len(by_incident[incident_id]) :])
    await session.flush()
    return out
