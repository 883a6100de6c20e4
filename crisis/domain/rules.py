"""The principles as pure checks, shared by the API, the stream worker and the playbooks.

Each check returns a list of :class:`Violation`; empty means allowed. Keeping them pure
means the same rule holds whichever way an entry arrives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from crisis.clock import as_utc
from crisis.domain.vocabulary import (
    LESSON_KINDS,
    LEVEL_ORDER,
    EntryKind,
    FollowUpStatus,
    Level,
    Status,
    TaskStatus,
)

#: Coercive or restrictive measures (DOMAIN.md, "Hjemmel og notoritet"). A decision on one of
#: these needs a legal basis, a proportionality assessment and the alternatives considered.
COERCIVE_MEASURES = frozenset(
    {
        "innelasing",  # lock-down / locking inmates in their cells
        "utelukkelse",  # exclusion from company
        "maktbruk",  # use of force
        "tvangsmidler",  # restraints
        "sikkerhetscelle",  # security cell
        "ransaking",  # search of cell or premises
        "kroppsvisitasjon",  # body search
        "besoksforbud",  # ban on visits
        "isolasjon",  # isolation
    }
)

COERCIVE_REQUIRED_FIELDS = ("legal_basis", "proportionality", "alternatives")


@dataclass(frozen=True)
class Violation:
    """One broken rule: which field, what is wrong, and the principle it protects.

    ``conflict``: the write clashes with the incident's state (it is closed, or already has
    the status asked for) rather than being malformed; the API answers 409 for it.
    """

    field: str
    message: str
    principle: str | None = None
    conflict: bool = False

    def as_error(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "message": self.message}
        if self.principle:
            out["principle"] = self.principle
        return out


def _blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | tuple):
        return not any(not _blank(v) for v in value)
    return False


def is_coercive(data: Mapping[str, Any]) -> bool:
    measure = data.get("measure")
    return bool(data.get("coercive")) or (
        isinstance(measure, str) and measure.strip().lower() in COERCIVE_MEASURES
    )


def check_decision(data: Mapping[str, Any]) -> list[Violation]:
    """A coercive decision is recorded only with legal basis, proportionality and alternatives."""
    if not is_coercive(data):
        return []
    return [
        Violation(
            field=name,
            message=f"a decision on a coercive or restrictive measure needs '{name}' "
            "(hjemmel og notoritet: legal basis, proportionality, alternatives considered)",
            principle="hjemmel og notoritet",
        )
        for name in COERCIVE_REQUIRED_FIELDS
        if _blank(data.get(name))
    ]


def check_task(data: Mapping[str, Any]) -> list[Violation]:
    """Every task has a responsible role (ansvarsprinsippet) and a title."""
    out = []
    if _blank(data.get("title")):
        out.append(Violation("title", "a task needs a title"))
    if _blank(data.get("responsible_role")):
        out.append(
            Violation(
                "responsible_role",
                "a task needs a responsible role",
                principle="ansvarsprinsippet",
            )
        )
    return out


def check_task_update(data: Mapping[str, Any], known_tasks: set[int]) -> list[Violation]:
    out = []
    task = data.get("task")
    if not isinstance(task, int) or task not in known_tasks:
        out.append(Violation("task", f"no task entry with seq {task!r} in this incident"))
    status = data.get("status")
    if status is not None and status not in {s.value for s in TaskStatus}:
        out.append(
            Violation("status", f"unknown task status {status!r} (not_started, started, done)")
        )
    return out


def check_escalation(*, current: str, target: str, security_political: bool) -> list[Violation]:
    """Escalate one level at a time (nærhetsprinsippet) unless the crisis is security-political."""
    try:
        cur = LEVEL_ORDER.index(Level(current))
        tgt = LEVEL_ORDER.index(Level(target))
    except ValueError:
        return [Violation("to", f"unknown level {target!r} (unit, region, kdi, jd)")]
    if tgt == cur:
        return [Violation("to", f"the incident is already handled at level {target!r}")]
    if tgt < cur:
        return [
            Violation(
                "to",
                "escalation goes upwards; hand an incident back down with a decision entry",
            )
        ]
    if tgt - cur > 1 and not security_political:
        skipped = ", ".join(level.value for level in LEVEL_ORDER[cur + 1 : tgt])
        return [
            Violation(
                "to",
                f"escalating from {current!r} to {target!r} skips {skipped}: crises are handled at "
                "the lowest possible level and escalated one level at a time "
                "(nærhetsprinsippet); only security-political incidents go straight to KDI/JD",
                principle="nærhetsprinsippet",
            )
        ]
    return []


def check_owner_change(kind: str, data: Mapping[str, Any]) -> list[Violation]:
    """Ownership changes only through a logged decision (ansvarsprinsippet)."""
    if "new_owner" in data and kind != EntryKind.DECISION:
        return [
            Violation(
                "new_owner",
                "the owning unit changes only through a decision entry (ansvarsprinsippet)",
                principle="ansvarsprinsippet",
            )
        ]
    return []


def check_correction(corrects: int | None, existing_seqs: int) -> list[Violation]:
    if corrects is None:
        return [Violation("corrects", "a correction names the seq of the entry it corrects")]
    if not 1 <= corrects <= existing_seqs:
        return [Violation("corrects", f"no entry with seq {corrects} in this incident")]
    return []


# --- closing and reopening: a closed incident is read-only ------------------------------


def check_status_change(*, current: str, data: Mapping[str, Any]) -> list[Violation]:
    """A status change is a logged decision: a known status, a reason, and (closing) the
    final situation; asking for the status the incident already has is a conflict."""
    status = data.get("status")
    if status not in {s.value for s in Status}:
        return [Violation("status", "status must be 'open' or 'closed'")]
    out = []
    if _blank(data.get("reason")):
        out.append(
            Violation("reason", "en statusendring har en begrunnelse / a status change states why")
        )
    if status == Status.CLOSED and _blank(data.get("final_situation")):
        out.append(
            Violation(
                "final_situation",
                "lukking beskriver sluttsituasjonen / closing states the final situation",
            )
        )
    if status == current:
        word = "lukket / closed" if status == Status.CLOSED else "åpen / open"
        out.append(Violation("status", f"hendelsen er allerede {word}", conflict=True))
    return out


def is_delivery_receipt(kind: str, actor: str, data: Mapping[str, Any]) -> bool:
    """A notifier's delivery receipt: a ``message`` by the notifiers with delivery data."""
    return (
        kind == EntryKind.MESSAGE and actor == NOTIFIER_ACTOR and bool(DELIVERY_KEYS & data.keys())
    )


def check_closed(*, status: str, kind: str, actor: str, data: Mapping[str, Any]) -> list[Violation]:
    """A closed incident takes no entry until a status change reopens it.

    Three exceptions: the reopening status change itself, the notifiers' delivery receipts
    (``is_delivery_receipt``) — a message sent before the close is delivered, fails or is
    acknowledged after it, and the log must not lose that — and the lessons learned
    (``LESSON_KINDS``), which a review records after the close. Everything else a person, a
    playbook rule or a situation report writes is refused.
    """
    if status != Status.CLOSED:
        return []
    if kind == EntryKind.STATUS_CHANGE and data.get("status") == Status.OPEN:
        return []
    if kind in LESSON_KINDS:
        return []
    if is_delivery_receipt(kind, actor, data):
        return []
    return [
        Violation(
            "status",
            "hendelsen er lukket og kan ikke endres før den gjenåpnes "
            "(POST /api/v1/incidents/{id}/reopen) / the incident is closed: reopen it first",
            conflict=True,
        )
    ]


# --- lessons learned: findings and follow-up actions ------------------------------------

FOLLOW_UP_STATES = ", ".join(s.value for s in FollowUpStatus)


def _due_violation(value: Any) -> list[Violation]:
    """A due date is an ISO date (or date and time)."""
    if _blank(value):
        return [Violation("due", "et oppfølgingstiltak har en frist / a follow-up has a due date")]
    if not isinstance(value, str) or parse_due(value) is None:
        return [Violation("due", f"due is an ISO date (YYYY-MM-DD), not {value!r}")]
    return []


def parse_due(value: str) -> date | datetime | None:
    """A follow-up's due date (a date, or a date and time), or None if it is not ISO."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _status_violation(value: Any) -> list[Violation]:
    if value not in {s.value for s in FollowUpStatus}:
        return [Violation("status", f"unknown follow-up status {value!r} ({FOLLOW_UP_STATES})")]
    return []


def check_finding(data: Mapping[str, Any]) -> list[Violation]:
    """A finding says what the review found."""
    if _blank(data.get("finding")):
        return [Violation("finding", "et funn beskriver hva som ble funnet / a finding says what")]
    return []


def check_follow_up(data: Mapping[str, Any], known_findings: set[int]) -> list[Violation]:
    """A follow-up action has a title, an owner (ansvarsprinsippet), a due date and a known
    status; the finding it answers, if named, is a finding of the same incident."""
    out = []
    if _blank(data.get("title")):
        out.append(
            Violation("title", "et oppfølgingstiltak har en tittel / a follow-up has a title")
        )
    if _blank(data.get("owner")):
        out.append(
            Violation(
                "owner",
                "et oppfølgingstiltak har en eier / a follow-up has an owner",
                principle="ansvarsprinsippet",
            )
        )
    out += _due_violation(data.get("due"))
    out += _status_violation(data.get("status", FollowUpStatus.OPEN.value))
    finding = data.get("finding")
    if finding is not None and (not isinstance(finding, int) or finding not in known_findings):
        out.append(Violation("finding", f"no finding entry with seq {finding!r} in this incident"))
    return out


def check_follow_up_update(data: Mapping[str, Any], known_follow_ups: set[int]) -> list[Violation]:
    """An update names the follow-up it changes and changes its status, owner or due date."""
    out = []
    target = data.get("follow_up")
    if not isinstance(target, int) or isinstance(target, bool) or target not in known_follow_ups:
        out.append(
            Violation("follow_up", f"no follow_up entry with seq {target!r} in this incident")
        )
    changes = [k for k in ("status", "owner", "due") if k in data]
    if not changes:
        out.append(Violation("status", "an update changes the status, the owner or the due date"))
    if "status" in data:
        out += _status_violation(data["status"])
    if "owner" in data and _blank(data["owner"]):
        out.append(Violation("owner", "a follow-up keeps an owner", principle="ansvarsprinsippet"))
    if "due" in data:
        out += _due_violation(data["due"])
    return out


# --- who writes delivery data: the notifiers, and plans: the playbook engine ----------

#: The actor of every delivery receipt (``notifiers.logbook``), the only writer of one.
NOTIFIER_ACTOR = "system:notifiers"
#: A ``message`` entry with any of these keys is a delivery receipt (the board reads them).
DELIVERY_KEYS = frozenset(
    {
        "update_id",
        "message_id",
        "facts_hash",
        "recipient",
        "status",
        "channel",
        "attempt",
        "acknowledged_by",
        "approved_by",
        "escalated_to",
    }
)
#: Keys that make an entry a notification plan for the reactions worker.
PLAN_KEYS = frozenset({"message_type", "plan"})


def is_rule_actor(actor: str, data: Mapping[str, Any]) -> bool:
    """A playbook rule wrote it: ``rule:<playbook>/<rule>`` naming its playbook."""
    return actor.startswith("rule:") and bool(data.get("playbook"))


def check_message_origin(kind: str, actor: str, data: Mapping[str, Any]) -> list[Violation]:
    """Plans come from the playbook engine and receipts from the notifiers, never a person.

    A person's request for a message is ``POST /api/v1/notifications/updates``, authored by
    that person, so the two-person rule knows who asked.
    """
    out = []
    if PLAN_KEYS & data.keys() and not is_rule_actor(actor, data):
        out.append(
            Violation(
                "message_type",
                "bare tiltakskortene lager varslingsplaner; be om et varsel med "
                "POST /api/v1/notifications/updates / only the playbook engine makes a "
                "notification plan: ask for a message with POST /api/v1/notifications/updates",
                principle="to-personsregel",
            )
        )
    if kind == EntryKind.MESSAGE and actor != NOTIFIER_ACTOR:
        for key in sorted(DELIVERY_KEYS & data.keys()):
            out.append(
                Violation(
                    key,
                    "leveringskvitteringer skrives bare av varslingstjenesten / delivery "
                    "receipts are written by the notifiers only",
                )
            )
    return out


# --- crisis communication: staff before the public -------------------------------------

#: Groups that are "the public" for the staff-first rule (DOMAIN.md, crisis communication).
PUBLIC_GROUPS = frozenset({"media"})


def check_notification_order(plan: Sequence[Mapping[str, Any]]) -> list[Violation]:
    """Staff and leaders are told before the public, at the latest at the same time.

    ``plan`` items carry ``group``, ``after`` (anything ordered, e.g. timedelta) and ``index``;
    a violation's ``field`` is the offending item's index.
    """
    staff = [item["after"] for item in plan if item["group"] == "staff"]
    out = []
    for item in plan:
        if item["group"] not in PUBLIC_GROUPS:
            continue
        if not staff or min(staff) > item["after"]:
            out.append(
                Violation(
                    str(item.get("index", "")),
                    f"{item['group']} is notified before staff: staff and leaders (with safety "
                    "and union representatives) are informed before the public, at the latest "
                    "at the same time — add a 'staff' step no later than this one",
                    principle="krisekommunikasjon",
                )
            )
    return out


# --- standing violations of an incident, for the board ---------------------------------


@dataclass(frozen=True)
class OpenViolation(Violation):
    """A principle an open incident currently breaks, read from its log (not a refused write)."""

    code: str = ""
    seq: int | None = None
    message_en: str = ""

    def as_error(self) -> dict[str, Any]:
        out = super().as_error()
        out.update({"code": self.code, "seq": self.seq, "message_en": self.message_en})
        return out


def _parse_time(value: Any) -> Any:
    try:
        return as_utc(value) if value else None
    except (TypeError, ValueError):
        return None


def standing_violations(
    *,
    incident: Any,
    entries: list[Any],
    now: Any,
    required_level: str | None = None,
    criteria_met: tuple[str, ...] = (),
) -> list[OpenViolation]:
    """What the incident's log shows is wrong right now, each with the principle it breaks.

    ``incident`` has ``accountable_role``, ``level``, ``status``, ``next_update_at``;
    ``entries`` have ``seq``, ``kind``, ``at``, ``data`` (``LogEntry`` rows will do);
    ``required_level`` is the level the playbook's escalation criteria call for, if known.
    """
    out: list[OpenViolation] = []
    is_open = incident.status == "open"
    if _blank(incident.accountable_role):
        out.append(
            OpenViolation(
                "accountable_role",
                "Hendelsen har ingen ansvarlig rolle (leder, nestleder eller vakthavende).",
                "ansvarsprinsippet",
                code="no_accountable_role",
                message_en="The incident has no accountable role (leader, deputy or on duty).",
            )
        )
    updates: dict[int, list[Any]] = {}
    contact_updates: dict[int, list[Any]] = {}
    for entry in entries:
        task = entry.data.get("task")
        if entry.kind == EntryKind.TASK_UPDATE and isinstance(task, int):
            updates.setdefault(task, []).append(entry)
        contact = entry.data.get("contact")
        if entry.kind == EntryKind.COOPERATION_CONTACT and isinstance(contact, int):
            contact_updates.setdefault(contact, []).append(entry)
    for entry in entries:
        data = entry.data
        if entry.kind == EntryKind.TASK:
            title = data.get("title") or f"#{entry.seq}"
            if _blank(data.get("responsible_role")):
                out.append(
                    OpenViolation(
                        "responsible_role",
                        f"Tiltaket «{title}» har ingen ansvarlig rolle.",
                        "ansvarsprinsippet",
                        code="task_without_role",
                        seq=entry.seq,
                        message_en=f"Task '{title}' has no responsible role.",
                    )
                )
            status = data.get("status") or TaskStatus.NOT_STARTED.value
            for update in updates.get(entry.seq, []):
                status = update.data.get("status") or status
            deadline = _parse_time(data.get("deadline"))
            if is_open and deadline is not None and deadline < now and status != TaskStatus.DONE:
                role = data.get("responsible_role")
                out.append(
                    OpenViolation(
                        "deadline",
                        f"Tiltaket «{title}» ({role}) har passert fristen og er ikke utført "
                        f"(status: {status}).",
                        "ansvarsprinsippet",
                        code="task_overdue",
                        seq=entry.seq,
                        message_en=f"Task '{title}' ({role}) is past its deadline and not done "
                        f"(status: {status}).",
                    )
                )
        elif entry.kind == EntryKind.COOPERATION_CONTACT and "contact" not in data:
            name = data.get("actor_name")
            kind = data.get("actor_kind")
            if _blank(name):
                out.append(
                    OpenViolation(
                        "actor_name",
                        f"Ingen samvirkeaktør av typen «{kind}» er registrert for enheten.",
                        "samvirkeprinsippet",
                        code="contact_unresolved",
                        seq=entry.seq,
                        message_en=f"No cooperating actor of kind '{kind}' is registered "
                        "for the unit.",
                    )
                )
            statuses = [u.data.get("status") for u in contact_updates.get(entry.seq, [])]
            due = _parse_time(data.get("due"))
            if is_open and "acknowledged" not in statuses and due is not None and due < now:
                out.append(
                    OpenViolation(
                        "status",
                        f"Samvirkeaktør {name or kind} er ikke bekreftet kontaktet innen fristen.",
                        "samvirkeprinsippet",
                        code="contact_unacknowledged",
                        seq=entry.seq,
                        message_en=f"Cooperating actor {name or kind} has not acknowledged "
                        "contact by its due time.",
                    )
                )
    if is_open and required_level is not None:
        try:
            behind = LEVEL_ORDER.index(Level(required_level)) > LEVEL_ORDER.index(
                Level(incident.level)
            )
        except ValueError:
            behind = False
        if behind:
            met = "; ".join(criteria_met) or "kriteriene"
            out.append(
                OpenViolation(
                    "level",
                    f"Kriteriene for nivå {required_level} er oppfylt ({met}), men hendelsen "
                    f"håndteres på nivå {incident.level}.",
                    "nærhetsprinsippet",
                    code="level_below_required",
                    message_en=f"The criteria for level {required_level} are met ({met}) but "
                    f"the incident is handled at level {incident.level}.",
                )
            )
    next_update = _parse_time(incident.next_update_at)
    if is_open and next_update is not None and next_update < now:
        out.append(
            OpenViolation(
                "next_update_at",
                "Lovet neste oppdatering er ikke gitt i tide.",
                "krisekommunikasjon",
                code="next_update_overdue",
                message_en="The promised next update is overdue.",
            )
        )
    return out
