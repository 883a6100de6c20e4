"""The tables the storage seam writes for the log (:class:`crisis.store.recorder.Tables`)."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from crisis.log.models import Incident, LogEntry, RawEvent
from crisis.sources.models import CorrelationState, DeadLetter, FeedPosition
from crisis.store.recorder import Recorder, Tables, recorder_for

TABLES = Tables(
    raw=RawEvent.__table__,  # type: ignore[attr-defined]
    incidents=Incident.__table__,  # type: ignore[attr-defined]
    entries=LogEntry.__table__,  # type: ignore[attr-defined]
    state=CorrelationState.__table__,  # type: ignore[attr-defined]
    dead=DeadLetter.__table__,  # type: ignore[attr-defined]
    positions=FeedPosition.__table__,  # type: ignore[attr-defined]
)


def recorder(conn: Connection) -> Recorder:
    """The storage adapter of ``conn``'s database, on these tables."""
    return recorder_for(conn.dialect.name, TABLES)
