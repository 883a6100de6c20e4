"""The exercises API: roles, the life cycle, participants, manual injects and every refusal."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ApiHarness

SCENARIO = """version: 1
id: prove
title: Prøveøvelse
title_en: Trial exercise
units: [agder-froland]
duration: 10m
participants:
  - person: espen-braten
injects:
  - id: alarm
    at: 0s
    type: sensor
    event: fire_alarm
    data: {zone: "A2"}
  - id: les
    at: 1m
    type: text
    text: "Les opp: brannvesenet er på vei."
expected:
  - id: eier
    action: owner_set
    within: 2m
"""


@pytest.fixture
async def controller(api: ApiHarness) -> dict[str, str]:
    return await api.user("ovingsleder", "exercise-controller")


async def create(api: ApiHarness, headers: dict[str, str], **body: Any) -> Any:
    return await api.client.post(
        "/api/v1/exercises", json={"scenario": SCENARIO, "speed": 10, **body}, headers=headers
    )


@pytest.mark.parametrize(
    "role",
    ["admin", "exercise-controller", "operator", "region", "kdi", "communication", "ministry"],
)
async def test_only_admins_and_exercise_controllers_run_exercises(
    api: ApiHarness, role: str
) -> None:
    headers = await api.user("u", role, unit="agder-froland", region="sorvest")
    allowed = role in ("admin", "exercise-controller")
    r = await create(api, headers, id="ovelse-rolle")
    assert r.status_code == (201 if allowed else 403), r.text
    if not allowed:
        assert r.json()["errors"][0]["action"] == "run_exercise"
    for method, path in [
        ("GET", "/api/v1/exercises"),
        ("GET", "/api/v1/exercises/scenarios"),
        ("GET", "/api/v1/exercises/ovelse-rolle"),
        ("POST", "/api/v1/exercises/ovelse-rolle/start"),
        ("POST", "/api/v1/exercises/ovelse-rolle/pause"),
        ("POST", "/api/v1/exercises/ovelse-rolle/end"),
    ]:
        got = await api.client.request(method, path, headers=headers)
        assert (got.status_code == 403) != allowed, (method, path, got.text)


async def test_life_cycle_through_the_api(api: ApiHarness, controller: dict[str, str]) -> None:
    r = await create(api, controller, id="ovelse-prove", participants=[{"person": "nina-rod"}])
    assert r.status_code == 201, r.text
    assert r.json() == {"id": "ovelse-prove"}
    base = "/api/v1/exercises/ovelse-prove"
    got = (await api.client.get(base, headers=controller)).json()
    assert got["state"] == "created"
    assert got["progress"]["injects"] == {"sent": 0, "due": 0, "total": 2, "skipped": 0}
    assert {p["person_id"] for p in got["participants"]} == {"espen-braten", "nina-rod"}
    assert [i["inject_id"] for i in got["injects"]] == ["alarm", "les"]
    assert got["progress"]["expected"]["total"] == 1
    for verb, state in [("start", "running"), ("pause", "paused"), ("resume", "running")]:
        r = await api.client.post(f"{base}/{verb}", headers=controller)
        assert r.status_code == 200, r.text
        assert r.json()["state"] == state
    r = await api.client.post(f"{base}/resume", headers=controller)
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "state"
    r = await api.client.post(
        f"{base}/observations", json={"text": "Rask start"}, headers=controller
    )
    assert r.status_code == 201
    r = await api.client.delete(f"{base}/participants/nina-rod", headers=controller)
    assert r.status_code == 204
    r = await api.client.delete(f"{base}/participants/nina-rod", headers=controller)
    assert r.status_code == 404
    r = await api.client.post(
        f"{base}/participants", json={"person": "anne-smeby"}, headers=controller
    )
    assert r.status_code == 201, r.text
    r = await api.client.post(f"{base}/end", json={"reason": "ferdig"}, headers=controller)
    assert r.status_code == 200 and r.json()["state"] == "ended"
    got = (await api.client.get(base, headers=controller)).json()
    assert got["end_reason"] == "ferdig"
    assert [o["text"] for o in got["observations"]] == ["Rask start"]
    assert {p["person_id"] for p in got["participants"]} == {"espen-braten", "anne-smeby"}
    listed = (await api.client.get("/api/v1/exercises", headers=controller)).json()
    assert [e["id"] for e in listed] == ["ovelse-prove"]


async def test_shipped_scenarios_are_listed_and_created_by_name(
    api: ApiHarness, controller: dict[str, str]
) -> None:
    r = await api.client.get("/api/v1/exercises/scenarios", headers=controller)
    assert r.status_code == 200
    demo = next(s for s in r.json() if s["id"] == "demo-kort")
    assert demo["duration_seconds"] == 120 and demo["title_en"]
    r = await api.client.post(
        "/api/v1/exercises", json={"scenario": "demo-kort", "speed": 5}, headers=controller
    )
    assert r.status_code == 201, r.text
    assert r.json()["id"].startswith("ovelse-demo-kort-")


async def test_manual_and_scripted_injects_go_through_send(
    api: ApiHarness, controller: dict[str, str]
) -> None:
    sent: list[dict[str, Any]] = []

    async def send(events: list[dict[str, Any]]) -> None:
        sent.extend(events)

    base = "/api/v1/exercises/ovelse-inn"
    assert (await create(api, controller, id="ovelse-inn")).status_code == 201
    r = await api.client.post(f"{base}/inject", json={"inject": "alarm"}, headers=controller)
    assert r.status_code == 409  # not started
    await api.client.post(f"{base}/start", headers=controller)
    r = await api.client.post(f"{base}/inject", json={"inject": "alarm"}, headers=controller)
    assert r.status_code == 503  # no producer here
    api.app.state.exercise_send = send
    r = await api.client.post(f"{base}/inject", json={"inject": "alarm"}, headers=controller)
    assert r.status_code == 202, r.text
    r = await api.client.post(f"{base}/inject", json={"inject": "alarm"}, headers=controller)
    assert r.status_code == 409  # sent already
    r = await api.client.post(f"{base}/inject", json={"inject": "nope"}, headers=controller)
    assert r.status_code == 404
    manual = {
        "type": "report",
        "category": "brann",
        "place": "Avdeling B",
        "what": "Røyk i vaskeriet",
    }
    r = await api.client.post(f"{base}/inject", json=manual, headers=controller)
    assert r.status_code == 202, r.text
    assert [e["exercise"] for e in sent] == ["ovelse-inn", "ovelse-inn"]
    assert sent[0]["source"] == "/exercises/ovelse-inn" and sent[0]["id"] == "alarm"
    r = await api.client.post(
        f"{base}/inject", json={"type": "rykte", "text": "x"}, headers=controller
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["message"].startswith("<inject>:")
    got = (await api.client.get(base, headers=controller)).json()
    states = {i["inject_id"]: (i["state"], i["manual"]) for i in got["injects"]}
    assert states["alarm"] == ("sent", False)
    assert [s for s in states.values() if s[1]] == [("sent", True)]


async def test_bad_input_is_refused_with_clear_errors(
    api: ApiHarness, controller: dict[str, str]
) -> None:
    post = api.client.post
    r = await post("/api/v1/exercises", json={"scenario": "finnes-ikke"}, headers=controller)
    assert r.status_code == 404 and r.json()["errors"][0]["field"] == "scenario"
    broken = SCENARIO.replace("units: [agder-froland]", "units: [ukjent-enhet]").replace(
        "- person: espen-braten", "- person: ingen-slik"
    )
    r = await post("/api/v1/exercises", json={"scenario": broken}, headers=controller)
    assert r.status_code == 422, r.text
    messages = [e["message"] for e in r.json()["errors"]]
    assert messages == [
        "<scenario>:5: units[0]: unknown unit 'ukjent-enhet' (see the organisation file)",
        "<scenario>:8: participants[0].person: unknown person 'ingen-slik' "
        "(not in the recipients file)",
    ]
    bad_type = SCENARIO.replace("type: sensor", "type: rykte")
    r = await post("/api/v1/exercises", json={"scenario": bad_type}, headers=controller)
    assert r.status_code == 422 and "rykte" in r.text
    r = await post("/api/v1/exercises", json={"scenario": "a: [b"}, headers=controller)
    assert r.status_code == 422 and r.json()["errors"][0]["message"].startswith("<scenario>:")
    r = await create(api, controller, participants=[{"person": "ukjent"}])
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "participants.person"
    r = await create(api, controller, participants=[{"account": "ukjent"}])
    assert r.status_code == 422
    for speed in (0, 0.01, 5000):
        r = await create(api, controller, speed=speed)
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "speed"
    assert (await create(api, controller, id="ovelse-en")).status_code == 201
    r = await create(api, controller, id="ovelse-en")
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "id"
    r = await create(api, controller, id="Store Bokstaver")
    assert r.status_code == 422
    r = await api.client.get("/api/v1/exercises/ingen", headers=controller)
    assert r.status_code == 404
    r = await post(
        "/api/v1/exercises/ovelse-en/start", json={"start_at": "lenge"}, headers=controller
    )
    assert r.status_code == 422


async def test_an_id_that_incidents_already_carry_is_refused(
    api: ApiHarness, controller: dict[str, str]
) -> None:
    body = {
        "type": "fire",
        "title": "Øvelse for hånd",
        "unit": "agder-froland",
        "severity": 3,
        "exercise": "ovelse-hand",
    }
    r = await api.client.post("/api/v1/incidents", json=body, headers=controller)
    assert r.status_code == 201, r.text
    r = await create(api, controller, id="ovelse-hand")
    assert r.status_code == 409
    assert "overlaps" in r.json()["errors"][0]["message"]
