"""The CloudEvents HTTP binding (pure): which mode a request is, and the event it carries."""

from __future__ import annotations

import base64

import pytest

from crisis.sources.cloudevents_http import BindingError, read_request
from crisis.sources.events import validate_event

HEADERS = [
    ("ce-specversion", "1.0"),
    ("CE-Id", "b-1"),  # header names are case-insensitive
    ("ce-source", "/units/agder-froland/sensors/x"),
    ("ce-type", "no.kriminalomsorgen.sensor.fire_alarm"),
    ("ce-unit", "agder-froland"),
    ("ce-subject", "D%C3%B8r%20%22A%22%20100%25"),
]


def test_binary_headers_are_lower_cased_and_percent_decoded() -> None:
    got = read_request("application/json", HEADERS, b'{"zone": "B"}', max_data_bytes=1000)
    assert got.mode == "binary"
    (raw,) = got.events
    assert raw["id"] == "b-1" and raw["subject"] == 'Dør "A" 100%'
    assert raw["data"] == {"zone": "B"} and raw["datacontenttype"] == "application/json"
    envelope = validate_event(raw, known_units={"agder-froland"})
    # what goes to Kafka validates again unchanged (the worker re-reads it)
    dumped = envelope.model_dump(mode="json", exclude_none=True)
    assert validate_event(dumped).model_dump(mode="json", exclude_none=True) == dumped


def test_modes_by_content_type() -> None:
    one = b'{"id": "x"}'
    assert read_request("application/json", [], one, max_data_bytes=10).mode == "structured"
    assert (
        read_request(
            "application/cloudevents+json; charset=utf-8", HEADERS, one, max_data_bytes=10
        ).mode
        == "structured"
    )
    batch = read_request("application/cloudevents-batch+json", [], b"[{}, {}]", max_data_bytes=10)
    assert batch.mode == "batch" and len(batch.events) == 2
    with pytest.raises(BindingError) as info:
        read_request("application/cloudevents-batch+json", [], one, max_data_bytes=10)
    assert info.value.status == 422 and info.value.errors[0]["field"] == "body"
    with pytest.raises(BindingError) as info:
        read_request("text/plain", [], one, max_data_bytes=10)
    assert info.value.status == 415 and info.value.errors[0]["field"] == "content-type"


def test_binary_data_without_or_with_other_content_types() -> None:
    no_type = read_request(None, HEADERS, b'{"zone": "C"}', max_data_bytes=100)
    assert no_type.events[0]["data"] == {"zone": "C"} and "datacontenttype" not in no_type.events[0]
    octets = read_request("application/octet-stream", HEADERS, b"\x00\xff", max_data_bytes=100)
    assert base64.b64decode(octets.events[0]["data_base64"]) == b"\x00\xff"
    for content_type, headers, body, status, field in (
        (None, HEADERS, b"\x00 not json", 415, "datacontenttype"),
        ("application/json", HEADERS, b"{broken", 400, "data"),
        ("text/plain", HEADERS, b"x" * 80, 413, "data_base64"),
        ("application/json", [*HEADERS, ("ce-id", "again")], b"{}", 400, "id"),
        ("application/json", [*HEADERS, ("ce-x", "%FF")], b"{}", 400, "x"),
    ):
        with pytest.raises(BindingError) as info:
            read_request(content_type, headers, body, max_data_bytes=100)
        assert (info.value.status, info.value.errors[0]["field"]) == (status, field)


def test_null_extensions_are_absent_and_bad_ones_named() -> None:
    raw = {
        "specversion": "1.0",
        "id": "1",
        "source": "/s",
        "type": "no.kriminalomsorgen.sensor.fire_alarm",
        "knativearrivaltime": None,
        "partitionkey": "p",
        "sampled": True,
    }
    envelope = validate_event(raw)
    assert envelope.extensions == {"partitionkey": "p", "sampled": True}
    assert envelope.trace == {}
