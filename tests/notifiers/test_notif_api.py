"""The notifications API: request, two-person approval, the confirmation link, correction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlmodel import select

from crisis.clock import utcnow
from crisis.log.models import LogEntry
from notifiers.dispatcher import Dispatcher
from notifiers.models import OutboxMessage
from tests.conftest import ApiHarness
from tests.notif_sink import Sink
from tests.notifiers.test_notif_dispatcher import FACTS, make_config


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = await Sink().start()
    yield s
    await s.stop()


async def test_request_approve_acknowledge_and_correct_over_http(
    api: ApiHarness, sink: Sink
) -> None:
    config = make_config(sink)
    api.app.state.notify_config = config
    kari = await api.user("kari", "operator", unit="agder-froland")
    ola = await api.user("ola", "communication")
    jd = await api.user("jd", "ministry")
    r = await api.client.post(
        "/api/v1/incidents",
        json={"type": "fire", "title": "Brann", "unit": "agder-froland", "severity": 4},
        headers=kari,
    )
    incident = r.json()["id"]
    body = {
        "incident_id": incident,
        "groups": ["leaders", "families"],
        "kind": "alarm",
        "facts": FACTS,
        "next_update_at": (utcnow() + timedelta(minutes=30)).isoformat(),
    }
    r = await api.client.post("/api/v1/notifications/updates", json=body, headers=kari)
    assert r.status_code == 201, r.text
    update = r.json()
    statuses = {m["recipient"]: m["status"] for m in update["messages"]}
    assert statuses == {"leader-a": "pending", "liaison": "awaiting_approval"}

    url = f"/api/v1/notifications/updates/{update['id']}/approve"
    r = await api.client.post(url, headers=kari)
    assert r.status_code == 403
    assert r.json()["errors"][0]["field"] == "approver"
    assert r.json()["errors"][0]["principle"] == "to-personsregel"
    assert (await api.client.post(url, headers=jd)).status_code == 403  # read-only role
    r = await api.client.post(url, headers=ola)
    assert r.status_code == 200 and r.json()["approved_by"] == "user:ola"

    dispatcher = Dispatcher(api.app.state.sessions, config)
    try:
        while len(sink.hits) < 2:
            assert await dispatcher.run_once() or sink.hits
    finally:
        await dispatcher.aclose()
    async with api.app.state.sessions() as session:
        leader = (
            await session.exec(select(OutboxMessage).where(OutboxMessage.recipient == "leader-a"))
        ).one()
    assert leader.ack_code and leader.ack_code in sink.to("/leader/a")[0].body["message"]
    r = await api.client.post(f"/api/v1/notifications/ack/{leader.ack_code}")  # no login: the code
    assert r.status_code == 200 and "leader-a" in r.text
    assert (await api.client.post("/api/v1/notifications/ack/nope")).status_code == 404
    async with api.app.state.sessions() as session:
        entries = (
            await session.exec(select(LogEntry).where(LogEntry.incident_id == incident))
        ).all()
    acked = [e.data for e in entries if e.data.get("status") == "acknowledged"]
    assert acked and acked[0]["acknowledged_by"] == "recipient:leader-a"

    r = await api.client.post(
        f"/api/v1/notifications/updates/{update['id']}/correct",
        json={"facts": {"known": "Falsk alarm.", "actions": "Ingen."}, "cancel": True},
        headers=kari,
    )
    assert r.status_code == 422  # no next-update time
    r = await api.client.post(
        f"/api/v1/notifications/updates/{update['id']}/correct",
        json={
            "facts": {"known": "Falsk alarm.", "actions": "Ingen."},
            "cancel": True,
            "next_update_at": (utcnow() + timedelta(hours=1)).isoformat(),
        },
        headers=kari,
    )
    assert r.status_code == 201, r.text
    assert {m["recipient"] for m in r.json()["messages"]} == {"leader-a", "liaison"}
    assert r.json()["kind"] == "cancellation"


async def test_bad_requests_are_refused_with_the_error_shape(api: ApiHarness, sink: Sink) -> None:
    api.app.state.notify_config = make_config(sink)
    kari = await api.user("kari", "operator", unit="agder-froland")
    r = await api.client.post(
        "/api/v1/incidents",
        json={"type": "fire", "title": "Brann", "unit": "agder-froland", "severity": 4},
        headers=kari,
    )
    incident = r.json()["id"]
    r = await api.client.post(
        "/api/v1/notifications/updates",
        json={"incident_id": incident, "groups": ["staff"], "facts": FACTS},
        headers=kari,
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "next_update_at"
    r = await api.client.post(
        "/api/v1/notifications/updates",
        json={
            "incident_id": incident,
            "groups": ["press"],
            "facts": FACTS,
            "next_update_at": utcnow().isoformat(),
        },
        headers=kari,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "groups"
