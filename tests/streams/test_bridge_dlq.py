"""One oversized MQTT message cannot block the bridge (issue 20): Eclipse ``mosquitto_pub``
publishes a 1 MiB payload and then a valid alarm; the alarm reaches an incident within 10 s and
the big one is listed by ``GET /api/v1/events/dlq`` (reduced: reason, size, a prefix) with its
origin. Real parts: Mosquitto on 127.0.0.1:1883, the embedded broker, the bridge's producer with
the outbox as ``crisis up`` runs it, the ingest worker process and the web API."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from crisis.domain.organisation import load_organisation
from crisis.kafka import topics
from crisis.kafka.broker import EmbeddedBroker, ensure_topics
from crisis.settings import Settings
from crisis.store.db import make_engine, migrate
from streams.bridges.common import bridge_producer
from streams.bridges.mqtt import run_bridge
from tests.conftest import api_for
from tests.worker_harness import log_tail, spawn_worker, stop, worker_env

pytestmark = [pytest.mark.broker, pytest.mark.slow]

MQTT = ("127.0.0.1", 1883)
MOSQUITTO_PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"


def _mosquitto() -> tuple[str, int]:
    """Mosquitto where it runs here (and in CI, which provides it as a service)."""
    if not Path(MOSQUITTO_PUB).exists():
        pytest.skip("no mosquitto_pub (Eclipse Mosquitto clients) on this machine")
    try:
        with socket.create_connection(MQTT, timeout=1):
            return MQTT
    except OSError:
        pytest.skip("no MQTT broker answers on 127.0.0.1:1883")


@pytest.fixture
def kafka(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as running:
        yield running


def _pub(topic: str, *, file: Path | None = None, message: str | None = None) -> None:
    host, port = MQTT
    args = [MOSQUITTO_PUB, "-h", host, "-p", str(port), "-q", "1", "-t", topic]
    args += ["-f", str(file)] if file is not None else ["-m", message or ""]
    subprocess.run(args, check=True, timeout=20, capture_output=True)


async def _forget_session(client_id: str) -> None:
    async with aiomqtt.Client(*MQTT, identifier=client_id, clean_session=True):
        pass


async def test_oversized_message_is_dead_lettered_and_the_next_alarm_gets_through(
    kafka: EmbeddedBroker, tmp_path: Path
) -> None:
    _mosquitto()
    url = f"sqlite+aiosqlite:///{tmp_path / 'crisis.db'}"
    engine = make_engine(url)
    await migrate(engine)
    await engine.dispose()
    await ensure_topics(kafka.bootstrap, {topics.EVENTS: 4, topics.EVENTS_DLQ: 1, topics.LOG: 1})
    settings = Settings(
        data_dir=tmp_path / "var",
        database_url=url,
        secret_key="test-secret",
        kafka_bootstrap=kafka.bootstrap,
        outbox_until_logged=True,  # as `crisis up` runs the bridges on the embedded broker
        ingest_send_timeout=2.0,
    )
    worker_log = tmp_path / "worker.log"
    worker = spawn_worker(worker_env(kafka.bootstrap, tmp_path / "var", url), worker_log, "ingest")
    root = f"t-{uuid.uuid4().hex[:8]}/kriminalomsorgen"
    client_id = f"crisis-test-{uuid.uuid4().hex[:8]}"
    producer = bridge_producer(settings, "mqtt")
    await producer.start()
    ready, halt = asyncio.Event(), asyncio.Event()
    bridge = asyncio.create_task(
        run_bridge(
            url=f"mqtt://{MQTT[0]}:{MQTT[1]}",
            topic=f"{root}/+/+/+",
            producer=producer,
            known_units=set(load_organisation(None).units),
            client_id=client_id,
            ready=ready,
            stop=halt,
        )
    )
    try:
        async with api_for(settings) as api:
            admin = await api.user("root", "admin")
            await asyncio.wait_for(ready.wait(), 20)
            big = tmp_path / "big.bin"
            big.write_bytes(b"A" * 1_048_576)
            await asyncio.to_thread(_pub, f"{root}/agder-froland/fire/zone-9", file=big)
            sent = time.monotonic()
            alarm = {"id": f"fire-{uuid.uuid4().hex[:8]}", "zone": "9"}
            await asyncio.to_thread(
                _pub, f"{root}/agder-froland/fire/zone-9", message=json.dumps(alarm)
            )

            incidents: list[dict[str, object]] = []
            while not incidents and time.monotonic() - sent < 10:
                assert worker.poll() is None, log_tail(worker_log)
                r = await api.client.get("/api/v1/incidents", headers=admin)
                assert r.status_code == 200, r.text
                incidents = [i for i in r.json() if i["unit"] == "agder-froland"]
                await asyncio.sleep(0.2)
            assert incidents, f"no incident within 10 s\n{log_tail(worker_log)}"

            letters: list[dict[str, object]] = []
            deadline = time.monotonic() + 10
            while not letters and time.monotonic() < deadline:
                r = await api.client.get("/api/v1/events/dlq", headers=admin)
                assert r.status_code == 200, r.text
                letters = r.json()
                await asyncio.sleep(0.2)
            assert len(letters) == 1, letters
            letter = letters[0]
            assert letter["origin"] == "bridge:mqtt"
            assert letter["unit"] == "agder-froland"
            reason = str(letter["reason"])
            assert "not JSON" in reason and "too large for Kafka" in reason
            assert any(e["field"] == "size" for e in letter["errors"])  # type: ignore[union-attr,index]
            raw = str(letter["raw"])
            assert 0 < len(raw) <= 4096 and "AAAA" in raw  # a prefix, not the megabyte
            assert producer.dead_lettered == 1 and producer.outbox_depth() == 0

            # Need-to-know as before: a unit's operator sees its own unit's dead letters only.
            other = await api.user("ola", "operator", unit="ringerike")
            r = await api.client.get("/api/v1/events/dlq", headers=other)
            assert r.status_code == 200 and r.json() == []
    finally:
        halt.set()
        await asyncio.wait_for(bridge, 20)
        await producer.stop()
        stop(worker)
        await _forget_session(client_id)
        if os.environ.get("CRISIS_KEEP_LOGS"):
            print(log_tail(worker_log))
