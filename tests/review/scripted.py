"""A scripted incident whose every entry has a time known to the second.

Entries go through the append service with its ``at`` keyword (``open_incident``,
``append``, ``append_bulk``), in the shapes the pipeline, the playbook engine, the notifiers
and situation reports write, so the metrics read exactly what production writes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from crisis.domain.rules import NOTIFIER_ACTOR
from crisis.log.append import EntrySpec, append, append_bulk, open_incident
from crisis.log.chain import format_time
from crisis.log.models import IncidentCreate

T0 = datetime(2026, 11, 22, 2, 41, 7, tzinfo=UTC)  # the first event (a breath sensor)
RULE = "rule:breath-absent/"
PLAYBOOK = {"playbook": "breath-absent"}


def at(seconds: float, t0: datetime = T0) -> datetime:
    return t0 + timedelta(seconds=seconds)


def iso(seconds: float, t0: datetime = T0) -> str:
    return format_time(at(seconds, t0))


async def _receipt(
    session: AsyncSession, incident_id: str, seconds: float, t0: datetime, **data: Any
) -> None:
    base = {"update_id": "u1", "facts_hash": "f", "attempt": 1, "error": None, "channel": "sms"}
    spec = EntrySpec("message", NOTIFIER_ACTOR, f"Varsel {data['status']}", {**base, **data})
    await append_bulk(session, entries=[(incident_id, spec)], at=at(seconds, t0))


async def scripted_incident(
    session: AsyncSession,
    *,
    incident_id: str,
    t0: datetime = T0,
    unit: str = "agder-froland",
    incident_type: str = "breath_motion_absent",
    exercise: str | None = None,
    public_first: bool = False,
    close: bool = True,
) -> None:
    """The script of the tests' expectations (``EXPECTED``); ``public_first`` sends the
    media message before any staff message was delivered."""

    async def add(seconds: float, kind: str, actor: str, **data: Any) -> int:
        text = str(data.pop("text", kind))
        entry = await append(
            session,
            incident_id=incident_id,
            kind=kind,
            actor=actor,
            text=text,
            data=data,
            at=at(seconds, t0),
        )
        return entry.seq

    async def receipt(seconds: float, **data: Any) -> None:
        await _receipt(session, incident_id, seconds, t0, **data)

    await open_incident(
        session,
        incident=IncidentCreate(
            type=incident_type,
            title="Pust mangler, celle A2-114",
            unit=unit,
            severity=5,
            exercise=exercise,
        ),
        actor="system:ingest",
        data={"source": "/units/x/sensors/a2-114", "id": "e1", "event_time": iso(0, t0)},
        at=at(23, t0),
        incident_id=incident_id,
    )
    # a late arrival from before the opening, and a later event that is not the first
    await add(50, "source_event", "system:ingest", event_time=iso(10, t0), id="e2")
    await add(61, "source_event", "system:ingest", event_time=iso(60, t0), id="e3")
    if public_first:
        await receipt(62, message_id=3, group="media", recipient="nwire", status="sent")
        await receipt(90, message_id=1, group="staff", recipient="p1", status="sent", contact=0)
    await add(
        95,
        "decision",
        RULE + "owner",
        **PLAYBOOK,
        rule="owner",
        new_owner=unit,
        new_accountable_role="leader",
        new_accountable_person="Fengselsleder",
    )
    await add(
        95,
        "message",
        RULE + "notify",
        **PLAYBOOK,
        rule="notify",
        message_type="notification_request",
        plan=[],
        next_update_at=iso(3600, t0),
    )
    task = {"responsible_role": "on_duty", **PLAYBOOK}
    a = await add(96, "task", RULE + "a", title="A", card="a", deadline=iso(600, t0), **task)
    b = await add(96, "task", RULE + "b", title="B", card="b", deadline=iso(900, t0), **task)
    await add(96, "task", RULE + "c", title="C", card="c", deadline=iso(1800, t0), **task)
    await add(96, "task", "user:op", title="D uten frist", responsible_role="on_duty")
    await receipt(100, message_id=1, group="staff", recipient="p1", status="queued")
    await receipt(100, message_id=3, group="media", recipient="nwire", status="held")
    await receipt(130, message_id=1, group="staff", recipient="p1", status="sent", contact=0)
    await receipt(131, message_id=2, group="leaders", recipient="p2", status="failed", contact=0)
    await receipt(140, message_id=2, group="leaders", recipient="p2", status="sent", contact=1)
    await receipt(190, message_id=1, group="staff", recipient="p1", status="acknowledged")
    await add(
        300,
        "escalation",
        RULE + "esc",
        **PLAYBOOK,
        rule="esc",
        to="region",
        reason="r",
        **{"from": "unit"},
    )
    await receipt(
        430, message_id=5, group="staff", recipient="p5", status="timed_out", escalated_to="p6"
    )
    await add(480, "task_update", "user:op", task=a, status="done")
    await receipt(600, message_id=3, group="media", recipient="nwire", status="queued")
    await receipt(660, message_id=3, group="media", recipient="nwire", status="sent")
    await receipt(700, message_id=4, group="families", recipient="p4", status="failed", contact=0)
    await add(1200, "task_update", "user:op", task=b, status="done")
    await add(1500, "escalation", "user:op", to="kdi", reason="mer støtte", **{"from": "region"})
    await add(3000, "situation_report", "user:op", action="approved", next_update_at=iso(6600, t0))
    await add(6900, "situation_report", "user:op", action="approved", next_update_at=iso(10500, t0))
    if close:
        await add(
            7800,
            "status_change",
            "user:op",
            status="closed",
            reason="avklart",
            final_situation="normal drift",
        )


#: What the metrics of ``scripted_incident`` are, to the second (from the first event T0).
EXPECTED: dict[str, Any] = {
    "first_event_at": iso(0),
    "opened_at": iso(23),
    "start_basis": "event",
    "detection_seconds": 23.0,
    "owner_set_at": iso(95),
    "owner_seconds": 95.0,
    "first_staff_delivered_at": iso(130),
    "staff_alarm_seconds": 130.0,
    "first_ack_at": iso(190),
    "first_ack_seconds": 190.0,
    "first_escalation_seconds": 300.0,
    "first_public_at": iso(660),
    "public_seconds": 660.0,
    "staff_before_public": True,
    "closed_at": iso(7800),
    "tasks_with_deadline": 3,
    "tasks_overdue": 2,
    "overdue_total_seconds": 300.0 + 6000.0,
    "overdue_max_seconds": 6000.0,
    "sitreps_approved": 2,
    "first_sitrep_seconds": 3000.0,
    "sitrep_intervals_seconds": [3900.0],
    "sitrep_interval_max_seconds": 3900.0,
    "promises_kept": 1,
    "promises_broken": 1,
    "deliveries": {
        "messages": 5,
        "attempts_failed": 2,
        "messages_failed": 1,
        "alternate_contact": 1,
        "unacknowledged_escalated": 1,
        "translation_fallback": 0,
        "blocked": 0,
    },
}
