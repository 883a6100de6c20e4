"""A sensor type added by one catalogue entry reaches an incident end to end.

The type exists only in this test: one :class:`EventKind` is registered, then an event of it is
posted to the HTTP ingest and another arrives from an MQTT sensor under the entry's topic alias,
both through the real producer and the embedded broker. Read back from the events topic, the
pipeline opens incidents of the declared type, severity and title, and the playbook of that
incident type reacts with its tasks. Nothing else in the code was told about the type.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from crisis import log
from crisis.domain.organisation import load_organisation
from crisis.kafka import topics
from crisis.kafka.broker import EmbeddedBroker, ensure_topics
from crisis.kafka.producer import EventProducer
from crisis.log.models import Incident
from crisis.settings import Settings
from crisis.sources import catalogue
from crisis.sources.catalogue import EventData, EventKind
from crisis.store.db import make_sessionmaker
from playbooks import engine as playbook_engine
from playbooks.loader import load_library
from streams.bridges import mqtt
from streams.pipeline import Record
from streams.worker import build_pipeline
from tests.ingest_support import ingest_api, ingest_settings, partitions, read_topic

pytestmark = pytest.mark.broker


class WaterLeakData(EventData):
    zone: str = Field(min_length=1, max_length=80)
    litres_per_minute: float | None = Field(default=None, ge=0)


WATER_LEAK = EventKind(
    "sensor.water_leak",
    WaterLeakData,
    "infrastructure_outage",
    2,
    "Vannlekkasje ({area}, {unit})",
    entry="Vannlekkasje ({area})",
    aliases=("vann",),
)


@pytest.fixture
def water_leak() -> Iterator[EventKind]:
    """The one catalogue entry the new sensor type needs, removed again afterwards."""
    yield catalogue.register(WATER_LEAK)
    catalogue.unregister(WATER_LEAK.name)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as running:
        yield running


async def test_a_sensor_type_added_by_one_entry_opens_its_incident(
    water_leak: EventKind,
    broker: EmbeddedBroker,
    engine: AsyncEngine,
    database_url: str,
    tmp_path: Path,
) -> None:
    org = load_organisation()
    await ensure_topics(broker.bootstrap, partitions())
    posted = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/units/ringerike/sensors/wl-1",
        "type": water_leak.type,
        "time": "2026-11-22T02:41:07Z",
        "unit": "ringerike",
        "data": {"zone": "Kjeller", "litres_per_minute": 12.5},
    }
    settings = ingest_settings(tmp_path, broker.bootstrap, database_url=database_url)
    async with ingest_api(settings) as api:
        headers = await api.user("op", "operator", unit="ringerike")
        answer = await api.client.post("/api/v1/events", json=posted, headers=headers)
        assert answer.status_code == 202, answer.text

    producer = EventProducer(
        bootstrap=broker.bootstrap,
        outbox_path=tmp_path / "outbox-bridge-mqtt.db",
        topic_partitions=partitions(),
        send_timeout=2.0,
    )
    await producer.start()
    try:
        assert await mqtt.handle(
            producer,
            "kriminalomsorgen/ringerike/vann/wl-2",
            json.dumps({"zone": "Vaskeri"}).encode(),
            known_units=org.units.keys(),
            received_at=datetime(2026, 11, 22, 2, 42, tzinfo=UTC),
        )
    finally:
        await producer.stop()

    sent = [value for _, value in await read_topic(broker.bootstrap, topics.EVENTS, count=2)]
    assert sorted(v["type"] for v in sent) == [water_leak.type] * 2
    pipeline_settings = Settings(
        data_dir=tmp_path / "var", database_url=database_url, secret_key="x"
    )
    pipeline, _ = build_pipeline(pipeline_settings, engine=engine)
    result = await pipeline.process(
        [Record(json.dumps(v).encode(), None, topics.EVENTS, 0, i) for i, v in enumerate(sent)]
    )
    assert result.new == 2 and not result.dead
    assert result.opened == ["infrastructure_outage"] * 2

    name = org.unit("ringerike").name
    async with make_sessionmaker(engine)() as session:
        incidents = (await session.exec(select(Incident).order_by(col(Incident.title)))).all()
        assert [(i.type, i.severity, i.unit, i.title) for i in incidents] == [
            ("infrastructure_outage", 2, "ringerike", f"Vannlekkasje (Kjeller, {name})"),
            ("infrastructure_outage", 2, "ringerike", f"Vannlekkasje (Vaskeri, {name})"),
        ]
        opening = (await log.timeline(session, incidents[0].id))[0]
        assert opening.data["event_type"] == water_leak.name

    # The incident type's playbook takes it from there, as for any shipped sensor type.
    library = load_library(org=org)
    async with make_sessionmaker(engine)() as session:
        written = await playbook_engine.react(session, entry=opening, org=org, library=library)
        await session.commit()
    playbook = library.for_type("infrastructure_outage")
    assert playbook is not None
    cards = {card.id for card in playbook.cards}
    assert cards and cards <= {e.data.get("rule") for e in written if e.kind == "task"}
