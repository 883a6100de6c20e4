"""The outbox and the durable producer against the real embedded broker."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from crisis.kafka import topics
from crisis.kafka.broker import EmbeddedBroker, free_port
from crisis.kafka.outbox import Outbox, Record
from crisis.kafka.producer import PREFIX_BYTES, EventProducer, ProducerClosed
from tests.ingest_support import envelope, event, partitions, read_topic, wait_until
from web.api.metrics import WebMetrics


def _rec(i: int) -> Record:
    return Record(topics.EVENTS, b"k", json.dumps({"i": i}).encode(), 1_700_000_000_000 + i)


def test_outbox_keeps_order_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path)
    box.append([_rec(i) for i in range(5)])
    box.append([_rec(5)])
    assert box.depth() == 6
    box.close()
    box = Outbox(path)
    assert box.depth() == 6
    rows = box.peek(4)
    assert [json.loads(r.value)["i"] for _, r in rows] == [0, 1, 2, 3]
    box.remove([seq for seq, _ in rows[:2]])
    assert box.depth() == 4
    assert [json.loads(r.value)["i"] for _, r in box.peek(10)] == [2, 3, 4, 5]
    assert box.peek(1)[0][1].timestamp_ms == 1_700_000_000_002
    box.close()


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def broker_later(tmp_path: Path, port: int) -> Iterator[EmbeddedBroker]:
    """A broker on a fixed port that the test starts when it wants (stopped at the end)."""
    broker = EmbeddedBroker(port=port, log_path=tmp_path / "tansu.log")
    yield broker
    broker.stop()


def _producer(tmp_path: Path, bootstrap: str) -> EventProducer:
    return EventProducer(
        bootstrap=bootstrap,
        outbox_path=tmp_path / "var" / "outbox.db",
        topic_partitions=partitions(),
        send_timeout=2.0,
        retry_max=0.5,
    )


@pytest.mark.broker
async def test_broker_down_at_startup_then_drains_in_order(
    tmp_path: Path, broker_later: EmbeddedBroker
) -> None:
    producer = _producer(tmp_path, broker_later.bootstrap)
    await producer.start()
    try:
        assert not producer.connected
        envs = [envelope(i) for i in range(30)]
        assert await producer.accept(envs[:20]) == [e.id for e in envs[:20]]
        assert producer.outbox_depth() == 20
        await producer.dead_letter({"id": "x"}, reason="bad", origin="test")
        assert producer.outbox_depth() == 21

        broker_later.start()
        await wait_until(lambda: producer.outbox_depth() == 0, what="outbox drained")
        assert producer.connected
        await producer.accept(envs[20:])  # goes straight to Kafka now
        assert producer.outbox_depth() == 0
        got = await read_topic(broker_later.bootstrap, topics.EVENTS, count=30)
        assert [v["id"] for _, v in got] == [e.id for e in envs]  # one unit → one partition
        assert {k for k, _ in got} == {b"agder-froland"}
        dlq = await read_topic(broker_later.bootstrap, topics.EVENTS_DLQ, count=1)
        assert dlq[0][1]["reason"] == "bad" and dlq[0][1]["event"] == {"id": "x"}
    finally:
        await producer.stop()


@pytest.mark.broker
async def test_outbox_survives_a_restart_and_new_events_queue_behind_it(
    tmp_path: Path, broker_later: EmbeddedBroker
) -> None:
    first = _producer(tmp_path, broker_later.bootstrap)
    await first.start()
    old = [envelope(i) for i in range(15)]
    await first.accept(old)
    await first.stop()
    with pytest.raises(ProducerClosed):
        await first.accept(old)

    broker_later.start()
    second = _producer(tmp_path, broker_later.bootstrap)
    await second.start()
    try:
        assert second.connected and second.outbox_depth() == 15
        new = [envelope(100 + i) for i in range(5)]
        await second.accept(new)  # must not overtake the 15 queued ones
        await wait_until(lambda: second.outbox_depth() == 0, what="outbox drained")
        got = await read_topic(broker_later.bootstrap, topics.EVENTS, count=20)
        assert [v["id"] for _, v in got] == [e.id for e in old + new]
    finally:
        await second.stop()


@pytest.mark.broker
async def test_broker_killed_while_connected(tmp_path: Path, broker_later: EmbeddedBroker) -> None:
    broker_later.start()
    producer = _producer(tmp_path, broker_later.bootstrap)
    await producer.start()
    try:
        assert producer.connected
        await producer.accept([envelope(0)])
        assert producer.outbox_depth() == 0
        broker_later.kill()
        lost_broker = [envelope(i) for i in range(1, 11)]
        await producer.accept(lost_broker[:5])  # fails within send_timeout → outbox
        await producer.accept(lost_broker[5:])
        assert producer.outbox_depth() == 10 and not producer.connected
        broker_later.restart()  # memory storage: empty; the producer re-creates the topics
        await wait_until(lambda: producer.outbox_depth() == 0, what="outbox drained")
        got = await read_topic(broker_later.bootstrap, topics.EVENTS, count=10)
        assert [v["id"] for _, v in got] == [e.id for e in lost_broker]
    finally:
        await producer.stop()


# --- records the broker can never take (issue 20) ---------------------------------------------


def _big_event_record(size: int) -> tuple[Record, tuple[str, str]]:
    raw = event(0, data={"area": "A" * size, "staff_id": "s0"})
    value = json.dumps(raw).encode()
    return Record(
        topics.EVENTS, b"agder-froland", value, 1_700_000_000_000, (raw["source"], raw["id"])
    ), (
        raw["source"],
        raw["id"],
    )


@pytest.mark.broker
@pytest.mark.parametrize("until_logged", [False, True], ids=["acked", "until-logged"])
async def test_too_large_records_become_reduced_dead_letters_and_the_queue_moves_on(
    tmp_path: Path, broker_later: EmbeddedBroker, until_logged: bool
) -> None:
    normal = envelope(1)
    logged = {normal.key}

    async def confirm(keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        return {k for k in keys if k in logged}  # the big one never reaches the log

    producer = EventProducer(
        bootstrap=broker_later.bootstrap,
        outbox_path=tmp_path / "var" / "outbox.db",
        topic_partitions=partitions(),
        send_timeout=2.0,
        retry_max=0.5,
        origin="bridge:test",
        until_logged=until_logged,
        confirm=confirm if until_logged else None,
        confirm_interval=0.1,
    )
    await producer.start()
    try:
        big, big_key = _big_event_record(1_100_000)
        await producer.send_records([big])
        await producer.dead_letter(
            "B" * 1_200_000,
            reason="the payload is not JSON",
            origin="bridge:test",
            unit="ringerike",
        )
        await producer.accept([normal])
        # A broker outage still holds everything, in order.
        assert not producer.connected and producer.outbox_depth() == 3

        broker_later.start()
        await wait_until(lambda: producer.outbox_depth() == 0, what="outbox drained")
        got = await read_topic(broker_later.bootstrap, topics.EVENTS, count=1)
        assert [v["id"] for _, v in got] == [normal.id]
        dlq = await read_topic(broker_later.bootstrap, topics.EVENTS_DLQ, count=2)
        assert len(dlq) == 2 and producer.dead_lettered == 2 and producer.dropped == 0
        event_letter, bridge_letter = (v for _, v in dlq)
        assert event_letter["reduced"] is True and event_letter["origin"] == "bridge:test"
        assert event_letter["size"] > 1_100_000 and "too large for Kafka" in event_letter["reason"]
        assert (event_letter["source"], event_letter["event_id"]) == big_key
        assert event_letter["unit"] == "agder-froland" and event_letter["topic"] == topics.EVENTS
        assert 0 < len(event_letter["prefix"]) <= PREFIX_BYTES
        assert event_letter["prefix"].startswith('{"specversion"')
        # A dead letter too large keeps its own reason, origin and unit.
        assert bridge_letter["reason"].startswith("the payload is not JSON -- too large")
        assert bridge_letter["unit"] == "ringerike" and bridge_letter["size"] > 1_200_000
        assert bridge_letter["errors"][-1]["field"] == "size"
    finally:
        await producer.stop()


@pytest.mark.broker
async def test_a_record_that_cannot_even_be_dead_lettered_is_dropped_not_wedged(
    tmp_path: Path, broker_later: EmbeddedBroker
) -> None:
    broker_later.start()
    producer = EventProducer(
        bootstrap=broker_later.bootstrap,
        outbox_path=tmp_path / "var" / "outbox.db",
        topic_partitions=partitions(),
        send_timeout=2.0,
        origin="ingest",
        max_request_size=1024,  # so small that the reduced letter (a 2 KiB prefix) fails too
    )
    metrics = WebMetrics()
    metrics.unpublishable.producer = producer
    labels = {"origin": "ingest", "outcome": "dropped"}
    before = metrics.registry.get_sample_value("crisis_producer_unpublishable_total", labels)
    await producer.start()
    try:
        assert producer.connected
        big, _ = _big_event_record(4000)
        normal = envelope(2)
        await producer.send_records([big])  # straight to Kafka: answered, not held
        await producer.accept([normal])
        assert producer.outbox_depth() == 0 and producer.dropped == 1
        got = await read_topic(broker_later.bootstrap, topics.EVENTS, count=1)
        assert [v["id"] for _, v in got] == [normal.id]
        after = metrics.registry.get_sample_value("crisis_producer_unpublishable_total", labels)
        assert (before, after) == (0, 1)
    finally:
        await producer.stop()
