"""The playbook engine: reacts to committed log entries with more log entries.

A service over :mod:`crisis.log` (flush, the caller commits). On an incident's opening it
applies *ansvarsprinsippet* (owner and accountable person, changed only by a logged decision),
turns action cards into tasks, creates cooperation contacts (*samvirkeprinsippet*) and hands
the notification plan to the notifiers; on every entry it evaluates the escalation criteria
and escalates one level (*nærhetsprinsippet*). Every entry it writes has the actor
``rule:<playbook>/<rule>`` and names both in its data. Reacting twice changes nothing: what a
rule already wrote is read back from the log first.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis import log
from crisis.clock import as_utc, utcnow
from crisis.domain import rules
from crisis.domain.organisation import Organisation, Person, Unit
from crisis.domain.vocabulary import LEVEL_ORDER, EntryKind, Level, Status
from crisis.log.append import EntrySpec, append, append_many, lock_incidents
from crisis.log.chain import format_time
from crisis.log.models import Incident, LogEntry
from crisis.sources.catalogue import incident_type_for
from playbooks.criteria import evaluate, event_view, facts_of, required_level, time_limits
from playbooks.duration import iso_duration
from playbooks.model import Card, Library, Playbook, RoleRef

_UNIT_IN_SOURCE = re.compile(r"/units/([a-z0-9-]+)")


@dataclass(frozen=True)
class Trigger:
    """The entry being reacted to, from a row or from its ``crisis.log`` JSON."""

    incident_id: str
    seq: int
    kind: str
    actor: str
    playbook: str | None

    @classmethod
    def of(cls, entry: LogEntry | Mapping[str, Any]) -> Trigger:
        if isinstance(entry, LogEntry):
            data: Any = entry.data
            return cls(entry.incident_id, entry.seq, entry.kind, entry.actor, data.get("playbook"))
        data = entry.get("data")
        return cls(
            str(entry["incident_id"]),
            int(entry.get("seq") or 0),
            str(entry.get("kind", "")),
            str(entry.get("actor", "")),
            data.get("playbook") if isinstance(data, Mapping) else None,
        )


def written_by_playbook(entry: LogEntry | Mapping[str, Any]) -> bool:
    """Entries a playbook rule wrote (the agent skips them so the engine never feeds itself)."""
    trigger = Trigger.of(entry)
    return trigger.actor.startswith("rule:") and bool(trigger.playbook)


def resolve(
    incident: Incident, opening: Mapping[str, Any], library: Library
) -> tuple[Playbook, str] | None:
    """(playbook, incident type): by the incident's type, else by what its event signals."""
    playbook = library.for_type(incident.type)
    if playbook is not None:
        return playbook, incident.type
    view = event_view(opening)
    for kind in (
        incident_type_for(view.type, view.data) if view.type else None,
        incident_type_for(incident.type, view.data or opening),
    ):
        playbook = library.for_type(kind) if kind else None
        if playbook is not None and kind is not None:
            return playbook, kind
    return None


# --- ansvarsprinsippet ------------------------------------------------------------------


def responsible_unit(
    incident: Incident, opening: Mapping[str, Any], org: Organisation, playbook: Playbook
) -> tuple[Unit, str]:
    """The unit responsible for the place or person the event concerns, and why.

    The playbook's ``owner`` rule decides; an event about an ankle tag is the probation
    office's whatever the playbook, and a cell's is its prison's.
    """
    view = event_view(opening)
    candidates = [view.unit]
    if view.source:
        match = _UNIT_IN_SOURCE.search(view.source)
        candidates.append(match.group(1) if match else None)
    candidates.append(incident.unit)
    unit_id = next((c for c in candidates if c and c in org.units), None)
    if unit_id is None:
        raise LookupError(f"no unit of the organisation for incident {incident.id}")
    unit = org.unit(unit_id)
    tag = view.data.get("tag")
    if playbook.owner == "probation_office" or tag:
        if unit.kind == "probation_office":
            return unit, f"fotlenke {tag or ''} følges opp av {unit.name}".replace("  ", " ")
        offices = [u for u in org.units_in_region(unit.region) if u.kind == "probation_office"]
        if offices:
            return offices[0], (
                f"fotlenke {tag or ''} følges opp av friomsorgskontoret i regionen, "
                f"{offices[0].name} (meldt fra {unit.name})"
            ).replace("  ", " ")
        return unit, f"ingen friomsorgskontor i regionen; {unit.name} har ansvaret"
    cell = view.data.get("cell")
    if cell:
        return unit, f"celle {cell} tilhører {unit.name}"
    if playbook.owner == "warning_area":
        return unit, f"farevarselet gjelder området til {unit.name}"
    raw_mentions = view.data.get("mentions_units")
    mentions = [u for u in raw_mentions if u in org.units] if isinstance(raw_mentions, list) else []
    if playbook.owner == "mentioned_unit" and mentions and not view.unit:
        return org.unit(mentions[0]), f"omtalen gjelder {org.unit(mentions[0]).name}"
    return unit, f"hendelsen skjedde ved {unit.name}"


def _holders(org: Organisation, unit: Unit, ref: RoleRef) -> tuple[str, tuple[Person, ...]]:
    """(id of the body holding the role, its persons) for a role reference."""
    if ref.level == "unit":
        return unit.id, unit.persons(ref.role)
    if ref.level == "region":
        region = org.region(unit.region)
        return region.id, region.persons(ref.role)
    body = org.directorate if ref.level == "kdi" else org.ministry
    return body.id, body.persons(ref.role)


# --- what the log already holds ---------------------------------------------------------


def _done_rules(entries: list[LogEntry], playbook: Playbook) -> set[str]:
    return {
        str(e.data.get("rule"))
        for e in entries
        if e.actor.startswith("rule:") and e.data.get("playbook") == playbook.id
    }


async def _fresh_incident(session: AsyncSession, incident_id: str) -> Incident | None:
    result = await session.exec(
        select(Incident).where(Incident.id == incident_id).execution_options(populate_existing=True)
    )
    return result.first()


# --- the reactions ----------------------------------------------------------------------


async def _setup(
    session: AsyncSession,
    *,
    incident: Incident,
    playbook: Playbook,
    kind: str,
    entries: list[LogEntry],
    org: Organisation,
    dry: bool = False,
) -> list[LogEntry | None]:
    """The setup entries (owner, severity, tasks, contacts, plan) not written before, appended
    in one go (``append_many``); ``dry`` only counts them (``None`` for each)."""
    specs: list[EntrySpec] = []
    done = _done_rules(entries, playbook)
    opening = entries[0].data if entries else {}
    base = {"playbook": playbook.id}

    def write(rule: str, entry_kind: str, text: str, data: dict[str, Any]) -> None:
        specs.append(
            EntrySpec(
                kind=entry_kind,
                actor=playbook.rule(rule),
                text=text,
                data={**base, "rule": rule, **data},
            )
        )

    # Ansvarsprinsippet: the owner and accountable person, by a decision when they change.
    owner_decided = any(e.kind == EntryKind.DECISION and "new_owner" in e.data for e in entries)
    owner_id = incident.unit
    if "owner" not in done and not owner_decided:
        unit, why = responsible_unit(incident, opening, org, playbook)
        role, person = unit.accountable_person()
        if (incident.unit, incident.accountable_role, incident.accountable_person) != (
            unit.id,
            role,
            person.name,
        ):
            owner_id = unit.id  # what the decision makes the incident's unit
            write(
                "owner",
                EntryKind.DECISION.value,
                f"Eier: {unit.name}, ansvarlig {role} {person.name} ({why})",
                {
                    "new_owner": unit.id,
                    "new_accountable_role": role,
                    "new_accountable_person": person.name,
                    "previous_owner": incident.unit,
                    "reason": why,
                    "principle": "ansvarsprinsippet",
                },
            )
    owner = org.unit(owner_id)
    start = as_utc(incident.opened_at)

    # Default severity and impact: raised to the playbook's assessment, never lowered.
    severity = incident.severity
    if "severity" not in done and incident.severity < playbook.severity:
        severity = playbook.severity  # what the decision makes the incident's severity
        write(
            "severity",
            EntryKind.DECISION.value,
            f"Alvorlighetsgrad satt til {playbook.severity} etter tiltakskort «{playbook.title}»",
            {"severity": playbook.severity, "impact": dict(playbook.impact)},
        )

    # Tiltakskort → tasks for daily roles (likhetsprinsippet).
    for card in playbook.cards:
        if card.id in done or (card.only_types and kind not in card.only_types):
            continue
        write(card.id, EntryKind.TASK.value, card.title, _task_data(card, org, owner, start))

    # Samvirkeprinsippet: contacts with the owning unit's cooperating actors.
    for contact in playbook.cooperation:
        if contact.id in done or (contact.only_types and kind not in contact.only_types):
            continue
        actors = owner.actors(contact.kind)
        actor = actors[0] if actors else None
        due = start + contact.when
        name = actor.name if actor else None
        write(
            contact.id,
            EntryKind.COOPERATION_CONTACT.value,
            f"Kontakt {name or contact.kind} ({contact.kind}): {contact.purpose}"
            if actor
            else f"Ingen samvirkeaktør av typen {contact.kind} registrert for {owner.name}",
            {
                "actor_kind": contact.kind,
                "actor_name": name,
                "phone": actor.phone if actor else None,
                "email": actor.email if actor else None,
                "purpose": contact.purpose,
                "status": "to_contact",
                "due": format_time(due),
                "when": iso_duration(contact.when),
                "unit": owner.id,
            },
        )

    # The notification plan, handed to the notifiers as one message entry.
    if "notify" not in done and playbook.notifications:
        next_update = start + playbook.next_update
        plan = [
            {
                "id": n.id,
                "group": n.group,
                "after": iso_duration(n.after),
                "at": format_time(start + n.after),
                "template": n.template,
                "confirm": n.confirm,
            }
            for n in sorted(playbook.notifications, key=lambda n: n.after)
        ]
        write(
            "notify",
            EntryKind.MESSAGE.value,
            "Varslingsplan: " + ", ".join(n.group for n in playbook.notifications),
            {
                "message_type": "notification_request",
                "incident_type": kind,
                "unit": owner.id,
                "region": owner.region,
                "severity": severity,
                "plan": plan,
                "next_update_at": format_time(next_update),
            },
        )
    if dry or not specs:
        return [None] * len(specs)
    return list(
        await append_many(
            session, incident_id=incident.id, specs=specs, known_units=org.units.keys()
        )
    )


def _task_data(card: Card, org: Organisation, owner: Unit, start: datetime) -> dict[str, Any]:
    where, persons = _holders(org, owner, card.role)
    return {
        "title": card.title,
        "title_en": card.title_en,
        "card": card.id,
        "responsible_role": str(card.role),
        "responsible_unit": where,
        "responsible_person": persons[0].name if persons else None,
        "deadline": format_time(start + card.deadline),
        "deadline_offset": iso_duration(card.deadline),
        "checklist": [{"item": item, "done": False} for item in card.checklist],
        "status": "not_started",
    }


async def _escalate(
    session: AsyncSession,
    *,
    incident: Incident,
    playbook: Playbook,
    entries: list[LogEntry],
    now: datetime,
    dry: bool = False,
) -> list[LogEntry | None]:
    """The escalation entries due now; ``dry`` only counts them and writes nothing."""
    if incident.status != Status.OPEN:
        return []
    current = LEVEL_ORDER.index(Level(incident.level))
    out: list[LogEntry | None] = []

    async def step(to: str, rule: str, reason: str, criteria: list[str]) -> None:
        if dry:
            out.append(None)
            return
        # The shape of crisis.log.append.escalate's entry, plus the playbook and rule behind it.
        entry = await append(
            session,
            incident_id=incident.id,
            kind=EntryKind.ESCALATION.value,
            actor=playbook.rule(rule),
            text=f"Eskalert fra {incident.level} til {to}: {reason}",
            data={
                "from": incident.level,
                "to": to,
                "reason": reason,
                "criteria": criteria,
                "playbook": playbook.id,
                "rule": rule,
            },
        )
        out.append(entry)

    if not playbook.proximity or incident.security_political:
        # Security-political: nærhetsprinsippet does not apply — straight to KDI (and JD).
        target = LEVEL_ORDER.index(Level(playbook.direct_to if not playbook.proximity else "kdi"))
        criteria = ["sikkerhetspolitisk hendelse: nærhetsprinsippet gjelder ikke"]
        reason = "Sikkerhetspolitisk hendelse håndteres av KDI og JD"
        if current < LEVEL_ORDER.index(Level.KDI):
            if incident.security_political:
                await step("kdi", "proximity", reason, criteria)
            else:  # the row lacks the flag, so the log refuses a skip: climb each level
                for level in LEVEL_ORDER[current + 1 : LEVEL_ORDER.index(Level.KDI) + 1]:
                    await step(level.value, "proximity", reason, criteria)
        for level in LEVEL_ORDER[LEVEL_ORDER.index(Level(incident.level)) + 1 : target + 1]:
            await step(level.value, "proximity", reason, criteria)
        if out:
            return out
    if current + 1 >= len(LEVEL_ORDER):
        return out
    # One level at a time: the next level when its criteria (or a higher level's) hold.
    target_level = LEVEL_ORDER[current + 1].value
    facts = facts_of(incident, entries)
    needed, met = required_level(playbook, facts, now)
    if needed is None or LEVEL_ORDER.index(Level(needed)) <= current:
        return out
    own = playbook.escalation.get(target_level)
    own_met = evaluate(own, facts, now) if own else None
    if own_met:
        met = own_met
    else:
        met = [f"kriteriene for {needed} er oppfylt: {m}" for m in met]
    await step(
        target_level,
        f"escalate-{target_level}",
        f"Kriteriene i tiltakskort «{playbook.title}» er oppfylt",
        met,
    )
    return out


class Timelines:
    """The timelines the engine has read, kept between reactions (least recently used first
    out): the log is append-only, so the next look at an incident reads only what was appended
    since. A coalesced look at an incident with thousands of alarm entries had re-read and
    decoded all of them each time, most of the reactions process's CPU."""

    def __init__(self, max_incidents: int = 1000) -> None:
        self.max_incidents = max_incidents
        self._rows: OrderedDict[str, list[Any]] = OrderedDict()

    def get(self, incident_id: str) -> list[Any] | None:
        rows = self._rows.get(incident_id)
        if rows is not None:
            self._rows.move_to_end(incident_id)
        return rows

    def put(self, incident_id: str, rows: list[Any]) -> None:
        self._rows[incident_id] = rows
        self._rows.move_to_end(incident_id)
        while len(self._rows) > self.max_incidents:
            self._rows.popitem(last=False)

    def drop(self, incident_id: str) -> None:
        self._rows.pop(incident_id, None)


async def react(
    session: AsyncSession,
    *,
    entry: LogEntry | Mapping[str, Any],
    org: Organisation,
    library: Library,
    now: datetime | None = None,
    timelines: Timelines | None = None,
) -> list[LogEntry]:
    """React to one committed entry; returns the entries written (flushed, not committed).

    A look without the write lock comes first: most entries (one more alarm joining an
    incident) change nothing, and holding the log's write lock — SQLite has one writer for
    the whole database — while reading a long timeline would stall ingest. Only when there is
    something to write is the lock taken and everything evaluated again under it; the look's
    timeline is reused there (the log is append-only), so under the lock only the entries
    appended since are read.
    """
    trigger = Trigger.of(entry)
    when = now or utcnow()
    seen = await _look(session, trigger.incident_id, org, library, when, timelines)
    if seen is None:
        return []
    try:
        # The incident's write lock first, so what the log already holds cannot change before
        # this transaction commits: a concurrent reaction (the clock) waits, then sees our work.
        locked = await lock_incidents(session, incident_ids=[trigger.incident_id])
    except log.IncidentNotFound:
        return []
    incident = locked[trigger.incident_id]
    written = await _evaluate(session, incident, org=org, library=library, now=when, seen=seen)
    return [e for e in written if e is not None]


async def _evaluate(
    session: AsyncSession,
    incident: Incident,
    *,
    org: Organisation,
    library: Library,
    now: datetime,
    dry: bool = False,
    seen: list[Any] | None = None,
    seen_all: bool = False,
) -> list[LogEntry | None]:
    """Setup, then escalation, for an incident read in this session; ``dry`` writes nothing
    and stops at the first thing that would be written (``None`` for each). ``seen``: the
    start of the timeline, read before (entries never change once written); ``seen_all``:
    all of it, read in this transaction."""
    if incident.status != Status.OPEN:
        return []  # a closed incident gets no new tasks, contacts or escalations
    entries = list(seen or []) if seen_all else await _light_timeline(session, incident.id, seen)
    found = resolve(incident, entries[0].data, library) if entries else None
    if found is None:
        return []
    playbook, kind = found
    out = await _setup(
        session, incident=incident, playbook=playbook, kind=kind, entries=entries, org=org, dry=dry
    )
    if out and dry:
        return out
    if out:
        entries = await _light_timeline(session, incident.id, entries)
    out += await _escalate(
        session, incident=incident, playbook=playbook, entries=entries, now=now, dry=dry
    )
    return out


async def _light_timeline(
    session: AsyncSession, incident_id: str, known: list[Any] | None = None
) -> list[Any]:
    """The timeline as plain rows of the columns the rules read (kind, actor, data): the same
    attribute names as ``LogEntry`` without building an ORM object per entry, which is most of
    the cost of a look at a long timeline. ``known``: its first entries, already read; only
    those after them are read (a long timeline read under the write lock stalled ingest)."""
    cols = LogEntry.__table__.c  # type: ignore[attr-defined]
    query = select(cols.seq, cols.kind, cols.actor, cols.data).where(
        cols.incident_id == incident_id
    )
    if known:
        query = query.where(cols.seq > known[-1].seq)
    result = await session.exec(query.order_by(cols.seq))
    return [*(known or []), *result.all()]


async def _look(
    session: AsyncSession,
    incident_id: str,
    org: Organisation,
    library: Library,
    now: datetime,
    timelines: Timelines | None = None,
) -> list[Any] | None:
    """Would a reaction write anything? Read in a session of its own, without locks, so the
    caller's session (and what it holds) is untouched. Returns the timeline it read if so,
    else ``None``. ``timelines``: what was read before, kept up to date here."""
    async with AsyncSession(session.bind, expire_on_commit=False) as probe:
        incident = await _fresh_incident(probe, incident_id)
        if incident is None or incident.status != Status.OPEN:
            if timelines is not None:
                timelines.drop(incident_id)
            return None
        seen = await _light_timeline(
            probe, incident_id, timelines.get(incident_id) if timelines is not None else None
        )
        if timelines is not None:
            timelines.put(incident_id, seen)
        found = await _evaluate(
            probe, incident, org=org, library=library, now=now, dry=True, seen=seen, seen_all=True
        )
        return seen if found else None


async def open_incident_ids(session: AsyncSession) -> list[str]:
    """Ids of the open incidents, oldest first: what the clock re-evaluates."""
    result = await session.exec(
        select(Incident.id)
        .where(Incident.status == Status.OPEN.value)
        .order_by(col(Incident.opened_at))
    )
    return list(result.all())


async def incidents_due_by_time(
    session: AsyncSession, *, library: Library, now: datetime | None = None
) -> list[str]:
    """Ids of the open incidents (oldest first) for which time passing can matter now: their
    playbook has an ``open_longer_than`` limit they have passed, or their playbook is not
    known from their type alone. Every other condition depends on what the log holds, and a
    new entry is reacted to anyway; re-reading every open incident on each tick had been most
    of the reactions' work after an alarm storm (1,600 open incidents every 30 s)."""
    now = now or utcnow()
    result = await session.exec(
        select(Incident.id, Incident.type, Incident.opened_at)
        .where(Incident.status == Status.OPEN.value)
        .order_by(col(Incident.opened_at))
    )
    due = []
    for incident_id, type_, opened_at in result.all():
        playbook = library.for_type(type_)
        if playbook is None or any(
            as_utc(opened_at) + limit <= now for limit in time_limits(playbook)
        ):
            due.append(incident_id)
    return due


def clock_entry(incident_id: str) -> dict[str, Any]:
    """The pseudo-entry a clock tick reacts to (time passing is no log entry)."""
    return {"incident_id": incident_id, "kind": "tick", "actor": "system:clock"}


async def tick(
    session: AsyncSession, *, org: Organisation, library: Library, now: datetime | None = None
) -> list[LogEntry]:
    """Re-evaluate every open incident in one transaction (time criteria need a clock)."""
    out: list[LogEntry] = []
    for incident_id in await open_incident_ids(session):
        out += await react(
            session, entry=clock_entry(incident_id), org=org, library=library, now=now
        )
    return out


async def violations(
    session: AsyncSession, *, incident_id: str, library: Library, now: datetime | None = None
) -> list[rules.OpenViolation]:
    """The principles the incident currently breaks, read from its log (for the board)."""
    now = now or utcnow()
    incident = await _fresh_incident(session, incident_id)
    if incident is None:
        raise log.IncidentNotFound(incident_id)
    entries = await log.timeline(session, incident_id)
    return standing(incident, entries, library=library, now=now)


def standing(
    incident: Incident, entries: list[LogEntry], *, library: Library, now: datetime
) -> list[rules.OpenViolation]:
    """:func:`violations` over entries already read (the overview reads many incidents at once)."""
    found = resolve(incident, entries[0].data if entries else {}, library)
    level, met = required_level(found[0], facts_of(incident, entries), now) if found else (None, [])
    return rules.standing_violations(
        incident=incident,
        entries=entries,
        now=now,
        required_level=level,
        criteria_met=tuple(met),
    )
