"""Scenario files: validation with file:line: field errors, the model, and the inject events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crisis.domain.organisation import Organisation, load_organisation
from crisis.sources.catalogue import incident_type_for
from crisis.sources.events import validate_event
from notifiers.config import load_notify_config
from playbooks.exercises.scenario import (
    ACTIONS,
    Scenario,
    ScenarioError,
    inject_events,
    load_scenario,
    shipped,
)

START = datetime(2026, 12, 3, 18, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def org() -> Organisation:
    return load_organisation()


@pytest.fixture(scope="module")
def people() -> set[str]:
    return {p.id for p in load_notify_config().people}


def _line_of(text: str, needle: str, nth: int = 1) -> int:
    seen = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            seen += 1
            if seen == nth:
                return number
    raise AssertionError(f"{needle!r} not in the text")


def _events(scenario: Scenario, org: Organisation, exercise: str) -> list[dict[str, Any]]:
    return [
        event
        for inject in scenario.injects
        for event in inject_events(
            inject, scenario=scenario, exercise_id=exercise, started_at=START, org=org
        )
    ]


def test_shipped_includes_the_two_minute_demo() -> None:
    found = shipped()
    assert "demo-kort" in found
    assert all(path.suffix == ".yaml" for path in found.values())


@pytest.mark.parametrize("name", sorted(shipped()))
def test_every_shipped_scenario_validates(name: str, org: Organisation, people: set[str]) -> None:
    scenario = load_scenario(shipped()[name], org=org, people=people)
    assert scenario.id == name  # the id is the file stem
    assert scenario.title and scenario.title_en and scenario.description
    assert scenario.participants and all(p.kind == "person" for p in scenario.participants)
    assert scenario.duration is not None
    assert all(inject.at <= scenario.duration for inject in scenario.injects)
    assert [i.at for i in scenario.injects] == sorted(i.at for i in scenario.injects)
    assert len(scenario.expected) >= 3
    assert {e.action for e in scenario.expected} <= set(ACTIONS)
    assert any(e.action == "staff_before_public" for e in scenario.expected)
    # The seeds' targets: owner within 2 min, staff acknowledged within 5, sitrep within 30.
    targets = {
        e.action: e.within or timedelta(0) for e in scenario.expected if e.action != "task_done"
    }
    assert targets.get("owner_set", timedelta(0)) <= timedelta(minutes=2)
    assert targets.get("staff_acknowledged", timedelta(0)) <= timedelta(minutes=5)
    assert targets.get("sitrep_approved", timedelta(0)) <= timedelta(minutes=30)


@pytest.mark.parametrize("name", sorted(shipped()))
def test_shipped_injects_become_valid_exercise_events(name: str, org: Organisation) -> None:
    scenario = load_scenario(shipped()[name], org=org)
    events = _events(scenario, org, f"ovelse-{name}")
    assert events, "a scenario sends at least one event"
    for raw in events:
        env = validate_event(raw, known_units=set(org.units))
        assert env.exercise == f"ovelse-{name}"
        assert env.source == f"/exercises/ovelse-{name}"
        assert env.unit in scenario.units
    keys = [(e["source"], e["id"]) for e in events]
    assert len(keys) == len(set(keys))
    # Deterministic: the same exercise gives the same events; another exercise other keys.
    assert _events(scenario, org, f"ovelse-{name}") == events
    other = {(e["source"], e["id"]) for e in _events(scenario, org, "annen")}
    assert not other & set(keys)


def test_demo_is_two_minutes_with_expected_actions(org: Organisation) -> None:
    demo = load_scenario(shipped()["demo-kort"], org=org)
    assert demo.duration == timedelta(minutes=2)
    assert len(demo.expected) >= 3
    assert len([i for i in demo.injects if i.type != "text"]) >= 2
    first = demo.injects[0]
    assert first.type == "sensor" and first.event == "fire_alarm" and first.line > 1
    [event] = inject_events(first, scenario=demo, exercise_id="x", started_at=START, org=org)
    assert event["time"] == START.isoformat()
    assert event["type"] == "no.kriminalomsorgen.sensor.fire_alarm"
    text = next(i for i in demo.injects if i.type == "text")
    assert (
        text.text
        and inject_events(text, scenario=demo, exercise_id="x", started_at=START, org=org) == []
    )


def test_a_report_inject_is_the_event_of_the_report_form(org: Organisation) -> None:
    demo = load_scenario(shipped()["demo-kort"], org=org)
    report = next(i for i in demo.injects if i.type == "report")
    [event] = inject_events(report, scenario=demo, exercise_id="x", started_at=START, org=org)
    assert event["type"] == "no.kriminalomsorgen.report.incident"
    assert event["time"] == (START + report.at).isoformat()
    assert event["data"] == {k: report.data[k] for k in ("category", "place", "what")} | {
        "reporter": "espen-braten"
    }


MISTAKES = """\
version: 1
id: feil
title: Feil
title_en: Mistakes
units: [agder-froland, nowhere]
duration: 10m
participants:
  - person: espen-braten
  - person: nobody-here
injects:
  - id: alarm
    at: 0s
    type: sensor
    event: smoke_signal
  - id: alarm
    at: 1m
    type: teleport
  - id: sent
    at: 15m
    type: text
    text: "For sent"
  - id: varsel
    at: 2m
    type: cap
    xml: "<alert>not CAP</alert>"
  - id: ukjent-enhet
    at: 1m
    type: report
    unit: atlantis
    category: brann
    place: "A"
    what: "Røyk"
expected:
  - id: eskalering
    action: escalated
    within: 5m
  - id: eskalering
    action: owner_set
    within: 2m
  - id: hopp
    action: jump
"""


def test_deliberate_mistakes_are_all_reported_with_lines(
    tmp_path: Path, org: Organisation, people: set[str]
) -> None:
    path = tmp_path / "feil.yaml"
    path.write_text(MISTAKES, encoding="utf-8")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path, org=org, people=people)
    lines = {str(p) for p in caught.value.problems}
    t = MISTAKES
    expected = {
        f"{path}:{_line_of(t, 'units:')}: units[1]: unknown unit 'nowhere'",
        f"{path}:{_line_of(t, 'nobody-here')}: participants[1].person: unknown person "
        "'nobody-here'",
        f"{path}:{_line_of(t, 'smoke_signal')}: injects[0].event: unknown sensor event kind "
        "'smoke_signal'",
        f"{path}:{_line_of(t, '- id: alarm', 2)}: injects[1].id: duplicate inject id 'alarm' "
        f"(first at line {_line_of(t, '- id: alarm')})",
        f"{path}:{_line_of(t, 'teleport')}: injects[1].type: invalid value 'teleport'",
        f"{path}:{_line_of(t, 'at: 15m')}: injects[2].at: offset 15m is beyond the "
        "scenario's duration 10m",
        f"{path}:{_line_of(t, 'not CAP')}: injects[3].xml: not a valid CAP 1.2 alert",
        f"{path}:{_line_of(t, 'atlantis')}: injects[4].unit: unknown unit 'atlantis'",
        f"{path}:{_line_of(t, '- id: eskalering')}: expected[0].to: escalated needs 'to'",
        f"{path}:{_line_of(t, '- id: eskalering', 2)}: expected[1].id: duplicate expected "
        "action id 'eskalering'",
        f"{path}:{_line_of(t, 'action: jump')}: expected[2].action: invalid value 'jump'",
    }
    for wanted in expected:
        assert any(line.startswith(wanted) for line in lines), (wanted, sorted(lines))
    assert len(lines) == len(expected), sorted(lines)
    # The first problem (by line) is the error's own message.
    assert str(caught.value).startswith(f"{path}:{_line_of(t, 'units:')}: units[1]")


@pytest.mark.parametrize(
    ("change", "needle", "message"),
    [
        ("- person: espen-braten\n  - account: mallory", "mallory", "unknown account 'mallory'"),
        ("- person: espen-braten\n  - person: espen-braten", "espen-braten", "listed twice"),
    ],
)
def test_participants_are_checked(
    change: str, needle: str, message: str, org: Organisation, people: set[str]
) -> None:
    text = shipped()["demo-kort"].read_text(encoding="utf-8")
    text = text.replace("- person: espen-braten", change, 1)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(text, org=org, people=people, accounts={"kari"}, name="demo.yaml")
    problem = str(caught.value)
    assert problem.startswith(f"demo.yaml:{_line_of(text, needle, 2 if 'twice' in message else 1)}")
    assert message in problem


@pytest.mark.parametrize(
    ("old", "new", "field", "message"),
    [
        ('zone: "A2"', 'zone: "A2", smell: strong', "injects[0].data.smell", "Extra inputs"),
        ("category: brann", "category: tyveri", "injects[1].category", "unknown report category"),
        ("within: 2m", "within: 3m", "expected[2].within", "beyond the scenario's duration"),
        (
            "action: staff_before_public",
            "action: staff_before_public\n    within: 1m",
            "expected[3].within",
            "a rule over the whole exercise",
        ),
        ("action: owner_set", "action: task_done", "expected[0].card", "task_done needs 'card'"),
        (
            "reporter: espen-braten",
            "reporter: espen-braten\n    title: x",
            "injects[1].title",
            "does not belong to a report inject",
        ),
        ('text: "Les opp', 'tekst: "Les opp', "injects[2].tekst", "unknown field 'tekst'"),
    ],
)
def test_single_mistakes_name_their_field(
    old: str, new: str, field: str, message: str, org: Organisation
) -> None:
    text = shipped()["demo-kort"].read_text(encoding="utf-8")
    assert old in text
    text = text.replace(old, new, 1)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(text, org=org, name="x.yaml")
    problems = [str(p) for p in caught.value.problems]
    assert any(f": {field}: " in p and message in p for p in problems), problems
    assert all(p.startswith("x.yaml:") for p in problems)


def test_task_done_names_a_card_of_the_library(org: Organisation) -> None:
    text = shipped()["demo-kort"].read_text(encoding="utf-8")
    good = text.replace("action: owner_set", "action: task_done\n    card: varsle-brannvesen")
    scenario = load_scenario(good, org=org)
    assert scenario.expected[0].card == "varsle-brannvesen"
    bad = text.replace("action: owner_set", "action: task_done\n    card: fly-bort")
    with pytest.raises(ScenarioError, match=r"expected\[0\]\.card: unknown card 'fly-bort'"):
        load_scenario(bad, org=org)


def test_unreadable_input(tmp_path: Path, org: Organisation) -> None:
    with pytest.raises(ScenarioError, match="not found"):
        load_scenario(tmp_path / "missing.yaml", org=org)
    with pytest.raises(ScenarioError, match=r"^<text>:3: invalid YAML"):
        load_scenario("version: 1\nid: [\n", org=org)
    with pytest.raises(ScenarioError, match="duplicate key 'id'"):
        load_scenario("version: 1\nid: a\nid: b\n", org=org)


def test_a_cap_inject_is_the_cap_ingest_events_on_the_exercise_clock(org: Organisation) -> None:
    weather = load_scenario(shipped()["ekstremvaer"], org=org)
    alert = next(i for i in weather.injects if i.type == "cap")
    events = inject_events(alert, scenario=weather, exercise_id="x", started_at=START, org=org)
    assert [e["id"] for e in events] == [f"{alert.id}-{n}" for n in range(1, len(events) + 1)]
    assert sorted(e["unit"] for e in events) == sorted(weather.units)
    for event in events:
        env = validate_event(event, known_units=set(org.units))
        assert env.data["status"] == "Exercise" and env.exercise == "x"
        assert env.time == START + alert.at
        # Sent moves to the inject's time; onset and expires keep their distance from it.
        assert datetime.fromisoformat(env.data["sent"]) == START
        assert datetime.fromisoformat(env.data["onset"]) == START + timedelta(hours=8)
        assert datetime.fromisoformat(env.data["expires"]) == START + timedelta(hours=30)
        assert env.data["headline_en"].startswith("Storm, orange level")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("<status>Exercise</status>", "<status>Actual</status>", "status Actual cannot be"),
        (
            "units: [agder-froland, agder-mandal, agder-friomsorg]",
            "units: [agder-froland, agder-mandal]",
            "also reach agder-friomsorg",
        ),
        (
            "<polygon>57.90,7.20 57.95,8.30 58.45,9.10 58.80,9.00 58.75,8.20 58.30,7.20 57.90,7.20",
            "<polygon>70.0,20.0 70.0,20.1 70.1,20.1 70.0,20.0",
            "reach no unit",
        ),
        ("<msgType>Alert</msgType>", "<msgType>Sometimes</msgType>", "not a valid CAP 1.2 alert"),
    ],
)
def test_cap_injects_are_checked(old: str, new: str, message: str, org: Organisation) -> None:
    text = shipped()["ekstremvaer"].read_text(encoding="utf-8")
    assert old in text
    bad = text.replace(old, new)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(bad, org=org, name="vaer.yaml")
    problems = [str(p) for p in caught.value.problems]
    first_xml = _line_of(bad, "xml: |")
    assert any(
        p.startswith(f"vaer.yaml:{first_xml}: injects[0].xml: ") and message in p for p in problems
    ), problems


def test_a_media_inject_is_an_article_about_its_unit(org: Organisation) -> None:
    weather = load_scenario(shipped()["ekstremvaer"], org=org)
    article = next(i for i in weather.injects if i.type == "media")
    [event] = inject_events(article, scenario=weather, exercise_id="x", started_at=START, org=org)
    env = validate_event(event, known_units=set(org.units))
    assert env.short_type == "media.article" and env.unit == "agder-mandal"
    assert env.data["mentions_units"] == ["agder-mandal"]
    assert env.data["sentiment"] == "negative"
    assert env.data["title"] == article.data["title"]
    assert datetime.fromisoformat(env.data["published"]) == START + article.at


def test_offsets_may_be_compound_or_iso(org: Organisation) -> None:
    text = shipped()["demo-kort"].read_text(encoding="utf-8")
    text = text.replace("duration: 2m", "duration: 1h30m").replace("at: 1m\n", "at: PT1H20M\n")
    scenario = load_scenario(text, org=org)
    assert scenario.duration == timedelta(minutes=90)
    assert scenario.injects[-1].at == timedelta(minutes=80)
    with pytest.raises(ScenarioError, match=r"injects\[3\]\.at: '1m30' has the wrong format"):
        load_scenario(text.replace("at: PT1H20M", "at: 1m30"), org=org)


def test_inject_events_need_an_aware_start(org: Organisation) -> None:
    demo = load_scenario(shipped()["demo-kort"], org=org)
    with pytest.raises(ValueError, match="time zone"):
        inject_events(
            demo.injects[0],
            scenario=demo,
            exercise_id="x",
            started_at=datetime(2026, 1, 1),
            org=org,
        )


GROUNDED = {
    "romning-natt": "escape",
    "brann-evakuering": "fire",
    "gisseltaking": "hostage",
    "ikt-bortfall": "infrastructure_outage",
    "smitteutbrudd": "infectious_disease",
    "ekstremvaer": "extreme_weather",
    "demo-kort": "fire",
}


def test_the_shipped_scenarios_cover_the_issues_incident_types(org: Organisation) -> None:
    assert set(GROUNDED) <= set(shipped())
    for name, incident_type in GROUNDED.items():
        scenario = load_scenario(shipped()[name], org=org)
        events = _events(scenario, org, "x")
        signalled = {incident_type_for(str(e["type"]), e["data"]) for e in events}
        assert incident_type in signalled, (name, signalled)
        assert any(i.type == "text" for i in scenario.injects), name
    weather = load_scenario(shipped()["ekstremvaer"], org=org)
    assert any(i.type == "cap" for i in weather.injects)
