"""Property: any valid scenario parses, and every inject becomes valid, unique exercise events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from crisis.domain.organisation import Organisation, load_organisation
from crisis.sources.events import validate_event
from crisis.sources.incident_types import REPORT_CATEGORIES
from playbooks.exercises.scenario import inject_events, load_scenario, sensor_kinds

ORG: Organisation = load_organisation()
UNITS = ["agder-froland", "agder-mandal"]

CAP = """<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>ovelse.{ident}</identifier>
  <sender>noreply@met.no</sender>
  <sent>2026-12-03T06:00:00+00:00</sent>
  <status>Exercise</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <language>no</language>
    <category>Met</category>
    <event>rain</event>
    <urgency>Future</urgency>
    <severity>Moderate</severity>
    <certainty>Likely</certainty>
    <expires>2026-12-04T06:00:00+00:00</expires>
    <headline>{headline}</headline>
    <area>
      <areaDesc>Agder</areaDesc>
      <polygon>57.95,7.30 57.95,7.60 58.10,7.60 58.10,7.30 57.95,7.30</polygon>
    </area>
    <area>
      <areaDesc>Froland</areaDesc>
      <circle>58.5296,8.6510 5</circle>
    </area>
  </info>
</alert>
"""

words = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzæøåABCÆØÅ0123456789 .,-:'\"", min_size=1, max_size=30
).filter(lambda s: s.strip() != "")
ident = st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True)

SENSOR_DATA: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "CellSensorData": st.fixed_dictionaries(
        {"cell": words}, optional={"seconds_without_breath": st.integers(0, 3600)}
    ),
    "PersonalAlarmData": st.fixed_dictionaries({}, optional={"area": words, "location": words}),
    "ZoneData": st.fixed_dictionaries({}, optional={"zone": words, "detail": words}),
    "AnkleTagData": st.fixed_dictionaries(
        {"tag": words}, optional={"battery_percent": st.integers(0, 100)}
    ),
    "ReverseViolenceData": st.fixed_dictionaries(
        {"tag": words}, optional={"distance_m": st.floats(0, 1e4, allow_nan=False)}
    ),
    "HeartbeatData": st.fixed_dictionaries(
        {"gateway": words}, optional={"interval_seconds": st.integers(1, 3600)}
    ),
}


@st.composite
def an_inject(draw: st.DrawFn, duration: int) -> dict[str, Any]:
    kind = draw(st.sampled_from(["sensor", "report", "media", "cap", "text"]))
    out: dict[str, Any] = {"at": f"{draw(st.integers(0, duration))}s", "type": kind}
    if kind != "cap" and draw(st.booleans()):
        out["unit"] = draw(st.sampled_from(UNITS))
    if kind == "sensor":
        name, event_kind = draw(st.sampled_from(sorted(sensor_kinds().items())))
        out["event"] = draw(st.sampled_from([name, f"sensor.{name}"]))
        out["data"] = draw(SENSOR_DATA[event_kind.model.__name__])
    elif kind == "report":
        out |= {
            "category": draw(st.sampled_from(sorted(REPORT_CATEGORIES))),
            "place": draw(words),
            "what": draw(words),
        }
        if draw(st.booleans()):
            out["severity"] = draw(st.integers(1, 5))
    elif kind == "media":
        out |= {"title": draw(words), "url": "https://example.invalid/" + draw(ident)}
        if draw(st.booleans()):
            out["sentiment"] = draw(st.sampled_from(["positive", "neutral", "negative"]))
    elif kind == "cap":
        out["xml"] = CAP.format(ident=draw(ident), headline=draw(ident))
    else:
        out["text"] = draw(words)
    return out


@st.composite
def a_scenario(draw: st.DrawFn) -> tuple[str, int]:
    duration = draw(st.integers(120, 7200))
    ids = draw(st.lists(ident, min_size=1, max_size=8, unique=True))
    injects = [{"id": i, **draw(an_inject(duration))} for i in ids]
    doc = {
        "version": 1,
        "id": draw(ident),
        "title": draw(words),
        "title_en": draw(words),
        "units": UNITS,
        "duration": f"{duration}s",
        "participants": [{"person": "espen-braten"}],
        "injects": injects,
        "expected": [
            {"id": "eier", "action": "owner_set", "within": "2m"},
            {"id": "regel", "action": "staff_before_public"},
        ],
    }
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), len(ids)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a_scenario(), ident, st.integers(0, 10**6))
def test_valid_scenarios_give_valid_unique_exercise_events(
    generated: tuple[str, int], exercise: str, start_seconds: int
) -> None:
    text, count = generated
    scenario = load_scenario(text, org=ORG, people={"espen-braten"})
    assert len(scenario.injects) == count
    assert [i.at for i in scenario.injects] == sorted(i.at for i in scenario.injects)
    started = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=start_seconds)
    keys: list[tuple[str, str]] = []
    for inject in scenario.injects:
        events = inject_events(
            inject, scenario=scenario, exercise_id=exercise, started_at=started, org=ORG
        )
        assert (events == []) == (inject.type == "text")
        for raw in events:
            env = validate_event(raw, known_units=set(ORG.units))
            assert env.exercise == exercise
            assert env.time == started + inject.at
            keys.append(env.key)
        again = inject_events(
            inject, scenario=scenario, exercise_id=exercise, started_at=started, org=ORG
        )
        assert again == events
    assert len(keys) == len(set(keys))
