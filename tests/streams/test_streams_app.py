"""Faust on Tansu: a real worker subprocess consumes, transforms and produces.

The worker runs in a subprocess (not in-process) because ``faust worker``
owns its event loop and signal handlers, exactly like production.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from crisis.kafka.broker import EmbeddedBroker, ensure_topics
from streams.app import create_faust_app, topic_names

REPO_ROOT = Path(__file__).resolve().parents[2]
N_MESSAGES = 200
STEP_TIMEOUT = 15.0
#: Worker boot + group join + processing 200 records; ~5 s with our settings.
DELIVERY_TIMEOUT = 60.0

WORKER_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from streams.app import create_faust_app

    app = create_faust_app(
        bootstrap=sys.argv[1], app_id="crisis-test-forwarder", data_dir=Path(sys.argv[2])
    )
    source = app.topic("t.in", value_serializer="json")
    sink = app.topic("t.out", value_serializer="json")


    @app.agent(source)
    async def forward(stream):
        async for value in stream:
            await sink.send(value={**value, "forwarded": True})


    if __name__ == "__main__":
        # Faust's -l accepts crit/error/warn/info/debug ("warning" is rejected).
        sys.argv = [sys.argv[0], "worker", "-l", "warn"]
        app.main()
    """
)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with EmbeddedBroker(log_path=log) as b:
        yield b


def test_topic_names() -> None:
    assert topic_names() == (
        "crisis.events",
        "crisis.events.dlq",
        "crisis.log",
        "crisis.notifications",
    )


def test_create_faust_app_settings(tmp_path: Path) -> None:
    app = create_faust_app(bootstrap="127.0.0.1:1", data_dir=tmp_path / "data")
    conf = app.conf
    assert conf.id == "crisis-worker"
    assert [str(u) for u in conf.broker] == ["kafka://127.0.0.1:1"]
    assert conf.broker_session_timeout == 6
    assert conf.broker_rebalance_timeout == 3
    assert conf.broker_heartbeat_interval == 1
    assert conf.producer_acks == -1
    assert conf.consumer_auto_offset_reset == "earliest"
    assert str(conf.store) == "memory:"
    assert conf.processing_guarantee.value == "at_least_once"
    assert conf.web_enabled is False
    assert app.boot_strategy.enable_web is False

    web_app = create_faust_app(
        bootstrap="127.0.0.1:1", app_id="other", data_dir=tmp_path / "d2", web_port=6099
    )
    assert web_app.conf.web_enabled is True
    assert web_app.conf.web_port == 6099
    assert web_app.boot_strategy.enable_web is True


@pytest.mark.broker
async def test_app_topics_can_be_created(broker: EmbeddedBroker) -> None:
    await ensure_topics(broker.bootstrap, {name: 2 for name in topic_names()})
    await ensure_topics(broker.bootstrap, {name: 2 for name in topic_names()})


async def _produce(bootstrap: str, topic: str, values: list[dict[str, object]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await asyncio.wait_for(producer.start(), STEP_TIMEOUT)
    try:
        for value in values:
            await producer.send(topic, json.dumps(value).encode())
        await asyncio.wait_for(producer.flush(), STEP_TIMEOUT)
    finally:
        await asyncio.wait_for(producer.stop(), STEP_TIMEOUT)


async def _consume(
    bootstrap: str, topic: str, count: int, deadline: float
) -> tuple[list[dict[str, object]], float | None]:
    """Read ``count`` records (or until ``deadline``); also return first-arrival time."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await asyncio.wait_for(consumer.start(), STEP_TIMEOUT)
    received: list[dict[str, object]] = []
    first_at: float | None = None
    try:
        while len(received) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                if records and first_at is None:
                    first_at = time.monotonic()
                received.extend(json.loads(r.value) for r in records if r.value is not None)
    finally:
        await asyncio.wait_for(consumer.stop(), STEP_TIMEOUT)
    return received, first_at


def _spawn_worker(script: Path, bootstrap: str, workdir: Path) -> subprocess.Popen[bytes]:
    """Start ``script`` as a Faust worker; output goes to ``workdir/worker.log``."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    with open(workdir / "worker.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, str(script), bootstrap, str(workdir / "faust-data")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
        )


def _worker_diagnostics(proc: subprocess.Popen[bytes], workdir: Path) -> str:
    log = (workdir / "worker.log").read_text(errors="replace")[-4000:]
    return f"worker exit code={proc.poll()}; log tail:\n{log}"


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


@pytest.mark.broker
@pytest.mark.slow
async def test_faust_worker_forwards_on_tansu(broker: EmbeddedBroker, tmp_path: Path) -> None:
    await ensure_topics(broker.bootstrap, {"t.in": 2, "t.out": 1})
    script = tmp_path / "forward_worker.py"
    script.write_text(WORKER_SCRIPT)

    started = time.monotonic()
    proc = _spawn_worker(script, broker.bootstrap, tmp_path)
    try:
        sent = [{"seq": i, "body": f"message {i}"} for i in range(N_MESSAGES)]
        await _produce(broker.bootstrap, "t.in", sent)
        received, first_at = await _consume(
            broker.bootstrap, "t.out", N_MESSAGES, started + DELIVERY_TIMEOUT
        )
        assert first_at is not None, (
            f"no output from the Faust worker. {_worker_diagnostics(proc, tmp_path)}"
        )
        print(f"\n[faust-on-tansu] worker start -> first output: {first_at - started:.2f}s")

        expected = [{**value, "forwarded": True} for value in sent]
        by_seq = sorted(received, key=lambda v: int(str(v["seq"])))
        assert len(received) == N_MESSAGES, _worker_diagnostics(proc, tmp_path)
        assert by_seq == expected

        proc.send_signal(signal.SIGTERM)
        stop_started = time.monotonic()
        try:
            await asyncio.to_thread(proc.wait, 15)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"Faust worker ignored SIGTERM for 15 s. {_worker_diagnostics(proc, tmp_path)}"
            )
        print(f"[faust-on-tansu] worker stopped in {time.monotonic() - stop_started:.2f}s")
        assert proc.returncode == 0, _worker_diagnostics(proc, tmp_path)
    finally:
        _stop_process(proc)
