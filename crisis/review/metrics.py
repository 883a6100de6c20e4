"""Response metrics, computed from an incident's crisis log alone (issue 17, item 4).

Pure functions: :func:`incident_metrics` reads one incident's entries (in seq order) the way
the board does (``crisis.log.projection``), and :func:`aggregate` summarises many incidents
per unit, region, type or period. Each moment, the entry kind and data field marking it, is
defined in docs/review.md ("Response metrics"). A moment that never happened is ``None``,
never zero. The database read is :mod:`crisis.review.metrics_service`.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from crisis.domain.rules import NOTIFIER_ACTOR
from crisis.domain.vocabulary import EntryKind, Status
from crisis.log import projection
from crisis.log.chain import format_time
from crisis.log.projection import parse_time

OSLO = ZoneInfo("Europe/Oslo")

#: Stakeholder groups that are "staff" and "the public" (``notifiers.config`` STAFF_KINDS and
#: PUBLIC_KINDS; the core may not import the notifiers, a test keeps the two equal).
STAFF_GROUPS = frozenset({"staff", "leaders", "safety", "unions"})
PUBLIC_GROUPS = frozenset({"media", "public"})
#: Receipt statuses that mean the channel took the message (the dispatcher's "sent").
DELIVERED = frozenset({"sent", "acknowledged"})
FAILED = frozenset({"failed", "timed_out"})

GroupBy = Literal["all", "unit", "region", "type", "month", "week"]
GROUP_BY: tuple[str, ...] = GroupBy.__args__  # type: ignore[attr-defined]

#: The durations :func:`aggregate` summarises (each an ``IncidentMetrics`` attribute).
DURATIONS: tuple[str, ...] = (
    "detection_seconds",
    "owner_seconds",
    "staff_alarm_seconds",
    "first_ack_seconds",
    "first_escalation_seconds",
    "public_seconds",
    "first_sitrep_seconds",
    "sitrep_interval_max_seconds",
    "overdue_max_seconds",
)


#: The summary's labels (bokmål, English): the board's catalogue and the report both read them.
LABELS: dict[str, tuple[str, str]] = {
    "detection_seconds": ("Første hendelse → opprettet", "First event → opened"),
    "owner_seconds": ("→ eier og ansvarlig", "→ owner and accountable"),
    "staff_alarm_seconds": ("→ varsel levert til ansatte", "→ staff alarm delivered"),
    "first_ack_seconds": ("→ første bekreftelse", "→ first acknowledgement"),
    "first_escalation_seconds": ("→ første eskalering", "→ first escalation"),
    "public_seconds": ("→ første melding til publikum", "→ first public message"),
    "first_sitrep_seconds": ("→ første godkjente sitrap", "→ first approved sitrep"),
    "sitrep_interval_max_seconds": (
        "Lengste intervall mellom sitraper",
        "Longest interval between sitreps",
    ),
    "overdue_max_seconds": ("Lengste fristoverskridelse", "Longest task overrun"),
}


def format_duration(seconds: Any) -> str:
    """``130`` → "2 min 10 s"; ``3900`` → "1 h 05 min"; None → "–" (it never happened)."""
    if seconds is None:
        return "–"
    sign = "-" if seconds < 0 else ""
    total = round(abs(float(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{sign}{hours} h {minutes:02d} min"
    if minutes:
        return f"{sign}{minutes} min {secs:02d} s"
    return f"{sign}{secs} s"


class EntryLike(Protocol):
    """What the metrics read of a log entry (a ``LogEntry`` or a selected row)."""

    @property
    def seq(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def at(self) -> datetime: ...
    @property
    def actor(self) -> str: ...
    @property
    def data(self) -> Any: ...


class IncidentLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def unit(self) -> str: ...
    @property
    def exercise(self) -> str | None: ...
    @property
    def status(self) -> str: ...
    @property
    def level(self) -> str: ...
    @property
    def opened_at(self) -> datetime: ...


@dataclass(frozen=True)
class EscalationMetric:
    seq: int
    at: datetime
    from_level: str
    to_level: str
    seconds: float
    by: str  # "rule" (a playbook) or "person"


@dataclass(frozen=True)
class TaskMetric:
    """A task with a deadline; ``overdue_seconds`` is None when it was (or is) on time."""

    seq: int
    card: str | None
    responsible_role: str
    deadline: datetime
    done_at: datetime | None
    overdue_seconds: float | None


@dataclass(frozen=True)
class PromiseMetric:
    """A promised next update (``next_update_at``) and the approved report that answered it."""

    seq: int
    promised_at: datetime
    due: datetime
    answered_at: datetime | None
    kept: bool | None  # None: not yet due (or the incident closed before it was)
    late_seconds: float | None


@dataclass(frozen=True)
class DeliveryMetric:
    messages: int = 0
    attempts_failed: int = 0
    messages_failed: int = 0
    alternate_contact: int = 0
    unacknowledged_escalated: int = 0
    translation_fallback: int = 0
    blocked: int = 0


@dataclass(frozen=True)
class IncidentMetrics:
    incident_id: str
    type: str
    unit: str
    region: str | None
    exercise: str | None
    status: str
    level: str
    measured_until: datetime
    start_at: datetime
    start_basis: str  # "event" (the first event) or "opening" (no event: opened by hand)
    first_event_at: datetime | None
    opened_at: datetime
    owner_set_at: datetime | None
    first_staff_delivered_at: datetime | None
    first_ack_at: datetime | None
    first_public_at: datetime | None
    closed_at: datetime | None
    detection_seconds: float | None
    owner_seconds: float | None
    staff_alarm_seconds: float | None
    first_ack_seconds: float | None
    public_seconds: float | None
    first_escalation_seconds: float | None
    staff_before_public: bool | None
    escalations: tuple[EscalationMetric, ...]
    tasks: tuple[TaskMetric, ...]
    tasks_with_deadline: int
    tasks_overdue: int
    overdue_total_seconds: float | None
    overdue_max_seconds: float | None
    sitreps_approved: int
    first_sitrep_seconds: float | None
    sitrep_intervals_seconds: tuple[float, ...]
    sitrep_interval_max_seconds: float | None
    promises: tuple[PromiseMetric, ...]
    promises_kept: int
    promises_broken: int
    deliveries: DeliveryMetric = field(default_factory=DeliveryMetric)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: durations as seconds (numbers), instants as UTC ISO 8601 strings."""
        return _jsonable(asdict(self))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def _receipt(e: EntryLike) -> bool:
    return e.kind == EntryKind.MESSAGE and e.actor == NOTIFIER_ACTOR and "status" in (e.data or {})


def _first_event(entries: Sequence[EntryLike], opened_at: datetime) -> datetime | None:
    """The opening's ``event_time``, or an earlier one of a source event (late arrivals)."""
    times: list[datetime] = []
    for e in entries:
        d = e.data or {}
        when = parse_time(d.get("event_time"))
        if when is None:
            continue
        if e.kind == EntryKind.INCIDENT_OPENED or (
            e.kind == EntryKind.SOURCE_EVENT and when <= opened_at
        ):
            times.append(when)
    return min(times) if times else None


def _owner_set(entries: Sequence[EntryLike]) -> datetime | None:
    """When the incident first had an owning unit and a named accountable role."""
    unit = role = None
    for e in entries:
        d = e.data or {}
        if e.kind == EntryKind.INCIDENT_OPENED:
            unit, role = d.get("unit"), d.get("accountable_role")
        elif e.kind == EntryKind.DECISION and d.get("new_owner"):
            unit, role = d["new_owner"], d.get("new_accountable_role") or role
        if unit and role:
            return e.at
    return None


def _closed_at(entries: Sequence[EntryLike], status: str) -> datetime | None:
    if status != Status.CLOSED:
        return None
    for e in reversed(entries):
        if e.kind == EntryKind.STATUS_CHANGE and (e.data or {}).get("status") == Status.CLOSED:
            return e.at
    return None


def _tasks(entries: Sequence[EntryLike], until: datetime) -> list[TaskMetric]:
    done_at: dict[int, datetime | None] = {}
    for e in entries:  # the last update naming a task wins, as on the board
        d = e.data or {}
        if e.kind == EntryKind.TASK:
            done_at[e.seq] = e.at if d.get("status") == "done" else None
        elif e.kind == EntryKind.TASK_UPDATE and isinstance(d.get("task"), int) and d.get("status"):
            if d["task"] in done_at:
                done_at[d["task"]] = e.at if d["status"] == "done" else None
    cards = {e.seq: (e.data or {}).get("card") for e in entries if e.kind == EntryKind.TASK}
    out = []
    for t in projection.tasks(entries):  # type: ignore[arg-type]
        if t.deadline is None:
            continue
        finished = done_at.get(t.seq)
        late = ((finished or until) - t.deadline).total_seconds()
        out.append(
            TaskMetric(
                seq=t.seq,
                card=str(cards[t.seq]) if cards.get(t.seq) else None,
                responsible_role=t.responsible_role,
                deadline=t.deadline,
                done_at=finished,
                overdue_seconds=late if late > 0 else None,
            )
        )
    return out


def _promises(
    entries: Sequence[EntryLike], approvals: Sequence[datetime], until: datetime
) -> list[PromiseMetric]:
    out = []
    for e in entries:
        due = parse_time((e.data or {}).get("next_update_at"))
        if due is None:
            continue
        answer = next((a for a in approvals if a > e.at), None)
        if answer is not None:
            late = (answer - due).total_seconds()
            kept: bool | None = late <= 0
        elif until > due:
            late, kept = (until - due).total_seconds(), False
        else:  # not due yet, or the incident closed before it fell due
            late, kept = 0.0, None
        out.append(
            PromiseMetric(
                seq=e.seq,
                promised_at=e.at,
                due=due,
                answered_at=answer,
                kept=kept,
                late_seconds=late if kept is False else None,
            )
        )
    return out


def _deliveries(receipts: Sequence[EntryLike]) -> DeliveryMetric:
    last: dict[Any, str] = {}
    alternate: set[Any] = set()
    fallback: set[Any] = set()
    attempts_failed = escalated = blocked = 0
    for e in receipts:
        d = e.data
        key = d.get("message_id")
        if key is None:
            key = (d.get("update_id"), d.get("group"), d.get("recipient"), e.seq)
        status = str(d.get("status"))
        last[key] = status
        if status == "timed_out" and "escalated_to" in d:
            escalated += 1  # an alarm not acknowledged in time, not a failed send
            continue
        if status in FAILED:
            attempts_failed += 1
        if status == "blocked":
            blocked += 1
        if isinstance(d.get("contact"), int) and d["contact"] >= 1:
            alternate.add(key)
        if d.get("translation_fallback"):
            fallback.add(key)
    return DeliveryMetric(
        messages=len(last),
        attempts_failed=attempts_failed,
        messages_failed=sum(1 for s in last.values() if s == "failed"),
        alternate_contact=len(alternate),
        unacknowledged_escalated=escalated,
        translation_fallback=len(fallback),
        blocked=blocked,
    )


def incident_metrics(
    *,
    incident: IncidentLike,
    entries: Sequence[EntryLike],
    now: datetime,
    region: str | None = None,
) -> IncidentMetrics:
    """The response metrics of one incident from its entries (seq order).

    Open tasks and promises are judged at the close (the last closing status change of a
    closed incident) or at ``now`` while it is open.
    """
    opened_at = entries[0].at if entries else incident.opened_at
    first_event = _first_event(entries, opened_at)
    start = first_event or opened_at
    closed_at = _closed_at(entries, incident.status)
    until = closed_at or now

    receipts = [e for e in entries if _receipt(e)]

    def first(groups: frozenset[str] | None, statuses: frozenset[str]) -> datetime | None:
        for e in receipts:
            d = e.data
            if d.get("status") in statuses and (groups is None or d.get("group") in groups):
                return e.at
        return None

    staff = first(STAFF_GROUPS, DELIVERED)
    ack = first(None, frozenset({"acknowledged"}))
    public = first(PUBLIC_GROUPS, DELIVERED)
    held = None if public is None else staff is not None and staff <= public

    escalations = tuple(
        EscalationMetric(
            seq=e.seq,
            at=e.at,
            from_level=str((e.data or {}).get("from", "")),
            to_level=str((e.data or {}).get("to", "")),
            seconds=(e.at - start).total_seconds(),
            by="rule" if e.actor.startswith("rule:") else "person",
        )
        for e in entries
        if e.kind == EntryKind.ESCALATION
    )
    tasks = _tasks(entries, until)
    overdue = [t.overdue_seconds for t in tasks if t.overdue_seconds is not None]

    approvals = [
        e.at
        for e in entries
        if e.kind == EntryKind.SITUATION_REPORT and (e.data or {}).get("action") == "approved"
    ]
    intervals = tuple((b - a).total_seconds() for a, b in itertools.pairwise(approvals))
    promises = _promises(entries, approvals, until)

    return IncidentMetrics(
        incident_id=incident.id,
        type=incident.type,
        unit=incident.unit,
        region=region,
        exercise=incident.exercise,
        status=incident.status,
        level=incident.level,
        measured_until=until,
        start_at=start,
        start_basis="event" if first_event is not None else "opening",
        first_event_at=first_event,
        opened_at=opened_at,
        owner_set_at=(owner := _owner_set(entries)),
        first_staff_delivered_at=staff,
        first_ack_at=ack,
        first_public_at=public,
        closed_at=closed_at,
        detection_seconds=_seconds(first_event, opened_at),
        owner_seconds=_seconds(start, owner),
        staff_alarm_seconds=_seconds(start, staff),
        first_ack_seconds=_seconds(start, ack),
        public_seconds=_seconds(start, public),
        first_escalation_seconds=escalations[0].seconds if escalations else None,
        staff_before_public=held,
        escalations=escalations,
        tasks=tuple(tasks),
        tasks_with_deadline=len(tasks),
        tasks_overdue=len(overdue),
        overdue_total_seconds=sum(overdue) if overdue else None,
        overdue_max_seconds=max(overdue) if overdue else None,
        sitreps_approved=len(approvals),
        first_sitrep_seconds=_seconds(start, approvals[0]) if approvals else None,
        sitrep_intervals_seconds=intervals,
        sitrep_interval_max_seconds=max(intervals) if intervals else None,
        promises=tuple(promises),
        promises_kept=sum(1 for p in promises if p.kept is True),
        promises_broken=sum(1 for p in promises if p.kept is False),
        deliveries=_deliveries(receipts),
    )


# --- aggregation ------------------------------------------------------------------------


def group_key(row: IncidentMetrics, group_by: str) -> str:
    """The group a row falls in; periods are those of the opening in Europe/Oslo."""
    if group_by == "all":
        return "all"
    if group_by == "unit":
        return row.unit
    if group_by == "region":
        return row.region or "-"
    if group_by == "type":
        return row.type
    local = row.opened_at.astimezone(OSLO)
    if group_by == "month":
        return f"{local:%Y-%m}"
    if group_by == "week":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    raise ValueError(f"unknown group_by {group_by!r} (known: {', '.join(GROUP_BY)})")


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile: the smallest observed value with ``share`` at or below."""
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    if not values:
        return {"count": 0, "median": None, "p90": None, "max": None}
    return {
        "count": len(values),
        "median": float(statistics.median(values)),
        "p90": percentile(values, 0.9),
        "max": max(values),
    }


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def aggregate(*, rows: Iterable[IncidentMetrics], group_by: str) -> list[dict[str, Any]]:
    """Per group (sorted by key): counts and, for each duration, count/median/p90/max.

    Exercises never enter statistics: rows with an exercise id are left out here too.
    """
    if group_by not in GROUP_BY:
        raise ValueError(f"unknown group_by {group_by!r} (known: {', '.join(GROUP_BY)})")
    groups: dict[str, list[IncidentMetrics]] = {}
    for row in rows:
        if row.exercise is None:
            groups.setdefault(group_key(row, group_by), []).append(row)
    out = []
    for key in sorted(groups):
        members = groups[key]
        judged = [r.staff_before_public for r in members if r.staff_before_public is not None]
        kept = sum(r.promises_kept for r in members)
        broken = sum(r.promises_broken for r in members)
        deliveries = {
            name: sum(getattr(r.deliveries, name) for r in members)
            for name in DeliveryMetric.__dataclass_fields__
        }
        out.append(
            {
                "key": key,
                "incidents": len(members),
                "closed": sum(1 for r in members if r.closed_at is not None),
                "durations": {
                    name: summary([v for r in members if (v := getattr(r, name)) is not None])
                    for name in DURATIONS
                },
                "staff_before_public": {
                    "judged": len(judged),
                    "held": sum(judged),
                    "share": _share(sum(judged), len(judged)),
                },
                "escalations": sum(len(r.escalations) for r in members),
                "tasks": {
                    "with_deadline": sum(r.tasks_with_deadline for r in members),
                    "overdue": sum(r.tasks_overdue for r in members),
                },
                "promises": {
                    "kept": kept,
                    "broken": broken,
                    "share_kept": _share(kept, kept + broken),
                },
                "deliveries": deliveries,
            }
        )
    return out
