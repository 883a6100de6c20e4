"""Scenario tests of the playbook engine on a real database: one per principle, one per playbook.

Incidents are opened through ``crisis.log.open_incident`` with the event in the opening entry's
data, as the stream worker writes them; the engine reacts to that committed entry.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from crisis import log
from crisis.domain.organisation import Organisation, load_organisation
from crisis.log.append import append, escalate, open_incident
from crisis.log.chain import format_time
from crisis.log.models import Incident, IncidentCreate, LogEntry
from crisis.log.verify import verify_log
from crisis.store.db import make_sessionmaker
from playbooks import engine as pb
from playbooks.loader import load_library
from playbooks.model import Library, Playbook

T0 = datetime(2026, 11, 22, 2, 41, 7, tzinfo=UTC)
PREFIX = "no.kriminalomsorgen."


@pytest.fixture(scope="module")
def org() -> Organisation:
    return load_organisation()


@pytest.fixture(scope="module")
def library(org: Organisation) -> Library:
    return load_library(org=org)


async def _open(
    engine: AsyncEngine,
    *,
    type_: str,
    unit: str,
    event_type: str,
    data: dict[str, Any],
    source: str | None = None,
    severity: int = 3,
    security_political: bool = False,
    exercise: str | None = None,
) -> LogEntry:
    """Open an incident the way the stream worker does for an event; return the opening entry."""
    source = source or f"/units/{unit}/sensors/test"
    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": source,
        "type": PREFIX + event_type,
        "time": T0.isoformat(),
        "unit": unit,
        "data": data,
    }
    async with make_sessionmaker(engine)() as session:
        _, entry = await open_incident(
            session,
            incident=IncidentCreate(
                type=type_,
                title=f"{event_type} ved {unit}",
                unit=unit,
                severity=severity,
                security_political=security_political,
                exercise=exercise,
            ),
            actor="system:streams",
            data={"event": event, "event_type": event["type"], "source": source, "unit": unit},
            at=T0,
        )
        await session.commit()
        return entry


async def _react(
    engine: AsyncEngine,
    entry: LogEntry | dict[str, Any],
    org: Organisation,
    library: Library,
    now: datetime | None = None,
) -> list[LogEntry]:
    async with make_sessionmaker(engine)() as session:
        written = await pb.react(session, entry=entry, org=org, library=library, now=now or T0)
        await session.commit()
        return written


async def _state(engine: AsyncEngine, incident_id: str) -> tuple[Incident, list[LogEntry]]:
    async with make_sessionmaker(engine)() as session:
        incident = await session.get(Incident, incident_id)
        assert incident is not None
        return incident, await log.timeline(session, incident_id)


async def _move_to_oslo(engine: AsyncEngine, incident_id: str, org: Organisation) -> LogEntry:
    """A person's decision: Oslo prison takes the incident over."""
    async with make_sessionmaker(engine)() as session:
        moved = await append(
            session,
            incident_id=incident_id,
            kind="decision",
            actor="user:regionleder",
            text="Oslo fengsel overtar",
            data={"new_owner": "oslo", "new_accountable_role": "leader"},
            known_units=org.units.keys(),
        )
        await session.commit()
        return moved


def _kinds(entries: list[LogEntry], kind: str) -> list[LogEntry]:
    return [e for e in entries if e.kind == kind]


def _owner_decisions(entries: list[LogEntry]) -> list[LogEntry]:
    return [e for e in _kinds(entries, "decision") if "new_owner" in e.data]


# --- ansvarsprinsippet: the owner and the accountable person ------------------------------


async def test_prison_cell_is_owned_by_its_prison_with_the_leader_accountable(
    engine: AsyncEngine, org: Organisation, library: Library
) -> None:
    opening = await _open(
        engine,
        type_="breath_motion_absent",
        unit="agder-froland",
        event_type="sensor.breath_absent",
        source="/units/agder-froland/sensors/A2-114-breath",
        data={"cell": "A2-114", "seconds_without_breath": 45},
    )
    written = await _react(engine, opening, org, library)
    incident, entries = await _state(engine, opening.incident_id)

    role, person = org.accountable_person("agder-froland")
    assert role == "leader"
    assert (incident.unit, incident.accountable_role, incident.accountable_person) == (
        "agder-froland",
        "leader",
        person.name,
    )
    [decision] = _owner_decisions(entries)
    assert decision.actor == "rule:pust-bevegelse/owner"
    assert decision.data["new_owner"] == "agder-froland"
    assert decision.data["playbook"] == "pust-bevegelse"
    assert decision.data["rule"] == "owner"
    assert "A2-114" in decision.data["reason"]
    # Every entry the engine wrote says which rule of which playbook produced it.
    assert written and all(
        e.actor == f"rule:pust-bevegelse/{e.data['rule']}"
        and e.data["playbook"] == "pust-bevegelse"
        for e in written
    )
    tasks = {t.data["card"]: t for t in _kinds(entries, "task")}
    assert tasks["tilsyn-celle"].data["responsible_role"] == "on_duty"
    assert tasks["tilsyn-celle"].data["deadline"] == "2026-11-22T02:43:07.000000Z"
    assert tasks["parorende"].data["responsible_role"] == "family_liaison"
    assert tasks["tilsyn-celle"].data["checklist"][0] == {
        "item": "Minst to tjenestepersoner går til cellen",
        "done": False,
    }


async def test_owner_already_right_writes_no_decision(
    engine: AsyncEngine, org: Organisation, library: Library
) -> None:
    role, person = org.accountable_person("ringerike")
    async with make_sessionmaker(engine)() as session:
        _, opening = await open_incident(
            session,
            incident=IncidentCreate(
                type="fire",
                title="Brannalarm",
                unit="ringerike",
                severity=4,
                accountable_role=role,
                accountable_person=person.name,
            ),
            actor="user:kari",
            at=T0,
        )
        await session.commit()
    await _react(engine, opening, org, library)
    _, entries = await _state(engine, opening.incident_id)
    assert _owner_decisions(entries) == []
    assert len(_kinds(entries, "task")) == 5


@pytest.mark.parametrize(
    ("event_unit", "expected_owner"),
    [
        ("oslo-friomsorg", "oslo-friomsorg"),  # the supervising office reports its client's tag
        ("agder-froland", "agder-friomsorg"),  # a tag reported via a prison → the region's office
    ],
)
async def test_ankle_tag_is_owned_by_the_probation_office(
    engine: AsyncEngine,
    org: Organisation,
    library: Library,
    event_unit: str,
    expected_owner: str,
) -> None:
    opening = await _open(
        engine,
        type_="ek_breach",
        unit=event_unit,
        event_type="sensor.ek_tamper",
        source=f"/units/{event_unit}/ek/tag-7731",
        data={"tag": "EK-7731", "client_ref": "K-1182"},
    )
    await _react(engine, opening, org, library)
    incident, entries = await _state(engine, opening.incident_id)
    office = org.unit(expected_owner)
    assert office.kind == "probation_office"
    role, person = office.accountable_person()
    assert (incident.unit, incident.accountable_role, incident.accountable_person) == (
        expected_owner,
        role,
        person.name,
    )
    [decision] = _owner_decisions(entries)
    assert decision.data["previous_owner"] == event_unit
    assert "EK-7731" in decision.data["reason"]
    # Tasks and contacts belong to the new owner.
    contacts = _kinds(entries, "cooperation_contact")
    assert [c.data["actor_name"] for c in contacts] == [office.actors("police")[0].name]
    assert all(t.data["responsible_unit"] == expected_owner for t in _kinds(entries, "task"))


async def test_cap_warning_is_owned_by_the_affected_unit(
    engine: AsyncEngine, org: Organisation, library: Library
) -> None:
    opening = await _open(
        engine,
        type_="extreme_weather",
        unit="ringerike",
        event_type="warning.cap",
        source="https://api.met.no/weatherapi/metalerts",
        data={
            "identifier": "2.49.0.1.578.0.20261122.1",
            "sender": "noreply@met.no",
            "sent": T0.isoformat(),
            "status": "Actual",
            "msg_type": "Alert",
            "event": "wind",
            "severity": "Severe",
        },
    )
    await _react(engine, opening, org, library)
    incident, entries = await _state(engine, opening.incident_id)
    role, person = org.accountable_person("ringerike")
    assert (incident.unit, incident.accountable_role, incident.accountable_person) == (
        "ringerike",
        role,
        person.name,
    )
    [decision] = _owner_decisions(entries)
    assert "farevarselet" in decision.data["reason"]
    names = {
        c.data["actor_kind"]: c.data["actor_name"] for c in _kinds(entries, "cooperation_contact")
    }
    assert names == {
        "municipality": "Ringerike kommune",
        "statsforvalteren": "Statsforvalteren i Østfold, Buskerud, Oslo og Akershus",
    }


async def test_accountable_falls_back_to_deputy_then_on_duty(
    engine: AsyncEngine, org: Organisation, library: Library
) -> None:
    """Likhetsprinsippet: the leader leads, else the deputy, else the on-duty officer."""
    unit = org.units["trondheim"]
    no_leader = unit.model_copy(
        update={"roles": {k: v for k, v in unit.roles.items() if k != "leader"}}
    )
    only_on_duty = unit.model_copy(
        update={"roles": {k: v for k, v in unit.roles.items() if k not in ("leader", "deputy")}}
    )
    for variant, expected in ((no_leader, "deputy"), (only_on_duty, "on_duty")):
        org2 = org.model_copy(update={"units": {**org.units, "trondheim": variant}})
        opening = await _open(
            engine,
            type_="fire",
            unit="trondheim",
            event_type="sensor.fire_alarm",
            data={"zone": "B2"},
        )
        await _react(engine, opening, org2, library)
        incident, _ = await _state(engine, opening.incident_id)
        assert incident.accountable_role == expected
        assert incident.accountable_person == variant.roles[expected][0].name


async def test_owner_changed_by_a_person_is_not_reverted(
    engine: AsyncEngine, org: Organisation, library: Library
) -> None:
    opening = await _open(
        engine, type_="fire", unit="ila", event_type="sensor.fire_alarm", data={"zone": "A"}
    )
    await _react(engine, opening, org, library)
    moved = await _move_to_oslo(engine, opening.incident_id, org)
    assert await _react(engine, moved, org, library) == []
    incident, _ = await _state(engine, opening.incident_id)
    assert incident.unit == "oslo"


async def test_an_entry_appended_between_the_look_and_the_lock_is_seen(
    engine: AsyncEngine, org: Organisation, library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under the lock only the entries after the look's timeline are read: a person's owner
    decision written in between must still stop the owner rule."""
    opening = await _open(
        engine, type_="fire", unit="ila", event_type="sensor.fire_alarm", data={"zone": "B"}
    )
    look = pb._look

    async def look_then_decide(*args: Any, **kwargs: Any) -> list[Any] | None:
        seen = await look(*args, **kwargs)
        await _move_to_oslo(engine, opening.incident_id, org)
        return seen

    monkeypatch.setattr(pb, "_look", look_then_decide)
    written = await _react(engine, opening, org, library)
    assert written, "the look found the setup to do"
    assert not [e for e in written if e.data.get("rule") == "owner"]
    incident, entries = await _state(engine, opening.incident_id)
    assert incident.unit == "oslo"
    assert [e.actor for e in _owner_decisions(entries)] == ["user:regionleder"]


async def test_kept_timelines_grow_by_what_was_appended_and_forget_closed_incidents(
    engine: AsyncEngine, org: Organisation, library: Library
) -> None:
    opening = await _open(
        engine, type_="fire", unit="ila", event_type="sensor.fire_alarm", data={"zone": "C"}
    )
    timelines = pb.Timelines()

    async def react() -> list[LogEntry]:
        async with make_sessionmaker(engine)() as session:
            written = await pb.react(
                session, entry=opening, org=org, library=library, now=T0, timelines=timelines
            )
            await session.commit()
            return written

    assert await react(), "the setup is written"
    async with make_sessionmaker(engine)() as session:
        for n in range(3):
            await append(
                session,
                incident_id=opening.incident_id,
                kind="observation",
                actor="user:vakt",
                text=f"Røyk {n}",
                data={},
            )
        await session.commit()
    assert await react() == [], "the kept timeline holds the setup: nothing is written twice"
    _, entries = await _state(engine, opening.incident_id)
    kept = timelines.get(opening.incident_id)
    assert kept is not None
    assert [r.seq for r in kept] == [e.seq for e in entries] == list(range(1, len(entries) + 1))
    async with make_sessionmaker(engine)() as session:
        await append(
            session,
            incident_id=opening.incident_id,
            kind="status_change",
            actor="user:vakt",
            text="Slukket",
            data={"status": "closed", "reason": "over", "final_situation": "normal drift"},
        )
        await session.commit()
    assert await react() == []
    assert timelines.get(opening.incident_id) is None


async def test_the_clock_looks_at_incidents_whose_time_limits_can_matter(
    engine: AsyncEngine, library: Library
) -> None:
    """Escape escalates after 1 h open (romning.yaml); fire has no time limit; an unknown
    type's playbook cannot be told from the row, so it is always looked at."""
    escape = await _open(
        engine, type_="escape", unit="ila", event_type="sensor.door_forced", data={"door": "D1"}
    )
    fire = await _open(
        engine, type_="fire", unit="ila", event_type="sensor.fire_alarm", data={"zone": "A"}
    )
    odd = await _open(
        engine, type_="not-a-type", unit="ila", event_type="sensor.fire_alarm", data={}
    )
    mine = {escape.incident_id, fire.incident_id, odd.incident_id}

    async def due(after: timedelta) -> set[str]:
        async with make_sessionmaker(engine)() as session:
            found = await pb.incidents_due_by_time(session, library=library, now=T0 + after)
            return set(found) & mine

    assert await due(timedelta(minutes=59)) == {odd.incident_id}
    assert await due(timedelta(minutes=61)) == {odd.incident_id, escape.incident_id}
    async with make_sessionmaker(engine)() as session:
        everything = set(await pb.open_incident_ids(session))
    assert mine <= everything


# --- nærhetsprinsippet: one level at a time, except security-political ------------------------


async def test_a_skipped_level_is_refused_and_the_engine_climbs_one_level(
    engine: AsyncEngine, org: Organisation, library: Library
) -> None:
    opening = await _open(
        engine,
        type_="fire",
        unit="bergen",
        event_type="sensor.fire_alarm",
        data={"zone": "C"},
    )
    await _react(engine, opening, org, library)
    async with make_sessionmaker(engine)() as session:
        with pytest.raises(log.RuleViolation) as refused:
            await escalate(
                session,
                incident_id=opening.incident_id,
                to="kdi",
                reason="for stort for enheten",
                criteria=[],
                actor="user:kari",
            )
        await session.rollback()
    assert refused.value.status == 409
    assert refused.value.violations[0].principle == "nærhetsprinsippet"

    # A death meets the KDI criteria of the fire playbook: still only region first.
    async with make_sessionmaker(engine)() as session:
        death = await append(
            session,
            incident_id=opening.incident_id,
            kind="observation",
            actor="user:kari",
            text="En innsatt omkom",
            data={"flags": ["death"]},
        )
        await session.commit()
    [first] = await _react(engine, death, org, library)
    assert (first.kind, first.data["from"], first.data["to"]) == ("escalation", "unit", "region")
    assert first.actor == "rule:brann/escalate-region"
    assert first.data["criteria"] and first.data["reason"]
    [second] = await _react(engine, death, org, library)
    assert (second.data["from"], second.data["to"]) == ("region", "kdi")
    assert second.data["criteria"] == ["flagg: death"]
    [third] = await _react(engine, death, org, library)
    assert third.data["to"] == "jd"
    assert await _react(engine, death, org, library) == []
    incident, _ = await _state(engine, opening.incident_id)
    assert incident.level == "jd"


async def test_time_criteria_escalate_when_the_clock_passes(
    engine: AsyncEngine, org: Organisation, library: Library
) -> None:
    opening = await _open(
        engine,
        type_="breath_motion_absent",
        unit="trondheim",
        event_type="sensor.motion_absent",
        data={"cell": "K1-3", "seconds_without_motion": 600},
    )
    await _react(engine, opening, org, library)
    async with make_sessionmaker(engine)() as session:
        assert await pb.tick(session, org=org, library=library, now=T0 + timedelta(hours=1)) == []
        [step] = await pb.tick(session, org=org, library=library, now=T0 + timedelta(hours=3))
        await session.commit()
    assert (step.data["to"], step.actor) == ("region", "rule:pust-bevegelse/escalate-region")
    assert step.data["criteria"][0].startswith("åpen i PT3H")


async def test_security_political_goes_straight_to_kdi_and_jd(
    engine: AsyncEngine, org: Organisation, library: Library
) -> None:
    opening = await _open(
        engine,
        type_="security_political",
        unit="ringerike",
        event_type="report.incident",
        data={"category": "sabotasje", "place": "port", "what": "sabotasje mot porten"},
        security_political=True,
    )
    written = await _react(engine, opening, org, library)
    escalations = _kinds(written, "escalation")
    assert [(e.data["from"], e.data["to"]) for e in escalations] == [("unit", "kdi"), ("kdi", "jd")]
    assert escalations[0].actor == "rule:sikkerhetspolitisk/proximity"
    assert "nærhetsprinsippet gjelder ikke" in escalations[0].data["criteria"][0]
    incident, _ = await _state(engine, opening.incident_id)
    assert incident.level == "jd"


async def test_security_political_playbook_without_the_row_flag_climbs_every_level(
    engine: AsyncEngine, org: Organisation, library: Library
) -> None:
    opening = await _open(
        engine,
        type_="security_political",
        unit="ringerike",
        event_type="report.incident",
        data={"category": "terror", "place": "port", "what": "trussel"},
    )
    written = await _react(engine, opening, org, library)
    steps = [(e.data["from"], e.data["to"]) for e in _kinds(written, "escalation")]
    assert steps == [("unit", "region"), ("region", "kdi"), ("kdi", "jd")]


# --- samvirkeprinsippet ------------------------------------------------------------------------


async def test_cooperation_contacts_appear_with_their_actors(
    engine: AsyncEngine, org: Organisation, library: Library
) -> None:
    opening = await _open(
        engine,
        type_="breath_motion_absent",
        unit="agder-froland",
        event_type="sensor.breath_absent",
        data={"cell": "A2-114"},
    )
    await _react(engine, opening, org, library)
    _, entries = await _state(engine, opening.incident_id)
    contacts = {c.data["actor_kind"]: c for c in _kinds(entries, "cooperation_contact")}
    assert {k: c.data["actor_name"] for k, c in contacts.items()} == {
        "amk": "AMK Agder",
        "health": "Sørlandet sykehus HF",
        "police": "Agder politidistrikt",
    }
    amk = contacts["amk"]
    assert amk.actor == "rule:pust-bevegelse/amk"
    assert amk.data["status"] == "to_contact"
    assert amk.data["due"] == "2026-11-22T02:43:07.000000Z"

    # Not acknowledged by the due time → a standing samvirke violation; acknowledged → gone.
    async with make_sessionmaker(engine)() as session:
        found = await pb.violations(
            session, incident_id=opening.incident_id, library=library, now=T0 + timedelta(minutes=5)
        )
        assert ("contact_unacknowledged", amk.seq) in {(v.code, v.seq) for v in found}
        await append(
            session,
            incident_id=opening.incident_id,
            kind="cooperation_contact",
            actor="user:vakthavende",
            text="AMK bekreftet",
            data={"contact": amk.seq, "status": "acknowledged", "by": "AMK-operatør"},
        )
        await session.commit()
        found = await pb.violations(
            session, incident_id=opening.incident_id, library=library, now=T0 + timedelta(minutes=5)
        )
    assert ("contact_unacknowledged", amk.seq) not in {(v.code, v.seq) for v in found}
    assert all(v.principle for v in found)


# --- tasks, violations, notification plan, idempotency ---------------------------------------


async def test_violations_list_overdue_tasks_and_a_level_below_the_criteria(
    engine: AsyncEngine, org: Organisation, library: Library
) -> None:
    opening = await _open(
        engine, type_="fire", unit="halden", event_type="sensor.fire_alarm", data={"zone": "A"}
    )
    await _react(engine, opening, org, library)
    _, entries = await _state(engine, opening.incident_id)
    first_task = _kinds(entries, "task")[0]
    async with make_sessionmaker(engine)() as session:
        assert (
            await pb.violations(session, incident_id=opening.incident_id, library=library, now=T0)
            == []
        )
        await append(
            session,
            incident_id=opening.incident_id,
            kind="task_update",
            actor="user:vakthavende",
            data={"task": first_task.seq, "status": "done"},
        )
        await append(
            session,
            incident_id=opening.incident_id,
            kind="observation",
            actor="user:vakthavende",
            data={"flags": ["evacuation_needed"]},
        )
        await session.commit()
        found = await pb.violations(
            session, incident_id=opening.incident_id, library=library, now=T0 + timedelta(minutes=6)
        )
    codes = {(v.code, v.seq) for v in found}
    evac = next(t for t in _kinds(entries, "task") if t.data["card"] == "evakuering")
    assert ("task_overdue", evac.seq) in codes
    assert ("task_overdue", first_task.seq) not in codes  # done in time
    level = next(v for v in found if v.code == "level_below_required")
    assert level.principle == "nærhetsprinsippet"
    assert "evacuation_needed" in level.message


async def test_notification_plan_is_one_message_entry_for_the_notifiers(
    engine: AsyncEngine, org: Organisation, library: Library
) -> None:
    opening = await _open(
        engine,
        type_="hostage",
        unit="ila",
        event_type="report.incident",
        data={"category": "gisseltaking", "place": "avd. B", "what": "ansatt holdt som gissel"},
        exercise="ovelse-2026-11-gissel",
    )
    await _react(engine, opening, org, library)
    _, entries = await _state(engine, opening.incident_id)
    [message] = _kinds(entries, "message")
    assert message.exercise == "ovelse-2026-11-gissel"
    data = message.data
    assert data["message_type"] == "notification_request"
    assert data["next_update_at"] == "2026-11-22T03:11:07.000000Z"
    groups = [(p["group"], p["after"]) for p in data["plan"]]
    assert groups[0] == ("staff", "PT0S")
    assert ("media", "PT1H") in groups and ("families", "PT1H") in groups
    staff = next(p for p in data["plan"] if p["group"] == "staff")
    assert staff == {
        "id": "ansatte",
        "group": "staff",
        "after": "PT0S",
        "at": "2026-11-22T02:41:07.000000Z",
        "template": "varsel_ansatte",
        "confirm": True,
    }


async def test_reacting_twice_duplicates_nothing(
    engine: AsyncEngine, org: Organisation, library: Library
) -> None:
    opening = await _open(
        engine, type_="escape", unit="bastoy", event_type="sensor.perimeter_breach", data={}
    )
    first = await _react(engine, opening, org, library)
    assert first
    assert await _react(engine, opening, org, library) == []
    assert await _react(engine, opening.model_dump(), org, library) == []
    async with make_sessionmaker(engine)() as session:
        report = await verify_log(session)
    assert report.ok, report.breaks


async def test_unknown_incident_type_is_left_alone(
    engine: AsyncEngine, org: Organisation, library: Library
) -> None:
    opening = await _open(
        engine,
        type_="gang_conflict",
        unit="oslo",
        event_type="report.incident",
        data={"category": "gjengkonflikt", "place": "luftegård", "what": "uro"},
    )
    assert await _react(engine, opening, org, library) == []


# --- every shipped playbook ------------------------------------------------------------------

_EVENT_FOR_TYPE: dict[str, tuple[str, str, dict[str, Any]]] = {
    "breath_motion_absent": ("trondheim", "sensor.breath_absent", {"cell": "A1-12"}),
    "self_harm": (
        "bergen",
        "report.incident",
        {"category": "selvskading", "place": "B", "what": "kutt"},
    ),
    "escape": ("bastoy", "sensor.perimeter_breach", {"zone": "strand"}),
    "failure_to_return": (
        "halden",
        "report.incident",
        {"category": "uteblivelse", "place": "-", "what": "ikke møtt"},
    ),
    "violence_threat": ("oslo", "sensor.personal_alarm", {"area": "A2", "staff_id": "b-17"}),
    "hostage": (
        "ila",
        "report.incident",
        {"category": "gisseltaking", "place": "B", "what": "gissel"},
    ),
    "fire": ("ravneberget", "sensor.fire_alarm", {"zone": "kjøkken"}),
    "infectious_disease": (
        "telemark-skien",
        "report.incident",
        {"category": "smitteutbrudd", "place": "A", "what": "covid"},
    ),
    "infrastructure_outage": ("vadso", "sensor.heartbeat", {"gateway": "gw-1"}),
    "cyber_attack": (
        "stavanger",
        "report.incident",
        {"category": "dataangrep", "place": "IKT", "what": "løsepengevirus"},
    ),
    "extreme_weather": ("tromso", "warning.cap", {"identifier": "x", "event": "storm"}),
    "ek_breach": ("rogaland-friomsorg", "sensor.ek_signal_lost", {"tag": "EK-1"}),
    "reverse_violence_alarm": (
        "trondelag-friomsorg",
        "sensor.reverse_violence_alarm",
        {"tag": "EK-2"},
    ),
    "media_storm": (
        "alesund",
        "media.article",
        {"url": "https://x.invalid/a", "title": "Kritikk", "sentiment": "negative"},
    ),
    "capacity_closure": (
        "bodo",
        "report.incident",
        {"category": "evakuering", "place": "hele", "what": "vannskade"},
    ),
    "security_political": (
        "ringerike",
        "report.incident",
        {"category": "terror", "place": "port", "what": "trussel"},
    ),
}


def _cases() -> list[Any]:
    org = load_organisation()
    library = load_library(org=org)
    assert set(_EVENT_FOR_TYPE) == set(library.incident_types)
    return [
        pytest.param(playbook.id, kind, id=f"{playbook.id}:{kind}")
        for playbook in library.playbooks.values()
        for kind in playbook.handles
    ]


@pytest.mark.parametrize(("playbook_id", "kind"), _cases())
async def test_every_shipped_playbook_turns_its_cards_into_tasks(
    engine: AsyncEngine, org: Organisation, library: Library, playbook_id: str, kind: str
) -> None:
    playbook: Playbook = library.playbooks[playbook_id]
    unit, event_type, data = _EVENT_FOR_TYPE[kind]
    opening = await _open(
        engine, type_=kind, unit=unit, event_type=event_type, data=data, severity=1
    )
    await _react(engine, opening, org, library)
    incident, entries = await _state(engine, opening.incident_id)
    assert incident.unit == unit
    assert incident.accountable_role == org.accountable_person(unit)[0]
    assert incident.severity == playbook.severity  # raised to the playbook's default

    cards = [c for c in playbook.cards if not c.only_types or kind in c.only_types]
    tasks = _kinds(entries, "task")
    assert [t.data["card"] for t in tasks] == [c.id for c in cards]
    for task, card in zip(tasks, cards, strict=True):
        assert task.text == card.title
        assert task.data["responsible_role"] == str(card.role)
        assert task.data["responsible_person"]
        assert task.data["deadline"] == format_time(T0 + card.deadline)
        assert task.actor == f"rule:{playbook.id}/{card.id}"
    contacts = [c for c in playbook.cooperation if not c.only_types or kind in c.only_types]
    assert [e.data["rule"] for e in _kinds(entries, "cooperation_contact")] == [
        c.id for c in contacts
    ]
    messages = _kinds(entries, "message")
    assert len(messages) == (1 if playbook.notifications else 0)
    async with make_sessionmaker(engine)() as session:
        assert (await verify_log(session)).ok


async def test_incident_named_by_its_event_type_finds_the_playbook_and_its_type(
    engine: AsyncEngine, org: Organisation, library: Library
) -> None:
    """A writer that names the incident after the raw event still gets the right cards."""
    async with make_sessionmaker(engine)() as session:
        _, opening = await open_incident(
            session,
            incident=IncidentCreate(
                type="sensor.reverse_violence_alarm",
                title="Omvendt voldsalarm",
                unit="oslo-friomsorg",
                severity=5,
            ),
            actor="rule:correlate/ek",
            data={"event_type": PREFIX + "sensor.reverse_violence_alarm", "tag": "EK-9"},
            at=T0,
        )
        await session.commit()
    assert not pb.written_by_playbook(opening)  # another rule's entry: the agent reacts to it
    written = await _react(engine, opening, org, library)
    assert all(pb.written_by_playbook(e) for e in written)
    cards = [e.data["card"] for e in written if e.kind == "task"]
    assert cards == ["beskyttet-person", "kontakt-domfelte", "vurder-brudd"]
    contacts = [e.data["rule"] for e in written if e.kind == "cooperation_contact"]
    assert contacts == ["politi-voldsalarm"]
    [owner] = _owner_decisions(written)
    assert "EK-9" in owner.data["reason"]


async def test_concurrent_reactions_do_not_duplicate_tasks(
    engine: AsyncEngine, org: Organisation, library: Library
) -> None:
    """The agent and the clock may react to the same incident at once: the lock serialises them."""
    opening = await _open(
        engine, type_="fire", unit="telemark-skien", event_type="sensor.fire_alarm", data={}
    )
    results = await asyncio.gather(*(_react(engine, opening, org, library) for _ in range(3)))
    assert sorted(len(r) > 0 for r in results) == [False, False, True]
    _, entries = await _state(engine, opening.incident_id)
    cards = [e.data["card"] for e in _kinds(entries, "task")]
    assert len(cards) == len(set(cards)) == 5


async def test_a_closed_incident_gets_nothing_new(
    engine: AsyncEngine, org: Organisation, library: Library
) -> None:
    opening = await _open(
        engine, type_="fire", unit="tromso", event_type="sensor.fire_alarm", data={}
    )
    async with make_sessionmaker(engine)() as session:
        closed = await append(
            session,
            incident_id=opening.incident_id,
            kind="status_change",
            actor="user:vakthavende",
            text="Falsk alarm",
            data={"status": "closed", "reason": "over", "final_situation": "normal drift"},
        )
        await session.commit()
    assert await _react(engine, opening, org, library) == []
    assert await _react(engine, closed, org, library) == []
