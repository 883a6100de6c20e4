"""The evaluation end to end: an exercise through the real broker, workers and dispatcher
(the set-up of ``test_exercise_end_to_end``); the test does one expected action in time (the
fire playbook's card "call the fire service" marked done) and skips another (nobody
acknowledges the staff alarm). After the end the evaluation marks the first met with its
time and the second missed, and counts the deliveries blocked for the non-participants."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from crisis.kafka import topics
from crisis.kafka.broker import EmbeddedBroker, ensure_topics
from crisis.store.db import make_engine, migrate
from notifiers.config import load_notify_config
from notifiers.dispatcher import Dispatcher
from tests.ingest_support import ingest_api, ingest_settings
from tests.notif_sink import Sink
from tests.system.test_exercise_end_to_end import (  # noqa: F401 (fixtures)
    PARTICIPANTS,
    PEOPLE,
    _staff_messages,
    broker,
    notify_file,
    sink,
)
from tests.worker_harness import log_tail, spawn_worker, stop, wait_for, worker_env

pytestmark = [pytest.mark.broker, pytest.mark.slow]

DEADLINE = 120.0
EX = "ovelse-e2e-evaluering"
SCENARIO = """version: 1
id: e2e-evaluering
title: Brann, evaluert
title_en: Fire, evaluated
units: [agder-froland]
duration: 3h
participants:
  - person: ola
  - person: kari
injects:
  - id: alarm
    at: 0s
    type: sensor
    event: fire_alarm
    data: {zone: "A2", detail: "Røykdetektor A2"}
expected:
  - id: brannvesen
    action: task_done
    card: varsle-brannvesen
    within: 60m
  - id: kvittering
    action: staff_acknowledged
    within: 60m
"""


async def test_the_evaluation_marks_done_met_and_skipped_missed(
    broker: EmbeddedBroker,  # noqa: F811
    tmp_path: Path,
    sink: Sink,  # noqa: F811
) -> None:
    config_path = notify_file(tmp_path / "notify.yaml", sink)
    settings = ingest_settings(tmp_path, broker.bootstrap, notify_config=config_path)
    url = settings.effective_database_url
    engine = make_engine(url)
    await migrate(engine)
    await ensure_topics(
        broker.bootstrap,
        {topics.EVENTS: 4, topics.EVENTS_DLQ: 1, topics.LOG: 1, topics.NOTIFICATIONS: 1},
    )
    env = worker_env(broker.bootstrap, tmp_path / "var", url, CRISIS_NOTIFY_CONFIG=str(config_path))
    ingest = spawn_worker(env, tmp_path / "ingest.log", role="ingest")
    reactions = spawn_worker(env, tmp_path / "reactions.log", role="reactions")
    stop_dispatch = asyncio.Event()
    try:
        async with ingest_api(settings) as api:
            dispatcher = Dispatcher(api.app.state.sessions, load_notify_config(config_path))
            dispatching = asyncio.create_task(dispatcher.run(stop_dispatch))
            controller = await api.user("ovingsleder", "exercise-controller")
            r = await api.client.post(
                "/api/v1/exercises",
                json={"scenario": SCENARIO, "speed": 30, "id": EX},
                headers=controller,
            )
            assert r.status_code == 201, r.text
            r = await api.client.post(f"/api/v1/exercises/{EX}/start", headers=controller)
            assert r.status_code == 200, r.text

            async def staff_all_final() -> bool:
                ms = await _staff_messages(engine, EX)
                return len(ms) >= len(PEOPLE) and all(
                    m.status in ("sent", "blocked", "failed") for m in ms
                )

            assert await wait_for(staff_all_final, time.monotonic() + DEADLINE, ingest), log_tail(
                tmp_path / "ingest.log"
            ) + log_tail(tmp_path / "reactions.log")
            # the action the test performs: the fire service card done
            listed = await api.client.get(f"/api/v1/incidents?exercise={EX}", headers=controller)
            done = None
            for incident in listed.json():
                timeline = await api.client.get(
                    f"/api/v1/incidents/{incident['id']}/timeline", headers=controller
                )
                for entry in timeline.json():
                    if entry["kind"] == "task" and entry["data"].get("card") == "varsle-brannvesen":
                        r = await api.client.post(
                            f"/api/v1/incidents/{incident['id']}/entries",
                            json={
                                "kind": "task_update",
                                "task": entry["seq"],
                                "status": "done",
                                "text": "110 varslet",
                            },
                            headers=controller,
                        )
                        assert r.status_code == 201, r.text
                        done = r.json()["at"]
                        break
                if done:
                    break
            assert done is not None, "the fire playbook made no fire-service task"

            r = await api.client.post(f"/api/v1/exercises/{EX}/end", headers=controller)
            assert r.status_code == 200, r.text
            r = await api.client.get(f"/api/v1/exercises/{EX}/evaluation", headers=controller)
            assert r.status_code == 200, r.text
            body = r.json()
            got = {a["id"]: a for a in body["expected_actions"]}
            assert got["brannvesen"]["met"] is True
            assert got["brannvesen"]["actual_at"] is not None
            assert got["brannvesen"]["actual_seconds"] <= 3600
            assert got["kvittering"]["met"] is False
            assert got["kvittering"]["actual_at"] is None
            deliveries = body["deliveries"]
            assert deliveries["blocked"] == len(PEOPLE) - len(PARTICIPANTS)
            assert deliveries["by_group"]["staff"].get("sent") == len(PARTICIPANTS)
            pdf = await api.client.get(
                f"/api/v1/exercises/{EX}/evaluation?format=pdf", headers=controller
            )
            assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
            stop_dispatch.set()
            await dispatching
            await dispatcher.aclose()
    finally:
        stop_dispatch.set()
        stop(ingest)
        stop(reactions)
        await engine.dispose()
