"""The durable event producer: Kafka with acks=all, or the local outbox, before any 202.

One writer task owns both Kafka and the outbox, so order is simple to keep: requests are taken
in arrival order and grouped (group commit); while the outbox holds anything, new events join
it behind the queued ones; the outbox drains oldest first once the broker answers again. A
send that fails or times out moves every unconfirmed record to the outbox, so a record can
reach Kafka twice but never zero times (at-least-once; consumers dedupe by source+id).

Only a broker outage holds the queue. A record the broker can never take -- larger than the
request limit (checked before sending), ``MessageSizeTooLargeError`` or another non-retriable
error -- is replaced by a reduced dead letter on ``crisis.events.dlq`` (reason, size, a prefix
of the bytes, origin, topic) and the queue moves on; one that cannot even be dead-lettered is
dropped with an error line and the ``crisis_producer_unpublishable_total`` metric.

With ``until_logged`` (a broker that keeps nothing on disk, such as the embedded one) the outbox
is the durable store: every request is answered once its records are fsynced there, the writer
sends them in order behind a cursor, and a record leaves the outbox only when ``confirm`` finds
its (source, id) in the crisis log. What the broker loses -- it restarted, or the log stopped
advancing for our records -- is sent again; the ingest dedupes by (source, id).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka import errors as kafka_errors
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine

from crisis.kafka import topics
from crisis.kafka.broker import ensure_topics, kafka_api_versions_ok
from crisis.kafka.outbox import Outbox, Record
from crisis.log.models import RawEvent
from crisis.sources.events import Envelope
from crisis.sources.models import DeadLetter

log = logging.getLogger("crisis.producer")

OUTBOX_FILE = "outbox.db"

#: The bytes of an unpublishable record kept in its reduced dead letter.
PREFIX_BYTES = 2048
#: aiokafka's default and Kafka's default message.max.bytes.
MAX_REQUEST_SIZE = 1_048_576
#: Non-retriable errors about the record itself: the broker will never take it. Every other
#: error (connection, timeout, authorisation, a closed producer) holds the queue as an outage.
_RECORD_ERRORS = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordTooLargeError,
    kafka_errors.RecordListTooLargeError,
    kafka_errors.CorruptRecordException,
    kafka_errors.InvalidTimestampError,
    kafka_errors.InvalidTopicError,
    kafka_errors.UnsupportedForMessageFormatError,
)

#: Asks the crisis log which of these (source, id) it holds.
Confirm = Callable[[Sequence[tuple[str, str]]], Awaitable[set[tuple[str, str]]]]


def envelope_record(envelope: Envelope, *, topic: str = topics.EVENTS) -> Record:
    """Key = unit id (per-unit order in Kafka), value = the envelope as compact JSON."""
    body = envelope.model_dump(mode="json", exclude_none=True)
    return Record(
        topic=topic,
        key=(envelope.unit or envelope.source).encode(),
        value=json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(),
        timestamp_ms=int(time.time() * 1000),
        ident=envelope.key,
    )


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def dead_letter_record(
    raw: Any,
    *,
    reason: str,
    errors: Sequence[Mapping[str, Any]] = (),
    origin: str,
    key: str | None = None,
    unit: str | None = None,
) -> Record:
    """A rejected event for ``crisis.events.dlq``: the event as received plus why and where."""
    event: Any = raw
    if isinstance(raw, bytes | bytearray):
        try:
            event = json.loads(raw)
        except ValueError:
            event = raw.decode("utf-8", "replace")
    value: dict[str, Any] = {
        "reason": reason,
        "errors": [dict(e) for e in errors],
        "origin": origin,
        "rejected_at": _now(),
        "event": event,
    }
    if unit:
        value["unit"] = unit
        key = key or unit
    if key is None and isinstance(event, dict):
        key = str(event.get("unit") or event.get("subject") or event.get("source") or "")
    return Record(
        topic=topics.EVENTS_DLQ,
        key=key.encode() if key else None,
        value=json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode(),
        timestamp_ms=int(time.time() * 1000),
    )


def record_size(record: Record) -> int:
    """The record's size as the producer counts it against ``max_request_size``."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(record.key, record.value, []))


def reduced_dead_letter(
    record: Record, *, reason: str, origin: str, field_: str = "size"
) -> Record:
    """What is left of an unpublishable record for ``crisis.events.dlq``: why, its size, the
    first ``PREFIX_BYTES`` bytes and where it came from. A dead letter keeps its own reason,
    origin and unit; an event its source, id, type and unit (read from the bytes if they parse)."""
    size = len(record.value) + len(record.key or b"")
    head: dict[str, Any] = {}
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        parsed = json.loads(record.value) if size <= 64 * MAX_REQUEST_SIZE else None
        if isinstance(parsed, dict):
            head = parsed
    problems: list[dict[str, Any]] = [{"index": None, "field": field_, "message": reason}]
    value: dict[str, Any] = {
        "reason": reason,
        "errors": problems,
        "origin": origin,
        "rejected_at": _now(),
        "reduced": True,
        "size": size,
        "topic": record.topic,
        "prefix": record.value[:PREFIX_BYTES].decode("utf-8", "replace"),
    }
    if record.key:
        value["key"] = record.key.decode("utf-8", "replace")[:200]
    if record.topic == topics.EVENTS_DLQ and isinstance(head.get("reason"), str):
        value["reason"] = f"{head['reason']} -- {reason}"
        value["origin"] = str(head.get("origin") or origin)
        problems[:0] = [e for e in head.get("errors") or [] if isinstance(e, dict)][:50]
        unit_ = head.get("unit")
        event = head.get("event")
        head = dict(event) if isinstance(event, dict) else {}
        if unit_:  # the unit the dead letter was given beats the event's own guess
            head["unit"] = unit_
    for name, attr in (("source", "source"), ("event_id", "id"), ("type", "type")):
        if isinstance(head.get(attr), str):
            value[name] = head[attr][:500]
    unit = head.get("unit") or head.get("subject")
    if isinstance(unit, str) and unit:
        value["unit"] = unit[:80]
    return Record(
        topic=topics.EVENTS_DLQ,
        key=record.key[:200] if record.key else None,
        value=json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(),
        timestamp_ms=int(time.time() * 1000),
    )


def _record_fault(exc: BaseException) -> bool:
    """Whether the broker will never take this record (so holding the queue cannot help)."""
    return isinstance(exc, (*_RECORD_ERRORS, TypeError, ValueError))  # or serialisation


@dataclass
class _Request:
    records: list[Record]
    done: asyncio.Future[None] = field(repr=False)


class ProducerClosed(RuntimeError):
    """accept() after stop() (or before start())."""


class EventProducer:
    """Sends records to Kafka (acks=all) or, failing that, to the durable outbox."""

    def __init__(
        self,
        *,
        bootstrap: str,
        outbox_path: Path,
        topic_partitions: Mapping[str, int] | None = None,
        send_timeout: float = 5.0,
        retry_min: float = 0.2,
        retry_max: float = 5.0,
        drain_chunk: int = 1000,
        client_id: str = "crisis-ingest",
        until_logged: bool = False,
        confirm: Confirm | None = None,
        confirm_interval: float = 0.5,
        replay_after: float = 30.0,
        origin: str = "ingest",
        max_request_size: int = MAX_REQUEST_SIZE,
        on_stop: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        if until_logged and confirm is None:
            raise ValueError("until_logged needs confirm: how to ask the log for an event")
        self.bootstrap = bootstrap
        self.outbox_path = outbox_path
        self.topic_partitions = dict(topic_partitions or {})
        self.send_timeout = send_timeout
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.drain_chunk = drain_chunk
        self.client_id = client_id
        self._outbox: Outbox | None = None
        self._kafka: AIOKafkaProducer | None = None
        self._queue: list[_Request] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._next_attempt = 0.0
        self._backoff = retry_min
        self._outage_logged = False
        self.until_logged = until_logged
        self._confirm = confirm
        self.confirm_interval = confirm_interval
        self.replay_after = replay_after
        #: until_logged: the newest outbox seq handed to Kafka, and what was sent but is not
        #: yet confirmed in the log, oldest first.
        self._cursor = 0
        self._sent: dict[int, tuple[tuple[str, str], float]] = {}  # seq → (ident, sent at)
        self._confirmed_at = time.monotonic()
        self._pending_since: float | None = None  # since when some sent event waits (replays too)
        self._stuck_seq = 0
        self._replay_wait = replay_after
        self._confirmer: asyncio.Task[None] | None = None
        self.replays = 0
        #: Who sends (``ingest``, ``bridge:mqtt``): the origin of its reduced dead letters.
        self.origin = origin
        self.max_request_size = max_request_size
        self.dead_lettered = 0  # unpublishable records dead-lettered in reduced form
        self.dropped = 0  # unpublishable records whose reduced dead letter was refused too
        self._on_stop = on_stop  # e.g. dispose the engine ``confirm`` asks

    # ------------------------------------------------------------------ public
    @property
    def connected(self) -> bool:
        return self._kafka is not None

    def outbox_depth(self) -> int:
        return self._outbox.depth() if self._outbox is not None else 0

    def stalled_for(self) -> float:
        """until_logged: seconds the log has not taken any sent event while some wait (else 0)."""
        if not self.until_logged or self._pending_since is None:
            return 0.0
        return max(0.0, time.monotonic() - max(self._confirmed_at, self._pending_since))

    async def start(self) -> None:
        """Open the outbox and try Kafka once; a broker that is down is not an error."""
        self._outbox = await asyncio.to_thread(Outbox, self.outbox_path)
        await self._connect()
        self._task = asyncio.create_task(self._run(), name="crisis-producer")
        if self.until_logged:
            self._confirmer = asyncio.create_task(self._confirm_loop(), name="crisis-confirm")

    async def stop(self) -> None:
        """Answer queued requests, then close Kafka; the outbox keeps what was not sent."""
        self._stopping = True
        self._wake.set()
        if self._confirmer is not None:
            self._confirmer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._confirmer
            self._confirmer = None
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._disconnect()
        if self._outbox is not None:
            self._outbox.close()
            self._outbox = None
        if self._on_stop is not None:
            await self._on_stop()

    async def accept(self, envelopes: Sequence[Envelope]) -> list[str]:
        """Return the ids once every envelope is durable (Kafka acked or outbox fsynced)."""
        await self.send_records([envelope_record(e) for e in envelopes])
        return [e.id for e in envelopes]

    async def dead_letter(
        self,
        raw: Any,
        *,
        reason: str,
        errors: Sequence[Mapping[str, Any]] = (),
        origin: str,
        unit: str | None = None,
    ) -> None:
        """Put a rejected event on ``crisis.events.dlq`` with the reason, just as durably
        (``unit``: whose staff may see it, when the event is too broken to tell)."""
        record = dead_letter_record(raw, reason=reason, errors=errors, origin=origin, unit=unit)
        await self.send_records([record])

    async def send_records(self, records: list[Record]) -> None:
        if self._stopping or self._task is None:
            raise ProducerClosed("the event producer is not running")
        if not records:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Request(records, done))
        self._wake.set()
        await done

    # ----------------------------------------------------------------- writer
    async def _run(self) -> None:
        """The writer loop; a bug or an outbox error must not leave callers waiting forever."""
        while True:
            try:
                if await self._step():
                    return
            except Exception:
                log.exception("event producer: unexpected error; retrying")
                await self._disconnect()
                await asyncio.sleep(self.retry_min)

    async def _step(self) -> bool:
        """One round: answer queued requests, reconnect, drain, or wait. True when stopped."""
        if self._queue:
            requests, self._queue = self._queue, []
            await self._handle(requests)
        if self._stopping and not self._queue:
            return True
        if self._kafka is None and time.monotonic() >= self._next_attempt:
            if not await self._connect():
                return False
        if self._kafka is not None and self._unsent():
            await self._drain_chunk()
            return False
        if self._queue or self._stopping:
            return False
        self._wake.clear()
        timeout: float | None = None
        if self._kafka is None:
            timeout = max(0.0, self._next_attempt - time.monotonic())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        return False

    async def _handle(self, requests: list[_Request]) -> None:
        records = [r for req in requests for r in req.records]
        try:
            if self.until_logged or self._kafka is None or self.outbox_depth() > 0:
                await self._to_outbox(records)
            else:
                failed, _ = await self._send([(0, r) for r in records])
                if failed:
                    await self._to_outbox([r for _, r in failed])
                    await self._disconnect()
        except Exception as exc:  # disk full, outbox unusable: refuse, never pretend
            log.exception("could not make %d records durable", len(records))
            for req in requests:
                if not req.done.done():
                    req.done.set_exception(exc)
            return
        for req in requests:
            if not req.done.done():
                req.done.set_result(None)

    async def _to_outbox(self, records: list[Record]) -> None:
        assert self._outbox is not None
        await asyncio.to_thread(self._outbox.append, records)
        if self._kafka is None and not self._outage_logged:
            self._outage_logged = True
            log.warning("Kafka at %s unreachable: keeping events in the outbox", self.bootstrap)

    def _unsent(self) -> bool:
        if self._outbox is None:
            return False
        if self.until_logged:
            return self._outbox.last_seq() > self._cursor
        return self._outbox.depth() > 0

    async def _drain_chunk(self) -> None:
        assert self._outbox is not None
        if self.until_logged:
            await self._send_unsent()
            return
        rows = await asyncio.to_thread(self._outbox.peek, self.drain_chunk)
        failed, _ = await self._send(rows)
        failed_seqs = {seq for seq, _ in failed}
        await asyncio.to_thread(self._outbox.remove, [s for s, _ in rows if s not in failed_seqs])
        if failed:
            await self._disconnect()
        else:
            log.info("outbox: sent %d records, %d left", len(rows), self.outbox_depth())

    async def _send_unsent(self) -> None:
        """Send the next records behind the cursor; they stay in the outbox until logged."""
        assert self._outbox is not None
        replays = self.replays
        rows = await asyncio.to_thread(self._outbox.peek, self.drain_chunk, after=self._cursor)
        if not rows:  # the rows behind the cursor were confirmed and removed meanwhile
            self._cursor = max(self._cursor, self._outbox.last_seq())
            return
        failed, rejected = await self._send(rows)
        if self.replays != replays:  # replayed meanwhile: everything goes again from the start
            if failed:
                await self._disconnect()
            return
        sent_at = time.monotonic()
        failed_seqs = {seq for seq, _ in failed}
        acked_untracked = []
        for seq, record in rows:
            if seq in failed_seqs:
                break
            if record.ident is None or seq in rejected:  # nothing in the log to wait for
                acked_untracked.append(seq)
            else:
                self._sent[seq] = (record.ident, sent_at)
                if self._pending_since is None:
                    self._pending_since = sent_at
            self._cursor = seq
        if acked_untracked:
            await asyncio.to_thread(self._outbox.remove, acked_untracked)
        if failed:
            await self._disconnect()

    async def _confirm_loop(self) -> None:
        """Remove what the log holds; send again what the log does not get."""
        while True:
            await asyncio.sleep(self.confirm_interval)
            try:
                await self._confirm_once()
            except Exception as exc:  # the database is down: keep everything, ask again
                log.warning("outbox: could not ask the crisis log: %r", exc)

    async def _confirm_once(self) -> None:
        assert self._confirm is not None
        if not self._sent:
            return
        pending = list(self._sent.items())[:5000]
        found = await self._confirm([ident for _, (ident, _at) in pending])
        done = [seq for seq, (ident, _at) in pending if ident in found]
        if done and self._outbox is not None:
            await asyncio.to_thread(self._outbox.remove, done)
            for seq in done:
                self._sent.pop(seq, None)
            self._confirmed_at = time.monotonic()
            if self.outbox_depth() == 0:
                self._pending_since = None
        if not self._sent:
            return
        # The oldest unconfirmed event decides, whatever newer ones do: a broker that lost
        # it can come back without any send failing, and traffic goes on being confirmed.
        oldest_seq, (_ident, oldest_at) = next(iter(self._sent.items()))
        if oldest_seq != self._stuck_seq:
            self._stuck_seq = oldest_seq
            self._replay_wait = self.replay_after
        waited = time.monotonic() - oldest_at
        if waited > self._replay_wait:
            log.warning(
                "outbox: %d sent events not in the crisis log, the oldest after %.0f s:"
                " sending them again",
                len(self._sent),
                waited,
            )
            self._replay()
            self._replay_wait = min(self._replay_wait * 2, 300.0)

    def _replay(self) -> None:
        """Send everything still in the outbox again, in order (the broker may have lost it)."""
        self.replays += 1
        self._cursor = 0
        self._sent.clear()
        self._wake.set()

    async def _send(
        self, rows: list[tuple[int, Record]]
    ) -> tuple[list[tuple[int, Record]], set[int]]:
        """Send in order and wait for acks. Returns the rows not confirmed (in order), which an
        outage holds, and the seqs of rows the broker can never take, now dead-lettered in
        reduced form (or dropped): they are done with, like acknowledged ones."""
        kafka = self._kafka
        assert kafka is not None
        deadline = time.monotonic() + self.send_timeout
        futures: dict[int, asyncio.Future[Any]] = {}
        rejected: dict[int, tuple[str, str]] = {}  # index → (reason, field)
        for i, (_, record) in enumerate(rows):
            near = len(record.value) + len(record.key or b"") > self.max_request_size - 512
            if near and (size := record_size(record)) > self.max_request_size:
                rejected[i] = (
                    f"too large for Kafka: {size} bytes, the limit is {self.max_request_size}"
                    " (max_request_size)",
                    "size",
                )
                continue
            try:
                futures[i] = await asyncio.wait_for(
                    kafka.send(
                        record.topic, record.value, key=record.key, timestamp_ms=record.timestamp_ms
                    ),
                    max(0.01, deadline - time.monotonic()),
                )
            except Exception as exc:
                if _record_fault(exc):
                    rejected[i] = _rejection(exc)
                    continue
                log.warning("Kafka send failed: %r", exc)
                break
        if futures:
            await asyncio.wait(futures.values(), timeout=max(0.01, deadline - time.monotonic()))
        failed: list[int] = []
        for i in range(len(rows)):
            if i in rejected:
                continue
            fut = futures.get(i)
            if fut is None or not fut.done() or fut.cancelled():
                failed.append(i)
            elif (error := fut.exception()) is not None:
                if _record_fault(error):
                    rejected[i] = _rejection(error)
                else:
                    failed.append(i)
        for fut in futures.values():  # retrieve exceptions so asyncio does not log them
            if fut.done() and not fut.cancelled():
                fut.exception()
            else:
                fut.add_done_callback(_swallow)
        done: set[int] = set()
        for i, (reason, field_) in sorted(rejected.items()):
            if await self._dead_letter_unpublishable(kafka, rows[i][1], reason, field_):
                done.add(rows[i][0])
            else:
                failed.append(i)
        return [rows[i] for i in sorted(failed)], done

    async def _dead_letter_unpublishable(
        self, kafka: AIOKafkaProducer, record: Record, reason: str, field_: str
    ) -> bool:
        """Put the reduced form of ``record`` on the DLQ; drop it (loudly) if even that is
        refused. False only when the broker is away: the record then waits like the others."""
        letter = reduced_dead_letter(record, reason=reason, origin=self.origin, field_=field_)
        size = len(record.value) + len(record.key or b"")
        try:
            fut = await asyncio.wait_for(
                kafka.send(letter.topic, letter.value, key=letter.key),
                self.send_timeout,
            )
            await asyncio.wait([fut], timeout=self.send_timeout)
            if not fut.done():
                fut.add_done_callback(_swallow)
                raise TimeoutError("no acknowledgement for the reduced dead letter")
            if (exc := fut.exception()) is not None:
                raise exc
        except Exception as exc:
            if not _record_fault(exc):
                log.warning("could not dead-letter an unpublishable record yet: %r", exc)
                return False
            self.dropped += 1
            log.error(
                "DROPPED a record of %d bytes for %s (%s): even its reduced dead letter was"
                " refused: %r",
                size,
                record.topic,
                reason,
                exc,
            )
            return True
        self.dead_lettered += 1
        log.error(
            "a record of %d bytes for %s cannot be published (%s): dead-lettered on %s in"
            " reduced form, the queue moves on",
            size,
            record.topic,
            reason,
            topics.EVENTS_DLQ,
        )
        return True

    # ------------------------------------------------------------- connection
    async def _connect(self) -> bool:
        ok = await self._try_connect()
        if ok:
            self._backoff = self.retry_min
            self._outage_logged = False
            if self.until_logged and (self._sent or self._cursor):
                self._replay()  # a broker that was away may have come back empty
            if self.outbox_depth():
                log.info("Kafka is back: draining %d records from the outbox", self.outbox_depth())
        else:
            self._next_attempt = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, self.retry_max)
        return ok

    async def _try_connect(self) -> bool:
        hosts = [h.strip() for h in self.bootstrap.split(",") if h.strip()]
        probes = []
        for host_port in hosts:
            host, _, port = host_port.rpartition(":")
            probes.append(asyncio.to_thread(kafka_api_versions_ok, host, int(port), 0.5))
        if not any(await asyncio.gather(*probes)):
            return False
        kafka = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            client_id=self.client_id,
            request_timeout_ms=max(1000, int(self.send_timeout * 1000)),
            max_request_size=self.max_request_size,
            linger_ms=2,
        )
        if self.topic_partitions:
            try:  # after a memory-storage restart the topics are gone; a real Kafka may forbid it
                await ensure_topics(
                    self.bootstrap, self.topic_partitions, request_timeout=self.send_timeout
                )
            except Exception as exc:
                log.warning("could not ensure topics on %s: %r", self.bootstrap, exc)
        try:
            await asyncio.wait_for(kafka.start(), self.send_timeout)
        except Exception as exc:
            log.warning("Kafka at %s not usable yet: %r", self.bootstrap, exc)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(kafka.stop(), self.send_timeout)
            return False
        self._kafka = kafka
        return True

    async def _disconnect(self) -> None:
        kafka, self._kafka = self._kafka, None
        if kafka is None:
            return
        self._next_attempt = time.monotonic() + self._backoff
        with contextlib.suppress(Exception):
            await asyncio.wait_for(kafka.stop(), self.send_timeout + 2.0)


def database_confirm(engine: AsyncEngine) -> Confirm:
    """``confirm`` for an EventProducer: which (source, id) the crisis log's database holds.

    An event the ingest stored is in ``raw_events``; one it refused is in ``dead_letters``.
    """
    raw = RawEvent.__table__  # type: ignore[attr-defined]
    dead = DeadLetter.__table__  # type: ignore[attr-defined]

    async def confirm(keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        found: set[tuple[str, str]] = set()
        async with engine.connect() as conn:
            for start in range(0, len(keys), 400):
                chunk = list(keys[start : start + 400])
                rows = await conn.execute(
                    select(raw.c.source, raw.c.id).where(tuple_(raw.c.source, raw.c.id).in_(chunk))
                )
                found.update((r[0], r[1]) for r in rows)
                missing = [k for k in chunk if k not in found]
                if missing:
                    rows = await conn.execute(
                        select(dead.c.source, dead.c.event_id).where(
                            tuple_(dead.c.source, dead.c.event_id).in_(missing)
                        )
                    )
                    found.update((r[0], r[1]) for r in rows)
        return found

    return confirm


def _rejection(exc: BaseException) -> tuple[str, str]:
    """The reason and the field of a record the broker refused for good."""
    too_large = isinstance(
        exc,
        kafka_errors.MessageSizeTooLargeError
        | kafka_errors.RecordTooLargeError
        | kafka_errors.RecordListTooLargeError,
    )
    return f"not publishable: {type(exc).__name__}: {exc}"[:1000], "size" if too_large else "record"


def _swallow(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()
