"""The dispatcher's Prometheus metrics: the real ``python -m notifiers`` process on its default
port, counting real deliveries to a local HTTP sink; a taken port never stops a process."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy.ext.asyncio import AsyncEngine

from crisis.clock import utcnow
from crisis.log import append
from crisis.log.models import IncidentCreate
from crisis.runtime.metrics import serve_metrics
from crisis.settings import Settings
from crisis.store.db import make_sessionmaker
from notifiers import service
from notifiers.config import parse_notify_config
from notifiers.dispatcher import Dispatcher
from notifiers.metrics import DispatcherMetrics
from tests.notif_sink import Sink
from tests.notifiers.test_notif_dispatcher import (
    all_final,
    drain,
    make_config,
    new_dispatcher,
    open_incident,
    request,
)
from tests.worker_harness import loopback

ROOT = Path(__file__).resolve().parents[2]
FACTS = {"title": "Brann", "known": "Røyk i avdeling A.", "actions": "Avdelingen er evakuert."}


def notify_yaml(sink: Sink) -> str:
    return f"""version: 1
delivery: {{attempts_per_contact: 2, backoff_seconds: 0.01, poll_seconds: 0.1}}
people:
  - id: staff-1
    name: Staff 1
    contacts: [{{channel: sms, url: '{sink.url("/staff/1")}'}}]
  - id: staff-2
    name: Staff 2
    contacts:
      - {{channel: sms, url: '{sink.url("/fail/staff-2")}'}}
      - {{channel: webhook, url: '{sink.url("/alt/staff-2")}'}}
  - id: dead
    name: Dead
    contacts: [{{channel: webhook, url: '{sink.url("/fail/dead")}'}}]
  - id: liaison
    name: Liaison
    contacts: [{{channel: webhook, url: '{sink.url("/fam/liaison")}'}}]
groups:
  - {{id: g-staff, kind: staff, unit: agder-froland, members: [staff-1, staff-2]}}
  - {{id: g-dead, kind: cooperating, unit: agder-froland, members: [dead]}}
  - {{id: g-fam, kind: families, unit: agder-froland, members: [liaison]}}
"""


def samples(text: str) -> dict[str, float]:
    """``name{labels}`` → value of a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


@pytest.fixture
async def dispatchers() -> AsyncIterator[list[Dispatcher]]:
    made: list[Dispatcher] = []
    yield made
    for d in made:
        await d.aclose()


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = await Sink().start()
    yield s
    await s.stop()


def spawn_dispatcher(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "notifiers"], env=env, stdout=log, stderr=subprocess.STDOUT
        )


@pytest.mark.slow
async def test_the_dispatcher_serves_its_metrics_on_its_default_port_and_counts_deliveries(
    engine: AsyncEngine, database_url: str, sink: Sink, tmp_path: Path
) -> None:
    sink.status["/fail/"] = 500
    config_path = tmp_path / "notify.yaml"
    config_path.write_text(notify_yaml(sink))
    config = parse_notify_config(config_path.read_text(), str(config_path))
    host = loopback()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRISIS_")}
    env.update(
        PYTHONPATH=str(ROOT),
        CRISIS_DATA_DIR=str(tmp_path / "var"),
        CRISIS_DATABASE_URL=database_url,
        CRISIS_NOTIFY_CONFIG=str(config_path),
        CRISIS_WORKER_METRICS_HOST=host,  # the port is the default: metrics are on unasked
    )
    log_path = tmp_path / "dispatcher.log"
    proc = spawn_dispatcher(env, log_path)
    url = f"http://{host}:{Settings.model_fields['dispatcher_metrics_port'].default}/metrics"

    async def scrape(client: httpx.AsyncClient) -> dict[str, float]:
        return samples((await client.get(url)).raise_for_status().text)

    async def until(client: httpx.AsyncClient, ok: object, within: float = 30.0) -> str:
        deadline = time.monotonic() + within
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                response = await client.get(url)
                if ok(samples(response.text)):  # type: ignore[operator]
                    return response.text
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            await asyncio.sleep(0.1)

    try:
        async with httpx.AsyncClient(timeout=5) as client:
            before = await until(client, lambda s: "process_cpu_seconds_total" in s)
            assert samples(before)['crisis_notify_queue_messages{state="pending"}'] == 0
            assert "crisis_notify_messages_total{" not in before  # nothing delivered yet

            async with make_sessionmaker(engine)() as session:
                incident, _ = await append.open_incident(
                    session,
                    incident=IncidentCreate(
                        type="fire", title="Brann", unit="agder-froland", severity=4
                    ),
                    actor="user:kari",
                )
                for groups in (["staff", "cooperating"], ["families"]):
                    await service.request_update(
                        session,
                        config=config,
                        incident_id=incident.id,
                        facts=FACTS,
                        groups=groups,
                        template="update",
                        next_update_at=utcnow() + timedelta(minutes=30),
                        author="user:kari",
                    )
                await session.commit()

            failed = (
                "crisis_notify_messages_total"
                '{channel="webhook",group="cooperating",outcome="failed"}'
            )
            text = await until(
                client,
                lambda s: (
                    s.get(failed) == 1
                    and s.get('crisis_notify_queue_messages{state="awaiting_approval"}') == 1
                    and s.get('crisis_notify_queue_messages{state="pending"}') == 0
                ),
            )
            after = samples(text)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def count(group: str, channel: str, outcome: str) -> float:
        key = (
            f'crisis_notify_messages_total{{channel="{channel}",group="{group}",'
            f'outcome="{outcome}"}}'
        )
        return after.get(key, 0)

    assert [h.path for h in sink.to("/staff/")] == ["/staff/1"]
    assert count("staff", "sms", "sent") == 1
    assert count("staff", "sms", "retry") == 2  # staff-2's first contact, twice, then the next
    assert count("staff", "webhook", "sent") == 1
    assert count("cooperating", "webhook", "retry") == 1
    assert after['crisis_notify_delivery_seconds_count{group="staff"}'] == 2
    assert after['crisis_notify_delivery_seconds_bucket{group="staff",le="30.0"}'] == 2
    assert after['crisis_notify_queue_messages{state="awaiting_approval"}'] == 1
    assert after['crisis_notify_queue_messages{state="held"}'] == 0
    # No recipient, address or exercise in a label: only group kinds, channels and outcomes.
    labels = set(re.findall(r'="([^"]*)"', text))
    for private in ("staff-1", "staff-2", "dead", "liaison", "127.0.0.1", str(sink.port)):
        assert not any(private in value for value in labels), private


def test_a_taken_metrics_port_is_a_warning_and_the_process_runs_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    Counter("crisis_probe", "A probe.", registry=registry).inc()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.WARNING, logger="crisis.metrics"):
            got = serve_metrics(
                registry, port=port, host="127.0.0.1", role="worker ingest", setting="CRISIS_X"
            )
    assert got is None
    assert f"metrics port 127.0.0.1:{port} unavailable" in caplog.text
    assert "CRISIS_X" in caplog.text
    assert serve_metrics(registry, port=0, host="127.0.0.1", role="r", setting="CRISIS_X") is None


def test_every_role_has_its_own_metrics_port_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CRISIS_"):
            monkeypatch.delenv(name)
    s = Settings()
    ports = [s.worker_metrics_port, s.reactions_metrics_port, s.dispatcher_metrics_port]
    assert all(ports) and len(set(ports)) == 3
    assert Settings(worker_metrics_port=0).worker_metrics_port == 0  # 0 turns it off


async def test_the_gates_count_blocked_and_held_by_group_and_no_exercise_leaks(
    engine: AsyncEngine, sink: Sink, dispatchers: list[Dispatcher]
) -> None:
    config = make_config(sink)
    incident = await open_incident(engine, exercise="ovelse-x")
    update_id = await request(engine, config, incident, groups=["staff", "public"])
    async with make_sessionmaker(engine)() as session:
        await service.approve_update(session, update_id=update_id, approver="user:ola")
        await session.commit()
    metrics = DispatcherMetrics()
    dispatcher = new_dispatcher(dispatchers, engine, config, metrics=metrics)
    await drain(dispatcher, all_final(engine, update_id))

    def value(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    messages = "crisis_notify_messages_total"
    assert value(messages, group="staff", channel="none", outcome="blocked") == 2  # not in it
    assert value(messages, group="public", channel="none", outcome="held") == 1  # staff first
    assert value(messages, group="staff", channel="sms", outcome="sent") == 1
    assert value(messages, group="public", channel="webhook", outcome="sent") == 1
    assert value("crisis_notify_delivery_seconds_count", group="public") == 1
    labels = {v for f in metrics.registry.collect() for s in f.samples for v in s.labels.values()}
    assert not any("ovelse" in v or "staff-" in v or v == "feed" for v in labels), labels
