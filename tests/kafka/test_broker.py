"""EmbeddedBroker lifecycle: start, crash (kill), restart on the same port, stop."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from crisis.kafka.broker import BrokerError, EmbeddedBroker, ensure_topics, free_port

pytestmark = pytest.mark.broker

# Every network step is bounded so a broken broker fails in seconds.
STEP_TIMEOUT = 15.0


def _tansu_children() -> list[int]:
    """PIDs of live (non-zombie) tansu processes whose parent is this process."""
    me = os.getpid()
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Format: "pid (comm) state ppid ..."; comm may contain spaces.
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        if int(ppid) == me and "tansu" in comm and state != "Z":
            found.append(int(entry.name))
    return found


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _roundtrip(bootstrap: str, topic: str, value: bytes) -> bytes:
    """Produce one record and read it back from the start of the topic."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await asyncio.wait_for(producer.start(), STEP_TIMEOUT)
    try:
        await asyncio.wait_for(producer.send_and_wait(topic, value), STEP_TIMEOUT)
    finally:
        await asyncio.wait_for(producer.stop(), STEP_TIMEOUT)
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await asyncio.wait_for(consumer.start(), STEP_TIMEOUT)
    try:
        msg = await asyncio.wait_for(consumer.getone(), STEP_TIMEOUT)
    finally:
        await asyncio.wait_for(consumer.stop(), STEP_TIMEOUT)
    assert msg.value is not None
    return msg.value


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_start_fails_fast_when_port_taken(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        broker = EmbeddedBroker(port=port, log_path=tmp_path / "tansu.log")
        started = time.monotonic()
        with pytest.raises(BrokerError, match="in use"):
            broker.start(timeout=5)
        assert time.monotonic() - started < 5
        assert not broker.running


async def test_kill_restart_stop(tmp_path: Path) -> None:
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log")
    broker.start(timeout=20)
    try:
        port = broker.port
        assert broker.bootstrap == f"127.0.0.1:{port}"
        topic = f"t.broker.{uuid.uuid4().hex[:8]}"
        await ensure_topics(broker.bootstrap, {topic: 1})
        await ensure_topics(broker.bootstrap, {topic: 1})  # "already exists" is fine
        assert await _roundtrip(broker.bootstrap, topic, b"before") == b"before"

        # Crash: a producer connected before the kill can no longer deliver.
        producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap, acks="all", request_timeout_ms=2000
        )
        await asyncio.wait_for(producer.start(), STEP_TIMEOUT)
        try:
            old_pid = broker.pid
            assert old_pid is not None
            broker.kill()
            assert not broker.running
            assert not _pid_alive(old_pid)
            with pytest.raises((KafkaError, asyncio.TimeoutError, OSError)):
                await asyncio.wait_for(producer.send_and_wait(topic, b"lost"), 10)
        finally:
            await asyncio.wait_for(producer.stop(), STEP_TIMEOUT)

        # Back on the same port; memory storage means the topic must be re-created.
        broker.restart(timeout=20)
        assert broker.running
        assert broker.port == port
        await ensure_topics(broker.bootstrap, {topic: 1})
        assert await _roundtrip(broker.bootstrap, topic, b"after") == b"after"
        pid = broker.pid
        assert pid is not None
    finally:
        broker.stop()
    assert not broker.running
    assert not _pid_alive(pid)
    assert _tansu_children() == []
    broker.stop()  # idempotent


def test_context_manager_stops_broker() -> None:
    with EmbeddedBroker() as broker:
        assert broker.running
        pid = broker.pid
        assert pid is not None
    assert not _pid_alive(pid)
    assert _tansu_children() == []
