"""The event-type catalogue is consistent, and one entry is all a new type needs to be known."""

from __future__ import annotations

import string
from collections.abc import Iterator
from dataclasses import replace

import pytest
from pydantic import Field

from crisis.domain.organisation import load_organisation
from crisis.sources import catalogue
from crisis.sources.catalogue import EventData, EventKind
from crisis.sources.events import EVENT_TYPES, EventError, event_json_schema, validate_event
from crisis.sources.incident_types import INCIDENT_TYPE_LABELS
from playbooks.loader import load_library
from streams.bridges.mqtt import Rejected, sensor_type


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_every_type_declares_model_incident_type_severity_and_title() -> None:
    kinds = catalogue.kinds()
    assert [k.name for k in kinds] == [k.name for k in catalogue.CATALOGUE]
    for kind in kinds:
        assert issubclass(kind.model, EventData), kind.name
        assert kind.type == "no.kriminalomsorgen." + kind.name
        assert kind.incident_type in {*INCIDENT_TYPE_LABELS, catalogue.STAFF_REPORT_TYPE}
        assert 1 <= kind.severity <= 5, kind.name
        assert kind.title.strip(), kind.name
        if kind.correlation == "alarm":
            assert _fields(kind.title) == {"area", "unit"}, kind.name
            assert kind.entry and _fields(kind.entry) == {"area"}, kind.name


def test_names_and_aliases_are_unique_and_lead_back_to_their_type() -> None:
    seen: dict[str, str] = {}
    for kind in catalogue.kinds():
        names = [n for n in (kind.sensor, *kind.aliases) if n]
        assert kind.aliases == () or kind.sensor is not None, kind.name
        for name in names:
            assert name not in seen, f"{name!r}: {kind.name} and {seen[name]}"
            seen[name] = kind.name
            assert catalogue.for_topic(name) is kind
    assert catalogue.topic_names() == sorted(seen)
    breath = catalogue.find("sensor.breath_absent")
    assert breath is not None
    assert sensor_type("pust") == sensor_type("breath_absent") == breath.type


def test_the_readers_see_exactly_the_catalogue() -> None:
    full = [k.type for k in catalogue.kinds()]
    assert list(EVENT_TYPES) == full
    assert list(catalogue.INCIDENT_TYPES) == full
    assert set(event_json_schema()["properties"]["type"]["enum"]) == set(full)
    for kind in catalogue.kinds():
        assert catalogue.find(kind.name) is catalogue.find(kind.type) is kind
        assert EVENT_TYPES[kind.type] is kind.model


def test_every_incident_type_an_event_signals_has_a_playbook() -> None:
    library = load_library(org=load_organisation())
    for kind in catalogue.kinds():
        if kind.incident_type != catalogue.STAFF_REPORT_TYPE:
            assert library.for_type(kind.incident_type) is not None, kind.name


class GasData(EventData):
    detector: str = Field(min_length=1, max_length=40)
    ppm: int = Field(ge=0)


GAS = EventKind(
    "sensor.gas_leak",
    GasData,
    "fire",
    4,
    "Gasslekkasje ({area}, {unit})",
    entry="Gasslekkasje ({area})",
    aliases=("gass",),
)


@pytest.fixture
def gas() -> Iterator[EventKind]:
    catalogue.register(GAS)
    yield GAS
    catalogue.unregister(GAS.name)


def test_a_registered_type_is_validated_bridged_and_then_forgotten(gas: EventKind) -> None:
    raw = {
        "specversion": "1.0",
        "id": "g1",
        "source": "/units/ringerike/sensors/g1",
        "type": gas.type,
        "unit": "ringerike",
        "data": {"detector": "K1", "ppm": 80},
    }
    assert validate_event(raw).data == {"detector": "K1", "ppm": 80}
    with pytest.raises(EventError, match="ppm"):
        validate_event({**raw, "data": {"detector": "K1", "ppm": -1}})
    assert sensor_type("gass") == sensor_type("gas-leak") == gas.type
    assert catalogue.incident_type_for(gas.name) == "fire"
    catalogue.unregister(gas.name)
    try:
        with pytest.raises(EventError, match="unknown event type"):
            validate_event(raw)
        with pytest.raises(Rejected, match="unknown sensor kind"):
            sensor_type("gass")
        assert catalogue.find(gas.type) is None and "gass" not in catalogue.topic_names()
    finally:
        catalogue.register(gas)


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        (replace(GAS, name="sensor.fire_alarm"), "already declared"),
        (replace(GAS, incident_type="flood"), "unknown incident type"),
        (replace(GAS, aliases=("brann",)), "'brann' is taken"),
        (replace(GAS, aliases=("x", "x")), "'x' is taken"),
        (replace(GAS, severity=6), "not 1–5"),
        (replace(GAS, title=" "), "no title"),
        (replace(GAS, name="media.gas"), "only sensor types"),
    ],
)
def test_register_refuses_an_entry_that_breaks_an_invariant(kind: EventKind, problem: str) -> None:
    before = catalogue.kinds(), catalogue.topic_names()
    with pytest.raises(ValueError, match=problem):
        catalogue.register(kind)
    assert (catalogue.kinds(), catalogue.topic_names()) == before
