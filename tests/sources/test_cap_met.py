"""MET Norway's CAP profile end to end: Alert → Update to red → AllClear, geocode-only alerts
placed by the units' county and municipality numbers, and Updates that drop a unit.

The pure part parses alerts built as metalerts 2.0 writes them; the rest posts them to the
real app (its producer on the embedded broker), feeds what reached the topic to the real
batch pipeline on the app's database, and reads the crisis log.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from crisis.domain.organisation import load_organisation
from crisis.kafka import topics
from crisis.kafka.broker import EmbeddedBroker
from crisis.log.append import append
from crisis.log.models import Incident, LogEntry
from crisis.log.verify import verify_log
from crisis.sources import cap
from crisis.sources.events import validate_event
from crisis.store.db import make_engine, make_sessionmaker, migrate
from streams.pipeline import Pipeline, Record
from streams.worker import build_pipeline
from tests.conftest import ApiHarness
from tests.ingest_support import ingest_api, ingest_settings, read_topic
from tests.met_alerts import met_alert, reference

CAP_HEADERS = {"content-type": "application/cap+xml"}
ALERT_ID = "2.49.0.1.578.0.20261122073015.0481"
SENT = "2026-11-22T07:30:15+00:00"


@pytest.fixture(scope="module")
def org() -> Any:
    return load_organisation(None)


# --- pure: the profile, geocodes ------------------------------------------------------------


def test_met_alert_parses_with_both_languages_response_types_and_geocodes(org: Any) -> None:
    alert = cap.parse_alert(met_alert(ALERT_ID, level="orange"))
    primary, english = cap.language_pair(alert)
    assert primary is not None and english is not None and english.language == "en-GB"
    assert primary.response_types == ("Monitor",)
    assert primary.areas[0].geocodes == (("EMMA_ID", "NO013"),)
    # A geocode beside a polygon only labels it: the polygon places the warning.
    assert cap.affected_units(alert, org.units.values()) == {"agder-froland": "Indre Agder"}
    assert cap.unresolved_geocodes(alert) == []
    (raw,) = cap.warning_events(alert, cap.affected_units(alert, org.units.values()))
    data = validate_event(raw, known_units=set(org.units)).data
    assert data["response_types"] == ["Monitor"] and data["awareness_level"] == "3; orange; Severe"

    clear = cap.parse_alert(
        met_alert("x-2", msg_type="Update", references=[reference(ALERT_ID, SENT)], **_clear())
    )
    assert cap.response_types(clear) == ["AllClear"]


def _clear() -> dict[str, Any]:
    return {"response_type": "AllClear", "level": "yellow"}


def test_geocodes_reach_the_units_of_a_county_or_municipality(org: Any) -> None:
    def reached(*codes: tuple[str, str]) -> set[str]:
        alert = cap.parse_alert(met_alert("g-1", polygon=None, geocodes=codes))
        return set(cap.affected_units(alert, org.units.values()))

    assert reached(("county", "46")) == {"bergen", "bjorgvin"}  # Vestland
    assert reached(("municipality", "4214")) == {"agder-froland"}  # Froland
    assert reached(("kommunenummer", "301")) == {"oslo", "oslo-friomsorg"}  # zero-padded: 0301
    assert reached(("fylke", "03"), ("municipality", "5001")) == {
        "oslo",
        "oslo-friomsorg",
        "trondheim",
        "trondelag-friomsorg",
    }
    assert reached(("county", "12")) == set()  # no county 12 since 2020: no unit
    only_emma = cap.parse_alert(met_alert("g-2", polygon=None, geocodes=[("EMMA_ID", "NO013")]))
    assert cap.affected_units(only_emma, org.units.values()) == {}
    (warning,) = cap.unresolved_geocodes(only_emma)  # the English block repeats it: named once
    assert warning["field"] == "info[0].area[0].geocode[0]"
    assert "EMMA_ID=NO013" in warning["message"] and "not resolved" in warning["message"]


def test_every_unit_has_county_and_municipality_numbers(org: Any) -> None:
    for unit in org.units.values():
        assert unit.county and unit.municipality, unit.id
        assert unit.municipality.startswith(unit.county), unit.id
    assert (org.unit("bergen").county, org.unit("bergen").municipality) == ("46", "4601")
    assert org.unit("ila").municipality == "3201"  # Bærum, Akershus (2024)


# --- the real app and the real pipeline ----------------------------------------------------


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as running:
        yield running


class Flow:
    """Posts alerts to the app and runs what reached the events topic through the pipeline."""

    def __init__(self, api: ApiHarness, bootstrap: str, pipeline: Pipeline, engine: Any) -> None:
        self.api, self.bootstrap, self.pipeline, self.engine = api, bootstrap, pipeline, engine
        self.seen: set[str] = set()
        self.headers: dict[str, str] = {}

    async def post(self, body: bytes) -> dict[str, Any]:
        r = await self.api.client.post(
            "/api/v1/cap", content=body, headers={**self.headers, **CAP_HEADERS}
        )
        assert r.status_code == 202, r.text
        answer: dict[str, Any] = r.json()
        count = len(answer["accepted"])
        if count:  # read by partition: the new records are the ones not seen before
            got = await read_topic(self.bootstrap, topics.EVENTS, count=len(self.seen) + count)
            fresh = [v for _, v in got if v["id"] not in self.seen]
            assert sorted(v["id"] for v in fresh) == sorted(answer["accepted"])
            self.seen.update(v["id"] for v in fresh)
            await self.pipeline.process(
                [Record(value=json.dumps(v).encode(), topic=topics.EVENTS) for v in fresh]
            )
        return answer

    async def incidents(self, unit: str) -> list[Incident]:
        async with make_sessionmaker(self.engine)() as session:
            stmt = select(Incident).where(Incident.unit == unit).order_by(col(Incident.opened_at))
            return list((await session.exec(stmt)).all())

    async def entries(self, incident_id: str) -> list[LogEntry]:
        async with make_sessionmaker(self.engine)() as session:
            stmt = select(LogEntry).where(LogEntry.incident_id == incident_id)
            return list((await session.exec(stmt.order_by(col(LogEntry.seq)))).all())


@pytest.fixture
async def flow(tmp_path: Path, broker: EmbeddedBroker) -> AsyncIterator[Flow]:
    settings = ingest_settings(tmp_path, broker.bootstrap)
    engine: AsyncEngine = make_engine(settings.effective_database_url)
    await migrate(engine)
    pipeline, _ = build_pipeline(settings, engine=engine)
    try:
        async with ingest_api(settings) as api:
            running = Flow(api, broker.bootstrap, pipeline, engine)
            running.headers = await api.user("kdi", "kdi")
            yield running
    finally:
        await engine.dispose()


@pytest.mark.broker
async def test_met_alert_update_to_red_then_all_clear_and_a_geocode_only_alert(
    flow: Flow,
) -> None:
    first = await flow.post(met_alert(ALERT_ID))
    assert first["units"] == ["agder-froland"]
    (incident,) = await flow.incidents("agder-froland")
    assert incident.severity == 2 and "gult nivå" in incident.title

    red_id, red_sent = "2.49.0.1.578.0.20261122110000.0502", "2026-11-22T11:00:00+00:00"
    await flow.post(
        met_alert(
            red_id,
            msg_type="Update",
            sent=red_sent,
            references=[reference(ALERT_ID, SENT)],
            level="red",
        )
    )
    (incident,) = await flow.incidents("agder-froland")  # the same incident, raised
    assert incident.severity == 4 and "rødt nivå" in incident.title
    assert incident.status == "open"
    entries = await flow.entries(incident.id)
    (correction,) = [e for e in entries if e.kind == "correction"]
    assert correction.corrects == 1 and correction.data["severity"] == 4
    assert correction.data["previous"]["severity"] == 2
    assert correction.data["reason"] == f"CAP Update {red_id}"
    assert correction.data["awareness_level"] == "4; red; Extreme"

    clear_id = "2.49.0.1.578.0.20261122180000.0517"
    await flow.post(
        met_alert(
            clear_id,
            msg_type="Update",
            sent="2026-11-22T18:00:00+00:00",
            references=[reference(red_id, red_sent)],
            response_type="AllClear",
        )
    )
    (incident,) = await flow.incidents("agder-froland")
    assert incident.status == "closed" and incident.closed_at is not None
    closing = (await flow.entries(incident.id))[-1]
    assert closing.kind == "status_change" and "AllClear" in closing.data["reason"]

    # Geocode-only: Vestland's county number reaches both Bergen prisons, nothing else.
    vest = await flow.post(
        met_alert("vest-1", polygon=None, geocodes=[("county", "46")], area_desc="Vestland")
    )
    assert sorted(vest["units"]) == ["bergen", "bjorgvin"] and "warnings" not in vest
    for unit in ("bergen", "bjorgvin"):
        (opened,) = await flow.incidents(unit)
        assert opened.type == "extreme_weather" and opened.area == "Vestland"

    # Only an EMMA_ID: accepted with no unit, and the answer says why.
    emma = await flow.post(met_alert("emma-1", polygon=None, geocodes=[("EMMA_ID", "NO013")]))
    assert emma["accepted"] == [] and emma["units"] == []
    assert "EMMA_ID=NO013" in emma["warnings"][0]["message"]
    async with make_sessionmaker(flow.engine)() as session:
        assert (await verify_log(session)).ok


@pytest.mark.broker
async def test_update_dropping_a_unit_closes_its_incident_and_never_reopens_one(
    flow: Flow,
) -> None:
    await flow.post(
        met_alert("vest-1", polygon=None, geocodes=[("county", "46")], area_desc="Vestland")
    )
    bergen, bjorgvin = (await flow.incidents("bergen"))[0], (await flow.incidents("bjorgvin"))[0]
    # Bergen's incident is closed by a person; then MET moves the warning away from both.
    async with make_sessionmaker(flow.engine)() as session:
        await append(
            session,
            incident_id=bergen.id,
            kind="status_change",
            actor="user:kari",
            data={"status": "closed", "reason": "over her", "final_situation": "normal drift"},
        )
        await session.commit()
    elsewhere = "59.0,10.0 59.0,10.2 59.2,10.2 59.2,10.0 59.0,10.0"  # no unit inside
    answer = await flow.post(
        met_alert(
            "vest-2",
            msg_type="Update",
            sent="2026-11-22T12:00:00+00:00",
            references=[reference("vest-1", SENT)],
            polygon=elsewhere,
            area_desc="Hordaland sør",
        )
    )
    assert sorted(answer["units"]) == ["bergen", "bjorgvin"]  # both with in_area false
    assert len(await flow.incidents("bergen")) == 1  # closed stays closed, nothing new
    (still,) = await flow.incidents("bjorgvin")
    assert still.id == bjorgvin.id and still.status == "closed"
    last = (await flow.entries(still.id))[-1]
    assert last.kind == "status_change" and "ikke lenger i varselområdet" in last.data["reason"]
