"""Topics read and written in batches on the worker's hot paths.

Why not a Faust agent: Faust hands an agent its records one at a time (consumer thread →
conductor → channel queue → stream → ``take`` buffer), which costs more per record than the
worker's own work per event. aiokafka's ``getmany`` returns what a fetch brought as lists.
The worker stays a Faust app (timers, tasks, producer); the readers run as its tasks, each in
its own consumer group. Figures: docs/performance.md.

``BatchPublisher``: the relay's records (and dead letters) go out as one aiokafka batch per
partition (one future per batch, not per record), far cheaper than a ``send`` per record.

Guarantees are the agent's: offsets are committed only after ``handle`` returned, so a crash
redelivers the batch (at-least-once) and the idempotent writes make the replay a no-op; a
commit refused after a rebalance is logged and the records go to the new owner, which
replays them the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.partitioner import DefaultPartitioner

from streams.app import FETCH_MAX_WAIT_MS

logger = logging.getLogger("crisis.streams")

Handle = Callable[[Sequence[ConsumerRecord[bytes, bytes]]], Awaitable[None]]


class BatchConsumer:
    """``handle(records)`` for each fetched batch of ``topic``, then commit their offsets."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        group_id: str,
        handle: Handle,
        max_records: int = 1000,
        fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS,
        session_timeout: float = 6.0,
        rebalance_timeout: float = 3.0,
        heartbeat_interval: float = 1.0,
        request_timeout: float = 15.0,
    ) -> None:
        self.topic = topic
        self.handle = handle
        self.max_records = max_records
        self._options: dict[str, Any] = dict(
            bootstrap_servers=bootstrap,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=fetch_max_wait_ms,
            max_poll_records=max_records,
            session_timeout_ms=int(session_timeout * 1000),
            rebalance_timeout_ms=int(rebalance_timeout * 1000),
            heartbeat_interval_ms=int(heartbeat_interval * 1000),
            request_timeout_ms=int(request_timeout * 1000),
        )
        self.consumer: AIOKafkaConsumer | None = None  # made in run(): it needs the loop

    @classmethod
    def in_app(cls, app: Any, *, bootstrap: str, **options: Any) -> BatchConsumer:
        """One with the Faust app's group timings (short ones, tuned for Tansu)."""
        conf = app.conf
        return cls(
            bootstrap=bootstrap,
            session_timeout=conf.broker_session_timeout,
            rebalance_timeout=conf.broker_rebalance_timeout,
            heartbeat_interval=conf.broker_heartbeat_interval,
            request_timeout=conf.broker_request_timeout,
            **options,
        )

    def _new_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(self.topic, **self._options)

    def owns(self, partition: int) -> bool:
        """Whether this member reads ``partition`` of the topic now (a leader election for
        free: one member of the group owns partition 0)."""
        if self.consumer is None:
            return False
        return TopicPartition(self.topic, partition) in self.consumer.assignment()

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.consumer.highwater(tp) if self.consumer is not None else None

    async def run(self) -> None:
        """Until cancelled; leaves the group on the way out so a successor joins at once.

        ``handle`` is expected to deal with bad records itself (dead letters, skips). If it
        raises anyway, the batch is not committed but read again after a pause — a Faust agent
        would have died or skipped it; here nothing is lost and the error is logged each time.
        """
        consumer = await self._start()
        delay = 1.0
        try:
            while True:
                fetched = await consumer.getmany(timeout_ms=1000, max_records=self.max_records)
                if not fetched:
                    continue
                records = [r for part in fetched.values() for r in part]
                try:
                    await self.handle(records)
                except Exception:
                    logger.exception(
                        "%d records of %s not handled; reading them again in %.0f s",
                        len(records),
                        self.topic,
                        delay,
                    )
                    for tp, part in fetched.items():
                        consumer.seek(tp, part[0].offset)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)
                    continue
                delay = 1.0
                await self._commit(consumer, {tp: p[-1].offset + 1 for tp, p in fetched.items()})
        finally:
            await consumer.stop()

    async def _start(self) -> AIOKafkaConsumer:
        delay = 0.5
        while True:
            self.consumer = consumer = self._new_consumer()
            try:
                await consumer.start()
                return consumer
            except KafkaError as exc:  # broker not up yet: keep trying, as Faust does
                logger.warning("consumer of %s cannot start, retrying: %r", self.topic, exc)
                await consumer.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # Partitions moved in a rebalance: their new owner replays from the last commit.
            logger.warning("offsets of %s not committed (%r); to be replayed", self.topic, exc)
        except KafkaError as exc:
            logger.warning("offset commit of %s failed (%r); replayed if we crash", self.topic, exc)


def offsets_by_partition(records: Sequence[Any]) -> dict[TopicPartition, int]:
    """The last offset of each partition among ``records``."""
    last: dict[TopicPartition, int] = {}
    for r in records:
        last[TopicPartition(r.topic, r.partition)] = r.offset
    return last


class BatchPublisher:
    """``publish([(key, value), ...])`` returns once Kafka acknowledged every record (acks=all).

    Keys are placed as the default partitioner places them (murmur2; no key: any partition), so
    a key's records stay in one partition, in order, exactly as ``producer.send`` puts them.
    """

    def __init__(self, bootstrap: str, topic: str, *, request_timeout: float = 15.0) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.request_timeout = request_timeout
        self.partitioner = DefaultPartitioner()
        self.producer: AIOKafkaProducer | None = None

    async def publish(self, records: Sequence[tuple[bytes | None, bytes]]) -> None:
        producer = await self._producer()
        partitions = sorted(await producer.partitions_for(self.topic))
        by_partition: dict[int, list[tuple[bytes | None, bytes]]] = {}
        for key, value in records:
            partition = self.partitioner(key, partitions, partitions)
            by_partition.setdefault(partition, []).append((key, value))
        acks = []
        for partition, items in by_partition.items():
            batch = producer.create_batch()
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:  # full
                    acks.append(await producer.send_batch(batch, self.topic, partition=partition))
                    batch = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        raise ValueError(f"a {self.topic} record of {len(value)} bytes is too big")
            acks.append(await producer.send_batch(batch, self.topic, partition=partition))
        await asyncio.gather(*acks)

    async def _producer(self) -> AIOKafkaProducer:
        if self.producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                acks="all",
                request_timeout_ms=int(self.request_timeout * 1000),
            )
            await producer.start()
            self.producer = producer
        return self.producer

    async def stop(self) -> None:
        if self.producer is not None:
            producer, self.producer = self.producer, None
            await producer.stop()
