"""POST /api/v1/reports: a staff report (JSON or form) becomes a report.incident event."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from crisis.kafka import topics
from crisis.kafka.broker import EmbeddedBroker
from tests.conftest import ApiHarness
from tests.ingest_support import ingest_api, ingest_settings, read_topic

pytestmark = pytest.mark.broker

REPORT = {
    "category": "vold og trusler",
    "place": "Avdeling B, fellesareal",
    "what": "Innsatt truet betjent med knyttneve etter telefonsamtale.",
    "affected": "1 betjent",
    "severity": 3,
}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as running:
        yield running


@pytest.fixture
async def api(tmp_path: Path, broker: EmbeddedBroker) -> AsyncIterator[ApiHarness]:
    async with ingest_api(ingest_settings(tmp_path, broker.bootstrap)) as harness:
        yield harness


async def test_json_and_form_reports_become_events(api: ApiHarness, broker: EmbeddedBroker) -> None:
    kari = await api.user("kari", "operator", unit="agder-froland")
    r = await api.client.post("/api/v1/reports", json=REPORT, headers=kari)
    assert r.status_code == 202, r.text
    first = r.json()["id"]
    uuid.UUID(first)  # generated
    # A form, for another unit (anyone may report), with the caller's own id for retries.
    form = {"category": "brann", "place": "Verksted", "what": "Røyk fra verkstedet",
            "unit": "ringerike", "id": "rapport-42"}  # fmt: skip
    r = await api.client.post("/api/v1/reports", data=form, headers=kari)
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == ["rapport-42"]

    got = {v["id"]: (k, v) for k, v in await read_topic(broker.bootstrap, topics.EVENTS, count=2)}
    key, event = got[first]
    assert key == b"agder-froland"
    assert event["type"] == "no.kriminalomsorgen.report.incident"
    assert event["source"] == "/users/kari" and event["unit"] == "agder-froland"
    assert event["data"] == {**REPORT, "reporter": "kari"}
    key, event = got["rapport-42"]
    assert key == b"ringerike" and event["data"]["what"] == "Røyk fra verkstedet"


async def test_invalid_reports_name_the_field(api: ApiHarness, broker: EmbeddedBroker) -> None:
    kari = await api.user("kari", "operator", unit="agder-froland")
    kdi = await api.user("kdi", "kdi")
    cases = [
        (kari, {**REPORT, "what": ""}, "what"),
        (kari, {k: v for k, v in REPORT.items() if k != "place"}, "place"),
        (kari, {**REPORT, "severity": 9}, "severity"),
        (kari, {**REPORT, "unit": "atlantis"}, "unit"),
        (kari, {**REPORT, "mood": "bad"}, "mood"),
        (kdi, REPORT, "unit"),  # no unit of their own: must name one
    ]
    for headers, body, field in cases:
        r = await api.client.post("/api/v1/reports", json=body, headers=headers)
        assert r.status_code == 422, (field, r.text)
        assert field in {e["field"] for e in r.json()["errors"]}, (field, r.json())
    ok = await api.client.post("/api/v1/reports", json={**REPORT, "unit": "oslo"}, headers=kdi)
    assert ok.status_code == 202
    got = await read_topic(broker.bootstrap, topics.EVENTS, count=1)
    assert [v["unit"] for _, v in got] == ["oslo"]  # none of the invalid ones
    assert (await api.client.post("/api/v1/reports", json=REPORT)).status_code == 401
    big = {**REPORT, "what": "x" * 1_100_000}
    r = await api.client.post("/api/v1/reports", data=big, headers=kari)
    assert r.status_code == 413 and "1048576 bytes" in r.json()["errors"][0]["message"]
    r = await api.client.post(
        "/api/v1/reports", content=b"<report/>", headers={**kari, "content-type": "text/xml"}
    )
    assert r.status_code == 415
