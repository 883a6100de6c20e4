"""The plan → outbox flow: one update per plan item, never twice, exercise kept."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from crisis.clock import utcnow
from crisis.log.append import append, open_incident
from crisis.log.models import IncidentCreate, LogEntryPublic
from crisis.store.db import make_sessionmaker
from notifiers.config import load_notify_config
from notifiers.models import NotifyUpdate
from streams.notification_flow import is_plan, queue_plan


async def test_plan_items_become_updates_once(engine: AsyncEngine) -> None:
    config = load_notify_config(None)
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        incident, _ = await open_incident(
            session,
            incident=IncidentCreate(
                type="fire",
                title="Brannalarm, verksted",
                unit="agder-froland",
                severity=4,
                exercise="ovelse-1",
            ),
            actor="system:test",
        )
        later = utcnow() + timedelta(minutes=30)
        plan = await append(
            session,
            incident_id=incident.id,
            kind="message",
            actor="rule:brann/notify",
            text="Varslingsplan",
            data={
                "playbook": "brann",
                "message_type": "notification_request",
                "next_update_at": later.isoformat(),
                "plan": [
                    {"id": "ansatte", "group": "staff", "template": "varsel_ansatte"},
                    {"id": "media", "group": "media", "at": later.isoformat()},
                    {"id": "x", "group": "aliens"},
                ],
            },
        )
        await session.commit()
        entry = LogEntryPublic.model_validate(plan).model_dump(mode="json")
    assert is_plan(entry)
    async with sessions() as session:
        first = await queue_plan(session, entry=entry, config=config)
        await session.commit()
    async with sessions() as session:
        again = await queue_plan(session, entry=entry, config=config)
        await session.commit()
        updates = (await session.exec(select(NotifyUpdate))).all()
    assert len(first) == 2 and again == []
    kinds = {u.author.split("/")[-1].split("@")[0]: u for u in updates}
    assert kinds["ansatte"].kind == "alarm" and kinds["media"].kind == "update"
    assert kinds["media"].approval_required, "media waits for a second person"
    assert {u.exercise for u in updates} == {"ovelse-1"}
