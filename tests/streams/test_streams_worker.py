"""The real worker (``python -m streams worker``) on the embedded broker: events in, crisis log,
dead letters and the ``crisis.log`` change feed out, metrics on its own port, clean SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from crisis.kafka import topics
from crisis.kafka.broker import EmbeddedBroker, ensure_topics
from crisis.log.models import Incident, LogEntry, RawEvent
from crisis.log.verify import verify_log
from crisis.settings import Settings
from crisis.sources.models import DeadLetter
from crisis.store.db import make_engine, make_sessionmaker, migrate
from tests.worker_harness import (
    as_json,
    consume_all,
    count,
    envelope,
    log_tail,
    loopback,
    produce,
    spawn_worker,
    stop,
    wait_for,
    worker_env,
)

pytestmark = [pytest.mark.broker, pytest.mark.slow]

DEADLINE = 90.0


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with EmbeddedBroker(log_path=log) as b:
        yield b


async def test_worker_end_to_end(broker: EmbeddedBroker, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'crisis.db'}"
    engine = make_engine(url)
    await migrate(engine)
    await ensure_topics(broker.bootstrap, {topics.EVENTS: 2, topics.EVENTS_DLQ: 1, topics.LOG: 1})
    # Metrics are on by default (port 9101); a loopback address of its own keeps it free.
    host, port = loopback(), Settings.model_fields["worker_metrics_port"].default
    env = worker_env(broker.bootstrap, tmp_path / "var", url, CRISIS_WORKER_METRICS_HOST=host)
    log_path = tmp_path / "worker.log"
    # The ingest role: this test counts the pipeline's own entries (the playbook engine's
    # reactions are tested in test_reactions/test_playbook_agent/test_end_to_end).
    proc = spawn_worker(env, log_path, role="ingest")
    try:
        a1 = envelope("sensor.personal_alarm", area="A-blokk")
        a2 = envelope("sensor.personal_alarm", area="A-blokk", source="/units/agder-froland/s2")
        breath = envelope("sensor.breath_absent", unit="ringerike", cell="B1-7")
        drill = envelope("sensor.fire_alarm", zone="Z", exercise="ovelse-brann")
        bad = {**envelope("sensor.door_forced"), "colour": ["red"]}
        items: list[tuple[str | None, bytes]] = [
            ("agder-froland", as_json(a1)),
            ("agder-froland", as_json(a2)),
            ("agder-froland", as_json(a1)),  # the same (source, id) again
            ("ringerike", as_json(breath)),
            ("agder-froland", as_json(drill)),
            ("agder-froland", as_json(bad)),
            (None, b"this is not json"),
        ]
        await produce(broker.bootstrap, topics.EVENTS, items)

        async def done() -> bool:
            return await count(engine, RawEvent) == 4 and await count(engine, DeadLetter) == 2

        deadline = time.monotonic() + DEADLINE
        assert await wait_for(done, deadline, proc), log_tail(log_path)

        async with make_sessionmaker(engine)() as session:
            incidents = {i.type: i for i in (await session.exec(select(Incident))).all()}
            assert set(incidents) == {"violence_threat", "breath_motion_absent", "fire"}
            assert incidents["breath_motion_absent"].severity == 5
            assert incidents["breath_motion_absent"].unit == "ringerike"
            assert incidents["fire"].exercise == "ovelse-brann"
            assert incidents["violence_threat"].head_seq == 2  # opened + a2 joined
            entries = (await session.exec(select(LogEntry).order_by(LogEntry.id))).all()
            assert len(entries) == 4
            assert (await verify_log(session)).ok
            reasons = sorted(d.reason for d in (await session.exec(select(DeadLetter))).all())
            assert "colour: an extension attribute is a string" in reasons[0]
            assert reasons[1].startswith("unreadable event")

        feed = await consume_all(
            broker.bootstrap, topics.LOG, lambda r: len(r) >= 4, time.monotonic() + DEADLINE
        )
        published = {json.loads(r.value)["hash"] for r in feed}
        assert published == {e.hash for e in entries}
        assert {r.key.decode() for r in feed} == {e.incident_id for e in entries}

        dlq = await consume_all(
            broker.bootstrap, topics.EVENTS_DLQ, lambda r: len(r) >= 2, time.monotonic() + 30
        )
        assert len(dlq) == 2
        assert any("colour" in json.loads(r.value)["reason"] for r in dlq)

        body = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5).read()
        )
        text = body.decode()
        # every record read counts: a1, a2 and a1 again, whichever batches they fell in
        assert 'crisis_events_consumed_total{type="sensor.personal_alarm"} 3.0' in text
        assert 'crisis_incidents_opened_total{type="fire"} 1.0' in text
        assert "crisis_produce_to_commit_seconds_count 4.0" in text
        assert "crisis_events_dead_lettered_total" in text
        assert "process_cpu_seconds_total" in text

        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 20)
        except subprocess.TimeoutExpired:
            pytest.fail("worker ignored SIGTERM: " + log_tail(log_path))
        assert proc.returncode == 0, log_tail(log_path)
    finally:
        stop(proc)
        await engine.dispose()


async def test_a_reactions_worker_serves_metrics_on_its_own_default_port(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'crisis.db'}"
    host, port = loopback(), Settings.model_fields["reactions_metrics_port"].default
    env = worker_env(broker.bootstrap, tmp_path / "var", url, CRISIS_WORKER_METRICS_HOST=host)
    log_path = tmp_path / "reactions.log"
    proc = spawn_worker(env, log_path, role="reactions")

    def scrape() -> str | None:
        try:
            return (
                urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5).read().decode()
            )
        except OSError:
            return None

    try:
        deadline = time.monotonic() + DEADLINE
        text = None
        while text is None:
            assert proc.poll() is None, log_tail(log_path)
            assert time.monotonic() < deadline, log_tail(log_path)
            await asyncio.sleep(0.2)
            text = await asyncio.to_thread(scrape)
        assert "process_cpu_seconds_total" in text
        assert "crisis_events_consumed" not in text  # the ingest's counters are not its own
    finally:
        stop(proc)
