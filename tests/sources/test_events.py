"""The envelope: strict validation with index, field and message; the published schema."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from crisis.sources.events import EVENT_TYPES, EventError, event_json_schema, validate_event

EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "4b1f6a0e-2f7c-4d0e-9a53-6f0a6c3b9d11",
    "source": "/units/agder-froland/sensors/A2-114-breath",
    "type": "no.kriminalomsorgen.sensor.breath_absent",
    "time": "2026-11-22T02:41:07Z",
    "subject": "agder-froland",
    "datacontenttype": "application/json",
    "unit": "agder-froland",
    "exercise": "ovelse-2026-11-brann",
    "data": {"cell": "A2-114", "seconds_without_breath": 45},
}


def test_the_contract_example_is_valid() -> None:
    event = validate_event(EVENT, known_units={"agder-froland"})
    assert event.key == (EVENT["source"], EVENT["id"])
    assert event.short_type == "sensor.breath_absent"
    assert event.exercise == "ovelse-2026-11-brann"
    assert event.data == {"cell": "A2-114", "seconds_without_breath": 45}


def test_subject_names_the_unit_when_unit_is_absent() -> None:
    raw = {k: v for k, v in EVENT.items() if k != "unit"}
    assert validate_event(raw).unit == "agder-froland"


@pytest.mark.parametrize(
    "change,field",
    [
        ({"type": "no.kriminalomsorgen.sensor.unicorn"}, "type"),
        ({"specversion": "0.3"}, "specversion"),
        ({"id": ""}, "id"),
        ({"time": "2026-11-22T02:41:07"}, "time"),
        ({"data": {"cell": "A2-114", "bogus": 1}}, "data.bogus"),
        ({"data": {}}, "data.cell"),
        ({"data": {"cell": "A2-114", "seconds_without_breath": -1}}, "data.seconds_without_breath"),
        ({"colour": ["red"]}, "colour"),
        ({"Bad-Name": 1}, "Bad-Name"),
        ({"unit": "mars"}, "unit"),
    ],
)
def test_invalid_events_name_index_and_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(EventError) as info:
        validate_event({**EVENT, **change}, index=7, known_units={"agder-froland"})
    assert info.value.errors[0]["index"] == 7
    assert info.value.errors[0]["field"] == field
    assert info.value.errors[0]["message"]


def test_not_an_object() -> None:
    with pytest.raises(EventError, match="JSON object"):
        validate_event(["no"])


def test_published_schema_agrees_with_the_validator() -> None:
    schema = event_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(EVENT, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**EVENT, "data": {"cell": 5}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**EVENT, "type": "no.kriminalomsorgen.sensor.unicorn"}, schema)
    assert set(schema["properties"]["type"]["enum"]) == set(EVENT_TYPES)
