"""The ``reactions`` consumer of ``crisis.log``: which entries reach the playbook engine and the
notification flow, coalescing of repeated source events, and that coalescing changes nothing
in what gets written (real database, real playbooks; the clock is a counter so the intervals
are exact)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from crisis.domain.organisation import Organisation, load_organisation
from crisis.log.append import append, open_incident
from crisis.log.models import IncidentCreate, LogEntry
from crisis.store.db import make_sessionmaker
from notifiers.config import NotifyConfig
from playbooks.loader import load_library
from playbooks.model import Library
from streams.playbook_agent import entry_json
from streams.reactions import Reactions, decode_entries, plan_batch


@pytest.fixture(scope="module")
def org() -> Organisation:
    return load_organisation()


@pytest.fixture(scope="module")
def library(org: Organisation) -> Library:
    return load_library(org=org)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _reactions(engine: AsyncEngine, org: Organisation, library: Library, clock: Clock) -> Reactions:
    return Reactions(
        make_sessionmaker(engine),
        org=org,
        library=library,
        notify=NotifyConfig(),
        min_interval=1.0,
        max_interval=4.0,
        clock=clock,
    )


async def _open_with_events(engine: AsyncEngine, events: int) -> list[dict[str, Any]]:
    """A breath-absent incident and ``events`` more source events: their crisis.log records."""
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        incident, opening = await open_incident(
            session,
            incident=IncidentCreate(
                type="breath_motion_absent",
                title="Pust ikke registrert, celle A2-114",
                unit="agder-froland",
                severity=5,
            ),
            actor="system:streams",
            data={
                "event_type": "no.kriminalomsorgen.sensor.breath_absent",
                "source": "/units/agder-froland/sensors/A2-114-breath",
                "unit": "agder-froland",
            },
        )
        records = [entry_json(opening)]
        for _ in range(events):
            entry = await append(
                session,
                incident_id=incident.id,
                kind="source_event",
                actor="system:streams",
                text="Ny hendelse",
                data={
                    "event_type": "no.kriminalomsorgen.sensor.breath_absent",
                    "source": "/units/agder-froland/sensors/A2-114-breath",
                    "id": str(uuid.uuid4()),
                    "unit": "agder-froland",
                },
            )
            records.append(entry_json(entry))
        await session.commit()
    return records


async def _by_rules(engine: AsyncEngine, incident_id: str) -> list[LogEntry]:
    async with make_sessionmaker(engine)() as session:
        rows = await session.exec(
            select(LogEntry)
            .where(LogEntry.incident_id == incident_id)
            .where(col(LogEntry.actor).startswith("rule:"))
            .order_by(col(LogEntry.seq))
        )
        return list(rows.all())


def test_decode_skips_what_is_not_a_log_entry() -> None:
    good = {"incident_id": "I-1", "seq": 1, "kind": "source_event"}
    raws = [b"\xff not json", b'{"no": "incident"}', b"[1, 2]", json.dumps(good).encode()]
    assert decode_entries(raws) == [good]


def test_plan_batch_keeps_plans_and_the_last_entry_of_each_incident() -> None:
    plan = {
        "incident_id": "A",
        "seq": 3,
        "kind": "message",
        "actor": "rule:pb/notify",
        "data": {"message_type": "notification_request", "plan": [], "playbook": "pb"},
    }
    entries = [
        {"incident_id": "A", "seq": 1, "kind": "incident_opened", "actor": "system:streams"},
        {"incident_id": "B", "seq": 1, "kind": "incident_opened", "actor": "system:streams"},
        {"incident_id": "A", "seq": 2, "kind": "source_event", "actor": "system:streams"},
        plan,
        {"incident_id": "B", "seq": 2, "kind": "source_event", "actor": "system:streams"},
    ]
    plans, triggers = plan_batch(entries)
    assert plans == [plan]
    # One per incident, first-seen order, the last entry; the playbook's own plan is no trigger.
    assert [(t["incident_id"], t["seq"]) for t in triggers] == [("A", 2), ("B", 2)]


async def test_a_storm_of_source_events_is_evaluated_once_per_interval(
    engine: AsyncEngine, org: Organisation, library: Library
) -> None:
    clock = Clock()
    reactions = _reactions(engine, org, library, clock)
    records = await _open_with_events(engine, 30)
    incident_id = records[0]["incident_id"]

    await reactions.handle(records[:1])  # the opening: at once
    assert reactions.reactions == 1
    setup = await _by_rules(engine, incident_id)
    assert any(e.kind == "task" for e in setup), "the opening set the incident up"

    for record in records[1:11]:  # ten batches of one more event, within the interval
        await reactions.handle([record])
    assert reactions.reactions == 1
    assert reactions.pending[incident_id]["seq"] == records[10]["seq"]

    clock.now += 1.0
    assert await reactions.flush() == 1  # the timer: one evaluation for all ten
    assert reactions.reactions == 2
    assert incident_id not in reactions.pending

    # Nothing to do twice in a row: the interval doubles (2 s), then is capped (4 s).
    await reactions.handle(records[11:12])
    clock.now += 1.0
    assert await reactions.flush() == 0
    clock.now += 1.0
    assert await reactions.flush() == 1
    await reactions.handle(records[12:13])
    clock.now += 3.9
    assert await reactions.flush() == 0
    clock.now += 0.1
    assert await reactions.flush() == 1
    # Coalescing wrote nothing more than the one setup.
    assert [e.seq for e in await _by_rules(engine, incident_id)] == [e.seq for e in setup]


async def test_a_decision_is_reacted_to_at_once(
    engine: AsyncEngine, org: Organisation, library: Library
) -> None:
    clock = Clock()
    reactions = _reactions(engine, org, library, clock)
    records = await _open_with_events(engine, 1)
    await reactions.handle(records[:1])
    await reactions.handle(records[1:2])
    assert reactions.reactions == 1  # the source event waits for the interval
    decision = {**records[1], "seq": records[1]["seq"] + 1, "kind": "decision", "actor": "u:leder"}
    await reactions.handle([decision])
    assert reactions.reactions == 2  # a person's decision does not wait
    assert reactions.pending == {}


async def test_coalesced_and_entry_by_entry_write_the_same(
    engine: AsyncEngine, org: Organisation, library: Library
) -> None:
    """Reacting to the last entry equals reacting to each: the same rules, in the same order."""
    one_by_one = await _open_with_events(engine, 5)
    coalesced = await _open_with_events(engine, 5)

    per_entry = _reactions(engine, org, library, Clock())
    per_entry.min_interval = per_entry.max_interval = 0.0
    for record in one_by_one:
        await per_entry.handle([record])
    assert per_entry.reactions == len(one_by_one)

    batched = _reactions(engine, org, library, Clock())
    await batched.handle(coalesced)
    assert batched.reactions == 1

    def shape(entries: list[LogEntry]) -> list[tuple[str, str, str]]:
        return [(e.kind, e.actor, e.text) for e in entries]

    a = await _by_rules(engine, one_by_one[0]["incident_id"])
    b = await _by_rules(engine, coalesced[0]["incident_id"])
    assert a and shape(a) == shape(b)
