"""The crisis log: append-only, hash-chained per incident, the system of record.

- :mod:`crisis.log.chain`: the pure chain builder (canonical bytes, digest, next head).
- :mod:`crisis.log.append`: the one append service; every writer of the log (the web, the
  stream pipeline, the playbook engine, the notifiers, situation reports) goes through it,
  and it alone takes an incident's write lock and chains entries.
- :mod:`crisis.log.verify`: recomputes every chain (``crisis log verify``).
- :mod:`crisis.log.evidence`: the raw events, stored once each.

Here: the errors the log's services raise, and the timeline read.
"""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis.domain import rules
from crisis.log.models import LogEntry


class RuleViolation(Exception):
    """A principle or rule refused the write. ``status`` is the HTTP code that fits."""

    def __init__(self, violations: list[rules.Violation], status: int = 422) -> None:
        super().__init__("; ".join(f"{v.field}: {v.message}" for v in violations))
        self.violations = violations
        self.status = status


class IncidentNotFound(LookupError):
    pass


async def timeline(session: AsyncSession, incident_id: str) -> list[LogEntry]:
    """The incident's entries in chain order (seq ascending)."""
    result = await session.exec(
        select(LogEntry).where(LogEntry.incident_id == incident_id).order_by(col(LogEntry.seq))
    )
    return list(result.all())
