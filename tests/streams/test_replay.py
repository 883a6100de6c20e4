"""After a memory-only broker restarted, the relay goes back to where the reactions were."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from crisis.runtime import heartbeat
from crisis.settings import Settings
from crisis.store.db import make_engine, migrate
from streams.reactions import Reactions
from streams.replay import (
    broker_incarnation,
    load_reacted,
    rewind_relay_after_broker_loss,
    save_reacted,
)


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


def _settings(tmp_path: Path, database_url: str, **over: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path / "var",
        "database_url": database_url,
        "kafka_bootstrap": "127.0.0.1:9",
        "outbox_until_logged": True,
    }
    values.update(over)
    return Settings(**values)  # type: ignore[arg-type]


def test_the_reacted_position_survives_and_stops_before_anything_pending(tmp_path: Path) -> None:
    assert load_reacted(tmp_path) is None
    save_reacted(tmp_path, 17, "b1")
    assert load_reacted(tmp_path) == (17, "b1")
    reactions = Reactions.__new__(Reactions)
    reactions.pending = {"a": {"id": 12, "incident_id": "a"}, "b": {"id": 15, "incident_id": "b"}}
    assert reactions.reacted_up_to(20) == 11
    reactions.pending = {}
    assert reactions.reacted_up_to(20) == 20


def _broker_started(run_dir: Path, incarnation: str) -> None:
    heartbeat.write_json(run_dir / heartbeat.BROKER_FILE, {"incarnation": incarnation})


async def test_a_new_broker_moves_the_relay_back_to_what_the_reactions_saw(
    tmp_path: Path, database_url: str
) -> None:
    settings = _settings(tmp_path, database_url)
    run_dir = settings.effective_run_dir
    assert await _relay_at(settings, 100) == 100
    _broker_started(run_dir, "first")
    save_reacted(run_dir, 40, broker_incarnation(run_dir))
    # The same broker: an ingest restart changes nothing (the reactions' offsets are there).
    assert await rewind_relay_after_broker_loss(settings) is None
    assert await _relay_at(settings) == 100

    _broker_started(run_dir, "second")
    assert await rewind_relay_after_broker_loss(settings) == 40
    assert await _relay_at(settings) == 40
    # Behind the reactions' position already: nothing to move.
    assert await rewind_relay_after_broker_loss(settings) is None


async def test_no_rewind_without_a_memory_only_broker_or_with_several_partitions(
    tmp_path: Path, database_url: str
) -> None:
    await _relay_at(_settings(tmp_path, database_url), 100)
    for over in ({"outbox_until_logged": False}, {"log_partitions": 2}):
        settings = _settings(tmp_path, database_url, **over)
        run_dir = settings.effective_run_dir
        save_reacted(run_dir, 40, "old")
        _broker_started(run_dir, "new")
        assert await rewind_relay_after_broker_loss(settings) is None
        assert await _relay_at(settings) == 100
