"""CAP warnings through the batch pipeline on a real database (SQLite, and PostgreSQL when
set): an Update's correction moves the incident row as the replay of its log does, and the
worker's clock ends a warning whose ``expires`` has passed."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from crisis import log
from crisis.clock import utcnow
from crisis.domain.organisation import load_organisation
from crisis.log.models import Incident
from crisis.log.verify import verify_log
from crisis.review.replay import state_at
from crisis.settings import Settings
from crisis.sources import cap
from crisis.store.db import make_sessionmaker
from streams.pipeline import Pipeline, Record
from streams.worker import build_pipeline
from tests.met_alerts import met_alert, reference

SENT = "2026-11-22T07:30:15+00:00"


async def _post(pipeline: Pipeline, xml: bytes) -> None:
    """What POST /api/v1/cap hands the topic, straight into the pipeline."""
    org = load_organisation(None)
    alert = cap.parse_alert(xml)
    events = cap.warning_events(alert, cap.affected_units(alert, org.units.values()))
    await pipeline.process([Record(value=json.dumps(e).encode()) for e in events])


async def _incident(engine: AsyncEngine) -> Incident:
    async with make_sessionmaker(engine)() as session:
        (incident,) = (await session.exec(select(Incident))).all()
        return incident


async def test_update_moves_the_row_as_the_replay_does_and_expiry_closes(
    engine: AsyncEngine, tmp_path: Any, database_url: str
) -> None:
    settings = Settings(data_dir=tmp_path / "var", database_url=database_url, secret_key="x")
    pipeline, _ = build_pipeline(settings, engine=engine)
    await _post(pipeline, met_alert("met-1"))
    red = met_alert(
        "met-2",
        msg_type="Update",
        sent="2026-11-22T11:00:00+00:00",
        references=[reference("met-1", SENT)],
        level="red",
        area_desc="Agder",
        expires="2026-11-22T12:00:00+00:00",  # in the past: the next tick ends it
    )
    await _post(pipeline, red)
    incident = await _incident(engine)
    assert (incident.severity, incident.area) == (4, "Agder")
    assert "rødt nivå" in incident.title and incident.status == "open"
    async with make_sessionmaker(engine)() as session:
        entries = await log.timeline(session, incident.id)
    replayed = state_at(incident=incident, entries=entries, at=utcnow())
    assert replayed.severity == 4 and replayed.status == "open"

    assert await pipeline.tick(time.time()) == []  # ends, opens nothing
    incident = await _incident(engine)
    assert incident.status == "closed" and incident.closed_at is not None
    async with make_sessionmaker(engine)() as session:
        entries = await log.timeline(session, incident.id)
        assert (await verify_log(session)).ok
    assert "expires" in entries[-1].data["reason"]
    assert state_at(incident=incident, entries=entries, at=utcnow()).status == "closed"
