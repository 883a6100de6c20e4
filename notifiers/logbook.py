"""Delivery receipts into the crisis log: ``message`` entries, many per lock.

The board renders delivery status per group from the log alone, so every attempt becomes an
entry of kind ``message`` with data ``{update_id, facts_hash, message_id, group, recipient,
channel, status, attempt, error, …}``; ``status`` is one of queued, sent, failed, timed_out,
held, acknowledged, blocked (exercise isolation). Delivering one update to 10,000 people
writes 20,000 entries, so they go through :func:`crisis.log.append.append_bulk`: every
incident locked once per transaction, the rows inserted in bulk (the rule checks of
``append`` do not apply to receipts).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from crisis.domain.rules import NOTIFIER_ACTOR
from crisis.domain.vocabulary import EntryKind
from crisis.log.append import EntrySpec, append_bulk


@dataclass
class Receipt:
    incident_id: str
    text: str
    data: dict[str, Any]
    actor: str = NOTIFIER_ACTOR


async def write(session: AsyncSession, receipts: Iterable[Receipt]) -> int:
    """Chain the receipts onto their incidents in the caller's transaction; returns the count.

    Each incident's receipts keep their order; incidents are written in id order.
    """
    by_incident: dict[str, list[Receipt]] = defaultdict(list)
    for receipt in receipts:
        by_incident[receipt.incident_id].append(receipt)
    kind = EntryKind.MESSAGE.value
    return await append_bulk(
        session,
        entries=[
            (incident_id, EntrySpec(kind, receipt.actor, receipt.text, receipt.data))
            for incident_id in sorted(by_incident)
            for receipt in by_incident[incident_id]
        ],
    )
