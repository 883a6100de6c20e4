"""Helpers shared by the ingest tests: envelopes, reading a topic back, polling."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer

from crisis import topics
from crisis.events import Envelope, validate_event

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
    bootstrap: str, topic: str, *, count: int, timeout: float = 30.0
) -> list[tuple[bytes | None, dict[str, Any]]]:
    """(key, JSON value) of the first ``count`` records of every partition, in partition order.

    Reads until ``count`` records arrived or ``timeout`` passed (then returns what came).
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
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for _tp, messages in sorted(batch.items(), key=lambda kv: kv[0].partition):
                for msg in messages:
                    assert msg.value is not None
                    out.append((msg.key, json.loads(msg.value)))
    finally:
        await asyncio.wait_for(consumer.stop(), STEP_TIMEOUT)
    return out


async def wait_until(check: Callable[[], bool], *, timeout: float = 30.0, what: str = "") -> None:
    """Poll ``check`` until true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        await asyncio.sleep(0.05)


def partitions() -> dict[str, int]:
    return {topics.EVENTS: 4, topics.EVENTS_DLQ: 1}
