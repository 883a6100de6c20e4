"""The exercise controller's pages: every rendered form submitted as the browser sends it and
its result read back through the API; refusals shown with the API's errors; 403 for the roles
that may not run exercises."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.conftest import ApiHarness
from tests.forms import form_of, submit

BAD_SCENARIO = """version: 1
id: feil
title: Feil
title_en: Wrong
units: [nowhere]
injects:
  - id: alarm
    at: 0s
    type: teleport
"""


@pytest.fixture
async def controller(api: ApiHarness) -> dict[str, str]:
    return await api.user("ovingsleder", "exercise-controller")


async def _get(api: ApiHarness, headers: dict[str, str], exercise_id: str) -> Any:
    r = await api.client.get(f"/api/v1/exercises/{exercise_id}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


async def _page(client: httpx.AsyncClient, path: str) -> str:
    r = await client.get(path)
    assert r.status_code == 200, r.text
    return r.text


async def test_the_start_form_creates_and_starts_an_exercise(
    api: ApiHarness, controller: dict[str, str]
) -> None:
    async with api.login("ovingsleder") as client:
        html = await _page(client, "/exercises")
        assert 'href="/exercises"' in html and "Øvelser" in html  # the nav link
        assert re.search(r"<option value=\"demo-kort\"[^>]*>Kort demo[^<]*\(2:00\)", html)
        form = form_of(html, "start-form")
        assert {"scenario", "yaml", "speed", "id", "start", "participant:nina-rod"} <= form.names()
        r = await submit(
            client,
            html,
            "start-form",
            scenario="demo-kort",
            speed="20",
            id="ovelse-side",
            **{"participant:nina-rod": True},
        )
        assert r.status_code == 201, r.text
        assert r.json() == {"id": "ovelse-side"}
        assert (
            form.attrs["data-redirect"].replace("{id}", "ovelse-side") == "/exercises/ovelse-side"
        )
    got = await _get(api, controller, "ovelse-side")
    assert got["state"] == "running" and got["speed"] == 20 and got["scenario_id"] == "demo-kort"
    people = {p["person_id"] for p in got["participants"]}
    assert people == {"espen-braten", "trond-kleiven", "nina-rod"}
    async with api.login("ovingsleder") as client:
        listing = await _page(client, "/exercises")
        assert 'data-exercise="ovelse-side"' in listing and "pågår" in listing


async def test_the_start_form_shows_every_scenario_error_and_creates_nothing(
    api: ApiHarness, controller: dict[str, str]
) -> None:
    async with api.login("ovingsleder") as client:
        html = await _page(client, "/exercises")
        r = await submit(client, html, "start-form", yaml=BAD_SCENARIO, speed="5")
        assert r.status_code == 422, r.text
        errors = r.json()["errors"]
        assert {e["field"] for e in errors} == {"yaml"}  # pinned to the textarea
        messages = [e["message"] for e in errors]
        assert any(
            re.match(r"<scenario>:5: units\[0\]: unknown unit 'nowhere'", m) for m in messages
        )
        assert any(re.match(r"<scenario>:9: injects\[0\]\.type: ", m) for m in messages)
        r = await submit(client, html, "start-form", scenario="demo-kort", speed="5000")
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "speed"
    listed = (await api.client.get("/api/v1/exercises", headers=controller)).json()
    assert listed == []


async def test_the_controller_page_drives_the_exercise(
    api: ApiHarness, controller: dict[str, str]
) -> None:
    sent: list[dict[str, Any]] = []

    async def send(events: list[dict[str, Any]]) -> None:
        sent.extend(events)

    api.app.state.exercise_send = send
    base = "/exercises/ovelse-styr"
    async with api.login("ovingsleder") as client:
        html = await _page(client, "/exercises")
        r = await submit(
            client,
            html,
            "start-form",
            scenario="demo-kort",
            speed="1",
            id="ovelse-styr",
            start=False,
        )
        assert r.status_code == 201, r.text
        assert (await _get(api, controller, "ovelse-styr"))["state"] == "created"

        page = await _page(client, base)
        assert 'id="exercise-banner"' in page and "ØVELSE" in page
        assert 'src="/static/exercises.js"' in page and "<script>" not in page
        for inject in ("brannalarm", "melding-royk", "opplesning-brannvesen", "ny-alarm"):
            assert f'data-inject="{inject}" data-state="pending"' in page
        assert "110-sentralen bekrefter" in page  # the text inject is read out from here
        assert 'data-expected="eier"' in page and 'data-expected="ansatte-forst"' in page
        assert (await submit(client, page, "form-start")).status_code == 200
        assert (await _get(api, controller, "ovelse-styr"))["state"] == "running"

        page = await _page(client, base)
        assert 'id="form-start"' not in page and 'id="form-pause"' in page
        r = await submit(client, page, "form-fire-ny-alarm")
        assert r.status_code == 202, r.text
        r = await submit(client, page, "form-manual", type="report")  # the example fields
        assert r.status_code == 202, r.text
        r = await submit(client, page, "form-manual", type="sensor", fields="event: smoke_signal\n")
        assert r.status_code == 422
        [error] = r.json()["errors"]
        assert error["field"] == "fields"
        assert error["message"].startswith("<inject>:") and "smoke_signal" in error["message"]
        r = await submit(client, page, "form-manual", type="report", fields="what: [unclosed\n")
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "fields"
        got = await _get(api, controller, "ovelse-styr")
        states = {i["inject_id"]: (i["state"], i["manual"]) for i in got["injects"]}
        assert states["ny-alarm"] == ("sent", False)
        assert [s for s in states.values() if s[1]] == [("sent", True)]
        assert next(e["id"] for e in sent) == "ny-alarm" and len(sent) == 2
        assert all(e["exercise"] == "ovelse-styr" for e in sent)

        page = await _page(client, base)
        assert 'data-inject="ny-alarm" data-state="sent"' in page
        assert 'id="form-fire-ny-alarm"' not in page
        r = await submit(client, page, "form-participant", person="nina-rod")
        assert r.status_code == 201, r.text
        r = await submit(client, page, "form-observation", text="Vakthavende svarte raskt")
        assert r.status_code == 201, r.text
        page = await _page(client, base)
        assert "Vakthavende svarte raskt" in page
        remove = form_of(page, "form-remove-trond-kleiven").attrs["data-delete"]
        assert (await client.delete(remove)).status_code == 204
        got = await _get(api, controller, "ovelse-styr")
        assert {p["person_id"] for p in got["participants"]} == {"espen-braten", "nina-rod"}
        assert [o["text"] for o in got["observations"]] == ["Vakthavende svarte raskt"]

        assert (await submit(client, page, "form-pause")).status_code == 200
        assert (await _get(api, controller, "ovelse-styr"))["state"] == "paused"
        page = await _page(client, base)
        assert (await submit(client, page, "form-resume")).status_code == 200
        page = await _page(client, base)
        end = form_of(page, "form-end")
        assert "data-confirm" in end.attrs  # the script asks before it posts
        assert (await submit(client, page, "form-end")).status_code == 200
        got = await _get(api, controller, "ovelse-styr")
        assert got["state"] == "ended"
        page = await _page(client, base)
        for form_id in ("form-pause", "form-resume", "form-end", "form-manual", "form-participant"):
            assert f'id="{form_id}"' not in page
        assert 'id="ex-ended"' in page

        english = await _page(client, base + "?lang=en")
        assert "EXERCISE" in english and "Expected actions" in english


@pytest.mark.parametrize("role", ["operator", "region", "kdi", "communication", "ministry"])
async def test_roles_that_may_not_run_exercises_get_403(api: ApiHarness, role: str) -> None:
    controller = await api.user("ovingsleder", "exercise-controller")
    r = await api.client.post(
        "/api/v1/exercises", json={"scenario": "demo-kort", "id": "ovelse-x"}, headers=controller
    )
    assert r.status_code == 201
    extra = {"unit": "agder-froland"} if role == "operator" else {}
    extra = {"region": "sor"} if role == "region" else extra
    await api.user("someone", role, **extra)
    async with api.login("someone") as client:
        assert (await client.get("/exercises")).status_code == 403
        assert (await client.get("/exercises/ovelse-x")).status_code == 403
        r = await client.post("/exercises/new", json={"scenario": "demo-kort", "id": "ovelse-y"})
        assert r.status_code == 403
        r = await client.post(
            "/exercises/ovelse-x/manual-inject", json={"type": "text", "fields": "text: x"}
        )
        assert r.status_code == 403
        home = await client.get("/")
        assert 'id="nav-exercises"' not in home.text
    listed = (await api.client.get("/api/v1/exercises", headers=controller)).json()
    assert [e["id"] for e in listed] == ["ovelse-x"]


async def test_admin_sees_the_link_and_an_unknown_exercise_is_404(api: ApiHarness) -> None:
    await api.user("sjef", "admin")
    async with api.login("sjef") as client:
        assert 'id="nav-exercises"' in (await client.get("/")).text
        assert (await client.get("/exercises/ovelse-finnes-ikke")).status_code == 404
    async with api.login("sjef") as client:
        r = await client.get("/exercises", follow_redirects=False)
        assert r.status_code == 200
    anonymous = await api.client.get("/exercises", follow_redirects=False)
    assert anonymous.status_code == 303 and "/login" in anonymous.headers["location"]
