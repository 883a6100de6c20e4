"""Helpers shared by the ingest tests: envelopes, reading a topic back, polling."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer

from crisis.kafka import topics
from crisis.settings import Settings
from crisis.sources.events import Envelope, validate_event
from tests.conftest import ApiHarness

STEP_TIMEOUT = 20.0


def event(i: int = 0, *, unit: str = "agder-froland", **over: Any) -> dict[str, Any]:
    """A valid personal-alarm event (raw JSON form)."""
    raw: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"evt-{i}-{uuid.uuid4().hex[:8]}",
        "source": f"/units/{unit}/sensors/alarm-{i % 3}",
        "type": "no.kriminalomsorgen.sensor.personal_alarm",
        "time": "2026-11-22T02:41:07Z",
        "unit": unit,
        "data": {"area": "A", "staff_id": f"s{i}"},
    }
    raw.update(over)
    return raw


def envelope(i: int = 0, **over: Any) -> Envelope:
    return validate_event(event(i, **over))


async def read_topic(
    bootstrap: str, topic: str, *, count: int, within: float = 30.0
) -> list[tuple[bytes | None, dict[str, Any]]]:
    """(key, JSON value) of the first ``count`` records of every partition, in partition order.

    Reads until ``count`` records arrived or ``within`` seconds passed (then returns what came).
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        enable_auto_commit=False,
    )
    await asyncio.wait_for(consumer.start(), STEP_TIMEOUT)
    out: list[tuple[bytes | None, dict[str, Any]]] = []
    try:
        deadline = time.monotonic() + within
        while len(out) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for _tp, messages in sorted(batch.items(), key=lambda kv: kv[0].partition):
                for msg in messages:
                    assert msg.value is not None
                    out.append((msg.key, json.loads(msg.value)))
    finally:
        await asyncio.wait_for(consumer.stop(), STEP_TIMEOUT)
    return out


async def wait_until(check: Callable[[], bool], *, within: float = 30.0, what: str = "") -> None:
    """Poll ``check`` until true; fail naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what or check}")
        await asyncio.sleep(0.05)


def partitions() -> dict[str, int]:
    return {topics.EVENTS: 4, topics.EVENTS_DLQ: 1}


@asynccontextmanager
async def ingest_api(settings: Settings) -> AsyncIterator[ApiHarness]:
    """The web app with its producer on ``settings.kafka_bootstrap``, as an ApiHarness."""
    from web.app import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield ApiHarness(app, client)


def ingest_settings(tmp_path: Path, bootstrap: str, **over: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "var",
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'crisis.db'}",
        "secret_key": "test-secret",
        "kafka_bootstrap": bootstrap,
        "ingest_send_timeout": 2.0,
        "events_partitions": 4,
    }
    values.update(over)
    return Settings(**values)


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        if head == (f"{name}{{{want}}}" if want else name):
            return float(value)
    return 0.0
