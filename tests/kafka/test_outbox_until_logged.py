"""The outbox that waits for the log: an accepted event leaves it only once the log holds it.

The embedded broker keeps nothing on disk; these tests restart it (losing every record) and
check that what the "log" did not yet hold is sent again, in order, and nothing else is lost.
The log here is a real consumer of the real broker, recording what it read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from crisis.kafka import topics
from crisis.kafka.broker import EmbeddedBroker, ensure_topics, free_port
from crisis.kafka.producer import EventProducer
from tests.ingest_support import envelope, partitions, read_topic, wait_until

pytestmark = pytest.mark.broker


class FakeLog:
    """What the ingest has committed: a set of (source, id) the test fills from the topic."""

    def __init__(self) -> None:
        self.held: set[tuple[str, str]] = set()
        self.asked = 0

    async def confirm(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        self.asked += 1
        return {k for k in keys if k in self.held}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker(port=free_port(), log_path=tmp_path / "tansu.log")
    b.start()
    yield b
    b.stop()


def _producer(tmp_path: Path, bootstrap: str, log: FakeLog, **over: float) -> EventProducer:
    return EventProducer(
        bootstrap=bootstrap,
        outbox_path=tmp_path / "var" / "outbox.db",
        topic_partitions=partitions(),
        send_timeout=2.0,
        retry_max=0.5,
        until_logged=True,
        confirm=log.confirm,
        confirm_interval=0.05,
        replay_after=over.get("replay_after", 30.0),
    )


async def _ids_on_topic(bootstrap: str, expect: int) -> list[str]:
    records = await read_topic(bootstrap, topics.EVENTS, count=expect)
    return [str(value["id"]) for _key, value in records]


def test_until_logged_needs_a_way_to_ask_the_log(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="confirm"):
        EventProducer(bootstrap="x:1", outbox_path=tmp_path / "o.db", until_logged=True)


async def test_acked_events_stay_until_the_log_holds_them(
    tmp_path: Path, broker: EmbeddedBroker
) -> None:
    log = FakeLog()
    producer = _producer(tmp_path, broker.bootstrap, log)
    await producer.start()
    try:
        envs = [envelope(i) for i in range(40)]
        await producer.accept(envs)
        assert sorted(await _ids_on_topic(broker.bootstrap, 40)) == sorted(e.id for e in envs)
        assert producer.outbox_depth() == 40  # Kafka acked them all, the log holds none
        log.held |= {e.key for e in envs[:25]}
        await wait_until(lambda: producer.outbox_depth() == 15, what="25 confirmed")
        log.held |= {e.key for e in envs}
        await wait_until(lambda: producer.outbox_depth() == 0, what="all confirmed")
    finally:
        await producer.stop()


async def test_what_a_restarted_broker_lost_is_sent_again(
    tmp_path: Path, broker: EmbeddedBroker
) -> None:
    log = FakeLog()
    producer = _producer(tmp_path, broker.bootstrap, log, replay_after=0.5)
    await producer.start()
    try:
        envs = [envelope(i) for i in range(30)]
        await producer.accept(envs)
        await _ids_on_topic(broker.bootstrap, 30)
        log.held |= {e.key for e in envs[:10]}
        await wait_until(lambda: producer.outbox_depth() == 20, what="10 confirmed")
        broker.restart()  # memory storage: every record is gone
        await ensure_topics(broker.bootstrap, partitions())
        # No new event arrives: the log's standstill alone must bring the lost 20 back.
        again = await _ids_on_topic(broker.bootstrap, 20)
        assert set(again) >= {e.id for e in envs[10:]}
        assert producer.replays >= 1
        log.held |= {e.key for e in envs}
        await wait_until(lambda: producer.outbox_depth() == 0, what="all confirmed")
    finally:
        await producer.stop()


async def test_a_new_producer_sends_what_the_last_one_left(
    tmp_path: Path, broker: EmbeddedBroker
) -> None:
    log = FakeLog()
    first = _producer(tmp_path, broker.bootstrap, log)
    await first.start()
    envs = [envelope(i) for i in range(12)]
    await first.accept(envs)
    await _ids_on_topic(broker.bootstrap, 12)
    await first.stop()  # as if the web process died: nothing was logged yet
    broker.restart()
    await ensure_topics(broker.bootstrap, partitions())

    second = _producer(tmp_path, broker.bootstrap, log)
    await second.start()
    try:
        assert second.outbox_depth() == 12
        assert sorted(await _ids_on_topic(broker.bootstrap, 12)) == sorted(e.id for e in envs)
        log.held |= {e.key for e in envs}
        await wait_until(lambda: second.outbox_depth() == 0, what="all confirmed")
    finally:
        await second.stop()


async def test_accepted_while_the_broker_is_away(tmp_path: Path) -> None:
    log = FakeLog()
    broker = EmbeddedBroker(port=free_port(), log_path=tmp_path / "tansu.log")
    producer = _producer(tmp_path, broker.bootstrap, log)
    await producer.start()
    try:
        envs = [envelope(i) for i in range(8)]
        await producer.accept(envs)  # answered from the fsynced outbox alone
        assert producer.outbox_depth() == 8
        broker.start()
        assert sorted(await _ids_on_topic(broker.bootstrap, 8)) == sorted(e.id for e in envs)
        assert producer.outbox_depth() == 8
        log.held |= {e.key for e in envs}
        await wait_until(lambda: producer.outbox_depth() == 0, what="all confirmed")
    finally:
        await producer.stop()
        broker.stop()


async def test_a_stall_is_reported_through_replays_and_ends_when_the_log_takes_them(
    tmp_path: Path, broker: EmbeddedBroker
) -> None:
    log = FakeLog()
    producer = _producer(tmp_path, broker.bootstrap, log, replay_after=0.3)
    await producer.start()
    try:
        envs = [envelope(i) for i in range(5)]
        await producer.accept(envs)
        await wait_until(lambda: producer.replays >= 2, what="two replays")
        assert producer.stalled_for() > 0.6  # replays do not restart the clock
        log.held |= {e.key for e in envs}
        await wait_until(lambda: producer.outbox_depth() == 0, what="all confirmed")
        assert producer.stalled_for() == 0.0
    finally:
        await producer.stop()
