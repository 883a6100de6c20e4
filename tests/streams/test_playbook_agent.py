"""End to end through the real embedded broker: a committed entry on ``crisis.log`` → the worker
(in a subprocess, with the playbook agent attached) → tasks in the database and on ``crisis.log``;
and the agent's clock setting up and escalating an incident nobody published.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlmodel import select

from crisis.clock import utcnow
from crisis.kafka import topics
from crisis.kafka.broker import EmbeddedBroker, ensure_topics
from crisis.log.append import open_incident
from crisis.log.models import IncidentCreate, LogEntry
from crisis.log.verify import verify_log
from crisis.settings import Settings
from crisis.store.db import make_engine, make_sessionmaker, migrate
from streams.playbook_agent import entry_json
from streams.worker import topic_partitions

REPO_ROOT = Path(__file__).resolve().parents[2]
STEP_TIMEOUT = 15.0
#: Worker boot + group join (~5 s here) + reaction; generous for a loaded 2-core machine.
DEADLINE = 90.0


async def _tasks(sessions: object, incident_id: str) -> list[LogEntry]:
    async with sessions() as session:  # type: ignore[operator]
        result = await session.exec(
            select(LogEntry).where(LogEntry.incident_id == incident_id, LogEntry.kind == "task")
        )
        return list(result.all())


def _spawn_worker(env: dict[str, str], cwd: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """``python -m streams worker`` (what ``crisis worker`` runs), output to ``log_path``."""
    with open(log_path, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "streams", "worker"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
        )


async def _first(sessions: object, incident_id: str, kind: str) -> LogEntry | None:
    async with sessions() as session:  # type: ignore[operator]
        result = await session.exec(
            select(LogEntry).where(LogEntry.incident_id == incident_id, LogEntry.kind == kind)
        )
        return result.first()


@pytest.mark.broker
@pytest.mark.slow
async def test_worker_turns_a_log_entry_into_tasks(tmp_path: Path) -> None:
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as broker:
        settings = Settings(
            data_dir=tmp_path / "var",
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'crisis.db'}",
            kafka_bootstrap=broker.bootstrap,
        )
        await ensure_topics(broker.bootstrap, topic_partitions(settings))
        engine = make_engine(settings)
        await migrate(engine)
        sessions = make_sessionmaker(engine)
        async with sessions() as session:
            incident, opening = await open_incident(
                session,
                incident=IncidentCreate(
                    type="breath_motion_absent",
                    title="Pust ikke registrert, celle A2-114",
                    unit="agder-froland",
                    severity=5,
                ),
                actor="system:streams",
                data={
                    "event_type": "no.kriminalomsorgen.sensor.breath_absent",
                    "source": "/units/agder-froland/sensors/A2-114-breath",
                    "unit": "agder-froland",
                    "event_data": {"cell": "A2-114"},
                },
            )
            # Opened three hours ago and never published: only the clock can find it.
            stale, _ = await open_incident(
                session,
                incident=IncidentCreate(
                    type="breath_motion_absent",
                    title="Bevegelse ikke registrert, celle K1-3",
                    unit="trondheim",
                    severity=5,
                ),
                actor="system:streams",
                data={"event_type": "no.kriminalomsorgen.sensor.motion_absent", "cell": "K1-3"},
                at=utcnow() - timedelta(hours=3),
            )
            await session.commit()
            record = entry_json(opening)

        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await asyncio.wait_for(producer.start(), STEP_TIMEOUT)
        try:
            # Garbage first: the agent must log it and go on to the real entry.
            await producer.send_and_wait(topics.LOG, b"\xff not json", key=incident.id.encode())
            await producer.send_and_wait(topics.LOG, b'{"no": "incident"}', key=b"x")
            await producer.send_and_wait(
                topics.LOG, json.dumps(record).encode(), key=incident.id.encode()
            )
        finally:
            await producer.stop()

        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
            "CRISIS_KAFKA_BOOTSTRAP": broker.bootstrap,
            "CRISIS_DATABASE_URL": settings.effective_database_url,
            "CRISIS_DATA_DIR": str(settings.data_dir),
            "CRISIS_PLAYBOOK_TICK_SECONDS": "1",
        }
        worker_log = tmp_path / "worker.log"
        proc = _spawn_worker(env, tmp_path, worker_log)
        try:
            deadline = time.monotonic() + DEADLINE
            tasks: list[LogEntry] = []
            while time.monotonic() < deadline and proc.poll() is None:
                tasks = await _tasks(sessions, incident.id)
                if len(tasks) >= 6:
                    break
                await asyncio.sleep(0.5)
            tail = worker_log.read_text(errors="replace")[-3000:]
            assert len(tasks) == 6, f"exit={proc.poll()} worker log:\n{tail}"
            assert tasks[0].actor == "rule:pust-bevegelse/tilsyn-celle"
            # Set up by the agent reacting to the published entry (the clock logs kind 'tick').
            line = f"playbooks: incident_opened {incident.id}#1 -> "
            while time.monotonic() < deadline:
                if line in worker_log.read_text(errors="replace"):
                    break
                await asyncio.sleep(0.2)
            assert line in worker_log.read_text(errors="replace")
            assert tasks[0].data["responsible_role"] == "on_duty"

            # The engine's own entries are published on crisis.log for boards and notifiers.
            consumer = AIOKafkaConsumer(
                topics.LOG,
                bootstrap_servers=broker.bootstrap,
                auto_offset_reset="earliest",
                group_id=None,
            )
            await asyncio.wait_for(consumer.start(), STEP_TIMEOUT)
            seen: list[dict[str, object]] = []
            try:
                while time.monotonic() < deadline and not any(
                    isinstance(r, dict) and r.get("kind") == "message" for r in seen
                ):
                    batches = await consumer.getmany(timeout_ms=500)
                    for records in batches.values():
                        for r in records:
                            try:
                                seen.append(json.loads(r.value or b""))
                            except ValueError:
                                continue
            finally:
                await consumer.stop()
            published = [
                r for r in seen if isinstance(r, dict) and str(r.get("actor")).startswith("rule:")
            ]
            assert {r["kind"] for r in published} >= {"task", "cooperation_contact", "message"}
            plan = next(r for r in published if r["kind"] == "message")["data"]
            assert plan["message_type"] == "notification_request"  # type: ignore[index]

            # The clock: the stale incident got its tasks and, open > 2 h, its escalation.
            escalated = None
            while time.monotonic() < deadline and escalated is None:
                escalated = await _first(sessions, stale.id, "escalation")
                await asyncio.sleep(0.5)
            assert escalated is not None, worker_log.read_text(errors="replace")[-3000:]
            assert escalated.actor == "rule:pust-bevegelse/escalate-region"
            assert len(await _tasks(sessions, stale.id)) == 6
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            await engine.dispose()
    check = make_engine(settings)
    try:
        async with make_sessionmaker(check)() as session:
            assert (await verify_log(session)).ok
    finally:
        await check.dispose()
