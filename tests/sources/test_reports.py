"""The report event shared by the report form and exercise injects."""

from __future__ import annotations

from crisis.sources.events import validate_event
from crisis.sources.reports import REPORT_TYPE, report_event


def test_report_event_is_a_valid_report_from_its_reporter() -> None:
    fields = {"category": "brann", "place": "Avdeling A", "what": "Røyk", "unit": "x", "id": "y"}
    raw = report_event(
        fields, reporter="kari", unit="agder-froland", event_id="r1", time="2026-12-03T18:30:00Z"
    )
    env = validate_event(raw, known_units={"agder-froland"})
    assert env.type == REPORT_TYPE and env.key == ("/users/kari", "r1")
    assert env.data == {
        "category": "brann",
        "place": "Avdeling A",
        "what": "Røyk",
        "reporter": "kari",
    }
    assert env.exercise is None


def test_report_event_in_an_exercise_has_its_source_and_mark() -> None:
    raw = report_event(
        {"category": "rømning", "place": "B", "what": "Mangler ved telling", "severity": 4},
        reporter="ola",
        unit="agder-froland",
        event_id="telling",
        time="2026-12-03T18:30:00+00:00",
        source="/exercises/ovelse-1",
        exercise="ovelse-1",
    )
    env = validate_event(raw)
    assert env.key == ("/exercises/ovelse-1", "telling")
    assert env.exercise == "ovelse-1" and env.data["severity"] == 4
