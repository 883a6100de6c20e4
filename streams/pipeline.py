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

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy.engine import Connection
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
from crisis.log import projection
from crisis.log.append import (
    EntrySpec,
    chain_rows,
    json_safe,
    new_incident_id,
    take_incident_locks,
)
from crisis.log.chain import GENESIS, Head, format_time
from crisis.log.tables import TABLES
from crisis.sources.events import EventError, validate_event
from crisis.store import errors as dberrors
from crisis.store.recorder import CORRECTED_COLUMNS, Recorder, open_recorder
from streams.metrics import WorkerMetrics
from streams.relay import entry_record

logger = logging.getLogger("crisis.streams")

T = TypeVar("T")

ACTOR = "system:streams"
_CHUNK = 500


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


#: The ``origin`` of the dead letters the worker itself refuses.
WORKER_ORIGIN = "worker"


def dlq_rows(records: Sequence[Record]) -> list[dict[str, Any]]:
    """``dead_letters`` rows for what others put on ``crisis.events.dlq`` (the bridges' rejects,
    the producers' reduced unpublishable records). The worker's own copies carry their row's
    fingerprint and are skipped: the row was written with their batch. A record is one row
    however often it is delivered or sent (fingerprint: a hash of its bytes)."""
    rows: list[dict[str, Any]] = []
    for record in records:
        try:
            value = _decode(record.value)
        except Exception:  # not JSON: kept below as its text
            value = None
        if isinstance(value, dict) and "fingerprint" in value and "raw" in value:
            continue  # the worker's own copy
        letter = value if isinstance(value, dict) else {}
        event = letter.get("event")
        head = event if isinstance(event, dict) else {}
        if letter.get("reduced"):
            raw = str(letter.get("prefix") or "")
        elif event is not None:
            raw = event if isinstance(event, str) else json.dumps(event, ensure_ascii=False)
        else:
            raw = _raw_text(record.value)
        origin = str(letter.get("origin") or "unknown").replace("bridge.", "bridge:", 1)
        reason = letter.get("reason")
        errors = letter.get("errors")
        rows.append(
            {
                "source": _str_or_none(letter.get("source") or head.get("source"), 500),
                "event_id": _str_or_none(letter.get("event_id") or head.get("id"), 200),
                "type": _str_or_none(letter.get("type") or head.get("type"), 200),
                "unit": _str_or_none(
                    letter.get("unit") or head.get("unit") or head.get("subject"), 80
                ),
                "reason": str(reason) if reason else "unreadable dead letter",
                "errors": json_safe({"e": errors if isinstance(errors, list) else []})["e"],
                "raw": raw,
                "topic": _str_or_none(letter.get("topic"), 200) or record.topic,
                "kafka_partition": record.partition,
                "kafka_offset": record.offset,
                "fingerprint": hashlib.sha256(
                    f"dlq|{_raw_text(record.value)}".encode()
                ).hexdigest(),
                "origin": origin[:80],
                "received_at": _parse_time(letter.get("rejected_at")) or utcnow(),
            }
        )
    return rows


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


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
        #: The storage seam: every read and write of a batch goes through it.
        self.store: Recorder = open_recorder(engine, TABLES)
        self.correlator = correlator
        self.known_units = known_units
        self.accountable = accountable or (lambda _unit: (None, None))
        self.metrics = metrics

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """``work(connection, *args)`` as one unit on this pipeline's database, with the
        write locks available (``work`` commits)."""
        return await self.store.run(work, *args)

    async def checkpoint(self) -> None:
        """The database's housekeeping, beside the batches (see the storage adapter)."""
        await self.store.checkpoint()

    async def store_dead_letters(self, rows: list[dict[str, Any]]) -> None:
        def work(conn: Connection) -> None:
            self.store.insert_dead_letters(conn, rows)
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
        """One transaction: dead letters, which events are new, rules, rows (the heads are read
        under the incidents' locks, so none can change under us)."""
        if result.dead:
            self.store.insert_dead_letters(conn, [d["row"] for d in result.dead])
        existing = self.store.existing_keys(conn, [env.key for env, _ in valid])
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
            "origin": WORKER_ORIGIN,
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
        # The envelope's text as it arrived (it decodes to ``originals``): no re-encoding.
        texts = [
            _as_text(record.value, row["envelope"])
            for row, (_, record) in zip(rows, fresh, strict=True)
        ]
        return self.store.insert_raw_events(conn, rows, texts)

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
        state = self.store.load_state(conn, keys)
        mentioned = {str(i) for ev in events for i in ev.data.get("mentions_incidents", [])}
        writer = _Writer(conn, self.accountable, self.store)
        writer.traces = {env.key: env.trace for env, _ in fresh if env.trace}
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
                self.store.insert_dead_letters(conn, [result.dead[-1]["row"]])
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
        self.store.save_state(conn, {k: state[k] for k in touched if k in state})
        return incident_of

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
        state = self.store.due_state(conn, now, _CHUNK)
        if not state:
            return []
        writer = _Writer(conn, self.accountable, self.store)
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
        self.store.save_state(conn, state)
        conn.commit()
        return opened


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
        store: Recorder,
    ) -> None:
        self.conn = conn
        self.accountable = accountable
        self.store = store
        self.views: dict[str, IncidentView] = {}
        self.heads: dict[str, dict[str, Any]] = {}
        self.new_incidents: dict[str, dict[str, Any]] = {}
        self.pending: list[tuple[str, EntrySpec]] = []
        self.entries: list[dict[str, Any]] = []
        self.now = utcnow()
        #: The W3C trace context of each event that has one, by (source, id): the entries an
        #: event causes carry it as ``data["trace"]``.
        self.traces: dict[tuple[str, str], dict[str, str]] = {}

    def load(self, ids: set[str]) -> None:
        """Lock and read the incidents the state refers to."""
        if not ids:
            return
        ordered = sorted(ids)
        take_incident_locks(self.conn, incident_ids=ordered)
        found = self.store.incident_heads(self.conn, ordered)
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
                "title": None,
                "area": None,
                "dirty": False,
            }

    def apply(self, action: Action) -> None:
        trace = self.traces.get(action.event) if action.event is not None else None
        if trace:
            action = replace(action, data={**action.data, "trace": trace})
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
        self._chain(action.incident_id, action.kind, action.text, action.data, action.corrects)
        corrected = projection.corrected_fields(action.kind, action.corrects, action.data)
        head.update(corrected)
        if action.kind == EntryKind.ESCALATION.value and "to" in action.data:
            head["level"] = str(action.data["to"])
        if action.kind == EntryKind.STATUS_CHANGE.value and action.data.get("status"):
            head["status"] = action.data["status"]
            head["closed_at"] = self.now if action.data["status"] == Status.CLOSED.value else None

    def _chain(
        self,
        incident_id: str,
        kind: str,
        text_: str,
        data: Mapping[str, Any],
        corrects: int | None = None,
    ) -> None:
        # JSON-native already (decoded events and rule-built dicts): hashed as it is.
        self.pending.append((incident_id, EntrySpec(kind, ACTOR, text_, data, corrects)))
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
        if self.new_incidents:
            self.store.insert_incidents(self.conn, list(self.new_incidents.values()))
        if self.entries:
            self.store.insert_entries(self.conn, self.entries)  # sets each entry's id
        changed = [
            {
                "id": iid,
                "head_seq": h["head_seq"],
                "head_hash": h["head_hash"],
                "level": h["level"],
                "status": h["status"],
                "closed_at": h["closed_at"],
                **{c: h.get(c) for c in CORRECTED_COLUMNS},
            }
            for iid, h in self.heads.items()
            if iid not in self.new_incidents and h.get("dirty")
        ]
        self.store.update_heads(self.conn, changed)
        return len(self.entries)


def incident_id_factory() -> Callable[[], str]:
    return lambda: new_incident_id(utcnow())
