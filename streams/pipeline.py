"""The hot path: one batch of Kafka records → one database transaction.

Per batch: validate every record (bad ones become dead letters with the reason), insert the
valid ones into ``raw_events`` with ON CONFLICT DO NOTHING RETURNING (which tells which are
new), load the correlation state and incident heads they need, run the pure rules of
:mod:`crisis.correlation` over the *new* events only, then bulk-insert incidents and chained
log entries and commit. A redelivered batch finds every event already stored, so it changes
nothing: at-least-once delivery, exactly-once effect.

Nothing here knows Faust: the agent hands in :class:`Record` s, which keeps the pipeline
testable and benchmarkable on its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import bindparam, insert, select, tuple_, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from crisis.clock import utcnow
from crisis.domain.correlation import (
    Action,
    AddEntry,
    Correlator,
    Event,
    IncidentView,
    OpenIncident,
    epoch,
)
from crisis.domain.vocabulary import EntryKind, Status
from crisis.log.append import (
    EntrySpec,
    chain_rows,
    json_safe,
    new_incident_id,
    take_incident_locks,
    take_sqlite_writer,
)
from crisis.log.chain import GENESIS, HASHED_FIELDS, Head, format_time
from crisis.log.models import Incident, LogEntry, RawEvent
from crisis.sources.events import EventError, validate_event
from crisis.sources.models import CorrelationState, DeadLetter
from crisis.store import errors as dberrors
from crisis.store.db import checkpoint_sqlite, make_sync_sqlite_engine, upsert_insert
from streams.metrics import WorkerMetrics
from streams.relay import entry_record
from streams.sqlite_rows import SqliteRows

logger = logging.getLogger("crisis.streams")

T = TypeVar("T")

ACTOR = "system:streams"
#: Seconds a batch waits for SQLite's writer lock before its "database is locked" error
#: (a transient one: the batch is retried).
WRITER_WAIT = 30.0
_CHUNK = 500

INCIDENTS = Incident.__table__  # type: ignore[attr-defined]
ENTRIES = LogEntry.__table__  # type: ignore[attr-defined]
RAW = RawEvent.__table__  # type: ignore[attr-defined]
STATE = CorrelationState.__table__  # type: ignore[attr-defined]
DEAD = DeadLetter.__table__  # type: ignore[attr-defined]


def log_event(message: str, **fields: Any) -> None:
    """Structured log line: JSON with the event's id/source where there is one."""
    logger.info(json.dumps({"msg": message, **fields}, default=str, ensure_ascii=False))


@dataclass(frozen=True)
class Record:
    """One Kafka record as the pipeline sees it."""

    value: bytes | str | dict[str, Any] | None
    timestamp: float | None = None  # Kafka record timestamp, epoch seconds
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None


@dataclass
class BatchResult:
    consumed: int = 0
    new: int = 0
    duplicates: int = 0
    dead: list[dict[str, Any]] = field(default_factory=list)
    repeated: list[str] = field(default_factory=list)  # types of in-batch duplicates
    opened: list[str] = field(default_factory=list)  # incident types
    entries: int = 0
    committed_at: float = 0.0
    #: The committed entries as ``crisis.log`` records (id, key, value), for the relay to
    #: publish from memory instead of reading them back.
    log_records: list[tuple[int, bytes, bytes]] = field(default_factory=list)


def is_transient(exc: BaseException) -> bool:
    """Database unreachable, restarting, locked or full (``crisis.dberrors`` says which
    errors, however wrapped): retry the whole batch with back-off, never dead-letter its
    events. Anything else is the data's fault: the batch is retried event by event and only
    the event that still fails on its own is dead-lettered."""
    return dberrors.is_transient(exc)


def _decode(value: bytes | str | dict[str, Any] | None) -> Any:
    if isinstance(value, dict):
        return value
    if value is None:
        raise ValueError("empty record (no value)")
    return json.loads(value)


def _as_text(value: bytes | str | dict[str, Any] | None, decoded: Any) -> str:
    """The record's JSON text as it arrived, if it can be stored as it is (UTF-8 bytes without
    a byte-order mark, which is what ``json.loads`` reads back); else ``decoded`` re-encoded."""
    if not isinstance(value, bytes):
        return json.dumps(decoded)
    try:
        text_ = value.decode("utf-8")
    except UnicodeDecodeError:
        return json.dumps(decoded)
    return json.dumps(decoded) if text_.startswith("\ufeff") else text_


def _raw_text(value: bytes | str | dict[str, Any] | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return json.dumps(value, default=str, ensure_ascii=False)
    return value


class _Raced(Exception):
    """Another writer stored one of the batch's events meanwhile: redo the batch."""


class Pipeline:
    """Validates, stores, correlates and commits batches; also runs the timer checks."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        correlator: Correlator,
        known_units: set[str] | None,
        accountable: Callable[[str], tuple[str | None, str | None]] | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.engine = engine
        # SQLite: the batch's statements run on a plain sqlite3 connection (no hand-off to
        # aiosqlite's thread per statement). PostgreSQL: the same code on asyncpg through
        # run_sync.
        self._sync_engine = sync_twin(engine)
        self._rows = None if self._sync_engine is None else _Rows(self._sync_engine.dialect)
        self.correlator = correlator
        self.known_units = known_units
        self.accountable = accountable or (lambda _unit: (None, None))
        self.metrics = metrics

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """``work(connection, *args)`` as one unit on this pipeline's database."""
        if self._sync_engine is not None:
            return await self._run_sqlite(work, *args)
        async with self.engine.connect() as conn:
            return await conn.run_sync(work, *args)

    async def _run_sqlite(self, work: Callable[..., T], *args: Any) -> T:
        """SQLite: ``work`` on a plain sqlite3 connection, run in the event loop's own thread
        once SQLite's single writer lock is ours.

        In the loop's thread, not a worker thread: a batch there competed for the GIL with
        the loop (fetches, acks, the relay) at every sqlite3 call, and took several times its
        own CPU time. A batch blocks the loop for its own duration only, far inside the
        consumer's session timeout. Waiting for the lock does not block it: the lock is
        tried every ~1 ms (``take_sqlite_writer``) with the loop free in between.
        """
        assert self._sync_engine is not None
        deadline = time.monotonic() + WRITER_WAIT
        while True:
            with self._sync_engine.connect() as conn:
                if take_sqlite_writer(conn, wait=time.monotonic() > deadline):
                    return work(conn, *args)
            await asyncio.sleep(0.001)

    async def checkpoint(self) -> None:
        """SQLite: copy the WAL into the database in a thread, beside the batches (their own
        commits never do, so no batch pays for it); a no-op elsewhere."""
        if self._sync_engine is not None:
            await asyncio.to_thread(checkpoint_sqlite, self._sync_engine)

    async def store_dead_letters(self, rows: list[dict[str, Any]]) -> None:
        def work(conn: Connection) -> None:
            insert_dead_letters(conn, rows)
            conn.commit()

        await self.run(work)

    # -- the batch -------------------------------------------------------------------------

    async def process(self, records: Sequence[Record]) -> BatchResult:
        """Process and commit one batch; raises only on database trouble (caller retries)."""
        started = time.monotonic()
        result = BatchResult(consumed=len(records))
        valid: list[tuple[Any, Record]] = []
        seen: set[tuple[str, str]] = set()
        originals: dict[tuple[str, str], Any] = {}
        for record in records:
            try:
                decoded = _decode(record.value)
                envelope = validate_event(decoded, known_units=self.known_units)
            except EventError as exc:
                result.dead.append(self._dead(record, str(exc), exc.errors))
                continue
            except Exception as exc:  # bad JSON, bad bytes, anything: dead-letter, go on
                result.dead.append(self._dead(record, f"unreadable event: {exc}", []))
                continue
            if envelope.key in seen:
                result.duplicates += 1
                result.repeated.append(envelope.short_type)
                continue
            seen.add(envelope.key)
            originals[envelope.key] = decoded
            valid.append((envelope, record))

        for attempt in range(3):
            try:
                new_keys = await self.run(self._transaction, valid, originals, result)
                break
            except _Raced:
                if attempt == 2:
                    raise
                result = BatchResult(
                    consumed=len(records), dead=result.dead, repeated=result.repeated
                )
        result.committed_at = time.time()
        self._observe(result, valid, new_keys, started)
        return result

    def _transaction(
        self,
        conn: Connection,
        valid: Sequence[tuple[Any, Record]],
        originals: Mapping[tuple[str, str], Any],
        result: BatchResult,
    ) -> set[tuple[str, str]]:
        """One transaction: dead letters, which events are new, rules, rows (on SQLite the
        runner has taken the writer lock first, so no head can change under us)."""
        if result.dead:
            insert_dead_letters(conn, [d["row"] for d in result.dead])
        existing = self._existing(conn, [env.key for env, _ in valid])
        fresh = [(env, rec) for env, rec in valid if env.key not in existing]
        result.new = len(fresh)
        result.duplicates += len(valid) - len(fresh)
        incident_of: dict[tuple[str, str], str] = {}
        if fresh:
            incident_of = self._correlate_and_write(conn, fresh, result)
            inserted = self._insert_raw(conn, fresh, originals, incident_of)
            if inserted != {env.key for env, _ in fresh}:
                conn.rollback()
                raise _Raced
        conn.commit()
        return {env.key for env, _ in fresh}

    def _dead(self, record: Record, reason: str, errors: list[dict[str, Any]]) -> dict[str, Any]:
        raw = _raw_text(record.value)
        parsed: Any = None
        try:
            parsed = _decode(record.value)
        except Exception:  # noqa: S110 (unreadable: the raw text is kept as it is)
            pass
        get = parsed.get if isinstance(parsed, dict) else (lambda _k: None)
        row = {
            "source": _str_or_none(get("source"), 500),
            "event_id": _str_or_none(get("id"), 200),
            "type": _str_or_none(get("type"), 200),
            "unit": _str_or_none(get("unit") or get("subject"), 80),
            "reason": reason,
            "errors": json_safe({"e": errors})["e"],
            "raw": raw,
            "topic": record.topic,
            "kafka_partition": record.partition,
            "kafka_offset": record.offset,
            "fingerprint": hashlib.sha256(
                f"{record.topic}|{record.partition}|{record.offset}|{raw}".encode()
            ).hexdigest(),
            "received_at": utcnow(),
        }
        log_event(
            "event dead-lettered",
            event_id=row["event_id"],
            source=row["source"],
            type=row["type"],
            reason=reason,
        )
        return {"row": row, "key": row["unit"], "value": self._dlq_value(row)}

    @staticmethod
    def _dlq_value(row: Mapping[str, Any]) -> bytes:
        out = {k: v for k, v in row.items() if k not in ("received_at",)}
        out["received_at"] = format_time(row["received_at"])
        return json.dumps(out, ensure_ascii=False).encode()

    def _existing(self, conn: Connection, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """The (source, id) pairs already stored.

        SQLite answers ``(source, id) IN (...)`` by scanning the whole key index (EXPLAIN
        QUERY PLAN), so every batch got slower as the table grew. There the pairs are joined
        as a VALUES list, one primary-key lookup each, in plain SQL: a VALUES construct is
        compiled afresh for every batch.
        """
        found: set[tuple[str, str]] = set()
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            if conn.dialect.name == "sqlite":
                pairs = ", ".join(["(?, ?)"] * len(chunk))  # placeholders only
                rows = conn.exec_driver_sql(
                    f"WITH wanted(source, id) AS (VALUES {pairs})"  # noqa: S608
                    " SELECT r.source, r.id FROM raw_events AS r"
                    " JOIN wanted AS w ON r.source = w.source AND r.id = w.id",
                    tuple(part for key in chunk for part in key),
                )
            else:
                rows = conn.execute(
                    select(RAW.c.source, RAW.c.id).where(tuple_(RAW.c.source, RAW.c.id).in_(chunk))
                )
            found.update((s, i) for s, i in rows.all())
        return found

    def _insert_raw(
        self,
        conn: Connection,
        fresh: Sequence[tuple[Any, Record]],
        originals: Mapping[tuple[str, str], Any],
        incident_of: Mapping[tuple[str, str], str],
    ) -> set[tuple[str, str]]:
        """Insert the new events (with their incident); returns the pairs actually inserted.

        The envelope is kept as it arrived (the decoded JSON): the evidence, not our reading.
        """
        now = utcnow()
        dialect = conn.dialect.name
        ins = upsert_insert(dialect)
        rows = [
            {
                "source": env.source,
                "id": env.id,
                "type": env.type,
                "unit": env.unit,
                "exercise": env.exercise,
                "time": env.time,
                "received_at": now,
                "incident_id": incident_of.get(env.key),
                "envelope": originals[env.key],
            }
            for env, _ in fresh
        ]
        if self._rows is not None:
            # The envelope's text as it arrived (it decodes to ``originals``): no re-encoding.
            for row, (_, record) in zip(rows, fresh, strict=True):
                row["envelope"] = _as_text(record.value, row["envelope"])
            inserted = self._rows.raw.insert(
                conn,
                _RAW_COLUMNS,
                rows,
                tail=" ON CONFLICT (source, id) DO NOTHING",
                returning=("source", "id"),
                encoded=("envelope",),
            )
            return {(s, i) for s, i in inserted}
        # executemany + RETURNING: SQLAlchemy's "insertmanyvalues" batches the rows into
        # multi-row INSERTs from one cached compilation; conflicting rows return nothing.
        stmt = (
            ins(RAW)
            .on_conflict_do_nothing(index_elements=["source", "id"])
            .returning(RAW.c.source, RAW.c.id)
        )
        result = conn.execute(stmt, parameters=rows)
        return {(s, i) for s, i in result.all()}

    def _event(self, env: Any, record: Record) -> Event:
        if env.time is not None:
            t = epoch(env.time)
        elif record.timestamp is not None:
            t = float(record.timestamp)
        else:
            t = time.time()
        return Event(
            source=env.source,
            id=env.id,
            type=env.short_type,
            unit=env.unit or "",
            time=t,
            data=env.data,
            exercise=env.exercise,
            received=time.time(),
        )

    def _correlate_and_write(
        self, conn: Connection, fresh: Sequence[tuple[Any, Record]], result: BatchResult
    ) -> dict[tuple[str, str], str]:
        events = [self._event(env, rec) for env, rec in fresh]
        keys = sorted({k for ev in events for k in self.correlator.state_keys(ev)})
        state = self._load_state(conn, keys)
        mentioned = {str(i) for ev in events for i in ev.data.get("mentions_incidents", [])}
        writer = _Writer(conn, self.accountable, self._rows)
        writer.load(_incident_refs(state.values()) | mentioned)
        touched: set[str] = set(keys)
        incident_of: dict[tuple[str, str], str] = {}
        for ev in events:
            snapshot = {k: dict(state[k]) for k in self.correlator.state_keys(ev) if k in state}
            try:
                actions = self.correlator.handle(ev, state, writer.views)
            except Exception as exc:  # a rule bug must not stop the stream
                for k in self.correlator.state_keys(ev):
                    if k in snapshot:
                        state[k] = snapshot[k]
                    else:
                        state.pop(k, None)
                result.dead.append(
                    self._dead(
                        Record(json.dumps({"source": ev.source, "id": ev.id, "type": ev.type})),
                        f"correlation failed: {exc!r}",
                        [],
                    )
                )
                insert_dead_letters(conn, [result.dead[-1]["row"]])
                continue
            for action in actions:
                writer.apply(action)
                if isinstance(action, OpenIncident):
                    result.opened.append(action.type)
                    log_event(
                        "incident opened",
                        incident=action.incident_id,
                        type=action.type,
                        unit=action.unit,
                        event_id=ev.id,
                        source=ev.source,
                    )
                if action.event is not None:
                    incident_of.setdefault(action.event, action.incident_id)
        result.entries = writer.flush()
        result.log_records = [
            (e["id"], e["incident_id"].encode(), entry_record(e)) for e in writer.entries
        ]
        self._save_state(conn, {k: state[k] for k in touched if k in state})
        return incident_of

    def _load_state(self, conn: Connection, keys: Sequence[str]) -> dict[str, Any]:
        if self._rows is not None:
            found = self._rows.state.select_in(conn, ("key", "data"), "key", keys)
            return dict(found)  # each value freshly decoded: the rules may change it
        state: dict[str, Any] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            rows = conn.execute(select(STATE.c.key, STATE.c.data).where(STATE.c.key.in_(chunk)))
            state.update({k: dict(d) for k, d in rows.all()})
        return state

    def _save_state(self, conn: Connection, state: Mapping[str, Any]) -> None:
        if not state:
            return
        if self._rows is not None:
            self._rows.state.insert(
                conn,
                ("key", "data", "due"),
                [{"key": k, "data": v, "due": v.get("due")} for k, v in sorted(state.items())],
                tail=" ON CONFLICT (key) DO UPDATE SET data = excluded.data, due = excluded.due",
            )
            return
        dialect = conn.dialect.name
        ins = upsert_insert(dialect)
        stmt = ins(STATE)
        stmt = stmt.on_conflict_do_update(
            index_elements=["key"], set_={"data": stmt.excluded.data, "due": stmt.excluded.due}
        )
        rows = [{"key": k, "data": v, "due": v.get("due")} for k, v in sorted(state.items())]
        conn.execute(stmt, parameters=rows)

    def _observe(
        self,
        result: BatchResult,
        valid: Sequence[tuple[Any, Record]],
        new_keys: set[tuple[str, str]],
        started: float,
    ) -> None:
        m = self.metrics
        if m is None:
            return
        m.batch_seconds.observe(time.monotonic() - started)
        consumed = Counter(env.short_type for env, _ in valid)
        consumed.update(result.repeated)  # every record read counts, duplicates too
        for short_type, n in consumed.items():  # one locked increment per type, not per event
            m.consumed.labels(short_type).inc(n)
        for env, rec in valid:
            if env.key in new_keys and rec.timestamp is not None:
                m.latency.observe(max(0.0, result.committed_at - rec.timestamp))
        for dead in result.dead:
            m.consumed.labels(dead["row"]["type"] or "unknown").inc()
            m.dead_lettered.labels(dead["row"]["type"] or "unknown").inc()
        m.duplicates.inc(result.duplicates)
        for kind in result.opened:
            m.incidents_opened.labels(kind).inc()

    # -- timers ----------------------------------------------------------------------------

    async def tick(self, now: float | None = None) -> list[str]:
        """Run the wall-clock checks (silent gateways, storm summaries); returns opened ids."""
        return await self.run(self._tick, time.time() if now is None else now)

    def _tick(self, conn: Connection, now: float) -> list[str]:
        rows = conn.execute(
            select(STATE.c.key, STATE.c.data).where(STATE.c.due <= now).limit(_CHUNK)
        ).all()
        if not rows:
            return []
        state = {k: dict(d) for k, d in rows}
        writer = _Writer(conn, self.accountable, self._rows)
        writer.load(_incident_refs(state.values()))
        opened: list[str] = []
        for key, entry in state.items():
            for action in self.correlator.due(key, entry, writer.views, now):
                writer.apply(action)
                if isinstance(action, OpenIncident):
                    opened.append(action.incident_id)
                    log_event(
                        "incident opened by timer",
                        incident=action.incident_id,
                        type=action.type,
                        unit=action.unit,
                    )
                    if self.metrics is not None:
                        self.metrics.incidents_opened.labels(action.type).inc()
        writer.flush()
        self._save_state(conn, state)
        conn.commit()
        return opened


def insert_dead_letters(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Idempotent by fingerprint: a redelivered bad record stays one dead letter."""
    dialect = conn.dialect.name
    ins = upsert_insert(dialect)
    stmt = ins(DEAD).on_conflict_do_nothing(index_elements=["fingerprint"])
    conn.execute(stmt, parameters=rows)


def _incident_refs(entries: Iterable[Mapping[str, Any]]) -> set[str]:
    return {str(e["incident"]) for e in entries if e.get("incident")}


def _str_or_none(value: Any, limit: int) -> str | None:
    return None if value is None else str(value)[:limit]


class _Writer:
    """Builds the rows of one transaction: new incidents, chained entries, head updates.

    Entries are chained at ``flush`` by the append service (``chain_rows``) onto the heads
    read under the incidents' locks (``load``); ``entries`` then holds their rows.
    """

    def __init__(
        self,
        conn: Connection,
        accountable: Callable[[str], tuple[str | None, str | None]],
        rows: _Rows | None = None,
    ) -> None:
        self.conn = conn
        self.accountable = accountable
        self.rows = rows
        self.views: dict[str, IncidentView] = {}
        self.heads: dict[str, dict[str, Any]] = {}
        self.new_incidents: dict[str, dict[str, Any]] = {}
        self.pending: list[tuple[str, EntrySpec]] = []
        self.entries: list[dict[str, Any]] = []
        self.now = utcnow()

    def load(self, ids: set[str]) -> None:
        """Lock and read the incidents the state refers to."""
        if not ids:
            return
        ordered = sorted(ids)
        take_incident_locks(self.conn, incident_ids=ordered)
        if self.rows is not None:
            found = self.rows.incidents.select_in(self.conn, _HEAD_COLUMNS, "id", ordered)
        else:
            cols = INCIDENTS.c
            found = []
            for start in range(0, len(ordered), _CHUNK):
                result = self.conn.execute(
                    select(*(cols[c] for c in _HEAD_COLUMNS)).where(
                        cols.id.in_(ordered[start : start + _CHUNK])
                    )
                )
                found += [tuple(row) for row in result.all()]
        for id_, unit, status, level, political, exercise, head_seq, head_hash in found:
            self.views[id_] = IncidentView(id_, unit, status, level, political, exercise)
            self.heads[id_] = {
                "head_seq": head_seq,
                "head_hash": head_hash,
                "exercise": exercise,
                "level": level,
                "status": status,
                "closed_at": None,
                "severity": None,
                "dirty": False,
            }

    def apply(self, action: Action) -> None:
        if isinstance(action, OpenIncident):
            role, person = self.accountable(action.unit)
            incident = {
                "id": action.incident_id,
                "type": action.type,
                "title": action.title,
                "unit": action.unit,
                "severity": action.severity,
                "exercise": action.exercise,
                "accountable_role": role,
                "accountable_person": person,
                "impact": {},
                "status": Status.OPEN.value,
                "level": "unit",
                "security_political": False,
                "area": action.area,
                "opened_at": self.now,
                "closed_at": None,
                "next_update_at": None,
                "head_seq": 0,
                "head_hash": GENESIS,
            }
            self.new_incidents[action.incident_id] = incident
            self.heads[action.incident_id] = incident
            payload = {
                k: incident[k]
                for k in (
                    "type",
                    "title",
                    "unit",
                    "severity",
                    "exercise",
                    "accountable_role",
                    "accountable_person",
                    "impact",
                    "security_political",
                    "area",
                )
            }
            self._chain(
                action.incident_id,
                EntryKind.INCIDENT_OPENED.value,
                action.text,
                {**action.data, **payload},  # the incident's own fields win
            )
            return
        assert isinstance(action, AddEntry)
        head = self.heads[action.incident_id]
        self._chain(action.incident_id, action.kind, action.text, action.data)
        if action.kind == EntryKind.ESCALATION.value and "to" in action.data:
            head["level"] = str(action.data["to"])
        if action.kind == EntryKind.STATUS_CHANGE.value and action.data.get("status"):
            head["status"] = action.data["status"]
            head["closed_at"] = self.now if action.data["status"] == Status.CLOSED.value else None

    def _chain(self, incident_id: str, kind: str, text_: str, data: Mapping[str, Any]) -> None:
        # JSON-native already (decoded events and rule-built dicts): hashed as it is.
        self.pending.append((incident_id, EntrySpec(kind, ACTOR, text_, data)))
        self.heads[incident_id]["dirty"] = True

    def _chain_pending(self) -> None:
        """Chain the entries applied so far onto their heads; ``entries`` gets their rows."""
        if not self.pending:
            return
        heads = self.heads
        ids = {incident_id for incident_id, _ in self.pending}
        rows, moved = chain_rows(
            heads={i: Head(int(heads[i]["head_seq"]), heads[i]["head_hash"]) for i in ids},
            exercise={i: heads[i]["exercise"] for i in ids},
            entries=self.pending,
            at=self.now,
        )
        for incident_id, head in moved.items():
            heads[incident_id]["head_seq"] = head.seq
            heads[incident_id]["head_hash"] = head.hash
        self.entries += rows
        self.pending = []

    def flush(self) -> int:
        """Write everything in as few statements as possible; returns the entry count."""
        self._chain_pending()
        conn, rows = self.conn, self.rows
        if self.new_incidents:
            incidents = list(self.new_incidents.values())
            if rows is not None:
                rows.incidents.insert(conn, _INCIDENT_COLUMNS, incidents)
            else:
                conn.execute(insert(INCIDENTS), parameters=incidents)
        if self.entries:
            self._insert_entries()
        changed = [
            {
                "id": iid,
                "head_seq": h["head_seq"],
                "head_hash": h["head_hash"],
                "level": h["level"],
                "status": h["status"],
            }
            for iid, h in self.heads.items()
            if iid not in self.new_incidents and h.get("dirty")
        ]
        closed = [
            {"id": iid, "closed_at": h["closed_at"]}
            for iid, h in self.heads.items()
            if iid not in self.new_incidents and h.get("dirty") and h["closed_at"] is not None
        ]
        if rows is not None:
            if changed:
                rows.incidents.update(
                    conn, ("head_seq", "head_hash", "level", "status"), "id", changed
                )
            if closed:
                rows.incidents.update(conn, ("closed_at",), "id", closed)
            return len(self.entries)
        if changed:
            conn.execute(
                update(INCIDENTS)
                .where(INCIDENTS.c.id == bindparam("b_id"))
                .values(
                    head_seq=bindparam("head_seq"),
                    head_hash=bindparam("head_hash"),
                    level=bindparam("level"),
                    status=bindparam("status"),
                ),
                parameters=[
                    {"b_id": c["id"], **{k: v for k, v in c.items() if k != "id"}} for c in changed
                ],
            )
        if closed:
            conn.execute(
                update(INCIDENTS)
                .where(INCIDENTS.c.id == bindparam("b_id"))
                .values(closed_at=bindparam("closed_at")),
                parameters=[{"b_id": c["id"], "closed_at": c["closed_at"]} for c in closed],
            )
        return len(self.entries)

    def _insert_entries(self) -> None:
        """Insert the entries and set each one's ``id`` (its feed position): the relay
        publishes them from memory."""
        if self.rows is not None:
            for entry in self.entries:  # encoded once, for the table and for crisis.log
                entry["data_json"] = json.dumps(entry["data"])
            returned = self.rows.entries.insert(
                self.conn,
                _ENTRY_COLUMNS,
                self.entries,
                returning=("id", "incident_id", "seq"),
                encoded=("data",),
                keys={"data": "data_json"},
            )
            ids = {(incident_id, seq): id_ for id_, incident_id, seq in returned}
            for entry in self.entries:
                entry["id"] = ids[entry["incident_id"], entry["seq"]]
            return
        result = self.conn.execute(
            insert(ENTRIES).returning(ENTRIES.c.id, sort_by_parameter_order=True),
            parameters=self.entries,
        )
        for entry, id_ in zip(self.entries, result.scalars(), strict=True):
            entry["id"] = id_


class _Rows:
    """The pipeline's tables as plain SQLite statements (``streams.sqlite_rows``)."""

    def __init__(self, dialect: Any) -> None:
        self.raw = SqliteRows(RAW, dialect)
        self.entries = SqliteRows(ENTRIES, dialect)
        self.incidents = SqliteRows(INCIDENTS, dialect)
        self.state = SqliteRows(STATE, dialect)


_RAW_COLUMNS = tuple(c.name for c in RAW.columns)
_ENTRY_COLUMNS = (*HASHED_FIELDS, "hash")
_INCIDENT_COLUMNS = tuple(c.name for c in INCIDENTS.columns)
_HEAD_COLUMNS = (
    "id",
    "unit",
    "status",
    "level",
    "security_political",
    "exercise",
    "head_seq",
    "head_hash",
)


def sync_twin(engine: AsyncEngine) -> Engine | None:
    """For SQLite, a synchronous engine on the same file with the same connection settings but
    no busy timeout (the runner polls ``take_sqlite_writer`` instead) and no checkpoints in its
    commits (``Pipeline.checkpoint`` runs them beside the batches); ``None`` for other
    databases (they run the sync code through ``run_sync``)."""
    if engine.dialect.name != "sqlite":
        return None
    return make_sync_sqlite_engine(
        engine.url.set(drivername="sqlite"), busy_timeout_ms=0, autocheckpoint=False
    )


def incident_id_factory() -> Callable[[], str]:
    return lambda: new_incident_id(utcnow())
