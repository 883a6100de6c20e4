"""The correlation rules on their own: no Kafka, no database."""

from __future__ import annotations

import itertools
from typing import Any

from crisis.domain.correlation import (
    AddEntry,
    CorrelationConfig,
    Correlator,
    Event,
    IncidentView,
    OpenIncident,
)
from crisis.domain.vocabulary import EntryKind, Status
from crisis.sources import catalogue

T0 = 1_800_000_000.0
ALARMS = [k for k in catalogue.kinds() if k.correlation == "alarm"]


class World:
    """A correlator with in-memory state, as the worker keeps it in the database."""

    def __init__(self, **config: Any) -> None:
        counter = itertools.count(1)
        self.correlator = Correlator(
            CorrelationConfig(**config),
            unit_names={"agder-froland": "Agder fengsel, avdeling Froland"},
            new_id=lambda: f"inc-{next(counter)}",
        )
        self.state: dict[str, dict[str, Any]] = {}
        self.incidents: dict[str, IncidentView] = {}
        self.actions: list[Any] = []

    def feed(self, event: Event) -> list[Any]:
        out = self.correlator.handle(event, self.state, self.incidents)
        self.actions += out
        return out

    def opened(self) -> list[OpenIncident]:
        return [a for a in self.actions if isinstance(a, OpenIncident)]

    def entries(self, kind: str | None = None) -> list[AddEntry]:
        return [
            a for a in self.actions if isinstance(a, AddEntry) and (kind is None or a.kind == kind)
        ]


_ids = itertools.count()


def ev(
    type_: str,
    t: float,
    *,
    unit: str = "agder-froland",
    source: str = "/units/agder-froland/sensors/s1",
    exercise: str | None = None,
    **data: Any,
) -> Event:
    return Event(
        source=source,
        id=f"e{next(_ids)}",
        type=type_,
        unit=unit,
        time=t,
        data=data,
        exercise=exercise,
    )


def test_alarms_in_same_area_within_window_join_one_incident() -> None:
    w = World(window_seconds=600)
    w.feed(ev("sensor.personal_alarm", T0, area="A-blokk"))
    w.feed(ev("sensor.personal_alarm", T0 + 120, area="A-blokk"))
    w.feed(ev("sensor.personal_alarm", T0 + 700, area="A-blokk"))  # window slides from last
    assert len(w.opened()) == 1
    joined = w.entries(EntryKind.SOURCE_EVENT.value)
    assert len(joined) == 2 and {e.incident_id for e in joined} == {"inc-1"}
    assert joined[0].data["area"] == "A-blokk"


def test_other_area_unit_or_late_alarm_opens_a_new_incident() -> None:
    w = World(window_seconds=600)
    w.feed(ev("sensor.personal_alarm", T0, area="A-blokk"))
    w.feed(ev("sensor.personal_alarm", T0 + 10, area="B-blokk"))
    w.feed(ev("sensor.personal_alarm", T0 + 20, area="A-blokk", unit="ringerike"))
    w.feed(ev("sensor.personal_alarm", T0 + 1300, area="B-blokk"))  # 1290 s after the last
    assert [o.unit for o in w.opened()] == ["agder-froland"] * 2 + ["ringerike", "agder-froland"]
    assert len({o.incident_id for o in w.opened()}) == 4


def test_closed_incident_is_not_joined() -> None:
    w = World()
    w.feed(ev("sensor.fire_alarm", T0, zone="kjøkken"))
    w.incidents["inc-1"].status = Status.CLOSED.value
    w.feed(ev("sensor.fire_alarm", T0 + 5, zone="kjøkken"))
    assert [o.incident_id for o in w.opened()] == ["inc-1", "inc-2"]


def test_breath_absent_opens_most_severe_class_at_once() -> None:
    w = World()
    (opened,) = w.feed(ev("sensor.breath_absent", T0, cell="A2-114", seconds_without_breath=45))
    assert isinstance(opened, OpenIncident)
    assert opened.severity == 5
    assert opened.type == "breath_motion_absent"
    assert "A2-114" in opened.title and "Agder fengsel" in opened.title
    assert "pust" in opened.title
    # motion absent in the same cell joins the same incident
    w.feed(ev("sensor.motion_absent", T0 + 3, cell="A2-114"))
    assert len(w.opened()) == 1
    assert max(k.severity for k in ALARMS) == 5


def test_every_alarm_type_has_norwegian_title_and_severity() -> None:
    for kind in ALARMS:
        w = World()
        (opened,) = w.feed(ev(kind.name, T0, area="X", tag="T1", cell="C1"))
        assert isinstance(opened, OpenIncident)
        assert opened.type == kind.incident_type and opened.severity == kind.severity
        assert opened.title and "{" not in opened.title


def test_exercise_and_real_never_mix() -> None:
    w = World()
    w.feed(ev("sensor.personal_alarm", T0, area="A"))
    w.feed(ev("sensor.personal_alarm", T0 + 1, area="A", exercise="ovelse-1"))
    w.feed(ev("sensor.personal_alarm", T0 + 2, area="A", exercise="ovelse-2"))
    w.feed(ev("sensor.personal_alarm", T0 + 3, area="A", exercise="ovelse-1"))
    assert [o.exercise for o in w.opened()] == [None, "ovelse-1", "ovelse-2"]
    (joined,) = w.entries(EntryKind.SOURCE_EVENT.value)
    assert joined.incident_id == w.opened()[1].incident_id


def test_storming_source_is_summarised_not_flooded() -> None:
    w = World(storm_window_seconds=60, storm_max_events=10)
    for i in range(50):
        w.feed(ev("sensor.door_forced", T0 + i * 0.5, door="D1"))
    # 1 opening + 9 joined entries (10 allowed), 1 announcement, the other 40 suppressed
    assert len(w.opened()) == 1
    assert len(w.entries(EntryKind.SOURCE_EVENT.value)) == 9
    observations = w.entries(EntryKind.OBSERVATION.value)
    assert len(observations) == 1 and "Sensorstorm" in observations[0].text
    # the next window: the summary of the previous one is written once, with the count
    w.feed(ev("sensor.door_forced", T0 + 61, door="D1"))
    summaries = [e for e in w.entries(EntryKind.OBSERVATION.value) if "undertrykt" in e.text]
    assert len(summaries) == 1
    assert summaries[0].data["suppressed"] == 40
    assert "40 hendelser fra /units/agder-froland/sensors/s1 undertrykt siste 60 s" in (
        summaries[0].text
    )


def test_storm_never_suppresses_a_new_incident() -> None:
    w = World(storm_max_events=2)
    for i in range(5):
        w.feed(ev("sensor.door_forced", T0 + i, door=f"D{i}"))  # each door its own incident
    assert len(w.opened()) == 5


def test_storm_summary_by_timer() -> None:
    w = World(storm_window_seconds=60, storm_max_events=1)
    for i in range(5):
        w.feed(ev("sensor.door_forced", T0 + i, door="D1"))
    key = "storm:/units/agder-froland/sensors/s1"
    assert w.correlator.due(key, w.state[key], w.incidents, T0 + 30) == []
    (summary,) = w.correlator.due(key, w.state[key], w.incidents, T0 + 61)
    assert isinstance(summary, AddEntry) and summary.data["suppressed"] == 4
    assert w.correlator.due(key, w.state[key], w.incidents, T0 + 200) == []


def test_silent_gateway_opens_infrastructure_incident_and_closes_on_resume() -> None:
    w = World(heartbeat_factor=3)
    assert w.feed(ev("sensor.heartbeat", T0, gateway="gw-1", interval_seconds=10)) == []
    key = "gw:gw-1|"
    assert w.correlator.due(key, w.state[key], w.incidents, T0 + 29) == []
    (opened,) = w.correlator.due(key, w.state[key], w.incidents, T0 + 31)
    assert isinstance(opened, OpenIncident) and opened.type == "infrastructure_outage"
    assert "gw-1" in opened.title
    assert w.correlator.due(key, w.state[key], w.incidents, T0 + 60) == []  # opened once
    out = w.feed(ev("sensor.heartbeat", T0 + 70, gateway="gw-1", interval_seconds=10))
    assert [a.kind for a in out] == [EntryKind.SOURCE_EVENT.value, EntryKind.STATUS_CHANGE.value]
    assert out[1].data["status"] == "closed"
    assert w.incidents[opened.incident_id].status == "closed"


def _article(t: float, sentiment: str = "negative", **data: Any) -> Event:
    return ev(
        "media.article",
        t,
        source="/media/monitor",
        url=f"https://example.invalid/{t}",
        title="Kritikk av fengselet",
        sentiment=sentiment,
        **data,
    )


def test_negative_media_burst_opens_then_escalates_one_level_at_a_time() -> None:
    w = World(media_threshold=5, media_window_seconds=1800)
    for i in range(4):
        w.feed(_article(T0 + i * 60))
    w.feed(_article(T0 + 300, sentiment="positive"))
    assert w.opened() == []
    w.feed(_article(T0 + 400))
    (opened,) = w.opened()
    assert opened.type == "media_storm" and opened.unit == "agder-froland"
    for i in range(5):
        w.feed(_article(T0 + 500 + i))
    escalations = w.entries(EntryKind.ESCALATION.value)
    assert [(e.data["from"], e.data["to"]) for e in escalations] == [("unit", "region")]
    for i in range(10):
        w.feed(_article(T0 + 600 + i))
    escalations = w.entries(EntryKind.ESCALATION.value)
    assert [e.data["to"] for e in escalations] == ["region", "kdi", "jd"]
    for i in range(10):
        w.feed(_article(T0 + 700 + i))
    assert len(w.entries(EntryKind.ESCALATION.value)) == 3  # nothing above JD


def test_spread_out_negative_articles_do_not_open() -> None:
    w = World(media_threshold=5, media_window_seconds=1800)
    for i in range(10):
        w.feed(_article(T0 + i * 600))  # one every 10 min: at most 3 in 30 min
    assert w.opened() == []


def test_key_media_articles_weigh_more_in_the_storm_rule() -> None:
    ordinary = World(media_threshold=5, media_window_seconds=1800)
    for i in range(3):
        ordinary.feed(_article(T0 + i * 60))
    assert ordinary.opened() == []
    keyed = World(media_threshold=5, media_window_seconds=1800)
    keyed.feed(_article(T0, key_media=True))
    keyed.feed(_article(T0 + 60, key_media=True))
    assert keyed.opened() == []  # weight 4 of 5
    keyed.feed(_article(T0 + 120))
    (opened,) = keyed.opened()
    assert opened.data["articles"] == 3 and opened.data["weight"] == 5
    # a positive key article weighs nothing; an old key article leaves the window with its weight
    keyed.feed(_article(T0 + 130, sentiment="positive", key_media=True))
    for i in range(2):
        keyed.feed(_article(T0 + 200 + i, key_media=True))
    assert keyed.entries(EntryKind.ESCALATION.value) == []  # weight 4 since it opened
    keyed.feed(_article(T0 + 210, key_media=True))
    escalations = keyed.entries(EntryKind.ESCALATION.value)
    assert [(e.data["from"], e.data["to"]) for e in escalations] == [("unit", "region")]
    late = World(media_threshold=5, media_window_seconds=1800)
    late.feed(_article(T0, key_media=True))
    late.feed(_article(T0 + 60, key_media=True))
    late.feed(_article(T0 + 2000))  # both key articles are older than the window
    late.feed(_article(T0 + 2060))
    assert late.opened() == []


def test_media_state_without_weights_counts_one_per_article() -> None:
    w = World(media_threshold=3, media_window_seconds=1800)
    w.state["media:unit:agder-froland|"] = {"times": [T0, T0 + 1], "since": 0}
    keys = list(w.correlator._media_keys(_article(T0 + 2)))
    assert keys == ["media:unit:agder-froland|"], keys
    w.feed(_article(T0 + 2))
    (opened,) = w.opened()
    assert opened.data["weight"] == 3


def test_media_burst_about_an_incident_targets_its_unit() -> None:
    w = World(media_threshold=2)
    w.incidents["inc-x"] = IncidentView("inc-x", "ringerike")
    w.feed(_article(T0, mentions_incidents=["inc-x"]))
    w.feed(_article(T0 + 1, mentions_incidents=["inc-x"]))
    units = sorted(o.unit for o in w.opened())
    assert units == ["agder-froland", "ringerike"]
    related = next(o for o in w.opened() if o.unit == "ringerike")
    assert related.data["related_incident"] == "inc-x"


def _cap(t: float, msg_type: str, identifier: str, status: str = "Actual", **kw: Any) -> Event:
    return ev(
        "warning.cap",
        t,
        source="/cap/met.no",
        identifier=identifier,
        sender="noreply@met.no",
        sent="2026-11-22T02:00:00+00:00",
        status=status,
        msg_type=msg_type,
        event="wind",
        headline="Farlig kuling",
        awareness_level="3; orange; Severe",
        **kw,
    )


def test_cap_alert_opens_and_cancel_closes() -> None:
    w = World()
    (opened,) = w.feed(_cap(T0, "Alert", "met-1"))
    assert isinstance(opened, OpenIncident)
    assert opened.type == "extreme_weather" and opened.severity == 3
    assert "Farlig kuling" in opened.title
    update = w.feed(_cap(T0 + 10, "Update", "met-2", references=["noreply@met.no,met-1,x"]))
    assert [a.kind for a in update] == [EntryKind.SOURCE_EVENT.value]
    cancel = w.feed(_cap(T0 + 20, "Cancel", "met-3", references=["noreply@met.no,met-2,x"]))
    assert [a.kind for a in cancel] == [EntryKind.SOURCE_EVENT.value, "status_change"]
    assert w.incidents[opened.incident_id].status == "closed"
    assert len(w.opened()) == 1


def test_cap_test_status_never_opens_and_exercise_only_in_exercise() -> None:
    w = World()
    assert w.feed(_cap(T0, "Alert", "t-1", status="Test")) == []
    assert w.feed(_cap(T0, "Alert", "x-1", status="Exercise")) == []
    (opened,) = w.feed(_cap(T0, "Alert", "x-2", status="Exercise", exercise="ovelse-1"))
    assert isinstance(opened, OpenIncident) and opened.exercise == "ovelse-1"
    assert w.feed(_cap(T0, "Cancel", "t-2", references=["unknown"])) == []


def test_report_opens_incident_with_reported_severity() -> None:
    w = World()
    (opened,) = w.feed(
        ev("report.incident", T0, category="Vold", place="Avdeling B", what="Slåsskamp", severity=4)
    )
    assert isinstance(opened, OpenIncident)
    assert opened.severity == 4 and opened.type == "violence_threat"


def test_correlation_opens_incidents_with_the_playbooks_vocabulary() -> None:
    """Every alarm opens an incident of the type the playbook library handles."""
    from crisis.sources.incident_types import INCIDENT_TYPE_LABELS

    for kind in ALARMS:
        w = World()
        (opened,) = w.feed(ev(kind.name, T0, area="X"))
        assert isinstance(opened, OpenIncident)
        assert opened.type == catalogue.incident_type_for(kind.type), kind.name
        assert opened.type in INCIDENT_TYPE_LABELS, kind.name
