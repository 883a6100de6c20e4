"""POST /api/v1/events as the CloudEvents Python SDK sends it (issue 20): structured, binary
and batch mode, extension attributes and a W3C ``traceparent`` that reaches the crisis log.

The app runs with its producer on the embedded broker; the records on ``crisis.events`` are
then processed by the worker's own pipeline on the app's database, and the log is read back
through the API.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from cloudevents.core.bindings.http import HTTPMessage, to_binary_event, to_structured_event
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from crisis.kafka import topics
from crisis.kafka.broker import EmbeddedBroker
from crisis.log.verify import verify_log
from crisis.settings import Settings
from crisis.store.db import make_engine, make_sessionmaker
from streams.pipeline import Record
from streams.worker import build_pipeline
from tests.conftest import ApiHarness
from tests.ingest_support import ingest_api, ingest_settings, read_topic

pytestmark = pytest.mark.broker

UNIT = "agder-froland"
PREFIX = "no.kriminalomsorgen."
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACESTATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as running:
        yield running


@pytest.fixture
def settings(tmp_path: Path, broker: EmbeddedBroker) -> Settings:
    return ingest_settings(tmp_path, broker.bootstrap, ingest_max_body_bytes=16 * 1024)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[ApiHarness]:
    async with ingest_api(settings) as harness:
        yield harness


def sdk_event(id_: str, type_: str, data: Any, **attributes: Any) -> CloudEvent:
    base = {"id": id_, "source": f"/units/{UNIT}/sensors/{id_}", "type": PREFIX + type_}
    return CloudEvent(attributes={**base, "unit": UNIT, **attributes}, data=data)


async def post(api: ApiHarness, auth: dict[str, str], message: HTTPMessage) -> Any:
    return await api.client.post(
        "/api/v1/events", content=message.body, headers={**auth, **message.headers}
    )


async def test_sdk_structured_binary_and_batch_reach_the_log_with_their_trace(
    api: ApiHarness, broker: EmbeddedBroker, settings: Settings
) -> None:
    auth = await api.user("op", "operator", unit=UNIT)
    traced = {"traceparent": TRACEPARENT, "tracestate": TRACESTATE}
    structured = sdk_event(
        "s-1",
        "sensor.personal_alarm",
        {"area": "A"},
        knativearrivaltime="2026-11-22T02:41:08Z",
        **traced,
    )
    r = await post(api, auth, to_structured_event(structured))
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": ["s-1"]}

    # binary: the project's `unit` arrives as ce-unit, the data (with `zone`) as the body
    binary = sdk_event("b-1", "sensor.fire_alarm", {"zone": "B-fløy"}, **traced)
    message = to_binary_event(binary)
    assert message.headers["ce-traceparent"] == TRACEPARENT and "ce-unit" in message.headers
    r = await post(api, auth, message)
    assert r.status_code == 202, r.text

    # binary with a charset parameter, and percent-encoded header values
    charset = sdk_event(
        "b-2",
        "sensor.door_forced",
        {"door": "D1"},
        datacontenttype="application/json; charset=utf-8",
        subject="Dør ved vakt",
    )
    message = to_binary_event(charset)
    assert "%" in message.headers["ce-subject"]
    r = await post(api, auth, message)
    assert r.status_code == 202, r.text

    # batch: the SDK's JSON format for each, as one array; the second carries data_base64
    fmt = JSONFormat()
    alarm = sdk_event("batch-1", "sensor.personal_alarm", {"area": "C"})
    as_bytes = sdk_event(
        "batch-2",
        "sensor.perimeter_breach",
        json.dumps({"zone": "Øst"}).encode(),
        datacontenttype="application/json",
    )
    items = [json.loads(fmt.write(e)) for e in (alarm, as_bytes)]
    assert "data_base64" in items[1]
    r = await api.client.post(
        "/api/v1/events",
        content=json.dumps(items),
        headers={**auth, "content-type": "application/cloudevents-batch+json"},
    )
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": ["batch-1", "batch-2"]}

    got = {v["id"]: v for _, v in await read_topic(broker.bootstrap, topics.EVENTS, count=5)}
    assert set(got) == {"s-1", "b-1", "b-2", "batch-1", "batch-2"}
    assert got["s-1"]["knativearrivaltime"] == "2026-11-22T02:41:08Z"  # extension kept
    assert got["b-1"]["unit"] == UNIT and got["b-1"]["data"] == {"zone": "B-fløy"}
    assert got["b-1"]["traceparent"] == TRACEPARENT
    assert got["b-2"]["subject"] == "Dør ved vakt"
    assert got["b-2"]["datacontenttype"] == "application/json; charset=utf-8"
    assert got["batch-2"]["data"] == {"zone": "Øst"} and "data_base64" not in got["batch-2"]

    # the worker's pipeline on the app's database, then the log through the API
    pipeline, _ = build_pipeline(settings)
    records = [
        Record(json.dumps(v).encode(), 1.0, topics.EVENTS, 0, n) for n, v in enumerate(got.values())
    ]
    result = await pipeline.process(records)
    assert result.new == 5 and not result.dead
    await pipeline.engine.dispose()

    incidents = (await api.client.get("/api/v1/incidents", headers=auth)).json()
    by_type = {i["type"]: i for i in incidents}
    fire = by_type["fire"]
    timeline = (
        await api.client.get(f"/api/v1/incidents/{fire['id']}/timeline", headers=auth)
    ).json()
    opened = timeline[0]
    assert opened["kind"] == "incident_opened" and opened["data"]["id"] == "b-1"
    assert opened["data"]["trace"] == traced
    traced_entries = [
        e
        for i in incidents
        for e in (
            await api.client.get(f"/api/v1/incidents/{i['id']}/timeline", headers=auth)
        ).json()
        if "trace" in e["data"]
    ]
    assert {e["data"]["id"] for e in traced_entries} == {"s-1", "b-1"}  # the traced events only

    engine = make_engine(settings)
    try:
        async with make_sessionmaker(engine)() as session:
            assert (await verify_log(session)).ok  # the hash chain covers the trace
    finally:
        await engine.dispose()


async def test_bad_binding_input_is_a_4xx_naming_the_field(
    api: ApiHarness, broker: EmbeddedBroker
) -> None:
    auth = await api.user("op", "operator", unit=UNIT)
    good = to_binary_event(sdk_event("ok-1", "sensor.fire_alarm", {"zone": "A"}))

    async def refused(headers: dict[str, str], body: bytes, status: int, field: str) -> None:
        r = await api.client.post("/api/v1/events", content=body, headers={**auth, **headers})
        assert r.status_code == status, r.text
        errors = r.json()["errors"]
        assert errors[0]["field"] == field and errors[0]["message"], errors

    no_id = {k: v for k, v in good.headers.items() if k != "ce-id"}
    await refused(no_id, good.body, 422, "id")
    await refused({**good.headers, "ce-bad_name": "x"}, good.body, 422, "bad_name")
    await refused({**good.headers, "ce-traceparent": "not-a-trace"}, good.body, 422, "traceparent")
    no_type = {k: v for k, v in good.headers.items() if k != "content-type"}
    await refused(no_type, b"\x00\x01 not json", 415, "datacontenttype")
    await refused(
        {**good.headers, "ce-datacontenttype": "text/plain"}, good.body, 400, "datacontenttype"
    )
    big = {**good.headers, "content-type": "application/octet-stream"}
    await refused(big, b"\xff" * 15_000, 413, "data_base64")  # under the body limit, not as base64

    structured = json.loads(JSONFormat().write(sdk_event("st-1", "sensor.fire_alarm", None)))
    for change, field in (
        (
            {"data_base64": "***not base64***", "datacontenttype": "application/octet-stream"},
            "data_base64",
        ),
        ({"Bad-Name": "x"}, "Bad-Name"),
        ({"nested": {"a": 1}}, "nested"),
        ({"datacontenttype": "text/plain", "data": {"zone": "A"}}, "datacontenttype"),
    ):
        await refused(
            {"content-type": "application/cloudevents+json"},
            json.dumps({**structured, **change}).encode(),
            422,
            field,
        )

    # without a Content-Type a JSON body is the data (the JSON format's default) ...
    r = await api.client.post("/api/v1/events", content=good.body, headers={**auth, **no_type})
    assert r.status_code == 202, r.text
    # ... and non-JSON data with its media type is kept as data_base64
    raw = b"\x00\x01binary"
    octets = to_binary_event(sdk_event("ok-2", "sensor.fire_alarm", None))
    octets_headers = {**octets.headers, "content-type": "application/octet-stream"}
    r = await api.client.post("/api/v1/events", content=raw, headers={**auth, **octets_headers})
    assert r.status_code == 202, r.text

    got = {v["id"]: v for _, v in await read_topic(broker.bootstrap, topics.EVENTS, count=2)}
    assert set(got) == {"ok-1", "ok-2"}  # nothing refused was accepted
    assert got["ok-1"]["data"] == {"zone": "A"}
    assert base64.b64decode(got["ok-2"]["data_base64"]) == raw and "data" not in got["ok-2"]
    assert got["ok-2"]["datacontenttype"] == "application/octet-stream"
