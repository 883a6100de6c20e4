"""Exercises end to end: the runner in the web process → the real broker → the ingest and
reactions workers → the playbook's staff alarm → the dispatcher → a local HTTP sink; and
``crisis exercise run`` against a real server.

Five people are configured; the scenario's participants are two of them. Nothing reaches the
other three, every delivered message starts with ØVELSE, and after the end no incident of
the exercise is open (the board's overview shows none).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from crisis.kafka import topics
from crisis.kafka.broker import EmbeddedBroker, ensure_topics
from crisis.log.models import Incident
from crisis.store.db import make_engine, make_sessionmaker, migrate
from notifiers.config import load_notify_config
from notifiers.dispatcher import Dispatcher
from notifiers.models import OutboxMessage
from notifiers.rendering import EXERCISE_PREFIX
from tests.boardserver import start_board_server
from tests.ingest_support import ingest_api, ingest_settings
from tests.notif_sink import Sink
from tests.worker_harness import REPO_ROOT, log_tail, spawn_worker, stop, wait_for, worker_env

pytestmark = [pytest.mark.broker, pytest.mark.slow]

DEADLINE = 120.0
PEOPLE = ("ola", "kari", "per", "lise", "nils")
PARTICIPANTS = ("ola", "kari")

SCENARIO = """version: 1
id: e2e-brann
title: Brann, ende til ende
title_en: Fire, end to end
units: [agder-froland]
duration: 10m
participants:
  - person: ola
  - person: kari
injects:
  - id: alarm
    at: 0s
    type: sensor
    event: fire_alarm
    data: {zone: "A2", detail: "Røykdetektor A2"}
  - id: melding
    at: 30s
    type: report
    category: brann
    place: "Avdeling A"
    what: "Røyk i gangen"
  - id: les
    at: 1m
    type: text
    text: "Les opp: brannvesenet er på vei."
expected:
  - id: eier
    action: owner_set
    within: 2m
"""


def notify_file(path: Path, sink: Sink) -> Path:
    lines = ["version: 1", "delivery: {backoff_seconds: 0.01, poll_seconds: 0.1}", "people:"]
    for person in PEOPLE:
        lines += [
            f"  - id: {person}",
            f"    name: {person.title()} (test)",
            f"    contacts: [{{channel: webhook, url: '{sink.url('/' + person)}'}}]",
        ]
    lines += [
        "groups:",
        "  - {id: froland-staff, kind: staff, unit: agder-froland, "
        f"members: [{', '.join(PEOPLE)}]}}",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(log_path=tmp_path_factory.mktemp("tansu") / "tansu.log") as b:
        yield b


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = await Sink().start()
    yield s
    await s.stop()


async def _staff_messages(engine: AsyncEngine, exercise_id: str) -> list[OutboxMessage]:
    async with make_sessionmaker(engine)() as session:
        incidents = select(Incident.id).where(Incident.exercise == exercise_id)
        return list(
            (
                await session.exec(
                    select(OutboxMessage).where(
                        col(OutboxMessage.incident_id).in_(incidents),
                        OutboxMessage.group == "staff",
                    )
                )
            ).all()
        )


async def test_an_exercise_reaches_its_participants_only_and_leaves_nothing_open(
    broker: EmbeddedBroker, tmp_path: Path, sink: Sink
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
                json={"scenario": SCENARIO, "speed": 30, "id": "ovelse-e2e"},
                headers=controller,
            )
            assert r.status_code == 201, r.text
            r = await api.client.post("/api/v1/exercises/ovelse-e2e/start", headers=controller)
            assert r.status_code == 200, r.text

            async def staff_all_final() -> bool:
                ms = await _staff_messages(engine, "ovelse-e2e")
                return len(ms) >= len(PEOPLE) and all(
                    m.status in ("sent", "blocked", "failed") for m in ms
                )

            deadline = time.monotonic() + DEADLINE
            assert await wait_for(staff_all_final, deadline, ingest), log_tail(
                tmp_path / "ingest.log"
            ) + log_tail(tmp_path / "reactions.log")
            # The runner sent every inject (the text inject sends nothing).
            r = await api.client.get("/api/v1/exercises/ovelse-e2e", headers=controller)
            assert r.json()["progress"]["injects"]["sent"] >= 1

            ms = await _staff_messages(engine, "ovelse-e2e")
            delivered = {m.recipient for m in ms if m.status == "sent"}
            blocked = {m.recipient for m in ms if m.status == "blocked"}
            assert delivered == set(PARTICIPANTS)
            assert blocked == set(PEOPLE) - set(PARTICIPANTS)
            reached = {h.path.strip("/") for h in sink.hits}
            assert reached == set(PARTICIPANTS)  # zero deliveries to the other three
            assert sink.hits and all(
                h.body["message"].startswith(EXERCISE_PREFIX) for h in sink.hits
            )

            r = await api.client.post("/api/v1/exercises/ovelse-e2e/end", headers=controller)
            assert r.status_code == 200, r.text

            # Events still under way may open an incident after the end: the sweep closes it.
            async def none_open() -> bool:
                async with make_sessionmaker(engine)() as session:
                    still = (
                        await session.exec(
                            select(Incident.id).where(
                                Incident.exercise == "ovelse-e2e", Incident.status == "open"
                            )
                        )
                    ).all()
                return not still

            await asyncio.sleep(1.0)
            assert await wait_for(none_open, time.monotonic() + 30)
            admin = await api.user("admin", "admin")
            overview = await api.client.get(
                "/api/v1/incidents", params={"status": "open"}, headers=admin
            )
            assert overview.status_code == 200
            assert [i for i in overview.json() if i.get("exercise")] == []
            async with make_sessionmaker(engine)() as session:
                ids = (
                    await session.exec(select(Incident.id).where(Incident.exercise == "ovelse-e2e"))
                ).all()
            assert ids
            async with api.login("admin") as browser:
                board = await browser.get("/")
            assert board.status_code == 200
            assert not any(incident_id in board.text for incident_id in ids)
            stop_dispatch.set()
            await dispatching
            await dispatcher.aclose()
    finally:
        stop_dispatch.set()
        stop(ingest)
        stop(reactions)
        await engine.dispose()


def test_crisis_exercise_run_follows_a_run_to_its_end(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'crisis.db'}"
    server = start_board_server(
        tmp_path,
        url,
        users=[
            ("ovingsleder", "exercise-controller", None, None),
            ("op", "operator", "agder-froland", None),
        ],
        CRISIS_KAFKA_BOOTSTRAP=broker.bootstrap,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRISIS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
    env["CRISIS_DATA_DIR"] = str(tmp_path / "cli")

    def crisis(*args: str, user: str = "ovingsleder") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "crisis.cli", "exercise", *args, "--url", server.base],
            env={**env, "CRISIS_TOKEN": server.tokens[user]},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    try:
        ran = crisis("run", "demo-kort", "--speed", "60", "--id", "ovelse-cli")
        assert ran.returncode == 0, ran.stdout + ran.stderr + server.output()
        assert "injects 4/4" in ran.stderr and "ended" in ran.stderr
        # the bar's last judgement is the evaluation's, every action decided at the end
        met, missed = map(int, re.findall(r"expected met (\d+), missed (\d+)", ran.stderr)[-1])
        state = server.api("GET", "/api/v1/exercises/ovelse-cli", "ovingsleder").json()
        assert (met, missed) == (
            state["progress"]["expected"]["met"],
            state["progress"]["expected"]["missed"],
        )
        assert met + missed == state["progress"]["expected"]["total"] == 4
        listed = crisis("list")
        assert listed.returncode == 0 and "ovelse-cli\tended" in listed.stdout

        refused = crisis("run", "demo-kort", "--id", "ovelse-cli")
        assert refused.returncode == 1 and "HTTP 409" in refused.stderr
        forbidden = crisis("run", "demo-kort", user="op")
        assert forbidden.returncode == 1 and "HTTP 403" in forbidden.stderr
        unknown = crisis("run", "ingen-slik")
        assert unknown.returncode == 1

        created = server.api(
            "POST",
            "/api/v1/exercises",
            "ovingsleder",
            json={"scenario": "demo-kort", "id": "ovelse-deltakere"},
        )
        assert created.status_code == 201, created.text
        added = crisis("participants", "add", "ovelse-deltakere", "nina-rod")
        assert added.returncode == 0, added.stderr
        got = server.api("GET", "/api/v1/exercises/ovelse-deltakere", "ovingsleder").json()
        assert "nina-rod" in {p["person_id"] for p in got["participants"]}
        removed = crisis("participants", "remove", "ovelse-deltakere", "nina-rod")
        assert removed.returncode == 0, removed.stderr
        bad = crisis("participants", "add", "ovelse-deltakere", "ingen-slik")
        assert bad.returncode == 1 and "unknown person" in bad.stderr
        ended = crisis("end", "ovelse-deltakere")
        assert ended.returncode == 0, ended.stderr
        got = server.api("GET", "/api/v1/exercises/ovelse-deltakere", "ovingsleder").json()
        assert got["state"] == "ended"
        assert "nina-rod" not in {p["person_id"] for p in got["participants"]}
    finally:
        server.stop()
