"""``streams.batches`` on the embedded broker: offsets committed only after a batch is handled,
a batch whose handler fails read again, the group's partition 0 as leadership, and records
published in batches placed where ``producer.send`` places them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from crisis.kafka.broker import EmbeddedBroker, ensure_topics
from streams.batches import BatchConsumer, BatchPublisher
from tests.ingest_support import wait_until
from tests.worker_harness import produce

pytestmark = [pytest.mark.broker]
TOPIC = "batches.test"
DEADLINE = 60.0


def _consumer(bootstrap: str, handle: Any, group: str = "batches-test") -> BatchConsumer:
    return BatchConsumer(bootstrap=bootstrap, topic=TOPIC, group_id=group, handle=handle)


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_commits_after_handling_and_reads_a_failed_batch_again(tmp_path: Path) -> None:
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as broker:
        await ensure_topics(broker.bootstrap, {TOPIC: 2})
        await produce(broker.bootstrap, TOPIC, [(f"k{i % 5}", f"v{i}".encode()) for i in range(20)])
        seen: list[bytes] = []
        failures = 1

        async def handle(records: Sequence[Any]) -> None:
            nonlocal failures
            if failures:
                failures -= 1
                raise RuntimeError("handler bug")
            seen.extend(r.value for r in records)

        first = _consumer(broker.bootstrap, handle)
        task = asyncio.create_task(first.run())
        await wait_until(
            lambda: len(seen) >= 20, within=DEADLINE, what="all 20 records after the failed batch"
        )
        assert first.owns(0) and first.owns(1), "a group of one reads every partition"
        await _stop(task)
        assert sorted(seen) == sorted(f"v{i}".encode() for i in range(20))

        # A successor in the same group starts after the committed offsets: nothing is repeated,
        # and it reads what came since.
        await produce(broker.bootstrap, TOPIC, [("k1", b"late")])
        after: list[bytes] = []

        async def collect(records: Sequence[Any]) -> None:
            after.extend(r.value for r in records)

        task = asyncio.create_task(_consumer(broker.bootstrap, collect).run())
        try:
            await wait_until(
                lambda: bool(after),
                within=DEADLINE,
                what="the record produced after the first consumer stopped",
            )
            await asyncio.sleep(1.0)  # anything else would arrive with it
            assert after == [b"late"]
        finally:
            await _stop(task)


async def test_publisher_places_keys_as_the_producer_does(tmp_path: Path) -> None:
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as broker:
        await ensure_topics(broker.bootstrap, {TOPIC: 4, "batches.reference": 4})
        keys = [f"20261122-{i:08x}".encode() for i in range(40)]
        publisher = BatchPublisher(broker.bootstrap, TOPIC)
        try:
            await publisher.publish([(k, b"x" * 100 + k) for k in keys])
        finally:
            await publisher.stop()
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await producer.start()
        try:
            expected = {
                k: (await producer.send_and_wait("batches.reference", b"", key=k)).partition
                for k in keys
            }
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            TOPIC, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest", group_id=None
        )
        await consumer.start()
        got: dict[bytes, tuple[int, bytes]] = {}
        order: dict[int, list[bytes]] = {}
        try:
            while len(got) < len(keys):
                batches = await asyncio.wait_for(consumer.getmany(timeout_ms=500), DEADLINE)
                for tp, records in batches.items():
                    for r in records:
                        got[r.key] = (tp.partition, r.value)
                        order.setdefault(tp.partition, []).append(r.key)
        finally:
            await consumer.stop()
        assert {k: p for k, (p, _) in got.items()} == expected
        assert len(set(expected.values())) > 1, "the keys spread over several partitions"
        assert all(v == b"x" * 100 + k for k, (_, v) in got.items())
        # Within a partition the records keep the order they were given in.
        for partition, received in order.items():
            assert received == [k for k in keys if expected[k] == partition]
