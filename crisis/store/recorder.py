"""The storage seam of the hot paths: one interface, one adapter per database.

The stream pipeline, the append service's incident locks, the evidence store and the feed
relay reach the database only through a :class:`Recorder`: which events are stored
already, the incidents' heads, raw-event, incident and entry inserts, the correlation
state, dead letters and feed positions. :mod:`crisis.store.sqlite` and
:mod:`crisis.store.postgres` implement it; each database's tricks live in its adapter, so
the callers read the same on both.

Invariants every adapter keeps:
- Every operation runs on the caller's synchronous ``Connection`` inside the caller's
  transaction; none commits (``run`` hands out the connection and the caller commits).
- What is written and read back is exactly what the ORM writes and reads (dates, JSON,
  booleans): the columns' own types convert the values.
- ``insert_raw_events`` and ``insert_dead_letters`` are idempotent (ON CONFLICT DO NOTHING).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")
Key = tuple[str, str]

#: Rows or keys per statement.
CHUNK = 500

#: The incident columns ``incident_heads`` returns, in this order.
HEAD_COLUMNS = (
    "id",
    "unit",
    "status",
    "level",
    "security_political",
    "exercise",
    "head_seq",
    "head_hash",
)
#: The columns ``update_heads`` sets (besides ``closed_at`` where it is given).
HEAD_UPDATE_COLUMNS = ("head_seq", "head_hash", "level", "status")
#: Columns a rule's correction of the opening entry may set (a CAP Update): written only
#: for the rows of :meth:`update_heads` that carry them (not None).
CORRECTED_COLUMNS = ("severity", "title", "area")


class Tables(NamedTuple):
    """The tables the recorder writes; their owners (the log, the sources) hand them in."""

    raw: Table
    incidents: Table
    entries: Table
    state: Table
    dead: Table
    positions: Table


class Recorder(ABC):
    """The hot paths' storage operations on one database (see the module's invariants)."""

    def __init__(self, tables: Tables, engine: AsyncEngine | None = None) -> None:
        self.tables = tables
        self.engine = engine

    # -- running ---------------------------------------------------------------------------

    @abstractmethod
    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """``work(connection, *args)`` as one unit of work with the writes' locks available
        (needs the engine); ``work`` commits."""

    async def checkpoint(self) -> None:  # noqa: B027 (a no-op unless the database needs one)
        """Housekeeping the writes leave to run beside them."""

    async def dispose(self) -> None:  # noqa: B027 (a no-op unless the adapter opened any)
        """Release what the adapter opened itself (not the engine it was given)."""

    @abstractmethod
    def upsert(self, table: Table) -> Any:
        """This database's INSERT construct on ``table``, with ON CONFLICT clauses."""

    # -- locks -----------------------------------------------------------------------------

    @abstractmethod
    def take_locks(self, conn: Connection, keys: Sequence[int]) -> None:
        """Take the write locks of these lock keys (the append service's, in its order)
        until the transaction ends."""

    # -- reads -----------------------------------------------------------------------------

    @abstractmethod
    def existing_keys(self, conn: Connection, keys: Sequence[Key]) -> set[Key]:
        """The (source, id) pairs of ``keys`` already in ``raw_events``."""

    @abstractmethod
    def incident_heads(self, conn: Connection, ids: Sequence[str]) -> list[tuple[Any, ...]]:
        """The ``HEAD_COLUMNS`` of the incidents with these ids (missing ones left out)."""

    @abstractmethod
    def load_state(self, conn: Connection, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The correlation state of these keys, each value a fresh dict the caller may change."""

    def due_state(self, conn: Connection, now: float, limit: int) -> dict[str, dict[str, Any]]:
        """Up to ``limit`` correlation states whose timer is due at ``now``."""
        state = self.tables.state.c
        rows = conn.execute(select(state.key, state.data).where(state.due <= now).limit(limit))
        return {k: dict(d) for k, d in rows.all()}

    # -- writes ----------------------------------------------------------------------------

    @abstractmethod
    def insert_raw_events(
        self,
        conn: Connection,
        rows: Sequence[Mapping[str, Any]],
        texts: Sequence[str] | None = None,
    ) -> set[Key]:
        """Insert the events not stored yet; returns the pairs inserted. ``texts``: each
        row's envelope as JSON text that decodes to its ``envelope`` (stored as it is where
        the database keeps JSON as text)."""

    @abstractmethod
    def insert_incidents(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert new incidents (every column given)."""

    @abstractmethod
    def insert_entries(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Insert chained log entries and set each row's ``id`` (its feed position)."""

    @abstractmethod
    def update_heads(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Set ``HEAD_UPDATE_COLUMNS`` of the incidents ``rows`` name by ``id``, and
        ``closed_at`` of those rows that have one that is not None."""

    @abstractmethod
    def save_state(self, conn: Connection, state: Mapping[str, Mapping[str, Any]]) -> None:
        """Insert or replace these correlation states (their ``due`` timer with them)."""

    def insert_dead_letters(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Idempotent by fingerprint: a redelivered bad record stays one dead letter."""
        stmt = self.upsert(self.tables.dead).on_conflict_do_nothing(index_elements=["fingerprint"])
        conn.execute(stmt, parameters=list(rows))

    def save_position(self, conn: Connection, name: str, position: int, at: datetime) -> None:
        """Set the feed ``name``'s position (inserted the first time)."""
        stmt = self.upsert(self.tables.positions).values(
            name=name, position=position, updated_at=at
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["name"],
            set_={"position": stmt.excluded.position, "updated_at": stmt.excluded.updated_at},
        )
        conn.execute(stmt)


def open_recorder(engine: AsyncEngine, tables: Tables) -> Recorder:
    """The adapter of ``engine``'s database, able to ``run`` work on it."""
    return _adapter(engine.dialect.name)(tables, engine)


@cache
def recorder_for(dialect_name: str, tables: Tables) -> Recorder:
    """The adapter of a database by dialect name, for work on connections the caller has
    (no ``run``)."""
    return _adapter(dialect_name)(tables)


def _adapter(dialect_name: str) -> type[Recorder]:
    from crisis.store import postgres, sqlite  # the adapters import this module

    adapters: dict[str, type[Recorder]] = {
        "sqlite": sqlite.SqliteRecorder,
        "postgresql": postgres.PostgresRecorder,
    }
    try:
        return adapters[dialect_name]
    except KeyError:
        raise ValueError(f"no storage adapter for {dialect_name!r}") from None
