"""The Faust agents, task and timer of the worker; all the work is in Pipeline and LogRelay.

- ``process_events`` (concurrency 1): ``crisis.events`` in batches (``take_events``) → one
  transaction per batch. Offsets are acknowledged only after the batch is committed, so a
  crash redelivers it and the idempotent raw-event insert makes the replay a no-op. Bad data
  never kills it: per-event problems are dead-lettered by the pipeline; a batch that fails
  as a whole is retried event by event so only the culprit is dead-lettered; an unreachable
  database is retried with back-off without acknowledging anything.
- ``relay_log`` (task): publishes committed log entries on ``crisis.log``; woken by each
  commit, and polling for entries the web API wrote.
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

import faust

from crisis import topics
from streams.metrics import WorkerMetrics
from streams.pipeline import (
    BatchResult,
    Pipeline,
    Record,
    is_transient,
    log_event,
)
from streams.relay import LogRelay

logger = logging.getLogger("crisis.streams")


def attach_agents(
    app: faust.App,
    *,
    pipeline: Pipeline,
    relay_factory: Any,
    metrics: WorkerMetrics,
    batch_size: int = 1000,
    batch_within: float = 0.02,
    tick_interval: float = 1.0,
    relay_poll: float = 0.5,
    checkpoint_interval: float = 1.0,
) -> None:
    events = app.topic(
        topics.EVENTS,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    dlq = app.topic(
        topics.EVENTS_DLQ,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    db_lock = asyncio.Lock()
    wake = asyncio.Event()

    async def send_log(key: bytes, value: bytes) -> Any:
        # The producer directly (not Topic.send): the relay's bytes are final, and this skips
        # Faust's per-message codec and attachment machinery on the hot path.
        return await app.producer.send(topics.LOG, key, value, None, None, None)

    relay: LogRelay = relay_factory(send_log)
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

    @app.agent(events, concurrency=1)
    async def process_events(stream: Any) -> None:
        async for batch in stream.take_events(batch_size, within=batch_within):
            records = [
                Record(
                    value=ev.value,
                    timestamp=ev.message.timestamp,
                    topic=ev.message.topic,
                    partition=ev.message.partition,
                    offset=ev.message.offset,
                )
                for ev in batch
            ]
            result = await run_batch(records)
            for dead in result.dead:
                with contextlib.suppress(Exception):
                    key = (dead["key"] or "").encode() or None
                    await dlq.send(key=key, value=dead["value"], force=True)
            if result.entries:
                wake.set()
            update_lag(batch)

    def update_lag(batch: Sequence[Any]) -> None:
        last: dict[Any, int] = {}
        for ev in batch:
            last[ev.message.tp] = ev.message.offset
        for tp, offset in last.items():
            with contextlib.suppress(Exception):
                high = app.consumer.highwater(tp)
                metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, high - offset - 1))

    @app.task
    async def relay_log() -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), relay_poll)
            wake.clear()
            try:
                while await relay.run_once() >= relay.batch:
                    pass
            except Exception as exc:
                logger.warning("crisis.log relay failed, retrying: %r", exc)
                await asyncio.sleep(1.0)

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
