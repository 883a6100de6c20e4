"""Property: over any sequence of board actions (updates, approvals, dispatcher passes,
retries), the local inbox holds exactly the messages whose receipts say delivered, never a
message still waiting for its second person, and in an exercise only participants' copies,
each marked ØVELSE."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlmodel import select

from crisis.clock import utcnow
from crisis.settings import Settings
from notifiers.config import parse_notify_config
from notifiers.dispatcher import Dispatcher
from notifiers.models import InboxMessage, MessageStatus, NotifyUpdate, OutboxMessage
from notifiers.rendering import EXERCISE_PREFIX
from tests.conftest import api_for

CONFIG = """
version: 1
delivery: {attempts_per_contact: 1, backoff_seconds: 0.01}
people:
  - {id: staff-a, name: A, contacts: [{channel: sms, url: "inbox://staff-a/sms"}]}
  - {id: staff-b, name: B, contacts: [{channel: email, url: "inbox://staff-b/email"}]}
  - {id: down, name: D, contacts: [{channel: sms, url: "json://127.0.0.1:9/x?cto=1"}]}
  - {id: fam, name: F, contacts: [{channel: sms, url: "inbox://fam/sms"}]}
groups:
  - {id: g-staff, kind: staff, unit: agder-froland, members: [staff-a, staff-b, down]}
  - {id: g-fam, kind: families, unit: agder-froland, members: [fam]}
exercises:
  ovelse-p: [staff-a, fam]
"""
ACTIONS = st.lists(
    st.sampled_from(["staff", "families", "approve", "dispatch", "retry"]), min_size=1, max_size=8
)
_people = itertools.count()


@pytest.mark.slow
@hsettings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(actions=ACTIONS, exercise=st.booleans())
def test_the_inbox_holds_exactly_what_was_delivered(
    actions: list[str], exercise: bool, settings: Settings
) -> None:
    asyncio.run(_run(actions, exercise, settings))


async def _run(actions: list[str], exercise: bool, settings_: Settings) -> None:
    config = parse_notify_config(CONFIG, "p.yaml")
    async with api_for(settings_) as api:
        api.app.state.notify_config = config
        n = next(_people)
        op = await api.user(f"op{n}", "operator", unit="agder-froland")
        other = await api.user(f"kdi{n}", "kdi")
        body: dict[str, Any] = {
            "type": "fire",
            "title": "B",
            "unit": "agder-froland",
            "severity": 3,
        }
        if exercise:
            body["exercise"] = "ovelse-p"
        incident = (await api.client.post("/api/v1/incidents", json=body, headers=op)).json()["id"]
        updates: list[str] = []
        dispatcher = Dispatcher(api.app.state.sessions, config)
        try:
            for action in actions:
                if action in ("staff", "families"):
                    r = await api.client.post(
                        "/api/v1/notifications/updates",
                        json={
                            "incident_id": incident,
                            "groups": [action],
                            "facts": {"title": "B", "known": "k", "actions": "a"},
                            "next_update_at": (utcnow() + timedelta(minutes=30)).isoformat(),
                        },
                        headers=op,
                    )
                    assert r.status_code == 201, r.text
                    updates.append(r.json()["id"])
                elif action == "approve" and updates:
                    url = f"/api/v1/notifications/updates/{updates[-1]}/approve"
                    assert (await api.client.post(url, headers=op)).status_code in (403, 409)
                    assert (await api.client.post(url, headers=other)).status_code in (200, 409)
                elif action == "dispatch":
                    while await dispatcher.run_once():
                        pass
                elif action == "retry" and updates:
                    failed = await _failed(api, updates[-1])
                    url = f"/api/v1/notifications/updates/{updates[-1]}/retry"
                    r = await api.client.post(url, json={}, headers=op)
                    assert r.status_code == (200 if failed else 409), r.text
                await _check(api, incident, exercise)
        finally:
            await dispatcher.aclose()


async def _failed(api: Any, update_id: str) -> int:
    async with api.app.state.sessions() as session:
        rows = await session.exec(
            select(OutboxMessage).where(
                OutboxMessage.update_id == update_id,
                OutboxMessage.status == MessageStatus.FAILED.value,
            )
        )
        return len(rows.all())


async def _check(api: Any, incident: str, exercise: bool) -> None:
    async with api.app.state.sessions() as session:
        inbox = (
            await session.exec(select(InboxMessage).where(InboxMessage.incident_id == incident))
        ).all()
        outbox = {
            m.id: m
            for m in (
                await session.exec(
                    select(OutboxMessage).where(OutboxMessage.incident_id == incident)
                )
            ).all()
        }
        updates = {
            u.id: u
            for u in (
                await session.exec(select(NotifyUpdate).where(NotifyUpdate.incident_id == incident))
            ).all()
        }
    delivered = {
        i
        for i, m in outbox.items()
        if m.status in ("sent", "acknowledged") and m.recipient != "down"
    }
    assert sorted(r.message_id for r in inbox) == sorted(delivered)  # each once, exactly these
    for row in inbox:
        message, update = outbox[row.message_id], updates[row.update_id]
        assert row.recipient == message.recipient and row.group == message.group
        if message.group == "families":
            assert update.approved_by is not None  # never before the second person
        if exercise:
            assert row.recipient in {"staff-a", "fam"} and row.exercise == "ovelse-p"
            assert row.body.startswith(EXERCISE_PREFIX)
        else:
            assert row.exercise is None
