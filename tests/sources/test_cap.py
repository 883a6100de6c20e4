"""CAP 1.2: the standard's rules, MET Norway's profile, area matching, and POST /api/v1/cap."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from crisis.domain.organisation import load_organisation
from crisis.kafka import topics
from crisis.kafka.broker import EmbeddedBroker
from crisis.log.evidence import store_raw_event
from crisis.sources import cap
from crisis.sources.events import validate_event
from tests.conftest import ApiHarness
from tests.ingest_support import ingest_api, ingest_settings, read_topic

DATA = Path(__file__).resolve().parents[1] / "data" / "cap"
ALERT = (DATA / "met_wind_froland.xml").read_bytes()
CANCEL = (DATA / "met_wind_froland_cancel.xml").read_bytes()
ALERT_ID = "2.49.0.1.578.0.20261122073015.0481"
CANCEL_ID = "2.49.0.1.578.0.20261122120511.0497"
AGDER = "57.95,7.0 57.95,8.3 58.4,9.3 58.9,9.2 58.9,7.0 57.95,7.0"
CAP_HEADERS = {"content-type": "application/cap+xml"}


def cap_xml(
    *,
    identifier: str = "test-1",
    status: str = "Actual",
    msg_type: str = "Alert",
    sent: str = "2026-11-22T08:00:00+01:00",
    references: str | None = None,
    area: str = f"<polygon>{AGDER}</polygon>",
    info: bool = True,
    extra: str = "",
    severity: str = "Severe",
) -> bytes:
    refs = f"<references>{references}</references>" if references else ""
    info_xml = (
        f"""<info><language>nb-NO</language><category>Met</category><event>Flom</event>
        <urgency>Expected</urgency><severity>{severity}</severity><certainty>Likely</certainty>
        <headline>Flom i Agder</headline>
        <parameter><valueName>awareness_level</valueName>
        <value>3; orange; Severe</value></parameter>
        <area><areaDesc>Agder</areaDesc>{area}</area></info>"""
        if info
        else ""
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>{identifier}</identifier>
<sender>varsel@nve.no</sender><sent>{sent}</sent><status>{status}</status>
<msgType>{msg_type}</msgType><scope>Public</scope>{refs}{extra}{info_xml}</alert>""".encode()


def fields(exc: pytest.ExceptionInfo[cap.CapError]) -> set[str]:
    return {e["field"] for e in exc.value.errors}


@pytest.fixture(scope="module")
def org() -> Any:
    return load_organisation(None)


# --- pure: parsing, rules, geometry ---------------------------------------------------------


def test_met_profile_norwegian_and_english_blocks(org: Any) -> None:
    alert = cap.parse_alert(ALERT)
    assert alert.identifier == ALERT_ID and alert.status == "Actual"
    assert alert.sent.utcoffset() is not None
    primary, english = cap.language_pair(alert)
    assert primary is not None and english is not None
    assert primary.language == "no" and english.language == "en-GB"
    assert primary.parameter("awareness_level") == "2; yellow; Moderate"
    assert cap.affected_units(alert, org.units.values()) == {"agder-froland": "Indre Agder"}
    (raw,) = cap.warning_events(alert, cap.affected_units(alert, org.units.values()))
    envelope = validate_event(raw, known_units=set(org.units))
    assert envelope.id == f"{ALERT_ID}/agder-froland" and envelope.unit == "agder-froland"
    data = envelope.data
    assert data["headline"].startswith("Kraftige vindkast, gult nivå")
    assert data["headline_en"].startswith("Strong wind gusts")
    assert data["description_en"].startswith("South-westerly")
    assert data["awareness_level"] == "2; yellow; Moderate"
    assert data["awareness_type"] == "1; wind"
    assert data["severity"] == "Moderate" and data["in_area"] is True
    assert data["onset"] == "2026-11-22T15:00:00Z"


def test_polygon_and_circle_matching(org: Any) -> None:
    wide = cap.parse_alert(cap_xml())
    assert set(cap.affected_units(wide, org.units.values())) == {
        "agder-froland",
        "agder-mandal",
        "agder-friomsorg",
    }
    # Kristiansand centre, 5 km: the probation office (58.146, 7.995) only.
    circle = cap.parse_alert(cap_xml(area="<circle>58.1467,7.9956 5</circle>"))
    assert set(cap.affected_units(circle, org.units.values())) == {"agder-friomsorg"}
    tiny = cap.parse_alert(cap_xml(area="<circle>58.1467,7.9956 0.05</circle>"))
    assert cap.affected_units(tiny, org.units.values()) == {}
    assert 0.07 < cap.haversine_km(58.1467, 7.9956, 58.146, 7.995) < 0.1  # ~85 m
    assert 300 < cap.haversine_km(59.9139, 10.7522, 60.3913, 5.3221) < 310  # Oslo–Bergen


@pytest.mark.parametrize(
    ("xml", "field", "message"),
    [
        (cap_xml(status="Real"), "status", "not one of Actual"),
        (cap_xml(msg_type="Notice"), "msgType", "not one of"),
        (cap_xml(sent="2026-11-22T08:00:00Z"), "sent", "'Z' is not allowed"),
        (cap_xml(msg_type="Update"), "references", "must name the alert"),
        (cap_xml(msg_type="Cancel", info=False), "references", "must name the alert"),
        (cap_xml(info=False), "info", "at least one info"),
        (cap_xml(identifier="a b"), "identifier", "must not contain spaces"),
        (cap_xml(severity="Huge"), "info[0].severity", "not one of Extreme"),
        (
            cap_xml(area="<polygon>58,7 59,7 59,8 58,8</polygon>"),
            "info[0].area[0].polygon[0]",
            "must be closed",
        ),
        (
            cap_xml(area="<polygon>58,7 59,7 58,7</polygon>"),
            "info[0].area[0].polygon[0]",
            "4 points",
        ),
        (cap_xml(area="<circle>58,7</circle>"), "info[0].area[0].circle[0]", "radius in km"),
        (cap_xml(area="<ceiling>100</ceiling>"), "info[0].area[0].ceiling", "altitude"),
        (cap_xml(extra="<colour>red</colour>"), "colour", "not a CAP 1.2 element"),
        (cap_xml(references="only-an-id", msg_type="Update"), "references[0]", "sender,identifier"),
    ],
)
def test_rule_violations_name_the_field(xml: bytes, field: str, message: str) -> None:
    with pytest.raises(cap.CapError) as exc:
        cap.parse_alert(xml)
    assert not exc.value.malformed
    hit = [e for e in exc.value.errors if e["field"] == field]
    assert hit, exc.value.errors
    assert message in hit[0]["message"]


def test_required_elements_and_hostile_xml() -> None:
    bare = b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><status>Actual</status></alert>'
    with pytest.raises(cap.CapError) as exc:
        cap.parse_alert(bare)
    assert {"identifier", "sender", "sent", "msgType", "scope"} <= fields(exc)
    with pytest.raises(cap.CapError) as exc:
        cap.parse_alert(b"<alert><identifier>x</identifier></alert>")
    assert fields(exc) == {"alert"}
    with pytest.raises(cap.CapError) as exc:
        cap.parse_alert(b"<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'>")
    assert exc.value.malformed
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE alert [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&x;</identifier></alert>'
    )
    with pytest.raises(cap.CapError) as exc:
        cap.parse_alert(xxe)
    assert exc.value.malformed and "DOCTYPE" in exc.value.errors[0]["message"]
    ok_extension = cap_xml(extra='<x:note xmlns:x="urn:example">fine</x:note>')
    assert cap.parse_alert(ok_extension).identifier == "test-1"


# --- HTTP: POST /api/v1/cap ------------------------------------------------------------------


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as running:
        yield running


@pytest.fixture
async def api(tmp_path: Path, broker: EmbeddedBroker) -> AsyncIterator[ApiHarness]:
    async with ingest_api(ingest_settings(tmp_path, broker.bootstrap)) as harness:
        yield harness


async def _post(api: ApiHarness, body: bytes, headers: dict[str, str], query: str = "") -> Any:
    return await api.client.post(
        f"/api/v1/cap{query}", content=body, headers={**headers, **CAP_HEADERS}
    )


@pytest.mark.broker
async def test_alert_for_one_unit_then_its_cancel(api: ApiHarness, broker: EmbeddedBroker) -> None:
    headers = await api.user("kdi", "kdi")
    r = await _post(api, ALERT, headers)
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == [f"{ALERT_ID}/agder-froland"]
    assert r.json()["units"] == ["agder-froland"]
    again = await _post(api, ALERT, headers)  # idempotent: the same deterministic id
    assert again.json()["accepted"] == r.json()["accepted"]

    cancel = await _post(api, CANCEL, {**headers, "content-type": "application/xml"})
    assert cancel.status_code == 202, cancel.text
    assert cancel.json()["accepted"] == [f"{CANCEL_ID}/agder-froland"]

    got = await read_topic(broker.bootstrap, topics.EVENTS, count=3)
    assert [k for k, _ in got] == [b"agder-froland"] * 3
    first, _, cancelled = (v for _, v in got)
    assert first["type"] == cap.WARNING_TYPE and first["data"]["msg_type"] == "Alert"
    assert first["data"]["awareness_level"] == "2; yellow; Moderate"
    assert cancelled["data"]["msg_type"] == "Cancel"
    assert cancelled["data"]["referenced_identifiers"] == [ALERT_ID]
    assert cancelled["data"]["references"] == [
        f"noreply@met.no,{ALERT_ID},2026-11-22T07:30:15+00:00"
    ]
    assert "exercise" not in first


@pytest.mark.broker
async def test_cancel_without_area_reaches_the_units_of_the_referenced_alert(
    api: ApiHarness, broker: EmbeddedBroker
) -> None:
    headers = await api.user("kdi", "kdi")
    async with api.app.state.sessions() as session:  # what the worker stored for the alert
        await store_raw_event(
            session,
            {
                "source": "/cap/varsel@nve.no",
                "id": "flom-1/agder-mandal",
                "unit": "agder-mandal",
                "type": cap.WARNING_TYPE,
            },
        )
        await session.commit()
    body = cap_xml(
        identifier="flom-1-cancel",
        msg_type="Cancel",
        info=False,
        references="varsel@nve.no,flom-1,2026-11-22T06:00:00+01:00",
    )
    r = await _post(api, body, headers)
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == ["flom-1-cancel/agder-mandal"]
    ((key, value),) = await read_topic(broker.bootstrap, topics.EVENTS, count=1)
    assert key == b"agder-mandal" and value["data"]["in_area"] is False
    assert value["data"]["referenced_identifiers"] == ["flom-1"]


@pytest.mark.broker
async def test_test_status_produces_nothing_and_exercise_needs_an_exercise(
    api: ApiHarness, broker: EmbeddedBroker
) -> None:
    headers = await api.user("kdi", "kdi")
    r = await _post(api, cap_xml(status="Test"), headers)
    assert r.status_code == 202 and r.json()["accepted"] == []
    assert "Test" in r.json()["note"] and len(r.json()["units"]) == 3

    r = await _post(api, cap_xml(status="Exercise"), headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "exercise"
    r = await _post(api, cap_xml(status="Actual"), headers, "?exercise=ovelse-flom")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "status"
    r = await _post(api, cap_xml(status="Exercise"), headers, "?exercise=ovelse-flom")
    assert r.status_code == 202 and len(r.json()["accepted"]) == 3

    got = await read_topic(broker.bootstrap, topics.EVENTS, count=3, within=10)
    assert len(got) == 3  # only the exercise alert's events; the Test one produced nothing
    assert {v["exercise"] for _, v in got} == {"ovelse-flom"}
    assert {v["unit"] for _, v in got} == {"agder-froland", "agder-mandal", "agder-friomsorg"}


@pytest.mark.broker
async def test_http_refusals(api: ApiHarness) -> None:
    headers = await api.user("kdi", "kdi")
    r = await _post(api, cap_xml(sent="2026-11-22T08:00:00Z"), headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "sent"
    r = await _post(api, b"<alert", headers)
    assert r.status_code == 400
    r = await api.client.post(
        "/api/v1/cap", content=ALERT, headers={**headers, "content-type": "application/json"}
    )
    assert r.status_code == 415
    far = cap_xml(area="<circle>70.0,25.0 1</circle>")
    r = await _post(api, far, headers)
    assert r.status_code == 202 and r.json()["accepted"] == [] and "no unit" in r.json()["note"]
    op = await api.user("op", "operator", unit="agder-froland")
    r = await _post(api, cap_xml(), op)  # covers units outside the operator's own
    assert r.status_code == 403
