"""Delivery receipts into the crisis log: ``message`` entries, many per lock.

The board renders delivery status per group from the log alone, so every attempt becomes an
entry of kind ``message`` with data ``{update_id, facts_hash, message_id, group, recipient,
channel, status, attempt, error, …}``; ``status`` is one of queued, sent, failed, timed_out,
held, acknowledged, blocked (exercise isolation). Delivering one update to 10,000 people
writes 20,000 entries, so they are chained under one lock per incident and transaction and
inserted in bulk — the same chain, digest and lock as :func:`crisis.log.append_entry` (whose
rule checks do not apply to ``message`` entries).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis import log
from crisis.chain import entry_digest, format_time
from crisis.models import EntryKind, LogEntry
from crisis.rules import NOTIFIER_ACTOR
from crisis.sqltypes import utcnow


@dataclass
class Receipt:
    incident_id: str
    text: str
    data: dict[str, Any]
    actor: str = NOTIFIER_ACTOR


async def write(session: AsyncSession, receipts: Iterable[Receipt]) -> int:
    """Chain the receipts onto their incidents in the caller's transaction; returns the count."""
    by_incident: dict[str, list[Receipt]] = defaultdict(list)
    for receipt in receipts:
        by_incident[receipt.incident_id].append(receipt)
    table = LogEntry.__table__  # type: ignore[attr-defined]
    kind = EntryKind.MESSAGE.value
    written = 0
    for incident_id in sorted(by_incident):
        incident = await log._lock_incident(session, incident_id)
        now = utcnow()
        at = format_time(now)  # what the digest covers (entry_digest formats it the same way)
        seq, prev = incident.head_seq, incident.head_hash
        rows: list[dict[str, Any]] = []
        for receipt in by_incident[incident_id]:
            seq += 1
            fields: dict[str, Any] = {
                "incident_id": incident_id,
                "seq": seq,
                "kind": kind,
                "at": at,
                "actor": receipt.actor,
                "text": receipt.text,
                "data": _json_safe(receipt.data),
                "exercise": incident.exercise,
                "corrects": None,
                "prev_hash": prev,
            }
            prev = entry_digest(fields)
            fields["at"], fields["hash"] = now, prev
            rows.append(fields)
        await session.exec(insert(table), params=rows)
        incident.head_seq, incident.head_hash = seq, prev
        session.add(incident)
        written += len(rows)
    await session.flush()
    return written


_PLAIN = (str, int, float, bool, type(None))


def _json_safe(data: dict[str, Any]) -> dict[str, Any]:
    """:func:`crisis.log._json_safe` without the JSON round trip for flat, plain data.

    A receipt's data is almost always flat str/int/None values, which the JSON column gives
    back unchanged; anything else (a datetime, a nested value, a subclass such as an enum
    member, a non-finite float) takes the round trip.
    """
    if not data:
        return {}
    for key, value in data.items():
        if type(key) is not str or type(value) not in _PLAIN:
            return log._json_safe(data)
        if type(value) is float and not math.isfinite(value):
            return log._json_safe(data)
    return dict(data)
