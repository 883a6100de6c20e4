"""A closed incident with every section of a report: persons, a coercive decision, a task,
notification receipts, a situation report, an escalation and the close (for report tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from crisis.domain.rules import NOTIFIER_ACTOR
from crisis.log import sitreps
from crisis.log.append import EntrySpec, append, append_many, close_incident, open_incident
from crisis.log.models import IncidentCreate, SitRepFields

INMATE = "innsatt-4711"
T0 = datetime(2026, 11, 22, 1, 41, 7, tzinfo=UTC)


class Viewer:
    """A Person for the pure builder."""

    def __init__(self, name: str, role: str, unit: str | None = None) -> None:
        self.name, self.role, self.unit, self.region = name, role, unit, None


async def build_incident(
    session: AsyncSession,
    *,
    incident_id: str = "inc-rep",
    unit: str = "ringerike",
    exercise: str | None = None,
    observations: int = 0,
    close: bool = True,
) -> str:
    await open_incident(
        session,
        incident=IncidentCreate(
            type="fire_alarm",
            title="Brann i avdeling A – Ærlig øvelse på Øya",
            unit=unit,
            severity=4,
            exercise=exercise,
            accountable_role="fengselsleder",
            accountable_person="Åse Ødegård",
        ),
        actor="system:pipeline",
        incident_id=incident_id,
        at=T0,
    )
    await append(
        session,
        incident_id=incident_id,
        kind="observation",
        actor="user:kari",
        text="Røyk i celle A2-114",
        data={"inmate_ref": INMATE},
        at=T0 + timedelta(minutes=1),
    )
    await append(
        session,
        incident_id=incident_id,
        kind="decision",
        actor="user:kari",
        text="Avdelingen låses ned",
        data={
            "measure": "innelasing",
            "legal_basis": "straffegjennomføringsloven § 37",
            "proportionality": "nødvendig for å evakuere",
            "alternatives": "flytting til annen avdeling vurdert",
        },
        at=T0 + timedelta(minutes=2),
    )
    task = await append(
        session,
        incident_id=incident_id,
        kind="task",
        actor="rule:brann/evakuer",
        text="Evakuer avdeling A",
        data={"title": "Evakuer avdeling A", "responsible_role": "vakthavende"},
        at=T0 + timedelta(minutes=3),
    )
    await append(
        session,
        incident_id=incident_id,
        kind="task_update",
        actor="user:kari",
        text="Evakuert",
        data={"task": task.seq, "status": "done"},
        at=T0 + timedelta(minutes=9),
    )
    receipts = [
        EntrySpec(
            kind="message",
            actor=NOTIFIER_ACTOR,
            text=f"Varsel til {who}: {status}",
            data={
                "update_id": "u-1",
                "group": group,
                "recipient": who,
                "status": status,
                "channel": "sms",
            },
        )
        for who, group, status in (
            ("ola.vakt", "staff", "sent"),
            ("per.vakt", "staff", "sent"),
            ("kdi-vakt", "kdi", "failed"),
        )
    ]
    await append_many(
        session, incident_id=incident_id, specs=receipts, at=T0 + timedelta(minutes=4)
    )
    if observations:
        specs = [
            EntrySpec(kind="observation", actor="user:ola", text=f"Observasjon {n}")
            for n in range(observations)
        ]
        await append_many(
            session, incident_id=incident_id, specs=specs, at=T0 + timedelta(minutes=5)
        )
    report, version = await sitreps.create_draft(
        session,
        incident_id=incident_id,
        actor="user:kari",
        fields=SitRepFields(
            situation="Brannen er slukket",
            actions="Evakuert",
            decisions="Innelåsing",
            needs="Ingen",
            next_update_at=T0 + timedelta(hours=2),
        ),
        now=T0 + timedelta(minutes=10),
    )
    await sitreps.approve(
        session,
        sitrep_id=report.id or 0,
        user=Viewer("kari", "admin"),
        version=version.version,
        region_of_owner=None,
    )
    if close:
        await close_incident(
            session,
            incident_id=incident_id,
            reason="Brannen er slukket",
            final_situation="Alle innsatte tilbake i cellene",
            actor="user:kari",
        )
    await session.commit()
    return incident_id
