"""Helpers shared by the worker tests and the pipeline benchmark: a real ``python -m streams
worker`` subprocess, a producer of envelopes keyed by unit, and polling for conditions."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from crisis.store.db import make_sessionmaker

REPO_ROOT = Path(__file__).resolve().parents[1]
STEP_TIMEOUT = 20.0

UNITS = (
    "agder-froland",
    "ringerike",
    "oslo-friomsorg",
)


def envelope(
    type_: str,
    *,
    unit: str = "agder-froland",
    source: str | None = None,
    time_: str | None = "2026-11-22T02:41:07Z",
    exercise: str | None = None,
    event_id: str | None = None,
    **data: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": source or f"/units/{unit}/sensors/s1",
        "type": f"no.kriminalomsorgen.{type_}",
        "unit": unit,
        "data": data,
    }
    if time_ is not None:
        out["time"] = time_
    if exercise:
        out["exercise"] = exercise
    return out


def worker_env(bootstrap: str, data_dir: Path, database_url: str, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        "CRISIS_KAFKA_BOOTSTRAP": bootstrap,
        "CRISIS_DATA_DIR": str(data_dir),
        "CRISIS_DATABASE_URL": database_url,
    }
    env.update(extra)
    return env


def loopback() -> str:
    """A loopback address of one test: a default metrics port on it is free of other runs."""
    return f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"


def spawn_worker(env: dict[str, str], log_path: Path, role: str = "all") -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streams", "worker", "--role", role],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env=env,
        )


def log_tail(log_path: Path, chars: int = 4000) -> str:
    try:
        return log_path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


async def produce(
    bootstrap: str,
    topic: str,
    items: Sequence[tuple[str | None, bytes]],
    *,
    pace: float | None = None,
    on_sent: Callable[[int, float], None] | None = None,
) -> None:
    """Send (key, value) records with acks=all; ``pace`` = records per second (None: flat out)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await asyncio.wait_for(producer.start(), STEP_TIMEOUT)
    try:
        start = time.monotonic()
        pending = []
        for n, (key, value) in enumerate(items):
            if pace:
                delay = start + n / pace - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            if on_sent is not None:
                on_sent(n, time.time())
            pending.append(await producer.send(topic, value, key=key.encode() if key else None))
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        await asyncio.wait_for(producer.flush(), STEP_TIMEOUT)
    finally:
        await asyncio.wait_for(producer.stop(), STEP_TIMEOUT)


async def consume_all(
    bootstrap: str, topic: str, until: Callable[[list[Any]], bool], deadline: float
) -> list[Any]:
    """Read ``topic`` from the start until ``until(records)`` or the deadline."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await asyncio.wait_for(consumer.start(), STEP_TIMEOUT)
    records: list[Any] = []
    try:
        while not until(records) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            for batch in batches.values():
                records.extend(batch)
    finally:
        await asyncio.wait_for(consumer.stop(), STEP_TIMEOUT)
    return records


async def count(engine: AsyncEngine, model: Any) -> int:
    async with make_sessionmaker(engine)() as session:
        return int((await session.exec(select(func.count()).select_from(model))).one()[0])  # type: ignore[call-overload]


async def wait_for(
    check: Callable[[], Awaitable[bool]],
    deadline: float,
    proc: subprocess.Popen[bytes] | None = None,
    interval: float = 0.1,
) -> bool:
    while time.monotonic() < deadline:
        if await check():
            return True
        if proc is not None and proc.poll() is not None:
            return False
        await asyncio.sleep(interval)
    return await check()


def as_json(value: Any) -> bytes:
    return json.dumps(value).encode()
