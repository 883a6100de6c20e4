"""The board's pages over HTTP: login redirect, roles, masking and its access log, i18n."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlmodel import select

from crisis.log.models import DataAccess
from notifiers import logbook
from tests.conftest import ApiHarness

INCIDENT = {"type": "fire", "title": "Brann i verksted", "unit": "agder-froland", "severity": 4}


@asynccontextmanager
async def _login(
    api: ApiHarness, name: str, role: str, **kw: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """A browser-like client with the session cookie of a new user, and that user's token."""
    headers = await api.user(name, role, **kw)
    async with api.login(name) as client:
        yield client, headers


async def _incident(api: ApiHarness, headers: dict[str, str], **over: Any) -> str:
    r = await api.client.post("/api/v1/incidents", json={**INCIDENT, **over}, headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_pages_need_a_login(api: ApiHarness) -> None:
    r = await api.client.get("/incidents/x?lang=en")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/incidents/x%3Flang%3Den"
    login = await api.client.get("/login")
    assert login.status_code == 200 and 'name="username"' in login.text and "Logg inn" in login.text


async def test_overview_map_and_language(api: ApiHarness) -> None:
    async with _login(api, "op", "operator", unit="agder-froland") as (client, headers):
        await _incident(api, headers)
        page = await client.get("/")
        assert page.status_code == 200 and "Åpne hendelser" in page.text
        assert page.text.count('class="dot ') == len(api.app.state.organisation.units)
        assert 'data-unit="agder-froland"' in page.text
        assert '<div class="muted">Brann · ' in page.text, "the type as staff say it"
        en = await client.get("/?lang=en")
        assert "Open incidents" in en.text and en.cookies.get("lang") == "en"
        assert '<div class="muted">Fire · ' in en.text
        assert "Open incidents" in (await client.get("/")).text
        geo = await client.get("/static/norway.geojson")
        assert geo.status_code == 200 and json.loads(geo.text)["type"] == "FeatureCollection"
        assert (await client.get("/static/board.js")).status_code == 200
        assert (await client.get("/static/..%2Fboard.py")).status_code == 404
        report = await client.get("/report")
        assert report.status_code == 200 and 'data-api="/api/v1/reports"' in report.text
        assert 'value="agder-froland" selected' in report.text


async def test_inmate_identity_masked_for_roles_without_need_and_each_view_logged(
    api: ApiHarness,
) -> None:
    async with (
        _login(api, "op", "operator", unit="agder-froland") as (op, op_h),
        _login(api, "komm", "communication") as (komm, _),
    ):
        iid = await _incident(api, op_h)
        r = await api.client.post(
            f"/api/v1/incidents/{iid}/entries",
            json={"kind": "observation", "text": "Innsatt flyttet", "inmate_ref": "INN-4471"},
            headers=op_h,
        )
        assert r.status_code == 201
        masked = await komm.get(f"/incidents/{iid}")
        assert masked.status_code == 200 and "Innsatt flyttet" in masked.text
        assert "INN-4471" not in masked.text and "skjermet" in masked.text
        shown = await op.get(f"/incidents/{iid}")
        assert "INN-4471" in shown.text
        async with api.app.state.sessions() as session:
            rows = list((await session.exec(select(DataAccess))).all())
        assert [(r.actor, r.channel, r.inmate_refs, r.incident_id) for r in rows] == [
            ("user:op", "page", ["INN-4471"], iid)
        ]


async def test_ministry_sees_approved_reports_only(api: ApiHarness) -> None:
    op_h = await api.user("op", "operator", unit="agder-froland")
    async with _login(api, "jd", "ministry") as (jd, _):
        iid = await _incident(api, op_h)
        sitrep = (await api.client.post(f"/api/v1/incidents/{iid}/sitreps", headers=op_h)).json()
        home = await jd.get("/")
        assert "Godkjente situasjonsrapporter" in home.text and "Brann i verksted" not in home.text
        assert (await jd.get(f"/incidents/{iid}")).status_code == 403
        assert (await jd.get(f"/incidents/{iid}/panels")).status_code == 403
        assert (await jd.get(f"/sitreps/{sitrep['id']}")).status_code == 404
        await api.client.post(
            f"/api/v1/sitreps/{sitrep['id']}/approve", json={"version": 1}, headers=op_h
        )
        assert "Brann i verksted" in (await jd.get("/")).text
        page = await jd.get(f"/sitreps/{sitrep['id']}")
        assert page.status_code == 200 and "Godkjent" in page.text
        assert "sitrep-approve" not in page.text  # nothing to act on for the ministry


async def test_incident_page_reads_tasks_contacts_and_deliveries_from_the_log(
    api: ApiHarness,
) -> None:
    async with _login(api, "op", "operator", unit="agder-froland") as (op, op_h):
        iid = await _incident(api, op_h)
        entries = [
            {
                "kind": "task",
                "title": "Evakuer avdeling B",
                "responsible_role": "on_duty",
                "deadline": "2026-11-22T05:00:00Z",
                "checklist": ["Telling"],
            },
            {
                "kind": "cooperation_contact",
                "text": "Brannvesenet",
                "actor": {"kind": "fire", "name": "Agder brannvesen", "status": "acknowledged"},
            },
        ]
        for body in entries:
            r = await api.client.post(f"/api/v1/incidents/{iid}/entries", json=body, headers=op_h)
            assert r.status_code == 201, r.text
        receipt = {"update_id": "u7", "group": "staff", "recipient": "a", "channel": "sms"}
        async with api.app.state.sessions() as session:  # as the notifiers write it
            data = {**receipt, "status": "held", "attempt": 0}
            await logbook.write(session, [logbook.Receipt(iid, "SMS", data)])
            await session.commit()
        page = (await op.get(f"/incidents/{iid}/panels")).text
        assert "Evakuer avdeling B" in page and "on_duty" in page and "Telling" in page
        assert "Agder brannvesen" in page and "bekreftet" in page
        # the receipt as one line of update u7 and group staff, in words ("venter": held)
        line = page.split('data-update="u7"')[1].split("</article>")[0]
        assert 'data-group="staff" data-worst="held"' in line and "1 venter" in line
        # the violations are the service's (no route scanning): the task is past its deadline
        assert 'data-code="task_overdue"' in page and "Ingen registrerte brudd" not in page
        assert "(vakthavende)" in page and "(status: ikke startet)" in page


async def test_roles_and_groups_are_shown_as_staff_say_them(api: ApiHarness) -> None:
    async with _login(api, "op", "operator", unit="agder-froland") as (client, headers):
        iid = await _incident(api, headers)
        r = await api.client.post(
            f"/api/v1/incidents/{iid}/entries",
            json={"kind": "task", "title": "Varsle AMK", "responsible_role": "on_duty"},
            headers=headers,
        )
        assert r.status_code == 201
        page = (await client.get(f"/incidents/{iid}")).text
        assert '<td title="on_duty">vakthavende</td>' in page
        assert "(leder)" in page
        english = (await client.get(f"/incidents/{iid}?lang=en")).text
        assert '<td title="on_duty">on-duty officer</td>' in english


async def test_the_incident_page_offers_only_what_the_role_may_do(api: ApiHarness) -> None:
    """Forms follow the permission table: no decision form the API would refuse with 403."""
    op_h = await api.user("op", "operator", unit="agder-froland")
    iid = await _incident(api, op_h)
    seen: dict[str, set[str]] = {}
    for name, role in (("op2", "operator"), ("k", "kdi"), ("c", "communication")):
        async with _login(api, name, role, unit="agder-froland") as (client, _):
            page = (await client.get(f"/incidents/{iid}")).text
            seen[role] = {
                form for form in ("form-entry", "form-decision", "form-escalate") if form in page
            } | ({"measure"} if 'name="measure"' in page else set())
    assert seen["operator"] == {"form-entry", "form-decision", "form-escalate", "measure"}
    assert seen["kdi"] == {"form-entry", "form-decision", "form-escalate"}
    assert seen["communication"] == {"form-entry"}
