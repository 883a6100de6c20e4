"""Notifications on the board: deliveries per update and group, the forms (approve, correct or
cancel, retry) submitted as rendered and checked through the API, and the local inbox page."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any

from crisis.clock import utcnow
from notifiers.config import load_notify_config, parse_notify_config
from notifiers.dispatcher import Dispatcher
from tests.conftest import ApiHarness

INCIDENT = {"type": "fire", "title": "Brann i verksted", "unit": "agder-froland", "severity": 4}
FACTS = {"title": "Brann i verksted", "known": "Røyk i verkstedet.", "actions": "Evakuert."}


def forms(page: str, cls: str) -> list[str]:
    """The API address of every rendered form of class ``cls`` (``data-msg-api``)."""
    found = re.findall(r'<form[^>]*class="[^"]*' + cls + r'[^"]*"[^>]*data-msg-api="([^"]+)"', page)
    found += re.findall(r'<form[^>]*data-msg-api="([^"]+)"[^>]*class="[^"]*' + cls, page)
    return [html.unescape(f) for f in found]


def visible_text(page: str) -> str:
    page = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


async def _incident(api: ApiHarness, headers: dict[str, str]) -> str:
    r = await api.client.post("/api/v1/incidents", json=INCIDENT, headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _update(api: ApiHarness, headers: dict[str, str], incident: str, **kw: Any) -> str:
    body = {
        "incident_id": incident,
        "groups": ["staff"],
        "facts": FACTS,
        "next_update_at": (utcnow() + timedelta(minutes=30)).isoformat(),
        **kw,
    }
    r = await api.client.post("/api/v1/notifications/updates", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _dispatch(api: ApiHarness, config: Any) -> None:
    d = Dispatcher(api.app.state.sessions, config)
    try:
        while await d.run_once():
            pass
    finally:
        await d.aclose()


async def test_held_message_is_approved_by_a_second_person_only(api: ApiHarness) -> None:
    kari = await api.user("kari", "operator", unit="agder-froland")
    await api.user("ola", "region", region="sorvest")
    incident = await _incident(api, kari)
    update = await _update(api, kari, incident, groups=["staff", "families"])
    async with api.login("kari") as client:
        page = (await client.get(f"/incidents/{incident}/messages")).text
        assert "Venter på godkjenning av en annen person" in page
        assert "Du ba om denne meldingen" in page  # the author is told before trying
        (approve,) = forms(page, "msg-approve")
        assert approve == f"/api/v1/notifications/updates/{update}/approve"
        refused = await client.post(approve, json={})
        assert refused.status_code == 403
        assert refused.json()["errors"][0]["principle"] == "to-personsregel"
        for raw in ("failed", "held", "queued"):  # Norwegian words, not codes
            assert not re.search(rf"\b{raw}\b", visible_text(page)), raw
    async with api.login("ola") as client:
        page = (await client.get(f"/incidents/{incident}/messages")).text
        assert "Du ba om denne meldingen" not in page
        (approve,) = forms(page, "msg-approve")
        ok = await client.post(approve, json={})
        assert ok.status_code == 200, ok.text
        assert (
            "Venter på godkjenning"
            not in (await client.get(f"/incidents/{incident}/messages")).text
        )
    got = (await api.client.get(f"/api/v1/notifications/updates/{update}", headers=kari)).json()
    assert got["approved_by"] == "user:ola"
    timeline = (await api.client.get(f"/api/v1/incidents/{incident}/timeline", headers=kari)).json()
    approved = [e for e in timeline if e["data"].get("approved_by") == "user:ola"]
    assert approved and {e["data"]["group"] for e in approved} == {"families"}


async def test_a_delivered_update_is_corrected_or_cancelled_from_the_form(api: ApiHarness) -> None:
    kari = await api.user("kari", "operator", unit="agder-froland")
    incident = await _incident(api, kari)
    update = await _update(api, kari, incident)
    await _dispatch(api, load_notify_config(None))  # the demo file: the local inbox
    async with api.login("kari") as client:
        page = (await client.get(f"/incidents/{incident}/messages")).text
        assert 'data-worst="sent"' in page and "levert" in page
        (correct,) = forms(page, "msg-correct-form")
        assert 'name="facts.known"' in page and 'name="cancel"' in page
        body = {
            "facts": {"known": "Det var ikke brann.", "actions": "Ingen."},
            "next_update_at": (utcnow() + timedelta(hours=1)).isoformat(),
            "cancel": True,
        }
        r = await client.post(correct, json=body)
        assert r.status_code == 201, r.text
        cancellation = r.json()
    assert cancellation["kind"] == "cancellation" and cancellation["corrects_update_id"] == update
    original = (
        await api.client.get(f"/api/v1/notifications/updates/{update}", headers=kari)
    ).json()
    assert {m["recipient"] for m in cancellation["messages"]} == {
        m["recipient"] for m in original["messages"]
    }


FAILING = """
version: 1
delivery: {attempts_per_contact: 1, backoff_seconds: 0.01}
people:
  - {id: down, name: Nede (test), contacts: [{channel: sms, url: "json://127.0.0.1:9/x?cto=1"}]}
  - {id: up, name: Oppe (test), contacts: [{channel: sms, url: "inbox://up/sms"}]}
groups:
  - {id: g-staff, kind: staff, unit: agder-froland, members: [down, up]}
"""


async def test_failed_deliveries_are_retried_from_the_board(api: ApiHarness) -> None:
    config = parse_notify_config(FAILING, "failing.yaml")
    api.app.state.notify_config = config
    kari = await api.user("kari", "operator", unit="agder-froland")
    incident = await _incident(api, kari)
    update = await _update(api, kari, incident)
    await _dispatch(api, config)
    async with api.login("kari") as client:
        page = (await client.get(f"/incidents/{incident}/messages")).text
        assert 'data-worst="failed"' in page and "feilet" in page
        (retry,) = forms(page, "msg-retry")
        assert retry == f"/api/v1/notifications/updates/{update}/retry"
        r = await client.post(retry, json={"group": "staff"})
        assert r.status_code == 200, r.text
        again = await client.post(retry, json={"group": "staff"})
        assert again.status_code == 409  # nothing failed any more: it is queued
    states = {
        m["recipient"]: m["status"]
        for m in (
            await api.client.get(f"/api/v1/notifications/updates/{update}", headers=kari)
        ).json()["messages"]
    }
    assert states == {"down": "pending", "up": "sent"}
    timeline = (await api.client.get(f"/api/v1/incidents/{incident}/timeline", headers=kari)).json()
    assert timeline[-1]["data"]["retried_by"] == "user:kari"
    assert timeline[-1]["data"]["status"] == "queued"


async def test_retry_and_approve_follow_the_permission_table(api: ApiHarness) -> None:
    kari = await api.user("kari", "operator", unit="agder-froland")
    jd = await api.user("jd", "ministry")
    other = await api.user("per", "operator", unit="agder-mandal")
    incident = await _incident(api, kari)
    update = await _update(api, kari, incident)
    url = f"/api/v1/notifications/updates/{update}/retry"
    assert (await api.client.post(url, json={}, headers=jd)).status_code == 403
    assert (await api.client.post(url, json={}, headers=other)).status_code == 403
    r = await api.client.post(url, json={}, headers=kari)
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "status"
    assert (
        await api.client.post("/api/v1/notifications/messages/999/retry", headers=kari)
    ).status_code == 404


async def test_recipients_are_masked_for_communication_staff(api: ApiHarness) -> None:
    kari = await api.user("kari", "operator", unit="agder-froland")
    await api.user("kom", "communication")
    incident = await _incident(api, kari)
    await _update(api, kari, incident)
    async with api.login("kari") as client:
        assert "espen-braten" in (await client.get(f"/incidents/{incident}/messages")).text
    async with api.login("kom") as client:
        page = (await client.get(f"/incidents/{incident}/messages")).text
        assert "espen-braten" not in page and "••• (skjermet)" in page


async def test_the_inbox_page_lists_delivered_messages_by_recipient_and_channel(
    api: ApiHarness,
) -> None:
    admin = await api.user("root", "admin")
    await api.user("kom", "communication")
    await api.user("per", "operator", unit="agder-mandal")
    incident = await _incident(api, admin)
    update = await _update(api, admin, incident, kind="alarm")
    await _dispatch(api, load_notify_config(None))
    async with api.login("root") as client:
        page = (await client.get("/inbox")).text
        assert 'data-recipient="espen-braten"' in page and "Espen Bråten (demo)" in page
        assert page.count(f'data-update="{update}"') == 4
        assert 'data-status="sent"' in page and "levert" in page
        assert "Bekreft: svar" in page  # the alarm as the recipient reads it
        one = (await client.get("/inbox?recipient=elin-midtbo")).text
        assert one.count(f'data-update="{update}"') == 1
        assert 'href="/inbox"' in (await client.get("/")).text
    async with api.login("kom") as client:
        assert (await client.get("/inbox")).status_code == 403
    async with api.login("per") as client:  # another unit's operator: not their incident
        assert f'data-update="{update}"' not in (await client.get("/inbox")).text


async def test_exercise_messages_in_the_inbox_are_marked_ovelse(api: ApiHarness) -> None:
    admin = await api.user("root", "admin")
    r = await api.client.post(
        "/api/v1/incidents", json={**INCIDENT, "exercise": "ovelse-2026-11-brann"}, headers=admin
    )
    incident = r.json()["id"]
    await _update(api, admin, incident)
    await _dispatch(api, load_notify_config(None))
    async with api.login("root") as client:
        page = (await client.get("/inbox")).text
        assert page.count('class="tag-exercise"') == 3  # participants only; each marked
        assert "ØVELSE ØVELSE ØVELSE" in page
