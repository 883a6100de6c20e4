"""Hostile input through the public API (issue 15): refused with a 4xx, nothing kept, no 500.

Deep JSON, huge bodies, many keys, long strings and ids beyond a 64-bit integer are answered
with an error in the one shape ``{"errors": [{"index", "field", "message"}]}`` naming the
limit; the log is unchanged and its timeline still answers.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import func, select

from crisis.kafka import topics
from crisis.kafka.broker import EmbeddedBroker
from crisis.log.models import LogEntry
from crisis.sources import jsonlimits
from tests.conftest import ApiHarness
from tests.ingest_support import event, ingest_api, ingest_settings, read_topic
from web.deps import MAX_ID

INCIDENT = {
    "type": "personal_alarm",
    "title": "Personalarm utløst, avdeling A",
    "unit": "agder-froland",
    "severity": 4,
}
JSON = {"content-type": "application/json"}
HUGE_ID = "99999999999999999999"


def _nested(depth: int, leaf: str = "1") -> str:
    """A JSON object nested ``depth`` levels deep, as text (json.dumps would recurse)."""
    return '{"a":' * depth + leaf + "}" * depth


async def _incident(api: ApiHarness, headers: dict[str, str]) -> str:
    r = await api.client.post("/api/v1/incidents", json=INCIDENT, headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _count(api: ApiHarness) -> int:
    async with api.app.state.sessions() as session:
        return int((await session.exec(select(func.count()).select_from(LogEntry))).one())


def _messages(r: Any) -> str:
    body = r.json()
    assert set(body) >= {"errors"}, body
    for e in body["errors"]:
        assert set(e) >= {"index", "field", "message"}, e
    return " ".join(e["message"] for e in body["errors"])


async def _entry(api: ApiHarness, headers: dict[str, str], incident: str, body: str) -> Any:
    return await api.client.post(
        f"/api/v1/incidents/{incident}/entries", content=body, headers={**headers, **JSON}
    )


async def test_deep_entry_is_refused_and_the_timeline_still_answers(api: ApiHarness) -> None:
    headers = await api.user("op", "operator", unit="agder-froland")
    incident = await _incident(api, headers)
    before = await _count(api)
    for depth in (260, 2_000, 10_000):
        r = await _entry(
            api, headers, incident, '{"kind":"observation","x":' + _nested(depth) + "}"
        )
        assert r.status_code == 422, (depth, r.text)
        assert f"{jsonlimits.MAX_DEPTH}" in _messages(r)
    # As deep as the limit allows (the body's object is one level): kept.
    r = await _entry(api, headers, incident, '{"kind":"observation","x":' + _nested(31) + "}")
    assert r.status_code == 201, r.text
    assert await _count(api) == before + 1
    r = await api.client.get(f"/api/v1/incidents/{incident}/timeline", headers=headers)
    assert r.status_code == 200 and len(r.json()) == before + 1


async def test_entry_data_key_count_and_string_length_are_limited(api: ApiHarness) -> None:
    headers = await api.user("op", "operator", unit="agder-froland")
    incident = await _incident(api, headers)
    before = await _count(api)
    many = {"kind": "observation", "x": {f"k{i}": i for i in range(jsonlimits.MAX_MEMBERS + 1)}}
    r = await _entry(api, headers, incident, json.dumps(many))
    assert r.status_code == 422 and f"{jsonlimits.MAX_MEMBERS}" in _messages(r)
    assert r.json()["errors"][0]["field"] == "x"
    long = {"kind": "observation", "x": ["y" * (jsonlimits.MAX_STRING + 1)]}
    r = await _entry(api, headers, incident, json.dumps(long))
    assert r.status_code == 422 and f"{jsonlimits.MAX_STRING}" in _messages(r)
    long_key = {"kind": "observation", "k" * (jsonlimits.MAX_STRING + 1): 1}
    r = await _entry(api, headers, incident, json.dumps(long_key))
    assert r.status_code == 422
    deep_impact = {**INCIDENT, "impact": json.loads(_nested(jsonlimits.MAX_DEPTH))}
    r = await api.client.post("/api/v1/incidents", json=deep_impact, headers=headers)
    assert r.status_code == 422 and f"{jsonlimits.MAX_DEPTH}" in _messages(r)
    assert await _count(api) == before
    r = await api.client.get(f"/api/v1/incidents/{incident}/timeline", headers=headers)
    assert r.status_code == 200


async def test_a_big_body_is_refused_with_413_and_nothing_written(api: ApiHarness) -> None:
    headers = await api.user("op", "operator", unit="agder-froland")
    incident = await _incident(api, headers)
    before = await _count(api)
    limit = api.app.state.settings.api_max_body_bytes
    assert limit == 256 * 1024
    blob = json.dumps({"kind": "observation", "blob": "x" * 2_000_000})
    r = await _entry(api, headers, incident, blob)
    assert r.status_code == 413 and f"{limit} bytes" in _messages(r)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        data = blob.encode()
        for i in range(0, len(data), 64 * 1024):
            yield data[i : i + 64 * 1024]

    r = await api.client.post(
        f"/api/v1/incidents/{incident}/entries", content=chunks(), headers={**headers, **JSON}
    )
    assert r.status_code == 413 and f"{limit} bytes" in _messages(r)
    assert await _count(api) == before
    r = await api.client.get(f"/api/v1/incidents/{incident}/timeline", headers=headers)
    assert r.status_code == 200 and len(r.json()) == before


async def test_ids_beyond_the_integer_columns_are_422_not_500(api: ApiHarness) -> None:
    admin = await api.user("admin", "admin")
    op = await api.user("op", "operator", unit="agder-froland")
    incident = await _incident(api, op)
    for big in (HUGE_ID, str(2**63), str(MAX_ID + 1)):  # SQLite's reach; PostgreSQL's
        for method, path, body in (
            ("GET", f"/api/v1/sitreps/{big}", None),
            ("POST", f"/api/v1/sitreps/{big}/versions", {"situation": "x"}),
            ("POST", f"/api/v1/sitreps/{big}/approve", {"version": 1}),
            ("POST", f"/api/v1/notifications/messages/{big}/correct", {"facts": {}}),
            ("GET", f"/api/v1/events/dlq?before={big}", None),
            ("GET", f"/api/v1/audit/access?before={big}", None),
            ("POST", f"/api/v1/incidents/{incident}/entries", {"kind": "correction"}),
        ):
            if path.endswith("/entries"):
                body = {"kind": "correction", "text": "x", "corrects": int(big)}
            r = await api.client.request(method, path, json=body, headers=admin)
            assert r.status_code == 422, (path, r.status_code, r.text)
            _messages(r)
    top = MAX_ID
    r = await api.client.get(f"/api/v1/sitreps/{top}", headers=admin)
    assert r.status_code == 404, r.text
    r = await api.client.get(f"/api/v1/events/dlq?before={top}", headers=admin)
    assert r.status_code == 200, r.text


# --- ingest (a real embedded broker) ----------------------------------------------------------


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as running:
        yield running


@pytest.mark.broker
async def test_deep_json_on_ingest_is_refused_and_nothing_accepted(
    tmp_path: Path, broker: EmbeddedBroker
) -> None:
    async with ingest_api(ingest_settings(tmp_path, broker.bootstrap)) as api:
        headers = {**(await api.user("kdi", "kdi")), **JSON}
        for path in ("/api/v1/events", "/api/v1/reports"):
            for depth in (2_000, 100_000):
                r = await api.client.post(path, content=_nested(depth), headers=headers)
                assert r.status_code in (400, 422), (path, depth, r.text)
                assert f"{jsonlimits.MAX_DEPTH}" in _messages(r)
        deep = json.dumps(event(1))[:-1] + ',"extra":' + _nested(40) + "}"
        r = await api.client.post("/api/v1/events", content=deep, headers=headers)
        assert r.status_code == 422 and f"{jsonlimits.MAX_DEPTH}" in _messages(r)
        marker = event(2)
        r = await api.client.post("/api/v1/events", json=marker, headers=headers)
        assert r.status_code == 202, r.text
        got = await read_topic(broker.bootstrap, topics.EVENTS, count=2, within=5.0)
        assert [v["id"] for _, v in got] == [marker["id"]]
