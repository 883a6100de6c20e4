"""GET /api/v1/events/dlq: dead letters with their reasons, behind auth and scope."""

from __future__ import annotations

import json
import uuid

from crisis.kafka import topics
from crisis.kafka.outbox import Record as OutboxRecord
from crisis.kafka.producer import dead_letter_record, envelope_record, reduced_dead_letter
from crisis.settings import Settings
from streams.pipeline import Record, dlq_rows
from streams.worker import build_pipeline
from tests.conftest import ApiHarness
from tests.ingest_support import envelope


def _event(unit: str, type_: str = "no.kriminalomsorgen.sensor.door_forced") -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": f"/units/{unit}/sensors/x",
            "type": type_,
            "unit": unit,
            "data": {"door": "D1", "colour": "red"},  # unknown field: refused
        }
    ).encode()


async def test_dead_letters_listed_with_reasons_in_scope(
    api: ApiHarness, settings: Settings
) -> None:
    pipeline, _ = build_pipeline(settings, engine=api.app.state.engine)
    await pipeline.process(
        [Record(_event("agder-froland")), Record(_event("ringerike")), Record(b"\xff garbage")]
    )
    assert (await api.client.get("/api/v1/events/dlq")).status_code == 401

    admin = await api.user("root", "admin")
    body = (await api.client.get("/api/v1/events/dlq", headers=admin)).json()
    assert len(body) == 3
    assert body[0]["reason"].startswith("unreadable event") and body[0]["unit"] is None
    froland = next(d for d in body if d["unit"] == "agder-froland")
    assert "data.colour" in froland["reason"]
    assert froland["errors"][0]["field"] == "data.colour"
    assert json.loads(froland["raw"])["unit"] == "agder-froland"
    assert {d["origin"] for d in body} == {"worker"}

    operator = await api.user("kari", "operator", unit="agder-froland")
    mine = (await api.client.get("/api/v1/events/dlq", headers=operator)).json()
    assert [d["unit"] for d in mine] == ["agder-froland"]

    # Operational data: roles without operational duty read no dead letters (issue 15).
    for name, role in (
        ("kom", "communication"),
        ("jd", "ministry"),
        ("ovl", "exercise-controller"),
    ):
        headers = await api.user(name, role)
        assert (await api.client.get("/api/v1/events/dlq", headers=headers)).status_code == 403

    filtered = await api.client.get(
        "/api/v1/events/dlq", params={"unit": "ringerike", "limit": 5}, headers=admin
    )
    assert [d["unit"] for d in filtered.json()] == ["ringerike"]


async def test_every_path_is_listed_with_its_origin_once(
    api: ApiHarness, settings: Settings
) -> None:
    """The worker's own dead letters, a bridge's reject and a producer's reduced record all end
    in the one list, each with its origin; what crisis.events.dlq delivers twice is one row."""
    pipeline, _ = build_pipeline(settings, engine=api.app.state.engine)
    own = await pipeline.process([Record(_event("agder-froland"))])
    bridge = dead_letter_record(
        {"mqtt_topic": "kriminalomsorgen/ringerike/teleport/x", "payload": "{}"},
        reason="unknown sensor kind 'teleport'",
        errors=[{"index": None, "field": "topic", "message": "unknown sensor kind"}],
        origin="bridge:mqtt",
        unit="ringerike",
    )
    env = envelope(7)
    big = envelope_record(env)
    big = OutboxRecord(big.topic, big.key, big.value + b" " * 2_000_000, big.timestamp_ms)
    reduced = reduced_dead_letter(big, reason="too large for Kafka", origin="ingest")
    delivered = [
        Record(own.dead[0]["value"], topic=topics.EVENTS_DLQ, partition=0, offset=0),  # a copy
        Record(bridge.value, topic=topics.EVENTS_DLQ, partition=0, offset=1),
        Record(reduced.value, topic=topics.EVENTS_DLQ, partition=0, offset=2),
        Record(bridge.value, topic=topics.EVENTS_DLQ, partition=0, offset=3),  # sent again
    ]
    for _ in range(2):  # and the whole batch redelivered
        await pipeline.store_dead_letters(dlq_rows(delivered))

    admin = await api.user("root", "admin")
    body = (await api.client.get("/api/v1/events/dlq", headers=admin)).json()
    assert [d["origin"] for d in body] == ["ingest", "bridge:mqtt", "worker"]
    ingest, mqtt, worker = body
    assert "too large" in ingest["reason"] and ingest["unit"] == "agder-froland"
    assert (ingest["source"], ingest["event_id"]) == env.key
    assert len(ingest["raw"]) <= 2048 and ingest["raw"].startswith('{"specversion"')
    assert mqtt["unit"] == "ringerike" and mqtt["errors"][0]["field"] == "topic"
    assert json.loads(mqtt["raw"])["mqtt_topic"].endswith("teleport/x")
    assert "data.colour" in worker["reason"]

    only = await api.client.get(
        "/api/v1/events/dlq", params={"origin": "bridge:mqtt"}, headers=admin
    )
    assert [d["origin"] for d in only.json()] == ["bridge:mqtt"]
    # Need-to-know as before: the bridge's reject names its unit, so that unit's staff see it.
    operator = await api.user("kari", "operator", unit="ringerike")
    mine = (await api.client.get("/api/v1/events/dlq", headers=operator)).json()
    assert [d["origin"] for d in mine] == ["bridge:mqtt"]
