"""GET /api/v1/events/dlq: dead letters with their reasons, behind auth and scope."""

from __future__ import annotations

import json
import uuid

from crisis.settings import Settings
from streams.pipeline import Record
from streams.worker import build_pipeline
from tests.conftest import ApiHarness


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
