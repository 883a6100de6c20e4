"""The MQTT bridge against a real Mosquitto and the embedded Kafka-protocol broker."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import pytest

from crisis.domain.organisation import load_organisation
from crisis.kafka import topics
from crisis.kafka.broker import EmbeddedBroker, free_port
from crisis.kafka.producer import EventProducer
from crisis.settings import Settings
from streams.bridges.mqtt import Rejected, message_to_event, run_bridge, split_url
from tests.ingest_support import partitions, read_topic

UNITS = set(load_organisation(None).units)
NOW = datetime(2026, 11, 22, 2, 41, 7, tzinfo=UTC)


async def _forget_session(host: str, port: int, client_id: str) -> None:
    """Drop the persistent session a test bridge left on a shared broker."""
    async with aiomqtt.Client(host, port, identifier=client_id, clean_session=True):
        pass


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """Mosquitto on 127.0.0.1:1883 when it runs; else one we start; else skip (with why)."""
    if _answers("127.0.0.1", 1883):
        yield ("127.0.0.1", 1883)
        return
    binary = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if binary is None:
        pytest.skip("no MQTT broker: nothing answers on 127.0.0.1:1883 and no mosquitto binary")
    port = free_port()
    conf = tmp_path_factory.mktemp("mosquitto") / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen(
        [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while not _answers("127.0.0.1", port):
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.skip("mosquitto did not start")
            time.sleep(0.05)
        yield ("127.0.0.1", port)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def kafka(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as running:
        yield running


@pytest.fixture
async def producer(tmp_path: Path, kafka: EmbeddedBroker) -> AsyncIterator[EventProducer]:
    p = EventProducer(
        bootstrap=kafka.bootstrap,
        outbox_path=tmp_path / "outbox-bridge-mqtt.db",
        topic_partitions=partitions(),
        send_timeout=2.0,
    )
    await p.start()
    yield p
    await p.stop()


# --- pure mapping -----------------------------------------------------------------------------


def test_topic_and_payload_become_an_envelope() -> None:
    env = message_to_event(
        "kriminalomsorgen/agder-froland/breath/A2-114-breath",
        json.dumps({"id": "b-1", "cell": "A2-114", "seconds_without_breath": 45}).encode(),
        received_at=NOW,
        known_units=UNITS,
    )
    assert env.type == "no.kriminalomsorgen.sensor.breath_absent"
    assert env.source == "/units/agder-froland/sensors/A2-114-breath"
    assert env.id == "b-1" and env.unit == "agder-froland"
    assert env.data == {"cell": "A2-114", "seconds_without_breath": 45}
    # No id: a hash of topic + payload + time, the same for a redelivery of the same message.
    payload = json.dumps({"gateway": "gw-7", "time": "2026-11-22T02:40:00Z"}).encode()
    a = message_to_event(
        "site/kriminalomsorgen/ringerike/heartbeat/gw-7",
        payload,
        received_at=NOW,
        known_units=UNITS,
    )
    b = message_to_event(
        "site/kriminalomsorgen/ringerike/heartbeat/gw-7", payload, received_at=datetime.now(UTC),
        known_units=UNITS,
    )  # fmt: skip
    assert a.id == b.id and a.id.startswith("mqtt-")
    ek = message_to_event(
        "kriminalomsorgen/oslo-friomsorg/ek/tag-9",
        json.dumps({"type": "ek_tamper", "tag": "tag-9", "exercise": "ovelse-1"}).encode(),
        received_at=NOW,
        known_units=UNITS,
    )
    assert ek.type.endswith("sensor.ek_tamper") and ek.exercise == "ovelse-1"


@pytest.mark.parametrize(
    ("topic", "payload", "field"),
    [
        ("kriminalomsorgen/agder-froland/breath", b"{}", "topic"),
        ("kriminalomsorgen/agder-froland/teleport/x", b"{}", "topic"),
        ("kriminalomsorgen/atlantis/alarm/x", b"{}", "unit"),
        ("kriminalomsorgen/agder-froland/alarm/x", b"not json", "payload"),
        ("kriminalomsorgen/agder-froland/alarm/x", b"[1]", "payload"),
        ("kriminalomsorgen/agder-froland/breath/x", b'{"cell": ""}', "data.cell"),
    ],
)
def test_bad_messages_are_rejected_with_the_field(topic: str, payload: bytes, field: str) -> None:
    with pytest.raises(Rejected) as exc:
        message_to_event(topic, payload, received_at=NOW, known_units=UNITS)
    assert field in {e["field"] for e in exc.value.errors}


def test_the_url_carries_the_filter_and_the_settings_the_bridges() -> None:
    """``CRISIS_MQTT_URL`` (what ``crisis up`` starts the bridge from) may end in the filter."""
    assert split_url("mqtt://127.0.0.1:1883") == ("mqtt://127.0.0.1:1883", None)
    assert split_url("mqtt://u:p@h:1883/site/kriminalomsorgen/+/+/#") == (
        "mqtt://u:p@h:1883",
        "site/kriminalomsorgen/+/+/#",
    )
    assert split_url("mqtts://h/a%2Fb/%23") == ("mqtts://h", "a/b/#")
    env = {
        "CRISIS_MQTT_URL": "mqtt://127.0.0.1:1883/kriminalomsorgen/+/+/+",
        "CRISIS_MEDIA_FEEDS": "https://www.nrk.no/toppsaker.rss, https://www.vg.no/rss/feed",
    }
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        settings = Settings()
    assert settings.mqtt_url == env["CRISIS_MQTT_URL"]
    assert settings.media_feeds == [
        "https://www.nrk.no/toppsaker.rss",
        "https://www.vg.no/rss/feed",
    ]


# --- live: Mosquitto → bridge → Kafka -------------------------------------------------------


@pytest.mark.broker
async def test_bridge_produces_valid_and_dead_letters_invalid(
    mqtt_broker: tuple[str, int], kafka: EmbeddedBroker, producer: EventProducer
) -> None:
    host, port = mqtt_broker
    root = f"t-{uuid.uuid4().hex[:8]}/kriminalomsorgen"
    ready, stop = asyncio.Event(), asyncio.Event()
    client_id = f"crisis-test-{uuid.uuid4().hex[:8]}"
    task = asyncio.create_task(
        run_bridge(
            url=f"mqtt://{host}:{port}",
            topic=f"{root}/+/+/+",
            producer=producer,
            known_units=UNITS,
            client_id=client_id,
            ready=ready,
            stop=stop,
        )
    )
    try:
        await asyncio.wait_for(ready.wait(), 20)
        async with aiomqtt.Client(host, port) as pub:
            messages = [
                (f"{root}/agder-froland/breath/A2-114", {"id": "m1", "cell": "A2-114"}),
                (f"{root}/ringerike/heartbeat/gw-1", {"gateway": "gw-1"}),
                (f"{root}/atlantis/alarm/x", {"id": "m3"}),
                (f"{root}/agder-froland/teleport/x", {"id": "m4"}),
            ]
            for topic, body in messages:
                await pub.publish(topic, json.dumps(body), qos=1)
            await pub.publish(f"{root}/agder-froland/alarm/x", b"\xff not json", qos=1)
        events = await read_topic(kafka.bootstrap, topics.EVENTS, count=2)
        dlq = await read_topic(kafka.bootstrap, topics.EVENTS_DLQ, count=3)
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await _forget_session(host, port, client_id)
    by_key = {k: v for k, v in events}
    assert set(by_key) == {b"agder-froland", b"ringerike"}
    assert by_key[b"agder-froland"]["id"] == "m1"
    assert by_key[b"agder-froland"]["type"] == "no.kriminalomsorgen.sensor.breath_absent"
    assert by_key[b"ringerike"]["source"] == "/units/ringerike/sensors/gw-1"
    reasons = [v["reason"] for _, v in dlq]
    assert len(dlq) == 3 and all(v["origin"] == "bridge:mqtt" for _, v in dlq)
    assert any("unknown unit" in r for r in reasons)
    assert any("unknown sensor kind 'teleport'" in r for r in reasons)
    assert any("not JSON" in r for r in reasons)
    assert dlq[0][1]["event"]["mqtt_topic"].startswith(root)


@pytest.mark.broker
@pytest.mark.slow
async def test_crisis_bridge_mqtt_command(
    mqtt_broker: tuple[str, int], kafka: EmbeddedBroker, tmp_path: Path
) -> None:
    host, port = mqtt_broker
    root = f"t-{uuid.uuid4().hex[:8]}/kriminalomsorgen"
    env = dict(
        os.environ, CRISIS_KAFKA_BOOTSTRAP=kafka.bootstrap, CRISIS_DATA_DIR=str(tmp_path / "var")
    )
    crisis = Path(sys.executable).parent / "crisis"
    client_id = f"crisis-cli-{uuid.uuid4().hex[:8]}"
    proc = await asyncio.create_subprocess_exec(
        str(crisis), "bridge", "mqtt", "--url", f"mqtt://{host}:{port}/{root}/+/+/+",
        "--client-id", client_id,
        env=env,
    )  # fmt: skip
    try:
        found: list[str] = []
        deadline = time.monotonic() + 60
        async with aiomqtt.Client(host, port) as pub:
            while not found and time.monotonic() < deadline:  # until the bridge has subscribed
                await pub.publish(
                    f"{root}/halden/fire/zone-3", json.dumps({"id": "f1", "zone": "3"}), qos=1
                )
                got = await read_topic(kafka.bootstrap, topics.EVENTS, count=1, within=1.0)
                found = [v["id"] for _, v in got]
        assert found == ["f1"]
        assert (tmp_path / "var" / "outbox-bridge-mqtt.db").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        await _forget_session(host, port, client_id)
