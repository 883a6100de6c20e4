"""The tasks and timers of the ingest worker; all the work is in Pipeline and LogRelay.

- ``process_events`` (one consumer, group ``crisis-ingest``): ``crisis.events`` in the batches
  a fetch brings (``streams.batches`` says why not a Faust agent) → one transaction per batch.
  Offsets are committed only after the batch is committed, so a
  crash redelivers it and the idempotent raw-event insert makes the replay a no-op. Bad data
  never kills it: per-event problems are dead-lettered by the pipeline; a batch that fails
  as a whole is retried event by event so only the culprit is dead-lettered; an unreachable
  database is retried with back-off without acknowledging anything.
- After each batch its entries are published on ``crisis.log`` from memory (the relay is
  handed them, so it need not read them back) before the next batch is read.
- ``store_dead_letters`` (one consumer, group ``crisis-dlq``): ``crisis.events.dlq`` into the
  ``dead_letters`` table, so what the bridges and the producers' reduced records put there is
  listed with the worker's own (which are written with their batch and skipped here).
- ``relay_log`` (task): publishes the other committed log entries (the web API's, the
  reactions') on ``crisis.log``, polling for them, and retries what a batch could not.
- ``due_checks`` (timer): silent gateways and storm summaries.
- ``checkpoint`` (timer, SQLite): copies the WAL into the database beside the batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from crisis.kafka import topics
from streams.app import CrisisFaustApp
from streams.batches import BatchConsumer, BatchPublisher, offsets_by_partition
from streams.metrics import WorkerMetrics
from streams.pipeline import (
    BatchResult,
    Pipeline,
    Record,
    dlq_rows,
    is_transient,
    log_event,
)
from streams.relay import LogRelay

logger = logging.getLogger("crisis.streams")


def _key(unit: str | None) -> bytes | None:
    return unit.encode() if unit else None


#: The ingest consumer's group: not the Faust app id, whose group speaks Faust's assignor.
INGEST_GROUP = "crisis-ingest"
#: The group that copies ``crisis.events.dlq`` into the dead-letter table.
DLQ_GROUP = "crisis-dlq"


def attach_agents(
    app: CrisisFaustApp,
    *,
    bootstrap: str,
    pipeline: Pipeline,
    relay_factory: Any,
    metrics: WorkerMetrics,
    batch_size: int = 1000,
    tick_interval: float = 1.0,
    relay_poll: float = 0.5,
    relay_wait: float = 1.0,
    checkpoint_interval: float = 1.0,
) -> None:
    timeout = app.conf.broker_request_timeout
    dlq = BatchPublisher(bootstrap, topics.EVENTS_DLQ, request_timeout=timeout)
    db_lock = asyncio.Lock()
    wake = asyncio.Event()

    publisher = BatchPublisher(bootstrap, topics.LOG, request_timeout=timeout)
    relay: LogRelay = relay_factory(publisher.publish)
    relay.write_lock = db_lock

    async def run_batch(records: Sequence[Record]) -> BatchResult:
        delay = 0.2
        while True:
            try:
                async with db_lock:
                    return await pipeline.process(records)
            except Exception as exc:
                if is_transient(exc):
                    logger.warning("database unavailable, retrying batch in %.1fs: %r", delay, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
                    continue
                if len(records) == 1:
                    return await dead_letter_whole(records[0], exc)
                logger.exception("batch failed; retrying its %d events one by one", len(records))
                total = BatchResult()
                for record in records:
                    part = await run_batch([record])
                    total.consumed += part.consumed
                    total.new += part.new
                    total.duplicates += part.duplicates
                    total.dead += part.dead
                    total.opened += part.opened
                    total.entries += part.entries
                    total.log_records += part.log_records
                return total

    async def dead_letter_whole(record: Record, exc: BaseException) -> BatchResult:
        """The event itself breaks the transaction: keep it as a dead letter with the reason."""
        dead = pipeline._dead(record, f"processing failed: {exc!r}", [])
        while True:
            try:
                async with db_lock:
                    await pipeline.store_dead_letters([dead["row"]])
                metrics.dead_lettered.labels("unknown").inc()
                return BatchResult(consumed=1, dead=[dead])
            except Exception as again:
                logger.warning("could not store dead letter, retrying: %r", again)
                await asyncio.sleep(1.0)

    async def process_events(batch: Sequence[Any]) -> None:
        records = [
            Record(
                value=r.value,
                timestamp=r.timestamp / 1000,
                topic=r.topic,
                partition=r.partition,
                offset=r.offset,
            )
            for r in batch
        ]
        result = await run_batch(records)
        if result.dead:
            try:  # the dead_letters rows are the record; the topic is a copy for consumers
                await dlq.publish([(_key(d["key"]), d["value"]) for d in result.dead])
            except Exception as exc:
                logger.warning("dead letters not copied to %s: %r", topics.EVENTS_DLQ, exc)
        if result.entries:
            relay.offer(result.log_records)
            await publish_now()
        update_lag(batch)

    async def publish_now() -> None:
        """The batch's entries onto ``crisis.log`` before the next batch: a separate task woken
        for it waited behind every batch for each step of a publish. Waited for at most
        ``relay_wait`` seconds, so a slow ``crisis.log`` never holds up the ingest; the relay
        task finishes and retries what is left."""
        try:
            await asyncio.wait_for(asyncio.shield(relay.drain()), relay_wait)
        except Exception as exc:  # timeout or publish error: the relay task takes over
            if not isinstance(exc, TimeoutError):
                logger.warning("crisis.log publish failed, the relay retries: %r", exc)
            wake.set()

    consumer = BatchConsumer.in_app(
        app,
        bootstrap=bootstrap,
        topic=topics.EVENTS,
        group_id=INGEST_GROUP,
        handle=process_events,
        max_records=batch_size,
    )

    async def store_dlq(batch: Sequence[Any]) -> None:
        """Idempotent (fingerprint): a redelivered batch adds nothing. A database that is away
        raises, so the batch is not committed and is read again."""
        rows = dlq_rows(
            [
                Record(value=r.value, topic=r.topic, partition=r.partition, offset=r.offset)
                for r in batch
            ]
        )
        if rows:
            async with db_lock:
                await pipeline.store_dead_letters(rows)

    dlq_consumer = BatchConsumer.in_app(
        app,
        bootstrap=bootstrap,
        topic=topics.EVENTS_DLQ,
        group_id=DLQ_GROUP,
        handle=store_dlq,
        max_records=batch_size,
    )

    def update_lag(batch: Sequence[Any]) -> None:
        for tp, offset in offsets_by_partition(batch).items():
            high = consumer.highwater(tp)
            if high is not None:
                metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, high - offset - 1))

    @app.early_task
    async def consume_events() -> None:
        try:
            await consumer.run()
        finally:
            await dlq.stop()

    @app.task
    async def store_dead_letters() -> None:
        await dlq_consumer.run()

    @app.task
    async def relay_log() -> None:
        try:
            while True:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wake.wait(), relay_poll)
                wake.clear()
                try:
                    await relay.drain()
                except Exception as exc:
                    logger.warning("crisis.log relay failed, retrying: %r", exc)
                    await asyncio.sleep(1.0)
        finally:
            await publisher.stop()

    @app.timer(interval=checkpoint_interval)
    async def checkpoint() -> None:
        try:
            await pipeline.checkpoint()
        except Exception as exc:  # busy or locked: the next one catches up
            log_event("checkpoint failed", error=repr(exc))

    @app.timer(interval=tick_interval)
    async def due_checks() -> None:
        try:
            async with db_lock:
                opened = await pipeline.tick(time.time())
            if opened:
                wake.set()
        except Exception as exc:
            log_event("timer check failed", error=repr(exc))
