"""The log's read and write API: auth, scope, entries, the principles as HTTP answers."""

from __future__ import annotations

from typing import Any

from tests.conftest import ApiHarness

INCIDENT = {
    "type": "personal_alarm",
    "title": "Personalarm utløst, avdeling A",
    "unit": "agder-froland",
    "severity": 4,
}


async def _open(api: ApiHarness, headers: dict[str, str], **over: Any) -> dict[str, Any]:
    response = await api.client.post(
        "/api/v1/incidents", json={**INCIDENT, **over}, headers=headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_healthz_needs_no_login(api: ApiHarness) -> None:
    response = await api.client.get("/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"


async def test_unauthenticated_requests_get_401(api: ApiHarness) -> None:
    for path in ("/api/v1/units", "/api/v1/incidents", "/api/v1/me"):
        response = await api.client.get(path)
        assert response.status_code == 401, path
    bad = await api.client.get("/api/v1/units", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401


async def test_units_as_the_contract_names_them(api: ApiHarness) -> None:
    headers = await api.user("kdi1", "kdi")
    units = (await api.client.get("/api/v1/units", headers=headers)).json()
    froland = next(u for u in units if u["id"] == "agder-froland")
    assert set(froland) == {"id", "name", "kind", "region", "lat", "lon", "county", "municipality"}
    assert froland["region"] == "sorvest" and froland["kind"] == "prison"
    assert (froland["county"], froland["municipality"]) == ("42", "4214")
    assert 58 < froland["lat"] < 59 and 8 < froland["lon"] < 9


async def test_open_incident_takes_the_accountable_role_from_the_organisation(
    api: ApiHarness,
) -> None:
    headers = await api.user("op", "operator", unit="agder-froland")
    incident = await _open(api, headers)
    assert incident["unit"] == "agder-froland"
    assert incident["accountable_role"] == "leader"
    assert incident["level"] == "unit" and incident["status"] == "open"
    assert incident["exercise"] is None
    timeline = (
        await api.client.get(f"/api/v1/incidents/{incident['id']}/timeline", headers=headers)
    ).json()
    assert [e["kind"] for e in timeline] == ["incident_opened"]
    assert timeline[0]["actor"] == "user:op" and len(timeline[0]["hash"]) == 64


async def test_scope_unit_staff_see_only_their_unit(api: ApiHarness) -> None:
    froland = await api.user("op-froland", "operator", unit="agder-froland")
    ringerike = await api.user("op-ringerike", "operator", unit="ringerike")
    incident = await _open(api, froland)
    assert (
        await api.client.get(f"/api/v1/incidents/{incident['id']}", headers=ringerike)
    ).status_code == 403
    entry = await api.client.post(
        f"/api/v1/incidents/{incident['id']}/entries",
        json={"kind": "observation", "text": "x"},
        headers=ringerike,
    )
    assert entry.status_code == 403
    listed = (await api.client.get("/api/v1/incidents", headers=ringerike)).json()
    assert listed == []
    other = await api.client.post("/api/v1/incidents", json={**INCIDENT}, headers=ringerike)
    assert other.status_code == 403
    region = await api.user("sorvest", "region", region="sorvest")
    assert [
        i["id"] for i in (await api.client.get("/api/v1/incidents", headers=region)).json()
    ] == [incident["id"]]


async def test_ministry_reads_but_cannot_write(api: ApiHarness) -> None:
    op = await api.user("op", "operator", unit="agder-froland")
    jd = await api.user("jd", "ministry")
    incident = await _open(api, op)
    # the ministry reads incidents escalated to it (need-to-know), not a unit's
    url = f"/api/v1/incidents/{incident['id']}"
    assert (await api.client.get(url, headers=jd)).status_code == 403
    for level in ("region", "kdi", "jd"):
        r = await api.client.post(
            f"{url}/escalate", json={"to": level, "reason": "alvorlig"}, headers=op
        )
        assert r.status_code == 201, r.text
    assert (await api.client.get(url, headers=jd)).status_code == 200
    response = await api.client.post(
        f"/api/v1/incidents/{incident['id']}/entries",
        json={"kind": "observation", "text": "x"},
        headers=jd,
    )
    assert response.status_code == 403


async def test_coercive_decision_without_legal_basis_is_422_and_writes_nothing(
    api: ApiHarness,
) -> None:
    headers = await api.user("leder", "operator", unit="agder-froland")
    incident = await _open(api, headers)
    url = f"/api/v1/incidents/{incident['id']}"
    before = (await api.client.get(f"{url}/timeline", headers=headers)).json()
    response = await api.client.post(
        f"{url}/entries",
        json={
            "kind": "decision",
            "text": "Innelåsing av avdeling A",
            "measure": "innelasing",
            "proportionality": "nødvendig",
            "alternatives": ["økt bemanning"],
        },
        headers=headers,
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["legal_basis"]
    assert (await api.client.get(f"{url}/timeline", headers=headers)).json() == before
    ok = await api.client.post(
        f"{url}/entries",
        json={
            "kind": "decision",
            "text": "Innelåsing av avdeling A",
            "measure": "innelasing",
            "legal_basis": "straffegjennomføringsloven § 37",
            "proportionality": "nødvendig",
            "alternatives": ["økt bemanning"],
        },
        headers=headers,
    )
    assert ok.status_code == 201, ok.text
    assert ok.json()["data"]["legal_basis"] == "straffegjennomføringsloven § 37"
    assert ok.json()["prev_hash"] == before[-1]["hash"]


async def test_unknown_entry_kind_is_422_naming_the_field(api: ApiHarness) -> None:
    headers = await api.user("op", "operator", unit="agder-froland")
    incident = await _open(api, headers)
    response = await api.client.post(
        f"/api/v1/incidents/{incident['id']}/entries",
        json={"kind": "incident_opened"},
        headers=headers,
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "kind"


async def test_escalation_skipping_a_level_is_409_naming_the_principle(api: ApiHarness) -> None:
    headers = await api.user("kdi", "kdi")
    incident = await _open(api, headers)
    url = f"/api/v1/incidents/{incident['id']}/escalate"
    skip = await api.client.post(url, json={"to": "kdi", "reason": "alvorlig"}, headers=headers)
    assert skip.status_code == 409
    assert skip.json()["errors"][0]["principle"] == "nærhetsprinsippet"
    step = await api.client.post(
        url,
        json={"to": "region", "reason": "trenger støtte", "criteria": ["kapasitet"]},
        headers=headers,
    )
    assert step.status_code == 201
    assert step.json()["data"] == {
        "from": "unit",
        "to": "region",
        "reason": "trenger støtte",
        "criteria": ["kapasitet"],
    }
    political = await _open(api, headers, security_political=True)
    direct = await api.client.post(
        f"/api/v1/incidents/{political['id']}/escalate",
        json={"to": "jd", "reason": "PST"},
        headers=headers,
    )
    assert direct.status_code == 201
    assert (await api.client.get(f"/api/v1/incidents/{political['id']}", headers=headers)).json()[
        "level"
    ] == "jd"


async def test_incident_filters(api: ApiHarness) -> None:
    headers = await api.user("kdi", "kdi")
    real = await _open(api, headers)
    drill = await _open(api, headers, exercise="ovelse-2026-11-brann", unit="ringerike")

    async def ids(query: str) -> list[str]:
        response = await api.client.get(f"/api/v1/incidents?{query}", headers=headers)
        return [i["id"] for i in response.json()]

    assert await ids("exercise=true") == [drill["id"]]
    assert await ids("exercise=false") == [real["id"]]
    assert await ids("unit=ringerike") == [drill["id"]]
    assert sorted(await ids("status=open")) == sorted([real["id"], drill["id"]])
    assert await ids("status=closed") == []


async def test_session_login_for_the_browser(api: ApiHarness) -> None:
    await api.user("kari", "operator", unit="agder-froland")
    bad = await api.client.post("/login", data={"username": "kari", "password": "wrong"})
    assert bad.status_code == 401
    ok = await api.client.post("/login", data={"username": "kari", "password": "correct horse"})
    assert ok.status_code == 303
    me = await api.client.get("/api/v1/me")
    assert me.status_code == 200 and me.json()["name"] == "kari"
    await api.client.post("/logout")
    assert (await api.client.get("/api/v1/me")).status_code == 401


async def test_metrics_in_prometheus_text(api: ApiHarness) -> None:
    headers = await api.user("kdi", "kdi")
    await _open(api, headers)
    body = await api.metrics()
    assert "crisis_incidents_opened_total 1.0" in body


async def test_impact_is_scored_on_the_values_to_protect(api: ApiHarness) -> None:
    headers = await api.user("kdi", "kdi")
    ok = await _open(api, headers, impact={"liv_og_helse": 5, "omdomme": 2})
    assert ok["impact"] == {"liv_og_helse": 5, "omdomme": 2}
    response = await api.client.post(
        "/api/v1/incidents", json={**INCIDENT, "impact": {"weather": 3}}, headers=headers
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "impact"
