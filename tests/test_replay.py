"""After a memory-only broker restarted, the relay goes back to where the reactions were."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import text

from crisis import topics
from crisis.broker import EmbeddedBroker, ensure_topics, free_port
from crisis.db import make_engine, migrate
from crisis.settings import Settings
from streams.reactions import Reactions
from streams.replay import load_reacted, rewind_relay_after_broker_loss, save_reacted

pytestmark = pytest.mark.broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker(port=free_port(), log_path=tmp_path / "tansu.log")
    b.start()
    yield b
    b.stop()


async def _relay_at(settings: Settings, position: int | None = None) -> int:
    engine = make_engine(settings)
    try:
        await migrate(engine)
        async with engine.begin() as conn:
            if position is not None:
                await conn.execute(
                    text(
                        "INSERT INTO feed_positions (name, position, updated_at)"
                        " VALUES ('crisis.log', :p, CURRENT_TIMESTAMP)"
                    ),
                    {"p": position},
                )
            row = (
                await conn.execute(
                    text("SELECT position FROM feed_positions WHERE name = 'crisis.log'")
                )
            ).first()
    finally:
        await engine.dispose()
    assert row is not None
    return int(row[0])


def _settings(tmp_path: Path, database_url: str, bootstrap: str, **over: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path / "var",
        "database_url": database_url,
        "kafka_bootstrap": bootstrap,
        "outbox_until_logged": True,
    }
    values.update(over)
    return Settings(**values)  # type: ignore[arg-type]


def test_the_reacted_position_survives_and_stops_before_anything_pending(tmp_path: Path) -> None:
    assert load_reacted(tmp_path) is None
    save_reacted(tmp_path, 17)
    assert load_reacted(tmp_path) == 17
    reactions = Reactions.__new__(Reactions)
    reactions.pending = {"a": {"id": 12, "incident_id": "a"}, "b": {"id": 15, "incident_id": "b"}}
    assert reactions.reacted_up_to(20) == 11
    reactions.pending = {}
    assert reactions.reacted_up_to(20) == 20


async def test_an_empty_log_topic_moves_the_relay_back(
    tmp_path: Path, database_url: str, broker: EmbeddedBroker
) -> None:
    settings = _settings(tmp_path, database_url, broker.bootstrap)
    await ensure_topics(broker.bootstrap, {topics.LOG: 1})
    assert await _relay_at(settings, 100) == 100
    save_reacted(settings.effective_run_dir, 40)
    assert await rewind_relay_after_broker_loss(settings) == 40
    assert await _relay_at(settings) == 40
    # Once moved back, a second start changes nothing.
    assert await rewind_relay_after_broker_loss(settings) is None


async def test_a_log_topic_that_kept_its_records_is_left_alone(
    tmp_path: Path, database_url: str, broker: EmbeddedBroker
) -> None:
    settings = _settings(tmp_path, database_url, broker.bootstrap)
    await ensure_topics(broker.bootstrap, {topics.LOG: 1})
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topics.LOG, b"{}")
    finally:
        await producer.stop()
    await _relay_at(settings, 100)
    save_reacted(settings.effective_run_dir, 40)
    assert await rewind_relay_after_broker_loss(settings) is None
    assert await _relay_at(settings) == 100


async def test_an_external_kafka_is_never_rewound(
    tmp_path: Path, database_url: str, broker: EmbeddedBroker
) -> None:
    settings = _settings(tmp_path, database_url, broker.bootstrap, outbox_until_logged=False)
    await _relay_at(settings, 100)
    save_reacted(settings.effective_run_dir, 40)
    assert await rewind_relay_after_broker_loss(settings) is None
    assert await _relay_at(settings) == 100
