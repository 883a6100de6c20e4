"""Each bypass of the safety rules found by trying side paths, through the public HTTP API.

Two-person rule, staff before the public, forged receipts, reports that cannot be sent,
inmates' text and translation approval: the real app, a real dispatcher and a local HTTP
sink (the SMS gateway's stand-in), SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import col, select

from crisis.clock import utcnow
from crisis.log.models import LogEntry
from notifiers.config import NotifyConfig
from notifiers.dispatcher import Dispatcher
from notifiers.models import MessageStatus, NotifyUpdate, OutboxMessage
from streams.notification_flow import queue_plan
from tests.conftest import ApiHarness
from tests.notif_sink import Sink
from tests.notifiers.test_notif_dispatcher import FACTS, make_config

UNIT = "agder-froland"


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = await Sink().start()
    yield s
    await s.stop()


def _soon() -> str:
    return (utcnow() + timedelta(minutes=30)).isoformat()


async def _open(api: ApiHarness, headers: dict[str, str], unit: str = UNIT, **kw: Any) -> str:
    r = await api.client.post(
        "/api/v1/incidents",
        json={"type": "fire", "title": "Brann", "unit": unit, "severity": 4, **kw},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _entries(api: ApiHarness, incident: str) -> list[LogEntry]:
    async with api.app.state.sessions() as session:
        rows = await session.exec(
            select(LogEntry).where(LogEntry.incident_id == incident).order_by(col(LogEntry.seq))
        )
        return list(rows.all())


async def _outbox(api: ApiHarness, incident: str) -> list[OutboxMessage]:
    async with api.app.state.sessions() as session:
        rows = await session.exec(
            select(OutboxMessage)
            .where(OutboxMessage.incident_id == incident)
            .order_by(col(OutboxMessage.id))
        )
        return list(rows.all())


def _with_inmates(sink: Sink) -> NotifyConfig:
    """The dispatcher tests' recipients plus the unit's info screen for inmates."""
    base = make_config(sink).model_dump()
    screen = {
        "id": "screen-a",
        "name": "Infoskjerm A",
        "contacts": [{"channel": "webhook", "url": sink.url("/inmates/a")}],
    }
    group = {"id": "g-inmates", "kind": "inmates", "unit": UNIT, "members": ["screen-a"]}
    return NotifyConfig.model_validate(
        {**base, "people": [*base["people"], screen], "groups": [*base["groups"], group]}
    )


def _plan(
    incident: str, seq: int, *groups: tuple[str, str], playbook: str = "brann", actor: str = ""
) -> dict[str, Any]:
    """A plan entry as the playbook engine writes it on crisis.log (``actor`` overrides it)."""
    return {
        "incident_id": incident,
        "seq": seq,
        "kind": "message",
        "actor": actor or f"rule:{playbook}/notify",
        "data": {
            "playbook": playbook,
            "rule": "notify",
            "message_type": "notification_request",
            "plan": [{"id": i, "group": g, "after": "PT0S"} for i, g in groups],
        },
    }


async def _dispatch_until_quiet(dispatcher: Dispatcher, passes: int = 60) -> None:
    idle = 0
    for _ in range(passes):
        idle = 0 if await dispatcher.run_once() else idle + 1
        if idle >= 3:
            return


# --- two-person rule -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["message", "observation", "correction", "task"])
async def test_a_person_cannot_write_a_notification_plan(api: ApiHarness, kind: str) -> None:
    kari = await api.user("kari", "operator", unit=UNIT)
    incident = await _open(api, kari)
    before = await _entries(api, incident)
    body: dict[str, Any] = {
        "kind": kind,
        "text": "varsle alle",
        "message_type": "notification_request",
        "plan": [{"group": "families"}, {"group": "ministry"}, {"group": "media"}],
    }
    if kind == "correction":
        body["corrects"] = 1
    if kind == "task":
        body["responsible_role"] = "on_duty"
    r = await api.client.post(f"/api/v1/incidents/{incident}/entries", json=body, headers=kari)
    assert r.status_code == 422, r.text
    fields = {e["field"] for e in r.json()["errors"]}
    assert "message_type" in fields
    assert await _entries(api, incident) == before  # nothing written


async def test_a_plan_entry_not_written_by_a_rule_queues_nothing(api: ApiHarness) -> None:
    """Defence in depth: the reactions flow ignores a plan whose actor is not a rule."""
    kari = await api.user("kari", "operator", unit=UNIT)
    incident = await _open(api, kari)
    entry = _plan(incident, 2, ("media", "media"), actor="user:kari")
    async with api.app.state.sessions() as session:
        config = make_config(Sink(port=1))
        assert await queue_plan(session, entry=entry, config=config) == []
        assert (await session.exec(select(NotifyUpdate))).all() == []


async def test_a_person_cannot_forge_a_delivery_receipt(api: ApiHarness) -> None:
    kari = await api.user("kari", "operator", unit=UNIT)
    incident = await _open(api, kari)
    before = await _entries(api, incident)
    forged = {
        "kind": "message",
        "text": "Varsel acknowledged",
        "update_id": "u-forged",
        "group": "staff",
        "recipient": "staff-1",
        "status": "acknowledged",
    }
    r = await api.client.post(f"/api/v1/incidents/{incident}/entries", json=forged, headers=kari)
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} >= {"update_id", "recipient", "status"}
    assert await _entries(api, incident) == before
    # A message entry without delivery data is still a person's note.
    note = {"kind": "message", "text": "Ringte politiet"}
    r = await api.client.post(f"/api/v1/incidents/{incident}/entries", json=note, headers=kari)
    assert r.status_code == 201, r.text


async def test_the_author_cannot_approve_and_a_request_is_authored_by_its_person(
    api: ApiHarness, sink: Sink
) -> None:
    api.app.state.notify_config = make_config(sink)
    kari = await api.user("kari", "operator", unit=UNIT)
    ola = await api.user("ola", "operator", unit=UNIT)
    incident = await _open(api, kari)
    body = {
        "incident_id": incident,
        "groups": ["families", "ministry", "media", "inmates"],
        "facts": FACTS,
        "next_update_at": _soon(),
    }
    r = await api.client.post("/api/v1/notifications/updates", json=body, headers=kari)
    assert r.status_code == 201, r.text
    update = r.json()
    assert update["author"] == "user:kari"
    url = f"/api/v1/notifications/updates/{update['id']}/approve"
    r = await api.client.post(url, headers=kari)
    assert r.status_code == 403 and r.json()["errors"][0]["principle"] == "to-personsregel"
    dispatcher = Dispatcher(api.app.state.sessions, make_config(sink))
    try:
        await _dispatch_until_quiet(dispatcher)
        assert not sink.to("/fam/") and not sink.to("/jd/") and not sink.to("/media/")
        r = await api.client.post(url, headers=ola)
        assert r.status_code == 200 and r.json()["approved_by"] == "user:ola"
        await _dispatch_until_quiet(dispatcher)
    finally:
        await dispatcher.aclose()
    assert sink.to("/fam/liaison") and sink.to("/jd/vakt") and sink.to("/media/ntb")


async def test_whoever_opened_an_incident_by_hand_cannot_approve_its_playbook_messages(
    api: ApiHarness, sink: Sink
) -> None:
    """Their opening made the plan: approving its families message would be one person."""
    api.app.state.notify_config = config = make_config(sink)
    kari = await api.user("kari", "operator", unit=UNIT)
    ola = await api.user("ola", "operator", unit=UNIT)
    incident = await _open(api, kari)
    plan = _plan(incident, 2, ("ansatte", "staff"), ("familie", "families"))
    async with api.app.state.sessions() as session:
        updates = await queue_plan(session, entry=plan, config=config)
        await session.commit()
    families = next(u for u in updates if u.author.endswith("/familie@2"))
    url = f"/api/v1/notifications/updates/{families.id}/approve"
    r = await api.client.post(url, headers=kari)
    assert r.status_code == 403 and r.json()["errors"][0]["principle"] == "to-personsregel"
    r = await api.client.post(url, headers=ola)
    assert r.status_code == 200, r.text


# --- staff before the public -----------------------------------------------------------


async def test_a_media_update_for_an_incident_without_staff_messages_tells_staff_first(
    api: ApiHarness, sink: Sink
) -> None:
    sink.delay["/staff/"] = 0.3
    api.app.state.notify_config = config = make_config(sink)
    kari = await api.user("kari", "operator", unit=UNIT)
    ola = await api.user("ola", "communication")
    incident = await _open(api, kari)
    body = {
        "incident_id": incident,
        "groups": ["media", "public"],
        "facts": FACTS,
        "next_update_at": _soon(),
    }
    r = await api.client.post("/api/v1/notifications/updates", json=body, headers=kari)
    assert r.status_code == 201, r.text
    update = r.json()
    groups = {m["group"] for m in update["messages"]}
    assert groups >= {"staff", "leaders", "unions", "media", "public"}
    r = await api.client.post(f"/api/v1/notifications/updates/{update['id']}/approve", headers=ola)
    assert r.status_code == 200
    dispatcher = Dispatcher(api.app.state.sessions, config)
    try:
        await _dispatch_until_quiet(dispatcher, passes=200)
    finally:
        await dispatcher.aclose()
    staff_done = max(h.answered for h in sink.to("/staff/"))
    public = sink.to("/media/") + sink.to("/public/")
    assert len(public) == 2
    assert all(h.arrived >= staff_done for h in public)


async def test_staff_first_holds_across_updates(api: ApiHarness, sink: Sink) -> None:
    """Media in a second update waits for the staff message of the first one."""
    sink.delay["/staff/"] = 0.4
    api.app.state.notify_config = config = make_config(sink)
    kari = await api.user("kari", "operator", unit=UNIT)
    ola = await api.user("ola", "communication")
    incident = await _open(api, kari)
    staff = {
        "incident_id": incident,
        "groups": ["staff"],
        "facts": FACTS,
        "next_update_at": _soon(),
    }
    r = await api.client.post("/api/v1/notifications/updates", json=staff, headers=kari)
    assert r.status_code == 201
    media = {**staff, "groups": ["media", "public"]}
    r = await api.client.post("/api/v1/notifications/updates", json=media, headers=kari)
    assert r.status_code == 201
    assert {m["group"] for m in r.json()["messages"]} == {"media", "public"}  # staff exist
    r = await api.client.post(
        f"/api/v1/notifications/updates/{r.json()['id']}/approve", headers=ola
    )
    assert r.status_code == 200
    # Two shards: the staff messages and the public ones may fall to different processes.
    dispatchers = [Dispatcher(api.app.state.sessions, config, shard=(k, 2)) for k in range(2)]
    try:
        for _ in range(200):
            busy = [await d.run_once() for d in dispatchers]
            if not any(busy) and len(sink.to("/media/") + sink.to("/public/")) == 2:
                break
    finally:
        for d in dispatchers:
            await d.aclose()
    staff_done = max(h.answered for h in sink.to("/staff/"))
    public = sink.to("/media/") + sink.to("/public/")
    assert len(public) == 2 and all(h.arrived >= staff_done for h in public)
    held = [e.data for e in await _entries(api, incident) if e.data.get("status") == "held"]
    assert any("staff" in str(d.get("error")) for d in held)  # the hold is logged


async def test_a_media_update_is_refused_where_the_unit_has_no_staff_group(
    api: ApiHarness, sink: Sink
) -> None:
    api.app.state.notify_config = make_config(sink)  # staff groups for agder-froland only
    admin = await api.user("admin", "admin")
    incident = await _open(api, admin, unit="ringerike")
    body = {
        "incident_id": incident,
        "groups": ["media"],
        "facts": FACTS,
        "next_update_at": _soon(),
    }
    r = await api.client.post("/api/v1/notifications/updates", json=body, headers=admin)
    assert r.status_code == 409, r.text
    error = r.json()["errors"][0]
    assert error["field"] == "groups" and error["principle"] == "ansatte-foerst"
    assert await _outbox(api, incident) == []


async def test_a_raw_media_row_without_staff_is_held_by_the_dispatcher(
    api: ApiHarness, sink: Sink
) -> None:
    """A row written past request_update (a bug, a migration) still waits for staff."""
    config = make_config(sink)
    kari = await api.user("kari", "operator", unit=UNIT)
    incident = await _open(api, kari)
    async with api.app.state.sessions() as session:
        update = NotifyUpdate(
            id="raw-1",
            incident_id=incident,
            template="update",
            facts=FACTS,
            facts_hash="x",
            groups=["media"],
            next_update_at=utcnow() + timedelta(hours=1),
            author="user:kari",
            approval_required=True,
            approved_by="user:ola",
        )
        session.add(update)
        session.add(
            OutboxMessage(
                update_id="raw-1",
                incident_id=incident,
                group="media",
                group_id="g-media",
                recipient="ntb",
                language="nb",
                title="t",
                body="b",
            )
        )
        await session.commit()
    dispatcher = Dispatcher(api.app.state.sessions, config)
    try:
        await _dispatch_until_quiet(dispatcher)
    finally:
        await dispatcher.aclose()
    assert not sink.to("/media/")
    [row] = await _outbox(api, incident)
    assert row.status == MessageStatus.HELD


# --- situation reports, inmates, translations -----------------------------------------


async def test_a_sitrep_without_next_update_is_not_approved(api: ApiHarness, sink: Sink) -> None:
    api.app.state.notify_config = make_config(sink)
    kari = await api.user("kari", "operator", unit=UNIT)
    ola = await api.user("ola", "operator", unit=UNIT)
    incident = await _open(api, kari)
    r = await api.client.post(
        f"/api/v1/incidents/{incident}/sitreps", json={"situation": "Brann"}, headers=kari
    )
    assert r.status_code == 201, r.text
    sitrep = r.json()
    approve = f"/api/v1/sitreps/{sitrep['id']}/approve"
    r = await api.client.post(approve, json={"version": 1}, headers=ola)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "next_update_at"
    r = await api.client.get(f"/api/v1/sitreps/{sitrep['id']}", headers=kari)
    assert r.json()["status"] == "draft"
    assert not [e for e in await _entries(api, incident) if e.data.get("action") == "approved"]

    r = await api.client.post(
        f"/api/v1/sitreps/{sitrep['id']}/versions",
        json={"situation": "Brann", "next_update_at": _soon()},
        headers=kari,
    )
    assert r.status_code == 201
    r = await api.client.post(approve, json={"version": 2}, headers=ola)
    assert r.status_code == 200, r.text
    # Queued in the approval's transaction: the ministry's message exists once it answered.
    ministry = [m for m in await _outbox(api, incident) if m.group == "ministry"]
    assert [m.status for m in ministry] == [MessageStatus.PENDING]  # the test's one JD contact


async def test_inmates_hear_only_approved_text_without_internal_tasks(
    api: ApiHarness, sink: Sink
) -> None:
    config = _with_inmates(sink)
    kari = await api.user("kari", "operator", unit=UNIT)
    incident = await _open(api, kari)
    r = await api.client.post(
        f"/api/v1/incidents/{incident}/entries",
        json={
            "kind": "task",
            "text": "oppgave",
            "title": "Varsle politiet med signalement",
            "responsible_role": "on_duty",
        },
        headers=kari,
    )
    assert r.status_code == 201, r.text
    plan = _plan(incident, 99, ("ansatte", "staff"), ("innsatte", "inmates"), playbook="romning")
    async with api.app.state.sessions() as session:
        updates = await queue_plan(session, entry=plan, config=config)
        await session.commit()
    assert len(updates) == 2
    staff = [m for m in await _outbox(api, incident) if m.group == "staff"]
    assert staff and "Varsle politiet med signalement" in staff[0].body
    inmate_update = next(u for u in updates if "rule:romning/notify/innsatte" in u.author)
    assert inmate_update.approval_required
    [screen] = [m for m in await _outbox(api, incident) if m.group == "inmates"]
    assert screen.status == MessageStatus.AWAITING_APPROVAL
    assert "Varsle politiet" not in screen.body and "Brann" not in screen.body


async def test_an_update_to_inmates_waits_for_a_second_person(api: ApiHarness, sink: Sink) -> None:
    api.app.state.notify_config = _with_inmates(sink)
    kari = await api.user("kari", "operator", unit=UNIT)
    incident = await _open(api, kari)
    body = {
        "incident_id": incident,
        "groups": ["inmates"],
        "facts": FACTS,
        "next_update_at": _soon(),
    }
    r = await api.client.post("/api/v1/notifications/updates", json=body, headers=kari)
    assert r.status_code == 201, r.text
    assert r.json()["approval_required"] is True
    assert [m["status"] for m in r.json()["messages"]] == ["awaiting_approval"]


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("admin", True),
        ("kdi", True),
        ("communication", False),
        ("operator", False),
        ("region", False),
        ("ministry", False),
        ("exercise-controller", False),
    ],
)
async def test_translation_approval_is_for_admin_and_kdi(
    api: ApiHarness, role: str, allowed: bool
) -> None:
    headers = await api.user("u", role, unit=UNIT, region="sor")
    r = await api.client.post(
        "/api/v1/notifications/translations/approve",
        json={"template": "update", "language": "pl"},
        headers=headers,
    )
    assert r.status_code == (201 if allowed else 403), r.text
    if allowed:
        assert r.json()["approved_by"] == "user:u"


async def test_the_ministry_cannot_report_and_communication_decides_no_coercion(
    api: ApiHarness,
) -> None:
    jd = await api.user("jd", "ministry")
    r = await api.client.post(
        "/api/v1/reports",
        json={"unit": UNIT, "category": "brann", "place": "A", "what": "røyk"},
        headers=jd,
    )
    assert r.status_code == 403, r.text
    kari = await api.user("kari", "operator", unit=UNIT)
    com = await api.user("com", "communication")
    incident = await _open(api, kari)
    coercive = {
        "kind": "decision",
        "text": "Innelåsing av avdeling A",
        "measure": "innelasing",
        "legal_basis": "straffegjennomføringsloven § 37",
        "proportionality": "nødvendig",
        "alternatives": "ingen",
    }
    url = f"/api/v1/incidents/{incident}/entries"
    r = await api.client.post(url, json=coercive, headers=com)
    assert r.status_code == 403 and r.json()["errors"][0]["action"] == "coercive_decision"
    r = await api.client.post(url, json={**coercive, "kind": "observation"}, headers=com)
    assert r.status_code == 403  # the same measure as an "observation"
    r = await api.client.post(url, json=coercive, headers=kari)
    assert r.status_code == 201, r.text
