"""POST /api/v1/events against the real embedded broker: 202 means durable, 4xx accepts nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from crisis.kafka import topics
from crisis.kafka.broker import EmbeddedBroker, ensure_topics
from tests.conftest import ApiHarness
from tests.ingest_support import (
    event,
    ingest_api,
    ingest_settings,
    metric,
    partitions,
    read_topic,
    wait_until,
)

pytestmark = pytest.mark.broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as running:
        yield running


@pytest.fixture
async def api(tmp_path: Path, broker: EmbeddedBroker) -> AsyncIterator[ApiHarness]:
    settings = ingest_settings(
        tmp_path,
        broker.bootstrap,
        ingest_max_events=50,
        ingest_max_body_bytes=64 * 1024,
        ingest_burst_per_source=20,
        ingest_rate_per_source=1.0,
    )
    async with ingest_api(settings) as harness:
        yield harness


async def _ids_on_topic(broker: EmbeddedBroker, count: int) -> list[str]:
    return [v["id"] for _, v in await read_topic(broker.bootstrap, topics.EVENTS, count=count)]


async def test_single_and_batch_reach_kafka_keyed_by_unit(
    api: ApiHarness, broker: EmbeddedBroker
) -> None:
    headers = await api.user("op", "operator", unit="agder-froland")
    one = event(0)
    r = await api.client.post("/api/v1/events", json=one, headers=headers)
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": [one["id"]]}

    batch = [event(i) for i in range(1, 4)]
    dup = dict(batch[0], data={"area": "B"})  # same (source, id) again: accepted once
    r = await api.client.post(
        "/api/v1/events",
        content=json.dumps([*batch, dup]),
        headers={**headers, "content-type": "application/cloudevents-batch+json"},
    )
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == [e["id"] for e in batch]

    got = await read_topic(broker.bootstrap, topics.EVENTS, count=4)
    assert [v["id"] for _, v in got] == [one["id"]] + [e["id"] for e in batch]
    assert {k for k, _ in got} == {b"agder-froland"}
    assert got[1][1]["data"] == {"area": "A", "staff_id": "s1"}
    assert got[0][1]["type"] == "no.kriminalomsorgen.sensor.personal_alarm"


async def test_invalid_event_in_a_batch_rejects_the_whole_batch(
    api: ApiHarness, broker: EmbeddedBroker
) -> None:
    headers = await api.user("kdi", "kdi")
    good = event(0)
    bad_type = event(1, type="no.kriminalomsorgen.sensor.teleport")
    bad_unit = event(2, unit="atlantis")
    bad_data = event(3, data={"area": "A", "volume": 11})
    r = await api.client.post(
        "/api/v1/events", json=[good, bad_type, bad_unit, bad_data], headers=headers
    )
    assert r.status_code == 422
    errors = r.json()["errors"]
    assert {(e["index"], e["field"]) for e in errors} == {
        (1, "type"),
        (2, "unit"),
        (3, "data.volume"),
    }
    assert all(e["message"] for e in errors)
    assert "unknown event type" in next(e["message"] for e in errors if e["field"] == "type")

    marker = event(9)
    assert (
        await api.client.post("/api/v1/events", json=marker, headers=headers)
    ).status_code == 202
    assert await _ids_on_topic(broker, 1) == [marker["id"]]  # nothing of the bad batch
    text = await api.metrics()
    assert metric(text, "crisis_events_rejected_total", type="unknown", reason="invalid") == 1
    assert (
        metric(text, "crisis_events_rejected_total", type="sensor.personal_alarm", reason="invalid")
        == 3
    )
    assert metric(text, "crisis_events_accepted_total", type="sensor.personal_alarm") == 1


async def test_malformed_wrong_type_and_limits(api: ApiHarness) -> None:
    headers = await api.user("kdi", "kdi")
    r = await api.client.post(
        "/api/v1/events",
        content=b"{not json",
        headers={**headers, "content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "body"
    r = await api.client.post(
        "/api/v1/events", content=b"<x/>", headers={**headers, "content-type": "text/xml"}
    )
    assert r.status_code == 415
    many = [event(i, source=f"/units/agder-froland/sensors/s{i}") for i in range(51)]
    r = await api.client.post("/api/v1/events", json=many, headers=headers)
    assert r.status_code == 413 and "limit is 50" in r.json()["errors"][0]["message"]
    huge = event(0, data={"area": "A", "location": "x" * 70_000})
    r = await api.client.post("/api/v1/events", json=huge, headers=headers)
    assert r.status_code == 413 and "65536 bytes" in r.json()["errors"][0]["message"]
    r = await api.client.post("/api/v1/events", json=[], headers=headers)
    assert r.status_code == 422


async def test_burst_from_one_source_gets_429_with_retry_after(
    api: ApiHarness, broker: EmbeddedBroker
) -> None:
    headers = await api.user("kdi", "kdi")
    storm = "/units/agder-froland/sensors/faulty-1"
    codes = []
    for i in range(25):
        r = await api.client.post("/api/v1/events", json=event(i, source=storm), headers=headers)
        codes.append(r.status_code)
        if r.status_code == 429:
            assert int(r.headers["retry-after"]) >= 1
            assert r.json()["errors"][0]["field"] == "source"
    assert codes[:20] == [202] * 20  # the burst allowance
    assert 429 in codes[20:]
    other = event(99, source="/units/agder-froland/sensors/healthy")
    assert (await api.client.post("/api/v1/events", json=other, headers=headers)).status_code == 202
    r = await api.client.post(
        "/api/v1/events", json=[event(i, source="/x/big") for i in range(21)], headers=headers
    )
    assert r.status_code == 413 and "from one source" in r.json()["errors"][0]["message"]


async def test_auth_and_scope(api: ApiHarness) -> None:
    assert (await api.client.post("/api/v1/events", json=event(0))).status_code == 401
    ministry = await api.user("jd", "ministry")
    assert (
        await api.client.post("/api/v1/events", json=event(0), headers=ministry)
    ).status_code == 403
    ringerike = await api.user("op2", "operator", unit="ringerike")
    r = await api.client.post("/api/v1/events", json=event(0), headers=ringerike)
    assert r.status_code == 403 and r.json()["errors"][0]["field"] == "unit"
    controller = await api.user("ctl", "exercise-controller")
    r = await api.client.post("/api/v1/events", json=event(0), headers=controller)
    assert r.status_code == 403
    r = await api.client.post(
        "/api/v1/events", json=event(0, exercise="ovelse-1"), headers=controller
    )
    assert r.status_code == 202


async def test_broker_down_100_events_get_202_and_all_reach_kafka_in_order(
    tmp_path: Path, broker: EmbeddedBroker
) -> None:
    settings = ingest_settings(tmp_path, broker.bootstrap, ingest_burst_per_source=500)
    async with ingest_api(settings) as api:
        headers = await api.user("op", "operator", unit="agder-froland")
        broker.kill()
        events = [event(i, source="/units/agder-froland/sensors/gw-1") for i in range(100)]
        for ev in events:
            r = await api.client.post("/api/v1/events", json=ev, headers=headers)
            assert r.status_code == 202, r.text
        producer = api.app.state.producer
        assert producer.outbox_depth() == 100
        assert (tmp_path / "var" / "outbox.db").exists()
        text = await api.metrics()
        assert metric(text, "crisis_outbox_depth") == 100

        await asyncio.to_thread(broker.restart)
        await ensure_topics(broker.bootstrap, partitions())
        await wait_until(lambda: producer.outbox_depth() == 0, within=60, what="outbox drained")
        got = await read_topic(broker.bootstrap, topics.EVENTS, count=100)
        assert [v["id"] for _, v in got] == [e["id"] for e in events]
        assert metric(await api.metrics(), "crisis_outbox_depth") == 0


async def test_without_kafka_ingest_answers_503(tmp_path: Path) -> None:
    settings = ingest_settings(tmp_path, "")
    async with ingest_api(settings) as api:
        headers = await api.user("kdi", "kdi")
        r = await api.client.post("/api/v1/events", json=event(0), headers=headers)
        assert r.status_code == 503
        assert "CRISIS_KAFKA_BOOTSTRAP" in r.json()["errors"][0]["message"]
