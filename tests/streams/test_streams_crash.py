"""At-least-once delivery, exactly-once effect: SIGKILL the worker while it works through
20,000 events (a few hundred sources, duplicates, some garbage) three times at random points,
restart it each time, and check that nothing is stored twice and nothing is lost.

The expected incidents come from the pure correlation rules run over the distinct events in
the order they were produced (per unit, which is Kafka's order per key), without any crash.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlmodel import select as sm_select

from crisis.domain.correlation import (
    CorrelationConfig,
    Correlator,
    Event,
    IncidentView,
    OpenIncident,
)
from crisis.domain.organisation import load_organisation
from crisis.domain.vocabulary import EntryKind
from crisis.kafka import topics
from crisis.kafka.broker import EmbeddedBroker, ensure_topics
from crisis.log.models import Incident, LogEntry, RawEvent
from crisis.log.verify import verify_log
from crisis.sources.events import validate_event
from crisis.sources.models import DeadLetter, FeedPosition
from crisis.store.db import make_engine, make_sessionmaker, migrate
from tests.worker_harness import (
    consume_all,
    count,
    log_tail,
    produce,
    spawn_worker,
    stop,
    wait_for,
    worker_env,
)

pytestmark = [pytest.mark.broker, pytest.mark.slow]

N_EVENTS = 20_000
N_SOURCES = 300
KILLS = 3
DEADLINE = 420.0
BASE = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of its own: the SQLite and PostgreSQL runs must not see each other's records."""
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as b:
        yield b


def _workload(seed: int) -> tuple[list[tuple[str | None, bytes]], list[dict[str, Any]]]:
    """(records to produce, the distinct valid envelopes in production order)."""
    rng = random.Random(seed)
    units = sorted(load_organisation().units)
    kinds = [
        ("sensor.personal_alarm", "area", ["A-blokk", "B-blokk", "C-blokk"]),
        ("sensor.door_forced", "door", ["D1", "D2"]),
        ("sensor.fire_alarm", "zone", ["kjøkken", "verksted"]),
        ("sensor.ek_tamper", "tag", ["EK-1", "EK-2", "EK-3"]),
        ("sensor.breath_absent", "cell", ["A2-114", "B1-7"]),
    ]
    sources = []
    for n in range(N_SOURCES):
        unit = units[n % len(units)]
        type_, field, values = kinds[n % len(kinds)]
        sources.append((f"/units/{unit}/sensors/s{n}", unit, type_, field, rng.choice(values)))
    distinct: list[dict[str, Any]] = []
    records: list[tuple[str | None, bytes]] = []
    for i in range(N_EVENTS):
        source, unit, type_, field, value = rng.choice(sources)
        env = {
            "specversion": "1.0",
            "id": f"ev-{seed}-{i}",
            "source": source,
            "type": f"no.kriminalomsorgen.{type_}",
            "time": (BASE + timedelta(seconds=i * 0.1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "unit": unit,
            "data": {field: value},
        }
        if rng.random() < 0.05:
            env["exercise"] = "ovelse-natt"
        distinct.append(env)
        records.append((unit, json.dumps(env).encode()))
        if rng.random() < 0.03:  # a resend, a little later
            records.insert(len(records) - rng.randint(0, 20), (unit, json.dumps(env).encode()))
        if rng.random() < 0.005:
            records.append((unit, b'{"specversion": "1.0", "id": "broken"'))
    return records, distinct


def _expected_incidents(distinct: list[dict[str, Any]]) -> int:
    org = load_organisation()
    ids = itertools.count()
    correlator = Correlator(CorrelationConfig(), unit_names={}, new_id=lambda: f"i{next(ids)}")
    state: dict[str, dict[str, Any]] = {}
    incidents: dict[str, IncidentView] = {}
    opened = 0
    for raw in distinct:
        env = validate_event(raw, known_units=set(org.units))
        assert env.time is not None
        ev = Event(
            source=env.source,
            id=env.id,
            type=env.short_type,
            unit=env.unit or "",
            time=env.time.timestamp(),
            data=env.data,
            exercise=env.exercise,
        )
        opened += sum(isinstance(a, OpenIncident) for a in correlator.handle(ev, state, incidents))
    return opened


async def test_sigkill_three_times_exactly_once_effect(
    broker: EmbeddedBroker, tmp_path: Path, database_url: str
) -> None:
    seed = random.SystemRandom().randrange(1_000_000)
    rng = random.Random(seed)
    records, distinct = _workload(seed)
    expected_incidents = _expected_incidents(distinct)
    garbage = sum(1 for _, v in records if v.startswith(b'{"specversion": "1.0", "id": "broken"'))

    engine = make_engine(database_url)
    await migrate(engine)
    await ensure_topics(broker.bootstrap, {topics.EVENTS: 4, topics.EVENTS_DLQ: 1, topics.LOG: 1})
    await produce(broker.bootstrap, topics.EVENTS, records)
    ours = {(e["source"], e["id"]) for e in distinct}

    env = worker_env(broker.bootstrap, tmp_path / "var", database_url)
    log_path = tmp_path / "worker.log"
    targets = sorted(rng.sample(range(len(distinct) // 10, len(distinct) * 8 // 10), KILLS))
    kills: list[int] = []
    deadline = time.monotonic() + DEADLINE
    proc = spawn_worker(env, log_path)
    try:
        for target in targets:
            # each kill lands after the restarted worker has made progress of its own
            goal = max(target, (kills[-1] if kills else 0) + 500)

            async def reached(t: int = goal) -> bool:
                return await count(engine, RawEvent) >= t

            assert await wait_for(reached, deadline, proc, interval=0.02), log_tail(log_path)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            kills.append(await count(engine, RawEvent))
            proc = spawn_worker(env, log_path)

        async def all_stored() -> bool:
            return await count(engine, RawEvent) >= len(ours)

        assert await wait_for(all_stored, deadline, proc, interval=0.2), log_tail(log_path)

        sessions = make_sessionmaker(engine)
        async with sessions() as session:
            stored = (
                await session.exec(select(RawEvent.source, RawEvent.id))  # type: ignore[call-overload]
            ).all()
            pairs = [(str(s), str(i)) for s, i in stored]
            assert len(pairs) == len(set(pairs)) == len(ours)
            assert set(pairs) == ours
            everything = (await session.exec(sm_select(LogEntry))).all()
            # The playbook agent and the notification flow run in the same worker and add
            # their own entries; the event pipeline's exactly-once effect is about its own.
            entries = [e for e in everything if e.actor == "system:streams"]
            tasks = Counter(
                (e.incident_id, e.data.get("card")) for e in everything if e.kind == "task"
            )
            assert not [k for k, n in tasks.items() if n > 1], "a playbook task repeats"
            source_events = Counter(
                (e.data["source"], e.data["id"])
                for e in entries
                if e.kind == EntryKind.SOURCE_EVENT.value
            )
            assert not [k for k, n in source_events.items() if n > 1], "an entry repeats"
            opened = [e for e in entries if e.kind == EntryKind.INCIDENT_OPENED.value]
            incidents = (await session.exec(sm_select(Incident))).all()
            assert len(incidents) == len(opened) == expected_incidents
            # every distinct event is exactly one entry: the opening or a joining one
            assert len(entries) == len(ours)
            causes = Counter((e.data["source"], e.data["id"]) for e in entries)
            assert set(causes) == ours and max(causes.values()) == 1
            for incident in incidents:
                mine = [e for e in entries if e.incident_id == incident.id]
                assert {e.exercise for e in mine} == {incident.exercise}
            report = await verify_log(session)
            if not report.ok:
                first = report.breaks[0]
                tail = [
                    (e.seq, e.kind, e.actor)
                    for e in sorted(everything, key=lambda e: e.seq)
                    if e.incident_id == first.incident_id
                ][-4:]
                head = await session.get(Incident, first.incident_id)
                pytest.fail(f"{report.breaks[:3]}; head {head and head.head_seq}; tail {tail}")
            dead = (await session.exec(select(func.count()).select_from(DeadLetter))).one()[0]  # type: ignore[call-overload]
            assert dead == garbage
            max_id = max(e.id for e in everything if e.id is not None)

        async def relayed() -> bool:
            async with sessions() as session:
                pos = await session.get(FeedPosition, "crisis.log")
                return pos is not None and pos.position >= max_id

        assert await wait_for(relayed, time.monotonic() + 60, proc), log_tail(log_path)
        feed = await consume_all(
            broker.bootstrap,
            topics.LOG,
            lambda r: len({json.loads(x.value)["id"] for x in r}) >= len(everything),
            time.monotonic() + 60,
        )
        assert {json.loads(x.value)["id"] for x in feed} >= {e.id for e in everything}
        print(
            f"\n[crash] seed={seed} kills at raw-event counts {kills}; {len(records)} records, "
            f"{len(ours)} distinct, {len(incidents)} incidents, {len(feed)} feed records"
        )
        assert len(kills) == KILLS and proc.poll() is None
    finally:
        stop(proc)
        await engine.dispose()
    await asyncio.sleep(0)
