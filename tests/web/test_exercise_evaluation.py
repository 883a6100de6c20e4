"""``GET /api/v1/exercises/{id}/evaluation``: an exercise run through the API, its incident's
log scripted to the second; the evaluation in JSON (each expected action met or missed with
its actual time), HTML in both languages and PDF; roles, 404, 406."""

from __future__ import annotations

import pytest

from crisis.exercises.models import Exercise
from tests.conftest import ApiHarness
from tests.review.scripted import T0, iso, scripted_incident

EX = "ovelse-evaluering"
SCENARIO = """version: 1
id: evaluering
title: Evalueringsøvelse
title_en: Evaluation exercise
units: [agder-froland]
duration: 3h
participants:
  - person: espen-braten
injects:
  - id: les
    at: 0s
    type: text
    text: "Les opp: pust mangler i celle A2-114."
expected:
  - id: eier
    action: owner_set
    within: 2m
  - id: kvittering
    action: staff_acknowledged
    within: 2m
  - id: region
    action: escalated
    to: region
    within: 10m
  - id: sitrap
    action: sitrep_approved
    within: 30m
  - id: ansatte-forst
    action: staff_before_public
"""
BASE = f"/api/v1/exercises/{EX}/evaluation"


@pytest.fixture
async def controller(api: ApiHarness) -> dict[str, str]:
    headers = await api.user("ovingsleder", "exercise-controller")
    r = await api.client.post(
        "/api/v1/exercises", json={"scenario": SCENARIO, "id": EX}, headers=headers
    )
    assert r.status_code == 201, r.text
    assert (await api.client.post(f"/api/v1/exercises/{EX}/start", headers=headers)).is_success
    async with api.app.state.sessions() as session:
        exercise = await session.get(Exercise, EX)
        assert exercise is not None
        exercise.started_at = T0  # the scripted incident's first event starts the exercise
        session.add(exercise)
        await scripted_incident(session, incident_id="drill", exercise=EX)
        await session.commit()
    r = await api.client.post(
        f"/api/v1/exercises/{EX}/observations", json={"text": "Rask eier"}, headers=headers
    )
    assert r.status_code == 201, r.text
    assert (await api.client.post(f"/api/v1/exercises/{EX}/end", headers=headers)).is_success
    return headers


async def test_evaluation_json(api: ApiHarness, controller: dict[str, str]) -> None:
    r = await api.client.get(BASE, headers=controller)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    got = {
        a["id"]: (a["met"], a["actual_seconds"], a["actual_at"]) for a in body["expected_actions"]
    }
    assert got == {
        "eier": (True, 95.0, iso(95)),
        "kvittering": (False, 190.0, iso(190)),
        "region": (True, 300.0, iso(300)),
        "sitrap": (False, 3000.0, iso(3000)),
        "ansatte-forst": (True, None, None),
    }
    assert body["counts"] == {"met": 3, "missed": 2, "pending": 0, "total": 5}
    assert body["exercise_id"] == EX and body["incidents"][0]["id"] == "drill"
    assert [o["text"] for o in body["observations"]] == ["Rask eier"]
    assert body["deliveries"]["acknowledged"] == 1 and body["deliveries"]["failed"] == 1
    assert {v["code"] for v in body["violations"]} >= {"task_overdue"}
    # the exercise's own state carries the same judgement, and so does the controller's page
    state = (await api.client.get(f"/api/v1/exercises/{EX}", headers=controller)).json()
    assert state["progress"]["expected"] == body["counts"]
    assert {a["id"]: a["met"] for a in state["expected"]} == {k: v[0] for k, v in got.items()}
    async with api.login("ovingsleder") as client:
        page = (await client.get(f"/exercises/{EX}")).text
    for action_id, (met, _, _) in got.items():
        status = "met" if met else "missed"
        assert f'data-expected="{action_id}" data-status="{status}"' in page
    assert '<strong id="ex-met">3</strong>' in page and f'href="{BASE}?format=pdf"' in page


@pytest.mark.parametrize(("lang", "word"), [("nb", "ikke oppfylt"), ("en", "missed")])
async def test_evaluation_html_and_pdf(
    api: ApiHarness, controller: dict[str, str], lang: str, word: str
) -> None:
    r = await api.client.get(f"{BASE}?format=html&lang={lang}", headers=controller)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "ØVELSE" in r.text and word in r.text and "<svg" in r.text
    assert "style-src 'sha256-" in r.headers["content-security-policy"]
    pdf = await api.client.get(f"{BASE}?format=pdf&lang={lang}", headers=controller)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert pdf.headers["content-disposition"].startswith("attachment;")


async def test_evaluation_refusals(api: ApiHarness, controller: dict[str, str]) -> None:
    assert (await api.client.get(f"{BASE}?format=xml", headers=controller)).status_code == 406
    missing = await api.client.get("/api/v1/exercises/ingen/evaluation", headers=controller)
    assert missing.status_code == 404 and missing.json()["errors"][0]["field"] == "id"
    assert (await api.client.get(f"{BASE}?lang=de", headers=controller)).status_code == 422
    for role in ("operator", "kdi", "ministry"):
        headers = await api.user(f"u-{role}", role, unit="agder-froland")
        r = await api.client.get(BASE, headers=headers)
        assert r.status_code == 403 and r.json()["errors"][0]["action"] == "run_exercise"
    admin = await api.user("root", "admin")
    assert (await api.client.get(BASE, headers=admin)).status_code == 200
    assert (await api.client.get(BASE)).status_code == 401
