"""Situation reports: a draft written from the log, versions, approval by the accountable role.

The flow is CIM's draft → comments → approval. A draft's first version is composed from
the incident's log (situation, actions taken, decisions, needs, next update — the fields
of CIM's situation report and ICS-209). Anyone who may write to the incident can add a
version; only the accountable role approves, and only the newest version. Versions are
appended, never changed; each version and the approval are also entries in the
incident's crisis log, and the approval's promised next update becomes the incident's
``next_update_at`` (what the board counts down to). The ministry sees approved reports only.

Who is accountable (``can_approve``), following ansvarsprinsippet and the daily line:
the owning unit's operators; the owning unit's region once the incident is handled at
region level or above; KDI and admins always. Communication staff, the ministry and
exercise controllers never approve.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis import log
from crisis.clock import utcnow
from crisis.domain.vocabulary import EntryKind, Level, Person, Role
from crisis.log import labels, projection
from crisis.log.append import append
from crisis.log.models import Incident, LogEntry, SitRep, SitRepFields, SitRepStatus, SitRepVersion

OSLO = ZoneInfo("Europe/Oslo")
DEFAULT_UPDATE_INTERVAL = timedelta(hours=1)
#: A report field's length limit (``SitRepFields``, the ``sitrep_versions`` columns).
FIELD_LIMIT = 20_000
#: The last line of a composed field that was cut to fit ``FIELD_LIMIT``.
SHORTENED = "… (forkortet: teksten var for lang, se loggen for resten)"
NO_NEEDS = "Ingen behov meldt."
#: Needs lines the draft composes from the log itself (not carried from an earlier report).
_COMPOSED_NEEDS = ("- Støtte fra ", "- Gjenstår: ")


class SitRepError(Exception):
    """A refused sitrep operation; ``field`` names what is wrong, ``status`` the HTTP code."""

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status


@dataclass(frozen=True)
class SitRepView:
    """A report with the version a reader gets (the approved one for the ministry)."""

    report: SitRep
    version: SitRepVersion
    versions: list[SitRepVersion]


def can_approve(user: Person, incident: Incident, *, region_of_owner: str | None) -> bool:
    if user.role in (Role.ADMIN, Role.KDI):
        return True
    if user.role == Role.OPERATOR:
        return user.unit == incident.unit
    if user.role == Role.REGION:
        return (
            region_of_owner is not None
            and user.region == region_of_owner
            and incident.level != Level.UNIT.value
        )
    return False


def _oslo(at: datetime) -> str:
    return at.astimezone(OSLO).strftime("%d.%m.%Y %H:%M")


def _next_slot(now: datetime) -> datetime:
    """An hour from now, rounded up to the quarter hour: a promise people can keep."""
    at = now + DEFAULT_UPDATE_INTERVAL
    extra = (15 - at.minute % 15) % 15
    return (at + timedelta(minutes=extra)).replace(second=0, microsecond=0)


def _carried_needs(entries: Sequence[LogEntry], *, composed: Sequence[str]) -> list[str]:
    """The needs staff wrote into the newest report, for the next draft to carry forward.

    Only the newest version of a report counts (the latest state). Its lines that the
    log yields afresh — support asked for, needs from entries, open tasks, "none" — are
    left out: the draft composes those from the log as it is now, so a task done since is
    no longer a need and nothing is counted twice.
    """
    newest = next(
        (
            e
            for e in reversed(entries)
            if e.kind == EntryKind.SITUATION_REPORT and e.data.get("action") == "version"
        ),
        None,
    )
    if newest is None or not isinstance(newest.data.get("needs"), str):
        return []
    fresh = {line.strip() for item in composed for line in item.splitlines()}
    carried: list[str] = []
    for line in newest.data["needs"].splitlines():
        bare = line.strip()
        if (
            not bare
            or bare in fresh
            or bare in (NO_NEEDS, SHORTENED)
            or bare.startswith(_COMPOSED_NEEDS)
            or line in carried
        ):
            continue
        carried.append(line)
    return carried


def _fit(text: str, limit: int = FIELD_LIMIT) -> str:
    """``text`` within a field's limit: the tail is cut at a line break, with a visible note.

    A draft is for staff to edit, so a long one is shortened rather than refused; what is
    first (the log's own state) is kept, what is last (carried forward) goes.
    """
    if len(text) <= limit:
        return text
    head = text[: limit - len(SHORTENED) - 1]
    if "\n" in head:
        head = head[: head.rindex("\n")]
    return f"{head}\n{SHORTENED}"


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _delivery_summary(totals: dict[str, int]) -> str:
    """Recipients per delivery status, in words: "3 sendt, 1 feilet"."""
    order = {s: i for i, s in enumerate(labels.DELIVERY_STATUSES)}
    return ", ".join(
        f"{n} {labels.label('delivery', status)}"
        for status, n in sorted(totals.items(), key=lambda kv: order.get(kv[0], 99))
    )


def compose_draft(
    incident: Incident,
    entries: Sequence[LogEntry],
    *,
    now: datetime,
    unit_names: Mapping[str, str] | None = None,
) -> SitRepFields:
    """The first version of a report, written from the log alone (pure), in plain bokmål:
    a ministry reader gets words, not the log's codes (``crisis.log.labels``)."""
    unit = (unit_names or {}).get(incident.unit, incident.unit)
    who = labels.role(incident.accountable_role) if incident.accountable_role else ""
    person = incident.accountable_person
    accountable = " ".join(x for x in (who, person) if x)
    lines = [
        f"{incident.title}. {labels.label('type', incident.type)} ved {unit}. "
        f"Alvorlighetsgrad {incident.severity} av 5. "
        f"Hendelsen håndteres på {labels.label('level', incident.level)}"
        + (f", ansvarlig er {accountable}." if accountable else ".")
    ]
    if incident.exercise:
        lines.insert(0, f"ØVELSE ({incident.exercise}).")
    observed = [e for e in entries if e.kind in ("observation", "source_event") and e.text]
    for e in observed[-5:]:
        lines.append(f"- {_oslo(e.at)}: {labels.humanise(e.text)}")

    actions: list[str] = []
    for t in projection.tasks(entries):
        status = labels.label("task", t.status)
        actions.append(f"- Tiltak: {t.title} ({labels.role(t.responsible_role)}) — {status}")
    for c in projection.contacts(entries):
        kind = labels.label("actor_kind", c.kind)
        name = f"{c.name} ({kind})" if c.name and c.name != kind else kind
        actions.append(f"- Samvirke: {name} — {labels.label('contact', c.status)}")
    # One line per group, summed over its updates: every approved report sends one to the
    # ministry, so a line per update would make each report longer than the last.
    per_group: dict[str, tuple[int, dict[str, int]]] = {}
    for g in projection.notifications(entries):
        updates, totals = per_group.get(g.group, (0, {}))
        for k, v in g.counts.items():
            totals[k] = totals.get(k, 0) + v
        per_group[g.group] = (updates + 1, totals)
    for group, (updates, totals) in per_group.items():
        sent = f" ({_plural(updates, 'utsendelse', 'utsendelser')})" if updates > 1 else ""
        actions.append(
            f"- Varsling til {labels.label('group', group)}{sent}: {_delivery_summary(totals)}"
        )
    for e in projection.escalations(entries):
        target = labels.label("level", str(e.data.get("to")))
        reason = str(e.data.get("reason") or "").strip()
        actions.append(
            f"- {_oslo(e.at)}: Eskalert til {target}" + (f": {reason}" if reason else "")
        )

    decided: list[str] = []
    for e in projection.decisions(entries):
        extra = []
        if e.data.get("measure"):
            extra.append(f"tiltak: {e.data['measure']}")
        if e.data.get("legal_basis"):
            extra.append(f"hjemmel: {e.data['legal_basis']}")
        suffix = f" ({'; '.join(extra)})" if extra else ""
        decided.append(f"- {_oslo(e.at)}: {labels.humanise(e.text)}{suffix}")

    needs: list[str] = []
    for e in projection.escalations(entries):
        criteria = ", ".join(str(c) for c in e.data.get("criteria") or [])
        needs.append(
            f"- Støtte fra {labels.label('level', str(e.data.get('to')))}: "
            f"{e.data.get('reason', '')}" + (f" (kriterier: {criteria})" if criteria else "")
        )
    for e in entries:
        # A report's own needs are in its log entry too; those are carried forward below,
        # from the newest report only — never copied from every earlier one (issue 15).
        if e.kind != EntryKind.SITUATION_REPORT and e.data.get("needs"):
            line = f"- {e.data['needs']}"
            if line not in needs:
                needs.append(line)
    open_tasks = [t for t in projection.tasks(entries) if not t.done]
    for t in open_tasks:
        due = f", frist {_oslo(t.deadline)}" if t.deadline else ""
        needs.append(f"- Gjenstår: {t.title} ({labels.role(t.responsible_role)}{due})")
    needs.extend(_carried_needs(entries, composed=needs))

    promised = incident.next_update_at
    next_update = promised if promised is not None and promised > now else _next_slot(now)
    return SitRepFields(
        situation=_fit("\n".join(lines)),
        actions=_fit("\n".join(actions) or "Ingen tiltak registrert ennå."),
        decisions=_fit("\n".join(decided) or "Ingen beslutninger registrert ennå."),
        needs=_fit("\n".join(needs) or NO_NEEDS),
        next_update_at=next_update,
    )


async def _incident(session: AsyncSession, incident_id: str) -> Incident:
    incident = await session.get(Incident, incident_id)
    if incident is None:
        raise log.IncidentNotFound(incident_id)
    return incident


async def _versions(session: AsyncSession, sitrep_id: int) -> list[SitRepVersion]:
    rows = await session.exec(
        select(SitRepVersion)
        .where(SitRepVersion.sitrep_id == sitrep_id)
        .order_by(col(SitRepVersion.version))
    )
    return list(rows.all())


def _fields_payload(fields: SitRepFields) -> dict[str, Any]:
    return {
        "situation": fields.situation,
        "actions": fields.actions,
        "decisions": fields.decisions,
        "needs": fields.needs,
        "report_next_update_at": fields.next_update_at,
    }


async def _append_version(
    session: AsyncSession,
    *,
    report: SitRep,
    number: int,
    fields: SitRepFields,
    actor: str,
    note: str,
) -> SitRepVersion:
    assert report.id is not None
    entry = await append(
        session,
        incident_id=report.incident_id,
        kind=EntryKind.SITUATION_REPORT.value,
        actor=actor,
        text=f"Situasjonsrapport nr. {report.number}, versjon {number}"
        + (f": {note}" if note else ""),
        data={
            "sitrep": report.number,
            "sitrep_id": report.id,
            "version": number,
            "action": "version",
            **_fields_payload(fields),
        },
    )
    version = SitRepVersion(
        sitrep_id=report.id,
        version=number,
        author=actor,
        at=entry.at,
        note=note,
        log_seq=entry.seq,
        **fields.model_dump(),
    )
    session.add(version)
    await session.flush()
    return version


async def create_draft(
    session: AsyncSession,
    *,
    incident_id: str,
    actor: str,
    fields: SitRepFields | None = None,
    now: datetime | None = None,
    unit_names: Mapping[str, str] | None = None,
) -> tuple[SitRep, SitRepVersion]:
    """A new report whose first version is composed from the log (unless ``fields`` given)."""
    now = now or utcnow()
    incident = await _incident(session, incident_id)
    if fields is None:
        entries = await log.timeline(session, incident_id)
        fields = compose_draft(incident, entries, now=now, unit_names=unit_names)
    last = await session.exec(
        select(func.max(SitRep.number)).where(SitRep.incident_id == incident_id)
    )
    report = SitRep(
        incident_id=incident_id,
        number=(last.one() or 0) + 1,
        exercise=incident.exercise,
        created_by=actor,
        created_at=now,
    )
    session.add(report)
    await session.flush()
    version = await _append_version(
        session, report=report, number=1, fields=fields, actor=actor, note="utkast fra loggen"
    )
    return report, version


async def get(session: AsyncSession, sitrep_id: int) -> SitRep:
    report = await session.get(SitRep, sitrep_id)
    if report is None:
        raise SitRepError("sitrep", f"no situation report {sitrep_id}", status=404)
    return report


async def add_version(
    session: AsyncSession, *, sitrep_id: int, actor: str, fields: SitRepFields, note: str = ""
) -> SitRepVersion:
    """An edit or comment: a new version; an approved report is closed for edits."""
    report = await get(session, sitrep_id)
    if report.status != SitRepStatus.DRAFT:
        raise SitRepError(
            "status", "the report is approved; write a new report for the next update", 409
        )
    versions = await _versions(session, sitrep_id)
    return await _append_version(
        session,
        report=report,
        number=len(versions) + 1,
        fields=fields,
        actor=actor,
        note=note,
    )


async def approve(
    session: AsyncSession,
    *,
    sitrep_id: int,
    user: Person,
    version: int,
    region_of_owner: str | None,
) -> SitRep:
    """Approve the newest version; logs it and promises the next update on the incident."""
    report = await get(session, sitrep_id)
    incident = await _incident(session, report.incident_id)
    if not can_approve(user, incident, region_of_owner=region_of_owner):
        raise SitRepError(
            "user",
            "only the incident's accountable role approves a situation report "
            "(the owning unit, its region from region level, KDI)",
            403,
        )
    if report.status != SitRepStatus.DRAFT:
        raise SitRepError("status", "the report is already approved", 409)
    versions = await _versions(session, sitrep_id)
    if not versions or versions[-1].version != version:
        newest = versions[-1].version if versions else None
        raise SitRepError(
            "version", f"approve the newest version ({newest}); version {version} is not it", 409
        )
    chosen = versions[-1]
    if chosen.next_update_at is None:
        raise SitRepError(
            "next_update_at",
            "en situasjonsrapport sier når neste oppdatering kommer: legg inn tidspunktet i en "
            "ny versjon / a situation report says when the next update comes: add it in a "
            "new version before approving",
            422,
        )
    actor = f"user:{user.name}"
    entry = await append(
        session,
        incident_id=report.incident_id,
        kind=EntryKind.SITUATION_REPORT.value,
        actor=actor,
        text=f"Situasjonsrapport nr. {report.number} godkjent (versjon {version})",
        data={
            "sitrep": report.number,
            "sitrep_id": report.id,
            "version": version,
            "action": "approved",
            "next_update_at": chosen.next_update_at,
        },
    )
    report.status = SitRepStatus.APPROVED.value
    report.approved_version = version
    report.approved_by = actor
    report.approved_at = entry.at
    session.add(report)
    await session.flush()
    return report


async def view(session: AsyncSession, *, sitrep_id: int, approved_only: bool) -> SitRepView:
    """The report as a reader sees it; for ``approved_only`` readers a draft does not exist."""
    report = await get(session, sitrep_id)
    versions = await _versions(session, sitrep_id)
    if approved_only:
        if report.status != SitRepStatus.APPROVED:
            raise SitRepError("sitrep", f"no situation report {sitrep_id}", status=404)
        chosen = next(v for v in versions if v.version == report.approved_version)
        return SitRepView(report, chosen, [chosen])
    return SitRepView(report, versions[-1], versions)


async def list_reports(
    session: AsyncSession,
    *,
    incident_id: str | None = None,
    approved_only: bool,
    units: frozenset[str] | None = None,
    include_exercises: bool = True,
) -> list[SitRep]:
    stmt = select(SitRep).order_by(col(SitRep.created_at).desc())
    if incident_id is not None:
        stmt = stmt.where(SitRep.incident_id == incident_id)
    if approved_only:
        stmt = stmt.where(SitRep.status == SitRepStatus.APPROVED.value)
    if not include_exercises:
        stmt = stmt.where(col(SitRep.exercise).is_(None))
    if units is not None:
        stmt = stmt.join(Incident, Incident.id == SitRep.incident_id).where(  # type: ignore[arg-type]
            col(Incident.unit).in_(units)
        )
    return list((await session.exec(stmt)).all())
