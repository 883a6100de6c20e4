"""``/healthz`` per part, and the draining guard: what a stopping or broken tree answers."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from crisis.kafka.broker import EmbeddedBroker, free_port
from crisis.runtime import heartbeat
from crisis.settings import Settings
from tests.conftest import ApiHarness
from tests.ingest_support import event, ingest_api, ingest_settings


def _tree(run_dir: Path, *parts: str) -> None:
    """up.json as a live ``crisis up`` writes it (this test process plays the supervisor)."""
    heartbeat.write_json(
        run_dir / heartbeat.TREE_FILE,
        {"supervisor": os.getpid(), "parts": {p: {"restarts": 0} for p in parts}},
    )


async def test_parts_not_run_here_are_absent_and_do_not_count(api: ApiHarness) -> None:
    body = (await api.client.get("/healthz")).json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["broker"] == "absent"
    assert body["ingest"] == body["reactions"] == body["dispatcher"] == "absent"


async def test_a_tree_whose_ingest_stopped_beating_answers_503(
    api: ApiHarness, settings: Settings
) -> None:
    run_dir = settings.effective_run_dir
    _tree(run_dir, "ingest", "reactions", "dispatcher")
    for part in ("ingest", "reactions", "dispatcher"):
        heartbeat.beat(run_dir, part)
    assert (await api.client.get("/healthz")).status_code == 200

    heartbeat.write_json(run_dir / "ingest.beat", {"pid": 1, "at": time.time() - 60})
    response = await api.client.get("/healthz")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    body = response.json()
    assert body["failing"] == ["ingest"]
    assert body["ingest"].startswith("down: no heartbeat")

    heartbeat.beat(run_dir, "ingest")
    (run_dir / "dispatcher.beat").unlink()  # a dispatcher that died: degraded, not 503
    response = await api.client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["dispatcher"] == "down: never started"


async def test_a_dead_supervisor_means_no_tree(api: ApiHarness, settings: Settings) -> None:
    run_dir = settings.effective_run_dir
    heartbeat.write_json(
        run_dir / heartbeat.TREE_FILE, {"supervisor": 2**22 + 12345, "parts": {"ingest": {}}}
    )
    assert (await api.client.get("/healthz")).json()["ingest"] == "absent"


@pytest.mark.broker
async def test_draining_refuses_new_events_with_503_and_retry_after(tmp_path: Path) -> None:
    broker = EmbeddedBroker(port=free_port(), log_path=tmp_path / "tansu.log")
    broker.start()
    try:
        settings = ingest_settings(tmp_path, broker.bootstrap)
        async with ingest_api(settings) as api:
            headers = await api.user("sensor", "operator", unit="agder-froland")
            ok = await api.client.post("/api/v1/events", json=event(1), headers=headers)
            assert ok.status_code == 202, ok.text

            settings.effective_run_dir.mkdir(parents=True)
            (settings.effective_run_dir / heartbeat.DRAINING_FILE).touch()
            for path, body in (
                ("/api/v1/events", event(2)),
                ("/api/v1/reports", {"unit": "agder-froland", "what": "brann"}),
            ):
                refused = await api.client.post(path, json=body, headers=headers)
                assert refused.status_code == 503, (path, refused.text)
                assert refused.headers["Retry-After"] == "5"
            health = await api.client.get("/healthz")
            assert health.status_code == 503 and health.json()["status"] == "draining"
            # Reading goes on while the tree drains.
            assert (await api.client.get("/api/v1/incidents", headers=headers)).status_code == 200
            assert api.app.state.producer.outbox_depth() == 0

            (settings.effective_run_dir / heartbeat.DRAINING_FILE).unlink()
            again = await api.client.post("/api/v1/events", json=event(2), headers=headers)
            assert again.status_code == 202, again.text
    finally:
        broker.stop()


@pytest.mark.broker
async def test_a_broker_that_does_not_answer_is_named(tmp_path: Path) -> None:
    settings = ingest_settings(tmp_path, f"127.0.0.1:{free_port()}")
    async with ingest_api(settings) as api:
        response = await api.client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["broker"] == "down"
    assert response.json()["failing"] == ["broker"]


def test_a_draining_file_left_by_a_killed_tree_is_ignored(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / heartbeat.DRAINING_FILE).write_text(str(2**22 + 12345))
    assert not heartbeat.draining(run_dir)
    (run_dir / heartbeat.DRAINING_FILE).write_text(str(os.getpid()))
    assert heartbeat.draining(run_dir)
